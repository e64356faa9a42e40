"""Tests for logdna_client.structlog: the event dict -> line mapping and the processor."""

from __future__ import annotations

import builtins
import collections
import copy
import datetime as dt
import json
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
from logdna_client._buffer import SEPARATOR
from logdna_client._context import bind_request_context, reset_request_context
from logdna_client._devserver import DevServer
from logdna_client._event import LEVELNOS, LEVELS, NOT_META
from logdna_client.structlog import LogDNAProcessor, event_dict_to_line, level_of, timestamp_of
from tests._helpers_integrations import (
    REPO_ROOT,
    CapturingClient,
    delivered,
    handler_for,
    logger_with,
)
from tests.helpers import in_a_collection, on_a_sender_thread


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

    def test_record_without_a_str_name(
        self, proc: LogDNAProcessor, client: CapturingClient
    ) -> None:
        """An event carrying a record with no logger name (makeLogRecord) still ships."""
        proc(None, "info", {"event": "e", "_record": logging.makeLogRecord({"msg": "m"})})
        assert ["e"] == [line["line"] for line in client.lines]

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
            (" 2023-11-14T22:13:20Z\n", 1_700_000_000_000),
            ("2023-11-14 22:13:20.500+00:00", 1_700_000_000_500),
            ("1e12", 1_000_000_000_000),
            ("2023-11-14T22:13:20z", 1_700_000_000_000),  # a lowercase "z" is UTC too
            ("2023-11-14T22:13:20.123900Z", 1_700_000_000_123),  # truncated, as int()
            ("999e-1", 99_900),  # a number with a "-" where a date has one
            (dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.timezone.utc), 1_700_000_000_000),
        ],
    )
    def test_understood(self, value: object, expected: int) -> None:
        """Epoch seconds/milliseconds, ISO-8601 text and datetimes become epoch ms."""
        assert expected == timestamp_of(value)

    @pytest.mark.parametrize(
        "value",
        ["yesterday", "", None, True, float("nan"), -5, [1], {}, "2023-13-45T00:00:00Z",
         "1234-5678", "2023-", "1e400", "-1e9", 0, 0.0, "0", 1e14, 10**14, "1e14"],
    )  # fmt: skip
    def test_not_understood(self, value: object) -> None:
        """Anything else is not a timestamp."""
        assert None is timestamp_of(value)

    def test_z_is_utc_whatever_the_local_zone(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A trailing "Z" is UTC, not local time (text without an offset is local)."""
        if not hasattr(time, "tzset"):
            pytest.skip("needs time.tzset")
        monkeypatch.setenv("TZ", "XST+5")
        time.tzset()
        try:
            assert 1_700_000_000_000 == timestamp_of("2023-11-14T22:13:20Z")
            assert 1_700_018_000_000 == timestamp_of("2023-11-14T22:13:20")
        finally:
            monkeypatch.undo()
            time.tzset()

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("20231114T221320Z", 1_700_000_000_000),  # the basic format
            ("2023-11-14T22:13:20.5Z", 1_700_000_000_500),  # one digit of fraction
            ("2023-11-14T22:13:20.123456789Z", 1_700_000_000_123),  # RFC 3339 nanoseconds
            ("2023-11-14T22:13:20,25Z", 1_700_000_000_250),  # a comma before it
            ("2023-11-14T22:13:20+0000", 1_700_000_000_000),  # an offset without a colon
            ("2023-11-15T00:13:20.5+0200", 1_700_000_000_500),
            ("2023-11-15T00:13:20+02", 1_700_000_000_000),  # hours alone
            ("2023-11-14T22:13Z", 1_699_999_980_000),  # no seconds
            ("2023-11-14 22:13:20.5+00:00", 1_700_000_000_500),
        ],
    )
    def test_iso_forms_on_every_python(self, text: str, expected: int) -> None:
        """ISO-8601 forms that 3.11's fromisoformat reads and 3.10's does not are read on
        every Python (on 3.10 they shipped as meta, with the time of the call)."""
        assert expected == timestamp_of(text)

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

    @pytest.mark.parametrize(
        ("created", "expected"),
        [(1_700_000_000.25, 1_700_000_000_250), (1_700_000_000, 1_700_000_000_000),
         (float("nan"), None), (float("inf"), None), ("soon", None)],
    )  # fmt: skip
    def test_record_time_as_the_handler_ships_it(
        self, proc: LogDNAProcessor, client: CapturingClient, created: object, expected: int | None
    ) -> None:
        """A ProcessorFormatter's record with no timestamp in its event ships at its
        ``created``, read as the handler reads it: a number of any type, and the time
        of the call where it is none (a NaN ``created`` was counted as an error, the
        line lost)."""
        record = logging.makeLogRecord({"msg": "m", "name": "app", "created": created})
        before = int(time.time() * 1000)
        proc(None, "info", {"event": "r", "_record": record})
        after = int(time.time() * 1000)
        assert 0 == client.stats()["dropped"].get("error", 0)
        (line,) = client.lines
        if expected is None:
            assert before <= line["timestamp"] <= after
        else:
            assert expected == line["timestamp"]

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
    @pytest.mark.parametrize(
        ("before", "error"),
        [
            pytest.param((structlog.processors.add_log_level,), ValueError("boom"), id="exc_info"),
            # No level key: the ``exception`` method name alone means ERROR.
            pytest.param((), KeyError("k"), id="method name"),
            # The ``exception`` string format_exc_info made of exc_info.
            pytest.param((structlog.processors.format_exc_info,), OSError("disk"), id="string"),
        ],
    )
    def test_log_exception_ships_traceback_at_error(
        self,
        proc: LogDNAProcessor,
        client: CapturingClient,
        before: tuple[Any, ...],
        error: Exception,
    ) -> None:
        """log.exception() ships the traceback in the line, level ERROR (the method name
        alone says so), from exc_info or from the ``exception`` string format_exc_info
        made of it."""
        log = bound(proc, *before)
        try:
            raise error
        except type(error):
            log.exception("failed")
        line = client.lines[0]
        assert "ERROR" == line["level"]
        assert line["line"].startswith("failed\nTraceback (most recent call last):")
        assert f"{type(error).__name__}: {error}" in line["line"]
        assert "meta" not in line

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


def _raised(error: BaseException, cause: BaseException | None = None) -> BaseException:
    """``error`` as an ``except`` block gets it (with its traceback), raised from ``cause``."""
    try:
        raise error from cause
    except BaseException as caught:
        return caught


def _context_never_raised() -> BaseException:
    """An exception whose context (set by hand) was never raised: no header starts its text."""
    error = _raised(RuntimeError("outer"))
    error.__context__ = ValueError("inner")
    return error


_GROUP: Any = getattr(builtins, "ExceptionGroup", None)
_needs_groups = pytest.mark.skipif(_GROUP is None, reason="ExceptionGroup is Python 3.11+")


class TestTraceKeys:
    """``exception`` and ``stack`` are a traceback and a stack only when their text is one
    (``format_exc_info``'s, ``StackInfoRenderer``'s): any other value is meta like any key."""

    @pytest.mark.parametrize(
        ("key", "value"),
        [
            ("stack", "prod-eu-1"),
            ("exception", "TimeoutError"),
            ("exception", "KeyError in cache"),
            ("stack", "Stack:\n  here"),
            ("stack", True),
            ("stack", ""),
            ("exception", ""),
            ("exception", None),
            ("exception", {"code": 7}),
        ],
    )
    def test_other_values_stay_meta_in_their_place(
        self, proc: LogDNAProcessor, client: CapturingClient, key: str, value: object
    ) -> None:
        """``log.info("deploy finished", stack="prod-eu-1")`` ships the event alone as the
        line, and ``stack`` as meta, where the event has it."""
        proc(None, "info", {"event": "deploy finished", key: value, "region": "eu-west-1"})
        (line,) = client.lines
        assert "deploy finished" == line["line"]
        assert [(key, value), ("region", "eu-west-1")] == list(line["meta"].items())

    def test_exc_info_ships_its_traceback_beside_a_plain_exception(
        self, proc: LogDNAProcessor, client: CapturingClient
    ) -> None:
        """``exc_info=True`` beside ``exception="KeyError in cache"``: the traceback being
        handled is the line's, the ``exception`` field meta."""
        log = bound(proc, structlog.processors.add_log_level)
        try:
            {}["missing"]
        except KeyError:
            log.error("lookup failed", exception="KeyError in cache", exc_info=True)
        (line,) = client.lines
        assert line["line"].startswith("lookup failed\nTraceback (most recent call last):\n")
        assert line["line"].endswith("\nKeyError: 'missing'")
        assert {"exception": "KeyError in cache"} == line["meta"]

    @pytest.mark.parametrize(
        ("make", "renderer"),
        [
            pytest.param(lambda: _raised(OSError("disk")), structlog.processors.format_exc_info,
                         id="raised"),
            pytest.param(lambda: _raised(OSError("disk")), structlog.processors.ExceptionRenderer(),
                         id="ExceptionRenderer"),
            pytest.param(lambda: _raised(RuntimeError("outer"), ValueError("inner")),
                         structlog.processors.format_exc_info, id="cause never raised"),
            pytest.param(_context_never_raised, structlog.processors.format_exc_info,
                         id="context never raised"),
            pytest.param(lambda: _raised(_GROUP("several", [ValueError("a"), TypeError("b")])),
                         structlog.processors.format_exc_info, id="group",
                         marks=_needs_groups),
            pytest.param(lambda: _raised(_GROUP("one", [ValueError("a")]), KeyError("k")),
                         structlog.processors.format_exc_info, id="group, cause never raised",
                         marks=_needs_groups),
        ],
    )  # fmt: skip
    def test_formatted_tracebacks_are_the_lines(
        self, proc: LogDNAProcessor, client: CapturingClient, make: Any, renderer: Any
    ) -> None:
        """What structlog's ``format_exc_info`` (or ``ExceptionRenderer``) writes for any
        exception, chained and grouped ones too, is appended to the line, not meta."""
        event = renderer(None, "error", {"event": "failed", "exc_info": make(), "job": 3})
        assert isinstance(event["exception"], str)  # structlog's text, not ours
        proc(None, "error", event)
        (line,) = client.lines
        assert (f"failed\n{event['exception']}", {"job": 3}) == (line["line"], line["meta"])

    def test_stack_info_renderer_stack_is_the_lines(
        self, proc: LogDNAProcessor, client: CapturingClient
    ) -> None:
        """A ``stack`` as ``StackInfoRenderer`` writes it is appended to the line, not meta."""
        stack = 'Stack (most recent call last):\n  File "app.py", line 3, in <module>\n    main()'
        proc(None, "info", {"event": "here", "stack": stack, "job": 3})
        (line,) = client.lines
        assert (f"here\n{stack}", {"job": 3}) == (line["line"], line["meta"])


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

    def test_a_failing_report_is_not_raised(
        self, proc: LogDNAProcessor, client: CapturingClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Reporting an event that could not be shipped never raises either."""

        def broken(*args: Any, **kwargs: Any) -> bytes:
            raise RuntimeError("bug")

        proc._entry = broken  # type: ignore[assignment]
        monkeypatch.setattr(client._reporter, "report", broken)
        event = {"event": "x"}
        assert event is proc(None, "info", event)
        assert 1 == client.stats()["dropped"].get("error")

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
        """Events made on a sender thread are the sender's work (urllib3 through a
        ProcessorFormatter, even once remove_processors_meta took its record out: H201, a
        line per request made the next one), never shipped; but for a structlog call in
        a garbage collection there (a finalizer's: H198), and not urllib3's even then."""

        urllib3 = logging.LogRecord("urllib3.connectionpool", logging.DEBUG, "f", 1, "m", (), None)
        event = {"event": "from the sender", "_record": urllib3, "_from_structlog": False}
        with on_a_sender_thread() as me:
            urllib3.thread = me
            assert event is proc(None, "debug", event)
            proc(None, "info", {"event": "its record removed"})
            with in_a_collection(me):
                proc(None, "debug", dict(event))
                proc(None, "info", {"event": "a finalizer's"})
        assert ["a finalizer's"] == [json.loads(line)["line"] for line in client.captured]

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


class _StrKey(str):
    """A str whose ``str()`` is other text: the general path ships that."""

    def __str__(self) -> str:
        return "shown"


class _DefaultEvent(dict):  # type: ignore[type-arg]
    """An event dict class (structlog takes any as context_class) whose get() gives a
    default message: the general path, which reads it as a Mapping, ships that."""

    def get(self, key: Any, default: Any = None) -> Any:
        return super().get(key, "(default)" if key == "event" else default)


# Events the common path takes, and what the general path makes of them must be the
# same bytes: text, level from the method or the ``level`` key, parsed timestamps,
# meta (redacted, with odd but JSON-able values), text that entry() redacts or repairs.
COMMON_EVENTS: list[tuple[str, dict[str, Any]]] = [
    ("info", {"event": "request 1 served in 2 ms"}),
    ("info", {"event": "served", "user": "u1", "path": "/x", "status": 200, "ms": 1.5}),
    ("warn", {"event": "w"}),
    ("exception", {"event": "no exc_info here"}),
    ("msg", {"event": "m", "level": "error"}),
    ("info", {"event": "upper", "level": "CRITICAL"}),
    ("debug", {"event": "t", "timestamp": 1_700_000_000.25, "n": None}),
    ("info", {"event": "t", "timestamp": "2024-01-02T03:04:05.678Z"}),
    ("info", {"event": "t", "timestamp": 1_700_000_000_123}),
    ("info", {"event": "secret", "password": "hunter2", "nested": {"token": "x"}}),
    ("info", {"event": "token=abc123 in text"}),
    ("info", {"event": "lone \ud800 surrogate"}),
    ("info", {"event": "e", "when": dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc)}),
    ("info", {"event": "e", "list": [1, "two", None], "flag": False}),
]

# Events the common path leaves to the general one (and why).
UNUSUAL_EVENTS: list[tuple[str, Any]] = [
    ("info", {"user": 1}),  # no message: key=value pairs
    ("info", {"event": None}),
    ("info", {"event": 42}),
    ("info", {"event": ""}),  # empty: encode() marks it
    ("info", {"event": "x" * 100_000}),  # over plain_max_chars: encode() caps it
    ("info", {"event": "k", 1: "int key"}),
    ("info", {"event": "k", ("a", 1): "tuple key"}),
    ("info", {"event": "t", "timestamp": "soon"}),  # not a time: kept as meta
    ("info", {"event": "t", "level": 40}),
    ("info", {"event": "t", "level": "notice"}),  # an unknown level name
    ("info", {"event": "t", "level": None}),
    ("info", {"event": "t", "level": _StrKey("error")}),  # ships as SHOWN
    ("weird", {"event": "t"}),
    ("error", {"event": "boom", "exc_info": (ValueError, ValueError("v"), None)}),
    ("info", {"event": "s", "stack": "Stack:\n  here"}),
    ("info", {"event": "r", "_record": logging.makeLogRecord({"msg": "m", "name": "app"})}),
    ("info", {"event": "o", "obj": object()}),  # orjson does not know it
    ("info", {"event": "o", "big": 2**70}),  # nor this
    ("info", collections.OrderedDict(event="ordered")),
    ("info", _DefaultEvent(user=1)),  # a dict subclass: its own get() and all
]


def _general(proc: LogDNAProcessor, method: str, event: Any) -> bytes | None:
    """What the general path (``_ship``) ships for ``event``."""
    captured = proc.client.captured  # type: ignore[attr-defined]
    before = len(captured)
    proc._ship(method, event)
    assert len(captured) - before <= 1
    return captured.pop() if len(captured) > before else None


@pytest.fixture
def fixed_now(monkeypatch: pytest.MonkeyPatch) -> float:
    """The processor's clock stands still, so both paths stamp the same time."""
    # With 0.7 ms over a whole millisecond: cutting and rounding it would differ.
    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.0007)
    return 1_700_000_000.0007


@pytest.mark.usefixtures("fixed_now")
class TestCommonPath:
    @pytest.mark.parametrize(("method", "event"), COMMON_EVENTS)
    def test_same_bytes_as_the_general_path(
        self, proc: LogDNAProcessor, client: CapturingClient, method: str, event: dict[str, Any]
    ) -> None:
        """The common path takes the event and ships exactly what ``_ship`` would."""
        before = copy.deepcopy(event)
        assert proc._ship_common(method, event)
        (common,) = client.captured
        client.captured.clear()
        assert _general(proc, method, event) == common
        assert repr(before) == repr(event)

    @pytest.mark.parametrize(("method", "event"), UNUSUAL_EVENTS)
    def test_unusual_events_go_the_general_way(
        self, proc: LogDNAProcessor, client: CapturingClient, method: str, event: Any
    ) -> None:
        """The common path declines (shipping nothing) what it does not handle, and the
        processor ships it through ``_ship``."""
        if type(event) is dict:
            assert not proc._ship_common(method, event)
            assert [] == client.captured
        proc(None, method, event)
        (shipped,) = client.captured
        client.captured.clear()
        assert _general(proc, method, event) == shipped

    @pytest.mark.parametrize("key", sorted(NOT_META))
    def test_every_key_that_is_no_meta_ships_as_the_general_path_ships_it(
        self, proc: LogDNAProcessor, client: CapturingClient, key: str
    ) -> None:
        """Every key ``event_dict_to_line`` keeps out of meta (a key added there is
        covered here at once), with a value the common path could write: the processor
        ships what ``_ship`` makes of the event, whichever path takes it."""
        for value in ("v", 1_700_000_000, None):
            event = {"event": "t", "user": "u", key: value}
            proc(None, "info", dict(event))
            (shipped,) = client.captured
            client.captured.clear()
            assert _general(proc, "info", event) == shipped

    def test_str_subclass_key_goes_the_general_way(
        self, proc: LogDNAProcessor, client: CapturingClient
    ) -> None:
        """A key that is a str subclass ships as its ``str()``, as the general path
        ships it, not as the text orjson would see."""
        proc(None, "info", {"event": "k", _StrKey("raw"): 1})
        assert {"shown": 1} == client.lines[0]["meta"]

    def test_plain_event(self, proc: LogDNAProcessor, client: CapturingClient) -> None:
        """The plain call's event: its text, INFO, now, no meta."""
        proc(None, "info", {"event": "request 7 served in 7 ms"})
        (line,) = client.lines
        assert {
            "line": "request 7 served in 7 ms",
            "timestamp": 1_700_000_000_000,
            "level": "INFO",
        } == {k: line[k] for k in ("line", "timestamp", "level")}
        assert "meta" not in line

    def test_meta_is_every_other_key(self, proc: LogDNAProcessor, client: CapturingClient) -> None:
        """Meta is the event minus ``event``, ``level`` and a parsed ``timestamp``, in order."""
        proc(None, "info", {"b": 2, "event": "e", "level": "info", "timestamp": 1.7e9, "a": 1})
        (line,) = client.lines
        assert ["b", "a"] == list(line["meta"])
        assert 1_700_000_000_000 == line["timestamp"]

    @pytest.mark.parametrize(
        ("method", "event", "expected"),
        [
            ("warn", {"event": "e"}, "WARNING"),
            ("exception", {"event": "e"}, "ERROR"),
            ("fatal", {"event": "e"}, "CRITICAL"),
            ("msg", {"event": "e"}, "INFO"),
            ("info", {"event": "e", "level": "warn"}, "WARNING"),
            ("info", {"event": "e", "level": "ERROR"}, "ERROR"),
            ("info", {"event": "e", "level": "Warning"}, "WARNING"),
            ("info", {"event": "e", "level": 30}, "WARNING"),
            ("notice", {"event": "e"}, "NOTICE"),
        ],
    )
    def test_level_mapping(
        self,
        proc: LogDNAProcessor,
        client: CapturingClient,
        method: str,
        event: dict[str, Any],
        expected: str,
    ) -> None:
        """Method names and ``level`` values map to the level ``level_of`` gives."""
        proc(None, method, event)
        assert expected == client.lines[0]["level"] == level_of(method, event)

    @pytest.mark.parametrize("method", [*LEVELS, "weird", "Warning"])
    @pytest.mark.parametrize("min_level", ["DEBUG", "WARNING", "CRITICAL"])
    def test_min_level(self, method: str, min_level: str) -> None:
        """The client's level filters the common path as it filters the general one,
        for the method name and for the ``level`` key alike."""
        c = CapturingClient(level=min_level)
        p = LogDNAProcessor(client=c)
        for name, event in ((method, {"event": "m"}), ("info", {"event": "m", "level": method})):
            p(None, name, event)
            shipped = c.captured[:]
            c.captured.clear()
            general = _general(p, name, event)
            assert shipped == ([] if general is None else [general])
            level = LEVELNOS.get(level_of(name, event), logging.INFO)
            assert bool(shipped) == (level >= logging.getLevelName(min_level))

    def test_request_context(self, proc: LogDNAProcessor, client: CapturingClient) -> None:
        """The request context is meta under the event's own keys, also for an event
        with nothing but its text; none once it is reset."""
        token = bind_request_context(request_id="r1", user="ctx")
        try:
            proc(None, "info", {"event": "a", "user": "ev", "n": 1})
            proc(None, "info", {"event": "b"})
            assert proc._ship_common("info", {"event": "c"})
        finally:
            reset_request_context(token)
        proc(None, "info", {"event": "after"})
        a, b, c, after = client.lines
        assert {"request_id": "r1", "user": "ev", "n": 1} == a["meta"]
        assert ["request_id", "user", "n"] == list(a["meta"])
        assert {"request_id": "r1", "user": "ctx"} == b["meta"] == c["meta"]
        assert "meta" not in after

    def test_nested_events_one_level_deep(self, proc: LogDNAProcessor) -> None:
        """An event logged while a common one is being queued (a signal handler, say)
        ships; one nested deeper is counted as ``reentrant``; the thread is free after."""
        from logdna_client._threads import BUSY_THREADS, NESTED_THREADS

        client = proc.client
        captured: list[bytes] = []
        depth = [0]

        def put_entry(entry: bytes) -> bool:
            depth[0] += 1
            if depth[0] <= 2:
                proc(None, "info", {"event": f"nested {depth[0]}"})
            captured.append(entry)
            return True

        client.put_entry = put_entry  # type: ignore[method-assign]
        proc(None, "info", {"event": "outer"})
        lines = [orjson.loads(entry[len(SEPARATOR) :])["line"] for entry in captured]
        assert ["nested 1", "outer"] == lines
        assert 1 == client.stats()["dropped"]["reentrant"]
        me = threading.get_ident()
        assert me not in BUSY_THREADS
        assert me not in NESTED_THREADS

    def test_sender_thread_skipped(self, proc: LogDNAProcessor, client: CapturingClient) -> None:
        """A common event made on a sender thread is not shipped."""
        with on_a_sender_thread():
            proc(None, "info", {"event": "from the sender"})
        assert [] == client.captured

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        event=st.dictionaries(
            st.one_of(
                st.sampled_from(["event", "level", "timestamp", "user", "exc_info", "_record"]),
                st.text(max_size=6),
                st.integers(),
            ),
            st.one_of(
                st.none(),
                st.booleans(),
                st.integers(),
                st.floats(),
                st.text(max_size=20),
                st.sampled_from(["info", "WARN", "error", "notice", "2024-01-02T03:04:05Z"]),
                st.datetimes(),
                st.lists(st.integers(), max_size=3),
                st.dictionaries(st.sampled_from(["a", "password"]), st.text(max_size=4)),
            ),
            max_size=6,
        ),
        method=st.sampled_from([*LEVELS, "weird"]),
    )
    def test_any_event_same_bytes_either_way(self, event: dict[Any, Any], method: str) -> None:
        """For any event dict the processor ships what the general path ships."""
        c = CapturingClient(level="INFO")
        p = LogDNAProcessor(client=c)
        p(None, method, event)
        shipped = c.captured[:]
        c.captured.clear()
        general = _general(p, method, event)
        assert shipped == ([] if general is None else [general])


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
        """ProcessorFormatter.wrap_for_formatter: event is the line, keys meta (after the
        logger's name, as for any record), no internals."""
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
        assert {"name": "t.structlog.wrap", "invoice": 7} == line["meta"]

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
