"""flush() with nothing logged opens the spool and delivers what a dead process left.

docs/spool.md: the sender opens the spool on the first line logged or on flush(), and
flush() returns True only when nothing waits in memory or on disk, what this process
adopted from dead ones included. With nothing logged, flush() returned True at once
without starting the sender: the dead process's lines stayed on disk, unsent.
"""

from __future__ import annotations

from pathlib import Path

from logdna_client import Client
from logdna_client._secret import Secret
from logdna_client._spool._destination import fingerprint
from tests.test_buffer_exit_take import Accepting
from tests.test_spool import segments, write_segment

KEY = "k" * 32
URL = "http://127.0.0.1:1/logs/ingest"


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
