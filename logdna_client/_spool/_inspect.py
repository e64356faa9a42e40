"""Reading a spool folder from outside, for ``logdna-client spool ls|verify|purge``.

Nothing here writes to a segment: a live process may be appending to it.
Whether a segment's writer lives is asked of its lock, held only for that
moment.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass

from . import _format as fmt

__all__ = ["SegmentInfo", "inspect_segment", "locked_by_live_process", "segment_paths"]


@dataclass
class SegmentInfo:
    """What a segment holds, checked record by record."""

    path: str
    size: int
    mtime: float
    live: bool  # its writer (or adopter) holds the lock
    header_ok: bool = True
    created_ns: int = 0
    pid: int = 0
    batches: int = 0
    lines: int = 0
    done_batches: int = 0
    done_lines: int = 0
    records: int = 0
    damage: fmt.Damage | None = None

    @property
    def pending_lines(self) -> int:
        return self.lines - self.done_lines

    @property
    def pending_batches(self) -> int:
        return self.batches - self.done_batches


def segment_paths(folder: str) -> list[str]:
    """The segment files of a spool folder, oldest first."""
    with os.scandir(folder) as it:
        names = sorted(
            e.name for e in it if e.name.startswith("seg-") and e.name.endswith(".spool")
        )
    return [os.path.join(folder, name) for name in names]


def quarantine_paths(folder: str) -> list[str]:
    path = os.path.join(folder, "quarantine")
    try:
        with os.scandir(path) as it:
            return sorted(e.path for e in it if e.is_file())
    except FileNotFoundError:
        return []


def locked_by_live_process(fd: int) -> bool:
    """True when another open file holds the segment's lock (its process lives)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def inspect_segment(path: str) -> SegmentInfo:
    """Check every record of a segment (reading only); OSError when it cannot be read."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        info = SegmentInfo(path, st.st_size, st.st_mtime, locked_by_live_process(fd))
        header = fmt.decode_header(os.pread(fd, fmt.HEADER_SIZE, 0))
        if header is None:
            info.header_ok = False
            return info
        info.created_ns, info.pid = header.created_ns, header.pid
        for record in _records(fd, st.st_size, info):
            info.records += 1
            if record.kind == fmt.BATCH:
                info.batches += 1
                info.lines += record.count
            else:
                info.done_batches += record.b - record.a + 1
                info.done_lines += record.count
        return info
    finally:
        os.close(fd)


def _records(fd: int, end: int, info: SegmentInfo) -> Iterator[fmt.Record]:
    offset = fmt.HEADER_SIZE
    while True:
        record = fmt.read_record(fd, offset, end, with_data=True)
        if record is None:
            return
        if isinstance(record, fmt.Damage):
            info.damage = record
            return
        yield record
        offset = record.end


def remove_orphaned(path: str) -> bool:
    """Delete a segment unless a live process holds it; True when deleted."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        # Unlinked under the lock: no process adopts it half-deleted.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return True
    finally:
        os.close(fd)
