"""How a process ends, and what the clients in it do about it.

Every way a process ends goes through here: interpreter exit (``atexit``),
``fork`` (the child forgets the parent's pipelines), a child forked from a
thread other than the main one (no atexit there: it ends when its last thread
does), ``multiprocessing`` children (which end with ``os._exit`` and skip
``atexit``), and SIGTERM and
SIGHUP while their disposition is still the default (Kubernetes, systemd,
``docker stop``, ``Pool.terminate``): those are caught, the clients deliver
within their ``shutdown_timeout``, and the process then ends by the same
signal, so supervisors and exit statuses see what they always saw.

One deadline per exit: the closes that make up one ending (the atexit hook,
``logging.shutdown()`` closing each handler, a signal) share the deadline
the first of them set, rather than each waiting its own ``shutdown_timeout``
in turn.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import select
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._report import KIND_ATTR, logger
from ._sender import spill_while_closing
from ._threads import (
    LIBRARY_THREADS,
    Latch,
    _pthread_sigmask,
    library_threads,
    reset_after_fork,
    start_library_thread,
)

if TYPE_CHECKING:
    import ctypes
    from types import FrameType

    from ._client import Client
    from ._handler import LogDNAHandler

__all__ = [
    "close_all",
    "exit_deadline",
    "hook_celery_pool_exit",
    "install_signal_handlers",
    "owns",
    "register",
    "report_exit_loss",
    "say_at_ending",
    "under_logging_lock",
]

#: The signals taken over while their disposition is the default. SIGINT is
#: not: Python's KeyboardInterrupt already unwinds to atexit, which delivers.
TERMINATION_SIGNALS: tuple[str, ...] = ("SIGTERM", "SIGHUP")

# A close that starts within this long after the current exit deadline passed
# still belongs to the same ending (logging.shutdown() closing its next handler).
_WINDOW_GRACE = 1.0

_clients: weakref.WeakSet[Client] = weakref.WeakSet()
_hooks_installed = False
_window_end = float("-inf")
_terminating = False


def register(client: Client) -> None:
    """Make the process-end hooks cover ``client``."""
    global _hooks_installed
    _clients.add(client)
    _outlive_the_application()  # (a client built in such a child: no fork hook ran)
    if not _hooks_installed:
        _hooks_installed = True
        atexit.register(_close_all_at_exit)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(
                before=_block_for_fork,
                after_in_parent=_unblock_after_fork,
                after_in_child=_reset_all_after_fork,
            )
    _register_multiprocessing_child_hook(client)


def exit_deadline(timeout: float, *, begins_exit: bool = True) -> float:
    """The monotonic deadline for a close of ``timeout`` seconds.

    A close that is part of ending the process (``begins_exit``) and comes
    first sets the exit deadline to ``timeout`` from now. Any close until a
    moment after that deadline passed gets it too (or an earlier one of its
    own): the ending's one deadline. Other closes get ``timeout`` from now.
    """
    global _window_end
    now = time.monotonic()
    if now <= _window_end + _WINDOW_GRACE:
        return min(_window_end, now + timeout)
    if not begins_exit:
        return now + timeout
    _window_end = now + timeout
    # Every client starts delivering now, not when its own close comes round
    # (logging.shutdown() closes handlers one after the other).
    for client in list(_clients):
        client._sender.wake.set()
    return _window_end


def grace_from(now: float) -> float:
    """Whence a close's wait past its deadline (``Client._close_wait``'s grace) counts,
    for a close that comes at ``now``: the exit deadline, for a close of the ending that
    comes after it passed (``logging.shutdown()`` closing each handler, the exit hook
    waiting for each client in turn), so the ending waits one grace past its deadline,
    not one per close. Each counted from its own close, four clients on a disk still
    busy with their spools ended the exit 1.7 s past a 2 s deadline."""
    if now <= _window_end + _WINDOW_GRACE:
        return min(now, _window_end)
    return now


def shutdown_deadline(timeout: float) -> float:
    """``exit_deadline`` for a handler flushed or closed under its own lock, as
    ``logging.shutdown()`` does it: at exit that begins the exit window. dictConfig
    and fileConfig call it too, to drop the handlers they replace, holding logging's
    module lock while they do: that is no exit, and must not shorten other closes."""
    return exit_deadline(timeout, begins_exit=not under_logging_lock())


def close_all(*, wait: bool, at_exit: bool = True) -> list[Client]:
    """Begin closing every live client on one exit deadline; wait for them if ``wait``."""
    clients = [c for c in list(_clients) if not c._exit_done]
    if not clients:
        return []
    end = exit_deadline(max(c.config.shutdown_timeout for c in clients))
    now = time.monotonic()
    for client in clients:
        timeout = client.config.shutdown_timeout
        client._begin_close(min(end, now + timeout), timeout)
    if wait:
        _wait_all_closed(clients, at_exit=at_exit)
    return clients


def _wait_all_closed(clients: list[Client], *, at_exit: bool = True) -> None:
    """Wait for each client's close, one after the other; but first move every one's
    memory to its spool behind the batch it has out (``spill_while_closing``). Waited
    for in turn, the second client's memory moved only once the first's wait ended (a
    request that hangs: at the deadline), and a process killed meanwhile lost it."""
    spill_while_closing([wait for c in clients if (wait := c._close_wait(ending=True)) is not None])
    for client in clients:
        client._wait_closed(at_exit=at_exit)


def _close_all_at_exit() -> None:
    _mark_in_watch(_EXIT_BEGINS)
    _deliver_or_cut_short(_deliver_at_exit)
    signum = _ending_by
    if signum is not None and threading.current_thread() is threading.main_thread():
        # A termination signal began the ending while this thread could not wait (it
        # was inside our critical section, or under logging's lock), and it went on
        # to the exit before the thread waiting in its stead ended the process. End it
        # by that signal here, once the clients are done, as that thread would have:
        # an exit status of 0 would tell the supervisor the work was done.
        _end_once_delivered(signum)


def _deliver_at_exit() -> None:
    _drain_queue_listeners()
    _flush_memory_handlers()
    close_all(wait=True)


def _deliver_or_cut_short(wait: Callable[[], object], *, reraise: bool = False) -> None:
    """``wait`` for an ending's delivery (at exit, a termination signal's, a
    multiprocessing or Celery child's end). An application's signal handler that raises
    meanwhile wants out: Ctrl-C's KeyboardInterrupt, or a ``sys.exit()`` (gunicorn's on a
    worker timeout). The deadline becomes now, and what the clients hold is spooled or
    counted and said (``_cut_short``); let through, it was left uncounted, unsaid.
    ``reraise``: the exception then goes on, where it decides how the process ends."""
    try:
        wait()
    except KeyboardInterrupt:
        _cut_short()
        if reraise:
            raise
    except SystemExit:
        _cut_short(_BY_AN_EXIT)
        if reraise:
            raise


# How many more Ctrl-Cs the exit takes while it winds up after one cut it short (each
# shortens nothing more: the deadline is already now; this only keeps it from looping).
_CUT_SHORT_TRIES = 5


#: What a SystemExit during the exit's wait cut it short by (see _close_all_at_exit).
_BY_AN_EXIT = "sys.exit() in a signal handler"


def _cut_short(by: str = "Ctrl-C") -> None:
    """Ctrl-C while the exit (or a termination signal) delivers: whoever presses it at
    a waiting exit wants out, as with a second SIGTERM. The exit's one deadline becomes
    now, for the closes that follow too (``logging.shutdown()`` closing our handlers):
    each client's sender stops at once, spools or counts what it holds as ``shutdown``,
    and the loss is said. Its traceback (out of the signal handler, or "Exception
    ignored in atexit callback") would say nothing more."""
    _cut_deadline(by)
    for _ in range(_CUT_SHORT_TRIES):
        try:
            close_all(wait=True)
            return
        except (KeyboardInterrupt, SystemExit):
            continue


#: What cut the exit's deadline short, if anything did (the loss reports say so, not the
#: deadline): "Ctrl-C", or _BY_AN_EXIT.
_cut_by: str | None = None


def was_cut_short() -> str | None:
    """What cut the exit's deadline short (``_cut_deadline``), if anything did."""
    return _cut_by


def _cut_deadline(by: str = "Ctrl-C") -> None:
    """Make the exit's one deadline now, for every client that is closing; never waits
    (the signal watcher calls it)."""
    global _window_end, _cut_by
    now = time.monotonic()
    _window_end = now
    _cut_by = by
    for client in list(_clients):
        if client._closed and not client._exit_done:
            client._begin_close(now, client.config.shutdown_timeout)


#: Whether logging.shutdown() leaves a MemoryHandler made with flushOnClose=False
#: unflushed (Python 3.12+); before, it flushed every handler.
_SHUTDOWN_HONOURS_FLUSH_ON_CLOSE = "flushOnClose" in getattr(
    getattr(logging.shutdown, "__code__", None), "co_consts", ()
)

# How long the exit waits for a MemoryHandler another thread is flushing (a daemon
# thread stopped inside its lock would otherwise hold the exit for good).
_MEMORY_FLUSH_WAIT = 1.0


def _flush_memory_handlers() -> None:
    """Flush every ``logging.handlers.MemoryHandler`` whose target is one of our handlers.

    ``logging.shutdown()`` flushes a MemoryHandler into its target at exit (unless
    ``flushOnClose=False``), but it is registered with atexit before the library's
    hook, so it runs after it: the records it hands on then would reach a closed
    client and be lost. They are handed on here, before the clients close.
    """
    handlers = sys.modules.get("logging.handlers")
    ours = _handler_type()
    if handlers is None or ours is None:  # never imported: there is none
        return

    # As logging.shutdown() goes: newest handler first; and flushOnClose=False counts
    # where it honours it (Python 3.12+), not before.
    honours = _SHUTDOWN_HONOURS_FLUSH_ON_CLOSE
    for ref in reversed(list(getattr(logging, "_handlerList", ()))):
        try:
            handler = ref()
            if not isinstance(handler, handlers.MemoryHandler):
                continue
            if honours and not getattr(handler, "flushOnClose", True):
                continue
            if not _feeds(handler, ours):
                continue
            lock = handler.lock
            if lock is not None and not lock.acquire(timeout=_MEMORY_FLUSH_WAIT):
                continue
            try:
                handler.flush()
            finally:
                if lock is not None:
                    lock.release()
        except Exception:  # as logging.shutdown() does: one handler's trouble stays its own
            pass


def _drain_queue_listeners() -> None:
    """Let every running QueueListener that dictConfig made (Python 3.12+: a
    ``QueueHandler``'s ``listener``) and that feeds one of our handlers hand on what its
    queue holds, before the clients close.

    The logging cookbook stops it from an atexit handler, which runs before ours; one
    nobody stopped is a daemon thread, and what it had not handed on yet would reach a
    closed client (or none) and be lost. This is ``QueueListener.stop()`` without
    forgetting the thread, so that a ``stop()`` the application calls later still works.
    """
    handlers = sys.modules.get("logging.handlers")
    ours = _handler_type()
    if handlers is None or ours is None:  # never imported: there is none
        return

    for ref in reversed(list(getattr(logging, "_handlerList", ()))):
        try:
            handler = ref()
            if not isinstance(handler, handlers.QueueHandler):
                continue
            listener = getattr(handler, "listener", None)
            thread = getattr(listener, "_thread", None)
            if not isinstance(thread, threading.Thread) or not thread.is_alive():
                continue
            if thread is threading.current_thread():
                continue
            targets = getattr(listener, "handlers", ())
            if not any(isinstance(target, ours) for target in targets):
                continue
            timeout = max(
                (t.client.config.shutdown_timeout for t in targets if isinstance(t, ours)),
                default=0.0,
            )
            # Within the exit's one deadline (which this begins): the clients' closes
            # that follow keep to it too.
            end = exit_deadline(timeout)
            listener.enqueue_sentinel()  # type: ignore[union-attr]
            thread.join(max(0.0, end - time.monotonic()))
        except Exception:  # one listener's trouble is no reason to leave the others
            pass


def _feeds(handler: logging.Handler, ours: type[logging.Handler]) -> bool:
    """Whether ``handler``, a MemoryHandler, hands its records on to one of ours."""
    target = getattr(handler, "target", None)
    for _ in range(8):  # MemoryHandlers chained into each other, but never round for ever
        if isinstance(target, ours):
            return True
        target = getattr(target, "target", None)
        if target is None:
            break
    return False


def _child_runs_another_program() -> bool:
    """Whether this fork is ``subprocess.Popen``'s with a ``preexec_fn`` (the only fork
    of theirs that runs Python code in the child, and so these hooks): the child runs
    that function, then execs the program, or ends with ``os._exit`` when it cannot.
    Neither atexit nor any thread survives the exec; a thread started there only adds to
    what may deadlock in such a child (the subprocess documentation warns)."""
    # The fork is a C call (``_posixsubprocess.fork_exec``): the Python frame that made
    # it is the first one past the hook's (_reset_all_after_fork, which calls this).
    try:
        frame = sys._getframe(2)
    except ValueError:  # forked from C with no Python frame below: not subprocess's
        return False
    return (
        frame.f_code.co_name == "_execute_child" and frame.f_globals.get("__name__") == "subprocess"
    )


# -- a termination signal sent while os.fork() runs
#
# CPython's child discards the signals its C-level handler caught between the fork and
# the child's signal reset (PyOS_AfterFork_Child), whose byte went to the parent's
# wakeup fd: a SIGTERM sent to a child just forked (Pool.terminate() right after
# maxtasksperchild replaced a worker) was lost while our handler was in force, where the
# default action would have ended the child, and `with Pool(...)` hung. So the forking
# thread blocks the termination signals around the fork: the child takes a pending one
# once its state is its own (the end of _reset_all_after_fork), the parent once the fork
# is done. Only those, the ones the library takes: blocking Ctrl-C's too would keep its
# handler from cutting the unblock short (below), but would undo a block of SIGINT an
# application's own fork hook makes in its workers.
class _ForkBlock(threading.local):
    """A forking thread's part in the block: how many of its forks' hooks are running
    (a signal handler run inside them may fork again: a prefork master's SIGCHLD
    handler respawning a worker), and the signals they blocked, which the outermost
    one's end unblocks. Only those: a signal the application blocks before the fork,
    or another than these two in a fork hook of its own, stays blocked. (SIGTERM or
    SIGHUP blocked by its hook that runs before ours cannot be told from our block.)"""

    depth = 0
    blocked: frozenset[int] = frozenset()


_fork_block = _ForkBlock()
# The C function, looked up once: the after-fork hook's first call (below).
_SIGMASK = _pthread_sigmask()


def _unblock(signals: list[int]) -> None:
    """Unblock ``signals`` in the calling thread; nothing where threads have no masks.
    (Not for _unblock_after_fork, which may make no call before its own.)"""
    if _SIGMASK is not None:
        with contextlib.suppress(ValueError, OSError):
            _SIGMASK(signal.SIG_UNBLOCK, signals)


def _block_for_fork() -> None:
    state = _fork_block
    # First, and no call before it: each fork's hooks end with exactly one unblock,
    # whatever a signal handler's exception cuts short below.
    state.depth += 1
    if _SIGMASK is None or not _handling_signals():
        return
    try:
        # The mask read first, changing nothing, and what will be blocked kept before
        # the block: a Ctrl-C handler's exception between the block and keeping it
        # would have left this thread blocking them for good (as in start_library_thread).
        held = set(_SIGMASK(signal.SIG_BLOCK, ()))
        adding = frozenset(_termination_signals()).difference(held)
        state.blocked = state.blocked | adding
        _SIGMASK(signal.SIG_BLOCK, adding)
    except (ValueError, OSError):
        pass


def _unblock_after_fork() -> None:
    # No call before the unblock's: a pending signal's handler (Ctrl-C's) runs at a
    # function's start or after a call returns, and its exception, which CPython
    # swallows in a fork hook, would skip the rest and leave the thread blocking them
    # for good. (A Ctrl-C landing right at this function's start still can: SIGINT
    # sent every 0.3 ms while a process forks did it once in 60 to 190 forks, against
    # once in about 10 with the calls first. A window Python code cannot close.)
    state = _fork_block
    state.depth -= 1
    if state.depth > 0:
        return  # a fork inside another's hooks: the outer one unblocks
    state.depth = 0  # (below 0: a before-hook cut short at its start)
    if not state.blocked:
        return
    try:
        _SIGMASK(signal.SIG_UNBLOCK, state.blocked)  # type: ignore[misc]
    except (ValueError, OSError):
        pass
    finally:
        state.blocked = frozenset()


def _reset_all_after_fork() -> None:
    try:
        _reset_after_fork(_child_runs_another_program())
    finally:
        # The forking thread is this child's one thread: what its forks blocked ends
        # here, the forks of a signal handler inside this one's hooks included (their
        # parent-side hooks may still run here, and find nothing left to unblock).
        _fork_block.depth = 1
        _unblock_after_fork()


def _reset_after_fork(execs: bool) -> None:
    global _terminating, _heard, _begun, _delivered, _watch_tried, _ending_by, _fork_look
    global _window_end
    _terminating = False
    _window_end = float("-inf")  # the parent's exit deadline: not this child's
    _ending_by = None
    _heard = 0
    _begun = threading.Lock()
    _delivered = Latch()
    _watch_tried = False
    _fork_look = False
    _unwatch_after_fork()
    reset_after_fork()  # the thread sets: the parent's threads do not exist here
    for client in list(_clients):
        client._after_fork()
        if execs:
            client._before_exec()
    if _handling_signals() and not execs:
        # Now, not when this child's sender starts: a Pool worker that never logs
        # gets SIGTERM all the same. (The forking thread is this child's main thread.)
        _watch_signals()
        # A multiprocessing child looks again before its target runs (_watch_again):
        # the start method may still change the wakeup fd after these hooks.
        _fork_look = True
    if not execs:
        _outlive_the_application()


# -- a process forked from a thread other than the main one
#
# Only the original main thread's return from Py_Main finalizes the interpreter and runs
# atexit. A child forked from another thread has no such thread: when its last thread
# ends (the forking thread's function returns, raises, or calls sys.exit()) the OS
# process ends with status 0, and nothing of Python's exit runs there. The library's
# threads, still running, kept such a child alive for good, with its lines undelivered.
# So in such a process a thread of ours waits for the application's threads to end
# (join: no CPU while it waits), then does what the exit hook does, and lets the
# library's threads end: the last thread's end ends the process, as without us.

# The process (pid) whose watch for its last thread was started (once per process).
_outliving: int | None = None
# How often the watch looks again while a thread Python cannot join (one started
# outside ``threading``) is all that is left of the application's, where /proc shows it.
_OUTLIVE_LOOK = 1.0
# How long it waits for a thread of the application's that is being started to run (and
# the first look again at /proc).
_STARTING_LOOK = 0.01


def _orphaned() -> bool:
    """Whether this process has no thread whose end finalizes the interpreter: forked
    from a thread other than the main one (or from such a process). After the fork,
    ``threading.main_thread()`` is the forking thread there, not a ``_MainThread``."""
    main_type = getattr(threading, "_MainThread", None)
    return isinstance(main_type, type) and not isinstance(threading.main_thread(), main_type)


def _outlive_the_application() -> None:
    """Start, once per process and only in an orphaned one, the thread that ends the
    library's part once the application's threads have all ended (``_outlive``)."""
    global _outliving
    pid = os.getpid()
    if _outliving == pid or not _orphaned():
        return
    _outliving = pid
    try:
        start_library_thread(
            threading.Thread(target=_outlive, name="logdna_client-outlive", daemon=True)
        )
    except RuntimeError:  # no thread to be had: the process stays as it was
        _outliving = None


def _outlive() -> None:
    """Wait until no thread of the application's is left (daemon threads count: each
    keeps the OS process alive without the library too), then end as the exit does."""
    ended: set[int] = set()
    pause = threading.Event()  # never set: the pause between looks at /proc
    dummy = getattr(threading, "_DummyThread", ())
    main = threading.main_thread()
    look = _STARTING_LOOK
    while True:
        me = threading.current_thread()
        others = [t for t in threading.enumerate() if t is not me and t not in LIBRARY_THREADS]
        waited = False
        for thread in others:
            if isinstance(thread, dummy):
                continue  # (no join for them: /proc tells below)
            alive = thread.is_alive()
            try:
                thread.join()
            except RuntimeError:  # still being started (another thread's start())
                pause.wait(_STARTING_LOOK)
                waited = True
                continue
            # (Not one that had ended already: threading._shutdown(), which a
            # multiprocessing child runs before its os._exit, marks the main thread
            # ended and leaves it listed.)
            waited = waited or alive
            # Past its join the OS thread may still be on its way out. (The forking
            # thread's native_id is the parent's: in the child its id is the pid.)
            ended.add(os.getpid() if thread is main else thread.native_id or 0)
        if waited:
            continue  # (one may have started another meanwhile)
        foreign = _foreign_threads(ended)
        if foreign is None:
            if any(isinstance(t, dummy) for t in others):
                return  # threads started outside threading, and no way to see them end
            break
        if not foreign:
            break
        # Soon at first: it may be a thread of ours or the application's that is being
        # started or is on its way out, which Python does not show yet or any more.
        pause.wait(look)
        look = min(look * 2, _OUTLIVE_LOOK)
    _end_orphaned()


def _foreign_threads(ended: set[int]) -> bool | None:
    """Whether an OS thread other than the library's (and those seen to end) runs in this
    process, as Linux's /proc tells it (it shows threads Python never started: a C
    library's, ``_thread``'s); None where it cannot tell."""
    try:
        tasks = {int(name) for name in os.listdir("/proc/self/task")}
    except (OSError, ValueError):
        return None
    ours = {t.native_id for t in library_threads()} | ended
    return bool(tasks - ours)


def _end_orphaned() -> None:
    """The exit hook's work (same deadline, reports and spool), then the signal watcher
    ends; the process ends when the library's last thread does (status 0, as the
    application's last thread would have ended it). A thread of ours that has not ended
    by a moment's grace (a DNS lookup, which nothing can cut) is not waited for."""
    # Every thread left is the library's, and each blocks the termination signals: this
    # one takes them now, so that SIGTERM during the wait reaches the watcher (which
    # begins the ending by it, and a second one ends the process at once), as at a
    # normal exit. (No handler of the application's can run here any more.)
    if _watch_fds is not None:
        _unblock(_termination_signals())
    _close_all_at_exit()
    _stop_watching()
    me = threading.current_thread()
    until = time.monotonic() + _ENDING_GRACE
    # (Alive only: the set also holds the parent's, one of them maybe never started here.)
    ours = [t for t in library_threads() if t is not me and t.is_alive()]
    for thread in ours:
        thread.join(max(0.0, until - time.monotonic()))
    if any(t.is_alive() for t in ours):
        _flush_stdio(bounded=False)
        os._exit(0)


# -- termination signals
#
# Python runs a signal's handler on the main thread, between two bytecodes; C code
# blocked in a system call is woken for it by EINTR. A signal that lands after the
# main thread's last look and before its call blocks (between SemLock.acquire's
# sem_trywait and sem_wait, where a Pool worker is when Pool.terminate sends
# SIGTERM; the same in any lock's acquire) is caught by Python's C-level handler,
# and nothing ever wakes the main thread to run ours: the process never ends. So
# where the signal wakeup fd is free, it is ours: that C-level handler writes each
# signal's number to it whichever thread it runs on, and a watcher thread of ours
# wakes the main thread for it (_watch). An asyncio loop's add_signal_handler takes
# the fd over (and sets none when its last handler goes): not taken back, since only the
# main thread may set it. While the loop runs its fd wakes the main thread, which waits
# in select(), not in a lock; after that the race is as it is without us (docs/delivery.md).

_terminating = False  # the handler ran on the main thread (running again: a second signal)
_heard = 0  # termination signals our handler took (Python calls it only while it is in force)
_begun = threading.Lock()  # taken by the call of our handler that begins the ending
_ending_by: int | None = None  # the signal whose ending has begun
_delivered = Latch()  # the ending's clients are done, or their deadline passed
_watch_fds: tuple[int, int] | None = None  # our pipe (read, write) while it is the wakeup fd
# What the pipe's ends are (device and inode): a program that closes every fd (a daemon
# detaching) makes those numbers another file's, which nothing of ours may touch.
_watch_ids: tuple[tuple[int, int], tuple[int, int]] | None = None
# Pipe fds go at this number or above (below the fd limit), away from the lowest free
# numbers that a program's open() gets: see _high.
_HIGH_FD = 1000
_watch_tried = False
# Whether multiprocessing's after-fork look (_watch_again) is still to come in this
# child. What the fork hook did shows in _watch_fds: set when it armed ours.
_fork_look = False
# signal(signum, SIG_DFL) for a thread other than the main one (Python refuses it there).
_default_off_main: Callable[[int], bool] | None = None

# How long a thread other than the main one waits for stdout and stderr to flush
# before the process ends: the main thread may be stuck writing with their lock held.
_FLUSH_GRACE = 1.0
# How long past the shutdown deadline the main thread waits for the watcher's side to
# end the process (its own bookkeeping and reports, that flush) before it does it.
_ENDING_GRACE = 2.0


def install_signal_handlers() -> None:
    """Take SIGTERM and SIGHUP where they still have the default disposition.

    Called when a client's sender starts; only the main thread may set handlers.
    An application's own handler (or an ignored signal) is left alone.
    """
    global _default_off_main, _waker
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in _termination_signals():
        try:
            if signal.getsignal(signum) is signal.SIG_DFL:
                signal.signal(signum, _on_termination)
        except (ValueError, OSError):  # not the main interpreter, or not allowed
            pass
    if _handling_signals():
        if _default_off_main is None:
            # Here, not when the process ends: an import or a dlopen on another thread
            # can deadlock (a fork while one was under way leaves its lock held).
            _default_off_main = _libc_set_default()
        if _waker is None:
            _waker = _Waker.from_libc()  # (the same)
        _watch_signals()


def _termination_signals() -> list[int]:
    # SIGHUP does not exist on Windows.
    return [int(getattr(signal, name)) for name in TERMINATION_SIGNALS if hasattr(signal, name)]


def _handling_signals() -> bool:
    """Whether our handler is the one for a termination signal."""
    return any(signal.getsignal(signum) is _on_termination for signum in _termination_signals())


def _watch_signals() -> None:
    """Make the signal wakeup fd a pipe of ours and start the watcher on it (main thread).

    Never an fd the application set (an event loop's): that one is put back,
    and the handler on the main thread is then the only way in, as before.
    """
    global _watch_tried, _watch_fds, _watch_ids
    if _watch_tried or os.name != "posix":
        return
    _watch_tried = True
    try:
        read_fd, write_fd = map(_high, os.pipe())
        ids = (_identity(read_fd), _identity(write_fd))
    except OSError:
        return
    try:
        os.set_blocking(write_fd, False)
        previous = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    except (ValueError, OSError):
        _close(read_fd, write_fd)
        return
    if previous != -1:
        try:
            signal.set_wakeup_fd(previous)
            _pass_on(read_fd, previous)  # a signal that came in the meantime is theirs
        except (ValueError, OSError):
            pass
        _close(read_fd, write_fd)
        return
    _watch_fds, _watch_ids = (read_fd, write_fd), ids
    try:
        start_library_thread(
            threading.Thread(
                target=_watch,
                args=(read_fd, write_fd, ids),
                name="logdna_client-signals",
                daemon=True,
            )
        )
    except RuntimeError:  # the interpreter is shutting down
        signal.set_wakeup_fd(-1)
        _watch_fds = None
        _close(read_fd, write_fd)


def _high(fd: int) -> int:
    """``fd`` moved to a number at ``_HIGH_FD`` or above where the fd limit allows: a
    daemon that closes every fd and opens its own files gets the lowest free numbers,
    and Python's C signal handler, which writes each signal's number to the wakeup fd
    whatever file it now is, wrote into the daemon's data files."""
    try:
        import fcntl  # noqa: PLC0415 - POSIX only
        import resource  # noqa: PLC0415

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        base = _HIGH_FD if soft == resource.RLIM_INFINITY else min(_HIGH_FD, soft - 64)
        if fd >= base:
            return fd
        high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, base)
    except (ImportError, OSError, ValueError):
        return fd
    _close(fd)
    return high


