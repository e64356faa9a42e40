"""A segment as the spool holds it, and the file operations on one.

Names in a spool folder: ``seg-<created ns>-<pid>-<random>.seg`` (sorted
by name is oldest first; ``.spool`` for those of format version 1, which the
versions that wrote them look for), ``.tmp-<pid>-<random>`` while one is being
made, and ``quarantine/<segment>.<offset>.bad`` for damage moved aside. A
segment holding what was salvaged from after damage is named after the damaged
one: ``<its name without suffix>~<offset>-<pid>-<random>.seg``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from . import _format as fmt

__all__ = [
    "QUARANTINE",
    "QUARANTINE_KEEP",
    "SEG_PREFIX",
    "SEG_SUFFIX",
    "TMP_PREFIX",
    "V1_SEG_SUFFIX",
    "BatchId",
    "Plan",
    "QuarantineFile",
    "ReplayBatch",
    "Salvage",
    "Scan",
    "Segment",
    "is_segment_name",
    "list_dir",
    "open_regular",
    "plan",
    "quarantine_files",
    "salvage",
    "save_quarantine",
    "scan",
    "try_lock",
    "write_all",
]

SEG_PREFIX = "seg-"
# Not ".spool": the versions that wrote format 1 look only at those names, so they never
# see (send, delete, count) a segment carrying a destination they would not check.
SEG_SUFFIX = ".seg"
V1_SEG_SUFFIX = ".spool"
TMP_PREFIX = ".tmp-"
QUARANTINE = "quarantine"
#: Quarantine files kept; older ones are deleted so damage cannot fill the disk.
QUARANTINE_KEEP = 16


def is_segment_name(name: str) -> bool:
    return name.startswith(SEG_PREFIX) and name.endswith((SEG_SUFFIX, V1_SEG_SUFFIX))


class BatchId(NamedTuple):
    """A batch handed to the caller (``first`` to ``last`` of one segment), to ack or release."""

    segment: str
    first: int
    last: int
    offset: int  # of the first record, where replay resumes after a release
    lines: int
    replayed: bool  # came from next_replay_batch (counted as replayed once acked)


class ReplayBatch(NamedTuple):
    """Entries read back from disk, oldest first, and the id to ack them with."""

    id: BatchId
    entries: list[bytes]


@dataclass(eq=False)
class Segment:
    name: str
    fd: int
    own: bool  # written by this Spool (else adopted: scanned before use)
    size: int = 0  # where the next record goes: the end of the good records
    next_seq: int = 0
    batches: int = 0
    lines: int = 0
    done_batches: int = 0
    done_lines: int = 0
    done: fmt.AckBits = field(default_factory=fmt.AckBits)
    seen: fmt.AckBits = field(default_factory=fmt.AckBits)  # numbers of the batches counted
    out: set[int] = field(default_factory=set)  # handed to the caller, not yet acked
    cursor: int = fmt.HEADER_SIZE  # records before it are done or out
    scanned: bool = False
    dirty: bool = False
    # Where its lines go, from its header (None: format 1, or not read yet): a copy of
    # what a salvage takes from it goes to the same place.
    destination: bytes | None = None
    #: A salvage's copy of an adopted segment: written here, its lines logged elsewhere.
    copied_from_other: bool = False
    #: Batches (number -> lines) written here that hold other processes' lines: the
    #: unsettled rest of a batch taken on (``Spool.requeue``). This process's view only.
    taken_on: dict[int, int] = field(default_factory=dict)

    def pending(self, logged_here: bool | None = None) -> tuple[int, int]:
        """(batches, lines) not yet done: all (None), or those holding lines this process
        logged (True) or other processes did (False)."""
        waiting = self.batches - self.done_batches, self.lines - self.done_lines
        if logged_here is None:
            return waiting
        if not self.logged_here:
            return (0, 0) if logged_here else waiting
        taken = [n for seq, n in self.taken_on.items() if seq not in self.done]
        if not logged_here:
            return len(taken), sum(taken)
        return waiting[0] - len(taken), waiting[1] - sum(taken)

    @property
    def logged_here(self) -> bool:
        """Whether its lines are this process's (not adopted, nor copied from adopted)."""
        return self.own and not self.copied_from_other

    @property
    def waiting(self) -> int:
        """Batches neither done nor handed out: what replay still has to give."""
        return self.batches - self.done_batches - len(self.out)

    @property
    def finished(self) -> bool:
        return self.scanned and self.done_batches == self.batches

    def count(self, record: fmt.Record) -> None:
        """Take a record read back from the file into the counts."""
        if record.kind == fmt.BATCH:
            self.next_seq = max(self.next_seq, record.a + 1)
            # A number written twice is one batch written twice (earlier versions did, when
            # a Ctrl-C stopped an append after its write): counted twice, the segment never
            # finished, and a process replaying it looped on a backlog that gave nothing.
            if self.seen.add(record.a):
                self.batches += 1
                self.lines += record.count
            return
        newly = 0
        for seq in range(record.a, record.b + 1):
            # Only batches the file holds: the owner may mark done a batch whose record a
            # salvage moved to another segment (it was out when the damage was found),
            # and counted, such a mark left the segment more done than it has batches:
            # never finished, never deleted.
            if self.done.add(seq) and seq in self.seen:
                newly += 1
        self.done_batches += newly
        if newly:
            self.done_lines += record.count


