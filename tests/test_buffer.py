"""Tests for _buffer: bounded in bytes, FIFO, nothing lost or duplicated, drops counted."""

from __future__ import annotations

import threading
from collections.abc import Callable
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logdna_client import _buffer
from logdna_client._buffer import (
    LINE_OVERHEAD,
    SEPARATOR,
    Buffer,
    cost_of,
    entry_cost,
    join_entries,
)
from tests.helpers import run_with_forced_switches


def make(max_bytes: int = 10_000, overflow: str = "drop_oldest", wake_bytes: int = 1 << 30,
         block_timeout: float = 0.0) -> tuple[Buffer, list[int]]:  # fmt: skip
    wakes: list[int] = []
    buf = Buffer(max_bytes, overflow, block_timeout, wake_bytes, lambda: wakes.append(1))
    return buf, wakes


def lines_of(entries: list[bytes]) -> list[bytes]:
    """The serialized lines inside taken entries (each entry is a comma plus the line)."""
    assert all(e.startswith(SEPARATOR) for e in entries)
    return [e[len(SEPARATOR) :] for e in entries]


def line(i: int, size: int = 10) -> bytes:
    return str(i).encode().rjust(size, b"x")


class TestBuffer:
    def test_fifo_and_batch_cap(self) -> None:
        """take() returns the oldest lines first and stays within the byte cap."""
        buf, _ = make()
        for i in range(10):
            assert buf.put(line(i))
        cap = 3 * (10 + LINE_OVERHEAD)
        first = buf.take(cap)
        assert [line(i) for i in range(3)] == lines_of(first)
        buf.release(first)
        rest = buf.take(10_000)
        assert [line(i) for i in range(3, 10)] == lines_of(rest)

    def test_oversize_single_line_still_taken(self) -> None:
        """A line bigger than the batch cap is taken alone rather than stuck forever."""
        buf, _ = make()
        buf.put(line(1, 500))
        assert [line(1, 500)] == lines_of(buf.take(100))

    def test_drop_oldest_keeps_newest_and_counts(self) -> None:
        """When full, drop_oldest sheds the oldest queued lines and counts them."""
        per = 10 + LINE_OVERHEAD
        buf, _ = make(max_bytes=5 * per)
        for i in range(8):
            assert buf.put(line(i))
        assert 3 == buf.dropped["buffer_full"]
        assert [line(i) for i in range(3, 8)] == lines_of(buf.take(10_000))

    def test_drop_newest_refuses_new_lines(self) -> None:
        """drop_newest keeps what is queued and refuses (and counts) the new line."""
        per = 10 + LINE_OVERHEAD
        buf, _ = make(max_bytes=5 * per, overflow="drop_newest")
        results = [buf.put(line(i)) for i in range(8)]
        assert [True] * 5 + [False] * 3 == results
        assert 3 == buf.dropped["buffer_full"]
        assert [line(i) for i in range(5)] == lines_of(buf.take(10_000))

    def test_inflight_bytes_count_against_the_bound(self) -> None:
        """Lines taken but not yet delivered still count, so memory stays bounded."""
        per = 10 + LINE_OVERHEAD
        buf, _ = make(max_bytes=4 * per, overflow="drop_newest")
        for i in range(4):
            buf.put(line(i))
        batch = buf.take(10_000)
        assert not buf.put(line(99))
        buf.release(batch)
        assert buf.put(line(100))

    def test_block_waits_for_room(self) -> None:
        """block makes put() wait until the sender frees room, up to block_timeout."""
        per = 10 + LINE_OVERHEAD
        buf, _ = make(max_bytes=2 * per, overflow="block", block_timeout=10.0)
        buf.put(line(0))
        buf.put(line(1))
        batch = buf.take(10_000)
        entered = threading.Event()
        result: list[bool] = []

        def writer() -> None:
            entered.set()
            result.append(buf.put(line(2)))

        t = threading.Thread(target=writer)
        t.start()
        assert entered.wait(5)
        buf.release(batch)
        t.join(10)
        assert [True] == result

    def test_block_gives_up_after_timeout(self) -> None:
        """block drops and counts the line when no room appears in time."""
        per = 10 + LINE_OVERHEAD
        buf, _ = make(max_bytes=per, overflow="block", block_timeout=0.05)
        buf.put(line(0))
        assert not buf.put(line(1))
        assert 1 == buf.dropped["buffer_full"]

    def test_wake_once_per_threshold_crossing(self) -> None:
        """The sender is woken when a batch's worth is queued, not on every line."""
        per = 10 + LINE_OVERHEAD
        buf, wakes = make(wake_bytes=3 * per)
        for i in range(10):
            buf.put(line(i))
        assert 1 == len(wakes)
        buf.release(buf.take(10_000))
        for i in range(3):
            buf.put(line(i))
        assert 2 == len(wakes)

    def test_closed_buffer_counts_after_close(self) -> None:
        """After close, puts are refused and counted as after_close."""
        buf, _ = make()
        buf.close()
        assert not buf.put(line(1))
        assert 1 == buf.dropped["after_close"]

    def test_done_through_tracks_inflight(self) -> None:
        """done_through only passes a line once it has left the buffer entirely."""
        buf, _ = make()
        for i in range(4):
            buf.put(line(i))
        batch = buf.take(2 * (10 + LINE_OVERHEAD))
        assert 0 == buf.done_through
        buf.release(batch)
        assert 2 == buf.done_through

    def test_accepted_is_never_low_while_a_batch_is_taken(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """flush() reads accepted from an application thread while the sender may be
        taking a batch: it must count the lines being taken (a low count would let
        flush() return True before they are delivered)."""
        import logdna_client._buffer as buffer_module

        buf, _ = make()
        # One more than the batch takes: the lines are popped one by one (a batch of
        # all that is queued is copied, and the queue cleared after the counting).
        for i in range(4):
            buf.put(line(i))
        seen: list[int] = []
        reader = threading.Thread(target=lambda: seen.append(buf.accepted))
        real_call = buffer_module._call
        popped = 0

        def pop_then_let_a_reader_in(pop: Callable[[], bytes]) -> bytes:
            nonlocal popped
            entry = real_call(pop)
            popped += 1
            if popped == 3:  # every line popped, the sequence numbers not yet moved
                reader.start()
                reader.join(0.5)  # in the window: a lock-free read finishes here
            return entry

        monkeypatch.setattr(buffer_module, "_call", pop_then_let_a_reader_in)
        batch = buf.take(3 * (10 + LINE_OVERHEAD))
        reader.join(10)
        assert 3 == len(batch)
        assert [4] == seen


ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(min_value=1, max_value=300)),
        st.tuples(st.just("take"), st.integers(min_value=1, max_value=2000)),
    ),
    max_size=200,
)


