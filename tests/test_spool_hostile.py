"""The disk spool under hostile conditions: forks at bad moments, oversized batches,
clocks that jump, files that are not what their names say, folders that change
under a running process. Each test names the promise of docs/spool.md it checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import rule

from logdna_client import Client
from logdna_client._devserver import DevServer
from logdna_client._spool import Spool, _store
from logdna_client._spool._destination import UNNAMED, destination
from tests._children import REPO, assert_exactly_once_in_order, texts
from tests.helpers import in_forked_child
from tests.test_spool import (
    MODEL_SETTINGS,
    SpoolMachine,
    Trouble,
    crash,
    dead_segment,
    drain,
    lines,
    segments,
)

# Deadline for a child process to answer: generous, only hit when something hangs.
_ANSWER = 60.0


def _wait_readable(fd: int) -> bytes:
    import select

    ready, _, _ = select.select([fd], [], [], _ANSWER)
    assert ready, "the child did not answer"
    return os.read(fd, 64)


class TestFork:
    def test_flush_sees_a_batch_done_only_once_its_done_mark_is_written(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """flush() returns True only when nothing waits on disk: a worker that flushes and
        then ends with os._exit (multiprocessing, a forked child) must not leave a batch
        whose done mark was not written yet, for the next process to send again. (Seen
        as duplicates in a fork-heavy run: flush() read ``undelivered`` between the
        counts' update and the mark's write.)"""
        spool = Spool.open(tmp_path, sync="none")
        batch_id = spool.append(lines(0, 5))
        assert batch_id is not None
        real = _store.write_all
        seen: list[bool] = []

        def write_all(fd: int, parts: list[bytes], offset: int) -> None:
            seen.append(spool.undelivered)  # what flush() on another thread reads now
            real(fd, parts, offset)

        monkeypatch.setattr(_store, "write_all", write_all)
        spool.ack(batch_id)
        assert [True] == seen  # still undelivered while its mark was being written
        assert not spool.undelivered
        crash(spool)
        assert [] == drain(Spool.open(tmp_path, sync="none"))

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


def _dead_segment(folder: Path, start: int, count: int) -> Path:
    """A segment with ``count`` lines waiting, left by a process that died."""
    spool = Spool.open(folder, sync="none")
    assert spool.append(lines(start, count)) is not None
    crash(spool)
    (path,) = segments(folder)
    return path


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    """``logdna-client`` in a child process: a command that hangs fails the test, not the run."""
    return subprocess.run(
        [sys.executable, "-m", "logdna_client", *argv],
        env=dict(os.environ, PYTHONPATH=REPO),
        capture_output=True,
        text=True,
        timeout=_ANSWER,
        check=False,
    )


class TestImpossibleNumbers:
    @pytest.mark.parametrize(
        "frame",
        [(0, 2**34, 1), (2**40, 2**40, 1), (7, 3, 1)],
        ids=["a-huge-range", "a-huge-number", "backwards"],
    )
    def test_a_done_mark_naming_batches_the_file_cannot_hold(
        self, tmp_path: Path, frame: tuple[int, int, int]
    ) -> None:
        """A done mark whose CRC is right but whose batch numbers no file this size holds
        (or a range backwards) is damage, not a mark: the batches before it are sent,
        and ``spool verify`` answers at once. Before (H188): marks of batches 0 to 2**34
        held verify, and the sender, in a loop over each number."""
        from logdna_client._spool import _format as fmt

        path = _dead_segment(tmp_path, 0, 5)
        with path.open("ab") as fh:
            fh.write(fmt.ack_frame(*frame))
        done = _cli("spool", "verify", "--spool-dir", str(tmp_path))
        assert "1 record(s) OK, 5 line(s) waiting" in done.stdout, (done.stdout, done.stderr)
        assert lines(0, 5) == drain(Spool.open(tmp_path, sync="none"))

    def test_a_batch_numbered_past_the_file(self, tmp_path: Path) -> None:
        """The same for a batch record's own number (2**40 would be a bitmap of 128 GiB)."""
        from logdna_client._spool import _format as fmt

        path = _dead_segment(tmp_path, 0, 5)
        with path.open("ab") as fh:
            fh.write(b"".join(fmt.batch_frame(2**40, 1, lines(5, 3))))
        assert lines(0, 5) == drain(Spool.open(tmp_path, sync="none"))


