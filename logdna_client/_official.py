"""The official ``logdna`` client's form: ``LogDNAHandler(key, options)``.

Code written for ``logdna.LogDNAHandler`` runs with only the import changed,
and so does its README's dictConfig form (``key=`` and ``options=`` as
keywords). Its option names are mapped to ours here; the ones with no
counterpart (its retry count, thread pool size, user agent ...) are accepted
and ignored, as docs/migration.md lists. Values it took that ours refuses
(its README gives ``request_timeout`` in milliseconds, its code read seconds)
are taken the closest sane way, with one warning each.

Its per-line options, a dict passed as the record's only argument
(``log.info("text", {"level": "warn", "app": "x", "meta": {...}})``), ship as
that line's level, app, env, timestamp and meta; the message is formatted
with the dict, as the official handler formatted it (see ``line_options``).

Only handlers built in this form pay for any of this: ``install`` puts a
``handle`` on the handler instance that looks for such a dict first.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from ._config import RANGES
from ._context import current as request_context
from ._context import with_context
from ._errors import ConfigurationError
from ._event import level_name, timestamp_of
from ._line import created_millis, safe_str
from ._options import check_option_names
from ._record import record_meta, unformattable
from ._report import logger
from ._values import bad, to_size

if TYPE_CHECKING:
    from ._handler import LogDNAHandler

__all__ = ["IGNORED", "RENAMED", "install", "line_options", "translate"]

#: The official name -> ours, where they differ.
RENAMED: Mapping[str, str] = {
    "flush_limit": "max_batch_bytes",
    "buf_retention_limit": "max_buffer_bytes",
}

#: Official options with no counterpart: accepted, and without effect.
IGNORED: frozenset[str] = frozenset(
    {
        # Only the fallback level of a record with no level name (a stdlib record
        # always has one); the official handler itself ships every level.
        "level",
        "include_standard_meta",  # deprecated there, and without effect since 1.18
        "custom_fields",  # record attributes as meta: ours ship extra= fields
        "log_error_response",  # ours reports a refusal once, with its status
        "user_agent",
        "max_retry_attempts",  # ours retries while the buffer holds, never by count
        "max_retry_jitter",
        "retry_interval_secs",
        "max_concurrent_requests",  # ours sends from one thread, in order
        "verbose",
    }
)

# The official options whose values can fall outside what Config takes (its RANGES,
# under our names): brought into range here, with a warning.
_SECONDS = frozenset({"request_timeout", "flush_interval"})
_BYTES = frozenset({"flush_limit", "buf_retention_limit"})


def _range(name: str) -> tuple[float, float]:
    return RANGES[RENAMED.get(name, name)]


def translate(
    key: object, options: Mapping[str, Any] | None, keywords: Collection[str] = ()
) -> dict[str, Any]:
    """Our keyword options for the official ``(key, options)`` pair.

    ``keywords``: the options also given as keywords of ours, which win: their
    official spelling in ``options`` is neither taken nor warned about.
    """
    if options is not None and not isinstance(options, Mapping):
        raise ConfigurationError(
            f"options: expected a dict of the official client's options, got "
            f"{type(options).__name__}",
            "options",
        )
    out: dict[str, Any] = {}
    if key is not None:
        out["key"] = key
    for name, value in (options or {}).items():
        if name in IGNORED:
            continue
        ours = RENAMED.get(name, name)
        check_option_names([name], extra=RENAMED.keys() | IGNORED)
        if ours == "key" and key is not None:
            raise ConfigurationError("key: given twice (as the first argument and in options)")
        if ours not in keywords:
            out[ours] = _taken(name, value)
    return out


def _taken(name: str, value: Any) -> Any:
    """The value Config gets for the official option ``name`` given as ``value``.

    A number the official client took and ours refuses is brought into range,
    with a warning naming the option and what is used; anything else goes on
    as it is (Config then refuses it under the same name), except that a byte
    count is checked here, so that its error names the official option.
    """
    if name == "request_timeout":
        return _request_timeout(value)
    if name == "flush_interval" and _is_number(value):
        low, high = _range(name)
        used = min(max(value, low), high)
        if used != value:
            _warn(name, value, f"{used:g} seconds", "the nearest interval taken here")
        return used
    if name in _BYTES:
        low, high = map(int, _range(name))
        if not _is_number(value):  # text, None, a list: the official client took none
            return to_size(name, value, minimum=low, maximum=high)
        used = min(max(int(value), low), high)
        if used != value:
            ours = RENAMED[name]
            _warn(name, value, f"{used} bytes", f"the nearest {ours} taken here")
        return used
    return value


def _request_timeout(value: Any) -> Any:
    """request_timeout: seconds in the official code, milliseconds in its README
    ("Default: 30000"); a ``(connect, read)`` pair, as requests takes, in both."""
    said = value
    how: list[str] = []
    if isinstance(value, tuple | list) and len(value) == 2:
        numbers = [part for part in value if _is_number(part)]  # (None: no limit there)
        if numbers and all(part is None or _is_number(part) for part in value):
            value = max(numbers)
            how.append("the larger of its (connect, read) pair")
    if not _is_number(value):
        return value  # Config refuses it, as request_timeout
    low, high = _range("request_timeout")
    if value > high:
        if value > high * 1000:
            raise bad(
                "request_timeout",
                said,
                f"seconds up to {high:g}, or milliseconds up to {high * 1000:g} as the "
                f"official client's README gives them",
            )
        value /= 1000
        how.append("read as milliseconds, the unit of the official client's README")
    if 0 < value < low:
        value = low
        how.append("the shortest timeout taken here")
    if how:
        _warn("request_timeout", said, f"{value:g} seconds", ", ".join(how))
    return value


def _is_number(value: object) -> bool:
    """An int or a finite float (NaN and infinities are left for Config to refuse)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return isinstance(value, int) or value - value == 0


