"""Reading a spool folder from outside, for ``logdna-client spool ls|verify|purge``.

Nothing here writes to a segment: a live process may be appending to it.
Whether a segment's writer lives is asked of its lock, held only for that
moment.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass

from . import _format as fmt
from ._segment import (
    QUARANTINE,
    Segment,
    is_segment_name,
    list_dir,
    open_regular,
    plan,
    salvage,
    scan,
    try_lock,
)

__all__ = [
    "SegmentInfo",
    "inspect_segment",
    "locked_by_live_process",
    "quarantine_paths",
    "remove_orphaned",
    "segment_paths",
]


@dataclass
class SegmentInfo:
    """What a segment holds, checked record by record."""

    path: str
    size: int
    mtime: float
    live: bool  # its writer (or adopter) holds the lock
    header: fmt.Header | None  # None: not a spool segment (or damaged at its start)
    records: int
    pending_batches: int
    pending_lines: int
    damage: fmt.Damage | None
    # Corruption (damage that is no torn tail) and what adopting the segment does about it:
    salvageable_lines: int = 0  # whole, pending lines after it, delivered from a copy
    damaged_places: int = 0  # byte ranges moved to quarantine
    damaged_bytes: int = 0
    lost_lines: int = 0  # lines of damaged batches whose count could be read
    uncounted: bool = False  # damaged bytes whose lines (if any) cannot be counted

    @property
    def header_ok(self) -> bool:
        return self.header is not None


def segment_paths(folder: str) -> list[str]:
    """The segment files of a spool folder, oldest first."""
    return [
        e.path for e in sorted(list_dir(folder), key=lambda e: e.name) if is_segment_name(e.name)
    ]


def quarantine_paths(folder: str) -> list[str]:
    try:
        return sorted(e.path for e in list_dir(os.path.join(folder, QUARANTINE)) if e.is_file())
    except (FileNotFoundError, NotADirectoryError):  # (a file of that name holds none)
        return []


def locked_by_live_process(fd: int) -> bool:
    """True when another open file holds the segment's lock (its process lives)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def inspect_segment(path: str, *, check: bool = True) -> SegmentInfo:
    """Check every record of a segment (reading only; without ``check``, only the records'
    heads are read: counts, no CRCs); OSError when it cannot be read."""
    fd = open_regular(path, os.O_RDONLY)
    try:
        seg = Segment(os.path.basename(path), fd, own=False)
        live = locked_by_live_process(fd)
        found = scan(seg, check=check)
        info = SegmentInfo(
            path,
            found.end,
            os.fstat(fd).st_mtime,
            live,
            found.header,
            found.records,
            seg.batches - seg.done_batches,
            seg.lines - seg.done_lines,
            found.damage,
        )
        if found.header is not None and found.damage is not None and not found.damage.torn:
            # What adopting it will salvage: those lines wait too (purge gives them up).
            after = salvage(fd, found.damage, found.end)
            todo = plan(fd, found.header.size, after, seg.done)
            again = sum(last - first + 1 for first, last, _ in todo.reack)
            info.salvageable_lines = sum(record.count for record in todo.copies)
            info.pending_batches += len(todo.copies) - again
            info.pending_lines = todo.pending_before + info.salvageable_lines
            info.damaged_places = len(after.damaged)
            info.damaged_bytes = sum(stop - start for start, stop in after.damaged)
            info.lost_lines = todo.lost
            info.uncounted = bool(todo.uncounted) or after.rest
            info.records += len(after.records)
        return info
    finally:
        os.close(fd)


def remove_orphaned(path: str) -> bool:
    """Delete a segment unless a live process holds it; True when deleted."""
    fd = try_lock(path)
    if fd is None:
        return False
    try:
        # Unlinked under the lock: no process adopts it half-deleted.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return True
    finally:
        os.close(fd)
