"""structlog event dicts -> the parts of a line: text, level, timestamp, meta.

Plain dict handling, needing no structlog: shared by ``LogDNAProcessor`` and by
the stdlib handler, for events that reach it through
``structlog.stdlib.ProcessorFormatter.wrap_for_formatter``. Its own module so
that the handler does not import ``logdna_client.structlog`` (which imports the
Client: a circle).
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from types import FrameType, TracebackType
from typing import Any

from ._context import with_context
from ._line import millis, safe_str

__all__ = [
    "LEVELNOS",
    "LEVELS",
    "LEVEL_KEY",
    "NOT_META",
    "TEXT_KEY",
    "TIME_KEY",
    "UNUSUAL_KEYS",
    "event_dict_to_line",
    "level_name",
    "level_of",
    "levelno_of",
    "timestamp_of",
    "unnamed_level_number",
]

# structlog method names (and ``level`` values) -> the level names LogDNA shows.
LEVELS: dict[str, str] = {
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
LEVELNOS: dict[str, int] = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
    "NOTSET": logging.NOTSET,
    "TRACE": 5,
}

#: The event keys a line's text, level and time come from (structlog's names).
TEXT_KEY, LEVEL_KEY, TIME_KEY = "event", "level", "timestamp"
_TRACE_KEYS = frozenset({"exc_info", "exception", "stack", "stack_info"})
# Keys that become part of the line itself (text, level, timestamp, traces), or that
# are structlog's bookkeeping and mean nothing in LogDNA: never meta.
_LINE_KEYS = frozenset({TEXT_KEY, LEVEL_KEY, TIME_KEY}) | _TRACE_KEYS
_INTERNAL_KEYS = frozenset({"_record", "_from_structlog", "_logger", "_name"})
NOT_META = _LINE_KEYS | _INTERNAL_KEYS
#: Keys that make an event more than text, level, timestamp and meta (traces and
#: bookkeeping, and any key added above): ``event_dict_to_line`` (and nothing
#: quicker) handles those.
UNUSUAL_KEYS = NOT_META - {TEXT_KEY, LEVEL_KEY, TIME_KEY}

_NO_EVENT_LIMIT = 1000


def level_of(method_name: str, event_dict: Mapping[str, Any]) -> str:
    """The line's level: the ``level`` key (``add_log_level``), else the method name."""
    raw = event_dict.get(LEVEL_KEY)
    return level_name(method_name if raw is None else raw)


