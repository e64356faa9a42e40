"""Django: LogDNARequestContextMiddleware puts request context into every line's meta.

Requests go through Django's test clients (WSGI and ASGI); lines go to a real
DevServer over a socket.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

django = pytest.importorskip("django")

from asgiref.sync import async_to_sync  # noqa: E402
from django.core.exceptions import BadRequest, PermissionDenied, SuspiciousOperation  # noqa: E402
from django.http import HttpRequest, HttpResponse, HttpResponseNotFound  # noqa: E402
from django.test import AsyncClient, Client, override_settings  # noqa: E402
from django.urls import path  # noqa: E402

from logdna_client import LogDNAHandler  # noqa: E402
from logdna_client._devserver import DevServer  # noqa: E402
from logdna_client.contrib.django import RequestContextFilter  # noqa: E402
from tests._helpers_integrations import (  # noqa: E402
    REPO_ROOT,
    _only_handler,
    context_handler_on,
    delivered,
    handler_for,
)
from tests.helpers import django_settings  # noqa: E402

app_log = logging.getLogger("t.django.app")
MIDDLEWARE = [
    f"{__name__}.FakeAuthMiddleware",
    "logdna_client.contrib.django.LogDNARequestContextMiddleware",
]


class FakeUser:
    def __init__(self, pk: int | None) -> None:
        self.pk = pk
        self.is_authenticated = pk is not None


class FakeAuthMiddleware:
    """Stands in for AuthenticationMiddleware: the X-Test-User header picks the user."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        raw = request.META.get("HTTP_X_TEST_USER")
        request.user = FakeUser(int(raw) if raw else None)  # type: ignore[attr-defined]
        return self.get_response(request)


def hello(request: HttpRequest, n: int) -> HttpResponse:
    app_log.info("in view", extra={"order": 7})
    return HttpResponse("ok")


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("view failed")


def missing(request: HttpRequest) -> HttpResponse:
    return HttpResponseNotFound("nope")


def denied(request: HttpRequest) -> HttpResponse:
    raise PermissionDenied


def bad(request: HttpRequest) -> HttpResponse:
    raise BadRequest("bad input")


def suspicious(request: HttpRequest) -> HttpResponse:
    raise SuspiciousOperation("odd input")


