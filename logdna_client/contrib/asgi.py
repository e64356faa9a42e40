"""ASGI (Starlette, FastAPI, any ASGI app): request context for every line of a request.

::

    from fastapi import FastAPI            # or starlette.applications.Starlette
    from logdna_client.contrib.asgi import LogDNAMiddleware

    app = FastAPI()
    app.add_middleware(LogDNAMiddleware)

    # any ASGI app: app = LogDNAMiddleware(app)

For each HTTP or WebSocket connection it binds the same fields as the Django
and Flask helpers: ``request_id`` (from the ``X-Request-ID`` header when it
is a sane token, else a new one; echoed in the response and kept in
``scope["state"]["request_id"]``, which Starlette shows as
``request.state.request_id``), ``http_method``, ``http_path`` (never the
query string), ``user_id`` when one is known (``user_id=`` callable, else an
authenticated ``scope["user"]`` from Starlette's ``AuthenticationMiddleware``);
``http_status`` once the response starts (500 when the app raised before it
answered). The lines reach LogDNA through a
``LogDNAHandler`` (with ``RequestContextFilter``) or a ``LogDNAProcessor``
configured as usual; see docs/asgi.md.

It is a plain ASGI middleware, not Starlette's ``BaseHTTPMiddleware``: the
endpoint runs in the task (and so the context) the fields were bound in, and
concurrent requests, each in its own task, never see each other's fields.
It imports no framework.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .._context import (
    RequestContextFilter,
    bind_request_context,
    clean_path,
    get_request_context,
    remember_context,
    reset_request_context,
    update_request_context,
)
from ._request import log_access, request_fields, response_fields

__all__ = ["LogDNAMiddleware", "RequestContextFilter"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

access_logger = logging.getLogger("asgi.access")
# In the scope: the request id a LogDNAMiddleware gave, and whether one logs the access
# line, for another one further in (a mounted sub-app's).
_SCOPE_KEY = "logdna_client.request"
_own = logging.getLogger("logdna_client")


def _scope_user_id(scope: Scope) -> object:
    """The id of Starlette's authenticated ``scope["user"]``, if there is one."""
    user = scope.get("user")
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    try:
        return user.identity
    except Exception:  # SimpleUser has no identity: its name is what there is
        return getattr(user, "display_name", None)


class LogDNAMiddleware:
    """ASGI middleware that binds request context for the lines logged during a request.

    Args:
        app: The ASGI application to wrap.
        request_id_header: The header an incoming request id is read from and
            the response echoes it in.
        user_id: Called with the ASGI scope, returns the user's id (or None; a
            coroutine function's result is awaited); called when the request starts
            and again when the response starts.
        access_log: Log one line per request (``"GET /path 200 (3.1 ms)"``,
            without the query string) on the ``asgi.access`` logger.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        request_id_header: str = "X-Request-ID",
        user_id: Callable[[Scope], object] | None = None,
        access_log: bool = False,
    ) -> None:
        self.app = app
        self.request_id_header = request_id_header
        self._header_key = request_id_header.lower().encode("latin-1")
        self.user_id = user_id if user_id is not None else _scope_user_id
        self.access_log = access_log

    async def _user_id(self, scope: Scope) -> str | None:
        """The ``user_id`` callable's result as text: awaited when it is a coroutine
        function's (an async user lookup; its coroutine's repr shipped as the id)."""
        try:
            value = self.user_id(scope)
            if inspect.isawaitable(value):
                value = await value
        except Exception:
            return None
        return None if value is None else str(value)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") not in ("http", "websocket"):  # lifespan: no request
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = scope.get("method", "WEBSOCKET")
        path = clean_path(scope.get("path", ""))
        status: int | None = None
        # What the response's start added, kept for this task too: Starlette's
        # StreamingResponse sends from a task of its own, whose context changes do
        # not reach this one (where the access line is logged).
        response_added: dict[str, Any] = {}
        token = None
        # An outer LogDNAMiddleware (a mounted sub-app with its own) already gave this
        # request its id, and logs its access line if it was asked to: one of each.
        outer_id, outer_logs_access = scope.get(_SCOPE_KEY) or (None, False)
        access_log = self.access_log and not outer_logs_access
        try:
            sent_id = outer_id if outer_id is not None else self._header(scope)
            fields = request_fields(sent_id, method, path, await self._user_id(scope))
            request_id = fields["request_id"]
            scope[_SCOPE_KEY] = (request_id, access_log or outer_logs_access)
            state = scope.setdefault("state", {})
            if isinstance(state, MutableMapping):
                state["request_id"] = request_id
            token = bind_request_context(**fields)
        except Exception:
            _own.debug("logdna_client: could not bind the request context", exc_info=True)
            request_id = None

        access_logged = False

        def log_access_once() -> None:
            """The access line, once: when the response's last byte was sent (a
            ``BackgroundTask`` runs after it, in this task: neither its time nor its
            end are the request's), else when the app returned or raised."""
            nonlocal access_logged
            if access_logged or not access_log or scope["type"] != "http":
                return
            access_logged = True
            # With the response's fields: the task sending it may not be this one.
            bound = bind_request_context(**response_added) if token is not None else None
            try:
                log_access(access_logger, method, path, status, started)
            except Exception:
                _own.debug("logdna_client: could not log the access line", exc_info=True)
            finally:
                if bound is not None:
                    reset_request_context(bound)

        async def responded(new_status: int) -> None:
            nonlocal status
            status = new_status
            changed = response_fields(status, await self._user_id(scope))
            update_request_context(**changed)
            response_added.update(changed)

        async def send_with_context(message: Message) -> None:
            kind = message.get("type")
            # A WebSocket's handshake answer is its accept (headers: ASGI 2.1).
            if kind in ("http.response.start", "websocket.accept"):
                try:
                    if kind == "http.response.start":
                        await responded(int(message["status"]))
                    headers = list(message.get("headers") or ())
                    if request_id and all(k.lower() != self._header_key for k, _ in headers):
                        headers.append((self._header_key, request_id.encode("latin-1")))
                        # A copy: an app may send one constant message for every
                        # response, which would then echo this request's id to all.
                        message = {**message, "headers": headers}
                except Exception:
                    _own.debug(
                        "logdna_client: could not record the response context", exc_info=True
                    )
            await send(message)
            if kind == "http.response.pathsend" or (
                kind in ("http.response.body", "http.response.zerocopysend")
                and not message.get("more_body", False)
            ):  # the response's last message (pathsend, zerocopysend: ASGI extensions)
                log_access_once()

        try:
            await self.app(scope, receive, send_with_context)
        except Exception as exc:
            if status is None and scope["type"] == "http":
                # Unanswered: the server (or Starlette's ServerErrorMiddleware, outside
                # this one) answers 500, which the access line says, as Django's and
                # Flask's do. Not for a cancellation (BaseException): no answer is sent.
                try:
                    await responded(500)
                except Exception:
                    _own.debug("logdna_client: could not record the 500", exc_info=True)
            if token is not None:
                # For the lines that log it outside, where nothing is bound (the server's
                # traceback, Starlette's exception_handler(Exception)): RequestContextFilter.
                remember_context(exc, get_request_context())
            raise
        finally:
            log_access_once()
            if token is not None:
                reset_request_context(token)

    def _header(self, scope: Scope) -> str | None:
        for key, value in scope.get("headers") or ():
            if key.lower() == self._header_key:
                return str(value.decode("latin-1"))
        return None
