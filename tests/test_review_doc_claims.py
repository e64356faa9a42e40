"""Sentences of docs/stdlib.md, docs/structlog.md, the framework pages and the README, each
held to what a real handler, processor or middleware ships over a real socket, on both
handle paths (the C extension where it is built, and the Python code it mirrors)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import enum
import logging
import logging.config
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from logdna_client import Client, LogDNAHandler
from logdna_client._devserver import DevServer
from logdna_client.testing import capture_lines
from tests._helpers_integrations import REPO_ROOT, TIMEOUT, delivered, handler_for, logger_with

DOCS = REPO_ROOT / "docs"
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def said(page: str) -> str:
    """The page's text with its line breaks as spaces (a sentence may wrap anywhere)."""
    return " ".join((REPO_ROOT / page).read_text().split())


def run_blocks(page: str, server: DevServer, cwd: Path, path: str) -> None:
    """Every ```python block of ``page`` run verbatim in a fresh interpreter, on the
    handle path ``path`` (its ```ini blocks written to logging.ini first)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGDNA_")}
    env["LOGDNA_URL"] = server.url
    env["PYTHONPATH"] = str(REPO_ROOT)
    if path == "python":
        env["LOGDNA_CLIENT_PURE_PYTHON"] = "1"
    for lang, code in FENCE.findall((DOCS / page).read_text()):
        if lang == "ini":
            (cwd / "logging.ini").write_text(code)
        elif lang == "python":
            result = subprocess.run(
                [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                text=True, timeout=60, check=False,
            )  # fmt: skip
            assert 0 == result.returncode, f"{page}:\n{code}\n{result.stderr}"


def by_text(lines: list[dict[str, Any]], text: str) -> dict[str, Any]:
    (line,) = [line for line in lines if line["line"].split("\n")[0] == text]
    return line


def fields(line: dict[str, Any]) -> dict[str, Any]:
    return {k: line.get(k) for k in ("line", "level", "app", "env", "meta")}


class TestStdlibPage:
    """docs/stdlib.md's snippets, run verbatim, ship what its table says."""

    def test_snippets_ship_the_fields_the_table_names(
        self, server: DevServer, tmp_path: Path, handle_path: str
    ) -> None:
        """The first example ships `"meta": {"name": "billing.invoices", "customer_id": 77,
        "days": 12}` (as the page says), the exception with its traceback at ERROR; the
        dictConfig and fileConfig examples their app, env and tags."""
        run_blocks("stdlib.md", server, tmp_path, handle_path)
        assert server.wait_for_lines(4, TIMEOUT), server.lines
        lines = server.lines
        assert {
            "line": "invoice 1042 overdue",
            "level": "WARNING",
            "app": "billing",
            "env": "production",
            "meta": {"name": "billing.invoices", "customer_id": 77, "days": 12},
        } == fields(by_text(lines, "invoice 1042 overdue"))
        assert '"meta": {"name": "billing.invoices", "customer_id": 77, "days": 12}' in said(
            "docs/stdlib.md"
        )
        failed = by_text(lines, "could not price invoice 1043")
        assert ("ERROR", {"name": "billing.invoices"}) == (failed["level"], failed["meta"])
        assert failed["line"].startswith("could not price invoice 1043\nTraceback (most recent")
        assert failed["line"].endswith("KeyError: 'currency'")
        for text in ("configured from a dict", "configured from an ini file"):
            line = by_text(lines, text)
            assert ("INFO", "api", "production", {"name": "api"}) == (
                line["level"], line["app"], line["env"], line["meta"]
            )  # fmt: skip
        tags = {tuple(r.tags) for r in server.requests if getattr(r, "tags", None)}
        assert {("web", "eu-west")} == tags


