"""``LogDNAHandler``: the stdlib ``logging.Handler`` that feeds a Client.

``handle`` is overridden to skip the handler lock: nothing here needs it (the
buffer has its own short critical section), and with several threads that
lock costs more than the rest of the work together. The message is formatted
and serialized here, in the caller's thread, so a mutable argument changed
after the call still ships as it was logged. The most common record is built
and queued inline in ``handle`` (see its docstring); docs/performance.md has
what each step costs. Where the optional C extension (``_speedups.c``) is
built, it replaces ``handle`` on the class and does that inline work for the
same records, byte for byte, calling the Python ``handle`` for every other one.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
import traceback
from itertools import islice
from os import getpid
from threading import get_ident
from typing import Any

import orjson

from . import _context, _exit
from ._buffer import ENTRY_OVERHEAD
from ._client import Client
from ._context import current as request_context
from ._errors import ConfigurationError
from ._event import event_dict_to_line
from ._line import LINE_HEAD, _escape, safe_str
from ._redact import MAX_DEPTH
from ._report import logger as _own_logger
from ._threads import BUSY_THREADS, NESTED_THREADS, SENDER_THREADS

__all__ = ["STANDARD_RECORD_ATTRS", "LogDNAHandler"]

_PROBE = logging.LogRecord("probe", logging.INFO, __file__, 1, "probe", None, None)
# Attributes every LogRecord has; anything else arrived through extra= (or a
# filter, adapter or other handler set it) and becomes meta.
_INIT_ATTRS = frozenset(_PROBE.__dict__)  # the ones LogRecord.__init__ sets
STANDARD_RECORD_ATTRS: frozenset[str] = _INIT_ATTRS | {"message", "asctime"}
# A record built without extra= has exactly this many attributes: the common
# case skips the scan for extras altogether.
_PLAIN_RECORD_LEN = len(_PROBE.__dict__)
del _PROBE

# The C version of handle's common path (_speedups.c); None where it was not
# built (no compiler at install) and on builds without a GIL (it relies on one,
# and importing it there would turn the GIL back on).
_speedups: Any = None
if getattr(sys, "_is_gil_enabled", lambda: True)():
    try:
        from . import _speedups  # type: ignore[attr-defined, no-redef]
    except ImportError:
        pass
    else:
        # A build left from another version of the package (an editable install
        # not rebuilt after an update) may expect other arguments: not used.
        if getattr(_speedups, "API", None) != 4:
            _speedups = None

_STRUCTLOG_SKIP = STANDARD_RECORD_ATTRS | {"_logger", "_name"}

_OWN_PREFIX = _own_logger.name + "."
# A millisecond no record falls in: the first inline record of a level makes its stamp.
_NEVER = float("inf")
_NO_STAMP = (_NEVER, _NEVER, "")
# Stamps are cached below this many ms (year 287,396): floats hold every integer below it.
_EXACT = 2**53


def _extras(attrs: dict[str, Any]) -> dict[str, Any] | None:
    """The attributes ``extra=`` (or a filter, adapter or formatter) added to a record."""
    # Extras come after the standard attributes (LogRecord.__init__ sets those
    # first; makeRecord, record factories and filters add theirs later), so
    # only the tail is read, in C. A formatter that ran before us may have
    # added "message"/"asctime" there: filtered out on the rare path.
    extras = dict(islice(attrs.items(), _PLAIN_RECORD_LEN, None))
    if not STANDARD_RECORD_ATTRS.isdisjoint(extras):
        # A filter that deleted an attribute __init__ sets and set it again moved
        # it to the end: extras may sit before the tail then. Read them all.
        source = extras if _INIT_ATTRS.isdisjoint(extras) else attrs
        extras = {k: v for k, v in source.items() if k not in STANDARD_RECORD_ATTRS}
    return extras or None


def _is_own_logger(name: object) -> bool:
    # makeLogRecord() can build records with no name, or a non-string one.
    return isinstance(name, str) and (name == _own_logger.name or name.startswith(_OWN_PREFIX))


class LogDNAHandler(logging.Handler):
    """Ships records to LogDNA / Mezmo.

    Give it the Client options as keyword arguments (``key``, ``app``, ``env``,
    ``hostname``, ``tags``, ...; all accept strings, for dictConfig), or a
    ``client=`` to share one pipeline between several handlers/processors.

    The shipped line is the formatted message (the handler's formatter when
    one is set, else ``record.getMessage()`` plus any exception and stack
    text); level is ``record.levelname``; timestamp is ``record.created``; meta
    holds every ``extra=`` attribute.
    """

    def __init__(self, *, client: Client | None = None, **options: Any) -> None:
        if client is not None and options:
            raise ConfigurationError(
                "pass either client= or options (" + ", ".join(sorted(options)) + "), not both"
            )
        level = options.get("level", 0)
        self._owns_client = client is None
        self._client = client if client is not None else Client(**options)
        super().__init__(self._client.config.level if self._owns_client else level)
        builder = self._builder = self._client._builder
        #: Level name -> (low, high, rest): ``rest`` ends an inline entry (the
        #: timestamp, then the level's tail: level, app, env) for records whose
        #: ``created * 1000`` is in [low, high), the millisecond the level's last
        #: inline record fell in. A burst of records pays for the timestamp's
        #: conversion and formatting once a millisecond, not once a line.
        self._stamps: dict[str, tuple[float, float, str]] = {}
        self._tails: dict[str, str] = {}
        #: The same for lines with meta: ``rest`` ends with ``"meta":``.
        self._meta_stamps: dict[str, tuple[float, float, str]] = {}
        self._meta_json = builder.meta_json
        #: Entries up to this size (with ENTRY_OVERHEAD) are queued as built inline:
        #: their text is within max_line_length, so encode() would not cut it.
        self._inline_max = builder.entry_max + ENTRY_OVERHEAD
        # A formatter of our own, so that logging.basicConfig() does not give this
        # handler its "LEVEL:name:message" one (the level already ships as a field).
        # Identity with it selects the fast path; setFormatter() still wins.
        self._default_formatter = _MessageFormatter()
        self.formatter = self._default_formatter
        self._skip_names: dict[object, bool] = {}
        #: The name of a logger known not to be the library's own (see _is_own).
        self._last_name: object = None
        #: What the C handle needs of this handler (None: the Python one runs).
        self._fast: object = self._speedups_state()

    def _speedups_state(self) -> object:
        """The C ``handle``'s state for this handler, or None to run the Python one.

        None when the C code is not there, when ``LOGDNA_CLIENT_PURE_PYTHON`` is
        set to anything but "" or "0", and when no record can be built inline
        anyway.
        """
        if _speedups is None or self._inline_max <= ENTRY_OVERHEAD:
            return None
        if os.environ.get("LOGDNA_CLIENT_PURE_PYTHON", "") not in ("", "0"):
            return None
        try:
            return _speedups.State(
                record_type=logging.LogRecord,
                probe=_probe(),
                client=self._client,
                stamps=self._stamps,
                meta_stamps=self._meta_stamps,
                dumps=orjson.dumps,
                safe_keys=self._builder.meta_safe_keys,
                standard_attrs=STANDARD_RECORD_ATTRS,
                init_attrs=_INIT_ATTRS,
                max_depth=MAX_DEPTH,
                default_formatter=self._default_formatter,
                context=_context,
                context_var=_context._request_context,
                sender_threads=SENDER_THREADS,
                busy_threads=BUSY_THREADS,
                escape=_escape,
                line_head=LINE_HEAD,
                queue=LogDNAHandler._queue,
                inline_max=self._inline_max,
                entry_overhead=ENTRY_OVERHEAD,
                plain_len=_PLAIN_RECORD_LEN,
                by_referents=_by_referents(),
            )
        except Exception:  # e.g. the attributes could not be located on a probe
            return None

    @property
    def client(self) -> Client:
        """The Client this handler ships through."""
        return self._client

    def __repr__(self) -> str:
        return f"<{type(self).__name__} ({logging.getLevelName(self.level)}) {self._client!r}>"

    def handle(self, record: logging.LogRecord) -> bool:
        """Filter, serialize and queue the record; never raises, never blocks on I/O.

        This replaces ``Handler.handle`` rather than ``emit`` alone: the handler
        lock it would take guards nothing here (the buffer is safe on its own)
        and costs more than the rest with several threads; and one call less
        per line matters on this path.

        The common record (a str message formatted by ``%``, no traceback, no
        extras, no request context, the default formatter) is built and queued
        right here, as one f-string: every call and allocation saved on this
        path is a saving on every line the application logs. Anything else goes
        to ``_ship``.
        """
        if self.filters:
            result: Any = self.filter(record)
            if not result:
                return False
            if isinstance(result, logging.LogRecord):  # Python 3.12+ filters may swap records
                record = result
        current = get_ident()
        try:
            # With logging.logThreads off a record has no thread: the one running is it.
            thread = record.thread if record.thread is not None else current
            made_on_sender = thread in SENDER_THREADS and record.process in (None, getpid())
            name = record.name
        except Exception:  # a record stripped of standard attributes: ship what it has
            made_on_sender, name = False, None
        if made_on_sender:
            return True  # made by urllib3/requests on a sender thread
        if name is not self._last_name and self._is_own(name):
            return True
        if current in BUSY_THREADS:
            return self._handle_nested(record, current)
        busy = BUSY_THREADS
        busy.add(current)
        try:
            msg = record.msg
            if (
                type(msg) is str
                and self.formatter is self._default_formatter
                and not (record.exc_info or record.exc_text or record.stack_info)
            ):
                args = record.args
                try:
                    text = msg % args if args else msg  # getMessage(), one call less
                except Exception as exc:
                    text = _unformattable(record, exc)
                stamp = self._stamps.get(record.levelname)
                created = record.created
                # __dict__ after the other reads: on 3.11+ reading it makes the record
                # build a dict, and attribute reads after that are slower. A formatter
                # that ran first may have added message/asctime: no meta either.
                attrs = record.__dict__
                meta = None if len(attrs) == _PLAIN_RECORD_LEN else _extras(attrs)
                if meta is None:
                    if stamp is not None and text and not (_context.in_use and request_context()):
                        low, high, rest = stamp
                        try:
                            millis = created * 1000
                            if not low <= millis < high:
                                rest = self._new_stamp(record.levelname, millis, self._stamps)
                            entry = f"{LINE_HEAD}{_escape(text)}{rest}".encode()
                            size = len(entry) + ENTRY_OVERHEAD
                            # Within this, encode() would not cut the text either.
                            if size <= self._inline_max:
                                # Buffer.put_entry, inlined (its lock-free protocol).
                                buffer = self._client._buffer
                                if buffer.queued_bytes + size <= buffer.fast_limit:
                                    buffer.queued_bytes += size
                                    buffer.entries.append(entry)
                                else:
                                    self._client.put_entry(entry)
                                return True
                        except (TypeError, ValueError, OverflowError, UnicodeEncodeError):
                            pass  # NaN, infinite or odd created; a lone surrogate: _ship copes
                elif stamp is not None and self._inline_meta(record, text, meta):
                    return True
            else:
                text, meta = self._text_and_meta(record)
            self._ship(record, text, meta)
        except Exception:
            self._failed(record)
        finally:
            busy.discard(current)
        return True

    def _handle_nested(self, record: logging.LogRecord, current: int) -> bool:
        """A record logged while this thread is inside a handler or processor of ours:
        by a signal handler or finalizer that interrupted it, or by a ``__str__`` or
        formatter it called. One level deep it ships, by the general path; deeper is
        a loop in the making, dropped and counted as ``reentrant``."""
        if current in NESTED_THREADS:
            self._client._count_drop("reentrant")
            return True
        NESTED_THREADS.add(current)
        try:
            text, meta = self._text_and_meta(record)
            self._ship(record, text, meta)
        except Exception:
            self._failed(record)
        finally:
            NESTED_THREADS.discard(current)
        return True

    def _failed(self, record: logging.LogRecord) -> None:
        """A record no line could be built for: counted as ``error``, then the stdlib's say."""
        self._client._count_drop("error")
        self.handleError(record)

    def _queue(self, record: logging.LogRecord, entry: bytes) -> bool:
        """Queue an entry the C ``handle`` built, when the buffer wants its locked path."""
        # Guarded as handle guards it: a signal handler or finalizer that logs while
        # this thread holds the buffer's lock is dropped as re-entry, not deadlocked.
        current = get_ident()
        BUSY_THREADS.add(current)
        try:
            self._client.put_entry(entry)
        except Exception:
            self._failed(record)
        finally:
            BUSY_THREADS.discard(current)
        return True

    def _is_own(self, name: object) -> bool:
        """Whether ``name`` is one of the library's own loggers (answers are cached)."""
        try:
            own = self._skip_names.get(name)
            if own is None:
                if len(self._skip_names) >= 1024:  # names made per request, say: stay bounded
                    self._skip_names.clear()
                own = self._skip_names[name] = _is_own_logger(name)
        except Exception:  # an unhashable name (makeLogRecord), or one whose hash raises
            return False  # the library's own names are plain strings
        if not own:
            # The same logger's next records skip even the lookup: its name is the
            # same object every time.
            self._last_name = name
        return own

    def _new_stamp(
        self, level: str, millis: float, stamps: dict[str, tuple[float, float, str]]
    ) -> str:
        """The end of an inline entry for a record of ``level`` at ``millis`` ms; cached.

        Once a millisecond at most per level: the timestamp is converted and
        formatted here, as ``int(created * 1000)`` like the general path.
        ``stamps`` is ``_stamps`` (lines without meta: the entry ends here) or
        ``_meta_stamps`` (the entry goes on with the meta object and a brace).
        """
        whole = int(millis)
        tail = self._tails[level]
        if stamps is self._meta_stamps:
            tail = tail[:-1] + ',"meta":'
        rest = f',"timestamp":{whole}{tail}'
        if 0 <= whole < _EXACT:
            # [whole, whole + 1) holds exactly the values int() takes to whole: not
            # so below 0 (int() rounds towards 0) or where floats skip integers.
            stamps[level] = (float(whole), float(whole + 1), rest)
        return rest

    def _inline_meta(self, record: logging.LogRecord, text: str, meta: dict[str, Any]) -> bool:
        """Queue a line with ``extra=`` meta as ``handle`` does lines without; False
        when ``_ship`` must build it instead (request context, values orjson does
        not know, a line over the cap, odd times). The bytes, secrets redacted,
        are those ``plain`` makes: both serialize meta with ``meta_json``.
        """
        if not text or (_context.in_use and request_context()):
            return False
        level = record.levelname
        try:
            data = self._meta_json(meta)
            low, high, rest = self._meta_stamps.get(level, _NO_STAMP)
            millis = record.created * 1000
            if not low <= millis < high:
                rest = self._new_stamp(level, millis, self._meta_stamps)
            entry = f"{LINE_HEAD}{_escape(text)}{rest}{data.decode()}}}".encode()
        except (TypeError, ValueError, OverflowError, UnicodeEncodeError):
            return False
        size = len(entry) + ENTRY_OVERHEAD
        if size > self._inline_max:
            return False
        self._client.put_entry(entry)
        return True

    def _text_and_meta(self, record: logging.LogRecord) -> tuple[str, dict[str, Any] | None]:
        """The line and meta of a record ``handle`` does not format itself."""
        attrs = record.__dict__
        msg = record.msg
        if type(msg) is dict and "_logger" in attrs:
            # structlog's ProcessorFormatter.wrap_for_formatter: the event dict is
            # the message; its keys are meta, structlog's bookkeeping is not.
            return event_dict_to_line(
                msg, {k: v for k, v in attrs.items() if k not in _STRUCTLOG_SKIP}
            )
        try:
            text = self.format(record)
        except Exception as exc:
            text = _unformattable(record, exc)
        return text, _extras(attrs) if len(attrs) != _PLAIN_RECORD_LEN else None

    def _ship(self, record: logging.LogRecord, text: str, meta: dict[str, Any] | None) -> None:
        """Queue a line ``handle`` did not build inline (meta, request context, odd values)."""
        context = request_context()
        if context:
            meta = {**context, **meta} if meta else dict(context)
        level = record.levelname
        if type(level) is not str:  # a record made by hand, or changed by a filter
            level = safe_str(level)
        if level not in self._stamps:
            # Ready the inline path for this level's next records (level names are
            # few; a flood of odd ones is not remembered).
            tail = self._builder.tail(level)
            if tail is not None and len(self._stamps) < 64:
                self._tails[level] = tail
                self._stamps[level] = _NO_STAMP
        entry = self._builder.entry(text, level, _millis(record.created), meta)
        if entry is not None:
            self._client.put_entry(entry)

    def emit(self, record: logging.LogRecord) -> None:
        """Ship one record (``handle`` does the work; filters apply here too)."""
        self.handle(record)

    def flush(self, timeout: float | None = 5.0) -> None:
        """Wait (up to ``timeout``) for queued lines to be delivered.

        From ``logging.shutdown()`` (which holds this handler's lock and closes
        it next) the wait is part of the process's one exit deadline instead.
        """
        client = self._client
        if _exit.owns(self.lock):
            deadline = _exit.exit_deadline(client.config.shutdown_timeout)
            client.flush(max(0.0, deadline - time.monotonic()))
        else:
            client.flush(timeout)

    def close(self) -> None:
        """Deliver what is queued within ``shutdown_timeout`` and stop the sender.

        A handler built with ``client=`` leaves the shared client running. From
        ``logging.shutdown()`` the deadline is the process's one exit deadline.
        """
        try:
            if self._owns_client:
                client = self._client
                if _exit.owns(self.lock):
                    timeout = client.config.shutdown_timeout
                    client._close_by(_exit.exit_deadline(timeout), timeout)
                else:
                    client.close()
        finally:
            super().close()

    def handleError(self, record: logging.LogRecord) -> None:
        # The stdlib prints to stderr (never stdout) when logging.raiseExceptions is on.
        try:
            super().handleError(record)
        except Exception:
            pass


