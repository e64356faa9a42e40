"""Review of the OTLP path against what an OpenTelemetry user expects of the SDK's
exporter: OTEL_EXPORTER_OTLP_HEADERS read as opentelemetry-python reads them."""

from __future__ import annotations

import pytest

from tests._otlp_server import Server
from tests.test_otlp_environment import TOKEN, bearer, deliver, env

__all__ = ["bearer", "env"]  # the fixtures this module's tests take


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
