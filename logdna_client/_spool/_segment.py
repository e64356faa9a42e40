"""A segment as the spool holds it, and the file operations on one.

Names in a spool folder: ``seg-<created ns>-<pid>-<random>.seg`` (sorted
by name is oldest first; ``.spool`` for those of format version 1, which the
versions that wrote them look for), ``.tmp-<pid>-<random>`` while one is being
made, and ``quarantine/<segment>.<offset>.bad`` for damage moved aside.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
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
    "QuarantineFile",
    "ReplayBatch",
    "Scan",
    "Segment",
    "is_segment_name",
    "list_dir",
    "open_regular",
    "quarantine_files",
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
        for seq in range(record.a, record.b + 1):
            if self.done.add(seq):
                self.done_batches += 1
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


def try_lock(path: str, held: set[int] | None = None) -> int | None:
    """A descriptor holding the lock of a file nobody else holds; None if taken or gone.

    ``held``: the caller's set of open descriptors, which the descriptor joins the
    moment it exists (a fork from another thread must find it: see ``Spool._fds``).
    """
    try:
        fd = open_regular(path, os.O_RDWR)
    except OSError:
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
