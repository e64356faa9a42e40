"""The library's threads block the asynchronous signals from their first instruction.

A new thread starts with its starting thread's signal mask. Blocking the signals
as the thread's first call left it a window (from its creation to that call) in
which a SIGTERM sent to a process whose main thread had just started it could land
on it, where Python only notes it: a main thread then blocked in a call ran the
handler late, or the signal watcher had to act. Each child here reads every new
thread's mask in the first Python code the thread runs (``Thread._bootstrap``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from logdna_client._devserver import DevServer
from tests._children import REPO

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "pthread_sigmask"), reason="no thread signal masks"
)

#: Records, in each new thread's first Python code, the signals it blocks.
_SPY = """
import json, signal, sys, threading

MASKS = {}
_bootstrap = threading.Thread._bootstrap

def _spying_bootstrap(self):
    MASKS[self.name] = sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, ()))
    _bootstrap(self)

threading.Thread._bootstrap = _spying_bootstrap

def main_mask():
    return sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, ()))
"""

#: Starts each of the library's threads from the main thread, as the CLI's ``send``,
#: ``pipe`` and ``spool replay``, a sender run there at exit and an application that
#: logs its first line from the main thread do.
_EVERY_THREAD = (
    _SPY
    + """
from logdna_client import Client, Config
from logdna_client import _exit
from logdna_client._transport import HTTPTransport

before = main_mask()
client = Client(key="k", url=sys.argv[1], hostname="t", handle_signals=True)  # the watcher
client.log("starts the sender")
assert client.flush(30)
import tempfile
spooled = Client(key="k", url=sys.argv[1], hostname="t", spool_dir=tempfile.mkdtemp())
spooled.log("starts its sender, which starts the spiller")
assert spooled.flush(30)
spooled.close()

transport = HTTPTransport(Config(url=sys.argv[1], hostname="t"))
transport.start()
assert transport.send(b'{"lines":[]}', gzipped=False, timeout=30).kind.value == "ok"
transport.close()

_exit._wait_then_end = lambda clients, signum: None  # the exit thread, minus the ending
_exit._wait_then_end_elsewhere([], signal.SIGTERM)
_exit._flush_stdio(bounded=True)  # the flusher
for thread in threading.enumerate():
    if thread.name == "logdna_client-exit":
        thread.join(30)
