"""The Client: one pipeline (builder -> buffer -> sender -> transport) per instance.

Handlers and processors share it. It owns process-level concerns too: the
sender thread is started lazily on the first line, replaced in a forked child,
and drained at interpreter exit (including in ``multiprocessing`` children,
which end with ``os._exit`` and never run ``atexit``).
"""

from __future__ import annotations

import atexit
import datetime as _dt
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from ._buffer import SEPARATOR, Buffer
from ._config import Config, hide_key
from ._line import LineBuilder, safe_str
from ._report import Reporter, logger
from ._retry import Backoff
from ._sender import BUSY_THREADS, SENDER_THREADS, Sender
from ._transport import HTTPTransport, Transport

__all__ = ["Client"]

_LEVEL_NAMES = {
    logging.CRITICAL: "CRITICAL", logging.ERROR: "ERROR", logging.WARNING: "WARNING",
    logging.INFO: "INFO", logging.DEBUG: "DEBUG",
}  # fmt: skip

_clients: weakref.WeakSet[Client] = weakref.WeakSet()
_hooks_lock = threading.Lock()
_hooks_installed = False


def _install_process_hooks() -> None:
    global _hooks_installed
    with _hooks_lock:
        if _hooks_installed:
            return
        _hooks_installed = True
    atexit.register(_close_all_at_exit)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_reset_all_after_fork)


def _reset_all_after_fork() -> None:
    global _hooks_lock
    _hooks_lock = threading.Lock()
    SENDER_THREADS.clear()  # the parent's threads do not exist here
    BUSY_THREADS.clear()
    for client in list(_clients):
        client._after_fork()


def _close_all_at_exit() -> None:
    """Deliver what is pending in every client, within each one's shutdown_timeout."""
    clients = [c for c in list(_clients) if not c._exit_done]
    now = time.monotonic()
    for client in clients:
        client._begin_close(now + client.config.shutdown_timeout)
    for client in clients:
        client._wait_closed(at_exit=True)


