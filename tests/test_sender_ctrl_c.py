"""Ctrl-C while the exit does the sender's work on the main thread.

Where no sender thread can start (Python 3.12+ starts none while the interpreter
exits), ``close()`` runs the sender's work on its caller's thread (``Sender.run_here``),
and that is where Ctrl-C's KeyboardInterrupt lands, most likely during a request.
Whoever presses it wants out (``_exit._cut_short``): the sending ends at once, the batch
in hand goes back to the spool or is counted as ``shutdown``, and the interrupt reaches
the caller. It used to be taken for a bug of ours: the batch was counted as ``error``
(a spooled one marked done and deleted from disk, though never stored), an internal
error was logged, and the sender went on sending.
"""

from __future__ import annotations

import contextlib
import gzip
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from logdna_client import Client
from logdna_client._transport import Kind, Outcome

URL = "http://127.0.0.1:1/logs/ingest"
LINES = [f"line {i}" for i in range(10)]


class CtrlCOnce:
    """A transport whose first request is cut by Ctrl-C; it stores every later one."""

    def __init__(self, interrupt: bool = True) -> None:
        self.interrupt = interrupt
        self.requests = 0
        self.delivered: list[str] = []

    def send(self, body: bytes, *, gzipped: bool, timeout: float) -> Outcome:
        self.requests += 1
        if self.interrupt:
            self.interrupt = False
            raise KeyboardInterrupt
        lines = orjson.loads(gzip.decompress(body) if gzipped else body)["lines"]
        self.delivered.extend(line["line"] for line in lines)
        return Outcome(Kind.OK, 200)

    def close(self) -> None:
        pass


@contextlib.contextmanager
def no_library_threads() -> Iterator[None]:
    """No thread of the library's can start, as at exit on Python 3.12+."""
    real_start = threading.Thread.start

    def start(thread: threading.Thread) -> None:
        if thread.name.startswith("logdna_client"):
            raise RuntimeError("can't start new thread")
        real_start(thread)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(threading.Thread, "start", start)
        yield


def closed_by_ctrl_c(transport: CtrlCOnce, **options: Any) -> Client:
    with no_library_threads():
        client = Client(
            key="k" * 32, url=URL, transport=transport, flush_interval=3600,
            handle_signals=False, **options,
        )  # fmt: skip
        for line in LINES:
            client.log(line)
        with pytest.raises(KeyboardInterrupt):
            client.close(60)
    return client


class TestCtrlCDuringTheExitsRequest:
    def test_the_lines_count_as_shutdown_and_sending_stops(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        transport = CtrlCOnce()
        client = closed_by_ctrl_c(transport)
        stats = client.stats()
        assert 1 == transport.requests  # not sent again after the Ctrl-C
        assert (0, 10, 0) == (
            stats["sent"], stats["dropped"].get("shutdown", 0), stats["dropped"].get("error", 0)
        ), stats  # fmt: skip
        assert "cut short by Ctrl-C" in caplog.text, caplog.text
        assert not [
            r
            for r in caplog.records
            if "sender error" in r.getMessage() or "internal error" in r.getMessage()
        ]

    def test_a_spooled_batch_stays_on_disk_for_the_next_process(self, tmp_path: Path) -> None:
        transport = CtrlCOnce()
        client = closed_by_ctrl_c(transport, spool_dir=str(tmp_path))
        stats = client.stats()
        assert 1 == transport.requests
        assert 0 == stats["dropped"].get("error", 0), stats
        # The next process adopts the folder and delivers every line.
        following = CtrlCOnce(interrupt=False)
        client = Client(
            key="k" * 32, url=URL, transport=following, flush_interval=3600,
            handle_signals=False, spool_dir=str(tmp_path),
        )  # fmt: skip
        try:
            client.log("next")
            assert client.flush(60)
        finally:
            client.close(60)
        assert sorted([*LINES, "next"]) == sorted(following.delivered)
