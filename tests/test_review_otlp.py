"""Review of the OTLP path against what an OpenTelemetry user expects of the SDK's
exporter: OTEL_EXPORTER_OTLP_HEADERS, _CERTIFICATE and the endpoint variables read as
opentelemetry-python's OTLP/HTTP exporter reads them."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from logdna_client import ConfigurationError
from logdna_client._config import Config
from logdna_client._otel_env import OTEL_CERTIFICATES
from tests._claims_servers import answer, scripted_server
from tests._otlp_server import Server
from tests.test_hostile_endpoints import tls
from tests.test_otlp_environment import TOKEN, bearer, deliver, env

__all__ = ["bearer", "env", "tls"]  # the fixtures this module's tests take


class TestHeaders:
    def test_names_and_values_are_percent_decoded_then_trimmed(
        self, env: pytest.MonkeyPatch, bearer: Server
    ) -> None:
        """The SDK's parse_env_headers decodes a header's name as well as its value and
        trims both after decoding. Before: the name went out as "x%2Dtenant", and a value
        whose decoded text began with a space made every request fail in requests
        (InvalidHeader, "leading whitespace"): 87 attempts in 5 s, none delivered."""
        env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", bearer.base)
        env.setenv(
            "OTEL_EXPORTER_OTLP_HEADERS", f"x%2Dtenant=t1 , Authorization=%20Bearer%20{TOKEN}"
        )
        client = deliver()
        assert client.flush(timeout=30)
        client.close()
        request = bearer.requests[0]
        assert (200, "t1") == (request.status, request.headers.get("x-tenant"))
        assert ["hello"] == [line["line"] for line in bearer.lines]

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            (" a = 1 ,, b=2 , ", [("a", "1"), ("b", "2")]),  # blanks and empty entries
            ("x=Basic dXNlcjpw=", [("x", "Basic dXNlcjpw=")]),  # '=' in a value
            ("x=a%2Cb%3Dc", [("x", "a,b=c")]),  # ',' and '=' percent-encoded
            ("x=", [("x", "")]),
        ],
    )
    def test_entries_read_as_the_sdk_reads_them(
        self, env: pytest.MonkeyPatch, text: str, expected: list[tuple[str, str]]
    ) -> None:
        """Held before: the SDK's splitting, trimming and first '=' rule."""
        env.setenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://127.0.0.1:4318/v1/logs")
        env.setenv("OTEL_EXPORTER_OTLP_HEADERS", text)
        config = Config(protocol="otlp", handle_signals=False)
        assert expected == [(name, value.reveal()) for name, value in config.otlp_headers]


@pytest.mark.parametrize(
    ("name", "value", "url"),
    [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/logs"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318/", "http://127.0.0.1:4318/v1/logs"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1/otel/", "http://127.0.0.1/otel/v1/logs"),
        ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://127.0.0.1:4318", "http://127.0.0.1:4318"),
        ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://127.0.0.1/x/", "http://127.0.0.1/x/"),
    ],
)
def test_endpoints_as_the_sdk_resolves_them(
    env: pytest.MonkeyPatch, name: str, value: str, url: str
) -> None:
    """Held before: the generic endpoint is a base that gets v1/logs (one slash between,
    whether it ends in one or not), the logs endpoint is used as it is."""
    env.setenv(name, value)
    assert url == Config(protocol="otlp", handle_signals=False).url


class TestCertificate:
    @pytest.mark.parametrize(
        "name", ["OTEL_EXPORTER_OTLP_CERTIFICATE", "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE"]
    )
    def test_the_otel_endpoints_ca_is_trusted(
        self, env: pytest.MonkeyPatch, tls: tuple[ssl.SSLContext, Path], name: str
    ) -> None:
        """The SDK's exporter verifies its endpoint with the CA that
        OTEL_EXPORTER_OTLP_(LOGS_)CERTIFICATE names (a Collector behind a private CA).
        Before: the endpoint was taken from the OTel variables but not the CA that goes
        with it, so every request failed TLS verification: no line delivered in 30 s."""
        context, cert = tls
        for variable in OTEL_CERTIFICATES:
            env.delenv(variable, raising=False)
        with scripted_server(lambda *_: answer(200, b"{}"), tls=context) as server:
            env.setenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", server.url)
            env.setenv(name, str(cert))
            client = deliver()
            assert client.flush(timeout=30)
            client.close()
        assert 1 == len(server.requests)
        assert str(cert) == client.config.verify

    def test_it_goes_with_the_otel_endpoint_only_and_never_over_verify(
        self, env: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """Like the OTel headers, the CA is for the endpoint it came with: url= (often a
        public endpoint, which a private CA in place of the default ones would fail) and
        an explicit verify= are left as they are; a CA file that is not there is an error
        naming the variable."""
        ca = tmp_path / "ca.pem"
        ca.write_text("")
        env.delenv(OTEL_CERTIFICATES[0], raising=False)
        env.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(ca))
        url = "https://collector.example/v1/logs"
        assert Config(protocol="otlp", url=url, handle_signals=False).verify is True
        env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector.example")
        assert str(ca) == Config(protocol="otlp", handle_signals=False).verify
        assert not Config(protocol="otlp", verify=False, handle_signals=False).verify
        assert Config(protocol="logdna", key="k", handle_signals=False).verify is True
        env.setenv("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE", str(tmp_path / "missing.pem"))
        with pytest.raises(ConfigurationError) as info:
            Config(protocol="otlp", handle_signals=False)
        assert str(info.value).startswith("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE: ")
