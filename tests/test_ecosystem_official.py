"""The official ``logdna`` client's per-line options dict (``log.info("text", {...})``):
a record that takes that path ships, or is counted, as any other record does."""

from __future__ import annotations

import logging

import pytest

from logdna_client import LogDNAHandler
from logdna_client._devserver import DevServer
from tests._helpers_integrations import TIMEOUT, delivered, logger_with


class _BrokenFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        raise RuntimeError("formatter broke")


class TestPerLineOptions:
    def test_a_formatter_that_raises_still_ships_the_line(self, server: DevServer) -> None:
        """A formatter that raises: the record with per-line options ships with the
        marker the handler's own path gives it, with its options applied."""
        handler = LogDNAHandler("not-used", {"url": server.url, "flush_interval": 0.05})
        handler.setFormatter(_BrokenFormatter())
        with logger_with("t.official.formatter", handler) as log:
            log.info("paid %s", {"level": "warn", "meta": {"order": 42}})
            (line,) = delivered(server, handler.client, 1)
        assert line["line"].startswith("paid %s [logdna_client: message could not be formatted")
        assert "WARNING" == line["level"]
        assert 42 == line["meta"]["order"]

    def test_a_line_that_cannot_be_built_is_counted(
        self, server: DevServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A filter that raises on that path: the line is counted as ``error``, not lost
        without a trace."""
        monkeypatch.setattr(logging, "raiseExceptions", False)
        handler = LogDNAHandler("not-used", {"url": server.url, "flush_interval": 0.05})

        def broken(record: logging.LogRecord) -> bool:
            raise RuntimeError("filter broke")

        handler.addFilter(broken)
        with logger_with("t.official.filter", handler) as log:
            log.info("paid", {"level": "warn"})  # noqa: PLE1205 - the official form
            assert handler.client.flush(TIMEOUT)
            assert 1 == handler.client.stats()["dropped"]["error"]
