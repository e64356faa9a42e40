"""Adversarial review of the day's redaction and configuration changes: what held is
in the report; each test here failed on the code before its fix."""

from __future__ import annotations

import datetime
import logging
import re
from typing import Any

import pytest

from logdna_client import Config, ConfigurationError, LogDNAHandler
from logdna_client._redact import Redactor
from logdna_client._secret import Secret
from tests.test_captured_locals import captured
from tests.test_review_secrets import PIECES, across_the_window, leaked


class TestTheWindowsEnd:
    """The redactor alone (the handler's paths: tests/test_review_secrets.py)."""

    def test_text(self) -> None:
        out = Redactor(max_chars=1000).text(across_the_window(1000, 40))
        assert [] == leaked(out, PIECES)
        assert "[REDACTED]" in out

    def test_text_without_secrets_still_ships_to_the_cut(self) -> None:
        """Nothing replaced: what comes back is the text's start, to the cut at least."""
        text = "word " * 1000
        out = Redactor(max_chars=1000).text(text)
        assert text.startswith(out)
        assert len(out) >= 1000


KEY = "Day3-review-Url-Key-7c41e0"
CREDENTIALS_URL = f"https://ingest:{KEY}@logs.example.com/logs/ingest"
REMOTE = "https://logs.example.com/logs/ingest"


def refused(make: Any) -> str:
    """The ConfigurationError ``make()`` raises, as a reporter capturing the library
    frames' locals shows it (tests/test_captured_locals.py)."""
    with pytest.raises(ConfigurationError) as info:
        make()
    return captured(info.value)


class TestUrlCredentialsHidden:
    def test_official_form(self) -> None:
        """LogDNAHandler(key, {"url": ...}): the options dict's URL is hidden first too."""
        assert KEY not in refused(lambda: LogDNAHandler("k", {"url": CREDENTIALS_URL}))

    def test_official_form_refused_for_another_option(self) -> None:
        shown = refused(lambda: LogDNAHandler("k", {"url": CREDENTIALS_URL, "nosuch": 1}))
        assert "nosuch" in shown
        assert KEY not in shown

    def test_config_replace(self) -> None:
        """Config.replace(url=...) and replace(key=...): the changes are hidden first."""
        config = Config(key="k", url=REMOTE)
        assert KEY not in refused(lambda: config.replace(url=CREDENTIALS_URL))
        assert KEY not in refused(lambda: config.replace(key=KEY, flush_interval="soon"))

    @pytest.mark.parametrize(
        "url",
        [
            "http://[::1",
            f"http://ingest:{KEY}@[::1",
            f"https://[logs.example.com/?apikey={KEY}",
            # no "//": urlsplit reads "ingest" as the scheme and the rest as a path
            f"ingest:{KEY}@logs.example.com/logs/ingest",
        ],
    )
    def test_url_that_does_not_parse(self, url: str) -> None:
        """A URL urlsplit rejects is a ConfigurationError (it was a bare ValueError),
        and one that carries credentials is hidden all the same."""
        shown = refused(lambda: Config(key="k", url=url))
        assert "url:" in shown
        assert KEY not in shown

    @pytest.mark.parametrize("kind", [bytes, bytearray, "object"])
    def test_url_not_given_as_text(self, kind: Any) -> None:
        """A URL given as bytes, or as a URL object (yarl's, httpx's: its repr shows
        it), is refused without its credentials in the message or the locals."""

        class Url:
            def __str__(self) -> str:
                return CREDENTIALS_URL

            def __repr__(self) -> str:
                return f"Url({CREDENTIALS_URL!r})"

        url = Url() if kind == "object" else kind(CREDENTIALS_URL.encode())
        shown = refused(lambda: Config(key="k", url=url))
        assert KEY not in shown

    def test_clean_url_in_a_secret(self) -> None:
        """A Secret holding a URL without credentials is refused as not a URL, as
        before: not as one that carries credentials."""
        with pytest.raises(ConfigurationError) as info:
            Config(key="k", url=Secret(REMOTE))
        assert "credentials" not in str(info.value)
        assert "http(s) URL" in str(info.value)
        with pytest.raises(ConfigurationError, match="credentials"):
            Config(key="k", url=Secret(CREDENTIALS_URL))

    def test_plain_url_unchanged(self) -> None:
        """A URL without credentials stays text: in the Config, its repr, its errors."""
        config = Config(key="k", url=REMOTE)
        assert REMOTE == config.url
        assert f"url={REMOTE!r}" in repr(config)
        with pytest.raises(ConfigurationError, match=re.escape("ftp://logs.example.com/x")):
            Config(key="k", url="ftp://logs.example.com/x")
        with pytest.raises(
            ConfigurationError, match=re.escape("plain http:// to logs.example.com")
        ):
            Config(key="k", url="http://logs.example.com/logs/ingest")

    def test_config_positional_url(self) -> None:
        """Config's fields given by position (key, key_file, url, ...): the URL too."""
        assert KEY not in refused(lambda: Config("k", None, CREDENTIALS_URL))


