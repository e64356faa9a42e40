"""Tests for protocol="otlp": bodies the official definitions parse, OTLP's answers honoured."""

from __future__ import annotations

import base64
import gzip
import logging
import logging.config
from pathlib import Path
from typing import Any

import orjson
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from logdna_client import Client, ConfigurationError
from logdna_client._auth import credentials_in
from logdna_client._config import Config
from logdna_client._otlp import (
    OTLPDecodeError,
    OTLPEncoder,
    classify_otlp,
    decode_export_request,
    export_response,
    receive,
    severity_for,
)
from logdna_client._transport import HTTPTransport, Kind
from tests._claims_servers import answer, scripted_server
from tests._otlp_server import Server, running

KEY = "otlp-test-key-0123456789"


def make_client(server: Server, **options: Any) -> Client:
    defaults: dict[str, Any] = {
        "key": KEY, "url": server.url, "protocol": "otlp", "hostname": "web-1", "app": "api",
        "env": "prod", "tags": ["blue", "canary"], "kubernetes": False, "flush_interval": 0.05,
        "retry_max_backoff": 0.2, "handle_signals": False,
    }  # fmt: skip
    defaults.update(options)
    return Client(**defaults)


def py(value: AnyValue) -> Any:
    """An AnyValue from the protobuf message as a plain value."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "kvlist_value":
        return {kv.key: py(kv.value) for kv in value.kvlist_value.values}
    if kind == "array_value":
        return [py(v) for v in value.array_value.values]
    return getattr(value, kind)


def records(server: Server) -> list[tuple[dict[str, Any], Any]]:
    """Every (resource attributes, LogRecord) the server received, as protobuf parsed them."""
    out = []
    for request in server.requests:
        if request.parsed is None:
            continue
        for rl in request.parsed.resource_logs:
            resource = {kv.key: py(kv.value) for kv in rl.resource.attributes}
            for sl in rl.scope_logs:
                out.extend((resource, record) for record in sl.log_records)
    return out


class TestRoundTrip:
    def test_bodies_parse_with_the_official_definitions_and_keep_everything(
        self, otlp: Server
    ) -> None:
        """Severity, body, timestamp, attributes (nested too) and resource survive
        protobuf's own JSON parser into an ExportLogsServiceRequest."""
        client = make_client(otlp)
        meta = {"user": 42, "ratio": 0.5, "ok": True, "none": None, "tags": ["x", 1],
                "req": {"path": "/a", "deep": {"n": 2**40}}}  # fmt: skip
        client.log("user logged in", level="WARNING", meta=meta, timestamp=1732280000123)
        client.log("debugging", level="DEBUG", timestamp=1732280000124)
        client.log("other app", level="ERROR", app="billing", timestamp=1732280000125)
        assert client.flush(timeout=10)
        client.close()
        got = records(otlp)
        assert 3 == len(got)
        resource, first = got[0]
        assert 13 == first.severity_number
        assert "WARNING" == first.severity_text
        assert "user logged in" == first.body.string_value
        assert 1732280000123 * 1_000_000 == first.time_unix_nano
        assert meta == {kv.key: py(kv.value) for kv in first.attributes}
        assert 5 == got[1][1].severity_number
        assert {
            "service.name": "api", "deployment.environment.name": "prod", "host.name": "web-1",
            "logdna.tags": ["blue", "canary"],
        }.items() <= resource.items()  # fmt: skip
        assert "billing" == got[2][0]["service.name"]
        assert 17 == got[2][1].severity_number
        assert "" == otlp.requests[0].query.get("hostname", "")  # no query: it is in the resource

    def test_the_receiving_side_gives_back_the_lines(self, otlp: Server) -> None:
        """decode_export_request turns what the client sent into the devserver's line dicts."""
        client = make_client(otlp, compress=False)
        client.log("hello", level="INFO", meta={"a": {"b": [1, 2]}}, timestamp=1732280000123)
        assert client.flush(timeout=10)
        client.close()
        line = otlp.lines[0]
        expected = {"line": "hello", "level": "INFO", "timestamp": 1732280000123, "app": "api",
                    "env": "prod", "hostname": "web-1", "meta": {"a": {"b": [1, 2]}}}  # fmt: skip
        assert expected == {k: v for k, v in line.items() if k != "resource"}
        assert "api" == line["resource"]["service.name"]

    def test_many_lines_in_one_request_all_arrive_in_order(self, otlp: Server) -> None:
        """A full batch of lines arrives as one body, none lost, in order."""
        client = make_client(otlp, flush_interval=3600)
        for i in range(2000):
            client.log(f"line {i}", meta={"i": i})
        assert client.flush(timeout=10)
        client.close()
        assert [f"line {i}" for i in range(2000)] == [line["line"] for line in otlp.lines]
        assert 2000 == client.stats()["sent"]


