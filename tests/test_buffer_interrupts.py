"""Ctrl-C inside the buffer's full path, deterministically: a KeyboardInterrupt raised
at each place a signal handler can run in turn (see ``interrupted_at``), and after
each the buffer's books must still balance: every line it accepted is queued or
counted as dropped, once, and its byte count is what it holds.

A SIGINT handler runs (and Ctrl-C's KeyboardInterrupt comes out) only where CPython
checks for pending signals: at a function's start, after a call returns and at a
loop's backward jump. The tracer raises at exactly those places (and at every
function's return, which is as early as after the call), in every frame the put
runs, the standard library's included.
"""

from __future__ import annotations

import dis
import gc
import sys
import threading
from collections.abc import Callable
from functools import partial
from types import CodeType, FrameType
from typing import Any

import pytest

from logdna_client._buffer import Buffer, cost_of, entry_cost

#: Instructions after which CPython looks for pending signals (3.10 to 3.13 names).
_CHECKS_AFTER = {"CALL", "CALL_FUNCTION", "CALL_FUNCTION_KW", "CALL_FUNCTION_EX",
                 "CALL_METHOD", "CALL_KW"}  # fmt: skip
_CHECKS_AT = {"JUMP_BACKWARD", "JUMP_ABSOLUTE"}
_points: dict[CodeType, frozenset[int]] = {}


def _signal_points(code: CodeType) -> frozenset[int]:
    """Offsets in ``code`` where a pending signal's handler may run."""
    found = _points.get(code)
    if found is None:
        points: set[int] = set()
        after_call = False
        for ins in dis.get_instructions(code):
            if after_call or ins.opname in _CHECKS_AT:
                points.add(ins.offset)
            after_call = ins.opname in _CHECKS_AFTER
        found = _points[code] = frozenset(points)
    return found


def run_at(point: int, call: Callable[[], Any], act: Callable[[], object]) -> tuple[bool, Any]:
    """Run ``call`` with ``act`` run at its ``point``-th signal check (where a signal
    handler or another thread may run): whether it had that many, and what it returned."""
    seen = 0

    def tracer(frame: FrameType, event: str, arg: object) -> Any:
        nonlocal seen
        frame.f_trace_opcodes = True
        if event in ("call", "return") or (
            event == "opcode" and frame.f_lasti in _signal_points(frame.f_code)
        ):
            seen += 1
            if seen == point:
                act()
        return tracer

    # No garbage collection meanwhile: a weakref callback it runs would take a point
    # (and its KeyboardInterrupt, unraisable there) from the call under test.
    collecting = gc.isenabled()
    gc.disable()
    sys.settrace(tracer)
    try:
        returned = call()
    finally:
        sys.settrace(None)
        if collecting:
            gc.enable()
    return seen >= point, returned


def interrupted_at(point: int, call: Callable[[], Any]) -> bool:
    """Run ``call`` with a KeyboardInterrupt raised at its ``point``-th signal check;
    False when it has fewer (it ran to the end)."""

    def interrupt() -> None:
        raise KeyboardInterrupt

    try:
        run_at(point, call, interrupt)
    except KeyboardInterrupt:
        return True
    return False


def entry(i: int) -> bytes:
    return b",%08d" % i


PER = entry_cost(entry(0))


def assert_books_balance(buf: Buffer, accepted: int) -> None:
    """Everything the buffer accepted is queued or was dropped and counted, once; its
    byte count and sequence numbers match what it holds; the next summary tells
    every drop."""
    held = list(buf.entries)
    assert buf.queued_bytes == cost_of(held)
    assert sorted(set(held)) == held  # in order, none twice
    dropped = sum(buf.dropped.values())
    assert accepted == len(held) + dropped, (len(held), dict(buf.dropped))
    assert buf.dropped == buf.unreported
    assert buf._head_seq + len(held) == buf.accepted


class TestCtrlCInsideTheFullPath:
    @pytest.mark.parametrize("overflow", ["drop_oldest", "drop_newest", "block"])
    @pytest.mark.parametrize("width", [1, 3], ids=["one-line", "three-lines"])
    def test_no_accepted_line_is_lost_uncounted(self, overflow: str, width: int) -> None:
        """A full buffer and a new line (``width`` lines wide, so drop_oldest evicts as
        many) whose put is interrupted at each signal check in turn: the books balance
        afterwards (the interrupted line counted once if it was taken in, never when it
        was not), and again after the puts that follow."""
        point = 0
        while True:
            point += 1
            buf = Buffer(10 * PER, overflow, 0.001, 1 << 30, lambda: None)
            for i in range(10):
                buf.put_entry(entry(i))
            new = entry(1000) + b"x" * ((width - 1) * PER)
            if not interrupted_at(point, partial(buf.put_entry, new)):
                break
            # The new line was queued, or refused and counted once, or (interrupted
            # before either) neither: never both. The lines drop_oldest evicted for it
            # moved the head on, and each is counted.
            went_in = new in buf.entries
            refused = buf.dropped["buffer_full"] - buf._head_seq
            assert refused in ((0,) if went_in else (0, 1)), point
            accepted = 10 + went_in + refused
            assert_books_balance(buf, accepted)
            for i in range(2000, 2020):  # and the buffer goes on working
                buf.put_entry(entry(i))
            accepted += 20
            assert_books_balance(buf, accepted)
        assert point > 10  # the tracer found the places to interrupt

    def test_discard_all_interrupted_counts_every_line_it_removed(self) -> None:
        """discard_all (the shutdown deadline, on the thread that ends the process) cut
        short by Ctrl-C at each signal check: every line is still queued or counted."""
        point = 0
        while True:
            point += 1
            buf = Buffer(1 << 20, "drop_oldest", 0.0, 1 << 30, lambda: None)
            for i in range(50):
                buf.put_entry(entry(i))
            if not interrupted_at(point, partial(buf.discard_all, "shutdown")):
                break
            assert_books_balance(buf, 50)
        assert 0 == len(buf.entries)
        assert point > 3