def _identity(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _is(fd: int, identity: tuple[int, int]) -> bool:
    """Whether ``fd`` is still the file it was (not closed, not another file's number)."""
    try:
        return _identity(fd) == identity
    except OSError:
        return False


def _stand_down(write_fd: int) -> None:
    """The watcher's pipe is gone (closed by a program that closes every fd): stop
    writing to it, and, where its write end's number is free, point that number at
    nothing, so that the C handler's bytes go nowhere rather than into a file the
    program opens there later (or raise an error on every signal)."""
    global _watch_fds, _watch_ids
    if _watch_fds is None or _watch_fds[1] != write_fd:
        return
    _watch_fds = _watch_ids = None
    try:
        os.fstat(write_fd)
    except OSError:  # free: ours to take
        _point_at_nothing(write_fd)


def _watch(
    read_fd: int,
    write_fd: int | None = None,
    ids: tuple[tuple[int, int], tuple[int, int]] | None = None,
) -> None:
    """The watcher thread: read signal numbers; wake the main thread for a termination
    signal that came while our handler was in force and that it has not taken.

    It acts on no signal itself. When it reads a signal's number, the application's
    handler may have taken that signal and put ours back since (``old =
    signal.signal(...)``, later ``signal.signal(signum, old)``; a handler that hands the
    signal on by sending it again): the number does not say which handler was in force
    when the signal came, and acting on it, or counting it, would take the application's
    signal for ours and the one sent again for a second signal. Woken, the main thread
    runs what Python still has to run there, as it would at its next bytecode: our
    handler for a signal that waits for it, nothing for one already taken; and our
    handler alone counts signals. Waits in poll() and read() all its life: it holds no
    lock a fork could leave held.
    """
    numbers = set(_termination_signals())
    # Whether the ending is under way as the bytes tell it, in the order things came: a
    # Ctrl-C before it (the one that ended the script) must not cut the exit short.
    underway = False
    # Termination signals that came while our handler was in force and that it has not
    # taken yet: signal -> (when to look again, whether the main thread was woken for
    # it, _heard when its number was read).
    waiting: dict[int, tuple[float, bool, int]] = {}
    # A Ctrl-C that came while one waited: the ending's, should our handler then take it.
    ctrl_c_waits = False
    poller = select.poll()
    poller.register(read_fd, select.POLLIN)
    while True:
        timeout = None
        if waiting:
            soonest = min(due for due, _, _ in waiting.values())
            timeout = max(0.0, soonest - time.monotonic()) * 1000  # ms
        try:
            ready = poller.poll(timeout)
            if ready and ids is not None and not _is(read_fd, ids[0]):
                # Closed (by a program that closes every fd), maybe another file's
                # number now: never read it.
                if write_fd is not None and not _is(write_fd, ids[1]):
                    _stand_down(write_fd)
                return
            data = os.read(read_fd, 64) if ready else None
        except OSError:  # closed after a fork
            return
        if data == b"":  # every write end closed
            if write_fd is not None and ids is not None and not _is(write_fd, ids[1]):
                _stand_down(write_fd)
            return
        for byte in data or b"":
            try:
                if byte in numbers:
                    # Python's C handler writes the byte whatever the handler: a signal
                    # that came while the application's was in force is theirs (it may
                    # have been taken before ours was put back: that one is too).
                    if signal.getsignal(byte) is not _on_termination:
                        pass
                    elif _main_has_ended():
                        _take_without_main(byte)
                    elif byte not in waiting:
                        waiting[byte] = (time.monotonic() + _WAKE_AFTER, False, _heard)
                elif byte >= _TAKEN:
                    waiting.pop(byte - _TAKEN, None)
                    underway = True
                    if ctrl_c_waits:
                        ctrl_c_waits = False
                        _cut_deadline()
                elif byte == _EXIT_BEGINS:
                    underway = True
                elif byte == signal.SIGINT and _ctrl_c_interrupts():
                    # Ctrl-C while the ending delivers: cut it short, as the main thread
                    # does when it gets the KeyboardInterrupt (_cut_short); from here
                    # too, since that thread may not (the signal landed on another
                    # thread, or just as its wait blocked).
                    if underway:
                        _cut_deadline()
                    elif waiting:
                        ctrl_c_waits = True
            except Exception:  # keep listening
                pass
        try:
            _look_again(waiting)
            if not waiting:
                ctrl_c_waits = False
                if _waker is not None:
                    _waker.rest()
        except Exception:  # keep listening
            pass


def _look_again(waiting: dict[int, tuple[float, bool, int]]) -> None:
    """For each termination signal in ``waiting`` whose time has come: wake the main
    thread for it, once; or, woken already, forget it."""
    now = time.monotonic()
    for signum, (due, woken, heard) in list(waiting.items()):
        if now < due:
            continue
        if heard != _heard:
            # Our handler ran since (its mark lost: the pipe full): Python ran every
            # handler it had to run then, this signal's too.
            del waiting[signum]
        elif _main_has_ended():
            # The thread woken for it ended instead of running our handler (it was a
            # forking thread's last moments): no thread will run it now.
            del waiting[signum]
            _take_without_main(signum)
        elif not woken and _wake_main():
            waiting[signum] = (now + _WAKE_HOLD, True, heard)
        else:
            # Woken, the main thread had nothing of ours left to run: the application's
            # handler had taken the signal. (Or that thread is in C code that goes on
            # waiting through signals, and runs ours when it comes out, as without us;
            # or no signal can wake it.)
            del waiting[signum]


def _main_has_ended() -> bool:
    """Whether the thread Python runs signal handlers on has ended for good: the forking
    thread of a process forked from a thread other than the main one (``_orphaned``).
    (In other processes the main thread counts as ended once the interpreter's exit
    began, while it still runs the handlers.)"""
    return _orphaned() and not threading.main_thread().is_alive()


def _take_without_main(signum: int) -> None:
    """Our handler's work for a termination signal, on the watcher: the main thread has
    ended, so Python will never run a handler again (nor can the application's change
    since: only that thread may set one), and the signal is ours. Before, such a process
    went on as if it had none: SIGTERM never ended it. Never waits: the watcher must
    read a second signal, which ends the process at once."""
    global _terminating, _heard
    _heard += 1
    if _terminating:
        _say_second_signal(signum)
        _end_by(signum)
    _terminating = True
    clients = _begin_ending(signum)
    if clients is not None:
        _wait_then_end_elsewhere(clients, signum)


def _say_second_signal(signum: int) -> None:
    """A second termination signal ends the process at once: say on stderr what memory
    held off disk then (H185: lost without a word, where Ctrl-C's cut is said). Never
    the library's logger: this may run in a signal handler, inside logging's lock."""
    try:
        held = sum(client._sender.held_off_disk() for client in list(_clients))
        name = signal.Signals(signum).name
    except Exception:  # (an odd number: no report rather than no ending)
        return
    if held:
        _say_unseen(
            f"logdna_client: a second {name} ended the process while it delivered; "
            f"{held} line(s) held in memory were not delivered"
        )


def _wake_main() -> bool:
    main = threading.main_thread().ident
    return _waker is not None and main is not None and _waker.wake(main)


# Written to the watcher's pipe by the exit hook as it begins, among the signal numbers
# the C handler writes there (no signal is numbered 0).
_EXIT_BEGINS = 0
# Written there by our handler as it takes a signal (this plus its number), after the
# number the C handler wrote: no signal is numbered that high.
_TAKEN = 128
# How long the main thread has to run our handler for a termination signal, from when
# the watcher read its number, before the watcher wakes it (a moment: the main thread
# runs it at its next bytecode unless it is blocked); and how long, once woken, before
# the watcher takes it that nothing of ours was left to run.
_WAKE_AFTER = 0.1
_WAKE_HOLD = 5.0
_waker: _Waker | None = None  # made on the main thread (install_signal_handlers)


def _mark_in_watch(byte: int) -> None:
    fds, ids = _watch_fds, _watch_ids
    if fds is not None and (ids is None or _is(fds[1], ids[1])):
        try:
            os.write(fds[1], bytes((byte,)))
        except (OSError, ValueError):  # full (the watcher is far behind), closed, or no
            pass  # byte for a number an application's call of our handler made up


def _ctrl_c_interrupts() -> bool:
    """Whether Ctrl-C raises KeyboardInterrupt here (the application has not taken it)."""
    return signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _on_termination(signum: int, frame: Any) -> None:
    """Deliver what every client holds within its deadline, then end by ``signum``.

    Python calls it only while it is the handler in force: each call is a signal that
    was ours. So here alone are signals counted, and a second one ends the process.
    """
    global _terminating, _heard
    if _watch_fds is not None and _main_has_ended():
        # Python runs handlers on the thread whose ident is the main thread's; once that
        # thread has ended, a thread started later may get its ident, and runs them. The
        # watcher takes these signals (_take_without_main): they are not taken twice.
        return
    _heard += 1
    _mark_in_watch(_TAKEN + signum)  # the watcher need not wake the main thread for it
    if _terminating:  # a second signal while we deliver: the sender means it
        _say_second_signal(signum)
        _end_by(signum)
    _terminating = True
    clients = _begin_ending(signum)
    can_wait = all(c._can_wait() for c in (list(_clients) if clients is None else clients))
    if clients is None:
        # Another call of this handler began the ending meanwhile (an application's
        # handler may call ours, from another thread too) and ends the process; this
        # thread stops here meanwhile (where it may wait), as it does when it began.
        # Never for good: this thread may hold a lock the other's side needs (starting
        # a thread takes one of threading's), so past the deadline it ends it itself.
        if can_wait:
            _end_once_delivered(signum)
        return
    if can_wait:
        _wait_then_end(clients, signum)
    else:
        # This thread was interrupted inside one of our critical sections (or
        # holds logging's lock): the senders need it to leave first.
        _wait_then_end_elsewhere(clients, signum)


def _end_once_delivered(signum: int) -> None:
    """On the main thread, where another thread waits for the ending's clients and then
    ends the process: wait for it, and end the process by ``signum`` if it has not (past
    the longest deadline, this thread may hold a lock that thread needs)."""
    longest = max((c.config.shutdown_timeout for c in list(_clients)), default=0.0)
    end = time.monotonic() + longest + _ENDING_GRACE
    try:
        _delivered.wait_noticing_signals(lambda: end)
    except KeyboardInterrupt:  # Ctrl-C meanwhile: stop waiting, once the loss is said
        _cut_short()
    _end_by(signum)


def _begin_ending(signum: int) -> list[Client] | None:
    """Begin closing every client on the exit deadline; None when that had begun."""
    global _ending_by
    if not _begun.acquire(blocking=False):
        return None
    _ending_by = signum
    try:
        return close_all(wait=False)
    except Exception:  # a bug of ours must not keep the process from ending
        return []


def _wait_then_end_elsewhere(clients: list[Client], signum: int) -> None:
    try:
        start_library_thread(
            threading.Thread(
                target=_wait_then_end, args=(clients, signum), name="logdna_client-exit",
                daemon=True,
            )
        )  # fmt: skip
    except RuntimeError:  # the interpreter is shutting down: no new threads
        _wait_then_end(clients, signum)


def _wait_then_end(clients: list[Client], signum: int) -> None:
    try:
        # (Only on the main thread can a signal handler raise here.)
        _deliver_or_cut_short(lambda: _wait_all_closed(clients))
    finally:
        _delivered.set()
        _end_by(signum)


def _end_by(signum: int) -> None:
    """End the process by ``signum`` with its default action, as if we had never been here."""
    on_main = threading.current_thread() is threading.main_thread()
    defaulted = False
    if on_main:
        try:
            signal.signal(signum, signal.SIG_DFL)
            defaulted = True
        except (ValueError, OSError):  # not the main interpreter
            pass
    if not defaulted and _default_off_main is not None:
        defaulted = _default_off_main(signum)
    _flush_stdio(bounded=not on_main)
    if defaulted:
        # Our threads block the signal: this one takes it, whatever the others' masks.
        _unblock([signum])
        os.kill(os.getpid(), signum)
    # Only reached where the signal could not end us; end the same way a shell reports it.
    os._exit(128 + signum)


def _libc_set_default() -> Callable[[int], bool] | None:
    """``signal(signum, SIG_DFL)`` through the C library, callable from any thread.

    Python sets dispositions on the main thread only, and the watcher must end
    the process while the main thread is stuck.
    """
    try:
        import ctypes  # noqa: PLC0415 - only where the watcher runs

        c_signal = ctypes.CDLL(None, use_errno=True).signal
        c_signal.restype = ctypes.c_void_p
        c_signal.argtypes = (ctypes.c_int, ctypes.c_void_p)
        sig_err = ctypes.c_void_p(-1).value
    except Exception:  # no ctypes, or no such C library function
        return None

    def set_default(signum: int) -> bool:
        try:
            return bool(c_signal(signum, None) != sig_err)  # None: SIG_DFL, the null pointer
        except Exception:
            return False

    return set_default


#: The signals the watcher may wake the main thread with: ignored by default, so one
#: that arrives once the default is back is dropped by the kernel, as without us.
_WAKE_SIGNALS: tuple[str, ...] = ("SIGURG", "SIGWINCH")


class _Waker:
    """Wakes a thread from the system call it is blocked in (a lock's, a read's, a
    sleep's): the call fails with EINTR, and Python runs there the handlers of the
    signals it noted before it goes on waiting (PEP 475). Nothing else runs: a signal
    whose handler already ran leaves nothing to run.

    The wake is one of ``_WAKE_SIGNALS``, sent to that thread alone, while a C handler
    that does nothing is in place for it: no Python handler runs. Only a signal at its
    default for Python and for the C library alike is used (a C handler another library
    set, which Python knows nothing of, is left alone), and ``rest`` puts the default
    back. Made on the main thread (``from_libc``): an import or a dlopen on another
    thread can deadlock after a fork.
    """

    # Larger than any C library's ``struct sigaction``; each begins with the handler.
    _ACTION_SIZE = 512

    def __init__(self) -> None:
        import ctypes  # noqa: PLC0415 - only where the watcher runs

        libc = ctypes.CDLL(None, use_errno=True)
        self._sigaction = libc.sigaction
        self._sigaction.restype = ctypes.c_int
        self._sigaction.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
        # The handler that does nothing: getpid, async-signal-safe, ignores the signal
        # number it is given. (Not PyErr_SetInterruptEx: Python 3.11 compares objects in
        # it, which crashes where the thread has let go of the GIL to wait.)
        self._noop = ctypes.cast(libc.getpid, ctypes.c_void_p).value
        if not self._noop:
            raise OSError("no getpid")
        self._pointer = ctypes.c_void_p
        self._buffer = ctypes.create_string_buffer
        self._signums = [int(getattr(signal, n)) for n in _WAKE_SIGNALS if hasattr(signal, n)]
        self._installed: tuple[int, ctypes.Array[ctypes.c_char]] | None = None

    @classmethod
    def from_libc(cls) -> _Waker | None:
        if not hasattr(signal, "pthread_kill"):
            return None
        try:
            return cls()
        except Exception:  # no ctypes, or no such C library function
            return None

    def wake(self, thread: int) -> bool:
        """Interrupt ``thread``'s system call; False where no signal can do it for us."""
        signum = self._install() if self._installed is None else self._installed[0]
        if signum is None:
            return False
        try:
            signal.pthread_kill(thread, signum)
        except (OSError, ValueError):  # that thread is gone
            return False
        return True

    def rest(self) -> None:
        """Put back the default of the signal ``wake`` used (unless a handler has taken
        our no-op's place since: theirs stays)."""
        if self._installed is None:
            return
        signum, before = self._installed
        self._installed = None
        now = self._action(signum)
        if now is not None and self._handler(now) == self._noop:
            self._sigaction(signum, before, None)

    def _install(self) -> int | None:
        for signum in self._signums:
            if signal.getsignal(signum) is not signal.SIG_DFL:
                continue  # the application's
            before = self._action(signum)
            if before is None or self._handler(before) is not None:
                continue  # a C handler Python knows nothing of
            # The no-op, no signal blocked while it runs, and no SA_RESTART: the call it
            # interrupts must fail with EINTR, not go on waiting.
            mine = self._buffer(self._ACTION_SIZE)
            self._pointer.from_buffer(mine).value = self._noop
            if self._sigaction(signum, mine, None) != 0:
                continue
            now = self._action(signum)
            if now is None or self._handler(now) != self._noop:
                # Not the layout we know (the handler first): as it was, and no wakes.
                self._sigaction(signum, before, None)
                self._signums = []
                return None
            self._installed = (signum, before)
            return signum
        return None

    def _action(self, signum: int) -> ctypes.Array[ctypes.c_char] | None:
        action = self._buffer(self._ACTION_SIZE)
        return action if self._sigaction(signum, None, action) == 0 else None

    def _handler(self, action: ctypes.Array[ctypes.c_char]) -> int | None:
        """The handler in ``action``: None for SIG_DFL (the null pointer)."""
        return self._pointer.from_buffer(action).value


def _flush_stdio(*, bounded: bool) -> None:
    def flush() -> None:
        for stream in (sys.stderr, sys.stdout):
            try:
                stream.flush()
            except Exception:
                pass

    if not bounded:
        flush()
        return
    try:
        flusher = threading.Thread(target=flush, name="logdna_client-flush", daemon=True)
        start_library_thread(flusher)
        flusher.join(_FLUSH_GRACE)
    except RuntimeError:
        pass


def _pass_on(read_fd: int, fd: int) -> None:
    os.set_blocking(read_fd, False)
    try:
        data = os.read(read_fd, 512)
    except OSError:
        return
    if data:
        try:
            os.write(fd, data)
        except OSError:
            pass


def _close(*fds: int) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _unwatch_after_fork() -> None:
    """In a forked child: the parent's pipe must not carry the child's signals to the
    parent's watcher (which would end the parent). The child's sender arms its own."""
    global _watch_fds
    if _watch_fds is None:
        return
    read_fd, write_fd = _watch_fds
    _watch_fds = None
    try:
        previous = signal.set_wakeup_fd(-1)
        if previous != write_fd:  # the application's since: keep it
            signal.set_wakeup_fd(previous)
    except (ValueError, OSError):
        # Not the main thread: the C handler still writes to that number, so it must
        # not come free for a file of the child's. Point it at nothing.
        _point_at_nothing(write_fd)
        _close(read_fd)
        return
    _close(read_fd, write_fd)


def _stop_watching() -> None:
    """End the watcher: its pipe's write end closed, it reads the end of the pipe. Called
    off the main thread (which alone may change the wakeup fd), so that number, which the
    C handler still writes to, is pointed at nothing rather than closed."""
    global _watch_fds
    fds, _watch_fds = _watch_fds, None
    if fds is not None:
        _point_at_nothing(fds[1])


def _point_at_nothing(fd: int) -> None:
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, fd, inheritable=False)
        os.close(null)
    except OSError:
        pass


