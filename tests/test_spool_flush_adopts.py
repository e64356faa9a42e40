"""flush() with nothing logged opens the spool and delivers what a dead process left.

docs/spool.md: the sender opens the spool on the first line logged or on flush(), and
flush() returns True only when nothing waits in memory or on disk, what this process
adopted from dead ones included. With nothing logged, flush() returned True at once
without starting the sender: the dead process's lines stayed on disk, unsent.
"""

from __future__ import annotations

import gzip
import threading
from pathlib import Path

import orjson

from logdna_client import Client
from logdna_client._config import Secret
from logdna_client._spool._destination import fingerprint
from logdna_client._transport import Kind, Outcome
from tests.test_spool import segments, write_segment

KEY = "k" * 32
URL = "http://127.0.0.1:1/logs/ingest"


class Accepting:
    """A transport that stores every line it is sent."""

    def __init__(self) -> None:
        self.delivered: list[str] = []
        self.lock = threading.Lock()

    def send(self, body: bytes, *, gzipped: bool, timeout: float) -> Outcome:
        lines = orjson.loads(gzip.decompress(body) if gzipped else body)["lines"]
        with self.lock:
            self.delivered.extend(line["line"] for line in lines)
        return Outcome(Kind.OK, 200)

    def close(self) -> None:
        pass


def test_flush_with_nothing_logged_delivers_a_dead_processs_backlog(tmp_path: Path) -> None:
    write_segment(tmp_path, 3, per_batch=4, destination=fingerprint(Secret(KEY), URL))
    transport = Accepting()
    client = Client(key=KEY, url=URL, transport=transport, spool_dir=str(tmp_path),
                    flush_interval=3600, handle_signals=False)  # fmt: skip
    try:
        assert client.flush(60)
        stats = client.stats()
    finally:
        client.close(10)
    assert 12 == len(transport.delivered) == stats["replayed"], stats  # type: ignore[typeddict-item]
    assert [] == segments(tmp_path)


def test_flush_with_an_empty_folder_returns_true(tmp_path: Path) -> None:
    client = Client(key=KEY, url=URL, transport=Accepting(), spool_dir=str(tmp_path),
                    flush_interval=3600, handle_signals=False)  # fmt: skip
    try:
        assert client.flush(60)
    finally:
        client.close(10)