def test_join_entries_makes_the_request_body() -> None:
    """Entries join into {"lines": [...]} with each line exactly once, in order."""
    buf, _ = make()
    for i in range(3):
        buf.put(b'{"n":%d}' % i)
    assert b'{"lines":[{"n":0},{"n":1},{"n":2}]}' == join_entries(buf.take(10_000))


def test_queued_lines_hold_no_oversized_allocations() -> None:
    """Queued entries are fresh copies, not the serializer's larger buffers."""
    import orjson

    buf, _ = make()
    data = orjson.dumps({"line": "x", "level": "INFO"})
    buf.put(data)
    (entry,) = buf.take(10_000)
    assert entry is not data


def test_concurrent_producers_and_consumer() -> None:
    """Four writer threads and a sender-like reader: every line once, each writer's
    lines in order, and the byte counters back to zero at the end."""
    buf, _ = make(max_bytes=1 << 30)
    per_thread = 20_000
    writers_done = threading.Event()
    got: list[bytes] = []

    def writer(t: int) -> None:
        for i in range(per_thread):
            buf.put(b"%d:%d" % (t, i))

    def reader() -> None:
        while True:
            finished = writers_done.is_set()
            batch = buf.take(4096)
            got.extend(lines_of(batch))
            buf.release(batch)
            if finished and not batch:
                return

    r = threading.Thread(target=reader)
    r.start()
    writers = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    writers_done.set()
    r.join(30)
    assert 4 * per_thread == len(got) == buf.accepted
    for t in range(4):
        mine = [int(x.split(b":")[1]) for x in got if x.startswith(b"%d:" % t)]
        assert list(range(per_thread)) == mine
    assert (0, 0) == (buf.queued_bytes, buf.inflight_bytes)
    assert buf.accepted == buf.done_through


def test_counters_do_not_drift_under_forced_thread_switches() -> None:
    """drop_oldest evicting for big lines while other threads put small ones lock-free:
    with a thread switch forced at every opportunity, queued_bytes still equals what
    the deque holds and the bound holds."""
    buf, _ = make(max_bytes=200_000)

    def small() -> None:
        for j in range(20_000):
            buf.put(b"s%d" % j)

    def big() -> None:
        for _ in range(200):
            buf.put(b"B" * 50_000)

    run_with_forced_switches([small] * 4 + [big] * 2)
    assert sum(map(entry_cost, buf.entries)) == buf.queued_bytes
    assert buf.queued_bytes <= 200_000


