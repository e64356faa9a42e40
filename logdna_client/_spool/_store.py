"""The spool: batches on disk before they are sent, so a crash or an outage loses none.

Used by one thread only (the sender's). Every method is disk I/O and never
raises: a disk that fails (read-only, full, permission denied) is reported
once through ``on_trouble`` and the spool switches itself off (``enabled``
becomes False, ``append`` answers None), so the caller carries on in memory.

Files, all in the spool folder (see ``_format`` for what is inside one):

- ``seg-<created ns>-<pid>-<random>.seg``: segments, oldest first by name
  (``.spool``: format version 1). Each is held under ``fcntl.flock(LOCK_EX)``
  by the one live process that owns it: the one that wrote it, or the one
  that adopted it after its writer died. The lock is taken on the temporary
  file before it is renamed into place, so no segment is ever visible
  unlocked while its writer lives; the kernel drops the lock when the last
  descriptor goes, which is how a ``kill -9`` hands a segment over. A forked
  child shares its parent's descriptors (and so its locks) and must call
  ``forget_after_fork``.
- ``.tmp-<pid>-<random>``: a segment being created (header only). One whose
  lock is free was left by a process that died before the rename: deleted.
- ``seg-...~<offset>-<pid>-<random>.seg``: a segment like any other, holding
  copies of the whole batches found after damage at ``offset`` of the segment
  whose name it starts with (``_salvage``); it sorts right after that one.
- ``quarantine/<segment>.<offset>.bad``: corrupt bytes moved aside, kept
  for inspection (the newest ``QUARANTINE_KEEP`` files). They count toward
  the cap like segments and are the first to go when it is reached: no
  process can send what they hold.

Each segment records its destination (``_destination``): a process adopts,
sends and drops only those of its own destination. Other destinations' segments,
and version 1 ones (which do not record theirs), are left alone: never sent with
this process's key, never dropped for its cap or age, reported once; they only
take their share of the folder's cap (``_make_room``).

A batch is done when an ACK record for it is in its segment. The owner
appends ACKs to the same file, so one write (and one sync) covers a batch's
data or its done mark, and a crash between the two leaves the batch pending
(sent again: at-least-once), never done-but-missing. A segment whose
batches are all done is deleted, which is the common case: a live service
acknowledges each batch moments after it was written.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import secrets
import shlex
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Concatenate, Literal, ParamSpec, TypeVar

from .._stats import DropReason
from . import _format as fmt
from ._destination import UNNAMED, belongs, short
from ._inspect import inspect_segment
from ._segment import (
    QUARANTINE,
    QUARANTINE_KEEP,
    SEG_PREFIX,
    SEG_SUFFIX,
    TMP_PREFIX,
    BatchId,
    Plan,
    QuarantineFile,
    ReplayBatch,
    Salvage,
    Segment,
    is_segment_name,
    list_dir,
    open_regular,
    plan,
    quarantine_files,
    salvage,
    save_quarantine,
    scan,
    try_lock,
    write_all,
)

__all__ = [
    "QUARANTINE_KEEP",
    "SYNC_INTERVAL",
    "SYNC_MODES",
    "BatchId",
    "ReplayBatch",
    "Spool",
    "SyncMode",
]

SyncMode = Literal["none", "interval", "always"]
SYNC_MODES: tuple[str, ...] = ("none", "interval", "always")

#: Seconds between syncs in "interval" mode. fdatasync measured 0.2-0.3 ms on
#: this project's CI disk and costs 5-20 ms on a spinning or network disk:
#: five a second keep even those under 10% of the sender's time, while a power
#: cut loses at most this much (a process crash loses nothing either way: the
#: data is in the kernel's page cache).
SYNC_INTERVAL = 0.2
#: How often tick and next_replay_batch look for segments of processes that died since.
RESCAN_INTERVAL = 5.0
#: Segments of dead processes held (open, locked) at once. Each costs a descriptor, and
#: a folder may hold thousands (many short-lived workers, a long outage): adopting them
#: all would take the application's descriptors (EMFILE in its own sockets and files).
#: The oldest go first; the next ones are adopted as these are delivered.
MAX_ADOPTED = 64
#: Age after which an unlocked temporary file is a dead creator's leftover.
TMP_GRACE = 60.0


_P = ParamSpec("_P")
_R = TypeVar("_R")
_D = TypeVar("_D")


def _contained(
    default: _D,
) -> Callable[[Callable[Concatenate[Spool, _P], _R]], Callable[Concatenate[Spool, _P], _R | _D]]:
    """Public methods never raise: a bug of ours switches the spool off, reported once.

    Disk errors are handled where they happen (OSError); this is for the
    rest, say a file some other program wrote that breaks an assumption.
    """

    def wrap(
        method: Callable[Concatenate[Spool, _P], _R],
    ) -> Callable[Concatenate[Spool, _P], _R | _D]:
        @functools.wraps(method)
        def contained(self: Spool, /, *args: _P.args, **kwargs: _P.kwargs) -> _R | _D:
            try:
                return method(self, *args, **kwargs)
            except MemoryError:
                # The process short of memory for a moment, not a bug: the spool stays
                # on. Switched off as a bug's, one failed allocation ended spooling (and
                # replay) for the rest of the process's life.
                self._short_of_memory(method.__name__)
                return default
            except Exception as exc:
                self._broken(method.__name__, exc)
                return default

        return contained

    return wrap


# Whose a segment of the folder is (Spool._owner).
_OURS = "ours"  # this destination's, or unreadable: its scan decides
_OTHER = "other"  # another destination's, or version 1 (whose is not recorded): left for it
_LATER = "later"  # a later version's: left for it

# Seconds replay pauses after a MemoryError reading a batch back (_short_of_memory).
_MEMORY_PAUSE = 1.0
# Damage is said once (trouble is said once per kind); the message says where the rest goes.
_LATER_DAMAGE = (" (damage found later in this process is not said again: see stats()'s "
                 "quarantined, one per damaged place, and dropped's spool_damaged)")  # fmt: skip


def _created(name: str) -> int:
    """The "created" field of a segment's name (0 when it is not a number)."""
    try:
        return int(name[len(SEG_PREFIX) :].split("-", 1)[0])
    except ValueError:
        return 0


#: The longest segment name salvaged into a copy: each salvage of a copy adds about 26
#: characters to the name (its offset, pid and a random part), and file systems refuse
#: names past 255 bytes (ENAMETOOLONG, which would switch the spool off). Beyond it, a
#: copy's damage goes to quarantine with the rest of the file, as before salvaging.
_MAX_SALVAGE_NAME = 160


