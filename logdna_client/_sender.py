"""The sender: one background thread per Client that batches, sends and retries.

It wakes when the buffer holds a full batch or ``flush_interval`` has passed,
takes the oldest lines (up to ``max_batch_bytes``), joins their bytes into one
body (no re-serializing), gzips it and posts it. Transient failures keep the
batch at the head and retry with backoff for as long as the buffer holds it;
413 splits, 400 bisects to the bad line, 401/403 report once and wait.

All sleeping is on an Event, so ``close()`` cuts any wait short. Any
unexpected exception is caught and reported; the loop goes on.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any

from ._buffer import SEPARATOR, Buffer, join_entries
from ._config import Config
from ._report import Reporter
from ._retry import Backoff
from ._transport import Kind, Outcome, Transport

__all__ = ["BUSY_THREADS", "SENDER_THREADS", "Sender", "Stats", "gzip_entries"]

#: Idents of every live sender thread in this process. Records made on them
#: (urllib3's and requests' own logging, our reports) are never shipped by any
#: handler, so one client's sending cannot feed another client's buffer.
SENDER_THREADS: set[int] = set()

#: Idents of the threads currently inside one of our handlers or processors: a
#: ``__str__`` that logs, or a formatter that does, does not recurse into us.
#: Separate from SENDER_THREADS, which is about where a record was *made*: a
#: QueueListener thread handles records made on other threads.
BUSY_THREADS: set[int] = set()

# Measured on log lines: level 1 compresses about as well as 6 (20x) at a third of the CPU.
_GZIP_LEVEL = 1
# Entries joined per compress() call: about 25 KB of typical lines.
_GZIP_BLOCK = 256
# A run of single lines rejected with 400 this long means the server rejects
# everything, not one bad line: stop probing line by line.
_MAX_SINGLE_REJECTS = 16


def gzip_entries(entries: list[bytes]) -> bytes:
    """``join_entries(entries)`` gzipped, without ever holding that body whole.

    The entries go to the compressor joined a block at a time: a block is
    small enough to stay in the CPU cache between the join and the deflate,
    and no allocation is large enough to be fresh pages from the kernel each
    batch (a megabyte-sized body is: every page faults in again). It
    decompresses to exactly that body.
    """
    if not entries or len(entries[0]) < len(SEPARATOR):
        return _gzip(join_entries(entries))  # not a queued entry first: the general path
    compressor = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, 31)
    compress = compressor.compress
    # The body is '{"lines":[', the entries less the first one's separator, ']}'.
    parts = [
        compress(b'{"lines":['),
        compress(memoryview(b"".join(entries[:_GZIP_BLOCK]))[len(SEPARATOR) :]),
    ]
    parts += [
        compress(b"".join(entries[i : i + _GZIP_BLOCK]))
        for i in range(_GZIP_BLOCK, len(entries), _GZIP_BLOCK)
    ]
    parts.append(compress(b"]}"))
    parts.append(compressor.flush())
    return b"".join(parts)


def _gzip(body: bytes) -> bytes:
    """Gzip container around a deflate stream, at our chosen level."""
    compressor = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, 31)
    return compressor.compress(body) + compressor.flush()


class Stats:
    """Counters written only by the sender thread (so they need no lock)."""

    __slots__ = ("bytes_sent", "requests", "retries", "sent")

    def __init__(self) -> None:
        self.sent = 0
        self.retries = 0
        self.requests = 0
        self.bytes_sent = 0


class _Shutdown(Exception):
    """Raised inside the sender when the shutdown deadline has passed."""


class Sender:
    """Owns the background thread. ``start``, ``request_flush``, ``begin_close``."""

    def __init__(
        self,
        config: Config,
        buffer: Buffer,
        transport: Transport,
        reporter: Reporter,
        summary: Callable[[dict[str, int]], bytes | None],
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._buffer = buffer
        self._transport = transport
        self._reporter = reporter
        self._summary = summary
        self._backoff = backoff or Backoff(cap=config.retry_max_backoff)
        self._clock = clock
        self._compress = config.compress
        self._gzip_checked = False
        self.stats = Stats()
        # Set by producers (a full batch is waiting), flush() and close().
        self.wake = threading.Event()
        # Set only by close(): cuts backoff sleeps short.
        self._interrupt = threading.Event()
        self._progress = threading.Condition(threading.Lock())
        self._deadline: float | None = None
        self.finished = threading.Event()
        self.thread: threading.Thread | None = None
        self.ident: int | None = None
        self._auth_failing = False
        # False from a failed request until one goes through: drops are summarized
        # only while delivery works, so an outage ends in one summary line.
        self._delivering = True
        self._cut_by_shutdown = 0
        #: Told how many lines the shutdown deadline cut off.
        self.on_shutdown_loss: Callable[[int], None] | None = None

    # -- control, from other threads

    def start(self) -> None:
        self.finished.clear()
        thread = threading.Thread(target=self._run, name="logdna_client-sender", daemon=True)
        self.thread = thread
        thread.start()
        self.ident = thread.ident

    @property
    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def begin_close(self, deadline: float) -> None:
        """Drain what is queued, giving up at ``deadline`` (monotonic seconds)."""
        if self._deadline is None or deadline < self._deadline:
            self._deadline = deadline
        self._interrupt.set()
        self.wake.set()

    def wait_done_through(self, target: int, timeout: float | None) -> bool:
        """Wait until every line with sequence number < target has left the buffer."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._progress:
            while self._buffer.done_through < target:
                if self.finished.is_set():
                    break
                left = None if deadline is None else deadline - self._clock()
                if left is not None and left <= 0:
                    break
                self._progress.wait(left if left is None else min(left, 0.5))
        return self._buffer.done_through >= target

    # -- the thread

    def _run(self) -> None:
        self.ident = threading.get_ident()
        SENDER_THREADS.add(self.ident)
        try:
            while True:
                if self._deadline is None:
                    self.wake.wait(self._config.flush_interval)
                self.wake.clear()
                try:
                    self._drain()
                except _Shutdown:
                    pass
                except BaseException:
                    # A bug of ours, or a custom transport's gevent Timeout or
                    # CancelledError, must not stop delivery of everything after it.
                    self._reporter.report(
                        "sender-bug", logging.ERROR, "logdna_client sender error", exc_info=True
                    )
                if self._deadline is not None and (
                    len(self._buffer) == 0 or self._clock() >= self._deadline
                ):
                    break
        finally:
            self._finish()

    def _finish(self) -> None:
        lost = self._buffer.discard_all("shutdown") + self._cut_by_shutdown
        if lost and self.on_shutdown_loss is not None:
            self.on_shutdown_loss(lost)
        self._transport.close()
        self.finished.set()
        self._notify()
        if self.ident is not None:
            SENDER_THREADS.discard(self.ident)

    def _notify(self) -> None:
        with self._progress:
            self._progress.notify_all()

    def _drain(self) -> None:
        """Send what was queued when the sender woke; after that, only full batches.

        Lines keep arriving while a batch is out. Sending each small remainder
        at once would cost a request (about a millisecond of CPU in requests)
        per few hundred lines; instead they wait for the next wake: a full
        batch, flush(), close() or flush_interval. Closing drains everything.
        """
        buffer = self._buffer
        target = buffer.accepted
        full = self._config.max_batch_bytes
        while True:
            if (
                self._deadline is None
                and buffer.done_through >= target
                and buffer.queued_bytes < full
                and not (self._delivering and buffer.unreported)  # a drop summary goes now
            ):
                return
            summary = self._take_summary()
            lines = buffer.take(self._config.max_batch_bytes)
            if not lines and summary is None:
                return
            try:
                self._deliver([*lines, summary] if summary is not None else lines, summary)
            finally:
                buffer.release(lines)
                self._notify()

    def _take_summary(self) -> bytes | None:
        """The drop-summary line, while delivery works (no failed request since the last success).

        It rides at the end of the next batch instead of waiting in the buffer,
        so an outage cannot evict it (counting it as a drop of its own) and a
        long outage ends in one summary, not one per attempt to drain.
        """
        if not self._delivering:
            return None
        counts = self._buffer.take_unreported()
        if not counts:
            return None
        data = self._summary(dict(counts))
        if data is None:
            self._buffer.restore_unreported(counts)
            return None
        return SEPARATOR + data  # batches hold buffer entries: a comma, then the line

    def _deliver(self, lines: list[bytes], summary: bytes | None = None) -> None:
        """Deliver one batch, splitting and retrying as the answers require."""
        pending: list[list[bytes]] = [lines]

        def undelivered() -> int:
            # The summary line is ours, not the app's: never count it as lost.
            return sum(1 for part in pending for line in part if line is not summary)

        try:
            self._deliver_parts(pending, summary)
        except _Shutdown:
            cut = undelivered()
            self._buffer.count_drop("shutdown", cut)
            self._cut_by_shutdown += cut
            raise
        except BaseException:
            # A bug (ours or a custom transport's): retrying would likely fail the
            # same way forever, so count these lines and keep the sender going.
            cut = undelivered()
            self._buffer.count_drop("error", cut)
            self._reporter.report(
                "sender-bug", logging.ERROR,
                "logdna_client: internal error while sending; %d line(s) dropped",
                cut, exc_info=True,
            )  # fmt: skip

    def _deliver_parts(self, pending: list[list[bytes]], summary: bytes | None = None) -> None:
        attempt = 0
        single_rejects = 0
        while pending:
            part = pending[0]
            outcome = self._post(part)
            kind = outcome.kind
            if kind is Kind.OK or kind is Kind.PARTIAL:
                pending.pop(0)
                # Our summary line is not an app line: neither sent nor dropped in stats.
                app_lines = len(part) - (summary is not None and part[-1] is summary)
                rejected = min(outcome.rejected, app_lines)
                self.stats.sent += app_lines - rejected
                if rejected:
                    self._reject(rejected, outcome)
                attempt = 0
                single_rejects = 0
                self._delivering = True
                self._recovered()
                continue
            if kind is Kind.TOO_LARGE or kind is Kind.BAD_REQUEST:
                gzip_suspect = self._compress and not self._gzip_checked
                if kind is Kind.BAD_REQUEST and gzip_suspect and self._try_plain(part):
                    pending.pop(0)
                    continue
                if len(part) > 1:
                    half = len(part) // 2
                    pending[0:1] = [part[:half], part[half:]]
                    continue
                pending.pop(0)
                if part[0] is not summary:  # our summary line is not an app line: never a drop
                    self._reject(1, outcome)
                single_rejects += 1
                if kind is Kind.BAD_REQUEST and single_rejects >= _MAX_SINGLE_REJECTS:
                    rest = sum(1 for p in pending for line in p if line is not summary)
                    pending.clear()
                    if rest:
                        self._reject(rest, outcome)
                continue
            if kind is Kind.UNSUPPORTED_ENCODING and self._compress:
                self._compress = False
                self._gzip_checked = True
                self._reporter.report(
                    "gzip-off", logging.WARNING,
                    "logdna_client: the server refused gzip (HTTP 415); sending plain bodies",
                )  # fmt: skip
                continue
            self._delivering = False
            attempt += 1
            self.stats.retries += 1
            self._report_failure(outcome)
            # What the server asked for: close() may cut our own backoff short, not this.
            floor = 0.0
            if outcome.retry_after is not None:
                floor = max(0.0, min(outcome.retry_after, self._backoff.cap))
            if kind is Kind.AUTH or kind is Kind.OTHER or kind is Kind.REDIRECT:
                delay = max(self._backoff.cap * (0.5 + 0.5 * self._backoff.rand()), floor)
            else:
                delay = self._backoff.delay(attempt, outcome.retry_after)
            self._sleep(delay, floor)

    def _post(self, lines: list[bytes]) -> Outcome:
        gzipped = self._compress
        body = gzip_entries(lines) if gzipped else join_entries(lines)
        timeout = self._config.request_timeout
        if self._deadline is not None:
            left = self._deadline - self._clock()
            if left <= 0:
                raise _Shutdown
            timeout = max(0.05, min(timeout, left))
        self.stats.requests += 1
        outcome = self._transport.send(body, gzipped=gzipped, timeout=timeout)
        if outcome.kind is Kind.OK or outcome.kind is Kind.PARTIAL:
            self.stats.bytes_sent += len(body)
        return outcome

    def _try_plain(self, lines: list[bytes]) -> bool:
        """After a 400 on a gzip body: does the server take it plain? Then stay plain."""
        self._gzip_checked = True
        self._compress = False
        outcome = self._post(lines)
        if outcome.kind is Kind.OK or outcome.kind is Kind.PARTIAL:
            self.stats.sent += len(lines) - outcome.rejected
            self._delivering = True
            self._reporter.report(
                "gzip-off", logging.WARNING,
                "logdna_client: the server refused a gzip body but took it plain; "
                "sending plain bodies from now on",
            )  # fmt: skip
            return True
        self._compress = True
        return False

    def _reject(self, count: int, outcome: Outcome) -> None:
        self._buffer.count_drop("rejected", count)
        self._reporter.report(
            "rejected", logging.WARNING,
            "logdna_client: the service rejected %d line(s) (HTTP %s: %s); dropped and counted",
            count, outcome.status, outcome.detail or "no detail",
        )  # fmt: skip

    def _report_failure(self, outcome: Outcome) -> None:
        if outcome.kind is Kind.AUTH:
            self._auth_failing = True
            self._reporter.report(
                "auth", logging.ERROR,
                "logdna_client: the ingestion key was refused (HTTP %s). Lines are kept and "
                "retried every %.0f s or so; check the key.",
                outcome.status, self._backoff.cap,
            )  # fmt: skip
            return
        self._reporter.report(
            "send-failed", logging.WARNING,
            "logdna_client: sending failed (%s); retrying with backoff, lines are kept",
            f"HTTP {outcome.status} {outcome.detail}".strip() if outcome.status else outcome.detail,
        )  # fmt: skip

    def _recovered(self) -> None:
        if self._auth_failing:
            self._auth_failing = False
            self._reporter.forget("auth")

    def _sleep(self, seconds: float, floor: float = 0.0) -> None:
        """Back off for ``seconds``; close() cuts it short, but never below ``floor``.

        ``floor`` is the server's Retry-After: retrying sooner would only earn
        another 429/503, so even a closing client waits it out (within the deadline).
        """
        started = self._clock()
        wait = seconds
        while True:
            if self._deadline is not None:
                left = self._deadline - self._clock()
                if left <= 0:
                    raise _Shutdown
                wait = min(wait, left)
            if not self._interrupt.wait(wait):
                break
            # Cut short by close(); later sleeps back off again until the deadline.
            self._interrupt.clear()
            wait = floor - (self._clock() - started)
            if wait <= 0:
                break
        if self._deadline is not None and self._clock() >= self._deadline:
            raise _Shutdown

    def snapshot(self) -> dict[str, Any]:
        s = self.stats
        return {"sent": s.sent, "retries": s.retries, "requests": s.requests,
                "bytes_sent": s.bytes_sent}  # fmt: skip
