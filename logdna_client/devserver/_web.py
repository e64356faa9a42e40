"""The web page and its event stream (server-sent events).

Ingestion must never wait for a browser. Publishing a batch only appends a
reference to each subscriber's queue under a short lock; every browser has
its own thread (the HTTP connection's) that encodes and writes. A queue holds
the newest ``page_lines`` lines and at most one older batch's worth more (the
page keeps no more than that anyway): when a browser falls behind, its oldest
pending lines are dropped, still counted, and the page is told how many it
missed. Lines gather for 250 ms into one event; faster than anyone reads, a
page gets one small event every 2 s. A browser that vanishes is noticed
before the next write or keep-alive and unsubscribed.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Sequence
from importlib import resources
from itertools import repeat
from typing import Any, NamedTuple

import orjson

from ._store import NESTED_TOO_DEEP, Origin

#: How many lines the page keeps, by default.
DEFAULT_PAGE_LINES = 1000

_KEEP_ALIVE = 15.0  # seconds between comments that find a vanished browser
# How often a waiting stream looks whether its browser left. The look before each write
# can come too early: the lines that wake a stream may be read off the network before
# the browser's close is (the kernel handles the two connections' packets apart), and
# a write into a closed connection often succeeds; the stream then stayed until the
# next keep-alive.
_GONE_LOOK = 1.0
_MIN_INTERVAL = 0.25  # lines gather this long: at most 4 events a second...
# ...and, while lines come faster than anyone reads (a flood), one event every
# 2 s with only the newest lines: a browser on a flood then costs its machine
# little, and the devserver sharing that machine keeps its pace.
_FLOOD_RATE = 2000  # lines a second
_FLOOD_INTERVAL = 2.0
_FLOOD_LINES = 250
_LIKELY_LEVELS = 8  # levels count_levels tries by comparison before counting by hash

ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/page.js": ("page.js", "text/javascript; charset=utf-8"),
    "/static/page.css": ("page.css", "text/css; charset=utf-8"),
}


def load_asset(name: str) -> bytes:
    """One file of the page, read from inside the package (no network, no build step)."""
    return resources.files(__package__).joinpath("static").joinpath(name).read_bytes()


class Batch(NamedTuple):
    """The lines of one accepted request, as the page sees them.

    ``lines`` holds at most the hub's limit of the request's newest lines;
    ``n`` counts them all and ``counts`` counts them by level (None when no
    browser was attached to need it).
    """

    first_seq: int
    n: int
    received: float
    origin: Origin
    lines: list[dict[str, Any]]
    counts: dict[str, int] | None


class Subscriber:
    """One browser's queue of batches not yet written to it.

    Lines of batches dropped from the queue (newer ones replace them) are
    still counted, so the page's totals and level counts stay right.
    """

    def __init__(self, *, counting: bool = True) -> None:
        self.wake = threading.Event()
        self.batches: deque[Batch] = deque()
        self.held = 0
        self._counting = counting
        self.passed = 0  # lines of dropped batches
        # Their level counts, merged when taken: a list append is all a drop
        # costs the thread that publishes.
        self.passed_counts: list[dict[str, int]] = []
        #: When the oldest line not yet taken arrived (time.monotonic()).
        self.first_at = 0.0

    def push(self, batch: Batch, limit: int) -> None:
        """Queue ``batch``; forget whole old batches the newer ones already replace."""
        if not self.batches and not self.passed:
            self.first_at = time.monotonic()
        self.batches.append(batch)
        self.held += len(batch.lines)
        while len(self.batches) > 1 and self.held - len(self.batches[0].lines) >= limit:
            dropped = self.batches.popleft()
            self.held -= len(dropped.lines)
            if self._counting:
                self.passed += dropped.n
                self.passed_counts.append(
                    dropped.counts if dropped.counts is not None else count_levels(dropped.lines)
                )
        if not self.wake.is_set():  # set() takes a lock even when already set
            self.wake.set()


class EventHub:
    """Fans accepted batches out to the page's event streams."""

    def __init__(self, limit: int = DEFAULT_PAGE_LINES) -> None:
        if limit < 1:
            raise ValueError(f"page_lines must be at least 1, got {limit!r}")
        self.limit = limit
        #: Names this hub in event ids: line numbers start again at 0 in another
        #: server, so a page reconnecting to one must not skip its lines as seen.
        self.instance = uuid.uuid4().hex[:12]
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # the set of subscribers changed
        self._seq = 0
        # What a page that opens now is shown first; it never needs counts.
        self._recent = Subscriber(counting=False)
        self._subscribers: set[Subscriber] = set()
        # The levels of the last batch counted, tried first (see count_levels).
        self._likely: tuple[str | None, ...] = ()
        self._likely_keys: frozenset[str] = frozenset()
        self._closed = threading.Event()

    @property
    def subscribers(self) -> int:
        """How many event streams are open."""
        with self._lock:
            return len(self._subscribers)

    def wait_for_subscribers(self, n: int, timeout: float) -> bool:
        """Wait until exactly ``n`` event streams are open; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._subscribers) == n, timeout)

    def count_if_watched(self, lines: list[dict[str, Any]]) -> dict[str, int] | None:
        """The lines' level counts when a page is open to show them, else None.

        Counting is the one cost per line the pages add; it is paid only while
        one is open.
        """
        if not self._subscribers:
            return None
        likely = self._likely
        counts = count_levels(lines, likely)
        if not counts.keys() <= self._likely_keys:
            # A level not tried first: rank the levels again, these first.
            ranked = sorted(counts, key=counts.__getitem__, reverse=True)
            ranked += [key for key in self._likely_keys if key not in counts]
            keys = ranked[:_LIKELY_LEVELS]
            self._likely = tuple(key or None for key in keys)  # no level counts as ""
            self._likely_keys = frozenset(keys)
        return counts

    def publish(
        self,
        lines: list[dict[str, Any]],
        origin: Origin,
        received: float,
        counts: dict[str, int] | None = None,
    ) -> None:
        """Hand a batch to every event stream; cheap and never blocking on a browser.

        ``counts`` are the lines' level counts if the caller took them already.
        """
        n = len(lines)
        limit = self.limit
        tail = lines if n <= limit else lines[-limit:]
        if counts is None:
            counts = self.count_if_watched(lines)
        with self._lock:
            batch = Batch(self._seq, n, received, origin, tail, counts)
            self._seq += n
            self._recent.push(batch, limit)
            for subscriber in self._subscribers:
                subscriber.push(batch, limit)

    def close(self) -> None:
        """End every event stream (the server is stopping)."""
        self._closed.set()
        self.wake_all()

    def wake_all(self) -> None:
        """Wake every stream's thread, so it sees at once that its server closes."""
        with self._lock:
            for subscriber in self._subscribers:
                subscriber.wake.set()

    def reopen(self) -> None:
        self._closed.clear()

    def last_seen(self, last_event_id: str) -> int | None:
        """The line number a reconnecting page already has, from its ``Last-Event-ID``;
        None when the id is missing or came from another server."""
        instance, _, seq = last_event_id.strip().rpartition("-")
        return int(seq) if instance == self.instance and seq.isdigit() else None

    def _subscribe(self, after: int | None) -> Subscriber:
        subscriber = Subscriber()
        with self._lock:
            for batch in self._recent.batches:
                if after is None or batch.first_seq + batch.n - 1 > after:
                    subscriber.push(batch, self.limit)
            self._subscribers.add(subscriber)
            self._changed.notify_all()
        return subscriber

    def _take(self, subscriber: Subscriber) -> tuple[list[Batch], int, Counter[str], float]:
        """The subscriber's queued batches, the lines dropped before them and their
        counts, and when the oldest of all these arrived."""
        with self._lock:
            subscriber.wake.clear()
            batches = list(subscriber.batches)
            passed, parts, first_at = (
                subscriber.passed,
                subscriber.passed_counts,
                subscriber.first_at,
            )
            subscriber.batches.clear()
            subscriber.held = subscriber.passed = 0
            subscriber.passed_counts = []
        counts: Counter[str] = Counter()
        for part in parts:
            counts.update(part)
        return batches, passed, counts, first_at

    def stream(
        self,
        write: Callable[[bytes], object],
        closing: threading.Event,
        hello: dict[str, Any],
        after: int | None = None,
        gone: Callable[[], bool] = lambda: False,
    ) -> None:
        """Write events to one browser until it goes away or the server stops.

        Args:
            write: Sends bytes to the browser; raises OSError once it is gone.
            closing: Set when the server stops.
            hello: What the page is told first (its line limit, the ingest URL).
            after: The last line number the browser already has (``Last-Event-ID``).
            gone: Whether the browser closed its end; checked before each write,
                since a write into a closed connection often still succeeds.
        """
        subscriber = self._subscribe(after)
        try:
            write(b"retry: 1000\nevent: hello\ndata: " + orjson.dumps(hello) + b"\n\n")
            # What the page missed (or everything kept, for a new page): at once, whole.
            batches, passed, passed_counts, _ = self._take(subscriber)
            if batches:
                write(encode_event(batches, self.limit, passed, passed_counts, self.instance)[0])
            last = -math.inf  # when the last event with new lines was written
            while not (closing.is_set() or self._closed.is_set()):
                woken = _wait_watching(subscriber.wake, gone)
                if woken is None:
                    break
                if not woken:
                    write(b": keep-alive\n\n")
                    continue
                # Let the next lines gather: a burst of requests becomes one event.
                # (Then look again: a browser may have left meanwhile.)
                if closing.wait(_MIN_INTERVAL) or gone():
                    break
                batches, passed, passed_counts, first_at = self._take(subscriber)
                if not batches:
                    continue
                # A flood (lines faster than anyone reads) becomes one small event
                # every few seconds instead of many large ones the page must render.
                # A lone burst the page can keep whole is shown whole.
                now = time.monotonic()
                total = passed + sum(batch.n for batch in batches)
                fast = total >= _FLOOD_RATE * max(now - max(first_at, last), _MIN_INTERVAL)
                flood = fast and (total > self.limit or now - last < 2 * _FLOOD_INTERVAL)
                cap = min(self.limit, _FLOOD_LINES) if flood else self.limit
                write(encode_event(batches, cap, passed, passed_counts, self.instance)[0])
                last = now
                if flood and closing.wait(_FLOOD_INTERVAL - _MIN_INTERVAL):
                    break
        finally:
            with self._lock:
                self._subscribers.discard(subscriber)
                self._changed.notify_all()