class Scan(NamedTuple):
    """What reading a segment through found (its counts went into the Segment)."""

    header: fmt.Header | None
    header_torn: bool  # no header, but only because a crash cut it short
    records: int
    damage: fmt.Damage | None
    end: int  # the file's size


def scan(seg: Segment, *, check: bool = True) -> Scan:
    """Read every record of a segment, checking CRCs, counting them into ``seg``; reads only.

    ``seg.size`` becomes the end of the last good record, ``seg.cursor`` the first
    record's place. Without ``check``, only the records' heads are read (counts only:
    damage inside a record goes unseen). A segment of a later version is not read
    (``header.later``). OSError when the file cannot be read.
    """
    end = os.fstat(seg.fd).st_size
    raw = os.pread(seg.fd, fmt.HEADER_SIZE, 0)
    header = fmt.decode_header(raw)
    if header is None:
        return Scan(None, fmt.torn_header(raw), 0, None, end)
    if header.later:
        return Scan(header, False, 0, None, end)
    offset = seg.cursor = header.size
    records = 0
    while True:
        record = fmt.read_record(seg.fd, offset, end, with_data=check)
        if record is None or isinstance(record, fmt.Damage):
            seg.size = offset
            return Scan(header, False, records, record, end)
        seg.count(record)
        records += 1
        offset = record.end


class Salvage(NamedTuple):
    """What follows corruption in a segment (``salvage``): reads only."""

    damaged: list[tuple[int, int]]  # byte ranges (start, stop) of damage, in order
    records: list[fmt.Record]  # the whole records between and after them (heads only)
    torn: fmt.Damage | None  # a torn tail after the last whole record
    rest: bool  # the last range runs to the end: no whole record found within the bound


def salvage(fd: int, damage: fmt.Damage, end: int) -> Salvage:
    """Find the whole, CRC-checked records after corruption at ``damage.offset``.

    Each damaged place runs to the next whole record (``fmt.next_record``); all of
    them together may check ``fmt.MAX_CANDIDATES`` chance marks in vain, and once
    that is spent the rest of the file is one damaged range, as before salvaging
    existed: checking stays quick whatever garbage a file holds. OSError when the
    file cannot be read.
    """
    damaged: list[tuple[int, int]] = []
    records: list[fmt.Record] = []
    budget = fmt.MAX_CANDIDATES
    at = damage.offset
    while True:
        found, budget = fmt.next_record(fd, at + 1, end, budget)
        if found is None:
            damaged.append((at, end))
            return Salvage(damaged, records, None, True)
        damaged.append((at, found))
        offset = found
        while True:
            record = fmt.read_record(fd, offset, end, with_data=True)
            if record is None:
                return Salvage(damaged, records, None, False)
            if isinstance(record, fmt.Damage):
                if record.torn:
                    return Salvage(damaged, records, record, False)
                at = record.offset
                break
            # Heads only: the data is read again, one record at a time, when it is copied.
            records.append(replace(record, data=None))
            offset = record.end


class Plan(NamedTuple):
    """What to do about corruption in a segment (``plan``): reads only."""

    before: list[fmt.Record]  # the records before the damage (heads), which stay
    copies: list[fmt.Record]  # the batches after it not done: to be delivered from a copy
    reack: list[tuple[int, int, int]]  # done marks after it for batches before it (first,
    #                                    last, lines): written again before the damage
    pending_before: int  # lines before the damage not done anywhere in the file
    lost: int  # lines of damaged batches not done (those whose count could be read)
    uncounted: int  # damaged places whose lines cannot be counted


