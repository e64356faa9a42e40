"""The library's own trouble, told once per kind rather than once per line.

Everything goes to the ``logdna_client`` logger (which has a NullHandler, so
a library never prints unless the application configured logging). The
handler never ships records from this logger, so there is no feedback loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

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
            logger.log(level, message, *args, exc_info=exc_info, extra={KIND_ATTR: kind})
        except Exception:  # a broken handler of the app's must not hurt us
            return False
        return True

    def forget(self, kind: str) -> None:
        """Let the next report of this kind through (the trouble went away)."""
        with self._lock:
            self._last.pop(kind, None)
            self._suppressed.pop(kind, None)