# -- multiprocessing children


def _register_multiprocessing_child_hook(client: Client) -> None:
    """Make a ``multiprocessing`` child (which skips atexit) drain before it exits."""
    try:
        import multiprocessing.util as mp_util  # noqa: PLC0415

        mp_util.register_after_fork(client, _after_multiprocessing_fork)
        mp_process = sys.modules.get("multiprocessing.process")
        if mp_process is not None and mp_process.parent_process() is not None:
            # Built inside a multiprocessing child: it ends with os._exit (fork,
            # forkserver) after running Finalize callbacks, never atexit.
            _install_mp_finalizer(client)
    except Exception:
        pass


def _after_multiprocessing_fork(client: Client) -> None:
    """In a ``multiprocessing`` child (fork and forkserver), before its target runs."""
    _watch_again()
    _install_mp_finalizer(client)


def _watch_again() -> None:
    """The fork hook's look at the wakeup fd, taken again once the start method is done
    with it (on the child's main thread, before its target runs; once per child).

    A ``forkserver`` forks its workers with a wakeup fd of its own set and clears it only
    after the fork hooks ran (``forkserver._serve_one``). The fork hook finds the
    server's fd there and leaves it in place; or, from 3.12 in a server that imported
    asyncio, asyncio's own fork hook (``asyncio.events.on_fork``, registered before ours)
    has cleared it, the fork hook arms ours, and the server then clears ours. Either way
    a worker of a server that preloaded a module using the library had no watcher, and a
    SIGTERM landing as it blocked on a lock (``Pool.terminate()``'s race) left it hanging
    with its lines. Here the fd is free in such a worker; one set is the application's
    (an after-fork hook of its own set it), and stays.
    """
    global _fork_look, _watch_tried
    look, _fork_look = _fork_look, False
    if not look or not _handling_signals():
        return
    if threading.current_thread() is not threading.main_thread():
        return
    fds = _watch_fds
    if fds is None:  # the fork hook left an fd it found in place: take it if free now
        _watch_tried = False
        _watch_signals()
        return
    try:
        previous = signal.set_wakeup_fd(fds[1], warn_on_full_buffer=False)
        if previous not in (-1, fds[1]):  # the application's, set since the fork
            signal.set_wakeup_fd(previous)
    except (ValueError, OSError):
        pass


