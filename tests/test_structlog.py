"""Tests for logdna_client.structlog: the event dict -> line mapping and the processor."""

from __future__ import annotations

import copy
import datetime as dt
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logdna_client import ConfigurationError, LogDNAHandler
from logdna_client._context import bind_request_context, reset_request_context
from logdna_client._devserver import DevServer
from logdna_client.structlog import LogDNAProcessor, event_dict_to_line, level_of, timestamp_of
from tests._helpers_integrations import (
    REPO_ROOT,
    CapturingClient,
    delivered,
    handler_for,
    logger_with,
)


@pytest.fixture
def client() -> Iterator[CapturingClient]:
    c = CapturingClient()
    yield c
    c.close(0)


@pytest.fixture
def proc(client: CapturingClient) -> LogDNAProcessor:
    return LogDNAProcessor(client=client)


@pytest.fixture(autouse=True)
def _clear_contextvars() -> Iterator[None]:
    structlog.contextvars.clear_contextvars()
    yield
    structlog.contextvars.clear_contextvars()


def bound(proc: LogDNAProcessor, *before: Any) -> Any:
    """A structlog logger: ``before`` processors, then ours, then a JSON renderer."""
    return structlog.wrap_logger(
        structlog.ReturnLogger(),
        processors=[*before, proc, structlog.processors.JSONRenderer()],
    )


class TestProcessorContract:
    def test_returns_the_same_dict_unchanged(self, proc: LogDNAProcessor) -> None:
        """The processor hands the event dict on untouched, so the renderer still runs."""
        event = {"event": "hi", "user": 1, "nested": {"a": [1, 2]}, "level": "info"}
        before = copy.deepcopy(event)
        out = proc(None, "info", event)
        assert out is event
        assert before == event

    def test_renderer_output_unaffected(self, proc: LogDNAProcessor) -> None:
        """A pipeline with the processor renders what it renders without it."""
        rendered = bound(proc).info("hello", user=7)
        assert {"event": "hello", "user": 7} == orjson.loads(rendered)

    def test_client_exposed_and_shared(self, client: CapturingClient) -> None:
        """``client=`` shares a pipeline; ``.client`` exposes it."""
        assert client is LogDNAProcessor(client=client).client

    def test_client_and_options_conflict(self, client: CapturingClient) -> None:
        """Passing both a client and options is a configuration error."""
        with pytest.raises(ConfigurationError):
            LogDNAProcessor(client=client, app="x")

    def test_builds_own_client_from_string_options(self, server: DevServer) -> None:
        """Options (strings too) build a client of its own."""
        p = LogDNAProcessor(url=server.url, app="api", flush_interval="0.05", tags="a, b")
        try:
            assert ("a", "b") == p.client.config.tags
            p(None, "info", {"event": "own"})
            assert p.flush(10)
        finally:
            p.close()
        assert p.client.closed
        assert "own" == server.lines[0]["line"]

    def test_close_leaves_a_shared_client_running(self, client: CapturingClient) -> None:
        """close() on a processor built with client= does not close that client."""
        LogDNAProcessor(client=client).close()
        assert not client.closed