def _wait_watching(wake: threading.Event, gone: Callable[[], bool]) -> bool | None:
    """Wait up to ``_KEEP_ALIVE`` for ``wake``, looking every ``_GONE_LOOK`` whether the
    browser left: True woken, False time for a keep-alive, None the browser is gone."""
    deadline = time.monotonic() + _KEEP_ALIVE
    while True:
        left = deadline - time.monotonic()
        woken = wake.wait(max(0.0, min(left, _GONE_LOOK)))
        if gone():
            return None
        if woken or left <= _GONE_LOOK:
            return woken


def count_levels(lines: list[dict[str, Any]], likely: Sequence[str | None] = ()) -> dict[str, int]:
    """How many of ``lines`` have each level (by the level's text).

    ``likely`` are levels to try first, most common first (those of earlier
    batches): comparing each line's level with them is about twice as fast as
    counting by hash, since every level parsed is a new string whose hash no
    one has taken yet. Any level not among them is counted by hash.
    """
    levels = list(map(dict.get, lines, repeat("level")))  # the loop in C
    if likely:
        total = len(levels)
        found = 0
        guessed: dict[str, int] = {}
        for level in likely:
            n = levels.count(level)
            if n:
                guessed[_level_key(level)] = n
                found += n
                if found == total:
                    return guessed
    try:
        counted = Counter(levels)
    except TypeError:  # a level that is a list or an object: not hashable
        counted = Counter(map(_level_key, levels))
    keyed: Counter[str] = Counter()
    for level, n in counted.items():
        keyed[_level_key(level)] += n
    return dict(keyed)