class Spool:
    """Append-only segments of batches in one folder; see the module docstring.

    Build it with ``Spool.open``. Counters: ``spooled`` and ``replayed`` (lines;
    of a replayed batch, those the service stored), ``quarantined`` (damaged pieces
    moved aside), ``salvaged`` (lines re-queued from after damage), ``torn`` (cut
    tails), ``written`` (bytes), ``dropped`` (lines by reason: ``spool_full``,
    ``spool_age``, ``spool_damaged``).
    """

    def __init__(
        self,
        directory: str,
        *,
        max_bytes: int,
        max_age: float,
        sync: SyncMode,
        on_trouble: Callable[[str, str], None] | None,
        on_drop: Callable[[DropReason, int], None] | None,
        segment_bytes: int | None,
        clock: Callable[[], float],
        monotonic: Callable[[], float],
        destination: bytes,
        adopt_any: bool,
    ) -> None:
        self.directory = directory
        self.destination = destination
        self._adopt_any = adopt_any
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.sync_mode: SyncMode = sync
        self.segment_bytes = segment_bytes or min(16 << 20, max(4 << 10, max_bytes // 8))
        self._on_trouble = on_trouble
        self._on_drop = on_drop
        self._clock = clock
        self._monotonic = monotonic
        self._pid = os.getpid()
        self._segments: dict[str, Segment] = {}  # insertion order is not age: see _ordered
        self._current: Segment | None = None
        # Every descriptor this spool has open, added the moment it is opened: a fork
        # (from another thread) may come between the open and the segment's place in
        # _segments, and the child must let go of that one too, or its copy keeps the
        # lock, and the segment unadoptable, for as long as the child lives.
        self._fds: set[int] = set()
        # The newest "created" in the names of the segments this spool holds: a new one
        # is named after it even when the wall clock went back (NTP, a VM restored),
        # since names are the order of replay and the oldest-first order of drops.
        self._newest_name = 0
        # The last rescan left segments unadopted for MAX_ADOPTED: adopt more as soon as
        # the ones held are delivered, not a RESCAN_INTERVAL later.
        self._more_to_adopt = False
        self._candidates: list[tuple[str, int]] = []  # (name, size) newest first
        # Every segment in the folder this spool does not hold, at the last count: other
        # live processes', those not adopted yet, other destinations' and later versions'.
        # All count toward max_bytes, a bound on the folder (see _make_room).
        self._unheld_bytes = 0
        # The quarantine folder's files (any process's: damage records no destination), as
        # of the last count: part of the folder max_bytes bounds. Counted again when the
        # quarantine folder changes (its ino and mtime, one stat per append) and at rescans.
        self._quarantine_bytes = 0
        self._quarantine_seen: tuple[int, int] | None = None
        # Whose each segment not held is, and its destination (_owner), by name: a header
        # is read once, not at every rescan. Names are never reused.
        self._owners: dict[str, tuple[str, bytes | None]] = {}
        #: Segments of other destinations in the folder at the last scan (left alone).
        self.others = 0
        self._reported: set[str] = set()
        # Segments that could be neither read nor moved aside: not adopted again
        # and again (each time counted and reported) by every rescan.
        self._unusable: set[str] = set()
        #: Segments to send that this process may not open for writing (another user's,
        #: one a ``sudo`` run wrote; a read-only mount): their lines wait, said once.
        self.refused: set[str] = set()
        # Descriptors of segments that are done (or dropped) but could not be deleted
        # (a read-only remount): held, locked, until close, so no process sends them again.
        self._kept: list[int] = []
        # The last batch appended, by the very entries object it was given, until it is
        # acked or released: appended again, it is the same batch (see append).
        self._appended: tuple[Sequence[bytes], BatchId] | None = None
        # Held around each batch's write (never its sync): ``seal`` waits for a write in
        # progress, then no batch is written any more (the process's ending counted).
        self._gate = threading.Lock()
        self._sealed = False
        #: The entries of the last batch written to a segment, by the very object: in the
        #: file from the moment its write returned, whether its sync ended or not.
        self.last_written: Sequence[bytes] | None = None
        self._last_sync = monotonic()
        self._next_rescan = monotonic() + RESCAN_INTERVAL
        self.enabled = True
        #: Why the spool switched itself off (``_fail``, ``_broken``), for the exit's report
        #: of lines it could not take; None while it is on.
        self.off_because: str | None = None
        self._closed = False
        self._closed_stats: tuple[int, bool] | None = None  # (close's: see there)
        self._replay_off = False  # after a bug of ours (_broken): see there
        self._replay_after = 0.0  # (monotonic) after a MemoryError: _short_of_memory
        # A salvage added a segment while replay went through the others: look again.
        self._grew = False
        self.spooled = 0
        self.replayed = 0
        self.quarantined = 0
        self.salvaged = 0  # lines re-queued from after damage in a segment (_salvage)
        self.torn = 0
        self.written = 0  # bytes, records and done marks: what the spool costs the disk
        self.dropped: Counter[str] = Counter()

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        *,
        max_bytes: int = 256 << 20,
        max_age: float = 7 * 86400.0,
        sync: SyncMode = "interval",
        on_trouble: Callable[[str, str], None] | None = None,
        on_drop: Callable[[DropReason, int], None] | None = None,
        segment_bytes: int | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        destination: bytes = UNNAMED,
        adopt_any: bool = False,
    ) -> Spool:
        """Open (creating it if needed) the spool folder and adopt what dead processes left.

        Args:
            directory: the folder; shared safely by any number of processes.
            max_bytes: disk the folder may take; the oldest segment goes when full.
            max_age: seconds after which a spooled batch is dropped unsent.
            sync: "none" (the OS writes when it likes), "interval" (at most
                ``SYNC_INTERVAL`` s of data at risk from a power cut) or
                "always" (every append and ack is on disk before it returns).
            on_trouble: ``f(kind, message)``, called once per kind of trouble.
            on_drop: ``f(reason, lines)``, told each time lines are given up (counted
                in ``dropped``), from the time the folder is opened.
            segment_bytes: size at which a new segment is started (default
                an eighth of ``max_bytes``, 4 KiB to 16 MiB).
            clock: wall time in seconds (ages survive restarts, so not monotonic).
            monotonic: for the sync interval.
            destination: where the lines go (``_destination.destination``), written in
                each segment; only segments of this destination are adopted.
            adopt_any: adopt every destination's segments (``spool replay
                --any-destination``: the user says they go where this spool sends).

        Never raises: a folder that cannot be used gives a disabled spool.
        """
        spool = cls(
            os.fspath(directory),
            max_bytes=max_bytes,
            max_age=max_age,
            sync=sync,
            on_trouble=on_trouble,
            on_drop=on_drop,
            segment_bytes=segment_bytes,
            clock=clock,
            monotonic=monotonic,
            destination=destination,
            adopt_any=adopt_any,
        )
        try:
            # The lines may hold what logs hold: only this user may read them.
            os.makedirs(spool.directory, mode=0o700, exist_ok=True)
            spool._rescan()
            spool._drop_expired()
        except OSError as exc:
            spool._fail("open", exc)
        return spool

    # -- writing

    @_contained(None)
    def append(self, entries: Sequence[bytes], *, make_room: bool = True) -> BatchId | None:
        """Write a batch before it is sent; None when the spool is off or has no room.

        The batch is handed out at once (the caller sends it): ``ack`` it after
        a 2xx, or ``release`` it to have ``next_replay_batch`` give it back later.
        ``make_room``: drop the oldest segments for room (``spool_full``) when it does not
        fit; False: only quarantine files, then None, silently (the caller keeps the
        batch in memory, where the lines on disk are still on their way, to be sent
        before it).
        """
        if not self._usable() or not entries:
            return None
        appended = self._appended
        if appended is not None and appended[0] is entries:
            # Handed over again, not sent: Buffer.take gives an interrupted take's batch
            # (the same list) to the next take, and Ctrl-C on the exit path may have
            # stopped its caller after this wrote it (in the sync, say). Written twice,
            # the copy no one acks would be sent again by the next process.
            return appended[1]
        try:
            seg = self._current
            if seg is None or seg.size >= self.segment_bytes:
                seg = self._rotate()
            parts = fmt.batch_frame(seg.next_seq, int(self._clock() * 1e9), entries)
            need = sum(map(len, parts))
            self._recount_unheld()
            if self.disk_bytes + need > self.max_bytes and not self._make_room(
                need, segments=make_room
            ):
                if not make_room:
                    return None
                self._report("spool-full", "logdna_client: the spool folder is at "
                             "max_spool_bytes with nothing this process may drop (other live "
                             "processes' segments, other keys' or URLs' segments, batches being "
                             "sent); batches that do not fit are kept in memory only")  # fmt: skip
                return None
            batch_id = BatchId(seg.name, seg.next_seq, seg.next_seq, seg.size, len(entries), False)
            # Numbered before the write: a Ctrl-C between the write and the bookkeeping left
            # the number to the next batch (this one handed over again), two records under
            # one number, and a segment whose count of batches never met its done marks.
            seg.next_seq += 1
            with self._gate:
                if self._sealed:  # (the lines stay the caller's: counted by the ending)
                    seg.next_seq -= 1
                    return None
                try:
                    self._write(seg, parts)
                except (OSError, MemoryError):
                    seg.next_seq -= 1  # nothing is left under it (_write cut it off)
                    raise
                self.last_written = entries
        except OSError as exc:
            self._fail("write", exc)
            return None
        self._appended = entries, batch_id
        seg.batches += 1
        seg.lines += len(entries)
        seg.out.add(batch_id.first)
        self.spooled += len(entries)
        self._synced(seg, batch=True)
        return batch_id

    def seal(self, timeout: float) -> bool:
        """No batch is written after this returns True: the process's ending counts the
        lines not on disk, and a batch written after the count was adopted by the next
        process as well as said lost. Waits up to ``timeout`` for a write in progress (not
        its sync: the lines are in the file once the write returned); False when that
        write did not end in time (it may yet land)."""
        if not self._gate.acquire(timeout=max(0.0, timeout)):
            return False
        self._sealed = True
        self._gate.release()
        return True

    @_contained(None)
    def ack(self, batch_id: BatchId, stored: int | None = None) -> None:
        """The batch was delivered (or is given up for good): never hand it out again.

        ``stored``: of a replayed batch, the lines the service stored (all of them when
        not said), counted as ``replayed``; the lines it refused are the caller's.
        """
        self._let_go(batch_id)
        seg = self._segments.get(batch_id.segment) if self._open() else None
        if seg is None:  # dropped meanwhile (full or too old): nothing left to mark
            return
        seqs = range(batch_id.first, batch_id.last + 1)
        if all(seq in seg.done for seq in seqs):
            seg.out.difference_update(seqs)
            return
        # The done mark first, the counts after: flush() (another thread, reading
        # ``undelivered``) must not answer True while the mark is not in the file yet,
        # or a process ending right after it (os._exit, kill -9) leaves the batch to
        # be sent again.
        self._mark_done(seg, batch_id.first, batch_id.last, batch_id.lines)
        newly = 0
        for seq in seqs:
            seg.out.discard(seq)
            if seg.done.add(seq):
                newly += 1
        seg.done_batches += newly
        seg.done_lines += batch_id.lines
        if batch_id.replayed:
            self.replayed += batch_id.lines if stored is None else stored
        if seg.finished and (seg is not self._current or seg.size >= self.segment_bytes):
            self._retire(seg)

    @_contained(False)
    def requeue(self, batch_id: BatchId, entries: Sequence[bytes], stored: int) -> bool:
        """Part of a batch handed out was settled (delivered, or refused and counted) and
        the rest was not: ``entries``, that rest, go back on disk as a batch of their own,
        waiting for ``next_replay_batch`` (behind what is there), and the batch is done;
        ``stored`` as for ``ack``. False, and nothing done, where they find no room: the
        caller releases the batch whole (its settled part sent twice, nothing lost)."""
        if entries:
            taken_on = self._taken_on_lines(batch_id)
            rest = self.append(entries)
            if rest is None:
                return False
            self.spooled -= len(entries)  # the same lines, written again: spooled once
            seg = self._segments.get(rest.segment)
            if taken_on and seg is not None:
                # (Into this process's own segment: still another process's lines.)
                seg.taken_on[rest.first] = min(taken_on, len(entries))
            self.release(rest)
        # Marked done only once the rest is written: a process ending in between leaves
        # both, the settled part sent twice rather than the rest lost.
        self.ack(batch_id, stored)
        return True

    def _taken_on_lines(self, batch_id: BatchId) -> int:
        """How many of the batch's lines other processes logged (a bound, where a joined
        replay batch holds both kinds)."""
        seg = self._segments.get(batch_id.segment)
        if seg is None:
            return 0
        if not seg.logged_here:
            return batch_id.lines
        return sum(seg.taken_on.get(seq, 0) for seq in range(batch_id.first, batch_id.last + 1))

    @_contained(None)
    def release(self, batch_id: BatchId) -> None:
        """The caller gives the batch back unsent: ``next_replay_batch`` hands it out again."""
        self._let_go(batch_id)
        seg = self._segments.get(batch_id.segment) if self._open() else None
        if seg is None:
            return
        for seq in range(batch_id.first, batch_id.last + 1):
            seg.out.discard(seq)
        seg.cursor = min(seg.cursor, batch_id.offset)

    def _let_go(self, batch_id: BatchId) -> None:
        """The caller is done with the batch: appending its entries again is a new batch."""
        appended = self._appended
        if appended is not None and appended[1] == batch_id:
            self._appended = None

    # -- reading back

    @_contained(None)
    def next_replay_batch(self, max_bytes: int) -> ReplayBatch | None:
        """The oldest batches waiting on disk, up to ``max_bytes`` of entries (at least one).

        Oldest segment first; within one, in the order written. Consecutive
        batches are joined into one up to ``max_bytes`` (many small batches
        would cost a request each). Only one segment's records are read at a
        time, so memory stays bounded whatever the backlog.
        """
        if not self._open() or self._replay_off:
            return None
        if self._monotonic() >= self._next_rescan:
            self._safely(self._rescan)
        first = True
        while True:
            adopted = 0
            if self._more_to_adopt and not self._adopted_waiting():
                adopted = self._adopt_more()
            if not first and not adopted:
                return None  # none adopted since the last look: at MAX_ADOPTED, or none left
            first = False
            for seg in self._ordered():
                if not seg.scanned and not self._scan(seg):
                    continue
                if seg.waiting <= 0:
                    continue
                try:
                    batch = self._collect(seg, max_bytes)
                except OSError as exc:
                    self._report("spool-read", f"logdna_client: cannot read spool segment "
                                 f"{seg.name}: {exc}")  # fmt: skip
                    # Let go of it, as of one that could not be scanned: kept, it would be
                    # a backlog forever, and the sender would spin trying to replay it.
                    # It stays on disk, unchanged, for a later process.
                    self._unusable.add(seg.name)
                    self._forget(seg)
                    continue
                if batch is not None:
                    return batch
            if self._grew:  # a copy of what followed damage: it waits like the rest
                self._grew = False
                first = True
                continue
            # Those held had nothing (say, all done or damaged): the next ones, if any.
            if not self._more_to_adopt or self._adopted_waiting():
                return None

    def _collect(self, seg: Segment, max_bytes: int) -> ReplayBatch | None:
        entries: list[bytes] = []
        first = -1
        last = -1
        start = seg.cursor
        lines = 0
        size = 0
        horizon = (self._clock() - self.max_age) * 1e9
        ended = False
        while True:
            peek = fmt.read_record(seg.fd, seg.cursor, seg.size, with_data=False)
            if peek is None:
                ended = True
                break
            if isinstance(peek, fmt.Damage):
                self._quarantine_tail(seg, peek)
                break
            if peek.kind == fmt.ACK:
                if not entries:
                    seg.cursor = peek.end
                    continue
                break
            if peek.a in seg.done or peek.a in seg.out:
                if entries:
                    break
                seg.cursor = peek.end
                continue
            if peek.b < horizon:  # too old to be worth sending: done, as dropped
                if entries:
                    break
                seg.done.add(peek.a)
                seg.done_batches += 1
                seg.done_lines += peek.count
                self._count_dropped("spool_age", peek.count)
                self._mark_done(seg, peek.a, peek.a, peek.count)
                seg.cursor = peek.end
                continue
            if entries and (peek.a != last + 1 or size + (peek.end - peek.offset) > max_bytes):
                # One batch handed out is a run of consecutive numbers, each one record: its
                # ack marks the run done. A number skipped (a Ctrl-C between numbering and
                # writing) or written twice (by earlier versions) ends the run.
                break
            record = fmt.read_record(seg.fd, seg.cursor, seg.size, with_data=True)
            if not isinstance(record, fmt.Record) or record.data is None:
                if isinstance(record, fmt.Damage):
                    self._quarantine_tail(seg, record)
                break
            if not entries:
                first, start = record.a, record.offset
            entries += fmt.decode_entries(record.data, record.count)
            last = record.a
            lines += record.count
            size += record.end - record.offset
            seg.cursor = record.end
        if not entries:
            if ended and not seg.out and seg.waiting > 0:
                # Every record is done, whatever the counts say: kept, they would make a
                # backlog that never yields (the sender loops on it) and a flush() that
                # never succeeds. The records are the truth.
                seg.batches, seg.lines = seg.done_batches, seg.done_lines
            if seg.finished and seg is not self._current:
                self._retire(seg)
            return None
        seg.out.update(range(first, last + 1))
        return ReplayBatch(BatchId(seg.name, first, last, start, lines, True), entries)

    @_contained(0)
    def adopt(self) -> int:
        """Take over, now, the segments of processes that died; how many were taken.

        ``open`` does this, and ``tick`` and ``next_replay_batch`` every
        ``RESCAN_INTERVAL`` s.
        """
        if not self._open():
            return 0
        before = len(self._segments)
        self._safely(self._rescan)
        return len(self._segments) - before

    @_contained(0)
    def waiting_lines(self) -> int:
        """Lines not done in the segments held and in those left to adopt that no live
        process holds: what a replay of the folder has ahead (a progress total). Reads
        only the records' heads of those not held."""
        if not self._open():
            return 0
        _, lines = self.pending()
        for name, _ in self._candidates:
            with contextlib.suppress(OSError):
                info = inspect_segment(self._path(name), check=False)
                if not info.live:
                    lines += info.pending_lines
        return lines

    @_contained((0, 0))
    def pending(self, *, logged_here: bool | None = None) -> tuple[int, int]:
        """(batches, lines) on disk not yet done, in segments this spool holds:
        ``logged_here`` True, only those of lines this process logged; False, only those
        of lines other processes logged (adopted, or copied from adopted by a salvage);
        None, both."""
        batches = lines = 0
        for seg in self._ordered():
            if not seg.scanned:
                self._scan(seg)
        # (A scan may have salvaged into a new segment: counted from the list as it is now.)
        for seg in self._ordered():
            if not seg.scanned:
                continue
            seg_batches, seg_lines = seg.pending(logged_here)
            batches += seg_batches
            lines += seg_lines
        return batches, lines

    @property
    def backlog(self) -> bool:
        """True while next_replay_batch may have something (adopted or released batches)."""
        if self._replay_off or self._monotonic() < self._replay_after:
            return False
        segments = list(self._segments.values())
        # More to adopt counts only while there is room to adopt it: adopted segments whose
        # batches are all out (being sent) give next_replay_batch nothing meanwhile.
        room = sum(1 for seg in segments if not seg.own) < MAX_ADOPTED
        return (self._more_to_adopt and room) or any(
            not seg.scanned or seg.waiting > 0 for seg in segments
        )

    def _adopted_waiting(self) -> bool:
        return any(
            not seg.own and (not seg.scanned or seg.waiting > 0) for seg in self._segments.values()
        )

    @property
    def undelivered(self) -> bool:
        """True while any batch on disk is not done: waiting to be replayed, or handed
        out and not acked yet (a replay being retried). What ``flush()`` waits for;
        reads memory only, and is safe from any thread (the dict is copied first)."""
        return self._more_to_adopt or any(
            not seg.scanned or seg.batches > seg.done_batches
            for seg in list(self._segments.values())
        )

    @property
    def disk_bytes(self) -> int:
        """Bytes the folder's segments take, whoever's (those this spool does not hold as
        of the last append or rescan): what ``max_bytes`` bounds."""
        # list() copies in one step: stats() reads this from the app's threads.
        held = sum(seg.size for seg in list(self._segments.values()))
        return self._unheld_bytes + self._quarantine_bytes + held

    def stats(self) -> dict[str, object]:
        """The counters; safe to call from any thread (it only reads)."""
        closed = self._closed_stats
        return {
            "spooled": self.spooled,
            "replayed": self.replayed,
            "quarantined": self.quarantined,
            "salvaged": self.salvaged,
            "torn": self.torn,
            "spool_bytes": self.disk_bytes if closed is None else closed[0],
            "spool_bytes_written": self.written,
            "spool_dropped": dict(self.dropped),
            "spool_enabled": self.enabled if closed is None else closed[1],
        }

    # -- time and endings

    @_contained(None)
    def tick(self) -> None:
        """Sync what is due in "interval" mode, adopt what died since; cheap when nothing is.

        The sender calls it on every turn of its loop, so a segment left by a
        process killed after this one started is found within ``RESCAN_INTERVAL``
        even while there is no backlog to replay.
        """
        if not self._open():
            return
        now = self._monotonic()
        if self.sync_mode == "interval" and now - self._last_sync >= SYNC_INTERVAL:
            self._sync_all()
        if now >= self._next_rescan:
            self._safely(self._rescan)

    @_contained(None)
    def close(self) -> None:
        """Sync (unless "none"), delete finished segments, unlock the rest for the next process."""
        if not self._open():
            return
        if self.sync_mode != "none":
            self._sync_all()
        left = 0
        for seg in list(self._segments.values()):
            if seg.finished:
                self._retire(seg)
            else:
                left += seg.size
                self._forget(seg)
        self._current = None
        for fd in self._kept:
            self._fds.discard(fd)
            with contextlib.suppress(OSError):
                os.close(fd)
        self._kept.clear()
        # What stats() says from now on: the folder as this spool leaves it (the segments
        # forgotten still take their room), and whether it worked to the end (H185: a
        # closed spool read as a failed one, and as an empty folder with 83,907 lines
        # left in it).
        self._closed_stats = (self.disk_bytes + left, self.enabled)
        self.enabled = False
        self._closed = True

    def forget_after_fork(self) -> None:
        """In a forked child: let go of the parent's files without touching them.

        Only closes the descriptors: the parent keeps its locks (flock locks
        belong to the open file, which the parent still has open) and its
        segments, and the child builds a Spool of its own.
        """
        for fd in self._fds | {seg.fd for seg in self._segments.values()}:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
        self._kept.clear()
        self._segments.clear()
        self._current = None
        self.enabled = False
        self._closed = True

    # -- internals

    def _ordered(self) -> list[Segment]:
        return sorted(self._segments.values(), key=lambda s: s.name)

    def _path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def _rotate(self) -> Segment:
        """Start a new segment under the lock, then retire the old one if it is finished."""
        old = self._current
        created = max(int(self._clock() * 1e9), self._newest_name + 1)
        self._newest_name = created
        name = f"{SEG_PREFIX}{created:020d}-{self._pid}-{secrets.token_hex(3)}{SEG_SUFFIX}"
        seg = self._create(name, created, self.destination, sync=self.sync_mode != "none")
        self._current = seg
        if old is not None and old.finished:
            self._retire(old)
        return seg

    def _create(
        self, name: str, created: int, destination: bytes, *, sync: bool,
        fill: Callable[[Segment], None] | None = None,
    ) -> Segment:  # fmt: skip
        """A new segment, held: made under a temporary name with its lock and header (and
        what ``fill`` writes into it: a salvage's copy, whole before anyone can adopt it),
        then renamed into place, so it is never visible unlocked, nor partly filled;
        OSError when the disk refuses."""
        tmp = self._path(f"{TMP_PREFIX}{self._pid}-{secrets.token_hex(4)}")
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            fd = os.open(tmp, flags, 0o600)
        except FileNotFoundError:  # the folder was removed (by hand, a tmp cleaner): again
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            fd = os.open(tmp, flags, 0o600)
        self._fds.add(fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            header = fmt.encode_header(self._pid, created, destination)
            write_all(fd, [header], 0)
            seg = Segment(name, fd, own=True, size=fmt.HEADER_SIZE, scanned=True)
            seg.destination = destination
            if fill is not None:
                fill(seg)
            if sync:
                os.fdatasync(fd)
            os.rename(tmp, self._path(name))
        except BaseException:
            self._fds.discard(fd)
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        if sync:
            seg.dirty = False  # (what fill wrote is on disk)
        self._segments[name] = seg
        if sync:
            self._sync_dir()
        return seg

    def _write(self, seg: Segment, parts: list[bytes]) -> None:
        try:
            write_all(seg.fd, parts, seg.size)
        except (OSError, MemoryError):
            # A partial write (disk full, or no memory to finish a short one) must not
            # stay in front of later records.
            with contextlib.suppress(OSError):
                os.ftruncate(seg.fd, seg.size)
            raise
        size = sum(map(len, parts))
        seg.size += size
        self.written += size
        seg.dirty = True

    def _mark_done(self, seg: Segment, first: int, last: int, lines: int) -> None:
        # Tried even with the spool off: a full disk refuses a batch but still takes an
        # ack into a segment's last block, and each mark not written is a batch the next
        # process sends again (after a kill, the rest of the segment being replayed).
        # Refused, the mark stays in memory: the batch may come again later.
        try:
            self._write(seg, [fmt.ack_frame(first, last, lines)])
        except OSError as exc:
            self._fail("write", exc)
            return
        if self.enabled:
            self._synced(seg)

    def _synced(self, seg: Segment, *, batch: bool = False) -> None:
        """Sync after a write, as the mode says. A ``batch`` is synced at once in
        "interval" mode too: it is sent next, and no tick runs while its request is out,
        which may take up to ``request_timeout`` (a slow service left a batch unsynced
        that long, where the mode promises 0.2 s). Done marks wait for the interval: a
        lost one costs a batch sent again, never a line."""
        if self.sync_mode == "always" or (batch and self.sync_mode == "interval"):
            try:
                os.fdatasync(seg.fd)
                seg.dirty = False
            except OSError as exc:
                self._fail("sync", exc)
        elif self.sync_mode == "interval" and self._monotonic() - self._last_sync >= SYNC_INTERVAL:
            self._sync_all()

    def _sync_all(self) -> None:
        self._last_sync = self._monotonic()
        for seg in self._segments.values():
            if seg.dirty:
                try:
                    os.fdatasync(seg.fd)
                except OSError as exc:
                    self._fail("sync", exc)
                    return
                seg.dirty = False

    def _sync_dir(self) -> None:
        # The rename or unlink itself is durable only once the folder is synced.
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _retire(self, seg: Segment) -> None:
        """Delete a finished (or dropped) segment; unlinked before unlocking, so none adopts it."""
        try:
            os.unlink(self._path(seg.name))
        except FileNotFoundError:
            pass  # someone deleted it by hand: the same outcome
        except OSError as exc:
            # Read-only: leave it; its ACKs (if any were written) tell the next owner.
            self._fail("delete", exc)
            # Done here, whatever the file says (its ACKs may not have been written):
            # never adopted again by this process, and locked while it lives, or each
            # rescan would send it again, without end.
            self._unusable.add(seg.name)
            self._segments.pop(seg.name, None)
            if seg is self._current:
                self._current = None
            self._kept.append(seg.fd)
            return
        self._forget(seg)

    def _forget(self, seg: Segment) -> None:
        self._segments.pop(seg.name, None)
        if seg is self._current:
            self._current = None
        self._fds.discard(seg.fd)
        with contextlib.suppress(OSError):
            os.close(seg.fd)

    def _rescan(self) -> None:
        """Adopt this destination's segments whose owner died; count the bytes of those
        live processes hold toward the cap; leave other destinations' alone."""
        self._next_rescan = self._monotonic() + RESCAN_INTERVAL
        self._check_current()
        self._quarantine()  # files growing (being written) leave the folder's mtime as it was
        unheld = 0
        candidates: list[tuple[str, int]] = []
        others: list[tuple[str, bytes | None]] = []
        later = 0
        owners: dict[str, tuple[str, bytes | None]] = {}
        for entry in list_dir(self.directory):
            name = entry.name
            if name.startswith(TMP_PREFIX):
                with contextlib.suppress(OSError):
                    # Young ones may be between their creator's open and its lock.
                    if entry.stat().st_mtime < self._clock() - TMP_GRACE:
                        self._clear_tmp(name)
                continue
            size = self._unheld_size(entry)
            if size is None:
                continue
            owner, destination = self._owner(name)
            if name in self._owners:  # read: remembered (an unreadable one is asked again)
                owners[name] = self._owners[name]
            # Whoever's it is, it takes the folder's room. Counted as unheld until adopted
            # (then it is held, and no longer counted here).
            unheld += size
            if owner == _OTHER:
                others.append((name, destination))
                continue
            if owner == _LATER:
                later += 1
                continue
            # Ours are named after it even before it is adopted (MAX_ADOPTED): the backlog
            # goes first whatever the clock did.
            self._newest_name = max(self._newest_name, _created(name))
            if name not in self._unusable:
                candidates.append((name, size))
        self._unheld_bytes = unheld
        self._owners = owners  # names gone from the folder are forgotten
        self.others = len(others)
        # Newest last: _adopt_more takes the oldest first, from the end.
        candidates.sort(reverse=True)
        self._candidates = candidates
        self._adopt_more()
        self._report_left(others, later)

    def _unheld_size(self, entry: os.DirEntry[str]) -> int | None:
        """The size of a segment in the folder this spool does not hold; None for a file
        that is no such segment."""
        name = entry.name
        if not is_segment_name(name) or name in self._segments:
            return None
        # A symlink, folder or FIFO under a segment's name is no segment: never
        # followed (into another folder, another app's spool), read, or counted.
        try:
            if not entry.is_file(follow_symlinks=False):
                return None
            return entry.stat(follow_symlinks=False).st_size
        except OSError:
            return None

    def _recount_unheld(self) -> None:
        """Count the segments this spool does not hold as they are now, not as of the last
        rescan: other processes sharing the folder write meanwhile, and each counting
        theirs as of a rescan up to RESCAN_INTERVAL old would pass the cap by all they
        wrote since, not by a batch each. Only sizes: adopting waits for the rescan."""
        with contextlib.suppress(OSError):  # not listable now: the last count stands
            sizes = map(self._unheld_size, list_dir(self.directory))
            self._unheld_bytes = sum(size for size in sizes if size is not None)
        try:
            there = os.stat(os.path.join(self.directory, QUARANTINE))
            changed = (there.st_ino, there.st_mtime_ns) != self._quarantine_seen
        except OSError:
            changed = self._quarantine_seen is not None or self._quarantine_bytes > 0
        if changed:
            self._quarantine()

    def _quarantine(self) -> list[QuarantineFile]:
        """The quarantine files, oldest first, counted into ``disk_bytes``."""
        folder = os.path.join(self.directory, QUARANTINE)
        try:
            there = os.stat(folder)
            files = quarantine_files(self.directory)
        except OSError:  # none (or not listable: nothing this process could delete either)
            self._quarantine_seen, self._quarantine_bytes = None, 0
            return []
        self._quarantine_seen = there.st_ino, there.st_mtime_ns
        self._quarantine_bytes = sum(f.size for f in files)
        return files

    def _drop_quarantine(self, files: list[QuarantineFile]) -> None:
        """Delete quarantine files; the lines they still hold whole count as ``spool_full``
        (by this process only if it is the one whose unlink took the file)."""
        for file in files:
            try:
                fd = open_regular(file.path, os.O_RDONLY)
                try:
                    lines = fmt.salvage_lines(fd, os.fstat(fd).st_size)
                finally:
                    os.close(fd)
                os.unlink(file.path)
            except OSError:
                continue  # gone (another process took it, and counted it) or not ours to take
            self._quarantine_bytes = max(0, self._quarantine_bytes - file.size)
            self._count_dropped("spool_full", lines)

    def _owner(self, name: str) -> tuple[str, bytes | None]:
        """Whose the segment ``name`` (not held) is, from its header: _OURS, _OTHER or
        _LATER, and the destination it names. One that cannot be read is _OURS: adopting
        it reads it through, and damage is moved aside as in any segment of ours."""
        known = self._owners.get(name)
        if known is not None:
            return known
        try:
            # Read-only and unlocked: a live owner keeps its lock, and this takes none.
            fd = open_regular(self._path(name), os.O_RDONLY)
        except OSError:
            return _OURS, None
        try:
            header = fmt.decode_header(os.pread(fd, fmt.HEADER_SIZE, 0))
        except OSError:
            return _OURS, None
        finally:
            os.close(fd)
        if header is None:
            return _OURS, None  # not remembered: its scan, when adopted, tells what it is
        if header.later:
            owner = _LATER
        elif self._adopt_any or belongs(header.destination, self.destination):
            owner = _OURS
        else:
            owner = _OTHER
        known = self._owners[name] = owner, header.destination
        return known

    def _report_left(self, others: list[tuple[str, bytes | None]], later: int) -> None:
        """Say once what this process leaves in the folder for others, and how to send it."""
        if others and not {"spool-other", "spool-format-1"} <= self._reported:
            # Only those no live process holds: another app sending there needs no advice.
            orphaned = [d for name, d in others if self._unlocked(name)]
            unmarked = orphaned.count(None)
            if unmarked:
                self._report_unmarked(unmarked)
            if len(orphaned) > unmarked:
                found = ", ".join(sorted({short(d) for d in orphaned if d is not None}))
                folder = shlex.quote(self.directory)  # a command to paste into a shell
                self._report("spool-other", f"logdna_client: {len(orphaned) - unmarked} "
                             f"segment(s) in the "
                             f"spool folder {self.directory!r} hold lines for another destination "
                             f"(ingestion key, URL, or an OTLP app's OTel headers; fingerprint "
                             f"{found}) and are left for it, "
                             f"neither sent nor dropped by this process. If they are this app's "
                             f"from before a key or URL change, send them with: python -m "
                             f"logdna_client spool replay --spool-dir {folder} --key "
                             f"<that key> --url <that URL>; if that key or URL was wrong (refused, "
                             f"a typo) and is fixed now, add --any-destination and give the right "
                             f"ones (spool ls shows each segment's destination). An OTLP "
                             f"app's are sent only by a process of that app")  # fmt: skip
        if later:
            self._report("spool-later", f"logdna_client: {later} segment(s) in the spool folder "
                         f"{self.directory!r} were written by a later version of logdna_client; "
                         f"this version leaves them for it")  # fmt: skip

    def _report_unmarked(self, count: int) -> None:
        """Say once that version 1 segments wait for the user to say whose they are."""
        folder = shlex.quote(self.directory)  # a command to paste into a shell
        self._report("spool-format-1", f"logdna_client: {count} segment(s) in the spool "
                     f"folder {self.directory!r} were written by an older version of "
                     f"logdna_client (format 1), which did not record the ingestion key and URL "
                     f"they were for; they are left on disk, neither sent nor dropped. Send "
                     f"them with the key and URL they were written for: python -m logdna_client "
                     f"spool replay --spool-dir {folder} --key <that key> --url <that URL> "
                     f"--any-destination (spool ls lists them as format 1)")  # fmt: skip

    def _adopt_more(self) -> int:
        """Adopt, oldest first, what the last rescan found, up to MAX_ADOPTED held at once;
        how many were adopted."""
        held = sum(1 for seg in self._segments.values() if not seg.own)
        adopted = 0
        candidates = self._candidates
        while candidates and held + adopted < MAX_ADOPTED:
            name, listed = candidates.pop()
            if self._adopt_one(name, listed, listed=False) is not None:
                adopted += 1
        self._more_to_adopt = bool(candidates)
        return adopted

    def _unlocked(self, name: str) -> bool:
        """Whether no live process holds the segment (asked of its lock, let go at once)."""
        fd = try_lock(self._path(name), self._fds)
        if fd is None:
            return False
        self._fds.discard(fd)
        os.close(fd)
        return True

    def _adopt_one(self, name: str, size: int, *, listed: bool = True) -> Segment | None:
        """Take over one segment the last rescan counted as others' (``size`` bytes then);
        None when a live process holds it or it is gone."""
        if listed:
            with contextlib.suppress(ValueError):
                self._candidates.remove((name, size))
            self._more_to_adopt = bool(self._candidates)
        if name in self._segments:
            return None
        fd = try_lock(self._path(name), self._fds, lambda exc: self._refused(name, exc))
        if fd is None:
            return None
        try:
            now = os.fstat(fd).st_size
        except OSError:
            self._fds.discard(fd)
            os.close(fd)
            return None
        # Its size counts toward the cap at once; the scan, later, makes it exact.
        seg = Segment(name, fd, own=False, size=now)
        self._segments[name] = seg
        self._unheld_bytes = max(0, self._unheld_bytes - size)
        self._newest_name = max(self._newest_name, _created(name))
        return seg

    def _refused(self, name: str, exc: OSError) -> None:
        """A segment to send that this process may not open (its permissions, the folder's
        mount): unlike one a live process holds, that does not pass. Said once, with what
        to do; not asked again at each rescan (it was skipped without a word, and flush()
        and ``spool replay`` said all was delivered)."""
        self.refused.add(name)
        self._unusable.add(name)
        self._report(
            "spool-refused",
            f"logdna_client: cannot open spool segment {name} in {self.directory!r} to send "
            f"it ({exc.strerror or exc}): its lines wait there, not delivered; give this "
            "process read and write access to it, or run 'logdna-client spool replay' as "
            "its owner",
        )

    def _check_current(self) -> None:
        """The segment being written is still in the folder, under its name; if not (the
        folder was deleted, moved or replaced), the next batch starts a new one there, or
        finds the folder unusable: appends into a file no later process would find would
        be lost to a crash. What this process holds in it is still replayed from it."""
        seg = self._current
        if seg is None:
            return
        try:
            there = os.stat(self._path(seg.name))
            here = os.fstat(seg.fd)
            gone = (there.st_dev, there.st_ino) != (here.st_dev, here.st_ino)
        except OSError:
            gone = True
        if gone:
            self._current = None

    def _clear_tmp(self, name: str) -> None:
        fd = try_lock(self._path(name), self._fds)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._path(name))
            self._fds.discard(fd)
            os.close(fd)

    def _scan(self, seg: Segment) -> bool:
        """Read an adopted segment through: counts, done marks, damage. False if unusable."""
        try:
            found = scan(seg)
        except OSError as exc:
            self._report("spool-read", f"logdna_client: cannot read spool segment {seg.name}: "
                         f"{exc}")  # fmt: skip
            self._unusable.add(seg.name)
            self._forget(seg)
            return False
        if found.header is None:
            if found.header_torn:  # a crash before its header reached the disk
                self.torn += 1
                self._retire(seg)
            else:
                self._quarantine_tail(seg, fmt.Damage(0, False, "bad segment header"))
            return False
        if found.header.later:  # never deleted: a later version wrote it (see _owner)
            self._owners[seg.name] = _LATER, None
            self._forget(seg)
            return False
        destination = found.header.destination
        if not (self._adopt_any or belongs(destination, self.destination)):
            # Another destination's, read here under its lock: _owner could not read its
            # header when the folder was listed (a passing error). Left for its owner.
            self._owners[seg.name] = _OTHER, destination
            self._forget(seg)
            return False
        seg.destination = destination
        if found.damage is not None:
            if found.damage.torn:
                self._cut(seg, found.damage, found.end)
            else:
                self._salvage(seg, found.damage, found.end, scanned=True)
        seg.scanned = True
        if seg.finished:
            self._retire(seg)
            return False
        return True

    def _cut(self, seg: Segment, damage: fmt.Damage, end: int) -> None:
        """Cut the file at the damage: a torn tail goes, corrupt bytes go to quarantine."""
        if damage.torn:
            self.torn += 1
        else:
            self._save_quarantine(seg, damage.offset, end, damage.reason)
        if self.enabled:
            try:
                os.ftruncate(seg.fd, damage.offset)
            except OSError as exc:
                self._fail("write", exc)

    def _quarantine_tail(self, seg: Segment, damage: fmt.Damage) -> None:
        """Damage found after the scan (or a bad header): salvage what follows it, or move
        it aside, and stop there."""
        try:
            end = os.fstat(seg.fd).st_size
        except OSError:
            end = seg.size
        if damage.offset == 0:
            # No header: whose lines these are is not known, so none is sent.
            self._save_quarantine(seg, 0, end, damage.reason)
            try:
                os.unlink(self._path(seg.name))
            except OSError:
                self._unusable.add(seg.name)
            self._forget(seg)
            return
        if not damage.torn:
            self._salvage(seg, damage, end)
            return
        self._fall_back(seg, damage, end)

    def _salvage(
        self, seg: Segment, damage: fmt.Damage, end: int, *, scanned: bool = False
    ) -> None:
        """Corruption in a segment, with whole records after it: deliver those, and cut the
        segment at the damage.

        The batches after it not marked done anywhere in the file are copied, as they are
        and with their times, into a new segment of this process named to sort right
        after the damaged one (so replay keeps their order), which is synced, its name
        too, whatever ``sync`` says; only then are the damaged bytes copied to quarantine
        (each damaged place to a file of its own: the whole records are not kept twice,
        and a quarantine file deleted for room does not count delivered lines as lost)
        and the segment cut at the damage, where done marks that were after it for
        batches before it are written again. A crash before the cut leaves the records
        in both files: sent twice, never lost. Lines of a damaged batch are counted as
        ``spool_damaged`` where its head says how many and it was not done; said not
        countable otherwise. Without a way to write the copy (the spool off, the disk
        refusing, a name already made of ``_MAX_SALVAGE_NAME`` characters by salvages
        of salvages), the rest of the file goes to quarantine as it is, as before
        salvaging existed. ``scanned``: found by the scan that counted the records
        before the damage, which still wait (a fall back keeps those counts: cleared,
        the segment looked finished and was deleted with its lines).
        """

        def fall_back() -> None:
            if scanned:
                self._cut(seg, damage, end)
            else:
                self._fall_back(seg, damage, end)

        try:
            found = salvage(seg.fd, damage, end)
            header = fmt.decode_header(os.pread(seg.fd, fmt.HEADER_SIZE, 0))
            if header is None:
                raise OSError(errno.EIO, "header unreadable")  # (read whole by the scan)
            todo = plan(seg.fd, header.size, found, seg.done)
        except OSError as exc:
            self._report("spool-read", f"logdna_client: cannot read spool segment "
                         f"{seg.name}: {exc}")  # fmt: skip
            fall_back()
            return
        if not self.enabled or len(seg.name) > _MAX_SALVAGE_NAME:
            fall_back()
            return
        copy: Segment | None = None
        salvaged = 0
        try:
            if todo.copies:
                copy = self._copy(seg, todo.copies, damage.offset, end)
                salvaged = copy.lines
        except OSError as exc:
            self._fail("write", exc)
            fall_back()
            return
        moved = 0
        for start, stop in found.damaged:
            moved += stop - start
            self._keep_damaged(seg, start, stop)
        self._drop_quarantine(self._quarantine()[:-QUARANTINE_KEEP])
        marks = b"".join(fmt.ack_frame(first, last, lines) for first, last, lines in todo.reack)
        try:
            # The marks over the damaged bytes (saved above), then the cut after them: a
            # crash in between leaves the marks whole and the records after them, which
            # the next process salvages again.
            if marks:
                write_all(seg.fd, [marks], damage.offset)
            os.ftruncate(seg.fd, damage.offset + len(marks))
            if self.sync_mode != "none":
                os.fdatasync(seg.fd)
        except OSError as exc:
            self._fail("write", exc)
        self.written += len(marks)
        self._recount(seg, todo, damage.offset + len(marks))
        if seg is self._current:
            self._current = None  # new batches after the copy, in a segment named after it
        self.salvaged += salvaged
        if todo.lost:
            self._count_dropped("spool_damaged", todo.lost)
        self._report_damage(seg, damage, found, salvaged, moved, todo)

    def _copy(self, seg: Segment, records: list[fmt.Record], at: int, end: int) -> Segment:
        """Write the batches ``records`` of ``seg`` to a new segment, synced; OSError when
        the disk refuses (and then there is no new segment)."""
        stem = seg.name.rsplit(".", 1)[0]
        # "~" sorts after "." (the suffix): right after the damaged segment and before
        # any later one, whose name differs already in its time.
        name = f"{stem}~{at:012d}-{self._pid}-{secrets.token_hex(3)}{SEG_SUFFIX}"
        created = int(self._clock() * 1e9)

        def fill(copy: Segment) -> None:
            # Under the temporary name: a process killed before the copy is whole leaves
            # no part of it to adopt (its records would go out again with the next
            # salvage's copy), only the damaged segment, salvaged again.
            for head in records:
                record = fmt.read_record(seg.fd, head.offset, end, with_data=True)
                if not isinstance(record, fmt.Record) or record.data is None:
                    raise OSError(errno.EIO, f"record at byte {head.offset} changed while read")
                entries = fmt.decode_entries(record.data, record.count)
                self._write(copy, fmt.batch_frame(copy.next_seq, record.b, entries))
                copy.next_seq += 1
                copy.batches += 1
                copy.lines += record.count

        copy = self._create(
            name, created, seg.destination or self.destination, sync=True, fill=fill
        )
        copy.copied_from_other = not seg.logged_here
        self._grew = True
        return copy

    def _recount(self, seg: Segment, todo: Plan, size: int) -> None:
        """The counts of a segment cut at ``size`` by a salvage: its records before the
        damage, the marks written again; and the batches handed out whose records were
        after it, which stay the caller's to ack or release (a copy of each waits in the
        new segment: a crash sends them again rather than never)."""
        after = {record.a: record.count for record in todo.copies if record.a in seg.out}
        seg.size = size
        seg.batches = seg.lines = seg.done_batches = seg.done_lines = 0
        seg.done, seg.seen = fmt.AckBits(), fmt.AckBits()
        for record in todo.before:
            seg.count(record)
        for first, last, lines in todo.reack:
            seg.count(fmt.Record(0, 0, fmt.ACK, first, last, lines))
        seg.batches += len(after)
        seg.lines += sum(after.values())
        seg.cursor = min(seg.cursor, size)

    def _fall_back(self, seg: Segment, damage: fmt.Damage, end: int) -> None:
        """No salvage (or a torn tail): the rest of the file to quarantine (or cut off), the
        segment cut at the damage where the disk lets it, nothing counted beyond it."""
        self._cut(seg, damage, end)
        seg.size = damage.offset
        seg.batches = seg.done_batches + len(seg.out)
        seg.lines = seg.done_lines

    def _keep_damaged(self, seg: Segment, start: int, end: int) -> None:
        """Copy damaged bytes to quarantine, counted as a damaged piece."""
        self.quarantined += 1
        try:
            save_quarantine(seg, self.directory, start, end)
        except OSError as exc:
            self._report("spool-quarantine", f"logdna_client: cannot write to the spool's "
                         f"quarantine folder: {exc}")  # fmt: skip

    def _report_damage(
        self, seg: Segment, damage: fmt.Damage, found: Salvage, salvaged: int, moved: int,
        todo: Plan,
    ) -> None:  # fmt: skip
        """Say once what was found, what was saved and what was lost."""
        places = found.damaged
        where = f"at byte {damage.offset} ({damage.reason})"
        if len(places) > 1:
            where += f" and in {len(places) - 1} more place(s)"
        said = (f"{salvaged} line(s) after the damage re-queued, {moved} damaged byte(s) "
                "moved to quarantine")  # fmt: skip
        if found.rest:
            start, stop = places[-1]
            said += (f" (the last {stop - start} byte(s), from byte {start}, as they are: no "
                     f"whole record found in them within {fmt.MAX_CANDIDATES} checks)")  # fmt: skip
        if todo.lost:
            said += f"; {todo.lost} line(s) in damaged records lost (counted as spool_damaged)"
        if todo.uncounted:
            said += ("; more lines may have been in damaged bytes that cannot be counted"
                     if todo.lost else
                     "; the lines the damaged bytes held, if any, cannot be counted")  # fmt: skip
        elif not todo.lost and not found.rest:
            said += "; no line lost"
        self._report("spool-corrupt", f"logdna_client: spool segment {seg.name} is damaged "
                     f"{where}; {said}{_LATER_DAMAGE}")  # fmt: skip

    def _save_quarantine(self, seg: Segment, start: int, end: int, reason: str) -> None:
        self._report("spool-corrupt", f"logdna_client: spool segment {seg.name} is damaged "
                     f"at byte {start} ({reason}); the rest is moved to quarantine"
                     + ("" if start else ", unsent: its header does not say whose lines "
                        "they are") + _LATER_DAMAGE)  # fmt: skip
        self._keep_damaged(seg, start, end)
        # Damage cannot fill the disk: the newest files are kept for a person to look at.
        self._drop_quarantine(self._quarantine()[:-QUARANTINE_KEEP])

    def _drop_expired(self) -> None:
        """Drop the segments nothing was written to for ``max_age``: all they hold is older."""
        horizon = self._clock() - self.max_age
        for seg in self._ordered():
            if seg is self._current or seg.out:
                continue
            with contextlib.suppress(OSError):
                if os.fstat(seg.fd).st_mtime < horizon:
                    self._drop(seg, "spool_age")

    def _make_room(self, need: int, *, segments: bool = True) -> bool:
        """Drop the oldest segments until ``need`` more bytes fit under the cap
        (``segments`` False: quarantine files only, which no process can send).

        The cap is the folder's, the one rule for ``max_spool_bytes``: a user who
        sets it bounds the disk the folder takes, however many apps share it, so
        every segment in it counts (``disk_bytes``), and the quarantine files, which
        go first. Then only segments this spool
        holds or may adopt (this destination's, their process dead) can go: never
        another destination's (their lines are not this process's to give up),
        nor the one being written, nor one with batches out for sending. The
        current one is at most an eighth of the cap, so room is found unless
        other live processes or other destinations fill the folder, or the batch
        is larger than the cap. False when it is not, and then nothing is
        dropped: lines would be lost for a batch that still would not fit.
        """
        self._drop_expired()
        # Quarantine first, oldest first: no process can send what it holds, and whatever
        # destination it was damaged in, it takes the folder's room.
        quarantine = self._quarantine()
        droppable: list[tuple[str, int, Segment | None]] = [
            (s.name, s.size, s) for s in self._segments.values()
            if segments and s is not self._current and not s.out
        ]  # fmt: skip
        # Dead processes' segments not adopted yet (MAX_ADOPTED): asked of their locks
        # only now, when the folder is full.
        if segments:
            droppable += [(n, size, None) for n, size in self._candidates if self._unlocked(n)]
        droppable.sort(key=lambda t: t[0])
        freed = sum(size for _, size, _ in droppable) + self._quarantine_bytes
        if self.disk_bytes - freed + need > self.max_bytes:
            return False
        excess = self.disk_bytes + need - self.max_bytes
        taken = 0
        for count, file in enumerate(quarantine, 1):
            taken += file.size
            if taken >= excess:
                quarantine = quarantine[:count]
                break
        self._drop_quarantine(quarantine)
        for name, size, held in droppable:
            if self.disk_bytes + need <= self.max_bytes:
                break
            # One not adopted yet is adopted just to be dropped: a descriptor at a time.
            seg = held if held is not None else self._adopt_one(name, size)
            if seg is not None:
                self._drop(seg, "spool_full")
        return self.disk_bytes + need <= self.max_bytes

    def _drop(self, seg: Segment, reason: DropReason) -> None:
        if seg.scanned or self._scan(seg):
            self._count_dropped(reason, seg.lines - seg.done_lines)
            self._retire(seg)

    def _count_dropped(self, reason: DropReason, lines: int) -> None:
        self.dropped[reason] += lines
        if lines and self._on_drop is not None:
            self._on_drop(reason, lines)

    def _safely(self, action: Callable[[], None]) -> None:
        try:
            action()
        except OSError as exc:
            self._report("spool-read", f"logdna_client: cannot list the spool folder: {exc}")

    def _usable(self) -> bool:
        """False when off, or when this object came over a fork (its files are the parent's)."""
        return self._open() and self.enabled

    def _open(self) -> bool:
        """False once closed, and in a forked child that still holds the parent's Spool."""
        if self._pid != os.getpid() and not self._closed:
            self.forget_after_fork()
        return not self._closed

    def _report(self, kind: str, message: str) -> None:
        if kind in self._reported or self._on_trouble is None:
            return
        self._reported.add(kind)
        with contextlib.suppress(Exception):  # a broken callback must not break the sender
            self._on_trouble(kind, message)

    def _short_of_memory(self, where: str) -> None:
        """A MemoryError in ``where``: said once; what it was doing is not done (a batch
        not appended stays in memory, a done mark not written means a batch sent again).
        Replay pauses a moment: retried at once, a backlog spun the sender meanwhile."""
        if where == "next_replay_batch":
            self._replay_after = self._monotonic() + _MEMORY_PAUSE
        self._report(
            "spool-memory",
            f"logdna_client: out of memory in the spool ({where}); the spool stays on, "
            "what could not be written is kept in memory",
        )

    def _broken(self, where: str, exc: Exception) -> None:
        if self.enabled:
            self.off_because = f"an internal error ({where})"
        self.enabled = False
        self._current = None
        # Replay stops too: the same bug would come back at every call, and a backlog
        # that never yields keeps the sender looping. What is on disk stays there.
        self._replay_off = True
        self._report(
            "spool-error",
            f"logdna_client: internal error in the spool ({where}: {exc!r}); spooling is off, "
            "lines are kept in memory only",
        )

    def _fail(self, what: str, exc: OSError) -> None:
        """The disk refused a write: say so once and stop writing (the caller keeps memory)."""
        if not self.enabled:
            return
        self.enabled = False
        # Nothing more is appended: the segment being written is deleted as soon as its
        # batches are done, like any other (its done marks may not reach the disk now;
        # deleted, it is not sent again by the next process).
        self._current = None
        name = errno.errorcode.get(exc.errno or 0, "error")
        self.off_because = f"{what}: {name}"
        self._report(
            "spool-disabled",
            f"logdna_client: the spool folder {self.directory!r} failed ({what}: {name}, "
            f"{exc.strerror or exc}); spooling is off, lines are kept in memory only",
        )
