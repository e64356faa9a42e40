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

The mapping from an event dict to a line (``event_dict_to_line``) is shared
with the stdlib handler, for events that reach it through
``structlog.stdlib.ProcessorFormatter.wrap_for_formatter``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import math
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, MutableMapping
from types import TracebackType
from typing import Any, cast

from typing_extensions import Unpack

from . import _context
from ._client import Client
from ._config import hide_key
from ._errors import ConfigurationError
from ._line import safe_str
from ._options import ClientOptions, with_options_help
from ._threads import BUSY_THREADS, NESTED_THREADS, SENDER_THREADS

__all__ = ["LogDNAProcessor", "event_dict_to_line", "level_of", "timestamp_of"]

# structlog method names (and ``level`` values) -> the level names LogDNA shows.
_LEVELS: dict[str, str] = {
    "debug": "DEBUG",
    "info": "INFO",
    "msg": "INFO",
    "log": "INFO",
    "warning": "WARNING",
    "warn": "WARNING",
    "error": "ERROR",
    "exception": "ERROR",
    "err": "ERROR",
    "critical": "CRITICAL",
    "fatal": "CRITICAL",
    "notset": "NOTSET",
    "trace": "TRACE",
}
_LEVELNOS: dict[str, int] = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
    "NOTSET": logging.NOTSET,
    "TRACE": 5,
}

# Keys that become part of the line itself (text, level, timestamp), or that are
# structlog's bookkeeping and mean nothing in LogDNA.
_LINE_KEYS = frozenset({"event", "level", "timestamp", "exc_info", "exception", "stack",
                        "stack_info"})  # fmt: skip
_INTERNAL_KEYS = frozenset({"_record", "_from_structlog", "_logger", "_name"})
_NOT_META = _LINE_KEYS | _INTERNAL_KEYS

_OWN_LOGGER = "logdna_client"
_NO_EVENT_LIMIT = 1000


def level_of(method_name: str, event_dict: Mapping[str, Any]) -> str:
    """The line's level: the ``level`` key (``add_log_level``), else the method name."""
    raw = event_dict.get("level")
    if raw is None:
        raw = method_name
    if isinstance(raw, int) and not isinstance(raw, bool):
        return logging.getLevelName(raw) if raw in _LEVEL_BY_NO else f"Level {raw}"
    name = raw if type(raw) is str else safe_str(raw)
    found = _LEVELS.get(name)
    if found is not None:
        return found
    found = _LEVELS.get(name.lower())
    return found if found is not None else (name.upper()[:80] or "INFO")


_LEVEL_BY_NO = frozenset({logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR,
                          logging.CRITICAL, logging.NOTSET})  # fmt: skip


def timestamp_of(value: object) -> int | None:
    """Epoch milliseconds from a ``timestamp`` value, or None when it is not one.

    Accepts epoch seconds or milliseconds (int, float or numeric text), ISO-8601
    text (``TimeStamper(fmt="iso")``; a trailing ``Z`` is fine, text without an
    offset is local time) and datetimes.
    """
    try:
        if isinstance(value, bool):
            return None
        if isinstance(value, int | float):
            number = float(value)
        elif isinstance(value, str):
            text = value.strip()
            try:
                number = float(text)
            except ValueError:
                if text.endswith(("Z", "z")):
                    text = text[:-1] + "+00:00"
                return int(_dt.datetime.fromisoformat(text).timestamp() * 1000)
        elif isinstance(value, _dt.datetime):
            return int(value.timestamp() * 1000)
        else:
            return None
        # Beyond year ~5000 in milliseconds is not a timestamp (and would not fit JSON's int64).
        if not math.isfinite(number) or number <= 0 or number >= 1e14:
            return None
        # Epoch seconds are ~1.7e9 today, milliseconds ~1.7e12.
        return int(number if number > 1e11 else number * 1000)
    except Exception:
        return None


def _exception_text(exc_info: object) -> str | None:
    """A traceback for ``exc_info``: True, an exception, or a (type, value, tb) tuple."""
    info: tuple[type[BaseException], BaseException, TracebackType | None] | None = None
    if exc_info is True:
        current = sys.exc_info()
        if current[1] is not None:
            info = current
    elif isinstance(exc_info, BaseException):
        info = (type(exc_info), exc_info, exc_info.__traceback__)
    elif isinstance(exc_info, tuple) and len(exc_info) == 3 and exc_info[1] is not None:
        info = exc_info
    if info is None:
        return None
    try:
        return "".join(traceback.format_exception(*info)).rstrip("\n")
    except Exception:  # not a real (type, value, traceback): say what it was
        return f"exc_info={safe_str(exc_info)[:1000]} [logdna_client: not an exception]"


def _no_event_text(
    event_dict: Mapping[str, Any], redact: Callable[[dict[Any, Any]], Any] | None
) -> str:
    """``key=value`` pairs for an event without a message, from the values as meta
    ships them: a secret redacted there is redacted here too."""
    pairs = {key: value for key, value in event_dict.items() if key not in _NOT_META}
    if redact is not None:
        shown = redact(pairs)
        if isinstance(shown, dict):
            pairs = shown
        else:  # the redactor could not read them: show none of them
            return "(event without a message)"
    parts = [f"{safe_str(key)}={safe_str(value)}" for key, value in pairs.items()]
    return " ".join(parts)[:_NO_EVENT_LIMIT]


