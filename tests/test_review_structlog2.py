"""structlog as its users configure it: a review's findings, each a test seen failing first."""

from __future__ import annotations

import datetime as dt
import io
import logging
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import structlog

from logdna_client._devserver import DevServer
from logdna_client._event import timestamp_of
from logdna_client.structlog import LogDNAProcessor
from tests._helpers_integrations import CapturingClient, delivered, logger_with
from tests.helpers import needs_speedups
from tests.test_speedups_events import offline_processor

#: Five hours west of UTC, no summer time: a naive text read the wrong way is 5 h off.
WEST = "XST+5"
#: The same, east: naive text read the wrong way is 9 h ahead.
EAST = "XST-9"


@pytest.fixture
def zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A function that sets the local time zone (TZ) for the rest of the test."""
    if not hasattr(time, "tzset"):
        pytest.skip("needs time.tzset")

    def set_zone(tz: str) -> None:
        monkeypatch.setenv("TZ", tz)
        time.tzset()

    yield set_zone
    monkeypatch.undo()
    time.tzset()


def lines_of(client: CapturingClient) -> list[dict[str, Any]]:
    return client.lines


class TestNaiveTimestampText:
    """``TimeStamper(fmt=...)`` with a format that has no ``%z`` writes UTC wall time
    without an offset by default (``utc=True``), and local wall time with
    ``utc=False``: the processor cannot see which, but the event was stamped at the
    call, so the reading that is the time of the call is the one meant."""

    @pytest.mark.parametrize("tz", [WEST, EAST])
    @pytest.mark.parametrize("utc", [True, False])
    def test_timestamper_with_a_format_ships_the_time_of_the_call(
        self, zone: Any, tz: str, utc: bool
    ) -> None:
        zone(tz)
        client = CapturingClient()
        log = structlog.wrap_logger(
            structlog.ReturnLogger(),
            processors=[
                structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=utc),
                LogDNAProcessor(client=client),
                structlog.processors.JSONRenderer(),
            ],
        )
        try:
            before = time.time()
            log.info("stamped")
            after = time.time()
        finally:
            client.close(0)
        (line,) = lines_of(client)
        # The text is cut to the second; the wrong reading is hours off.
        assert int(before) * 1000 <= line["timestamp"] <= int(after + 1) * 1000
        assert "timestamp" not in line.get("meta", {})

    def test_utc_wall_time_of_now_is_read_as_utc(
        self, zone: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        zone(WEST)
        monkeypatch.setattr(time, "time", lambda: 1_700_000_000.5)
        assert 1_700_000_000_000 == timestamp_of("2023-11-14 22:13:20")
        assert 1_700_000_000_000 == timestamp_of("2023-11-14T22:13:20")
        # Local wall time of now stays local.
        assert 1_700_000_000_000 == timestamp_of("2023-11-14T17:13:20")

    def test_utcnow_datetime_is_read_as_utc(
        self, zone: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``timestamp=datetime.utcnow()``: naive, UTC's wall time."""
        zone(WEST)
        monkeypatch.setattr(time, "time", lambda: 1_700_000_000.5)
        assert 1_700_000_000_000 == timestamp_of(dt.datetime(2023, 11, 14, 22, 13, 20))
        assert 1_700_000_000_000 == timestamp_of(dt.datetime(2023, 11, 14, 17, 13, 20))
        # Far from now: local time.
        assert 1_600_018_000_000 == timestamp_of(dt.datetime(2020, 9, 13, 12, 26, 40))

    def test_naive_text_far_from_now_is_still_local(
        self, zone: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An old (or future) time without an offset is local time, as documented."""
        zone(WEST)
        monkeypatch.setattr(time, "time", lambda: 1_800_000_000.0)
        assert 1_700_018_000_000 == timestamp_of("2023-11-14T22:13:20")
        assert 1_700_018_000_000 == timestamp_of("2023-11-14 22:13:20")

    def test_text_with_an_offset_is_unchanged(
        self, zone: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        zone(WEST)
        monkeypatch.setattr(time, "time", lambda: 1_700_000_000.0)
        assert 1_700_018_000_000 == timestamp_of("2023-11-14T22:13:20-05:00")
        assert 1_700_000_000_000 == timestamp_of("2023-11-14T22:13:20+00:00")

    @needs_speedups
    def test_same_bytes_on_the_c_and_python_paths(
        self, zone: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        zone(WEST)
        monkeypatch.setattr(time, "time", lambda: 1_700_000_000.0007)
        fast = offline_processor()
        monkeypatch.setenv("LOGDNA_CLIENT_PURE_PYTHON", "1")
        slow = offline_processor()
        monkeypatch.delenv("LOGDNA_CLIENT_PURE_PYTHON")
        out = []
        try:
            for p in (fast, slow):
                p(None, "info", {"event": "first"})  # the sender started: puts lock-free
                before = len(p.client._buffer.entries)
                for _ in range(2):  # the second time, the keys are known safe
                    p(None, "info", {"event": "t", "timestamp": "2023-11-14 22:13:20", "k": 1})
                out.append(list(p.client._buffer.entries)[before:])
        finally:
            for p in (fast, slow):
                p.client.close(timeout=0)
        assert out[0] == out[1]
        assert [1_700_000_000_000] * 2 == [orjson.loads(e[1:])["timestamp"] for e in out[0]]


class TestNumericLevelsAboveTheThreshold:
    """A level number logging has no name for ships as "Level 35": it was compared
    with the processor's level as INFO, and a line above WARNING was dropped."""

    @pytest.mark.parametrize(
        ("method", "event", "shipped"),
        [
            ("info", {"event": "n", "level": 35}, "Level 35"),
            ("info", {"event": "n", "level": "Level 45"}, "Level 45"),
            ("info", {"event": "n", "level": "LEVEL 45"}, "Level 45"),
            ("level 35", {"event": "n"}, "Level 35"),  # a stdlib record's, lower-cased
        ],
    )
    def test_shipped(self, method: str, event: dict[str, Any], shipped: str) -> None:
        client = CapturingClient(level="WARNING")
        try:
            assert event == LogDNAProcessor(client=client)(None, method, dict(event))
        finally:
            client.close(0)
        assert [shipped] == [line["level"] for line in lines_of(client)]

    @pytest.mark.parametrize("event", [{"event": "n", "level": 25}, {"event": "n", "level": 5}])
    def test_below_it_not_shipped(self, event: dict[str, Any]) -> None:
        client = CapturingClient(level="WARNING")
        try:
            LogDNAProcessor(client=client)(None, "info", dict(event))
        finally:
            client.close(0)
        assert [] == lines_of(client)

    def test_stdlib_record_through_processor_formatter(self, server: DevServer) -> None:
        """``foreign_pre_chain`` records at an unnamed level above the processor's."""
        p = LogDNAProcessor(url=server.url, flush_interval="0.05", level="WARNING")
        formatter = structlog.stdlib.ProcessorFormatter(
            processors=[p, structlog.processors.JSONRenderer()],
            foreign_pre_chain=[structlog.stdlib.add_log_level],
        )
        console = logging.StreamHandler(io.StringIO())
        console.setFormatter(formatter)
        try:
            with logger_with("t.structlog2.level", console) as std:
                std.log(25, "below")
                std.log(35, "above")
                (line,) = delivered(server, p.client, 1)
        finally:
            p.close()
        assert "above" == line["line"]
        assert "Level 35" == line["level"]  # as LogDNAHandler ships the record


class TestLastInTheChain:
    def test_with_a_return_logger_it_may_end_the_chain(self) -> None:
        """The docs' way to ship to LogDNA only: no renderer, a ReturnLogger."""
        client = CapturingClient()
        try:
            structlog.configure(
                processors=[structlog.processors.add_log_level, LogDNAProcessor(client=client)],
                logger_factory=structlog.ReturnLoggerFactory(),
            )
            structlog.get_logger().info("only to LogDNA", n=1)
        finally:
            structlog.reset_defaults()
            client.close(0)
        assert [("only to LogDNA", "INFO", {"n": 1})] == [
            (line["line"], line["level"], line["meta"]) for line in lines_of(client)
        ]
