"""Review of the close-time spill to the spool (``Sender.spill_while_closing``), over
real sockets and a real spool folder."""

from __future__ import annotations

import errno
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from logdna_client import Client
from tests._children import Child, assert_exactly_once_in_order, losses_said
from tests._claims_servers import Request, answer, scripted_server
from tests._slow_disk import HELD_LINES, SLOW_DISK, slow_disk
from tests.test_close_deadline_hangs import held_lines, spooling_client
from tests.test_process_end_spill import end, hang_until

KEY = "k" * 32
WAIT = 60.0


def never_answer(request: Request, sock: socket.socket, stop: threading.Event) -> None:
    stop.wait(120)


# A child holding 2000 lines (125 batches of 16 KiB) while its first request hangs.
SPOOL_CHILD = """
for i in range(2000):
    log.info("held %d " + "x" * 1000, i)
mark("logged")
wait_for("go")
"""


class TestTheSpillKeepsToTheDeadline:
    def test_close_returns_by_its_deadline_on_a_slow_disk(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """close(1) during a request that hangs, with 2000 lines (125 batches) in memory
        and a disk that takes 0.1 s a sync: the spill writes what it can by the deadline
        and close() returns then; the sender writes the rest at its end."""
        slow_disk(monkeypatch)
        count = 2000
        with scripted_server(never_answer) as server:
            client = Client(
                key=KEY, url=server.url, spool_dir=str(tmp_path), spool_sync="always",
                flush_interval=3600, max_batch_bytes="16KiB", request_timeout=WAIT,
                handle_signals=False,
            )  # fmt: skip
            for i in range(count):
                client.log(f"held {i} " + "x" * 1000)
            assert server.wait_for_requests(1, WAIT)
            began = time.monotonic()
            client.close(1.0)
            took = time.monotonic() - began
            assert client._sender.finished.wait(WAIT)
            stats = client.stats()
        # 125 syncs of 0.1 s: 12.5 s at the least for all of memory.
        assert took < 6.0, f"close(1.0) took {took:.1f} s"
        assert 0 == stats["queued"], stats
        assert count == stats["spooled"] + stats["dropped_total"], stats  # type: ignore[typeddict-item]

    def test_sigterm_ends_the_process_by_its_deadline_on_a_slow_disk(self, tmp_path: Path) -> None:
        """The same at SIGTERM: the process ends a moment after shutdown_timeout (1 s),
        saying what it did not deliver, not once all of memory is written (12.5 s)."""
        killed = threading.Event()
        with scripted_server(hang_until(killed)) as server:
            child = Child(
                SLOW_DISK + SPOOL_CHILD, server.url, key=KEY, spool_dir=str(tmp_path),
                spool_sync="always", flush_interval="3600", max_batch_bytes="16KiB",
                request_timeout="60", shutdown_timeout="1",
            )  # fmt: skip
            try:
                child.expect("logged", WAIT)
                assert server.wait_for_requests(1, WAIT)
                began = child.kill(signal.SIGTERM)
                status, _ = child.finish(WAIT)
                took = time.monotonic() - began
            finally:
                end(child, killed)
        assert -signal.SIGTERM == status, child.stderr
        assert took < 6.0, f"ended {took:.1f} s after SIGTERM: {child.stderr}"
        assert losses_said(child.stderr), child.stderr


class TestASplitBatchCutAtTheDeadline:
    @pytest.mark.parametrize("replayed", [False, True], ids=["sent", "replayed"])
    def test_the_half_delivered_is_not_sent_again_by_the_next_process(
        self, tmp_path: Path, replayed: bool
    ) -> None:
        """A batch on disk that the service refused as too large (413) is sent in halves
        (sent from memory, or replayed from disk after a 503); the first half is stored,
        the second hangs until close()'s deadline cuts it. The next process replays what
        the spool holds: the second half only. The whole batch was left on disk, and the
        next process sent the first half again: 15 lines arrived for 10."""
        lines = [f"line {i} " + "x" * 1000 for i in range(10)]
        script = [503] * replayed + [413, 200]  # then the second half hangs
        calls: list[int] = []
        lock = threading.Lock()
        healed = threading.Event()  # the next process's requests: taken

        def respond(request: Request, sock: socket.socket, stop: threading.Event) -> bytes | None:
            with lock:
                calls.append(len(request.lines))
                n = len(calls)
            if n <= len(script):
                return answer(script[n - 1])
            if healed.is_set():
                return answer(200)
            healed.wait(WAIT)  # the second half hangs past the close's deadline
            return None

        with scripted_server(respond) as server:
            options = dict(
                key=KEY, url=server.url, spool_dir=str(tmp_path), flush_interval=0.05,
                request_timeout=WAIT, handle_signals=False,
            )  # fmt: skip
            client = Client(**options)  # type: ignore[arg-type]
            for line in lines:
                client.log(line)
            assert server.wait_for_requests(len(script) + 1, WAIT)
            client.close(1.0)
            assert client._sender.finished.wait(WAIT)
            stats = client.stats()
            healed.set()
            after = Client(**options)  # type: ignore[arg-type]
            try:
                assert after.flush(WAIT)
            finally:
                after.close(5)
            next_stats = after.stats()
            requests = server.requests
        stored = requests[len(script) - 1 : len(script)] + requests[len(script) + 1 :]
        got = [line["line"] for request in stored for line in request.lines]
        assert sorted(lines) == sorted(got), f"{len(got)} arrived for {len(lines)} lines"
        this = (stats["sent"], stats["replayed"], stats["spooled"], stats["dropped_total"])  # type: ignore[typeddict-item]
        assert ((0, 5) if replayed else (5, 0)) + (10, 0) == this, stats
        assert (5, 0) == (next_stats["replayed"], next_stats["dropped_total"])  # type: ignore[typeddict-item]


class TestTheDiskFailsMidSpill:
    @pytest.mark.parametrize("fails", ["pwritev", "fdatasync"])
    def test_every_line_is_on_disk_or_counted(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fails: str
    ) -> None:
        """The disk refuses a write (ENOSPC) or a sync (EIO) after the close's spill wrote
        5 batches: the lines are each on disk or counted (``shutdown``), none left
        uncounted, and close() still returns by its deadline."""
        real = getattr(os, fails)
        closing = threading.Event()
        calls = 0

        def failing(*args: object) -> object:
            nonlocal calls
            if closing.is_set():
                calls += 1
                if calls > 5:
                    code = errno.ENOSPC if fails == "pwritev" else errno.EIO
                    raise OSError(code, os.strerror(code))
            return real(*args)

        monkeypatch.setattr(os, fails, failing)
        with scripted_server(never_answer) as server:
            client = spooling_client(server.url, tmp_path)
            assert server.wait_for_requests(1, WAIT)
            closing.set()
            began = time.monotonic()
            client.close(2.0)
            took = time.monotonic() - began
            assert client._sender.finished.wait(WAIT)
            stats = client.stats()
        assert calls > 5, "the disk never failed"
        assert took < 2.0 + 4.0, took
        assert (0, 0, False) == (stats["queued"], stats["sent"], stats["spool_enabled"]), stats  # type: ignore[typeddict-item]
        spooled = stats["spooled"]  # type: ignore[typeddict-item]
        assert HELD_LINES == spooled + stats["dropped"]["shutdown"], stats
        assert HELD_LINES == spooled + stats["dropped_total"], stats


class TestEverythingAtOnceDuringTheSpill:
    @pytest.mark.parametrize("first", [200, 503, 413])
    def test_two_closes_a_flush_and_logging_during_the_spill(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, first: int
    ) -> None:
        """While the close's spill writes memory behind a request that hangs (a slow
        disk), a second thread closes too, a third flushes, a fourth goes on logging, and
        the request is answered at the first sync of the spill (taken; refused for now,
        503; or too large, 413, and split). Every held line arrives
        once, in order; the lines logged after the close are counted ``after_close``;
        sent + replayed + dropped add up to what was logged."""
        spilling = threading.Event()  # a sync after the close began: the spill writes
        closing = threading.Event()

        def after_sync() -> None:
            if closing.is_set():
                spilling.set()

        slow_disk(monkeypatch, after=after_sync)
        answered = threading.Event()

        def answer_in_the_spill(
            request: Request, sock: socket.socket, stop: threading.Event
        ) -> bytes:
            if not answered.is_set():
                spilling.wait(WAIT)
                answered.set()
                return answer(first)
            return answer(200)

        with scripted_server(answer_in_the_spill) as server:
            client = spooling_client(server.url, tmp_path)
            held = held_lines()
            assert server.wait_for_requests(1, WAIT)
            late = 0
            flushed: list[bool] = []
            stop = threading.Event()

            def keep_logging() -> None:
                nonlocal late
                while not stop.is_set():
                    client.log("late")
                    late += 1
                    stop.wait(0.001)

            threads = [
                threading.Thread(target=client.close, args=(WAIT,)),
                threading.Thread(target=lambda: flushed.append(client.flush(WAIT))),
                threading.Thread(target=keep_logging),
            ]
            closing.set()
            client._begin_close(time.monotonic() + WAIT, WAIT)  # logged from here: late
            for thread in threads:
                thread.start()
            client.close(WAIT)
            assert spilling.is_set() and answered.is_set()
            stop.set()
            for thread in threads:
                thread.join(WAIT)
            stats = client.stats()
            stored = server.requests[first != 200 :]
            got = [str(line["line"]) for request in stored for line in request.lines]
        assert_exactly_once_in_order(held, got)
        replayed = stats["replayed"]  # type: ignore[typeddict-item]
        assert (0, HELD_LINES) == (stats["queued"], stats["sent"] + replayed), stats
        assert replayed > 0, "nothing was spilled"
        assert late == stats["dropped"]["after_close"] == stats["dropped_total"], stats
        assert 1 == len(flushed)  # returned (False: lines were dropped, after_close, meanwhile)


class TestASignalHandlerInsideTheSpill:
    def test_it_logs_flushes_and_closes_without_waiting(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A signal handler runs on the main thread inside close()'s spill (its turn held):
        it logs (counted ``after_close``), flushes and closes without waiting for the
        sender, which needs that turn back; close() then goes on, and every held line is
        on disk, none lost."""
        closing = threading.Event()
        sent_signal = threading.Event()

        def signal_in_the_spill() -> None:
            if closing.is_set() and not sent_signal.is_set():
                sent_signal.set()
                os.kill(os.getpid(), signal.SIGUSR1)

        slow_disk(monkeypatch, after=signal_in_the_spill)
        took: list[float] = []
        inside: list[bool] = []

        def handler(signum: int, frame: object) -> None:
            inside.append(client._sender.spilling_here())
            began = time.monotonic()
            client.log("from the handler")
            took.append(time.monotonic() - began)
            took.append(float(client.flush(WAIT)))
            client.close(WAIT)
            took.append(time.monotonic() - began)

        previous = signal.signal(signal.SIGUSR1, handler)
        try:
            with scripted_server(never_answer) as server:
                client = spooling_client(server.url, tmp_path)
                assert server.wait_for_requests(1, WAIT)
                closing.set()
                client.close(8.0)
                assert client._sender.finished.wait(WAIT)
                stats = client.stats()
        finally:
            signal.signal(signal.SIGUSR1, previous)
        assert [True] == inside, "the handler did not run inside the spill"
        assert 3 == len(took) and 0.0 == took[1], took  # flush() said False at once
        assert took[2] < 4.0, f"the handler's close() waited {took[2]:.1f} s"
        assert (0, 0) == (stats["queued"], stats["sent"]), stats
        assert HELD_LINES == stats["spooled"], stats  # type: ignore[typeddict-item]
        assert 1 == stats["dropped"]["after_close"] == stats["dropped_total"], stats


class TestASplitBatchWaitingOutRetryAfter:
    def test_memory_is_on_disk_when_close_returns(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A batch on disk split by a 413, its first half stored, its second answered 503
        with Retry-After: 30: the sender waits that out, holding the turn a closing
        thread's spill needs. close() then moves memory to the spool all the same (the
        sender does it): on a slow disk, when close() returns every line is on disk."""
        slow_disk(monkeypatch)
        calls = 0
        lock = threading.Lock()
        retry_after = answer(503, headers=b"Retry-After: 30\r\n")

        def respond(request: Request, sock: socket.socket, stop: threading.Event) -> bytes:
            nonlocal calls
            with lock:
                calls += 1
                n = calls
            return answer(413) if n == 1 else answer(200) if n == 2 else retry_after

        with scripted_server(respond) as server:
            client = spooling_client(server.url, tmp_path)
            sleeping = threading.Event()  # the sender counted the 503 and waits it out
            pause = threading.Event()  # never set: the pause between looks
            for _ in range(int(WAIT / 0.01)):
                if client.stats()["retries"]:
                    sleeping.set()
                    break
                pause.wait(0.01)
            assert sleeping.is_set(), f"no 503 within {WAIT} s"
            client.close(6.0)
            spooled = client.stats()["spooled"]  # type: ignore[typeddict-item]
            assert client._sender.finished.wait(WAIT)
            stats = client.stats()
        assert HELD_LINES == spooled, f"close() returned with {spooled} lines on disk"
        first = len(server.requests[1].lines)
        assert (0, first, 0) == (stats["queued"], stats["sent"], stats["dropped_total"]), stats
        assert HELD_LINES == stats["spooled"], stats  # type: ignore[typeddict-item]