def event_dict_to_line(
    event_dict: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
    *,
    timestamp_parsed: bool | None = None,
    redact: Callable[[dict[Any, Any]], Any] | None = None,
) -> tuple[str, dict[str, Any] | None]:
    """Split an event dict into the line text and the meta dict (None when empty).

    Text: the ``event`` value (``str()``-ed safely), with any ``exception`` /
    ``exc_info`` traceback and ``stack`` text appended; ``key=value`` pairs when
    there is no ``event``. Meta: every other key (not ``level`` or a
    ``timestamp``, and none of structlog's ``_record``/``_logger`` bookkeeping),
    over ``extra`` (e.g. request context), without changing ``event_dict``.
    A ``timestamp`` that ``timestamp_of`` cannot read stays in meta
    (``timestamp_parsed`` says whether it could, when the caller already knows).
    ``redact`` is the meta redaction the line will get: the ``key=value`` text of
    an event without a message is made from its output.
    """
    event = event_dict.get("event")
    if event is None:
        text = _no_event_text(event_dict, redact) if "event" not in event_dict else "None"
    else:
        text = event if type(event) is str else safe_str(event)

    meta: dict[str, Any] = dict(extra) if extra else {}
    not_meta = _NOT_META
    for key, value in event_dict.items():
        if key not in not_meta:
            meta[key if type(key) is str else safe_str(key)] = value

    if (
        "exc_info" in event_dict
        or "exception" in event_dict
        or "stack" in event_dict
        or ("stack_info" in event_dict)
    ):
        text = _with_traces(text, event_dict, meta)
    if "timestamp" in event_dict and not (
        timestamp_parsed
        if timestamp_parsed is not None
        else timestamp_of(event_dict["timestamp"]) is not None
    ):
        meta["timestamp"] = event_dict["timestamp"]  # not a time we understand: keep it
    return text, meta or None


def _with_traces(text: str, event_dict: Mapping[str, Any], meta: dict[str, Any]) -> str:
    exception = event_dict.get("exception")
    if isinstance(exception, str):
        if exception:
            text = f"{text}\n{exception}"
    elif exception is not None:
        meta["exception"] = exception  # structured (dict_tracebacks): searchable as meta
    elif "exc_info" in event_dict:
        exc_info = event_dict["exc_info"]
        found = _exception_text(exc_info)
        if found:
            text = f"{text}\n{found}"
    for key in ("stack", "stack_info"):
        stack = event_dict.get(key)
        if isinstance(stack, str) and stack:
            text = f"{text}\n{stack}"
            break
        if stack is True:
            frames = traceback.format_stack()[:-4]  # without this module's own frames
            text = f"{text}\nStack (most recent call last):\n{''.join(frames).rstrip()}"
            break
    return text


class LogDNAProcessor:
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

    __slots__ = ("_builder", "_client", "_min_level", "_owns_client")

    def __init__(self, *, client: Client | None = None, **options: Unpack[ClientOptions]) -> None:
        options = cast(ClientOptions, hide_key(dict(options)))  # first: no frame holds the key
        if client is not None and options:
            raise ConfigurationError(
                "pass either client= or options (" + ", ".join(sorted(options)) + "), not both"
            )
        self._owns_client = client is None
        self._client = client if client is not None else Client(**options)
        self._builder = self._client._builder
        self._min_level = self._client.config.level

    @property
    def client(self) -> Client:
        """The Client this processor ships through."""
        return self._client

    def __repr__(self) -> str:
        # Safe half-built too (its Client refused an option): tracebacks show it.
        return f"<{type(self).__name__} {getattr(self, '_client', None)!r}>"

    def __call__(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        thread = threading.get_ident()
        if thread in SENDER_THREADS:
            return event_dict  # on a sender thread (urllib3)
        client = self._client
        # Inside one of our handlers or processors already (a signal handler, a
        # finalizer, a __str__ that logs): see LogDNAHandler._handle_nested.
        marks = NESTED_THREADS if thread in BUSY_THREADS else BUSY_THREADS
        if thread in marks:
            client._count_drop("reentrant")
            return event_dict
        marks.add(thread)
        try:
            self._ship(method_name, event_dict)
        except Exception:
            client._count_drop("error")
            with contextlib.suppress(Exception):
                client._reporter.report(
                    "structlog-event", logging.WARNING,
                    "logdna_client: a structlog event could not be shipped", exc_info=True,
                )  # fmt: skip
        finally:
            marks.discard(thread)
        return event_dict

    def _ship(self, method_name: str, event_dict: Any) -> None:
        if type(event_dict) is not dict and not isinstance(event_dict, Mapping):
            # A renderer ran before us: ship what it rendered.
            text = event_dict if isinstance(event_dict, str) else safe_str(event_dict)
            level = _LEVELS.get(method_name, "INFO")
            if _LEVELNOS.get(level, logging.INFO) >= self._min_level:
                entry = self._builder.entry(text, level, int(time.time() * 1000))
                if entry is not None:
                    self._client.put_entry(entry)
            return
        record = event_dict.get("_record")
        if record is not None and getattr(record, "name", "").startswith(_OWN_LOGGER):
            return  # our own trouble, through a ProcessorFormatter: never ship it
        level = level_of(method_name, event_dict)
        if self._min_level and _LEVELNOS.get(level, logging.INFO) < self._min_level:
            return
        ts = timestamp_of(event_dict["timestamp"]) if "timestamp" in event_dict else None
        text, meta = event_dict_to_line(
            event_dict,
            _context.current(),
            timestamp_parsed=ts is not None,
            redact=self._builder.redact_meta,
        )
        if ts is None:
            created = getattr(record, "created", None) if record is not None else None
            ts = int((created if isinstance(created, float) else time.time()) * 1000)
        entry = self._builder.entry(text, level, ts, meta)
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
