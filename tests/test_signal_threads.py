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
