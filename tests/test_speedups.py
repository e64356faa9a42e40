"""Tests for _speedups.c: the C handle makes the Python handle's bytes, or lets it decide."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logdna_client import Client, LogDNAHandler, _native
from logdna_client import _handler as handler_module
from logdna_client._threads import BUSY_THREADS, SENDER_THREADS
from logdna_client.contrib import bind_request_context, reset_request_context
from tests.helpers import busy_while_putting, in_forked_child, make_logger, needs_speedups

UNREACHABLE = "http://127.0.0.1:1/logs/ingest"
# Argument and extra values the C path formats itself (and a few it leaves to Python).
SCALARS = st.one_of(
    st.text(max_size=10),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=True),
)

speedups = _native.speedups


def offline_handler(**options: Any) -> LogDNAHandler:
    """A handler that never sends (a port nobody serves, an hourly interval)."""
    options.setdefault("flush_interval", 3600)
    return LogDNAHandler(key="k", url=UNREACHABLE, hostname="t", app="a", env="e", **options)


@pytest.fixture
def pair(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LogDNAHandler, LogDNAHandler]]:
    """A handler on the C path and one on the Python path, same options."""
    fast = offline_handler()
    monkeypatch.setenv("LOGDNA_CLIENT_PURE_PYTHON", "1")
    slow = offline_handler()
    monkeypatch.delenv("LOGDNA_CLIENT_PURE_PYTHON")
    assert slow._fast is None
    for h in (fast, slow):
        h.handle(record())  # the first: the level's JSON and the logger's name get known
    yield fast, slow
    for h in (fast, slow):
        h.client.close(timeout=0)
        h.close()


def c_lines(h: LogDNAHandler) -> int:
    """Lines the C path built for ``h`` so far."""
    return h._fast.lines  # type: ignore[attr-defined, no-any-return]


def record(
    msg: object = "served %s in %d ms", args: Any = ("/a", 3), **attrs: Any
) -> logging.LogRecord:
    r = logging.LogRecord("t.speedups", logging.INFO, __file__, 7, msg, args, None)
    for name, value in attrs.items():
        setattr(r, name, value)
    return r


def twin(r: logging.LogRecord) -> logging.LogRecord:
    """A record equal to ``r`` (same created) that shares none of its state."""
    other = record(r.msg, ())
    for name in ("args", "created", "levelname", "levelno", "name", "thread"):
        setattr(other, name, getattr(r, name))
    return other


def last(h: LogDNAHandler) -> bytes:
    return h.client._buffer.entries[-1]


def through_both(
    pair: tuple[LogDNAHandler, LogDNAHandler], r: logging.LogRecord
) -> tuple[list[bytes], list[bytes]]:
    """What each handler queues for ``r``, handled twice."""
    out = []
    for h in pair:
        before = len(h.client._buffer.entries)
        for _ in range(2):
            h.handle(twin(r))
        out.append(list(h.client._buffer.entries)[before:])
    return out[0], out[1]


def with_extras_through_both(
    pair: tuple[LogDNAHandler, LogDNAHandler], extra: dict[str, Any], times: int
) -> list[list[bytes]]:
    """What each handler queues for ``times`` equal records with ``extra`` (a key set
    the redactor has seen once is known safe from then on)."""
    queued = []
    base = record()
    for h in pair:
        for _ in range(times):
            copy = twin(base)
            copy.__dict__.update(extra)  # as makeRecord adds extra=
            h.handle(copy)
        queued.append(list(h.client._buffer.entries)[-times:])
    return queued


@needs_speedups
class TestSameBytes:
    @pytest.mark.parametrize(
        ("msg", "args"),
        [
            ("served %s in %d ms", ("/a", 3)),
            ("no args", ()),
            ("no args, None", None),
            ("%s %s %s %s", (True, None, 1.5, -(2**63))),
            ("%d%% done, %i left", (99, -1)),
            ("huge %d", (10**30,)),
            ('quote " and backslash \\ and tab \t', ()),
            ("%s", ('say "hi"\n',)),
            ("%s", ("é€𝄞",)),
            ("é %s", ("x",)),
            ("%r and %x and %5s", ("a", 255, "b")),
            ("%(name)s", ("x",)),
            ("%s %s", ("only one",)),
            ("none used", ("extra",)),
            ("trailing %", ()),
            ("%s", ("",)),
            ("no args, %d and %% kept", None),
            ("%s%%", ("a",)),
            ("%d %s", (True, False)),
            ("%s and %d", (2**63, -(2**63) - 1)),
            ("password=%s user=%s", ("hunter2", "bob")),
            ("token: %s", ("abc",)),
            ("%s", ("x" * 1500,)),
            ("x" * 1500 + " %d", (1,)),
            ("%d", ("not a number",)),
            ("%s", ("ctl \x01",)),
        ],
    )
    def test_messages(self, pair: tuple[LogDNAHandler, LogDNAHandler], msg: str, args: Any) -> None:
        """Each message ships the same from the C path as from the Python one."""
        fast_lines, slow_lines = through_both(pair, record(msg, args))
        assert slow_lines == fast_lines

    def test_common_record_takes_the_c_path(
        self, pair: tuple[LogDNAHandler, LogDNAHandler]
    ) -> None:
        """The benchmark's record is built in C, logger name and all."""
        fast = pair[0]
        before = c_lines(fast)
        fast_lines, slow_lines = through_both(pair, record())
        assert before + 2 == c_lines(fast)
        assert slow_lines == fast_lines
        assert {"name": "t.speedups"} == json.loads(fast_lines[0][1:])["meta"]

    @pytest.mark.parametrize(
        "change",
        [
            pytest.param(lambda r: r.__dict__.update(user_id=1), id="extra through __dict__"),
            pytest.param(lambda r: setattr(r, "user_id", 1), id="extra set as attribute"),
            pytest.param(lambda r: setattr(r, "exc_text", "Traceback"), id="exc_text"),
            pytest.param(lambda r: setattr(r, "stack_info", "Stack"), id="stack_info"),
            pytest.param(lambda r: setattr(r, "msg", 42), id="msg not str"),
            pytest.param(lambda r: setattr(r, "args", {"a": 1}), id="mapping args"),
            pytest.param(lambda r: setattr(r, "levelname", "CUSTOM"), id="unseen level"),
            pytest.param(lambda r: setattr(r, "created", float("nan")), id="nan created"),
            pytest.param(lambda r: setattr(r, "thread", "7"), id="odd thread"),
            pytest.param(lambda r: setattr(r, "name", "logdna_client.own"), id="own logger"),
        ],
    )
    def test_records_the_python_path_decides(
        self,
        pair: tuple[LogDNAHandler, LogDNAHandler],
        change: Any,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Records off the common path are left to the Python code: same bytes,
        none built in C."""
        # One clock for both handlers: a record without a usable time is stamped now,
        # and two calls may fall in different milliseconds.
        monkeypatch.setattr(handler_module.time, "time", lambda: 1_796_000_000.0)
        fast = pair[0]
        r = record()
        for h in pair:
            h.handle(twin(r))  # caches the INFO level's tail
        before = c_lines(fast)
        queued = []
        for h in pair:
            copy = twin(r)
            change(copy)
            h.handle(copy)
            queued.append(h.client._buffer.entries[-1])
        assert before == c_lines(fast)
        assert queued[1] == queued[0]

    def test_record_whose_dict_was_read(self, pair: tuple[LogDNAHandler, LogDNAHandler]) -> None:
        """A record whose __dict__ another handler read, without extras, still takes the C path."""
        fast = pair[0]
        base = record()
        fast.handle(twin(base))  # caches the INFO level's tail
        r = twin(base)
        vars(r)  # as a Formatter does: on 3.11+ this builds the record's dict
        before = c_lines(fast)
        fast.handle(r)
        assert before + 1 == c_lines(fast)
        assert json.loads(last(fast)[1:])["line"] == "served /a in 3 ms"

    @pytest.mark.parametrize("where", ["name", "msg", "args", "levelname", "exc_text", "lineno"])
    def test_record_missing_an_attribute_with_an_extra(
        self, pair: tuple[LogDNAHandler, LogDNAHandler], where: str
    ) -> None:
        """A record that lost a standard attribute and gained an extra (so its referents
        number the same but sit shifted) ships from C as from Python, never shifted."""
        queued = []
        base = record()
        for h in pair:
            h.handle(twin(base))  # caches the INFO level's tail
            r = twin(base)
            delattr(r, where)
            r.user_id = 7
            h.handle(r)
            queued.append(h.client._buffer.entries[-1])
        assert queued[1] == queued[0]

    def test_subclassed_records_go_to_python(
        self, pair: tuple[LogDNAHandler, LogDNAHandler]
    ) -> None:
        """A LogRecord subclass (a custom record factory) takes the Python path:
        its code may run there."""

        class Mine(logging.LogRecord):
            @property
            def levelname(self) -> str:  # type: ignore[override]
                return "WARNING"

            @levelname.setter
            def levelname(self, value: str) -> None:
                pass

        fast = pair[0]
        fast.handle(record())
        before = c_lines(fast)
        fast.handle(Mine("t.speedups", logging.INFO, __file__, 7, "m %s", ("x",), None))
        assert before == c_lines(fast)
        assert json.loads(last(fast)[1:])["level"] == "WARNING"

    def test_str_that_logs_is_not_run_in_c(self, pair: tuple[LogDNAHandler, LogDNAHandler]) -> None:
        """An argument whose __str__ logs goes to the Python path, where the guard
        stops the recursion."""
        fast = pair[0]
        log = make_logger("t.speedups.reentry", fast)

        class Loud:
            def __str__(self) -> str:
                log.info("inside %s", "str")
                return "loud"

        log.info("outer %s", "warm")
        log.info("outer %s", Loud())
        assert json.loads(last(fast)[1:])["line"] == "outer loud"

    def test_request_context(self, pair: tuple[LogDNAHandler, LogDNAHandler]) -> None:
        """Inside a bound request context the Python code adds its fields; outside one,
        once a context has been bound anywhere, plain records still take the C path."""
        fast = pair[0]
        token = bind_request_context(request_id="r-1")
        try:
            inside = through_both(pair, record())
        finally:
            reset_request_context(token)
        assert inside[1] == inside[0]
        assert {"request_id": "r-1", "name": "t.speedups"} == json.loads(inside[0][-1][1:])["meta"]
        before = c_lines(fast)
        outside = through_both(pair, record())
        assert outside[1] == outside[0]
        assert before + 2 == c_lines(fast)

    def test_without_thread_ids(self, pair: tuple[LogDNAHandler, LogDNAHandler]) -> None:
        """Records made with logging.logThreads off (thread None) take the C path too."""
        fast = pair[0]
        base = record()
        base.thread = None
        before = c_lines(fast)
        fast_lines, slow_lines = through_both(pair, base)
        assert slow_lines == fast_lines
        assert before + 2 == c_lines(fast)

    def test_locked_put_is_guarded(
        self, pair: tuple[LogDNAHandler, LogDNAHandler], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A line the C path hands to the buffer's locked put is queued with the thread
        marked busy, as on the Python path: a signal handler or finalizer that logs
        meanwhile is dropped as re-entry instead of deadlocking on the buffer's lock."""
        fast = pair[0]
        client = fast.client
        busy = busy_while_putting(client, monkeypatch)
        base = record()
        fast.handle(twin(base))  # caches the INFO level's tail
        client._buffer.fast_limit = -1  # as while the sender takes a batch: puts must lock
        before = c_lines(fast)
        fast.handle(twin(base))
        assert before + 1 == c_lines(fast)
        assert [True] == busy

    def test_sender_thread_records_without_thread_ids(
        self, pair: tuple[LogDNAHandler, LogDNAHandler]
    ) -> None:
        """With logging.logThreads off, a record made on a sender thread (urllib3's
        logging of a request) is still never shipped: the running thread is its thread."""
        base = record()
        base.thread = None
        base.name = "urllib3.connectionpool"
        for h in pair:
            h.handle(twin(base))  # caches the INFO level's tail
        SENDER_THREADS.add(threading.get_ident())
        try:
            for h in pair:
                before = list(h.client._buffer.entries)
                h.handle(twin(base))
                assert before == list(h.client._buffer.entries)
        finally:
            SENDER_THREADS.discard(threading.get_ident())

    def test_other_threads_in_python_do_not_matter(
        self, pair: tuple[LogDNAHandler, LogDNAHandler]
    ) -> None:
        """Another thread inside the Python path leaves this one on the C path; this
        thread inside it (a signal handler or __str__ that logs) is left to Python,
        which ships it as a nested line (and is not counted as built in C)."""
        fast = pair[0]
        base = record()
        fast.handle(twin(base))
        other_thread = threading.get_ident() + 1
        BUSY_THREADS.add(other_thread)
        try:
            before = c_lines(fast)
            fast.handle(twin(base))
            assert before + 1 == c_lines(fast)
            BUSY_THREADS.add(threading.get_ident())
            queued = list(fast.client._buffer.entries)
            fast.handle(twin(base))
            assert queued + queued[-1:] == list(fast.client._buffer.entries)
            assert before + 1 == c_lines(fast)
        finally:
            BUSY_THREADS.discard(other_thread)
            BUSY_THREADS.discard(threading.get_ident())

    def test_formatter_ran_first(self, pair: tuple[LogDNAHandler, LogDNAHandler]) -> None:
        """A record another handler's Formatter already formatted (it adds message and
        asctime) ships without them in meta, from the C path as from the Python one."""
        fast = pair[0]
        base = record()
        formatter = logging.Formatter("%(asctime)s %(message)s")
        queued = []
        before = c_lines(fast)
        for h in pair:
            for _ in range(2):
                r = twin(base)
                formatter.format(r)
                h.handle(r)
            queued.append(list(h.client._buffer.entries)[-2:])
        assert queued[1] == queued[0]
        assert {"name": "t.speedups"} == json.loads(queued[0][-1][1:])["meta"]
        assert before + 2 == c_lines(fast)

    def test_buffer_replaced_by_a_finalizer(self) -> None:
        """A finalizer the garbage collector runs while the C path looks into a new
        buffer, and that replaces the client's buffer, does not crash the process
        (3.10/3.11 run the collector inside allocations)."""
        script = textwrap.dedent(
            """
            import gc, logging
            from logdna_client import LogDNAHandler
            from logdna_client._buffer import Buffer

            h = LogDNAHandler(key="k", url="http://127.0.0.1:1/x", hostname="t",
                              flush_interval=3600)
            T = 1_700_000_000.5

            def rec():
                r = logging.LogRecord("uaf", 20, "/x", 1, "m %s", ("a",), None)
                r.created = T
                return r

            def fresh():
                b = Buffer(1 << 20, "drop_oldest", 0, 1 << 30, lambda: None)
                b.allow_lock_free()
                return b

            class Swap:
                armed = False

                def __init__(self):
                    self.me = self

                def __del__(self):
                    if Swap.armed:
                        Swap.armed = False
                        h.client._buffer = fresh()

            h.handle(rec())
            h.handle(rec())
            for i in range(200):
                h.client._buffer = fresh()  # one the C path has not seen yet
                r = rec()
                gc.collect()
                gc.disable()
                Swap()
                Swap()
                Swap.armed = True
                gc.set_threshold(1)  # the next allocation of a tracked object collects
                gc.enable()
                h.handle(r)
                gc.set_threshold(700, 10, 10)
            h.client.close(timeout=0)
            print("ok")
            """
        )
        result = subprocess.run(
            [sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60
        )
        assert 0 == result.returncode, result.stderr[-2000:]
        assert "ok" == result.stdout.strip()

    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
    # The sender thread runs while we fork, as in a gunicorn or Celery parent (3.12+ warns).
    @pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
    def test_forked_child_queues_in_its_own_buffer(self) -> None:
        """In a forked child the C handle's first line goes the locked way, into the
        child's new buffer, and the C path then uses that buffer; nothing reaches the
        parent's."""
        h = offline_handler()
        log = make_logger("t.speedups.fork", h)
        for _ in range(2):
            log.info("parent")
        parent_buffer = h.client._buffer

        def child() -> dict[str, Any]:
            before = c_lines(h)
            for i in range(3):
                log.info("child %d", i)
            return {
                "lines": [json.loads(e)["line"] for e in h.client._buffer.snapshot()],
                "parent": len(parent_buffer.entries),
                "rehanded": h._fast.buffer is h.client._buffer,
                "c_lines": c_lines(h) - before,
            }

        seen = in_forked_child(child)
        h.client.close(timeout=0)
        h.close()
        assert ["child 0", "child 1", "child 2"] == seen["lines"]
        assert 2 == seen["parent"]
        assert seen["rehanded"]
        assert 3 == seen["c_lines"]

    @pytest.mark.parametrize(
        "extra",
        [
            {"user_id": 7, "path": "/a", "method": "GET", "status": 200, "bytes": 1.5},
            {"id": -(2**63), "max": 2**63 - 1, "ok": True, "no": False, "none": None, "s": ""},
            {"u64": 2**63, "path": "/a"},
            {"ok": True, "none": None, "nan": float("nan"), "big": 2**63, "neg": -(2**63)},
            {"text": 'quote " backslash \\ é € 𝄞 \n'},
            {"braces": "a{b}[c]", "deep": "[" * 40},
            {"password": "hunter2", "user": "x"},
            {"nested": {"a": 1}},
            {"items": [1, 2]},
            {"when": object()},
            {"surrogate": "\ud800"},
            {"message": "shadow", "user_id": 1},
        ],
        ids=["flat", "ints bools none", "past int64", "odd scalars", "escapes", "brackets",
             "secret", "dict", "list", "object", "surrogate", "standard name"],
    )  # fmt: skip
    def test_extras(self, pair: tuple[LogDNAHandler, LogDNAHandler], extra: dict[str, Any]) -> None:
        """Records with extra= ship the same meta from both paths, secrets redacted."""
        queued = with_extras_through_both(pair, extra, 3)
        assert queued[1] == queued[0]
        if "password" in extra:
            assert b"hunter2" not in b"".join(queued[0])

    def test_flat_extras_take_the_c_path(self, pair: tuple[LogDNAHandler, LogDNAHandler]) -> None:
        """The benchmark's extras (flat str and int values) are built in C once their keys
        are known safe."""
        fast = pair[0]
        base = record()
        extra = {"user_id": 7, "path": "/a", "method": "GET", "status": 200, "bytes": 512}
        for _ in range(2):
            copy = twin(base)
            copy.__dict__.update(extra)
            fast.handle(copy)
        before = c_lines(fast)
        copy = twin(base)
        copy.__dict__.update(extra)
        fast.handle(copy)
        assert before + 1 == c_lines(fast)
        assert {"name": "t.speedups", **extra} == json.loads(last(fast)[1:])["meta"]

    def test_structlogs_bookkeeping_is_no_meta_and_c_builds_it(
        self, pair: tuple[LogDNAHandler, LogDNAHandler]
    ) -> None:
        """A record structlog's wrap_for_formatter made, whose event dict a QueueHandler
        turned into text: its ``_logger`` and ``_name`` extras are no meta on either
        path (the C handle skips them as _extras does), and C builds the line."""
        extra = {"_logger": logging.getLogger("svc"), "_name": "info", "order": 9}
        queued = with_extras_through_both(pair, extra, 2)  # the keys get known safe
        assert queued[1] == queued[0]
        before = c_lines(pair[0])
        fast, slow = with_extras_through_both(pair, extra, 1)
        assert before + 1 == c_lines(pair[0])
        assert slow == fast
        assert {"name": "t.speedups", "order": 9} == json.loads(fast[0][1:])["meta"]

    @settings(
        max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(
        msg=st.text(alphabet=st.sampled_from(list('ab %sdir"\\\né:=@')), max_size=30),
        args=st.lists(SCALARS, max_size=4),
    )
    def test_any_message_and_args(
        self, pair: tuple[LogDNAHandler, LogDNAHandler], msg: str, args: list[Any]
    ) -> None:
        """Whatever the message and builtin arguments, both paths queue the same bytes."""
        fast_lines, slow_lines = through_both(pair, record(msg, tuple(args)))
        assert slow_lines == fast_lines

    @settings(
        max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(
        extra=st.dictionaries(
            st.sampled_from(["user_id", "path", "token", "api_key", "x", "é", "msg", "args"]),
            SCALARS,
            min_size=1,
            max_size=4,
        )
    )
    def test_any_flat_extras(
        self, pair: tuple[LogDNAHandler, LogDNAHandler], extra: dict[str, Any]
    ) -> None:
        """Whatever the extras' names and scalar values, both paths queue the same bytes."""
        queued = with_extras_through_both(pair, extra, 2)
        assert queued[1] == queued[0]


def pair_with(
    monkeypatch: pytest.MonkeyPatch, **options: Any
) -> tuple[LogDNAHandler, LogDNAHandler]:
    """A C-path and a Python-path handler with ``options`` (the ``pair`` fixture's, others)."""
    fast = offline_handler(**options)
    monkeypatch.setenv("LOGDNA_CLIENT_PURE_PYTHON", "1")
    slow = offline_handler(**options)
    monkeypatch.delenv("LOGDNA_CLIENT_PURE_PYTHON")
    assert fast._fast is not None and slow._fast is None
    return fast, slow


def close_all(handlers: tuple[LogDNAHandler, ...]) -> None:
    for h in handlers:
        h.client.close(timeout=0)
        h.close()


@needs_speedups
class TestRedactionAgrees:
    """The C path's trigger scan (needs_redaction, with the redactor's key answers)
    leaves alone only what the Python redactor would leave alone."""

    @pytest.mark.parametrize(
        ("msg", "args", "secret"),
        [
            ("Authorization: Basic %s", ("dXNlcjpwYXNz",), b"dXNlcjpwYXNz"),
            ("Cookie=%s", ("sessionid42",), b"sessionid42"),
        ],
    )
    def test_auth_header_without_key_names(
        self, monkeypatch: pytest.MonkeyPatch, msg: str, args: Any, secret: bytes
    ) -> None:
        """With key names off (redact=False) and the credential patterns on, the
        auth_header pattern still redacts "Authorization: ..." and "Cookie=...",
        although the redactor answers that "Authorization" names no secret: the
        C path must not take that answer as "nothing to redact" (it shipped the
        credential from the second such line on)."""
        handlers = pair_with(monkeypatch, redact=False, redact_patterns="credentials")
        try:
            fast_lines, slow_lines = through_both(handlers, record(msg, args))
            more_fast, more_slow = through_both(handlers, record(msg, args))
        finally:
            close_all(handlers)
        assert not any(secret in line for line in slow_lines + more_slow)
        assert slow_lines + more_slow == fast_lines + more_fast

    def test_auth_header_in_meta_without_key_names(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The same for a meta string: the C path wrote it unredacted."""
        handlers = pair_with(monkeypatch, redact=False, redact_patterns="credentials")
        try:
            queued = with_extras_through_both(
                handlers, {"hdr": "Authorization: Basic dXNlcjpwYXNz"}, 3
            )
        finally:
            close_all(handlers)
        assert not any(b"dXNlcjpwYXNz" in line for line in queued[1])
        assert queued[1] == queued[0]

    @pytest.mark.parametrize(
        "header", ["upstream author\u0131zation", "COOK\u0130E", "Coo\u212aie"]
    )
    def test_a_header_word_with_a_letter_that_folds_to_ascii(
        self, monkeypatch: pytest.MonkeyPatch, header: str
    ) -> None:
        """The auth_header pattern matches case-insensitively, so a dotless i, a dotted
        capital I or a Kelvin sign in "authorization" or "cookie" still makes the header
        word. The C path read the key back as the ASCII after that letter ("zation",
        "E", "ie"), found it plain once the first line had been redacted, and shipped
        the credential in clear from the second line on (H199), in text and in meta."""
        handlers = pair_with(monkeypatch)
        try:
            lines: tuple[list[bytes], list[bytes]] = ([], [])
            for _ in range(3):
                fast, slow = through_both(handlers, record(header + ": Bearer %s", ("s3cr3t",)))
                lines[0].extend(fast)
                lines[1].extend(slow)
            meta = with_extras_through_both(handlers, {"hdr": header + ": s3cr3t"}, 3)
        finally:
            close_all(handlers)
        assert not any(b"s3cr3t" in line for line in lines[1] + meta[1])
        assert (lines[1], meta[1]) == (lines[0], meta[0])

    def test_a_time_is_no_key_to_ask_about(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A ':' after two digits is no separator for the redactor (a time, a ratio), so
        the C path does not hand text with a timestamp to it (it asked about the key
        "2026-12-05T10" on every such line, and the redactor never answers for it);
        a separator beside one is still looked at, and both paths ship the same bytes."""
        asked: list[str] = []
        handlers = []
        for pure in ("0", "1"):
            monkeypatch.setenv("LOGDNA_CLIENT_PURE_PYTHON", pure)
            client = Client(key="k", url=UNREACHABLE, hostname="t", flush_interval=3600)
            redact = client._builder.redact_triggered

            def counting(text: str, redact: Callable[[str], str] = redact) -> str:
                asked.append(text)
                return redact(text)

            client._builder.redact_triggered = counting  # type: ignore[method-assign]
            handlers.append(LogDNAHandler(client=client))
        monkeypatch.delenv("LOGDNA_CLIENT_PURE_PYTHON")
        fast, slow = handlers
        assert fast._fast is not None and slow._fast is None
        times = ["job started at 2026-12-05T10:30:00Z", "took 01:02:03", "aspect 16:9"]
        try:
            fast.handle(record("m", ()))  # the first: the level's JSON, the logger's name
            built = c_lines(fast)
            for text in times * 2:
                fast.handle(record(text, ()))
            assert [] == asked
            assert 6 == c_lines(fast) - built  # and built in C
            fast.handle(record("at 2026-12-05T10:30:00Z password=%s", ("hunter2",)))
            assert 1 == len(asked)
            for text in times:
                slow.handle(record(text, ()))
            fast_lines, slow_lines = through_both(
                (fast, slow), record("at 2026-12-05T10:30:00Z password=%s", ("hunter2",))
            )
        finally:
            close_all((fast, slow))
        assert slow_lines == fast_lines
        assert not any(b"hunter2" in line for line in fast_lines)

    def test_an_encoded_bracket_ends_the_key(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The key before "data%5Bpin=" is "pin" (what follows the encoded "["), as the
        redactor reads it: the C path read "5Bpin" and, once that was a plain meta
        key, shipped the value without asking."""
        handlers = pair_with(monkeypatch)
        try:
            with_extras_through_both(handlers, {"5Bpin": "x"}, 1)
            fast_lines, slow_lines = through_both(handlers, record("data%5Bpin=1234", ()))
        finally:
            close_all(handlers)
        assert not any(b"1234" in line for line in slow_lines)
        assert slow_lines == fast_lines

    def test_long_meta_string_after_a_plain_key(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A meta string with a trigger is redacted by the walk, which first cuts one
        longer than max_line_length + 256 characters (with a marker); the C path,
        finding the key before the ":" plain, wrote it whole."""
        handlers = pair_with(monkeypatch, max_line_length=64)  # texts of 16 characters
        base = record("m", ())
        queued = []
        try:
            for h in handlers:
                for _ in range(3):
                    copy = twin(base)
                    copy.note = "user: " + "x" * 600
                    h.handle(copy)
                queued.append(list(h.client._buffer.entries)[-3:])
        finally:
            close_all(handlers)
        assert all(b"cut by logdna_client" in line for line in queued[1])
        assert queued[1] == queued[0]


@needs_speedups
def test_meta_key_lookup_that_runs_code_keeps_the_value() -> None:
    """A str subclass with its own __eq__ that the redactor has cached as a plain key
    runs Python code inside the C path's set and dict lookups (safe_keys,
    secret_cache). If that code drops the record's extra, the C path must not read
    the value it held borrowed: it shipped whatever reused the freed memory
    (a heap-use-after-free under AddressSanitizer)."""
    script = textwrap.dedent(
        """
        import logging
        from logdna_client import LogDNAHandler

        h = LogDNAHandler(key="k", url="http://127.0.0.1:1/x", hostname="t",
                          flush_interval=3600)
        keep, armed, victim = [], False, None

        class Evil(str):
            def __eq__(self, other):
                global armed
                if armed:
                    armed = False
                    victim.__dict__.pop("user_id", None)  # the only reference to it
                    keep.append("".join(["X"] * 40))  # a same-size str reuses its block
                return str.__eq__(self, other)

            __hash__ = str.__hash__

        def rec(extra):
            r = logging.LogRecord("t.evil", 20, "/x", 1, "m %s", ("x",), None)
            r.__dict__.update(extra)
            return r

        h.handle(rec({"d": {Evil("user_id"): 1}}))  # the walk caches Evil("user_id") as plain
        h.handle(rec({"user_id": "".join(["v"] * 40)}))
        for _ in range(3):
            victim = rec({"user_id": "".join(["v"] * 40)})
            armed = True
            h.handle(victim)
            print(h.client._buffer.entries[-1].decode())
        h.client.close(timeout=0)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60
    )
    assert 0 == result.returncode, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert 3 == len(lines)
    for line in lines:
        assert "X" * 40 not in line
        assert json.loads(line[1:])["meta"]["user_id"] == "v" * 40


@needs_speedups
class TestMethod:
    def test_is_the_handlers_handle(self) -> None:
        """Each handler's handle is its own C object; called as the stdlib calls it, or
        with keywords (which go to the Python method), it handles the record."""
        h = offline_handler()
        try:
            assert isinstance(h.handle, speedups.Handle)
            assert h.handle is not offline_handler().handle
            assert h.handle(record()) is True
            assert LogDNAHandler.handle(h, record()) is True
            assert h.handle(record=record()) is True
            assert 3 == len(h.client._buffer.entries)
        finally:
            h.client.close(timeout=0)
            h.close()

    def test_pure_python_switch(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """LOGDNA_CLIENT_PURE_PYTHON=1 at construction keeps a handler on the Python path."""
        monkeypatch.setenv("LOGDNA_CLIENT_PURE_PYTHON", "1")
        h = offline_handler()
        try:
            assert h._fast is None
            h.handle(record())
            h.handle(record())
            assert json.loads(last(h)[1:])["line"] == "served /a in 3 ms"
        finally:
            h.client.close(timeout=0)
            h.close()

    def test_pure_python_switch_is_read_when_the_handler_is_built(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The variable as it was when the handler was built decides, however it changes
        later: a handler read it again when a hook came and went, and moved to the other
        path; and a false word ("false", "off") means the C path (H199)."""
        from unittest import mock

        monkeypatch.setenv("LOGDNA_CLIENT_PURE_PYTHON", "1")
        pure = offline_handler()
        monkeypatch.setenv("LOGDNA_CLIENT_PURE_PYTHON", "false")
        fast = offline_handler()
        try:
            monkeypatch.setenv("LOGDNA_CLIENT_PURE_PYTHON", "1")
            with mock.patch.object(fast, "emit"):
                pass
            monkeypatch.delenv("LOGDNA_CLIENT_PURE_PYTHON")
            with mock.patch.object(pure, "emit"):
                pass
            assert (None, True) == (pure._fast, fast._fast is not None)
        finally:
            close_all((pure, fast))

    @pytest.mark.parametrize("attribute", ["lineno", "process", "levelno"])
    def test_one_record_attribute_that_is_no_text_takes_the_c_path(
        self, monkeypatch: pytest.MonkeyPatch, attribute: str
    ) -> None:
        """``record_meta`` of one attribute whose value is a number (``lineno``): the C
        path left every such record to Python (H199); it builds them, with the bytes
        of the Python path."""
        handlers = pair_with(monkeypatch, record_meta=attribute)
        try:
            for h in handlers:
                h.handle(record())  # the first: the level's JSON gets known
            before = c_lines(handlers[0])
            fast_lines, slow_lines = through_both(handlers, record())
            built = c_lines(handlers[0]) - before
        finally:
            close_all(handlers)
        assert 2 == built
        assert slow_lines == fast_lines
        assert json.loads(fast_lines[0][1:])["meta"] == {attribute: getattr(record(), attribute)}

        """An extension that cannot make a handler's state (say, a build left from
        another version) leaves that handler on the Python path, working."""

        def broken(**options: Any) -> None:
            raise TypeError("function takes at most 22 keyword arguments (24 given)")

        monkeypatch.setattr(speedups, "Handle", broken)
        h = offline_handler()
        try:
            assert h._fast is None
            h.handle(record())
            assert json.loads(last(h)[1:])["line"] == "served /a in 3 ms"
        finally:
            h.client.close(timeout=0)
            h.close()

    def test_handler_is_collected(self) -> None:
        """A dropped handler (and its C state) is garbage collected."""
        import gc
        import weakref

        h = offline_handler()
        h.handle(record())
        h.client.close(timeout=0)
        h.close()
        ref = weakref.ref(h)
        del h
        gc.collect()
        assert ref() is None


def test_built_where_a_compiler_is() -> None:
    """Where a C compiler and the Python headers are, the install built the extension
    (CI must measure and test the C path, not silently the fallback)."""
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    headers = os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))
    if (
        not (shutil.which(compiler) and headers)
        or not getattr(sys, "_is_gil_enabled", lambda: True)()
    ):
        pytest.skip("no compiler or headers here: the Python fallback is expected")
    assert speedups is not None
    if os.environ.get("LOGDNA_CLIENT_PURE_PYTHON", "") in ("", "0"):  # not switched off
        assert offline_handler()._fast is not None


def test_the_c_file_names_python_that_exists() -> None:
    """Each C function names the Python it mirrors (``_line.LineBuilder.entry``,
    ``LogDNAHandler._deliver`` ...): every such dotted name in _speedups.c's comments
    resolves, so a rename on the Python side that leaves the C stale fails here."""
    import importlib
    import pathlib
    import re

    import logdna_client
    from logdna_client._buffer import Buffer
    from logdna_client._line import LineBuilder
    from logdna_client._redact import Redactor
    from logdna_client.structlog import LogDNAProcessor

    package = pathlib.Path(logdna_client.__file__).parent
    roots: dict[str, Any] = {
        path.stem: importlib.import_module(f"logdna_client.{path.stem}")
        for path in package.glob("*.py")
        if path.stem != "__init__"
    }
    roots.update(
        LogDNAHandler=LogDNAHandler, LogDNAProcessor=LogDNAProcessor, LineBuilder=LineBuilder,
        Buffer=Buffer, Redactor=Redactor, LogRecord=logging.LogRecord,
    )  # fmt: skip
    source = (package / "_speedups.c").read_text()
    names = set(re.findall(r"\b(_?[A-Za-z]\w*)((?:\.[A-Za-z_]\w*)+)\b(?![.*])", source))
    checked = []
    for root, rest in sorted(names):
        if root not in roots or rest in (".py", ".c"):
            continue  # not ours (handler.handle, orjson.dumps), or a file's name
        obj = roots[root]
        for part in rest.split(".")[1:]:
            assert hasattr(obj, part), f"_speedups.c names {root}{rest}: no {part!r} there"
            obj = getattr(obj, part)
        checked.append(root + rest)
    assert len(checked) >= 20  # the mirrors are named: the pattern still finds them