class TestMetaValues:
    """stdlib.md: meta holds every `extra=` field, "values that are not JSON become their
    `str()`". Not all of them: a datetime ships as ISO 8601 text (its str() has a space),
    an Enum as its value, a dataclass as an object, bytes as their text, a tuple or set as
    a list, NaN and the infinities as null; the sentence now says so."""

    def test_each_kind_of_value_ships_as_the_page_says(
        self, server: DevServer, handle_path: str
    ) -> None:
        """Each kind the sentence names, logged as `extra=`, ships as it says."""

        class Colour(enum.Enum):
            RED = "red"

        @dataclasses.dataclass
        class Point:
            x: int
            y: int

        class Order:
            def __str__(self) -> str:
                return "order 42"

        handler = handler_for(server)
        with logger_with("docs.values", handler) as log:
            log.info(
                "values",
                extra={
                    "when": datetime.datetime(2024, 5, 6, 7, 8, 9),
                    "day": datetime.date(2024, 5, 6),
                    "colour": Colour.RED,
                    "point": Point(1, 2),
                    "raw": b"caf\xc3\xa9",
                    "pair": (1, 2),
                    "ids": {3},
                    "ratio": float("nan"),
                    "limit": float("inf"),
                    "order": Order(),
                    "huge": 2**70,
                },
            )
            (line,) = delivered(server, handler.client, 1)
        assert {
            "name": "docs.values",
            "when": "2024-05-06T07:08:09",
            "day": "2024-05-06",
            "colour": "red",
            "point": {"x": 1, "y": 2},
            "raw": "café",
            "pair": [1, 2],
            "ids": [3],
            "ratio": None,
            "limit": None,
            "order": "order 42",
            "huge": str(2**70),
        } == line["meta"]
        page = said("docs/stdlib.md")
        for words in (
            "a datetime, date or time its ISO 8601 text",
            "an `Enum` its value",
            "a dataclass an object",
            "bytes their text",
            "a tuple or set a list",
            "NaN and the infinities `null`",
            "values that are not JSON become their `str()`",
        ):
            assert words in page, words


class TestRecordMeta:
    """stdlib.md and configuration.md on ``record_meta``."""

    def test_the_page_example_ships_name_pathname_lineno(
        self, server: DevServer, handle_path: str
    ) -> None:
        """`record_meta="name,pathname,lineno"` ships those three, then the extras;
        `record_meta=""` only the extras (no meta at all without them)."""
        three = handler_for(server, record_meta="name,pathname,lineno")
        none = handler_for(server, record_meta="")
        with logger_with("docs.rm.three", three) as log:
            log.info("three", extra={"order": 1})
            lineno = sys._getframe().f_lineno - 1
            delivered(server, three.client, 1)
        with logger_with("docs.rm.none", none) as log:
            log.info("none, extra", extra={"order": 2})
            log.info("none, bare")
            lines = delivered(server, none.client, 3)
        assert [
            {"name": "docs.rm.three", "pathname": __file__, "lineno": lineno, "order": 1},
            {"order": 2},
            None,
        ] == [by_text(lines, text).get("meta") for text in ("three", "none, extra", "none, bare")]
        assert 'record_meta="" would ship only the extra= fields' in said("docs/stdlib.md")

    def test_environment_dictconfig_and_precedence(
        self, server: DevServer, handle_path: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """`LOGDNA_RECORD_META` fills it when not given; an explicit value (`""` too)
        wins; dictConfig's comma-separated text works as a list."""
        monkeypatch.setenv("LOGDNA_RECORD_META", "funcName")
        from_env = handler_for(server)
        explicit = handler_for(server, record_meta="module")
        empty = handler_for(server, record_meta="")
        for name, handler in (("env", from_env), ("explicit", explicit), ("empty", empty)):
            with logger_with(f"docs.rm.{name}", handler) as log:
                log.info(name)
                delivered(server, handler.client, 1)
        monkeypatch.delenv("LOGDNA_RECORD_META")
        logging.config.dictConfig({
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"l": {"class": "logdna_client.LogDNAHandler", "url": server.url,
                               "record_meta": "lineno, name"}},
            "loggers": {"docs.rm.dict": {"handlers": ["l"], "level": "INFO",
                                         "propagate": False}},
        })  # fmt: skip
        log = logging.getLogger("docs.rm.dict")
        log.info("dict")
        lineno = sys._getframe().f_lineno - 1
        lines = delivered(server, log.handlers[0].client, 4)  # type: ignore[attr-defined]
        log.handlers[0].close()
        log.handlers.clear()
        assert [
            {"funcName": "test_environment_dictconfig_and_precedence"},
            {"module": "test_review_doc_claims"},
            None,
            {"lineno": lineno, "name": "docs.rm.dict"},
        ] == [by_text(lines, text).get("meta") for text in ("env", "explicit", "empty", "dict")]


