"""The official ``logdna`` client's form: ``LogDNAHandler(key, options)``.

Code written for ``logdna.LogDNAHandler`` runs with only the import changed,
and so does its README's dictConfig form (``key=`` and ``options=`` as
keywords). Its option names are mapped to ours here; the ones with no counterpart (its
retry count, thread pool size, user agent ...) are accepted and ignored, as
docs/migration.md lists. Its per-line options, a dict passed as the record's
only argument (``log.info("text", {"level": "warn", "app": "x", "meta": {...}})``),
ship as that line's level, app, env, timestamp and meta.

Only handlers built in this form pay for any of this: ``install`` puts a
``handle`` on the handler instance that looks for such a dict first.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._context import current as request_context
from ._context import with_context
from ._errors import ConfigurationError
from ._options import check_option_names

if TYPE_CHECKING:
    from ._handler import LogDNAHandler

__all__ = ["IGNORED", "RENAMED", "install", "translate"]

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

# Per-line options the official handler reads from a dict logged as the only argument.
_LINE_OPTIONS = frozenset({"app", "env", "hostname", "level", "timestamp", "meta"})


def translate(key: object, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Our keyword options for the official ``(key, options)`` pair."""
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
        out[ours] = value
    return out


def install(handler: LogDNAHandler) -> None:
    """Make ``handler`` honour the official per-line options dict."""
    handle = handler.handle  # the class's (the C one where built), bound

    def handle_official(record: logging.LogRecord) -> Any:
        args = record.args
        if isinstance(args, Mapping) and args and not _LINE_OPTIONS.isdisjoint(args):
            return _ship_with_options(handler, record, args)
        return handle(record)

    # An instance attribute wins over the class's handle (a non-data descriptor,
    # in C and in Python): handlers built the usual way keep their fast path.
    handler.handle = handle_official  # type: ignore[method-assign]


def _ship_with_options(
    handler: LogDNAHandler, record: logging.LogRecord, opts: Mapping[str, Any]
) -> bool:
    from ._handler import _unformattable, record_meta  # noqa: PLC0415 - a circle

    try:
        if not handler.filter(record):
            return False
        # The dict is options, not %-arguments: format the message without it, on a
        # copy (other handlers get the record as it was).
        copy = logging.makeLogRecord(record.__dict__)
        copy.args = None
        try:
            text = handler.format(copy)
        except Exception as exc:  # a line still ships, as from the handler's own path
            text = _unformattable(copy, exc)
        # The record's meta as any line of the handler's has it, then the line's own.
        meta = record_meta(copy.__dict__, handler._record_attrs) or {}
        extra_meta = opts.get("meta")
        if isinstance(extra_meta, Mapping):
            meta = {**meta, **extra_meta}
        context = request_context()
        if context:
            meta = with_context(meta, context)
        level = opts.get("level")
        app, env, stamp = opts.get("app"), opts.get("env"), opts.get("timestamp")
        handler.client.log(
            text,
            level=level if level is not None else record.levelname,
            app=app if isinstance(app, str) else None,
            env=env if isinstance(env, str) else None,
            meta=meta or None,
            timestamp=stamp if isinstance(stamp, int | float) else record.created,
        )
    except Exception:
        handler._failed(record)  # counted as error, then logging's say
    return True