class TestNotSegments:
    """Names are only names: what sits under a segment's name may be anything."""

    def test_symlink_to_another_folders_segment_is_not_followed(self, tmp_path: Path) -> None:
        """Each process writes only its own segments: a symlink in the folder must not lead
        the spool into another folder (another app's spool, with another key) to send its
        lines, append done marks to it, or cut it."""
        ours, theirs = tmp_path / "ours", tmp_path / "theirs"
        ours.mkdir()
        theirs.mkdir()
        target = _dead_segment(theirs, 0, 5)
        with target.open("ab") as fh:
            fh.write(b"\xd5\x1e\x00")  # a torn tail: adopting it would cut it
        before = target.read_bytes()
        (ours / target.name).symlink_to(target)
        spool = Spool.open(ours, sync="none")
        assert [] == drain(spool)
        assert 0 == spool.disk_bytes
        assert spool.append(lines(100, 2)) is not None  # the spool itself works
        spool.close()
        assert before == target.read_bytes()
        assert lines(0, 5) == drain(Spool.open(theirs, sync="none"))  # still theirs to send

    def test_symlink_to_a_big_file_is_not_counted_or_copied(self, tmp_path: Path) -> None:
        """A symlink to a large file elsewhere neither fills the cap (spool_full for
        nothing) nor gets copied into quarantine."""
        ours = tmp_path / "ours"
        ours.mkdir()
        big = tmp_path / "big.bin"
        big.write_bytes(b"not a segment " * 100_000)
        (ours / "seg-00000000000000000001-1-aaaaaa.spool").symlink_to(big)
        spool = Spool.open(ours, sync="none", max_bytes=1 << 20)
        assert 0 == spool.disk_bytes
        assert [] == drain(spool)
        assert spool.append(lines(0, 3)) is not None
        spool.close()
        assert not (ours / "quarantine").exists()
        assert 0 == spool.quarantined
        assert (ours / "seg-00000000000000000001-1-aaaaaa.spool").is_symlink()

    @pytest.mark.parametrize("kind", ["fifo", "directory"])
    def test_fifo_or_folder_named_like_a_segment(self, tmp_path: Path, kind: str) -> None:
        """Never hangs, never raises, never disables the spool: the odd entry is left alone
        and the real segments beside it are delivered."""
        _dead_segment(tmp_path, 0, 4)
        odd = tmp_path / "seg-00000000000000000001-1-ffffff.spool"  # sorts first
        if kind == "fifo":
            os.mkfifo(odd)
        else:
            odd.mkdir()
        trouble = Trouble()
        spool = Spool.open(tmp_path, sync="none", on_trouble=trouble)
        assert lines(0, 4) == drain(spool)
        assert spool.append(lines(10, 2)) is not None
        assert spool.enabled
        assert 0 == spool.disk_bytes - sum(s.stat().st_size for s in segments(tmp_path)[1:])
        spool.close()
        assert [] == trouble.kinds

    def test_cli_does_not_hang_on_a_fifo(self, tmp_path: Path) -> None:
        """spool ls / verify / purge on a folder holding a FIFO under a segment's name
        answer (the FIFO is named unreadable) instead of waiting for a writer forever."""
        _dead_segment(tmp_path, 0, 4)
        os.mkfifo(tmp_path / "seg-00000000000000000001-1-ffffff.spool")
        listed = _cli("spool", "ls", "--spool-dir", str(tmp_path))
        assert 0 == listed.returncode, listed.stderr
        assert "unreadable: not a regular file" in listed.stdout
        assert "4 line(s) waiting" in listed.stdout
        verified = _cli("spool", "verify", "--spool-dir", str(tmp_path))
        assert 1 == verified.returncode  # not a segment: reported as a problem
        purged = _cli("spool", "purge", "--spool-dir", str(tmp_path), "--any-destination",
                      "--yes")  # fmt: skip
        assert "deleted: 1 file(s), 4 line(s)" in purged.stdout, purged.stderr
        assert (tmp_path / "seg-00000000000000000001-1-ffffff.spool").exists()

    def test_quarantine_does_not_write_through_a_planted_symlink(self, tmp_path: Path) -> None:
        """A quarantine file name is predictable; a symlink planted there must not make the
        spool truncate and overwrite the file it points to."""
        path = _dead_segment(tmp_path, 0, 4)
        data = bytearray(path.read_bytes())
        data[40] ^= 0xFF  # corruption in the first record, with nothing whole after it...
        path.write_bytes(bytes(data) + bytes(_whole_record()))  # ...until this one
        victim = tmp_path / "victim.txt"
        victim.write_bytes(b"precious")
        (tmp_path / "quarantine").mkdir()
        (tmp_path / "quarantine" / f"{path.name}.28.bad").symlink_to(victim)
        spool = Spool.open(tmp_path, sync="none")
        drain(spool)
        spool.close()
        assert 1 == spool.quarantined
        assert b"precious" == victim.read_bytes()