@pytest.mark.parametrize("path", ["c", "python"])
def test_a_fragment_without_secrets_ships_as_it_is(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ``orjson.Fragment`` with nothing to redact ships its own bytes: read back
    through orjson, an integer past 64 bits became a float (its digits lost)."""
    orjson = pytest.importorskip("orjson")
    if not hasattr(orjson, "Fragment"):
        pytest.skip("orjson.Fragment came in orjson 3.9")
    if path == "python":
        monkeypatch.setenv("LOGDNA_CLIENT_PURE_PYTHON", "1")
    handler = LogDNAHandler(key="k", url="https://127.0.0.1:9/logs/ingest", flush_interval=3600)
    try:
        raw = b'{"id": 123456789012345678901234567890, "user": "bob"}'
        record = logging.LogRecord("day3", logging.INFO, __file__, 1, "m", (), None)
        record.body = orjson.Fragment(raw)
        handler.handle(record)
        assert b'"body":' + raw in handler.client._buffer.entries[-1]
    finally:
        handler.client.close(timeout=0)
        handler.close()


class _When(datetime.datetime):
    """A datetime subclass: orjson ships it through the fallback, as its str()."""

    def __str__(self) -> str:
        return "session=" + KEY


@pytest.mark.parametrize("path", ["c", "python"])
def test_a_datetime_subclass_is_judged_by_its_text(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """orjson encodes datetime, date, time and UUID themselves, not their subclasses
    (those ship as their str()): a subclass's text is checked like any object's."""
    if path == "python":
        monkeypatch.setenv("LOGDNA_CLIENT_PURE_PYTHON", "1")
    handler = LogDNAHandler(key="k", url="https://127.0.0.1:9/logs/ingest", flush_interval=3600)
    try:
        record = logging.LogRecord("day3", logging.INFO, __file__, 1, "m", (), None)
        record.when = _When(2024, 1, 2)
        record.plain = datetime.datetime(2024, 1, 2)
        handler.handle(record)
        entry = handler.client._buffer.entries[-1]
        assert KEY.encode() not in entry
        assert b'"when":"session=[REDACTED]"' in entry
        assert b'"plain":"2024-01-02T00:00:00"' in entry
    finally:
        handler.client.close(timeout=0)
        handler.close()


def test_a_fragment_orjson_cannot_write_costs_only_itself() -> None:
    """A Fragment holding text orjson cannot write (a lone surrogate) is marked
    unreadable alone: the rest of the meta ships (it was all replaced)."""
    orjson = pytest.importorskip("orjson")
    if not hasattr(orjson, "Fragment"):
        pytest.skip("orjson.Fragment came in orjson 3.9")
    out = Redactor().meta({"user": "bob", "body": orjson.Fragment("\ud800")})
    assert {"user": "bob", "body": "[REDACTED: unreadable]"} == out
