"""Fault injection: failures, dropped connections, delays and rejected lines."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Fault:
    """What to do instead of accepting one request."""

    drop: bool
    status: int = 503
    retry_after: str | None = None
    body: str = ""


class Faults:
    """The faults a ``DevServer`` injects into ingest POSTs; all off by default.

    ``DevServer`` inherits these methods, so tests call ``server.fail_next(2)``.
    """

    def __init__(self) -> None:
        self._faults_lock = threading.Lock()
        self._drop_n = 0
        self._fail_n = 0
        self._fail_status = 503
        self._fail_retry_after: str | None = None
        self._fail_body = ""
        self._delay = 0.0
        self._fail_rate = 0.0
        self._fail_rate_status = 503
        self._fail_rate_retry_after: str | None = None
        self._rng = random.Random()
        self._reject_substring: str | None = None

    def fail_next(
        self, n: int, status: int = 503, retry_after: str | None = None, body: str = ""
    ) -> None:
        """Answer the next ``n`` ingest POSTs with ``status``, storing nothing.

        Args:
            n: How many requests fail; 0 cancels.
            status: The status code to answer.
            retry_after: Value of a ``Retry-After`` header, if any.
            body: Response body; a JSON error object when empty.
        """
        with self._faults_lock:
            self._fail_n = max(0, n)
            self._fail_status = status
            self._fail_retry_after = retry_after
            self._fail_body = body

    def drop_next(self, n: int) -> None:
        """Read the next ``n`` ingest POSTs, then close without answering."""
        with self._faults_lock:
            self._drop_n = max(0, n)

    def set_delay(self, seconds: float) -> None:
        """Wait ``seconds`` before answering each ingest POST; 0 turns it off."""
        with self._faults_lock:
            self._delay = max(0.0, seconds)

    def set_fail_rate(
        self,
        rate: float,
        status: int = 503,
        seed: int | None = None,
        retry_after: str | None = None,
    ) -> None:
        """Fail a random fraction ``rate`` (0 to 1) of ingest POSTs with ``status``
        (and a Retry-After header when ``retry_after`` is given)."""
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be between 0 and 1, got {rate!r}")
        with self._faults_lock:
            self._fail_rate = rate
            self._fail_rate_status = status
            self._fail_rate_retry_after = retry_after
            self._rng = random.Random(seed)

    def reject_lines_matching(self, substring: str | None) -> None:
        """Answer 400 to any batch with a line whose text contains ``substring``."""
        with self._faults_lock:
            self._reject_substring = substring or None

    def reset_faults(self) -> None:
        """Turn every injected fault off."""
        with self._faults_lock:
            self._drop_n = self._fail_n = 0
            self._delay = self._fail_rate = 0.0
            self._reject_substring = None

    def _take_fault(self) -> Fault | None:
        """The fault for the request being handled, if any (counts it as used)."""
        with self._faults_lock:
            if self._drop_n > 0:
                self._drop_n -= 1
                return Fault(drop=True)
            if self._fail_n > 0:
                self._fail_n -= 1
                return Fault(False, self._fail_status, self._fail_retry_after, self._fail_body)
            if self._fail_rate > 0.0 and self._rng.random() < self._fail_rate:
                return Fault(False, self._fail_rate_status, self._fail_rate_retry_after)
            return None

    def _current_delay(self) -> float:
        with self._faults_lock:
            return self._delay

    def _rejects(self, lines: list[dict[str, Any]]) -> bool:
        """Whether ``reject_lines_matching`` refuses this batch."""
        with self._faults_lock:
            needle = self._reject_substring
        return needle is not None and any(needle in line["line"] for line in lines)
