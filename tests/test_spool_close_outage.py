"""Closing during an outage with a disk spool: memory goes to disk before the deadline.

What memory held at close() was written to the spool only at the shutdown deadline
(``Sender._finish``). On a slow disk that writing outlasted close()'s wait: close()
returned with the sender still writing, ``stats()`` not yet final, and a process that
ended then (the sender is a daemon thread) lost the lines not yet written, uncounted:
992 of 2,000 in one run of tests/test_spool_shared_cap.py. Memory now goes to disk as
soon as the close finds requests failing, and the deadline finds nothing left to write.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from logdna_client import Client
from logdna_client._transport import Kind, Outcome
from tests._slow_disk import slow_disk

KEY = "k" * 32
URL = "http://127.0.0.1:1/logs/ingest"
LINES = 400  # about 1 KB each: 25 batches of 16 KiB, each synced
DEADLINE = 12.0  # long past the writing, however loaded the machine


class Down:
    """A service that answers 503 to everything, asking for a minute's pause: the sender
    waits it out up to the deadline (a Retry-After is a floor even while closing)."""

    def __init__(self) -> None:
        self.requests = 0

    def send(self, body: bytes, *, gzipped: bool, timeout: float) -> Outcome:
        self.requests += 1
        return Outcome(Kind.RETRY, 503, retry_after=60.0)

    def close(self) -> None:
        pass


def test_close_returns_with_every_line_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow_disk(monkeypatch)
    client = Client(key=KEY, url=URL, transport=Down(), spool_dir=str(tmp_path),
                    spool_sync="always", flush_interval=3600, max_batch_bytes="16KiB",
                    handle_signals=False)  # fmt: skip
    for i in range(LINES):
        client.log(f"line {i} " + "x" * 1000)
    client.close(DEADLINE)
    ended = client._sender.finished.is_set()
    stats = client.stats()
    assert ended, "close() returned with the sender still writing to disk"
    assert (0, 0) == (stats["queued"], stats["dropped_total"]), stats
    assert LINES == stats["spooled"], stats  # type: ignore[typeddict-item]