def _under_logging_lock() -> bool:
    """Whether this thread holds logging's module lock (dictConfig, shutdown do)."""
    is_owned = getattr(logging._lock, "_is_owned", None)  # type: ignore[attr-defined]
    try:
        return bool(is_owned()) if is_owned is not None else False
    except Exception:
        return False


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
        **options: Any,
    ) -> None:
        options = hide_key(options)  # first: no frame of ours holds the key's text
        if config is not None and options:
            from ._errors import ConfigurationError  # noqa: PLC0415

            raise ConfigurationError("pass either config= or options, not both")
        self.config = config if config is not None else Config(**options)
        self._transport_override = transport
        self._backoff = backoff
        self._builder = LineBuilder(self.config)
        self._filtered = 0

        def filtered() -> None:
            self._filtered += 1

        self._builder.on_filtered = filtered
        self._reporter = Reporter()
        if self.config.verify is False:
            # urllib3 warns through the warnings module on every request; this says
            # it once, where the app looks for this library's trouble.
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
        self._exit_done = False
        self._start_lock = threading.Lock()
        self._new_pipeline()
        _clients.add(self)
        _install_process_hooks()
        _register_multiprocessing_child_hook(self)

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
        self._started = False
        #: Queue one serialized line; False when it was dropped (and counted). The
        #: hot path for handlers: after the first line it is the buffer's own put,
        #: saving a call per line.
        self.put: Callable[[bytes], bool] = self._first_put
        #: The same for an entry (a comma, then the line) built by the fast path.
        self.put_entry: Callable[[bytes], bool] = self._first_put_entry
        #: Thread ident of the sender: records made on it are never shipped.
        self.sender_ident: int | None = None

    def _report(self, kind: str, level: int, message: str, *args: object,
                exc_info: bool = False) -> bool:  # fmt: skip
        return self._reporter.report(kind, level, message, *args, exc_info=exc_info)

    def _wake(self) -> None:
        # Called when a batch's worth is queued: also the cheap moment to notice a
        # dead sender, rather than checking the thread on every line.
        sender = self._sender
        sender.wake.set()
        if self._started and not sender.alive and not self._closed:
            self._restart_dead_sender()

    def _start(self) -> None:
        with self._start_lock:
            if self._started:
                return
            self._sender.start()
            self.sender_ident = self._sender.ident
            self._started = True
        self._buffer.allow_lock_free()

    def _after_fork(self) -> None:
        """In a forked child: forget the parent's lines, threads, locks and connection."""
        self._start_lock = threading.Lock()
        self._reporter = Reporter()
        self._exit_done = False
        if self._transport_override is not None and hasattr(self._transport_override, "after_fork"):
            self._transport_override.after_fork()
        self._new_pipeline()
        if self._closed:
            self._buffer.close()

    # -- logging

    def _first_put_entry(self, entry: bytes) -> bool:
        """``put_entry`` until the sender runs: start it, then go straight to the buffer."""
        if self._closed:  # closed before any line: count it, start no thread
            return self._buffer.put_entry(entry)
        self._start()
        self.put_entry = self._buffer.put_entry
        self.put = self._buffer.put
        return self._buffer.put_entry(entry)

    def _first_put(self, data: bytes) -> bool:
        """``put`` until the sender runs (see ``_first_put_entry``)."""
        return self._first_put_entry(SEPARATOR + data)

    def _restart_dead_sender(self) -> None:
        with self._start_lock:
            if self._sender.alive or self._closed:
                return
            self._reporter.report(
                "sender-dead", logging.ERROR, "logdna_client: sender thread died; restarting it"
            )
            self._started = False
        self._start()

    def log(
        self,
        text: object,
        level: str | int = "INFO",
        app: str | None = None,
        env: str | None = None,
        meta: Mapping[str, Any] | None = None,
        timestamp: float | int | _dt.datetime | None = None,
    ) -> bool:
        """Queue one line; never raises. True when queued, False when dropped or filtered.

        ``timestamp``: a datetime, epoch seconds, or epoch milliseconds; default now.
        """
        try:
            if isinstance(level, int):
                levelno = level
                level_name = _LEVEL_NAMES.get(level) or logging.getLevelName(level)
            else:
                level_name = safe_str(level).upper() or "INFO"
                found = logging.getLevelName(level_name)
                levelno = found if isinstance(found, int) else logging.INFO
            if levelno < self.config.level:
                return False
            data = self._builder.encode(
                text if isinstance(text, str) else safe_str(text),
                level_name[:80],
                _to_millis(timestamp),
                dict(meta) if meta else None,
                app,
                env,
            )
            if data is None:
                return False
            return self.put(data)
        except Exception:
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
            int(time.time() * 1000),
            {"logdna_client_dropped": counts},
        )

    # -- flushing and closing

    def flush(self, timeout: float | None = 5.0) -> bool:
        """Wait until every line accepted so far was delivered, or ``timeout`` passed.

        Returns True when all of them left the buffer and none was dropped
        meanwhile. Called while ``logging``'s module lock is held (dictConfig
        does), it only wakes the sender and does not wait.
        """
        buffer = self._buffer
        target = buffer.accepted
        if buffer.done_through >= target:
            return True
        dropped_before = sum(buffer.dropped.values())
        if not self._started:
            self._start()
        self._wake()
        if _under_logging_lock() or threading.get_ident() == self.sender_ident:
            return False
        done = self._sender.wait_done_through(target, timeout)
        return done and sum(buffer.dropped.values()) == dropped_before

    def close(self, timeout: float | None = None) -> None:
        """Flush what is queued within ``timeout`` (default ``shutdown_timeout``), then stop.

        Lines logged afterwards are dropped and counted as ``after_close``.
        Called under logging's module lock (dictConfig replacing handlers), it
        does not wait: the sender drains in the background on its own deadline.
        """
        if timeout is None:
            timeout = self.config.shutdown_timeout
        self._begin_close(time.monotonic() + max(0.0, timeout))
        if not _under_logging_lock() and threading.get_ident() != self.sender_ident:
            self._wait_closed(at_exit=False)

    def _begin_close(self, deadline: float) -> None:
        self._closed = True
        self._buffer.close()
        if not self._started:
            if len(self._buffer) == 0:
                self._exit_done = True
                return
            self._start()
        self._sender.begin_close(deadline)

    def _shutdown_loss(self, lost: int) -> None:
        _report_exit_loss(
            f"logdna_client: {lost} lines could not be delivered before the shutdown "
            f"deadline ({self.config.shutdown_timeout:g} s) and were dropped"
        )

    def _wait_closed(self, *, at_exit: bool) -> None:
        sender = self._sender
        if self._started and sender._deadline is not None:
            left = sender._deadline - time.monotonic()
            # A little grace past the deadline for the sender's own bookkeeping.
            sender.finished.wait(max(0.0, left) + 0.2)
        if at_exit:
            self._exit_done = True
            stuck = len(self._buffer) + self._buffer.inflight_lines
            if self._started and not sender.finished.is_set() and stuck:
                _report_exit_loss(
                    f"logdna_client: the log service did not answer within the shutdown "
                    f"deadline ({self.config.shutdown_timeout:g} s); {stuck} lines were not "
                    "delivered"
                )

    # -- introspection

    @property
    def closed(self) -> bool:
        return self._closed

    def stats(self) -> dict[str, Any]:
        """Counters: queued, sent, dropped (by reason), retries, bytes_sent and more."""
        buffer = self._buffer
        dropped = dict(buffer.dropped)
        for reason in ("buffer_full", "rejected", "shutdown", "after_close"):
            dropped.setdefault(reason, 0)
        out: dict[str, Any] = {
            "queued": buffer.accepted - buffer.done_through,  # waiting or in flight
            "queued_bytes": buffer.held_bytes,
            "accepted": buffer.accepted,
            "dropped": dropped,
            "dropped_total": sum(dropped.values()),
            "filtered": self._filtered,
            "sender_alive": self._sender.alive,
        }
        out.update(self._sender.snapshot())
        return out


def _to_millis(timestamp: float | int | _dt.datetime | None) -> int:
    if timestamp is None:
        return int(time.time() * 1000)
    if isinstance(timestamp, _dt.datetime):
        return int(timestamp.timestamp() * 1000)
    value = float(timestamp)
    # Epoch seconds are ~1.7e9 today; milliseconds ~1.7e12.
    return int(value if value > 1e11 else value * 1000)


def _report_exit_loss(message: str) -> None:
    """Say it through our logger; if nothing would show it, on stderr directly."""
    try:
        logger.error(message)
        if not _has_visible_handler():
            sys.stderr.write(message + "\n")
            sys.stderr.flush()
    except Exception:
        pass


def _has_visible_handler() -> bool:
    from ._handler import LogDNAHandler  # noqa: PLC0415

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
            client._begin_close(time.monotonic() + client.config.shutdown_timeout)
            client._wait_closed(at_exit=True)

    mp_util.Finalize(client, drain, exitpriority=100)