def _install_mp_finalizer(client: Client) -> None:
    import multiprocessing.util as mp_util  # noqa: PLC0415

    def drain() -> None:
        # Every client of this ending child, as at exit: one finalizer per client, each
        # closing and waiting for its own, left the next client's memory in place (not
        # on its spool) until the first one's deadline.
        if not client._exit_done:
            _deliver_or_cut_short(_close_all_waiting, reraise=True)

    mp_util.Finalize(client, drain, exitpriority=100)


# -- Celery prefork pool children
#
# billiard's pool worker ends with os._exit, so neither atexit nor logging.shutdown()
# runs there, and the multiprocessing finalizer above is not billiard's. Celery sends
# its worker_process_shutdown signal in that child just before: deliver then.

_celery_hooked = False


def hook_celery_pool_exit() -> None:
    """Make a Celery prefork pool child deliver before it ends; only where Celery is
    already imported (the library never imports it). Run on each sender thread as it
    starts (``Sender.on_start``), so also in a pool child, where Celery always is; never
    on a logging call's thread, where it could wait on Celery's lock in a signal handler."""
    global _celery_hooked
    if _celery_hooked:
        return
    signals = sys.modules.get("celery.signals")
    if signals is None:
        return
    try:
        signals.worker_process_shutdown.connect(
            _deliver_at_pool_exit, weak=False, dispatch_uid="logdna_client"
        )
        _celery_hooked = True
    except Exception:  # not the Celery we know: leave it
        pass


