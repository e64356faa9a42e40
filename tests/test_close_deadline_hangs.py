"""The close's deadline against a connect that gets no answer, over real sockets.

urllib3 hands a new connection's socket over only once its connect() is done, so a
connect to a blackholed address (here: a loopback listener whose accept queue is full,
which drops every SYN) ran its whole connect timeout, request_timeout, whatever the
close's deadline. With request_timeout=30 and shutdown_timeout=2, close() returned at
2.2 s with the sender still connecting: 100 of 100 lines neither sent nor counted
(``queued`` 100, ``dropped`` 0), the sender done only at 29.5 s. A process ending then
lost them unsaid. The connect is now cut at the exchange's deadline like every other
step of a request: the sender is done at 2.0 s, the 100 lines counted as ``shutdown``
(or on disk with a spool).
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from logdna_client import Client
from logdna_client._config import Config
from logdna_client._transport import HTTPTransport, Kind
from tests._bad_servers import Blackhole, bad_server, blackhole
from tests._children import Child, assert_exactly_once_in_order
from tests._claims_servers import Request, answer, scripted_server
from tests._slow_disk import HELD_LINES, SLOW_DISK, slow_disk

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the blackhole reads /proc/net/tcp"
)

KEY = "k" * 32
LINES = 100
REQUEST_TIMEOUT = 30.0  # what the connect ran to before
SHUTDOWN_TIMEOUT = 2.0
# Well under REQUEST_TIMEOUT, well over SHUTDOWN_TIMEOUT: a loaded machine passes.
WITHIN = 15.0
WAIT = 60.0  # for the sender to reach its connect, however loaded the machine


def wait_until(done: Callable[[], object], what: str, timeout: float = WAIT) -> None:
    """Wait for ``done()``, looking every 10 ms, up to ``timeout``."""
    pause = threading.Event()  # never set: the pause between looks
    end = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < end, f"not within {timeout} s: {what}"
        pause.wait(0.01)


@pytest.fixture
def hole() -> Iterator[Blackhole]:
    with blackhole() as hole:
        yield hole


def connecting_client(hole: Blackhole, **options: object) -> Client:
    """A client whose sender is in a connect to ``hole`` with LINES lines held."""
    client = Client(
        key=KEY, url=hole.url, request_timeout=REQUEST_TIMEOUT,
        shutdown_timeout=SHUTDOWN_TIMEOUT, flush_interval=0.05, handle_signals=False,
        **options,
    )  # fmt: skip
    for i in range(LINES):
        client.log(f"line {i}")
    wait_until(hole.connecting, "the sender's connect")
    return client


class TestCloseDuringAConnect:
    def test_the_sender_is_done_by_the_deadline_and_every_line_counted(
        self, hole: Blackhole
    ) -> None:
        """close() during a connect that gets no answer ends the connect by its deadline:
        the sender is done when close() returns, every line counted as ``shutdown``."""
        client = connecting_client(hole)
        began = time.monotonic()
        client.close()
        took = time.monotonic() - began
        done = client._sender.finished.is_set()
        stats = client.stats()
        assert took < WITHIN, took
        assert done, f"close() returned after {took:.1f} s with the sender still connecting"
        assert (0, 0, LINES) == (stats["queued"], stats["sent"], stats["dropped"]["shutdown"])
        assert 0 == hole.connecting()

    def test_with_a_spool_every_line_is_on_disk(self, hole: Blackhole, tmp_path: Path) -> None:
        """The same with a spool: the lines are on disk, none dropped, when close() returns."""
        client = connecting_client(hole, spool_dir=str(tmp_path))
        client.close()
        done = client._sender.finished.is_set()
        stats = client.stats()
        assert done, "close() returned with the sender still connecting"
        assert (0, 0, 0) == (stats["queued"], stats["sent"], stats["dropped_total"])
        assert LINES == stats["spooled"]  # type: ignore[typeddict-item]

    def test_flush_says_false_by_its_timeout(self, hole: Blackhole) -> None:
        """flush(timeout) during the connect returns False by its timeout, lines kept."""
        client = connecting_client(hole)
        try:
            began = time.monotonic()
            flushed = client.flush(timeout=1.0)
            took = time.monotonic() - began
            stats = client.stats()
            assert (False, LINES, 0) == (flushed, stats["queued"], stats["dropped_total"])
            assert took < WITHIN, took
        finally:
            client.close(0.5)
        stats = client.stats()
        assert LINES == stats["sent"] + stats["dropped_total"] + stats["queued"]


class TestTransportHurried:
    def test_a_request_begun_after_hurry_keeps_to_its_deadline(self, hole: Blackhole) -> None:
        """A request the sender began with the whole request_timeout, just as the close
        hurried the transport (before the request's exchange existed), still ends by
        the close's deadline: it ran the whole 30 s before."""
        transport = HTTPTransport(Config(key=KEY, url=hole.url))
        try:
            transport.start()
            transport.hurry(time.monotonic() + 1.0)
            began = time.monotonic()
            outcome = transport.send(b'{"lines":[]}', gzipped=False, timeout=REQUEST_TIMEOUT)
            took = time.monotonic() - began
        finally:
            transport.close()
        assert Kind.RETRY is outcome.kind
        assert took < WITHIN, took
        assert KEY not in repr(outcome)


# The child: LINES lines logged, then it says so and waits for the test, which sees
# its connect and then either ends it with SIGTERM or lets its main return (atexit).
CHILD = f"""
for i in range({LINES}):
    log.info("line %d", i)
mark("logged")
wait_for("go")
"""


class TestProcessEndDuringAConnect:
    @pytest.mark.parametrize("end", ["exit", "signal"])
    def test_ends_within_shutdown_timeout_and_says_what_was_lost(
        self, hole: Blackhole, end: str
    ) -> None:
        """A process ending (its main returning: atexit; or SIGTERM) during a connect
        that gets no answer ends within shutdown_timeout, not request_timeout, and
        says how many lines were not delivered."""
        child = Child(
            CHILD, hole.url, key=KEY,
            request_timeout=str(REQUEST_TIMEOUT), shutdown_timeout=str(SHUTDOWN_TIMEOUT),
            flush_interval="0.05",
        )  # fmt: skip
        try:
            child.expect("logged", WAIT)
            wait_until(hole.connecting, "the child's connect")
            began = time.monotonic()
            if end == "signal":
                child.kill(signal.SIGTERM)
            else:
                child.send("go")
            status, _ = child.finish(WAIT)
            took = time.monotonic() - began
        finally:
            if child.proc.poll() is None:
                child.proc.kill()
                child.proc.wait()
        assert took < WITHIN, f"ended {took:.1f} s after its end began: {child.stderr}"
        expected = -signal.SIGTERM if end == "signal" else 0
        assert expected == status, child.stderr
        assert f"{LINES} lines" in child.stderr, child.stderr
        assert KEY not in child.stderr


# -- a request that hangs (the server read it and never answers), with a spool

CLOSE_IN = 12.0  # the close's timeout: long past the writing, however loaded the machine


def held_lines() -> list[str]:
    return [f"held {i} " + "x" * 1000 for i in range(HELD_LINES)]


def spooling_client(url: str, tmp_path: Path) -> Client:
    client = Client(
        key=KEY, url=url, spool_dir=str(tmp_path), spool_sync="always",
        flush_interval=3600, max_batch_bytes="16KiB", request_timeout=60.0,
        handle_signals=False,
    )  # fmt: skip
    for line in held_lines():
        client.log(line)
    return client


class TestCloseDuringAHangingRequest:
    def test_memory_is_on_disk_before_the_deadline(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """close() during a request that hangs moves memory to the spool at once: on a
        slow disk, the writing used to begin at the deadline (when the request was cut)
        and outlast close(), which returned with lines neither on disk nor counted."""
        slow_disk(monkeypatch)

        def never_answer(request: Request, sock: socket.socket, stop: threading.Event) -> None:
            stop.wait(120)

        with scripted_server(never_answer) as server:
            client = spooling_client(server.url, tmp_path)
            assert server.wait_for_requests(1, WAIT)
            client.close(CLOSE_IN)
            done = client._sender.finished.is_set()
            stats = client.stats()
        assert done, f"close() returned with {stats['queued']} lines not yet on disk"
        assert (0, 0, 0) == (stats["queued"], stats["sent"], stats["dropped_total"]), stats
        assert HELD_LINES == stats["spooled"]  # type: ignore[typeddict-item]

    def test_flush_says_false_by_its_timeout(self) -> None:
        """flush(timeout) during a request that hangs returns False by its timeout; the
        close after it counts every line (``shutdown``), none left uncounted."""
        with bad_server("silent") as server:
            client = Client(
                key=KEY, url=server.url, request_timeout=REQUEST_TIMEOUT,
                shutdown_timeout=SHUTDOWN_TIMEOUT, flush_interval=0.05, handle_signals=False,
            )  # fmt: skip
            for i in range(LINES):
                client.log(f"line {i}")
            assert server.got_request.wait(WAIT)
            began = time.monotonic()
            flushed = client.flush(timeout=1.0)
            took = time.monotonic() - began
            client.close()
            done = client._sender.finished.is_set()
        stats = client.stats()
        assert (False, True) == (flushed, done)
        assert took < WITHIN, took
        assert (0, 0, LINES) == (stats["queued"], stats["sent"], stats["dropped"]["shutdown"])

    def test_a_request_answered_late_is_not_sent_again(self, tmp_path: Path) -> None:
        """The batch out when close() began, answered after memory went to disk behind
        it, is not sent again; the lines moved go out from the spool after it: each line
        arrives once, in order, and the counts add up."""
        answer_now = threading.Event()

        def answer_late(request: Request, sock: socket.socket, stop: threading.Event) -> bytes:
            answer_now.wait(WAIT)  # only the first request waits: then it is set
            return answer(200)

        with scripted_server(answer_late) as server:
            client = spooling_client(server.url, tmp_path)
            assert server.wait_for_requests(1, WAIT)
            moved = threading.Event()

            def answer_once_on_disk() -> None:
                # Every line on disk (the batch out was written before it was sent).
                stats = client.stats
                pause = threading.Event()
                end = time.monotonic() + WAIT / 2
                while time.monotonic() < end:
                    if stats()["spooled"] == HELD_LINES:  # type: ignore[typeddict-item]
                        moved.set()
                        break
                    pause.wait(0.01)
                answer_now.set()

            helper = threading.Thread(target=answer_once_on_disk, daemon=True)
            helper.start()
            client.close(WAIT)
            helper.join(WAIT)
            stats = client.stats()
            got = [line["line"] for request in server.requests for line in request.lines]
        assert moved.is_set(), "memory went to disk only after the request ended"
        assert_exactly_once_in_order(held_lines(), got)
        first = len(server.requests[0].lines)
        assert (0, 0) == (stats["queued"], stats["dropped_total"]), stats
        assert (first, HELD_LINES - first) == (stats["sent"], stats["replayed"])  # type: ignore[typeddict-item]


class TestSpoolSmallerThanMemory:
    def test_memory_stays_where_the_spool_would_drop_lines(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """close() during a request that hangs, with more in memory than the spool holds:
        memory is not moved to the spool early, and once the request is answered every
        line is delivered, each once, in order. Moved anyway, the spool made room by
        dropping 1134 of the 2000 lines (``spool_full``) it had just been given."""
        count = 2000  # about 2 MB in memory, the spool 1 MiB
        expected = [f"held {i} " + "x" * 1000 for i in range(count)]
        looked = threading.Event()  # the close's spill found the batch on disk out

        def answer_after_the_spill(
            request: Request, sock: socket.socket, stop: threading.Event
        ) -> bytes:
            looked.wait(WAIT)
            return answer(200)

        with scripted_server(answer_after_the_spill) as server:
            client = Client(
                key=KEY, url=server.url, spool_dir=str(tmp_path), max_spool_bytes="1MiB",
                flush_interval=3600, max_batch_bytes="16KiB", request_timeout=WAIT,
                handle_signals=False,
            )  # fmt: skip
            sender = client._sender
            spill_behind = sender._spill_behind

            def spill_then_say(until: Callable[[], float], most: int | None = None) -> bool:
                try:
                    return spill_behind(until, most)
                finally:
                    looked.set()

            monkeypatch.setattr(sender, "_spill_behind", spill_then_say)
            for line in expected:
                client.log(line)
            assert server.wait_for_requests(1, WAIT)
            client.close(WAIT)
            stats = client.stats()
            got = [line["line"] for request in server.requests for line in request.lines]
        assert looked.is_set()
        assert (0, 0) == (stats["queued"], stats["dropped_total"]), stats["dropped"]
        assert count == stats["sent"] + stats["replayed"]  # type: ignore[typeddict-item]
        assert_exactly_once_in_order(expected, got)


class TestAcloseDuringAHangingRequest:
    def test_memory_is_on_disk_before_the_deadline_and_the_loop_keeps_ticking(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """aclose() during a request that hangs moves memory to the spool at once, on a
        thread of the library's, while the event loop keeps running. It waited in the
        loop for the sender, which wrote memory only once the request was cut at the
        deadline: on a slow disk aclose() returned with lines neither on disk nor counted."""
        ticks = 0
        syncs: list[tuple[float, int]] = []  # (when, the loop's ticks then) per sync
        slow_disk(monkeypatch, after=lambda: syncs.append((time.monotonic(), ticks)))

        def never_answer(request: Request, sock: socket.socket, stop: threading.Event) -> None:
            stop.wait(120)

        async def close_while_ticking(client: Client) -> float:
            done = asyncio.Event()

            async def tick() -> None:
                nonlocal ticks
                while not done.is_set():
                    ticks += 1
                    await asyncio.sleep(0.01)

            ticker = asyncio.create_task(tick())
            began = time.monotonic()
            await client.aclose(CLOSE_IN)
            done.set()
            await ticker
            return began

        with scripted_server(never_answer) as server:
            client = spooling_client(server.url, tmp_path)
            assert server.wait_for_requests(1, WAIT)
            before = len(syncs)  # the batch out was written before it was sent
            began = asyncio.run(close_while_ticking(client))
            done = client._sender.finished.is_set()
            stats = client.stats()
        assert done, f"aclose() returned with {stats['queued']} lines not yet on disk"
        assert (0, 0, 0) == (stats["queued"], stats["sent"], stats["dropped_total"]), stats
        assert HELD_LINES == stats["spooled"]  # type: ignore[typeddict-item]
        spill = [sync for sync in syncs[before:] if sync[0] >= began]
        assert spill, "nothing was written after aclose() began"
        (first_at, first_ticks), (last_at, last_ticks) = spill[0], spill[-1]
        assert last_at < began + CLOSE_IN, "memory went to disk only at the deadline"
        # One tick every 10 ms or so: a loop stalled by the writing would tick not at all.
        assert last_ticks - first_ticks >= 10, (last_ticks - first_ticks, last_at - first_at)


# The child: a slow disk, HELD_LINES lines logged while the first request hangs; ended by
# SIGTERM. What it left in the spool is delivered by the next process (the test's).
SPOOL_CHILD = (
    SLOW_DISK
    + f"""
for i in range({HELD_LINES}):
    log.info("held %d " + "x" * 1000, i)
mark("logged")
wait_for("go")
"""
)


class TestProcessEndDuringAHangingRequest:
    def test_sigterm_leaves_every_line_on_disk(self, tmp_path: Path) -> None:
        """SIGTERM while a request hangs, on a slow disk: the process ends within
        shutdown_timeout with every line it held on disk, and the next process delivers
        them all. Memory was written only once the request was cut at the deadline,
        and the process ended before most of it was."""
        lock = threading.Lock()
        answered: list[Request] = []

        def first_hangs(request: Request, sock: socket.socket, stop: threading.Event) -> bytes:
            with lock:
                first = not answered
                answered.append(request)
            if first:  # never answered: held until the server stops
                stop.wait(WAIT)
            return answer(200)

        with scripted_server(first_hangs) as server:
            options = dict(
                key=KEY, spool_dir=str(tmp_path), spool_sync="always", flush_interval="3600",
                max_batch_bytes="16KiB", request_timeout="60", shutdown_timeout="8",
            )  # fmt: skip
            child = Child(SPOOL_CHILD, server.url, **options)
            try:
                child.expect("logged", WAIT)
                assert server.wait_for_requests(1, WAIT)
                began = child.kill(signal.SIGTERM)
                status, _ = child.finish(WAIT)
                took = time.monotonic() - began
            finally:
                if child.proc.poll() is None:
                    child.proc.kill()
                    child.proc.wait()
            assert -signal.SIGTERM == status, child.stderr
            assert took < 8 + WITHIN, took
            # The next process: the same key, URL and folder adopt what it left.
            after = Client(
                key=KEY, url=server.url, spool_dir=str(tmp_path), handle_signals=False,
                flush_interval=0.05,
            )  # fmt: skip
            try:
                assert after.flush(WAIT)
            finally:
                after.close(5)
            got = {line["line"] for request in server.requests[1:] for line in request.lines}
        missing = [line for line in held_lines() if line not in got]
        assert [] == missing[:3], f"{len(missing)} of {HELD_LINES} lines lost: {child.stderr}"
