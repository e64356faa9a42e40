"""Flask: request context for every line logged while a request is handled.

::

    from flask import Flask
    from logdna_client.contrib.flask import LogDNA

    app = Flask(__name__)
    LogDNA(app)            # or: logdna = LogDNA(); logdna.init_app(app)

For each request it binds ``request_id`` (from the ``X-Request-ID`` header
when it is a sane token, else a new one; echoed in the response and kept as
``flask.g.request_id``), ``http_method``, ``http_path``, and ``user_id`` when
one is known (``user_id=`` callable, else the user Flask-Login loaded for the
request, when the app loaded one); ``http_status`` once the response exists. The lines
reach LogDNA through a ``LogDNAHandler`` (with ``RequestContextFilter``) or a
``LogDNAProcessor`` configured as usual; see docs/flask.md.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from .._context import (
    RequestContextFilter,
    bind_request_context,
    reset_request_context,
    update_request_context,
)
from ._request import log_access, request_fields, response_fields

__all__ = ["LogDNA", "RequestContextFilter"]

_EXTENSION = "logdna_client"
_G_TOKEN = "_logdna_context_token"
_G_STARTED = "_logdna_started"
_G_USER_ASKED = "_logdna_user_asked"  # the user_id callable was asked for this request
# The request's fields, kept past its teardown: ``stream_with_context`` pushes the
# request's app context again while the response streams, and they are bound again then.
_G_FIELDS = "_logdna_fields"
_G_STREAM_TOKEN = "_logdna_stream_token"
_own = logging.getLogger("logdna_client")


def _flask_login_user_id() -> object:
    """The id of the user Flask-Login has loaded for this request, if your code loaded
    one: never loaded here. Loading runs the app's user loader, and Flask-Login keeps its
    first answer: asked before a view decorator set what the loader needs (a tenant in
    ``g``), it answered 401 for every such view (H200), and with only a remember-me cookie
    it logged the user in on requests that never asked for one."""
    if "flask_login" not in sys.modules:  # not in use: never import it ourselves
        return None
    from flask import g  # noqa: PLC0415

    user = g.get("_login_user")  # (where Flask-Login keeps the request's loaded user)
    if user is not None and getattr(user, "is_authenticated", False):
        return user.get_id()
    return None


class LogDNA:
    """Flask extension that binds request context for the lines logged during a request.

    Args:
        app: The application; or call ``init_app`` later (app factories).
        request_id_header: The header an incoming request id is read from and
            the response echoes it in.
        user_id: Returns the current user's id (or None); called once the app's
            URL preprocessors and ``before_request`` hooks have run, right before
            the view, and again when the response is ready. By default, the id of
            the user Flask-Login has loaded, if your code loaded one (the extension
            never loads it).
        access_log: Log one line per request (``"GET /path 200 (3.1 ms)"``)
            on the ``flask.access`` logger.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        app: Any = None,
        *,
        request_id_header: str = "X-Request-ID",
        user_id: Callable[[], object] | None = None,
        access_log: bool = False,
    ) -> None:
        self.request_id_header = request_id_header
        self.user_id = user_id if user_id is not None else _flask_login_user_id
        self.access_log = access_log
        self.access_logger = logging.getLogger("flask.access")
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Any) -> None:
        """Register the request hooks on ``app``; ours runs before the app's other
        ``before_request`` hooks, even those registered earlier.

        Once per app: a second call for the same app (a module-level ``LogDNA(app)``
        and an app factory's ``init_app(app)``) registers nothing again, and another
        ``LogDNA`` initialised on it replaces this one's options."""
        registered = isinstance(app.extensions.get(_EXTENSION), LogDNA) or (
            _before_request in app.before_request_funcs.get(None, ())  # extensions cleared
        )
        # The hooks read the options from here, each request: the extension
        # initialised last on an app is the one whose options apply.
        app.extensions[_EXTENSION] = self
        if registered:
            # Hooks twice would bind the request twice: two request ids, and the
            # first binding (user_id included) left on the worker's thread.
            return
        # First: a hook that answers early (a login check, a maintenance page) makes
        # Flask skip the later ones, and its request would go without context. Flask
        # runs url_value_preprocessors before any before_request hook: binding in the
        # first of those too gives their lines, and the "Exception on" line of one that
        # raises, the request's context, and its time to duration_ms (H191).
        app.url_value_preprocessors.setdefault(None, []).insert(0, _preprocess_url)
        app.before_request_funcs.setdefault(None, []).insert(0, _before_request)
        _ask_user_after_hooks(app)
        app.after_request(_after_request)
        app.teardown_request(_teardown_request)
        app.teardown_appcontext(_teardown_appcontext)
        try:
            from flask import appcontext_pushed  # noqa: PLC0415

            appcontext_pushed.connect(_appcontext_pushed, app)
        except Exception:  # no signals (blinker) in this Flask: streams go without context
            _own.debug("logdna_client: could not connect to appcontext_pushed", exc_info=True)

    def _user_id(self) -> str | None:
        try:
            value = self.user_id()
        except Exception:
            return None
        return None if value is None else str(value)

    def _bind(self, *, with_user: bool = True) -> None:
        """Bind the current request's context, once per request. ``with_user``: with
        its ``user_id`` (not before the app's url_value_preprocessors and
        before_request hooks have run: the user is loaded from what they set, and
        Flask-Login keeps the first answer)."""
        from flask import g, request  # noqa: PLC0415

        if g.get(_G_TOKEN) is not None:
            # Bound already (our url_value_preprocessor, or our hooks registered twice:
            # init_app again after app.extensions was cleared): a second binding would
            # give the request another id, and its token would hide the first one's
            # from the teardown. The user comes now, where it did not then.
            if with_user and not g.get(_G_USER_ASKED):
                self._add_user()
            return
        try:
            header = request.headers.get(self.request_id_header)
            user = self._user_id() if with_user else None
            setattr(g, _G_USER_ASKED, with_user)
            fields = request_fields(header, request.method, request.path, user)
            g.request_id = fields["request_id"]
            setattr(g, _G_STARTED, time.perf_counter())
            setattr(g, _G_FIELDS, fields)
            setattr(g, _G_TOKEN, bind_request_context(**fields))
        except Exception:
            _own.debug("logdna_client: could not bind the request context", exc_info=True)

    def _add_user(self, user: str | None = None) -> None:
        """Bind the user (``user``, or the one ``user_id`` gives) into the request's
        context, and into the fields a streamed response binds again."""
        from flask import g  # noqa: PLC0415

        setattr(g, _G_USER_ASKED, True)
        try:
            user = self._user_id() if user is None else user
            if user is not None:
                update_request_context(user_id=user)
                bound = g.get(_G_FIELDS)
                if isinstance(bound, dict):
                    bound["user_id"] = user
        except Exception:
            _own.debug("logdna_client: could not add the user to the context", exc_info=True)

    def _respond(self, response: Any) -> Any:
        from flask import g, request  # noqa: PLC0415

        if g.get(_G_TOKEN) is None:
            # Our before_request did not run (a url_value_preprocessor aborted, or a
            # hook put before ours answered): bind the request's context now, which the
            # teardown resets. Never add to a context not ours: on a worker's thread
            # it would stay, and the next request would merge its fields over it.
            self._bind()
        if g.get(_G_TOKEN) is None:
            return response
        try:
            status = int(response.status_code)
            fields = response_fields(status, self._user_id())
            update_request_context(**fields)
            bound = g.get(_G_FIELDS)
            if isinstance(bound, dict):
                bound.update(fields)
            request_id = g.get("request_id")
            if request_id and self.request_id_header not in response.headers:
                response.headers[self.request_id_header] = request_id
            if self.access_log:
                started = g.get(_G_STARTED)
                log_access(self.access_logger, request.method, request.path, status, started)
        except Exception:
            _own.debug("logdna_client: could not record the response context", exc_info=True)
        return response