class TestLineMapping:
    def test_event_is_the_line_other_keys_meta(
        self, proc: LogDNAProcessor, client: CapturingClient
    ) -> None:
        """``event`` is the line text; every other key is meta."""
        proc(None, "info", {"event": "user logged in", "user_id": 42, "ok": True})
        (line,) = client.lines
        assert "user logged in" == line["line"]
        assert {"user_id": 42, "ok": True} == line["meta"]
        assert "INFO" == line["level"]

    def test_no_meta_when_only_event(self, proc: LogDNAProcessor, client: CapturingClient) -> None:
        """An event with nothing but its text ships without meta."""
        proc(None, "info", {"event": "bare"})
        assert "meta" not in client.lines[0]

    @pytest.mark.parametrize(
        ("method", "expected"),
        [
            ("debug", "DEBUG"),
            ("info", "INFO"),
            ("msg", "INFO"),
            ("warning", "WARNING"),
            ("warn", "WARNING"),
            ("error", "ERROR"),
            ("exception", "ERROR"),
            ("critical", "CRITICAL"),
            ("fatal", "CRITICAL"),
            ("notice", "NOTICE"),
        ],
    )
    def test_level_from_method_name(self, method: str, expected: str) -> None:
        """Without a ``level`` key the method name decides, with aliases mapped."""
        assert expected == level_of(method, {})

    def test_level_key_wins(self, proc: LogDNAProcessor, client: CapturingClient) -> None:
        """The ``level`` key (add_log_level) wins over the method name and is not meta."""
        proc(None, "info", {"event": "x", "level": "warning"})
        assert "WARNING" == client.lines[0]["level"]
        assert "meta" not in client.lines[0]

    def test_numeric_level(self) -> None:
        """A numeric level maps to its name."""
        assert "ERROR" == level_of("info", {"level": 40})

    def test_missing_event_renders_pairs(
        self, proc: LogDNAProcessor, client: CapturingClient
    ) -> None:
        """Without an ``event`` key the line shows the key=value pairs."""
        proc(None, "info", {"user": 1, "action": "login"})
        (line,) = client.lines
        assert "user=1 action=login" == line["line"]
        assert {"user": 1, "action": "login"} == line["meta"]

    def test_non_str_event(self, proc: LogDNAProcessor, client: CapturingClient) -> None:
        """A non-string event ships as its str()."""
        proc(None, "info", {"event": {"a": 1}})
        assert "{'a': 1}" == client.lines[0]["line"]

    def test_event_whose_str_raises(self, proc: LogDNAProcessor, client: CapturingClient) -> None:
        """An event whose __str__ raises still ships, with a marker."""

        class Bad:
            def __str__(self) -> str:
                raise RuntimeError("no")

        proc(None, "info", {"event": Bad(), "k": Bad()})
        (line,) = client.lines
        assert "<unprintable Bad>" == line["line"]
        assert "<unprintable Bad>" == line["meta"]["k"]

    def test_structlog_internal_keys_never_meta(self) -> None:
        """ProcessorFormatter bookkeeping (_record, _from_structlog, ...) is not meta."""
        rec = logging.makeLogRecord({"msg": "x"})
        text, meta = event_dict_to_line(
            {
                "event": "e",
                "_record": rec,
                "_from_structlog": True,
                "_logger": 1,
                "_name": "info",
                "k": "v",
            }
        )
        assert ("e", {"k": "v"}) == (text, meta)


class TestTimestamp:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (1_700_000_000, 1_700_000_000_000),
            (1_700_000_000.25, 1_700_000_000_250),
            (1_700_000_000_123, 1_700_000_000_123),
            ("1700000000.5", 1_700_000_000_500),
            ("2023-11-14T22:13:20Z", 1_700_000_000_000),
            ("2023-11-14T22:13:20.123456Z", 1_700_000_000_123),
            ("2023-11-14T22:13:20+00:00", 1_700_000_000_000),
            ("2023-11-14T23:13:20+01:00", 1_700_000_000_000),
            (dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.timezone.utc), 1_700_000_000_000),
        ],
    )
    def test_understood(self, value: object, expected: int) -> None:
        """Epoch seconds/milliseconds, ISO-8601 text and datetimes become epoch ms."""
        assert expected == timestamp_of(value)

    @pytest.mark.parametrize("value", ["yesterday", "", None, True, float("nan"), -5, [1], {}])
    def test_not_understood(self, value: object) -> None:
        """Anything else is not a timestamp."""
        assert None is timestamp_of(value)

    def test_timestamper_iso_is_used(self, proc: LogDNAProcessor, client: CapturingClient) -> None:
        """TimeStamper(fmt="iso") output becomes the line's timestamp, not meta."""
        bound(proc, structlog.processors.TimeStamper(fmt="iso")).info("t")
        line = client.lines[0]
        assert abs(time.time() * 1000 - line["timestamp"]) < 5000
        assert "meta" not in line

    def test_timestamper_epoch_is_used(
        self, proc: LogDNAProcessor, client: CapturingClient
    ) -> None:
        """An explicit epoch timestamp is shipped as given."""
        proc(None, "info", {"event": "t", "timestamp": 1_700_000_000})
        assert 1_700_000_000_000 == client.lines[0]["timestamp"]

    def test_unknown_timestamp_kept_as_meta(
        self, proc: LogDNAProcessor, client: CapturingClient
    ) -> None:
        """A timestamp that cannot be read stays in meta and the line gets now."""
        before = int(time.time() * 1000)
        proc(None, "info", {"event": "t", "timestamp": "last tuesday"})
        line = client.lines[0]
        assert "last tuesday" == line["meta"]["timestamp"]
        assert line["timestamp"] >= before


