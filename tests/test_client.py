"""Tests for _client.py: Client.log, closing and stats, on a client that never sends."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator, Mapping
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from logdna_client import Client

UNREACHABLE = "http://127.0.0.1:1/logs/ingest"


@pytest.fixture
def client() -> Iterator[Client]:
    """A client whose lines stay queued (a port nobody serves, an hourly interval)."""
    c = Client(key="k", url=UNREACHABLE, hostname="t", app="svc", env="test",
               flush_interval=3600, shutdown_timeout=0)  # fmt: skip
    yield c
    c._buffer.discard_all("shutdown")
    c.close(timeout=0)


def queued(c: Client) -> list[dict[str, Any]]:
    return [json.loads(line) for line in c._buffer.snapshot()]


class TestLog:
    def test_a_line_with_everything(self, client: Client) -> None:
        """Text, level, app, env, meta and timestamp make the line."""
        when = dt.datetime(2026, 5, 1, 12, 0, 0, 250000, tzinfo=dt.timezone.utc)
        assert client.log("paid", level="warning", meta={"invoice": 7}, timestamp=when)
        assert [{
            "line": "paid", "timestamp": int(when.timestamp() * 1000), "level": "WARNING",
            "app": "svc", "env": "test", "meta": {"invoice": 7},
        }] == queued(client)  # fmt: skip

    @pytest.mark.parametrize(
        ("level", "name"), [(10, "DEBUG"), (40, "ERROR"), (25, "Level 25"), ("info", "INFO")]
    )
    def test_levels_by_number_or_name(self, client: Client, level: Any, name: str) -> None:
        """Numbers are named as logging names them; names are upper-cased."""
        client.log("x", level=level)
        assert name == queued(client)[-1]["level"]

    @pytest.mark.parametrize(
        ("level", "name"),
        [("warn", "WARNING"), ("err", "ERROR"), ("exception", "ERROR"), ("fatal", "CRITICAL")],
    )
    def test_level_names_as_structlog_names_them(self, level: str, name: str) -> None:
        """The method-style names structlog uses map to logging's (one rule for Client.log
        and the structlog processor), and they filter by that level: "err" is an ERROR,
        kept by a client at WARNING."""
        from logdna_client._event import level_of

        c = Client(key="k", url=UNREACHABLE, hostname="t", level="WARNING", flush_interval=3600)
        try:
            assert c.log("kept", level=level)
            assert [name] == [line["level"] for line in queued(c)]
            assert name == level_of(level, {})
        finally:
            c._buffer.discard_all("shutdown")
            c.close(timeout=0)

    def test_a_level_logging_knows_by_name(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A level added with logging.addLevelName ships by its name, from a number, and
        its name filters at its number, on Client.log and the structlog processor alike."""
        import logging

        from logdna_client.structlog import LogDNAProcessor
        from logdna_client.testing import capture_lines

        monkeypatch.setitem(logging._levelToName, 25, "NOTICE")  # what addLevelName sets
        monkeypatch.setitem(logging._nameToLevel, "NOTICE", 25)
        c = Client(url=UNREACHABLE, hostname="t", level=22)
        proc = LogDNAProcessor(client=c)
        try:
            with capture_lines() as lines:
                c.log("by number", level=25)
                c.log("by name", level="notice")
                proc(None, "info", {"event": "structlog, by number", "level": 25})
                proc(None, "info", {"event": "structlog, by name", "level": "notice"})
                c.log("below", level=21)
        finally:
            c.close(timeout=0)
        assert [("by number", "NOTICE"), ("by name", "NOTICE"),
                ("structlog, by number", "NOTICE"), ("structlog, by name", "NOTICE")] == [
            (line["line"], line["level"]) for line in lines
        ]  # fmt: skip

    @pytest.mark.parametrize(
        ("timestamp", "millis"),
        [(1_700_000_000, 1_700_000_000_000), (1_700_000_000.5, 1_700_000_000_500),
         (1_700_000_000_123, 1_700_000_000_123)],
    )  # fmt: skip
    def test_timestamps_in_seconds_or_milliseconds(
        self, client: Client, timestamp: float, millis: int
    ) -> None:
        """Epoch seconds and epoch milliseconds are both understood."""
        client.log("x", timestamp=timestamp)
        assert millis == queued(client)[-1]["timestamp"]

    @pytest.mark.parametrize(
        "stamp",
        [Decimal("1700000000.25"), Fraction(6_800_000_001, 4), "numpy-like"],
        ids=["Decimal", "Fraction", "a number type of another library"],
    )
    def test_any_number_is_a_time(self, client: Client, stamp: Any) -> None:
        """Numbers other than int and float (a Decimal, a Fraction, a numpy scalar: any
        type float() takes) are times too, read as int and float are."""

        class Scalar:  # what numpy.float64 and friends offer: __float__
            def __float__(self) -> float:
                return 1_700_000_000.25

        client.log("x", timestamp=Scalar() if stamp == "numpy-like" else stamp)
        assert 1_700_000_000_250 == queued(client)[-1]["timestamp"]

    def test_iso_text_is_read_as_the_structlog_processor_reads_it(self, client: Client) -> None:
        """ISO-8601 text (a trailing Z is UTC) is a time too."""
        client.log("x", timestamp="2026-05-01T12:00:00.250Z")
        when = dt.datetime(2026, 5, 1, 12, 0, 0, 250000, tzinfo=dt.timezone.utc)
        assert int(when.timestamp() * 1000) == queued(client)[-1]["timestamp"]

    @pytest.mark.parametrize("timestamp", [float("nan"), float("inf"), -5, 0, 1e20, "soon"])
    def test_what_is_not_a_time_stamps_the_line_now(
        self, client: Client, timestamp: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """NaN, infinities, negatives, zero, far-future numbers and other text are not
        times: the line ships, stamped now, and nothing is dropped."""
        monkeypatch.setattr(time, "time", lambda: 1_800_000_000.25)
        assert client.log("x", timestamp=timestamp)
        assert 1_800_000_000_250 == queued(client)[-1]["timestamp"]
        assert 0 == client.stats()["dropped_total"]

    def test_app_and_env_per_line(self, client: Client) -> None:
        """app= and env= override the client's for one line."""
        client.log("x", app="other", env="prod")
        line = queued(client)[-1]
        assert ("other", "prod") == (line["app"], line["env"])

    def test_below_the_level_is_not_queued(self) -> None:
        """A line below the client's level is refused and nothing is queued."""
        c = Client(key="k", url=UNREACHABLE, hostname="t", level="WARNING", flush_interval=3600)
        try:
            assert not c.log("chatter", level="INFO")
            assert c.log("trouble", level="ERROR")
            assert ["trouble"] == [line["line"] for line in queued(c)]
        finally:
            c._buffer.discard_all("shutdown")
            c.close(timeout=0)

    def test_text_that_is_not_a_string(self, client: Client) -> None:
        """Any object is shipped as its str(); one whose str() raises as a marker."""

        class Broken:
            def __str__(self) -> str:
                raise RuntimeError("no")

        client.log(42)
        client.log(Broken())
        assert ["42", "<unprintable Broken>"] == [line["line"] for line in queued(client)]

    def test_a_line_that_cannot_be_built_is_counted(self, client: Client) -> None:
        """log() never raises: a failure is counted as an error drop and False returned."""

        class Unreadable(Mapping[str, Any]):
            def __len__(self) -> int:
                return 1

            def __iter__(self) -> Iterator[str]:
                raise RuntimeError("cannot be read")

            def __getitem__(self, key: str) -> Any:
                raise KeyError(key)

        assert not client.log("x", meta=Unreadable())
        assert 1 == client.stats()["dropped"]["error"]


class TestLifecycle:
    def test_after_close_lines_are_dropped_and_counted(self, client: Client) -> None:
        """Lines logged after close() are refused and counted as after_close."""
        client.close(timeout=0)
        assert client.closed
        assert not client.log("late")
        assert 1 == client.stats()["dropped"]["after_close"]

    def test_flush_with_nothing_pending(self, client: Client) -> None:
        """flush() returns True at once when every accepted line has left."""
        assert client.flush(timeout=0)

    def test_stats_name_every_counter(self, client: Client) -> None:
        """stats() has the documented counters, and every drop reason even when 0."""
        client.log("one")
        stats = client.stats()
        for key in ("queued", "sent", "dropped", "retries", "bytes_sent", "accepted"):
            assert key in stats
        assert 1 == stats["queued"] == stats["accepted"]
        expected = {"buffer_full", "rejected", "shutdown", "after_close", "reentrant", "error"}
        assert expected <= set(stats["dropped"])
        assert 0 == stats["dropped_total"]

    def test_repr_names_the_destination_not_the_key(self) -> None:
        """repr shows URL, hostname, app and env; never the key."""
        c = Client(key="very-secret", url=UNREACHABLE, hostname="h", app="a")
        try:
            text = repr(c)
            assert UNREACHABLE in text and "very-secret" not in text
        finally:
            c.close(timeout=0)


def test_a_line_after_the_exit_never_waits_for_a_frozen_lock() -> None:
    """Once the exit is done with a client, a line (a finalizer's, at interpreter
    shutdown) is counted as ``after_close`` without waiting on the buffer's lock: a
    daemon thread stopped for good while it held it (Python 3.13 freezes daemon threads
    where they are) made such a line wait forever, and the process never ended."""
    import threading

    client = Client(key="k", url=UNREACHABLE, hostname="t", shutdown_timeout=0)
    client.close(0)
    client._exit_finished()
    held, release, done = threading.Event(), threading.Event(), threading.Event()

    def frozen() -> None:  # a daemon thread stopped inside the buffer's critical section
        with client._buffer._lock:
            held.set()
            release.wait(60)

    def finalizer() -> None:
        for _ in range(3):
            client.log("logged by a __del__ at shutdown")
        done.set()

    threading.Thread(target=frozen, daemon=True).start()
    assert held.wait(10)
    try:
        threading.Thread(target=finalizer, daemon=True).start()
        assert done.wait(30), "a late line waited on the frozen thread's lock"
    finally:
        release.set()
    assert 3 == client.stats()["dropped"]["after_close"]


def test_a_close_between_the_first_lines_look_and_its_start_ends_the_sender(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first line looks whether the client is closed, then starts the sender; a close
    from another thread in between found no sender to stop, and the one started after it
    waited for good (with its watchdog thread: two threads leaked per such close)."""
    client = Client(key="k", url=UNREACHABLE, hostname="t", shutdown_timeout=0.2)
    start = client._start

    def start_after_a_close(**kwargs: Any) -> bool:
        client.close(0)  # what another thread's close did at that moment
        return start(**kwargs)

    monkeypatch.setattr(client, "_start", start_after_a_close)
    client.log("the first line")
    assert client.closed
    assert client._sender.finished.wait(30), "the sender started after the close never ended"
