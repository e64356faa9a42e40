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
import re
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
    "event_line",
    "level_name",
    "level_of",
    "levelno_of",
    "passes",
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
# The keys of logging's own arguments (exc_info=, stack_info=): a traceback or a stack
# when their value makes one, never meta.
_TRACE_ARGS = frozenset({"exc_info", "stack_info"})
# Keys that hold a traceback (format_exc_info's ``exception``) or a stack
# (StackInfoRenderer's ``stack``) only when their text is one (see ``_traces``): an
# application's own ``stack="prod-eu-1"`` or ``exception="TimeoutError"`` is meta.
_TRACE_TEXT_KEYS = frozenset({"exception", "stack"})
_TRACE_KEYS = _TRACE_ARGS | _TRACE_TEXT_KEYS
# Keys that become part of the line itself (text, level, timestamp, traces), or that
# are structlog's bookkeeping and mean nothing in LogDNA: never meta.
_LINE_KEYS = frozenset({TEXT_KEY, LEVEL_KEY, TIME_KEY}) | _TRACE_ARGS
_INTERNAL_KEYS = frozenset({"_record", "_from_structlog", "_logger", "_name"})
NOT_META = _LINE_KEYS | _INTERNAL_KEYS
#: Keys that make an event more than text, level, timestamp and meta (traces and
#: bookkeeping, and any key added above): ``event_dict_to_line`` (and nothing
#: quicker) handles those. ``exception`` and ``stack`` too: only it tells whether
#: their value is a trace.
UNUSUAL_KEYS = (NOT_META - {TEXT_KEY, LEVEL_KEY, TIME_KEY}) | _TRACE_TEXT_KEYS

# How the traceback module begins a formatted exception (format_exc_info's text, and
# ExceptionRenderer's with its default formatter): "Traceback (most recent call
# last):", or for an ExceptionGroup "  + Exception Group Traceback (most recent call
# last):"; and the sentence it puts between chained exceptions, where the first one of
# a chain was never raised (so it starts with "ValueError: ..." and no header).
_TRACEBACK_HEADS = (
    "Traceback (most recent call last):",
    "+ Exception Group Traceback (most recent call last):",
)
_CHAIN_SENTENCES = (
    "\n\nThe above exception was the direct cause of the following exception:\n\n",
    "\n\nDuring handling of the above exception, another exception occurred:\n\n",
)
# How StackInfoRenderer (and logging, for stack_info=True) begins a stack.
_STACK_HEAD = "Stack (most recent call last):"

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
    try:
        return millis(_seconds(_dt.datetime.fromisoformat(text)))
    except ValueError:
        if sys.version_info >= (3, 11):
            raise
        return millis(_seconds(_dt.datetime.fromisoformat(_as_310_reads(text))))


#: ISO-8601 forms 3.11's fromisoformat reads and 3.10's does not: a fraction of other
#: than 3 or 6 digits (RFC 3339's nanoseconds, "40.5"), a comma before it, an offset
#: written "+0000" or "+00", and the basic format ("20231114T221320").
_ISO_310 = re.compile(
    r"(\d{4})-?(\d\d)-?(\d\d)(?:([T ])(\d\d):?(\d\d)(?::?(\d\d)(?:[.,](\d+))?)?"
    r"([+-]\d\d(?::?\d\d)?)?)?",
    re.ASCII,
)


def _as_310_reads(text: str) -> str:
    """``text`` rewritten in the one form Python 3.10's fromisoformat reads (on 3.10
    only: ValueError when it is no ISO-8601 date and time this knows)."""
    found = _ISO_310.fullmatch(text)
    if found is None:
        raise ValueError(text)
    year, month, day, sep, hour, minute, second, fraction, offset = found.groups()
    out = f"{year}-{month}-{day}"
    if sep is not None:
        out += f"{sep}{hour}:{minute}:{second or '00'}"
        if fraction:
            out += "." + fraction[:6].ljust(6, "0")  # beyond microseconds: cut, as 3.11 does
        if offset:
            digits = offset[1:].replace(":", "")
            out += f"{offset[0]}{digits[:2]}:{digits[2:4] or '00'}"
    return out


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


def exception_info(
    exc_info: object,
) -> tuple[type[BaseException], BaseException, TracebackType | None] | None:
    """``exc_info`` as logging and structlog take it (True: the exception being handled;
    an exception; a (type, value, traceback) tuple) as such a tuple; None for none."""
    if exc_info is True:
        current = sys.exc_info()
        if current[1] is not None:
            return current
    elif isinstance(exc_info, BaseException):
        return (type(exc_info), exc_info, exc_info.__traceback__)
    elif isinstance(exc_info, tuple) and len(exc_info) == 3 and exc_info[1] is not None:
        return exc_info
    return None


def _exception_text(exc_info: object) -> str | None:
    """A traceback for ``exc_info`` (see ``exception_info``)."""
    info = exception_info(exc_info)
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