class TestExceptions:
    def test_log_exception_ships_traceback_at_error(
        self, proc: LogDNAProcessor, client: CapturingClient
    ) -> None:
        """log.exception() ships the traceback in the line, level ERROR."""
        log = bound(proc, structlog.processors.add_log_level)
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
        line = client.lines[0]
        assert "ERROR" == line["level"]
        assert line["line"].startswith("failed\nTraceback (most recent call last):")
        assert "ValueError: boom" in line["line"]
        assert "meta" not in line

    def test_exception_method_without_add_log_level(
        self, proc: LogDNAProcessor, client: CapturingClient
    ) -> None:
        """The ``exception`` method name alone means ERROR."""
        try:
            raise KeyError("k")
        except KeyError:
            bound(proc).exception("failed")
        assert "ERROR" == client.lines[0]["level"]
        assert "KeyError: 'k'" in client.lines[0]["line"]

    def test_exc_info_instance_and_tuple(
        self, proc: LogDNAProcessor, client: CapturingClient
    ) -> None:
        """exc_info may be an exception instance or a (type, value, tb) tuple."""
        try:
            raise RuntimeError("inst")
        except RuntimeError as exc:
            err = exc
            info = sys.exc_info()
        proc(None, "error", {"event": "a", "exc_info": err})
        proc(None, "error", {"event": "b", "exc_info": info})
        proc(None, "error", {"event": "c", "exc_info": True})  # no exception being handled
        a, b, c = client.lines
        assert "RuntimeError: inst" in a["line"]
        assert "RuntimeError: inst" in b["line"]
        assert "c" == c["line"]

    def test_format_exc_info_string(self, proc: LogDNAProcessor, client: CapturingClient) -> None:
        """An ``exception`` string (format_exc_info ran first) is appended to the line."""
        log = bound(proc, structlog.processors.format_exc_info)
        try:
            raise OSError("disk")
        except OSError:
            log.exception("io")
        line = client.lines[0]
        assert line["line"].startswith("io\nTraceback")
        assert "OSError: disk" in line["line"]
        assert "meta" not in line

    def test_structured_exception_stays_meta(
        self, proc: LogDNAProcessor, client: CapturingClient
    ) -> None:
        """A structured ``exception`` (dict_tracebacks) stays searchable as meta."""
        proc(None, "error", {"event": "x", "exception": [{"exc_type": "ValueError"}]})
        assert [{"exc_type": "ValueError"}] == client.lines[0]["meta"]["exception"]

    def test_stack_appended(self, proc: LogDNAProcessor, client: CapturingClient) -> None:
        """A ``stack`` (StackInfoRenderer) is appended to the line."""
        bound(proc, structlog.processors.StackInfoRenderer()).info("s", stack_info=True)
        line = client.lines[0]["line"]
        assert line.startswith("s\nStack (most recent call last):")


class TestContext:
    def test_contextvars_become_meta(self, proc: LogDNAProcessor, client: CapturingClient) -> None:
        """Keys bound with structlog.contextvars ship as meta."""
        structlog.contextvars.bind_contextvars(request_id="r-1", tenant="acme")
        bound(proc, structlog.contextvars.merge_contextvars).info("hello", n=1)
        assert {"request_id": "r-1", "tenant": "acme", "n": 1} == client.lines[0]["meta"]

    def test_request_context_merged_under_event_keys(
        self, proc: LogDNAProcessor, client: CapturingClient
    ) -> None:
        """The contrib request context is meta too; the event's own keys win."""
        token = bind_request_context(request_id="ctx", http_method="GET")
        try:
            proc(None, "info", {"event": "e", "http_method": "POST"})
        finally:
            reset_request_context(token)
        proc(None, "info", {"event": "after"})
        first, after = client.lines
        assert {"request_id": "ctx", "http_method": "POST"} == first["meta"]
        assert "meta" not in after


