"""Which threads the library must not ship from, or not re-enter on.

One home for the thread sets the handler, the structlog processor, the
buffer and the C extension consult. Plain sets of thread idents: adding,
discarding and testing membership are single operations under the GIL.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import signal
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from os import getpid
from typing import Any

__all__ = [
    "BUSY_THREADS",
    "COLLECTING",
    "LIBRARY_THREADS",
    "NESTED_THREADS",
    "SENDER_THREADS",
    "SENDER_WORK_LOGGERS",
    "Latch",
    "Wakeup",
    "finalizing",
    "gc_hook",
    "library_threads",
    "made_on_sender",
    "marks_for",
    "on_sender_thread",
    "raised_by_signal_handler",
    "reset_after_fork",
    "sender_ended",
    "sender_started",
    "start_library_thread",
]

#: Idents of every live sender thread in this process. The records made on them
#: (urllib3's and requests' own logging, an HTTP instrumentation's, our reports) are
#: never shipped by any handler, so one client's sending cannot feed another client's
#: buffer; but for those of finalizers (``COLLECTING``).
SENDER_THREADS: set[int] = set()

#: Sender threads inside a garbage collection now. A collection runs on whichever thread
#: allocates when it is due, a sender's too, and the finalizers it runs log the
#: application's lines (a ``__del__``'s, asyncio's "Task exception was never retrieved"
#: at ERROR): those ship (H198: a third of such lines were lost, counted nowhere).
#: Judged by the collection, not by the logger: an HTTP client's instrumentation logs
#: under names of its own on every request the sender makes (H201: shipped, each line
#: made the next request, for as long as the process ran).
COLLECTING: set[int] = set()

#: The loggers of the sender's HTTP stack: never shipped from a sender thread, a
#: collection's there included (a connection a collection closes may log).
SENDER_WORK_LOGGERS = frozenset(
    {"urllib3", "requests", "charset_normalizer", "chardet", "socks", "http"}  # http.cookiejar
)


#: Each sender thread's last collections, (start, end) in ``time.time()``, the clock of a
#: record's ``created``: a record made in one and handled later (a QueueListener's thread,
#: a MemoryHandler's flush) is a finalizer's too (H204: dropped, counted nowhere). One
#: whose clock did not move (frozen, as freezegun freezes it) is not kept: every record
#: made on the sender at that time would seem made in it (H208: an instrumentation's line
#: per request shipped, and made the next request).
_COLLECTIONS: dict[int, deque[tuple[float, float]]] = {}
_STARTED: dict[int, float] = {}


def _collection(
    phase: str,
    info: dict[str, int],
    senders: set[int] = SENDER_THREADS,
    ident_of: Callable[[], int] = threading.get_ident,
) -> None:
    """``gc.callbacks``' hook: marks a sender thread while a collection runs on it. (It
    runs twice per collection, on every thread: two lookups, bound as defaults.)"""
    ident = ident_of()
    if ident in senders:
        if phase == "start":
            _STARTED[ident] = time.time()
            COLLECTING.add(ident)
        else:
            COLLECTING.discard(ident)
            start, end = _STARTED.pop(ident, 0.0), time.time()
            if end > start:
                last = _COLLECTIONS.get(ident)
                if last is None:
                    last = _COLLECTIONS[ident] = deque(maxlen=64)
                last.append((start, end))


_hook: Any = None
_hook_made = threading.Lock()


def gc_hook() -> Callable[[str, dict[str, int]], None]:
    """What ``gc.callbacks`` holds while a sender runs: ``_collection``, run on sender
    threads only. With the C extension a C function tells the threads apart, so no
    Python code runs in a collection on any other thread: on the main thread, a signal
    that came during the collection has its handler run at a Python function's start,
    inside the collection, which swallows what the handler raises (Ctrl-C's
    KeyboardInterrupt was lost while any sender ran). Without it (not CPython, no
    compiler, no GIL), ``_collection`` itself, and that window stays (docs/delivery.md)."""
    global _hook
    if _hook is None:
        with _hook_made:  # (once: two threads asking first must not make two)
            if _hook is None:
                from ._native import speedups  # noqa: PLC0415  (_native imports this module)

                _hook = (
                    _collection
                    if speedups is None
                    else functools.partial(speedups.on_senders, SENDER_THREADS, _collection)
                )
    return _hook  # type: ignore[no-any-return]


def _made_in_collection(thread: int, created: object) -> bool:
    """Whether a record of sender ``thread`` made at ``created`` was made in one of its
    collections (the one running, or one of its last 64)."""
    if not isinstance(created, int | float) or isinstance(created, bool):
        return False
    # After its start, strictly: under a clock that does not move, a record made before
    # the collection has its start's time too (H209: a listener shipped an APM line so).
    if thread in COLLECTING and created > _STARTED.get(thread, float("inf")):
        return True
    return any(start < created <= end for start, end in list(_COLLECTIONS.get(thread, ())))


# Reentrant: a collection may run while it is held (an allocation under it), and a
# finalizer's line then come back here on the same thread.
_senders_lock = threading.RLock()


def sender_started(ident: int) -> None:
    """A sender thread begins: its records are known from now on, and the collection
    hook runs while any sender does (each collection on every thread pays for it, about
    a microsecond: H205, not in a process whose handlers never sent)."""
    hook = gc_hook()  # (before the lock: the first call imports)
    with _senders_lock:
        SENDER_THREADS.add(ident)
        if hook not in gc.callbacks:
            gc.callbacks.append(hook)
    if not logging.logThreads:
        _mark_sender_records()


def sender_ended(ident: int) -> None:
    """A sender thread ends (its ident may be a new thread's next)."""
    with _senders_lock:
        SENDER_THREADS.discard(ident)
        COLLECTING.discard(ident)
        _STARTED.pop(ident, None)
        # Its collections are kept for the records still to be handled (a listener's
        # queue); those of senders gone long ago go, but for the last few.
        # (list(): taken at once, while another sender's collection may add its own.)
        for gone in [t for t in list(_COLLECTIONS) if t not in SENDER_THREADS][:-16]:
            _COLLECTIONS.pop(gone, None)
        if not SENDER_THREADS:
            with contextlib.suppress(ValueError):
                gc.callbacks.remove(gc_hook())


def reset_after_fork() -> None:
    """In a forked child: the parent's threads do not exist here, nor does a thread that
    held the senders' lock when it forked (the child would wait for it for ever)."""
    global _senders_lock, _hook_made
    _senders_lock = threading.RLock()
    _hook_made = threading.Lock()
    SENDER_THREADS.clear()
    COLLECTING.clear()
    _STARTED.clear()
    _COLLECTIONS.clear()
    BUSY_THREADS.clear()
    NESTED_THREADS.clear()
    with contextlib.suppress(ValueError):
        gc.callbacks.remove(gc_hook())  # (the child's first sender registers it again)


def _mark_sender_records() -> bool:
    """Have the records made on a sender thread say so while ``logging.logThreads`` is
    off: such a record has no thread, and handled on another (a QueueListener's) it was
    taken for that thread's, and shipped: each of urllib3's or an instrumentation's lines
    of the sender's requests made the next request (H205). Their ``thread`` is the
    sender's ident, as with threads on (no attribute of its own, which structlog's
    ExtraAdder would copy into the app's events: H208). The record factory in place is
    wrapped, once (about 0.2 to 0.6 µs a record, on every thread, for apps with thread
    logging off); one set later by the application replaces it (as it replaces any).
    True when it was in place already: a record without a thread was made elsewhere."""
    if getattr(logging.getLogRecordFactory(), "_logdna_marks", False):
        return True  # (the common case, looked at with no lock: each record without a thread)
    with _senders_lock:
        factory = logging.getLogRecordFactory()
        if getattr(factory, "_logdna_marks", False):
            return True

        def make(*args: Any, **kwargs: Any) -> Any:
            record = factory(*args, **kwargs)
            if getattr(record, "thread", 0) is None:
                current = threading.get_ident()
                if current in SENDER_THREADS:
                    record.thread = current
            return record

        make._logdna_marks = True  # type: ignore[attr-defined]
        logging.setLogRecordFactory(make)
    return False  # (records made before it may be a sender's: as they always were)


#: Idents of the threads currently inside one of our handlers or processors. A
#: record that arrives on such a thread comes from a ``__str__``, a formatter,
#: a signal handler or a finalizer that ran in the middle of shipping another.
#: Separate from SENDER_THREADS, which is about where a record was *made*: a
#: QueueListener thread handles records made on other threads.
BUSY_THREADS: set[int] = set()

#: Threads shipping such a nested record. One level of nesting is shipped (a
#: signal handler's line, a line a ``__str__`` logs); a record nested deeper is
#: a loop in the making, and is dropped and counted as ``reentrant``.
NESTED_THREADS: set[int] = set()


def made_on_sender(record: Any, running: int) -> bool:
    """Whether ``record`` (a LogRecord) was made on one of this process's sender threads
    by the sender's own work (urllib3's and requests' lines of the library's own
    requests): the handler and the processor never ship it, on whichever thread it is
    handled (a QueueListener's, say), or each request would make more to send. One a
    finalizer made there, handled as it was made, inside a garbage collection
    (``COLLECTING``) and not by the HTTP stack's loggers, is the application's: it ships.

    Handled on the sender inside a collection, a record is judged by that collection
    (no clock: under a frozen one, or a ``created`` a filter rewrote, it is still
    known; one made before it and handed over in it, from a MemoryHandler's buffer,
    ships with it). Handled anywhere else (a QueueListener's thread, the sender's work
    after the collection: a MemoryHandler flushed there), by its ``created`` against
    that sender's collections (H205: a finalizer's line was lost so, counted nowhere).

    ``running`` is the running thread's ident: a record made with
    ``logging.logThreads`` off has no thread, and was made on the thread handling it
    (one made on a sender has the sender's: ``_mark_sender_records``). A record made in
    another process (the parent's, through a queue) is not from our senders. A record
    stripped of its thread, or whose thread cannot be looked up (unhashable), is not
    either: it ships what it has. Never raises.
    """
    try:
        thread = record.thread
        if thread is None:
            if not logging.logThreads and _mark_sender_records():
                # A sender's records carry its ident: one without was made elsewhere (H209:
                # the app's lines in a MemoryHandler flushed on the sender were dropped).
                return False
            thread = running
        # A record without a process (stripped by a filter) counts as this process's.
        if thread not in SENDER_THREADS or getattr(record, "process", None) not in (
            None,
            getpid(),
        ):
            return False
        name = getattr(record, "name", None)
        if thread == running and thread in COLLECTING:
            created = getattr(record, "created", None)
            # Made in this collection (or at a time that says nothing: a frozen clock's,
            # a filter's int): the collection decides. Made before it and handed over in
            # it (a MemoryHandler's buffer): by the collections it was made in (H209).
            if type(created) is not float or created >= _STARTED.get(thread, float("-inf")):
                return not finalizing(running, name)
        return not (
            _made_in_collection(thread, getattr(record, "created", None)) and not _http_stack(name)
        )
    except Exception:
        return False


def _http_stack(name: object) -> bool:
    return isinstance(name, str) and name.partition(".")[0] in SENDER_WORK_LOGGERS


def finalizing(thread: int, name: object) -> bool:
    """Whether sender ``thread`` is running a collection's finalizers, and a record of
    logger ``name`` (None: no logger's, a structlog call's) made there is theirs."""
    return thread in COLLECTING and not _http_stack(name)


#: Every thread the library started (``start_library_thread``): the threads that must not
#: keep a process alive once the application's own have ended (``_exit._outlive``).
LIBRARY_THREADS: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


def library_threads() -> list[threading.Thread]:
    """What ``LIBRARY_THREADS`` holds now (read while other threads may add to it)."""
    while True:
        try:
            return list(LIBRARY_THREADS)
        except RuntimeError:  # changed size while it was read: read again
            continue


def marks_for(thread: int) -> set[int] | None:
    """The set ``thread`` is marked in while it builds and queues a line (the handler's
    and the processor's one rule): BUSY_THREADS; NESTED_THREADS when it is inside one
    of our handlers or processors already (that line ships: a signal handler's, one a
    ``__str__`` logs); None deeper, a loop in the making: the caller drops the line
    and counts it as ``reentrant``."""
    if thread not in BUSY_THREADS:
        return BUSY_THREADS
    return NESTED_THREADS if thread not in NESTED_THREADS else None


#: The longest a wait of the exit's blocks between two looks for a signal's handler.
SIGNAL_LOOK = 0.2

# Signals a fault raises in the thread that faulted: never blocked.
_SYNCHRONOUS = {"SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGABRT", "SIGTRAP", "SIGSYS"}


#: Every signal a library thread blocks: all but those a fault raises in the thread that
#: faulted (real-time signals come as plain ints, without a name). Worked out once:
#: it costs as much as the start's two mask changes together.
_ASYNCHRONOUS = frozenset(
    s for s in signal.valid_signals() if getattr(s, "name", "") not in _SYNCHRONOUS
)


def _pthread_sigmask() -> Callable[[int, Iterable[int]], Iterable[int]] | None:
    """The C function itself, not ``signal.py``'s wrapper, which turns the mask it
    returns into enums: a pending signal's handler (Ctrl-C's) runs at a Python
    function's start or after a call returns, so it could interrupt the wrapper as it
    was entered to put the mask back, leaving the thread blocking the signals for good
    (the main thread's handlers never run again, every process it starts inherits the
    mask). Called with no Python frame of its own, it changes the mask before any can."""
    wrapper = getattr(signal, "pthread_sigmask", None)
    raw = getattr(sys.modules.get("_signal"), "pthread_sigmask", None)
    if wrapper is None or raw is None or getattr(wrapper, "__module__", "") != "signal":
        return wrapper  # (none, or one a test put in its place)
    return raw  # type: ignore[no-any-return]


def start_library_thread(thread: threading.Thread) -> None:
    """Start ``thread``, one of the library's own, with the asynchronous signals
    (SIGTERM, SIGINT, SIGHUP, ...) blocked in it from its first instruction, for its
    whole life; raises what ``thread.start()`` raises.

    The kernel hands a signal sent to the process to any thread that does not
    block it. Python runs its handlers on the main thread only, and a main thread
    blocked in a lock or a queue is woken for them only when the signal lands on
    it; our threads leave the signals to it. (Where it still cannot run the handler,
    the signal watcher in ``_exit.py`` ends the process.) A new thread starts with
    its starting thread's mask, and threads started from it inherit its own: so the
    starting thread blocks them around ``start()``. Blocking them as the new thread's
    first call left a window, from its creation to that call, where a signal sent to
    a process whose main thread started it could land on it; every library thread is
    started here, so none blocks them itself any more.

    The starting thread's mask is put back on every path: a signal that came
    meanwhile is then its own, which for the main thread is where it belongs, and
    an exception its handler raises (KeyboardInterrupt) comes out of here, the
    thread launched or not (``Sender.launched`` tells).
    """
    LIBRARY_THREADS.add(thread)
    sigmask = _pthread_sigmask()
    if sigmask is None:  # Windows: no such thing as a thread's signal mask
        thread.start()
        return
    try:
        # Read first, changing nothing: a handler's exception raised by a block that
        # took effect would otherwise leave this thread's mask changed for good.
        previous = sigmask(signal.SIG_BLOCK, ())
    except (AttributeError, ValueError, OSError):  # an odd platform: leave the mask alone
        thread.start()
        return
    try:
        try:
            sigmask(signal.SIG_BLOCK, _ASYNCHRONOUS)
        except (AttributeError, ValueError, OSError):  # as above: start it as it is
            pass
        thread.start()
    finally:
        sigmask(signal.SIG_SETMASK, previous)


def on_sender_thread() -> bool:
    """Whether the calling thread is a sender: it must never wait for a sender."""
    return threading.get_ident() in SENDER_THREADS


class Wakeup:
    """A flag one thread waits on and any may raise, safe from signal handlers.

    ``threading.Event`` guards its flag with a plain lock in Python code: a
    signal handler (or a finalizer) that sets or waits on it while its own
    thread is inside that code deadlocks. Here the flag *is* one C lock
    (released: raised), so raising it is one atomic call that never waits.
    One waiter (the sender) consumes it.
    """

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        """Raise the flag (a no-op when it is raised already)."""
        try:
            self._lock.release()
        except RuntimeError:  # raised already
            pass

    def wait(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds for the flag; True (and lowered) when it was raised."""
        return self._lock.acquire(timeout=-1 if timeout is None else max(0.0, timeout))

    def clear(self) -> None:
        self._lock.acquire(blocking=False)

    def is_set(self) -> bool:
        return not self._lock.locked()


class Latch:
    """A one-shot event (set once, waited on by any number), safe from signal handlers.

    ``set`` marks it before releasing the lock, and ``wait`` looks at the mark
    first: a waiter nested in another waiter (a signal handler that interrupted
    one) finds it set without touching the lock the outer one holds.
    """

    __slots__ = ("_done", "_lock")

    def __init__(self) -> None:
        self._done = False
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        if not self._done:
            self._done = True
            try:
                self._lock.release()
            except RuntimeError:  # two threads set it at once
                pass

    def is_set(self) -> bool:
        return self._done

    def wait(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds; True when it was set."""
        if self._done:
            return True
        if self._lock.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            self._lock.release()  # let the other waiters through
        return self._done

    def wait_noticing_signals(self, until: Callable[[], float]) -> bool:
        """``wait`` until ``until()`` (monotonic), in steps of at most ``SIGNAL_LOOK``
        seconds, for the exit's waits; True when it was set.

        A signal that lands on the main thread just before its wait blocks, or on
        another thread, is noted, and nothing wakes the wait to run its handler: Ctrl-C
        at an exit waiting on a dead service would be acted on only at the deadline.
        Between steps it is. ``until`` is asked again at each step: a close's deadline
        may be brought forward meanwhile (Ctrl-C cuts it short).
        """
        while not self._done:
            left = until() - time.monotonic()
            if left <= 0:
                break
            self.wait(min(left, SIGNAL_LOOK))
        return self._done


def raised_by_signal_handler(exc: BaseException) -> bool:
    """Whether ``exc`` came out of one of the process's Python signal handlers, which ran
    inside the logging call (an ``alarm()`` timeout's TimeoutError, say): the
    application's exception, not a line that failed. Raised on, as a signal handler's
    KeyboardInterrupt or SystemExit is: counted as an ``error`` it would be lost to the
    application, and counted for a line it interrupted after it was queued, the line
    would be counted twice. Never raises; on the rare failure path only (it looks up
    every signal's handler)."""
    try:
        codes = set()
        for signum in signal.valid_signals():
            handler = signal.getsignal(signum)
            # A function, a bound method, a functools.partial of one, an object's __call__.
            target = getattr(handler, "func", handler)
            code = getattr(target, "__code__", None)
            if code is None and callable(target):
                code = getattr(type(target).__call__, "__code__", None)
            if code is not None:
                codes.add(code)
        tb = exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code in codes:
                return True
            tb = tb.tb_next
    except Exception:  # no signal module to speak of (a thread at teardown)
        pass
    return False