#: Partial successes answered to a batch of 5 records, and (sent, rejected) as counted.
PARTIAL_ANSWERS = {
    "a-count": (b'{"partialSuccess":{"rejectedLogRecords":2}}', (3, 2)),
    "int64-as-a-string": (b'{"partialSuccess":{"rejectedLogRecords":"2"}}', (3, 2)),
    "snake-case": (b'{"partial_success":{"rejected_log_records":"2"}}', (3, 2)),
    "a-whole-float": (b'{"partialSuccess":{"rejectedLogRecords":2.0}}', (3, 2)),
    "more-than-the-batch": (b'{"partialSuccess":{"rejectedLogRecords":9}}', (0, 5)),
    "negative": (b'{"partialSuccess":{"rejectedLogRecords":-2}}', (0, 5)),
    "a-fraction": (b'{"partialSuccess":{"rejectedLogRecords":2.5}}', (0, 5)),
    "a-word": (b'{"partialSuccess":{"rejectedLogRecords":"two"}}', (0, 5)),
    "true": (b'{"partialSuccess":{"rejectedLogRecords":true}}', (0, 5)),
    "cut-after-the-count": (
        b'{"partialSuccess":{"rejectedLogRecords":"2","errorMessage":"%s"}}' % (b"m" * 70_000),
        (3, 2),
    ),
    # Cut at 64 KiB between the count's two digits: "2" is not what it said (25).
    "cut-inside-the-count": (
        b'{"partialSuccess":{"errorMessage":"%s","rejectedLogRecords":25}}'
        % (b"m" * (65536 - 1 - len(b'{"partialSuccess":{"errorMessage":"","rejectedLogRecords":'))),
        (0, 5),
    ),
    "cut-before-the-count": (
        b'{"partialSuccess":{"errorMessage":"%s","rejectedLogRecords":"2"}}' % (b"m" * 70_000),
        (0, 5),
    ),
    # JSON that orjson refuses and Python's json module reads: taken for no JSON, every
    # record was counted as sent.
    "past-a-double": (b'{"partialSuccess":{"rejectedLogRecords":1e400}}', (0, 5)),
    "not-a-number": (b'{"partialSuccess":{"rejectedLogRecords":NaN}}', (0, 5)),
    "a-lone-surrogate-in-its-message": (
        b'{"partialSuccess":{"rejectedLogRecords":2,"errorMessage":"record \\ud800"}}',
        (3, 2),
    ),
    # int() of a string of over 4,300 digits raises: the batch was sent again, without end.
    "digits-past-an-int64": (
        b'{"partialSuccess":{"rejectedLogRecords":"%s"}}' % (b"1" * 5000),
        (0, 5),
    ),
    "zeros-before-a-count": (
        b'{"partialSuccess":{"rejectedLogRecords":"%s2"}}' % (b"0" * 5000),
        (3, 2),
    ),
    "cut-digits-past-an-int64": (
        b'{"partialSuccess":{"rejectedLogRecords":"%s","errorMessage":"%s"}}'
        % (b"1" * 5000, b"m" * 70_000),
        (0, 5),
    ),
    "no-object-a-lone-surrogate-a-huge-int": (
        b'{"partialSuccess":["\\udc80",100000000000000000000000000000]}',
        (0, 5),
    ),
}


