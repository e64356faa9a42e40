"""The buffer: a FIFO of serialized lines, bounded in bytes, with drop accounting.

Application threads ``put``; the sender thread ``take``s batches and
``release``s them once delivered (or given up). Bytes still in flight count
against the bound, so memory stays within ``max_bytes`` however long the
service is down.

``put`` is the application's hot path. In the common case (room to spare, no
batch's worth queued yet, buffer open) it takes no lock: under the GIL
``deque.append`` is atomic, and reading ``queued_bytes``, comparing and
writing it back has no thread switch in between (CPython switches threads
only at calls and backward jumps). Everything else (overflow, waking the
sender, close, take, release) happens under one plain lock, never held across
I/O or waiting.

The lock-free protocol, for ``put_entry`` and the C handle that mirrors it
(``_speedups.c``, handed the buffer itself; it reads and writes the public
attributes named here):
``size = entry_cost(entry)`` first (a call may switch threads); if
``buffer.queued_bytes + size <= buffer.fast_limit``, then
``buffer.queued_bytes += size`` (one statement: no thread switch, no trace
event inside it, even under a debugger or profiler) and then
``buffer.entries.append(entry)``; otherwise call ``put_entry``. ``fast_limit``
is only written under the lock; threads that passed the check just before it
fell may each still add their one line.
"""

from __future__ import annotations

import operator
import sys
import threading
import time
from bisect import bisect_right
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from itertools import accumulate, islice, repeat

from ._stats import DropReason, ToldReason
from ._threads import on_sender_thread

__all__ = ["ENTRY_OVERHEAD", "LINE_OVERHEAD", "SEPARATOR", "Buffer", "join_entries"]

#: What a queued entry costs beyond its length: the bytes object header (33)
#: and the deque slot (8). Counted so the bound is about memory.
ENTRY_OVERHEAD = 41

#: Each queued entry is the line with a comma in front: the separator the
#: request body needs anyway. Making it is also the copy that matters for
#: memory: orjson hands back bytes objects with 4 KiB or more allocated behind
#: them, while the concatenation allocates exactly what the line needs.
SEPARATOR = b","

#: Bytes a queued line costs beyond its serialized length.
LINE_OVERHEAD = ENTRY_OVERHEAD + len(SEPARATOR)

#: A request body is BODY_HEAD, the lines joined by SEPARATOR, then BODY_TAIL (the
#: ingest API's ``{"lines": [...]}``): ``join_entries`` and ``_sender.gzip_entries``.
BODY_HEAD = b'{"lines":['
BODY_TAIL = b"]}"


def entry_cost(entry: bytes) -> int:
    """What one queued entry counts for against the bound: its length plus
    ``ENTRY_OVERHEAD``. The rule: every count of the buffer comes from it, in bulk
    through ``cost_of``; the C put is handed the constant (_speedups.c)."""
    return len(entry) + ENTRY_OVERHEAD


def cost_of(entries: Sequence[bytes]) -> int:
    """``entry_cost`` summed over ``entries``: the overhead once per entry, in two
    C-level passes rather than a call per entry (the sender counts batches of
    15,000 lines, more than once each). ``tests/test_buffer.py`` holds it to the
    sum."""
    return sum(map(len, entries)) + ENTRY_OVERHEAD * len(entries)


# Free-threaded builds (3.13t) give no atomicity for free: always lock there.
_NO_GIL = not getattr(sys, "_is_gil_enabled", lambda: True)()
# Integers, not infinities: the hot path compares int with int, which is
# several times cheaper than int with float.
# A wake-up point no byte count reaches.
_NEVER = 1 << 62
# fast_limit when puts must lock: below any byte count (a count is never negative).
_LOCKED = -1

#: How long a line logged once the exit is done with a buffer waits for its lock
#: (``refuse_late``): a moment, then never again.
_LATE_WAIT = 0.1

# Calls its argument, in C: take's removal must run no Python frame, where a signal
# handler could raise between two pops. operator.call is 3.11+; before it, a
# methodcaller of __call__ (a lambda here lost lines uncounted on 3.10).
_call: Callable[[Callable[[], bytes]], bytes] = getattr(
    operator, "call", operator.methodcaller("__call__")
)
# What take pops one by one when it clears the queue instead: nothing.
_NOTHING: Iterator[bytes] = iter(())


