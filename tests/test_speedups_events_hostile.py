"""Hostile input for _speedups.c's EventHandle: user code that runs in the middle of
the C call (a key's __eq__, a timestamp's __float__, a signal handler) must leave it
shipping the Python path's bytes, raising what the Python path raises, and never
touching freed memory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from logdna_client.structlog import LogDNAProcessor
from tests import test_speedups_events
from tests.helpers import needs_speedups
from tests.test_speedups_events import NOW

pytestmark = needs_speedups

#: The C-path and Python-path processors of test_speedups_events, as a fixture here too.
procs = test_speedups_events.procs

Procs = tuple[LogDNAProcessor, LogDNAProcessor]


def queued(p: LogDNAProcessor, before: int) -> list[dict[str, Any]]:
    return [json.loads(e[1:]) for e in list(p.client._buffer.entries)[before:]]


class TestUserCodeMidCall:
    def test_a_key_whose_eq_empties_the_event(self, procs: Procs) -> None:
        """A key that collides with "level" runs its __eq__ in the C call's lookup; one
        that empties the event frees the text the call has just read. The call must
        still ship that text (as the Python path, which holds it, does), not whatever
        took its memory."""
        reused = []

        class Clearing(str):
            event: dict[Any, Any]

            def __hash__(self) -> int:
                return hash("level")

            def __eq__(self, other: object) -> bool:
                if self.event:
                    self.event.clear()
                    reused.append("".join(["B"] * 24))  # the size of the text: its memory
                return False

            def __ne__(self, other: object) -> bool:
                return True

        for p in procs:
            before = len(p.client._buffer.entries)
            for _ in range(3):
                event: dict[Any, Any] = {"event": "".join(["A"] * 24)}  # held by the event only
                key = Clearing("zz")
                key.event = event
                event[key] = 1
                del key
                assert p(None, "info", event) is event
            assert ["A" * 24] * 3 == [line["line"] for line in queued(p, before)]

    def test_a_timestamp_that_changes_the_event(self, procs: Procs) -> None:
        """The Python path copies the event before it reads the timestamp: a timestamp
        whose conversion changes the event changes no meta of this line."""

        class Changing(float):
            event: dict[str, Any]

            def __float__(self) -> float:
                self.event.pop("a", None)
                self.event["added"] = 1
                return float.__float__(self)

        out = []
        built = procs[0]._native_lines
        for p in procs:
            before = len(p.client._buffer.entries)
            for _ in range(3):  # the later ones with their keys known
                stamp = Changing(1.7e9)
                event = {"event": "t", "timestamp": stamp, "a": 1, "b": 2}
                stamp.event = event
                p(None, "info", event)
            out.append(queued(p, before))
        assert out[1] == out[0]
        assert [{"a": 1, "b": 2}] * 3 == [line["meta"] for line in out[0]]
        assert 2 == procs[0]._native_lines - built

    @pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="needs SIGUSR1")
    def test_what_a_signal_handler_raises_reaches_the_application(self, procs: Procs) -> None:
        """A signal handler that raises (sys.exit in a SIGTERM handler, Ctrl-C's
        KeyboardInterrupt) while the call runs Python code (timestamp_of, the redactor)
        raises out of the logging call, as on the Python path: the C call must not
        swallow it and ship the event again the Python way."""

        class Stop(BaseException):
            pass

        def handler(signum: int, frame: object) -> None:
            raise Stop

        class Signalling(float):
            sent = False

            def __float__(self) -> float:
                if not self.sent:  # one signal, as one Ctrl-C
                    self.sent = True
                    os.kill(os.getpid(), signal.SIGUSR1)  # the handler runs here
                return float.__float__(self)

        previous = signal.signal(signal.SIGUSR1, handler)
        try:
            for p in procs:
                before = len(p.client._buffer.entries), p._native_lines
                with pytest.raises(Stop):
                    p(None, "info", {"event": "t", "timestamp": Signalling(1.7e9)})
                assert before == (len(p.client._buffer.entries), p._native_lines)
        finally:
            signal.signal(signal.SIGUSR1, previous)

    def test_initialised_again_in_the_middle_of_a_call(self) -> None:
        """Running __init__ again while a call is in C (here from a timestamp's
        __float__) would drop the objects that call goes on to use: it is refused
        then, and the call ships its line. In a child process: before, it crashed."""
        code = """if True:
            from logdna_client import _native
            from tests.test_speedups_events import offline_processor
            p = offline_processor()
            p(None, "info", {"event": "first"})
            refused = []
            class Again(float):
                def __float__(self):
                    try:
                        _native.speedups.EventHandle.__init__(p)
                    except TypeError:
                        refused.append(True)
                    return 1.7e9
            before = p._native_lines
            event = {"event": "x", "timestamp": Again(1.0)}
            assert p(None, "info", event) is event
            assert [True] == refused, refused
            assert before + 1 == p._native_lines
            p(None, "info", {"event": "after"})
            assert before + 2 == p._native_lines
            p.client.close(timeout=0)
            print("shipped")
        """
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=Path(__file__).parent.parent,
        )
        assert (0, "shipped\n") == (done.returncode, done.stdout), done.stderr

    def test_a_timestamp_that_logs_through_the_processor(self, procs: Procs) -> None:
        """User code the call runs that logs through the same processor (here a
        timestamp's __float__, logging an event with that timestamp) takes the nested
        path, as on the Python path: one nested line, the next counted "reentrant".
        Without the thread marked busy, the C call recursed until RecursionError,
        shipping some 300 lines, and overflowed a 512 KiB thread stack."""
        out = []
        for p in procs:

            class Logging(float):
                processor = p

                def __float__(self) -> float:
                    self.processor(None, "info", {"event": "inner", "timestamp": self})
                    return float.__float__(self)

            before = len(p.client._buffer.entries)
            p(None, "info", {"event": "outer", "timestamp": Logging(1.7e9)})
            dropped = {k: n for k, n in p.client.stats()["dropped"].items() if n}
            out.append(([line["line"] for line in queued(p, before)], dropped))
        assert (["inner", "outer"], {"reentrant": 1}) == out[1]
        assert out[1] == out[0]

    @pytest.mark.parametrize("text", ["", "x" * 5000])
    def test_a_text_python_ships_reads_the_timestamp_as_python_does(
        self, procs: Procs, text: str
    ) -> None:
        """An event the C call cannot build for its text (empty, or longer than
        plain_max_chars) goes to Python before its timestamp is converted, as
        _ship_common returns before converting it: the conversion (user code, here)
        runs as often on both paths."""
        calls = []

        class Counted(float):
            def __float__(self) -> float:
                calls.append(1)
                return float.__float__(self)

        counts = []
        for p in procs:
            calls.clear()
            p(None, "info", {"event": text, "timestamp": Counted(1.7e9)})
            counts.append(len(calls))
        assert counts[1] == counts[0]


class TestLookedUpPerCall:
    def test_clock_patched_after_the_processor_is_made(
        self, procs: Procs, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The Python path reads ``time.time`` at each call; so does the C call: a clock
        frozen after the processors were made (as freezegun freezes it) stamps both
        alike."""
        monkeypatch.setattr(time, "time", lambda: 1_234_567_890.25)
        out = []
        for p in procs:
            before = len(p.client._buffer.entries), p._native_lines
            p(None, "info", {"event": "now"})
            out.append([line["timestamp"] for line in queued(p, before[0])])
            assert 1 == p._native_lines - before[1] or p is procs[1]
        assert [[1_234_567_890_250]] * 2 == out


class TestSubclasses:
    def test_a_subclass_with_its_own_ship_common(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The C call is _ship_common's work: a subclass that overrides it gets its
        own on every event, as on the Python path, not on the uncommon ones only."""

        class Tagging(LogDNAProcessor):
            def _ship_common(self, method_name: str, event_dict: dict[str, Any]) -> bool:
                return super()._ship_common(method_name, {**event_dict, "tagged": True})

        monkeypatch.setattr(time, "time", lambda: NOW)
        out = []
        for pure in ("0", "1"):
            monkeypatch.setenv("LOGDNA_CLIENT_PURE_PYTHON", pure)
            p = Tagging(key="k", url="http://127.0.0.1:9", hostname="t", flush_interval=3600)
            try:
                for _ in range(3):
                    p(None, "info", {"event": "e"})
                out.append(queued(p, 0))
            finally:
                p.client.close(timeout=0)
        assert [{"tagged": True}] * 3 == [line.get("meta") for line in out[1]]
        assert out[1] == out[0]