class TestAnswers:
    def test_partial_success_counts_the_refused_records(self, otlp: Server) -> None:
        """A 200 whose partialSuccess names rejected records counts them as rejected."""
        otlp.reject_substring = "refuse me"
        client = make_client(otlp, flush_interval=3600)
        client.log("keep 1")
        client.log("refuse me")
        client.log("keep 2")
        assert not client.flush(timeout=10)  # a line was dropped: flush says so
        stats = client.stats()
        client.close()
        assert 1 == stats["dropped"]["rejected"]
        assert 2 == stats["sent"]
        texts = [line["line"] for line in otlp.lines]
        # Then, with the next request, the summary of what was dropped.
        assert ["keep 1", "keep 2", "logdna_client: 1 lines dropped (1 rejected)"] == texts
        assert 1 == sum(b"refuse me" in r.body for r in otlp.requests)  # not retried

    @pytest.mark.parametrize(("answer_body", "counted"), PARTIAL_ANSWERS.values(),
                             ids=PARTIAL_ANSWERS.keys())  # fmt: skip
    def test_a_partial_success_is_counted_and_never_resent(
        self, answer_body: bytes, counted: tuple[int, int]
    ) -> None:
        """A partial success names how many records were refused, not which: that many
        of the batch are counted as rejected, and the batch is never sent again (which
        would store the accepted ones twice). A count that is no count (negative, a
        fraction, a word, true), or that an answer cut at the 64 KiB cap does not hold,
        confirms none of the batch as stored: all of it is counted as rejected (each such
        batch was counted as sent, the refused records lost without a count)."""
        answers = iter([answer(200, answer_body)])
        with scripted_server(lambda r, s, e: next(answers, answer(200, b"{}"))) as server:
            client = Client(url=server.url, protocol="otlp", hostname="t", flush_interval=60)
            for i in range(5):
                client.log(f"record {i}")
            client.flush(timeout=10)
            client.close(5)
            bodies = [gzip.decompress(r.body) for r in server.requests]
        sent = [line["line"] for body in bodies for line in decode_export_request(body)]
        assert [f"record {i}" for i in range(5)] == sent[:5]  # once each
        assert all(text.startswith("logdna_client:") for text in sent[5:]), sent  # the summary
        s = client.stats()
        assert counted == (s["sent"], s["dropped"]["rejected"])
        assert s["accepted"] == s["sent"] + s["dropped_total"] + s["queued"]

    def test_a_warning_with_no_record_rejected_is_reported_once_and_counts_nothing(
        self, otlp: Server, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A partial success with 0 rejected records and an errorMessage (the receiver took
        everything but has something to say) is reported once, rate-limited, and counts
        nothing: every line sent, none dropped, no error (old code: taken silently)."""
        warning = b'{"partialSuccess":{"rejectedLogRecords":"0","errorMessage":"attr cut"}}'
        otlp.answer_next(200, body=warning)
        otlp.answer_next(200, body=warning)
        client = make_client(otlp, flush_interval=3600)
        with caplog.at_level(logging.WARNING, logger="logdna_client"):
            for i in range(2):
                client.log(f"line {i}")
                assert client.flush(timeout=10)
        stats = client.stats()
        client.close()
        assert (2, 0, None) == (stats["sent"], stats["dropped_total"], stats["last_error"])
        warned = [r.getMessage() for r in caplog.records if "warned" in r.getMessage()]
        assert ["logdna_client: the service took every line but warned: attr cut"] == warned
        assert 2 == len(otlp.requests)

    def test_retry_after_is_waited_for(self, otlp: Server) -> None:
        """429 and 503 with Retry-After: the same lines are sent again, no sooner than asked."""
        otlp.answer_next(429, {"Retry-After": "1"})
        otlp.answer_next(503, {"Retry-After": "1"})
        client = make_client(otlp, retry_max_backoff=5)
        client.log("eventually")
        assert client.flush(timeout=15)
        client.close()
        assert [429, 503, 200] == [r.status for r in otlp.requests]
        first, second, third = (r.at for r in otlp.requests)
        assert second - first >= 0.95
        assert third - second >= 0.95
        assert ["eventually"] == [line["line"] for line in otlp.lines]
        assert 2 == client.stats()["retries"]

    def test_400_is_not_retried_and_costs_only_the_bad_line(self, otlp: Server) -> None:
        """A 400 is not sent again as is: the batch is split down to the bad line."""
        otlp.poison = "poison"
        # Plain bodies: after a 400 to a gzip body the sender checks once whether the
        # server takes it plain, which would send the same lines twice on purpose.
        client = make_client(otlp, flush_interval=3600, compress=False)
        for text in ("a", "b", "poison", "c"):
            client.log(text)
        client.flush(timeout=10)
        stats = client.stats()
        client.close()
        texts = [line["line"] for line in otlp.lines if not line["line"].startswith("logdna_")]
        assert ["a", "b", "c"] == texts
        assert 1 == stats["dropped"]["rejected"]
        assert 0 == stats["retries"]
        bodies = [r.body for r in otlp.requests if r.status == 400]
        assert len(bodies) == len(set(bodies))  # no body sent twice

    def test_classify_otlp(self) -> None:
        """Partial success only when records were rejected; the rest as for the ingest API."""
        partial = classify_otlp(200, None, export_response(3, "bad").decode())
        assert (Kind.PARTIAL, 3, "bad") == (partial.kind, partial.rejected, partial.detail)
        assert Kind.OK is classify_otlp(200, None, "{}").kind
        text = '{"partialSuccess": {"rejectedLogRecords": 0, "errorMessage": "warn"}}'
        warned = classify_otlp(200, None, text)
        assert (Kind.OK, "warn", 0) == (warned.kind, warned.detail, warned.rejected)
        assert "" == classify_otlp(200, None, '{"partialSuccess": {"errorMessage": " "}}').detail
        assert Kind.OK is classify_otlp(200, None, '{"rejectedLogRecords": nope').kind
        retry = classify_otlp(503, "7", "")
        assert (Kind.RETRY, 7.0) == (retry.kind, retry.retry_after)
        assert Kind.BAD_REQUEST is classify_otlp(400, None, "").kind


class TestAuth:
    @pytest.mark.parametrize(
        ("auth", "header"),
        [
            ("apikey", ("apikey", KEY)),
            ("basic", ("Authorization", "Basic " + base64.b64encode(f"{KEY}:".encode()).decode())),
            ("bearer", ("Authorization", f"Bearer {KEY}")),
            ("pipeline", ("Authorization", KEY)),
        ],
    )
    @pytest.mark.parametrize("protocol", ["otlp", "logdna"])
    def test_exactly_one_credential_arrives(
        self, auth: str, header: tuple[str, str], protocol: str
    ) -> None:
        """Each auth mode sends the key in its one header and nowhere else (no URL)."""
        with running(expected=(auth, KEY)) as server:
            url = server.url if protocol == "otlp" else server.base + "/logs/ingest"
            client = make_client(server, url=url, protocol=protocol, auth=auth)
            client.log("authenticated")
            assert client.flush(timeout=10)
            client.close()
            (request,) = server.requests
            assert [(auth, KEY)] == request.credentials
            assert header[1] == request.headers[header[0]]
            assert 200 == request.status
            assert KEY not in request.path and KEY not in str(request.query)
            assert KEY not in repr(client) and KEY not in repr(client.config)

    @pytest.mark.parametrize("auth", ["apikey", "basic", "bearer", "pipeline"])
    def test_an_echoed_credential_is_scrubbed(self, auth: str) -> None:
        """A server echoing the credential header in an error body does not leak it
        into the detail the library logs (a Basic token is the key, base64-encoded)."""
        with running(expected=(auth, KEY)) as server:
            token = base64.b64encode(f"{KEY}:".encode()).decode()
            server.answer_next(400, body=f"bad request; you sent {token} / {KEY}".encode())
            transport = HTTPTransport(Config(key=KEY, url=server.url, protocol="otlp", auth=auth))
            outcome = transport.send(b"{}", gzipped=False, timeout=5)
            transport.close()
        assert 400 == outcome.status
        assert token not in outcome.detail and KEY not in outcome.detail
        assert "***" in outcome.detail

    def test_credentials_in_finds_every_form(self) -> None:
        """The receiving side sees each credential a request carries, so a server can
        insist on exactly one."""
        basic = "Basic " + base64.b64encode(b"k1:").decode()
        headers = [("APIKEY", "k0"), ("Authorization", basic), ("x-other", "k9")]
        expected = [("apikey", "k0"), ("basic", "k1"), ("query", "k2")]
        assert expected == credentials_in(headers, [("apikey", "k2"), ("hostname", "h")])
        assert [("bearer", "t")] == credentials_in([("authorization", "Bearer t")])
        assert [("pipeline", "raw-key")] == credentials_in([("Authorization", "raw-key")])
        assert [("basic", "")] == credentials_in([("Authorization", "Basic !!!")])

    def test_a_wrong_key_is_refused_by_the_server(self) -> None:
        """The test server does check the value: a wrong key is a 403, reported as auth."""
        with running(expected=("bearer", "other")) as server:
            client = make_client(server, auth="bearer")
            client.log("x")
            assert server.wait_for_requests(1)
            client.close(timeout=0.2)
            assert 403 == server.requests[0].status


class TestEncoder:
    def test_unknown_levels_and_odd_values(self) -> None:
        """Unknown level names are severity 0 with their text; huge ints and strings
        that are not lines still make a valid request."""
        encoder = OTLPEncoder(app=None, env=None, hostname="h")
        entries = [
            b"," + orjson.dumps({"line": "x", "timestamp": 5, "level": "verbose",
                                "meta": {"big": 2**63 + 5}, "file": "/var/log/a"}),
            b',"just a string"',
            b",{not json",
        ]  # fmt: skip
        body = encoder.encode(entries)
        parsed = json_format.Parse(body, ExportLogsServiceRequest())
        logs = parsed.resource_logs[0].scope_logs[0].log_records
        assert (0, "verbose") == (logs[0].severity_number, logs[0].severity_text)
        attrs = {kv.key: py(kv.value) for kv in logs[0].attributes}
        assert {"big": str(2**63 + 5), "file": "/var/log/a"} == attrs
        assert '"just a string"' == logs[1].body.string_value
        assert "{not json" == logs[2].body.string_value
        assert 0 == logs[1].time_unix_nano

    def test_meta_as_a_string(self, otlp: Server) -> None:
        """index_meta=False ships meta as one string attribute named meta."""
        client = make_client(otlp, index_meta=False)
        client.log("x", meta={"a": 1})
        assert client.flush(timeout=10)
        client.close()
        (_, record) = records(otlp)[0]
        assert {"meta": '{"a":1}'} == {kv.key: py(kv.value) for kv in record.attributes}

    def test_severity_numbers(self) -> None:
        """The first number of each OpenTelemetry severity range."""
        expected = {"TRACE": 1, "DEBUG": 5, "info": 9, "WARN": 13, "ERROR": 17, "CRITICAL": 21}
        assert expected == {name: severity_for(name) for name in expected}


class TestReceive:
    def test_receive_answers_as_an_otlp_receiver(self) -> None:
        """200 with {} for a good body, a partial success naming refused records, 400 for junk."""
        encoder = OTLPEncoder(app="a", env=None, hostname="h")
        body = encoder.encode([b',{"line":"good","timestamp":1}', b',{"line":"bad","timestamp":2}'])
        assert (200, b"{}", ["good", "bad"]) == _texts(receive(body))
        status, answer, lines = receive(body, lambda line: line["line"] == "bad")
        assert (200, ["good"]) == (status, [line["line"] for line in lines])
        assert "1" == orjson.loads(answer)["partialSuccess"]["rejectedLogRecords"]
        assert 400 == receive(b"not json")[0]

    def test_lines_render_in_the_devservers_tail(self) -> None:
        """What receive() returns is what the devserver's tail and --json output take."""
        from logdna_client._devserver import dump_line, format_line

        encoder = OTLPEncoder(app="shop", env=None, hostname="h")
        entry = b',{"line":"paid","timestamp":1732280000123,"level":"WARNING","meta":{"id":7}}'
        _, _, (line,) = receive(encoder.encode([entry]))
        shown = format_line(line, False, 1732280000.5)
        assert "WARNING" in shown and "[shop] paid" in shown and "id=7" in shown
        assert "paid" == orjson.loads(dump_line(line))["line"]


def _texts(answer: tuple[int, bytes, list[dict[str, Any]]]) -> tuple[int, bytes, list[str]]:
    return answer[0], answer[1], [line["line"] for line in answer[2]]


class TestDecode:
    def test_bad_bodies_are_decode_errors(self) -> None:
        """What the devserver answers 400 for."""
        bad_attribute = b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"attributes":[1]}]}]}]}'
        for body in (b"nope", b"[]", b'{"resourceLogs": 3}', bad_attribute):
            with pytest.raises(OTLPDecodeError):
                decode_export_request(body)

    def test_snake_case_and_enum_names(self) -> None:
        """Protobuf's JSON mapping allows field names as in the .proto and enum names."""
        body = orjson.dumps({"resource_logs": [{"scope_logs": [{"log_records": [
            {"time_unix_nano": "2000000", "severity_number": "SEVERITY_NUMBER_ERROR",
             "body": {"string_value": "boom"}}]}]}]})  # fmt: skip
        json_format.Parse(body, ExportLogsServiceRequest())  # valid for the official parser too
        (line,) = decode_export_request(body)
        assert ("boom", 2, "ERROR") == (line["line"], line["timestamp"], line["level"])

    def test_export_response(self) -> None:
        """Full success is {}; a partial one names the rejected records (int64 as a string)."""
        assert b"{}" == export_response()
        doc = orjson.loads(export_response(2, "why"))
        assert {"partialSuccess": {"rejectedLogRecords": "2", "errorMessage": "why"}} == doc