class TestProperties:
    @settings(max_examples=300, deadline=None)
    @given(ops=ops, overflow=st.sampled_from(["drop_oldest", "drop_newest"]),
           max_bytes=st.integers(min_value=200, max_value=5000))  # fmt: skip
    def test_nothing_lost_nothing_duplicated(self, ops: list[tuple[str, int]], overflow: str,
                                             max_bytes: int) -> None:  # fmt: skip
        """Every accepted line is taken exactly once, in order, or counted as dropped;
        every batch is within the cap (or a single line); the bound always holds."""
        buf, _ = make(max_bytes=max_bytes, overflow=overflow)
        taken: list[bytes] = []
        accepted = 0
        refused = 0
        n = 0
        for op, arg in ops:
            if op == "put":
                data = str(n).encode().ljust(arg, b".")
                n += 1
                if buf.put(data):
                    accepted += 1
                else:
                    refused += 1
            else:
                batch = buf.take(arg)
                size = sum(len(b) + LINE_OVERHEAD for b in lines_of(batch))
                assert size <= arg or len(batch) == 1
                taken.extend(lines_of(batch))
                buf.release(batch)
            assert buf.held_bytes <= max_bytes
        taken.extend(lines_of(buf.take(1 << 30)))
        ids = [int(b.rstrip(b".")) for b in taken]
        assert sorted(set(ids)) == ids, "in order, no duplicates"
        shed_after_accepting = buf.dropped["buffer_full"] - refused
        assert accepted == len(taken) + shed_after_accepting
        assert accepted == buf.accepted


class TestOneCostRule:
    """Every count the buffer keeps comes from one rule, ``entry_cost``."""

    @given(entries=st.lists(st.binary(max_size=300), max_size=60))
    def test_cost_of_is_entry_cost_summed(self, entries: list[bytes]) -> None:
        assert sum(map(entry_cost, entries)) == cost_of(entries)

    @settings(max_examples=150, deadline=None)
    @given(ops=ops, overflow=st.sampled_from(["drop_oldest", "drop_newest"]),
           max_bytes=st.integers(min_value=200, max_value=5000),
           overhead=st.sampled_from([0, 1, 41, 97]))  # fmt: skip
    def test_every_count_follows_the_overhead(
        self, ops: list[tuple[str, int]], overflow: str, max_bytes: int, overhead: int
    ) -> None:
        """With another ``ENTRY_OVERHEAD``, puts, evictions, takes (whole blocks and
        line by line) and releases all count by it: no place keeps its own copy."""
        with mock.patch.object(_buffer, "ENTRY_OVERHEAD", overhead):
            buf, _ = make(max_bytes=max_bytes, overflow=overflow)
            n = 0
            for op, arg in ops:
                if op == "put":
                    buf.put(str(n).encode().ljust(arg, b"."))
                    n += 1
                else:
                    batch = buf.take(arg)
                    assert cost_of(batch) == buf.inflight_bytes
                    assert cost_of(batch) <= arg or len(batch) == 1
                    buf.release(batch)
                    assert 0 == buf.inflight_bytes
                assert sum(len(e) + overhead for e in buf.entries) == buf.queued_bytes
                assert buf.queued_bytes <= max_bytes

    @pytest.mark.parametrize("overhead", [0, 97])
    @pytest.mark.parametrize("cap", [150, 33_300, 1 << 30])
    def test_take_counts_by_the_overhead(self, overhead: int, cap: int) -> None:
        """take()'s whole-block sums, its line-by-line count and its copy all follow
        ``ENTRY_OVERHEAD``: 600 entries are more than a block (512); the middle cap
        falls in the first block with either overhead."""
        with mock.patch.object(_buffer, "ENTRY_OVERHEAD", overhead):
            buf, _ = make(max_bytes=1 << 40)
            for i in range(600):
                assert buf.put(line(i))
            sizes = [len(e) + overhead for e in buf.entries]
            batch = buf.take(cap)
            assert _line_by_line_count(sizes, cap) == len(batch)
            assert sum(sizes[: len(batch)]) == buf.inflight_bytes == cost_of(batch)
            assert sum(sizes[len(batch) :]) == buf.queued_bytes


def _line_by_line_count(sizes: list[int], max_bytes: int) -> int:
    """How many leading entries take() must return, counted the obvious way."""
    count = total = 0
    for size in sizes:
        if count and total + size > max_bytes:
            break
        total += size
        count += 1
    return count


