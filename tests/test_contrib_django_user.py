"""Django: the middleware's ``user_id`` never costs the app a session read.

AuthenticationMiddleware's ``request.user`` is lazy: its first look reads the session
(SessionMiddleware then answers with ``Vary: Cookie``, which no shared cache may serve
to another visitor) and the user from the database. The middleware only reads a user
the app has loaded; ``user_id`` joins the lines from the moment it does.

In this process a stand-in for AuthenticationMiddleware counts the loads; a child
interpreter runs Django's real session and auth middleware on a SQLite database.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

django = pytest.importorskip("django")

from asgiref.sync import async_to_sync, iscoroutinefunction, markcoroutinefunction  # noqa: E402
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.test import AsyncClient, Client, override_settings  # noqa: E402
from django.urls import path  # noqa: E402
from django.utils.functional import SimpleLazyObject  # noqa: E402

from logdna_client import LogDNAHandler  # noqa: E402
from logdna_client._context import get_request_context, reset_request_context  # noqa: E402
from logdna_client._devserver import DevServer  # noqa: E402
from tests._helpers_integrations import REPO_ROOT, context_handler_on, delivered  # noqa: E402
from tests.helpers import django_settings  # noqa: E402

app_log = logging.getLogger("t.django_user.app")
MIDDLEWARE = [
    f"{__name__}.CountingAuthMiddleware",
    "logdna_client.contrib.django.LogDNARequestContextMiddleware",
]

#: What loaded the user in the current test: "user" (request.user) or "auser".
LOADS: list[str] = []


class User:
    pk = 7
    is_authenticated = True


class CountingAuthMiddleware:
    """Does what AuthenticationMiddleware does (a lazy ``request.user``, and
    ``request.auser`` as on Django 5.0+), counting the loads."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        def load() -> User:
            LOADS.append("user")
            if request.META.get("HTTP_X_FAIL_LOAD"):
                raise LookupError("session store down")
            return User()

        async def auser() -> User:
            LOADS.append("auser")
            return User()

        request.user = SimpleLazyObject(load)
        request.auser = auser
        return self.get_response(request)


def quiet(request: HttpRequest) -> HttpResponse:
    app_log.info("quiet view")
    return HttpResponse("a public page")


def touch(request: HttpRequest) -> HttpResponse:
    app_log.info("before")
    assert 7 == request.user.pk  # type: ignore[union-attr]
    app_log.info("after")
    return HttpResponse("hello 7")


async def atouch(request: HttpRequest) -> HttpResponse:
    app_log.info("before")
    assert 7 == (await request.auser()).pk  # type: ignore[attr-defined]
    app_log.info("after")
    return HttpResponse("hello 7")


def in_thread(request: HttpRequest) -> HttpResponse:
    """Hands the request to a thread of its own (no request context there)."""

    def work() -> None:
        assert 7 == request.user.pk  # type: ignore[union-attr]
        app_log.info("in thread")
        seen.update(get_request_context())

    seen: dict[str, Any] = {}
    worker = threading.Thread(target=work)
    worker.start()
    worker.join(30)
    app_log.info("after thread", extra={"thread_context": dict(seen)})
    return HttpResponse("ok")


def failing_load(request: HttpRequest) -> HttpResponse:
    try:
        request.user.pk  # type: ignore[union-attr]  # noqa: B018
    except LookupError as exc:
        return HttpResponse(f"caught {exc}")
    return HttpResponse("loaded")


urlpatterns = [
    path("quiet", quiet),
    path("touch", touch),
    path("atouch", atouch),
    path("thread", in_thread),
    path("failing", failing_load),
]


@pytest.fixture(scope="module", autouse=True)
def _django() -> Iterator[None]:
    with django_settings(__name__, MIDDLEWARE), override_settings(LOGDNA_ACCESS_LOG=True):
        yield


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    LOADS.clear()
    reset_request_context()
    yield
    reset_request_context()


@pytest.fixture
def handler(server: DevServer) -> Iterator[LogDNAHandler]:
    with context_handler_on(server, ("t.django_user.app", "django.access")) as h:
        yield h


def get(url: str, asgi: bool, headers: dict[str, str] | None = None) -> Any:
    """The response to a GET of ``url`` through Django's ASGI or WSGI handler."""
    if asgi:
        return async_to_sync(AsyncClient().get)(url, headers=headers)
    return Client().get(url, headers=headers)


def user_ids(server: DevServer, handler: LogDNAHandler, n: int) -> dict[str, Any]:
    """Each delivered line's first words (the access line's without its duration),
    with the user_id its meta holds (None when none)."""
    return {
        line["line"].split(" (")[0]: line["meta"].get("user_id")
        for line in delivered(server, handler.client, n)
    }


@pytest.mark.parametrize("asgi", [False, True], ids=["wsgi", "asgi"])
class TestUserLoadedOnlyByTheApp:
    def test_a_view_that_never_uses_the_user(
        self, asgi: bool, server: DevServer, handler: LogDNAHandler
    ) -> None:
        """The middleware loads no user of its own; the lines go without user_id."""
        assert 200 == get("/quiet", asgi).status_code
        assert {"quiet view": None, "GET /quiet 200": None} == user_ids(server, handler, 2)
        assert [] == LOADS

    def test_user_id_once_the_view_loaded_the_user(
        self, asgi: bool, server: DevServer, handler: LogDNAHandler
    ) -> None:
        """The lines after the view's first look at request.user carry user_id, as the
        access line does; the user is loaded once, by the view."""
        assert 200 == get("/touch", asgi).status_code
        expected = {"before": None, "after": "7", "GET /touch 200": "7"}
        assert expected == user_ids(server, handler, 3)
        assert ["user"] == LOADS

    def test_a_loader_error_reaches_the_view_unchanged(
        self, asgi: bool, server: DevServer, handler: LogDNAHandler
    ) -> None:
        """An error of the user's loader is the view's to see, as it was raised."""
        response = get("/failing", asgi, {"X-Fail-Load": "1"})
        assert b"caught session store down" == response.content
        assert {"GET /failing 200": None} == user_ids(server, handler, 1)
        assert ["user"] == LOADS


