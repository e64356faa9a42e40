"""Tests for logdna_client.contrib.asgi: request context in Starlette (and any ASGI) apps."""

from __future__ import annotations

import asyncio
import logging
import sys
import types
from collections.abc import Iterator
from logging.handlers import QueueHandler, QueueListener
from queue import Queue
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from logdna_client import LogDNAHandler
from logdna_client._devserver import DevServer
from logdna_client.contrib import get_request_context
from logdna_client.contrib.asgi import LogDNAMiddleware, RequestContextFilter
from logdna_client.testing import capture_lines
from tests._helpers_integrations import TIMEOUT, logger_with
from tests.helpers import make_logger
from tests.test_docs_frameworks import doc_block

log = logging.getLogger("asgi_app")


@pytest.fixture
def handler() -> Iterator[LogDNAHandler]:
    """A LogDNAHandler on the app's logger and on asgi.access."""
    handler = LogDNAHandler(url="http://127.0.0.1:9/logs/ingest")
    for name in ("asgi_app", "asgi.access"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    yield handler
    for name in ("asgi_app", "asgi.access"):
        logging.getLogger(name).removeHandler(handler)
    handler.close()


def make_app(n_concurrent: int = 1, **options: Any) -> Starlette:
    arrived = 0
    all_in = asyncio.Event()

    async def item(request: Request) -> PlainTextResponse:
        nonlocal arrived
        log.info("start %s", request.path_params["n"])
        arrived += 1
        if arrived == n_concurrent:
            all_in.set()
        await all_in.wait()  # every request is in flight before any goes on
        await asyncio.sleep(0)
        log.info("end %s", request.path_params["n"])
        return PlainTextResponse(request.state.request_id)

    async def fail(request: Request) -> PlainTextResponse:
        return PlainTextResponse("no", status_code=404)

    return Starlette(
        routes=[Route("/items/{n}", item), Route("/missing", fail)],
        middleware=[Middleware(LogDNAMiddleware, **options)],
    )


async def call(app: Any, path: str, headers: list[tuple[bytes, bytes]] | None = None,
               query: bytes = b"") -> tuple[int, dict[bytes, bytes], bytes]:  # fmt: skip
    """One HTTP request through the ASGI interface; returns status, headers, body."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query,
        "root_path": "", "headers": headers or [], "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], dict(start["headers"]), body


class TestRequestContext:
    @pytest.mark.usefixtures("handler")
    def test_concurrent_requests_keep_their_own_context(self) -> None:
        """50 requests in flight at once: every line carries its own request's fields."""
        n = 50
        app = make_app(n_concurrent=n)

        async def main() -> list[tuple[int, dict[bytes, bytes], bytes]]:
            return await asyncio.gather(
                *(call(app, f"/items/{i}", [(b"x-request-id", f"req-{i}".encode())])
                  for i in range(n))
            )  # fmt: skip

        with capture_lines() as lines:
            results = asyncio.run(main())
        assert [(200, f"req-{i}".encode()) for i in range(n)] == [(s, b) for s, _h, b in results]
        assert 2 * n == len(lines)
        # Interleaved: all the starts come before any end.
        assert all(line["line"].startswith("start") for line in lines[:n])
        for line in lines:
            i = line["line"].split()[1]
            assert f"req-{i}" == line["meta"]["request_id"]
            assert f"/items/{i}" == line["meta"]["http_path"]
            assert "GET" == line["meta"]["http_method"]
        assert {} == get_request_context()  # nothing left bound afterwards

    def test_request_id_made_and_echoed(self) -> None:
        """Without a usable incoming id, a new one is made, echoed, and unbound at the end."""
        app = make_app()

        async def main() -> tuple[tuple[int, dict[bytes, bytes], bytes], dict[str, Any]]:
            # Awaited in this task: the middleware binds in this task's context.
            result = await call(app, "/items/1", [(b"x-request-id", b"bad id with spaces")])
            return result, get_request_context()

        (status, headers, body), after = asyncio.run(main())
        assert {} == after  # the request's fields were unbound when it ended
        assert 200 == status
        assert 32 == len(headers[b"x-request-id"])
        assert headers[b"x-request-id"] == body

    @pytest.mark.usefixtures("handler")
    def test_access_log_has_status_and_no_query(self) -> None:
        """The access line has method, path and status; never the query string."""
        app = make_app(access_log=True)
        with capture_lines() as lines:
            asyncio.run(call(app, "/missing", query=b"token=s3cret"))
        (access,) = lines
        assert access["line"].startswith("GET /missing 404 (")
        assert "s3cret" not in str(access)
        assert 404 == access["meta"]["http_status"]
        assert isinstance(access["meta"]["duration_ms"], float)

    @pytest.mark.usefixtures("handler")
    def test_sync_endpoint_in_a_thread_sees_context(self) -> None:
        """A sync endpoint (Starlette runs it in a worker thread) logs with the context."""

        def sync_view(request: Request) -> PlainTextResponse:
            log.info("from a thread")
            return PlainTextResponse("ok")

        app = Starlette(
            routes=[Route("/sync", sync_view)], middleware=[Middleware(LogDNAMiddleware)]
        )
        with capture_lines() as lines:
            asyncio.run(call(app, "/sync", [(b"x-request-id", b"t-1")]))
        got = [(line["line"], line["meta"]["request_id"]) for line in lines]
        assert [("from a thread", "t-1")] == got

    def test_user_id_callable(self) -> None:
        """user_id= gives the user's id to the context."""
        seen: list[dict[str, Any]] = []

        async def endpoint(scope: Any, receive: Any, send: Any) -> None:
            seen.append(get_request_context())
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        app = LogDNAMiddleware(endpoint, user_id=lambda scope: 42)
        asyncio.run(call(app, "/"))
        assert "42" == seen[0]["user_id"]

    @pytest.mark.usefixtures("handler")
    def test_async_user_id_callable_is_awaited(self) -> None:
        """An ``async def`` user_id= (a user looked up in a database): its result is the
        id, on the endpoint's lines and the access line (the coroutine's repr, with its
        address, shipped as the id, and it was never awaited)."""
        calls: list[str] = []

        async def user_id(scope: Any) -> str:
            await asyncio.sleep(0)
            calls.append(scope["path"])
            return "u-42"

        async def endpoint(scope: Any, receive: Any, send: Any) -> None:
            log.info("in the endpoint")
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        app = LogDNAMiddleware(endpoint, user_id=user_id, access_log=True)
        with capture_lines() as lines:
            asyncio.run(call(app, "/me"))
        assert [("in the endpoint", "u-42"), ("GET /me 204", "u-42")] == [
            (line["line"].split(" (")[0], line["meta"]["user_id"]) for line in lines
        ]
        assert ["/me", "/me"] == calls  # at the request's start and its response's

    @pytest.mark.usefixtures("handler")
    def test_a_request_cancelled_before_it_answered(self) -> None:
        """Its client went away and the server cancelled it: the access line says "no
        response", not "None", and carries no http_status."""

        entered = asyncio.Event()

        async def endpoint(scope: Any, receive: Any, send: Any) -> None:
            entered.set()
            await asyncio.Event().wait()  # until cancelled

        app = LogDNAMiddleware(endpoint, access_log=True)

        async def main() -> None:
            task = asyncio.create_task(call(app, "/slow"))
            await entered.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        with capture_lines() as lines:
            asyncio.run(main())
        (access,) = lines
        assert access["line"].startswith("GET /slow no response (")
        assert "http_status" not in access["meta"]

    @pytest.mark.parametrize("on", ["queue_handler", "logdna_handler"])
    def test_with_a_queue_handler_in_front(self, on: str) -> None:
        """docs/stdlib.md: behind a QueueHandler the LogDNA handler runs on the listener's
        thread, where no request is bound; RequestContextFilter on the QueueHandler
        copies the context onto the record in the logging thread (on the LogDNA
        handler, it has nothing to copy)."""
        handler = LogDNAHandler(url="http://127.0.0.1:9/logs/ingest")
        queue: Queue[logging.LogRecord] = Queue()
        front = QueueHandler(queue)
        (front if on == "queue_handler" else handler).addFilter(RequestContextFilter())
        listener = QueueListener(queue, handler)
        logger = make_logger("asgi_app_queued", front)

        async def endpoint(scope: Any, receive: Any, send: Any) -> None:
            logger.info("queued")
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        app = LogDNAMiddleware(endpoint)
        with capture_lines() as lines:
            listener.start()
            try:
                asyncio.run(call(app, "/q", [(b"x-request-id", b"q-1")]))
            finally:
                listener.stop()
        handler.close()
        (line,) = lines
        shipped = (line["meta"].get("request_id"), line["meta"].get("http_path"))
        assert (("q-1", "/q") if on == "queue_handler" else (None, None)) == shipped

    def test_lifespan_passes_through(self) -> None:
        """Non-HTTP scopes reach the app untouched, with no context bound."""
        seen: list[Any] = []

        async def inner(scope: Any, receive: Any, send: Any) -> None:
            seen.append((scope["type"], get_request_context()))

        async def receive() -> dict[str, Any]:
            return {"type": "lifespan.startup"}

        async def send(message: Any) -> None:
            pass

        asyncio.run(LogDNAMiddleware(inner)({"type": "lifespan"}, receive, send))
        assert [("lifespan", {})] == seen


class TestExceptionHandlerLines:
    """Starlette's ``exception_handler(Exception)`` runs in its ServerErrorMiddleware,
    outside ours: with ``RequestContextFilter`` on the handler its lines carry the failed
    request's context all the same (docs/asgi.md)."""

    @staticmethod
    def lines_of(on_error: Any) -> dict[str, dict[str, Any]]:
        """The meta of each line ``on_error`` logs for a request whose endpoint raised,
        by the line's first line."""

        async def broken(request: Request) -> PlainTextResponse:
            raise RuntimeError("the endpoint failed")

        app = Starlette(
            routes=[Route("/broken", broken)],
            middleware=[Middleware(LogDNAMiddleware)],
            exception_handlers={Exception: on_error},
        )
        handler = LogDNAHandler(url="http://127.0.0.1:9/logs/ingest")
        handler.addFilter(RequestContextFilter())
        # ServerErrorMiddleware raises the exception again once its handler answered.
        with (
            logger_with("asgi_app", handler),
            capture_lines() as lines,
            pytest.raises(RuntimeError, match="the endpoint failed"),
        ):
            asyncio.run(call(app, "/broken", [(b"x-request-id", b"err-7")]))
        return {line["line"].split("\n")[0]: line["meta"] for line in lines}

    def test_async_handler_lines_with_and_without_exc_info(self) -> None:
        """In an ``async def`` handler (run in the ``except`` block) a line without
        ``exc_info`` carries the request's id, path and 500, as the traceback does."""

        async def on_error(request: Request, exc: Exception) -> PlainTextResponse:
            log.error("unhandled error on %s: %r", request.url.path, exc)
            log.exception("unhandled error")
            return PlainTextResponse("error", status_code=500)

        lines = self.lines_of(on_error)
        expected = ("err-7", "/broken", 500)
        for text in ("unhandled error on /broken: RuntimeError('the endpoint failed')",
                     "unhandled error"):  # fmt: skip
            meta = lines[text]
            assert expected == (meta.get("request_id"), meta.get("http_path"),
                                meta.get("http_status")), (text, meta)  # fmt: skip
        assert {} == get_request_context()

    def test_sync_handler_line_given_the_exception(self) -> None:
        """A plain ``def`` handler runs in a worker thread, outside the ``except`` block:
        there the line given the exception (``exc_info=exc``) carries the context."""

        def on_error(request: Request, exc: Exception) -> PlainTextResponse:
            log.error("unhandled error", exc_info=exc)
            return PlainTextResponse("error", status_code=500)

        meta = self.lines_of(on_error)["unhandled error"]
        assert ("err-7", 500) == (meta.get("request_id"), meta.get("http_status"))


class TestLifespanRecipe:
    def test_a_second_lifespan_still_ships(
        self, server: DevServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """docs/asgi.md's lifespan, run as written, twice in one process (each ``with
        TestClient(app)`` of a test suite runs it): the second app's lines arrive too.
        With the ``aclose()`` the page showed before, the first lifespan closed the
        handler's client for good and the second's lines were counted as after_close."""
        from starlette.testclient import TestClient

        # FastAPI is a Starlette app; the page's block imports it by that name.
        monkeypatch.setitem(sys.modules, "fastapi", types.SimpleNamespace(FastAPI=Starlette))
        handler = LogDNAHandler(url=server.url, flush_interval=0.05)
        namespace: dict[str, Any] = {"handler": handler}
        exec(doc_block("asgi.md", "py", "async def lifespan"), namespace)

        with logger_with("t.asgi.lifespan", handler) as log:

            async def view(request: Request) -> PlainTextResponse:
                log.info("request %d", request.path_params["n"])
                return PlainTextResponse("ok")

            for n in (1, 2):
                app = Starlette(routes=[Route("/{n:int}", view)], lifespan=namespace["lifespan"])
                with TestClient(app) as http:
                    assert 200 == http.get(f"/{n}").status_code
            assert server.wait_for_lines(2, TIMEOUT), server.lines
            assert ["request 1", "request 2"] == sorted(line["line"] for line in server.lines)
            assert 0 == handler.client.stats()["dropped"]["after_close"]