class FailsAfterTheViewMiddleware:
    """A middleware listed before ours whose work on the response fails: Django then
    answers 500 for a request our middleware saw answered 200."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        self.get_response(request)
        raise RuntimeError("post-processing failed")


async def async_hello(request: HttpRequest) -> HttpResponse:
    app_log.info("in async view")
    return HttpResponse("ok")


urlpatterns = [
    path("hello/<int:n>", hello),
    path("boom", boom),
    path("missing", missing),
    path("async", async_hello),
    path("denied", denied),
    path("bad", bad),
    path("suspicious", suspicious),
]


@pytest.fixture(scope="module", autouse=True)
def _django() -> Iterator[None]:
    with django_settings(__name__, MIDDLEWARE):
        yield


@pytest.fixture
def handler(server: DevServer) -> Iterator[LogDNAHandler]:
    """Our handler (with the context filter) on the app logger and on django.request."""
    with context_handler_on(server, ("t.django.app", "django.request")) as h:
        yield h


class TestMiddleware:
    def test_context_in_meta(self, server: DevServer, handler: LogDNAHandler) -> None:
        """A line logged in a view carries request id, method, path and user id."""
        response = Client().get("/hello/3", HTTP_X_REQUEST_ID="req-abc", HTTP_X_TEST_USER="42")
        assert 200 == response.status_code
        assert "req-abc" == response["X-Request-ID"]
        (line,) = delivered(server, handler.client, 1)
        assert "in view" == line["line"]
        assert {
            "order": 7,
            "request_id": "req-abc",
            "http_method": "GET",
            "http_path": "/hello/3",
            "user_id": "42",
            "name": "t.django.app",
        } == line["meta"]

    def test_generated_request_id_and_anonymous_user(
        self, server: DevServer, handler: LogDNAHandler
    ) -> None:
        """Without a header a request id is generated and echoed; anonymous means no user_id."""
        response = Client().post("/hello/1")
        (line,) = delivered(server, handler.client, 1)
        meta = line["meta"]
        assert 32 == len(meta["request_id"])
        assert meta["request_id"] == response["X-Request-ID"]
        assert "POST" == meta["http_method"]
        assert "user_id" not in meta

    def test_bad_request_id_header_is_replaced(
        self, server: DevServer, handler: LogDNAHandler
    ) -> None:
        """A request id header that is not a sane token is not trusted."""
        Client().get("/hello/1", HTTP_X_REQUEST_ID="x" * 500)
        (line,) = delivered(server, handler.client, 1)
        assert "x" * 500 != line["meta"]["request_id"]

    def test_context_does_not_leak_between_requests(
        self, server: DevServer, handler: LogDNAHandler
    ) -> None:
        """Each request has its own id, and nothing is bound after it."""
        client = Client()
        client.get("/hello/1", HTTP_X_REQUEST_ID="first")
        client.get("/hello/2", HTTP_X_REQUEST_ID="second")
        app_log.info("outside")
        first, second, outside = delivered(server, handler.client, 3)
        assert ("first", "second") == (
            first["meta"]["request_id"],
            second["meta"]["request_id"],
        )
        assert {"name": "t.django.app"} == outside["meta"]  # the logger, no context

    def test_unhandled_exception_line_has_context(
        self, server: DevServer, handler: LogDNAHandler
    ) -> None:
        """django.request's "Internal Server Error" line carries the request context."""
        response = Client(raise_request_exception=False).get("/boom", HTTP_X_REQUEST_ID="r500")
        assert 500 == response.status_code
        (line,) = delivered(server, handler.client, 1)
        assert line["line"].startswith("Internal Server Error: /boom")
        assert "RuntimeError: view failed" in line["line"]
        assert "ERROR" == line["level"]
        assert "r500" == line["meta"]["request_id"]
        assert 500 == line["meta"]["status_code"]

    def test_returned_404_line_has_context_and_status(
        self, server: DevServer, handler: LogDNAHandler
    ) -> None:
        """A 4xx returned by a view is logged after the middleware; it still has context."""
        response = Client().get("/missing", HTTP_X_REQUEST_ID="r404")
        assert 404 == response.status_code
        (line,) = delivered(server, handler.client, 1)
        assert "WARNING" == line["level"]
        assert ("r404", 404) == (line["meta"]["request_id"], line["meta"]["http_status"])

    def test_async_view_under_asgi(self, server: DevServer, handler: LogDNAHandler) -> None:
        """Under ASGI (async middleware chain) the context reaches the view's lines too."""
        response = async_to_sync(AsyncClient().get)("/async", headers={"X-Request-ID": "as-1"})
        assert 200 == response.status_code
        assert "as-1" == response["X-Request-ID"]
        (line,) = delivered(server, handler.client, 1)
        assert "in async view" == line["line"]
        assert "as-1" == line["meta"]["request_id"]

    def test_access_log(self, server: DevServer, handler: LogDNAHandler) -> None:
        """LOGDNA_ACCESS_LOG adds one line per request, with status and duration."""
        access = logging.getLogger("django.access")
        saved = access.handlers[:], access.level, access.propagate
        access.handlers[:], access.propagate = [handler], False
        access.setLevel(logging.INFO)
        try:
            with override_settings(LOGDNA_ACCESS_LOG=True):
                Client().get("/hello/5", HTTP_X_REQUEST_ID="acc")
            view_line, access_line = delivered(server, handler.client, 2)
        finally:
            access.handlers[:], access.level, access.propagate = saved
        assert access_line["line"].startswith("GET /hello/5 200 (")
        assert 200 == access_line["meta"]["http_status"]
        assert "acc" == access_line["meta"]["request_id"]
        assert isinstance(access_line["meta"]["duration_ms"], float)
        assert "http_status" not in view_line["meta"]


@pytest.fixture
def django_filter_handler(server: DevServer) -> Iterator[LogDNAHandler]:
    """Our handler with the Django page's filter (logdna_client.contrib.django's) on
    Django's loggers of request errors."""
    handler = handler_for(server)
    handler.addFilter(RequestContextFilter())
    with _only_handler(("django.request", "django.security"), handler, logging.INFO):
        yield handler


class TestDjangoExceptionLines:
    """The lines Django logs for the response it makes of an exception are logged
    inside the middleware chain, before the middleware sees the status; Django passes
    it as ``status_code`` (django.utils.log.log_response)."""

    @pytest.mark.parametrize("asgi", [False, True], ids=["wsgi", "asgi"])
    @pytest.mark.parametrize(
        ("url", "logger", "first_line"),
        [
            ("/boom", "django.request", "Internal Server Error: /boom"),
            ("/denied", "django.request", "Forbidden (Permission denied): /denied"),
            ("/bad", "django.request", "bad input: /bad"),
            ("/suspicious", "django.security.SuspiciousOperation", "odd input"),
        ],
    )
    def test_http_status_on_the_exception_line(
        self,
        url: str,
        logger: str,
        first_line: str,
        asgi: bool,
        server: DevServer,
        django_filter_handler: LogDNAHandler,
    ) -> None:
        """The 500, 403 and 400 lines carry http_status, with the request's context."""
        if asgi:
            client = AsyncClient(raise_request_exception=False)
            response = async_to_sync(client.get)(url, headers={"X-Request-ID": "exc-1"})
        else:
            response = Client(raise_request_exception=False).get(
                url, headers={"X-Request-ID": "exc-1"}
            )
        (line,) = delivered(server, django_filter_handler.client, 1)
        assert first_line == line["line"].splitlines()[0]
        meta = line["meta"]
        assert (logger, "exc-1", url) == (meta["name"], meta["request_id"], meta["http_path"])
        assert response.status_code == meta["http_status"]

    def test_a_failure_after_the_view_says_what_django_answered(
        self, server: DevServer, django_filter_handler: LogDNAHandler
    ) -> None:
        """A middleware before ours that fails after the view answered 200: Django's
        500 line says 500, not the 200 the view's response had."""
        middleware = [f"{__name__}.FailsAfterTheViewMiddleware", *MIDDLEWARE]
        with override_settings(MIDDLEWARE=middleware):
            response = Client(raise_request_exception=False).get("/hello/1")
        assert 500 == response.status_code
        (line,) = delivered(server, django_filter_handler.client, 1)
        assert line["line"].startswith("Internal Server Error: /hello/1")
        assert 500 == line["meta"]["http_status"]