class TestConfig:
    def test_strings_are_coerced(self) -> None:
        """dictConfig and env give strings: any case, spaces, "auto" or booleans."""
        client = Client(key="k", url="http://127.0.0.1:1/v1/logs", protocol=" OTLP ",
                        auth="Bearer", kubernetes="no", handle_signals=False)  # fmt: skip
        assert ("otlp", "bearer", False) == (
            client.config.protocol,
            client.config.auth,
            client.config.kubernetes,
        )
        assert (
            "auto" == Client(key="k", url="http://127.0.0.1:1", kubernetes="AUTO").config.kubernetes
        )
        client.close()

    def test_no_key_needed_for_a_collector(self) -> None:
        """A Collector usually takes local senders without a key: OTLP needs none, and
        then sends no credential at all."""
        client = Client(url="https://collector.internal:4318/v1/logs", protocol="otlp")
        assert client.config.key is None
        client.close()
        with pytest.raises(ConfigurationError):
            Client(url="https://logs.example.com/logs/ingest")

    @pytest.mark.parametrize(
        ("options", "option"),
        [({"protocol": "grpc"}, "protocol"), ({"auth": "token"}, "auth"),
         ({"kubernetes": "maybe"}, "kubernetes"), ({"protocol": "otlp", "url": None}, "url")],
    )  # fmt: skip
    def test_bad_values_name_the_option(self, options: dict[str, Any], option: str) -> None:
        """A bad value is a ConfigurationError that names the option (and OTLP needs a URL)."""
        options = {"key": "k", "url": "http://127.0.0.1:1", **options}
        if options["url"] is None:
            del options["url"]
        with pytest.raises(ConfigurationError) as info:
            Client(**options)
        assert option == info.value.option


