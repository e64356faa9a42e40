"""Flask: the LogDNA extension puts request context into every line's meta.

Requests go through Flask's test client; lines go to a real DevServer over a socket.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest

flask = pytest.importorskip("flask")

from logdna_client import LogDNAHandler  # noqa: E402
from logdna_client._context import get_request_context  # noqa: E402
from logdna_client._devserver import DevServer  # noqa: E402
from logdna_client.contrib.flask import LogDNA  # noqa: E402
from logdna_client.structlog import LogDNAProcessor  # noqa: E402
from logdna_client.testing import capture_lines  # noqa: E402
from tests._helpers_integrations import (  # noqa: E402
    TIMEOUT,
    context_handler_on,
    delivered,
    logger_with,
)

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


class LoggedIn:
    """A user Flask-Login loaded, as the extension reads it."""

    is_authenticated = True

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id

    def get_id(self) -> str:
        return self.user_id


def app_with_flask_login(
    monkeypatch: pytest.MonkeyPatch, **flask_login: object
) -> tuple[Any, logging.Logger]:
    """An app with the extension (an access line per request) where a stand-in for
    Flask-Login, with ``flask_login``'s names, is imported; and the app's logger."""
    stub = type(sys)("flask_login")
    stub.__dict__.update(flask_login)
    monkeypatch.setitem(sys.modules, "flask_login", stub)
    app = flask.Flask("t_flask_login")
    LogDNA(app, access_log=True)
    return app, logging.getLogger(APP_LOGGER)


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

    def test_url_value_preprocessor_lines_have_context(
        self, server: DevServer, handler: LogDNAHandler
    ) -> None:
        """Flask runs url_value_preprocessors before any before_request hook: a line one
        logs, and the "Exception on" line of one that raises, carry the request's
        context (H191: both shipped with none, while the 500 echoed the request id)."""
        app = make_app()
        app.config["PROPAGATE_EXCEPTIONS"] = False
        log = logging.getLogger(APP_LOGGER)

        @app.url_value_preprocessor
        def pull(endpoint: str | None, values: dict[str, Any] | None) -> None:
            log.info("preprocessing %s", endpoint)
            if values and values.get("n") == 13:
                raise KeyError("unlucky")

        client = app.test_client()
        assert 200 == client.get("/hello/2", headers={"X-Request-ID": "pre-ok"}).status_code
        response = client.get("/hello/13", headers={"X-Request-ID": "pre-500"})
        assert (500, "pre-500") == (response.status_code, response.headers["X-Request-ID"])
        first, view, second, failure = delivered(server, handler.client, 4)
        assert ("preprocessing hello", "pre-ok") == (first["line"], first["meta"]["request_id"])
        assert "pre-ok" == view["meta"]["request_id"]
        assert "pre-500" == second["meta"]["request_id"]
        assert failure["line"].startswith("Exception on /hello/13 [GET]")
        assert "pre-500" == failure["meta"]["request_id"]

    def test_the_user_is_asked_for_after_the_apps_url_value_preprocessors(
        self, server: DevServer, handler: LogDNAHandler
    ) -> None:
        """The request is bound before the app's url_value_preprocessors, but its user
        only after them: loading the user may need what they set (a tenant in ``g``),
        and Flask-Login keeps its first answer for the request (H195: bound with the
        user first, a tenant's login answered 401)."""
        asked: list[object] = []

        def user_id() -> str | None:
            tenant = flask.g.get("tenant")
            asked.append(tenant)
            return None if tenant is None else f"{tenant}:42"

        app = make_app(user_id=user_id)

        @app.url_value_preprocessor
        def pull_tenant(endpoint: str | None, values: dict[str, Any] | None) -> None:
            flask.g.tenant = "acme"

        assert 200 == app.test_client().get("/hello/5", headers={"X-Request-ID": "t-1"}).status_code
        (line,) = delivered(server, handler.client, 1)
        assert ("t-1", "acme:42") == (line["meta"]["request_id"], line["meta"].get("user_id"))
        assert None not in asked

    @pytest.mark.parametrize("where", ["app", "blueprint"])
    def test_the_user_is_asked_for_after_the_apps_before_request_hooks(
        self, server: DevServer, handler: LogDNAHandler, where: str
    ) -> None:
        """The user is asked for once every before_request hook ran, the app's and its
        blueprints', those registered after the extension too: loading it may need
        what they set, and Flask-Login keeps its first answer (H196: a tenant's login
        answered 401 once the extension was added). The hooks' own lines have the
        request's context, without the user."""
        asked: list[object] = []

        def user_id() -> str | None:
            tenant = flask.g.get("tenant")
            asked.append(tenant)
            return None if tenant is None else f"{tenant}:42"

        app = flask.Flask("t_flask_app")
        LogDNA(app, user_id=user_id)
        log = logging.getLogger(APP_LOGGER)
        hooks = app if where == "app" else flask.Blueprint("shop", "t_flask_bp")

        @hooks.before_request
        def pick_tenant() -> None:
            log.info("picking")
            flask.g.tenant = "acme"

        @hooks.get("/orders")
        def orders() -> str:
            log.info("in view")
            return "ok"

        if where == "blueprint":
            app.register_blueprint(hooks)
        response = app.test_client().get("/orders", headers={"X-Request-ID": "t-2"})
        assert 200 == response.status_code
        hook_line, view_line = delivered(server, handler.client, 2)
        hook_meta, view_meta = hook_line["meta"], view_line["meta"]
        assert ("t-2", None) == (hook_meta["request_id"], hook_meta.get("user_id"))
        assert ("t-2", "acme:42") == (view_meta["request_id"], view_meta.get("user_id"))
        assert None not in asked

    @pytest.mark.parametrize("how", ["answers", "aborts", "raises"])
    def test_lines_after_a_hook_that_answers_early_or_fails_have_the_user(
        self, server: DevServer, handler: LogDNAHandler, how: str
    ) -> None:
        """A before_request hook that answers (a maintenance page), aborts or raises skips
        the view: the user is asked for once the hooks are done all the same, so the error
        handler's line, Flask's "Exception on" line and the access line have it (H200:
        the fix for H196 asked only where the view was to run)."""
        asked: list[object] = []

        def user_id() -> str:
            asked.append(flask.g.get("tenant"))
            return "u-7"

        app = make_app(user_id=user_id, access_log=True)
        app.config["PROPAGATE_EXCEPTIONS"] = False

        @app.before_request
        def hook() -> tuple[str, int]:
            flask.g.tenant = "acme"
            if how == "aborts":
                flask.abort(403)
            if how == "raises":
                raise RuntimeError("hook failed")
            return "down", 503

        @app.errorhandler(403)
        def forbidden(exc: Exception) -> tuple[str, int]:
            logging.getLogger(APP_LOGGER).warning("forbidden")
            return "no", 403

        status = {"answers": 503, "aborts": 403, "raises": 500}[how]
        assert status == app.test_client().get("/hello/1").status_code
        lines = delivered(server, handler.client, 1 if how == "answers" else 2)
        assert [("u-7", status)] == [
            (line["meta"].get("user_id"), line["meta"]["http_status"])
            for line in lines
            if "http_status" in line["meta"]
        ]
        assert all("u-7" == line["meta"].get("user_id") for line in lines)
        assert {"acme"} == set(asked)

    def test_flask_logins_user_is_never_loaded_by_the_extension(
        self, server: DevServer, handler: LogDNAHandler, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With Flask-Login, the user your code loaded ships (Flask-Login keeps it in
        ``g._login_user``); the extension never loads one: that runs the app's user
        loader, and Flask-Login keeps its first answer, so a view whose decorator sets the
        tenant the loader needs got 401 (H200), and a remember-me cookie logged users in
        on requests that never asked for one."""
        loads: list[str] = []

        class CurrentUser:  # a stand-in for flask_login.current_user: loads when read
            def __getattr__(self, name: str) -> object:
                loads.append(name)
                return getattr(LoggedIn("acme:7"), name)

        app, log = app_with_flask_login(monkeypatch, current_user=CurrentUser())

        @app.get("/me")
        def me() -> str:
            log.info("before the view loads the user")
            flask.g._login_user = LoggedIn("acme:7")  # as Flask-Login's login_required does
            return "ok"

        @app.get("/health")
        def health() -> str:
            return "ok"

        client = app.test_client()
        assert (200, 200) == (client.get("/me").status_code, client.get("/health").status_code)
        view, access, health_access = delivered(server, handler.client, 3)
        assert "user_id" not in view["meta"]
        assert "acme:7" == access["meta"].get("user_id")
        assert "user_id" not in health_access["meta"]
        assert [] == loads

    def test_the_user_of_a_logout_stays_on_its_request(
        self, server: DevServer, handler: LogDNAHandler, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """logout_user() leaves Flask-Login an anonymous user for the rest of the request:
        the user who logged out stays on its lines and its access line (H202: the access
        line of a logout said no one)."""
        import blinker

        logged_out = blinker.Signal()
        app, log = app_with_flask_login(monkeypatch, user_logged_out=logged_out)

        @app.get("/logout")
        def logout() -> str:
            user = flask.g._login_user = LoggedIn("alice")  # loaded by login_required
            log.info("logging out")
            logged_out.send(app, user=user)  # as logout_user() does, then:
            flask.g._login_user = None
            log.info("logged out")
            return "out"

        assert 200 == app.test_client().get("/logout").status_code
        lines = delivered(server, handler.client, 3)
        assert [None, "alice", "alice"] == [line["meta"].get("user_id") for line in lines]

    def test_a_patch_of_flasks_preprocess_request_made_later_applies(self) -> None:
        """The extension wraps the app's preprocess_request looking the class's up at each
        request: a test's patch or an instrumentation of Flask.preprocess_request made
        after init_app still runs (H200: the method bound at init ran instead)."""
        from unittest import mock

        app = make_app()
        app.before_request(lambda: ("hook answered", 403))
        with mock.patch.object(flask.Flask, "preprocess_request", lambda self: None):
            response = app.test_client().get("/hello/1")
        assert (200, b"ok") == (response.status_code, response.data)

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


def two_requests(app: Any, header: str = "X-Request-ID") -> dict[str, Any]:
    """Request 1 (user 5, no request id sent) then request 2 (anonymous) on one thread, as
    a sync worker serves them, in a fresh context so that nothing left bound outlives
    the test; what each view saw, the ids echoed, and what stayed bound after each."""

    @app.get("/seen")
    def seen() -> dict[str, Any]:
        return {"context": get_request_context(), "g": flask.g.request_id}

    client = app.test_client()

    def serve() -> dict[str, Any]:
        first = client.get("/seen", headers={"X-User": "5"})
        after_first = get_request_context()
        second = client.get("/seen")
        return {
            "views": [first.json, second.json],
            "echoed": [first.headers.get(header), second.headers.get(header)],
            "bound_after": [after_first, get_request_context()],
        }

    return contextvars.Context().run(serve)


def user_from_header() -> object:
    return flask.request.headers.get("X-User")


class TestInitAppTwice:
    """An extension initialised twice on one app (a module-level ``LogDNA(app)`` and an
    app factory's ``init_app(app)``) binds each request once and leaves nothing bound."""

    def test_same_extension_twice(self) -> None:
        """The second init_app adds no hooks: request 2, anonymous, inherits no user_id,
        and each request has one id (bound, in flask.g, echoed)."""
        app = flask.Flask("t_flask_twice")
        ext = LogDNA(app, user_id=user_from_header)
        ext.init_app(app)
        got = two_requests(app)
        assert [{}, {}] == got["bound_after"]
        first, second = got["views"]
        assert "5" == first["context"]["user_id"]
        assert "user_id" not in second["context"]
        for view, echoed in zip(got["views"], got["echoed"], strict=True):
            assert echoed == view["g"] == view["context"]["request_id"]
        hooks = (app.before_request_funcs, app.after_request_funcs, app.teardown_request_funcs)
        assert [1, 1, 1] == [len(funcs[None]) for funcs in hooks]

    def test_another_extension_takes_over_the_options(self) -> None:
        """A second LogDNA on the same app replaces the first's options (one access
        line, the id echoed in its header) without binding the request twice."""
        app = flask.Flask("t_flask_twice")
        LogDNA(app, user_id=user_from_header)
        second = LogDNA(app, request_id_header="X-Trace", access_log=True)
        assert app.extensions["logdna_client"] is second
        access_handler = LogDNAHandler(url="http://127.0.0.1:9/logs/ingest")
        with logger_with("flask.access", access_handler), capture_lines() as lines:
            got = two_requests(app, header="X-Trace")
        assert [{}, {}] == got["bound_after"]
        for view, echoed in zip(got["views"], got["echoed"], strict=True):
            assert "user_id" not in view["context"]  # the second's user_id: none
            assert echoed == view["g"] == view["context"]["request_id"]
        assert 2 == len(lines)  # one access line per request
        for view, line in zip(got["views"], lines, strict=True):
            assert line["line"].startswith("GET /seen 200 (")
            assert view["g"] == line["meta"]["request_id"]

    def test_hooks_registered_twice_still_bind_once(self) -> None:
        """init_app again once the app's extensions mapping was cleared registers no hook
        twice (an access line each time, H200): each request is bound once, and nothing
        of request 1 stays bound."""
        app = flask.Flask("t_flask_twice")
        ext = LogDNA(app, user_id=user_from_header)
        del app.extensions["logdna_client"]
        ext.init_app(app)
        hooks = (app.before_request_funcs, app.after_request_funcs, app.teardown_request_funcs)
        assert [1, 1, 1] == [len(funcs[None]) for funcs in hooks]
        got = two_requests(app)
        assert [{}, {}] == got["bound_after"]
        assert "user_id" not in got["views"][1]["context"]
        for view, echoed in zip(got["views"], got["echoed"], strict=True):
            assert echoed == view["g"] == view["context"]["request_id"]
