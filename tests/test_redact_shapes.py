"""Credential shapes real applications log, in message text and in meta values:
each ships with its secret replaced, whole (the last review's gaps and the
adversarial review after them)."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    # A PEM private key logged bare (no key names it), whole or cut.
    ("loaded -----BEGIN RSA PRIVATE KEY-----\nMIIEs3cret+/x\n-----END RSA PRIVATE KEY-----",
     "loaded -----BEGIN RSA PRIVATE KEY-----[REDACTED]-----END RSA PRIVATE KEY-----"),
    ("-----BEGIN PRIVATE KEY-----\\nMIIs3cret\\n-----END PRIVATE KEY-----\\n",
     "-----BEGIN PRIVATE KEY-----[REDACTED]-----END PRIVATE KEY-----\\n"),
    ("-----BEGIN OPENSSH PRIVATE KEY----- b3Blbs3cret",
     "-----BEGIN OPENSSH PRIVATE KEY-----[REDACTED]"),
    # Tokens that name themselves by their prefix, logged bare.
    ("push with ghp_s3cr" + "a" * 32 + " done", "push with ghp_[REDACTED] done"),
    ("github_pat_11AAs3cr" + "b" * 70, "github_pat_[REDACTED]"),
    ("slack xoxb-1234-5678-s3cretTok ok", "slack xoxb-[REDACTED] ok"),
    ("stripe sk_live_s3cr" + "c" * 20 + ", rk_test_s3cr" + "d" * 20,
     "stripe sk_live_[REDACTED], rk_test_[REDACTED]"),
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
    "-----BEGIN CERTIFICATE-----\nMIIBcert\n-----END CERTIFICATE-----",
    "-----BEGIN PUBLIC KEY-----\nMIIBpub\n-----END PUBLIC KEY-----",
    "my_ghp_value gh_pages sk_live xoxb- task_live_x",
]

#: Pieces that make texts where the trigger marks with a "-" or "_" stand at every
#: place (the text's start and end, beside others), for the C check to agree on.
MARK_PIECES = ["ghp_" + "a" * 36, "github_pat_" + "b" * 22, "xoxp-" + "1" * 10,
               "sk_test_" + "c" * 16, "rk_live_" + "d" * 16, "-----BEGIN PRIVATE KEY-----",
               "-", "_", "x", "g", "k", " ", "\n", "ok"]  # fmt: skip


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

    @needs_speedups
    @settings(max_examples=200, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
    @given(st.lists(st.sampled_from(MARK_PIECES), max_size=6))
    def test_c_path_finds_every_mark(
        self,
        pair: tuple[LogDNAHandler, LogDNAHandler],  # noqa: F811
        pieces: list[str],
    ) -> None:
        """The C trigger check sees each mark with a "-" or "_" wherever it stands."""
        fast, slow = through_both(pair, record("".join(pieces), ()))

        assert slow == fast

    @pytest.mark.parametrize("text", PLAIN)
    def test_plain_stays(self, text: str) -> None:
        assert text == Redactor().text(text)