class TestRecordFields:
    """stdlib.md's table: `level` is `record.levelname`, `timestamp` `record.created`,
    `line` the message then the traceback and the stack; extras only ever meta."""

    def test_custom_and_numeric_levels(self, server: DevServer, handle_path: str) -> None:
        """A level named with addLevelName ships by that name; an unnamed one as logging
        names it (`Level 35`); a logger filter that renames the level or moves the time
        decides the shipped level and timestamp, as it decides the record's."""
        logging.addLevelName(25, "NOTICE")
        handler = handler_for(server)
        try:
            with logger_with("docs.levels", handler) as log:
                log.log(25, "named")
                log.log(35, "unnamed")
                log.log(15, "low")

                def relabel(record: logging.LogRecord) -> bool:
                    record.levelname, record.created = "AUDIT", 1_700_000_000.25
                    return True

                log.addFilter(relabel)
                log.info("relabelled")
                log.removeFilter(relabel)
                lines = delivered(server, handler.client, 4)
        finally:
            del logging._levelToName[25]  # type: ignore[attr-defined]
            del logging._nameToLevel["NOTICE"]  # type: ignore[attr-defined]
        assert ["NOTICE", "Level 35", "Level 15", "AUDIT"] == [
            by_text(lines, t)["level"] for t in ("named", "unnamed", "low", "relabelled")
        ]
        assert 1_700_000_000_250 == by_text(lines, "relabelled")["timestamp"]

    def test_exc_info_then_stack_info(self, server: DevServer, handle_path: str) -> None:
        """`exc_info` as True, an exception or a tuple ships the traceback; with
        `stack_info` the stack follows it, as the stdlib's formatter orders them."""
        handler = handler_for(server)
        with logger_with("docs.exc", handler) as log:
            try:
                {}["currency"]
            except KeyError as exc:
                error = exc
                log.error("as true", exc_info=True)
            log.error("as exception", exc_info=error)
            log.error("as tuple", exc_info=(KeyError, error, error.__traceback__))
            log.error("with stack", exc_info=error, stack_info=True)
            lines = delivered(server, handler.client, 4)
        for text in ("as true", "as exception", "as tuple", "with stack"):
            line = by_text(lines, text)["line"]
            assert line.startswith(text + "\nTraceback (most recent call last):\n"), line
            assert "KeyError: 'currency'" in line
        stacked = by_text(lines, "with stack")["line"]
        assert stacked.index("KeyError: 'currency'") < stacked.index("\nStack (most recent")
        assert stacked.endswith('log.error("with stack", exc_info=error, stack_info=True)')

    def test_extras_named_like_line_fields_stay_meta(
        self, server: DevServer, handle_path: str
    ) -> None:
        """`extra=` keys named `line`, `level`, `app`, `env`, `timestamp` or `meta` are meta
        like any other: the line's own fields stay the record's and the handler's."""
        handler = handler_for(server, app="billing", env="production")
        clash = {"line": "L", "level": "custom", "app": "other", "env": "dev",
                 "timestamp": 5, "meta": {"a": 1}}  # fmt: skip
        with logger_with("docs.clash", handler) as log:
            log.warning("clash", extra=clash)
            (line,) = delivered(server, handler.client, 1)
        assert {
            "line": "clash",
            "level": "WARNING",
            "app": "billing",
            "env": "production",
            "meta": {"name": "docs.clash", **clash},
        } == fields(line)
        assert line["timestamp"] > 1_000_000_000_000