class TestTakeSizing:
    """take() sizes whole blocks of entries at once and only the last block line by
    line; the batch must be exactly what a line-by-line count gives, wherever the cap
    falls: inside the first block, on a block edge or one byte either side, past the end."""

    @settings(max_examples=150, deadline=None)
    @given(data=st.data(), n=st.integers(min_value=1, max_value=2_000))
    def test_batch_is_the_line_by_line_count(self, data: st.DataObject, n: int) -> None:
        lengths = data.draw(st.lists(st.integers(1, 400), min_size=n, max_size=n), "lengths")
        buf, _ = make(max_bytes=1 << 40)
        for i, length in enumerate(lengths):
            assert buf.put(str(i).encode().ljust(length, b"."))
        sizes = list(map(entry_cost, buf.entries))
        edges = [sum(sizes[:k]) for k in (1, 511, 512, 513, 1024, 1536, n)]
        cap = data.draw(
            st.one_of(
                st.integers(1, sum(sizes) + 100),
                st.sampled_from(edges).flatmap(lambda e: st.sampled_from([e - 1, e, e + 1])),
            ),
            "cap",
        )
        expected = _line_by_line_count(sizes, max(cap, 0))
        held = buf.held_bytes
        batch = buf.take(max(cap, 0))
        assert expected == len(batch)
        assert [str(i).encode() for i in range(expected)] == [
            b.rstrip(b".") for b in lines_of(batch)
        ]
        assert sum(sizes[:expected]) == buf.inflight_bytes
        assert sum(sizes[expected:]) == buf.queued_bytes
        assert held == buf.held_bytes
        buf.release(batch)
        assert (0, sum(sizes[expected:])) == (buf.inflight_bytes, buf.held_bytes)

    def test_counted_but_not_yet_appended_line_is_not_taken_or_counted(self) -> None:
        """A lock-free put adds its bytes before it appends: take() in between, with
        queued_bytes above the cap but the lines present within it, takes just those
        lines and moves just their bytes."""
        buf, _ = make(max_bytes=1 << 40)
        for i in range(2_000):
            buf.put(line(i))
        per = 10 + LINE_OVERHEAD
        buf.queued_bytes += 500  # a put between its += and its append
        batch = buf.take(2_000 * per + 1)
        assert 2_000 == len(batch)
        assert (2_000 * per, 500) == (buf.inflight_bytes, buf.queued_bytes)


def test_take_while_writers_append_during_block_sizing() -> None:
    """Batches bigger than a sizing block, taken while lock-free puts append (a thread
    switch forced at every chance, so appends land mid-iteration): every line once, in
    order, counters back to zero."""
    buf, _ = make(max_bytes=1 << 30)
    buf.allow_lock_free()
    per_thread = 15_000
    got: list[bytes] = []
    done = threading.Event()

    def writer(t: int) -> Callable[[], None]:
        def run() -> None:
            for i in range(per_thread):
                buf.put(b"%d:%d" % (t, i))

        return run

    def reader() -> None:
        while True:
            finished = done.is_set()
            batch = buf.take(60_000)  # about 1,000 of these lines: two blocks
            got.extend(lines_of(batch))
            buf.release(batch)
            if finished and not batch:
                return

    def writers() -> None:
        threads = [threading.Thread(target=writer(t)) for t in range(3)]
        for w in threads:
            w.start()
        for w in threads:
            w.join()
        done.set()

    run_with_forced_switches([reader, writers])
    assert 3 * per_thread == len(got) == buf.accepted
    for t in range(3):
        mine = [int(x.split(b":")[1]) for x in got if x.startswith(b"%d:" % t)]
        assert list(range(per_thread)) == mine
    assert (0, 0) == (buf.queued_bytes, buf.inflight_bytes)


def _join_as_before(entries: list[bytes]) -> bytes:
    """join_entries as it was: join, then drop the separator's length off the front."""
    return b'{"lines":[' + bytes(memoryview(b"".join(entries))[len(SEPARATOR) :]) + b"]}"


ODD_BATCHES: list[list[bytes]] = [
    [],
    [b""],
    [b","],
    [b"", b",{}"],
    [b"", b"", b",{}"],
    [b",{}"],
    [b'x{"a":1}', b',{"b":2}'],
    [b',{"s":"\xc3\xa9\xe2\x82\xac"}', b',{"n":null}'],
    [b',{"n":%d}' % i for i in range(1_000)],
    [b"," + b"y" * (i % 700) for i in range(3_000)],
]


@pytest.mark.parametrize("entries", ODD_BATCHES, ids=range(len(ODD_BATCHES)))
def test_join_entries_is_byte_identical_to_the_old_join(entries: list[bytes]) -> None:
    assert _join_as_before(entries) == join_entries(entries)
