"""The disk spool: appends, acks, replay, damage, limits, failing disks, processes."""

from __future__ import annotations

import multiprocessing
import os
import resource
import signal
import struct
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterator
from itertools import pairwise
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    rule,
)

from logdna_client._secret import Secret
from logdna_client._spool import BatchId, Spool
from logdna_client._spool import _format as fmt
from logdna_client._spool._destination import UNNAMED, fingerprint, short

_FORK = multiprocessing.get_context("fork")
# Deadline for a child process to answer: generous, only hit when something hangs.
_ANSWER = 60.0


def lines(start: int, count: int) -> list[bytes]:
    """Entries as the sender queues them: a comma, then a line naming its number."""
    return [b',{"line":"%d"}' % i for i in range(start, start + count)]


def drain(spool: Spool, max_bytes: int = 1 << 20) -> list[bytes]:
    """Everything next_replay_batch hands out, acked as it comes."""
    out: list[bytes] = []
    while (batch := spool.next_replay_batch(max_bytes)) is not None:
        out += batch.entries
        spool.ack(batch.id)
    return out


def segments(folder: Path) -> list[Path]:
    from logdna_client._spool._segment import is_segment_name

    return sorted(p for p in folder.glob("seg-*") if is_segment_name(p.name))


def crash(spool: Spool) -> None:
    """What kill -9 does to a spool: its descriptors (and locks) go, nothing is written."""
    spool.forget_after_fork()


class Trouble:
    """Collects what the spool reports."""

    def __init__(self) -> None:
        self.kinds: list[str] = []
        self.messages: list[str] = []

    def __call__(self, kind: str, message: str) -> None:
        self.kinds.append(kind)
        self.messages.append(message)


