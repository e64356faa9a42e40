"""Logging from anywhere at any moment: a signal handler that logs or raises at each
place one can run inside the logging call (``LogDNAHandler.handle`` on both paths, the
structlog ``LogDNAProcessor``), with room in the buffer and with it full under each
overflow policy; and, in real child processes, signals from an interval timer that log
while the main thread logs, counted, and the application's hooks that log as the process
ends (atexit, threading.excepthook, sys.unraisablehook, a daemon thread).

What must hold: every line a logging call was given is queued once or counted under a
reason, never both, never neither; nothing is left marked busy; no deadlock; nothing
comes out of the logging call but what a signal handler raised, which is the
application's (an ``alarm()`` timeout's TimeoutError reaches it, as Ctrl-C's
KeyboardInterrupt does).

The moments are chosen, not hoped for: ``run_at`` (tests/test_buffer_interrupts.py)
runs the signal's handler at the n-th place CPython checks for one, for each n in turn
(``signal.raise_signal`` from the tracer: the handler runs as the tracer returns, in
the frame being traced).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest

from logdna_client import Client, LogDNAHandler
from logdna_client._devserver import DevServer
from logdna_client._threads import BUSY_THREADS, NESTED_THREADS, raised_by_signal_handler
from logdna_client._transport import Kind, Outcome
from logdna_client.structlog import LogDNAProcessor
from tests._children import REPO, Child, texts
from tests.test_buffer_interrupts import run_at

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="needs SIGUSR1")

URL = "http://127.0.0.1:1/logs/ingest"


class GatedTransport:
    """Holds every request until ``gate`` is set: the sender takes one batch and waits,
    and every later line stays in the buffer, where the test counts it."""

    def __init__(self) -> None:
        self.gate = threading.Event()

    def send(self, body: bytes, *, gzipped: bool, timeout: float) -> Outcome:
        self.gate.wait(30)
        return Outcome(Kind.OK, 200)

    def close(self) -> None:
        pass


@pytest.fixture
def gated() -> Iterator[Callable[..., Client]]:
    """Makes clients whose requests wait (closed, gate open, at the end)."""
    made: list[tuple[Client, GatedTransport]] = []

    def make(**options: Any) -> Client:
        transport = GatedTransport()
        client = Client(url=URL, transport=transport, flush_interval=3600, compress=False,
                        handle_signals=False, **options)  # fmt: skip
        made.append((client, transport))
        return client

    yield make
    for client, transport in made:
        transport.gate.set()
        client.close(5)


def books(client: Client) -> int:
    """Lines the client's buffer accepted plus those it counted as dropped."""
    buffer = client._buffer
    return buffer.accepted + sum(buffer.dropped.values())


def fill(client: Client, log: Callable[[str], object]) -> None:
    """Log until the buffer holds all it may (and a few more, dropped or evicted)."""
    buffer = client._buffer
    i = 0
    while buffer.held_bytes + 400 < buffer._max:
        log(f"fill {i} " + "x" * 60)
        i += 1
    for i in range(3):
        log(f"over {i} " + "x" * 60)


def route(kind: str, client: Client) -> Callable[[str], object]:
    """One logging call of ``kind`` shipping through ``client``."""
    if kind == "handler":
        logger = logging.getLogger(f"reentry.{id(client)}")
        logger.handlers[:] = [LogDNAHandler(client=client)]
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
        return lambda text: logger.info("%s", text)
    if kind == "client":
        return lambda text: client.log(text, level="INFO")
    processor = LogDNAProcessor(client=client)
    return lambda text: processor(None, "info", {"event": text, "n": 1})


class Alarm(Exception):
    """What an application's alarm()-based timeout raises from its signal handler."""


@pytest.fixture
def usr1() -> Iterator[Callable[[Callable[[int, Any], None]], None]]:
    """Sets SIGUSR1's handler for the test; the old one comes back after."""
    previous = signal.getsignal(signal.SIGUSR1)

    def install(handler: Callable[[int, Any], None]) -> None:
        signal.signal(signal.SIGUSR1, handler)

    yield install
    signal.signal(signal.SIGUSR1, previous)


def raise_usr1() -> None:
    signal.raise_signal(signal.SIGUSR1)


def assert_unmarked() -> None:
    current = threading.get_ident()
    assert current not in BUSY_THREADS
    assert current not in NESTED_THREADS


class _CallableHandler:
    def __call__(self, signum: int, frame: object) -> None:
        raise Alarm


def _alarm_with(extra: object, signum: int, frame: object) -> None:
    raise Alarm


def _alarm(signum: int, frame: object) -> None:
    raise Alarm


class TestRaisedBySignalHandler:
    @pytest.mark.parametrize(
        "handler", [_alarm, _CallableHandler(), partial(_alarm_with, 1)],
        ids=["function", "callable-object", "partial"],
    )  # fmt: skip
    def test_tells_a_signal_handlers_exception_from_any_other(
        self, usr1: Any, handler: Callable[[int, Any], None]
    ) -> None:
        """What a signal handler of each usual kind raised is told apart from the same
        exception raised by other code."""
        usr1(handler)
        with pytest.raises(Alarm) as raised:
            raise_usr1()
        assert raised_by_signal_handler(raised.value)
        with pytest.raises(Alarm) as other:
            raise Alarm
        assert not raised_by_signal_handler(other.value)


