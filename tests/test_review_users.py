"""A demanding user's review: asyncio waits, the ASGI middleware, the test helpers and
the typed options, each checked the way an application would use them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import structlog
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Mount, Route

with warnings.catch_warnings():
    # Newer Starlette warns that its TestClient will move from httpx to httpx2; the
    # tests use it as users do, whichever client it runs on.
    warnings.filterwarnings("ignore", r".*httpx2", UserWarning)
    from starlette.testclient import TestClient

from logdna_client import Client, ConfigurationError, LogDNAHandler, _capture, _exit
from logdna_client._devserver import DevServer
from logdna_client._transport import Kind, Outcome
from logdna_client.contrib import get_request_context
from logdna_client.contrib.asgi import LogDNAMiddleware
from logdna_client.structlog import LogDNAProcessor
from logdna_client.testing import capture_lines
from tests._children import Child
from tests.helpers import make_logger, needs_speedups
from tests.test_client_api import _gated_client, _tick_then_release
from tests.test_sender import client_with

pytest_plugins = ["pytester"]


class TestAsyncWaits:
    def test_many_awaiting_tasks_leave_the_default_executor_free(self) -> None:
        """40 tasks awaiting aflush() against a service that does not answer yet: the
        loop's default executor (asyncio.to_thread, run_in_executor(None), getaddrinfo)
        still runs the app's work at once; no waiter holds one of its few threads."""
        client, transport = _gated_client()

        async def main() -> tuple[bool, list[bool]]:
            client.log("held")
            flushes = [asyncio.create_task(client.aflush(60)) for _ in range(40)]
            for _ in range(3):
                await asyncio.sleep(0)  # every task is waiting now
            loop = asyncio.get_running_loop()
            probe = loop.run_in_executor(None, lambda: "the app's own work")
            done, _ = await asyncio.wait({probe}, timeout=20)
            transport.release.set()
            return probe in done, await asyncio.gather(*flushes)

        try:
            probe_ran, flushed = asyncio.run(main())
        finally:
            transport.release.set()
            client.close(1)
        assert (True, [True] * 40) == (probe_ran, flushed)

    def test_timeout_counts_from_the_call(self) -> None:
        """aflush(timeout) gives up by its own timeout, however many other tasks wait:
        with the default executor down to one thread, 8 waiters still each end by it."""
        client, transport = _gated_client()

        async def main() -> list[bool]:
            loop = asyncio.get_running_loop()
            loop.set_default_executor(ThreadPoolExecutor(max_workers=1))
            client.log("held")
            return await asyncio.wait_for(
                asyncio.gather(*(client.aflush(2.0) for _ in range(8))), timeout=12
            )

        try:
            assert [False] * 8 == asyncio.run(main())
        finally:
            transport.release.set()
            client.close(1)


def _asgi_scope(path: str, kind: str = "http", **extra: Any) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": kind, "asgi": {"version": "3.0"}, "http_version": "1.1", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"x-request-id", b"req-7")], "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }  # fmt: skip
    if kind == "http":
        scope["method"] = "GET"
    scope.update(extra)
    return scope


