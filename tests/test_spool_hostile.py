"""The disk spool under hostile conditions: forks at bad moments, oversized batches,
clocks that jump, files that are not what their names say, folders that change
under a running process. Each test names the promise of docs/spool.md it checks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from logdna_client._spool import Spool, _store
from tests.test_spool import crash, drain, lines

# Deadline for a child process to answer: generous, only hit when something hangs.
_ANSWER = 60.0


def _wait_readable(fd: int) -> bytes:
    import select

    ready, _, _ = select.select([fd], [], [], _ANSWER)
    assert ready, "the child did not answer"
    return os.read(fd, 64)


class TestFork:
    def test_fork_while_a_segment_is_being_created_leaves_it_adoptable(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Each process writes only its own segments, and a dead owner's segment is adopted:
        a fork (from another thread) while the sender creates a segment must not leave the
        child holding that segment's lock, or nobody may adopt it while the child lives."""
        spool = Spool.open(tmp_path, sync="none")
        real = _store.write_all
        ready_r, ready_w = os.pipe()
        end_r, end_w = os.pipe()
        children: list[int] = []

        def fork_during_header(fd: int, parts: list[bytes], offset: int) -> None:
            if not children and offset == 0:  # the header of a new segment, lock held
                pid = os.fork()
                if pid == 0:  # the child: what the client's after-fork hook does, then lives on
                    try:
                        spool.forget_after_fork()
                        os.write(ready_w, b"k")
                        os.read(end_r, 1)
                    finally:
                        os._exit(0)
                children.append(pid)
            real(fd, parts, offset)

        monkeypatch.setattr(_store, "write_all", fork_during_header)
        try:
            assert spool.append(lines(0, 5)) is not None
            assert b"k" == _wait_readable(ready_r)
            crash(spool)  # the parent dies (kill -9) while the child lives
            heir = Spool.open(tmp_path, sync="none")
            assert lines(0, 5) == drain(heir)
            heir.close()
        finally:
            os.write(end_w, b"x")
            for pid in children:
                os.waitpid(pid, 0)
            for fd in (ready_r, ready_w, end_r, end_w):
                os.close(fd)


class TestSizes:
    def test_batch_larger_than_the_cap_drops_nothing_already_spooled(self, tmp_path: Path) -> None:
        """At least once: a batch that cannot fit under max_spool_bytes even in an empty
        folder (max_batch_bytes above max_spool_bytes, both valid options) is kept in memory
        only; the backlog on disk must not be dropped as spool_full to make room in vain."""
        spool = Spool.open(tmp_path, sync="none", max_bytes=64 << 10)
        pad = b"p" * 200
        waiting = [[line + pad for line in lines(10 * i, 10)] for i in range(20)]  # 5 segments
        for batch in waiting:  # an outage: every batch went to disk and waits there
            batch_id = spool.append(batch)
            assert batch_id is not None
            spool.release(batch_id)
        huge = [b',{"line":"' + b"y" * (100 << 10) + b'"}']
        assert len(list(tmp_path.glob("seg-*"))) > 2
        assert spool.append(huge) is None
        assert spool.enabled
        assert {} == dict(spool.dropped)
        assert [line for batch in waiting for line in batch] == drain(spool)
        spool.close()

    def test_room_is_still_made_when_dropping_old_segments_suffices(self, tmp_path: Path) -> None:
        """The other side of the same rule: a batch that fits once old segments go gets in,
        and only as many segments go as it needs, their lines counted as spool_full."""
        spool = Spool.open(tmp_path, sync="none", max_bytes=64 << 10)
        pad = b"p" * 150
        for i in range(35):  # about 56 KiB
            batch_id = spool.append([line + pad for line in lines(10 * i, 10)])
            assert batch_id is not None
            spool.release(batch_id)
        assert {} == dict(spool.dropped)
        big = [b',{"line":"' + b"z" * (30 << 10) + b'"}']
        assert spool.append(big) is not None
        assert spool.disk_bytes <= 64 << 10
        dropped = spool.dropped["spool_full"]
        assert 0 < dropped < 350
        assert 350 - dropped == len(drain(spool))  # the big batch is out, with the caller
        spool.close()