def event_line(
    event_dict: Mapping[str, Any],
    extra: Mapping[str, Any] | None,
    redact: Callable[[dict[Any, Any]], Any] | None,
) -> tuple[str, dict[str, Any] | None, int | None]:
    """An event's text and meta (``event_dict_to_line``) and its time in epoch ms: its
    ``timestamp`` as ``timestamp_of`` reads it, None where it has none that is a time.
    The one reading of an event, the processor's and the handler's (a record structlog's
    ``wrap_for_formatter`` made)."""
    ts = timestamp_of(event_dict[TIME_KEY]) if TIME_KEY in event_dict else None
    text, meta = event_dict_to_line(
        event_dict, extra, timestamp_parsed=ts is not None, redact=redact
    )
    return text, meta, ts


def passes(level: str, threshold: int) -> bool:
    """Whether a line at ``level`` (a name) is at or above ``threshold`` (a level number;
    0: every line): the rule of the processor's level, and of the handler's for an
    event's own level."""
    return not threshold or levelno_of(level) >= threshold


def event_dict_to_line(
    event_dict: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
    *,
    timestamp_parsed: bool | None = None,
    redact: Callable[[dict[Any, Any]], Any] | None = None,
) -> tuple[str, dict[str, Any] | None]:
    """Split an event dict into the line text and the meta dict (None when empty).

    Text: the ``event`` value (``str()``-ed safely), with any traceback (an
    ``exception`` that is a formatted one, else ``exc_info``'s) and stack (a
    ``stack`` that is one, else ``stack_info``'s) appended; ``key=value`` pairs
    when there is no ``event``. Meta: every other key (not ``level`` or a
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
    # Before the text and the context: an ``exception`` or ``stack`` that is a trace
    # leaves the event's own keys (a context field of that name stays), one that is
    # not stays among them, in its place.
    traces = _traces(event_dict, own) if not _TRACE_KEYS.isdisjoint(event_dict) else ""
    event = event_dict.get(TEXT_KEY)
    if event is None:
        text = _no_event_text(own, redact) if TEXT_KEY not in event_dict else "None"
    else:
        text = event if type(event) is str else safe_str(event)
    meta: dict[str, Any] = with_context(own, extra) if extra else own
    if traces:
        text += traces
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
    # ``_traces`` is the one home of what appends a traceback or a stack (not
    # exc_info=False, an empty stack, dict_tracebacks' exception or a plain ``stack``
    # value, which are meta). Rare: only a dict or list event with a trace key pays.
    if _TRACE_KEYS.isdisjoint(event_dict) or not _traces(event_dict, {}):
        return event
    return None


def _is_traceback(value: object) -> bool:
    """Whether ``value`` is an exception formatted by the traceback module (as
    structlog's format_exc_info writes ``exception``): text that starts with its
    header, or that chains exceptions with its sentences."""
    if not isinstance(value, str):
        return False  # dict_tracebacks' list of dicts, or an application's value
    if value.startswith(_TRACEBACK_HEADS[0]) or value.lstrip(" ").startswith(_TRACEBACK_HEADS[1]):
        return True
    return any(sentence in value for sentence in _CHAIN_SENTENCES)


def shown_exc_info(event_dict: Mapping[str, Any]) -> object:
    """The event's ``exc_info`` when its text shows that one's traceback (``_traces``):
    None when an ``exception`` that is a formatted traceback is shown in its place."""
    if "exc_info" not in event_dict or _is_traceback(event_dict.get("exception")):
        return None
    return event_dict["exc_info"]


def _traces(event_dict: Mapping[str, Any], own: dict[str, Any]) -> str:
    """The traceback and stack the event's trace keys make, each after a newline
    ("" for none); an ``exception`` or ``stack`` that makes one is taken out of
    ``own`` (the event's meta)."""
    text = ""
    exception = event_dict.get("exception")
    if _is_traceback(exception):
        text = f"\n{exception}"
        own.pop("exception", None)
    elif "exc_info" in event_dict:
        # A real exception wins over an ``exception`` that is no traceback (which
        # stays meta): exc_info=True beside exception="KeyError in cache". (The
        # exc_info shown_exc_info names.)
        found = _exception_text(event_dict["exc_info"])
        if found:
            text = f"\n{found}"
    stack = event_dict.get("stack")
    if isinstance(stack, str) and stack.startswith(_STACK_HEAD):
        own.pop("stack", None)
        return f"{text}\n{stack}"
    stack = event_dict.get("stack_info")
    if isinstance(stack, str) and stack:  # logging's stack text (ProcessorFormatter's)
        return f"{text}\n{stack}"
    if stack is True:
        frames = traceback.format_stack(_caller_frame())
        return f"{text}\n{_STACK_HEAD}\n{''.join(frames).rstrip()}"
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