def plan(fd: int, start: int, found: Salvage, done: fmt.AckBits) -> Plan:
    """Sort what ``salvage`` found: ``start`` is where the first record is, ``done`` the
    done marks known besides those after the damage (the scan's, or the owner's). Done
    marks anywhere count for batches anywhere: a batch marked done after the damage was
    delivered, whichever side of it its record is. OSError when the file cannot be read."""
    done = fmt.AckBits(bytearray(done.bits))
    before_marked = fmt.AckBits()
    before: list[fmt.Record] = []
    counts: dict[int, int] = {}
    offset = start
    stop = found.damaged[0][0]
    while offset < stop:
        record = fmt.read_record(fd, offset, stop, with_data=False)
        if not isinstance(record, fmt.Record):
            break  # (read whole before, by the scan or by this process's writes)
        before.append(record)
        if record.kind == fmt.BATCH:
            counts.setdefault(record.a, record.count)
        else:
            for seq in range(record.a, record.b + 1):
                before_marked.add(seq)
                done.add(seq)
        offset = record.end
    for record in found.records:
        if record.kind == fmt.ACK:
            for seq in range(record.a, record.b + 1):
                done.add(seq)
    copies: list[fmt.Record] = []
    taken = fmt.AckBits()
    for record in found.records:
        # A number seen before is the same batch written twice (as earlier versions did):
        # delivered from its first record.
        fresh = record.a not in done and record.a not in counts
        if record.kind == fmt.BATCH and fresh and taken.add(record.a):
            copies.append(record)
    reack: list[tuple[int, int, int]] = []
    for seq in sorted(counts):
        if seq in done and seq not in before_marked:
            if reack and reack[-1][1] == seq - 1:
                first, _, lines = reack[-1]
                reack[-1] = (first, seq, lines + counts[seq])
            else:
                reack.append((seq, seq, counts[seq]))
    pending_before = sum(n for seq, n in counts.items() if seq not in done)
    lost = uncounted = 0
    for index, (at, until) in enumerate(found.damaged):
        if found.rest and index == len(found.damaged) - 1:
            continue  # kept whole in quarantine: what it holds is counted if it is deleted
        got = fmt.damaged_batch(fd, at, until)
        if got is None:
            uncounted += 1
        elif got[0] not in done and got[0] not in counts and got[0] not in taken:
            lost += got[1]
    return Plan(before, copies, reack, pending_before, lost, uncounted)


def try_lock(
    path: str, held: set[int] | None = None, refused: Callable[[OSError], None] | None = None
) -> int | None:
    """A descriptor holding the lock of a file nobody else holds; None if taken or gone.

    ``held``: the caller's set of open descriptors, which the descriptor joins the
    moment it exists (a fork from another thread must find it: see ``Spool._fds``).
    ``refused``: told when the file is there but this process may not open it for
    writing (another user's, one ``sudo`` run wrote; a read-only mount): unlike a lock
    a live process holds, that does not pass, and its lines wait until someone acts.
    """
    try:
        fd = open_regular(path, os.O_RDWR)
    except OSError as exc:
        if refused is not None and exc.errno in _REFUSED:
            refused(exc)
        return None
    if held is not None:
        held.add(fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # Its owner may have deleted it between our open and our lock.
        if os.fstat(fd).st_ino != os.stat(path).st_ino:
            raise FileNotFoundError(path)
    except OSError:
        if held is not None:
            held.discard(fd)
        os.close(fd)
        return None
    return fd


#: The errors of an open that the file's permissions or its file system refused.
_REFUSED = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


def open_regular(path: str, flags: int) -> int:
    """Open a file only if it is a regular one: never through a symlink (into another
    folder, or another app's spool), never blocking on a FIFO. OSError otherwise."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, "a symbolic link, not followed", path) from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
    except OSError:
        os.close(fd)
        raise
    return fd


def save_quarantine(seg: Segment, folder: str, start: int, end: int) -> None:
    """Copy bytes ``start``..``end`` of a segment to quarantine (``quarantine_files``
    tells what the folder holds; the spool keeps the newest only)."""
    quarantine = os.path.join(folder, QUARANTINE)
    os.makedirs(quarantine, exist_ok=True)
    target = os.path.join(quarantine, f"{seg.name}.{start}.bad")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    out = os.open(target, flags, 0o600)
    try:
        offset = start
        while offset < end:
            chunk = os.pread(seg.fd, min(1 << 20, end - offset), offset)
            if not chunk:
                break
            write_all(out, [chunk], offset - start)
            offset += len(chunk)
    finally:
        os.close(out)


class QuarantineFile(NamedTuple):
    path: str
    size: int
    mtime_ns: int


def quarantine_files(folder: str) -> list[QuarantineFile]:
    """The quarantine files of a spool folder, oldest first; OSError when it cannot be
    listed (FileNotFoundError: there is none)."""
    found = []
    for entry in list_dir(os.path.join(folder, QUARANTINE)):
        try:
            # Only regular files the spool wrote: never followed, never another's file.
            if not entry.name.endswith(".bad") or not entry.is_file(follow_symlinks=False):
                continue
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        found.append(QuarantineFile(entry.path, info.st_size, info.st_mtime_ns))
    found.sort(key=lambda f: (f.mtime_ns, f.path))
    return found


def write_all(fd: int, parts: list[bytes], offset: int) -> None:
    """Write all of ``parts`` at ``offset``; a short write (disk full) is finished or fails."""
    written = os.pwritev(fd, parts, offset)
    rest = memoryview(b"".join(parts))[written:] if written < sum(map(len, parts)) else None
    while rest:
        n = os.pwrite(fd, rest, offset + written)
        if n <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written += n
        rest = rest[n:]


def list_dir(folder: str) -> Iterator[os.DirEntry[str]]:
    with os.scandir(folder) as it:
        yield from it
