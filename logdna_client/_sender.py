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

import collections
import contextlib
import logging
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from typing import Any

from ._buffer import BODY_HEAD, BODY_TAIL, SEPARATOR, Buffer, join_entries
from ._config import Config
from ._kubernetes import attributes_for
from ._limits import CUT_KINDS, Cuts, enforce_entries, threshold_for
from ._report import Reporter
from ._retry import Backoff
from ._spool import BatchId, Spool, destination
from ._stats import LastError
from ._threads import Latch, Wakeup, sender_ended, sender_started, start_library_thread
from ._transport import Kind, Outcome, Transport

__all__ = ["Sender", "Stats", "app_outcome", "gzip_entries", "spill_while_closing"]


# Measured on log lines: level 1 compresses about as well as 6 (20x) at a third of the CPU.
_GZIP_LEVEL = 1
# Entries joined per compress() call: about 25 KB of typical lines.
_GZIP_BLOCK = 256
# A run of single lines rejected with 400 or 413 this long means the server
# rejects everything, not one bad line: stop probing line by line, count the
# rest of the batch as rejected and back off before the next one.
_MAX_SINGLE_REJECTS = 16
# How often a closing thread looks whether a sender's batch on disk is out (to spill).
_SPILL_LOOK = 0.05
# What a look of ``Sender._spill_if_out`` found (``spill_while_closing``).
SPILL_DONE = "done"
SPILL_MORE = "more"
SPILL_WAIT = "wait"
_SPILL_ON = (SPILL_MORE, SPILL_WAIT)


def _no_end() -> float:
    """The ``until`` of a spill without a deadline: the running sender's (not closing)."""
    return float("inf")


# A batch's bytes on disk besides its entries and their 4-byte lengths: its record's
# head and its done mark (more than enough).
_SPOOL_FRAME = 256
# Failures retrying soon cannot fix: retried every retry_max_backoff / 2 to
# retry_max_backoff seconds (Backoff.slow), not on the quick exponential backoff.
#: The report kinds (_report_misconfigured) of trouble only a change of settings fixes:
#: a one-shot command (send, pipe) stops waiting at the first of them.
MISCONFIGURED_KINDS = frozenset({"auth", "protocol", "encoding", "settings"})
# (A 415 lands here once gzip is off: the endpoint takes no JSON at all.)
_SLOW_KINDS = frozenset(
    {Kind.AUTH, Kind.OTHER, Kind.REDIRECT, Kind.PROTOCOL, Kind.SETTINGS, Kind.UNSUPPORTED_ENCODING}
)


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
    # The body is BODY_HEAD, the entries less the first one's separator, BODY_TAIL.
    parts = [
        compress(BODY_HEAD),
        compress(memoryview(b"".join(entries[:_GZIP_BLOCK]))[len(SEPARATOR) :]),
    ]
    parts += [
        compress(b"".join(entries[i : i + _GZIP_BLOCK]))
        for i in range(_GZIP_BLOCK, len(entries), _GZIP_BLOCK)
    ]
    parts.append(compress(BODY_TAIL))
    parts.append(compressor.flush())
    return b"".join(parts)


def _app_lines(lines: list[bytes], summary: bytes | None) -> int:
    """How many of ``lines`` are the application's: our drop-summary line is not one
    (never counted sent, dropped or lost). Most batches carry none: no pass per line."""
    if summary is None:
        return len(lines)
    return sum(1 for line in lines if line is not summary)


def app_outcome(
    part: list[bytes], outcome: Outcome, summary: bytes | None = None
) -> tuple[int, int]:
    """(delivered, refused): the application lines of ``part`` that the service, answering
    OK or 207 (``outcome``), stored and refused. Our summary line is neither, wherever
    it stood (the 207's per-line places tell); the sender and ``spool replay`` count by it.

    Lines the answer does not speak for (past ``outcome.answered``) count as refused:
    not confirmed stored, and never sent again, which would store the others twice."""
    count = _app_lines(part, summary)
    refused = outcome.rejected
    if outcome.rejected_at:
        # Only places the batch has: a status array longer than the batch refuses
        # nothing of it beyond its end (those places were counted as refused lines).
        refused = sum(1 for i in outcome.rejected_at if i < len(part) and part[i] is not summary)
    if outcome.answered is not None:
        refused += _app_lines(part[outcome.answered :], summary)
    refused = min(refused, count)
    return count - refused, refused


#: Marks the spiller keeps of when lines were logged (a quarter flush_interval apart):
#: past this many, it adds none until the oldest leave, which keeps the oldest exact.
_MARKS = 256


def summary_stored(part: list[bytes], outcome: Outcome, summary: bytes) -> bool:
    """Whether the service, answering OK or 207 (``outcome``), stored our summary line
    where it stood in ``part``: not at a place the 207 refused, nor past those it speaks
    for. (Taken as told whenever in the part, a refused one's drops were never told.)"""
    at = next((i for i, line in enumerate(part) if line is summary), None)
    if at is None:
        return False
    if outcome.answered is not None and at >= outcome.answered:
        return False
    return at not in outcome.rejected_at


def _gzip(body: bytes) -> bytes:
    """Gzip container around a deflate stream, at our chosen level."""
    compressor = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, 31)
    return compressor.compress(body) + compressor.flush()


class Stats:
    """Counters written only by the sender thread (so they need no lock)."""

    __slots__ = (
        "bytes_sent", "cut", "last_error", "replay_rejected", "requests", "retries", "sent",
    )  # fmt: skip

    def __init__(self) -> None:
        #: Lines delivered cut to the service's limits, by what was cut (_limits.py).
        self.cut: Cuts = Counter()
        self.sent = 0
        self.replay_rejected = 0  # lines from the spool the service refused
        self.retries = 0
        self.requests = 0
        self.bytes_sent = 0
        #: The last failed attempt, as stats() shows it: kind, status and when only
        #: (never the server's text, which could echo a header back).
        self.last_error: LastError | None = None


class _Shutdown(Exception):
    """Raised inside the sender when the shutdown deadline has passed."""


class _ToDisk(Exception):
    """Raised inside the sender when a batch kept on disk failed: retry it from there."""


#: ``OTLPEncoder.encode``: the entries, the cuts to count, and where to put the places
#: (and exceptions) of the lines it could not convert, left out of the body.
_Encode = Callable[[list[bytes], Cuts, list[tuple[int, Exception]]], bytes]


class _Unencodable(Exception):
    """Raised by ``_post`` before sending: lines of the part the OTLP encoder could not
    convert, as (place in the part, the exception); the caller drops and counts them."""

    def __init__(self, failed: list[tuple[int, Exception]]) -> None:
        super().__init__(len(failed))
        self.failed = failed


