"""capture_lines() shows a line as the service would receive it: cut to the service's
limits as the sender cuts it, not as the handler built it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from logdna_client import LogDNAHandler
from logdna_client._devserver import DevServer
from logdna_client.testing import capture_lines
from tests._helpers_integrations import TIMEOUT
from tests.helpers import make_logger


def _wire(line: dict[str, Any]) -> dict[str, Any]:
    """A received line's fields as capture_lines gives them (no timestamp: each run has its own)."""
    return {k: line.get(k) for k in ("line", "level", "app", "env", "meta")}


def _long_text(log: logging.Logger) -> None:
    log.warning("x" * 20_000)


def _long_meta(log: logging.Logger) -> None:
    log.info("big meta", extra={"payload": "y" * 40_000})


def _long_level(log: logging.Logger) -> None:
    log.log(45, "custom level")


class TestCaptureMatchesTheWire:
    @pytest.mark.parametrize("log_it", [_long_text, _long_meta, _long_level])
    def test_captured_line_is_the_received_line(
        self, server: DevServer, log_it: Callable[[logging.Logger], None]
    ) -> None:
        """Text over the service's 16 KiB (with ``max_line_length`` above it), meta over
        its 32 KiB and a level name over 80 characters are cut by the sender; the
        captured line is cut the same way."""
        logging.addLevelName(45, "L" * 100)
        try:
            handler = LogDNAHandler(url=server.url, max_line_length="64KiB", app="api")
            log = make_logger("capture.limits", handler)
            with capture_lines() as lines:
                log_it(log)
            log_it(log)
            assert handler.client.flush(TIMEOUT)
            assert server.wait_for_lines(1, TIMEOUT)
            handler.close()
        finally:
            logging.addLevelName(45, "Level 45")
        (received,) = server.lines
        (captured,) = lines
        assert _wire(received) == _wire(captured)
