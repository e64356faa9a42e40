"""Tests for _speedups.c's EventHandle: LogDNAProcessor's C call ships the Python bytes."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import decimal
import enum
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logdna_client import LogDNAHandler, _native
from logdna_client._buffer import entry_cost
from logdna_client._event import NOT_META, timestamp_of
from logdna_client._threads import BUSY_THREADS, SENDER_THREADS
from logdna_client.contrib import bind_request_context, reset_request_context
from logdna_client.structlog import LogDNAProcessor
from tests import test_speedups
from tests.helpers import busy_while_putting, in_forked_child, needs_speedups
from tests.test_speedups import SCALARS, UNREACHABLE, offline_handler, record, twin

#: The handler on the C path and the one on the Python path (test_speedups' fixture).
pair = test_speedups.pair

pytestmark = needs_speedups

# A fraction of a millisecond (0.7 ms): cutting and rounding it would differ.
NOW = 1_700_000_000.0007


def offline_processor(**options: Any) -> LogDNAProcessor:
    """A processor that never sends (a port nobody serves, an hourly interval)."""
    options.setdefault("flush_interval", 3600)
    return LogDNAProcessor(key="k", url=UNREACHABLE, hostname="t", app="a", env="e", **options)


@contextmanager
def offline(**options: Any) -> Iterator[LogDNAProcessor]:
    """An ``offline_processor``, its client closed at the end of the block."""
    p = offline_processor(**options)
    try:
        yield p
    finally:
        p.client.close(timeout=0)


@pytest.fixture
def procs(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LogDNAProcessor, LogDNAProcessor]]:
    """A processor on the C path and one on the Python path, same options, one clock
    that stands still (both read it when the event has no timestamp)."""
    monkeypatch.setattr(time, "time", lambda: NOW)
    fast = offline_processor()
    monkeypatch.setenv("LOGDNA_CLIENT_PURE_PYTHON", "1")
    slow = offline_processor()
    monkeypatch.delenv("LOGDNA_CLIENT_PURE_PYTHON")
    for p in (fast, slow):
        p(None, "info", {"event": "first"})  # starts the sender: puts go lock-free
    assert 0 == slow._native_lines
    yield fast, slow
    for p in (fast, slow):
        p.client.close(timeout=0)


def c_lines(p: LogDNAProcessor) -> int:
    """Entries the C call built for ``p`` so far."""
    return p._native_lines


def through_both(
    procs: tuple[LogDNAProcessor, LogDNAProcessor], method: str, event: Any, times: int = 2
) -> tuple[list[bytes], list[bytes]]:
    """What each processor queues for ``times`` copies of ``event`` (a key set the
    redactor has seen once is known safe from then on), each call returning the event."""
    out = []
    for p in procs:
        entries = p.client._buffer.entries
        before = len(entries)
        for _ in range(times):
            given = copy.copy(event)
            assert p(None, method, given) is given
        out.append(list(entries)[before:])
    return out[0], out[1]


def python_decides(
    procs: tuple[LogDNAProcessor, LogDNAProcessor], method: str, event: Any
) -> list[bytes]:
    """What the C-path processor queues for ``event``: the Python path's bytes, and
    none of them built in C."""
    before = c_lines(procs[0])
    fast_lines, slow_lines = through_both(procs, method, event)
    assert slow_lines == fast_lines
    assert before == c_lines(procs[0])
    return fast_lines


class _Key(str):
    pass


class _Color(enum.Enum):
    RED = "red"


class _Number(enum.IntEnum):
    ONE = 1


@dataclasses.dataclass
class _Point:
    x: int
    y: int


class _Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    __str__ = __repr__


# Events the C call builds itself (after the first, which makes the keys known).
C_EVENTS = [
    ("info", {"event": "request 7 served in 7 ms"}),
    ("warning", {"event": "w"}),
    ("info", {"event": "e", "level": "error"}),
    ("info", {"event": "e", "level": "WARNING"}),
    ("info", {"event": "flat", "user_id": 7, "path": "/a", "ok": True, "none": None, "f": 1.5}),
    ("info", {"event": 'é € 𝄞 " \\ \n tab\t', "s": "é", "i": -(2**63)}),
    ("info", {"b": 2, "event": "order", "level": "info", "a": 1}),
    ("info", {"event": "t", "timestamp": 1.7e9}),
    ("info", {"event": "t", "timestamp": "2026-01-02T03:04:05.678Z", "k": "v"}),
    ("info", {"event": "t", "timestamp": 1_700_000_000_123}),
    ("info", {"event": "t", "timestamp": 1_700_000_000}),
    ("info", {"event": "t", "timestamp": 1e11 + 0.5}),  # milliseconds past 1e11
    ("info", {"event": "t", "timestamp": 1e11 + 0.7}),  # cut, not rounded
    ("info", {"event": "t", "timestamp": 1.7e9 + 0.0006}),  # seconds: 0.6 ms, cut
    ("info", {"event": "t", "timestamp": 99_999_999_999}),  # seconds up to it
    ("info", {"event": "t", "timestamp": 100_000_000_000}),  # and at it
    ("info", {"event": "t", "timestamp": 1e14 - 1}),
    ("info", {"event": "user=bob retries: 3"}),
    ("info", {"event": "my password: hunter2"}),  # redacted by the Python redactor
    ("info", {"event": "db https://admin:s3cret@db.local/x"}),
    # Values and stamps structlog users log (tests/test_review_structlog2.py).
    ("info", {"event": "v", "nan": float("nan"), "inf": float("-inf")}),
    ("info", {"event": "t", "timestamp": dt.datetime(2023, 11, 14, 22, 13, 20)}),
    ("info", {"event": "t", "timestamp": "2023-11-14 22:13:20"}),
    ("info", {"event": "t", "timestamp": decimal.Decimal("1700000000.5")}),
]

# Events it leaves to Python, which ships them as it always does.
PYTHON_EVENTS = [
    ("info", {"event": 42}),
    ("info", {"event": ""}),
    ("info", {"event": "x" * 20_000}),
    ("info", {"no": "event"}),
    ("info", {"event": "t", "level": 40}),
    ("info", {"event": "t", "level": "notice"}),
    ("info", {"event": "t", "level": None}),
    ("notice", {"event": "t"}),
    ("error", {"event": "boom", "exc_info": (ValueError, ValueError("v"), None)}),
    ("info", {"event": "s", "stack": "Stack:\n  here"}),
    ("info", {"event": "t", "timestamp": "yesterday"}),
    ("info", {"event": "t", "timestamp": float("nan")}),
    ("info", {"event": "t", "timestamp": float("inf")}),
    ("info", {"event": "t", "timestamp": 1e14}),
    ("info", {"event": "t", "timestamp": 0}),
    ("info", {"event": "t", "timestamp": -1.5}),
    ("info", {"event": "t", "timestamp": 2**1100}),
    ("info", {"event": "t", "timestamp": True}),
    ("info", {"event": "k", _Key("raw"): 1}),
    ("info", {"event": "k", 3: "int key"}),
    ("info", {"event": "n", "nested": {"a": 1}}),
    ("info", {"event": "o", "obj": object()}),
    ("info", {"event": "o", "big": 2**70}),
    ("info", {"event": "p", "password": "hunter2"}),
    ("info", {"event": "\ud800 lone surrogate"}),
    # Values structlog users log (tests/test_review_structlog2.py): orjson's or str()'s.
    ("info", {"event": "v", "b": b"\xffraw", "s": {1}, "fs": frozenset({2}), "t": (1, 2)}),
    ("info", {"event": "v", "d": dt.datetime(2026, 1, 2, 3, 4, 5), "day": dt.date(2026, 1, 2)}),
    ("info", {"event": "v", "dec": decimal.Decimal("1.10"), "u": uuid.UUID(int=5)}),
    ("info", {"event": "v", "e": _Color.RED, "ie": _Number.ONE, "dc": _Point(1, 2)}),
    ("info", {"event": "v", "unprintable": _Unprintable(), "td": dt.timedelta(seconds=3)}),
    ("info", {"event": _Unprintable()}),
    ("info", {"event": b"bytes event"}),
    ("info", {"event": None, "k": 1}),
    ("level 35", {"event": "t"}),
]


class TestSameBytes:
    @pytest.mark.parametrize(("method", "event"), C_EVENTS)
    def test_common_events_are_built_in_c(
        self, procs: tuple[LogDNAProcessor, LogDNAProcessor], method: str, event: dict[str, Any]
    ) -> None:
        fast = procs[0]
        before = c_lines(fast)
        fast_lines, slow_lines = through_both(procs, method, event)
        assert slow_lines == fast_lines
        assert c_lines(fast) - before >= 1  # the second at least: its keys are known then
        assert b"hunter2" not in b"".join(fast_lines)
        assert b"s3cret" not in b"".join(fast_lines)

    @pytest.mark.parametrize(("method", "event"), PYTHON_EVENTS)
    def test_other_events_go_to_python(
        self, procs: tuple[LogDNAProcessor, LogDNAProcessor], method: str, event: dict[str, Any]
    ) -> None:
        assert b"hunter2" not in b"".join(python_decides(procs, method, event))

    @pytest.mark.parametrize("key", sorted(NOT_META))
    def test_every_key_that_is_no_meta_ships_the_same_bytes(
        self, procs: tuple[LogDNAProcessor, LogDNAProcessor], key: str
    ) -> None:
        """Every key ``event_dict_to_line`` keeps out of meta (a key added there is
        covered here at once), with values C could write: the same bytes either way."""
        for value in ("v", 1_700_000_000, None):
            fast_lines, slow_lines = through_both(procs, "info", {"event": "t", key: value})
            assert slow_lines == fast_lines

    @pytest.mark.parametrize("key", ["exception", "stack", "stack_info", "_name"])
    def test_trace_and_bookkeeping_keys_go_to_python_even_when_known_safe(
        self, procs: tuple[LogDNAProcessor, LogDNAProcessor], key: str
    ) -> None:
        """A key the redactor found safe elsewhere (a stdlib handler sharing the client
        shipped it as an extra) is still the Python path's to map in an event: it makes
        it part of the line, drops it, or (a value that is no trace) ships it as meta."""
        for p in procs:
            keys = p.client._builder.meta_safe_keys
            assert keys is not None
            keys.add(key)
        python_decides(procs, "error", {"event": "e", key: "Traceback (most recent call last)"})

    @pytest.mark.parametrize(
        ("key", "value"), [("stack", "prod-eu-1"), ("exception", "TimeoutError"), ("stack", 3)]
    )
    def test_trace_keys_that_hold_no_trace_ship_as_meta_either_way(
        self, procs: tuple[LogDNAProcessor, LogDNAProcessor], key: str, value: object
    ) -> None:
        """``stack="prod-eu-1"`` is no StackInfoRenderer stack: meta, in its place, the
        same bytes on both paths (the Python path tells a trace from a value)."""
        (entry, _) = python_decides(
            procs, "info", {"event": "deploy finished", key: value, "region": "eu"}
        )
        line = json.loads(entry[1:])
        assert "deploy finished" == line["line"]
        assert [(key, value), ("region", "eu")] == list(line["meta"].items())

    def test_a_mapping_that_is_not_a_dict(
        self, procs: tuple[LogDNAProcessor, LogDNAProcessor]
    ) -> None:
        import collections

        python_decides(procs, "info", collections.OrderedDict(event="o"))

    def test_request_context_goes_to_python(
        self, procs: tuple[LogDNAProcessor, LogDNAProcessor]
    ) -> None:
        token = bind_request_context(request_id="r1")
        try:
            lines = python_decides(procs, "info", {"event": "c", "n": 1})
        finally:
            reset_request_context(token)
        assert {"request_id": "r1", "n": 1} == json.loads(lines[0][1:])["meta"]

    def test_level_below_the_clients_is_not_shipped(self) -> None:
        with offline(level="WARNING") as p:
            for _ in range(2):  # the second time, the levels' JSON is known
                p(None, "info", {"event": "quiet"})
                p(None, "info", {"event": "quiet", "level": "debug"})
                p(None, "error", {"event": "loud"})
                p(None, "info", {"event": "loud", "level": "critical"})
            lines = [json.loads(e[1:]) for e in p.client._buffer.entries]
            assert ["loud"] * 4 == [line["line"] for line in lines]
            assert ["ERROR", "CRITICAL"] * 2 == [line["level"] for line in lines]
            assert 2 == c_lines(p)

    def test_the_clock_is_read_per_event(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without a timestamp key, the line's time is the processor's clock at the call."""
        times = iter([10.0, 20.0, 30.0])
        me, real = threading.get_ident(), time.time
        # This thread's reads only (the sender's, if any, get the real time).
        monkeypatch.setattr(
            time, "time", lambda: next(times) if threading.get_ident() == me else real()
        )
        with offline() as p:
            p(None, "info", {"event": "tick", "timestamp": 1.0})  # the level's JSON known
            for _ in range(3):
                p(None, "info", {"event": "tick"})
            stamps = [json.loads(e[1:])["timestamp"] for e in p.client._buffer.entries]
            assert [1_000, 10_000, 20_000, 30_000] == stamps
            assert 3 == c_lines(p)

    def test_iso_timestamps_agree(self, procs: tuple[LogDNAProcessor, LogDNAProcessor]) -> None:
        stamp = dt.datetime(2026, 12, 5, 6, 7, 8, 901000, tzinfo=dt.timezone.utc).isoformat()
        fast_lines, slow_lines = through_both(procs, "info", {"event": "t", "timestamp": stamp})
        assert slow_lines == fast_lines
        assert 1_796_450_828_901 == json.loads(fast_lines[0][1:])["timestamp"]

    @settings(
        max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(
        text=st.text(alphabet=st.sampled_from(list('ab %s"\\\né:=@A€')), max_size=30),
        meta=st.dictionaries(
            st.sampled_from(["user_id", "path", "token", "api_key", "é", "level", "timestamp"]),
            SCALARS,
            max_size=4,
        ),
        method=st.sampled_from(["info", "debug", "warning", "err", "exception"]),
    )
    def test_any_flat_event(
        self,
        procs: tuple[LogDNAProcessor, LogDNAProcessor],
        text: str,
        meta: dict[str, Any],
        method: str,
    ) -> None:
        """Whatever the text, method and flat scalar keys, both paths queue the same bytes."""
        fast_lines, slow_lines = through_both(procs, method, {"event": text, **meta})
        assert slow_lines == fast_lines


class TestCall:
    def test_is_the_c_call(self) -> None:
        """The processor's class has the C type as its base and no Python __call__ of its
        own; calling it ships and returns the event."""
        with offline() as p:
            assert isinstance(p, _native.speedups.EventHandle)
            assert "__call__" not in vars(LogDNAProcessor)
            event = {"event": "x"}
            for _ in range(2):
                assert p(None, "info", event) is event
            assert 1 <= c_lines(p)

    def test_pure_python_switch(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("LOGDNA_CLIENT_PURE_PYTHON", "1")
        with offline() as p:
            for _ in range(3):
                p(None, "info", {"event": "py", "n": 1})
            assert 3 == len(p.client._buffer.entries)
            assert 0 == c_lines(p)

    def test_unusable_extension_falls_back(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """An extension that refuses the pieces (say, a build left from another version)
        leaves the processor on the Python path, working."""
        real = _native.pieces
        monkeypatch.setattr(_native, "pieces", lambda *a: {**real(*a), "unknown": 1})
        with offline() as p:
            for _ in range(3):
                p(None, "info", {"event": "py"})
            assert 3 == len(p.client._buffer.entries)
            assert 0 == c_lines(p)

    def test_keywords_and_other_arities_go_to_python(self) -> None:
        with offline() as p:
            event = {"event": "kw"}
            assert p(None, "info", event_dict=event) is event
            with pytest.raises(TypeError):
                p(None, "info")  # type: ignore[call-arg]
            assert 0 == c_lines(p)
            assert 1 == len(p.client._buffer.entries)

    def test_not_initialised(self) -> None:
        """A processor whose __init__ never ran says so, instead of crashing."""
        p = LogDNAProcessor.__new__(LogDNAProcessor)
        with pytest.raises(TypeError, match="not initialised"):
            p(None, "info", {"event": "x"})

    def test_initialised_once(self) -> None:
        """A second __init__ is refused (a call under way elsewhere holds its pieces);
        the processor keeps working."""
        with offline() as p:
            with pytest.raises(TypeError, match="initialised already"):
                p.__init__(key="k", url=UNREACHABLE)  # type: ignore[misc]
            with pytest.raises(TypeError, match="initialised already"):  # its C part's own
                _native.speedups.EventHandle.__init__(p, slow=print, queue=print)
            for _ in range(2):
                p(None, "info", {"event": "still"})
            assert 1 <= c_lines(p)
            assert 2 == len(p.client._buffer.entries)

    def test_a_failing_locked_put_is_counted_and_reported(
        self, procs: tuple[LogDNAProcessor, LogDNAProcessor], caplog: pytest.LogCaptureFixture
    ) -> None:
        fast = procs[0]
        client = fast.client

        def put_entry(entry: bytes) -> bool:
            raise RuntimeError("broken")

        client.put_entry = put_entry
        client._buffer.fast_limit = -1
        event = {"event": "lost"}
        with caplog.at_level(logging.WARNING, logger="logdna_client"):
            assert fast(None, "info", event) is event
        assert 1 == client.stats()["dropped"].get("error")
        assert "could not be shipped" in caplog.text

    def test_subclass_with_its_own_call(self) -> None:
        seen = []

        class Counting(LogDNAProcessor):
            def __call__(self, logger: Any, method_name: str, event_dict: Any) -> Any:
                seen.append(method_name)
                return super().__call__(logger, method_name, event_dict)

        p = Counting(key="k", url=UNREACHABLE, flush_interval=3600)
        try:
            for _ in range(2):
                p(None, "info", {"event": "sub"})
            assert ["info", "info"] == seen
            assert 2 == len(p.client._buffer.entries)
        finally:
            p.client.close(timeout=0)

    def test_copies_are_the_processor(self) -> None:
        with offline() as p:
            assert copy.copy(p) is p
            assert copy.deepcopy([p])[0] is p

    def test_threads_are_told_apart(self, procs: tuple[LogDNAProcessor, LogDNAProcessor]) -> None:
        """The C call knows which thread logs each time: after this thread's events, a
        sender thread's event is not shipped and another thread's is."""
        fast = procs[0]
        fast(None, "info", {"event": "main"})
        before = c_lines(fast)

        def on_a_sender_thread() -> None:
            me = threading.get_ident()
            SENDER_THREADS.add(me)
            try:
                fast(None, "info", {"event": "from the sender"})
            finally:
                SENDER_THREADS.discard(me)

        def on_another_thread() -> None:
            fast(None, "info", {"event": "another thread"})

        for work in (on_a_sender_thread, on_another_thread):
            thread = threading.Thread(target=work)
            thread.start()
            thread.join()
        fast(None, "info", {"event": "main again"})
        lines = [json.loads(e[1:])["line"] for e in fast.client._buffer.entries]
        assert ["main", "another thread", "main again"] == lines[-3:]
        assert before + 2 == c_lines(fast)

    def test_locked_put_is_guarded(
        self, procs: tuple[LogDNAProcessor, LogDNAProcessor], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A line the C call hands to the buffer's locked put is queued with the thread
        marked busy, as on the Python path (see LogDNAHandler's test)."""
        fast = procs[0]
        client = fast.client
        busy = busy_while_putting(client, monkeypatch)
        client._buffer.fast_limit = -1  # as while the sender takes a batch: puts must lock
        before = c_lines(fast)
        event = {"event": "locked"}
        assert fast(None, "info", event) is event
        assert before + 1 == c_lines(fast)
        assert [True] == busy
        assert threading.get_ident() not in BUSY_THREADS

    def test_processor_is_collected(self) -> None:
        """A dropped processor (and its C state) is freed."""
        import gc

        def alive() -> int:
            gc.collect()
            return sum(type(o) is LogDNAProcessor for o in gc.get_objects())

        before = alive()
        p = offline_processor()
        p(None, "info", {"event": "x"})
        p.client.close(timeout=0)
        assert before + 1 == alive()
        del p
        assert before == alive()

    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
    @pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
    def test_forked_child_queues_in_its_own_buffer(self) -> None:
        """In a forked child the C call's first line goes the locked way, into the
        child's new buffer, and the C call then uses that buffer."""
        p = offline_processor()
        for _ in range(2):
            p(None, "info", {"event": "parent"})
        parent_buffer = p.client._buffer

        def child() -> dict[str, Any]:
            before = c_lines(p)
            for i in range(3):
                p(None, "info", {"event": f"child {i}"})
            return {
                "lines": [json.loads(e)["line"] for e in p.client._buffer.snapshot()],
                "parent": len(parent_buffer.entries),
                "rehanded": p._native_buffer is p.client._buffer,
                "c_lines": c_lines(p) - before,
            }

        seen = in_forked_child(child)
        p.client.close(timeout=0)
        assert ["child 0", "child 1", "child 2"] == seen["lines"]
        assert 2 == seen["parent"]
        assert seen["rehanded"]
        assert 3 == seen["c_lines"]


class TestFoundByMutants:
    """Cases that mutation testing of _speedups.c's EventHandle (and the C code it
    shares with Handle) found no test for: each fails with one small change of the C
    or Python code it names."""

    @pytest.mark.parametrize(
        "event",
        [
            {"event": _Key("a str subclass")},  # _ship_common: type(text) is not str
            {"event": "e", "level": _Key("error")},  # nor a level that is not a str
            {"event": "k", _Key("timestamp"): 1.7e9},  # nor a key (user code may run)
        ],
    )
    def test_str_subclasses_go_to_python(
        self, procs: tuple[LogDNAProcessor, LogDNAProcessor], event: dict[Any, Any]
    ) -> None:
        python_decides(procs, "info", event)

    def test_texts_up_to_max_chars_are_built_in_c(
        self, procs: tuple[LogDNAProcessor, LogDNAProcessor]
    ) -> None:
        """1 to plain_max_chars characters, as LineBuilder.entry's fast path: the
        longest is built in C, one more character goes to Python."""
        fast = procs[0]
        max_chars = fast.client._builder.plain_max_chars
        before = c_lines(fast)
        fast_lines, slow_lines = through_both(procs, "info", {"event": "x" * max_chars})
        assert slow_lines == fast_lines
        assert before + 2 == c_lines(fast)
        python_decides(procs, "info", {"event": "x" * (max_chars + 1)})

    def test_redaction_that_lengthens_the_text_past_max_chars(
        self, procs: tuple[LogDNAProcessor, LogDNAProcessor]
    ) -> None:
        """A marker longer than the secret it replaces can take the text past
        plain_max_chars: LineBuilder.entry leaves it to encode(), which caps it."""
        max_chars = procs[0].client._builder.plain_max_chars
        secret = " password: x"
        lines = python_decides(procs, "info", {"event": "a" * (max_chars - len(secret)) + secret})
        assert b"REDACTED" in lines[0]

    def test_entries_over_the_total_limit_go_to_python(self) -> None:
        """An entry with meta longer than LineBuilder.total_limit is made by encode(),
        which shrinks it: not built in C."""
        out = []
        for pure in ("0", "1"):
            os.environ["LOGDNA_CLIENT_PURE_PYTHON"] = pure
            try:
                p = offline_processor(max_batch_bytes=4096)
            finally:
                del os.environ["LOGDNA_CLIENT_PURE_PYTHON"]
            try:
                for _ in range(3):
                    p(None, "info", {"event": "\x01" * 1000, "n": 1, "timestamp": 1.7e9})
                out.append((list(p.client._buffer.entries), c_lines(p)))
            finally:
                p.client.close(timeout=0)
        assert out[1][0] == out[0][0]
        assert 0 == out[0][1]

    def test_a_clock_that_returns_an_int(
        self, procs: tuple[LogDNAProcessor, LogDNAProcessor], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A clock patched to return an int (a test's fake) stamps both paths alike."""
        monkeypatch.setattr(time, "time", lambda: 1_700_000_000)
        fast_lines, slow_lines = through_both(procs, "info", {"event": "int clock"})
        assert slow_lines == fast_lines
        assert 1_700_000_000_000 == json.loads(fast_lines[-1][1:])["timestamp"]

    def test_the_queued_bytes_count_as_in_python(
        self, procs: tuple[LogDNAProcessor, LogDNAProcessor]
    ) -> None:
        """The C put counts each entry as Buffer.put_entry does (``entry_cost``)."""
        fast = procs[0]
        before = c_lines(fast)
        through_both(procs, "info", {"event": "counted", "n": 1}, times=3)
        assert before + 2 <= c_lines(fast)
        buffers = [p.client._buffer for p in procs]
        assert [b.queued_bytes for b in buffers] == [
            sum(map(entry_cost, b.entries)) for b in buffers
        ]

    def test_queued_entries_are_not_leaked(
        self, procs: tuple[LogDNAProcessor, LogDNAProcessor]
    ) -> None:
        """The buffer holds the only reference to an entry built in C, as to one built
        in Python: nothing is kept (or leaked) by the C call."""
        fast = procs[0]
        through_both(procs, "info", {"event": "held once"})
        before = c_lines(fast)
        through_both(procs, "info", {"event": "held once"}, times=1)
        assert before + 1 == c_lines(fast)
        fast_entry, slow_entry = (p.client._buffer.entries[-1] for p in procs)
        assert sys.getrefcount(slow_entry) == sys.getrefcount(fast_entry)

    def test_keywords_with_three_arguments_go_to_python(self) -> None:
        """A call with keywords is the Python method's, even with three positional
        arguments (it raises TypeError, as the Python path does)."""
        with offline() as p:
            for _ in range(2):  # the level's JSON known: the C call would build this one
                p(None, "info", {"event": "plain"})
            built, queued = c_lines(p), len(p.client._buffer.entries)
            with pytest.raises(TypeError):
                p(None, "info", {"event": "kw"}, extra=1)  # type: ignore[call-arg]
            assert (built, queued) == (c_lines(p), len(p.client._buffer.entries))

    def test_pure_python_zero_keeps_the_c_call(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """LOGDNA_CLIENT_PURE_PYTHON=0 is the same as unset."""
        monkeypatch.setenv("LOGDNA_CLIENT_PURE_PYTHON", "0")
        with offline() as p:
            for _ in range(3):
                p(None, "info", {"event": "c"})
            assert 1 <= c_lines(p)

    @pytest.mark.parametrize("name", ["levels", "key_kinds"])
    def test_pieces_of_the_wrong_type_are_refused(self, name: str) -> None:
        """The C call looks its dicts up with the dict API: anything else is refused
        when it is handed, not used."""
        with offline() as p:
            pieces = {
                "levels": {"info": "INFO"},
                "key_kinds": {},
                "time": time,
                "timestamp_of": timestamp_of,
                **_native.pieces(p.client._builder, p.client._buffer),
            }
            pieces[name] = list(pieces[name])
            with pytest.raises(TypeError):
                _native.speedups.EventHandle(slow=print, queue=print, **pieces)

    def test_a_subclass_process_is_called_as_on_the_python_path(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The C call hands every event it does not build to LogDNAProcessor._process,
        as the class without the C extension calls it (``__call__ = _process`` binds
        that function): a subclass's _process of its own (a private method) is not
        the call, on either path. A subclass hooks the call with __call__."""
        seen: list[str] = []

        class Overriding(LogDNAProcessor):
            def _process(self, logger: Any, method_name: str, event_dict: Any) -> Any:
                seen.append(method_name)
                return super()._process(logger, method_name, event_dict)

        for pure in ("0", "1"):
            monkeypatch.setenv("LOGDNA_CLIENT_PURE_PYTHON", pure)
            p = Overriding(key="k", url=UNREACHABLE, hostname="t", flush_interval=3600)
            try:
                for event in ({"event": "common"}, {"event": 42}, {"event": "common"}):
                    p(None, "info", event)
                assert 3 == len(p.client._buffer.entries)
            finally:
                p.client.close(timeout=0)
        assert [] == seen


def handled(h: LogDNAHandler, r: logging.LogRecord) -> tuple[list[bytes], int]:
    """What ``h`` queues for ``r``, and how many of those lines C built."""

    def built() -> int:
        return 0 if h._fast is None else h._fast.lines  # type: ignore[attr-defined]

    before, lines = len(h.client._buffer.entries), built()
    h.handle(r)
    return list(h.client._buffer.entries)[before:], built() - lines


class TestMayShip:
    """may_ship (shared by the C handle of LogDNAHandler): which thread a record was
    made on and which one handles it, as LogDNAHandler._deliver tells them apart."""

    def test_a_record_made_on_a_sender_thread_handled_elsewhere(
        self, pair: tuple[LogDNAHandler, LogDNAHandler]
    ) -> None:
        """A record urllib3 made on a sender thread and a QueueListener handles on its
        own thread is never shipped: the record's thread is the one that counts."""
        sender = threading.get_ident() + 1
        r = record()
        r.thread = sender
        r.name = "urllib3.connectionpool"
        SENDER_THREADS.add(sender)
        try:
            for h in pair:
                assert ([], 0) == handled(h, twin(r))
        finally:
            SENDER_THREADS.discard(sender)

    def test_a_record_from_another_thread_handled_while_busy(
        self, pair: tuple[LogDNAHandler, LogDNAHandler]
    ) -> None:
        """This thread inside our code (a signal handler that logs) handling a record
        made on another thread: the running thread is the busy one, and Python ships
        it as a nested line."""
        r = record()
        r.thread = threading.get_ident() + 1
        me = threading.get_ident()
        out = []
        BUSY_THREADS.add(me)
        try:
            for h in pair:
                out.append(handled(h, twin(r)))
        finally:
            BUSY_THREADS.discard(me)
        assert 1 == len(out[0][0])
        assert out[1] == out[0]

    def test_the_first_record_of_the_librarys_own_logger(
        self, pair: tuple[LogDNAHandler, LogDNAHandler]
    ) -> None:
        """A logger name not seen yet is Python's to judge: the library's own are never
        shipped, from the first record on (here with no record attribute in meta, so
        that no per-name meta cache sends a new name to Python anyway)."""
        out = []
        for pure in ("0", "1"):
            os.environ["LOGDNA_CLIENT_PURE_PYTHON"] = pure
            try:
                h = offline_handler(record_meta=())
            finally:
                del os.environ["LOGDNA_CLIENT_PURE_PYTHON"]
            try:
                h.handle(record())  # the level's JSON known
                out.append(handled(h, record(name="logdna_client.mutants")))
                out.append(handled(h, record(name="app.mutants")))
            finally:
                h.client.close(timeout=0)
                h.close()
        assert ([], 0) == out[0] == out[2]
        assert 1 == len(out[1][0]) == len(out[3][0])  # another new name ships

    def test_a_thread_id_of_an_int_subclass_goes_to_python(
        self, pair: tuple[LogDNAHandler, LogDNAHandler]
    ) -> None:
        """A record.thread that is an int subclass (its hash is user code) goes to
        Python, which ships it as usual."""

        class Ident(int):
            pass

        r = record()
        r.thread = Ident(threading.get_ident())
        fast, slow = (handled(h, twin(r)) for h in pair)
        assert (slow[0], 0) == fast
        assert 1 == len(fast[0])


def test_keys_that_are_not_str_go_to_python_without_redaction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With redaction off no set of known keys stands in the way: a key that is not a
    str is still Python's (which ships it as its str), never written by the C call."""
    monkeypatch.setattr(time, "time", lambda: NOW)
    out = []
    for pure in ("0", "1"):
        monkeypatch.setenv("LOGDNA_CLIENT_PURE_PYTHON", pure)
        with offline(redact=False) as p:
            for _ in range(2):
                p(None, "info", {"event": "k", "plain": 1})
            built = c_lines(p)
            for key in (3, None, True):
                p(None, "info", {"event": "k", key: "v"})
            out.append((list(p.client._buffer.entries), c_lines(p) - built))
    assert out[1][0] == out[0][0]
    assert 0 == out[0][1]