def level_name(raw: object) -> str:
    """The level name a line ships for ``raw`` (the structlog processor's and
    ``Client.log``'s one rule): a level number as logging names it (``addLevelName``
    names too, "Level 25" for an unnamed one); a name as LEVELS maps it, in any case
    (``warn`` -> WARNING, ``exception`` -> ERROR); logging's name for an unnamed
    level, in any case ("level 35"), as its number; any other name upper-cased."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        return logging.getLevelName(raw)
    name = raw if type(raw) is str else safe_str(raw)
    found = LEVELS.get(name)
    if found is not None:
        return found
    found = LEVELS.get(name.lower())
    if found is not None:
        return found
    number = unnamed_level_number(name)  # "level 35": as the number ships ("Level 35")
    return logging.getLevelName(number) if number is not None else (name.upper() or "INFO")


def levelno_of(name: str) -> int:
    """The level number a level name stands for, to compare with the client's level:
    LEVELNOS's, else one logging knows (``addLevelName``), else the number in
    logging's name for an unnamed level ("Level 35"), else INFO's."""
    found = LEVELNOS.get(name)
    if found is None:
        known = logging.getLevelName(name)  # a name it does not know comes back as text
        if isinstance(known, int):
            return known
        number = unnamed_level_number(name)  # "Level 35": 35, not INFO's 20
        found = logging.INFO if number is None else number
    return found


def unnamed_level_number(name: str) -> int | None:
    """The number in logging's name for a level it has no name for, in any case
    ("Level 35"; "level 35" from a stdlib record through ProcessorFormatter, which
    lower-cases ``levelname``), else None."""
    head, _, digits = name.partition(" ")
    if head.lower() == "level" and digits.isascii() and digits.isdigit() and len(digits) < 6:
        return int(digits)
    return None


def timestamp_of(value: object) -> int | None:
    """Epoch milliseconds from a ``timestamp`` value, or None when it is not one.

    Accepts epoch seconds or milliseconds (any number: int, float, a Decimal, a
    numpy scalar; or numeric text), ISO-8601 text (``TimeStamper(fmt="iso")``; a
    trailing ``Z`` is fine) and datetimes. Text or a datetime without an offset is
    local time, or UTC when that reading is within 15 minutes of now and the local
    one is not.
    """
    try:
        if isinstance(value, str):
            return _text_millis(value.strip())
        if isinstance(value, (int, float)):  # a tuple: ``int | float`` is made anew each call
            return None if isinstance(value, bool) else _number_millis(float(value))
        if isinstance(value, _dt.datetime):
            return millis(_seconds(value))
        if value is not None and not isinstance(value, (bytes, bytearray)):
            return _number_millis(float(value))  # type: ignore[arg-type]  # other numbers
    except Exception:  # not a number (float() refused it), or one whose __float__ raised
        pass
    return None


def _text_millis(text: str) -> int | None:
    # ISO-8601 first where the text starts like a date ("2026-"): the ValueError of
    # float() costs more than the parse. Raises ValueError for text that is neither.
    if text[4:5] == "-":
        try:
            return _iso_millis(text)
        except ValueError:
            pass
    try:
        number = float(text)
    except ValueError:
        return _iso_millis(text)
    return _number_millis(number)


#: Seconds from the time of the call within which a time without an offset that is
#: not local time is read as UTC: under half the smallest offset between zones (30
#: minutes), so its two readings are never both within it.
_NEAR_NOW = 900.0


def _iso_millis(text: str) -> int:
    # A trailing "Z" is UTC (3.10's fromisoformat does not know it).
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    return millis(_seconds(_dt.datetime.fromisoformat(text)))


def _seconds(stamp: _dt.datetime) -> float:
    """Epoch seconds of a datetime; one without an offset is local time, unless it is
    UTC's wall time of the call: TimeStamper's default (utc=True) with a fmt that
    writes no offset ("%Y-%m-%d %H:%M:%S"), or ``datetime.utcnow()``."""
    seconds = stamp.timestamp()
    if stamp.tzinfo is None:
        as_utc = stamp.replace(tzinfo=_dt.timezone.utc).timestamp()
        if as_utc != seconds:
            now = time.time()
            if abs(seconds - now) > _NEAR_NOW and abs(as_utc - now) <= _NEAR_NOW:
                seconds = as_utc
    return seconds


def _number_millis(number: float) -> int | None:
    # Beyond year ~5000 in milliseconds is not a timestamp (and would not fit JSON's int64).
    if not math.isfinite(number) or number <= 0 or number >= 1e14:
        return None
    # Epoch seconds are ~1.7e9 today, milliseconds ~1.7e12.
    return int(number) if number > 1e11 else millis(number)


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


def _no_event_text(pairs: dict[str, Any], redact: Callable[[dict[Any, Any]], Any] | None) -> str:
    """``key=value`` pairs for an event without a message, from its meta as it ships
    (keys as text): a secret redacted there is redacted here too."""
    if redact is not None:
        shown = redact(pairs)
        if isinstance(shown, dict):
            pairs = shown
        else:  # the redactor could not read them: show none of them
            return "(event without a message)"
    parts = [f"{key}={safe_str(value)}" for key, value in pairs.items()]
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
    """
    # One comprehension (the common event's keys are all strings), not a loop. A key
    # that is no str has its text made here, once: the no-message text shows these
    # keys too, and a __str__ may be slow, or answer "user" now and "password" next.
    not_meta = NOT_META
    own = {
        key if type(key) is str else safe_str(key): value
        for key, value in event_dict.items()
        if key not in not_meta
    }
    event = event_dict.get(TEXT_KEY)
    if event is None:
        text = _no_event_text(own, redact) if TEXT_KEY not in event_dict else "None"
    else:
        text = event if type(event) is str else safe_str(event)
    meta: dict[str, Any] = with_context(own, extra) if extra else own

    if not _TRACE_KEYS.isdisjoint(event_dict):
        text = _with_traces(text, event_dict, meta)
    if TIME_KEY in event_dict and not (
        timestamp_parsed
        if timestamp_parsed is not None
        else timestamp_of(event_dict[TIME_KEY]) is not None
    ):
        meta[TIME_KEY] = event_dict[TIME_KEY]  # not a time we understand: keep it
    return text, meta or None


def structured_event(event_dict: Mapping[str, Any]) -> Any:
    """The event's ``event`` when it is a dict or a list and no traceback goes with it:
    the OTLP record's structured body (protocol="otlp"); else None (its text is)."""
    event = event_dict.get(TEXT_KEY)
    if not isinstance(event, Mapping | list | tuple):
        return None
    # ``_with_traces`` is the one home of what appends a traceback or a stack (not
    # exc_info=False, an empty stack, or dict_tracebacks' exception, which is meta):
    # asked of an empty text, it says whether this event has any. Rare: only a dict
    # or list event with a trace key pays for it.
    if _TRACE_KEYS.isdisjoint(event_dict) or not _with_traces("", event_dict, {}):
        return event
    return None


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
            frames = traceback.format_stack(_caller_frame())
            text = f"{text}\nStack (most recent call last):\n{''.join(frames).rstrip()}"
            break
    return text


#: Modules whose frames lie between the application's logging call and here (structlog,
#: logging, this library): a ``stack_info`` stack ends before them, at that call, as
#: structlog's StackInfoRenderer and logging's own ``stack_info`` do.
_MACHINERY = ("logdna_client", "structlog", "logging")


def _caller_frame() -> FrameType | None:
    """The innermost frame outside ``_MACHINERY`` (None when there is none)."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        name = frame.f_globals.get("__name__")
        if not isinstance(name, str) or name.partition(".")[0] not in _MACHINERY:
            return frame
        frame = frame.f_back
    return None