def _stray_interrupt() -> bool:
    """Whether a KeyboardInterrupt raised on this sender thread is a stray one: Python
    runs signal handlers on the thread whose ident is the main thread's, and in a child
    forked from a thread whose forking thread ended, a sender started later may inherit
    that ident. No thread of the application's could have taken that Ctrl-C there; the
    sender goes on."""
    return threading.current_thread() is not threading.main_thread()


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
        # Lines to check against the service's limits before a body is built.
        self._cut_threshold = threshold_for(config.max_line_length)
        self._inspect_all = config.before_send is not None
        #: protocol="otlp": builds the body from the entries (the spool and the
        #: buffer keep LogDNA lines either way); None for the ingest API's body.
        self._encode: _Encode | None = None
        if config.protocol == "otlp":
            from ._otlp import OTLPEncoder  # noqa: PLC0415 - loaded only for OTLP

            encoder = OTLPEncoder(
                app=config.app, env=config.env, hostname=config.hostname, ip=config.ip,
                mac=config.mac, tags=config.tags, extra=attributes_for(config.kubernetes),
                hostname_given=config.hostname_given,
            )  # fmt: skip
            encoder.threshold = self._cut_threshold
            encoder.inspect_all = self._inspect_all
            self._encode = encoder.encode
        # Raised by producers (a full batch is waiting), flush() and close(); all
        # three may run in a signal handler or finalizer, hence not Events.
        self.wake = Wakeup()
        # Raised only by close(): cuts backoff sleeps short.
        self._interrupt = Wakeup()
        # Re-entrant: a signal handler may flush while its thread waits in flush().
        self._progress = threading.Condition(threading.RLock())
        self._deadline: float | None = None
        #: The timeout the deadline came from, for the messages that name it.
        self.close_timeout: float | None = None
        self.finished = Latch()
        # Batches given up on as rejected in a row: each backs off before the next.
        self._rejected_batches = 0
        self.thread: threading.Thread | None = None
        self.ident: int | None = None
        # Reports of trouble only a change of settings fixes (a refused key, an endpoint
        # that does not speak HTTP/1.1): each said once, again after a request goes through.
        self._misconfigured: set[str] = set()
        # False from a failed request until one goes through: drops are summarized
        # only while delivery works, so an outage ends in one summary line.
        self._delivering = True
        self._cut_by_shutdown = 0
        #: Whether Ctrl-C ended the sending where the exit ran it on the main thread.
        self.interrupted = False
        #: What earlier spools of this sender gave up (a restarted sender opens anew).
        self.spool_dropped_before: Counter[str] = Counter()
        #: The batch ``_deliver`` is delivering: its application lines the service stored.
        self._stored = 0
        #: Of a batch on disk that the deadline cut with part of it settled (split by a
        #: 413 or a 400): the entries not settled, to go back to disk without the rest.
        self._unsettled: list[bytes] | None = None
        #: The disk spool (docs/spool.md), opened on the sender thread; None without one.
        self.spool: Spool | None = None
        # Until the sender opened the spool it may adopt what dead processes left there:
        # flush() waits for that too, even with nothing logged.
        self._spool_opening = config.spool_dir is not None
        # The counts a summary line being sent stands for, to restore if it is not sent.
        self._summary_counts: dict[str, int] | None = None
        # A summary line the service refused (400, 413) rides only a batch of application
        # lines until one of those is stored: sent alone again, it was refused again at
        # once, over a thousand requests a second (H186).
        self._summary_refused = False
        #: Told how many lines the shutdown deadline cut off.
        self.on_shutdown_loss: Callable[[int], None] | None = None
        #: Told what the report below says of lines left on disk (the Client says it on
        #: stderr at the process's end, where the library's logger shows nothing).
        self.on_spool_left: Callable[[str], None] | None = None
        #: Run first on the sender thread (it may wait for another library's lock,
        #: which a logging call in a signal handler must never do).
        self.on_start: Callable[[], None] | None = None
        # The buffer's taking side and the spool are the sender thread's, which holds
        # this while it runs, except while a batch that is on disk is out (``_post``):
        # then a closing thread may move memory to the spool behind it.
        self._turn = threading.Lock()
        self._holds_turn = False  # (not when Ctrl-C interrupted the taking back: _post)
        self._out_on_disk = False
        # The thread moving memory to the spool with the turn held (spill_while_closing).
        self._spiller: int | None = None
        # A request whose batch is on disk is out, the turn let go (_post): memory moves
        # to the spool behind it meanwhile (_spill_while_out), raised as it goes out.
        self._request_out = False
        self._out_began = Wakeup()
        # The request out: when it went (monotonic), and its number (which request that is).
        self._out_since = 0.0
        self._out_seq = 0
        #: Batches on disk, not delivered, when the sender ended (left for the next process).
        self._left_on_disk = False
        #: Set by the process's ending once its wait is over (``stop_writing``): no more
        #: batches go to the spool, what memory holds is counted as ``shutdown`` and said.
        self.stopped_writing = False
        # Taken by the process's ending to count the lines memory holds off disk
        # (``count_for_exit``), and by this thread where a batch written to the spool leaves
        # memory's count, and to count and say its own loss at its end: each batch is seen
        # on one side of the disk only, and the loss is counted once, by one of the two.
        self._count_lock = threading.Lock()
        self._exit_counted = False  # the ending counted: this thread says nothing more
        self._counted_here = False  # this thread counted (_finish): the ending does not
        # The batch being written to the spool (``_append``), and the lines of one written
        # there and not yet let go of in memory (still in the buffer's held count).
        self._appending: list[bytes] | None = None
        self._written_held = 0

    # -- control, from other threads

    def start(self) -> None:
        self.finished = Latch()
        thread = threading.Thread(target=self._serve, name="logdna_client-sender", daemon=True)
        self.thread = thread
        start_library_thread(thread)
        self.ident = thread.ident

    @property
    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    @property
    def launched(self) -> bool:
        """Whether ``start`` launched its thread, even where start() did not return (an
        exception a signal handler raised while it waited for the thread to run)."""
        thread = self.thread
        return thread is not None and thread in threading.enumerate()

    def begin_close(self, deadline: float, timeout: float | None = None) -> None:
        """Drain what is queued, giving up at ``deadline`` (monotonic seconds).

        Safe from a signal handler or finalizer: it sets values and raises flags.
        """
        if self._deadline is None or deadline < self._deadline:
            self._deadline = deadline
            self.close_timeout = timeout
            # A request already out was given the whole request_timeout.
            hurry = getattr(self._transport, "hurry", None)
            if hurry is not None:
                hurry(deadline)
        self._interrupt.set()
        self.wake.set()

    def stop_writing(self) -> None:
        """The process's ending waited its deadline and grace for this sender, which is
        still at work (writing memory to a slow spool, say): stop at the batch it is at,
        count what is left as ``shutdown`` and say it (``on_shutdown_loss``). Left to go on
        until the interpreter stops its thread, it wrote batches after the exit had said
        them lost: the report and what the next process adopted did not add up."""
        self.stopped_writing = True
        self._interrupt.set()
        self.wake.set()

    def done(self, target: int) -> bool:
        """Whether every line numbered below ``target`` has left the buffer (delivered,
        or dropped and counted) and no batch waits on disk: the one test of flush(),
        aflush() and wait_done_through()."""
        spool = self.spool
        if self._spool_opening and not self.finished.is_set():
            return False
        if self._left_on_disk:  # (the closed spool forgot them)
            return False
        return self._buffer.done_through >= target and not (spool is not None and spool.undelivered)

    def wait_done_through(self, target: int, timeout: float | None) -> bool:
        """Wait until ``done(target)``, or ``timeout`` passed; returns ``done(target)``."""
        deadline = None if timeout is None else self._clock() + timeout
        current = threading.get_ident()
        self._buffer.waiting.add(current)
        try:
            with self._progress:
                while not self.done(target):
                    if self.finished.is_set():
                        break
                    left = None if deadline is None else deadline - self._clock()
                    if left is not None and left <= 0:
                        break
                    self._progress.wait(left if left is None else min(left, 0.5))
        finally:
            self._buffer.waiting.discard(current)
        return self.done(target)

    # -- the thread

    def run_here(self) -> None:
        """The sender thread's work, on the calling thread, until the close's deadline:
        for a closing client whose thread could not be started (Python 3.12 starts none
        while the interpreter exits). Records this thread makes meanwhile (urllib3's)
        are the sender's, as on its own thread. ``finished`` is the one the failed
        start() made, which other waiters may be waiting on already."""
        self.thread = None
        self._serve()

    def _serve(self) -> None:
        self.ident = threading.get_ident()
        sender_started(self.ident)
        interrupted: KeyboardInterrupt | None = None
        self._turn.acquire()
        self._holds_turn = True
        try:
            if self.on_start is not None:
                with contextlib.suppress(Exception):
                    self.on_start()
            # The transport's own threads, now: from this thread they block the signals
            # as it does, and at exit Python 3.12 could no longer start them.
            start = getattr(self._transport, "start", None)  # (a test's transport has none)
            if start is not None:
                with contextlib.suppress(Exception):
                    start()
            if self._config.spool_dir is not None:
                self._start_spilling()
            old = self.spool
            if old is not None:  # a restarted sender's new spool counts from 0 again
                self.spool_dropped_before.update(old.dropped)
            self.spool = self._open_spool()
            self._left_on_disk = False  # (a restarted sender's new spool adopted them)
            self._spool_opening = False
            self._notify()  # a flush() waiting for the spool to be opened (done())
            while True:
                if self._deadline is None:
                    try:
                        self.wake.wait(self._config.flush_interval)
                    except KeyboardInterrupt:
                        if not _stray_interrupt():
                            raise
                self.wake.clear()
                if self.spool is not None:
                    self.spool.tick()
                try:
                    self._drain()
                except _Shutdown:
                    pass
                except BaseException as exc:
                    if isinstance(exc, KeyboardInterrupt) and _stray_interrupt():
                        continue
                    if isinstance(exc, KeyboardInterrupt):  # (on the main thread)
                        # Ctrl-C where the exit does the sender's work on the main thread
                        # (run_here): whoever pressed it wants out, as _exit._cut_short
                        # has it. The deadline is now: what is held goes to the spool or
                        # counts as ``shutdown`` (_finish), and the interrupt goes on to
                        # the caller, which cuts the other clients' closes short too.
                        interrupted = exc
                        self.interrupted = True
                        self._deadline = self._clock()
                    else:
                        # A bug of ours, or a custom transport's gevent Timeout or
                        # CancelledError, must not stop delivery of everything after it;
                        # nor may its report (a MemoryError while reporting one ended
                        # the thread, and every line after it waited for a restart).
                        with contextlib.suppress(Exception):
                            self._reporter.report(
                                "sender-bug", logging.ERROR, "logdna_client sender error",
                                exc_info=True,
                            )  # fmt: skip
                if self._deadline is not None and (
                    # Held, not queued: a batch an interrupted take counted in flight
                    # is still to go (the next take hands it over).
                    (self._buffer.held_lines == 0 and not self._backlog())
                    or self._clock() >= self._deadline
                    or self.stopped_writing
                ):
                    break
        finally:
            if not self._holds_turn:  # Ctrl-C came as _post took it back: a spill may run
                self._turn.acquire()
                self._holds_turn = True
            try:
                self._finish()
            finally:
                if self._holds_turn:
                    self._holds_turn = False
                    self._turn.release()
        if interrupted is not None:
            raise interrupted

    def _start_spilling(self) -> None:
        """Start ``_spill_while_out``'s thread, where one can start (none at exit on 3.12:
        then memory waits for the request, as before)."""
        self._out_began.clear()  # (a restarted sender's: the last thread saw its end)
        thread = threading.Thread(
            target=self._spill_while_out, args=(self.finished,),
            name="logdna_client-spiller", daemon=True,
        )  # fmt: skip
        with contextlib.suppress(RuntimeError):
            start_library_thread(thread)

    def _spill_while_out(self, finished: Latch) -> None:
        """With a spool, on a thread of the library's: while a request whose batch is on
        disk is out (its turn let go, ``_post``) for longer than flush_interval, what
        memory holds moves to the spool behind it, as the backoff's waits move it
        (``_wait_interruptibly``), by the close's rule (``_spill_behind``: only when the
        spool can take all of it). A request that hangs lasts up to request_timeout, on
        each retry: memory held all that was logged meanwhile, and a kill -9 lost it
        (H188: 33,000 lines, where the docs allow one flush_interval's). Closing, the
        closing thread spills (``spill_while_closing``), not this one. Ends with the
        sender run it was started for (``finished``)."""
        pause = threading.Event()  # never set: the waits between looks
        interval = self._config.flush_interval
        buffer = self._buffer
        # (When, how many lines had been accepted then), oldest first: lines numbered
        # below a mark were logged before its time. The oldest mark still in memory
        # says how long memory's oldest line has waited there.
        marks: collections.deque[tuple[float, int]] = collections.deque()
        while not finished.is_set():
            self._out_began.wait(None)
            while self._request_out and self._deadline is None and not finished.is_set():
                # Each request counts from when it went: one a healthy service answers
                # within flush_interval is never spilled behind (H189: with a new request
                # every 0.1 s, 87% of the lines went through the disk as "replayed"). And
                # memory's oldest line counts from when it was logged: a service answering
                # each request within flush_interval but taking lines more slowly than the
                # app logs them let memory grow for good, and a kill -9 lost seconds of
                # lines (H194: 15,356 lines, 3.8 s of them).
                seq = self._out_seq
                now = self._clock()
                oldest = buffer.oldest_queued
                while marks and marks[0][1] <= oldest:
                    marks.popleft()  # all it counts has left memory
                waited = now - marks[0][0] if marks else 0.0
                if len(marks) < _MARKS:
                    marks.append((now, buffer.accepted))
                # (Twice the interval: a healthy sender's lines wait up to one for its
                # wake, and then for the batches before theirs.)
                left = min(self._out_since + interval - now, 2 * interval - waited)
                if left > 0:
                    pause.wait(min(left, interval / 4))
                    continue
                while (
                    self._request_out
                    and self._out_seq == seq
                    and self._deadline is None
                    and self._spill_if_out(_no_end) == SPILL_MORE
                ):
                    pass
                pause.wait(interval / 4)

    def _open_spool(self) -> Spool | None:
        """The spool, opened here: the folder's I/O belongs on this thread, not the app's."""
        config = self._config
        if config.spool_dir is None:
            return None
        reporter = self._reporter

        def trouble(kind: str, message: str) -> None:
            level = logging.ERROR if kind == "spool-error" else logging.WARNING
            reporter.report(kind, level, "%s", message)

        return Spool.open(
            config.spool_dir,
            max_bytes=config.max_spool_bytes,
            max_age=config.max_spool_age,
            sync=config.spool_sync,
            on_trouble=trouble,
            on_drop=self._buffer.tell,  # told in the next summary line, as the buffer's are
            destination=destination(config),  # adopts only what was logged for the same place
        )

    def _backlog(self) -> bool:
        """Whether the spool holds batches to send (this process's or a dead one's)."""
        return self.spool is not None and self.spool.backlog

    def _finish(self) -> None:
        self._buffer.reclaim()  # an interrupted take's batch: spilled or counted below
        spilled = self._spill()
        with self._count_lock:  # (said under it: the ending, waiting, cannot end unsaid)
            self._counted_here = True
            lost = self._buffer.discard_all("shutdown") + self._cut_by_shutdown
            if lost and not self._exit_counted and self.on_shutdown_loss is not None:
                self.on_shutdown_loss(lost)
        if self.spool is not None:
            # Closed, the spool forgets its segments: a flush() waiting across the end (or
            # called after it) answered True with 400 lines on disk for the next process.
            self._left_on_disk = self.spool.undelivered
            if spilled or self.spool.backlog:
                # This process's lines, and apart those of other processes' segments it
                # took on: those that closed may have said them already (H194: six
                # processes sharing a folder said 9,792 lines left of the 5,695 there).
                taken_on = self.spool.pending(logged_here=False)[1]
                apart = f" (and {taken_on} of other processes' segments it had taken on)"
                left = (
                    f"logdna_client: {self.spool.pending(logged_here=True)[1]} line(s) left in the "
                    f"spool at {self.spool.directory} for the next process"
                    + (apart if taken_on else "")
                )
                self._reporter.report("spool-left", logging.WARNING, "%s", left)
                if self.on_spool_left is not None:
                    self.on_spool_left(left)
            self.spool.close()
        self._transport.close()
        self.finished.set()
        self._out_began.set()  # (_spill_while_out's thread ends)
        self._notify()
        if self.ident is not None:
            sender_ended(self.ident)

    def _notify(self) -> None:
        with self._progress:
            self._progress.notify_all()

    def _drain(self) -> None:
        """Send what was queued when the sender woke; after that, only full batches.

        Lines keep arriving while a batch is out. Sending each small remainder
        at once would cost a request (about a millisecond of CPU in requests)
        per few hundred lines; instead they wait for the next wake: a full
        batch, flush(), close() or flush_interval. Closing drains everything.

        With a spool, each batch is written to disk before it is sent and marked
        done after. While the spool holds older batches (an outage, or what a
        dead process left), those go first, one per turn, and new batches go to
        disk behind them: the order is kept and memory stays small.
        """
        buffer = self._buffer
        target = buffer.accepted
        full = self._config.max_batch_bytes
        wait_up_to = min(full, self._config.max_buffer_bytes // 2)
        spool = self.spool
        while True:
            if self.stopped_writing:
                raise _Shutdown
            if self._deadline is not None and not self._delivering:
                self._to_disk_while_closing()
            backlog = self._backlog()
            if (
                self._deadline is None
                and buffer.done_through >= target
                and buffer.queued_bytes < full
                # A drop summary goes now (but one refused waits for app lines).
                and not (self._delivering and buffer.unreported and not self._summary_refused)
                and not backlog
            ):
                return
            replayed = self._replay_one() if backlog else False
            if (
                replayed
                and self._deadline is None
                and buffer.queued_bytes < wait_up_to
                and self._backlog()
            ):
                # Replays go on first while they succeed: memory taken now would go to
                # disk behind them, and an app logging on kept the backlog from ever
                # emptying, every later line sent through the disk (H196: after one burst,
                # 2,518 of 3,800 lines "replayed", 2.6 times the requests). Memory waits
                # for a full batch, or half its room (H197: a buffer smaller than a batch
                # filled and dropped lines), or the spiller's two flush_intervals.
                continue
            lines = buffer.take(full)
            # Room made by dropping older batches only where none waits (done ones go).
            batch_id = (
                self._append(lines, make_room=not backlog) if spool is not None and lines else None
            )
            if batch_id is not None and self._backlog():
                self._to_disk(batch_id, lines)  # behind the older batches
                continue
            if batch_id is None and lines and replayed and self._deadline is None:
                # No room on disk, or the disk failed, while older batches wait there:
                # these wait in memory until those are sent, or they would overtake them.
                buffer.untake(lines)
                continue
            summary = self._take_summary() if lines or not self._summary_refused else None
            if not lines and summary is None:
                if backlog:
                    continue
                return
            try:
                self._deliver(
                    [*lines, summary] if summary is not None else lines, summary,
                    kept=batch_id is not None,
                )  # fmt: skip
            except _ToDisk:  # (the finally below lets go of it in memory)
                assert spool is not None and batch_id is not None
                self._restore_summary()
                spool.release(batch_id)
                buffer.settle(len(lines))
                continue
            except (_Shutdown, KeyboardInterrupt):
                if batch_id is not None:
                    self._leave_on_disk(batch_id)  # on disk: not lost
                # Cut before its summary went: its counts are untold again (the exit says
                # them, _report_exit_drops, or no one would).
                self._restore_summary()
                raise
            finally:
                with self._count_lock:  # (on disk, out: counted neither lost nor held)
                    buffer.release(lines)
                    self._out_on_disk = False
                self._notify()
            if batch_id is not None:
                spool.ack(batch_id)  # type: ignore[union-attr]
                self._notify()  # flush() waits for the ack too (Spool.undelivered)
            if not lines and self._deadline is not None:
                # Closing, a summary alone: lines logged after the close (threads that
                # go on logging) are told in one, not in a request each till the deadline.
                return

    def _replay_one(self) -> bool:
        """Send the oldest batch the spool holds; it stays there unless delivered.
        False when there was none to send."""
        spool = self.spool
        assert spool is not None
        batch = spool.next_replay_batch(self._config.max_batch_bytes)
        if batch is None:
            return False
        try:
            stored = self._deliver(list(batch.entries), replayed=True)
        except (_Shutdown, KeyboardInterrupt):
            self._leave_on_disk(batch.id)
            raise
        except BaseException:
            spool.release(batch.id)
            raise
        spool.ack(batch.id, stored)
        self._notify()
        return True

    def _leave_on_disk(self, batch_id: BatchId) -> None:
        """A batch on disk the deadline cut: left there for the next process, but only
        what of it was not settled. Released whole, a batch split by a 413 whose first
        half the service had stored was sent again whole by the next process (5 of 10
        lines twice). Where the rest finds no room on disk, or Ctrl-C took the turn
        from this thread (a spill may be writing), it is left whole: sent twice, not lost."""
        spool = self.spool
        assert spool is not None
        rest, self._unsettled = self._unsettled, None
        if rest is None or not (self._holds_turn and spool.requeue(batch_id, rest, self._stored)):
            spool.release(batch_id)

    def _to_disk(self, batch_id: BatchId, lines: list[bytes]) -> None:
        """A taken batch is safe on disk and will be replayed: let go of it in memory."""
        assert self.spool is not None
        self.spool.release(batch_id)
        with self._count_lock:
            self._buffer.settle(len(lines))
            self._buffer.release(lines)
            self._written_held = 0
        self._notify()

    def _move_to_disk(self, *, make_room: bool = False) -> tuple[int, list[bytes]]:
        """Move what the buffer holds to the spool, a batch at a time, while no batch of
        it is in flight. Returns the lines moved, and the batch taken that found no
        room on disk (or the disk failed): ``[]`` when there is none. ``make_room``: see
        ``_append``."""
        moved = 0
        buffer = self._buffer
        while (
            self.spool is not None
            and len(buffer)
            and not buffer.inflight_bytes
            and not self.stopped_writing
        ):
            lines = buffer.take(self._config.max_batch_bytes)
            batch_id = self._append(lines, make_room=make_room)
            if batch_id is None:
                return moved, lines
            self._to_disk(batch_id, lines)
            moved += len(lines)
        return moved, []

    def _to_disk_while_closing(self) -> None:
        """Closing while requests fail: what memory holds goes to the spool now, not at
        the deadline (``_spill``). Written then, on a slow disk the writing outlasted
        close()'s wait, and a process ending meanwhile lost what was not written yet,
        uncounted."""
        if self.spool is None or not self.spool.enabled:
            return
        _, left = self._move_to_disk()
        if left:  # no room on disk: these wait in memory after all
            self._buffer.untake(left)

    def spill_while_closing(self, until: Callable[[], float]) -> None:
        """On a thread waiting for the close (never the sender's), with a spool: once a
        batch that is on disk is out, move what memory holds to the spool behind it, at
        once, not when that request ends. A request that hangs ended only at the
        deadline (its watchdog's cut), and the writing after it outlasted close()'s
        wait on a slow disk: a process ending then lost what was not written yet.
        Gives up at ``until()`` (monotonic), or when the sender is done.

        The batch out stays where it is, first: delivered, it is acked and not sent
        again; not, it is on disk ahead of these. Their order is kept, and each line
        is on disk once (``spooled``), later ``replayed`` or counted by the spool."""
        spill_while_closing([(self, until)])

    def spills(self) -> bool:
        """Whether ``spill_while_closing`` has anything to do for this sender here."""
        return (
            self._config.spool_dir is not None
            and not self.finished.is_set()
            and (
                # On the sender's thread: a signal handler that interrupted it. On a thread
                # that is spilling already: one that interrupted the spill, whose turn this
                # thread holds (waiting for it here would wait for ever).
                threading.get_ident() not in (self.ident, self._spiller)
            )
        )

    def held_off_disk(self) -> int:
        """Lines memory holds that are on disk nowhere, for the exit's report of lines not
        delivered: the buffer's, but the batch out when it is on disk (written before it
        was sent: the next process sends it), and with the batch a spill took and is
        writing. Counted as not delivered, the batch out made the report say 232 lines
        were not delivered with 182 of 400 on disk. Exact only where the sender does not
        run, or under ``_count_lock`` (``count_for_exit``)."""
        buffer = self._buffer
        held = buffer.held_lines
        taken = buffer.behind  # (cleared once on disk)
        out = buffer.inflight_lines if self._out_on_disk else 0
        return max(0, held + (len(taken) if taken is not None else 0) - out - self._written())

    def _written(self) -> int:
        """Lines of a batch in the spool's file that memory still counts as held: the one
        being written, once its write returned (its sync may go on), or one written and
        not let go of yet."""
        writing, spool = self._appending, self.spool
        if writing is not None:
            return len(writing) if spool is not None and spool.last_written is writing else 0
        return self._written_held

    def _append(self, lines: list[bytes], *, make_room: bool = False) -> BatchId | None:
        """``Spool.append``, seen by ``count_for_exit``: None once the ending counted.
        Never making room by dropping older batches unless ``make_room`` (the sender's
        end, where memory's lines are lost otherwise): while the process runs, they are
        on their way, and memory keeps a batch that does not fit (H189: a spool the
        spills filled dropped them as spool_full for the next batches)."""
        spool = self.spool
        assert spool is not None
        with self._count_lock:
            if self._exit_counted:  # (the spool is sealed too: this is the quick way)
                return None
            self._appending = lines
        batch_id = None
        try:
            batch_id = spool.append(lines, make_room=make_room)
        finally:
            with self._count_lock:
                self._appending = None
                if batch_id is not None:
                    self._written_held = len(lines)
        return batch_id

    def count_for_exit(self, timeout: float) -> int | None:
        """The process's ending, its wait for this sender over (``stop_writing``): the lines
        memory holds off disk, counted once and for good; None where the sender counted
        them itself (``_finish``, which says them) or ``timeout`` passed first.

        The spool is sealed first (a write in progress is waited for, up to ``timeout``):
        no batch reaches the disk after the count. A batch written while the count was
        taken (its sync outlasting the wait, on a slow disk) was counted as not delivered
        and adopted by the next process too: 168 adopted + 1846 said for 2000 logged.
        Its lines count as on disk once its write returned; a write that outlasts
        ``timeout`` counts as not delivered (it may yet land: said lost, then adopted)."""
        until = self._clock() + timeout
        spool = self.spool
        if spool is not None:
            spool.seal(until - self._clock())
        if not self._count_lock.acquire(timeout=max(0.0, until - self._clock())):
            return None
        try:
            if self._counted_here or self.finished.is_set():
                return None
            self._exit_counted = True
            return self.held_off_disk()
        finally:
            self._count_lock.release()

    def spilling_here(self) -> bool:
        """Whether this thread is inside a spill of this sender, holding its turn (a signal
        handler interrupted it there): nothing on it may wait for the sender, which needs
        the turn back to go on."""
        return self._spiller == threading.get_ident()

    def _spill_if_out(self, until: Callable[[], float]) -> str:
        """One look: spill a batch behind the batch out, if one that is on disk is. Says
        ``SPILL_DONE`` when there is nothing more to do (memory spilled, the sender done,
        or ``until()`` passed), ``SPILL_MORE`` when a batch went and more is left, and
        ``SPILL_WAIT`` when no batch on disk is out (yet). A batch a look: the exit's
        waiter takes its clients in turn (``spill_while_closing``)."""
        if until() <= self._clock():
            return SPILL_DONE  # what is left goes at the sender's end
        turn = self._turn
        if not turn.acquire(blocking=False):
            # The sender is busy with memory or the spool.
            return SPILL_DONE if self.finished.is_set() else SPILL_WAIT
        self._spiller = threading.get_ident()
        try:
            if self.finished.is_set():
                return SPILL_DONE
            if not self._out_on_disk:
                return SPILL_WAIT
            return SPILL_MORE if self._spill_behind(until, most=1) else SPILL_DONE
        finally:
            self._spiller = None
            turn.release()

    def _spill_behind(self, until: Callable[[], float], most: int | None = None) -> bool:
        """``spill_while_closing``'s moving, with the turn held, until ``until()`` and at
        most ``most`` batches (None: all): what is left then goes at the sender's end, as
        without the spill. Written to the end, on a slow disk 2000 lines (125 batches
        synced) held close(1.0) for 14.7 s, and an exit as long: past the deadline that
        bounds it. True when it stopped at ``most`` with more in memory to move."""
        spool = self.spool
        buffer = self._buffer
        if spool is None or not spool.enabled or not self._spool_takes_all():
            return False
        more = False
        try:
            moved = 0
            while len(buffer) and until() > self._clock() and not self.stopped_writing:
                if moved == most:
                    more = True
                    break
                if not self._spill_batch(buffer.take_behind(self._config.max_batch_bytes)):
                    break
                moved += 1
        except BaseException:
            # Ctrl-C (a close on the main thread) with a batch taken and not yet on disk
            # nor back in memory: written already, the spool hands back the batch it
            # booked (no second copy); else it is written now.
            lines = buffer.behind
            if lines is not None:
                self._spill_batch(lines)
            raise
        self._notify()
        return more

    def _spool_takes_all(self) -> bool:
        """Whether the spool has room for all that memory holds without dropping any of
        its batches. Where it has not, memory stays where it is (until the sender's end):
        the spool makes room by dropping its oldest batches, and memory's lines are still
        on their way (the batch out may yet be answered), not lost. Spilled anyway, a
        spool smaller than memory dropped 1134 of 2000 lines (``spool_full``) that the
        sender would have delivered from memory once the request was answered."""
        spool = self.spool
        assert spool is not None
        buffer = self._buffer
        batches = buffer.queued_bytes // self._config.max_batch_bytes + 1
        need = buffer.queued_bytes + 4 * len(buffer) + _SPOOL_FRAME * batches
        return spool.disk_bytes + need <= spool.max_bytes

    def _spill_batch(self, lines: list[bytes]) -> bool:
        """One batch ``take_behind`` took, to the spool (False: no room, it is back in
        memory). Let go of in the buffer before the spool may hand it out again."""
        spool = self.spool
        assert spool is not None
        batch_id = self._append(lines)
        if batch_id is None:  # no room on disk: these wait in memory after all
            self._buffer.put_back(lines)
            return False
        with self._count_lock:
            self._buffer.behind = None
            self._written_held = 0
        spool.release(batch_id)
        return True

    def _spill(self) -> int:
        """At the end: move what the buffer still holds to the spool; lines moved. Room is
        made by dropping the oldest batches if need be: memory's lines are lost otherwise."""
        moved, left = self._move_to_disk(make_room=True)
        if left:  # no room, or the disk failed: they count as shutdown drops
            self._buffer.release(left)
            self._cut_at_shutdown(len(left))
        return moved

    def _cut_at_shutdown(self, count: int) -> None:
        """Lines taken from the buffer that the shutdown deadline cut, on disk nowhere:
        dropped as ``shutdown``, and part of the loss ``_finish`` reports."""
        self._buffer.count_drop("shutdown", count)
        self._cut_by_shutdown += count

    def _take_summary(self) -> bytes | None:
        """The drop-summary line, while delivery works (no failed request since the last success).

        It rides at the end of the next batch instead of waiting in the buffer,
        so an outage cannot evict it (counting it as a drop of its own) and a
        long outage ends in one summary, not one per attempt to drain.
        """
        self._summary_counts = None
        if not self._delivering:
            return None
        counts = self._buffer.take_unreported()
        if not counts:
            return None
        data = self._summary(dict(counts))
        if data is None:  # before_send dropped it: told as the app asked (not at all)
            return None
        self._summary_counts = dict(counts)
        return SEPARATOR + data  # batches hold buffer entries: a comma, then the line

    def _restore_summary(self) -> None:
        """The summary line taken for a batch that went to disk instead, or that the
        deadline cut before it went: tell it later."""
        if self._summary_counts:
            self._buffer.restore_unreported(Counter(self._summary_counts))
        self._summary_counts = None

    def _deliver(
        self,
        lines: list[bytes],
        summary: bytes | None = None,
        *,
        kept: bool = False,
        replayed: bool = False,
    ) -> int:
        """Deliver one batch, splitting and retrying as the answers require; returns
        how many of its application lines the service stored.

        ``kept``: the batch is also in the spool. Cut off by the deadline, it is not
        lost; and if its first request fails, ``_ToDisk`` hands it to the spool to be
        retried from there, so that memory keeps moving to disk during an outage.
        ``replayed``: the batch came from the spool; its lines are not this
        process's buffer's to count (the spool counts them as ``replayed``).
        """
        pending: list[list[bytes]] = [lines]
        self._stored = 0
        self._unsettled = None
        with self._count_lock:
            self._out_on_disk = kept or replayed
            self._written_held = 0  # (counted as out now)

        def undelivered() -> int:
            return sum(_app_lines(part, summary) for part in pending)

        try:
            self._deliver_parts(pending, summary, handoff=kept, own=not replayed)
            if summary is not None and self._summary_counts is not None:
                # Its part refused (a 400 or 413 dropped it), not stored: the drops it
                # told are untold again, for the next summary or the exit's report,
                # which rides the next batch of application lines, never alone.
                self._summary_refused = True
                self._restore_summary()
        except (_Shutdown, KeyboardInterrupt):
            # Ctrl-C's KeyboardInterrupt (only where the exit runs this on the main
            # thread) ends the sending as the deadline does (_serve): never a bug's
            # ``error``, and a spooled batch is left on disk (what of it is not settled).
            if not (kept or replayed):  # else it is on disk for the next process
                self._cut_at_shutdown(undelivered())
            elif sum(map(len, pending)) < len(lines):  # part of it is settled: not that part
                self._unsettled = [
                    entry for part in pending for entry in part if entry is not summary
                ]
            raise
        except _ToDisk:
            raise
        except BaseException:
            # A bug (ours or a custom transport's): retrying would likely fail the
            # same way forever, so count these lines and keep the sender going.
            cut = undelivered()
            self._buffer.count_drop("error", cut)  # ours or from the spool: lost to a bug
            with contextlib.suppress(Exception):  # (short of memory to say it, say)
                self._reporter.report(
                    "sender-bug", logging.ERROR,
                    "logdna_client: internal error while sending; %d line(s) dropped",
                    cut, exc_info=True,
                )  # fmt: skip
        finally:
            if not kept:  # (a kept batch's _drain lets go of it and this together)
                self._out_on_disk = False
        return self._stored

    def _deliver_parts(
        self,
        pending: list[list[bytes]],
        summary: bytes | None = None,
        *,
        handoff: bool = False,
        own: bool = True,
    ) -> None:
        attempt = 0
        single_rejects = 0
        buffer = self._buffer

        short_of_memory = 0
        while pending:
            part = pending[0]
            try:
                outcome = self._post(part)
                if outcome.kind is Kind.BAD_REQUEST and self._compress and not self._gzip_checked:
                    outcome = self._post_plain(part)  # a server that cannot read gzip bodies?
            except _Unencodable as unencodable:
                self._drop_unencodable(pending, summary, own, unencodable.failed)
                handoff = False  # dropped and counted: retrying from disk would count it again
                continue
            except MemoryError:
                # The process is at its memory limit building or sending this body: a
                # smaller one needs less. Dropped whole as a bug's, a batch of 5 lines went
                # on one failed allocation, and with a spool the batch it had accepted was
                # deleted from disk with them.
                short_of_memory += 1
                if self._short_of_memory(pending, summary, own, short_of_memory):
                    continue  # the same line again
                if len(pending[0]) < len(part):
                    short_of_memory = 0  # halved: each half may be tried twice
                    continue
                pending.pop(0)  # dropped and counted: retrying from disk would send it
                handoff = False
                short_of_memory = 0
                continue
            short_of_memory = 0
            kind = outcome.kind
            if kind is Kind.OK or kind is Kind.PARTIAL:
                pending.pop(0)
                handoff = False  # part of it went: retrying from disk would duplicate that
                if summary is not None and summary_stored(part, outcome, summary):
                    self._summary_counts = None  # told: nothing to restore
                delivered, rejected = app_outcome(part, outcome, summary)
                if own:
                    self.stats.sent += delivered
                    buffer.settle(delivered + rejected)
                self._stored += delivered
                if kind is Kind.OK and outcome.detail:
                    # A receiver's warning (OTLP: a partial success refusing no record,
                    # _otlp.classify_otlp): every line was taken, nothing to count.
                    self._reporter.report(
                        "receiver-warning", logging.WARNING,
                        "logdna_client: the service took every line but warned: %s",
                        outcome.detail,
                    )  # fmt: skip
                if rejected:
                    # Counted from the batch, not from the answer's word: a 207 that refused
                    # only places past the batch failed nothing; one that confirmed none of
                    # it (no status array) refused every line.
                    self._failed(outcome)
                    self._reject(rejected, outcome, own)
                attempt = 0
                single_rejects = 0
                self._rejected_batches = 0
                if delivered:
                    self._summary_refused = False
                self._delivering = True
                self._recovered()
                continue
            if kind is Kind.TOO_LARGE or kind is Kind.BAD_REQUEST:
                if len(part) > 1:
                    half = len(part) // 2
                    pending[0:1] = [part[:half], part[half:]]
                    continue
                pending.pop(0)
                handoff = False
                if _app_lines(part, summary):  # our summary line is not an app line
                    self._reject(1, outcome, own)
                    if own:
                        buffer.settle(1)
                single_rejects += 1
                if single_rejects >= _MAX_SINGLE_REJECTS:
                    # Not one bad line: the server refuses everything (a 413 to any
                    # size, a 400 to any line). Count the batch, and back off
                    # before the next one instead of probing it line by line too.
                    rest = sum(_app_lines(p, summary) for p in pending)
                    pending.clear()
                    if rest:
                        self._reject(rest, outcome, own)
                        if own:
                            buffer.settle(rest)
                    self._rejected_batches += 1
                    self._sleep(self._backoff.delay(self._rejected_batches, None, self._left()))
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
            self.stats.retries += 1
            self._report_failure(outcome)
            if handoff:
                raise _ToDisk  # kept on disk: retried from there, behind nothing
            attempt += 1
            # What the server asked for: close() may cut our own backoff short, not this.
            floor = 0.0
            if outcome.retry_after is not None:
                floor = max(0.0, min(outcome.retry_after, self._backoff.cap))
            if kind in _SLOW_KINDS:
                delay = max(self._backoff.slow(), floor)
            else:
                delay = self._backoff.delay(attempt, outcome.retry_after, self._left())
            self._sleep(delay, floor)

    def _drop_unencodable(
        self,
        pending: list[list[bytes]],
        summary: bytes | None,
        own: bool,
        failed: list[tuple[int, Exception]],
    ) -> None:
        """Take the lines the OTLP encoder could not convert out of ``pending[0]``,
        counted as ``error`` (a bug's: sent again they would fail again), and leave the
        rest of it to be sent. Before, the whole batch was dropped with them. Called
        while ``_Unencodable`` is handled: the report's traceback is its cause's."""
        places = {place for place, _ in failed}
        part = pending[0]
        rest = [entry for place, entry in enumerate(part) if place not in places]
        lost = _app_lines([part[place] for place in sorted(places)], summary)
        if rest:
            pending[0] = rest
        else:
            pending.pop(0)
        if lost:
            self._buffer.count_drop("error", lost)  # ours or from the spool: lost to a bug
            if own:
                self._buffer.settle(lost)
        with contextlib.suppress(Exception):
            self._reporter.report(
                "otlp-encode", logging.ERROR,
                "logdna_client: internal error converting lines to OTLP; %d line(s) dropped, "
                "the rest of the batch is sent",
                lost, exc_info=True,
            )  # fmt: skip

    def _short_of_memory(
        self, pending: list[list[bytes]], summary: bytes | None, own: bool, tries: int
    ) -> bool:
        """A MemoryError building or sending ``pending[0]``: halved while it has more than
        one line; one line is tried again once after a backoff (memory may come back), then
        counted as ``error`` (the caller drops it). True while it is to be tried again."""
        part = pending[0]
        with contextlib.suppress(Exception):
            self._reporter.report(
                "memory", logging.ERROR,
                "logdna_client: out of memory building or sending a batch; sending it in "
                "smaller parts (a line that alone cannot be sent is dropped and counted)",
            )  # fmt: skip
        if len(part) > 1:
            half = len(part) // 2
            pending[0:1] = [part[:half], part[half:]]
            return False
        if tries < 2:
            self._sleep(self._backoff.delay(1, None, self._left()))
            return True
        if _app_lines(part, summary):  # our summary line is not an app line
            self._buffer.count_drop("error", 1)
            if own:
                self._buffer.settle(1)
        return False

    def _close_deadline(self) -> float:
        """The close's deadline (``_spill_behind``'s ``until``, on this thread)."""
        return self._deadline if self._deadline is not None else float("inf")

    def _left(self) -> float | None:
        """Seconds to the shutdown deadline, or None while not closing."""
        deadline = self._deadline
        return None if deadline is None else max(0.0, deadline - self._clock())

    def _post(self, lines: list[bytes]) -> Outcome:
        gzipped = self._compress
        cuts: Cuts = Counter()
        if self._encode is not None:
            failed: list[tuple[int, Exception]] = []
            body = self._encode(lines, cuts, failed)
            if failed:  # not sent: the caller drops these alone, and sends the rest
                raise _Unencodable(failed) from failed[0][1]  # (its traceback, reported)
            if gzipped:
                body = _gzip(body)
        else:
            lines = enforce_entries(
                lines, cuts, threshold=self._cut_threshold, inspect_all=self._inspect_all
            )
            body = gzip_entries(lines) if gzipped else join_entries(lines)
        timeout = self._config.request_timeout
        if self._deadline is not None:
            left = self._deadline - self._clock()
            if left <= 0:
                raise _Shutdown
            timeout = max(0.05, min(timeout, left))
        self.stats.requests += 1
        turn = self._turn if self._out_on_disk else None
        if turn is not None:  # the batch is on disk: memory may be spilled behind it
            self._holds_turn = False
            turn.release()
            self._out_since = self._clock()
            self._out_seq += 1  # (after its time: a look that sees this number sees it)
            self._request_out = True
            self._out_began.set()
        try:
            outcome = self._transport.send(body, gzipped=gzipped, timeout=timeout)
        finally:
            if turn is not None:
                self._request_out = False
                turn.acquire()
                self._holds_turn = True
        if outcome.resent:  # sent again at once on a new connection: no failure, no retry
            self.stats.requests += 1
        if outcome.kind is Kind.OK or outcome.kind is Kind.PARTIAL:
            self.stats.bytes_sent += len(body)
            if cuts:  # counted once delivered: a retried batch is cut again, not counted again
                self.stats.cut.update(cuts)
        if outcome.kind is not Kind.OK and outcome.kind is not Kind.PARTIAL:
            self._failed(outcome)  # a 207's, when it refused lines of this batch (_deliver_parts)
        return outcome

    def _failed(self, outcome: Outcome) -> None:
        """Record ``outcome`` as the last failed delivery attempt (``stats()["last_error"]``)."""
        # One new dict per failure: stats() readers on other threads see a whole one.
        self.stats.last_error = {
            "kind": outcome.kind.value, "status": outcome.status, "when": time.time(),
        }  # fmt: skip

    def _post_plain(self, lines: list[bytes]) -> Outcome:
        """After a 400 on a gzip body (asked once): the same lines plain. Taken: plain
        bodies from now on. The caller accounts for the answer as for any other."""
        self._gzip_checked = True
        self._compress = False
        try:
            outcome = self._post(lines)
        except BaseException:  # (a MemoryError, the deadline): gzip stays as it was
            self._compress = True
            self._gzip_checked = False
            raise
        if outcome.kind is Kind.OK or outcome.kind is Kind.PARTIAL:
            self._reporter.report(
                "gzip-off", logging.WARNING,
                "logdna_client: the server refused a gzip body but took it plain; "
                "sending plain bodies from now on",
            )  # fmt: skip
        else:
            self._compress = True
            if outcome.kind is not Kind.BAD_REQUEST:
                # Refused for its size (413) or not answered for now (503, a timeout):
                # that says nothing of gzip, so ask again at the next 400 to a gzip
                # body. Settled here, a server that cannot read gzip had every line of
                # the split (or retried) batch dropped as rejected.
                self._gzip_checked = False
        return outcome

    def _reject(self, count: int, outcome: Outcome, own: bool = True) -> None:
        if own:
            self._buffer.count_drop("rejected", count)
        else:
            self.stats.replay_rejected += count
            # Told as the spool's own losses are, in the next summary line (H203: lines
            # refused from the spool were counted here and told nowhere).
            self._buffer.tell("replay_rejected", count)
        self._reporter.report(
            "rejected", logging.WARNING,
            "logdna_client: the service rejected %d line(s) (HTTP %s: %s); dropped and counted",
            count, outcome.status, outcome.detail or "no detail",
        )  # fmt: skip

    def _report_failure(self, outcome: Outcome) -> None:
        if outcome.kind is Kind.AUTH:
            self._report_misconfigured(
                "auth", f"the ingestion key was refused (HTTP {outcome.status})", "the key"
            )
            return
        if outcome.kind is Kind.PROTOCOL:
            self._report_misconfigured(
                "protocol", outcome.detail, "the url option (and any proxy settings)"
            )
            return
        if outcome.kind is Kind.UNSUPPORTED_ENCODING:  # (gzip is off already: _deliver_parts)
            self._report_misconfigured(
                "encoding",
                f"the server refused the body's media type, plain JSON (HTTP {outcome.status})",
                'the url option: the ingest API\'s /logs/ingest, or with protocol="otlp" an '
                "OTLP/HTTP endpoint that takes JSON",
            )
            return
        if outcome.kind is Kind.SETTINGS:
            self._report_misconfigured(
                "settings", outcome.detail,
                "the url option, the proxy settings (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY) and "
                "any CA bundle named (verify=, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE)",
            )  # fmt: skip
            return
        self._reporter.report(
            "send-failed", logging.WARNING,
            "logdna_client: sending failed (%s); retrying with backoff, lines are kept",
            f"HTTP {outcome.status} {outcome.detail}".strip() if outcome.status else outcome.detail,
        )  # fmt: skip

    def _report_misconfigured(self, kind: str, what: str, check: str) -> None:
        self._misconfigured.add(kind)
        self._reporter.report(
            kind, logging.ERROR,
            "logdna_client: %s. Lines are kept and retried every %g s or so; check %s.",
            what, self._backoff.cap, check,
        )  # fmt: skip

    def _recovered(self) -> None:
        while self._misconfigured:
            self._reporter.forget(self._misconfigured.pop())

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
            if not self._wait_interruptibly(wait):
                break
            # Cut short by close(); later sleeps back off again until the deadline.
            self._interrupt.clear()
            wait = floor - (self._clock() - started)
            if wait <= 0:
                break
        if self._deadline is not None and self._clock() >= self._deadline:
            raise _Shutdown

    def _wait_interruptibly(self, seconds: float) -> bool:
        """Wait ``seconds`` unless close() interrupts (then True). With a spool, and no
        batch of the buffer's in flight, memory moves to disk every flush_interval
        meanwhile, while the spool can take all of it (``_spool_takes_all``): an outage
        longer than the buffer holds loses nothing, and a crash during it loses at most
        the last flush_interval of lines."""
        if self._deadline is not None and self._out_on_disk:
            # Closing, a batch on disk out and waited for (a Retry-After after a split):
            # a closing thread's spill needs the turn this thread holds, so the moving
            # behind it is done here. Left to the deadline, on a slow disk close(6)
            # returned with 14 of 400 lines on disk.
            self._spill_behind(self._close_deadline)
        if self.spool is None or not self.spool.enabled or self._buffer.inflight_bytes:
            if not self._interrupt.wait(seconds):
                return False
            if self._deadline is not None and self._out_on_disk:  # close() began meanwhile
                self._spill_behind(self._close_deadline)
            return True
        end = self._clock() + seconds
        while True:
            if self._interrupt.wait(min(self._config.flush_interval, end - self._clock())):
                if self._deadline is not None:  # close() began, during an outage
                    self._to_disk_while_closing()
                return True
            # As at close: where the spool cannot take all memory holds without dropping
            # older batches for room, memory stays (H188: a 1 MiB spool dropped 27,009
            # of 30,000 lines of an 8 s outage that memory alone would have delivered).
            if self._spool_takes_all():
                _, left = self._move_to_disk()
                if left:  # no room on disk: these wait in memory after all
                    self._buffer.untake(left)
            self.spool.tick()
            if self._clock() >= end:
                return False

    def snapshot(self) -> dict[str, Any]:
        s = self.stats
        return {"sent": s.sent, "retries": s.retries, "requests": s.requests,
                "bytes_sent": s.bytes_sent, "replay_rejected": s.replay_rejected,
                "last_error": None if s.last_error is None else {**s.last_error},
                "cut": {kind: s.cut[kind] for kind in CUT_KINDS}}  # fmt: skip


def spill_while_closing(waits: list[tuple[Sender, Callable[[], float]]]) -> None:
    """``Sender.spill_while_closing`` for several senders at once, each until its own
    ``until()``: the exit's waiter (atexit, SIGTERM) spills every closing client's memory
    as soon as its batch on disk is out, not one client after the other's whole wait. A
    second client's memory waited for the first's request to be cut at the deadline, and
    a process killed meanwhile (SIGKILL after SIGTERM's grace) lost it."""
    pending = [(sender, until) for sender, until in waits if sender.spills()]
    pause = threading.Event()  # never set: the pause between looks
    while pending:
        # A batch of each in turn: each client's whole memory, one after the other, left
        # the second's in memory until the first's was written (or the deadline passed:
        # with two clients of 400 lines on a slow disk, the second had 112 on disk).
        looks = [(sender, until, sender._spill_if_out(until)) for sender, until in pending]
        pending = [(sender, until) for sender, until, seen in looks if seen in _SPILL_ON]
        if any(seen == SPILL_MORE for _, _, seen in looks):
            continue  # (no pause: the disk is the pace)
        if pending:
            left = max(until() - sender._clock() for sender, until in pending)
            pause.wait(min(max(left, 0.0), _SPILL_LOOK))
