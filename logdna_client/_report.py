"""The library's own trouble, told once per kind rather than once per line.

Everything goes to the ``logdna_client`` logger (which has a NullHandler, so
a library never prints unless the application configured logging). The
handler never ships records from this logger, so there is no feedback loop.
"""

from __future__ import annotations

import builtins
import logging
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType, TracebackType

__all__ = ["KIND_ATTR", "Reporter", "is_own_logger", "logger"]

logger = logging.getLogger("logdna_client")
logger.addHandler(logging.NullHandler())
_OWN_PREFIX = logger.name + "."
#: The record attribute that holds a report's kind ("auth", "rejected", ...): a tool
#: listening on the library's logger (the command line's) tells reports apart by it,
#: not by their wording.
KIND_ATTR = "logdna_client_kind"


def is_own_logger(name: object) -> bool:
    """Whether ``name`` is the library's own logger or one below it: never shipped."""
    # makeLogRecord() can build records with no name, or a non-string one.
    return isinstance(name, str) and (name == logger.name or name.startswith(_OWN_PREFIX))


#: Modules whose frames hold a request's headers, the key among them, in their locals
#: (requests' and urllib3's ``headers``, http.client's ``msg`` as sent).
_HTTP_PACKAGES = frozenset({"requests", "urllib3", "socks"})


def _sends_requests(frame: FrameType) -> bool:
    name = frame.f_globals.get("__name__")
    if not isinstance(name, str):
        return False
    return name == "http.client" or name.partition(".")[0] in _HTTP_PACKAGES


#: Exception groups (3.11 and later; none before): their members carry tracebacks too.
_GROUPS: tuple[type[BaseException], ...] = tuple(
    group for group in (getattr(builtins, "BaseExceptionGroup", None),) if group is not None
)


def _without_requests_frames() -> tuple[type[BaseException], BaseException, TracebackType | None]:
    """The exception being handled, for a report with its traceback, with the frames of
    the HTTP stack cut from it and from every exception chained to it: an error reporter
    that records each frame's locals (Sentry's logging integration does) would record the
    request's headers, the key among them. The exceptions, their messages and our frames
    above the HTTP stack's stay."""
    exc = sys.exc_info()[1]
    if exc is None:
        exc = RuntimeError("no exception was being handled")
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        chained = todo.pop()
        if id(chained) in seen:
            continue
        seen.add(id(chained))
        tb = chained.__traceback__
        if tb is not None and _sends_requests(tb.tb_frame):
            chained.__traceback__ = None
        while tb is not None and tb.tb_next is not None:
            if _sends_requests(tb.tb_next.tb_frame):
                tb.tb_next = None
                break
            tb = tb.tb_next
        # Every exception a traceback printer may show: the cause and the context both
        # (``raise X from Y`` inside an ``except``: a reporter that records locals walks
        # the hidden context too), and an exception group's members.
        todo.extend(e for e in (chained.__cause__, chained.__context__) if e is not None)
        if isinstance(chained, _GROUPS):
            try:  # (a subclass's own ``exceptions`` may be anything, or raise)
                members = list(chained.exceptions)  # type: ignore[attr-defined]
            except Exception:
                members = []
            todo.extend(e for e in members if isinstance(e, BaseException))
    return type(exc), exc, exc.__traceback__


class Reporter:
    """Logs a message for a kind of trouble at most once per ``interval`` seconds."""

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        # Re-entrant: a finalizer run by an allocation in here may report too.
        self._lock = threading.RLock()

    def report(self, kind: str, level: int, message: str, *args: object,
               exc_info: bool = False) -> bool:  # fmt: skip
        """Log unless this kind was logged recently; True when it was logged."""
        now = self._clock()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self._interval:
                self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
                return False
            self._last[kind] = now
            suppressed = self._suppressed.pop(kind, 0)
        if suppressed:
            message += f" (and {suppressed} more like it since the last report)"
        if logger.disabled:
            # dictConfig/fileConfig's default disable_existing_loggers=True disables every
            # logger made before its loggers are set up, ours included, which the handler
            # it builds makes: a refused key would be reported to no one. The app's level,
            # handlers and propagate setting for "logdna_client" still decide.
            logger.disabled = False
        try:
            logger.log(level, message, *args, exc_info=exc_info and _without_requests_frames(),
                       extra={KIND_ATTR: kind})  # fmt: skip
        except Exception:  # a broken handler of the app's must not hurt us
            return False
        return True

    def forget(self, kind: str) -> None:
        """Let the next report of this kind through (the trouble went away)."""
        with self._lock:
            self._last.pop(kind, None)
            self._suppressed.pop(kind, None)
