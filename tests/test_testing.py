"""Tests for logdna_client.testing: capture_lines() and the logdna_lines pytest fixture."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import structlog

from logdna_client import Client, LogDNAHandler
from logdna_client._context import bind_request_context, reset_request_context
from logdna_client._devserver import DevServer
from logdna_client.structlog import LogDNAProcessor
from logdna_client.testing import capture_lines
from tests.helpers import make_logger

pytest_plugins = ["pytester"]


def _texts(lines: list[dict[str, Any]]) -> list[str]:
    return [line["line"] for line in lines]


@pytest.mark.usefixtures("handle_path")
class TestStdlibHandler:
    def test_every_path_captured_nothing_sent(self, server: DevServer) -> None:
        """Plain records (the inlined put, in C or Python), extras, request context and
        exceptions are all captured, and none reaches the server."""
        handler = LogDNAHandler(url=server.url, app="api", env="test")
        log = make_logger("capture.stdlib", handler)
        log.info("warm up the inline path")  # the sender runs: the fast put is on
        assert handler.client.flush(5)
        with capture_lines() as lines:
            for i in range(300):  # enough for the inlined put to take its fast path
                log.info("plain %d", i)
            log.warning("with extra", extra={"user": "ada"})
            token = bind_request_context(request_id="r-1")
            try:
                log.info("in a request")
            finally:
                reset_request_context(token)
            try:
                1 / 0  # noqa: B018
            except ZeroDivisionError:
                log.exception("failed")
        assert handler.client.flush(5)
        handler.close()
        assert 1 == len(server.lines)  # only the warm-up line
        assert [f"plain {i}" for i in range(300)] == _texts(lines)[:300]
        plain = lines[0]
        assert {"line", "level", "app", "env", "timestamp", "meta"} == set(plain)
        assert ("INFO", "api", "test", {"name": "capture.stdlib"}) == (
            plain["level"], plain["app"], plain["env"], plain["meta"]
        )  # fmt: skip
        assert isinstance(plain["timestamp"], int)
        assert {"name": "capture.stdlib", "user": "ada"} == lines[300]["meta"]
        assert "r-1" == lines[301]["meta"]["request_id"]
        assert lines[302]["line"].startswith("failed\nTraceback")
        assert "ERROR" == lines[302]["level"]

    def test_lines_ship_again_after(self, server: DevServer) -> None:
        """Once the capture ends, lines are delivered again."""
        handler = LogDNAHandler(url=server.url)
        log = make_logger("capture.after", handler)
        with capture_lines() as lines:
            log.info("captured")
        log.info("shipped")
        assert handler.client.flush(5)
        assert server.wait_for_lines(1, 5)
        handler.close()
        assert ["captured"] == _texts(lines)
        assert ["shipped"] == [line["line"] for line in server.lines]

    def test_no_sender_started(self) -> None:
        """A handler that only logs inside a capture starts no sender thread: nothing to
        send. (The signal watcher may start: it is there for the process, not the lines.)"""

        def senders() -> int:
            return sum(t.name == "logdna_client-sender" for t in threading.enumerate())

        before = senders()
        with capture_lines() as lines:
            handler = LogDNAHandler(url="http://127.0.0.1:9/logs/ingest")
            make_logger("capture.nothread", handler).info("x")
            assert before == senders()
        handler.close()
        assert ["x"] == _texts(lines)


class TestOtherSources:
    def test_client_log_and_options_applied(self) -> None:
        """Client.log lines are captured as they would ship: level filter, redaction."""
        client = Client(url="http://127.0.0.1:9/logs/ingest", level="INFO", app="svc")
        with capture_lines() as lines:
            client.log("dropped by level", level="DEBUG")
            client.log("kept", level="WARNING", meta={"password": "hunter2", "n": 1})
        client.close(0)
        assert ["kept"] == _texts(lines)
        assert "hunter2" not in str(lines[0]["meta"])
        assert 1 == lines[0]["meta"]["n"]

    def test_structlog_processor(self) -> None:
        """Events through LogDNAProcessor are captured."""
        processor = LogDNAProcessor(url="http://127.0.0.1:9/logs/ingest")
        log = structlog.wrap_logger(
            structlog.testing.ReturnLogger(),
            processors=[structlog.processors.add_log_level, processor],
        )
        with capture_lines() as lines:
            log.info("order placed", order=7)
        processor.client.close(0)
        assert ["order placed"] == _texts(lines)
        assert 7 == lines[0]["meta"]["order"]

    def test_index_meta_false_meta_decoded(self) -> None:
        """Meta shipped as a string (index_meta=False) is a dict in the capture."""
        client = Client(url="http://127.0.0.1:9/logs/ingest", index_meta=False)
        with capture_lines() as lines:
            client.log("x", meta={"a": 1})
        client.close(0)
        assert {"a": 1} == lines[0]["meta"]

    def test_nested_captures(self) -> None:
        """An inner capture and the outer one both see the inner lines."""
        client = Client(url="http://127.0.0.1:9/logs/ingest")
        with capture_lines() as outer:
            client.log("one")
            with capture_lines() as inner:
                client.log("two")
            client.log("three")
        client.close(0)
        assert ["one", "two", "three"] == _texts(outer)
        assert ["two"] == _texts(inner)

    def test_closed_client_still_counts_after_close(self) -> None:
        """A closed client's lines are not shipped, captured or not."""
        client = Client(url="http://127.0.0.1:9/logs/ingest")
        client.close(0)
        with capture_lines() as lines:
            assert not client.log("late")
        assert [] == lines
        assert 1 == client.stats()["dropped"]["after_close"]


class TestPytestPlugin:
    def test_fixture_and_helper_from_a_user_test_suite(self, pytester: pytest.Pytester) -> None:
        """A user's test file gets logdna_lines without importing anything (entry point)."""
        pytester.makepyfile(
            """
            import logging
            from logdna_client import LogDNAHandler
            from logdna_client.testing import capture_lines

            log = logging.getLogger("app")
            log.addHandler(LogDNAHandler(url="http://127.0.0.1:9/logs/ingest", app="shop"))
            log.setLevel(logging.INFO)

            def checkout(user):
                log.info("checkout", extra={"user": user})

            def test_fixture(logdna_lines):
                checkout("ada")
                assert [("checkout", "shop", {"name": "app", "user": "ada"})] == [
                    (l["line"], l["app"], l["meta"]) for l in logdna_lines
                ]

            def test_fixture_is_per_test(logdna_lines):
                assert logdna_lines == []

            def test_helper():
                with capture_lines() as lines:
                    checkout("bob")
                assert lines[0]["meta"] == {"name": "app", "user": "bob"}
            """
        )
        result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
        result.assert_outcomes(passed=3)
