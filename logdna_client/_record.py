"""What a LogRecord ships as: the attributes that are its meta (``record_meta``, with
its extras), and the text of one whose message cannot be formatted (``unformattable``).

Shared by the handler, its C handle (handed ``STANDARD_KINDS``) and the official
client's per-line options (``_official``), which imports it at the top: it needs no
handler.
"""

from __future__ import annotations

import logging
import traceback
from itertools import islice
from typing import Any

from ._config import INIT_RECORD_ATTRS
from ._line import safe_str

__all__ = [
    "GET_MESSAGE_ATTR",
    "NOT_EXTRAS",
    "PLAIN_RECORD_LEN",
    "STANDARD_KINDS",
    "STANDARD_RECORD_ATTRS",
    "record_meta",
    "unformattable",
]

# Attributes every LogRecord has; anything else arrived through extra= (or a
# filter, adapter or other handler set it) and becomes meta.
_INIT_ATTRS = frozenset(INIT_RECORD_ATTRS)
STANDARD_RECORD_ATTRS: frozenset[str] = _INIT_ATTRS | {"message", "asctime"}
# A record built without extra= has exactly this many attributes: the common
# case skips the scan for extras altogether.
PLAIN_RECORD_LEN = len(INIT_RECORD_ATTRS)
# What structlog's wrap_for_formatter adds to the record (as extra=) for its own use:
# never meta, whichever way the record comes (with its event dict as the message, or
# with the text a QueueHandler in front made of it, the common record's way).
_STRUCTLOG_ATTRS = frozenset({"_logger", "_name"})
# A getMessage a record factory or filter set on the record itself: the record's
# text, never meta (see _queue_record).
GET_MESSAGE_ATTR = "getMessage"
# The attributes that are never extras: the one rule of _extras and of the C handle.
NOT_EXTRAS = STANDARD_RECORD_ATTRS | _STRUCTLOG_ATTRS | {GET_MESSAGE_ATTR}
# For the C handle's reading of extras (_extras' rule): each attribute that is no
# extra -> whether Python decides the record (True: LogRecord.__init__ sets it, or it is
# a getMessage of the record's own; False: skipped, never meta); one lookup tells both.
STANDARD_KINDS = {name: name in _INIT_ATTRS or name == GET_MESSAGE_ATTR for name in NOT_EXTRAS}


def record_meta(attrs: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any] | None:
    """A record's meta (from its ``__dict__``): the attributes ``names`` lists
    (``record_meta``) that it has, then its extras (see ``_extras``)."""
    meta = {k: attrs[k] for k in names if k in attrs} or None
    if len(attrs) != PLAIN_RECORD_LEN:
        extras = _extras(attrs)
        if extras:
            meta = {**meta, **extras} if meta else extras
    return meta


def _extras(attrs: dict[str, Any]) -> dict[str, Any] | None:
    """The attributes ``extra=`` (or a filter, adapter or formatter) added to a record,
    less structlog's bookkeeping (``NOT_EXTRAS``)."""
    # Extras come after the standard attributes (LogRecord.__init__ sets those
    # first; makeRecord, record factories and filters add theirs later), so
    # only the tail is read, in C. A formatter that ran before us may have
    # added "message"/"asctime" there, and structlog its "_logger"/"_name":
    # filtered out on the rare path.
    tail = islice(attrs.items(), PLAIN_RECORD_LEN - 1, None)
    before = next(tail, None)
    extras = dict(tail)
    if before is None or before[0] not in _INIT_ATTRS:
        # A filter deleted an attribute __init__ sets: the tail starts earlier, and
        # its first extras sit before it. Read them all (the C handle leaves such a
        # record to this code).
        extras = {k: v for k, v in attrs.items() if k not in NOT_EXTRAS}
    elif not NOT_EXTRAS.isdisjoint(extras):
        # A filter that deleted an attribute __init__ sets and set it again moved
        # it to the end: extras may sit before the tail then. Read them all.
        source = extras if _INIT_ATTRS.isdisjoint(extras) else attrs
        extras = {k: v for k, v in source.items() if k not in NOT_EXTRAS}
    return extras or None


def unformattable(record: logging.LogRecord, exc: Exception) -> str:
    """A best-effort line for a record whose message cannot be formatted: the message
    as written, the error, and the arguments' types. Not their values: a password
    passed by position has no key beside it that redaction could judge, and would ship
    in clear (the stdlib prints them, but only to the local stderr)."""
    detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return (
        f"{safe_str(record.msg)} [logdna_client: message could not be formatted "
        f"({safe_str(detail)}); {_shape_of(record.args)}]"
    )


def _shape_of(args: object) -> str:
    """What a record's ``args`` are, without their values: ``args: 2 (str, int)``."""
    if isinstance(args, tuple):
        names = [type(arg).__name__ for arg in args[:20]]
        more = ", ..." if len(args) > 20 else ""
        return f"args: {len(args)} ({', '.join(names)}{more})"
    return f"args: a {type(args).__name__}"
