"""The Client: one pipeline (builder -> buffer -> sender -> transport) per instance.

Handlers and processors share it. It owns process-level concerns too: the
sender thread is started lazily on the first line, replaced in a forked child,
and drained at interpreter exit (including in ``multiprocessing`` children,
which end with ``os._exit`` and never run ``atexit``).
"""

from __future__ import annotations

import bisect
import datetime as _dt
import logging
import math
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from typing_extensions import Self, Unpack

from . import _capture, _exit
from ._buffer import SEPARATOR, Buffer
from ._config import Config
from ._event import level_name, levelno_of, timestamp_of
from ._line import LineBuilder, now_millis, safe_str
from ._options import ClientOptions, check_option_names, with_options_help
from ._report import Reporter
from ._retry import Backoff
from ._secret import hide_key
from ._sender import Sender
from ._stats import DROP_REASONS, SPOOL_DROP_REASONS, ClientStats, DropReason, said_of_failure
from ._threads import Latch, on_sender_thread, raised_by_signal_handler, start_library_thread
from ._transport import HTTPTransport, Transport

__all__ = ["Client"]

if TYPE_CHECKING:
    # Imported where a coroutine of ours runs, never at import: from 3.12 importing asyncio
    # registers a fork hook that clears the signal wakeup fd in every forked child, an
    # application's own (a select loop's self-pipe) too (docs/delivery.md).
    import asyncio

    _Watches = weakref.WeakValueDictionary[tuple[asyncio.AbstractEventLoop, Sender], "_Watch"]

# How long past its deadline a close waits for the sender's own bookkeeping.
_CLOSE_GRACE = 0.2
# How long after a failed attempt to start the sender thread (RLIMIT_NPROC, no memory
# for its stack) lines are queued without trying again.
_START_RETRY = 1.0
# How often aflush()/aclose() look at the sender's progress: first, and at most.
_POLL_FIRST = 0.001
_POLL_MAX = 0.05
# How long one of an ending's waiters waits for another to say what the exit lost.
_TELL_GRACE = 1.0
# How long the ending waits, past its grace, for a sender still writing memory to the spool
# to stop at the batch it is at and count the rest (``Sender.stop_writing``): one batch.
_STOP_GRACE = 1.0
# The least the exit waits for the sender's count lock (``Sender.count_for_exit``).
_COUNT_WAIT = 0.1

# What the first line refused after the end of this client's delivery says (``_exit_finished``).
_LOGGED_AFTER_EXIT = (
    "logdna_client: a line logged after the library's exit hook ran was not delivered (a "
    "thread still running, a finalizer, an atexit handler registered before the first "
    "LogDNAHandler or Client was built, and a Celery worker_process_shutdown receiver "
    "connected after the library's run after it); later ones are counted as after_close"
)
_LOGGED_BEFORE_EXEC = (
    "logdna_client: a line logged in a subprocess.Popen preexec_fn was not delivered: that "
    "child runs another program next, before any line could be sent (log before Popen(), "
    "or from the program it runs); later ones are counted as after_close"
)


def _checked_timeout(timeout: float | None) -> float | None:
    """A ``timeout`` given to ``flush``, ``close`` or their async forms: NaN is refused
    (every comparison with it is false: a flush waited in a busy loop for good)."""
    try:
        nan = timeout is not None and math.isnan(timeout)
    except (TypeError, ValueError, OverflowError):  # (an int past a float's range: no NaN)
        nan = False
    if nan:
        raise ValueError("timeout is NaN: give a number of seconds, or None")
    return timeout


