"""Backoff: exponential with full jitter, capped, honouring Retry-After."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["CLOSING_MIN_WAIT", "CLOSING_SHARE", "Backoff", "parse_retry_after"]


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    # isascii: a header is read as Latin-1, and "\xb2" ("²") is a digit to
    # isdigit() that float() refuses. Whatever a server sends, this must not raise:
    # classify() runs it for every answer, and an exception there turned a 400 or a
    # 413 into a retry of the same body without end.
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):  # a year or zone too large
        return None
    if when is None:
        return None
    try:
        return max(0.0, when.timestamp() - now())
    except (OverflowError, ValueError, OSError):  # a date the platform's clock cannot hold
        return None


#: While closing, a wait is at most this share of the time left (but at least
#: CLOSING_MIN_WAIT): a service that fails briefly gets several more tries
#: inside the deadline, and a dead one about 30, not a storm.
CLOSING_SHARE = 0.25
CLOSING_MIN_WAIT = 0.05


@dataclass(frozen=True)
class Backoff:
    """How long to wait before retry number ``attempt`` (1-based).

    Full jitter (a uniform draw between 0 and the exponential ceiling) keeps a
    fleet of clients from retrying in lock step after an outage. A server's
    Retry-After is a floor, itself capped so a bad header cannot park us for hours.

    ``budget``, the seconds left before a shutdown deadline (None while not
    closing), lowers the ceiling so that the retries fit the time left: the
    jitter stays full, the waits get shorter as the deadline nears.
    """

    base: float = 0.5
    cap: float = 30.0
    rand: Callable[[], float] = field(default=random.random, compare=False)

    def delay(
        self, attempt: int, retry_after: float | None = None, budget: float | None = None
    ) -> float:
        ceiling = min(self.cap, self.base * (1 << max(0, min(attempt - 1, 32))))
        wait = self._fit(ceiling, budget) * float(self.rand())
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.cap))
        return wait

    def slow(self) -> float:
        """The wait after an answer retrying soon cannot fix (401, 403, 404 ...):
        between half the cap and the cap, even while closing (close() cuts one
        wait short for a last try; more would only hammer a refusing service)."""
        return self.cap * (0.5 + 0.5 * float(self.rand()))

    @staticmethod
    def _fit(ceiling: float, budget: float | None) -> float:
        if budget is None:
            return ceiling
        return min(ceiling, max(CLOSING_MIN_WAIT, budget * CLOSING_SHARE))
