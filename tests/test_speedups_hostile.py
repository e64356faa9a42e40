"""Hostile input for _speedups.c's Handle (a LogDNAHandler's handle): user code that
runs in the middle of the C call, and records changed meanwhile, must leave it
shipping the Python path's bytes and never touching freed memory.

The memory cases run in a child process under ``PYTHONMALLOC=debug``, which fills
freed memory with a marker: a C call that reads an object after its last reference
went crashes there at once, instead of shipping whatever took its place."""

from __future__ import annotations

import gc
import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from logdna_client import LogDNAHandler
from logdna_client.structlog import LogDNAProcessor
from tests import test_speedups
from tests.helpers import needs_speedups
from tests.test_speedups import record, through_both, with_extras_through_both

pytestmark = needs_speedups

#: A handler that never sends, whose credential check of message text runs ``hook``
#: (once) after the redactor's Python code: what a signal handler, a finalizer or
#: another thread may do while the C call waits for that code.
PRELUDE = """
import logging
from logdna_client import Client, LogDNAHandler

client = Client(key="k", url="http://127.0.0.1:9/x", hostname="t", flush_interval=3600)
hook = None
redact = client._builder.redact_triggered

def redact_then_hook(text):
    global hook
    try:
        return redact(text)
    finally:
        if hook is not None:
            run, hook = hook, None
            run()

client._builder.redact_triggered = redact_then_hook
h = LogDNAHandler(client=client)  # its C call is handed redact_then_hook

def rec(msg, args, **attrs):
    r = logging.LogRecord("t.evil", 20, "/x", 1, msg, args, None)
    r.__dict__.update(attrs)
    return r

h.handle(rec("m", ()))  # the logger name's meta gets known
"""


def run_child(body: str, pure: str = "0") -> list[str]:
    """Run PRELUDE then ``body`` in a child under the debug allocator (on the Python
    path with ``pure`` "1"); its stdout lines."""
    done = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(body)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).parent.parent,
        env={**os.environ, "PYTHONMALLOC": "debug", "LOGDNA_CLIENT_PURE_PYTHON": pure},
    )
    assert 0 == done.returncode, done.stderr[-2000:]
    return done.stdout.splitlines()


#: The C-path and Python-path handlers of test_speedups, as a fixture here too.
pair = test_speedups.pair

Pair = tuple[LogDNAHandler, LogDNAHandler]


class Int(int):
    def __format__(self, spec: str) -> str:
        return "format"

    def __str__(self) -> str:
        return "str"

    def __repr__(self) -> str:
        return "repr"


class Str(str):
    __format__, __str__, __repr__ = Int.__format__, Int.__str__, Int.__repr__


class TestSameBytes:
    @pytest.mark.parametrize(
        ("msg", "args"),
        [
            ("%s %d %r", (Int(5), Int(6), Int(7))),
            ("%s %r", (Str("s"), Str("r"))),
            ("%s %d", (True, False)),
            ("%s %r %f", (float("nan"), float("-inf"), float("inf"))),
            ("%d", (-(10**5000),)),
            ("NUL \x00 %s", ("\x00",)),
            ("%s", ("\udfff\ud800",)),
            ("𝄞 %s", ("\U0010ffff",)),
            (Str("a str subclass %s"), ("x",)),
            (b"bytes %s", ("x",)),
        ],
    )
    def test_arguments_and_messages(self, pair: Pair, msg: Any, args: Any) -> None:
        """Subclasses with their own __format__/__str__/__repr__ (Python formats them),
        bool, NaN and infinities, an int past str()'s digit limit, NUL, lone surrogates,
        the last code point, and messages that are not exact str: the same bytes."""
        fast_lines, slow_lines = through_both(pair, record(msg, args))
        assert slow_lines == fast_lines

    @pytest.mark.parametrize(
        "extra",
        [
            {"n": Int(5), "s": Str("x")},
            {"on": True, "one": 1, "zero": 0, "off": False},
            {"nul": "\x00", "surrogates": "\udfff\ud800", "last": "\U0010ffff"},
            {Str("key"): 1},
            {"huge": 10**5000},
        ],
    )
    def test_extras(self, pair: Pair, extra: dict[str, Any]) -> None:
        """Extras of those kinds, and a key that is a str subclass: the same bytes."""
        queued = with_extras_through_both(pair, extra, 2)
        assert queued[1] == queued[0]


