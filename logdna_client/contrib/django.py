"""Django: request context for every line logged while a request is handled.

Settings::

    MIDDLEWARE = [
        "logdna_client.contrib.django.LogDNARequestContextMiddleware",
        # ... the rest; put it first so it covers the others too
    ]

    LOGGING = {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "request_context": {"()": "logdna_client.contrib.django.RequestContextFilter"},
        },
        "handlers": {
            "logdna": {
                "class": "logdna_client.LogDNAHandler",
                "app": "mysite",
                "env": "production",
                "filters": ["request_context"],
            },
        },
        "root": {"handlers": ["logdna"], "level": "INFO"},
    }

The middleware binds ``request_id`` (from the ``X-Request-ID`` header when it
is a sane token, else a new one; echoed in the response and set as
``request.request_id``), ``http_method``, ``http_path``, and ``user_id`` when
the user is authenticated; ``http_status`` once the response exists. Optional
settings: ``LOGDNA_REQUEST_ID_HEADER`` (default ``"X-Request-ID"``),
``LOGDNA_ACCESS_LOG`` (default False: when True, one line per request,
``"GET /path 200 (12.3 ms)"``, on the ``django.access`` logger).

Works under WSGI and ASGI (sync and async middleware chains).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import (  # Django >= 4.2 needs it
    iscoroutinefunction,
    markcoroutinefunction,
    sync_to_async,
)

from .._context import (
    RequestContextFilter,
    bind_request_context,
    reset_request_context,
    update_request_context,
)
from ._request import log_access, request_fields, response_fields

__all__ = ["LogDNARequestContextMiddleware", "RequestContextFilter"]

access_logger = logging.getLogger("django.access")


def _id_of(user: Any) -> str | None:
    try:
        if user is None or not user.is_authenticated:
            return None
        pk = user.pk
        return None if pk is None else str(pk)
    except Exception:  # a broken auth backend must not break the request
        return None


def _user_id(request: Any) -> str | None:
    return _id_of(getattr(request, "user", None))


async def _auser_id(request: Any) -> str | None:
    """``_user_id`` in a coroutine (the ASGI chain). AuthenticationMiddleware's
    ``request.user`` is lazy, and its first look reads the session and the user from
    the database, which Django refuses in a coroutine (SynchronousOnlyOperation): an
    unread one is read through ``request.auser()`` (Django 5.0+), else on Django's
    thread for sync code, as the view would."""
    try:
        from django.utils.functional import (  # type: ignore[import-untyped]  # noqa: PLC0415
            LazyObject,
            empty,
        )

        user = getattr(request, "user", None)
        if isinstance(user, LazyObject) and user._wrapped is empty:
            auser = getattr(request, "auser", None)
            if auser is None:
                return await sync_to_async(_user_id)(request)
            user = await auser()
        return _id_of(user)
    except Exception:
        return None


def _setting(name: str, default: Any) -> Any:
    from django.conf import settings  # type: ignore[import-untyped]  # noqa: PLC0415

    return getattr(settings, name, default)


def _stream_with_context(response: Any, fields: dict[str, Any]) -> None:
    """Have a streaming response's content produced with the request's context bound.

    Its generator runs after the middleware returned (the server iterates it), so
    lines it logs would have none. The context is bound around each step only: the
    server's own lines between two chunks stay as they were. A ``FileResponse`` is
    left alone (its file goes to the server's sendfile; no code of the app runs).
    """
    if getattr(response, "file_to_stream", None) is not None:
        return
    content = response.streaming_content
    if getattr(response, "is_async", False):

        async def chunks_async() -> Any:
            iterator = content.__aiter__()
            while True:
                token = bind_request_context(**fields)
                try:
                    chunk = await iterator.__anext__()
                except StopAsyncIteration:
                    return
                finally:
                    reset_request_context(token)
                yield chunk

        response.streaming_content = chunks_async()
        return

    def chunks() -> Any:
        iterator = iter(content)
        while True:
            token = bind_request_context(**fields)
            try:
                chunk = next(iterator)
            except StopIteration:
                return
            finally:
                reset_request_context(token)
            yield chunk

    response.streaming_content = chunks()


class LogDNARequestContextMiddleware:
    """Binds the request's context (request id, method, path, user, status) to its lines.

    New-style Django middleware, sync and async capable.

    .. versionadded:: 0.1.0
    """

    sync_capable = True
    async_capable = True

    def __init__(
        self, get_response: Callable[[Any], Any] | Callable[[Any], Awaitable[Any]]
    ) -> None:
        self.get_response = get_response
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)
        header = str(_setting("LOGDNA_REQUEST_ID_HEADER", "X-Request-ID"))
        self.header = header
        self._meta_key = "HTTP_" + header.upper().replace("-", "_")
        self.access_log = bool(_setting("LOGDNA_ACCESS_LOG", False))

    def __call__(self, request: Any) -> Any:
        if self._async:
            return self.__acall__(request)
        started = time.perf_counter()
        token = bind_request_context(**self._request_fields(request, _user_id(request)))
        try:
            response = self.get_response(request)
            self._finish(request, response, started, _user_id(request))
            return response
        finally:
            reset_request_context(token)

    async def __acall__(self, request: Any) -> Any:
        started = time.perf_counter()
        fields = self._request_fields(request, await _auser_id(request))
        token = bind_request_context(**fields)
        try:
            response = await self.get_response(request)
            self._finish(request, response, started, await _auser_id(request))
            return response
        finally:
            reset_request_context(token)

    def _request_fields(self, request: Any, user_id: str | None) -> dict[str, Any]:
        fields = request_fields(
            request.META.get(self._meta_key), request.method, request.path, user_id
        )
        try:
            request.request_id = fields["request_id"]
            # django.request logs 4xx/5xx responses after the middleware chain
            # returned; RequestContextFilter finds the context here through
            # the record's ``request`` attribute.
            request.logdna_context = fields
        except Exception:
            pass
        return fields

    def _finish(self, request: Any, response: Any, started: float, user_id: str | None) -> None:
        try:
            status = int(response.status_code)
            fields = response_fields(status, user_id)
            update_request_context(**fields)
            context = getattr(request, "logdna_context", None)
            if isinstance(context, dict):
                context.update(fields)
            request_id = getattr(request, "request_id", None)
            if request_id and self.header not in response:
                response[self.header] = request_id
            if getattr(response, "streaming", False) and isinstance(context, dict):
                _stream_with_context(response, context)
            if self.access_log:
                log_access(access_logger, request.method, request.path, status, started)
        except Exception:
            logging.getLogger("logdna_client").debug(
                "logdna_client: could not record the response context", exc_info=True
            )
