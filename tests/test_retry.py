"""Tests for _retry.py: backoff with full jitter, a cap, Retry-After, and a closing budget."""

from __future__ import annotations

import datetime as dt
import email.utils
import random

import pytest

from logdna_client._retry import CLOSING_MIN_WAIT, CLOSING_SHARE, Backoff, parse_retry_after


def fixed(value: float) -> Backoff:
    """A Backoff whose random draw is always ``value``."""
    return Backoff(base=0.5, cap=30.0, rand=lambda: value)


class TestBackoff:
    @pytest.mark.parametrize(
        ("attempt", "ceiling"),
        [(1, 0.5), (2, 1.0), (3, 2.0), (6, 16.0), (7, 30.0), (8, 30.0), (1000, 30.0)],
    )
    @pytest.mark.parametrize("draw", [0.0, 0.25, 0.999])
    def test_full_jitter_under_a_capped_exponential_ceiling(
        self, attempt: int, ceiling: float, draw: float
    ) -> None:
        """The wait is the random draw times min(cap, base * 2 ** (attempt - 1))."""
        assert ceiling * draw == pytest.approx(fixed(draw).delay(attempt))

    def test_waits_spread_over_the_whole_range(self) -> None:
        """With the real random source, waits for one attempt spread from near 0 to
        near the ceiling and never exceed it: a fixed wait, or half jitter, fails."""
        backoff = Backoff(base=0.5, cap=30.0, rand=random.Random(7).random)
        for attempt, ceiling in ((3, 2.0), (40, 30.0)):
            waits = [backoff.delay(attempt) for _ in range(2000)]
            assert max(waits) <= ceiling
            assert min(waits) < 0.05 * ceiling
            assert max(waits) > 0.95 * ceiling
            assert 0.45 * ceiling < sum(waits) / len(waits) < 0.55 * ceiling

    def test_retry_after_is_a_floor(self) -> None:
        """A server's Retry-After is waited at least, over a shorter jittered wait."""
        assert 12.0 == fixed(0.0).delay(1, retry_after=12.0)
        assert 16.0 * 0.9 == pytest.approx(fixed(0.9).delay(6, retry_after=1.0))

    def test_retry_after_is_capped(self) -> None:
        """A Retry-After of hours waits no longer than the cap."""
        assert 30.0 == fixed(0.0).delay(1, retry_after=7200.0)

    @pytest.mark.parametrize("budget", [0.0, 0.1, 1.0, 10.0, 1000.0])
    def test_closing_budget_shortens_the_ceiling(self, budget: float) -> None:
        """While closing, the ceiling is a share of the time left (at least a minimum)."""
        ceiling = min(30.0, max(CLOSING_MIN_WAIT, budget * CLOSING_SHARE))
        assert ceiling * 0.5 == pytest.approx(fixed(0.5).delay(20, budget=budget))

    def test_slow_wait_is_between_half_the_cap_and_the_cap(self) -> None:
        """After answers retrying cannot fix, the wait is jittered in [cap/2, cap]."""
        assert 15.0 == fixed(0.0).slow()
        assert 30.0 == fixed(1.0).slow()
        backoff = Backoff(cap=10.0, rand=random.Random(3).random)
        waits = [backoff.slow() for _ in range(500)]
        assert 5.0 <= min(waits) < 5.5
        assert 9.5 < max(waits) <= 10.0


class TestParseRetryAfter:
    @pytest.mark.parametrize(
        ("value", "seconds"), [("120", 120.0), (" 3 ", 3.0), ("1.5", 1.5), ("0", 0.0)]
    )
    def test_delta_seconds(self, value: str, seconds: float) -> None:
        """Delta-seconds, integer or decimal, are read as seconds."""
        assert seconds == parse_retry_after(value)

    def test_http_date(self) -> None:
        """An HTTP-date is the time left until then, from the clock given."""
        now = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc).timestamp()
        later = email.utils.formatdate(now + 90, usegmt=True)
        assert 90.0 == parse_retry_after(later, now=lambda: now)
        earlier = email.utils.formatdate(now - 90, usegmt=True)
        assert 0.0 == parse_retry_after(earlier, now=lambda: now)

    @pytest.mark.parametrize("value", [None, "", "soon", "-5", "Mon, 99 Foo"])
    def test_unreadable_values(self, value: str | None) -> None:
        """Missing, negative and unreadable values give None (the caller's own wait)."""
        assert None is parse_retry_after(value)