class TestStructlogPage:
    """docs/structlog.md's snippets, run verbatim, ship what its table says."""

    def test_snippets_ship_the_fields_the_table_names(
        self, server: DevServer, tmp_path: Path, handle_path: str
    ) -> None:
        """The event is the line, `add_log_level`'s level the level, contextvars and event
        keys meta, `TimeStamper(fmt="iso")`'s time the timestamp (not meta); the exception
        ships its traceback at ERROR; stdlib and structlog share one client."""
        pytest.importorskip("structlog")
        run_blocks("structlog.md", server, tmp_path, handle_path)
        assert server.wait_for_lines(6, TIMEOUT), server.lines
        lines = server.lines
        assert {
            "line": "job started",
            "level": "INFO",
            "app": "worker",
            "env": "production",
            "meta": {"queue": "emails", "job_id": "job-17"},
        } == fields(by_text(lines, "job started"))
        failed = by_text(lines, "job failed")
        assert ("ERROR", {"job_id": "job-17"}) == (failed["level"], failed["meta"])
        assert failed["line"].endswith("KeyError: 'missing'")
        streams = [line for line in lines if line["line"] == "one stream"]
        assert [("INFO", {"source": "structlog"}), ("WARNING", {"name": "api", "source": "stdlib"})
                ] == [(line["level"], line["meta"]) for line in streams]  # fmt: skip
        assert ("INFO", {"order": 9}) == (
            by_text(lines, "from structlog")["level"], by_text(lines, "from structlog")["meta"]
        )  # fmt: skip
        assert "WARNING" == by_text(lines, "from a stdlib logger")["level"]
        # Both QueueHandler setups ship the event's keys as meta, not in the text.
        assert {
            "line": "shipped before the queue",
            "level": "INFO",
            "app": "api",
            "env": None,
            "meta": {"order": 9},
        } == fields(by_text(lines, "shipped before the queue"))
        assert {
            "line": "kept as an event through the queue",
            "level": "INFO",
            "app": "api",
            "env": None,
            "meta": {"name": "api", "order": 9},
        } == fields(by_text(lines, "kept as an event through the queue"))