def _deliver_at_pool_exit(**_: Any) -> None:
    _deliver_or_cut_short(_close_all_waiting, reraise=True)


def _close_all_waiting() -> None:
    close_all(wait=True)


# -- helpers


def under_logging_lock() -> bool:
    """Whether this thread holds logging's module lock (dictConfig, shutdown do)."""
    return owns(getattr(logging, "_lock", None))


def owns(lock: object) -> bool:
    """Whether the running thread holds ``lock``: an RLock's own answer, as
    threading.Condition asks it. A plain Lock (a handler subclass's ``createLock``)
    says only whether it is held: held while the process's ending is under way or
    ``logging.shutdown()`` runs on this thread, it is taken for that one's, which
    flushes and closes each handler under it (H205: its flush waited 5 s of its own
    past a 1 s ``shutdown_timeout``)."""
    is_owned: Callable[[], bool] | None = getattr(lock, "_is_owned", None)
    try:
        if is_owned is not None:
            return bool(is_owned())
        locked: Callable[[], bool] | None = getattr(lock, "locked", None)
        return (
            locked is not None and bool(locked()) and (ending_under_way() or _in_logging_shutdown())
        )
    except Exception:
        return False


def _in_logging_shutdown() -> bool:
    """Whether ``logging.shutdown()`` is among the running thread's last few callers (it
    calls a handler's flush and close directly; ours looks three calls up)."""
    code = getattr(logging.shutdown, "__code__", None)
    frame: FrameType | None = sys._getframe(1)
    for _ in range(6):
        if frame is None:
            return False
        if frame.f_code is code:
            return True
        frame = frame.f_back
    return False


