"""Tests for OpenTelemetry's exporter variables with protocol="otlp": the endpoint, the
headers, the timeout and the compression from OTEL_EXPORTER_OTLP_(LOGS_)ENDPOINT,
_HEADERS, _TIMEOUT and _COMPRESSION, against a real server."""

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
    "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION",
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

    @pytest.mark.parametrize(
        "url",
        ["http://127.0.0.1:4318/v1/logs", "https://otel.example:4318/v1/logs/",
         "http://localhost/otel/V1/logs",
         # As the request carries them (H183): dot segments, escapes, doubled slashes.
         "http://127.0.0.1/v1/./logs", "http://127.0.0.1/v1/log%73", "http://127.0.0.1/%761/logs",
         "http://127.0.0.1/v1//logs", "http://127.0.0.1/x/../v1/logs?a=1"],
    )  # fmt: skip
    def test_an_otlp_url_without_protocol_otlp(self, url: str) -> None:
        """protocol="otlp" forgotten: a Collector answers the LogDNA API's body 200 and
        stores none of it (H182: 100 lines "sent", 0 dropped, none stored). Refused at
        construction, naming url."""
        if url.endswith("V1/logs"):  # (a path's case matters: another endpoint)
            assert Config(url=url, handle_signals=False).url
            return
        with pytest.raises(ConfigurationError) as info:
            Client(url=url, handle_signals=False)
        assert "url" == info.value.option
        assert "protocol='otlp'" in str(info.value)
        assert Config(url=url, protocol="otlp", handle_signals=False).url

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


class TestTimeoutAndCompression:
    def test_the_timeout_is_milliseconds_and_ends_a_hung_request(
        self, env: pytest.MonkeyPatch, bearer: Server
    ) -> None:
        """OTEL_EXPORTER_OTLP_TIMEOUT is the request timeout in milliseconds (the OTel
        specification's unit): a receiver that never answers the first request costs
        half a second, and the retry delivers. Before: the variable was not read, and
        the 15 s default outlasted this flush's 10 s."""
        env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", bearer.base)
        env.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Bearer {TOKEN}")
        env.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "500")
        bearer.hold_next()
        client = deliver()
        assert client.flush(timeout=10)
        client.close()
        assert 0.5 == client.config.request_timeout
        assert [0, 200] == [request.status for request in bearer.requests]
        assert ["hello"] == [line["line"] for line in bearer.lines]

    @pytest.mark.parametrize(
        ("variables", "options", "expected"),
        [
            ({"OTEL_EXPORTER_OTLP_TIMEOUT": "2500"}, {}, 2.5),
            ({"OTEL_EXPORTER_OTLP_LOGS_TIMEOUT": " 750 ", "OTEL_EXPORTER_OTLP_TIMEOUT": "9000"},
             {}, 0.75),
            ({"OTEL_EXPORTER_OTLP_LOGS_TIMEOUT": "", "OTEL_EXPORTER_OTLP_TIMEOUT": "9000"},
             {}, 9.0),
            ({"OTEL_EXPORTER_OTLP_TIMEOUT": "2500"}, {"request_timeout": 15}, 15.0),
            ({"OTEL_EXPORTER_OTLP_TIMEOUT": "2500"}, {"request_timeout": "3s"}, 3.0),
            ({"OTEL_EXPORTER_OTLP_TIMEOUT": "2500"}, {"url": "http://127.0.0.1:9/v1/logs"},
             15.0),
            ({}, {}, 15.0),
        ],
    )  # fmt: skip
    def test_which_timeout_wins(
        self,
        env: pytest.MonkeyPatch,
        variables: dict[str, str],
        options: dict[str, Any],
        expected: float,
    ) -> None:
        """The logs variable wins over the generic one (a blank one is not set);
        request_timeout= wins over both, even at the default's value; with url= given
        neither is read, as for the headers (they are set for the OTel endpoint)."""
        env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
        for name, value in variables.items():
            env.setenv(name, value)
        config = Config(protocol="otlp", handle_signals=False, **options)
        assert expected == config.request_timeout
        assert expected == config.replace(level="INFO").request_timeout

    @pytest.mark.parametrize(
        ("variables", "options", "gzipped"),
        [
            ({"OTEL_EXPORTER_OTLP_COMPRESSION": "none"}, {}, False),
            ({"OTEL_EXPORTER_OTLP_COMPRESSION": " GZIP "}, {}, True),
            ({"OTEL_EXPORTER_OTLP_LOGS_COMPRESSION": "gzip",
              "OTEL_EXPORTER_OTLP_COMPRESSION": "none"}, {}, True),
            ({"OTEL_EXPORTER_OTLP_LOGS_COMPRESSION": "none",
              "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"}, {}, False),
            ({"OTEL_EXPORTER_OTLP_COMPRESSION": "none"}, {"compress": True}, True),
            ({"OTEL_EXPORTER_OTLP_COMPRESSION": "none"}, {"compress": ""}, False),
            ({"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"}, {"compress": "false"}, False),
            ({}, {}, True),
        ],
    )  # fmt: skip
    def test_compression_as_the_variables_say_on_the_wire(
        self,
        env: pytest.MonkeyPatch,
        bearer: Server,
        variables: dict[str, str],
        options: dict[str, Any],
        gzipped: bool,
    ) -> None:
        """OTEL_EXPORTER_OTLP_(LOGS_)COMPRESSION "none" sends plain bodies, "gzip" gzipped
        ones (the client's default); compress= wins (a blank one is not given). Before:
        not read, every body went gzipped."""
        env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", bearer.base)
        env.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Bearer {TOKEN}")
        for name, value in variables.items():
            env.setenv(name, value)
        client = deliver(**options)
        assert client.flush(timeout=30)
        client.close()
        request = bearer.requests[0]
        assert (200, gzipped) == (
            request.status, request.headers.get("Content-Encoding") == "gzip"
        )  # fmt: skip
        assert ["hello"] == [line["line"] for line in bearer.lines]

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "10"),  # seconds, as the Python SDK reads it
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "0"),
            ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "-500"),
            ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "1e4"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "600001"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "deflate"),
            ("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "true"),
        ],
    )
    def test_a_bad_value_names_the_variable(
        self, env: pytest.MonkeyPatch, name: str, value: str
    ) -> None:
        """A value the client cannot use is a ConfigurationError at start naming the
        variable (and the option that wins over it). Before: ignored."""
        env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
        env.setenv(name, value)
        with pytest.raises(ConfigurationError) as info:
            Config(protocol="otlp", handle_signals=False)
        message = str(info.value)
        assert message.startswith(f"{name}: expected ")
        option = "request_timeout" if "TIMEOUT" in name else "compress"
        assert option == info.value.option

    def test_the_ingest_protocol_and_url_read_neither(self, env: pytest.MonkeyPatch) -> None:
        """With protocol="logdna", or url= given, the variables are not read: a bad one
        fails nothing."""
        env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
        env.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "nonsense")
        env.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "nonsense")
        config = Config(key="k", handle_signals=False)
        assert (15.0, True) == (config.request_timeout, config.compress)
        url = "http://127.0.0.1:9/v1/logs"
        config = Config(protocol="otlp", url=url, handle_signals=False)
        assert (15.0, True) == (config.request_timeout, config.compress)
