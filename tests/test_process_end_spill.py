"""A process ending while requests hang, with a spool: every closing client's memory goes
to disk at once, over real sockets, in real child processes with real signals.

Seen: a process with two clients (a stdlib handler and a second one, e.g. structlog's,
each with its own spool) got SIGTERM while both clients' first requests hung. The exit
waited for the clients one after the other, and moved the second client's memory to
disk only once the first client's wait ended, at the shutdown deadline: killed before
that (SIGKILL after SIGTERM's grace period), the process lost all the second client's
memory (386 of 400 lines here: only its first batch, 14 lines, was on disk, written
before it was sent).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from logdna_client import Client
from logdna_client._spool._inspect import inspect_segment, segment_paths
from tests._children import Child, assert_exactly_once_in_order
from tests._claims_servers import Request, Scripted, answer, scripted_server
from tests._slow_disk import HELD_LINES, SLOW_DISK

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

KEY = "k" * 32
SHUTDOWN_TIMEOUT = 120.0  # the deadline: far past SIGTERM's grace period
# SIGTERM's grace period before SIGKILL: long past the writing (5 s for both clients),
# however loaded the machine, and far before the deadline.
GRACE = 40.0
WAIT = 60.0


def wait_until(done: Callable[[], bool], timeout: float) -> bool:
    """Whether ``done()`` came true within ``timeout``, looking every 50 ms."""
    pause = threading.Event()  # never set: the pause between looks
    end = time.monotonic() + timeout
    while not done():
        if time.monotonic() >= end:
            return False
        pause.wait(0.05)
    return True


def on_disk(folder: Path) -> int:
    """The lines a spool folder holds, not yet delivered (read while its writer runs)."""
    total = 0
    try:
        paths = segment_paths(str(folder))
    except FileNotFoundError:  # its client has not opened its spool yet
        return 0
    for path in paths:
        try:
            total += inspect_segment(path, check=False).pending_lines
        except OSError:
            pass
    return total


def lines_of(name: str) -> list[str]:
    return [f"{name} {i} " + "x" * 1000 for i in range(HELD_LINES)]


def hang_until(killed: threading.Event) -> Callable[..., bytes | None]:
    """A scripted server's handler: requests made before ``killed`` (the child's) are
    never answered; later ones (the next processes') are taken."""

    def handle(request: Request, sock: socket.socket, stop: threading.Event) -> bytes | None:
        if not killed.is_set():
            killed.wait(WAIT)
            return None
        return answer(200)

    return handle


def end(child: Child, killed: threading.Event) -> None:
    """Free the child's hanging requests, and kill the child if it still runs."""
    killed.set()
    if child.proc.poll() is None:
        child.proc.kill()
        child.proc.wait()


def delivered_next(server: Scripted, *folders: Path) -> list[str]:
    """The lines the next processes (a client per spool folder: the same key and URL)
    deliver of what the child left there, in the order they arrived."""
    asked = len(server.requests)
    for folder in folders:
        after = Client(
            key=KEY, url=server.url, spool_dir=str(folder), handle_signals=False,
            flush_interval=0.05,
        )  # fmt: skip
        try:
            assert after.flush(WAIT)
        finally:
            after.close(5)
    return [str(line["line"]) for request in server.requests[asked:] for line in request.lines]


# The child: a slow disk, and two clients with spools of their own (the prelude's
# handler, and a second one on another logger), each holding HELD_LINES lines while its
# first request hangs; ended by SIGTERM, then SIGKILL.
TWO_CLIENTS = (
    SLOW_DISK
    + f"""
options = json.loads(os.environ["FAULT_OPTS"])
options["spool_dir"] = os.environ["SECOND_SPOOL"]
second = logging.getLogger("second")
second.addHandler(LogDNAHandler(**options))
second.setLevel(logging.INFO)
second.propagate = False
for i in range({HELD_LINES}):
    log.info("first %d " + "x" * 1000, i)
    second.info("second %d " + "x" * 1000, i)
mark("logged")
wait_for("go")
"""
)


class TestTwoClientsAtSigterm:
    def test_every_clients_memory_is_on_disk_before_the_kill(self, tmp_path: Path) -> None:
        """SIGTERM while both clients' requests hang, then SIGKILL once SIGTERM's grace
        period is over: every line of both clients is on disk by then, and the next
        processes deliver them all."""
        first_dir, second_dir = tmp_path / "first", tmp_path / "second"
        killed = threading.Event()
        with scripted_server(hang_until(killed)) as server:
            child = Child(
                TWO_CLIENTS, server.url, env={"SECOND_SPOOL": str(second_dir)}, key=KEY,
                spool_dir=str(first_dir), spool_sync="always", flush_interval="3600",
                max_batch_bytes="16KiB", request_timeout="600",
                shutdown_timeout=str(SHUTDOWN_TIMEOUT),
            )  # fmt: skip
            try:
                child.expect("logged", WAIT)
                assert server.wait_for_requests(2, WAIT)  # one per client, both hanging
                child.kill(signal.SIGTERM)
                wait_until(
                    lambda: on_disk(first_dir) + on_disk(second_dir) >= 2 * HELD_LINES, GRACE
                )
                held = {"first": on_disk(first_dir), "second": on_disk(second_dir)}
                child.kill(signal.SIGKILL)
                status, _ = child.finish(WAIT)
            finally:
                end(child, killed)
            assert -signal.SIGKILL == status, child.stderr
            assert {"first": HELD_LINES, "second": HELD_LINES} == held, child.stderr
            # The next processes: the same key, URL and folders adopt what it left.
            got = set(delivered_next(server, first_dir, second_dir))
        missing = [line for line in lines_of("first") + lines_of("second") if line not in got]
        assert [] == missing[:3], f"{len(missing)} of {2 * HELD_LINES} lines lost"
        assert KEY not in child.stderr


# The child: HELD_LINES lines while its first request hangs; close() on the main thread
# spills them behind it, and Ctrl-C (a real SIGINT, raised as the spill's third batch is
# taken) interrupts it. A second close() then waits for the sender, and the child says
# what its client counted.
CTRL_C_IN_SPILL = f"""
from logdna_client import _buffer
real_take_behind = _buffer.Buffer.take_behind
taken = 0
def take_behind(self, max_bytes):
    global taken
    batch = real_take_behind(self, max_bytes)
    taken += 1
    if taken == 3:
        signal.raise_signal(signal.SIGINT)  # lands as the batch is handed over
    return batch
_buffer.Buffer.take_behind = take_behind
for i in range({HELD_LINES}):
    log.info("held %d " + "x" * 1000, i)
mark("logged")
wait_for("go")
try:
    client.close()
except KeyboardInterrupt:
    mark("interrupted")
client.close()
stats = client.stats()
mark("stats " + json.dumps([stats["queued"], stats["spooled"], stats["dropped_total"]]))
"""


class TestCtrlCInsideTheSpill:
    def test_a_batch_taken_as_ctrl_c_lands_is_on_disk_once(self, tmp_path: Path) -> None:
        """Ctrl-C as the close's spill takes a batch from memory: that batch still goes to
        disk (once), every line is counted and the next process delivers them all, each
        once. It was in neither place: 14 lines gone, counted nowhere."""
        killed = threading.Event()
        with scripted_server(hang_until(killed)) as server:
            child = Child(
                CTRL_C_IN_SPILL, server.url, key=KEY, spool_dir=str(tmp_path),
                flush_interval="3600", max_batch_bytes="16KiB", request_timeout="600",
                shutdown_timeout="5", handle_signals="false",
            )  # fmt: skip
            try:
                child.expect("logged", WAIT)
                assert server.wait_for_requests(1, WAIT)
                child.send("go")
                child.expect("interrupted", WAIT)
                counted = child.expect("stats", WAIT)
                status, _ = child.finish(WAIT)
            finally:
                end(child, killed)
            assert 0 == status, child.stderr
            assert [0, HELD_LINES, 0] == json.loads(counted), child.stderr
            got = delivered_next(server, tmp_path)
        assert_exactly_once_in_order(lines_of("held"), got)


# The child: a slow disk; HELD_LINES lines while its first request hangs; close() on the
# main thread spills them behind it, and SIGTERM comes while that spill writes its third
# batch (the child waits there for the test's word): the signal's handler runs inside it.
SIGTERM_IN_SPILL = (
    SLOW_DISK
    + f"""
main_syncs = 0
def after_sync():
    global main_syncs
    if threading.current_thread() is threading.main_thread():
        main_syncs += 1
        if main_syncs == 3:
            mark("spilling")
            wait_for("written")  # SIGTERM's handler runs here, inside the spill
for i in range({HELD_LINES}):
    log.info("held %d " + "x" * 1000, i)
mark("logged")
wait_for("go")
client.close()
"""
)


class TestSigtermInsideTheSpill:
    def test_the_spill_goes_on_and_every_line_is_on_disk(self, tmp_path: Path) -> None:
        """SIGTERM whose handler interrupts close()'s spill on the main thread: the spill
        goes on once the handler returns (another thread waits for the ending), and the
        process ends by SIGTERM at the deadline with every line on disk. The handler
        waited on the main thread for the turn that thread held: the spill never went
        on, the sender never finished, and the lines not yet written were lost."""
        killed = threading.Event()
        with scripted_server(hang_until(killed)) as server:
            child = Child(
                SIGTERM_IN_SPILL, server.url, key=KEY, spool_dir=str(tmp_path),
                spool_sync="always", flush_interval="3600", max_batch_bytes="16KiB",
                request_timeout="600", shutdown_timeout="10",
            )  # fmt: skip
            try:
                child.expect("logged", WAIT)
                assert server.wait_for_requests(1, WAIT)
                child.send("go")
                child.expect("spilling", WAIT)
                child.kill(signal.SIGTERM)
                child.send("written")
                status, _ = child.finish(WAIT)
            finally:
                end(child, killed)
            assert -signal.SIGTERM == status, child.stderr
            got = delivered_next(server, tmp_path)
        assert_exactly_once_in_order(lines_of("held"), got)
        assert KEY not in child.stderr


# The child: a slow disk; HELD_LINES lines while its first request hangs; close() on the
# main thread spills them, and another thread forks while that spill holds the sender's
# turn. The forked child logs, flushes and closes, each within a bound, and says so.
FORK_IN_SPILL = (
    SLOW_DISK
    + f"""
spilling = threading.Event()
def before_sync():
    if threading.current_thread() is threading.main_thread():
        spilling.set()

def fork_while_spilling():
    spilling.wait(60)
    pid = os.fork()
    if pid == 0:
        try:
            log.info("from the child")
            flushed = client.flush(5)
            client.close(5)
            stats = client.stats()
            ok = stats["dropped"]["after_close"] == 1 and stats["queued"] == 0
            os._exit(0 if ok else 2)
        except BaseException:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    mark("forked " + str(os.waitstatus_to_exitcode(status)))

for i in range({HELD_LINES}):
    log.info("held %d " + "x" * 1000, i)
mark("logged")
wait_for("go")
threading.Thread(target=fork_while_spilling).start()
client.close()
"""
)


class TestForkInsideTheSpill:
    def test_the_forked_child_gets_a_fresh_sender(self, tmp_path: Path) -> None:
        """fork() on another thread while close()'s spill holds the sender's turn: the
        child's client (closed, as its parent's was) counts a line logged there as
        ``after_close`` and its flush and close return; no lock the spill held is held
        in it. Both processes end."""
        killed = threading.Event()
        with scripted_server(hang_until(killed)) as server:
            child = Child(
                FORK_IN_SPILL, server.url, key=KEY, spool_dir=str(tmp_path),
                spool_sync="always", flush_interval="3600", max_batch_bytes="16KiB",
                request_timeout="600", shutdown_timeout="10", handle_signals="false",
            )  # fmt: skip
            try:
                child.expect("logged", WAIT)
                assert server.wait_for_requests(1, WAIT)
                child.send("go")
                forked = child.expect("forked", WAIT)
                status, _ = child.finish(WAIT)
            finally:
                end(child, killed)
        assert ("0", 0) == (forked, status), child.stderr


# The child: a multiprocessing worker (fork) with two clients built there, each with a
# spool of its own (the parent's handler has none: it would adopt them), on a slow disk;
# the worker returns while both clients' first requests hang, and ends by its
# finalizers (multiprocessing children skip atexit). The test kills it with SIGKILL.
MP_WORKER_TWO_CLIENTS = (
    SLOW_DISK
    + f"""
import multiprocessing

def logger_with_spool(name):
    options = json.loads(os.environ["FAULT_OPTS"])
    options["spool_dir"] = os.environ[name.upper() + "_SPOOL"]
    logger = logging.getLogger(name)
    logger.addHandler(LogDNAHandler(**options))
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger

def work():
    first, second = logger_with_spool("first"), logger_with_spool("second")
    for i in range({HELD_LINES}):
        first.info("first %d " + "x" * 1000, i)
        second.info("second %d " + "x" * 1000, i)
    mark("logged " + str(os.getpid()))

worker = multiprocessing.get_context("fork").Process(target=work)
worker.start()
worker.join()
mark("joined")
"""
)


class TestTwoClientsInAMultiprocessingWorker:
    def test_every_clients_memory_is_on_disk_before_the_kill(self, tmp_path: Path) -> None:
        """A multiprocessing worker with two clients ends (its finalizers) while both
        clients' requests hang, and is killed once a grace period is over: every line
        of both clients is on disk by then. Each finalizer closed its own client and
        waited for it, so the second client's memory waited for the first's deadline."""
        first_dir, second_dir = tmp_path / "first", tmp_path / "second"
        killed = threading.Event()
        with scripted_server(hang_until(killed)) as server:
            child = Child(
                MP_WORKER_TWO_CLIENTS, server.url,
                env={"FIRST_SPOOL": str(first_dir), "SECOND_SPOOL": str(second_dir)},
                key=KEY, spool_sync="always", flush_interval="3600",
                max_batch_bytes="16KiB", request_timeout="600",
                shutdown_timeout=str(SHUTDOWN_TIMEOUT),
            )  # fmt: skip
            try:
                worker = int(child.expect("logged", WAIT))
                wait_until(
                    lambda: on_disk(first_dir) + on_disk(second_dir) >= 2 * HELD_LINES, GRACE
                )
                held = {"first": on_disk(first_dir), "second": on_disk(second_dir)}
                os.kill(worker, signal.SIGKILL)
                child.expect("joined", WAIT)
                child.finish(WAIT)
            finally:
                end(child, killed)
        assert {"first": HELD_LINES, "second": HELD_LINES} == held, child.stderr


# The child: logs on its main thread, then forks from another thread; the grandchild logs
# 100 lines and its forking thread returns: its last thread of the application's.
FORK_IN_A_THREAD = """
import threading
log.info("parent")
def work():
    pid = os.fork()
    if pid == 0:
        signal.alarm(60)  # a child that hangs ends here instead (-SIGALRM)
        for i in range(100):
            log.info("child %d", i)
        return
    _, status = os.waitpid(pid, 0)
    mark("child ended %d" % os.waitstatus_to_exitcode(status))
thread = threading.Thread(target=work)
thread.start()
thread.join()
"""


class TestChildForkedFromAThreadWithASpool:
    def test_what_the_service_did_not_take_is_left_for_the_next_process(
        self, tmp_path: Path
    ) -> None:
        """A child forked from a thread other than the main one, whose requests hang: once
        its forking thread ended it ends by its ``shutdown_timeout`` with status 0, as at a
        normal exit its lines on disk and said so, and the next process delivers each
        once."""
        killed = threading.Event()
        with scripted_server(hang_until(killed)) as server:
            child = Child(
                FORK_IN_A_THREAD, server.url, key=KEY, spool_dir=str(tmp_path),
                flush_interval="3600", request_timeout="600", shutdown_timeout="1.5",
            )  # fmt: skip
            try:
                status = child.expect("child ended", WAIT)
                code, _ = child.finish(WAIT)
            finally:
                end(child, killed)
            assert 0 == code, child.stderr
            assert "0" == status, child.stderr
            assert "left in the spool" in child.stderr, child.stderr
            got = delivered_next(server, tmp_path)
        assert_exactly_once_in_order([f"child {i}" for i in range(100)], got)
        assert 1 == got.count("parent")
        assert KEY not in child.stderr