def test_a_put_on_another_thread_meanwhile_is_kept() -> None:
    """The bookkeeping the interrupts above may not split also leaves lock-free puts of
    other threads alone: a thread that appends at every thread switch of an evicting
    put loses nothing (each of its lines is queued or counted)."""
    buf = Buffer(10 * PER, "drop_oldest", 0.0, 1 << 30, lambda: None, lock_free=True)
    for i in range(10):
        buf.put_entry(entry(i))
    go, done = threading.Event(), threading.Event()

    def other() -> None:
        assert go.wait(10)
        for i in range(3000, 3200):
            buf.put_entry(entry(i))
        done.set()

    thread = threading.Thread(target=other)
    thread.start()
    go.set()
    for i in range(1000, 1200):
        buf.put_entry(entry(i))
    assert done.wait(10)
    thread.join(10)
    assert_books_balance(buf, 410)


def _take_all(buf: Buffer, cap: int) -> list[bytes]:
    """What the sender gets from ``buf`` by taking and releasing until it is empty."""
    got: list[bytes] = []
    while batch := buf.take(cap):
        got.extend(batch)
        buf.release(batch)
    return got


def _holding(queued: int) -> Buffer:
    """A buffer, unbounded for these lines, holding ``entry(0)`` to ``entry(queued - 1)``."""
    buf = Buffer(1 << 30, "drop_oldest", 0.0, 1 << 30, lambda: None)
    for i in range(queued):
        buf.put_entry(entry(i))
    return buf


#: (lines queued, take's cap): all of them fit (the common case, no sizing pass);
#: the cap ends the batch inside the first sizing block; and a few blocks in.
_TAKES = [(50, 1 << 20), (50, 20 * PER), (1200, 1100 * PER)]


class TestCtrlCInsideTake:
    @pytest.mark.parametrize(("queued", "cap"), _TAKES, ids=["all-fit", "sized", "blocks"])
    def test_no_line_is_lost_uncounted(self, queued: int, cap: int) -> None:
        """take (which the exit path runs on the main thread) interrupted at each signal
        check in turn: every line is still queued or counted in flight, the byte counts
        match, and the takes that follow hand over every line once, in order (the batch
        the interrupted take removed comes back from the next one)."""
        point = 0
        while True:
            point += 1
            buf = _holding(queued)
            if not interrupted_at(point, partial(buf.take, cap)):
                break
            held = list(buf.entries)
            assert buf.queued_bytes == cost_of(held), point
            assert queued == len(held) + buf.inflight_lines, point
            assert queued * PER == buf.queued_bytes + buf.inflight_bytes, point
            assert queued == buf.accepted
            assert [entry(i) for i in range(queued)] == _take_all(buf, cap), point
            assert (0, 0, 0) == (buf.queued_bytes, buf.inflight_bytes, buf.held_lines)
            assert queued == buf.done_through
        assert point > 5

    def test_a_line_a_signal_handler_logs_inside_take_is_kept(self) -> None:
        """A signal handler that logs runs at each signal check of a take in turn, into
        a full drop_oldest buffer: the put evicts the oldest line, which the take may
        have sized into its batch already. The take must not then hand over a line the
        put counted as dropped, nor leave the byte count off: every line is taken once,
        in order, or dropped and counted."""
        point = 0
        while True:
            point += 1
            # Lines of unlike sizes: a batch sized with one line but taken with another
            # leaves the byte count off.
            lines = [entry(i) + b"x" * (i % 5 * 10) for i in range(50)]
            buf = Buffer(cost_of(lines), "drop_oldest", 0.0, 1 << 30, lambda: None)
            for line in lines:
                buf.put_entry(line)
            put = partial(buf.put_entry, entry(1000))
            reached, got = run_at(point, partial(buf.take, 20 * PER), put)
            if not reached:
                break
            buf.release(got)
            got += _take_all(buf, 20 * PER)
            assert sorted(set(got)) == got, point  # in order, none twice
            assert 51 == len(got) + buf.dropped["buffer_full"], (point, len(got))
            assert entry(1000) == got[-1]
            assert (0, 0) == (buf.queued_bytes, buf.inflight_bytes)
        assert point > 5

    @pytest.mark.parametrize(("queued", "cap"), _TAKES, ids=["all-fit", "sized", "blocks"])
    def test_a_lock_free_put_meanwhile_is_kept(self, queued: int, cap: int) -> None:
        """Another thread's lock-free put (one that passed its check before take locked
        puts out) appends at each thread switch of a take in turn: the take hands over
        only lines it counted, and the appended line is taken later, once, last."""
        point = 0
        while True:
            point += 1
            buf = _holding(queued)
            late = entry(5000)

            def lock_free_put(buf: Buffer = buf, late: bytes = late) -> None:
                buf.queued_bytes += entry_cost(late)  # as put_entry's fast path
                buf.entries.append(late)

            reached, got = run_at(point, partial(buf.take, cap), lock_free_put)
            if not reached:
                break
            assert cost_of(got) == buf.inflight_bytes, point
            buf.release(got)
            got += _take_all(buf, cap)
            assert [*map(entry, range(queued)), late] == got, point
            assert (0, 0) == (buf.queued_bytes, buf.inflight_bytes)
        assert point > 5
