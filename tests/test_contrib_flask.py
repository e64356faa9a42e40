"""Flask: the LogDNA extension puts request context into every line's meta.

Requests go through Flask's test client; lines go to a real DevServer over a socket.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

flask = pytest.importorskip("flask")

from logdna_client import LogDNAHandler  # noqa: E402
from logdna_client._devserver import DevServer  # noqa: E402
from logdna_client.contrib.flask import LogDNA  # noqa: E402
from logdna_client.structlog import LogDNAProcessor  # noqa: E402
from tests._helpers_integrations import TIMEOUT, context_handler_on, delivered  # noqa: E402

APP_LOGGER = "t.flask.app"


def make_app(**options: Any) -> Any:
    app = flask.Flask("t_flask_app")
    log = logging.getLogger(APP_LOGGER)

    @app.get("/hello/<int:n>")
    def hello(n: int) -> str:
        log.info("in view %d", n, extra={"order": n})
        return "ok"

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("view failed")

    @app.get("/rid")
    def rid() -> str:
        return str(flask.g.request_id)

    LogDNA(app, **options)
    return app


@pytest.fixture
def handler(server: DevServer) -> Iterator[LogDNAHandler]:
    """Our handler with the context filter on the app's loggers."""
    with context_handler_on(server, (APP_LOGGER, "t_flask_app", "flask.access")) as h:
        yield h


class TestExtension:
    def test_context_in_meta(self, server: DevServer, handler: LogDNAHandler) -> None:
        """A line logged in a view carries request id, method and path; the id is echoed."""
        client = make_app().test_client()
        response = client.get("/hello/3", headers={"X-Request-ID": "req-f1"})
        assert 200 == response.status_code
        assert "req-f1" == response.headers["X-Request-ID"]
        (line,) = delivered(server, handler.client, 1)
        assert "in view 3" == line["line"]
        assert {
            "order": 3,
            "request_id": "req-f1",
            "http_method": "GET",
            "http_path": "/hello/3",
            "name": "t.flask.app",
        } == line["meta"]

    def test_generated_id_in_g(self, server: DevServer, handler: LogDNAHandler) -> None:
        """Without a header, a generated id is in flask.g and the response header."""
        response = make_app().test_client().get("/rid")
        assert response.text == response.headers["X-Request-ID"]
        assert 32 == len(response.text)

    def test_user_id_callable(self, server: DevServer, handler: LogDNAHandler) -> None:
        """The user_id callable's result ships as user_id (as text)."""
        client = make_app(user_id=lambda: 42).test_client()
        client.get("/hello/1")
        (line,) = delivered(server, handler.client, 1)
        assert "42" == line["meta"]["user_id"]

    def test_broken_user_id_callable_is_ignored(
        self, server: DevServer, handler: LogDNAHandler
    ) -> None:
        """A user_id callable that raises does not break the request."""

        def broken() -> object:
            raise LookupError("no user")

        response = make_app(user_id=broken).test_client().get("/hello/1")
        assert 200 == response.status_code
        (line,) = delivered(server, handler.client, 1)
        assert "user_id" not in line["meta"]

    def test_no_leak_between_requests(self, server: DevServer, handler: LogDNAHandler) -> None:
        """Each request has its own context; nothing stays bound after it."""
        client = make_app().test_client()
        client.get("/hello/1", headers={"X-Request-ID": "one"})
        client.get("/hello/2", headers={"X-Request-ID": "two"})
        logging.getLogger(APP_LOGGER).info("outside")
        one, two, outside = delivered(server, handler.client, 3)
        assert ("one", "two") == (one["meta"]["request_id"], two["meta"]["request_id"])
        assert {"name": APP_LOGGER} == outside["meta"]  # the logger, no context

    def test_unhandled_exception_line_has_context(
        self, server: DevServer, handler: LogDNAHandler
    ) -> None:
        """Flask's "Exception on ..." line carries the traceback and the context."""
        app = make_app()
        app.config["PROPAGATE_EXCEPTIONS"] = False
        response = app.test_client().get("/boom", headers={"X-Request-ID": "r500"})
        assert 500 == response.status_code
        assert "r500" == response.headers["X-Request-ID"]
        (line,) = delivered(server, handler.client, 1)
        assert line["line"].startswith("Exception on /boom [GET]")
        assert "RuntimeError: view failed" in line["line"]
        assert "r500" == line["meta"]["request_id"]

    def test_access_log(self, server: DevServer, handler: LogDNAHandler) -> None:
        """access_log=True adds one line per request with status and duration."""
        make_app(access_log=True).test_client().get("/hello/4", headers={"X-Request-ID": "a"})
        view_line, access_line = delivered(server, handler.client, 2)
        assert access_line["line"].startswith("GET /hello/4 200 (")
        assert ("a", 200) == (access_line["meta"]["request_id"], access_line["meta"]["http_status"])
        assert "http_status" not in view_line["meta"]

    def test_init_app_factory(self, server: DevServer, handler: LogDNAHandler) -> None:
        """The extension works with the app-factory pattern (init_app later)."""
        ext = LogDNA()
        app = flask.Flask("t_flask_app")

        @app.get("/")
        def index() -> str:
            logging.getLogger(APP_LOGGER).info("factory")
            return "ok"

        ext.init_app(app)
        assert app.extensions["logdna_client"] is ext
        app.test_client().get("/", headers={"X-Request-ID": "fac"})
        (line,) = delivered(server, handler.client, 1)
        assert "fac" == line["meta"]["request_id"]

    def test_structlog_processor_sees_context(self, server: DevServer) -> None:
        """The structlog processor merges the request context by itself, no filter needed."""
        structlog = pytest.importorskip("structlog")
        proc = LogDNAProcessor(url=server.url, flush_interval="0.05")
        log = structlog.wrap_logger(structlog.ReturnLogger(), processors=[proc])
        app = flask.Flask("t_flask_structlog")

        @app.get("/")
        def index() -> str:
            log.info("structured", k=1)
            return "ok"

        LogDNA(app)
        try:
            app.test_client().get("/", headers={"X-Request-ID": "sl"})
            assert proc.flush(TIMEOUT)
            assert server.wait_for_lines(1, TIMEOUT)
        finally:
            proc.close()
        (line,) = server.lines
        assert {"k": 1, "request_id": "sl", "http_method": "GET", "http_path": "/"} == line["meta"]
