"""Tests for OpenTelemetry's exporter variables with protocol="otlp": the endpoint and
the headers from OTEL_EXPORTER_OTLP_(LOGS_)ENDPOINT and _HEADERS, against a real server."""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterator
from typing import Any

import pytest

from logdna_client import Client, ConfigurationError
from logdna_client._config import DEFAULT_URL, Config
from tests._otlp_server import Server, running

TOKEN = "otel-header-token-0123456789"
_OTEL = (
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_LOGS_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS",
    "LOGDNA_URL", "LOGDNA_INGESTION_KEY",
)  # fmt: skip


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in _OTEL:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def bearer() -> Iterator[Server]:
    """A Collector that takes the one token the OTel headers carry."""
    with running(expected=("bearer", TOKEN)) as server:
        yield server


def deliver(**options: Any) -> Client:
    client = Client(
        protocol="otlp", kubernetes=False, handle_signals=False, flush_interval=0.05,
        retry_max_backoff=0.2, **options,
    )  # fmt: skip
    client.log("hello", level="INFO")
    return client


class TestEndpoint:
    def test_the_generic_endpoint_gets_the_logs_path_and_the_headers_go_with_it(
        self, env: pytest.MonkeyPatch, bearer: Server
    ) -> None:
        """OTEL_EXPORTER_OTLP_ENDPOINT is a base URL: records go to its /v1/logs, with
        OTEL_EXPORTER_OTLP_HEADERS (percent-decoded) on every request."""
        env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", bearer.base + "/")
        env.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Bearer%20{TOKEN}, x-tenant = t1")
        client = deliver()
        assert client.flush(timeout=30)
        client.close()
        request = bearer.requests[0]
        assert ("/v1/logs", 200) == (request.path, request.status)
        assert "t1" == request.headers["x-tenant"]
        assert ["hello"] == [line["line"] for line in bearer.lines]

    def test_the_logs_endpoint_is_used_as_it_is_and_wins(
        self, env: pytest.MonkeyPatch, bearer: Server
    ) -> None:
        """OTEL_EXPORTER_OTLP_LOGS_ENDPOINT is the whole URL and wins over the generic one,
        as OTEL_EXPORTER_OTLP_LOGS_HEADERS wins over OTEL_EXPORTER_OTLP_HEADERS."""
        env.setenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", bearer.url)
        env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "https://elsewhere.invalid:4318")
        env.setenv("OTEL_EXPORTER_OTLP_LOGS_HEADERS", f"authorization=Bearer {TOKEN}")
        env.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer wrong-token-0000")
        client = deliver()
        assert client.flush(timeout=30)
        client.close()
        assert [("/v1/logs", 200)] == [(r.path, r.status) for r in bearer.requests]

    def test_url_and_logdna_url_win_and_get_none_of_the_otel_headers(
        self, env: pytest.MonkeyPatch
    ) -> None:
        """An explicit url= (or LOGDNA_URL) wins, and the OTel headers, set for the OTel
        endpoint (often a vendor's token), are not sent to it."""
        env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "https://vendor.invalid")
        env.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"x-vendor-token={TOKEN}")
        with running(expected=("apikey", "k")) as server:
            client = deliver(key="k", url=server.url)
            assert client.flush(timeout=30)
            client.close()
            env.setenv("LOGDNA_URL", server.url)
            client = deliver(key="k")
            assert client.flush(timeout=30)
            client.close()
        assert 2 == len(server.lines)
        for request in server.requests:
            assert "x-vendor-token" not in {name.lower() for name in request.headers}

    def test_the_ingest_protocol_reads_none_of_them(self, env: pytest.MonkeyPatch) -> None:
        """With protocol="logdna" the OTel variables are not read."""
        env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector.invalid:4318")
        env.setenv("OTEL_EXPORTER_OTLP_HEADERS", "not a header")
        config = Config(key="k", handle_signals=False)
        assert (DEFAULT_URL, ()) == (config.url, config.otlp_headers)


