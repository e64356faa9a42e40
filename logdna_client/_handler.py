"""``LogDNAHandler``: the stdlib ``logging.Handler`` that feeds a Client.

``handle`` is overridden to skip the handler lock: nothing here needs it (the
buffer has its own short critical section), and with several threads that
lock costs more than the rest of the work together. The message is formatted
and serialized here, in the caller's thread, so a mutable argument changed
after the call still ships as it was logged.

The stdlib's hooks keep their meaning: a subclass that overrides ``format``,
``filter`` or ``emit`` gets ``logging.Handler.handle`` exactly (filter, lock,
emit), and a patched ``LogRecord.getMessage`` or a formatter is called as
the stdlib would call it. Only while all of them are the library's own does
the short path run: ``handle`` filters and ships directly, and where the
optional C extension (``_speedups.c``) is built, each handler's ``handle`` is
a C object that builds the common record's entry itself (the same bytes as
``_queue_record`` + ``LineBuilder.entry`` + ``Buffer.put_entry``) and calls
the Python ``handle`` for every other record.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from threading import get_ident
from typing import Any, cast

from typing_extensions import Unpack

from . import _context, _exit, _native, _official
from ._client import Client
from ._config import level_beside_client
from ._context import current as request_context
from ._context import with_context
from ._errors import ConfigurationError
from ._event import (
    LEVEL_KEY,
    event_line,
    level_name,
    passes,
    shown_exc_info,
    structured_event,
)
from ._line import created_millis, safe_str
from ._options import ClientOptions, with_options_help
from ._record import (
    GET_MESSAGE_ATTR,
    PLAIN_RECORD_LEN,
    STANDARD_KINDS,
    STANDARD_RECORD_ATTRS,
    record_meta,
    unformattable,
)
from ._redact import bytes_text
from ._report import is_own_logger
from ._secret import Secret, hide_key
from ._threads import (
    SENDER_THREADS,
    made_on_sender,
    marks_for,
    raised_by_signal_handler,
)

__all__ = ["STANDARD_RECORD_ATTRS", "LogDNAHandler", "record_meta"]  # (those two: _record's)

# The stdlib's hooks whose replacement on a handler (set on it, or deleted) is looked for.
_HOOKS = frozenset({"format", "filter", "emit"})

# How often a finalizer's line on a sender thread, waiting for a handler subclass's lock,
# looks whether its holder waits for the sender (_stdlib_handle_on_sender).
_LOCK_LOOK = 0.05

# How long a line waits for another thread to make the new client of a handler that a
# reconfiguration closed (a moment; bounded against a wait on a lock this thread holds).
_REOPEN_WAIT = 5.0


def _stdlib_get_message() -> object:
    """The stdlib's own getMessage, while LogRecord has it: ``msg % args`` is what it
    returns. Where another library patched it before this module was imported, a
    marker no class has: every record's text then comes from its getMessage (H199)."""
    found = logging.LogRecord.getMessage
    # By the module it was defined in: functools.wraps copies a name, never the globals;
    # a file name differs where logging runs from .pyc alone (H201: PyInstaller).
    if getattr(found, "__globals__", None) is vars(logging) and found.__name__ == "getMessage":
        return found
    return object()


_GET_MESSAGE = _stdlib_get_message()


def _overrides(handler: logging.Handler, name: str) -> bool:
    """Whether ``handler``'s class (or the handler itself) replaces hook ``name``: one
    of ``_OWN_HOOKS``, as they were when this module was imported (a mock patched on
    the class before a handler is built is not the library's)."""
    return getattr(type(handler), name) is not _OWN_HOOKS[name] or name in handler.__dict__