@pytest.fixture
def asgi_logs() -> Iterator[logging.Logger]:
    """A LogDNAHandler on the app's logger and on asgi.access (the lines are captured)."""
    handler = LogDNAHandler(url="http://127.0.0.1:9/logs/ingest")
    loggers = [logging.getLogger(name) for name in ("review_asgi", "asgi.access")]
    saved = [(lg.level, lg.propagate) for lg in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    yield loggers[0]
    for logger, (level, propagate) in zip(loggers, saved, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
    handler.close()


class TestASGIMiddleware:
    @pytest.mark.usefixtures("asgi_logs")
    def test_unhandled_exception_is_a_500_in_the_access_line(self) -> None:
        """An endpoint that raises before it answers: the server answers 500, and the
        access line says so (as Django's and Flask's do), with http_status 500."""

        async def boom(scope: Any, receive: Any, send: Any) -> None:
            raise RuntimeError("boom")

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any) -> None:
            raise AssertionError("nothing is sent")

        app = LogDNAMiddleware(boom, access_log=True)
        with capture_lines() as lines, pytest.raises(RuntimeError, match="boom"):
            asyncio.run(app(_asgi_scope("/boom"), receive, send))
        (access,) = lines
        assert "GET /boom 500 (" == access["line"][: len("GET /boom 500 (")]
        assert (500, "req-7") == (access["meta"]["http_status"], access["meta"]["request_id"])

    @pytest.mark.usefixtures("asgi_logs")
    def test_starlette_testclient_500(self) -> None:
        """The same through Starlette (ServerErrorMiddleware answers the 500)."""

        async def boom(request: Request) -> PlainTextResponse:
            raise RuntimeError("boom")

        app = Starlette(
            routes=[Route("/boom", boom)],
            middleware=[Middleware(LogDNAMiddleware, access_log=True)],
        )
        with capture_lines() as lines, TestClient(app, raise_server_exceptions=False) as client:
            assert 500 == client.get("/boom").status_code
        (access,) = lines
        assert 500 == access["meta"]["http_status"]

    @pytest.mark.usefixtures("asgi_logs")
    def test_exception_after_the_response_started_keeps_its_status(self) -> None:
        """A stream that fails midway was a 200 to the client: the access line says 200."""

        async def half(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"a", "more_body": True})
            raise RuntimeError("midway")

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any) -> None:
            pass

        app = LogDNAMiddleware(half, access_log=True)
        with capture_lines() as lines, pytest.raises(RuntimeError, match="midway"):
            asyncio.run(app(_asgi_scope("/half"), receive, send))
        (access,) = lines
        assert 200 == access["meta"]["http_status"]
        assert access["line"].startswith("GET /half 200 (")

    def test_websocket_accept_echoes_the_request_id(self) -> None:
        """docs/asgi.md: the request id is echoed in the response; for a WebSocket, the
        handshake's response is the accept (whose headers ASGI 2.1 lets the app set)."""
        sent: list[dict[str, Any]] = []

        async def ws(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "websocket.accept", "headers": [(b"x-other", b"1")]})
            await send({"type": "websocket.close", "code": 1000})

        async def receive() -> dict[str, Any]:
            return {"type": "websocket.connect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        asyncio.run(LogDNAMiddleware(ws)(_asgi_scope("/ws", "websocket"), receive, send))
        assert [(b"x-other", b"1"), (b"x-request-id", b"req-7")] == sent[0]["headers"]


class TestOptions:
    @pytest.mark.parametrize("cls", [LogDNAHandler, LogDNAProcessor])
    def test_misspelled_level_beside_client_names_level(self, cls: type) -> None:
        """docs/configuration.md: a misspelled option names the closest valid one; also
        beside client=, where level is the one option taken (not "pass either...")."""
        client = Client(url="http://127.0.0.1:9/logs/ingest")
        try:
            with pytest.raises(
                ConfigurationError, match="levle: not an option; did you mean 'level'"
            ):
                cls(client=client, levle="INFO")
        finally:
            client.close(0)


@pytest.mark.usefixtures("handle_path")
class TestCapture:
    def test_queued_before_still_delivered_inside_never_sent(self, server: DevServer) -> None:
        """docs/testing.md: lines queued before the capture are still delivered; those
        logged inside, from 4 threads, on the C or the Python path, are captured, in
        each thread's order, and none reaches the server; after the capture, ``lines``
        holds them and no more."""
        handler = LogDNAHandler(url=server.url, flush_interval=3600)
        log = make_logger("review.capture", handler)
        log.info("queued before")  # the sender runs; this waits for a batch or a flush
        with capture_lines() as lines:
            threads = [
                threading.Thread(target=lambda k=k: [log.info("t%d %d", k, i) for i in range(250)])
                for k in range(4)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert handler.client.flush(10)  # the one queued before goes; none of these
            assert ["queued before"] == [line["line"] for line in server.lines]
        log.info("after")
        assert handler.client.flush(10)
        handler.close()
        assert 1000 == len(lines)
        for k in range(4):
            assert [f"t{k} {i}" for i in range(250)] == [
                line["line"] for line in lines if line["line"].startswith(f"t{k} ")
            ]
        assert ["queued before", "after"] == [line["line"] for line in server.lines]

    def test_structlog_cached_logger_built_before(self) -> None:
        """A structlog logger cached on first use before the capture is captured too."""
        processor = LogDNAProcessor(url="http://127.0.0.1:9/logs/ingest")
        log = structlog.wrap_logger(
            structlog.testing.ReturnLogger(),
            processors=[structlog.processors.add_log_level, processor],
            cache_logger_on_first_use=True,
        )
        log.info("before, to the void port")  # cached now; queued for a server never there
        with capture_lines() as outer, capture_lines() as inner:
            log.warning("job retried", job_id=12)
        processor.client.close(0)
        assert outer == inner
        assert [("job retried", "WARNING", {"job_id": 12})] == [
            (line["line"], line["level"], line["meta"]) for line in outer
        ]

    def test_no_real_key_needed_but_some_key_is(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """docs/testing.md: no server and no real key are needed (any string, or a
        loopback url); a handler that would need a key still wants one, capture or not."""
        monkeypatch.delenv("LOGDNA_INGESTION_KEY", raising=False)
        monkeypatch.delenv("LOGDNA_URL", raising=False)
        with capture_lines() as lines:
            any_key = LogDNAHandler(key="not-used-in-tests")
            loopback = LogDNAHandler(url="http://127.0.0.1:9/logs/ingest")
            with pytest.raises(ConfigurationError, match="no ingestion key"):
                LogDNAHandler()
            for handler in (any_key, loopback):
                make_logger("review.keys", handler).info("x")
        for handler in (any_key, loopback):
            handler.close()
        assert ["x", "x"] == [line["line"] for line in lines]


class TestAsyncUses:
    @pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout is 3.11's")
    def test_asyncio_timeout_cancels_the_wait_at_once(self) -> None:
        """``async with asyncio.timeout(...)`` around aflush(60) on a service that does
        not answer: TimeoutError by the outer timeout, and the loop free to go on."""
        client, transport = _gated_client()

        async def main() -> str:
            client.log("held")
            try:
                async with asyncio.timeout(0.2):  # type: ignore[attr-defined,unused-ignore]
                    await client.aflush(60)
            except TimeoutError:
                return "timed out"
            return "flushed"

        try:
            assert "timed out" == asyncio.run(main())
        finally:
            transport.release.set()
            client.close(5)
        assert ["held"] == transport.delivered

    def test_signal_handler_of_the_loop_closes(self, server: DevServer) -> None:
        """A SIGUSR1 handler added with loop.add_signal_handler logs and awaits aclose():
        the line is delivered and the client closed, the loop running throughout."""
        client = Client(url=server.url, flush_interval=3600)

        async def main() -> None:
            loop = asyncio.get_running_loop()
            closed = asyncio.Event()

            async def on_signal() -> None:
                client.log("bye")
                await client.aclose(10)
                closed.set()

            tasks: list[asyncio.Task[None]] = []
            loop.add_signal_handler(
                signal.SIGUSR1, lambda: tasks.append(loop.create_task(on_signal()))
            )
            try:
                os.kill(os.getpid(), signal.SIGUSR1)
                await asyncio.wait_for(closed.wait(), 30)
            finally:
                loop.remove_signal_handler(signal.SIGUSR1)

        asyncio.run(main())
        assert client.closed
        assert ["bye"] == [line["line"] for line in server.lines]

    def test_many_tasks_aclose_and_aflush_at_once(self, server: DevServer) -> None:
        """Five tasks awaiting aclose() and one aflush(), at once: every line delivered
        once, the client closed, later lines counted as after_close."""
        client = Client(url=server.url, flush_interval=3600)
        for i in range(100):
            client.log(f"line {i}")

        async def main() -> None:
            await asyncio.gather(*(client.aclose(10) for _ in range(5)), client.aflush(10))

        asyncio.run(main())
        assert [f"line {i}" for i in range(100)] == [line["line"] for line in server.lines]
        assert not client.log("late")
        assert 1 == client.stats()["dropped"]["after_close"]

    def test_loop_in_another_thread_and_a_refused_key(self) -> None:
        """aflush() from a loop in another thread, the key refused (401): False by its
        timeout; aclose() then ends by its own, the line counted as lost at shutdown."""
        refused = Outcome(Kind.AUTH, 401, detail="refused")
        client, _, _ = client_with(lambda lines, gz: refused, flush_interval="0.01")
        client.log("refused line")
        got: list[bool] = []
        worker = threading.Thread(target=lambda: got.append(asyncio.run(client.aflush(0.5))))
        worker.start()
        worker.join(60)
        asyncio.run(client.aclose(0.5))
        assert [False] == got
        assert client.closed
        assert 1 == client.stats()["dropped"]["shutdown"]

    def test_asyncio_run_ending_with_lines_queued(self, server: DevServer) -> None:
        """asyncio.run returns with lines queued and nothing awaited: the process's end
        delivers them (within shutdown_timeout)."""
        child = Child(
            """
            import asyncio
            async def main():
                for i in range(50):
                    log.info("async %d", i)
            asyncio.run(main())
            """,
            server.url,
            flush_interval="3600",
        )
        code, _ = child.finish(timeout=60)
        assert 0 == code, child.stderr
        assert [f"async {i}" for i in range(50)] == [line["line"] for line in server.lines]


_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain")],
}
_BODY = {"type": "http.response.body", "body": b"ok"}


async def _constant_app(scope: Any, receive: Any, send: Any) -> None:
    """A minimal ASGI app that sends the same module-level messages every time."""
    await send(_START)
    await send(_BODY)


class TestASGIMessages:
    def test_app_message_reused_each_request_echoes_each_id(self) -> None:
        """An app that sends one constant start message: each response echoes its own
        request's id, and the app's message is left as it was (not the first id for all)."""
        app = LogDNAMiddleware(_constant_app)
        before = list(_START["headers"])  # type: ignore[call-overload]
        echoed = []
        for rid in (b"first", b"second"):
            sent: list[dict[str, Any]] = []

            async def send(message: dict[str, Any], sent: list[dict[str, Any]] = sent) -> None:
                sent.append(message)

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": b"", "more_body": False}

            scope = _asgi_scope("/c", headers=[(b"x-request-id", rid)])
            asyncio.run(app(scope, receive, send))
            echoed.append(dict(sent[0]["headers"])[b"x-request-id"])
        assert [b"first", b"second"] == echoed
        assert before == _START["headers"]


class TestCaptureEnd:
    def test_a_line_being_captured_as_an_inner_capture_ends(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A thread's line on its way into the captures as an inner capture ends (an
        outer one still open): once the inner block has ended, its list no longer
        grows; the line is in it, or not, by then."""
        entered, release = threading.Event(), threading.Event()
        real = _capture.to_dict

        def slow_to_dict(data: bytes) -> dict[str, Any]:
            entered.set()
            release.wait(30)
            return real(data)

        client = Client(url="http://127.0.0.1:9/logs/ingest")
        at_exit: list[int] = []
        exited = threading.Event()
        with capture_lines() as outer:
            inner_cm = capture_lines()
            inner = inner_cm.__enter__()
            monkeypatch.setattr(_capture, "to_dict", slow_to_dict)
            logger = threading.Thread(target=client.log, args=("racing",))
            logger.start()
            assert entered.wait(30)

            def end_inner() -> None:
                inner_cm.__exit__(None, None, None)
                at_exit.append(len(inner))
                exited.set()

            ender = threading.Thread(target=end_inner)
            ender.start()
            exited.wait(2)  # the old code ended at once; the new one waits for the line
            release.set()
            ender.join(30)
            logger.join(30)
            monkeypatch.setattr(_capture, "to_dict", real)
        client.close(0)
        assert [len(inner)] == at_exit
        assert ["racing"] == [line["line"] for line in outer]

    def test_a_line_logged_while_one_is_being_captured(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A line logged on the same thread while another is being captured (a finalizer
        that a collection there runs, or a signal handler) is captured too, no hang."""
        real = _capture.to_dict
        client = Client(url="http://127.0.0.1:9/logs/ingest")

        def to_dict_with_a_finalizer(data: bytes) -> dict[str, Any]:
            if b"outer line" in data:
                client.log("from a finalizer")
            return real(data)

        done = threading.Event()
        with capture_lines() as lines:
            monkeypatch.setattr(_capture, "to_dict", to_dict_with_a_finalizer)
            worker = threading.Thread(target=lambda: (client.log("outer line"), done.set()))
            worker.start()
            assert done.wait(30)
            monkeypatch.setattr(_capture, "to_dict", real)
        client.close(0)
        assert ["from a finalizer", "outer line"] == [line["line"] for line in lines]


class _Ada(AuthenticationBackend):
    async def authenticate(self, conn: Any) -> tuple[AuthCredentials, SimpleUser]:
        return AuthCredentials(["authenticated"]), SimpleUser("ada")


class TestASGIUser:
    @pytest.mark.usefixtures("asgi_logs")
    @pytest.mark.parametrize("auth_first", [True, False])
    def test_user_id_follows_the_documented_order(self, auth_first: bool) -> None:
        """docs/asgi.md: with AuthenticationMiddleware listed before LogDNAMiddleware the
        endpoint's lines carry user_id; listed after, only the access line does."""
        log = logging.getLogger("review_asgi")

        async def endpoint(request: Request) -> PlainTextResponse:
            log.info("in endpoint")
            return PlainTextResponse("ok")

        middleware = [
            Middleware(AuthenticationMiddleware, backend=_Ada()),
            Middleware(LogDNAMiddleware, access_log=True),
        ]
        if not auth_first:
            middleware.reverse()
        app = Starlette(routes=[Route("/", endpoint)], middleware=middleware)
        with capture_lines() as lines, TestClient(app) as client:
            assert 200 == client.get("/").status_code
        got = [(line["line"].split(" (")[0], line["meta"].get("user_id")) for line in lines]
        assert [("in endpoint", "ada" if auth_first else None), ("GET / 200", "ada")] == got


class TestASGIHolds:
    @pytest.mark.usefixtures("asgi_logs")
    def test_client_gone_mid_response(self) -> None:
        """The server's send fails once the client is gone, mid-body: the error goes on
        to the server, the access line says what was answered (200), nothing stays bound."""

        async def stream(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for _ in range(3):
                await send({"type": "http.response.body", "body": b"x", "more_body": True})

        sent = 0

        async def send(message: Any) -> None:
            nonlocal sent
            sent += 1
            if sent == 3:
                raise OSError("client disconnected")

        async def receive() -> dict[str, Any]:
            return {"type": "http.disconnect"}

        async def main() -> dict[str, Any]:
            with pytest.raises(OSError, match="disconnected"):
                await LogDNAMiddleware(stream, access_log=True)(_asgi_scope("/s"), receive, send)
            return get_request_context()

        with capture_lines() as lines:
            left_bound = asyncio.run(main())
        assert {} == left_bound
        (access,) = lines
        assert (200, "req-7") == (access["meta"]["http_status"], access["meta"]["request_id"])

    def test_lifespan_state_is_not_written(self) -> None:
        """With a lifespan that yields state, each request's state holds its own
        request_id; the app's lifespan state is left as it was."""
        shared = {"db": "pool"}

        @contextlib.asynccontextmanager
        async def lifespan(app: Any) -> AsyncIterator[dict[str, str]]:
            yield shared

        async def endpoint(request: Request) -> PlainTextResponse:
            return PlainTextResponse(f"{request.state.db} {request.state.request_id}")

        app = Starlette(
            routes=[Route("/", endpoint)],
            middleware=[Middleware(LogDNAMiddleware)],
            lifespan=lifespan,
        )
        with TestClient(app) as client:
            texts = [client.get("/", headers={"X-Request-ID": rid}).text for rid in ("a", "b")]
        assert ["pool a", "pool b"] == texts
        assert {"db": "pool"} == shared


class TestAsyncWith:
    def test_async_with_delivers_and_closes(self) -> None:
        """``async with Client(...)`` closes with aclose() at the end of the block: the
        line is delivered while the loop keeps running, and the client is closed."""
        client, transport = _gated_client()

        async def main() -> int:
            async with client as entered:
                assert entered is client
                client.log("in the block")
                ticks = asyncio.create_task(_tick_then_release(transport, 50))
            return await ticks

        assert 50 == asyncio.run(main())
        assert client.closed
        assert ["in the block"] == transport.delivered


def _options(name: str, value: str) -> Any:
    """Options as dictConfig gives them: the one named, as a string (typed Any: the
    TypedDict wants each option's own type)."""
    return {"url": "http://127.0.0.1:9/logs/ingest", name: value}


class TestConfigurationDoc:
    @pytest.mark.parametrize(
        ("name", "lowest", "below", "highest", "above"),
        [
            ("flush_interval", "0.01", "0.009", "3600", "3601"),
            ("max_batch_bytes", "1KiB", "1023", "8MiB", "8388609"),
            ("block_timeout", "0", "-0.5", "60", "61"),
            ("request_timeout", "0.1", "0.09", "600", "601"),
            ("shutdown_timeout", "0", "-1", "600", "601"),
            ("retry_max_backoff", "0.1", "0.09", "3600", "3601"),
            ("max_line_length", "64", "63", "1MiB", "1048577"),
        ],
    )
    def test_the_tables_ranges(
        self, name: str, lowest: str, below: str, highest: str, above: str
    ) -> None:
        """docs/configuration.md's ranges: both ends taken (as strings, as dictConfig
        gives them), a value just outside refused with a ConfigurationError naming it."""
        for good in (lowest, highest):
            Client(**_options(name, good)).close(0)
        for bad in (below, above):
            with pytest.raises(ConfigurationError, match=f"^{name}: "):
                Client(**_options(name, bad))

    @needs_speedups
    def test_pure_python_env_when_built(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """LOGDNA_CLIENT_PURE_PYTHON=1 as a handler is built keeps that handler (and
        only that one) off the C extension, for good; both ship the same lines."""
        monkeypatch.setenv("LOGDNA_CLIENT_PURE_PYTHON", "1")
        pure = LogDNAHandler(url="http://127.0.0.1:9/logs/ingest")
        monkeypatch.delenv("LOGDNA_CLIENT_PURE_PYTHON")
        native = LogDNAHandler(url="http://127.0.0.1:9/logs/ingest")
        assert (None, False) == (pure._fast, native._fast is None)
        with capture_lines() as lines:
            for handler in (pure, native):
                make_logger("review.pure", handler).warning("same %s", 1, extra={"a": [1]})
        for handler in (pure, native):
            handler.close()
        assert lines[0] == {**lines[1], "timestamp": lines[0]["timestamp"]}


class TestFixtureInAUserSuite:
    def test_nested_threads_built_inside_and_a_failing_test(
        self, pytester: pytest.Pytester
    ) -> None:
        """In a user's suite: logdna_lines with capture_lines() nested inside, a thread
        logging, a handler built after the fixture opened; a test that fails inside
        leaves no capture open for the next test, whose lines ship again."""
        pytester.makepyfile(
            """
            import logging, threading
            from logdna_client import LogDNAHandler
            from logdna_client._capture import active
            from logdna_client.testing import capture_lines

            log = logging.getLogger("suite")
            log.setLevel(logging.INFO)
            log.propagate = False

            def test_nested_and_thread(logdna_lines):
                handler = LogDNAHandler(url="http://127.0.0.1:9/logs/ingest")
                log.addHandler(handler)
                try:
                    with capture_lines() as inner:
                        t = threading.Thread(target=log.info, args=("from a thread",))
                        t.start()
                        t.join(30)
                    log.info("outer only")
                finally:
                    log.removeHandler(handler)
                    handler.close()
                assert ["from a thread"] == [l["line"] for l in inner]
                assert ["from a thread", "outer only"] == [l["line"] for l in logdna_lines]

            def test_fails_inside(logdna_lines):
                raise AssertionError("a failing test")

            def test_next_test_has_no_capture():
                assert not active()
            """
        )
        result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
        result.assert_outcomes(passed=2, failed=1)


class TestAsyncGracefulShutdown:
    def test_sigterm_through_the_loops_handler_then_aclose(self, server: DevServer) -> None:
        """An asyncio service's graceful shutdown: SIGTERM handled by a handler added with
        loop.add_signal_handler (after the library's was installed), then ``await
        client.aclose()``: every line delivered, and the process ends as the app says
        (exit 0), not by the signal."""
        child = Child(
            """
            import asyncio
            async def main():
                loop = asyncio.get_running_loop()
                stop = asyncio.Event()
                loop.add_signal_handler(signal.SIGTERM, stop.set)
                for i in range(20):
                    log.info("serving %d", i)
                mark("ready")
                await stop.wait()
                log.info("stopping")
                await client.aclose(10)
                mark("closed")
            asyncio.run(main())
            """,
            server.url,
            flush_interval="3600",
        )
        child.expect("ready")
        child.kill(signal.SIGTERM)
        code, _ = child.finish(timeout=60)
        assert 0 == code, child.stderr
        expected = [f"serving {i}" for i in range(20)] + ["stopping"]
        assert expected == [line["line"] for line in server.lines]
        assert "@@closed" in child.stderr


class TestASGINested:
    @pytest.mark.usefixtures("asgi_logs")
    def test_mounted_app_with_its_own_middleware_one_request_id(self) -> None:
        """A sub-app mounted with its own LogDNAMiddleware (both access_log=True): the
        request keeps one id (the one echoed, in state and on every line), and one
        access line is logged, not two with two ids."""
        log = logging.getLogger("review_asgi")

        async def endpoint(request: Request) -> PlainTextResponse:
            log.info("in the sub-app")
            return PlainTextResponse(request.state.request_id)

        sub = Starlette(
            routes=[Route("/x", endpoint)],
            middleware=[Middleware(LogDNAMiddleware, access_log=True)],
        )
        app = Starlette(
            routes=[Mount("/api", sub)],
            middleware=[Middleware(LogDNAMiddleware, access_log=True)],
        )
        with capture_lines() as lines, TestClient(app) as client:
            response = client.get("/api/x")
        echoed = response.headers.get_list("x-request-id")
        assert [response.text] == echoed
        assert ["in the sub-app", "GET /api/x 200"] == [
            line["line"].split(" (")[0] for line in lines
        ]
        assert {response.text} == {line["meta"]["request_id"] for line in lines}


class TestCaptureAndANewClient:
    """A client built on one thread as a capture starts or ends on another: the
    moment between its pipeline's check and its registration with the process."""

    def test_capture_starting_as_a_client_is_built(
        self, monkeypatch: pytest.MonkeyPatch, server: DevServer
    ) -> None:
        """The capture starts just before the client registers: its lines are
        captured, not sent."""
        real = _exit.register
        opened: list[Any] = []

        def register_as_a_capture_starts(client: Client) -> None:
            cm = capture_lines()
            opened.append((cm, cm.__enter__()))
            real(client)

        monkeypatch.setattr(_exit, "register", register_as_a_capture_starts)
        client = Client(url=server.url)
        monkeypatch.setattr(_exit, "register", real)
        ((cm, lines),) = opened
        try:
            client.log("during the capture")
        finally:
            cm.__exit__(None, None, None)
        assert client.flush(10)
        client.close(5)
        assert (["during the capture"], []) == ([line["line"] for line in lines], server.lines)

    def test_capture_ending_as_a_client_is_built(
        self, monkeypatch: pytest.MonkeyPatch, server: DevServer
    ) -> None:
        """The capture ends just before the client registers: its lines ship, rather
        than going, for good, to a capture no longer there."""
        real = _exit.register
        cm = capture_lines()
        cm.__enter__()

        def register_as_the_capture_ends(client: Client) -> None:
            cm.__exit__(None, None, None)
            real(client)

        monkeypatch.setattr(_exit, "register", register_as_the_capture_ends)
        client = Client(url=server.url)
        monkeypatch.setattr(_exit, "register", real)
        client.log("after the capture")
        assert client.flush(10)
        client.close(5)
        assert ["after the capture"] == [line["line"] for line in server.lines]


class TestASGIConcurrentStreams:
    @pytest.mark.usefixtures("asgi_logs")
    def test_streaming_responses_at_once_keep_their_own_fields(self) -> None:
        """30 streaming responses in flight at once (Starlette sends each from a task of
        its own): every line, access lines included, carries its own request's id, path
        and status."""
        log = logging.getLogger("review_asgi")
        n = 30
        all_in = asyncio.Event()
        arrived = 0

        async def stream(request: Request) -> StreamingResponse:
            nonlocal arrived
            n_ = request.path_params["n"]
            arrived += 1
            if arrived == n:
                all_in.set()

            async def body() -> AsyncIterator[bytes]:
                await all_in.wait()
                log.info("streaming %s", n_)
                yield b"x"

            return StreamingResponse(body(), status_code=200 + int(n_) % 2)

        app = Starlette(
            routes=[Route("/s/{n}", stream)],
            middleware=[Middleware(LogDNAMiddleware, access_log=True)],
        )

        async def one(i: int) -> None:
            async def receive() -> dict[str, Any]:
                await all_in.wait()
                return {"type": "http.disconnect"}

            async def send(message: Any) -> None:
                pass

            scope = _asgi_scope(f"/s/{i}", headers=[(b"x-request-id", f"r-{i}".encode())])
            await app(scope, receive, send)

        async def main() -> None:
            await asyncio.gather(*(one(i) for i in range(n)))

        with capture_lines() as lines:
            asyncio.run(main())
        assert 2 * n == len(lines)
        for line in lines:
            i = int(line["meta"]["http_path"].rsplit("/", 1)[1])
            assert (f"r-{i}", 200 + i % 2) == (
                line["meta"]["request_id"], line["meta"]["http_status"]
            )  # fmt: skip
