"""Framework helpers: request context (request id, method, path, status, user) as meta.

``logdna_client.contrib.django`` and ``logdna_client.contrib.flask`` bind the
context for each request; this package only holds what both share and
imports neither framework.
"""

from __future__ import annotations

from .._context import (
    RequestContextFilter,
    bind_request_context,
    get_request_context,
    reset_request_context,
    update_request_context,
)

__all__ = [
    "RequestContextFilter",
    "bind_request_context",
    "get_request_context",
    "reset_request_context",
    "update_request_context",
]
