"""Tests for OTLP trace context: the ids logging instrumentation puts on records become
the LogRecord's traceId and spanId, which is where collectors and backends look."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from logdna_client import LogDNAHandler
from logdna_client._buffer import SEPARATOR
from logdna_client._otlp import OTLPEncoder
from tests._otlp_server import Server

TRACE, SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


def context(trace: Any, span: Any, sampled: Any = True) -> dict[str, Any]:
    """What opentelemetry-instrumentation-logging's LoggingInstrumentor sets on a record."""
    return {"otelTraceID": trace, "otelSpanID": span, "otelTraceSampled": sampled,
            "otelServiceName": "api"}  # fmt: skip


def sent_records(server: Server) -> dict[str, dict[str, Any]]:
    """Each record the server took (protobuf's parser too), by its body, as JSON."""
    out = {}
    for request in server.requests:
        assert request.parsed is not None
        for rl in orjson.loads(request.body)["resourceLogs"]:
            for sl in rl["scopeLogs"]:
                for record in sl["logRecords"]:
                    out[record["body"]["stringValue"]] = record
    return out


def attribute_keys(record: dict[str, Any]) -> set[str]:
    return {kv["key"] for kv in record.get("attributes", [])}


class TestTraceContext:
    def test_ids_become_the_records_fields(self, otlp: Server) -> None:
        """Valid ids go in traceId and spanId (hex, lowercase), sampled in flags; ids that
        are no ids (the "0" of a record outside a span, a wrong length, not hex) stay
        attributes and the record has none (old code: every one an attribute)."""
        handler = LogDNAHandler(
            key="k", url=otlp.url, protocol="otlp", hostname="h", kubernetes=False,
            handle_signals=False,
        )  # fmt: skip
        logger = logging.getLogger("tests.otlp_trace")
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(logging.INFO)
        cases = {
            "in a span": context(TRACE, SPAN),
            "upper case, not sampled": context(TRACE.upper(), SPAN.upper(), False),
            "outside a span": context("0", "0", False),
            "all zeros": context("0" * 32, "0" * 16),
            "short": context(TRACE[:31], SPAN),
            "not hex": context("g" * 32, SPAN),
            "span missing": {"otelTraceID": TRACE},
        }
        try:
            for text, extra in cases.items():
                logger.info(text, extra=extra)
            assert handler.client.flush(timeout=10)
        finally:
            logger.removeHandler(handler)
            handler.close()
        got = sent_records(otlp)
        assert {"traceId": TRACE, "spanId": SPAN, "flags": 1} == {
            k: got["in a span"][k] for k in ("traceId", "spanId", "flags")
        }
        assert "otelServiceName" in attribute_keys(got["in a span"])
        assert not {"otelTraceID", "otelSpanID", "otelTraceSampled"} & attribute_keys(
            got["in a span"]
        )
        assert (TRACE, SPAN) == (
            got["upper case, not sampled"]["traceId"], got["upper case, not sampled"]["spanId"]
        )  # fmt: skip
        assert "flags" not in got["upper case, not sampled"]
        for text in ("outside a span", "all zeros", "short", "not hex", "span missing"):
            assert not {"traceId", "spanId", "flags"} & got[text].keys(), text
            assert "otelTraceID" in attribute_keys(got[text]), text

    def test_the_general_path_too(self) -> None:
        """A line with keys a hook added (the general path) gets the same fields."""
        line = {"line": "x", "timestamp": 1732280000000, "level": "INFO", "file": "f",
                "meta": context(TRACE, SPAN)}  # fmt: skip
        body = OTLPEncoder(app="a", env=None, hostname="h").encode([SEPARATOR + orjson.dumps(line)])
        record = orjson.loads(body)["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
        assert (TRACE, SPAN, 1) == (record["traceId"], record["spanId"], record["flags"])
        assert {"otelServiceName", "file"} == attribute_keys(record)