@pytest.mark.usefixtures("handle_path")
class TestSignalHandlerThatRaises:
    @pytest.mark.parametrize("kind", ["handler", "structlog", "client"])
    @pytest.mark.parametrize("state", ["room", "full"])
    def test_the_line_is_counted_once_and_the_exception_reaches_the_application(
        self, gated: Callable[..., Client], usr1: Any, kind: str, state: str
    ) -> None:
        """A signal handler raises an Exception (not a BaseException) at each place in
        turn: where it comes out of the logging call, the line is queued or counted at
        most once (the call was cut short); where it does not, exactly once. Before,
        one raised after the line was queued (or counted as dropped on a full buffer)
        was taken for the line's own failure: swallowed, and the line counted as an
        ``error`` as well."""
        client = gated(max_buffer_bytes=65536, overflow="drop_newest")
        log = route(kind, client)
        log("first")  # starts the sender, which takes it and waits
        if state == "full":
            fill(client, log)

        def alarm(signum: int, frame: object) -> None:
            raise Alarm

        usr1(alarm)
        point, escaped = 0, 0
        while True:
            point += 1
            before = books(client)
            try:
                reached, _ = run_at(point, partial(log, f"line {point}"), raise_usr1)
            except Alarm:
                escaped += 1
                assert books(client) - before in (0, 1), point
            else:
                if not reached:
                    break
                assert 1 == books(client) - before, (point, dict(client._buffer.dropped))
            assert 0 == client._buffer.dropped["error"], point
            assert_unmarked()
        assert point > 3  # (the C call runs few frames of Python: the lambda's, say)
        assert escaped > 0


@pytest.mark.usefixtures("handle_path")
class TestSignalHandlerThatLogs:
    @pytest.mark.parametrize("overflow", ["drop_oldest", "drop_newest", "block"])
    def test_on_a_full_buffer_each_line_counts_once_and_nothing_waits_for_itself(
        self, gated: Callable[..., Client], usr1: Any, overflow: str
    ) -> None:
        """A signal handler that logs through the same handler at each place in turn,
        the buffer full: both lines are queued or counted once each, nothing comes out
        of the call, and under ``block`` the nested put never waits on a lock its own
        thread holds (the run would hang)."""
        client = gated(max_buffer_bytes=65536, overflow=overflow, block_timeout=0.01)
        log = route("handler", client)
        log("first")
        fill(client, log)
        usr1(lambda signum, frame: log("from the signal handler"))
        point = 0
        while True:
            point += 1
            # drop_oldest accepts each line (evicting old ones, also counted): count those.
            held = overflow == "drop_oldest"
            before = client._buffer.accepted if held else books(client)
            reached, _ = run_at(point, partial(log, f"line {point}"), raise_usr1)
            if not reached:
                break
            after = client._buffer.accepted if held else books(client)
            assert 2 == after - before, (point, dict(client._buffer.dropped))
            assert_unmarked()
        assert point > 10


