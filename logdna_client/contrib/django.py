"""Django: request context for every line logged while a request is handled.

Settings::

    MIDDLEWARE = [
        # ... SessionMiddleware, AuthenticationMiddleware (before it, for user_id)
        "logdna_client.contrib.django.LogDNARequestContextMiddleware",
        # ... the rest
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
the user is authenticated and the app has loaded it (the middleware never loads
it: that reads the session, and the response would vary by cookie);
``http_status`` once the response exists, and on the lines Django logs for the
response it makes of an exception (with this module's ``RequestContextFilter``).
Optional settings: ``LOGDNA_REQUEST_ID_HEADER`` (default ``"X-Request-ID"``),
``LOGDNA_ACCESS_LOG`` (default False: when True, one line per request,
``"GET /path 200 (12.3 ms)"``, on the ``django.access`` logger).

Works under WSGI and ASGI (sync and async middleware chains).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from asgiref.sync import (  # Django >= 4.2 needs it
    iscoroutinefunction,
    markcoroutinefunction,
)
from django.utils.functional import LazyObject, empty  # type: ignore[import-untyped]

from .. import _context
from .._context import (
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


def _loaded_user(request: Any) -> Any:
    """The request's user when something has loaded it already (a view, a decorator,
    another middleware, ``login()``), else None. Never loads it: the first look at
    AuthenticationMiddleware's lazy ``request.user`` reads the session, which makes
    SessionMiddleware add ``Vary: Cookie`` to the response (no shared cache may keep
    it), and reads the user from the database; under ASGI, in a coroutine, Django
    refuses that read outright."""
    user = getattr(request, "user", None)
    # isinstance() sees the proxy's own type first: it does not load the user.
    if not isinstance(user, LazyObject):
        return user  # None, or a user object set by login(), DRF, a custom middleware
    loaded = user._wrapped  # LazyObject reads _wrapped without loading
    if loaded is not empty:
        return loaded
    # AuthenticationMiddleware's caches, Django 4.2 to 5.x: get_user() (the lazy
    # object's loader, also called directly by some libraries) and, since 5.0,
    # ``await request.auser()``, which loads the user without touching the lazy object.
    for cache in ("_cached_user", "_acached_user"):
        found = getattr(request, cache, None)
        if found is not None:
            return found
    return None


def _note_user(context: dict[str, Any], user: Any) -> None:
    """Add the user the app just loaded to the request's ``context`` (its
    ``logdna_context``) and, when the code that loaded it runs in that request's
    context, to the bound one: the lines logged from then on carry ``user_id``."""
    try:
        user_id = _id_of(user)
        if user_id is None:
            return
        context["user_id"] = user_id
        # A thread the view handed the request to has no request bound, or another
        # one: binding there would tag that thread's later lines with this user.
        if _context.current().get("request_id") == context.get("request_id"):
            update_request_context(user_id=user_id)
    except Exception:  # never let our bookkeeping fail the app's user lookup
        pass


def _watch_user(request: Any, context: dict[str, Any]) -> None:
    """Have ``user_id`` join the context the moment the app loads the user (through
    ``request.user`` or ``await request.auser()``), without loading it ourselves.

    Django's ``SimpleLazyObject`` keeps its loader in ``_setupfunc`` (4.2 to 5.x), and
    ``request.auser`` is a plain attribute AuthenticationMiddleware sets (5.0+): each
    is wrapped so that what it returns is noted, and returned unchanged (errors too).
    Anything else (a user already loaded, another kind of lazy object) is left alone.
    """
    try:
        user = getattr(request, "user", None)
        if not isinstance(user, LazyObject) or user._wrapped is not empty:
            return
        load = user.__dict__.get("_setupfunc")
        if callable(load):

            @functools.wraps(load)  # the lazy object's repr still names Django's loader
            def load_and_note() -> Any:
                loaded = load()
                _note_user(context, loaded)
                return loaded

            user.__dict__["_setupfunc"] = load_and_note
        auser = getattr(request, "auser", None)
        if callable(auser):

            async def auser_and_note() -> Any:
                loaded = await auser()
                _note_user(context, loaded)
                return loaded

            request.auser = auser_and_note
    except Exception:  # the request goes on without user_id on its early lines
        pass


def _django_status(record: logging.LogRecord) -> int | None:
    """The response status a record of Django's own loggers states about a request
    this middleware handles, else None.

    ``django.utils.log.log_response`` passes ``extra={"status_code": ..., "request":
    ...}`` on ``django.request`` and the ``django.security.*`` loggers (an exception's
    500, 403, 400, a CSRF rejection) while the middleware chain is still running,
    before the middleware learns the status. Other loggers' ``status_code`` may be any
    status (an upstream API's): only Django's are read as the response's.
    """
    attrs = record.__dict__
    name = attrs.get("name")  # None on a record built by makeLogRecord({...})
    if not isinstance(name, str) or (name != "django" and not name.startswith("django.")):
        return None
    status = attrs.get("status_code")
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        return None
    context = getattr(attrs.get("request"), "logdna_context", None)
    if not isinstance(context, Mapping):
        return None
    bound = _context.current()
    if bound and bound.get("request_id") != context.get("request_id"):
        return None  # the record is about another request than the one bound here
    return int(status)


class RequestContextFilter(_context.RequestContextFilter):
    """``logdna_client.contrib.RequestContextFilter`` for Django: also adds
    ``http_status`` to the lines Django logs for the response it makes of an exception
    (its ``status_code``), which are logged before the middleware sees the response.

    As the base filter, it never replaces an attribute the record already has, and on
    Python 3.12+ hands the handler a copy of the record.

    .. versionadded:: 0.1.0
    """

    def filter(self, record: logging.LogRecord) -> bool | logging.LogRecord:  # type: ignore[override]
        try:
            status = _django_status(record)
        except Exception:  # an odd ``request`` in extra= must not fail the log call
            status = None
        if status is None:
            return super().filter(record)
        had_status = "http_status" in record.__dict__
        result = super().filter(record)
        if had_status or result is False:
            return result
        # The record's status is the one Django is answering with: it wins over a
        # context's (a middleware above this one failed after the view's 200).
        if isinstance(result, logging.LogRecord):
            result.__dict__["http_status"] = status
            return result
        if _context._COPY_RECORD:
            copy = logging.makeLogRecord(record.__dict__)
            copy.__dict__["http_status"] = status
            return copy
        record.__dict__["http_status"] = status
        return True


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

    _close_with_context(response, fields)
    response.streaming_content = chunks()


def _close_with_context(response: Any, fields: dict[str, Any]) -> None:
    """Have the response's closers (the view's generator's ``close`` among them) run
    with the request's context bound, when the server closes the response before the
    end (the client went away): the lines a generator's ``finally`` logs are the
    request's too (H191: they had none). Django keeps them in a list it calls in
    ``response.close()``; where that list is not found, they run as before."""
    closers = getattr(response, "_resource_closers", None)
    if not isinstance(closers, list):
        return

    def bound(close: Callable[[], object]) -> Callable[[], None]:
        def close_bound() -> None:
            token = bind_request_context(**fields)
            try:
                close()
            finally:
                reset_request_context(token)

        return close_bound

    closers[:] = [bound(closer) for closer in closers]


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
        token = bind_request_context(**self._request_fields(request))
        try:
            response = self.get_response(request)
            self._finish(request, response, started)
            return response
        finally:
            reset_request_context(token)

    async def __acall__(self, request: Any) -> Any:
        # The same as __call__: the user is only ever read where already loaded, which
        # is no database call, so a coroutine may do it as well.
        started = time.perf_counter()
        token = bind_request_context(**self._request_fields(request))
        try:
            response = await self.get_response(request)
            self._finish(request, response, started)
            return response
        finally:
            reset_request_context(token)

    def _request_fields(self, request: Any) -> dict[str, Any]:
        user_id = _id_of(_loaded_user(request))
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
        if user_id is None:
            _watch_user(request, fields)
        return fields

    def _finish(self, request: Any, response: Any, started: float) -> None:
        try:
            status = int(response.status_code)
            # login() during the view, or a user loaded where its note could not reach
            # this context (a thread of the view's): read again, still never loaded.
            fields = response_fields(status, _id_of(_loaded_user(request)))
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
