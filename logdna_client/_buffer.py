"""The buffer: a FIFO of serialized lines, bounded in bytes, with drop accounting.

Application threads ``put``; the sender thread ``take``s batches and
``release``s them once delivered (or given up). Bytes still in flight count
against the bound, so memory stays within ``max_bytes`` however long the
service is down. The critical sections are a few attribute updates long: a
plain lock, never held across I/O or waiting.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable

__all__ = ["LINE_OVERHEAD", "SEPARATOR", "Buffer", "join_entries"]

# What a queued entry costs beyond its length: the bytes object header (33)
# and the deque slot (8). Counted so the bound is about memory.
_ENTRY_OVERHEAD = 41

#: Each queued entry is the line with a comma in front: the separator the
#: request body needs anyway. Making it is also the copy that matters for
#: memory: orjson hands back bytes objects with 4 KiB or more allocated behind
#: them, while the concatenation allocates exactly what the line needs.
SEPARATOR = b","

# Free-threaded builds (3.13t) give no atomicity for free: always take the lock there.
_NO_GIL = not getattr(sys, "_is_gil_enabled", lambda: True)()

#: Bytes a queued line costs beyond its serialized length.
LINE_OVERHEAD = _ENTRY_OVERHEAD + len(SEPARATOR)


class Buffer:
    """Byte-bounded FIFO of serialized lines.

    Args:
        max_bytes: bound on queued plus in-flight bytes (with per-line overhead).
        overflow: ``drop_oldest``, ``drop_newest`` or ``block``.
        block_timeout: how long ``put`` may wait for room under ``block``.
        wake_bytes: queued bytes at which ``wake`` is called (once, until the next take).
        wake: called from ``put`` to wake the sender.
    """

    def __init__(
        self,
        max_bytes: int,
        overflow: str,
        block_timeout: float,
        wake_bytes: int,
        wake: Callable[[], None],
    ) -> None:
        self._lines: deque[bytes] = deque()
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._max = max_bytes
        self._overflow = overflow
        self._block_timeout = block_timeout
        self._wake_bytes = wake_bytes
        self._wake = wake
        self._wake_pending = False
        self.queued_bytes = 0
        self.inflight_bytes = 0
        self.inflight_lines = 0
        self.accepted = 0  # lines ever queued: the next line's sequence number
        self._head_seq = 0  # sequence number of the oldest queued line
        self._inflight_start: int | None = None
        self.dropped: Counter[str] = Counter()
        # Drops not yet told to the service in a summary line.
        self.unreported: Counter[str] = Counter()
        self.closed = False

    def __len__(self) -> int:
        return len(self._lines)

    def put(self, data: bytes) -> bool:
        """Queue one line; False when it was dropped (and counted)."""
        data = SEPARATOR + data
        size = len(data) + _ENTRY_OVERHEAD
        if _NO_GIL or self.closed or self.queued_bytes + self.inflight_bytes + size > self._max:
            return self._put_locked(data, size)
        # The common case takes no lock: under the GIL, deque.append is atomic
        # and an attribute's "+=" runs without a thread switch between its read
        # and its write. Counters go first, so a concurrent take() can only see
        # them ahead of the deque, never behind it.
        self.queued_bytes += size
        self.accepted += 1
        self._lines.append(data)
        if self.queued_bytes >= self._wake_bytes and not self._wake_pending:
            self._wake_pending = True
            self._wake()
        return True

    def _put_locked(self, data: bytes, size: int) -> bool:
        """``put`` when the buffer is full or closed (or there is no GIL)."""
        with self._lock:
            if self.closed:
                self._drop("after_close", 1)
                return False
            if self.queued_bytes + self.inflight_bytes + size > self._max and not self._make_room(
                size
            ):
                return False
            self.queued_bytes += size
            self.accepted += 1
            self._lines.append(data)
            if self.queued_bytes >= self._wake_bytes and not self._wake_pending:
                self._wake_pending = True
                wake = True
            else:
                wake = False
        if wake:
            self._wake()
        return True

    def _make_room(self, size: int) -> bool:
        """Called with the lock held when ``size`` more bytes do not fit."""
        if size > self._max:
            self._drop("buffer_full", 1)
            return False
        if self._overflow == "drop_oldest":
            lines = self._lines
            dropped = 0
            while lines and self.queued_bytes + self.inflight_bytes + size > self._max:
                self.queued_bytes -= len(lines.popleft()) + _ENTRY_OVERHEAD
                dropped += 1
            self._head_seq += dropped
            if dropped:
                self._drop("buffer_full", dropped)
            if self.queued_bytes + self.inflight_bytes + size <= self._max:
                return True
        elif self._overflow == "block" and self._block_timeout > 0:
            deadline = time.monotonic() + self._block_timeout
            self._wake_pending = True
            self._wake()  # the sender must run for room to appear
            while self.queued_bytes + self.inflight_bytes + size > self._max and not self.closed:
                left = deadline - time.monotonic()
                if left <= 0 or not self._room.wait(left):
                    break
            if self.queued_bytes + self.inflight_bytes + size <= self._max and not self.closed:
                return True
        self._drop("buffer_full", 1)
        return False

    def _drop(self, reason: str, count: int) -> None:
        self.dropped[reason] += count
        self.unreported[reason] += count

    def count_drop(self, reason: str, count: int = 1) -> None:
        """Count lines lost elsewhere (rejected by the service, cut by shutdown ...)."""
        with self._lock:
            self._drop(reason, count)

    def snapshot(self) -> list[bytes]:
        """The queued lines, oldest first, as serialized (for tests and debugging)."""
        with self._lock:
            return [entry[1:] for entry in self._lines]

    def take(self, max_bytes: int) -> list[bytes]:
        """Move up to ``max_bytes`` of the oldest entries (at least one) to in-flight.

        Entries are lines with a leading comma; ``join_entries`` makes a body of them.
        """
        batch: list[bytes] = []
        with self._lock:
            lines = self._lines
            total = 0
            while lines:
                size = len(lines[0]) + _ENTRY_OVERHEAD
                if batch and total + size > max_bytes:
                    break
                batch.append(lines.popleft())
                total += size
            self.queued_bytes -= total
            self.inflight_bytes += total
            if batch:
                self.inflight_lines = len(batch)
                self._inflight_start = self._head_seq
                self._head_seq += len(batch)
            self._wake_pending = self.queued_bytes >= self._wake_bytes
        return batch

    def release(self, lines: list[bytes]) -> None:
        """Forget lines that were taken: delivered, or dropped and counted."""
        size = sum(len(line) for line in lines) + (_ENTRY_OVERHEAD) * len(lines)
        with self._lock:
            self.inflight_bytes -= size
            self.inflight_lines = 0
            self._inflight_start = None
            self._room.notify_all()

    def take_unreported(self) -> Counter[str]:
        """The drops since the last summary, reset to none."""
        with self._lock:
            counts = self.unreported
            self.unreported = Counter()
        return counts

    def restore_unreported(self, counts: Counter[str]) -> None:
        """Put back drop counts whose summary line could not be queued."""
        with self._lock:
            self.unreported.update(counts)

    def close(self) -> None:
        """Refuse further lines (counted as ``after_close``) and wake blocked writers."""
        with self._lock:
            self.closed = True
            self._room.notify_all()

    def discard_all(self, reason: str) -> int:
        """Drop everything still queued (at the shutdown deadline); returns how many."""
        with self._lock:
            lines = self._lines
            count = 0
            while lines:  # popleft, not clear(): a lock-free put may be appending
                self.queued_bytes -= len(lines.popleft()) + _ENTRY_OVERHEAD
                count += 1
            self._head_seq += count
            if count:
                self._drop(reason, count)
            self._room.notify_all()
        return count

    @property
    def done_through(self) -> int:
        """Every line with a sequence number below this has left (sent or dropped)."""
        start = self._inflight_start
        return self._head_seq if start is None else start

    @property
    def held_bytes(self) -> int:
        return self.queued_bytes + self.inflight_bytes


def join_entries(entries: list[bytes]) -> bytes:
    """The request body for queued entries (each a line with a leading comma)."""
    joined = b"".join(entries)
    return b'{"lines":[' + memoryview(joined)[1:] + b"]}"