class TestRenderToLogKwargsWarning:
    """structlog.md recommended ending the chain with ``render_to_log_kwargs`` in front of
    the handler, and ``log.info("user created", name="bob")`` then raised into the app."""

    def test_the_page_warns_and_wrap_for_formatter_ships_such_keys(
        self, server: DevServer, handle_path: str
    ) -> None:
        """The page says so (no longer recommending it), and both halves of what it says
        hold: ``render_to_log_kwargs`` raises the ``KeyError`` it quotes for each key it
        names, and ``wrap_for_formatter`` ships the same event with the key as meta."""
        structlog = pytest.importorskip("structlog")
        page = said("docs/structlog.md")
        assert "Do not end the chain with `structlog.stdlib.render_to_log_kwargs`" in page
        assert (
            "raises `KeyError: \"Attempt to overwrite 'name' in LogRecord\"` in your code" in page
        )
        handler = handler_for(server)
        with logger_with("docs.kwargs", handler) as std:
            kwargs_log = structlog.wrap_logger(
                std,
                wrapper_class=structlog.stdlib.BoundLogger,
                processors=[structlog.stdlib.render_to_log_kwargs],
            )
            for key in ("name", "module", "filename", "lineno", "process", "thread", "message",
                        "msg", "args"):  # fmt: skip
                with pytest.raises(KeyError, match=f"Attempt to overwrite '{key}' in LogRecord"):
                    kwargs_log.info("user created", **{key: "bob"})
            structlog.wrap_logger(
                std,
                wrapper_class=structlog.stdlib.BoundLogger,
                processors=[structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
            ).info("user created", name="bob", module="billing")
            (line,) = delivered(server, handler.client, 1)
        assert ("user created", {"name": "bob", "module": "billing"}) == (
            line["line"],
            line["meta"],
        )


class TestStructlogThroughTheHandler:
    """structlog.md: end the chain "with `ProcessorFormatter.wrap_for_formatter` ... and the
    handler reads the event dict itself: `event` is the line, `level` and `timestamp` are
    the line's, the other keys meta". They were not: both were dropped, and the record's
    level and time shipped, so an event's own time (or level) vanished without a trace."""

    def test_the_events_level_and_timestamp_are_the_lines(
        self, server: DevServer, handle_path: str
    ) -> None:
        """An event whose `timestamp` and `level` a processor set ships with them, as
        `LogDNAProcessor` ships such an event; a `timestamp` it cannot read stays meta,
        and an event without them ships the record's level and time."""
        structlog = pytest.importorskip("structlog")

        def stamped(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
            if event.get("stamp"):
                event["timestamp"], event["level"] = event.pop("stamp"), "notice"
            return event

        handler = handler_for(server)
        with logger_with("docs.wrapped", handler) as std:
            log = structlog.wrap_logger(
                std,
                wrapper_class=structlog.stdlib.BoundLogger,
                processors=[stamped, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
            )
            log.warning("its own", stamp=1_600_000_000.5, order=1)
            log.warning("iso", stamp="2020-09-13T12:26:40.5Z", order=2)
            log.warning("unreadable", stamp="yesterday", order=3)
            log.warning("plain", order=4)
            lines = delivered(server, handler.client, 4)
        shipped = [(line["level"], line["timestamp"], line["meta"]) for line in lines]
        plain_ts = shipped[3][1]
        assert [
            ("NOTICE", 1_600_000_000_500, {"name": "docs.wrapped", "order": 1}),
            ("NOTICE", 1_600_000_000_500, {"name": "docs.wrapped", "order": 2}),
            ("NOTICE", shipped[2][1], {"name": "docs.wrapped", "order": 3,
                                       "timestamp": "yesterday"}),
            ("WARNING", plain_ts, {"name": "docs.wrapped", "order": 4}),
        ] == shipped  # fmt: skip
        assert shipped[2][1] > 1_700_000_000_000 and plain_ts > 1_700_000_000_000
        assert "`level` and `timestamp` are the line's" in said("docs/structlog.md")


# -- request ids: "a sane token (letters, digits, `._:/+=@-`, at most 128)"

NEWLINE_ID = "abc-123\n"


def _django_view(request: Any) -> Any:
    from django.http import HttpResponse

    logging.getLogger("docs.django").info("in view")
    return HttpResponse(getattr(request, "request_id", "-"))


urlpatterns: list[Any] = []


def asgi_get(app: Any, headers: list[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """One GET of /v through the ASGI interface; the response's headers."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": "/v", "raw_path": b"/v", "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 5000), "server": ("testserver", 80),
        "headers": headers,
    }  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return dict(sent[0]["headers"])


@pytest.fixture
def captured_on(request: pytest.FixtureRequest) -> Iterator[list[dict[str, Any]]]:
    """What a LogDNAHandler on the ``docs.<framework>`` logger ships, captured."""
    handler = LogDNAHandler(url="http://127.0.0.1:9/logs/ingest")
    with logger_with(f"docs.{request.param}", handler), capture_lines() as lines:
        yield lines


class TestRequestIdIsASaneToken:
    """django.md, flask.md, asgi.md: the `X-Request-ID` header is the request id "when it
    is a sane token (letters, digits, `._:/+=@-`, at most 128), else a new random id".
    One that ended in a newline passed (``$`` matches before a final newline): it
    shipped with the newline, and Django left the response without the header."""

    @pytest.mark.parametrize("captured_on", ["django"], indirect=True)
    def test_django(self, captured_on: list[dict[str, Any]]) -> None:
        """A newline-ended header is replaced by a fresh id, shipped and echoed."""
        pytest.importorskip("django")
        from django.test import Client as DjangoClient
        from django.urls import path

        from tests.helpers import django_settings

        urlpatterns[:] = [path("v", _django_view)]
        middleware = ["logdna_client.contrib.django.LogDNARequestContextMiddleware"]
        with django_settings(__name__, middleware):
            response = DjangoClient().get("/v", HTTP_X_REQUEST_ID=NEWLINE_ID)
        (line,) = captured_on
        assert re.fullmatch("[0-9a-f]{32}", line["meta"]["request_id"]), line["meta"]
        assert line["meta"]["request_id"] == response.get("X-Request-ID")

    @pytest.mark.parametrize("captured_on", ["django"], indirect=True)
    def test_django_header_setting_and_the_128_limit(
        self, captured_on: list[dict[str, Any]]
    ) -> None:
        """`LOGDNA_REQUEST_ID_HEADER` names the header read and echoed; 128 characters of
        the allowed ones are kept (and set as `request.request_id`), 129 are not."""
        pytest.importorskip("django")
        from django.test import Client as DjangoClient
        from django.test import override_settings
        from django.urls import path

        from tests.helpers import django_settings

        urlpatterns[:] = [path("v", _django_view)]
        middleware = ["logdna_client.contrib.django.LogDNARequestContextMiddleware"]
        longest = "aZ9._:/+=@-" * 11 + "abcdefg"
        assert 128 == len(longest)
        header = override_settings(LOGDNA_REQUEST_ID_HEADER="X-Correlation-ID")
        with django_settings(__name__, middleware), header:
            kept = DjangoClient().get("/v", HTTP_X_CORRELATION_ID=longest)
            too_long = DjangoClient().get("/v", HTTP_X_CORRELATION_ID=longest + "h")
        assert (longest, longest) == (kept["X-Correlation-ID"], kept.content.decode())
        assert "X-Request-ID" not in kept
        fresh = too_long["X-Correlation-ID"]
        assert re.fullmatch("[0-9a-f]{32}", fresh) and fresh == too_long.content.decode()
        assert [longest, fresh] == [line["meta"]["request_id"] for line in captured_on]

    @pytest.mark.parametrize("captured_on", ["flask"], indirect=True)
    def test_flask(self, captured_on: list[dict[str, Any]]) -> None:
        """The same through a Flask app called as WSGI with that header."""
        flask = pytest.importorskip("flask")
        from werkzeug.test import EnvironBuilder

        from logdna_client.contrib.flask import LogDNA

        app = flask.Flask(__name__)
        LogDNA(app)

        @app.get("/v")
        def view() -> str:
            logging.getLogger("docs.flask").info("in view")
            return "ok"

        environ = EnvironBuilder(path="/v").get_environ()
        environ["HTTP_X_REQUEST_ID"] = NEWLINE_ID
        started: list[Any] = []
        b"".join(app(environ, lambda status, headers, *exc: started.append(headers)))
        (line,) = captured_on
        assert re.fullmatch("[0-9a-f]{32}", line["meta"]["request_id"]), line["meta"]
        assert line["meta"]["request_id"] == dict(started[0])["X-Request-ID"]

    @pytest.mark.parametrize("captured_on", ["asgi"], indirect=True)
    def test_asgi(self, captured_on: list[dict[str, Any]]) -> None:
        """The same through a bare ASGI app wrapped in `LogDNAMiddleware`."""
        from logdna_client.contrib.asgi import LogDNAMiddleware

        async def inner(scope: Any, receive: Any, send: Any) -> None:
            logging.getLogger("docs.asgi").info("in view")
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

        headers = asgi_get(LogDNAMiddleware(inner), [(b"x-request-id", NEWLINE_ID.encode())])
        (line,) = captured_on
        assert re.fullmatch("[0-9a-f]{32}", line["meta"]["request_id"]), line["meta"]
        echoed = headers[b"x-request-id"].decode()
        assert line["meta"]["request_id"] == echoed


class TestRequestIdHeaderOption:
    """flask.md and asgi.md: `request_id_header="X-Request-ID"` is the header the request
    id is read from and echoed in."""

    @pytest.mark.parametrize("captured_on", ["flask"], indirect=True)
    def test_flask(self, captured_on: list[dict[str, Any]]) -> None:
        """With `request_id_header="X-Correlation-ID"` that header is read and echoed, and
        `X-Request-ID` is neither."""
        flask = pytest.importorskip("flask")
        from logdna_client.contrib.flask import LogDNA

        app = flask.Flask(__name__)
        LogDNA(app, request_id_header="X-Correlation-ID")

        @app.get("/v")
        def view() -> str:
            logging.getLogger("docs.flask").info("in view")
            return str(flask.g.request_id)

        response = app.test_client().get(
            "/v", headers={"X-Correlation-ID": "corr-1", "X-Request-ID": "other"}
        )
        assert ("corr-1", "corr-1") == (response.headers["X-Correlation-ID"], response.text)
        assert "X-Request-ID" not in response.headers
        assert ["corr-1"] == [line["meta"]["request_id"] for line in captured_on]

    @pytest.mark.parametrize("captured_on", ["asgi"], indirect=True)
    def test_asgi(self, captured_on: list[dict[str, Any]]) -> None:
        """The same for `LogDNAMiddleware`, which keeps it in `scope["state"]`."""
        from logdna_client.contrib.asgi import LogDNAMiddleware

        seen: dict[str, Any] = {}

        async def inner(scope: Any, receive: Any, send: Any) -> None:
            seen.update(scope["state"])
            logging.getLogger("docs.asgi").info("in view")
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

        middleware = LogDNAMiddleware(inner, request_id_header="X-Correlation-ID")
        headers = asgi_get(
            middleware, [(b"x-correlation-id", b"corr-2"), (b"x-request-id", b"other")]
        )
        assert (b"corr-2", "corr-2") == (headers[b"x-correlation-id"], seen["request_id"])
        assert b"x-request-id" not in headers
        assert ["corr-2"] == [line["meta"]["request_id"] for line in captured_on]


class TestFrameworkPages:
    """flask.md and asgi.md, run verbatim on both handle paths (test_docs_frameworks
    serves the Flask and Django configs on the default one), and django.md's settings
    served on the Python path: the request's context in every line's meta."""

    @pytest.mark.parametrize("page", ["flask.md", "asgi.md"])
    def test_page_ships_the_request_context(
        self, page: str, server: DevServer, tmp_path: Path, handle_path: str
    ) -> None:
        """The view's line carries `request_id` (the `X-Request-ID` sent), `http_method`
        and `http_path`; Flask's access line (`access_log=True`) also `http_status` and
        `duration_ms`, on the `flask.access` logger."""
        pytest.importorskip("flask" if page == "flask.md" else "starlette")
        run_blocks(page, server, tmp_path, handle_path)
        assert server.wait_for_lines(2 if page == "flask.md" else 1, TIMEOUT), server.lines
        context = {"request_id": "abc-123", "http_method": "GET", "http_path": "/orders/42"}
        view = by_text(server.lines, "showing order 42")
        logger = "__main__" if page == "flask.md" else "shop.orders"  # Flask(__name__)
        assert ("INFO", "shop", "production", {**context, "name": logger}) == (
            view["level"], view["app"], view["env"], view["meta"]
        )  # fmt: skip
        if page == "flask.md":
            (access,) = [line for line in server.lines if line["line"].startswith("GET ")]
            assert re.fullmatch(r"GET /orders/42 200 \([0-9.]+ ms\)", access["line"])
            duration = access["meta"].pop("duration_ms")
            assert isinstance(duration, float)
            assert {**context, "http_status": 200, "name": "flask.access"} == access["meta"]

    def test_django_settings_on_the_python_path(self, server: DevServer, tmp_path: Path) -> None:
        """django.md's settings in a fresh project served by runserver's server, with
        `LOGDNA_CLIENT_PURE_PYTHON=1`: the same lines as on the default path."""
        pytest.importorskip("django")
        from tests import test_docs_frameworks as frameworks

        (tmp_path / "settings.py").write_text(
            frameworks.DJANGO_SETTINGS + frameworks.doc_block("django.md", "py", "LOGGING = {")
        )
        (tmp_path / "urls.py").write_text(frameworks.DJANGO_URLS)
        code = 'import os\nos.environ["LOGDNA_CLIENT_PURE_PYTHON"] = "1"\n'
        console = frameworks.run(tmp_path, code + frameworks.DJANGO_SERVE, server)
        frameworks.check_shipped(server, console)


class TestClosedByTheApp:
    """stdlib.md: "A handler you close yourself stays closed: what it gets afterwards is
    counted as `after_close`." It was, and a client closed before it had sent anything
    also said, of the first such line, that it was "logged after the library's exit hook
    ran", naming atexit handlers and Celery: no exit hook had run."""

    def test_no_exit_hook_report_for_a_close_of_the_app(self, handle_path: str) -> None:
        """A handler closed by the app, and a Client: the lines after are counted, and
        nothing speaks of the exit hook."""
        reports: list[str] = []

        class Keep(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                reports.append(record.getMessage())

        own = logging.getLogger("logdna_client")
        keep = Keep()
        own.addHandler(keep)
        try:
            handler = LogDNAHandler(url="http://127.0.0.1:9/logs/ingest")
            client = Client(url="http://127.0.0.1:9/logs/ingest")
            with logger_with("docs.closed", handler) as log:
                handler.close()
                client.close()
                log.info("after close")
                client.log("after close")
        finally:
            own.removeHandler(keep)
        assert 1 == handler.client.stats()["dropped"]["after_close"]
        assert 1 == client.stats()["dropped"]["after_close"]
        assert [] == [text for text in reports if "exit hook" in text]
        assert "what it gets afterwards is counted as `after_close`" in said("docs/stdlib.md")