class TestNeverHurts:
    def test_exc_info_that_is_not_an_exception_still_ships(
        self, proc: LogDNAProcessor, client: CapturingClient
    ) -> None:
        """An ``exc_info`` tuple that is not (type, value, traceback) ships the event with a
        marker instead of vanishing; nothing is dropped."""
        proc(None, "error", {"event": "boom", "exc_info": ("a", "b", "c")})
        [line] = client.lines
        assert line["line"].startswith("boom\nexc_info=('a', 'b', 'c') [logdna_client:")
        assert 0 == client.stats()["dropped_total"]

    def test_level_threshold(self) -> None:
        """Events below the client's level are not shipped."""
        c = CapturingClient(level="WARNING")
        p = LogDNAProcessor(client=c)
        p(None, "info", {"event": "quiet"})
        p(None, "info", {"event": "loud", "level": "error"})
        assert ["loud"] == [line["line"] for line in c.lines]

    def test_encode_failure_is_reported_not_raised(
        self, proc: LogDNAProcessor, caplog: pytest.LogCaptureFixture
    ) -> None:
        """An internal failure returns the event and is reported on the logdna_client logger."""

        def broken(*args: Any) -> bytes:
            raise RuntimeError("bug")

        proc._entry = broken  # type: ignore[assignment]
        event = {"event": "x"}
        with caplog.at_level(logging.WARNING, logger="logdna_client"):
            assert event is proc(None, "info", event)
            assert event is proc(None, "info", event)
        reports = [r for r in caplog.records if r.name == "logdna_client"]
        assert 1 == len(reports)  # rate-limited: once per kind

    def test_rendered_string_still_ships(
        self, proc: LogDNAProcessor, client: CapturingClient
    ) -> None:
        """Placed after a renderer, it ships the rendered text and returns it."""
        assert "already rendered" == proc(None, "warning", "already rendered")  # type: ignore[arg-type]
        assert ("already rendered", "WARNING") == (
            client.lines[0]["line"],
            client.lines[0]["level"],
        )

    def test_sender_thread_events_not_shipped(
        self, proc: LogDNAProcessor, client: CapturingClient
    ) -> None:
        """Events made on a sender thread (urllib3 through a formatter) are never shipped."""
        from logdna_client._threads import SENDER_THREADS

        me = threading.get_ident()
        SENDER_THREADS.add(me)
        try:
            event = {"event": "from the sender"}
            assert event is proc(None, "debug", event)
        finally:
            SENDER_THREADS.discard(me)
        assert [] == client.captured

    def test_reentrant_event_does_not_recurse(
        self, proc: LogDNAProcessor, client: CapturingClient
    ) -> None:
        """An event value whose __str__ logs through the same processor: the inner event
        ships (one level of nesting); one nested deeper is counted as ``reentrant``."""

        class Chatty:
            def __str__(self) -> str:
                proc(None, "info", {"event": "inner", "again": Deeper()})
                return "chatty"

        class Deeper:
            def __str__(self) -> str:
                proc(None, "info", {"event": "too deep"})
                return "deeper"

        proc(None, "info", {"event": Chatty()})
        assert ["inner", "chatty"] == [line["line"] for line in client.lines]
        assert 1 == client.stats()["dropped"]["reentrant"]

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        event=st.dictionaries(
            st.one_of(
                st.text(max_size=12),
                st.sampled_from(
                    ["event", "level", "timestamp", "exc_info", "exception", "stack", "_record"]
                ),
            ),
            st.recursive(
                st.none()
                | st.booleans()
                | st.integers()
                | st.floats()
                | st.text()
                | st.binary(max_size=8)
                | st.datetimes(),
                lambda inner: (
                    st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=3)
                ),
                max_leaves=8,
            ),
            max_size=8,
        ),
        method=st.sampled_from(["info", "exception", "warn", "msg", "fatal", "weird"]),
    )
    def test_arbitrary_event_dicts(self, event: dict[str, Any], method: str) -> None:
        """Any event dict: never raises, returns it unchanged, ships one valid JSON line."""
        c = CapturingClient()
        p = LogDNAProcessor(client=c)
        before = copy.deepcopy(event)
        assert event is p(None, method, event)
        assert repr(before) == repr(event)
        (data,) = c.captured
        line = orjson.loads(data)
        assert isinstance(line["line"], str)
        assert line["line"]
        assert isinstance(line["timestamp"], int)
        assert isinstance(line["level"], str)
        assert isinstance(line.get("meta", {}), dict)


