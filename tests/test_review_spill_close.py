"""Review of the close-time spill to the spool (``Sender.spill_while_closing``), over
real sockets and a real spool folder."""

from __future__ import annotations

import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from logdna_client import Client
from tests._children import Child
from tests._claims_servers import Request, answer, scripted_server
from tests._slow_disk import SLOW_DISK, slow_disk
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
        assert "lines were not delivered" in child.stderr, child.stderr


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
