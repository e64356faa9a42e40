"""Option values the official ``logdna`` client took (_official.py's ``translate``):
taken the closest sane way in its form, with one warning each, while our own
keyword options keep refusing them. What the official client did with them
(logdna 1.18.12): ``request_timeout`` went to requests as seconds (its README says
milliseconds, "Default: 30000"), a ``(connect, read)`` pair included; ``flush_limit``
and ``buf_retention_limit`` were only compared with the bytes buffered, and
``flush_interval`` was a ``threading.Timer``'s interval, so any number worked."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from logdna_client import ConfigurationError, LogDNAHandler
from logdna_client._config import RANGES, Config
from logdna_client._official import _BYTES, _SECONDS, RENAMED

URL = "http://127.0.0.1:9/logs/ingest"  # loopback: never contacted here


def _config_of(options: dict[str, Any], **keywords: Any) -> Config:
    handler = LogDNAHandler("k", {"url": URL, **options}, **keywords)
    handler.close()
    return handler.client.config


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "logdna_client" and r.levelno == logging.WARNING
    ]


class TestTakenWithAWarning:
    @pytest.mark.parametrize(
        ("official", "given", "ours", "used", "said"),
        [
            ("request_timeout", 30000, "request_timeout", 30.0, "read as milliseconds"),
            ("request_timeout", 601, "request_timeout", 0.601, "read as milliseconds"),
            ("request_timeout", (3.05, 27), "request_timeout", 27, "(connect, read)"),
            ("request_timeout", [3.05, 27], "request_timeout", 27, "(connect, read)"),
            ("request_timeout", (None, 27), "request_timeout", 27, "(connect, read)"),
            ("request_timeout", (5000, 30000), "request_timeout", 30.0, "milliseconds"),
            ("request_timeout", 0.05, "request_timeout", 0.1, "shortest"),
            ("flush_limit", 512, "max_batch_bytes", 1024, "1024 bytes"),
            ("flush_limit", 0, "max_batch_bytes", 1024, "1024 bytes"),
            ("flush_limit", 100 * 1024 * 1024, "max_batch_bytes", 8 * 1024 * 1024, "bytes"),
            ("flush_limit", 4096.5, "max_batch_bytes", 4096, "4096 bytes"),
            ("buf_retention_limit", 10_000, "max_buffer_bytes", 64 * 1024, "65536 bytes"),
            ("flush_interval", 0, "flush_interval", 0.01, "0.01 seconds"),
            ("flush_interval", -1, "flush_interval", 0.01, "0.01 seconds"),
            ("flush_interval", 7200, "flush_interval", 3600, "3600 seconds"),
        ],
    )
    def test_value_taken(
        self,
        caplog: pytest.LogCaptureFixture,
        official: str,
        given: object,
        ours: str,
        used: float,
        said: str,
    ) -> None:
        """The value used is the nearest sane one, and one WARNING names the official
        option, what was given and what is used."""
        with caplog.at_level(logging.WARNING, logger="logdna_client"):
            config = _config_of({official: given})
        assert used == pytest.approx(getattr(config, ours))
        (warning,) = _warnings(caplog)
        assert f"official option {official}={given!r}" in warning
        assert said in warning

    def test_values_in_range_unchanged(self, caplog: pytest.LogCaptureFixture) -> None:
        """Values ours takes as they are pass unchanged, without a warning."""
        options = {
            "request_timeout": 30, "flush_limit": 2048, "buf_retention_limit": 100_000,
            "flush_interval": 0.25,
        }  # fmt: skip
        with caplog.at_level(logging.WARNING, logger="logdna_client"):
            config = _config_of(options)
        assert (30, 2048, 100_000, 0.25) == (
            config.request_timeout, config.max_batch_bytes, config.max_buffer_bytes,
            config.flush_interval,
        )  # fmt: skip
        assert [] == _warnings(caplog)

    def test_same_by_keyword(self, caplog: pytest.LogCaptureFixture) -> None:
        """The dictConfig form (key=, options=) takes and warns alike."""
        with caplog.at_level(logging.WARNING, logger="logdna_client"):
            handler = LogDNAHandler(key="k", options={"url": URL, "request_timeout": 30000})  # type: ignore[call-arg]
        handler.close()
        assert 30.0 == handler.client.config.request_timeout
        assert 1 == len(_warnings(caplog))

    def test_keyword_beside_wins_without_a_warning(self, caplog: pytest.LogCaptureFixture) -> None:
        """Our keyword given beside the official option is the one used: no warning about
        the official value that is not."""
        with caplog.at_level(logging.WARNING, logger="logdna_client"):
            config = _config_of({"flush_limit": 512}, max_batch_bytes=4096)
        assert 4096 == config.max_batch_bytes
        assert [] == _warnings(caplog)


class TestErrorsNameTheOfficialOption:
    @pytest.mark.parametrize(
        ("official", "given"),
        [
            ("flush_limit", "lots"),
            ("flush_limit", None),
            ("flush_limit", "512"),  # text: the official client compared it and failed
            ("buf_retention_limit", [1]),
            ("request_timeout", 900_000_000),  # past 600 s even as milliseconds
            ("request_timeout", 0),
            ("request_timeout", "soon"),
            ("flush_interval", "soon"),
            ("flush_interval", float("nan")),
        ],
    )
    def test_refused_under_its_name(self, official: str, given: object) -> None:
        """A value neither client could use is refused, the error naming the option as
        the user wrote it."""
        with pytest.raises(ConfigurationError, match=f"^{official}: ") as caught:
            _config_of({official: given})
        assert official == caught.value.option


class TestOurKeywordsStayStrict:
    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("request_timeout", 30000),
            ("request_timeout", (3.05, 27)),
            ("max_batch_bytes", 512),
            ("max_buffer_bytes", 10_000),
            ("flush_interval", 0),
        ],
    )
    def test_refused(self, name: str, value: object) -> None:
        """Our own options refuse such values, in our form and beside the official one."""
        with pytest.raises(ConfigurationError, match=f"^{name}: "):
            LogDNAHandler(url=URL, **{name: value})
        with pytest.raises(ConfigurationError, match=f"^{name}: "):
            LogDNAHandler("k", {"url": URL}, **{name: value})


@pytest.mark.parametrize("official", sorted(_SECONDS | _BYTES))
def test_bounds_are_configs(official: str) -> None:
    """RANGES, the range official values are brought into, is what Config takes: its
    ends are taken, and just past them is refused."""
    ours = RENAMED.get(official, official)
    low, high = RANGES[ours]
    step = 1 if official in _BYTES else 1e-9
    for value in (low, high):
        assert value == getattr(Config(key="k", url=URL, **{ours: value}), ours)
    for value in (low - step, high + step):
        with pytest.raises(ConfigurationError):
            Config(key="k", url=URL, **{ours: value})