class TestEndToEnd:
    def test_configured_pipeline_delivers(self, server: DevServer) -> None:
        """A structlog.configure() pipeline delivers lines to the server."""
        p = LogDNAProcessor(url=server.url, app="svc", flush_interval="0.05")
        try:
            structlog.configure(
                processors=[
                    structlog.contextvars.merge_contextvars,
                    structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso"),
                    p,
                    structlog.processors.JSONRenderer(),
                ],
                logger_factory=structlog.ReturnLoggerFactory(),
            )
            structlog.contextvars.bind_contextvars(request_id="abc")
            log = structlog.get_logger()
            log.info("one", user=1)
            log.warning("two")
            lines = delivered(server, p.client, 2)
        finally:
            structlog.reset_defaults()
            p.close()
        assert ["one", "two"] == [line["line"] for line in lines]
        assert {"request_id": "abc", "user": 1} == lines[0]["meta"]
        assert ("INFO", "WARNING") == (lines[0]["level"], lines[1]["level"])
        assert "svc" == lines[0]["app"]


class TestStdlibBridge:
    def test_render_to_log_kwargs_keys_become_meta(self, server: DevServer) -> None:
        """structlog.stdlib.render_to_log_kwargs: event is the line, keys are meta."""
        h = handler_for(server)
        with logger_with("t.structlog.kwargs", h) as std:
            log = structlog.wrap_logger(
                std,
                wrapper_class=structlog.stdlib.BoundLogger,
                processors=[structlog.stdlib.render_to_log_kwargs],
            )
            log.info("paid", invoice=7, amount=3.5)
            (line,) = delivered(server, h.client, 1)
        assert "paid" == line["line"]
        assert {"name": "t.structlog.kwargs", "invoice": 7, "amount": 3.5} == line["meta"]

    def test_wrap_for_formatter_keys_become_meta(self, server: DevServer) -> None:
        """ProcessorFormatter.wrap_for_formatter: event is the line, keys meta, no internals."""
        h = handler_for(server)
        with logger_with("t.structlog.wrap", h) as std:
            log = structlog.wrap_logger(
                std,
                wrapper_class=structlog.stdlib.BoundLogger,
                processors=[structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
            )
            log.info("paid", invoice=7)
            (line,) = delivered(server, h.client, 1)
        assert "paid" == line["line"]
        assert {"invoice": 7} == line["meta"]

    def test_processor_inside_processor_formatter(self, server: DevServer) -> None:
        """The processor also works in ProcessorFormatter's chain (stdlib records too)."""
        p = LogDNAProcessor(url=server.url, flush_interval="0.05")
        formatter = structlog.stdlib.ProcessorFormatter(
            processors=[p, structlog.processors.JSONRenderer()],
            foreign_pre_chain=[structlog.stdlib.add_log_level],
        )
        console = logging.StreamHandler(open("/dev/null", "w"))  # noqa: SIM115
        console.setFormatter(formatter)
        try:
            with logger_with("t.structlog.pf", console) as std:
                std.warning("plain %s", "stdlib", extra={"k": 1})
                log = structlog.wrap_logger(
                    std,
                    wrapper_class=structlog.stdlib.BoundLogger,
                    processors=[structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
                )
                log.info("from structlog", order=9)
                lines = delivered(server, p.client, 2)
        finally:
            console.stream.close()
            p.close()
        assert ["plain stdlib", "from structlog"] == [line["line"] for line in lines]
        assert "WARNING" == lines[0]["level"]
        assert {"order": 9} == lines[1]["meta"]


class TestOptionalDependency:
    def test_import_package_does_not_import_structlog(self) -> None:
        """``import logdna_client`` never imports structlog (nor the frameworks)."""
        code = (
            "import sys, logdna_client, logdna_client.contrib\n"
            "bad = {'structlog', 'django', 'flask'} & set(sys.modules)\n"
            "assert not bad, bad\n"
        )
        subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT, timeout=60)

    def test_processor_module_works_without_structlog(self) -> None:
        """logdna_client.structlog imports and ships with structlog not installed."""
        code = (
            "import sys\n"
            "sys.modules['structlog'] = None  # makes `import structlog` fail\n"
            "from logdna_client.structlog import LogDNAProcessor\n"
            "p = LogDNAProcessor(url='http://127.0.0.1:9/logs/ingest', hostname='h')\n"
            "got = []\n"
            "p.client.put = got.append\n"
            "p.client.put_entry = got.append\n"
            "p(None, 'info', {'event': 'x', 'k': 1})\n"
            "assert len(got) == 1, got\n"
            "p.client.close(0)\n"
        )
        subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT, timeout=60)


def test_handler_unaffected_by_processor_module() -> None:
    """Importing the processor module leaves LogDNAHandler as it was."""
    assert LogDNAHandler.__module__ == "logdna_client._handler"