class LogDNAHandler(logging.Handler):
    """Ships records to LogDNA / Mezmo.

    Give it the Client options as keyword arguments (``key``, ``app``, ``env``,
    ``hostname``, ``tags``, ``record_meta``, ...; all accept strings, for
    dictConfig), or a ``client=`` to share one pipeline between several
    handlers/processors. The official ``logdna`` client's form,
    ``LogDNAHandler(key, options)`` with its option names, works too, also
    with both as keywords (``key=``, ``options=``), as its README's dictConfig
    example passes them (see docs/migration.md).

    The shipped line is the formatted message (the handler's formatter when
    one is set, else ``record.getMessage()`` plus any exception and stack
    text); level is ``record.levelname``; timestamp is ``record.created``; meta
    holds the record attributes ``record_meta`` names (the logger's ``name``
    by default), then every ``extra=`` attribute.
    """

    #: The C ``handle`` of this handler, or None (the Python one runs).
    _fast: Any

    def __init__(
        self,
        key: str | None = None,
        options: Mapping[str, Any] | None = None,
        /,
        *,
        client: Client | None = None,
        **kwargs: Unpack[ClientOptions],
    ) -> None:
        # First: no frame of ours holds the key's text, given either way.
        kwargs = cast(ClientOptions, hide_key(dict(kwargs)))
        given = cast(dict[str, Any], kwargs)
        official = "options" in given
        if official:
            # The official README's dictConfig form passes both as keywords
            # ({"key": ..., "options": {...}}): the same pair as given by position.
            if options is not None:
                raise ConfigurationError(
                    "options: given twice (as the second argument and as options=)", "options"
                )
            options = given.pop("options")
            if "key" in given:
                if key is not None:
                    raise ConfigurationError("key: given twice (as the first argument and as key=)")
                key = given.pop("key")
        if key is not None and not isinstance(key, Secret):
            key = cast(str, Secret(key))
        # The official client's form, LogDNAHandler(key, {...}): see _official.py.
        official = official or key is not None or options is not None
        if isinstance(options, Mapping):  # (a url= in it, hidden as in kwargs)
            options = hide_key(dict(options))
        if official:
            taken = _official.translate(key, options, keywords=kwargs.keys())
            kwargs = cast(ClientOptions, hide_key({**taken, **kwargs}))
        level = level_beside_client(client, kwargs)
        self._owns_client = client is None
        client = client if client is not None else Client(**kwargs)
        # Beside client= and not given: NOTSET, every record (the logger's level decides).
        super().__init__(client.config.level if self._owns_client else level or 0)
        self._official = official
        #: LOGDNA_CLIENT_PURE_PYTHON as it was when the handler was built.
        self._pure_python = _native.pure_python_asked()
        #: Threads in this handler's flush() or close(), which wait for the sender (see
        #: _stdlib_handle_on_sender).
        self._waiting: set[int] = set()
        #: Held by the one thread that reopens a replaced handler (see ``_reopened``),
        #: whose ident is ``_reopener`` meanwhile.
        self._reopening = threading.Lock()
        self._reopener: int | None = None
        # A formatter of our own, so that logging.basicConfig() does not give this
        # handler its "LEVEL:name:message" one (the level already ships as a field).
        # Identity with it selects the short path; setFormatter() still wins.
        self._default_formatter = _MessageFormatter()
        self.formatter = self._default_formatter
        #: Logger name -> whether it is one of the library's own (see _is_own).
        self._skip_names: dict[object, bool] = {}
        self._read_hooks()
        self._ship_through(client)

    def _read_hooks(self) -> None:
        """Which of the stdlib's hooks are the library's own: at construction, and again
        whenever one is set on the handler or deleted from it (see ``__setattr__``)."""
        #: A subclass (or the handler itself) replaced format, filter or emit: the
        #: stdlib's handle runs.
        self._stdlib_handle = (
            _overrides(self, "format") or _overrides(self, "filter") or _overrides(self, "emit")
        )
        #: Whether ``format`` is logging's, which formats with ``self.formatter``.
        self._own_format = not _overrides(self, "format")

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name in _HOOKS:
            self._hooks_changed()

    def __delattr__(self, name: str) -> None:
        super().__delattr__(name)
        if name in _HOOKS:
            self._hooks_changed()

    def _hooks_changed(self) -> None:
        """A hook set on this handler, or taken back (``mock.patch.object(handler,
        "emit")`` in a test does both): the short paths run only while all are ours."""
        if "_fast" not in self.__dict__:
            return  # still being built: __init__ reads them
        self._read_hooks()
        current = self.__dict__.get("handle")
        if current is None or current is self._fast:
            # The C handle, made while they were ours (or none): made again, or not, for
            # the new ones. (Not a handle of the application's, nor _handle_replaced.)
            self.__dict__.pop("handle", None)
            self._fast = self._speedups_handle()
            if self._fast is not None:
                self.__dict__["handle"] = self._fast

    def _ship_through(self, client: Client) -> None:
        """Build lines with ``client``'s builder and queue them in its buffer."""
        self._client = client
        builder = self._builder = client._builder
        self._entry = builder.entry
        #: Whether a dict or list message ships as itself (the OTLP record's body).
        self._structured = client.config.protocol == "otlp"
        #: OTLP: the record's exception's exception.type and .message, as meta.
        self._with_exception: Callable[[Any, object], Any] | None = None
        if self._structured:
            from ._otlp import with_exception  # noqa: PLC0415 - loaded only for OTLP

            self._with_exception = with_exception
        #: The LogRecord attributes shipped as meta, in order.
        self._record_attrs: tuple[str, ...] = client.config.record_meta
        #: With one such attribute (the logger's name, by default): its str value ->
        #: ``meta_json`` of the meta it alone makes; reused by both paths.
        #: Only where ``plain`` serves lines: no ``before_send`` could change the meta.
        self._meta_cache: dict[str, tuple[dict[str, Any], bytes]] | None = (
            {} if len(self._record_attrs) == 1 and builder.plain_max_chars > 0 else None
        )
        self.__dict__.pop("handle", None)  # (a replaced one's _handle_replaced)
        self._fast = self._speedups_handle()
        if self._fast is not None:
            # An attribute of the handler, found before the class's method: the
            # logging call goes straight to C.
            self.handle = self._fast  # type: ignore[method-assign]
        if self._official:
            _official.install(self)

    def _speedups_handle(self) -> Any:
        """The C ``handle`` for this handler, or None to run the Python one.

        None where ``_native.enabled`` says no, and when a subclass replaced
        ``handle`` or one of the hooks it calls.
        """
        if self._pure_python or not _native.enabled(self._builder) or self._stdlib_handle:
            return None
        if _overrides(self, "handle"):
            return None
        try:
            return _native.speedups.Handle(
                handler=self,
                slow=_OWN_HOOKS["handle"],
                queue=LogDNAHandler._queue_built,
                record_type=logging.LogRecord,
                get_message=_GET_MESSAGE,
                default_formatter=self._default_formatter,
                skip_names=self._skip_names,
                record_attrs=self._record_attrs,
                meta_cache=self._meta_cache,
                standard_attrs=STANDARD_KINDS,
                plain_len=PLAIN_RECORD_LEN,
                **_native.pieces(self._builder, self._client._buffer),
            )
        except Exception:  # an unusable build that takes other arguments
            return None

    @property
    def client(self) -> Client:
        """The Client this handler ships through."""
        return self._client

    def __repr__(self) -> str:
        # Safe half-built too (its Client refused an option): tracebacks show it.
        level = logging.getLevelName(getattr(self, "level", logging.NOTSET))
        return f"<{type(self).__name__} ({level}) {getattr(self, '_client', None)!r}>"

    def handle(self, record: logging.LogRecord) -> Any:
        """Filter, serialize and queue the record; never raises, never blocks on I/O.

        This replaces ``Handler.handle`` rather than ``emit`` alone: the handler
        lock it would take guards nothing here (the buffer is safe on its own)
        and costs more than the rest with several threads. A subclass that
        overrides ``format``, ``filter`` or ``emit`` gets the stdlib's
        ``Handler.handle`` instead, hooks, lock and all.
        """
        if self._stdlib_handle:
            current = get_ident()
            if current in SENDER_THREADS:
                return self._stdlib_handle_on_sender(record, current)
            return logging.Handler.handle(self, record)
        if self.filters:
            result: Any = self.filter(record)
            if not result:
                return False
            if isinstance(result, logging.LogRecord):  # Python 3.12+ filters may swap records
                record = result
        self._deliver(record)
        return True

    def _stdlib_handle_on_sender(self, record: logging.LogRecord, current: int) -> Any:
        """The stdlib's ``handle`` for a record made on a sender thread (a finalizer's,
        as a garbage collection there runs it), whose wait for the handler's lock ends
        when a thread that may hold it waits for this sender: ``logging.shutdown()``
        flushes each handler under its lock (both waited until the exit's deadline, and
        lines were lost: H203), an ``emit`` may flush or wait for room (``block``) under
        it (H205: the sender stalled for as long as the app logged, calls took 14 s past
        a 2 s ``block_timeout``). Such a line is counted as ``reentrant`` then. The lock
        is taken once (a subclass's ``createLock`` may make one that is not reentrant)."""
        if made_on_sender(record, current):
            return False  # (the sender's own: before the lock, as _deliver decides)
        result: Any = self.filter(record)
        if not result:
            return result
        if isinstance(result, logging.LogRecord):  # Python 3.12+ filters may swap records
            record = result
        lock = self.lock
        while lock is not None and not _acquired(lock, self._sender_awaited):
            if self._sender_awaited():
                self._client._count_drop("reentrant")
                return False
        try:
            self.emit(record)
        finally:
            if lock is not None:
                lock.release()
        return result

    def _sender_awaited(self) -> bool:
        """Whether a thread waits for the sender now: this handler's flush() or close(),
        or any flush, close or wait for room (``Buffer.waiting``)."""
        return bool(self._waiting or self._client._buffer.waiting)

    def emit(self, record: logging.LogRecord) -> None:
        """Ship one record: serialize it and queue it for the sender."""
        if self._official and _official.emitted_with_options(self, record):
            return  # (its per-line options dict: a handler made as the official one is)
        self._deliver(record)

    def _deliver(self, record: logging.LogRecord) -> None:
        """Queue the record's line, unless it must not ship; never raises."""
        current = get_ident()
        if made_on_sender(record, current):
            return  # made by urllib3/requests on a sender thread
        try:
            name = record.name
            own = self._skip_names.get(name)  # False: a logger known not to be ours
        except Exception:  # no name (a stripped record), an unhashable one: not ours
            name, own = None, False
        if own is not False and self._is_own(name):
            return
        # Marked while it builds: a record that a signal handler, finalizer, __str__ or
        # formatter logs meanwhile is nested (see marks_for).
        marks = marks_for(current)
        if marks is None:
            self._client._count_drop("reentrant")
            return
        try:
            # Inside the try: a KeyboardInterrupt (or a signal handler's exception)
            # raised as add() returns must not leave the thread marked for good.
            marks.add(current)
            self._queue_record(record)
        except Exception as exc:
            if raised_by_signal_handler(exc):
                raise
            self._failed(record)
        finally:
            marks.discard(current)

    def _failed(self, record: logging.LogRecord) -> None:
        """A record no line could be built for: counted as ``error``, then the stdlib's say."""
        try:
            self._client._count_drop("error")
        except Exception:  # (a second MemoryError, at the memory limit): never the caller's
            pass
        self.handleError(record)

    def _queue_record(self, record: logging.LogRecord) -> None:
        """Build the record's entry and queue it: its text (the formatted message),
        its meta (the ``record_meta`` attributes, then extras, then any request
        context) and the entry ``LineBuilder.entry`` makes of them. One function,
        not several: this is the logging call's path (the C handle mirrors it)."""
        attrs = record.__dict__
        msg = record.msg
        data: bytes | None = None
        meta: dict[str, Any] | None
        level: str | None = None
        ms: int | None = None
        exc_info: object = None  # the exception the text shows a traceback of
        if (
            type(msg) is dict
            and "_logger" in attrs
            and self._own_format
            and self.formatter is self._default_formatter
            and type(record).getMessage is _GET_MESSAGE  # (a patched one: as any record)
            and GET_MESSAGE_ATTR not in attrs
        ):
            # structlog's ProcessorFormatter.wrap_for_formatter: the event dict is
            # the message; its keys are meta, structlog's bookkeeping is not (_record._extras
            # leaves it out; record_meta cannot name it). The record is a LogRecord
            # like any other: the record_meta attributes (the logger's name) and
            # extras ship too, under the event's own keys. The event's level and time
            # are the line's, as LogDNAProcessor ships them; the handler's level
            # judges that level, as the processor's does (logging judged the
            # record's, the method's, before calling us). A line below it is neither
            # shipped nor counted as dropped, as the processor's is not: filtered.
            if msg.get(LEVEL_KEY) is not None:
                level = level_name(msg[LEVEL_KEY])
                if not passes(level, self.level):
                    return
            found = record_meta(attrs, self._record_attrs)
            text, meta, ms = event_line(msg, found, self._builder.redact_meta)
            body = structured_event(msg) if self._structured else None
            if self._with_exception is not None:  # read only where it ships (OTLP)
                exc_info = shown_exc_info(msg)
        else:
            body = None
            if (
                type(msg) is str
                and self.formatter is self._default_formatter
                and self._own_format
                and type(record).getMessage is _GET_MESSAGE
                and not (record.exc_info or record.exc_text or record.stack_info)
                and (len(attrs) == PLAIN_RECORD_LEN or GET_MESSAGE_ATTR not in attrs)
            ):
                # What the default formatter makes of it, two calls shorter.
                args = record.args
                try:
                    text = msg % args if args else msg
                except Exception as exc:
                    text = unformattable(record, exc)
            else:
                try:
                    text = self.format(record)
                    if type(text) is not str:  # an app's Formatter that returns no text
                        text = _as_text(text)
                except Exception as exc:
                    text = unformattable(record, exc)
                exc_info = record.exc_info
                if (
                    self._structured
                    and self.formatter is self._default_formatter
                    and self._own_format
                    and _is_structured(record, msg)
                ):
                    # logging.info({...}): the OTLP record's body is the dict, as the SDK's
                    # LoggingHandler sends a msg that is no str (the text: past the cap).
                    body = msg
            names = self._record_attrs
            cache = self._meta_cache
            value = attrs.get(names[0]) if cache is not None else None
            if type(value) is str and len(attrs) == PLAIN_RECORD_LEN:
                # The one record attribute alone (no extras): its meta and JSON once per value.
                kept = cache.get(value)  # type: ignore[union-attr]
                meta, data = kept if kept is not None else self._cache_meta(value)
            else:
                meta = record_meta(attrs, names)
        if exc_info and self._with_exception is not None:
            meta = self._with_exception(meta, exc_info)
            data = None
        if _context.in_use:
            context = request_context()
            if context:
                meta = with_context(meta, context)
                data = None
        if level is None:
            level = record.levelname
            if type(level) is not str:  # a record made by hand, or changed by a filter
                level = safe_str(level)
        if ms is None:
            ms = created_millis(record.created)
        if body is None:
            entry = self._entry(text, level, ms, meta, data)
        else:
            entry = self._builder.structured_entry(body, text, level, ms, meta)
        if entry is not None:
            self._client.put_entry(entry)

    def _cache_meta(self, value: str) -> tuple[dict[str, Any], bytes | None]:
        """The meta the one ``record_meta`` attribute makes alone with ``value``, and
        its ``meta_json``, kept for ``value`` (see ``_meta_cache``)."""
        meta = {self._record_attrs[0]: value}
        try:
            data = self._builder.meta_json(meta)
        except TypeError:  # a lone surrogate in the name: encode() repairs it
            return meta, None
        cache = self._meta_cache
        if cache is not None:
            if len(cache) >= 1024:  # names made per request, say: stay bounded
                cache.clear()
            cache[value] = (meta, data)
        return meta, data

    def _queue_built(self, record: logging.LogRecord, entry: bytes) -> bool:
        """Queue an entry the C ``handle`` built, when the buffer wants its locked path."""
        fast = self._fast
        try:
            buffer = _native.put_built(self._client, entry)
            if fast is self._fast:  # (not where the put reopened the handler: see close)
                fast.buffer = buffer
        except Exception as exc:
            if raised_by_signal_handler(exc):
                raise
            self._failed(record)
        return True

    def _is_own(self, name: object) -> bool:
        """Whether ``name`` is one of the library's own loggers (answers are cached)."""
        try:
            own = self._skip_names.get(name)
            if own is None:
                if len(self._skip_names) >= 1024:  # names made per request, say: stay bounded
                    self._skip_names.clear()
                own = self._skip_names[name] = is_own_logger(name)
        except Exception:  # an unhashable name (makeLogRecord), or one whose hash raises
            return False  # the library's own names are plain strings
        return own

    def flush(self, timeout: float | None = 5.0) -> None:
        """Wait (up to ``timeout``) for queued lines to be delivered.

        From ``logging.shutdown()`` (which holds this handler's lock and closes
        it next) the wait is part of the process's one exit deadline instead.
        """
        client = self._client
        current = get_ident()
        self._waiting.add(current)
        try:
            if _exit.owns(self.lock):
                deadline = _exit.shutdown_deadline(client.config.shutdown_timeout)
                client.flush(max(0.0, deadline - time.monotonic()))
            else:
                client.flush(timeout)
        finally:
            self._waiting.discard(current)

    def close(self) -> None:
        """Deliver what is queued within ``shutdown_timeout`` and stop the sender.

        A handler built with ``client=`` leaves the shared client running. From
        ``logging.shutdown()`` the deadline is the process's one exit deadline.

        Closed by a reconfiguration (``dictConfig``, ``fileConfig`` and
        ``basicConfig(force=True)`` close every handler there is, holding
        logging's module lock), a handler that still gets records (a logger the
        new configuration left alone keeps it; a thread logged meanwhile) ships
        them through a new client of the same options, as logging's own handlers
        go on writing after such a close.
        """
        current = get_ident()
        self._waiting.add(current)
        try:
            if self._owns_client:
                client = self._client
                # Closed before (by the application, or by a reconfiguration that left
                # its handle to reopen it already): this close changes nothing.
                closed_before = client.closed
                reconfiguring = _exit.under_logging_lock()
                forward = None
                if reconfiguring and _running() and not closed_before:
                    # Before the close: a line from now on, and one a thread is building
                    # with the handle it looked up before (its client closed under it),
                    # goes to the new client. Only a handler that is used again pays for
                    # it: its handle, not the logging path of every handler, reopens it.
                    # Not one the application closed itself: that stays closed.
                    self.handle = self._handle_replaced  # type: ignore[method-assign]
                    forward = _forward_to(weakref.ref(self))
                timeout = client.config.shutdown_timeout
                if _exit.owns(self.lock):
                    # dictConfig's close is no ending of the process: a client that
                    # never started is not done with the exit (a line given to it later
                    # is not "logged after the exit hook ran").
                    deadline = _exit.shutdown_deadline(timeout)
                    client._close_by(deadline, timeout, ending=not reconfiguring, forward=forward)
                elif forward is not None:  # basicConfig(force=True): client.close(), forwarding
                    deadline = _exit.exit_deadline(timeout, begins_exit=False)
                    client._close_by(deadline, timeout, ending=False, forward=forward)
                else:
                    client.close()
                if not (reconfiguring and _running()) and (
                    self.__dict__.get("handle") == self._handle_replaced
                ):
                    # Closed for good after all: its records are counted as after_close.
                    self._ship_through(client)
        finally:
            self._waiting.discard(current)
            super().close()

    def _handle_replaced(self, record: logging.LogRecord) -> Any:
        """``handle`` of a handler a reconfiguration closed: ship through a new client
        of the same options (see ``close``), then handle as usual."""
        # Not for records that would not ship (the old client's sender drains in
        # the background, and urllib3 logs there).
        if not made_on_sender(record, get_ident()) and not self._is_own(
            getattr(record, "name", None)
        ):
            self._reopened()
        handle = self.__dict__.get("handle")
        if handle is None or handle == self._handle_replaced:
            return type(self).handle(self, record)  # (a subclass's own, if it has one)
        return handle(record)

    def _reopened(self) -> Client | None:
        """The open client to ship through: this handler's, or where a reconfiguration
        closed it (see ``close``), a new one of the same options, which the first thread
        to need it makes. None where there is none: the process is ending (the exit's
        closes have run, or are running), the application closed the handler itself,
        or this thread is making it (a line its signal handler logs meanwhile)."""
        client = self._client
        if not client.closed:
            return client
        current = get_ident()
        if not _running() or self._reopener == current:
            return None
        # Waits for another thread making it, a moment (no I/O); bounded all the same.
        if not self._reopening.acquire(timeout=_REOPEN_WAIT):
            return None
        try:
            client = self._client
            if client.closed and self.__dict__.get("handle") == self._handle_replaced:
                self._reopener = current
                fresh = Client(config=client.config)
                self._ship_through(fresh)
                # A handler a thread used only while the reconfiguration ran is
                # dropped after it: its client's threads end with it.
                weakref.finalize(self, _close_unused, fresh).atexit = False
        except Exception:  # no new client: the line is counted as after_close
            pass
        finally:
            self._reopener = None
            self._reopening.release()
        client = self._client
        return None if client.closed else client

    def _put_reopened(self, entry: bytes) -> bool:
        """Queue an entry that reached the client a reconfiguration closed in the new
        one (``Buffer.close``'s ``forward``); False: none, the old one counts it."""
        client = self._reopened()
        return client is not None and client.put_entry(entry)

    def handleError(self, record: logging.LogRecord) -> None:
        # The stdlib prints to stderr (never stdout) when logging.raiseExceptions is on.
        try:
            super().handleError(record)
        except Exception:
            pass


