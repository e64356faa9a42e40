"""The rules in ``_event.py`` that the structlog processor and the handler (a record
structlog's ``wrap_for_formatter`` made) share: how an event reads as a line, and which
level passes. (``timestamp_of``'s many forms are in tests/test_structlog.py.)"""

from __future__ import annotations

import logging

import pytest

from logdna_client._event import event_line, level_name, levelno_of, passes


class TestEventLine:
    def test_a_time_is_the_lines_and_not_meta(self) -> None:
        """A ``timestamp`` that reads as a time is the line's time, in epoch ms; the other
        keys are meta, the level is neither."""
        event = {"event": "paid", "timestamp": "2023-11-14T22:13:20Z", "level": "info", "n": 1}
        assert ("paid", {"n": 1}, 1_700_000_000_000) == event_line(event, None, None)

    def test_a_timestamp_that_is_no_time_stays_meta(self) -> None:
        """One that is no time stays in meta, and the line has no time of its own."""
        event = {"event": "paid", "timestamp": "last tuesday"}
        assert ("paid", {"timestamp": "last tuesday"}, None) == event_line(event, None, None)

    def test_the_events_keys_win_over_the_context(self) -> None:
        """Request context comes under the event's own keys; the event is not changed."""
        event = {"event": "e", "user": "from the event"}
        text, meta, ts = event_line(event, {"user": "ctx", "request_id": "r1"}, None)
        assert ("e", {"user": "from the event", "request_id": "r1"}, None) == (text, meta, ts)
        assert {"event": "e", "user": "from the event"} == event

    def test_no_event_is_its_pairs(self) -> None:
        """An event dict without ``event`` reads as its key=value pairs, which stay meta."""
        text, meta, _ = event_line({"user": 1, "action": "login"}, None, None)
        assert "user=1 action=login" == text
        assert {"user": 1, "action": "login"} == meta

    def test_the_redactor_sees_the_no_event_text(self) -> None:
        """The pairs a line without ``event`` shows go through the redactor given."""
        text, _, _ = event_line({"password": "hunter2"}, None, lambda d: {k: "***" for k in d})
        assert "hunter2" not in text


class TestPasses:
    @pytest.mark.parametrize(
        ("level", "threshold", "expected"),
        [
            ("DEBUG", 0, True),  # no threshold: every line
            ("DEBUG", logging.INFO, False),
            ("INFO", logging.INFO, True),
            ("WARNING", logging.ERROR, False),
            ("Level 35", logging.WARNING, True),  # logging's name of an unnamed level
            ("Level 35", logging.ERROR, False),
            ("no such level", logging.INFO, True),  # a name nobody knows: as INFO
            ("no such level", logging.WARNING, False),
        ],
    )
    def test_at_or_above_the_threshold(self, level: str, threshold: int, expected: bool) -> None:
        assert expected is passes(level, threshold)

    def test_a_level_the_app_named(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A level the application registered (``addLevelName``) passes by its number."""
        monkeypatch.setitem(logging._levelToName, 25, "NOTICE_FOR_TEST")
        monkeypatch.setitem(logging._nameToLevel, "NOTICE_FOR_TEST", 25)
        assert 25 == levelno_of("NOTICE_FOR_TEST")
        assert passes("NOTICE_FOR_TEST", 25)
        assert not passes("NOTICE_FOR_TEST", 26)
        assert "NOTICE_FOR_TEST" == level_name("NOTICE_FOR_TEST")
