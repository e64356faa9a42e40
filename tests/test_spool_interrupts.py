"""Ctrl-C inside the spool's append and ack, deterministically: a KeyboardInterrupt raised
at each place a signal handler can run in turn (``interrupted_at``, see
tests/test_buffer_interrupts.py), and after each, between this process and the next one
that adopts the folder, every line is delivered, and only the interrupted batch may be
delivered twice.

Only the main thread takes a signal handler's exception, and the spool runs there
when the sender's work is done at exit (``Sender.run_here``) and in ``spool replay``.
A batch the service stored whose done mark a Ctrl-C stopped is sent again by the next
process: delivery is at least once, and no request id lets the service tell a batch it
already has, so no ordering of the mark makes it exactly once (docs/spool.md). What
must hold is the bound: one batch, never the rest of the segment, never a loss.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from logdna_client._spool import BatchId, Spool
from logdna_client._spool import _format as fmt
from logdna_client._spool._destination import UNNAMED
from tests.test_buffer_interrupts import run_at
from tests.test_spool import crash, drain, lines, segments


def _books(sent: list[bytes], interrupted: list[bytes]) -> None:
    """Every line of the run was delivered, and only ``interrupted``'s more than once."""
    counts = Counter(sent)
    assert [] == [line for line in lines(0, 40) if counts[line] == 0]
    assert [] == [line for line, n in counts.items() if n > 1 and line not in interrupted]
    assert all(n <= 2 for n in counts.values())


def _next_process(folder: Path) -> list[bytes]:
    """What the next process to use the folder delivers; it leaves nothing behind."""
    spool = Spool.open(folder, sync="none")
    sent = drain(spool)
    # Nothing left that replay cannot give: a backlog that yields nothing keeps the
    # sender looping, and flush() never succeeds.
    assert (False, False) == (spool.backlog, spool.undelivered)
    spool.close()
    assert [] == segments(folder)
    return sent


def interrupted_at(point: int, call: Callable[[], object]) -> bool:
    """Run ``call`` with a KeyboardInterrupt raised at its ``point``-th signal check;
    False when it has fewer. (One raised where it cannot come out, a generator's end,
    is lost as CPython loses it: the call goes on, and the sweep with it.)"""

    def interrupt() -> None:
        raise KeyboardInterrupt

    try:
        reached, _ = run_at(point, call, interrupt)
    except KeyboardInterrupt:
        return True
    return reached


def _sweep(tmp_path: Path, run: Callable[[Path, int, bool], bool]) -> int:
    """``run(folder, point, crashed)`` for every point until one is past the call's end."""
    point = 0
    while True:
        point += 1
        hit = False
        for crashed in (False, True):
            hit = run(tmp_path / f"{point}-{crashed}", point, crashed)
        if not hit:
            return point


pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


class TestCtrlCInsideAck:
    @pytest.mark.parametrize("sync", ["none", "always"])
    def test_only_the_interrupted_batch_may_come_again(self, tmp_path: Path, sync: str) -> None:
        """The service stored batch X, and Ctrl-C lands inside its ack, at every place it
        can. The process goes on (the sender sends Y, and Z waits on disk), then closes
        or is killed. X may come again from the next process; Y and Z never do, and no
        line is lost."""

        def run(folder: Path, point: int, crashed: bool) -> bool:
            spool = Spool.open(folder, sync=sync)  # type: ignore[arg-type]
            x, y = spool.append(lines(0, 10)), spool.append(lines(10, 10))
            assert x is not None and y is not None
            sent = lines(0, 10)  # the service stored X
            hit = interrupted_at(point, lambda: spool.ack(x))
            sent += lines(10, 10)
            spool.ack(y)
            for i in (20, 30):
                z = spool.append(lines(i, 10))
                assert z is not None
                spool.release(z)  # an outage: waiting on disk
            sent += drain(spool)
            assert spool.enabled
            crash(spool) if crashed else spool.close()
            _books(sent + _next_process(folder), lines(0, 10))
            return hit

        assert _sweep(tmp_path, run) > 20


class TestCtrlCInsideAppend:
    def test_an_interrupted_append_handed_over_again_is_one_batch(self, tmp_path: Path) -> None:
        """Ctrl-C inside the append of batch X, at every place it can; the buffer hands
        the same batch to the next take (Buffer.take), which appends it again, sends it
        and acks it. Only X may come again from the next process, and nothing is lost."""

        def run(folder: Path, point: int, crashed: bool) -> bool:
            spool = Spool.open(folder, sync="none")
            first = spool.append(lines(30, 10))  # an older batch, waiting on disk
            assert first is not None
            spool.release(first)
            x = lines(0, 10)
            got: list[BatchId | None] = []
            hit = interrupted_at(point, lambda: got.append(spool.append(x)))
            again = spool.append(x)  # handed over again
            assert again is not None
            sent = list(x)
            spool.ack(again)
            for i in (10, 20):
                y = spool.append(lines(i, 10))
                assert y is not None
                sent += lines(i, 10)
                spool.ack(y)
            sent += drain(spool)
            assert spool.enabled
            crash(spool) if crashed else spool.close()
            _books(sent + _next_process(folder), x)
            return hit

        assert _sweep(tmp_path, run) > 20


class TestLeftByEarlierVersions:
    @pytest.mark.parametrize("acked", [True, False])
    def test_a_batch_number_written_twice_is_one_batch(self, tmp_path: Path, acked: bool) -> None:
        """Earlier versions, stopped by Ctrl-C between an append's write and its
        bookkeeping, wrote the batch handed over again under the same number. The next
        process counted two batches where one done mark covers both: the segment was never
        finished, stayed a backlog that gave nothing (the sender looped on it) and flush()
        never succeeded. It is one batch: delivered once if not done, then deleted."""
        path = tmp_path / "seg-00000000000000001000-1-000001.seg"
        x = lines(0, 10)
        records = [fmt.batch_frame(0, time.time_ns(), lines(10, 5)),
                   fmt.batch_frame(1, time.time_ns(), x),
                   fmt.batch_frame(1, time.time_ns(), x),
                   [fmt.ack_frame(0, 0, 5)]]  # fmt: skip
        if acked:
            records.append([fmt.ack_frame(1, 1, 10)])
        body = b"".join(b"".join(parts) for parts in records)
        path.write_bytes(fmt.encode_header(1, 1000, UNNAMED) + body)
        spool = Spool.open(tmp_path, sync="none")
        assert ([] if acked else x) == drain(spool)
        assert (False, False) == (spool.backlog, spool.undelivered)
        spool.close()
        assert [] == segments(tmp_path)

    def test_a_batch_number_skipped_is_no_batch(self, tmp_path: Path) -> None:
        """A number taken and never written (a Ctrl-C between an append's numbering and its
        write) is no batch: marking it done with its neighbours counted one batch too many,
        and the segment was deleted with a batch still undelivered."""
        path = tmp_path / "seg-00000000000000001000-1-000001.seg"
        records = [fmt.batch_frame(0, time.time_ns(), lines(0, 5)),
                   fmt.batch_frame(2, time.time_ns(), lines(5, 5)),
                   fmt.batch_frame(3, time.time_ns(), lines(10, 50))]  # fmt: skip
        body = b"".join(b"".join(parts) for parts in records)
        path.write_bytes(fmt.encode_header(1, 1000, UNNAMED) + body)
        spool = Spool.open(tmp_path, sync="none")
        assert lines(0, 60) == drain(spool, max_bytes=300)
        assert (False, False) == (spool.backlog, spool.undelivered)
        spool.close()
        assert [] == segments(tmp_path)
