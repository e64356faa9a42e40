"""Review: request context and asyncio, as users of ASGI apps, Django and Flask meet them.

Lines go to a real DevServer over a socket; requests go through the frameworks' own test
clients (Flask's and Django's run the app on the calling thread, as a sync worker does).
"""

from __future__ import annotations

import logging
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
