"""Request context: per-request fields (request id, method, path, ...) kept in a ContextVar.

The Django middleware and the Flask extension bind it for the duration of a
request; the structlog processor merges it into meta, and so does the stdlib
handler (directly, or through ``RequestContextFilter`` attached to it). A
ContextVar follows threads (WSGI) and tasks (ASGI) alike, so concurrent
requests never see each other's fields.

The bound value is an immutable snapshot (a new dict on every change) so that
readers never need a lock and a context copied into a task or thread keeps the
fields it was created with.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
import uuid
from collections.abc import Mapping
from typing import Any

__all__ = [
    "RequestContextFilter",
    "bind_request_context",
    "clean_path",
    "clean_request_id",
    "get_request_context",
    "new_request_id",
    "remember_context",
    "reset_request_context",
    "update_request_context",
    "with_context",
]

_EMPTY: Mapping[str, Any] = {}
_request_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "logdna_client_request_context", default=_EMPTY
)

#: The fast accessor for hot paths: ``current()`` is the bound mapping (empty when none).
current = _request_context.get


def with_context(meta: Mapping[str, Any] | None, context: Mapping[str, Any]) -> dict[str, Any]:
    """A line's ``meta`` over the request ``context`` (a new dict): where both have a
    field, the line's own wins. The one rule of every path that adds the context."""
    return {**context, **meta} if meta else dict(context)


#: False until a request context is first bound in this process. Most
#: applications never bind one, and then the handler's hot path skips the
#: ContextVar lookup (read as ``_context.in_use``: it only ever turns True).
in_use = False

# Incoming request ids are attacker-controlled: keep them short and printable.
# fullmatch: "$" would let a final newline through.
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")


def get_request_context() -> dict[str, Any]:
    """A copy of the fields bound for the current request (empty outside one)."""
    return dict(_request_context.get())


def bind_request_context(**fields: Any) -> contextvars.Token[Mapping[str, Any]]:
    """Bind ``fields`` (merged over any already bound); returns a token for ``reset``."""
    global in_use
    in_use = True
    merged = {**_request_context.get(), **fields}
    return _request_context.set(merged)


def update_request_context(**fields: Any) -> None:
    """Add or change fields of the current request context (e.g. the response status)."""
    global in_use
    in_use = True
    _request_context.set({**_request_context.get(), **fields})


def reset_request_context(token: contextvars.Token[Mapping[str, Any]] | None = None) -> None:
    """Restore what was bound before ``token`` was made; without a token, clear it all."""
    if token is not None:
        try:
            _request_context.reset(token)
            return
        except ValueError:  # the token was made in another context (a copied one)
            pass
    _request_context.set(_EMPTY)


# C0 and C1 control characters, DEL among them: ESC starts an ANSI colour code.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_PATH_CAP = 1024


def clean_path(path: object) -> str:
    """A request path fit for a log line: no query string, no control characters.

    Frameworks hand over paths already URL-decoded, so ``/%1b[31m`` arrives as
    a real ESC: it would colour a terminal that tails the logs. The query
    string (tokens, e-mail addresses) never belongs in a line.
    """
    text = path if isinstance(path, str) else str(path)
    text = _CONTROL_RE.sub("", text.split("?", 1)[0])
    return text if len(text) <= _PATH_CAP else text[: _PATH_CAP - 3] + "..."


def new_request_id() -> str:
    """A fresh random request id (32 hex digits)."""
    return uuid.uuid4().hex


def clean_request_id(value: object) -> str | None:
    """The incoming request id when it is a sane token, else None (then make a new one)."""
    if isinstance(value, str) and _REQUEST_ID_RE.fullmatch(value):
        return value
    return None


_COPY_RECORD = sys.version_info >= (3, 12)
# On an exception that left a request: the context it was raised in (remember_context).
_EXC_CONTEXT = "_logdna_request_context"

if sys.version_info >= (3, 11):
    # The exception the logging call's ``except`` block handles: the one C call, no tuple.
    _handled_exception = sys.exception
else:

    def _handled_exception() -> BaseException | None:
        return sys.exc_info()[1]


def remember_context(exc: BaseException, context: Mapping[str, Any]) -> None:
    """Keep the request ``context`` on ``exc``, escaping the request where it was bound,
    for ``RequestContextFilter`` to find on the lines that log it outside (the server's
    traceback). The latest request's wins (an exception object raised again by a later
    request); one that takes no attribute goes without."""
    if context:
        try:
            setattr(exc, _EXC_CONTEXT, dict(context))
        except Exception:
            pass


def _context_of_record(attrs: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The request context a record logged outside its request carries: on its
    ``request`` (django.request logs some responses after the middleware returned), or
    on the exception it logs (``remember_context``; or one the exception was raised
    while handling, or from), else on the exception being handled where it was logged."""
    request = attrs.get("request")
    found = getattr(request, "logdna_context", None) if request is not None else None
    if isinstance(found, Mapping) and found:
        return found
    exc_info = attrs.get("exc_info")
    exc = exc_info[1] if isinstance(exc_info, tuple) and len(exc_info) > 1 else None
    if exc is None:
        # A line without exc_info logged in an ``except`` block: Starlette's
        # exception_handler(Exception) runs in the one of its ServerErrorMiddleware, and
        # its ``log.error("failed: %r", exc)`` is about the request as much as a
        # traceback is. Filters run in the logging call's thread, so this is the
        # caller's exception (none on a QueueListener's thread).
        exc = _handled_exception()
        if exc is None:  # most lines: no exception anywhere, and no loop to set up
            return None
    for _ in range(8):  # a chain's first few links: never a walk that costs
        if not isinstance(exc, BaseException):
            return None
        found = exc.__dict__.get(_EXC_CONTEXT) if hasattr(exc, "__dict__") else None
        if isinstance(found, Mapping) and found:
            return found
        exc = exc.__cause__ or exc.__context__
    return None


class RequestContextFilter(logging.Filter):
    """Adds the current request context to records as attributes, so they ship as meta.

    Attach it to the LogDNA handler only (``"filters": ["request_context"]`` in
    the handler's dictConfig entry). On Python 3.12+ it hands the handler a
    copy of the record and the original is left untouched; on older versions
    it adds the attributes to the record itself, never overwriting one the
    record already has, so handlers that run later may see them too.
    Outside a request it adds what the record carries of one: the context
    Django's middleware left on the record's ``request``, or the one the ASGI
    middleware left on an exception that escaped it, which the record logs (the
    server's traceback) or, logging none, is handling (a line of Starlette's
    ``exception_handler(Exception)``); else nothing.
    """

    def filter(self, record: logging.LogRecord) -> bool | logging.LogRecord:  # type: ignore[override]
        context = _request_context.get()
        if not context:
            # Logged outside its request: django.request's responses after the
            # middleware returned, the server's traceback of what escaped an ASGI app.
            found = _context_of_record(record.__dict__)
            if found is None:
                return True
            context = found
        attrs = record.__dict__
        missing = {k: v for k, v in context.items() if k not in attrs}
        if not missing:
            return True
        if _COPY_RECORD:
            copy = logging.makeLogRecord(attrs)
            copy.__dict__.update(missing)
            return copy
        attrs.update(missing)
        return True