def _warn(name: str, given: object, used: str, why: str) -> None:
    # Once, at construction: the handler is not attached yet, so this never ships
    # through it; the application sees it where it shows the library's logger.
    logger.warning(
        "logdna_client: the official option %s=%r is not taken as it is here: %s used (%s)",
        name, given, used, why,
    )  # fmt: skip


def line_options(args: object) -> dict[str, Any] | None:
    """The per-line options a record's ``args`` carry that apply to its line, or None.

    Only a dict logged as the only %-argument carries them (logging makes it the
    record's ``args``). The official handler applied its ``app``, ``env``,
    ``hostname``, ``level`` and ``timestamp`` keys to the line (logdna 1.18.12,
    ``LogDNAHandler.emit``); here each applies only with a value a line can carry:
    ``level`` a name or a number, ``app`` and ``env`` non-empty text, ``timestamp``
    a number (epoch seconds or milliseconds), and ``meta``, a non-empty dict, the
    line's own meta (the official handler's README said so; its code shipped the
    whole dict under ``meta.args``). ``hostname`` never applies: the ingest API
    takes one per request, not per line. A dict none of them applies to is an
    ordinary %-argument.
    """
    if not isinstance(args, Mapping) or not args:
        return None
    opts: dict[str, Any] = {}
    level = args.get("level")
    named = isinstance(level, str) and level != ""
    if named or (isinstance(level, int) and not isinstance(level, bool)):  # (or a number)
        opts["level"] = level
    for name in ("app", "env"):
        value = args.get(name)
        if isinstance(value, str) and value:
            opts[name] = value
    stamp = args.get("timestamp")
    if _is_number(stamp):
        opts["timestamp"] = stamp
    meta = args.get("meta")
    if isinstance(meta, Mapping) and meta:
        opts["meta"] = meta
    return opts or None


def install(handler: LogDNAHandler) -> None:
    """Make ``handler`` honour the official per-line options dict."""

    def handle_official(record: logging.LogRecord) -> Any:
        args = record.args
        if type(args) is not tuple:  # (the usual record: no per-line options)
            opts = line_options(args)
            if opts is not None and not handler._stdlib_handle:
                return _ship_with_options(handler, record, opts)
        # Read at each call: a hook set on the handler later (a test's mock of emit)
        # turns the C handle off, as it does for a handler built the usual way (H199).
        fast = handler._fast
        if fast is not None and not handler._stdlib_handle:
            return fast(record)
        return type(handler).handle(handler, record)

    # An instance attribute wins over the class's handle (a non-data descriptor,
    # in C and in Python): handlers built the usual way keep their fast path.
    handler.handle = handle_official  # type: ignore[method-assign]


def emitted_with_options(handler: LogDNAHandler, record: logging.LogRecord) -> bool:
    """Ship ``record`` with its per-line options dict, where it has one, from ``emit``:
    the stdlib's ``handle`` (a hook of the application's: a subclass's ``emit``, a mock
    of it) filtered it already. False: none, the record ships as any does."""
    args = record.args
    opts = None if type(args) is tuple else line_options(args)
    if opts is None:
        return False
    _ship_with_options(handler, record, opts, filtered=True)
    return True


def _ship_with_options(
    handler: LogDNAHandler,
    record: logging.LogRecord,
    opts: Mapping[str, Any],
    *,
    filtered: bool = False,
) -> bool:
    try:
        if not filtered and not handler.filter(record):
            return False
        source = record
        try:
            # The dict is the %-argument too, as the official handler formatted it:
            # "user %(user)s set %(level)s" and "config %s" show it. (Tried here: the
            # default formatter turns a failure into its marker text.)
            record.getMessage()
        except Exception:
            # A message with no place for a mapping ("%d", "100% done"; the official
            # handler raised into the logging call there): the dict was options alone.
            source = logging.makeLogRecord(record.__dict__)  # (others get the record)
            source.args = None
        text: object
        try:
            text = handler.format(source)
        except Exception as exc:  # a line still ships, as from the handler's own path
            text = unformattable(source, exc)
        # The record's meta as any line of the handler's has it, then the line's own.
        meta = record_meta(record.__dict__, handler._record_attrs) or {}
        if "meta" in opts:
            meta = {**meta, **opts["meta"]}
        context = request_context()
        if context:
            meta = with_context(meta, context)
        level = opts.get("level")
        if level is None:
            level = record.levelname
        stamp = timestamp_of(opts["timestamp"]) if "timestamp" in opts else None
        # Not Client.log: it filters on the level it is given. The record passed the
        # handler's level already; the per-line level is only the text the line shows
        # ("debug" on an ERROR record ships, as the official handler shipped it).
        data = handler._builder.encode(
            text if isinstance(text, str) else safe_str(text),
            level_name(level),
            stamp if stamp is not None else created_millis(record.created),
            meta or None,
            opts.get("app"),
            opts.get("env"),
        )
        if data is not None:
            handler.client.put(data)
    except Exception:
        handler._failed(record)  # counted as error, then logging's say
    return True
