"""Tests for OTLP severity: every stdlib level, named or not, gets its SeverityNumber."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from logdna_client import LogDNAHandler
from tests._otlp_server import Server

# Python level -> (severityText as logging names it, SeverityNumber): the stdlib's names,
# and unnamed levels placed as the OpenTelemetry SDK's LoggingHandler places them.
EXPECTED = {
    5: ("Level 5", 1),  # below DEBUG: TRACE
    10: ("DEBUG", 5),
    15: ("Level 15", 8),  # DEBUG4
    20: ("INFO", 9),
    25: ("Level 25", 12),  # INFO4
    30: ("WARNING", 13),
    35: ("Level 35", 16),  # WARN4
    40: ("ERROR", 17),
    45: ("Level 45", 20),  # ERROR4
    50: ("CRITICAL", 21),
    51: ("Level 51", 22),  # FATAL2
    60: ("Level 60", 24),  # FATAL4
}


def severities(otlp: Server, name: str, levels: Iterable[int]) -> dict[int, tuple[str, int]]:
    """Log "at N" at each level N through an OTLP handler on logger ``name``: what each
    arrives as, (severity_text, severity_number), by N."""
    handler = LogDNAHandler(
        key="k", url=otlp.url, protocol="otlp", hostname="h", kubernetes=False,
        handle_signals=False,
    )  # fmt: skip
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.setLevel(1)
    logger.propagate = False
    try:
        for number in levels:
            logger.log(number, "at %d", number)
        assert handler.client.flush(timeout=30)
    finally:
        logger.removeHandler(handler)
        handler.close()
    got = {}
    for request in otlp.requests:
        assert request.parsed is not None
        for rl in request.parsed.resource_logs:
            for sl in rl.scope_logs:
                for record in sl.log_records:
                    number = int(record.body.string_value.split()[1])
                    got[number] = (record.severity_text, record.severity_number)
    return got


class TestSeverity:
    def test_every_level_has_its_number(self, otlp: Server) -> None:
        """Unnamed levels ('Level 45') arrive with their range's number, not 0 (unspecified:
        the old code's, which a collector's severity filter drops with the TRACE lines)."""
        got = severities(otlp, "tests.otlp_severity", EXPECTED)
        assert EXPECTED == got