def _level_key(level: object) -> str:
    if level is None:
        return ""
    return level if type(level) is str else str(level)


def _safe_line(line: dict[str, Any]) -> dict[str, Any]:
    try:
        orjson.dumps(line)
    except orjson.JSONEncodeError:
        return {**line, "meta": NESTED_TOO_DEEP}
    return line


def encode_event(
    batches: list[Batch],
    limit: int,
    passed: int = 0,
    passed_counts: Counter[str] | None = None,
    instance: str = "",
) -> tuple[bytes, int]:
    """One ``lines`` event for these batches: their newest ``limit`` lines, and
    counts of all of them and of the ``passed`` lines dropped before them.
    Returns the event and how many lines it carries."""
    total = passed
    counts: Counter[str] = Counter(passed_counts or {})
    for batch in batches:
        total += batch.n
        counts.update(batch.counts if batch.counts is not None else count_levels(batch.lines))
    chosen: list[dict[str, Any]] = []
    room = limit
    for batch in reversed(batches):
        if room <= 0:
            break
        lines = batch.lines[-room:] if len(batch.lines) > room else batch.lines
        room -= len(lines)
        chosen.append(
            {
                "seq": batch.first_seq + batch.n - len(lines),
                "t": int(batch.received * 1000),
                "q": batch.origin.query,
                "lines": lines,
            }
        )
    chosen.reverse()
    carried = limit - room
    last = batches[-1].first_seq + batches[-1].n - 1
    payload = {
        "batches": chosen,
        "total": total,
        "skipped": total - carried,
        "counts": dict(counts),
    }
    try:
        data = orjson.dumps(payload)
    except orjson.JSONEncodeError:
        for part in chosen:
            part["lines"] = [_safe_line(line) for line in part["lines"]]
        data = orjson.dumps(payload)
    event_id = f"{instance}-{last}".encode()
    return b"id: %s\nevent: lines\ndata: %s\n\n" % (event_id, data), carried
