"""What every framework integration (ASGI, Django, Flask) does around a request:
the context fields it binds when the request starts, those its response adds, and
the access line. One home, so that all three ship the same fields under the same
names, cleaned the same way."""

from __future__ import annotations

import logging
import time
from typing import Any

from .._context import clean_path, clean_request_id, new_request_id

__all__ = ["log_access", "request_fields", "response_fields"]


def request_fields(
    sent_id: object, method: object, path: object, user_id: str | None
) -> dict[str, Any]:
    """The context a request binds as it starts: ``request_id`` (``sent_id``, the one
    the client sent, when it is a sane token; else a new one), ``http_method``,
    ``http_path`` (``path`` without its query string: see ``clean_path``) and
    ``user_id`` when one is known."""
    fields: dict[str, Any] = {
        "request_id": clean_request_id(sent_id) or new_request_id(),
        "http_method": method,
        "http_path": clean_path(path),
    }
    if user_id is not None:
        fields["user_id"] = user_id
    return fields


def response_fields(status: int, user_id: str | None) -> dict[str, Any]:
    """What a request's context gains once its response starts: ``http_status``, and
    ``user_id`` when one is known by then (the view may have logged the user in)."""
    fields: dict[str, Any] = {"http_status": status}
    if user_id is not None:
        fields["user_id"] = user_id
    return fields


def log_access(
    logger: logging.Logger, method: object, path: object, status: object, started: float | None
) -> None:
    """The access line of a request (``"GET /path 200 (3.1 ms)"``, without the query
    string, its duration also as ``duration_ms``), begun at ``started``
    (``time.perf_counter()``; None where its start was not recorded: 0 ms)."""
    elapsed_ms = round((time.perf_counter() - started) * 1000, 1) if started is not None else 0.0
    logger.info(
        # (No status: the request ended with no response begun, cancelled say, when its
        # client went away: not "None".)
        "%s %s %s (%.1f ms)", method, clean_path(path),
        "no response" if status is None else status, elapsed_ms,
        extra={"duration_ms": elapsed_ms},
    )  # fmt: skip