class TestRefused:
    @pytest.mark.parametrize(
        "headers",
        [f"Authorization Bearer {TOKEN}", f"bad name={TOKEN}", f"x={TOKEN}%0Aevil: 1",
         f"x={TOKEN}%FF", f"ok=1,={TOKEN}"],
    )  # fmt: skip
    def test_a_malformed_header_list_names_the_variable_not_the_value(
        self, env: pytest.MonkeyPatch, headers: str
    ) -> None:
        """A malformed OTEL_EXPORTER_OTLP_HEADERS is a ConfigurationError at start naming
        the variable and the entry's place; the token is in no message, repr or pickle."""
        env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
        env.setenv("OTEL_EXPORTER_OTLP_HEADERS", headers)
        with pytest.raises(ConfigurationError) as info:
            Client(protocol="otlp", handle_signals=False)
        message = str(info.value)
        assert message.startswith("OTEL_EXPORTER_OTLP_HEADERS: entry ")
        assert TOKEN not in message + repr(info.value) + repr(pickle.dumps(info.value))
        # Nor in a local of any frame the traceback holds (Sentry captures them).
        tb = info.tb.tb_next  # (past this test's own frame)
        while tb is not None:
            assert TOKEN not in repr(tb.tb_frame.f_locals)
            tb = tb.tb_next

    def test_plain_http_to_another_host_needs_allow_insecure(self, env: pytest.MonkeyPatch) -> None:
        """The headers may carry a token: plain http:// to a host that is not loopback is
        refused, naming the variable, unless allow_insecure=True."""
        env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector.example:4318")
        env.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"api-key={TOKEN}")
        with pytest.raises(ConfigurationError) as info:
            Config(protocol="otlp", handle_signals=False)
        assert "OTEL_EXPORTER_OTLP_ENDPOINT" in str(info.value)
        config = Config(protocol="otlp", handle_signals=False, allow_insecure=True)
        assert "http://collector.example:4318/v1/logs" == config.url
        assert TOKEN not in repr(config) and TOKEN not in repr(config.otlp_headers)
        assert config.otlp_headers == config.replace(level="INFO").otlp_headers

    def test_plain_http_without_a_credential_needs_no_allow_insecure(
        self, env: pytest.MonkeyPatch
    ) -> None:
        """A Collector in the cluster on its plain http port, no key and no OTel headers:
        nothing secret travels, so no allow_insecure is asked for (the old code refused it,
        saying the key would travel). A key given makes it a refusal again, naming it."""
        url = "http://otel-collector.observability.svc:4318/v1/logs"
        assert url == Config(protocol="otlp", url=url, handle_signals=False).url
        env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel-collector:4318")
        assert Config(protocol="otlp", handle_signals=False).url.startswith("http://otel-")
        with pytest.raises(ConfigurationError) as info:
            Config(protocol="otlp", url=url, key=TOKEN, handle_signals=False)
        assert "ingestion key" in str(info.value) and "headers" not in str(info.value)

    @pytest.mark.parametrize("url", ["otelcol:4318", "ftp://otelcol", f"https://u:{TOKEN}@c"])
    def test_a_bad_endpoint_names_the_variable_not_the_value(
        self, env: pytest.MonkeyPatch, url: str
    ) -> None:
        """An endpoint that is no http(s) URL is a ConfigurationError naming the variable."""
        env.setenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", url)
        with pytest.raises(ConfigurationError) as info:
            Config(protocol="otlp", handle_signals=False)
        assert "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT" in str(info.value)
        assert url not in str(info.value)


class TestEchoes:
    def test_a_header_value_echoed_back_is_scrubbed_from_reports(
        self, env: pytest.MonkeyPatch, bearer: Server, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A receiver quoting the request's headers in an error does not put the OTel
        header's token in the library's reports."""
        env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", bearer.base)
        env.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Bearer {TOKEN}")
        bearer.answer_next(503, body=f'{{"message": "busy; you sent Bearer {TOKEN}"}}'.encode())
        with caplog.at_level(logging.WARNING, logger="logdna_client"):
            client = deliver()
            assert client.flush(timeout=30)
            client.close()
        assert "busy; you sent ***" in caplog.text
        assert TOKEN not in caplog.text
