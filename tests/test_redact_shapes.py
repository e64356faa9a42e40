"""Credential shapes real applications log, in message text and in meta values:
each ships with its secret replaced, whole (the last review's gaps and the
adversarial review after them)."""

from __future__ import annotations

import orjson
import pytest

from logdna_client import Client, LogDNAHandler
from logdna_client._redact import CREDENTIAL_PATTERNS, MARKER, Redactor
from tests._redact_reference import ReferencePatterns
from tests.test_redact import RecordingTransport, assert_ships_as, wire  # noqa: F401
from tests.test_speedups import needs_speedups, pair, record, through_both  # noqa: F401

#: (text, what it ships as); each secret piece is spelled "s3cr..." so a leak is
#: easy to see.
SHAPES = [
    # A value with spaces before a connection string's ";": all of it.
    ("Password=s3cr et;", "Password=[REDACTED];"),
    ("Server=db;User Id=sa;Password=s3cr et pass;Database=app",
     "Server=db;User Id=sa;Password=[REDACTED];Database=app"),
    # A URL's password holding "@" (urllib takes the host after the last one).
    ("https://user:s3cr@et@host/x", "https://user:[REDACTED]@host/x"),
    ("postgres://app:s3cr@et@db:5432/x", "postgres://app:[REDACTED]@db:5432/x"),
    # A bytearray's repr, as a dict or kwargs repr prints it.
    ("{'password': bytearray(b's3cret')}", "{'password': bytearray(b'[REDACTED]')}"),
    ("Config(password=bytearray(b's3cret'), user='bob')",
     "Config(password=bytearray(b'[REDACTED]'), user='bob')"),
    # A key ending in two digits before ": " is a key, not a time.
    ("token01: s3cret", "token01: [REDACTED]"),
    ('"password12": "s3cret"', '"password12": "[REDACTED]"'),
]  # fmt: skip

#: Lines that stay as they are: times, ratios, ordinary text near the new rules.
PLAIN = [
    "at 12:30 ok",
    "started 2024-01-02T10:30:45Z",
    "ratio 16:9 kept",
    "see https://example.com/a@b and https://example.com:8080/x",
    "mail admin@example.com about https://example.com/",
    "user=bob; more text",
    "Password policy: 8 characters; ok",
]


class TestShapes:
    @pytest.mark.parametrize(("text", "expected"), SHAPES)
    def test_redactor(self, text: str, expected: str) -> None:
        """The redactor alone, and the reference engine the same."""
        redactor = Redactor()
        reference = ReferencePatterns(
            list(CREDENTIAL_PATTERNS), redactor.is_secret, redactor._names_secret
        )

        assert expected == redactor.text(text)
        assert expected == reference.sub(MARKER, text)
        assert "s3cr" not in redactor.text(text)

    @pytest.mark.parametrize(("text", "expected"), SHAPES)
    def test_shipped(
        self,
        text: str,
        expected: str,
        wire: tuple[Client, RecordingTransport],  # noqa: F811
    ) -> None:
        """As the message, a %s argument and an extra= value, through the handler."""
        assert_ships_as(wire, "tests.redact_shapes", text, expected)

    @needs_speedups
    @pytest.mark.parametrize(("text", "expected"), SHAPES)
    def test_c_path_same_bytes(
        self,
        text: str,
        expected: str,
        pair: tuple[LogDNAHandler, LogDNAHandler],  # noqa: F811
    ) -> None:
        """The C handle's trigger check hands each to the redactor: the C path and
        the pure-Python one queue the same line (the C check took the ':' in
        "token01: x" for a time's and shipped the line as it was)."""
        fast, slow = through_both(pair, record(text, ()))

        assert slow == fast
        assert [expected] * 2 == [orjson.loads(entry[1:])["line"] for entry in fast]

    @pytest.mark.parametrize("text", PLAIN)
    def test_plain_stays(self, text: str) -> None:
        assert text == Redactor().text(text)
