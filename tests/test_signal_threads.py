"""A termination signal acted on when the main thread cannot run Python code.

CPython runs a signal's Python handler on the main thread, at its next bytecode.
When the signal lands on another thread, or on the main thread just before it
blocks in a system call (a read, a lock, a semaphore), the C handler notes it and
nothing wakes the main thread: the handler waits for whatever it is blocked on. A
process told to stop would then hang until its supervisor kills it (and its
lines with it). These tests make that happen every time: once the child's main
thread sleeps in a read of stdin, the signal is sent to another of its threads.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from logdna_client._devserver import DevServer
from tests._children import Child, assert_exactly_once_in_order, texts

# The library's promise: delivered within shutdown_timeout, then ended by the signal.
DEADLINE = 1.5
# Starting and reaping a process on a loaded machine; not part of the promise.
SLACK = 10.0

BLOCKED_MAIN_THREAD = """
import signal, threading
for i in range(500):
    log.info("buffered %d", i)

def application_thread():
    # Once the main thread sleeps in its read (before that, it could still pass a
    # bytecode and run the handler itself), the signal lands here, on this thread,
    # as the kernel may hand a process's signal to any thread of a threaded app.
    wchan = f"/proc/self/task/{os.getpid()}/wchan"
    while "pipe_read" not in open(wchan).read():
        threading.Event().wait(0.005)
    mark("signalled")
    signal.pthread_kill(threading.get_ident(), SIGNUM)

threading.Thread(target=application_thread, daemon=True).start()
wait_for("never")  # the main thread blocks here for good
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads the main thread's state from /proc"
)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_signal_on_another_thread_still_delivers_and_ends_the_process(
    server: DevServer, signum: signal.Signals
) -> None:
    """The main thread cannot run the Python handler; the lines still arrive, within
    shutdown_timeout, and the process ends by the signal (not by stdin closing)."""
    child = Child(
        BLOCKED_MAIN_THREAD.replace("SIGNUM", f"signal.{signum.name}"),
        server.url,
        flush_interval="60",  # nothing leaves before the signal
        shutdown_timeout=str(DEADLINE),
    )
    child.expect("signalled")
    sent = time.monotonic()
    try:
        # Waited for with stdin still open: closing it would wake the main thread.
        child.proc.wait(DEADLINE + SLACK)
    except subprocess.TimeoutExpired:
        pass
    ended = time.monotonic() - sent
    code, _ = child.finish()
    assert -signum == code, child.stderr
    assert ended < DEADLINE + SLACK
    assert_exactly_once_in_order([f"buffered {i}" for i in range(500)], texts(server))
    assert "" == child.stdout


MAIN_THREAD_IN_C = """
import sqlite3, sys, threading
for i in range(500):
    log.info("buffered %d", i)

def count_forever():
    # SQLite runs this without the GIL and never looks at signals: the main thread
    # runs no bytecode, so no Python signal handler, until it returns (never).
    db = sqlite3.connect(":memory:")
    db.execute("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
               "SELECT count(*) FROM c").fetchone()

def application_thread():
    main = threading.main_thread().ident
    seen = None
    while True:  # until the main thread stays at one instruction of count_forever
        frame = sys._current_frames().get(main)
        place = None if frame is None else (frame.f_code.co_name, frame.f_lasti)
        if place is not None and place[0] == "count_forever" and place == seen:
            break
        seen = place
        threading.Event().wait(0.05)
    mark("in the query")
    os.kill(os.getpid(), SIGNUM)

threading.Thread(target=application_thread, daemon=True).start()
count_forever()
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM], ids=lambda s: s.name)
def test_signal_while_the_main_thread_is_in_c_code_still_ends_the_process(
    server: DevServer, signum: signal.Signals
) -> None:
    """The main thread is in C code that goes on through signals (a SQLite query):
    Python would run the handler only when it returns, here never. The watcher takes
    the signal once the woken main thread ran no bytecode for a while: the lines
    arrive and the process ends by the signal (H185: it ran on until killed)."""
    from logdna_client import _exit

    child = Child(
        MAIN_THREAD_IN_C.replace("SIGNUM", f"signal.{signum.name}"),
        server.url,
        flush_interval="60",  # nothing leaves before the signal
        shutdown_timeout=str(DEADLINE),
    )
    child.expect("in the query")
    sent = time.monotonic()
    bound = _exit._WAKE_AFTER + _exit._WAKE_HOLD + DEADLINE + SLACK
    try:
        child.proc.wait(bound)
    except subprocess.TimeoutExpired:
        pass
    ended = time.monotonic() - sent
    code, _ = child.finish()
    assert -signum == code, child.stderr
    assert ended < bound
    assert_exactly_once_in_order([f"buffered {i}" for i in range(500)], texts(server))
    assert "" == child.stdout