class TestDjangoStatusOfRecords:
    """Which records' ``status_code`` the Django filter takes as the response's."""

    @staticmethod
    def record(name: str, **attrs: Any) -> logging.LogRecord:
        request = HttpRequest()
        request.logdna_context = {"request_id": "r-1"}  # type: ignore[attr-defined]
        return logging.makeLogRecord({"name": name, "msg": "x", "request": request, **attrs})

    @staticmethod
    def shipped(record: logging.LogRecord) -> dict[str, Any]:
        result = RequestContextFilter().filter(record)
        assert result is not False
        return (result if isinstance(result, logging.LogRecord) else record).__dict__

    def test_another_logger_status_code_is_not_the_response(self) -> None:
        """An app's own status_code (an upstream API's answer) is not taken as
        http_status, even with the request in extra=."""
        attrs = self.shipped(self.record("shop.payments", status_code=502))
        assert ("r-1", 502) == (attrs["request_id"], attrs["status_code"])
        assert "http_status" not in attrs

    def test_a_record_http_status_is_kept(self) -> None:
        """An http_status the record already has (an extra=) is left as it is."""
        attrs = self.shipped(self.record("django.request", status_code=500, http_status=599))
        assert 599 == attrs["http_status"]

    def test_a_request_without_our_context_is_ignored(self) -> None:
        """runserver's django.server lines carry a socket as ``request``: no context."""
        record = logging.makeLogRecord(
            {"name": "django.server", "msg": "x", "request": object(), "status_code": 200}
        )
        assert "http_status" not in self.shipped(record)

    def test_copy_mode_leaves_the_record_alone(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Where filters may return a record (3.12+), http_status goes on the copy."""
        from logdna_client import _context

        monkeypatch.setattr(_context, "_COPY_RECORD", True)
        record = self.record("django.request", status_code=403)
        before = dict(record.__dict__)
        result = RequestContextFilter().filter(record)
        assert isinstance(result, logging.LogRecord)
        assert (403, "r-1") == (result.http_status, result.request_id)  # type: ignore[attr-defined]
        assert before == record.__dict__


def test_core_does_not_import_django() -> None:
    """The package and its contrib helpers do not import Django or Flask."""
    code = (
        "import sys, logdna_client, logdna_client.contrib\n"
        "assert 'django' not in sys.modules and 'flask' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT, timeout=60)


class TestRequestContextFilter:
    def test_outside_a_request_does_nothing(self) -> None:
        """Without a bound context the record passes untouched."""
        record = logging.makeLogRecord({"msg": "x"})
        before = dict(record.__dict__)
        assert RequestContextFilter().filter(record) is True
        assert before == record.__dict__

    def test_never_overwrites_record_attributes(self) -> None:
        """An attribute the record already has (an extra=) is kept as it is."""
        from logdna_client._context import bind_request_context, reset_request_context

        record = logging.makeLogRecord({"msg": "x", "request_id": "from-extra"})
        token = bind_request_context(request_id="ctx", http_method="GET")
        try:
            result = RequestContextFilter().filter(record)
        finally:
            reset_request_context(token)
        shipped = result if isinstance(result, logging.LogRecord) else record
        assert ("from-extra", "GET") == (shipped.request_id, shipped.http_method)  # type: ignore[attr-defined]

    def test_copy_mode_leaves_the_record_alone(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Where filters may return a record (3.12+), the original is not changed."""
        from logdna_client import _context

        monkeypatch.setattr(_context, "_COPY_RECORD", True)
        record = logging.makeLogRecord({"msg": "x"})
        before = dict(record.__dict__)
        token = _context.bind_request_context(request_id="ctx")
        try:
            result = RequestContextFilter().filter(record)
        finally:
            _context.reset_request_context(token)
        assert isinstance(result, logging.LogRecord)
        assert result is not record
        assert "ctx" == result.request_id  # type: ignore[attr-defined]
        assert before == record.__dict__
