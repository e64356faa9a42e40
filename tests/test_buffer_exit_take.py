"""A take interrupted after it counted its batch in flight, as the sender ends.

On the exit path the sender's work may run on the main thread (``Sender.run_here``),
where Ctrl-C's KeyboardInterrupt lands. A take interrupted after it counted its batch
in flight keeps the batch in ``Buffer._taken`` for the next take; the sender, which
survives the exception, must make that next take, or, out of time, spool or count
the batch: never end with it in flight, neither delivered nor counted.

The interrupt is raised where a signal handler can run after the counting: at the
start of ``_refresh_fast_limit``, the take's last call.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from logdna_client import Client
from logdna_client._buffer import Buffer
from logdna_client._spool import BatchId, Spool
from logdna_client._spool._inspect import inspect_segment, segment_paths
from logdna_client._transport import Kind, Outcome

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


def interrupt_the_sender_take_once(buf: Buffer) -> list[int]:
    """Make the sender thread's next take raise KeyboardInterrupt after it counted its
    batch in flight; the list returned gets an item when it did."""
    fired: list[int] = []
    refresh = buf._refresh_fast_limit

    def interrupted() -> None:
        if (
            buf._taken is not None
            and not fired
            and threading.current_thread().name.startswith("logdna_client-sender")
        ):
            fired.append(1)
            raise KeyboardInterrupt
        refresh()

    buf._refresh_fast_limit = interrupted  # type: ignore[method-assign]
    return fired


def lines_of(stats: Any) -> dict[str, int]:
    return {"sent": stats["sent"], "shutdown": stats["dropped"]["shutdown"],
            "held": stats["queued"]}  # fmt: skip


class TestATakeInterruptedAsTheSenderEnds:
    def test_the_batch_is_delivered_while_time_is_left(self) -> None:
        """close() with time to spare, and the closing drain's take interrupted: the
        sender takes again and delivers the batch, rather than ending because nothing
        is queued."""
        transport = Accepting()
        client = Client(key="k" * 32, url=URL, transport=transport, flush_interval=3600)
        fired = interrupt_the_sender_take_once(client._buffer)
        for i in range(10):
            client.log(f"line {i}")
        client.close(timeout=30)
        assert [1] == fired
        assert [f"line {i}" for i in range(10)] == transport.delivered
        assert {"sent": 10, "shutdown": 0, "held": 0} == lines_of(client.stats())

    @pytest.mark.parametrize("spooled", [False, True], ids=["memory", "spool"])
    def test_out_of_time_the_batch_is_spooled_or_counted(
        self, spooled: bool, tmp_path: Any
    ) -> None:
        """close(timeout=0): the sender's one drain is interrupted in its take and the
        deadline has passed, so the batch cannot go; it goes to the spool when there
        is one, else it is counted as a shutdown drop, never left in flight uncounted."""
        transport = Accepting()
        options: dict[str, Any] = {"spool_dir": str(tmp_path)} if spooled else {}
        client = Client(key="k" * 32, url=URL, transport=transport, flush_interval=3600,
                        shutdown_timeout=0, **options)  # fmt: skip
        fired = interrupt_the_sender_take_once(client._buffer)
        for i in range(10):
            client.log(f"line {i}")
        client.close(timeout=0)
        assert client._sender.finished.wait(60)
        assert [1] == fired
        assert [] == transport.delivered
        stats = client.stats()
        assert 0 == stats["queued"]
        if spooled:
            paths = segment_paths(str(tmp_path))
            assert 10 == sum(inspect_segment(path).pending_lines for path in paths)
        else:
            assert {"sent": 0, "shutdown": 10, "held": 0} == lines_of(stats)

    def test_a_batch_handed_over_after_it_was_spooled_is_spooled_once(
        self, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The closing drain interrupted just after the spool wrote its batch (a signal
        check after Spool.append returns, or in its sync): the next take hands the same
        batch over, and the spool must not write it a second time, where no one would
        ack the first copy and the next process would send it again."""
        append = Spool.append
        fired: list[int] = []

        def interrupted(spool: Spool, entries: Sequence[bytes], **how: bool) -> BatchId | None:
            written = append(spool, entries, **how)
            if written is not None and not fired:
                fired.append(1)
                raise KeyboardInterrupt
            return written

        monkeypatch.setattr(Spool, "append", interrupted)
        transport = Accepting()
        client = Client(key="k" * 32, url=URL, transport=transport, flush_interval=3600,
                        spool_dir=str(tmp_path))  # fmt: skip
        for i in range(10):
            client.log(f"line {i}")
        client.close(timeout=30)
        assert [1] == fired
        assert [f"line {i}" for i in range(10)] == transport.delivered
        paths = segment_paths(str(tmp_path))
        assert 0 == sum(inspect_segment(path).pending_lines for path in paths)