class TestAppendAndAck:
    def test_acked_batches_leave_no_files(self, tmp_path: Path) -> None:
        """A batch acked after sending is gone from disk once the spool closes."""
        spool = Spool.open(tmp_path)
        for i in range(3):
            batch = spool.append(lines(i * 10, 10))
            assert batch is not None
            spool.ack(batch)
        spool.close()
        assert [] == segments(tmp_path)
        assert 30 == spool.spooled

    def test_unacked_batches_come_back_in_order_after_a_crash(self, tmp_path: Path) -> None:
        """What was appended and never acked is replayed by the next process, oldest first."""
        spool = Spool.open(tmp_path, segment_bytes=1024)
        ids = [spool.append(lines(i * 10, 10)) for i in range(20)]
        assert all(ids)
        assert len(segments(tmp_path)) > 1  # several segments, replayed across them in order
        crash(spool)
        later = Spool.open(tmp_path)
        assert lines(0, 200) == drain(later)
        assert 200 == later.replayed
        later.close()
        assert [] == segments(tmp_path)

    def test_acked_batches_never_come_back(self, tmp_path: Path) -> None:
        """Only the unacked batches of a crashed process are replayed."""
        spool = Spool.open(tmp_path)
        ids = [spool.append(lines(i * 10, 10)) for i in range(5)]
        for i in (0, 2, 3):
            batch = ids[i]
            assert batch is not None
            spool.ack(batch)
        crash(spool)
        assert lines(10, 10) + lines(40, 10) == drain(Spool.open(tmp_path))

    def test_released_batch_is_handed_out_again(self, tmp_path: Path) -> None:
        """release() gives a batch back to replay; one handed out is never handed out twice."""
        spool = Spool.open(tmp_path)
        first = spool.append(lines(0, 3))
        second = spool.append(lines(3, 3))
        assert first is not None and second is not None
        assert spool.next_replay_batch(1 << 20) is None  # both are out with the caller
        spool.release(second)
        spool.release(first)
        again = spool.next_replay_batch(1 << 20)
        assert again is not None
        assert lines(0, 6) == again.entries  # joined, in the order written
        assert spool.next_replay_batch(1 << 20) is None
        spool.ack(again.id)
        assert (0, 0) == spool.pending()

    def test_batch_released_after_replay_went_past_it_comes_back(self, tmp_path: Path) -> None:
        """Replay rewinds to a released batch it had already skipped while it was out."""
        spool = Spool.open(tmp_path)
        first = spool.append(lines(0, 3))
        second = spool.append(lines(3, 3))
        assert first is not None and second is not None
        spool.release(second)
        replay = spool.next_replay_batch(1 << 20)
        assert replay is not None and lines(3, 3) == replay.entries
        spool.release(first)
        again = spool.next_replay_batch(1 << 20)
        assert again is not None and lines(0, 3) == again.entries

    def test_replay_joins_batches_up_to_max_bytes(self, tmp_path: Path) -> None:
        """Small batches are joined up to max_bytes, and a bigger one still comes alone."""
        spool = Spool.open(tmp_path)
        for i in range(10):
            batch = spool.append(lines(i * 10, 10))
            assert batch is not None
            spool.release(batch)
        sizes = []
        while (replay := spool.next_replay_batch(600)) is not None:
            sizes.append(len(replay.entries))
            spool.ack(replay.id)
        assert sum(sizes) == 100
        assert max(sizes) > 10  # joined
        assert all(n % 10 == 0 for n in sizes)  # whole batches only
        assert 1 == len([n for n in [spool.next_replay_batch(1)] if n is None])

    def test_a_batch_appended_again_before_its_ack_is_written_once(self, tmp_path: Path) -> None:
        """The same entries object appended again before its ack or release (the buffer
        handing an interrupted take's batch over) is the batch already written: the same
        id, nothing written twice; once acked, the next append is a batch of its own."""
        spool = Spool.open(tmp_path)
        batch = lines(0, 10)
        first = spool.append(batch)
        assert first is not None
        written = spool.written
        assert first == spool.append(batch)
        assert written == spool.written
        assert first != spool.append(list(batch))  # equal lines, another batch
        spool.ack(first)
        again = spool.append(batch)
        assert again is not None and again != first
        crash(spool)
        assert lines(0, 10) * 2 == drain(Spool.open(tmp_path))

    def test_counters(self, tmp_path: Path) -> None:
        """stats() counts lines spooled and lines delivered from disk."""
        spool = Spool.open(tmp_path)
        batch = spool.append(lines(0, 7))
        assert batch is not None
        spool.release(batch)
        drain(spool)
        stats = spool.stats()
        assert (7, 7, 0, True) == (
            stats["spooled"],
            stats["replayed"],
            stats["quarantined"],
            stats["spool_enabled"],
        )

    def test_finished_segments_are_deleted_while_running(self, tmp_path: Path) -> None:
        """With a working service, disk use stays about one segment."""
        spool = Spool.open(tmp_path, segment_bytes=4096)
        for i in range(200):
            batch = spool.append(lines(i * 10, 10))
            assert batch is not None
            spool.ack(batch)
        assert len(segments(tmp_path)) == 1
        assert spool.disk_bytes < 4096 + 1024

    def test_sync_modes(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Same records in every mode; "always" syncs each write, "interval" once it is due."""
        synced: list[int] = []
        real = os.fdatasync
        monkeypatch.setattr(os, "fdatasync", lambda fd: synced.append(fd) or real(fd))
        now = [0.0]
        counts = {}
        for mode in ("none", "interval", "always"):
            folder = tmp_path / mode
            spool = Spool.open(folder, sync=mode, monotonic=lambda: now[0])  # type: ignore[arg-type]
            synced.clear()
            for i in range(3):
                batch = spool.append(lines(i * 5, 5))
                assert batch is not None
                if i == 0:
                    spool.ack(batch)
            spool.tick()
            counts[mode] = len(synced)
            now[0] += 1.0  # past the interval: the next tick syncs
            spool.tick()
            counts[mode + " later"] = len(synced)
            crash(spool)
            assert lines(5, 10) == drain(Spool.open(folder))
        # Both sync a new segment's header. "interval": then each batch before its append
        # returns (the ack between them is on disk with the next), nothing left for the
        # tick; "always": 3 appends and 1 ack, each before it returns.
        assert {"none": 0, "none later": 0, "interval": 4, "interval later": 4,
                "always": 5, "always later": 5} == counts  # fmt: skip

    def test_interval_a_batch_is_on_disk_before_it_is_sent(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """ "interval": a batch appended just after a sync (the clock held still) is synced
        before append returns, as the sender sends it next and no tick runs while its
        request is out: a service taking 2 s per request left each batch unsynced for
        those 2 s, where the mode promises 0.2 s. Done marks still wait for the interval."""
        synced: list[int] = []
        real = os.fdatasync
        monkeypatch.setattr(os, "fdatasync", lambda fd: synced.append(fd) or real(fd))
        spool = Spool.open(tmp_path, sync="interval", monotonic=lambda: 0.0)
        first = spool.append(lines(0, 5))
        assert first is not None
        before = len(synced)
        spool.ack(first)
        assert before == len(synced)  # the mark waits
        assert spool.append(lines(5, 5)) is not None
        assert before + 1 == len(synced)  # the batch does not
        crash(spool)
        assert lines(5, 5) == drain(Spool.open(tmp_path))

    def test_segment_deleted_by_hand_is_not_a_disk_failure(self, tmp_path: Path) -> None:
        """A segment removed behind the spool's back does not switch the spool off."""
        spool = Spool.open(tmp_path, segment_bytes=100)
        first = spool.append(lines(0, 10))
        assert first is not None
        for path in segments(tmp_path):
            path.unlink()
        spool.ack(first)  # finished and full: the spool deletes it, finds it gone
        assert spool.enabled
        assert spool.append(lines(10, 1)) is not None

    def test_files_are_private_to_the_user(self, tmp_path: Path) -> None:
        """A folder the spool creates is 0700 and its segments 0600: they hold log lines."""
        spool = Spool.open(tmp_path / "new")
        spool.append(lines(0, 1))
        assert 0o700 == (tmp_path / "new").stat().st_mode & 0o777
        assert [0o600] == [p.stat().st_mode & 0o777 for p in segments(tmp_path / "new")]

    def test_unfinished_tmp_file_of_a_dead_process_is_removed(self, tmp_path: Path) -> None:
        """A segment its writer never renamed into place holds nothing: deleted once old."""
        old, young = tmp_path / ".tmp-1-abcd", tmp_path / ".tmp-2-abcd"
        old.write_bytes(fmt.encode_header(1, 1, UNNAMED))
        os.utime(old, (1, 1))
        young.write_bytes(b"")  # may be between its creator's open and its lock: kept
        Spool.open(tmp_path).close()
        assert [young] == list(tmp_path.iterdir())


def adopt_and_be_killed(folder: Path, arm: Callable[[], None]) -> None:
    """A forked child that ``arm``s its SIGKILL, then adopts ``folder``'s segments (the
    scan finds their damage, and salvages it): it must end by that SIGKILL."""

    def run() -> None:
        arm()
        Spool.open(folder).pending()

    proc = _FORK.Process(target=run)
    proc.start()
    proc.join(_ANSWER)
    assert -signal.SIGKILL == proc.exitcode


def write_segment(
    folder: Path, batches: int, per_batch: int = 10, destination: bytes = UNNAMED
) -> Path:
    """A segment of ``batches`` unacked batches, left as a crashed process leaves it."""
    before = set(segments(folder)) if folder.exists() else set()
    spool = Spool.open(folder, destination=destination)
    for i in range(batches):
        spool.append(lines(i * per_batch, per_batch))
    crash(spool)
    (path,) = set(segments(folder)) - before
    return path


def v1_header(pid: int, created_ns: int) -> bytes:
    """A segment header as format version 1 wrote it (no destination), byte for byte:
    what an older version of the library leaves in the folder."""
    import zlib

    head = struct.pack("<8sHHIQ", b"LDNASPL\x00", 1, 0, pid, created_ns)
    return head + struct.pack("<I", zlib.crc32(head))


def v1_segment(folder: Path, created_ns: int, batches: list[list[bytes]]) -> Path:
    """A segment of format version 1 (``.spool``) left by a dead process, its batches unacked."""
    return dead_segment(folder, created_ns, batches, None)


def dead_segment(
    folder: Path, created_ns: int, batches: list[list[bytes]], destination: bytes | None
) -> Path:
    """A segment left by a dead process, its batches unacked, named as created at
    ``created_ns``: of format 1 when ``destination`` is None, else of this format."""
    now = time.time_ns()
    records = [b"".join(fmt.batch_frame(seq, now, batch)) for seq, batch in enumerate(batches)]
    name = f"seg-{created_ns:020d}-1-{created_ns % 0xFFFFFF:06x}"
    if destination is None:
        path, header = folder / f"{name}.spool", v1_header(1, created_ns)
    else:
        path, header = folder / f"{name}.seg", fmt.encode_header(1, created_ns, destination)
    path.write_bytes(header + b"".join(records))
    return path


def flip(path: Path, *places: int) -> None:
    """Damage ``path``: every bit of the bytes at ``places`` flipped, in place."""
    data = bytearray(path.read_bytes())
    for at in places:
        data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def record_offsets(path: Path) -> list[int]:
    data = path.read_bytes()
    offsets = []
    offset = fmt.HEADER_SIZE
    while offset < len(data):
        offsets.append(offset)
        _, size = struct.unpack_from("<2sI", data, offset)
        offset += fmt.FRAME_SIZE + size
    return offsets


class TestDamage:
    def test_torn_tail_at_every_byte(self, tmp_path: Path) -> None:
        """A segment cut at any byte yields the whole batches before the cut, once, in order."""
        path = write_segment(tmp_path / "src", 3)
        original = path.read_bytes()
        offsets = [*record_offsets(path), len(original)]
        for cut in range(len(original) + 1):
            folder = tmp_path / f"cut{cut}"
            folder.mkdir()
            (folder / path.name).write_bytes(original[:cut])
            spool = Spool.open(folder)
            whole = sum(1 for end in offsets[1:] if end <= cut)
            assert lines(0, 10 * whole) == drain(spool), cut
            assert 0 == spool.quarantined
            assert [] == list((folder / "quarantine").glob("*"))
            spool.close()

    def test_acks_after_a_torn_tail_are_read_back(self, tmp_path: Path) -> None:
        """The torn tail is cut before the adopter writes its acks, so they count next time."""
        path = write_segment(tmp_path, 3)
        with path.open("ab") as fh:
            fh.write(b"\x50\x00\x00\x00garbage")  # a record announcing more than is there
        good_end = path.stat().st_size - 11
        first = Spool.open(tmp_path)
        batch = first.next_replay_batch(300)
        assert good_end == path.stat().st_size  # cut before anything is written after it
        assert batch is not None and lines(0, 10) == batch.entries
        first.ack(batch.id)
        assert 1 == first.torn
        crash(first)
        assert lines(10, 20) == drain(Spool.open(tmp_path))

    def test_damage_said_once_names_where_the_rest_is_counted(self, tmp_path: Path) -> None:
        """Damage is said once per process; a second damaged segment's lost lines are not
        said, so the one message says where they are counted, and they are counted there."""
        for _ in range(2):
            path = write_segment(tmp_path, 4)
            data = bytearray(path.read_bytes())
            data[record_offsets(path)[2] + 100] ^= 0x40  # a flip in a batch's lines
            path.write_bytes(bytes(data))
        trouble = Trouble()
        spool = Spool.open(tmp_path, on_trouble=trouble)
        assert 60 == len(drain(spool))
        assert ["spool-corrupt"] == trouble.kinds
        assert "not said again: see stats()'s quarantined" in trouble.messages[0]
        assert (2, {"spool_damaged": 20}) == (spool.quarantined, dict(spool.dropped))
        spool.close()

    def test_a_salvaged_copy_of_anothers_segment_is_not_counted_as_logged_here(
        self, tmp_path: Path
    ) -> None:
        """The copy a salvage writes of a dead process's damaged segment is this spool's
        file but that process's lines: pending() counts them with the segments taken on,
        not with the lines logged here (H196: the exit said them as this process's)."""
        path = write_segment(tmp_path, 4)
        data = bytearray(path.read_bytes())
        data[record_offsets(path)[1] + 100] ^= 0x40  # a flip in the second batch's lines
        path.write_bytes(bytes(data))
        spool = Spool.open(tmp_path)
        spool.append(lines(100, 5))
        assert (1, 5) == spool.pending(logged_here=True)
        assert 30 == spool.pending(logged_here=False)[1]  # 10 before the damage, 20 after
        spool.close()

    def test_a_taken_on_batchs_rest_written_back_is_counted_as_taken_on(
        self, tmp_path: Path
    ) -> None:
        """The unsettled rest of a batch taken on from a dead process (a 207, a split)
        goes back on disk in this spool's own segment, but its lines are still that
        process's: pending() counts them with the segments taken on, also once that rest
        is taken and written back again (H197: 259 of the 260 lines said as this
        process's were taken on)."""
        write_segment(tmp_path, 2)
        spool = Spool.open(tmp_path)
        spool.append(lines(100, 5))
        taken = spool.next_replay_batch(1 << 20)
        assert taken is not None and lines(0, 20) == taken.entries
        assert spool.requeue(taken.id, taken.entries[12:], stored=12)
        assert ((1, 5), (1, 8)) == (
            spool.pending(logged_here=True),
            spool.pending(logged_here=False),
        )
        again = spool.next_replay_batch(1 << 20)
        assert again is not None and lines(12, 8) == again.entries
        assert spool.requeue(again.id, again.entries[5:], stored=5)
        assert (5, 3) == (spool.pending(logged_here=True)[1], spool.pending(logged_here=False)[1])
        assert (2, 8) == spool.pending()
        spool.close()

    def test_zeros_at_the_end_are_a_torn_tail(self, tmp_path: Path) -> None:
        """Zeros where unsynced data never reached the disk are cut, not quarantined."""
        path = write_segment(tmp_path, 2)
        with path.open("ab") as fh:
            fh.write(bytes(5000))
        spool = Spool.open(tmp_path)
        assert lines(0, 20) == drain(spool)
        assert (1, 0) == (spool.torn, spool.quarantined)

    @pytest.mark.parametrize("where", ["mark", "length", "fixed", "data"])
    def test_flipped_byte_salvages_what_follows(self, tmp_path: Path, where: str) -> None:
        """A flipped byte in the middle of a segment costs only the record it is in: the
        batches before and after it are delivered, once, in order; the damaged record
        goes to quarantine, its lines counted as spool_damaged where its head still says
        how many (a flip in its data or sequence number), said uncountable where not."""
        path = write_segment(tmp_path, 4)
        offsets = record_offsets(path)
        at = offsets[2] + {"mark": 0, "length": 4, "fixed": 11, "data": 100}[where]
        data = bytearray(path.read_bytes())
        data[at] ^= 0x40
        path.write_bytes(bytes(data))
        trouble = Trouble()
        spool = Spool.open(tmp_path, on_trouble=trouble)
        assert lines(0, 20) + lines(30, 10) == drain(spool)
        assert (1, 10) == (spool.quarantined, spool.salvaged)
        (bad,) = (tmp_path / "quarantine").iterdir()
        assert bytes(data[offsets[2] : offsets[3]]) == bad.read_bytes()  # the damage only
        assert f"{path.name}.{offsets[2]}.bad" == bad.name
        assert ["spool-corrupt"] == trouble.kinds
        assert "10 line(s) after the damage re-queued" in trouble.messages[0]
        if where in ("fixed", "data"):
            assert {"spool_damaged": 10} == dict(spool.dropped)
            assert "10 line(s) in damaged records lost" in trouble.messages[0]
        else:
            assert {} == {k: v for k, v in spool.dropped.items() if v}
            assert "cannot be counted" in trouble.messages[0]
        spool.close()
        assert [] == segments(tmp_path)
        assert {"salvaged": 10} == {"salvaged": spool.stats()["salvaged"]}

    def test_damage_in_the_first_record(self, tmp_path: Path) -> None:
        """Damage right after the header: every batch after the first is delivered."""
        path = write_segment(tmp_path, 4)
        flip(path, record_offsets(path)[0] + 100)
        spool = Spool.open(tmp_path)
        assert lines(10, 30) == drain(spool)
        assert (1, 30, 10) == (spool.quarantined, spool.salvaged, spool.dropped["spool_damaged"])
        spool.close()
        assert [] == segments(tmp_path)

    def test_done_marks_after_the_damage_count(self, tmp_path: Path) -> None:
        """Done marks after the damage still count, for batches on either side of it: those
        are not sent again, now or by the next process (the cut segment gets the marks
        of its own batches written again); the others are sent, once."""
        spool = Spool.open(tmp_path)
        ids = [spool.append(lines(i * 10, 10)) for i in range(6)]
        for batch in ids:
            assert batch is not None
            spool.release(batch)
        assert ids[0] is not None and ids[4] is not None
        spool.ack(ids[0])  # marks written after batch 5: after the damage below
        spool.ack(ids[4])
        crash(spool)
        (path,) = segments(tmp_path)
        flip(path, record_offsets(path)[2] + 100)
        spool = Spool.open(tmp_path)
        assert (3, 30) == spool.pending()  # batches 1, 3 and 5
        assert (20, 10) == (spool.salvaged, spool.dropped["spool_damaged"])
        crash(spool)  # salvaged, nothing sent: batch 1 keeps the cut segment on disk
        again = Spool.open(tmp_path)
        assert lines(10, 10) + lines(30, 10) + lines(50, 10) == drain(again)
        assert (0, 0) == (again.quarantined, again.salvaged)
        again.close()
        assert [] == segments(tmp_path)

    def test_zeros_in_the_middle(self, tmp_path: Path) -> None:
        """A block of zeros over records in the middle (what a crash can leave where
        writes never reached the disk): the records after it are delivered; how many
        lines the zeros replaced is not known, and the report says so."""
        path = write_segment(tmp_path, 5)
        offsets = record_offsets(path)
        data = bytearray(path.read_bytes())
        data[offsets[1] : offsets[3]] = bytes(offsets[3] - offsets[1])
        path.write_bytes(bytes(data))
        trouble = Trouble()
        spool = Spool.open(tmp_path, on_trouble=trouble)
        assert lines(0, 10) + lines(30, 20) == drain(spool)
        assert (1, 0, 0) == (spool.quarantined, spool.torn, spool.dropped["spool_damaged"])
        (bad,) = (tmp_path / "quarantine").iterdir()
        assert bytes(offsets[3] - offsets[1]) == bad.read_bytes()
        assert "cannot be counted" in trouble.messages[0]

    def test_two_damaged_places(self, tmp_path: Path) -> None:
        """Two damaged records in one segment: each goes to quarantine, each counted; every
        batch between and after them is delivered, once, in order."""
        path = write_segment(tmp_path, 6)
        offsets = record_offsets(path)
        flip(path, offsets[1] + 100, offsets[4] + 100)
        trouble = Trouble()
        spool = Spool.open(tmp_path, on_trouble=trouble)
        assert lines(0, 10) + lines(20, 20) + lines(50, 10) == drain(spool)
        assert (2, 30, 20) == (spool.quarantined, spool.salvaged, spool.dropped["spool_damaged"])
        assert {f"{path.name}.{offsets[n]}.bad" for n in (1, 4)} == {
            p.name for p in (tmp_path / "quarantine").iterdir()
        }
        assert "and in 1 more place(s)" in trouble.messages[0]

    def test_no_room_for_the_copy_keeps_the_lines_before_the_damage(self, tmp_path: Path) -> None:
        """A damaged segment adopted where the disk refuses the copy (a file size limit: a
        full disk): the spool goes off, and the segment stays, with the batches before
        the damage still waiting; a later process with room delivers them and salvages
        the rest. (The first salvage code cleared the scan's counts there and deleted the
        segment: 0 of its 60 lines delivered, none counted.)"""
        path = write_segment(tmp_path, 6)
        offsets = record_offsets(path)
        flip(path, offsets[4] + 100)  # in its lines: its head still says how many

        def run() -> tuple[bool, tuple[int, int], bool]:
            # Room for a new segment's header, not for a record after it.
            resource.setrlimit(resource.RLIMIT_FSIZE, (fmt.HEADER_SIZE + 8, resource.RLIM_INFINITY))
            spool = Spool.open(tmp_path, on_trouble=Trouble())
            waiting = spool.pending()
            crash(spool)
            return spool.enabled, waiting, path.exists()

        assert (False, (4, 40), True) == in_child(run)
        spool = Spool.open(tmp_path)
        assert lines(0, 40) + lines(50, 10) == drain(spool)
        assert 10 == spool.dropped["spool_damaged"]

    def test_salvages_of_salvages_stop_before_names_grow_too_long(self, tmp_path: Path) -> None:
        """Each copy of a copy has a longer name; damage in a copy whose name is already
        long goes to quarantine with the rest of that file, as before salvaging, rather
        than to a copy whose name the file system refuses (ENAMETOOLONG switched the
        spool off, 8 copies deep)."""
        path = write_segment(tmp_path, 3)
        for level in range(12):
            offsets = record_offsets(path)
            flip(path, offsets[1] + 60)  # the middle record: whole ones on both sides
            spool = Spool.open(tmp_path)
            spool.pending()  # the scan, and its salvage
            assert spool.enabled, level
            crash(spool)
            copies = [p for p in segments(tmp_path) if len(p.name) > len(path.name)]
            if not copies:
                break
            (copy,) = copies
            assert len(copy.name) < 200
            path.unlink()
            # Two more batches after the salvaged one: the copy is damaged next round.
            with open(copy, "ab") as out:
                for seq in (1, 2):
                    out.write(b"".join(fmt.batch_frame(seq, time.time_ns(), lines(0, 10))))
            path = copy
        assert 3 <= level < 11  # a few salvages of salvages, then quarantine

    def test_damage_found_while_replaying_is_salvaged(self, tmp_path: Path) -> None:
        """A record damaged after the segment was checked (this process's own, or one
        adopted and scanned): replay goes on after it, delivering the rest once."""
        spool = Spool.open(tmp_path)
        for i in range(3):
            batch = spool.append(lines(i * 10, 10))
            assert batch is not None
            spool.release(batch)
        (path,) = segments(tmp_path)
        offsets = record_offsets(path)
        flip(path, offsets[1] + 100)
        assert lines(0, 10) + lines(20, 10) == drain(spool, max_bytes=100)
        assert (1, 10, 10) == (spool.quarantined, spool.salvaged, spool.dropped["spool_damaged"])
        assert spool.append(lines(100, 5)) is not None  # new batches go on
        crash(spool)
        assert lines(100, 5) == drain(Spool.open(tmp_path))

    def test_damage_found_after_an_adopting_scan(self, tmp_path: Path) -> None:
        """A dead process's segment, scanned whole when adopted, damaged before its batches
        are replayed: the batches after the damage still arrive."""
        path = write_segment(tmp_path, 4)
        spool = Spool.open(tmp_path)
        assert (4, 40) == spool.pending()  # scanned: no damage yet
        offsets = record_offsets(path)
        with path.open("r+b") as fh:
            fh.seek(offsets[1] + 100)
            fh.write(b"\xff\xff")
        assert lines(0, 10) + lines(20, 20) == drain(spool)
        assert (1, 20) == (spool.quarantined, spool.salvaged)
        spool.close()
        assert [] == segments(tmp_path)

    def test_killed_between_the_copy_and_the_cut(self, tmp_path: Path) -> None:
        """A process SIGKILLed after it wrote and synced the copy of what followed the
        damage, before it cut the damaged segment: the next process finds both and sends
        those lines twice (at least once), never zero times; the rest once."""
        path = write_segment(tmp_path, 4)
        flip(path, record_offsets(path)[1] + 100)
        damaged = path.read_bytes()

        def run() -> None:
            def killed(*args: object) -> None:
                os.kill(os.getpid(), signal.SIGKILL)

            Spool._keep_damaged = killed  # type: ignore[method-assign]  # the step after the copy

        adopt_and_be_killed(tmp_path, run)
        assert damaged == path.read_bytes()  # not cut
        (copy,) = set(segments(tmp_path)) - {path}
        assert copy.name.startswith(path.name[: -len(".seg")] + "~")
        spool = Spool.open(tmp_path)
        got = Counter(drain(spool))
        assert {line: 1 for line in lines(0, 10)} == {line: got[line] for line in lines(0, 10)}
        assert {line: 2 for line in lines(20, 20)} == {line: got[line] for line in lines(20, 20)}
        assert set() == set(got) & set(lines(10, 10))  # the damaged record's
        spool.close()
        assert [] == segments(tmp_path)

    def test_killed_while_writing_the_copy(self, tmp_path: Path) -> None:
        """A process SIGKILLed while it wrote the copy, after some of its records: the
        copy is not in place yet (its records go into it under a temporary name), so the
        next process salvages the damaged segment again and sends every line once.
        Before, the partial copy was adopted and its lines sent twice."""
        path = write_segment(tmp_path, 6)
        flip(path, record_offsets(path)[1] + 100)
        damaged = path.read_bytes()

        def run() -> None:
            write = Spool._write
            copied = []

            def killed_at_the_second(self: Spool, seg: Any, parts: list[bytes]) -> None:
                if "~" in seg.name:  # the copy's (whatever its file is called now)
                    copied.append(parts)
                    if len(copied) == 2:
                        os.kill(os.getpid(), signal.SIGKILL)
                write(self, seg, parts)

            Spool._write = killed_at_the_second  # type: ignore[method-assign]

        adopt_and_be_killed(tmp_path, run)
        assert damaged == path.read_bytes()  # not cut
        assert [path] == segments(tmp_path)  # and no copy in place
        spool = Spool.open(tmp_path)
        got = Counter(drain(spool))
        whole = lines(0, 10) + lines(20, 40)
        assert {line: 1 for line in whole} == {line: got[line] for line in whole}
        assert set() == set(got) & set(lines(10, 10))  # the damaged record's
        spool.close()
        assert [] == segments(tmp_path)

    def test_garbage_with_few_marks_then_records_is_salvaged(self, tmp_path: Path) -> None:
        """Garbage in the middle with a few chance marks (within the bound): the records
        after it are found and delivered."""
        import random

        path = write_segment(tmp_path, 2)
        noise = bytearray(random.Random(3).randbytes(64 << 10))
        for at in range(0, len(noise), 8192):  # 8 chance marks, each heading nothing whole
            noise[at : at + 2] = fmt.MARK
        with path.open("ab") as fh:
            fh.write(bytes(noise))
            fh.write(b"".join(fmt.batch_frame(2, time.time_ns(), lines(20, 10))))
        spool = Spool.open(tmp_path)
        assert lines(0, 30) == drain(spool)
        assert (1, 10) == (spool.quarantined, spool.salvaged)

    def test_beyond_the_bound_the_rest_goes_to_quarantine(self, tmp_path: Path) -> None:
        """Garbage with more chance marks than the check's bound before the next whole
        record: that record is not looked for further; the rest of the file goes to
        quarantine whole, as before, and is said so."""
        path = write_segment(tmp_path, 2)
        garbage = (fmt.MARK + b"\xff" * 30) * (fmt.MAX_CANDIDATES + 10)
        with path.open("ab") as fh:
            fh.write(garbage)
            fh.write(b"".join(fmt.batch_frame(2, time.time_ns(), lines(20, 10))))
        trouble = Trouble()
        spool = Spool.open(tmp_path, on_trouble=trouble)
        good_end = record_offsets(path)[2]
        assert lines(0, 20) == drain(spool)
        assert (1, 0) == (spool.quarantined, spool.salvaged)
        (bad,) = (tmp_path / "quarantine").iterdir()
        assert f"{path.name}.{good_end}.bad" == bad.name
        assert bad.stat().st_size == len(garbage) + len(
            b"".join(fmt.batch_frame(2, 0, lines(20, 10)))
        )
        assert "no whole record found" in trouble.messages[0]

    @settings(max_examples=150, deadline=None)
    @given(
        flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), max_size=4),
        cut=st.none() | st.integers(0, 10_000),
    )
    def test_any_damage_yields_original_lines_once_in_order(
        self, flips: list[tuple[int, int]], cut: int | None
    ) -> None:
        """Flipped bytes and cuts anywhere: no exception, no line twice, only lines written,
        and every line of a record that no flip touched and the cut left whole (with the
        header whole: else nothing says whose lines they are)."""
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            path = write_segment(Path(folder), 8, per_batch=5)
            data = bytearray(path.read_bytes())
            bounds = list(pairwise([*record_offsets(path), len(data)]))
            touched = set()
            for at, mask in flips:
                touched.add(at % len(data))
                data[at % len(data)] ^= mask
            if cut is not None:
                del data[cut % (len(data) + 1) :]
            path.write_bytes(bytes(data))
            got = drain(Spool.open(folder), max_bytes=150)
            original = lines(0, 40)
            assert len(got) == len(set(got))
            assert [line for line in original if line in set(got)] == got  # in order, no strays
            if min(touched, default=len(data)) >= fmt.HEADER_SIZE:
                whole = [
                    n for n, (start, end) in enumerate(bounds)
                    if end <= len(data) and not any(start <= at < end for at in touched)
                ]  # fmt: skip
                assert {line for n in whole for line in lines(5 * n, 5)} <= set(got)

    def test_megabytes_of_garbage_after_the_records_are_quarantined(self, tmp_path: Path) -> None:
        """A long garbage tail (full of chance marks) is checked in bounded time, moved aside."""
        import random

        path = write_segment(tmp_path, 2)
        noise = random.Random(7).randbytes(8 << 20)
        with path.open("ab") as fh:  # a head that fits the file, then noise failing its CRC
            fh.write(fmt.MARK + struct.pack("<IIBQQI", 4 << 20, 0, fmt.BATCH, 9, 0, 0) + noise)
        spool = Spool.open(tmp_path)
        assert lines(0, 20) == drain(spool)
        assert 1 == spool.quarantined

    def test_bad_header_quarantines_the_segment(self, tmp_path: Path) -> None:
        """A file that is not a segment of ours is moved aside, never crashing the app."""
        (tmp_path / "seg-00000000000000000001-1-aaaaaa.spool").write_bytes(b"not a spool" * 50)
        write_segment(tmp_path / "other", 1)
        spool = Spool.open(tmp_path)
        assert [] == drain(spool)
        assert 1 == spool.quarantined
        assert 1 == len(list((tmp_path / "quarantine").iterdir()))
        assert [] == segments(tmp_path)

    def test_unremovable_bad_segment_is_counted_once(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A bad segment that cannot be deleted is not adopted and counted again each rescan."""
        bad = tmp_path / "seg-00000000000000000001-1-aaaaaa.spool"
        bad.write_bytes(b"not a spool" * 50)
        real_unlink = os.unlink

        def unlink(path: Any, *args: Any, **kwargs: Any) -> None:
            if str(path) == str(bad):
                raise PermissionError(13, "Permission denied")
            real_unlink(path, *args, **kwargs)

        monkeypatch.setattr(os, "unlink", unlink)
        spool = Spool.open(tmp_path)
        for _ in range(3):
            spool.adopt()
            assert spool.next_replay_batch(100) is None
        assert 1 == spool.quarantined
        assert spool.enabled

    def test_quarantine_keeps_the_newest_files(self, tmp_path: Path) -> None:
        """Damage cannot fill the disk: old quarantine files are deleted."""
        from logdna_client._spool import QUARANTINE_KEEP

        for i in range(QUARANTINE_KEEP + 3):
            (tmp_path / f"seg-{i:020d}-1-aaaaaa.spool").write_bytes(b"junk" * 10)
        spool = Spool.open(tmp_path)
        assert spool.pending() == (0, 0)
        assert QUARANTINE_KEEP + 3 == spool.quarantined
        assert QUARANTINE_KEEP == len(list((tmp_path / "quarantine").iterdir()))


class TestLimits:
    def test_quarantine_counts_toward_the_cap_and_goes_first(self, tmp_path: Path) -> None:
        """Quarantine files take the folder's room too: max_spool_bytes bounds them (the
        folder grew past the cap through them), and when it is reached they go first,
        oldest first (no process can send what they hold), the lines they still hold
        whole counted as spool_full, before any segment that can still be delivered.
        (Files as earlier versions left them, the rest of a segment from a damaged first
        record on; or as damage followed by garbage past the salvage's bound still does.)"""
        pad = b"p" * 200
        (tmp_path / "quarantine").mkdir()
        for n in range(6):
            path = write_segment(tmp_path, 20, per_batch=10)
            data = bytearray(path.read_bytes())
            at = record_offsets(path)[0]
            data[at + 30] ^= 0xFF
            bad_file = tmp_path / "quarantine" / f"{path.name}.{at}.bad"
            bad_file.write_bytes(bytes(data[at:]))
            os.utime(bad_file, ns=(n * 10**9, n * 10**9))
            path.unlink()
        bad = sorted((tmp_path / "quarantine").iterdir(), key=lambda p: p.stat().st_mtime_ns)
        held = sum(p.stat().st_size for p in bad)
        keep = write_segment(tmp_path, 1, per_batch=3)  # deliverable: kept while quarantine goes

        def on_disk() -> int:
            return sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file())

        cap = on_disk() - held // 2
        spool = Spool.open(tmp_path, sync="none", max_bytes=cap)
        assert on_disk() == spool.disk_bytes
        assert spool.append([line + pad for line in lines(1000, 20)]) is not None
        gone = [p for p in bad if not p.exists()]
        assert on_disk() <= cap and on_disk() == spool.disk_bytes
        assert 3 <= len(gone) < 6 and gone == bad[: len(gone)]  # the oldest
        assert {"spool_full": 190 * len(gone)} == dict(spool.dropped)  # 19 whole batches each
        assert keep.exists()
        spool.close()

    def test_cap_drops_oldest_segments_and_counts_their_lines(self, tmp_path: Path) -> None:
        """During an outage disk use stays under the cap; every line is replayed or counted."""
        cap = 64 * 1024
        spool = Spool.open(tmp_path, max_bytes=cap)
        for i in range(400):
            batch = spool.append(lines(i * 10, 10))
            assert batch is not None
            spool.release(batch)  # the service is down: the sender leaves it on disk
            assert spool.disk_bytes <= cap
            assert sum(f.stat().st_size for f in segments(tmp_path)) <= cap
        kept = drain(spool)
        assert 4000 == len(kept) + spool.dropped["spool_full"]
        assert lines(4000 - len(kept), len(kept)) == kept  # the newest survive, in order
        assert spool.dropped["spool_full"] > 0

    def test_batches_older_than_max_age_are_dropped(self, tmp_path: Path) -> None:
        """Replay skips batches older than max_age, counted, and marks them done."""
        now = [1_000_000.0]
        spool = Spool.open(tmp_path, max_age=60, clock=lambda: now[0])
        old = spool.append(lines(0, 10))
        now[0] += 100
        new = spool.append(lines(10, 5))
        assert old is not None and new is not None
        spool.release(old)
        spool.release(new)
        assert lines(10, 5) == drain(spool)
        assert {"spool_age": 10} == dict(spool.dropped)
        assert [] == drain(Spool.open(tmp_path, clock=lambda: now[0]))

    def test_untouched_old_segments_are_dropped_at_open(self, tmp_path: Path) -> None:
        """A segment nothing was written to for max_age is dropped whole, counted."""
        path = write_segment(tmp_path, 2)
        os.utime(path, (1, 1))
        spool = Spool.open(tmp_path, max_age=3600)
        assert {"spool_age": 20} == dict(spool.dropped)
        assert [] == segments(tmp_path)

    def test_no_room_when_others_fill_the_folder(self, tmp_path: Path) -> None:
        """Another live process's segments are never dropped; the batch stays in memory."""
        other = Spool.open(tmp_path, max_bytes=1 << 20)
        for i in range(50):
            other.append(lines(i * 100, 100))
        trouble = Trouble()
        spool = Spool.open(tmp_path, max_bytes=64 * 1024, on_trouble=trouble)
        assert spool.append(lines(0, 10)) is None
        assert spool.enabled  # full is not broken
        assert ["spool-full"] == trouble.kinds
        other.close()