class TestUserCodeMidCall:
    def test_a_levelname_replaced_while_the_text_is_checked(self) -> None:
        """User code run while the message is checked for credentials (a signal
        handler, a finalizer, another thread) that gives the record a new levelname
        frees the old one. The C call read it before, and went on to look up its tail
        in freed memory, shipping the level that took the memory over: it must ship
        the level it read, as the Python path does."""
        body = """
            h.handle(rec("warm", (), levelname="WARN"))  # "WARN"'s tail is known
            built = h._fast.lines if h._fast else 0
            for _ in range(3):
                victim = rec("password=%s", ("x",), levelname="".join(["IN", "FO"]))
                def replace():
                    victim.levelname = "WARN"  # the only reference to the old one goes
                    keep.append("".join(["WA", "RN"]))  # a same-size str takes its block
                keep = []
                hook = replace
                h.handle(victim)
                print(h.client._buffer.entries[-1][1:].decode())
            print(h._fast.lines - built if h._fast else 0)
            client.close(timeout=0)
        """
        fast, slow = run_child(body), run_child(body, pure="1")
        levels = [[json.loads(line)["level"] for line in out[:3]] for out in (fast, slow)]
        assert [["INFO"] * 3] * 2 == levels
        assert ["3", "0"] == [fast[3], slow[3]]  # the C path built them

    def test_a_key_whose_eq_drops_the_message_while_args_is_looked_up(self) -> None:
        """A record a filter rebuilt (``args`` deleted, a str-subclass extra put where it
        was, ``args`` set again; another attribute deleted, so that it has as many as a
        plain record) makes the lookup of ``args`` run that key's __eq__. One that takes
        the message out of the record freed the text the C call had just read: it must
        format the message it read, as the Python path (which holds it) does."""
        body = """
            class Evil(str):
                def __hash__(self):
                    return hash("args")

                def __eq__(self, other):
                    global hook
                    if hook is not None:
                        run, hook = hook, None
                        run()
                    return False

                __ne__ = lambda self, other: True

            for _ in range(3):
                victim = rec("".join(["user ", "%s"]), ("bob",))
                d = victim.__dict__
                args = d.pop("args")
                d[Evil("zz")] = 1
                d["args"] = args
                del d["module"]  # as many attributes as a plain record: no extras read
                def drop():
                    d.pop("msg")  # the only reference to the message
                    keep.append("".join(["XXXX", "%s"]))  # a same-size str takes its block
                keep = []
                hook = drop
                h.handle(victim)
                print(h.client._buffer.entries[-1][1:].decode())
            client.close(timeout=0)
        """
        fast, slow = run_child(body), run_child(body, pure="1")
        texts = [[json.loads(line)["line"] for line in out] for out in (fast, slow)]
        assert [["user bob"] * 3] * 2 == texts


class Boom:
    def __str__(self) -> str:
        raise ValueError("no str")


#: One record per route through the C handle: (msg, args, extras, exc_info).
RECORD_ROUTES = {
    "plain": ("request %s served in %d ms", ("/a", 7), {}, None),
    "scalar args": ("%s %r %d %s", (1.5, float("nan"), True, None), {}, None),
    "huge int": ("%d %s", (10**30, -(2**70)), {}, None),
    "text to escape": ("é %s \x00 𝄞", ('"q"\n',), {}, None),
    "lone surrogate": ("%s", ("\ud800",), {}, None),
    "extras": ("m", (), {"user_id": 7, "path": "/x", "ok": True, "f": 1.5, "n": None}, None),
    "extras to escape": ("m", (), {"note": 'é"q', "inf": float("inf"), "big": 2**64}, None),
    "credential": ("password=%s user: %s", ("hunter2", "bob"), {}, None),
    "plain keys": ("count: %d at 10:30 x=%d", (1, 2), {}, None),
    "unformattable": ("%d %s", ("x",), {}, None),
    "raising str": ("%s", (Boom(),), {}, None),
    "not a str": (12345, None, {}, None),
    "traceback": ("e", None, {}, (ValueError, ValueError("v"), None)),
}

#: One event per route through the C call of the structlog processor.
EVENT_ROUTES = {
    "plain": {"event": "request served", "user_id": 7, "path": "/a"},
    "float time": {"event": "e", "timestamp": 1.7e9},
    "int time": {"event": "e", "timestamp": 1_700_000_000_000},
    "iso time": {"event": "e", "timestamp": "2024-01-01T00:00:00Z"},
    "no time": {"event": "e", "timestamp": "nonsense"},
    "credential": {"event": "password=x", "note": "a@b"},
    "text to escape": {"event": "é\ud800", "k": "𝄞"},
    "not a str": {"event": 5},
    "nested": {"event": "e", "d": {"a": [1]}},
}


class TestNoLeaks:
    def test_each_route_holds_no_memory_per_call(self) -> None:
        """Every route through the C code (built there, or handed to Python for any of
        the reasons it hands records and events over) gives back all it allocates: a
        reference leaked per call would hold thousands of blocks after a few thousand
        calls. Each route runs three rounds; the last must hold (almost) nothing more."""
        options: dict[str, Any] = {
            "key": "k",
            "url": "http://127.0.0.1:9/x",
            "hostname": "t",
            "flush_interval": 3600,
            "max_batch_bytes": 8 * 1024 * 1024,  # the sender is not woken to take a batch
        }
        handler = LogDNAHandler(**options)
        processor = LogDNAProcessor(client=handler.client)
        buffer = handler.client._buffer
        previous = logging.raiseExceptions
        logging.raiseExceptions = False  # the unformattable routes: no traceback printed
        calls = 2000

        def one_record(msg: Any, args: Any, extras: dict[str, Any], exc: Any) -> None:
            r = logging.LogRecord("t.leak", logging.INFO, "/x", 1, msg, args, exc)
            r.__dict__.update(extras)
            handler.handle(r)

        def held(run: Callable[[], object]) -> int:
            for _ in range(calls):
                run()
            buffer.discard_all("shutdown")
            gc.collect()
            return sys.getallocatedblocks()

        growth = {}
        try:
            runs: list[tuple[str, Callable[[], object]]] = [
                (f"record {name}", lambda case=case: one_record(*case))
                for name, case in RECORD_ROUTES.items()
            ] + [
                (f"event {name}", lambda event=event: processor(None, "info", dict(event)))
                for name, event in EVENT_ROUTES.items()
            ]
            for name, run in runs:
                rounds = [held(run) for _ in range(3)]
                growth[name] = rounds[2] - rounds[1]
            built = handler._fast.lines, processor._native_lines
        finally:
            logging.raiseExceptions = previous
            handler.client.close(timeout=0)
        assert {} == {name: n for name, n in growth.items() if n > calls // 10}
        # The C code built seven of the record routes and four of the event ones.
        assert built[0] > 7 * 3 * calls - 10 and built[1] > 4 * 3 * calls - 10
