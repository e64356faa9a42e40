"""Tests for OTLP timestamps: every one a before_send hook can give makes a body that parses."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from logdna_client import Client
from logdna_client._buffer import SEPARATOR
from logdna_client._otlp import OTLPEncoder
from tests._otlp_server import Server


def setting(value: Callable[[], Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A before_send hook that sets each line's timestamp (in place: the key order stays)."""

    def hook(line: dict[str, Any]) -> dict[str, Any]:
        line["timestamp"] = value()
        return line

    return hook


class TestOutOfRange:
    @pytest.mark.parametrize(
        "value",
        [time.time_ns, lambda: time.time_ns() // 1000, lambda: 2**70, lambda: 1e300],
        ids=["nanoseconds", "microseconds", "past-int64", "huge-float"],
    )
    def test_every_line_arrives_with_its_observed_time(
        self, otlp: Server, value: Callable[[], Any]
    ) -> None:
        """A timestamp whose nanoseconds a fixed64 cannot hold is left unset, and the record
        carries the time it was sent as observedTimeUnixNano (old code: protobuf refused the
        body, 400, 10 of 10 lines lost)."""
        client = Client(
            key="k", url=otlp.url, protocol="otlp", hostname="h", kubernetes=False,
            handle_signals=False, before_send=setting(value),
        )  # fmt: skip
        before = time.time_ns()
        for i in range(10):
            client.log(f"line {i}")
        assert client.flush(timeout=10)
        client.close()
        after = time.time_ns()
        assert 0 == client.stats()["dropped_total"]
        records = [
            record
            for request in otlp.requests
            if request.parsed is not None
            for rl in request.parsed.resource_logs
            for sl in rl.scope_logs
            for record in sl.log_records
        ]
        assert [f"line {i}" for i in range(10)] == [r.body.string_value for r in records]
        assert {0} == {r.time_unix_nano for r in records}
        assert all(before <= r.observed_time_unix_nano <= after for r in records)

    def test_the_last_millisecond_that_fits_is_kept(self) -> None:
        """The latest timestamp a fixed64 holds in nanoseconds is sent as it is; one later
        is not (both on the byte path and the general path)."""
        latest = (2**64 - 1) // 1_000_000
        encoder = OTLPEncoder(app="a", env=None, hostname="h")
        for stamp, meta in ((latest, b""), (latest + 1, b""), (latest, b',"meta":{"k":1}')):
            line = b'{"line":"x","timestamp":%d,"level":"INFO"%b}' % (stamp, meta)
            parsed = json_format.Parse(
                encoder.encode([SEPARATOR + line]), ExportLogsServiceRequest()
            )
            record = parsed.resource_logs[0].scope_logs[0].log_records[0]
            expected = stamp * 1_000_000 if stamp == latest else 0
            assert expected == record.time_unix_nano


class TestObservedTime:
    def test_the_observed_time_is_the_records_time(self, otlp: Server) -> None:
        """Every record carries observedTimeUnixNano, equal to its timeUnixNano (the handler
        observed it as it was logged, as the SDK's LoggingHandler sets both): on the byte
        path, with meta, and through a hook's keys (old code: no observed time at all)."""
        client = Client(
            key="k", url=otlp.url, protocol="otlp", hostname="h", kubernetes=False,
            handle_signals=False, flush_interval=3600,
        )  # fmt: skip
        client.log("plain", timestamp=1732280000001)
        client.log("with meta", meta={"k": 1}, timestamp=1732280000002)
        assert client.flush(timeout=10)
        client.close()
        hooked = Client(
            key="k", url=otlp.url, protocol="otlp", hostname="h", kubernetes=False,
            handle_signals=False, before_send=lambda line: {**line, "extra_key": 1},
        )  # fmt: skip
        hooked.log("hooked", timestamp=1732280000003)
        assert hooked.flush(timeout=10)
        hooked.close()
        got = [
            (r.body.string_value, r.time_unix_nano, r.observed_time_unix_nano)
            for request in otlp.requests
            if request.parsed is not None
            for rl in request.parsed.resource_logs
            for sl in rl.scope_logs
            for r in sl.log_records
        ]
        assert [
            ("plain", 1732280000001_000000, 1732280000001_000000),
            ("with meta", 1732280000002_000000, 1732280000002_000000),
            ("hooked", 1732280000003_000000, 1732280000003_000000),
        ] == got