client.close()
print(json.dumps({"masks": MASKS, "before": before, "after": main_mask()}), flush=True)
"""
)

_LIBRARY_THREADS = {
    "logdna_client-sender",
    "logdna_client-signals",
    "logdna_client-watchdog",
    "logdna_client-exit",
    "logdna_client-flush",
    "logdna_client-spiller",
}


def _run_child(script: str, *args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        env=dict(os.environ, PYTHONPATH=REPO),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert 0 == done.returncode, done.stderr
    said: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return said


def test_every_library_thread_blocks_the_signals_from_its_first_instruction(
    server: DevServer,
) -> None:
    """Each library thread started from the main thread already blocks SIGTERM, SIGINT
    and SIGHUP (never a fault's signal) when it first runs Python code, and the main
    thread's own mask is as it was."""
    said = _run_child(_EVERY_THREAD, server.url)
    masks = said["masks"]
    assert isinstance(masks, dict)
    assert _LIBRARY_THREADS <= set(masks), masks
    quiet = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    assert set() == {name for name in _LIBRARY_THREADS if not quiet <= set(masks[name])}
    assert set() == {name for name in _LIBRARY_THREADS if signal.SIGSEGV in masks[name]}
    assert [] == said["before"] == said["after"]


#: Starts the threads of the command line and of the devserver from the main thread, as
#: ``logdna-client pipe`` (reading stdin, and running a command), ``devserver`` and
#: ``demo`` do; the devserver's per-connection threads start from its serving thread.
_CLI_AND_DEVSERVER_THREADS = (
    _SPY
    + """
import os
from logdna_client import _cli
from logdna_client._devserver import DevServer

before = main_mask()
server = DevServer().start()
read_end, write_end = os.pipe()
os.write(write_end, b"from stdin\\n")
os.close(write_end)
os.dup2(read_end, 0)  # what pipe reads without a command
assert 0 == _cli.main(["pipe", "--url", server.url])
assert 0 == _cli.main(["pipe", "--url", server.url, "--", sys.executable, "-c", "print('ran')"])
assert server.wait_for_lines(2, 30)
server.stop()
print(json.dumps({"masks": MASKS, "before": before, "after": main_mask()}), flush=True)
"""
)


def test_the_cli_and_devserver_threads_block_the_signals_from_their_first_instruction() -> None:
    """pipe's pump threads, the devserver's serving thread and its connection threads
    already block SIGTERM, SIGINT and SIGHUP (never a fault's signal) when they first
    run Python code: a signal sent to ``pipe`` or ``devserver`` goes to the main
    thread, whose handlers act on it at once; and the main thread's mask is as it was."""
    said = _run_child(_CLI_AND_DEVSERVER_THREADS)
    masks = said["masks"]
    assert isinstance(masks, dict)
    expected = {"pumps": 3, "serving": 1, "connections": 1}
    threads = {
        "pumps": [n for n in masks if n.startswith("logdna-client-pipe-")],
        "serving": [n for n in masks if n.startswith("logdna-devserver:")],
        "connections": [n for n in masks if "process_request_thread" in n],
    }
    assert expected == {kind: min(len(names), expected[kind]) for kind, names in threads.items()}
    quiet = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    mine = [name for names in threads.values() for name in names]
    assert [] == [name for name in mine if not quiet <= set(masks[name])]
    assert [] == [name for name in mine if signal.SIGSEGV in masks[name]]
    assert [] == said["before"] == said["after"]


#: A SIGINT sent to the process while the main thread starts a library thread: it
#: waits for the main thread (neither the new thread nor the starting one takes it
#: then), and its KeyboardInterrupt comes out once the mask is put back.
_INTERRUPTED_START = (
    _SPY
    + """
import os
from logdna_client._threads import start_library_thread

PENDING = {}
# Python's own SIGINT handler, whatever this process inherited: a job started in the
# background of a shell (or under nohup) ignores SIGINT, and Python keeps it ignored.
signal.signal(signal.SIGINT, signal.default_int_handler)

class Interrupted(threading.Thread):
    def start(self):
        os.kill(os.getpid(), signal.SIGINT)  # no thread of this process takes it now
        PENDING["start"] = signal.SIGINT in signal.sigpending()
        super().start()

def run():
    PENDING["thread"] = signal.SIGINT in signal.sigpending()

thread = Interrupted(target=run, name="interrupted")
before = main_mask()
try:
    start_library_thread(thread)
    interrupted = False
except KeyboardInterrupt:
    interrupted = True
thread.join(30)
print(json.dumps({
    "interrupted": interrupted, "pending": PENDING, "masks": MASKS,
    "before": before, "after": main_mask(),
}), flush=True)
"""
)


def test_a_signal_during_the_start_waits_for_the_starting_thread() -> None:
    """A KeyboardInterrupt arriving while a library thread starts is raised in the
    starting thread once its mask is put back; the thread was launched meanwhile,
    blocking the signal, and the starting thread's mask is as it was."""
    said = _run_child(_INTERRUPTED_START)
    assert said["interrupted"] is True
    assert {"start": True, "thread": True} == said["pending"]
    masks = said["masks"]
    assert isinstance(masks, dict)
    assert signal.SIGINT in masks["interrupted"]
    assert [] == said["before"] == said["after"]


class _FailingStart(threading.Thread):
    """A start that fails as Python 3.12's does at interpreter exit, noting the mask
    the starting thread had meanwhile."""

    def start(self) -> None:
        self.mask_during = signal.pthread_sigmask(signal.SIG_BLOCK, ())
        raise RuntimeError("can't create new thread at interpreter shutdown")


def test_a_failed_start_puts_the_starting_threads_mask_back() -> None:
    # Imported here: the module's other tests still run (and fail) on a tree without it.
    from logdna_client._threads import start_library_thread

    before = signal.pthread_sigmask(signal.SIG_BLOCK, ())
    thread = _FailingStart(target=lambda: None)
    with pytest.raises(RuntimeError, match="interpreter shutdown"):
        start_library_thread(thread)
    assert signal.SIGTERM in thread.mask_during
    assert before == signal.pthread_sigmask(signal.SIG_BLOCK, ())
