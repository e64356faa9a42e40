"""structlog integration: ``LogDNAProcessor`` ships each event, then passes it on.

Put the processor anywhere in the chain before the renderer::

    import structlog
    from logdna_client.structlog import LogDNAProcessor

    structlog.configure(processors=[
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso"),
        LogDNAProcessor(app="api"),          # key from LOGDNA_INGESTION_KEY
        structlog.dev.ConsoleRenderer(),
    ])

This module only handles dicts: importing it does not import structlog, and
``import logdna_client`` never imports this module.

The mapping from an event dict to a line (``event_dict_to_line``, in
``_event.py``) is shared with the stdlib handler, for events that reach it
through ``structlog.stdlib.ProcessorFormatter.wrap_for_formatter``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping, MutableMapping
from threading import get_ident
from typing import TYPE_CHECKING, Any, cast

from typing_extensions import Unpack

from . import _context, _native
from ._client import Client
from ._config import level_beside_client
from ._event import (
    LEVEL_KEY,
    LEVELS,
    TEXT_KEY,
    TIME_KEY,
    UNUSUAL_KEYS,
    event_dict_to_line,
    event_line,
    level_name,
    level_of,
    passes,
    shown_exc_info,
    structured_event,
    timestamp_of,
)
from ._line import created_millis, now_millis, safe_str
from ._options import ClientOptions, with_options_help
from ._redact import bytes_text
from ._report import is_own_logger
from ._secret import hide_key
from ._threads import (
    SENDER_THREADS,
    finalizing,
    made_on_sender,
    marks_for,
    raised_by_signal_handler,
)

__all__ = ["LogDNAProcessor", "event_dict_to_line", "level_of", "timestamp_of"]

#: LogDNAProcessor's base: with the C extension, its type whose call builds the
#: common event in C (``_ship_common``'s job) and hands every other to
#: ``_process``, with no Python frame in between (see _native.py); without it,
#: nothing, and calling the processor runs ``_process`` itself.
if TYPE_CHECKING:

    class _NativeCall:
        """What the type checker knows of the C base (``_speedups.EventHandle``)."""

        _native_buffer: object  # the buffer it queues to
        _native_lines: int  # entries it built

        def __init__(self, **pieces: Any) -> None: ...

else:
    _NativeCall = _native.speedups.EventHandle if _native.speedups is not None else object


#: ``_ship_common``'s rules, for it and the C call: the keys that are not meta ->
#: None: the text and level; True: the time, when ``timestamp_of`` reads it; False:
#: the event is not common (traces and bookkeeping: ``_ship`` maps it).
_KEY_KINDS = {TEXT_KEY: None, LEVEL_KEY: None, TIME_KEY: True, **dict.fromkeys(UNUSUAL_KEYS, False)}
#: The keys ``_ship_common`` takes out of meta, the time aside.
_TAKEN = tuple(key for key, kind in _KEY_KINDS.items() if kind is None)


class LogDNAProcessor(_NativeCall):
    """A structlog processor that ships a copy of each event to LogDNA / Mezmo.

    Returns the event dict unchanged, so processors after it (the renderer)
    still run. Never raises and never blocks on I/O: a line that cannot be
    built is reported (rate-limited) through the ``logdna_client`` logger.

    Args:
        client: A ``Client`` to share (with a ``LogDNAHandler``, say). When
            given, no other option may be.
        **options: ``Client`` options (``key``, ``app``, ``env``, ``tags``,
            ``level``, ...; strings accepted) to build a client of its own.

    The line is the ``event`` text; the level comes from the ``level`` key
    (``structlog.processors.add_log_level``) or the method name; the timestamp
    from a ``timestamp`` key in epoch seconds/milliseconds or ISO-8601, else
    now; every other key, including ``structlog.contextvars`` ones and the
    request context of ``logdna_client.contrib``, becomes meta. Exceptions
    (``exc_info``, or an ``exception`` string from ``format_exc_info``) and
    stacks are appended to the line.

    .. versionadded:: 0.1.0
    """

    __slots__ = (
        "_builder",
        "_client",
        "_entry",
        "_levels",
        "_max_chars",
        "_meta_json",
        "_min_level",
        "_owns_client",
        "_structured",
        "_with_exception",
    )

    def __init__(self, *, client: Client | None = None, **options: Unpack[ClientOptions]) -> None:
        options = cast(ClientOptions, hide_key(dict(options)))  # first: no frame holds the key
        if getattr(self, "_client", None) is not None:
            # Its C part holds the first client's pieces (and a call under way may use them).
            raise TypeError("the processor is initialised already")
        own_level = level_beside_client(client, options)
        self._owns_client = client is None
        self._client = client if client is not None else Client(**options)
        self._builder = builder = self._client._builder
        # Beside client= and not given: the client's level (a processor has no logger's).
        self._min_level = self._client.config.level if own_level is None else own_level
        # The common event's pieces (see _ship_common).
        self._entry = builder.entry
        self._max_chars = builder.plain_max_chars
        self._meta_json = builder.meta_json
        #: Whether an ``event`` that is a dict or a list ships as itself (OTLP's body).
        self._structured = self._client.config.protocol == "otlp"
        if self._structured:
            from ._otlp import with_exception  # noqa: PLC0415 - loaded only for OTLP

            #: The exc_info's exception.type and .message, as meta (see the handler's).
            self._with_exception = with_exception
        # Method names and ``level`` values it knows -> their level names (level_of's),
        # only those at or above the processor's level: one lookup does both.
        self._levels = {
            name: level
            for name in (*LEVELS, *(name.upper() for name in LEVELS))
            if self._passes(level := level_of(name, {}))
        }
        if _NativeCall is not object:
            # slow and queue always; the rest only where C is to build the common event
            # (C does _ship_common's work: not for a subclass with one of its own).
            builds = type(self)._ship_common is LogDNAProcessor._ship_common
            builds = builds and not _native.pure_python_asked() and _native.enabled(builder)
            native = builds and {
                "levels": self._levels,
                "key_kinds": _KEY_KINDS,
                # C reads time.time at each call, as the Python code does (a clock
                # patched later, by freezegun say, is the one used).
                "time": time,
                "timestamp_of": timestamp_of,
                **_native.pieces(builder, self._client._buffer),
            }
            slow, queue = LogDNAProcessor._process, LogDNAProcessor._queue_built
            try:
                _NativeCall.__init__(self, slow=slow, queue=queue, **(native or {}))
            except Exception:  # an unusable build that takes other arguments: Python only
                _NativeCall.__init__(self, slow=slow, queue=queue)

    @property
    def client(self) -> Client:
        """The Client this processor ships through."""
        return self._client

    def __repr__(self) -> str:
        # Safe half-built too (its Client refused an option): tracebacks show it.
        return f"<{type(self).__name__} {getattr(self, '_client', None)!r}>"

    def _passes(self, level: str) -> bool:
        """Whether a line at ``level`` is at or above the client's level."""
        return passes(level, self._min_level)

    def __copy__(self) -> LogDNAProcessor:
        # A handle on its client's pipeline, as a logger is: a copy would share it anyway.
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> LogDNAProcessor:
        return self

    def _process(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """Ship the event (see the class's docstring) and return it unchanged."""
        thread = get_ident()
        if thread in SENDER_THREADS and not finalizing(thread, _logger_of(event_dict)):
            return event_dict  # on a sender thread (urllib3), but for a finalizer's event
        marks = marks_for(thread)  # nested in one of ours already, or deeper: see there
        if marks is None:
            self._client._count_drop("reentrant")
            return event_dict
        try:
            marks.add(thread)  # inside the try: see LogDNAHandler._deliver
            if type(event_dict) is not dict or not self._ship_common(method_name, event_dict):
                self._ship(method_name, event_dict)
        except Exception as exc:
            if raised_by_signal_handler(exc):
                raise
            self._failed()
        finally:
            marks.discard(thread)
        return event_dict

    if _NativeCall is object:
        # No C extension: the call is this method itself (with it, the C base's call
        # runs first and calls this method for every event but the common one).
        __call__ = _process

    def _failed(self) -> None:
        """Count and report (rate-limited) an event that could not be shipped."""
        self._client._count_drop("error")
        with contextlib.suppress(Exception):
            self._client._reporter.report(
                "structlog-event", logging.WARNING,
                "logdna_client: a structlog event could not be shipped", exc_info=True,
            )  # fmt: skip

    def _queue_built(self, event_dict: Any, entry: bytes) -> Any:
        """Queue an entry the C call built, when the buffer wants its locked path."""
        try:
            self._native_buffer = _native.put_built(self._client, entry)
        except Exception as exc:
            if raised_by_signal_handler(exc):
                raise
            self._failed()
        return event_dict

    def _ship_common(self, method_name: str, event_dict: dict[str, Any]) -> bool:
        """Ship the common event, in one go; False (nothing done) for any other.

        Common: str keys, a str ``event`` of 1 to ``plain_max_chars`` characters
        (the texts ``LineBuilder.entry`` builds on its fast path), a level
        known to pass, a ``timestamp`` (if any) that is a time, no trace or
        bookkeeping key, meta that orjson writes as it is. ``_ship`` makes the
        same bytes for it, only slower. The C call (``event_entry`` in
        _speedups.c) mirrors this method for the commonest of these events (flat
        scalar meta under keys the redactor found safe, no request context), so a
        change of rule here is made there too (tests/test_speedups_events.py
        compares them).
        """
        text = event_dict.get(TEXT_KEY)
        raw = event_dict.get(LEVEL_KEY, method_name)
        level = self._levels.get(raw) if type(raw) is str else None
        if level is None or type(text) is not str or not 0 < len(text) <= self._max_chars:
            return False
        meta: dict[str, Any] | None = None
        ts = None
        if len(event_dict) > 1:
            if not UNUSUAL_KEYS.isdisjoint(event_dict):
                return False
            meta = event_dict.copy()
            for key in _TAKEN:
                meta.pop(key, None)
            if TIME_KEY in meta:
                ts = timestamp_of(meta.pop(TIME_KEY))
                if ts is None:  # not a time: _ship keeps it as meta
                    return False
        if _context.in_use:
            extra = _context.current()
            if extra:
                meta = _context.with_context(meta, extra)
        data = None
        if meta:
            try:
                data = self._meta_json(meta)
            except TypeError:  # a key that is not a str, or a value orjson does not know
                return False
        else:
            meta = None
        entry = self._entry(text, level, now_millis() if ts is None else ts, meta, data)
        if entry is not None:
            self._client.put_entry(entry)
        return True

    def _ship(self, method_name: str, event_dict: Any) -> None:
        """Any event: the general mapping (``event_dict_to_line``) and ``LineBuilder.entry``."""
        builder = self._builder
        if type(event_dict) is not dict and not isinstance(event_dict, Mapping):
            # A renderer ran before us: ship what it rendered (bytes, from an orjson
            # JSONRenderer, as their text: decoded as meta's bytes are).
            if isinstance(event_dict, bytes | bytearray):
                text = bytes_text(event_dict)
            else:
                text = event_dict if isinstance(event_dict, str) else safe_str(event_dict)
            level = level_name(method_name)
            if self._passes(level):
                entry = builder.entry(text, level, now_millis(), None, None)
                if entry is not None:
                    self._client.put_entry(entry)
            return
        record = event_dict.get("_record")
        name = getattr(record, "name", None) if record is not None else None
        if is_own_logger(name):
            return  # our own trouble, through a ProcessorFormatter: never ship it
        if record is not None and made_on_sender(record, get_ident()):
            # urllib3's lines of our own requests, handed to a ProcessorFormatter on
            # another thread (a QueueListener's): shipping them would make more requests.
            return
        level = level_of(method_name, event_dict)
        if not self._passes(level):
            return
        context = _context.current() if _context.in_use else None
        text, meta, ts = event_line(event_dict, context, builder.redact_meta)
        if ts is None:
            # (A record's time as the handler ships it: created_millis, NaN and all.)
            created = getattr(record, "created", None)
            ts = now_millis() if record is None else created_millis(created)
        body = None
        if self._structured:
            body = structured_event(event_dict)
            if "exc_info" in event_dict:
                meta = self._with_exception(meta, shown_exc_info(event_dict))
        if body is None:
            entry = builder.entry(text, level, ts, meta, None)
        else:
            entry = builder.structured_entry(body, text, level, ts, meta)
        if entry is not None:
            self._client.put_entry(entry)

    def flush(self, timeout: float | None = 5.0) -> bool:
        """Wait (up to ``timeout`` seconds) until queued lines were delivered."""
        return self._client.flush(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is queued and stop, unless the client was given with ``client=``."""
        if self._owns_client:
            self._client.close(timeout)


LogDNAProcessor.__doc__ = with_options_help(LogDNAProcessor.__doc__)


def _logger_of(event_dict: object) -> object:
    """The logger name of the stdlib record a ProcessorFormatter hands over in the event
    (None: a structlog call's own event)."""
    record = event_dict.get("_record") if isinstance(event_dict, dict) else None
    return getattr(record, "name", None) if record is not None else None