LogDNAHandler.__doc__ = with_options_help(LogDNAHandler.__doc__)

#: The hooks the short paths stand in for, as defined here and in logging.
_OWN_HOOKS: dict[str, object] = {
    "format": logging.Handler.format,
    "filter": logging.Filterer.filter,
    "emit": LogDNAHandler.__dict__["emit"],
    "handle": LogDNAHandler.__dict__["handle"],
}


class _MessageFormatter(logging.Formatter):
    """The default: the message, then any traceback and stack, not cached into the record."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            text = record.getMessage()
        except Exception as exc:  # the traceback still ships, with a marker for the message
            text = unformattable(record, exc)
        exc_text = record.exc_text
        if not exc_text and record.exc_info:
            exc_text = self.formatException(record.exc_info)
        if exc_text:
            text = f"{text}\n{exc_text}" if text else exc_text
        if record.stack_info:
            text = f"{text}\n{record.stack_info}" if text else record.stack_info
        return text


def _acquired(lock: Any, awaited: Callable[[], bool]) -> bool:
    """Whether ``lock`` was taken within ``_LOCK_LOOK`` (on a sender thread). A lock of
    the application's own whose ``acquire`` takes no timeout is tried, then looked at
    again after ``_LOCK_LOOK``; one that takes no argument at all is waited for as the
    stdlib takes it, unless a thread waits for the sender (``awaited``), which may hold
    it (H205: its TypeError escaped into the finalizer, the line lost, counted nowhere;
    H208: waiting for it stalled the sender as before)."""
    try:
        return bool(lock.acquire(timeout=_LOCK_LOOK))
    except TypeError:
        pass
    try:
        if lock.acquire(False):
            return True
    except TypeError:
        if awaited():
            return False
        lock.acquire()
        return True
    time.sleep(_LOCK_LOOK)  # (the sender thread's own wait)
    return False


def _is_structured(record: logging.LogRecord, msg: object) -> bool:
    """Whether ``msg`` is a dict or a list the default formatter shows as its text alone
    (no args to format into it, no traceback or stack after it)."""
    return (
        isinstance(msg, Mapping | list | tuple)
        and not record.args
        and not (record.exc_info or record.exc_text or record.stack_info)
        and type(record).getMessage is _GET_MESSAGE
        and GET_MESSAGE_ATTR not in record.__dict__
    )


def _forward_to(handler: weakref.ref[LogDNAHandler]) -> Callable[[bytes], bool]:
    """``handler``'s ``_put_reopened``, for the buffer of the client a reconfiguration
    closed; held weakly, so that the handler's end still closes its new client."""

    def forward(entry: bytes) -> bool:
        alive = handler()
        return alive is not None and alive._put_reopened(entry)

    return forward


def _close_unused(client: Client) -> None:
    """Begin closing the client of a handler that is gone (never waits: a finalizer)."""
    try:
        timeout = client.config.shutdown_timeout
        client._begin_close(time.monotonic() + timeout, timeout)
    except Exception:
        pass


def _running() -> bool:
    """Whether the process is not ending: at interpreter exit logging's and the
    library's closes run after the main thread stopped (``threading`` marks it so
    before any atexit function runs)."""
    return threading.main_thread().is_alive()


def _as_text(formatted: object) -> str:
    """What a ``format()`` that returned no text ships as: bytes as UTF-8, anything else
    as its ``str()``. As it was, a dict or list went on the wire as JSON in ``line``
    (the service refused it: 400, lost as ``rejected``) and bytes or None were lost as
    ``error``, with a traceback per record (H191)."""
    if isinstance(formatted, bytes | bytearray | memoryview):
        return bytes_text(formatted)
    return safe_str(formatted)