# A child that logs N lines from its main thread while an interval timer's signal
# handler logs a line each time it runs (not nested in itself, as most handlers are
# written); it prints what was logged, delivered and counted, as JSON on stdout.
_TIMER_CHILD = """
import json, logging, os, signal, sys, threading
import orjson
from logdna_client import Client, LogDNAHandler
from logdna_client._threads import raised_by_signal_handler
from logdna_client._transport import Kind, Outcome

ROUTE, OVERFLOW, N = sys.argv[1], sys.argv[2], int(sys.argv[3])

class Recording:
    def __init__(self):
        self.lines = []
    def send(self, body, *, gzipped, timeout):
        self.lines += [x["line"] for x in orjson.loads(body)["lines"]]
        return Outcome(Kind.OK, 200)
    def close(self):
        pass

transport = Recording()
client = Client(url="http://127.0.0.1:1/logs/ingest", transport=transport, compress=False,
                handle_signals=False, overflow=OVERFLOW, max_buffer_bytes=65536,
                block_timeout=0.001, max_batch_bytes=8192)
logger = logging.getLogger("timer")
logger.handlers[:] = [LogDNAHandler(client=client)]
logger.propagate = False
logger.setLevel(logging.INFO)
if ROUTE == "structlog":
    from logdna_client.structlog import LogDNAProcessor
    processor = LogDNAProcessor(client=client)
logged = 0
def log(text):
    global logged
    logged += 1
    if ROUTE == "client":
        client.log(f"{text} {logged}")
    elif ROUTE == "structlog":
        processor(None, "info", {"event": f"{text} {logged}", "n": logged})
    else:
        logger.info("%s %d", text, logged)
busy = False
def on_timer(signum, frame):
    global busy
    if not busy:
        busy = True
        try:
            log("timer")
        finally:
            busy = False
signal.signal(signal.SIGALRM, on_timer)
signal.setitimer(signal.ITIMER_REAL, 0.0001, 0.0001)
raised = 0
for i in range(N):
    try:
        log("main")
    except BaseException:
        raised += 1
signal.setitimer(signal.ITIMER_REAL, 0, 0)
signal.signal(signal.SIGALRM, signal.SIG_IGN)
client.close(30)
mine = [x for x in transport.lines if not x.startswith("logdna_client:")]
print(json.dumps({"logged": logged, "delivered": len(mine), "distinct": len(set(mine)),
                  "dropped": client.stats()["dropped"], "raised": raised}))
"""


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer")
class TestIntervalTimerInAChild:
    @pytest.mark.parametrize("kind", ["handler", "structlog", "client"])
    @pytest.mark.parametrize("overflow", ["drop_oldest", "block"])
    def test_every_line_delivered_once_or_counted(
        self, handle_path: str, kind: str, overflow: str
    ) -> None:
        """Thousands of SIGALRMs land wherever the main thread happens to be, inside the
        logging calls mostly: every line is delivered once or counted as dropped, the
        books balance, nothing is raised, nothing hangs, stdout holds only the report."""
        env = dict(os.environ, PYTHONPATH=REPO)
        if handle_path == "python":
            env["LOGDNA_CLIENT_PURE_PYTHON"] = "1"
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(_TIMER_CHILD), kind, overflow, "5000"],
            check=False, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert 0 == done.returncode, done.stderr
        assert "" == done.stderr
        got = json.loads(done.stdout)
        assert 0 == got["raised"]
        assert got["logged"] > 5000  # the timer's lines too
        assert got["delivered"] == got["distinct"]
        assert got["logged"] == got["delivered"] + sum(got["dropped"].values()), got
        assert 0 == got["dropped"]["error"], got


# Hooks of the application's that log while the process ends, each in a child of its own
# (the prelude of tests/_children.py made the handler, so an atexit hook registered here
# runs before the library's exit hook; one registered before the handler was made runs
# after it, and a finalizer of a module global at teardown, after every hook: see
# tests/test_process_end_teardown.py for those).
_HOOKS = {
    "atexit": """
import atexit
atexit.register(lambda: [log.info("atexit %d", i) for i in range(20)])
""",
    "excepthook": """
import threading
threading.excepthook = lambda args: log.error("thread died: %s", args.exc_value)
go = threading.Event()
def work():
    go.wait(30)
    raise ValueError("late")
threading.Thread(target=work).start()  # not a daemon: the exit waits for it
log.info("main done")
go.set()
""",
    "unraisablehook": """
import sys
sys.unraisablehook = lambda u: log.error("unraisable: %s", u.exc_value)
class Broken:
    def __del__(self):
        raise ValueError("in __del__")
for i in range(3):
    Broken()
log.info("main done")
""",
}
_EXPECTED = {
    "atexit": [f"atexit {i}" for i in range(20)],
    "excepthook": ["main done", "thread died: late"],
    "unraisablehook": ["unraisable: in __del__"] * 3 + ["main done"],
}


class TestHooksThatLogAtTheEnd:
    @pytest.mark.parametrize("hook", sorted(_HOOKS))
    def test_their_lines_are_delivered(
        self, server: DevServer, handle_path: str, hook: str
    ) -> None:
        """An atexit hook that runs before the library's, a threading.excepthook for a
        thread that dies as the main thread ends, a sys.unraisablehook for finalizers
        that raise: their lines arrive, and the child ends at once, quietly."""
        env = {"LOGDNA_CLIENT_PURE_PYTHON": "1" if handle_path == "python" else "0"}
        child = Child(_HOOKS[hook], server.url, env=env)
        code, _ = child.finish()
        assert 0 == code, child.stderr
        assert _EXPECTED[hook] == texts(server)
        assert "" == child.stderr
        assert "" == child.stdout

    def test_a_daemon_thread_logging_through_the_exit(
        self, server: DevServer, handle_path: str
    ) -> None:
        """A daemon thread that never stops logging: the exit ends, without a traceback
        or a word on stdout, and what it delivered arrived once each, in order."""
        env = {"LOGDNA_CLIENT_PURE_PYTHON": "1" if handle_path == "python" else "0"}
        code = """
import threading
started = threading.Event()
def run():
    i = 0
    while True:
        log.info("daemon %d", i)
        i += 1
        started.set()
threading.Thread(target=run, daemon=True).start()
started.wait(10)
"""
        child = Child(code, server.url, env=env)
        exit_code, _ = child.finish()
        assert 0 == exit_code, child.stderr
        got = [t for t in texts(server) if t.startswith("daemon ")]
        assert got, child.stderr
        assert [f"daemon {i}" for i in range(len(got))] == got
        assert "Traceback" not in child.stderr
        assert "" == child.stdout