URL = "https://logs.example.com/logs/ingest"
MINE, THEIRS = fingerprint(Secret("key-of-app-a"), URL), fingerprint(Secret("key-of-app-b"), URL)


class TestDestinations:
    """A folder shared by processes sending to different places (docs/spool.md)."""

    def test_another_destinations_segments_are_left_whole_for_it(self, tmp_path: Path) -> None:
        """A process adopts, sends and deletes only its own destination's segments; another
        destination's stay, byte for byte, until a process of that destination sends them."""
        write_segment(tmp_path, 3, destination=THEIRS)
        before = {p: p.read_bytes() for p in segments(tmp_path)}
        spool = Spool.open(tmp_path, destination=MINE)
        assert ([], 0, (0, 0)) == (drain(spool), spool.adopt(), spool.pending())
        assert not spool.undelivered  # flush() does not wait for them
        spool.close()
        assert before == {p: p.read_bytes() for p in segments(tmp_path)}
        theirs = Spool.open(tmp_path, destination=THEIRS)
        assert lines(0, 30) == drain(theirs)
        theirs.close()
        assert [] == segments(tmp_path)

    def test_another_destinations_segments_count_toward_the_cap_and_are_never_dropped(
        self, tmp_path: Path
    ) -> None:
        """max_spool_bytes bounds the folder: another destination's segments count toward
        it (the folder grew to the cap once per destination), but never go to make room
        nor count as this process's drops; when they alone fill it, batches are refused
        (kept in memory by the sender), reported once, and the spool stays on."""
        for _ in range(4):
            write_segment(tmp_path, 20, per_batch=50, destination=THEIRS)
        theirs = sum(p.stat().st_size for p in segments(tmp_path))
        cap = 64 * 1024
        assert theirs > cap
        before = {p: p.read_bytes() for p in segments(tmp_path)}
        trouble = Trouble()
        spool = Spool.open(tmp_path, destination=MINE, max_bytes=cap, on_trouble=trouble)
        assert theirs == spool.disk_bytes
        assert [None] * 20 == [spool.append(lines(i * 10, 10)) for i in range(20)]
        assert spool.enabled and "spool-full" in trouble.kinds
        assert ({}, (0, 0)) == (dict(spool.dropped), spool.pending())
        spool.close()
        assert before == {p: p.read_bytes() for p in segments(tmp_path)}

    def test_a_shared_folder_stays_under_the_cap_by_dropping_only_this_destinations(
        self, tmp_path: Path
    ) -> None:
        """With another destination's segments taking part of the cap, this process makes
        room by dropping its own oldest segments, counted as spool_full: the folder stays
        under the cap and the other destination's lines are all kept."""
        write_segment(tmp_path, 20, per_batch=50, destination=THEIRS)
        before = {p: p.read_bytes() for p in segments(tmp_path)}
        cap = 64 * 1024
        spool = Spool.open(tmp_path, destination=MINE, max_bytes=cap)
        for i in range(400):
            batch = spool.append(lines(i * 10, 10))
            assert batch is not None
            spool.release(batch)
            assert sum(p.stat().st_size for p in segments(tmp_path)) <= cap
        assert spool.dropped["spool_full"] > 0
        kept = drain(spool)
        assert 4000 == len(kept) + spool.dropped["spool_full"]
        assert lines(4000 - len(kept), len(kept)) == kept
        spool.close()
        assert before == {p: p.read_bytes() for p in segments(tmp_path)}

    def test_two_destinations_writing_between_rescans_keep_the_folder_under_the_cap(
        self, tmp_path: Path
    ) -> None:
        """Two processes of different destinations fill one folder during an outage, each
        batch in turn, faster than the rescan interval (the clock is held still): each
        counts the other's segments as they are at every append, not as of its last
        rescan, so the folder never passes the cap (it reached 1.4 times it), each drops
        only its own oldest, counted, and keeps the rest in order."""
        cap = 64 * 1024
        still = 0.0  # no RESCAN_INTERVAL ever passes
        spools = [Spool.open(tmp_path, destination=d, max_bytes=cap, monotonic=lambda: still)
                  for d in (MINE, THEIRS)]  # fmt: skip
        for i in range(200):
            for spool in spools:
                batch = spool.append(lines(i * 10, 10))
                if batch is not None:
                    spool.release(batch)
                assert sum(p.stat().st_size for p in segments(tmp_path)) <= cap, i
        for spool in spools:
            kept = drain(spool)
            assert 2000 == len(kept) + spool.dropped["spool_full"]
            assert lines(2000 - len(kept), len(kept)) == kept
            spool.close()

    def test_age_never_drops_another_destinations_segments(self, tmp_path: Path) -> None:
        """max_spool_age drops this destination's old segments only; another's wait for a
        process of theirs, which applies its own age limit."""
        path = write_segment(tmp_path, 2, destination=THEIRS)
        os.utime(path, (1, 1))
        spool = Spool.open(tmp_path, destination=MINE, max_age=3600)
        assert ({}, [path]) == (dict(spool.dropped), segments(tmp_path))
        spool.close()
        theirs = Spool.open(tmp_path, destination=THEIRS, max_age=3600)
        assert {"spool_age": 20} == dict(theirs.dropped)

    def test_a_header_unread_once_never_makes_another_destinations_segment_ours(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A segment whose header could not be read at a rescan (a passing failure: the
        process out of descriptors, EIO) is not taken for this destination's: not adopted,
        sent with this key nor dropped here, once it can be read (it was remembered as
        ours, adopted at the next look, and its lines sent with the wrong key)."""
        import errno

        from logdna_client._spool import _store

        write_segment(tmp_path, 3, destination=THEIRS)
        before = {p: p.read_bytes() for p in segments(tmp_path)}
        real_open = _store.open_regular
        failing = [True]

        def open_once_failing(path: str, flags: int) -> int:
            if failing and flags == os.O_RDONLY:
                failing.clear()
                raise OSError(errno.EMFILE, "Too many open files")
            return real_open(path, flags)

        monkeypatch.setattr(_store, "open_regular", open_once_failing)
        spool = Spool.open(tmp_path, destination=MINE)
        assert not failing  # the header's read failed once
        assert [] == drain(spool)
        spool.adopt()  # looked at again, readable now
        assert ([], (0, 0)) == (drain(spool), spool.pending())
        spool.close()
        assert before == {p: p.read_bytes() for p in segments(tmp_path)}
        theirs = Spool.open(tmp_path, destination=THEIRS)
        assert lines(0, 30) == drain(theirs)
        theirs.close()

    def test_what_is_left_for_another_destination_is_reported_once(self, tmp_path: Path) -> None:
        """Segments of another destination no live process holds are reported once, with
        their count, fingerprint and the command that sends them (the folder quoted for a
        shell: a space in it split the command); never with a key."""
        folder = tmp_path / "app logs"
        write_segment(folder, 1, destination=THEIRS)
        write_segment(folder, 1, destination=THEIRS)
        trouble = Trouble()
        spool = Spool.open(folder, destination=MINE, on_trouble=trouble)
        spool.adopt()  # a rescan: not said again
        assert ["spool-other"] == trouble.kinds
        (message,) = trouble.messages
        assert "2 segment(s)" in message
        assert short(THEIRS) in message
        assert f"spool replay --spool-dir '{folder}' --key" in message
        assert "was wrong (refused, a typo) and is fixed now, add --any-destination" in message
        assert "key-of-app" not in message
        spool.close()

    def test_another_live_destination_is_not_reported(self, tmp_path: Path) -> None:
        """Another app sending elsewhere through the same folder needs no advice."""
        live = Spool.open(tmp_path, destination=THEIRS)
        live.append(lines(0, 3))
        trouble = Trouble()
        spool = Spool.open(tmp_path, destination=MINE, on_trouble=trouble)
        assert ([], []) == (trouble.kinds, drain(spool))
        spool.close()
        live.close()

    def test_format_1_segments_are_nobodys(self, tmp_path: Path) -> None:
        """Segments written before destinations existed (format 1, ``.spool``) do not say
        whose lines they hold: no process adopts, sends or drops them (any destination's
        adopted them, so one app's lines went out with another's key); they are kept,
        counted toward the cap, and reported once with the command that sends them."""
        old = [v1_segment(tmp_path, 1000, [lines(0, 5), lines(5, 5)]),
               v1_segment(tmp_path, 2000, [lines(10, 5)])]  # fmt: skip
        kept = {p: p.read_bytes() for p in old}
        size = sum(map(len, kept.values()))
        for mine in (MINE, THEIRS):
            trouble = Trouble()
            spool = Spool.open(tmp_path, destination=mine, on_trouble=trouble,
                               max_bytes=size + 1024)  # fmt: skip
            assert ([], False) == (drain(spool), spool.undelivered)
            assert spool.append(lines(20, 100)) is None  # no room, and theirs are not dropped
            assert ({}, size + fmt.HEADER_SIZE) == (dict(spool.dropped), spool.disk_bytes)
            assert ["spool-format-1", "spool-full"] == trouble.kinds
            assert "--any-destination" in trouble.messages[0]
            spool.close()
        assert kept == {p: p.read_bytes() for p in segments(tmp_path)}

    def test_format_1_segments_go_where_the_user_says(self, tmp_path: Path) -> None:
        """``adopt_any`` (``spool replay --any-destination``, run with the key and URL they
        were written for) adopts and sends format 1 segments, oldest first."""
        v1_segment(tmp_path, 1000, [lines(0, 5), lines(5, 5)])
        v1_segment(tmp_path, 2000, [lines(10, 5)])
        spool = Spool.open(tmp_path, destination=MINE, adopt_any=True)
        assert lines(0, 15) == drain(spool)
        spool.close()
        assert [] == segments(tmp_path)

    def test_a_later_versions_segment_is_left_alone(self, tmp_path: Path) -> None:
        """A segment whose header names a later format is neither read, moved to quarantine
        nor deleted: the library that wrote it may still come for it. Reported once."""
        path = tmp_path / "seg-00000000000000001000-1-000001.seg"
        data = b"LDNASPL\x00" + struct.pack("<H", fmt.VERSION + 1) + os.urandom(200)
        path.write_bytes(data)
        trouble = Trouble()
        spool = Spool.open(tmp_path, destination=MINE, on_trouble=trouble)
        assert ([], 0) == (drain(spool), spool.quarantined)
        spool.close()
        assert (data, ["spool-later"]) == (path.read_bytes(), trouble.kinds)
        assert not (tmp_path / "quarantine").exists()

    def test_fingerprint(self) -> None:
        """The same for every run (another process agrees), different for another key or
        URL, the same however the host's name is cased, and not the key."""
        code = "from logdna_client._spool._destination import fingerprint as f; "
        code += "from logdna_client._secret import Secret; "
        code += f"print(f(Secret('key-of-app-a'), {URL!r}).hex())"
        env = {**os.environ, "PYTHONPATH": os.getcwd()}
        out = subprocess.run([sys.executable, "-c", code], check=True, env=env,
                             capture_output=True, text=True).stdout.strip()  # fmt: skip
        assert MINE.hex() == out
        assert 16 == len(MINE)
        others = {THEIRS, fingerprint(Secret("key-of-app-a"), URL + "2"), fingerprint(None, URL),
                  fingerprint(Secret(""), URL)}  # fmt: skip
        assert 4 == len(others) and MINE not in others
        assert MINE == fingerprint(
            Secret("key-of-app-a"), URL.replace("logs.example", "LOGS.Example")
        )
        # The scheme's default port written, a host's final dot: the same place (H188:
        # each orphaned the backlog); another port or path is another destination.
        for same in ("https://logs.example.com:443/logs/ingest",
                     "HTTPS://logs.example.com./logs/ingest"):  # fmt: skip
            assert MINE == fingerprint(Secret("key-of-app-a"), same), same
        for other in ("https://logs.example.com:8443/logs/ingest",
                      "https://logs.example.com/logs/ingest/"):  # fmt: skip
            assert MINE != fingerprint(Secret("key-of-app-a"), other), other
        assert b"key-of-app-a" not in MINE

    def test_an_otlp_apps_otel_headers_are_part_of_its_destination(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Apps of several tenants post to one node's Collector URL, each with its own
        credential or tenant in the OTel headers: a process adopts only segments written
        with the same headers (H198: another tenant's process sent a dead one's lines with
        its own header). Their names in any case and any order are the same headers; no
        header is the digest of key and URL alone, as segments written before had it."""
        from logdna_client._config import Config
        from logdna_client._spool import destination

        team = [("x-honeycomb-team", Secret("KEY-OF-TENANT-A"))]
        both = [*team, ("X-Scope-OrgID", Secret("acme"))]
        assert fingerprint(None, URL, ()) == fingerprint(None, URL)
        assert fingerprint(None, URL, team) != fingerprint(None, URL)
        assert fingerprint(None, URL, team) != fingerprint(
            None, URL, [("x-honeycomb-team", Secret("KEY-OF-TENANT-B"))]
        )
        assert fingerprint(None, URL, both) == fingerprint(
            None, URL, [("x-scope-orgid", Secret("acme")), ("X-Honeycomb-Team", team[0][1])]
        )
        # A name given twice is sent with its last value (H202: another fingerprint).
        twice = [("X-Scope-OrgID", Secret("globex")), *both]
        assert fingerprint(None, URL, twice) == fingerprint(None, URL, both)
        found = []
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
        for tenant in ("A", "B", "A"):
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"x-honeycomb-team=KEY-OF-{tenant}")
            found.append(destination(Config(protocol="otlp")))
        assert found[0] == found[2] != found[1]
        assert b"KEY-OF" not in found[0]

    def test_segments_record_the_destination_of_the_client(self, tmp_path: Path) -> None:
        """A Client's spool writes the fingerprint of its key and URL, and never the key."""
        from logdna_client._config import Config
        from logdna_client._spool import destination

        config = Config(key="key-of-app-a", url=URL)
        assert MINE == destination(config)
        path = write_segment(tmp_path, 1, destination=destination(config))
        header = fmt.decode_header(path.read_bytes()[: fmt.HEADER_SIZE])
        assert header is not None and MINE == header.destination
        assert b"key-of-app-a" not in path.read_bytes()


def in_child(func: Callable[[], Any]) -> Any:
    """Run ``func`` in a forked child and return what it returns (raising what it raised)."""
    parent, child = _FORK.Pipe(duplex=False)

    def run() -> None:
        try:
            child.send(("ok", func()))
        except BaseException as exc:
            child.send(("error", repr(exc)))

    proc = _FORK.Process(target=run)
    proc.start()
    assert parent.poll(_ANSWER), "child did not answer"
    status, value = parent.recv()
    proc.join(_ANSWER)
    assert "ok" == status, value
    return value


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs (a disk that fills up), unmounted afterwards; skipped without mount."""
    folder = tmp_path / "tmpfs"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


class TestDiskFailure:
    def test_full_tmpfs_reports_once_and_keeps_what_was_written(self, tmpfs: Path) -> None:
        """A really full disk (ENOSPC): reported once, no exception, written batches replay."""
        trouble = Trouble()
        spool = Spool.open(tmpfs / "spool", on_trouble=trouble, sync="always")
        written = 0
        for i in range(2000):
            if spool.append(lines(i * 10, 10)) is None:
                break
            written += 1
        assert spool.append(lines(0, 1)) is None
        assert ["spool-disabled"] == trouble.kinds
        assert "ENOSPC" in trouble.messages[0]
        crash(spool)
        assert 0 < written < 2000
        assert lines(0, 10 * written) == drain(Spool.open(tmpfs / "spool"))

    def test_read_only_mount_reports_once(self, tmpfs: Path) -> None:
        """A folder on a read-only file system (which stops root too) turns the spool off."""
        (tmpfs / "spool").mkdir()
        subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
        trouble = Trouble()
        spool = Spool.open(tmpfs / "spool", on_trouble=trouble)
        assert None is spool.append(lines(0, 1))
        assert None is spool.append(lines(1, 1))
        spool.close()
        assert ["spool-disabled"] == trouble.kinds
        assert "EROFS" in trouble.messages[0]

    def test_folder_under_a_file_disables_the_spool(self, tmp_path: Path) -> None:
        """A folder that cannot exist is reported once; appends answer None, never raise."""
        (tmp_path / "file").write_text("x")
        trouble = Trouble()
        spool = Spool.open(tmp_path / "file" / "spool", on_trouble=trouble)
        assert not spool.enabled
        assert None is spool.append(lines(0, 1))
        assert None is spool.next_replay_batch(100)
        spool.tick()
        spool.close()
        assert ["spool-disabled"] == trouble.kinds
        assert "ENOTDIR" in trouble.messages[0]

    def test_full_disk_reports_once_and_keeps_what_was_written(self, tmp_path: Path) -> None:
        """A file size limit (what a full disk does to a write) switches the spool off cleanly."""

        def fill() -> tuple[int, list[str], bool]:
            resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
            trouble = Trouble()
            spool = Spool.open(tmp_path, sync="always", on_trouble=trouble)
            written = 0
            for i in range(100):
                if spool.append(lines(i * 10, 10)) is None:
                    break
                written += 1
            for i in range(10):  # more appends after the failure: no exception, no report
                assert spool.append(lines(i, 1)) is None
            crash(spool)
            return written, trouble.kinds, "EFBIG" in " ".join(trouble.messages)

        written, kinds, named = in_child(fill)
        assert 0 < written < 100
        assert ["spool-disabled"] == kinds
        assert named
        # The partial record was taken back: what was written replays, nothing torn.
        spool = Spool.open(tmp_path)
        assert lines(0, 10 * written) == drain(spool)
        assert 0 == spool.torn

    def test_failing_ack_write_disables_without_raising(self, tmp_path: Path) -> None:
        """An ack that cannot be written is reported; the spool goes off, the caller goes on."""

        def run() -> list[str]:
            trouble = Trouble()
            spool = Spool.open(tmp_path, on_trouble=trouble)
            batch = spool.append(lines(0, 10))
            assert batch is not None
            size = segments(tmp_path)[0].stat().st_size
            resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
            spool.ack(batch)
            assert not spool.enabled
            return trouble.kinds

        assert ["spool-disabled"] == in_child(run)

    def test_unexpected_error_is_contained(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A bug inside the spool switches it off, reported once; the caller sees no exception."""

        def broken(*args: object) -> list[bytes]:
            raise ValueError("a bug")

        trouble = Trouble()
        spool = Spool.open(tmp_path, on_trouble=trouble)
        monkeypatch.setattr(fmt, "batch_frame", broken)
        assert None is spool.append(lines(0, 1))
        assert None is spool.append(lines(0, 1))
        assert not spool.enabled
        assert ["spool-error"] == trouble.kinds
        assert "ValueError" in trouble.messages[0]

    def test_broken_trouble_callback_is_contained(self, tmp_path: Path) -> None:
        """A reporting callback that raises does not reach the caller."""

        def broken(kind: str, message: str) -> None:
            raise RuntimeError("boom")

        (tmp_path / "f").write_text("a file, not a folder")
        spool = Spool.open(tmp_path / "f" / "g", on_trouble=broken)
        assert not spool.enabled
        assert None is spool.append(lines(0, 1))


def _worker(folder: str, start: int, acked: int, unacked: int, conn: Connection) -> None:
    """A process that spools lines, acks some, says which, and waits to be killed or asked."""
    spool = Spool.open(folder)
    for i in range(acked + unacked):
        batch = spool.append(lines(start + i * 10, 10))
        assert batch is not None
        if i < acked:
            spool.ack(batch)
    conn.send("ready")
    while True:
        command = conn.recv()
        if command == "adopt":
            conn.send((spool.adopt(), drain(spool)))
        else:
            return


class TestProcesses:
    def test_three_processes_two_killed_third_adopts_both(self, tmp_path: Path) -> None:
        """Two SIGKILLed writers' unacked lines reach the third exactly once; none while alive."""
        pipes = [_FORK.Pipe() for _ in range(3)]
        procs = [
            _FORK.Process(target=_worker, args=(str(tmp_path), n * 10_000, 3, 5, pipes[n][1]))
            for n in range(3)
        ]
        for p in procs:
            p.start()
        try:
            for ours, _ in pipes:
                assert ours.poll(_ANSWER) and "ready" == ours.recv()
            third = pipes[2][0]
            third.send("adopt")
            assert third.poll(_ANSWER)
            assert (0, []) == third.recv()  # both others alive: nothing to take
            for p in procs[:2]:
                os.kill(p.pid or 0, signal.SIGKILL)
                p.join(_ANSWER)
            third.send("adopt")
            assert third.poll(_ANSWER)
            adopted, got = third.recv()
            assert 2 == adopted
            expected = lines(0 + 30, 50) + lines(10_000 + 30, 50)
            assert sorted(expected) == sorted(got)
            assert len(got) == len(set(got))
        finally:
            for p in procs:
                if p.is_alive():
                    p.kill()
                p.join(_ANSWER)

    def test_forked_child_never_adopts_its_living_parents_segments(self, tmp_path: Path) -> None:
        """A child gets the parent's batches only once the parent's descriptors are gone."""
        parent = Spool.open(tmp_path)
        parent.append(lines(0, 10))
        to_child, from_parent = _FORK.Pipe()

        def child() -> tuple[int, list[bytes], int, list[bytes], bool]:
            inherited = parent.append(lines(100, 1))  # the parent's object: let go, not used
            own = Spool.open(tmp_path)
            while_alive = own.adopt(), drain(own)
            from_parent.send("checked")
            assert from_parent.poll(_ANSWER)
            from_parent.recv()  # the parent has let go of its segment
            return (*while_alive, own.adopt(), drain(own), inherited is None)

        parent_end, child_end = _FORK.Pipe(duplex=False)

        def run() -> None:
            child_end.send(child())

        proc = _FORK.Process(target=run)
        proc.start()
        try:
            assert to_child.poll(_ANSWER) and "checked" == to_child.recv()
            crash(parent)  # the parent dies: its lock goes with its descriptor
            to_child.send("go")
            assert parent_end.poll(_ANSWER)
            assert (0, [], 1, lines(0, 10), True) == parent_end.recv()
        finally:
            proc.join(_ANSWER)

    def test_tick_adopts_what_died_since(self, tmp_path: Path) -> None:
        """A segment orphaned after this spool opened is adopted by tick() when a rescan is due."""
        from logdna_client._spool._store import RESCAN_INTERVAL

        now = [0.0]
        spool = Spool.open(tmp_path, monotonic=lambda: now[0])
        write_segment(tmp_path, 2)
        spool.tick()
        assert not spool.backlog  # not looked yet
        now[0] += RESCAN_INTERVAL
        spool.tick()
        assert spool.backlog
        assert lines(0, 20) == drain(spool)

    def test_inherited_spool_is_let_go_in_the_child(self, tmp_path: Path) -> None:
        """Using the parent's Spool object in a child writes nothing into the parent's files."""
        spool = Spool.open(tmp_path)
        spool.append(lines(0, 10))
        (path,) = segments(tmp_path)
        before = path.read_bytes()

        def child() -> tuple[bool, bool]:
            return spool.append(lines(10, 1)) is None, spool.next_replay_batch(1000) is None

        assert (True, True) == in_child(child)
        assert before == path.read_bytes()
        assert spool.append(lines(10, 1)) is not None  # the parent carries on


_REPLAY_SCRIPT = textwrap.dedent(
    """
    import sys

    def peak_rss_kib():
        # VmHWM, not ru_maxrss: that one starts at the forking parent's peak.
        with open("/proc/self/status") as fh:
            return next(int(l.split()[1]) for l in fh if l.startswith("VmHWM:"))

    from logdna_client._spool import Spool
    folder, mode = sys.argv[1], sys.argv[2]
    if mode == "write":
        spool = Spool.open(folder, max_bytes=1 << 40, sync="none")
        line = b',{"line":"%08d","level":"INFO","app":"api","timestamp":1700000000000,'
        line += b'"meta":{"path":"/orders/42","status":200,"ms":12}}'
        n = 0
        total = int(sys.argv[3])
        while n < total:
            spool.append([line % i for i in range(n, n + 10_000)])
            n += 10_000
        spool.forget_after_fork()  # exit as if killed: nothing acked, nothing cleaned
    else:
        spool = Spool.open(folder, max_bytes=1 << 40, sync="none")
        before = peak_rss_kib()
        count = 0
        expect = 0
        while (batch := spool.next_replay_batch(2 << 20)) is not None:
            for entry in batch.entries:
                assert entry[10:18] == b"%08d" % expect, (entry, expect)
                expect += 1
            count += len(batch.entries)
            spool.ack(batch.id)
        spool.close()
        after = peak_rss_kib()
        print(count, before, after)
    """
)


class TestLargeBacklog:
    def test_replay_of_200_mib_keeps_memory_bounded(self, tmp_path: Path) -> None:
        """Replaying a 200 MiB backlog grows peak RSS by under 24 MiB; every line once, in order."""
        total = 1_700_000  # lines of about 127 bytes: a little over 200 MiB on disk
        env = {**os.environ, "PYTHONPATH": os.getcwd()}
        run = [sys.executable, "-c", _REPLAY_SCRIPT, str(tmp_path)]
        subprocess.run([*run, "write", str(total)], check=True, env=env, timeout=300)
        on_disk = sum(f.stat().st_size for f in segments(tmp_path))
        assert on_disk > 200 << 20
        out = subprocess.run(
            [*run, "replay"], check=True, env=env, timeout=300, capture_output=True, text=True
        ).stdout.split()
        count, before, after = map(int, out)
        assert total == count
        assert (after - before) < 24 * 1024  # KiB: a few batches in flight, not a segment
        assert [] == segments(tmp_path)


def _send(transport: Any, entries: list[bytes]) -> bool:
    from logdna_client._sender import gzip_entries
    from logdna_client._transport import Kind

    outcome = transport.send(gzip_entries(entries), gzipped=True, timeout=5.0)
    return outcome.kind in (Kind.OK, Kind.PARTIAL)


def _reference_sender(folder: str, url: str, conn: Connection) -> None:
    """The sender's use of the spool in miniature: 2,000 lines/s, each batch spooled before it is
    sent, acked after a 2xx, released on failure; the backlog goes first, oldest first."""
    import threading
    import time

    from logdna_client._config import Config
    from logdna_client._transport import HTTPTransport

    spool = Spool.open(folder)
    transport = HTTPTransport(Config(url=url))
    pace = threading.Event()  # never set: the loop's pace, not a wait for anything
    started = time.time()
    logged = 0
    milestones = [1000, 5000]
    while True:
        due = int((time.time() - started) * 2000)
        batch = [b',{"line":"%d %.3f"}' % (i, time.time()) for i in range(logged, due)]
        logged = due
        if batch:
            batch_id = spool.append(batch)
            assert batch_id is not None
            if spool.backlog or not _send(transport, batch):
                spool.release(batch_id)  # safe on disk, behind what is older
            else:
                spool.ack(batch_id)
        while spool.backlog and (replay := spool.next_replay_batch(1 << 20)) is not None:
            if not _send(transport, replay.entries):
                spool.release(replay.id)
                break
            spool.ack(replay.id)
        spool.tick()
        if milestones and logged >= milestones[0]:
            conn.send(milestones.pop(0))
        pace.wait(0.05)


class TestReferenceSender:
    def test_kill_9_during_an_outage_loses_nothing(self, tmp_path: Path, server: Any) -> None:
        """Logging at 2,000 lines/s, an outage, kill -9: a new process delivers the rest.

        Every line spooled before the kill arrives (the child spools every 0.05 s), each
        once, apart from at most the one batch in flight at the kill.
        """

        ours, theirs = _FORK.Pipe()
        proc = _FORK.Process(target=_reference_sender, args=(str(tmp_path), server.url, theirs))
        proc.start()
        try:
            assert ours.poll(_ANSWER) and 1000 == ours.recv()
            server.fail_next(10**9, status=503)  # the outage begins
            assert ours.poll(_ANSWER) and 5000 == ours.recv()
            os.kill(proc.pid or 0, signal.SIGKILL)
        finally:
            proc.join(_ANSWER)
        live = len(server.lines)
        server.fail_next(0)
        from logdna_client._config import Config
        from logdna_client._transport import HTTPTransport

        transport = HTTPTransport(Config(url=server.url))
        spool = Spool.open(tmp_path)
        while (replay := spool.next_replay_batch(1 << 20)) is not None:
            assert _send(transport, replay.entries)
            spool.ack(replay.id)
        spool.close()
        counts = Counter(int(entry["line"].split()[0]) for entry in server.lines)
        arrived = set(counts)
        latest = max(arrived)
        assert live >= 900  # delivered live before the outage
        assert set(range(latest + 1)) == arrived  # no gap: lines are numbered as logged
        # The child says 5000 only once those were spooled; the kill follows at once, so the
        # lines lost, if any, are the last moments' (0.05 s), not those of the last 0.5 s.
        assert latest >= 4999
        twice = [n for n, c in counts.items() if c > 1]
        assert len(twice) <= 200  # one batch in flight at most (0.05 s at 2,000 lines/s)
        assert all(c <= 2 for c in counts.values())
        assert [] == segments(tmp_path)


# -- the model: any appends, acks, releases, replays, torn writes and restarts


class SpoolMachine(RuleBasedStateMachine):
    """Checks, against a model, that no pending line is lost and none comes twice.

    A *pending* line was appended (the append returned) and not acked: it is
    with the caller or must come back from replay exactly once. An *acked*
    line must never come back. A crash may tear the last write at any byte:
    the append or ack it belonged to becomes uncertain (its lines may come
    back once, or, for an append, not at all). A *foreign* line was left in the
    folder by a dead process of another destination: never handed out here, and
    delivered, once, by a process of that destination at the end.
    """

    out = Bundle("out")
    OTHER = fingerprint(Secret("another key"), "https://elsewhere.example/logs/ingest")

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self.folder = tempfile.mkdtemp(prefix="spool-model-")
        self.spool = self._open()
        self.next_line = 0
        self.pending: set[bytes] = set()
        self.acked: set[bytes] = set()
        self.maybe: set[bytes] = set()
        self.with_caller: set[bytes] = set()
        self.last_write: tuple[str, int, int, str, list[bytes]] | None = None
        self.handed: dict[BatchId, list[bytes]] = {}
        self.foreign: set[bytes] = set()
        self.segment_of: dict[bytes, str] = {}  # each line's segment
        self.next_foreign = 10**6

    def teardown(self) -> None:
        import shutil

        try:
            crash(self.spool)
            self.spool = self._open()
            self.check_drain()
            other = self._open(self.OTHER)
            got = drain(other)
            other.close()
            assert (sorted(self.foreign), len(got)) == (sorted(got), len(set(got)))
        finally:
            crash(self.spool)
            shutil.rmtree(self.folder, ignore_errors=True)

    def _open(self, destination: bytes = UNNAMED) -> Spool:
        """This process's spool on the folder (again, after a crash), or, given another
        destination, a process's sending elsewhere."""
        return Spool.open(self.folder, segment_bytes=700, sync="none", destination=destination)

    def _size(self, segment: str) -> int:
        try:
            return os.path.getsize(os.path.join(self.folder, segment))
        except OSError:
            return -1

    @rule(target=out, count=st.integers(1, 8))
    def append(self, count: int) -> BatchId:
        new = lines(self.next_line, count)
        self.next_line += count
        batch = self.spool.append(new)
        assert batch is not None
        self.pending.update(new)
        self.with_caller.update(new)
        self.handed[batch] = new
        self.segment_of.update(dict.fromkeys(new, batch.segment))
        self.last_write = (batch.segment, batch.offset, self._size(batch.segment), "append", new)
        return batch

    @rule(batch=consumes(out))
    def ack(self, batch: BatchId) -> None:
        if batch not in self.handed:  # from before a restart: that process is gone
            return
        got = self.handed.pop(batch)
        before = self._size(batch.segment)
        self.spool.ack(batch)
        for line in got:
            self.pending.discard(line)
            self.maybe.discard(line)
            self.with_caller.discard(line)
            self.acked.add(line)
        self.last_write = (batch.segment, before, self._size(batch.segment), "ack", got)

    @rule(batch=consumes(out))
    def release(self, batch: BatchId) -> None:
        if batch not in self.handed:
            return
        self.spool.release(batch)
        self.with_caller.difference_update(self.handed.pop(batch))

    @rule(target=out, max_bytes=st.integers(1, 2000))
    def replay(self, max_bytes: int) -> BatchId:
        batch = self.spool.next_replay_batch(max_bytes)
        if batch is None:
            return BatchId("none", 0, 0, 0, 0, False)
        self.check_handed_out(batch.entries)
        self.handed[batch.id] = batch.entries
        return batch.id

    @rule(count=st.integers(1, 8), acked=st.integers(0, 2))
    def other_destination(self, count: int, acked: int) -> None:
        """A process of another destination writes batches to the folder, acks some, dies."""
        other = self._open(self.OTHER)
        for n in range(3):
            new = lines(self.next_foreign, count)
            self.next_foreign += count
            batch = other.append(new)
            assert batch is not None
            if n < acked:
                other.ack(batch)
            else:
                self.foreign.update(new)
        crash(other)

    def check_handed_out(self, entries: list[bytes]) -> None:
        for line in entries:
            assert line not in self.foreign, line  # another destination's: never ours
            assert line not in self.acked, line
            assert line not in self.with_caller, line  # handed out twice
            assert line in self.pending or line in self.maybe, line
            if line in self.maybe:
                self.maybe.discard(line)
                self.pending.add(line)
            self.with_caller.add(line)

    @rule()
    def drain_live(self) -> None:
        """Without a restart, replay hands out every pending line not with the caller, but
        for those in dead processes' segments not adopted yet: with MAX_ADOPTED of theirs
        held and every batch of them out (this rule acks none), no more are adopted (and
        so opened) until one is done."""
        from logdna_client._spool import _store

        expected = self.pending - self.with_caller
        seen: list[bytes] = []
        taken = []
        while (batch := self.spool.next_replay_batch(1 << 20)) is not None:
            self.check_handed_out(batch.entries)
            taken.append(batch)
            seen += batch.entries
        held = self.spool._segments
        if sum(not seg.own for seg in held.values()) >= _store.MAX_ADOPTED:
            expected = {line for line in expected if self.segment_of.get(line) in held}
        for batch in taken:  # given back: handed out again by the next replay
            self.spool.release(batch.id)
            self.with_caller.difference_update(batch.entries)
        assert set() == expected - set(seen)

    @rule(tear=st.floats(0, 1))
    def crash(self, tear: float) -> None:
        """kill -9, the last write torn at a chosen byte; then a new process opens the folder."""
        crash(self.spool)
        if self.last_write is not None:
            segment, start, end, kind, got = self.last_write
            path = os.path.join(self.folder, segment)
            if end > start and os.path.exists(path):
                os.truncate(path, start + int((end - start) * tear))
                if kind == "append":
                    self.pending.difference_update(got)
                    self.maybe.update(got)
                else:
                    self.acked.difference_update(got)
                    self.maybe.update(got)
        self.last_write = None
        self.with_caller.clear()
        self.handed.clear()
        self.spool = self._open()

    @rule()
    def crash_and_drain(self) -> None:
        """kill -9 with no torn write; the next process delivers every pending line once."""
        crash(self.spool)
        self.spool = self._open()
        self.check_drain()

    def check_drain(self) -> None:
        seen: list[bytes] = []
        while (batch := self.spool.next_replay_batch(1 << 20)) is not None:
            seen += batch.entries
            self.spool.ack(batch.id)
        assert [] == [line for line, n in Counter(seen).items() if n > 1]
        assert set() == set(seen) & self.acked
        assert set() == self.pending - set(seen)  # nothing pending lost
        assert set(seen) <= self.pending | self.maybe
        numbers = [int(line.split(b'"')[3]) for line in seen]
        assert numbers == sorted(numbers)  # oldest first (whatever a clock did)
        self.acked.update(seen)
        self.pending.clear()
        self.maybe.clear()
        self.with_caller.clear()
        self.handed.clear()
        self.last_write = None


#: How long the spool models run (this one and test_spool_hostile.py's).
MODEL_SETTINGS = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSpoolModel = SpoolMachine.TestCase
TestSpoolModel.settings = MODEL_SETTINGS


class TestConfig:
    """The spool's options in Config (kept here, beside the spool, not in test_config.py)."""

    URL = "http://localhost:9/logs/ingest"

    def test_defaults(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Off unless a folder is given; interval sync, 256 MiB, seven days."""
        from logdna_client._config import Config

        monkeypatch.delenv("LOGDNA_SPOOL_DIR", raising=False)
        config = Config(url=self.URL)
        assert (None, "interval", 256 << 20, 7 * 86400.0) == (
            config.spool_dir,
            config.spool_sync,
            config.max_spool_bytes,
            config.max_spool_age,
        )

    def test_strings_and_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """dictConfig strings are coerced; the folder comes from LOGDNA_SPOOL_DIR, ~ expanded."""
        from logdna_client._config import Config

        monkeypatch.setenv("LOGDNA_SPOOL_DIR", "~/spool")
        monkeypatch.setenv("HOME", "/home/app")
        config = Config(
            url=self.URL, spool_sync=" Always ", max_spool_bytes="1GiB", max_spool_age="3600"
        )
        assert ("/home/app/spool", "always", 1 << 30, 3600.0) == (
            config.spool_dir,
            config.spool_sync,
            config.max_spool_bytes,
            config.max_spool_age,
        )
        assert None is Config(url=self.URL, spool_dir="").spool_dir  # explicit "" turns it off

    @pytest.mark.parametrize(
        ("option", "value"),
        [
            ("spool_sync", "sometimes"),
            ("max_spool_bytes", "10"),
            ("spool_dir", 5),
            ("max_spool_age", "0"),
        ],
    )
    def test_bad_values_name_the_option(self, option: str, value: object) -> None:
        """A bad spool option is a ConfigurationError that names it."""
        from logdna_client import ConfigurationError
        from logdna_client._config import Config

        with pytest.raises(ConfigurationError, match=f"^{option}:"):
            Config(url=self.URL, **{option: value})

    def test_a_cap_too_small_for_the_batches_is_refused(self) -> None:
        """With a spool_dir, max_spool_bytes must hold 4 batches (the one out, on disk, and
        those behind it): 1 MiB (the documented minimum) for 2 MiB batches is refused,
        naming both options (H188: it was taken, and 1,404 of 50,000 lines reached the
        disk). The same cap with smaller batches, or without a folder, is taken."""
        from logdna_client import ConfigurationError
        from logdna_client._config import Config

        with pytest.raises(ConfigurationError, match=r"^max_spool_bytes: .*max_batch_bytes"):
            Config(url=self.URL, spool_dir="/tmp/s", max_spool_bytes="1MiB")
        with pytest.raises(ConfigurationError, match=r"^max_spool_bytes:"):
            Config(url=self.URL, spool_dir="/tmp/s", max_spool_bytes="8MiB", max_batch_bytes="3MiB")
        assert 1 << 20 == Config(url=self.URL, spool_dir="/tmp/s", max_spool_bytes="1MiB",
                                 max_batch_bytes="256KiB").max_spool_bytes  # fmt: skip
        assert 1 << 20 == Config(url=self.URL, max_spool_bytes="1MiB").max_spool_bytes


class TestCli:
    """``logdna-client spool ls|verify|replay|purge``."""

    @staticmethod
    def run(*argv: str) -> tuple[int, str, str]:
        import io

        from logdna_client._cli import main

        out, err = io.StringIO(), io.StringIO()
        status = main(list(argv), out=out, err=err)
        return status, out.getvalue(), err.getvalue()

    def test_a_segment_it_may_not_open_is_said_and_fails_replay(
        self, tmp_path: Path, server: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A dead process's segment this one may not open for writing (another user's:
        the open is refused with EACCES, injected here, as root opens anything): the
        spool says so once, naming the segment and what to do, and replay exits 1, the
        lines still on disk. Before (H188): skipped as if a live process held it, without
        a word; replay said "replayed 0 line(s)" and exited 0, so `replay && purge`
        went on."""
        import errno

        from logdna_client._spool import _segment

        monkeypatch.delenv("LOGDNA_INGESTION_KEY", raising=False)
        path = write_segment(tmp_path, 3, destination=fingerprint(None, server.url))
        real = _segment.open_regular

        def refused(name: str, flags: int) -> int:
            if name == str(path) and flags & os.O_RDWR:
                raise PermissionError(errno.EACCES, "Permission denied", name)
            return real(name, flags)

        monkeypatch.setattr(_segment, "open_regular", refused)
        said: list[tuple[str, str]] = []
        spool = Spool.open(
            tmp_path, destination=fingerprint(None, server.url),
            on_trouble=lambda kind, message: said.append((kind, message)),
        )  # fmt: skip
        assert spool.next_replay_batch(1 << 20) is None
        spool.close()
        [(kind, message)] = said
        assert "spool-refused" == kind
        assert f"cannot open spool segment {path.name}" in message
        assert "Permission denied" in message and "read and write access" in message
        status, out, err = self.run("spool", "replay", "--spool-dir", str(tmp_path),
                                    "--url", server.url)  # fmt: skip
        assert 1 == status, (out, err)
        assert "cannot open spool segment" in err
        assert [] == server.lines and path.exists()

    def test_replay_delivers_orphaned_lines_once_and_leaves_live_ones(
        self, tmp_path: Path, server: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Replay sends what dead processes left, marks it done, and never touches a live one."""
        monkeypatch.delenv("LOGDNA_INGESTION_KEY", raising=False)
        live = Spool.open(tmp_path, destination=fingerprint(None, server.url))
        live.append(lines(1000, 3))
        write_segment(tmp_path, 5, destination=fingerprint(None, server.url))
        status, out, _ = self.run("spool", "replay", "--spool-dir", str(tmp_path),
                                  "--url", server.url)  # fmt: skip
        assert 0 == status
        assert "replayed 50 line(s)" in out
        assert [str(i) for i in range(50)] == [entry["line"] for entry in server.lines]
        assert 1 == len(segments(tmp_path))  # the live one
        status, out, _ = self.run("spool", "replay", "--spool-dir", str(tmp_path),
                                  "--url", server.url)  # fmt: skip
        assert (0, 50) == (status, len(server.lines))
        live.close()

    def test_replay_gives_up_on_a_failing_service_and_keeps_the_lines(
        self, tmp_path: Path, server: Any
    ) -> None:
        """A service that keeps failing ends replay with status 1; the lines stay on disk."""
        mine = fingerprint(None, server.url)
        write_segment(tmp_path, 2, destination=mine)
        server.fail_next(1000, status=503)
        status, _, err = self.run("spool", "replay", "--spool-dir", str(tmp_path),
                                  "--url", server.url, "--timeout", "0.3")  # fmt: skip
        assert 1 == status
        assert "giving up" in err
        assert lines(0, 20) == drain(Spool.open(tmp_path, destination=mine))

    def test_replay_shows_progress_on_a_terminal(self, tmp_path: Path, server: Any) -> None:
        """On a terminal, replay rewrites one progress line as batches go through."""
        import io

        from logdna_client._cli import main

        class Terminal(io.StringIO):
            def isatty(self) -> bool:
                return True

        write_segment(tmp_path, 3, destination=fingerprint(None, server.url))
        err = Terminal()
        argv = ["spool", "replay", "--spool-dir", str(tmp_path), "--url", server.url]
        assert 0 == main(argv, out=io.StringIO(), err=err)
        assert err.getvalue().endswith("\rreplayed 30/30 line(s)\n")

    def test_replay_progress_counts_every_segment_not_only_those_held(
        self, tmp_path: Path, server: Any
    ) -> None:
        """The progress total is the whole backlog: a process holds at most MAX_ADOPTED
        segments at a time, and the total counted only those (70 lines shown as 70/64)."""
        import io

        from logdna_client._cli import main
        from logdna_client._spool._store import MAX_ADOPTED

        class Terminal(io.StringIO):
            def isatty(self) -> bool:
                return True

        count = MAX_ADOPTED + 6
        writer = Spool.open(tmp_path, segment_bytes=1, destination=fingerprint(None, server.url))
        for i in range(count):  # a segment per batch: each is full at once
            assert writer.append(lines(i, 1)) is not None
        crash(writer)
        assert count == len(segments(tmp_path))
        err = Terminal()
        argv = ["spool", "replay", "--spool-dir", str(tmp_path), "--url", server.url]
        assert 0 == main(argv, out=io.StringIO(), err=err)
        assert f"replayed {count}/{count} line(s)" == err.getvalue().split("\r")[-1].strip()
        assert count == len(server.lines)

    def test_replay_sends_only_the_given_keys_segments(self, tmp_path: Path, server: Any) -> None:
        """With --key and --url, replay sends what was written for them, leaves other
        destinations' and format 1 ones (whose is not recorded; it sent those with any
        key) and says so; --any-destination sends those too, with the key given."""
        ours, theirs = (
            fingerprint(Secret("key-a"), server.url),
            fingerprint(Secret("key-b"), server.url),
        )
        write_segment(tmp_path, 2, destination=ours)
        other = write_segment(tmp_path, 1, per_batch=5, destination=theirs)
        old = v1_segment(tmp_path, 1000, [[b',{"line":"old"}']])
        base = ["spool", "replay", "--spool-dir", str(tmp_path), "--url", server.url]
        status, out, err = self.run(*base, "--key", "key-a")
        assert 0 == status
        assert [str(i) for i in range(20)] == [e["line"] for e in server.lines]
        assert "left 2 segment(s) written for other keys or URLs, or by format 1" in out
        assert short(theirs) in err  # the report, with the fingerprint spool ls shows
        assert "format 1" in err and "--any-destination" in err
        assert sorted([other, old]) == sorted(segments(tmp_path))
        status, out, _ = self.run(*base, "--key", "key-c", "--any-destination")
        assert (0, 26) == (status, len(server.lines))
        assert [] == segments(tmp_path)

    @pytest.mark.parametrize("wrong", ["key", "protocol"])
    def test_replay_gives_up_at_once_when_only_other_settings_help(
        self, tmp_path: Path, wrong: str
    ) -> None:
        """A refused key (after a key change the old key may be revoked) or a URL whose
        server does not speak HTTP/1.1 is no passing failure: replay says so and stops at
        the first answer, leaving the lines on disk, as send and pipe do; it retried
        until --timeout."""
        from logdna_client._devserver import DevServer
        from tests._claims_servers import scripted_server
        from tests.test_hostile_endpoints import NOT_HTTP_1_1

        h2_preface, _ = NOT_HTTP_1_1["h2"]
        key = Secret("a-revoked-key")
        with (
            DevServer(key="the-right-key")
            if wrong == "key"
            else scripted_server(lambda r, sock, e: sock.sendall(h2_preface))
        ) as server:
            write_segment(tmp_path, 2, destination=fingerprint(key, server.url))
            before = {p: p.read_bytes() for p in segments(tmp_path)}
            argv = ["--url", server.url, "--key", key.reveal(), "--timeout", "5"]
            status, _, err = self.run("spool", "replay", "--spool-dir", str(tmp_path), *argv)
            requests = len(server.requests)
        assert (1, 1) == (status, requests)
        said = "key was refused" if wrong == "key" else "does not speak HTTP/1.1"
        assert said in err and "a-revoked-key" not in err
        assert before == {p: p.read_bytes() for p in segments(tmp_path)}

    def test_ls_shows_each_segments_destination(self, tmp_path: Path) -> None:
        """ls shows a short fingerprint per segment, marks those of the key and URL given
        (flags or environment) as yours, and never shows a key."""
        write_segment(tmp_path, 1, destination=MINE)
        write_segment(tmp_path, 2, destination=THEIRS)
        v1_segment(tmp_path, 1000, [lines(0, 3)])
        status, out, _ = self.run("spool", "ls", "--spool-dir", str(tmp_path), "--key",
                                  "key-of-app-a", "--url", URL)  # fmt: skip
        assert 0 == status
        assert f"{short(MINE)} yours" in out and f"{short(THEIRS)} other" in out
        assert "format 1" in out
        assert "yours (" + short(MINE) + ": this key and URL): 10 line(s) waiting" in out
        assert "key-of-app" not in out

    def test_ls_and_purge_with_otel_take_an_otlp_apps_destination(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With --otel, ls and purge take the endpoint and headers OpenTelemetry's
        variables give, as an OTLP app does: the app's segments are its own, another
        tenant's on the same endpoint are not. Without it those variables (often set
        for a whole pod) are no LogDNA app's: its segments stay its own (H202: purge
        there deleted the OTLP app's backlog and left the LogDNA app's)."""
        from logdna_client._config import Config
        from logdna_client._spool import destination

        for name in ("LOGDNA_INGESTION_KEY", "LOGDNA_URL"):
            monkeypatch.delenv(name, raising=False)
        write_segment(tmp_path, 1, destination=MINE)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
        made = {}
        for tenant in ("B", "A"):
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"x-honeycomb-team=KEY-OF-{tenant}")
            made[tenant] = destination(Config(protocol="otlp"))
            write_segment(tmp_path, 2, destination=made[tenant])
        monkeypatch.setenv("LOGDNA_INGESTION_KEY", "key-of-app-a")  # the LogDNA app's
        monkeypatch.setenv("LOGDNA_URL", URL)
        status, out, _ = self.run("spool", "ls", "--spool-dir", str(tmp_path))
        assert 0 == status
        assert f"{short(MINE)} yours" in out and f"{short(made['A'])} other" in out
        monkeypatch.delenv("LOGDNA_INGESTION_KEY")
        monkeypatch.delenv("LOGDNA_URL")
        status, out, _ = self.run("spool", "ls", "--spool-dir", str(tmp_path), "--otel")
        assert 0 == status
        assert f"{short(made['A'])} yours" in out and f"{short(made['B'])} other" in out
        assert f"{short(MINE)} other" in out
        assert "KEY-OF" not in out
        status, out, _ = self.run("spool", "purge", "--spool-dir", str(tmp_path), "--otel", "--yes")
        assert 0 == status and "deleted: 1 file(s), 20 line(s)" in out, out
        status, _, err = self.run("spool", "ls", "--spool-dir", str(tmp_path), "--otel",
                                  "--url", URL)  # fmt: skip
        assert 2 == status and "--otel and --url" in err

    def test_verify_tells_torn_tails_from_corruption(self, tmp_path: Path) -> None:
        """verify exits 0 with a torn tail and 1 with a flipped byte, naming the offset."""
        path = write_segment(tmp_path, 3)
        offsets = record_offsets(path)
        with path.open("ab") as fh:
            fh.write(b"\xd5\x1e\x50\x00")
        status, out, _ = self.run("spool", "verify", "--spool-dir", str(tmp_path))
        assert 0 == status and "torn tail" in out
        data = bytearray(path.read_bytes())
        data[offsets[1] + 30] ^= 1
        path.write_bytes(bytes(data))
        status, out, _ = self.run("spool", "verify", "--spool-dir", str(tmp_path))
        assert 1 == status
        assert f"failure at byte {offsets[1]}" in out

    def test_verify_ls_and_purge_count_what_follows_damage(self, tmp_path: Path) -> None:
        """A segment damaged in its middle: verify says what adopting it salvages and what
        it loses; ls counts the lines after the damage as waiting (they are delivered),
        and purge as given up; none of them changes the file."""
        path = write_segment(tmp_path, 4)
        offsets = record_offsets(path)
        flip(path, offsets[1] + 100)
        damaged = path.read_bytes()
        status, out, _ = self.run("spool", "verify", "--spool-dir", str(tmp_path))
        assert 1 == status
        assert f"3 record(s) OK, 30 line(s) waiting; CRC/format failure at byte {offsets[1]}" in out
        size = offsets[2] - offsets[1]
        said = (f"when adopted, 20 line(s) after the damage are re-queued, {size} damaged "
                "byte(s) go to quarantine, 10 line(s) in damaged records are lost")  # fmt: skip
        assert said in out
        status, out, _ = self.run("spool", "ls", "--spool-dir", str(tmp_path))
        assert "30 line(s) waiting" in out and "DAMAGED" in out
        status, out, _ = self.run("spool", "purge", "--spool-dir", str(tmp_path),
                                  "--any-destination")  # fmt: skip
        assert "would delete (pass --yes): 1 file(s), 30 line(s) never delivered" in out
        assert damaged == path.read_bytes()

    def test_a_file_named_quarantine_is_no_traceback(self, tmp_path: Path) -> None:
        """ls and purge with a file where the quarantine folder goes: it holds no
        quarantine pieces, and the segments are listed (H192: NotADirectoryError)."""
        write_segment(tmp_path, 3)
        (tmp_path / "quarantine").write_text("not a folder")
        status, out, err = self.run("spool", "ls", "--spool-dir", str(tmp_path))
        assert (0, "") == (status, err)
        assert "30 line(s) waiting" in out
        status, out, err = self.run("spool", "purge", "--spool-dir", str(tmp_path),
                                    "--any-destination")  # fmt: skip
        assert "Traceback" not in err
        assert "1 file(s), 30 line(s) never delivered" in out

    def test_an_otlp_apps_backlog(self, tmp_path: Path) -> None:
        """ls and purge find an OTLP app's segments given its key and /v1/logs URL (H183:
        the check that refuses such a URL without protocol="otlp" made both refuse it);
        replay, which speaks the LogDNA API only, refuses it, saying so (H182: it sent
        the LogDNA body there, answered 200, stored nothing, and deleted the backlog)."""
        from logdna_client._config import Config
        from logdna_client._spool import destination as destination_of

        url = "http://127.0.0.1:9/v1/logs"
        app = Config(protocol="otlp", url=url, key="key-of-otlp-app", handle_signals=False)
        write_segment(tmp_path, 2, destination=destination_of(app))
        given = ["--spool-dir", str(tmp_path), "--key", "key-of-otlp-app", "--url", url]
        status, out, _ = self.run("spool", "ls", *given)
        assert 0 == status
        assert f"{short(destination_of(app))} yours" in out
        # (H184: it said "replayable", though replay refuses the URL)
        assert "replayable" not in out
        assert "orphaned (its app sends it on its next start; replay cannot: OTLP)" in out
        status, _, err = self.run("spool", "replay", *given)
        assert 2 == status
        assert "protocol='otlp'" in err and "replay" in err
        assert 1 == len(segments(tmp_path))
        status, out, _ = self.run("spool", "purge", *given, "--yes")
        assert "deleted: 1 file(s), 20 line(s)" in out
        assert [] == segments(tmp_path)

    def test_ls_and_purge(self, tmp_path: Path) -> None:
        """ls counts waiting lines; purge deletes only with --yes, never a live process's."""
        live = Spool.open(tmp_path, destination=MINE)
        live.append(lines(100, 4))
        write_segment(tmp_path, 2, destination=MINE)
        mine = ["--spool-dir", str(tmp_path), "--key", "key-of-app-a", "--url", URL]
        status, out, _ = self.run("spool", "ls", *mine)
        assert 0 == status
        assert "24 line(s) waiting" in out
        assert "orphaned" in out and "live process" in out
        status, out, _ = self.run("spool", "purge", *mine)
        assert "would delete" in out and 2 == len(segments(tmp_path))
        status, out, _ = self.run("spool", "purge", *mine, "--yes")
        assert "deleted: 1 file(s), 20 line(s)" in out
        assert 1 == len(segments(tmp_path))
        live.close()

    def test_purge_deletes_only_the_given_destinations_segments(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """purge deletes what no live process holds of the key and URL given (flags or
        environment, as replay takes them), and says what it left: other destinations'
        segments, format 1 ones (whose is not recorded) and quarantine files go only with
        --any-destination. Without a key it deletes nothing (it deleted every app's)."""
        monkeypatch.delenv("LOGDNA_INGESTION_KEY", raising=False)
        monkeypatch.delenv("LOGDNA_URL", raising=False)
        live = Spool.open(tmp_path, destination=MINE)
        live.append(lines(100, 4))
        write_segment(tmp_path, 1, destination=MINE)
        theirs = write_segment(tmp_path, 2, destination=THEIRS)
        old = v1_segment(tmp_path, 1000, [lines(0, 3)])
        (tmp_path / "quarantine").mkdir()
        (tmp_path / "quarantine" / "seg-1.seg.44.bad").write_bytes(b"damaged")
        kept = {p: p.read_bytes() for p in (theirs, old)}
        where = ["spool", "purge", "--spool-dir", str(tmp_path), "--yes"]
        status, out, err = self.run(*where)
        assert (2, "") == (status, out)
        assert "--any-destination" in err and 4 == len(segments(tmp_path))
        monkeypatch.setenv("LOGDNA_INGESTION_KEY", "key-of-app-a")
        status, out, err = self.run(*where, "--url", URL)
        assert 0 == status
        assert "deleted: 1 file(s), 10 line(s) never delivered" in out
        assert "left 2 segment(s), 23 line(s), not written for this key and URL" in out
        assert "left 1 quarantine file(s)" in out
        assert "key-of-app" not in out + err
        assert kept == {p: p.read_bytes() for p in kept}
        assert 3 == len(segments(tmp_path))  # theirs, format 1, and the live one
        status, out, _ = self.run(*where, "--any-destination")
        assert (0, 1) == (status, len(segments(tmp_path)))  # the live one
        assert "deleted: 3 file(s), 23 line(s) never delivered" in out
        assert [] == list((tmp_path / "quarantine").iterdir())
        live.close()

    def test_purge_leaves_a_later_versions_segment(self, tmp_path: Path) -> None:
        """A segment whose header names a later format is never read, so its lines are
        not known: purge, --any-destination --yes included, keeps it and says so (it
        deleted it, saying "0 line(s) never delivered"). One with a damaged header is
        deleted, its lines said not counted rather than 0."""
        later = write_segment(tmp_path, 2, destination=MINE)
        data = bytearray(later.read_bytes())
        struct.pack_into("<H", data, 8, 3)  # the header's format version
        later.write_bytes(bytes(data))
        where = ["spool", "purge", "--spool-dir", str(tmp_path), "--any-destination"]
        for yes in ((), ("--yes",)):
            status, out, _ = self.run(*where, *yes)
            assert 0 == status
            assert f"kept {later.name}: written by a later version of the library" in out
            assert ": 0 file(s), 0 line(s) never delivered\n" in out + "\n"
        assert bytes(data) == later.read_bytes()
        later.unlink()
        broken = write_segment(tmp_path, 2, destination=MINE)
        flip(broken, 13)
        status, out, _ = self.run(*where, "--yes")
        said = "deleted: 1 file(s), 0 line(s) never delivered (1 not readable as a segment"
        assert said in out and not broken.exists()

    def test_ls_marks_replayable_only_what_replay_with_that_key_sends(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without a key, ls marks no segment replayable (replay needs its own key and URL;
        they were all shown as replayable); with a key, its own. Format 1 ones, whose
        destination is not recorded, need --any-destination with their own key and URL."""
        monkeypatch.delenv("LOGDNA_INGESTION_KEY", raising=False)
        monkeypatch.delenv("LOGDNA_URL", raising=False)
        names = {
            write_segment(tmp_path, 1, destination=MINE).name: "mine",
            write_segment(tmp_path, 2, destination=THEIRS).name: "theirs",
            v1_segment(tmp_path, 1000, [lines(0, 3)]).name: "format 1",
        }

        def states(*flags: str) -> dict[str, str]:
            status, out, _ = self.run("spool", "ls", "--spool-dir", str(tmp_path), *flags)
            assert 0 == status and "key-of-app" not in out
            rows = [row.split(None, 1) for row in out.splitlines() if row.startswith("seg-")]
            return {names[name]: row.rsplit("  ", 1)[-1].strip() for name, row in rows}

        own = "orphaned (replay with its own key and URL)"
        unmarked = "orphaned (format 1: replay --any-destination with its own key and URL)"
        assert {"mine": own, "theirs": own, "format 1": unmarked} == states()
        assert {"mine": "orphaned (replayable)", "theirs": own, "format 1": unmarked} == states(
            "--key", "key-of-app-a", "--url", URL)  # fmt: skip

    def test_no_folder_is_a_usage_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without --spool-dir or LOGDNA_SPOOL_DIR the command says what to pass."""
        monkeypatch.delenv("LOGDNA_SPOOL_DIR", raising=False)
        status, _, err = self.run("spool", "ls")
        assert 2 == status and "--spool-dir" in err