class TestPipeline:
    def test_the_spool_replays_as_otlp(self, otlp: Server, tmp_path: Path) -> None:
        """Lines spooled while the collector was down (LogDNA lines on disk, as always)
        are delivered as OTLP by the next client on the same folder."""
        spool = str(tmp_path / "spool")
        otlp.down = True  # the same collector (a spool adopts only its own key and URL's)
        down = make_client(otlp, spool_dir=spool, retry_max_backoff=0.1)
        for i in range(5):
            down.log(f"spooled {i}", meta={"i": i})
        down.close(timeout=0.5)
        otlp.down = False
        client = make_client(otlp, spool_dir=spool)
        client.log("after")  # starts the sender, which opens the spool and replays it first
        assert client.flush(timeout=10)
        client.close()
        expected = [*(f"spooled {i}" for i in range(5)), "after"]
        assert expected == [line["line"] for line in otlp.lines]
        assert [{"i": i} for i in range(5)] == [line["meta"] for line in otlp.lines[:5]]
        assert all(r.parsed is not None for r in otlp.requests if r.status == 200)

    def test_dictconfig_strings(self, otlp: Server) -> None:
        """protocol, auth and kubernetes given as strings through dictConfig."""
        logging.config.dictConfig({
            "version": 1, "disable_existing_loggers": False,
            "handlers": {"mezmo": {
                "class": "logdna_client.LogDNAHandler", "key": KEY, "url": otlp.url,
                "protocol": "otlp", "auth": "bearer", "kubernetes": "false",
                "handle_signals": "false", "flush_interval": "0.05",
            }},
            "loggers": {"otlp.dictconfig": {"handlers": ["mezmo"], "propagate": False,
                                            "level": "INFO"}},
        })  # fmt: skip
        log = logging.getLogger("otlp.dictconfig")
        (handler,) = log.handlers
        log.warning("configured %s", "by dictConfig")
        assert handler.client.flush(timeout=10)  # type: ignore[attr-defined]
        handler.close()
        log.handlers.clear()
        assert [("bearer", KEY)] == otlp.requests[0].credentials
        (_, record) = records(otlp)[0]
        assert ("configured by dictConfig", 13) == (
            record.body.string_value,
            record.severity_number,
        )