if _speedups is not None:
    # handle() in C for the common record; it calls the Python method above for
    # every other record. A class attribute, like the function it replaces.
    LogDNAHandler.handle = _speedups.Handle(LogDNAHandler.handle)  # type: ignore[method-assign]


def _probe() -> logging.LogRecord:
    """A fresh record as logging makes one without ``extra=``."""
    return logging.LogRecord("probe", logging.INFO, __file__, 1, "probe %s", ("x",), None)


@functools.cache
def _by_referents() -> bool:
    """Whether extras change what the garbage collector sees a record refer to:
    then the C code tells plain records by that, without building their dict
    (3.11+; on 3.10 a record's dict always exists and is all it refers to)."""
    plain = _speedups.referents(_probe())
    with_extra = _probe()
    with_extra.__dict__["user_id"] = 1  # as makeRecord adds extra=
    set_extra = _probe()
    set_extra.user_id = 1  # as a filter or adapter might
    return plain not in (_speedups.referents(with_extra), _speedups.referents(set_extra))


class _MessageFormatter(logging.Formatter):
    """The default: the message, then any traceback and stack, not cached into the record."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            text = record.getMessage()
        except Exception as exc:  # the traceback still ships, with a marker for the message
            text = _unformattable(record, exc)
        exc_text = record.exc_text
        if not exc_text and record.exc_info:
            exc_text = self.formatException(record.exc_info)
        if exc_text:
            text = f"{text}\n{exc_text}" if text else exc_text
        if record.stack_info:
            text = f"{text}\n{record.stack_info}" if text else record.stack_info
        return text


def _millis(created: object) -> int:
    """``created`` in epoch milliseconds; now, where it is not a usable time (NaN, a string)."""
    if not isinstance(created, str | bytes):  # a number of any kind (a Decimal, say)
        try:
            return int(created * 1000)  # type: ignore[operator]
        except Exception:  # NaN, infinite, None, an object
            pass
    return int(time.time() * 1000)


def _unformattable(record: logging.LogRecord, exc: Exception) -> str:
    """A best-effort line for a record whose message cannot be formatted."""
    try:
        args = repr(record.args)
    except Exception:
        args = "<unprintable args>"
    detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return (
        f"{safe_str(record.msg)} [logdna_client: message could not be formatted "
        f"({safe_str(detail)}); args={args[:1000]}]"
    )