def report_exit_loss(message: str) -> None:
    """Say it through our logger (its kind on the record, as the Reporter's reports have
    it); if nothing would show it, on stderr directly."""
    try:
        logger.error(message, extra={KIND_ATTR: "exit-loss"})
    except Exception:
        pass
    _say_unseen(message)


def ending_under_way() -> bool:
    """Whether the process's ending is under way: the exit's one deadline was set (the
    exit hook, a termination signal, ``logging.shutdown()``, a ``multiprocessing``
    child's finalizer) and is in force. Not a reconfiguration's close, nor the
    application's own ``close()`` while the process goes on."""
    return time.monotonic() <= _window_end + _WINDOW_GRACE


def say_at_ending(message: str) -> None:
    """Say on stderr, where nothing would show the library's report of it (already
    logged), what a close that is part of the process's ending (the exit hook, a
    termination signal, ``logging.shutdown()``) left for the next process: the lines it
    wrote to the spool. A close while the process goes on leaves it to the logger."""
    if ending_under_way():
        _say_unseen(message)


def _say_unseen(message: str) -> None:
    """Write ``message`` on stderr unless a handler of the application shows the
    library's ERRORs (which were given it)."""
    try:
        visible = _has_visible_handler()
    except Exception:  # whether anyone would show it is unknown: say it here too
        visible = False
    if not visible:
        try:
            sys.stderr.write(message + "\n")
            sys.stderr.flush()
        except Exception:  # no stderr left (the very end of the interpreter's teardown)
            pass