_TRICKY = ["plain", "", 'say "hi"', "back\\slash\\", '","timestamp":1,"level":"X',
           '\\","timestamp":', "é ☃ 𝄞", "tab\there\nnewline", "\x00\x1f", '"}', "}}"]  # fmt: skip


class TestFastPath:
    """The encoder takes the builder's lines apart as bytes; the general path parses them."""

    @staticmethod
    def both(entries: list[bytes]) -> tuple[Any, Any]:
        fast = OTLPEncoder(app="api", env="prod", hostname="h")
        general = OTLPEncoder(app="api", env="prod", hostname="h")
        general.inspect_all = True  # every line through the general path
        both = orjson.loads(fast.encode(entries)), orjson.loads(general.encode(entries))
        for body in both:  # the clock at encoding, for a record with no usable time
            for rl in body["resourceLogs"]:
                for sl in rl["scopeLogs"]:
                    for record in sl["logRecords"]:
                        if "timeUnixNano" not in record:
                            assert record.pop("observedTimeUnixNano") is not None
        return both

    @pytest.mark.parametrize("index_meta", [True, False])
    def test_same_records_as_the_general_path(self, index_meta: bool) -> None:
        """Tricky texts, levels, apps and meta, as the real builder makes them: the same
        request either way, and one the official definitions parse."""
        from logdna_client._line import LineBuilder

        builder = LineBuilder(Config(key="k", hostname="h", app="api", env="prod",
                                     index_meta=index_meta))  # fmt: skip
        entries = []
        for i, text in enumerate(_TRICKY):
            for level in ("INFO", "warning", 'odd"level', "\\"):
                meta = {"i": i, "t": text} if i % 2 else None
                app = "other" if i % 3 == 0 else None
                line = builder.encode(text, level, 1732280000000 + i, meta, app)
                assert line is not None
                entries.append(b"," + line)
                if builder.plain_max_chars > 0 and text:
                    plain = builder.entry(text, level, 1732280000000 + i, meta)
                    assert plain is not None
                    entries.append(plain)
        fast, general = self.both(entries)
        assert general == fast
        json_format.Parse(orjson.dumps(fast), ExportLogsServiceRequest())

    def test_the_builders_plain_lines_take_the_fast_path(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Lines without meta as the builder makes them (both ways) are taken apart as
        bytes: none reaches the general path. (Markers written apart from the builder's
        pieces sent every line there, unnoticed.)"""
        from logdna_client._line import LineBuilder

        builder = LineBuilder(Config(key="k", hostname="h", app="api", env="prod"))
        entries = [
            builder.entry("plain", "INFO", 1732280000000),
            b"," + (builder.encode("encoded", "WARNING", 1732280000001, app="other") or b""),
        ]
        encoder = OTLPEncoder(app="api", env="prod", hostname="h")
        general: list[bytes] = []
        convert = encoder._convert
        monkeypatch.setattr(encoder, "_convert", lambda e, c: general.append(e) or convert(e, c))
        body = orjson.loads(encoder.encode([e for e in entries if e is not None]))
        assert [] == general
        texts = [r["body"]["stringValue"] for rl in body["resourceLogs"]
                 for sl in rl["scopeLogs"] for r in sl["logRecords"]]  # fmt: skip
        assert ["plain", "encoded"] == texts

    def test_other_key_orders_are_not_misread(self) -> None:
        """Lines in another order (another writer's spool, a hook) are not taken apart."""
        entries = [
            b',{"line":"x","level":"INFO","timestamp":1732280000000}',
            b',{"line":"y","app":"a","timestamp":1732280000000,"level":"INFO"}',
            b',{"line":"z","timestamp":1732280000000,"level":"INFO","file":"f"}',
            b',{"line":"w","timestamp":-5,"level":"INFO"}',
        ]
        fast, general = self.both(entries)
        assert general == fast
        bodies = [r["body"]["stringValue"] for rl in fast["resourceLogs"]
                  for sl in rl["scopeLogs"] for r in sl["logRecords"]]  # fmt: skip
        assert ["x", "y", "z", "w"] == bodies  # in order: "a" is a resource of its own, in a run
        assert 3 == len(fast["resourceLogs"])


class TestDevServer:
    """The devserver's ``POST /v1/logs``: OTLP lines in the same tail as LogDNA's."""

    def test_lines_arrive_in_the_devservers_tail(self) -> None:
        """An OTLP client's lines are stored by the devserver with level, app and host."""
        from logdna_client._devserver import DevServer

        with DevServer() as dev:
            client = Client(url=dev.base_url + "/v1/logs", protocol="otlp", hostname="web-1",
                            app="api", kubernetes=False, flush_interval=0.05)  # fmt: skip
            client.log("over otlp", level="WARNING", meta={"user": 7})
            assert client.flush(10)
            client.close()
            (line,) = dev.lines
        assert ("over otlp", "WARNING", "api", "web-1") == (
            line["line"], line["level"], line["app"], line["hostname"]
        )  # fmt: skip
        assert 7 == line["meta"]["user"]

    def test_the_trace_context_shows_in_the_devservers_lines(self) -> None:
        """A record's trace context (opentelemetry-instrumentation-logging's attributes,
        sent as the record's traceId, spanId and flags) shows in the devserver's lines,
        where a user checks that it travels: the devserver left it out (H198)."""
        from logdna_client._devserver import DevServer

        trace, span = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
        with DevServer() as dev:
            client = Client(url=dev.base_url + "/v1/logs", protocol="otlp", hostname="web-1",
                            kubernetes=False, flush_interval=0.05)  # fmt: skip
            client.log("traced", meta={"otelTraceID": trace, "otelSpanID": span,
                                       "otelTraceSampled": True})  # fmt: skip
            client.log("untraced")
            assert client.flush(10)
            client.close()
            traced, untraced = dev.lines
        assert (trace, span, 1) == (traced["trace_id"], traced["span_id"], traced["trace_flags"])
        assert not {"trace_id", "span_id", "trace_flags"} & set(untraced)

    def test_partial_success_and_retry_after(self) -> None:
        """Refused records come back as an OTLP partial success (counted as rejected, not
        retried); a 429 with Retry-After is waited out before the same lines go again."""
        from logdna_client._devserver import DevServer

        with DevServer() as dev:
            dev.reject_lines_matching("refuse me")
            dev.fail_next(1, 429, retry_after="1")
            client = Client(url=dev.base_url + "/v1/logs", protocol="otlp", kubernetes=False,
                            flush_interval=0.05, retry_max_backoff=5)  # fmt: skip
            for text in ("keep 1", "refuse me", "keep 2"):
                client.log(text)
            assert not client.flush(15)  # one line was dropped: flush says so
            stats = client.stats()
            client.close()
            requests = [r for r in dev.requests if r.path == "/v1/logs"]
            kept = [line["line"] for line in dev.lines]
        assert 429 == requests[0].status
        assert requests[1].received_at - requests[0].received_at >= 0.95
        assert ["keep 1", "keep 2"] == kept[:2]
        assert 1 == stats["dropped"]["rejected"]
        assert 2 == stats["sent"]

    @pytest.mark.parametrize("auth", ["apikey", "basic", "bearer", "pipeline"])
    def test_each_auth_mode_and_exactly_one_credential(self, auth: str) -> None:
        """The devserver with a key takes each auth mode's one credential, refuses a
        wrong one, and refuses a request that carries two."""
        import requests as http

        from logdna_client._devserver import DevServer

        with DevServer(key=KEY) as dev:
            client = Client(key=KEY, url=dev.base_url + "/v1/logs", protocol="otlp",
                            auth=auth, kubernetes=False, flush_interval=0.05)  # fmt: skip
            client.log("authenticated")
            assert client.flush(10)
            client.close()
            two = http.post(dev.base_url + "/v1/logs", data=b'{"resourceLogs":[]}',
                            headers={"apikey": KEY, "Authorization": f"Bearer {KEY}"},
                            timeout=10)  # fmt: skip
            wrong = http.post(dev.base_url + "/v1/logs", data=b'{"resourceLogs":[]}',
                              headers={"apikey": "wrong"}, timeout=10)  # fmt: skip
            assert ["authenticated"] == [line["line"] for line in dev.lines]
        assert 400 == two.status_code
        assert 403 == wrong.status_code