def _class_preprocess(app: Any) -> Any:
    return type(app).preprocess_request(app)


def _extension() -> LogDNA | None:
    """The LogDNA extension initialised last on the current app."""
    from flask import current_app  # noqa: PLC0415

    ext = current_app.extensions.get(_EXTENSION)
    return ext if isinstance(ext, LogDNA) else None


def _bind_without_user() -> None:
    ext = _extension()
    if ext is not None:
        _watch_logouts()
        # Without the user: the app's preprocessors and hooks after this one may set
        # what loading it needs (a tenant in g), and Flask-Login keeps its first answer
        # (H195, H196: 401). _ask_user_after_hooks, after them all, adds it.
        ext._bind(with_user=False)


def _before_request() -> None:
    _bind_without_user()


_watched: list[object] = []  # the user_logged_out signal connected to, once


def _watch_logouts() -> None:
    """Hear Flask-Login's logouts, once it is in use: the request of a ``logout_user()``
    is the user's, though Flask-Login forgets it (H202: its access line lost it)."""
    signal = getattr(sys.modules.get("flask_login"), "user_logged_out", None)
    if signal is None or signal in _watched:
        return
    _watched[:] = [signal]
    try:
        signal.connect(_logged_out, weak=False)
    except Exception:
        _own.debug("logdna_client: could not connect to user_logged_out", exc_info=True)