class Buffer:
    """Byte-bounded FIFO of serialized lines.

    Args:
        max_bytes: bound on queued plus in-flight bytes (with per-line overhead).
        overflow: ``drop_oldest``, ``drop_newest`` or ``block``.
        block_timeout: how long ``put`` may wait for room under ``block``.
        wake_bytes: queued bytes at which ``wake`` is called (once, until the next take).
        wake: called from ``put`` to wake the sender.
        lock_free: whether puts may skip the lock from the start (else from
            ``allow_lock_free()`` on).
    """

    def __init__(
        self,
        max_bytes: int,
        overflow: str,
        block_timeout: float,
        wake_bytes: int,
        wake: Callable[[], None],
        lock_free: bool = True,
    ) -> None:
        self.entries: deque[bytes] = deque()
        # Re-entrant: a signal handler, or a finalizer the garbage collector runs
        # on an allocation, may log, flush or close on a thread that is inside one
        # of the sections below. Each section leaves the counters consistent at
        # every statement, so a nested one may run in the middle of it.
        self._lock = threading.RLock()
        self._space = threading.Condition(self._lock)
        #: Idents of the threads waiting for the sender now: for room (``block``), in a
        #: flush or a close. A finalizer's line on the sender does not wait for a lock
        #: one of them may hold (see ``LogDNAHandler._stdlib_handle_on_sender``).
        self.waiting: set[int] = set()
        self._max = max_bytes
        self._overflow = overflow
        self._block_timeout = block_timeout
        self._wake_bytes = wake_bytes
        self._wake = wake
        # Queued bytes at which put() wakes the sender; infinite once it did,
        # until the sender takes a batch. One comparison on the hot path.
        self._wake_at = wake_bytes
        self.queued_bytes = 0
        self.inflight_bytes = 0
        self.inflight_lines = 0
        # The bound less what is in flight.
        self._room = max_bytes
        # A Client turns this on once its sender runs (``allow_lock_free``), so
        # that its first put takes the locked path, where the sender is started.
        self._lock_free = lock_free
        #: Queued bytes (after adding a line) up to which a put may skip the lock:
        #: below both the bound and the wake-up point; -1 while every put must
        #: lock (before the sender runs, while a batch is taken, once closed, on
        #: builds without a GIL).
        self.fast_limit = _LOCKED
        self._head_seq = 0  # sequence number of the oldest queued line
        self._inflight_start: int | None = None
        # The batch in flight, from before its entries leave the queue until it is
        # released or untaken: an interrupted take's, handed over by the next one.
        self._taken: list[bytes] | None = None
        #: The batch ``take_behind`` took until the spill is done with it (on disk, or
        #: ``put_back``): from before it leaves the queue, so that Ctrl-C as it is handed
        #: over never loses it (``Sender._spill_behind``).
        self.behind: list[bytes] | None = None
        self.dropped: Counter[str] = Counter()
        # Drops not yet told to the service in a summary line.
        self.unreported: Counter[str] = Counter()
        self.closed = False
        #: Where lines go instead of the queue while ``testing.capture_lines`` is on.
        self._sink: Callable[[bytes], bool] | None = None
        #: Where lines go once closed, if the closer said (``close(forward=)``).
        self._forward: Callable[[bytes], bool] | None = None
        #: A line refused late found the lock held past _LATE_WAIT (see refuse_late).
        self._lock_lost = False
        self._refresh_fast_limit()

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def accepted(self) -> int:
        """Lines ever queued: also the sequence number the next line gets."""
        # Under the lock: take() pops lines before it moves the sequence numbers
        # on, and a read in between would count the lines being taken as never
        # accepted (flush() would then return before they are delivered).
        with self._lock:
            return self._head_seq + len(self.entries)

    def put(self, data: bytes) -> bool:
        """Queue one serialized line; False when it was dropped (and counted)."""
        return self.put_entry(SEPARATOR + data)

    def put_entry(self, data: bytes) -> bool:
        """Queue one entry (``SEPARATOR`` + a serialized line); the hot path."""
        size = entry_cost(data)
        if self.queued_bytes + size > self.fast_limit:
            return self._put_locked(data, size)
        self.queued_bytes += size  # before the append: take() must never see a line uncounted
        self.entries.append(data)
        return True

    def _put_locked(self, data: bytes, size: int) -> bool:
        """``put`` when the buffer is full, closed, or due to wake the sender."""
        # Nested in a section of this thread's, or on a sender: waiting for room would
        # wait for a take that only this thread could make.
        nested = self._overflow == "block" and (self.owned() or on_sender_thread())
        wake = False
        with self._lock:
            # Read once: a signal handler on this thread (the lock is reentrant) may close
            # the buffer between two reads, and the line went neither way then.
            closed, forward = self.closed, self._forward
            if closed and forward is None:
                self._drop("after_close", 1)
                return False
            if closed:
                pass  # forwarded below, outside the lock: it may take locks of its own
            elif self._sink is not None:
                return self._sink(data)
            elif self.queued_bytes + self.inflight_bytes + size > self._max and not (
                self._make_room(size, wait=not nested)
            ):
                return False
            else:
                self.queued_bytes += size
                self.entries.append(data)
                wake = self.queued_bytes >= self._wake_at
                if wake:
                    self._wake_at = _NEVER
                    self._refresh_fast_limit()
                forward = None
        if forward is not None:
            if forward(data):
                return True
            with self._lock:
                self._drop("after_close", 1)
            return False
        if wake:
            self._wake()
        return True

    def refuse_late(self, data: bytes) -> bool:
        """``put_entry`` once the process's ending is done with this (closed) buffer: the
        line is counted as ``after_close``. The lock is waited for a moment only: at
        interpreter shutdown a daemon thread that held it may be stopped for good (3.13
        freezes them where they are), and a finalizer's line waited forever, the process
        with it. Past that moment, and from then on, it is counted without the lock
        (a race may lose a count; nothing waits)."""
        if not self.closed:
            return self.put_entry(data)
        if not self._lock_lost and self._lock.acquire(timeout=_LATE_WAIT):
            try:
                self._drop("after_close", 1)
            finally:
                self._lock.release()
        else:
            self._lock_lost = True
            self._drop("after_close", 1)
        return False

    def allow_lock_free(self) -> None:
        """Let puts skip the lock from now on (the owner's sender is running)."""
        with self._lock:
            self._lock_free = True
            self._refresh_fast_limit()

    def divert(self, sink: Callable[[bytes], bool] | None) -> None:
        """Hand every new entry to ``sink`` instead of queueing it (None: queue again).

        For ``testing.capture_lines``. Every put, the handler's inlined one and
        the C one included, takes the locked path while diverted (its
        ``fast_limit`` stays locked), so that path is the one place to divert.
        """
        with self._lock:
            self._sink = sink
            self._refresh_fast_limit()

    def retire(self) -> None:
        """In a forked child, for the parent's buffer the child replaced: every put
        that still finds it (the C ``handle`` holds it) takes the locked way, the
        owner's ``put_entry``, which hands over the new one. Takes no lock: a
        parent's thread may have held it at the fork."""
        self._lock_free = False
        self.fast_limit = _LOCKED

    def _refresh_fast_limit(self) -> None:
        # Called with the lock held whenever the bound, in-flight bytes or the
        # wake-up point change.
        if self._lock_free and not (self.closed or _NO_GIL or self._sink):
            self.fast_limit = min(self._room, self._wake_at - 1)
        else:
            self.fast_limit = _LOCKED

    def _make_room(self, size: int, wait: bool = True) -> bool:
        """Called with the lock held when ``size`` more bytes do not fit.

        ``wait`` is False where the room could only come from this thread.
        """
        if size > self._max:
            self._drop("buffer_full", 1)
            return False
        if self._overflow == "drop_oldest":
            lines = self.entries
            # Evict until the line fits, deciding (the loop's test) with no call before
            # the return: lock-free puts may take room freed here at a thread switch.
            while (over := self.queued_bytes + self.inflight_bytes + size - self._max) > 0:
                head = self._head_seq
                count = cost = 0
                while cost < over and count < len(lines):
                    cost += entry_cost(lines[count])
                    count += 1
                if not count:
                    break
                self._drop("buffer_full", count, head=head, cost=cost)
            else:
                return True
        elif self._overflow == "block" and self._block_timeout > 0 and wait:
            deadline = time.monotonic() + self._block_timeout
            # The sender must run for room to appear. Woken without the lock: a
            # dead sender is restarted from the wake-up, and starting takes it.
            # Released inside the try: a KeyboardInterrupt as release() returns must
            # still find the lock held again (the caller's ``with`` lets it go).
            current = threading.get_ident()
            self.waiting.add(current)
            try:
                try:
                    self._lock.release()
                    self._wake()
                finally:
                    self._lock.acquire()
                while (
                    self.queued_bytes + self.inflight_bytes + size > self._max and not self.closed
                ):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    try:
                        woken = self._space.wait(left)
                    finally:
                        # Condition.wait lets the lock go before its own try: a Ctrl-C as
                        # that returns leaves it let go, and the caller's ``with`` would
                        # then fail to release it (a RuntimeError instead).
                        if not self.owned():
                            self._lock.acquire()
                    if not woken:
                        break
            finally:
                self.waiting.discard(current)
            if self.queued_bytes + self.inflight_bytes + size <= self._max and not self.closed:
                return True
        self._drop("buffer_full", 1)
        return False

    def owned(self) -> bool:
        """Whether this thread is inside one of the buffer's critical sections (a signal
        handler or finalizer runs there): then nothing on it may wait for the sender,
        whose next step needs this lock."""
        # What threading.Condition asks an RLock; present on every CPython we support.
        return bool(self._lock._is_owned())  # type: ignore[attr-defined]

    def _drop(
        self, reason: DropReason, count: int, *, head: int | None = None, cost: int = 0
    ) -> bool:
        """Count ``count`` lines as dropped for ``reason`` (lock held).

        With ``head`` (``_head_seq`` as read before sizing them) they are the ``count``
        oldest queued entries, ``cost`` bytes in all, and are removed too, after the
        counting; unless the head moved since (a signal handler's put evicted them
        meanwhile): then nothing is done, and False says so.

        Ctrl-C's KeyboardInterrupt, and any signal handler or thread switch, comes only
        at a function's start, after a call returns, or at a loop's backward jump. From
        the first write below to the last there is none (a ``Counter``'s missing key
        would call ``__missing__``: hence the ``in``), and the removal is one C call at
        the end: the counts are never seen half made, nor a line gone uncounted.
        """
        lines = self.entries
        remove: Iterator[bytes] | None = None  # one line: its popleft alone
        if head is not None:
            if count > 1:  # made (not run) before the writes: making it is two calls
                remove = map(deque.popleft, repeat(lines, count))
            if head != self._head_seq:
                return False
        dropped, unreported = self.dropped, self.unreported
        dropped[reason] = dropped[reason] + count if reason in dropped else count
        unreported[reason] = unreported[reason] + count if reason in unreported else count
        if head is None:
            return True
        self._head_seq += count
        self.queued_bytes -= cost  # no call between reading and writing it: see put_entry
        if remove is None:
            lines.popleft()
        else:
            deque(remove, 0)
        return True

    def count_drop(self, reason: DropReason, count: int = 1) -> None:
        """Count lines lost elsewhere (rejected by the service, cut by shutdown ...)."""
        with self._lock:
            self._drop(reason, count)

    def snapshot(self) -> list[bytes]:
        """The queued lines, oldest first, as serialized (for tests and debugging)."""
        with self._lock:
            return [entry[len(SEPARATOR) :] for entry in self.entries]

    def take(self, max_bytes: int) -> list[bytes]:
        """Move up to ``max_bytes`` of the oldest entries (at least one) to in-flight.

        Entries are lines with a leading comma; ``join_entries`` makes a body of
        them. Sizes are summed and entries copied or popped in C (sum, map, islice),
        never in a Python loop per line: the sender holds the GIL while it does
        this, and the application waits for the GIL.

        The entries are counted in flight first and removed after, by one C call
        with no signal check between the first write and it (see ``_drop``): a
        KeyboardInterrupt (Ctrl-C on the exit path, which takes on the main thread)
        leaves them queued, or counted in flight and kept in ``_taken``, never gone
        uncounted. A batch still there, neither released nor untaken, when take is
        called again is what that call hands over: the one an interrupted take, or
        its interrupted caller, never got.
        """
        with self._lock:
            if self._taken is not None:
                return self._taken
            # Until the bytes taken are counted in flight, the room puts see is
            # too big: make them wait for the lock meanwhile.
            self.fast_limit = _LOCKED
            lines = self.entries
            may_copy = True
            while True:
                head = self._head_seq
                n = len(lines)
                if not n:
                    self._wake_at = self._wake_bytes
                    self._refresh_fast_limit()
                    return []
                # A put that passed its lock-free check before fast_limit fell may
                # still append while we iterate (a call can switch threads); the
                # iterator then raises, and trying again succeeds: only such
                # appends can happen, as we hold the lock.
                try:
                    # queued_bytes never counts less than the entries present (a put
                    # adds before it appends): within max_bytes, they all fit. Copied,
                    # and the queue cleared after the counting: cheaper than popping.
                    copied = may_copy and self.queued_bytes <= max_bytes
                    if copied:
                        count, batch = n, list(islice(lines, n))
                        total = cost_of(batch)
                        remove = _NOTHING
                    else:
                        count, total = self._size_batch(n, max_bytes)
                        batch = []  # the removal fills it
                        remove = map(_call, repeat(lines.popleft, count))
                except RuntimeError:
                    continue
                # No call from here to the removal: what these two tests see holds.
                # A signal handler's put may have evicted the head since it was sized
                # (drop_oldest, on this thread): size again what is there now.
                if head != self._head_seq:
                    continue
                # Counted bytes beyond the copy's: a put appended after it (a thread
                # switch at a call), and clear() would take that line too: pop instead.
                if not copied or self.queued_bytes == total:
                    break
                may_copy = False
            # From here to the removal: no call, hence no signal handler, no thread switch.
            self.queued_bytes -= total
            self.inflight_bytes += total
            self.inflight_lines = count
            self._inflight_start = head
            self._head_seq = head + count
            self._wake_at = _NEVER if self.queued_bytes >= self._wake_bytes else self._wake_bytes
            self._room = self._max - self.inflight_bytes  # _update_room's, without its call
            self._taken = batch
            if copied:
                lines.clear()
            else:
                batch.extend(remove)
            # Puts lock until this runs (fast_limit fell above): safe if it never does.
            self._refresh_fast_limit()
        return batch

    def _size_batch(self, n: int, max_bytes: int) -> tuple[int, int]:
        """How many of the ``n`` oldest entries make a batch within ``max_bytes`` (at
        least one), and what they cost (lock held). Raises RuntimeError when a
        lock-free put appends meanwhile."""
        lines = self.entries
        count = total = 0
        blocks = islice(lines, n)
        while count < n:
            # Whole blocks by one sum each (no int per line), until the
            # block the batch ends in: only that one is sized line by line.
            step = min(512, n - count)  # a block: ~50 KB of lines
            block = cost_of(list(islice(blocks, step)))
            if total + block > max_bytes:
                sizes = list(
                    accumulate(map(entry_cost, islice(lines, count, count + step)), initial=total)
                )
                fit = max(1 - count, bisect_right(sizes, max_bytes) - 1)
                return count + fit, sizes[fit]
            total += block
            count += step
        # queued_bytes counted a put that has not appended yet: all present fit.
        return count, total

    def settle(self, count: int) -> None:
        """Lines of the batch in flight that were dealt with (delivered, or dropped and
        counted) before the whole batch is: they no longer count as held."""
        self.inflight_lines -= count  # the sender's alone to write

    @property
    def held_lines(self) -> int:
        """Lines waiting or in flight and not yet dealt with."""
        return len(self.entries) + self.inflight_lines

    def untake(self, lines: list[bytes]) -> None:
        """Put the batch just taken back at the head, as if it had never been taken."""
        size = cost_of(lines)
        with self._lock:
            self.entries.extendleft(reversed(lines))
            self.queued_bytes += size
            self.inflight_bytes -= size
            self.inflight_lines = 0
            self._head_seq -= len(lines)
            self._inflight_start = None
            self._taken = None
            self._update_room()

    def take_behind(self, max_bytes: int) -> list[bytes]:
        """Remove up to ``max_bytes`` of the oldest queued entries (at least one) and
        leave the batch in flight as it is: a closed buffer's lines going to the spool
        behind that batch while it is out (``Sender.spill_while_closing``). They leave
        as a batch taken, settled and released does; ``put_back`` undoes it."""
        lines = self.entries
        with self._lock:
            while True:
                try:
                    count, total = self._size_batch(len(lines), max_bytes)
                except RuntimeError:  # a lock-free put that began before close() appended
                    continue
                break
            # Copied, and the removal made, before any write: Ctrl-C at a call up to here
            # leaves the queue as it was.
            batch = list(islice(lines, count))
            remove = map(deque.popleft, repeat(lines, count))
            # From here to the removal: no call, hence no signal handler.
            self.behind = batch
            self.queued_bytes -= total
            self._head_seq += count
            deque(remove, 0)
            self._update_room()
            self._space.notify_all()
        return batch

    def put_back(self, lines: list[bytes]) -> None:
        """Undo ``take_behind``: ``lines`` back at the head of the queue."""
        size = cost_of(lines)
        with self._lock:
            back = reversed(lines)
            # From here to the return: no call before the one that puts them back.
            self.behind = None
            self.queued_bytes += size
            self._head_seq -= len(lines)
            self.entries.extendleft(back)
            self._update_room()

    def reclaim(self) -> None:
        """Put a batch still taken back at the head, where no one can be sending it: at
        the sender's end, the batch of a take that was interrupted (Ctrl-C on the exit
        path) after counting it, which no later take handed over. Then it is spooled,
        or counted as dropped, with what is queued, not left in flight uncounted."""
        with self._lock:
            if self._taken is not None:
                self.untake(self._taken)

    def release(self, lines: list[bytes]) -> None:
        """Forget lines that were taken: delivered, or dropped and counted."""
        size = cost_of(lines)
        with self._lock:
            self.inflight_bytes -= size
            self.inflight_lines = 0
            self._inflight_start = None
            self._taken = None
            self._update_room()
            self._space.notify_all()

    def _update_room(self) -> None:
        self._room = self._max - self.inflight_bytes
        self._refresh_fast_limit()

    def take_unreported(self) -> Counter[str]:
        """The drops since the last summary, reset to none."""
        with self._lock:
            counts = self.unreported
            self.unreported = Counter()
        return counts

    def tell(self, reason: ToldReason, count: int) -> None:
        """A loss counted elsewhere (by the spool) for the next summary line to tell."""
        with self._lock:
            self.unreported[reason] += count

    def restore_unreported(self, counts: Counter[str]) -> None:
        """Put back drop counts whose summary line could not be queued."""
        with self._lock:
            self.unreported.update(counts)

    def close(self, forward: Callable[[bytes], bool] | None = None) -> None:
        """Refuse further lines (counted as ``after_close``) and wake blocked writers.

        ``forward``: hand each further line to it instead, and count it only when it
        says False (a handler that a reconfiguration closed ships through a new client).
        """
        with self._lock:
            self._forward = forward
            self.closed = True
            self._refresh_fast_limit()
            self._space.notify_all()

    def discard_all(self, reason: DropReason) -> int:
        """Drop everything still queued (at the shutdown deadline); returns how many."""
        with self._lock:
            lines = self.entries
            count = 0
            # Until none is left, not clear(): a lock-free put may be appending.
            while lines:
                head, n = self._head_seq, len(lines)
                if self._drop(reason, n, head=head, cost=cost_of(list(islice(lines, n)))):
                    count += n
            self._space.notify_all()
        return count

    @property
    def oldest_queued(self) -> int:
        """The sequence number of the oldest line in memory (not taken): every line below
        it has been taken, to be sent, to disk, or dropped."""
        return self._head_seq

    @property
    def done_through(self) -> int:
        """Every line with a sequence number below this has left (sent or dropped)."""
        start = self._inflight_start
        return self._head_seq if start is None else start

    @property
    def held_bytes(self) -> int:
        return self.queued_bytes + self.inflight_bytes


def join_entries(entries: list[bytes]) -> bytes:
    """The request body for queued entries (each a line with a leading comma).

    The lines are copied once, by one ``join``: only the first entry is copied
    on its own, to drop its comma. (Joining first and then adding the brackets
    copies the whole body twice more, and each copy of a megabyte-sized body
    is fresh memory the kernel has to fault in, page by page.)
    """
    if entries and len(entries[0]) >= len(SEPARATOR):
        first = BODY_HEAD + entries[0][len(SEPARATOR) :]
        return b"".join((first, *islice(entries, 1, None), BODY_TAIL))
    # Not a queued entry first (none, or shorter than the separator): drop the
    # separator's length from the front of the lines as a whole, as always.
    return BODY_HEAD + b"".join(entries)[len(SEPARATOR) :] + BODY_TAIL