def _whole_record() -> bytes:
    from logdna_client._spool import _format as fmt

    return b"".join(fmt.batch_frame(7, 0, lines(50, 1)))


class _Clock:
    """A wall clock the test sets (NTP steps, a VM restored from a snapshot)."""

    def __init__(self) -> None:
        # Starts at the real time: the spool compares file times (the real clock) too.
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class TestClock:
    def test_clock_stepped_back_keeps_the_order_of_replay(self, tmp_path: Path) -> None:
        """Order: within one process lines are delivered in the order logged. Segments are
        replayed in the order of their names, which held the wall time they were created:
        after a step back, a newer segment sorted before the older ones."""
        clock = _Clock()
        spool = Spool.open(tmp_path, sync="none", segment_bytes=1000, clock=clock)
        ids = []
        for i in range(6):  # 100 lines a batch: a segment each
            batch_id = spool.append(lines(100 * i, 100))
            assert batch_id is not None
            ids.append(batch_id)
            clock.now -= 3600.0
        assert 6 == len(segments(tmp_path))
        for batch_id in ids:  # an outage: all of them wait on disk
            spool.release(batch_id)
        assert lines(0, 600) == drain(spool)
        spool.close()

    def test_clock_stepped_back_keeps_an_adopted_backlog_first(self, tmp_path: Path) -> None:
        """Order: a process that finds a backlog sends it first and its new lines after,
        even when its clock is behind the dead process's (which named its segments)."""
        clock = _Clock()
        dead = Spool.open(tmp_path, sync="none", segment_bytes=1000, clock=clock)
        for i in range(3):
            assert dead.append(lines(100 * i, 100)) is not None
        crash(dead)
        clock.now -= 86400.0
        heir = Spool.open(tmp_path, sync="none", segment_bytes=1000, clock=clock)
        for i in range(3, 6):
            batch_id = heir.append(lines(100 * i, 100))
            assert batch_id is not None
            heir.release(batch_id)
        assert lines(0, 600) == drain(heir)
        heir.close()

    def test_clock_stepped_back_keeps_a_backlog_first_beyond_those_held(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The same with a backlog larger than MAX_ADOPTED: the dead segments not adopted
        yet still go before this process's new ones."""
        monkeypatch.setattr(_store, "MAX_ADOPTED", 1)
        clock = _Clock()
        dead = Spool.open(tmp_path, sync="none", segment_bytes=1000, clock=clock)
        for i in range(3):
            assert dead.append(lines(100 * i, 100)) is not None
        crash(dead)
        assert 3 == len(segments(tmp_path))
        clock.now -= 86400.0
        heir = Spool.open(tmp_path, sync="none", segment_bytes=1000, clock=clock)
        batch_id = heir.append(lines(300, 100))
        assert batch_id is not None
        heir.release(batch_id)
        assert lines(0, 400) == drain(heir)
        heir.close()

    def test_clock_stepped_forward_past_max_age_counts_what_it_drops(self, tmp_path: Path) -> None:
        """Every line is delivered or counted: a jump forward beyond max_spool_age gives
        the waiting batches up as spool_age, counted line for line, and new ones still go."""
        clock = _Clock()
        told: list[tuple[str, int]] = []
        spool = Spool.open(
            tmp_path, sync="none", clock=clock, max_age=3600.0,
            on_drop=lambda reason, n: told.append((reason, n)),
        )  # fmt: skip
        for i in range(4):
            batch_id = spool.append(lines(10 * i, 10))
            assert batch_id is not None
            spool.release(batch_id)
        clock.now += 7200.0
        fresh = spool.append(lines(100, 5))
        assert fresh is not None
        spool.release(fresh)
        assert lines(100, 5) == drain(spool)
        assert 40 == spool.dropped["spool_age"]
        assert 40 == sum(n for reason, n in told if reason == "spool_age")
        spool.close()


class TestFolderChanges:
    def test_read_only_remount_never_sends_a_segment_twice(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """No line twice within a process: when the folder turns read-only mid-replay
        (ext4 errors=remount-ro), done marks cannot be written nor done segments deleted;
        the segment must not be adopted, and sent, again at every rescan, nor by another
        process while this one lives."""
        import errno
        from collections import Counter

        dead = Spool.open(tmp_path, sync="none")
        for i in range(5):
            assert dead.append(lines(10 * i, 10)) is not None
        crash(dead)
        clock = [0.0]
        trouble = Trouble()
        heir = Spool.open(tmp_path, sync="none", monotonic=lambda: clock[0], on_trouble=trouble)
        got: list[bytes] = []
        batch = heir.next_replay_batch(200)
        assert batch is not None
        got += batch.entries
        heir.ack(batch.id)

        def read_only(*args: object, **kwargs: object) -> None:
            raise OSError(errno.EROFS, "Read-only file system")

        real_unlink = os.unlink

        def unlink(path: str, *args: Any, **kwargs: Any) -> None:
            if str(path).startswith(str(tmp_path)):
                read_only()
            real_unlink(path, *args, **kwargs)

        monkeypatch.setattr(_store, "write_all", read_only)
        monkeypatch.setattr(os, "unlink", unlink)
        for _ in range(3):  # replay, then a rescan comes due: three times over
            while (batch := heir.next_replay_batch(200)) is not None:
                got += batch.entries
                heir.ack(batch.id)
            clock[0] += 10.0
            heir.tick()
        assert [] == [line for line, n in Counter(got).items() if n > 1]
        assert lines(0, 50) == got
        assert ["spool-disabled"] == trouble.kinds
        sibling = Spool.open(tmp_path, sync="none")  # another live process on the folder
        assert [] == drain(sibling)
        sibling.close()
        heir.close()


def _client(server: DevServer, folder: Path, **options: Any) -> Client:
    return Client(url=server.url, spool_dir=str(folder), flush_interval=0.05,
                  retry_max_backoff=0.3, max_batch_bytes="4KiB", **options)  # fmt: skip


def _outage_backlog(client: Client, prefix: str, count: int) -> None:
    """Log ``count`` lines during an outage, and wait until the sender put them on disk."""
    before = int(client.stats().get("spooled", 0))  # type: ignore[call-overload]
    for i in range(count):
        client.log(f"{prefix} {i}")
    deadline = time.monotonic() + _ANSWER
    # flush() fails (the service is down); the sender moves memory to disk meanwhile.
    while int(client.stats().get("spooled", 0)) < before + count:  # type: ignore[call-overload]
        assert time.monotonic() < deadline, "the lines never reached the spool"
        client.flush(0.1)


class TestSharing:
    def test_two_clients_in_one_process_share_a_folder(
        self, server: DevServer, tmp_path: Path
    ) -> None:
        """Two pipelines of one process on one spool_dir, through an outage: each line once,
        each client's in order; neither adopts (and sends) what the other holds."""
        server.go_down()
        one, two = _client(server, tmp_path), _client(server, tmp_path)
        for round_ in range(3):
            _outage_backlog(one, f"one-{round_}", 200)
            _outage_backlog(two, f"two-{round_}", 200)
        assert segments(tmp_path)
        server.come_up()
        assert one.flush(60) and two.flush(60)
        one.close(5)
        two.close(5)
        got = texts(server)
        for name in ("one", "two"):
            expected = [f"{name}-{r} {i}" for r in range(3) for i in range(200)]
            assert_exactly_once_in_order(expected, got)
        assert [] == segments(tmp_path)

    def test_forked_child_and_parent_both_log_after_the_fork(
        self, server: DevServer, tmp_path: Path
    ) -> None:
        """A fork while the parent holds a backlog on disk (and its sender is busy retrying):
        the child delivers its own lines only, the parent all of its own, each once."""
        server.go_down()
        parent = _client(server, tmp_path)
        _outage_backlog(parent, "before", 300)
        assert segments(tmp_path)

        def child_work() -> dict[str, Any]:
            parent.log("child 0")  # the same Client object: a fresh pipeline in the child
            for i in range(1, 200):
                parent.log(f"child {i}")
            ok = parent.flush(60)
            parent.close(5)
            return {"flushed": ok}

        server.come_up()
        done: dict[str, Any] = {}
        waiter = threading.Thread(target=lambda: done.update(in_forked_child(child_work)))
        waiter.start()
        for i in range(300):
            parent.log(f"after {i}")
        assert parent.flush(60)
        waiter.join(_ANSWER)
        assert {"flushed": True} == done
        parent.close(5)
        got = texts(server)
        assert_exactly_once_in_order(
            [f"before {i}" for i in range(300)] + [f"after {i}" for i in range(300)], got
        )
        assert_exactly_once_in_order([f"child {i}" for i in range(200)], got)
        assert [] == segments(tmp_path)


class TestFolderReplaced:
    """The folder deleted, moved or replaced under a running process."""

    @pytest.mark.parametrize("how", ["deleted", "moved", "replaced"])
    def test_new_batches_go_where_the_next_process_finds_them(
        self, tmp_path: Path, how: str
    ) -> None:
        """At least once: a batch the sender wrote to the spool is delivered by a later
        process if this one crashes. After the folder went away, batches must not keep
        going into the segment that went with it, where no later process looks."""
        import shutil

        folder = tmp_path / "spool"
        clock = [0.0]
        spool = Spool.open(folder, sync="none", monotonic=lambda: clock[0])
        first = spool.append(lines(0, 5))
        assert first is not None
        spool.ack(first)  # delivered: the segment stays, as the one being written
        if how == "deleted":
            shutil.rmtree(folder)
        else:
            folder.rename(tmp_path / "moved")
            if how == "replaced":
                folder.mkdir()
        clock[0] += 10.0
        spool.tick()  # a rescan is due
        assert spool.append(lines(5, 5)) is not None
        crash(spool)
        assert lines(5, 5) == drain(Spool.open(folder, sync="none"))

    def test_batches_written_before_the_folder_went_are_still_sent(self, tmp_path: Path) -> None:
        """What this process holds in a segment that was deleted with its folder is still
        replayed from the open file, once."""
        import shutil

        folder = tmp_path / "spool"
        clock = [0.0]
        spool = Spool.open(folder, sync="none", monotonic=lambda: clock[0])
        for i in range(3):
            batch_id = spool.append(lines(10 * i, 10))
            assert batch_id is not None
            spool.release(batch_id)  # an outage: waiting on disk
        shutil.rmtree(folder)
        clock[0] += 10.0
        spool.tick()
        assert lines(0, 30) == drain(spool)
        assert not spool.undelivered
        spool.close()


def _dead_segments(
    folder: Path, count: int, per_segment: int = 1, pad: bytes = b"", to: bytes = UNNAMED
) -> None:
    """``count`` segments of dead processes, oldest first by name, ``per_segment`` lines
    each: line ``i`` of the whole is in segment ``i // per_segment``. Written for ``to``
    (by default the destination of a Spool opened without one)."""
    folder.mkdir(exist_ok=True)
    for n in range(count):
        body = [line + pad for line in lines(n * per_segment, per_segment)]
        dead_segment(folder, 1000 + n, [body], to)


class TestManySegments:
    def test_thousands_of_dead_segments_leave_the_app_its_descriptors(self, tmp_path: Path) -> None:
        """Never hurts the app: a folder holding 3,000 segments of dead workers must not take
        every descriptor the process may open (the app's own files and sockets, and the
        sender's, fail with EMFILE); all of them are still delivered, once, oldest first."""
        import resource

        from tests.test_spool import in_child

        _dead_segments(tmp_path, 3000)

        def child() -> tuple[int, bool, int]:
            resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
            spool = Spool.open(tmp_path, sync="none")
            app = [os.open(os.devnull, os.O_RDONLY) for _ in range(150)]  # EMFILE?
            for fd in app:
                os.close(fd)
            got = drain(spool)
            return len(got), got == lines(0, 3000), len(segments(tmp_path))

        assert (3000, True, 0) == in_child(child)

    def test_full_folder_drops_the_oldest_dead_segments_even_beyond_those_held(
        self, tmp_path: Path
    ) -> None:
        """spool_full drops the oldest segments, those of dead processes included, even the
        ones not adopted yet: new batches are not refused while dead ones could go."""
        _dead_segments(tmp_path, 200, per_segment=5, pad=b"p" * 200)  # about 220 KiB
        total = sum(p.stat().st_size for p in segments(tmp_path))
        spool = Spool.open(tmp_path, sync="none", max_bytes=total + 2048)
        # About 100 KiB: more than the segments held (MAX_ADOPTED) free.
        new = [line + b"n" * 1000 for line in lines(5000, 100)]
        assert spool.append(new) is not None
        dropped = spool.dropped["spool_full"]
        assert 5 * _store.MAX_ADOPTED < dropped < 1000
        assert dropped % 5 == 0
        rest = drain(spool)
        assert [line + b"p" * 200 for line in lines(dropped, 1000 - dropped)] == rest
        assert spool.disk_bytes <= total + 2048
        spool.close()


# -- the model, with what tests/test_spool.py's leaves out: a wall clock that steps back
# and forward, few segments held at once (MAX_ADOPTED), and a second live process that
# takes part of a backlog; order is checked as well as once-only.


class HostileSpoolMachine(SpoolMachine):
    """SpoolMachine's model and rules, with what a hostile host adds: a wall clock
    stepped back and forth, another live process delivering from the same folder, small
    segments, and at most two dead processes' segments held at once."""

    def __init__(self) -> None:
        self.clock = _Clock()  # before the base opens the spool with it
        self.saved = _store.MAX_ADOPTED
        _store.MAX_ADOPTED = 2
        super().__init__()

    def _open(self, destination: bytes = UNNAMED) -> Spool:
        return Spool.open(self.folder, segment_bytes=300, sync="none", clock=self.clock,
                          destination=destination)  # fmt: skip

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            _store.MAX_ADOPTED = self.saved

    @rule(seconds=st.sampled_from([-86400.0, -3600.0, -1.0, 1.0, 3600.0]))
    def step_clock(self, seconds: float) -> None:
        self.clock.now += seconds

    @rule()
    def sibling(self) -> None:
        """Another live process opens the folder, delivers what it may adopt, and closes."""
        other = self._open()
        got = drain(other)
        other.close()
        assert [] == [line for line, n in Counter(got).items() if n > 1]
        for line in got:
            assert line not in self.with_caller, line  # ours, held: never theirs
            assert line not in self.acked, line
            assert line in self.pending or line in self.maybe, line
        self.pending.difference_update(got)
        self.maybe.difference_update(got)
        self.acked.update(got)


TestHostileSpoolModel = HostileSpoolMachine.TestCase
TestHostileSpoolModel.settings = MODEL_SETTINGS


_FULL_DISK_CHILD = """
import resource
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))  # the disk fills at 20 kB
from logdna_client import Client
c = Client(spool_dir=os.environ["SPOOL"], flush_interval=0.05, retry_max_backoff=0.3,
           max_batch_bytes="2KiB")
for i in range(3000):
    c.log("full %d" % i)
    if i % 100 == 99:
        c.flush(0.05)  # the sender spools meanwhile: the disk fills during the outage
deadline = time.monotonic() + 60
while c.stats().get("spool_enabled", True):  # until the disk has filled
    assert time.monotonic() < deadline, "the spool never filled the disk"
    c.flush(0.05)
mark("logged")
wait_for("up")
mark("flushed " + str(c.flush(60)))
mark("stats " + json.dumps(c.stats()))
os._exit(0)  # no close: what a kill -9 leaves is what the next process finds
"""


class TestDiskFull:
    def test_disk_full_during_an_outage_keeps_order_and_leaves_nothing_to_resend(
        self, server: DevServer, tmp_path: Path
    ) -> None:
        """A real disk-full (RLIMIT_FSIZE) mid-record during an outage: the logging calls go
        on, the spool switches off, and once the service is back every line arrives once,
        in the order logged (the lines kept in memory must not overtake the backlog on
        disk), and nothing delivered is left on disk for the next process to send again."""
        from tests._children import Child

        server.go_down()
        child = Child(_FULL_DISK_CHILD, server.url, env={"SPOOL": str(tmp_path)})
        child.expect("logged", timeout=120)
        assert segments(tmp_path)  # the backlog, on disk
        server.come_up()
        child.send("up")
        assert "True" == child.expect("flushed", timeout=90)
        stats = json.loads(child.expect("stats"))
        code, _ = child.finish()
        assert 0 == code, child.stderr
        assert stats["spool_enabled"] is False
        assert stats["replayed"] > 0
        got = [t for t in texts(server) if t.startswith("full ")]
        assert_exactly_once_in_order([f"full {i}" for i in range(3000)], got)
        assert [] == segments(tmp_path)

    def test_segment_being_written_when_the_disk_failed_is_deleted_once_done(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """After the disk failed, done marks may not reach it: the segment that was being
        written must go once its batches are done, as any other does, not stay behind
        with them all pending for the next process to send again."""
        import errno

        spool = Spool.open(tmp_path, sync="none")
        ids = [spool.append(lines(10 * i, 10)) for i in range(3)]

        def full(*args: object, **kwargs: object) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(_store, "write_all", full)
        assert spool.append(lines(30, 10)) is None
        assert not spool.enabled
        for batch_id in ids:
            assert batch_id is not None
            spool.ack(batch_id)
        assert [] == segments(tmp_path)
        crash(spool)
        assert [] == drain(Spool.open(tmp_path, sync="none"))


class TestReplayRace:
    def test_cli_replay_racing_a_live_process_sends_each_line_once(
        self, server: DevServer, tmp_path: Path
    ) -> None:
        """``spool replay`` run while a live process works through the same backlog of dead
        segments (more than it holds at once): between them every line arrives once, and
        the live process's own lines are never the command's to send."""
        live = _client(server, tmp_path)
        _dead_segments(tmp_path, 300, per_segment=5, to=destination(live.config))
        live.log("live 0")  # starts its sender, which adopts and replays
        replay = subprocess.Popen(
            [sys.executable, "-m", "logdna_client", "spool", "replay",
             "--spool-dir", str(tmp_path), "--url", server.url],
            env=dict(os.environ, PYTHONPATH=REPO), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for i in range(1, 500):
            live.log(f"live {i}")
        _, err = replay.communicate(timeout=_ANSWER)
        assert 0 == replay.returncode, err
        assert live.flush(60)
        live.close(5)
        got = texts(server)
        dead = [line.decode()[10:-2] for line in lines(0, 1500)]  # the lines' own text
        counts = Counter(got)
        assert [] == [t for t in dead if counts[t] != 1]
        assert_exactly_once_in_order([f"live {i}" for i in range(500)], got)
        assert [] == segments(tmp_path)


class TestReadErrors:
    def test_segment_unreadable_after_its_scan_is_let_go_not_retried_forever(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A read error (EIO: a bad sector) while replaying a segment already scanned: it
        must not stay a backlog next_replay_batch never yields from (the sender loops on
        backlog without pause), and it stays on disk, unchanged, for a later process."""
        import errno

        from logdna_client._spool import _format as fmt

        path = _dead_segment(tmp_path, 0, 5)
        before = path.read_bytes()
        trouble = Trouble()
        spool = Spool.open(tmp_path, sync="none", on_trouble=trouble)
        assert (1, 5) == spool.pending()  # scanned: the file read through once

        def eio(*args: object, **kwargs: object) -> None:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(fmt, "read_record", eio)
        for _ in range(3):
            assert spool.next_replay_batch(1 << 20) is None
        assert not spool.backlog  # else: the sender's _drain spins on it
        assert ["spool-read"] == trouble.kinds
        spool.close()
        monkeypatch.undo()
        assert before == path.read_bytes()
        assert lines(0, 5) == drain(Spool.open(tmp_path, sync="none"))

    def test_a_bug_while_replaying_stops_replay_instead_of_looping(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An unexpected exception inside replay (a file breaking an assumption) is contained
        and reported once; the backlog must then stop claiming batches it cannot give, or
        the sender loops on it without pause. The file stays for a later process."""
        _dead_segment(tmp_path, 0, 5)
        trouble = Trouble()
        spool = Spool.open(tmp_path, sync="none", on_trouble=trouble)
        assert spool.backlog

        def bug(*args: object, **kwargs: object) -> None:
            raise ValueError("an assumption broken")

        monkeypatch.setattr(Spool, "_collect", bug)
        for _ in range(3):
            assert spool.next_replay_batch(1 << 20) is None
        assert not spool.backlog
        assert ["spool-error"] == trouble.kinds
        crash(spool)
        monkeypatch.undo()
        assert lines(0, 5) == drain(Spool.open(tmp_path, sync="none"))

    def test_replay_with_every_held_segment_out_returns_instead_of_looping(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """next_replay_batch never blocks: with MAX_ADOPTED segments held, all their batches
        out with the caller, and more segments waiting beyond them, it answers None (and
        backlog is False) at once, and hands the rest out once those are acked."""
        from tests.test_spool import in_child

        monkeypatch.setattr(_store, "MAX_ADOPTED", 2)
        _dead_segments(tmp_path, 4)

        def child() -> tuple[bool, bool, list[bytes]]:
            import signal

            signal.alarm(20)  # a loop ends the child, not the run
            spool = Spool.open(tmp_path, sync="none")
            out = [spool.next_replay_batch(1 << 20) for _ in range(2)]
            stuck = spool.next_replay_batch(1 << 20) is None
            backlog = spool.backlog
            for batch in out:
                assert batch is not None
                spool.ack(batch.id)
            return stuck, backlog, [e for b in out if b for e in b.entries] + drain(spool)

        assert (True, False, lines(0, 4)) == in_child(child)