def _logged_out(sender: Any, user: Any = None, **_: Any) -> None:
    from flask import g  # noqa: PLC0415

    with contextlib.suppress(Exception):
        ext = _extension()
        if ext is None or user is None or ext.user_id is not _flask_login_user_id:
            return
        if g.get(_G_TOKEN) is not None:  # (only into a request context of ours: see _respond)
            ext._add_user(str(user.get_id()))


def _preprocess_url(endpoint: str | None, values: dict[str, Any] | None) -> None:
    _bind_without_user()


_ASKS_USER = "_logdna_asks_user"


def _ask_user_after_hooks(app: Any) -> None:
    """Ask for the request's user where Flask has run every URL preprocessor and
    ``before_request`` hook (the app's and its blueprints', those registered after
    the extension too), and is about to call the view, or an error handler when one
    raised or answered early: around this app's ``preprocess_request``. Flask has no
    hook or signal at that point."""
    # Looked up at each request where the app has none of its own: a patch or an
    # instrumentation of Flask.preprocess_request made later applies (H200).
    own = app.__dict__.get("preprocess_request")
    if getattr(own, _ASKS_USER, False):  # ours already (the app's hooks were reset)
        return
    preprocess = own if own is not None else functools.partial(_class_preprocess, app)

    @functools.wraps(type(app).preprocess_request)
    def preprocess_request() -> Any:
        try:
            return preprocess()
        finally:
            with contextlib.suppress(Exception):  # (never in place of the hook's exception)
                ext = _extension()
                if ext is not None:
                    ext._bind()

    setattr(preprocess_request, _ASKS_USER, True)
    try:
        app.preprocess_request = preprocess_request
    except Exception:  # an app class that refuses it: the user comes with the response
        _own.debug("logdna_client: could not wrap preprocess_request", exc_info=True)


def _after_request(response: Any) -> Any:
    ext = _extension()
    return response if ext is None else ext._respond(response)


def _teardown_request(exc: BaseException | None = None) -> None:
    # Whatever the extension now is: what a request bound is always reset.
    from flask import g  # noqa: PLC0415

    with contextlib.suppress(Exception):
        token = g.pop(_G_TOKEN, None)
        if token is not None:
            reset_request_context(token)


def _appcontext_pushed(sender: Any, **_: Any) -> None:
    """The app context pushed again for a streamed response (``stream_with_context``):
    its lines get the request's context, as the view's did."""
    from flask import g  # noqa: PLC0415

    with contextlib.suppress(Exception):
        fields = g.get(_G_FIELDS)
        # Only where the request's own binding is gone (torn down): a fresh app
        # context (every request's first) has no fields yet.
        if fields and g.get(_G_TOKEN) is None and g.get(_G_STREAM_TOKEN) is None:
            setattr(g, _G_STREAM_TOKEN, bind_request_context(**fields))


def _teardown_appcontext(exc: BaseException | None = None) -> None:
    from flask import g  # noqa: PLC0415

    with contextlib.suppress(Exception):
        token = g.pop(_G_STREAM_TOKEN, None)
        if token is not None:
            reset_request_context(token)
