"""Tests for the OTLP ``AnyValue`` the encoder writes for each kind of value: bytes, the
floats JSON has no number for, and values nested too deep or in a cycle, checked against
the official protobuf definitions (opentelemetry-proto) and over a real socket."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from logdna_client import Client, LogDNAHandler
from logdna_client._buffer import SEPARATOR
from logdna_client._otlp import OTLPEncoder, any_value
from logdna_client.structlog import LogDNAProcessor
from logdna_client.testing import capture_lines
from tests._otlp_server import Server
from tests.test_otlp import py, records


def parsed(value: Any) -> AnyValue:
    """``any_value(value)`` as the official definitions read its JSON."""
    return json_format.Parse(orjson.dumps(any_value(value)), AnyValue(), max_recursion_depth=400)


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


class TestScalars:
    @pytest.mark.parametrize("value", [b"\x00\xffab", bytearray(b"\x01\x02"), memoryview(b"xyz")])
    def test_bytes_are_bytes_value_in_base64(self, value: Any) -> None:
        """Bytes are OTLP's bytesValue, base64 in the JSON encoding, as the SDK's
        _encode_value sends them. Before: a stringValue of their repr ("b'..'")."""
        assert bytes(value) == parsed(value).bytes_value
        assert "bytes_value" == parsed(value).WhichOneof("value")

    @pytest.mark.parametrize(
        ("value", "text"),
        [(math.nan, "NaN"), (math.inf, "Infinity"), (-math.inf, "-Infinity")],
    )
    def test_nan_and_infinities_are_double_values(self, value: float, text: str) -> None:
        """NaN and the infinities are doubleValue, written as proto3's JSON mapping writes
        them ("NaN", "Infinity", "-Infinity"). Before: a stringValue "nan", "inf"."""
        assert {"doubleValue": text} == any_value(value)
        found = parsed(value)
        assert "double_value" == found.WhichOneof("value")
        assert repr(value) == repr(found.double_value)

    def test_the_json_values_as_before(self) -> None:
        """Strings, booleans, int64s (as strings), finite doubles and null are unchanged;
        an int past int64 is its text, as OTLP has no wider integer."""
        assert {"stringValue": "s"} == any_value("s")
        assert {"boolValue": False} == any_value(False)
        assert {"intValue": "-5"} == any_value(-5)
        assert {"stringValue": str(2**64)} == any_value(2**64)
        assert {"doubleValue": 1.5} == any_value(1.5)
        assert {} == any_value(None)


class TestBounded:
    def test_a_self_referencing_dict_is_cut_not_a_crash(self) -> None:
        """A dict that holds itself is cut where it comes back (the line builder's marker)
        and encodes. Before: RecursionError. A value met twice, not in a cycle, is whole
        both times."""
        shared = {"x": 1}
        value: dict[str, Any] = {"a": shared, "b": [shared, shared]}
        value["self"] = value
        found = py(parsed(value))
        assert {"a": {"x": 1}, "b": [{"x": 1}, {"x": 1}], "self": "<cycle>"} == found

    def test_depth_is_bounded(self) -> None:
        """A value nested deeper than the line builder keeps (32 levels) is cut at that
        depth. Before: RecursionError at about 1,000 levels."""
        found = py(parsed(nested(2000)))
        depth = 0
        while isinstance(found, dict):
            found = found.get("k", found.get("leaf"))
            depth += 1
        assert (32, "<too deep>") == (depth, found)

    def test_a_deep_line_costs_only_itself(self) -> None:
        """A line nested 1,000 levels (another writer's spool: orjson reads up to 1,024)
        in a batch still makes one body with every record. Before: RecursionError, and
        the whole batch had no body."""
        encoder = OTLPEncoder(app="a", env=None, hostname="h", otel={})
        good = SEPARATOR + orjson.dumps({"line": "ok", "timestamp": 1, "level": "INFO"})
        meta = b'{"k":' * 1000 + b"1" + b"}" * 1000
        deep = SEPARATOR + b'{"line":"deep","timestamp":1,"level":"INFO","meta":%b}' % meta
        assert "deep" == orjson.loads(deep[len(SEPARATOR) :])["line"]  # (it parses)
        body = encoder.encode([good, deep, good])
        request = json_format.Parse(body, ExportLogsServiceRequest(), max_recursion_depth=400)
        logs = request.resource_logs[0].scope_logs[0].log_records
        assert ["ok", "deep", "ok"] == [record.body.string_value for record in logs]


class TestOnTheWire:
    def test_the_lines_around_a_deep_line_arrive(self, otlp: Server) -> None:
        """A buffer entry nested 1,000 levels deep (another writer's spool line) between
        two lines: those two arrive over a real socket, and nothing is dropped as an
        error. Before: the body failed to build (RecursionError), and the whole batch
        was dropped, counted as ``error``. (This server parses with protobuf's Python
        JSON parser, 100 levels at most, and refuses the cut deep record: a 400 that
        costs it alone.)"""
        client = Client(
            key="k", url=otlp.url, protocol="otlp", kubernetes=False, handle_signals=False,
            flush_interval=0.05, retry_max_backoff=0.2,
        )  # fmt: skip
        meta = b'{"k":' * 1000 + b"1" + b"}" * 1000
        client.log("before")
        client.put_entry(
            SEPARATOR + b'{"line":"deep","timestamp":1,"level":"INFO","meta":%b}' % meta
        )
        client.log("after")
        client.flush(timeout=30)  # (False: the deep record was refused)
        client.close()
        dropped = client.stats()["dropped"]
        assert (0, 1) == (dropped["error"], dropped["rejected"])
        texts = [line["line"] for line in otlp.lines]
        assert ["before", "after"] == [t for t in texts if not t.startswith("logdna_client:")]

    def test_a_hooks_structured_body_and_deep_meta_arrive(self, otlp: Server) -> None:
        """Over a real socket (held before, kept): a before_send hook's dict as the line's
        body arrives as a kvlistValue (the SDK's LoggingHandler sends a dict msg so), and
        a line whose meta holds a cycle arrives, cut, with the lines around it."""

        def structured(line: dict[str, Any]) -> dict[str, Any]:
            if line["line"] == "order":
                line["line"] = {"order": 42, "items": ["a", "b"]}
            return line

        client = Client(
            key="k", url=otlp.url, protocol="otlp", kubernetes=False, handle_signals=False,
            flush_interval=0.05, retry_max_backoff=0.2, before_send=structured,
        )  # fmt: skip
        loop: dict[str, Any] = {"n": 1}
        loop["loop"] = loop
        client.log("before")
        client.log("order")
        client.log("cyclic", meta={"loop": loop, "deep": nested(5)})
        client.log("after")
        assert client.flush(timeout=30)
        client.close()
        got = records(otlp)
        assert 4 == len(got)
        bodies = [py(record.body) for _, record in got]
        assert ["before", {"order": 42, "items": ["a", "b"]}, "cyclic", "after"] == bodies
        attributes = {kv.key: py(kv.value) for kv in got[2][1].attributes}
        assert {"n": 1, "loop": "<cycle>"} == attributes["loop"]


class TestStructuredMessages:
    @pytest.fixture
    def logger(self, otlp: Server) -> Iterator[tuple[logging.Logger, LogDNAHandler]]:
        handler = LogDNAHandler(
            key="k", url=otlp.url, protocol="otlp", kubernetes=False, handle_signals=False,
            flush_interval=0.05, retry_max_backoff=0.2,
        )  # fmt: skip
        log = logging.getLogger("tests.otlp.structured")
        log.addHandler(handler)
        log.propagate = False
        log.setLevel(logging.INFO)
        try:
            yield log, handler
        finally:
            log.removeHandler(handler)
            handler.close()

    def test_a_dict_or_list_message_is_the_records_structured_body(
        self, otlp: Server, logger: tuple[logging.Logger, LogDNAHandler]
    ) -> None:
        """logging.info({...}) and logging.info([...]) with no args send the message as a
        kvlistValue or arrayValue body, as the SDK's LoggingHandler sends a msg that is no
        str; secret keys in it are redacted as meta's are, a cycle is cut, and a message
        with args, or a str, is its text as before. Before: a stringValue of str(msg)."""
        log, handler = logger
        loop: dict[str, Any] = {"n": 1}
        loop["loop"] = loop
        log.info({"order": 42, "items": ["a", "b"], "ok": True})
        log.info([1, "two", {"three": 3.5}])
        log.info({"user": "ann", "password": "hunter2-hunter2"})
        log.info(loop)
        log.info("%s", {"a": 1})
        log.info("plain")
        log.info({"big": "x" * 20_000})  # over max_line_length as JSON: its text, cut
        assert handler.client.flush(timeout=30)
        bodies = [py(record.body) for _, record in records(otlp)]
        assert [
            {"order": 42, "items": ["a", "b"], "ok": True},
            [1, "two", {"three": 3.5}],
            {"user": "ann", "password": "[REDACTED]"},
            {"n": 1, "loop": "<cycle>"},
            "{'a': 1}",
            "plain",
        ] == bodies[:-1]
        assert bodies[-1].startswith("{'big': 'xxx") and len(bodies[-1]) < 16_500

    def test_a_formatter_of_your_own_makes_it_text(
        self, otlp: Server, logger: tuple[logging.Logger, LogDNAHandler]
    ) -> None:
        """With a formatter set, the body is what it formats, as the SDK's handler does."""
        log, handler = logger
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        log.info({"a": 1})
        assert handler.client.flush(timeout=30)
        assert ["INFO {'a': 1}"] == [py(record.body) for _, record in records(otlp)]

    def test_the_ingest_protocol_still_gets_the_text(self) -> None:
        """With protocol="logdna" a dict message is its text, as the ingest API's line
        must be a string."""
        with capture_lines() as lines:
            handler = LogDNAHandler(url="http://127.0.0.1:9/logs/ingest", handle_signals=False)
            log = logging.getLogger("tests.otlp.structured.logdna")
            log.addHandler(handler)
            log.propagate = False
            try:
                log.warning({"a": 1})
            finally:
                log.removeHandler(handler)
                handler.close()
        assert ["{'a': 1}"] == [line["line"] for line in lines]

    def test_a_structlog_event_that_is_a_dict_is_the_body(self, otlp: Server) -> None:
        """structlog's log.info({...}) (the event a dict) sends it as a kvlistValue body, its
        other keys as attributes. Before: a stringValue of str(event)."""
        structlog = pytest.importorskip("structlog")
        processor = LogDNAProcessor(
            key="k", url=otlp.url, protocol="otlp", kubernetes=False, handle_signals=False,
            flush_interval=0.05, retry_max_backoff=0.2,
        )  # fmt: skip
        log = structlog.wrap_logger(
            None, processors=[processor, structlog.processors.JSONRenderer()]
        )
        log.info({"order": 42, "token": "s3cr3t-s3cr3t"}, user="ann")
        log.info("plain", user="bob")
        assert processor.client.flush(timeout=30)
        processor.client.close()
        got = [
            (py(r.body), {kv.key: py(kv.value) for kv in r.attributes}) for _, r in records(otlp)
        ]
        assert [
            ({"order": 42, "token": "[REDACTED]"}, {"user": "ann"}),
            ("plain", {"user": "bob"}),
        ] == got

    def test_an_event_through_processor_formatter_too(
        self, otlp: Server, logger: tuple[logging.Logger, LogDNAHandler]
    ) -> None:
        """The event dict structlog's ProcessorFormatter.wrap_for_formatter hands the stdlib
        handler (the record's msg, with ``_logger`` set): a dict ``event`` is the body
        there too; one with a traceback stays text."""
        log, handler = logger
        wrapped = {"_logger": None, "_name": "info"}
        log.info({"event": {"order": 7}, "user": "ann"}, extra=wrapped)
        log.info({"event": {"order": 8}, "stack": "Stack (most recent call last):"}, extra=wrapped)
        assert handler.client.flush(timeout=30)
        bodies = [py(record.body) for _, record in records(otlp)]
        assert {"order": 7} == bodies[0]
        assert isinstance(bodies[1], str) and bodies[1].startswith("{'order': 8}")