class TestAsyncViews:
    def test_user_id_once_auser_returned(self, server: DevServer, handler: LogDNAHandler) -> None:
        """``await request.auser()`` (Django 5.0+) in an async view adds user_id too."""
        assert 200 == get("/atouch", asgi=True).status_code
        expected = {"before": None, "after": "7", "GET /atouch 200": "7"}
        assert expected == user_ids(server, handler, 3)
        assert ["auser"] == LOADS


class TestThreads:
    def test_a_thread_that_loads_the_user_is_not_tagged(
        self, server: DevServer, handler: LogDNAHandler
    ) -> None:
        """A thread the view hands the request to binds no user_id of its own (its
        later lines would name a user of a request that ended); the access line still
        has the user the thread loaded."""
        assert 200 == get("/thread", asgi=False).status_code
        lines = {x["line"].split(" (")[0]: x["meta"] for x in delivered(server, handler.client, 3)}
        assert "user_id" not in lines["in thread"]
        assert {} == lines["after thread"]["thread_context"]
        assert "7" == lines["GET /thread 200"]["user_id"]


# Django's own SessionMiddleware and AuthenticationMiddleware, a logged-in visitor's
# session in a SQLite database, in a child interpreter: Django's settings can be set
# up once per process, and this process's are the other Django tests'.
CHILD = """
import asyncio, json, logging, sys
import django
from django.conf import settings

settings.configure(
    DEBUG=False, ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__, SECRET_KEY="test-only" * 6,
    INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes",
                    "django.contrib.sessions"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": sys.argv[1]}},
    MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware",
                "django.contrib.auth.middleware.AuthenticationMiddleware",
                "logdna_client.contrib.django.LogDNARequestContextMiddleware"],
    LOGDNA_ACCESS_LOG=True, LOGGING_CONFIG=None,
)
django.setup()
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django.http import HttpResponse
from django.test import AsyncClient, Client
from django.test.utils import CaptureQueriesContext
from django.urls import path
from logdna_client import LogDNAHandler
from logdna_client.contrib.django import RequestContextFilter
from logdna_client.testing import capture_lines

handler = LogDNAHandler(url="http://127.0.0.1:9/logs/ingest")
handler.addFilter(RequestContextFilter())
for name in ("app", "django.access"):
    logging.getLogger(name).addHandler(handler)
    logging.getLogger(name).setLevel(logging.INFO)
    logging.getLogger(name).propagate = False
log = logging.getLogger("app")

def public(request):
    log.info("public view")
    return HttpResponse("the same page for everyone")

def me(request):
    log.info("before")
    name = request.user.username
    log.info("after")
    return HttpResponse("hello " + name)

async def ame(request):
    log.info("before")
    user = await request.auser()
    log.info("after")
    return HttpResponse("hello " + user.username)

urlpatterns = [path("public", public), path("me", me), path("ame", ame)]
call_command("migrate", verbosity=0)
ada = User.objects.create_user("ada")
results = {"pk": str(ada.pk)}

def record(label, response, lines, queries=None):
    results[label] = {
        "vary": response.get("Vary"),
        "queries": queries,
        "lines": [[x["line"].split(" (")[0], x["meta"].get("user_id")] for x in lines],
    }

client = Client()
client.force_login(ada)
for url in ("/public", "/me"):
    with capture_lines() as lines, CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    record("wsgi " + url, response, lines, len(queries))

aclient = AsyncClient()
aclient.cookies = client.cookies

async def main():
    for url in ("/public", "/me", "/ame"):
        with capture_lines() as lines:
            response = await aclient.get(url)
        record("asgi " + url, response, lines)

asyncio.run(main())
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What CHILD saw, once for the module's tests."""
    database: Path = tmp_path_factory.mktemp("django_user") / "db.sqlite3"
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(database)],
        check=False, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert 0 == done.returncode, done.stderr
    parsed: dict[str, Any] = json.loads(done.stdout)
    return parsed


class TestRealSessionAndAuth:
    @pytest.mark.parametrize("stack", ["wsgi", "asgi"])
    def test_a_public_page_stays_cacheable(self, stack: str, results: dict[str, Any]) -> None:
        """A logged-in visitor's request for a page that never uses the user: no
        ``Vary: Cookie``, no user_id, and (WSGI, where the test sees them) no queries."""
        got = results[f"{stack} /public"]
        assert None is got["vary"]
        assert [["public view", None], ["GET /public 200", None]] == got["lines"]
        if stack == "wsgi":
            assert 0 == got["queries"]

    @pytest.mark.parametrize("label", ["wsgi /me", "asgi /me", "asgi /ame"])
    def test_user_id_after_the_view_used_the_user(
        self, label: str, results: dict[str, Any]
    ) -> None:
        """A view that reads ``request.user`` (or ``await request.auser()``): its lines
        from then on, and the access line, carry the user's id; the response varies by
        cookie, as the view's use of the session makes it."""
        got = results[label]
        pk, access = results["pk"], f"GET /{label.split('/')[1]} 200"
        assert [["before", None], ["after", pk], [access, pk]] == got["lines"]
        assert "Cookie" == got["vary"]
