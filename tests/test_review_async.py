"""Review: request context and asyncio, as users of ASGI apps, Django and Flask meet them.

Lines go to a real DevServer over a socket; requests go through the frameworks' own test
clients (Flask's and Django's run the app on the calling thread, as a sync worker does).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from logdna_client import LogDNAHandler
from logdna_client._context import get_request_context, reset_request_context
from logdna_client._devserver import DevServer
from tests._helpers_integrations import context_handler_on, delivered

APP_LOGGER = "t.review_async.app"


@pytest.fixture
def handler(server: DevServer) -> Iterator[LogDNAHandler]:
    names = (APP_LOGGER, "flask.access", "django.access", "asgi.access")
    with context_handler_on(server, names) as h:
        yield h


@pytest.fixture(autouse=True)
def _clean_context() -> Iterator[None]:
    """Each test starts, and leaves this thread, with no request context."""
    reset_request_context()
    yield
    reset_request_context()


class TestFlaskHookBeforeOurs:
    """A ``before_request`` hook of the app's, registered before ``LogDNA(app)``, that
    answers early (a login check's redirect, a maintenance page, a rate limit): Flask
    then skips the later hooks, ours among them, yet runs the ``after_request`` ones.
    A sync worker (gunicorn's) handles every request on one thread, as the test client
    does here."""

    def make_app(self, **options: Any) -> Any:
        flask = pytest.importorskip("flask")
        from logdna_client.contrib.flask import LogDNA

        app = flask.Flask("t_review_async_flask")
        log = logging.getLogger(APP_LOGGER)

        @app.before_request
        def maintenance() -> Any:
            if flask.request.path == "/closed":
                return "closed", 503
            return None

        @app.get("/hello")
        def hello() -> str:
            log.info("in view")
            return "ok"

        LogDNA(app, **options)
        return app

    def test_early_answer_leaves_no_context_on_the_thread(self) -> None:
        """Nothing of the early-answered request stays bound on the worker's thread."""
        client = self.make_app(user_id=lambda: "7").test_client()
        assert 503 == client.get("/closed").status_code
        assert {} == get_request_context()

    def test_next_request_gets_no_user_of_the_early_answered_one(
        self, server: DevServer, handler: LogDNAHandler
    ) -> None:
        """The next request (anonymous) logs no user id, nor status, of the one before."""
        users = iter(["7", None])
        client = self.make_app(user_id=lambda: next(users, None)).test_client()
        assert 503 == client.get("/closed").status_code
        assert 200 == client.get("/hello").status_code
        (line,) = [x for x in delivered(server, handler.client, 1) if x["line"] == "in view"]
        assert "user_id" not in line["meta"], line["meta"]
        assert "http_status" not in line["meta"], line["meta"]

    def test_early_answer_still_gets_its_request_id_and_access_line(
        self, server: DevServer, handler: LogDNAHandler
    ) -> None:
        """The early answer echoes a request id, and its access line has the request's fields."""
        client = self.make_app(access_log=True).test_client()
        response = client.get("/closed", headers={"X-Request-ID": "early-1"})
        assert 503 == response.status_code
        assert "early-1" == response.headers.get("X-Request-ID")
        (line,) = delivered(server, handler.client, 1)
        assert line["line"].startswith("GET /closed 503 ")
        meta = line["meta"]
        assert ("early-1", "/closed", 503) == (
            meta.get("request_id"), meta.get("http_path"), meta.get("http_status")
        )  # fmt: skip

    def test_url_value_preprocessor_abort_leaves_no_context(
        self, server: DevServer, handler: LogDNAHandler
    ) -> None:
        """A ``url_value_preprocessor`` that aborts runs before every ``before_request``
        hook: the answer still gets its request id, and nothing stays bound after it."""
        flask = pytest.importorskip("flask")
        app = self.make_app(user_id=lambda: "7", access_log=True)

        @app.url_value_preprocessor
        def refuse(endpoint: str | None, values: dict[str, Any] | None) -> None:
            if flask.request.args.get("refuse"):
                flask.abort(404)

        response = app.test_client().get("/hello?refuse=1", headers={"X-Request-ID": "pre-1"})
        assert 404 == response.status_code
        assert "pre-1" == response.headers.get("X-Request-ID")
        assert {} == get_request_context()
        (line,) = delivered(server, handler.client, 1)
        assert ("pre-1", 404) == (line["meta"].get("request_id"), line["meta"].get("http_status"))


class _Records(logging.Handler):
    """Keeps the messages of the records it sees, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def call(
    app: Any, path: str, headers: list[tuple[bytes, bytes]], extensions: Any = None
) -> tuple[int, dict[bytes, bytes]]:
    """One HTTP GET through the ASGI interface, as a server makes it (the client stays
    connected: a second ``receive`` waits; ``extensions``: those the server offers);
    returns the status and the headers."""

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": headers, "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80), "extensions": extensions or {},
    }  # fmt: skip
    sent: list[dict[str, Any]] = []
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.get_running_loop().create_future()  # connected until cancelled
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], dict(sent[0]["headers"])


class TestAsgiAccessLineAndBackgroundTasks:
    """Starlette runs a response's ``BackgroundTask`` after the last byte went out, in the
    request's task: the client has its answer, the request is over."""

    def app(self, job: Any) -> Any:
        from starlette.applications import Starlette
        from starlette.background import BackgroundTask
        from starlette.middleware import Middleware
        from starlette.responses import FileResponse, PlainTextResponse, StreamingResponse
        from starlette.routing import Route

        from logdna_client.contrib.asgi import LogDNAMiddleware

        async def signup(request: Any) -> Any:
            return PlainTextResponse("ok", background=BackgroundTask(job))

        async def chunks() -> Any:
            yield b"a"
            yield b"b"

        async def stream(request: Any) -> Any:
            return StreamingResponse(chunks(), background=BackgroundTask(job))

        async def file(request: Any) -> Any:
            return FileResponse(__file__, background=BackgroundTask(job))

        return Starlette(
            routes=[Route("/signup", signup), Route("/stream", stream), Route("/file", file)],
            middleware=[Middleware(LogDNAMiddleware, access_log=True)],
        )

    @pytest.mark.parametrize("path", ["/signup", "/stream", "/file"])
    def test_access_line_does_not_wait_for_the_background_task(
        self, path: str, server: DevServer, handler: LogDNAHandler
    ) -> None:
        """The access line is logged once the response is sent, before the background task
        runs (whose time it does not count), with the request's fields and status; the
        task's own lines carry the request's context too.

        Seen failing before the fix: the line came after the task, its time counted."""

        records = _Records()
        access = logging.getLogger("asgi.access")
        access.addHandler(records)
        seen_by_job: list[list[str]] = []

        async def job() -> None:
            seen_by_job.append(list(records.messages))
            logging.getLogger(APP_LOGGER).info("job ran")

        # A server that sends files itself: Starlette's FileResponse hands it the path,
        # in one message that ends the response.
        offered = {"http.response.pathsend": {}}
        try:
            status, headers = asyncio.run(
                call(self.app(job), path, [(b"x-request-id", b"bg-1")], offered)
            )
        finally:
            access.removeHandler(records)
        assert (200, b"bg-1") == (status, headers[b"x-request-id"])
        ((line_seen,),) = seen_by_job
        assert line_seen.startswith(f"GET {path} 200 "), line_seen
        lines = {x["line"].split(" (")[0]: x["meta"] for x in delivered(server, handler.client, 2)}
        meta = lines[f"GET {path} 200"]
        assert ("bg-1", path, 200) == (
            meta.get("request_id"), meta.get("http_path"), meta.get("http_status")
        ), meta  # fmt: skip
        meta = lines["job ran"]
        assert ("bg-1", path) == (meta.get("request_id"), meta.get("http_path")), meta
        if path == "/signup":  # (a StreamingResponse's start is sent from a task of its own)
            assert 200 == meta.get("http_status"), meta
        assert {} == get_request_context()


class TestAsgiErrorLinesOutsideTheMiddleware:
    """An exception that escapes the middleware is logged outside it, where no request
    context is bound: by the app's ``exception_handler(Exception)`` (Starlette runs it in
    its ServerErrorMiddleware, the outermost) and by the server (uvicorn's
    ``Exception in ASGI application`` on ``uvicorn.error``)."""

    def test_error_lines_carry_the_failed_requests_context(
        self, server: DevServer, handler: LogDNAHandler
    ) -> None:
        """With ``RequestContextFilter`` on the handler both error lines, tracebacks
        included, carry the request's id, path and the 500; the next line outside any
        request carries none."""
        from starlette.applications import Starlette
        from starlette.middleware import Middleware
        from starlette.responses import PlainTextResponse
        from starlette.routing import Route

        from logdna_client.contrib.asgi import LogDNAMiddleware

        log = logging.getLogger(APP_LOGGER)

        async def broken(request: Any) -> Any:
            raise RuntimeError("the view failed")

        async def unhandled(request: Any, exc: Exception) -> Any:
            log.exception("unhandled error")
            return PlainTextResponse("internal error", status_code=500)

        app = Starlette(
            routes=[Route("/broken", broken)],
            middleware=[Middleware(LogDNAMiddleware)],
            exception_handlers={Exception: unhandled},
        )

        async def serve() -> None:
            # What uvicorn's request task does with what the app raised.
            try:
                await call(app, "/broken", [(b"x-request-id", b"err-1")])
            except Exception as exc:
                log.error("Exception in ASGI application\n", exc_info=exc)

        asyncio.run(serve())
        log.info("outside")
        lines = {x["line"].split("\n")[0]: x for x in delivered(server, handler.client, 3)}
        for text in ("unhandled error", "Exception in ASGI application"):
            line = lines[text]
            assert "the view failed" in line["line"]  # the traceback
            meta = line["meta"]
            assert ("err-1", "/broken", 500) == (
                meta.get("request_id"), meta.get("http_path"), meta.get("http_status")
            ), (text, meta)  # fmt: skip
        assert "request_id" not in lines["outside"]["meta"]


class LazyAuthMiddleware:
    """What Django's AuthenticationMiddleware does: ``request.user`` a lazy object whose
    first look reads the session and the user from the database (``async_unsafe``, as
    Django's database calls are: in a coroutine they raise SynchronousOnlyOperation),
    and, where ``auser`` is asked for (Django 5.0+), ``request.auser`` for coroutines."""

    with_auser = True

    def __init__(self, get_response: Any) -> None:
        from asgiref.sync import iscoroutinefunction, markcoroutinefunction

        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        from django.utils.asyncio import async_unsafe
        from django.utils.functional import SimpleLazyObject

        class User:
            pk = 5
            is_authenticated = True

        request.user = SimpleLazyObject(async_unsafe(User))
        if self.with_auser:

            async def auser() -> Any:
                return User()

            request.auser = auser
        return self.get_response(request)


async def django_async_view(request: Any) -> Any:
    from asgiref.sync import sync_to_async
    from django.http import HttpResponse

    # The view reads its user as async code must; the middleware never loads it itself.
    if hasattr(request, "auser"):
        await request.auser()
    else:
        await sync_to_async(lambda: request.user.pk)()
    logging.getLogger(APP_LOGGER).info("in async view")
    return HttpResponse("ok")


def django_sync_view(request: Any) -> Any:
    from django.http import HttpResponse

    assert 5 == request.user.pk  # the view loads its user (on Django's thread under ASGI)
    logging.getLogger(APP_LOGGER).info("in sync view")
    return HttpResponse("ok")


def _urlpatterns() -> list[Any]:
    from django.urls import path

    return [path("async", django_async_view), path("sync", django_sync_view)]


class TestDjangoUserUnderAsgi:
    """Under ASGI the middleware chain runs in a coroutine, where the authenticated
    user's first look (a database read) is refused: ``user_id`` went missing from every
    line of an ASGI deployment, silently, while WSGI had it. The views here load their
    user (the middleware never does: tests/test_contrib_django_user.py), as a view does
    that needs it: the lines logged after that, and the access line, carry it."""

    @pytest.fixture(autouse=True)
    def _django(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
        pytest.importorskip("django")
        from tests.helpers import django_settings

        monkeypatch.setattr(sys.modules[__name__], "urlpatterns", _urlpatterns(), raising=False)
        middleware = [
            f"{__name__}.LazyAuthMiddleware",
            "logdna_client.contrib.django.LogDNARequestContextMiddleware",
        ]
        with django_settings(__name__, middleware), override_access_log():
            yield

    @pytest.mark.parametrize("with_auser", [True, False], ids=["auser", "django-4.2"])
    @pytest.mark.parametrize("view", ["async", "sync"])
    def test_user_id_on_view_and_access_lines(
        self,
        view: str,
        with_auser: bool,
        server: DevServer,
        handler: LogDNAHandler,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        from django.test import AsyncClient

        monkeypatch.setattr(LazyAuthMiddleware, "with_auser", with_auser)
        response = asyncio.run(AsyncClient().get(f"/{view}"))
        assert 200 == response.status_code
        lines = {x["line"].split(" (")[0]: x["meta"] for x in delivered(server, handler.client, 2)}
        for text in (f"in {view} view", f"GET /{view} 200"):
            assert "5" == lines[text].get("user_id"), (text, lines[text])


def override_access_log() -> Any:
    from django.test import override_settings

    return override_settings(LOGDNA_ACCESS_LOG=True)