class Client:
    """Ships log lines to the LogDNA / Mezmo ingest API from a background thread.

    All options are keyword arguments (see docs/configuration.md); strings are
    accepted for every option, so it can be built from config files. The key
    may also come from ``LOGDNA_INGESTION_KEY`` or ``key_file=``.

    Example::

        client = Client(key="...", app="billing", env="production")
        client.log("invoice sent", level="INFO", meta={"invoice": 42})
        client.flush(timeout=5.0)
    """

    def __init__(
        self,
        *,
        config: Config | None = None,
        transport: Transport | None = None,
        backoff: Backoff | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        options = cast(ClientOptions, hide_key(dict(options)))  # first: the key in a Secret
        if config is not None and options:
            from ._errors import ConfigurationError  # noqa: PLC0415

            raise ConfigurationError("pass either config= or options, not both")
        check_option_names(options)
        # The TypedDict says what code should pass; Config coerces what it got.
        self.config = config if config is not None else Config(**cast(dict[str, Any], options))
        self._transport_override = transport
        self._backoff = backoff
        self._builder = LineBuilder(self.config)
        self._filtered = 0

        def filtered() -> None:
            self._filtered += 1

        self._builder.on_filtered = filtered
        self._reporter = Reporter()
        if self.config.verify is False:
            # Said once, where the app looks for this library's trouble (the transport
            # keeps urllib3 from warning on each of the library's requests).
            self._reporter.report(
                "verify-off", logging.WARNING,
                "logdna_client: TLS certificate verification is off (verify=False): the "
                "ingestion key and every line can be read or changed by anyone between "
                "this host and %s",
                urlsplit(self.config.url).hostname,
            )  # fmt: skip
        # Through self, so a fork's fresh Reporter is used.
        self._builder.report = self._report
        self._closed = False
        # Closed first by the process's ending (its exit hook, a SIGTERM), not by the
        # application: a child forked meanwhile is no ending, and opens it again.
        self._closed_by_ending = False
        self._exit_done = False
        self._late_said = False  # a line logged after the exit's close was reported
        self._late_held = False  # the exit's report, about to be said, counts late lines
        # Taken by the first of the ending's waiters (a signal's thread, atexit) to say
        # what the exit lost: the others wait on the same sender, and would say it again.
        self._exit_said = threading.Lock()
        self._exit_told = Latch()  # ... and it has said it (the others may end the process)
        self._exit_teller: int | None = None
        # Lines dropped by reason when the close began: an exit reports what it dropped.
        self._dropped_at_close: dict[str, int] = {}
        # Lines refused as after_close when the process's ending began (its first close of
        # this client once the exit's deadline was set): the exit says those refused since.
        self._after_close_at_ending: int | None = None
        # Re-entrant: a finalizer that an allocation under it runs may log.
        self._start_lock = threading.RLock()
        # aflush()/aclose() waits, by event loop and sender (_Watch), and aclose()'s spill.
        # Weak: a loop closed while tasks waited (and they) must not live as long as we do.
        self._watches: _Watches = weakref.WeakValueDictionary()
        self._spiller: threading.Thread | None = None
        self._new_pipeline()
        _exit.register(self)
        _capture.follow(self)  # a capture that began or ended as it registered
        if self.config.handle_signals:
            # Here too, not only when the first line starts the sender: apps often
            # configure logging on the main thread and log from worker threads only.
            _exit.install_signal_handlers()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close: deliver what is queued within ``shutdown_timeout``, then stop."""
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """``aclose``: deliver what is queued within ``shutdown_timeout``, the event
        loop running meanwhile, then stop."""
        await self.aclose()

    def __repr__(self) -> str:
        c = getattr(self, "config", None)
        if c is None:  # half-built: Config refused an option (a traceback may show us)
            return f"<{type(self).__name__} (not configured)>"
        return (
            f"<{type(self).__name__} url={c.url!r} hostname={c.hostname!r} app={c.app!r} "
            f"env={c.env!r} closed={getattr(self, '_closed', False)}>"
        )

    # -- pipeline lifecycle

    def _new_pipeline(self) -> None:
        config = self.config
        self._buffer = Buffer(
            config.max_buffer_bytes,
            config.overflow,
            config.block_timeout,
            wake_bytes=config.max_batch_bytes,
            wake=self._wake,
            lock_free=False,
        )
        transport = self._transport_override or HTTPTransport(config)
        self._sender = Sender(
            config, self._buffer, transport, self._reporter, self._summary_line, self._backoff
        )
        self._sender.on_shutdown_loss = self._shutdown_loss
        self._sender.on_spool_left = _exit.say_at_ending
        self._sender.on_start = _exit.hook_celery_pool_exit
        self._started = False
        self._starting = False
        # Marked started by a start that a signal handler's exception cut short before
        # it could tell whether the thread was launched: the next _start looks.
        self._launch_unknown = False
        self._start_retry_at = float("-inf")  # no thread could be started: not before this
        # Closing, and no sender thread could be started: the one who waits delivers.
        self._deliver_here = False
        self._delivered_here = False  # (and has begun)
        #: Queue one serialized line; False when it was dropped (and counted). The
        #: hot path for handlers: after the first line it is the buffer's own put,
        #: saving a call per line.
        self.put: Callable[[bytes], bool] = self._first_put
        #: The same for an entry (a comma, then the line) built by the fast path.
        self.put_entry: Callable[[bytes], bool] = self._first_put_entry
        #: Thread ident of the sender: records made on it are never shipped.
        self.sender_ident: int | None = None
        if _capture.active():
            self._divert(True)

    def _divert(self, on: bool) -> None:
        """Lines go to ``testing.capture_lines`` instead of the service, or back (see
        ``_capture.py``). The buffer does the diverting; the client only keeps its
        first line from starting a sender that would have nothing to send."""
        buffer = self._buffer
        buffer.divert(_capture.deliver if on else None)
        if on or self._started:
            self.put_entry, self.put = buffer.put_entry, buffer.put
        else:
            self.put_entry, self.put = self._first_put_entry, self._first_put

    def _report(self, kind: str, level: int, message: str, *args: object,
                exc_info: bool = False) -> bool:  # fmt: skip
        return self._reporter.report(kind, level, message, *args, exc_info=exc_info)

    def _count_drop(self, reason: DropReason) -> None:
        """Count a line that was accepted by a logging call but could not be queued."""
        self._buffer.count_drop(reason)

    def _wake(self) -> None:
        # Called when a batch's worth is queued: also the cheap moment to notice a
        # dead sender, rather than checking the thread on every line.
        sender = self._sender
        sender.wake.set()
        if self._started and not sender.alive and not self._closed and not self._starting:
            self._restart_dead_sender()

    def _start(self, *, retry_now: bool = False, restart: bool = False) -> bool:
        """Start the sender; False when no thread could be started (the process may
        start no more: RLIMIT_NPROC, memory). That is reported, the lines stay queued
        (bounded as ever), and a later line, flush() or close() tries again: a line
        not before ``_START_RETRY`` has passed, the others (``retry_now``) at once.
        ``restart``: the client is marked started, but its sender thread died (or, not
        known to have been launched, never ran: then it is started if it was not)."""
        claimed = False  # whether this call set _starting (and so must reset it)
        try:
            # Inside the try: a KeyboardInterrupt as the lock is let go must not leave
            # _starting set for good (no sender would ever start).
            with self._start_lock:
                if self._starting:
                    return True
                if self._started and (self._launch_unknown or not restart):
                    if not self._launch_unknown or self._sender.launched:
                        self._launch_unknown = False
                        return True
                    self._started = self._launch_unknown = False
                if self._sender.alive:  # (restarted meanwhile) one sender per buffer, ever
                    self._started = True
                    return True
                if not retry_now and time.monotonic() < self._start_retry_at:
                    return False
                self._starting = claimed = True
            # Not under the lock: Thread.start() waits for the new thread, which may run
            # a finalizer that logs (and so comes here) before it signals that it runs.
            # Lines queued meanwhile take the buffer's locked path and wait for it.
            self._sender.start()
            self._started = True
        except BaseException as exc:
            if not claimed:
                raise
            # Thread.start() launches the thread, then waits for it to run: a signal
            # handler's exception (Ctrl-C's KeyboardInterrupt; with the signals blocked
            # around the start, raised as they are let through again) can come out of
            # it with the sender already running. It is this client's sender then;
            # starting another on the next line would put two on one buffer. So it is
            # marked started before anything is called here (where a second Ctrl-C's
            # handler could run and leave a running sender unmarked), then unmarked if
            # it did not launch; or, interrupted before it knows, the next _start looks.
            self._started = self._launch_unknown = True
            launched = self._sender.launched
            self._launch_unknown = False
            if not launched:
                self._started = False
                if isinstance(exc, RuntimeError):  # "can't start new thread"
                    self._start_retry_at = time.monotonic() + _START_RETRY
                    if self._buffer._sink is None:  # a later line tries again
                        self.put_entry, self.put = self._first_put_entry, self._first_put
                    self._reporter.report(
                        "sender-start", logging.ERROR,
                        "logdna_client: the sender thread could not be started (%s); lines "
                        "are kept in memory and starting it is tried again", exc,
                    )  # fmt: skip
                    return False
            else:
                self._buffer.allow_lock_free()
            raise
        else:
            self.sender_ident = self._sender.ident
        finally:
            if claimed:
                self._starting = False
        self._buffer.allow_lock_free()
        if self.config.handle_signals:
            _exit.install_signal_handlers()
        return True

    def _after_fork(self) -> None:
        """In a forked child: forget the parent's lines, threads, locks and connection."""
        spool = self._sender.spool
        if spool is not None:  # the parent's files: the child opens a spool of its own
            spool.forget_after_fork()
        self._start_lock = threading.RLock()
        self._reporter = Reporter()
        self._exit_done = self._late_said = self._late_held = False
        self._deliver_here = self._delivered_here = False
        self._exit_said = threading.Lock()
        self._exit_told = Latch()
        self._exit_teller = None
        self._dropped_at_close = {}  # the parent's counts: this child's buffer is new
        self._after_close_at_ending = None
        # The parent's loops' waits, and its spill thread.
        self._watches, self._spiller = weakref.WeakValueDictionary(), None
        if self._transport_override is not None and hasattr(self._transport_override, "after_fork"):
            self._transport_override.after_fork()
        self._buffer.retire()  # a handler's C handle may still hold it
        self._new_pipeline()
        if self._closed_by_ending:
            # Forked while the parent was ending (a SIGCHLD handler respawning a worker
            # during its SIGTERM delivery, a thread forking while atexit waits): this
            # process is not ending, and ships its lines (they were all dropped unsaid).
            self._closed = self._closed_by_ending = False
        elif self._closed:  # closed by the application: it stays closed
            self._buffer.close()

    # -- logging

    def _first_put_entry(self, entry: bytes) -> bool:
        """``put_entry`` until the sender runs: start it, then go straight to the buffer."""
        if self._closed or not self._start():  # closed before any line: count it
            return self._buffer.put_entry(entry)  # or no thread now: keep it for one later
        if self._closed and self._sender._deadline is None:
            # A close landed between the look above and the start, and found no sender to
            # stop: this one, started after it, must end too (it waited for good).
            timeout = self.config.shutdown_timeout
            self._sender.begin_close(time.monotonic() + timeout, timeout)
        # Not when another thread is starting it (_start says True then): that start may
        # still fail, and its reset of put_entry to this would be undone here for good.
        if self._started:
            self.put_entry = self._buffer.put_entry
            self.put = self._buffer.put
        return self._buffer.put_entry(entry)

    def _first_put(self, data: bytes) -> bool:
        """``put`` until the sender runs (see ``_first_put_entry``)."""
        return self._first_put_entry(SEPARATOR + data)

    def _restart_dead_sender(self) -> None:
        with self._start_lock:
            if self._sender.alive or self._closed or self._starting:
                return
            self._reporter.report(
                "sender-dead", logging.ERROR, "logdna_client: sender thread died; restarting it"
            )
        # Still marked started meanwhile: a Ctrl-C here leaves it for the next batch's
        # wake to restart, not for a flush() or close() to find.
        self._start(restart=True)

    def log(
        self,
        text: object,
        level: str | int = "INFO",
        app: str | None = None,
        env: str | None = None,
        meta: Mapping[str, Any] | None = None,
        timestamp: float | int | _dt.datetime | str | None = None,
    ) -> bool:
        """Queue one line; never raises. True when queued, False when dropped or filtered.

        ``level``: a logging level number, or a name in any case (``"warn"`` ships as
        WARNING, as the structlog processor names it; see ``_event.level_name``).
        ``timestamp``: a datetime, epoch seconds or milliseconds, or ISO-8601 text, read
        as the structlog processor reads one (``timestamp_of``); now when it is None or
        not a time (NaN, negative, past the year 5000).
        """
        try:
            name = level_name(level)
            number = level if isinstance(level, int) and not isinstance(level, bool) else None
            if (levelno_of(name) if number is None else number) < self.config.level:
                return False
            data = self._builder.encode(
                text if isinstance(text, str) else safe_str(text),
                name,
                _millis_or_now(timestamp),
                dict(meta) if meta else None,
                app,
                env,
            )
            if data is None:
                return False
            return self.put(data)
        except Exception as exc:
            if raised_by_signal_handler(exc):  # the application's (an alarm()'s timeout)
                raise
            self._count_drop("error")
            self._reporter.report(
                "log-failed", logging.WARNING, "logdna_client: a line could not be built",
                exc_info=True,
            )  # fmt: skip
            return False

    def _summary_line(self, counts: dict[str, int]) -> bytes | None:
        total = sum(counts.values())
        reasons = ", ".join(
            f"{n} {reason.replace('_', ' ')}" for reason, n in sorted(counts.items())
        )
        return self._builder.encode(
            f"logdna_client: {total} lines dropped ({reasons})",
            "WARNING",
            now_millis(),
            {"logdna_client_dropped": counts},
            count_filtered=False,  # ours, not one of the app's lines
        )

    # -- flushing and closing

    def flush(self, timeout: float | None = 5.0) -> bool:
        """Wait until every line accepted so far has left the buffer (and the spool),
        delivered or dropped, or ``timeout`` passed.

        Returns True when all of them left and none was dropped or refused meanwhile
        (lines dropped before the call, by a full buffer say, are in ``stats()``).
        Where waiting could not end well it only wakes the sender and returns False:
        under ``logging``'s module lock (dictConfig), on
        a sender thread, and in a signal handler or finalizer that interrupted this
        thread inside the client. Once the client is closing, it waits no longer
        than the close's deadline.
        """
        wait = self._begin_flush(timeout)
        if isinstance(wait, bool):
            return wait
        target, lost_before, timeout = wait
        return self._sender.wait_done_through(target, timeout) and self._lost() == lost_before

    def _begin_flush(self, timeout: float | None) -> bool | tuple[int, int, float | None]:
        """What ``flush`` and ``aflush`` do before they wait: their answer when there is
        nothing to wait for, else what to wait for (the sender done through ``target``),
        the lines lost so far, and how long (clipped to a close's deadline)."""
        timeout = _checked_timeout(timeout)
        target = self._buffer.accepted
        if self._sender.done(target):
            return True
        lost_before = self._lost()
        if not self._start(retry_now=True):
            return False  # no sender to wait for
        self._wake()
        if not self._can_wait():
            return False
        deadline = self._sender._deadline
        if deadline is not None:
            left = deadline - time.monotonic() + _CLOSE_GRACE
            timeout = left if timeout is None else min(timeout, left)
        return target, lost_before, timeout

    def close(self, timeout: float | None = None) -> None:
        """Flush what is queued within ``timeout`` (default ``shutdown_timeout``), then stop.

        Lines logged afterwards are dropped and counted as ``after_close``.
        Called while the process is ending (within a moment of the exit
        deadline that atexit, a termination signal or ``logging.shutdown()``
        set), it keeps to that deadline rather than starting a new one. Where
        waiting could not end well (see ``flush``), for example under logging's
        module lock while dictConfig replaces handlers, it does not wait: the
        sender drains in the background on its own deadline.
        """
        timeout = self._close_timeout(timeout)
        self._close_by(_exit.exit_deadline(timeout, begins_exit=False), timeout, ending=False)

    def _close_timeout(self, timeout: float | None) -> float:
        """``close``'s and ``aclose``'s ``timeout``: ``shutdown_timeout`` when None, never
        below 0."""
        checked = _checked_timeout(timeout)
        return max(0.0, self.config.shutdown_timeout if checked is None else checked)

    def _close_by(
        self,
        deadline: float,
        timeout: float,
        *,
        ending: bool = True,
        forward: Callable[[bytes], bool] | None = None,
    ) -> None:
        """``close`` with a deadline given, as the process-end paths give it (``ending``:
        a close of the process's ending, ``logging.shutdown()`` closing a handler;
        ``forward``: see ``Buffer.close``)."""
        self._begin_close(deadline, timeout, ending=ending, forward=forward)
        if self._can_wait():
            self._wait_closed(at_exit=False, ending=ending)
        elif self._deliver_here:
            self._give_up_delivering_here()

    def _can_wait(self) -> bool:
        """Whether this thread may wait for the sender: not if the sender's next step
        could need a lock this thread holds (or this thread is a sender)."""
        return not (
            self._buffer.owned()
            or _exit.owns(self._sender._progress)  # interrupted inside flush()'s wait
            or self._sender.spilling_here()  # interrupted inside a close's spill
            or on_sender_thread()
            or _exit.under_logging_lock()
        )

    def _begin_close(
        self,
        deadline: float,
        timeout: float,
        *,
        ending: bool = True,
        forward: Callable[[bytes], bool] | None = None,
    ) -> None:
        """Stop taking lines and let the sender drain until ``deadline``; never waits,
        so a signal handler or finalizer may call it. Not ``ending`` (the application's
        ``close()``), a line logged later is counted, not said to come after the exit."""
        if not self._closed:
            self._dropped_at_close = self._dropped()
            self._closed_by_ending = ending and _exit.ending_under_way()
        if ending and self._after_close_at_ending is None and _exit.ending_under_way():
            # From here a line logged (a thread still running) is refused as after_close:
            # the exit's report says how many (_report_exit_drops), or none would.
            self._after_close_at_ending = self._buffer.dropped["after_close"]
        self._closed = True
        self._buffer.close(forward)
        if self._started and not self._sender.alive and len(self._buffer):
            # The sender died (a bug of ours) with lines left: a new one delivers them,
            # as a line that finds it dead starts one (_restart_dead_sender).
            self._reporter.report(
                "sender-dead", logging.ERROR, "logdna_client: sender thread died; restarting it"
            )
            self._started = False
        # Not where a waiter does the sender's work already (a cancelled aclose()'s thread
        # goes on with it): a second run of it on the same buffer was a second sender.
        if not self._started and not self._delivered_here:
            if len(self._buffer) == 0:
                if ending:
                    self._exit_finished()
                return
            if not self._start(retry_now=True):
                # No thread to be had (Python 3.12 starts none while the interpreter exits,
                # which is when an atexit handler's first lines come): _wait_closed does the
                # sender's work on its own thread instead, by the same deadline.
                self._deliver_here = True
        self._sender.begin_close(deadline, timeout)

    def _give_up_delivering_here(self) -> None:
        """No thread ran the sender and none may wait here: the lines are lost, said."""
        self._deliver_here = False
        lost = self._buffer.discard_all("shutdown")
        if lost:
            _exit.report_exit_loss(
                f"logdna_client: {lost} lines could not be delivered: the sender "
                f"thread could not be started"
            )
        self._exit_finished()

    def _exit_finished(self, late: str = _LOGGED_AFTER_EXIT) -> None:
        """The process's ending is done with this client: from now on a line logged
        (an atexit handler that runs after ours: one registered before the first
        client was built) is counted as ``after_close`` and, the first time, said
        (``late``: why it cannot go)."""
        self._exit_done = True
        self._late_why = late
        if self._buffer._sink is None:  # not while testing.capture_lines() diverts
            self.put_entry = self._put_after_exit
            self.put = lambda data: self._put_after_exit(SEPARATOR + data)

    def _before_exec(self) -> None:
        """In a forked child that runs another program next (a ``subprocess.Popen``
        ``preexec_fn``'s: see ``_exit``): no sender may start here, and none could send
        before the exec; a line logged is refused at once, and the first one said."""
        self._buffer.close()
        self._exit_finished(_LOGGED_BEFORE_EXEC)

    def _put_after_exit(self, entry: bytes) -> bool:
        queued = self._buffer.refuse_late(entry)  # refused and counted: the buffer is closed
        if not queued and not self._late_said and not self._late_held:
            self._late_said = True
            _exit.report_exit_loss(self._late_why)
        return queued

    def _deadline_text(self) -> str:
        if self._sender.interrupted or _exit.was_cut_short():
            return f"cut short by {_exit.was_cut_short() or 'Ctrl-C'}"
        timeout = self._sender.close_timeout
        return f"{self.config.shutdown_timeout if timeout is None else timeout:g} s"

    def _shutdown_loss(self, lost: int) -> None:
        why = ""
        folder = self.config.spool_dir
        spool = self._sender.spool
        if self._sender.stopped_writing:  # (the process ends: Sender.stop_writing)
            why = f": the process ended before they were written to the spool at {folder}"
        elif spool is not None and not spool.enabled:
            # Else only the logger said it (at the spool's failure), which at exit often
            # shows nothing: the report read as if the spool had lost them.
            why = f": the spool at {folder} is off ({spool.off_because or 'failed'})"
        elif spool is not None:
            why = f": the spool at {folder} had no room for them (max_spool_bytes)"
        _exit.report_exit_loss(
            f"logdna_client: {lost} lines could not be delivered before the shutdown "
            f"deadline ({self._deadline_text()}) and were dropped{why}{self._last_failure()}"
        )

    def _last_failure(self) -> str:
        """Why the exit's lines were likely lost: the last failed attempt, in words."""
        return said_of_failure(self._sender.stats.last_error, time.time())

    def _wait_closed(self, *, at_exit: bool, ending: bool = False) -> None:
        """Wait for the sender to finish (by the close's deadline; ``ending`` or
        ``at_exit``: a close of the process's ending, see ``_close_wait``)."""
        sender = self._sender
        if self._deliver_here:  # no sender thread could start: its work is done here
            self._deliver_here = False
            self._delivered_here = True  # another waiter waits for it as for a thread
            sender.run_here()
        launched = self._launched()
        wait = self._close_wait(ending=ending or at_exit)
        if wait is not None:
            _, until = wait
            # With a spool, memory goes to disk now, not after a request that hangs.
            sender.spill_while_closing(until)
            current = threading.get_ident()
            self._buffer.waiting.add(current)
            try:
                sender.finished.wait_noticing_signals(until)
            finally:
                self._buffer.waiting.discard(current)
        stop_by = self._stop_writing(sender) if at_exit and wait is not None else time.monotonic()
        if at_exit:
            # A line refused from here until the report is said is counted in it (lines
            # logged while the process was ending): said there, not before it, as late.
            self._late_held = True
            self._exit_finished()
            if not self._exit_said.acquire(blocking=False):  # (never waits: signal-safe)
                # Another of the ending's waiters says it: let it, before this one may end
                # the process. Not where it is this thread, interrupted by a signal handler.
                if self._exit_teller != threading.get_ident():
                    self._exit_told.wait(_TELL_GRACE)
                self._late_held = False
                return
            self._exit_teller = threading.get_ident()
            try:
                self._report_exit_loss(launched, stop_by)
            finally:
                self._late_held = False
                self._exit_told.set()

    def _stop_writing(self, sender: Sender) -> float:
        """At the process's end, past the wait: a sender still at work with a spool (writing
        memory to it, or waiting on the service with more to write after) stops at the
        batch it is at, and counts and says the rest itself (``_shutdown_loss``); where it
        has not within the grace, the exit counts (``Sender.count_for_exit``), by the same
        grace. What the exit says it lost and what the next process adopts add up to what
        was logged. Returns when the grace ends."""
        stop_by = time.monotonic()
        if self.config.spool_dir is None or sender.finished.is_set():
            return stop_by
        sender.stop_writing()
        stop_by += _STOP_GRACE
        sender.finished.wait_noticing_signals(lambda: stop_by)
        return stop_by

    def _close_wait(self, *, ending: bool) -> tuple[Sender, Callable[[], float]] | None:
        """The sender a close waits for and until when, or None where none runs or it is
        not closing: a little grace past the deadline (or now, when it passed) for the
        sender's own bookkeeping; the deadline as it is at each look (Ctrl-C may bring it
        forward). A close of the process's ending (``ending``) counts its grace from the
        exit deadline (``_exit.grace_from``): the ending waits one grace, not one per
        close. An application's close() after the ending began (``logging.shutdown()``
        called by the app) waits its own, so that ``stats()`` read after it counts what
        the sender dropped at its end."""
        sender = self._sender
        if not self._launched() or sender._deadline is None:
            return None
        now = time.monotonic()
        began = _exit.grace_from(now) if ending else now

        def until() -> float:
            return max(_deadline_of(sender), began) + _CLOSE_GRACE

        return sender, until

    def _launched(self) -> bool:
        """Whether a sender runs for this client: a thread, or the work done here by
        a waiter (``_wait_closed``); also one still starting: a signal handler
        (SIGTERM) may have found this thread inside Thread.start(), the new thread
        launched or not yet."""
        return self._started or self._delivered_here or (self._starting and self._sender.launched)

    def _report_exit_loss(self, launched: bool, stop_by: float) -> None:
        """What the exit lost, said once (``_wait_closed``): lines past the deadline and
        lines dropped while delivering. A sender still running counts with the exit (by
        ``stop_by``, the end of ``_stop_writing``'s grace), or has said it itself."""
        sender = self._sender
        stuck = sender.held_off_disk()
        if stuck and not sender.finished.is_set():
            if launched:
                # (a moment at least: the sender holds the count's lock only to let go of
                # a batch or to say its own loss)
                wait = max(stop_by - time.monotonic(), _COUNT_WAIT)
                stuck = sender.count_for_exit(wait) or 0
                if stuck:
                    _exit.report_exit_loss(
                        f"logdna_client: the log service did not answer within the shutdown "
                        f"deadline ({self._deadline_text()}); {stuck} lines were not "
                        f"delivered{self._last_failure()}"
                    )
            elif self._starting:  # interrupted before it launched the thread: none runs
                _exit.report_exit_loss(
                    f"logdna_client: {stuck} lines were not delivered: the process ended "
                    f"while the sender thread was being started"
                )
        self._report_exit_drops()

    def _report_exit_drops(self) -> None:
        """Say what the exit's delivery dropped for other reasons than the deadline
        (said above, or by ``_shutdown_loss``): the service refused lines, a bug. At
        exit no one reads ``stats()``, and the library's logger usually shows nothing."""
        before = self._dropped_at_close
        dropped = {
            reason: count - before.get(reason, 0)
            for reason, count in self._dropped().items()
            if reason not in ("shutdown", "after_close") and count > before.get(reason, 0)
        }
        if not self._closed_by_ending:
            # The application's own close() delivered these, before the exit: not the
            # exit's (H193: refused at a close 2 s before, they were said to be lost
            # "while delivering at exit"). Untold, they are said below as earlier drops.
            dropped = {}
        if dropped:
            reasons = ", ".join(f"{reason} {count}" for reason, count in dropped.items())
            _exit.report_exit_loss(
                f"logdna_client: {sum(dropped.values())} lines were dropped while delivering "
                f"at exit ({reasons}; see docs/delivery.md for the reasons)"
            )
        # Drops from before the ending that no summary line told the service of (it goes
        # only once delivery works again: an outage the process ended in). Said here, or
        # counted only in the stats() of a process that is gone.
        try:
            untold = dict(self._buffer.unreported)
        except RuntimeError:  # (changed while read: a thread still logging)
            untold = {}
        earlier = {
            reason: count - dropped.get(reason, 0)
            for reason, count in untold.items()
            if reason not in ("shutdown", "after_close") and count > dropped.get(reason, 0)
        }
        if earlier:
            reasons = ", ".join(f"{reason} {count}" for reason, count in earlier.items())
            _exit.report_exit_loss(
                f"logdna_client: {sum(earlier.values())} lines dropped before the process "
                f"ended were never reported to the service ({reasons}; its summary line "
                f"goes only once delivery works again; see docs/delivery.md for the reasons)"
            )
        began = self._after_close_at_ending
        late = 0 if began is None else self._buffer.dropped["after_close"] - began
        if late > 0:
            # Refused because the ending had closed the buffer (a thread still logging
            # while the exit delivered): counted as after_close, and said here, or by no
            # one. Those refused after this report are _LOGGED_AFTER_EXIT's.
            _exit.report_exit_loss(
                f"logdna_client: {late} lines logged while the process was ending were "
                f"dropped (after_close: logged once the exit had begun delivering; see "
                f"docs/delivery.md)"
            )

    # -- asyncio

    async def aflush(self, timeout: float | None = 5.0) -> bool:
        """``flush`` for coroutines: the event loop keeps running while it waits.

        It waits in the loop: one timer of the loop's looks at the sender's progress
        for every task waiting on this client there (at intervals from 1 ms to 50 ms),
        and wakes each task once, when its wait is over. No thread is taken from the
        loop's default executor, which the app's ``to_thread`` calls and
        ``getaddrinfo`` share (a few threads: tasks waiting there would queue those,
        and each other, past their timeouts). Cancelling the awaiting task ends the
        wait at once.
        """
        wait = self._begin_flush(timeout)
        if isinstance(wait, bool):
            return wait
        target, lost_before, timeout = wait
        sender = self._sender
        await self._watch(sender).wait(target, timeout)
        return sender.done(target) and self._lost() == lost_before

    async def aclose(self, timeout: float | None = None) -> None:
        """``close`` for coroutines: the event loop keeps running while it waits
        (see ``aflush``). Lines logged once the close began are dropped and counted
        as ``after_close``. Cancelled, it stops waiting (as ``aflush`` does); the
        sender goes on delivering until the close's deadline."""
        timeout = self._close_timeout(timeout)
        # Begun here (it never waits).
        self._begin_close(_exit.exit_deadline(timeout, begins_exit=False), timeout, ending=False)
        if not self._can_wait():
            return
        if self._deliver_here:
            # No sender thread could be started: the sender's work, blocking, is done on
            # a thread of its own instead (rare: see _begin_close).
            await _on_a_thread(lambda: self._wait_closed(at_exit=False))
            return
        wait = self._close_wait(ending=False)
        if wait is not None:
            sender, until = wait
            spiller = self._spiller
            # One at a time: an app retrying a short wait_for(aclose()) started one per call.
            if spiller is None or not spiller.is_alive():
                self._spiller = _spill_off_the_loop(sender, until)
            left = max(0.0, until() - time.monotonic())
            await self._watch(sender).wait(_Watch.CLOSED, left)

    def _watch(self, sender: Sender) -> _Watch:
        """The watch of the running loop on ``sender`` (made on first use, forgotten when
        no task waits on it)."""
        import asyncio  # noqa: PLC0415  (in a coroutine: imported already)

        loop = asyncio.get_running_loop()
        watches, key = self._watches, (loop, sender)
        watch = watches.get(key)
        if watch is None:
            watch = watches[key] = _Watch(loop, sender)

            def forget() -> None:
                if watches.get(key) is watch:  # (not a newer one of the same loop's)
                    watches.pop(key, None)

            watch.forget = forget
        return watch

    # -- introspection

    def _dropped(self) -> dict[str, int]:
        """Lines dropped, by reason (every reason, 0 when none): the buffer's, and
        those the spool gave up (full, too old)."""
        dropped = dict.fromkeys(DROP_REASONS, 0)
        dropped.update(self._buffer.dropped)
        sender = self._sender
        if sender.spool is not None:
            dropped.update(dict.fromkeys(SPOOL_DROP_REASONS, 0))
            for counts in (sender.spool.dropped, sender.spool_dropped_before):
                # Copied in one C call: the sender may count a new reason meanwhile, and
                # iterating the live Counter would then raise (here, or in a signal
                # handler that closes the client).
                for reason, count in dict(counts).items():
                    dropped[reason] = dropped.get(reason, 0) + count
        return dropped

    def _lost(self) -> int:
        """Lines lost so far: ``dropped_total``, and ``replay_rejected`` (lines the
        service refused from the spool); flush() compares it before and after."""
        return sum(self._dropped().values()) + self._sender.stats.replay_rejected

    @property
    def closed(self) -> bool:
        return self._closed

    def stats(self) -> ClientStats:
        """Counters: queued, sent, dropped (by reason), retries, bytes_sent, last_error
        and more (see ``ClientStats``)."""
        buffer = self._buffer
        dropped = self._dropped()
        spool = self._sender.spool
        out: dict[str, Any] = {
            "queued": buffer.held_lines,  # waiting or in flight
            "queued_bytes": buffer.held_bytes,
            "accepted": buffer.accepted,
            "dropped": dropped,
            "dropped_total": sum(dropped.values()),
            "filtered": self._filtered,
            "sender_alive": self._sender.alive,
        }
        out.update(self._sender.snapshot())
        if spool is not None:
            out.update(spool.stats())
        return cast(ClientStats, out)


Client.__doc__ = with_options_help(Client.__doc__)


def _deadline_of(sender: Sender) -> float:
    deadline = sender._deadline
    return float("-inf") if deadline is None else deadline


def _spill_off_the_loop(sender: Sender, until: Callable[[], float]) -> threading.Thread | None:
    """``aclose``'s ``spill_while_closing``, on a library thread: its disk writes would
    stall the event loop. Not the loop's default executor, whose threads the exit may
    already have shut (DESIGN: exit ordering). Where no thread can start, memory goes
    to disk at the sender's end, as it did before. The thread, or None where none ran."""
    if not sender.spills():
        return None
    thread = threading.Thread(
        target=sender.spill_while_closing, args=(until,), name="logdna_client-spill",
        daemon=True,
    )  # fmt: skip
    try:
        start_library_thread(thread)
    except RuntimeError:  # the interpreter is shutting down, or no thread is to be had
        return None
    return thread


async def _on_a_thread(call: Callable[[], None]) -> None:
    """Await ``call()`` run on a new thread; where none can start (what left the sender
    unstarted), run it here, the loop waiting, as ``close()`` runs it on its caller's.
    Not the loop's default executor: a thread it cannot start leaves it the work to run
    whenever one can, long after, and raises."""
    import asyncio  # noqa: PLC0415  (in a coroutine: imported already)

    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def finished() -> None:
        if not done.done():  # (cancelled: the awaiting task was)
            done.set_result(None)

    def run() -> None:
        try:
            call()
        finally:
            try:
                loop.call_soon_threadsafe(finished)
            except RuntimeError:  # the loop closed meanwhile: nobody awaits it
                pass

    thread = threading.Thread(target=run, name="logdna_client-aclose", daemon=True)
    try:
        # It does the sender's work: started as the library's threads are (signals left
        # to the main thread).
        start_library_thread(thread)
    except RuntimeError:
        call()
        return
    await done


class _Watch:
    """The tasks of one event loop awaiting ``aflush``/``aclose`` on one sender: one timer
    looks at the sender's progress for all of them, at intervals that double from
    ``_POLL_FIRST`` to ``_POLL_MAX`` (back to the first when a task begins to wait: a wait
    that ends soon ends soon after), and wakes each task once, when its wait is over.
    Each task polling for itself woke every waiting task 20 times a second: with 1000
    waiting 3 s, 0.65 s of CPU; with 5000, 2.4 s and the loop stalled 120 ms.

    A wait is for ``sender.done(target)``, ``CLOSED`` for the sender's end; either ends
    when the sender finished. ``done`` is monotonic in the target, so the waits are kept
    in order of target and a look stops at the first not over: it costs the waits it
    ends, plus one. Only the loop's thread touches it."""

    CLOSED = sys.maxsize  # a target no sender reaches: the wait is for its end

    def __init__(self, loop: asyncio.AbstractEventLoop, sender: Sender) -> None:
        self._loop = loop
        self._sender = sender
        #: Called when no task waits any more: the client forgets this watch.
        self.forget: Callable[[], None] = lambda: None
        # (target, sequence, future), in order; the sequence keeps equal targets apart.
        self._waits: list[tuple[int, int, asyncio.Future[None]]] = []
        self._made = 0
        self._timer: asyncio.TimerHandle | None = None
        self._interval = _POLL_FIRST

    def _over(self, target: int) -> bool:
        sender = self._sender
        return sender.finished.is_set() or (target != self.CLOSED and sender.done(target))

    async def wait(self, target: int, timeout: float | None) -> None:
        """Until ``target`` is done (or the sender finished), or ``timeout`` passed."""
        if self._over(target):
            return
        loop = self._loop
        future: asyncio.Future[None] = loop.create_future()
        self._made += 1
        entry = (target, self._made, future)
        bisect.insort(self._waits, entry)
        expiry: list[asyncio.TimerHandle] = []  # the timeout's timer, as it is now
        if timeout is not None:
            ends = time.monotonic() + max(0.0, timeout)

            def expire() -> None:
                # In seconds, as the sender works: a loop whose clock runs fast (a test's)
                # ends the loop's own timer early.
                left = ends - time.monotonic()
                if left > 0:
                    expiry[0] = loop.call_later(left, expire)
                else:
                    _wake(future)

            expiry.append(loop.call_later(max(0.0, timeout), expire))
        self._look_soon()
        try:
            await future
        finally:  # done, timed out or cancelled: forgotten at once
            if expiry:
                expiry[0].cancel()
            self._remove(entry)

    def _remove(self, entry: tuple[int, int, asyncio.Future[None]]) -> None:
        waits = self._waits
        i = bisect.bisect_left(waits, entry[:2])
        if i < len(waits) and waits[i] is entry:
            del waits[i]
        if not waits:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self.forget()

    def _look_soon(self) -> None:
        timer, loop = self._timer, self._loop
        if timer is not None and timer.when() <= loop.time() + _POLL_FIRST:
            return
        if timer is not None:
            timer.cancel()
        self._interval = _POLL_FIRST
        self._timer = loop.call_later(_POLL_FIRST, self._look)

    def _look(self) -> None:
        self._timer = None
        waits = self._waits
        ended = 0
        while ended < len(waits) and self._over(waits[ended][0]):
            _wake(waits[ended][2])
            ended += 1
        del waits[:ended]  # (their tasks' _remove finds them gone)
        if waits:
            self._interval = min(self._interval * 2, _POLL_MAX)
            self._timer = self._loop.call_later(self._interval, self._look)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():  # (cancelled: the awaiting task was)
        future.set_result(None)


def _millis_or_now(timestamp: object) -> int:
    found = timestamp_of(timestamp) if timestamp is not None else None
    return found if found is not None else now_millis()