def _handler_type() -> type[LogDNAHandler] | None:
    """``LogDNAHandler``, or None where its module was never imported (so none exists).

    Looked up, not imported (the module imports this one): a loss is also said while
    the interpreter clears its modules (a finalizer logging then), when ``import``
    fails ("sys.meta_path is None") and the report must not fail with it.
    """
    module = sys.modules.get(__name__.rpartition(".")[0] + "._handler")
    found: type[LogDNAHandler] | None = getattr(module, "LogDNAHandler", None)
    return found


def _has_visible_handler() -> bool:
    """Whether an ERROR on our logger reaches a handler that shows it."""
    ours = _handler_type()
    if not logger.isEnabledFor(logging.ERROR):  # logging.disable(), or a level above ERROR
        return False
    current: logging.Logger | None = logger
    while current is not None:
        if any(_shows(handler, ours) for handler in current.handlers):
            return True
        if not current.propagate:
            break
        current = current.parent
    return False


def _shows(handler: logging.Handler, ours: type[logging.Handler] | None, depth: int = 0) -> bool:
    """Whether an ERROR given to ``handler`` now is shown by it (or the handlers it hands
    records to). A ``QueueHandler`` shows it only through a listener that still runs (the
    one dictConfig made, Python 3.12+): at exit the application's atexit handler has
    usually stopped it, and what is queued then is never read. A ``MemoryHandler`` shows
    it when its target does (``logging.shutdown()`` flushes it)."""
    if handler.level > logging.ERROR or isinstance(handler, logging.NullHandler):
        return False
    if ours is not None and isinstance(handler, ours):
        return False
    if depth > 4:  # handlers that feed each other round: say it on stderr too
        return False
    # Not imported here: where the application never imported it, none of these exist.
    handlers = sys.modules.get("logging.handlers")
    if handlers is None:
        return True
    if isinstance(handler, handlers.QueueHandler):
        listener = getattr(handler, "listener", None)
        thread = getattr(listener, "_thread", None)
        if not isinstance(thread, threading.Thread) or not thread.is_alive():
            return False
        targets = getattr(listener, "handlers", ())
        return any(_shows(target, ours, depth + 1) for target in targets)
    if isinstance(handler, handlers.MemoryHandler):
        target = handler.target
        return target is not None and _shows(target, ours, depth + 1)
    return True
