"""How a process ends, and what the clients in it do about it.

Every way a process ends goes through here: interpreter exit (``atexit``),
``fork`` (the child forgets the parent's pipelines), ``multiprocessing``
children (which end with ``os._exit`` and skip ``atexit``), and SIGTERM and
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
import logging
import os
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._report import logger
from ._threads import BUSY_THREADS, NESTED_THREADS, SENDER_THREADS

if TYPE_CHECKING:
    from ._client import Client

__all__ = [
    "close_all",
    "exit_deadline",
    "install_signal_handlers",
    "owns",
    "register",
    "report_exit_loss",
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
    if not _hooks_installed:
        _hooks_installed = True
        atexit.register(_close_all_at_exit)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_reset_all_after_fork)
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
        for client in clients:
            client._wait_closed(at_exit=at_exit)
    return clients


def _close_all_at_exit() -> None:
    close_all(wait=True)


def _reset_all_after_fork() -> None:
    global _terminating
    _terminating = False
    SENDER_THREADS.clear()  # the parent's threads do not exist here
    BUSY_THREADS.clear()
    NESTED_THREADS.clear()
    for client in list(_clients):
        client._after_fork()


# -- termination signals


def install_signal_handlers() -> None:
    """Take SIGTERM and SIGHUP where they still have the default disposition.

    Called when a client's sender starts; only the main thread may set handlers.
    An application's own handler (or an ignored signal) is left alone.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for name in TERMINATION_SIGNALS:
        signum = getattr(signal, name, None)
        if signum is None:  # SIGHUP does not exist on Windows
            continue
        try:
            if signal.getsignal(signum) is signal.SIG_DFL:
                signal.signal(signum, _on_termination)
        except (ValueError, OSError):  # not the main interpreter, or not allowed
            pass


def _on_termination(signum: int, frame: Any) -> None:
    """Deliver what every client holds within its deadline, then end by ``signum``."""
    global _terminating
    if _terminating:  # a second signal while we deliver: the sender means it
        _end_by(signum)
    _terminating = True
    clients = close_all(wait=False)
    if all(c._can_wait() for c in clients):
        _wait_then_end(clients, signum)
    else:
        # This thread was interrupted inside one of our critical sections (or
        # holds logging's lock): the senders need it to leave first. Wait on a
        # thread of our own and end the process from there.
        threading.Thread(
            target=_wait_then_end, args=(clients, signum), name="logdna_client-exit", daemon=True
        ).start()


def _wait_then_end(clients: list[Client], signum: int) -> None:
    try:
        for client in clients:
            client._wait_closed(at_exit=True)
    finally:
        _end_by(signum)


def _end_by(signum: int) -> None:
    """End the process by ``signum`` with its default action, as if we had never been here."""
    try:
        signal.signal(signum, signal.SIG_DFL)
    except (ValueError, OSError):  # not on the main thread: the default is set already
        pass
    for stream in (sys.stderr, sys.stdout):
        try:
            stream.flush()
        except Exception:
            pass
    os.kill(os.getpid(), signum)
    # Only reached where the signal is blocked in this thread; end the same way a shell reports it.
    os._exit(128 + signum)


# -- multiprocessing children


def _register_multiprocessing_child_hook(client: Client) -> None:
    """Make a ``multiprocessing`` child (which skips atexit) drain before it exits."""
    try:
        import multiprocessing.util as mp_util  # noqa: PLC0415

        mp_util.register_after_fork(client, _install_mp_finalizer)
        mp_process = sys.modules.get("multiprocessing.process")
        if mp_process is not None and mp_process.parent_process() is not None:
            # Built inside a multiprocessing child: it ends with os._exit (fork,
            # forkserver) after running Finalize callbacks, never atexit.
            _install_mp_finalizer(client)
    except Exception:
        pass


def _install_mp_finalizer(client: Client) -> None:
    import multiprocessing.util as mp_util  # noqa: PLC0415

    def drain() -> None:
        if not client._exit_done:
            timeout = client.config.shutdown_timeout
            client._begin_close(exit_deadline(timeout), timeout)
            client._wait_closed(at_exit=True)

    mp_util.Finalize(client, drain, exitpriority=100)


# -- helpers


def under_logging_lock() -> bool:
    """Whether this thread holds logging's module lock (dictConfig, shutdown do)."""
    return owns(getattr(logging, "_lock", None))


def owns(lock: object) -> bool:
    # An RLock's own answer, as threading.Condition asks it.
    is_owned: Callable[[], bool] | None = getattr(lock, "_is_owned", None)
    try:
        return bool(is_owned()) if is_owned is not None else False
    except Exception:
        return False


def report_exit_loss(message: str) -> None:
    """Say it through our logger; if nothing would show it, on stderr directly."""
    try:
        logger.error(message)
        if not _has_visible_handler():
            sys.stderr.write(message + "\n")
            sys.stderr.flush()
    except Exception:
        pass


def _has_visible_handler() -> bool:
    """Whether an ERROR on our logger reaches a handler that shows it."""
    from ._handler import LogDNAHandler  # noqa: PLC0415

    if not logger.isEnabledFor(logging.ERROR):  # logging.disable(), or a level above ERROR
        return False
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if not isinstance(handler, logging.NullHandler | LogDNAHandler) and (
                handler.level <= logging.ERROR
            ):
                return True
        if not current.propagate:
            break
        current = current.parent
    return False
