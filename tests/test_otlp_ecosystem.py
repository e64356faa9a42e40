"""Tests for what an OpenTelemetry user expects of an OTLP body: the resource from
OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, one scope per logger, and custom
level names in their severity range."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from logdna_client import LogDNAHandler
from logdna_client._buffer import SEPARATOR
from logdna_client._otlp import OTLPEncoder, otel_resource
from tests._otlp_server import Server, otlp_client, status_body
from tests.test_otlp_severity import severities


@pytest.fixture
def no_otel_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "LOGDNA_APP", "LOGDNA_HOSTNAME"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def ship(server: Server, logger_names: list[str], **options: Any) -> None:
    """Logs one line per name through a handler on those loggers, and delivers them."""
    handler = LogDNAHandler(
        key="k", url=server.url, protocol="otlp", kubernetes=False, handle_signals=False,
        **options,
    )  # fmt: skip
    loggers = [logging.getLogger(name) for name in dict.fromkeys(logger_names)]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(1)
        logger.propagate = False
    try:
        for i, name in enumerate(logger_names):
            logging.getLogger(name).info("line %d", i)
        assert handler.client.flush(timeout=30)
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        handler.close()


def resources(server: Server) -> list[dict[str, str]]:
    found = []
    for request in server.requests:
        assert request.parsed is not None
        for rl in request.parsed.resource_logs:
            found.append({kv.key: kv.value.string_value for kv in rl.resource.attributes})
    return found


def scopes(server: Server) -> dict[str, list[str]]:
    """Scope name -> the bodies of its records, over every request."""
    found: dict[str, list[str]] = {}
    for request in server.requests:
        assert request.parsed is not None
        for rl in request.parsed.resource_logs:
            for sl in rl.scope_logs:
                bodies = found.setdefault(sl.scope.name, [])
                bodies.extend(r.body.string_value for r in sl.log_records)
    return found


class TestOtelEnvironment:
    def test_service_name_and_resource_attributes_follow_the_otel_variables(
        self, otlp: Server, no_otel_env: pytest.MonkeyPatch
    ) -> None:
        """Without app=, OTEL_SERVICE_NAME names the service (over the service.name in
        OTEL_RESOURCE_ATTRIBUTES), and the attributes arrive percent-decoded; the old code
        sent neither."""
        no_otel_env.setenv("OTEL_SERVICE_NAME", "checkout")
        no_otel_env.setenv(
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.name=ignored, team=pay%2Cments ,service.version=1.2.3",
        )
        ship(otlp, ["tests.otel_env"], hostname="h")
        (resource,) = resources(otlp)
        assert "checkout" == resource["service.name"]
        assert "pay,ments" == resource["team"]
        assert "1.2.3" == resource["service.version"]
        assert "h" == resource["host.name"]

    def test_an_explicit_app_wins(self, otlp: Server, no_otel_env: pytest.MonkeyPatch) -> None:
        """app= (the library's own setting) names the service over OTEL_SERVICE_NAME."""
        no_otel_env.setenv("OTEL_SERVICE_NAME", "from-otel")
        no_otel_env.setenv("OTEL_RESOURCE_ATTRIBUTES", "team=payments")
        ship(otlp, ["tests.otel_env"], hostname="h", app="api")
        (resource,) = resources(otlp)
        assert "api" == resource["service.name"]
        assert "payments" == resource["team"]

    def test_no_service_named_is_unknown_service(
        self, otlp: Server, no_otel_env: pytest.MonkeyPatch
    ) -> None:
        """Neither app nor OTEL_SERVICE_NAME: service.name is 'unknown_service', the
        resource conventions' default the SDK sends (the old code sent none, and the
        records landed in no service's view)."""
        ship(otlp, ["tests.otel_env"], hostname="h")
        (resource,) = resources(otlp)
        assert "unknown_service" == resource["service.name"]

    def test_malformed_entries_are_skipped_and_reported_once(
        self, no_otel_env: pytest.MonkeyPatch
    ) -> None:
        """Entries with no '=' or no key are left out, the rest kept; one warning names
        their places, never their text (which may hold a token)."""
        seen: list[logging.LogRecord] = []

        class Collect(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                seen.append(record)

        collect = Collect()
        own = logging.getLogger("logdna_client")
        own.addHandler(collect)
        try:
            environ = {"OTEL_RESOURCE_ATTRIBUTES": "a=1,secret-token-xyz,=2,,b=%ZZ,c=x=y,d=\udcff"}
            attrs = otel_resource(environ)
            assert attrs == otel_resource(environ)  # a second client: no second report
        finally:
            own.removeHandler(collect)
        assert {"a": "1", "b": "%ZZ", "c": "x=y", "d": "\ufffd"} == attrs
        assert 1 == len(seen)
        message = seen[0].getMessage()
        assert "2, 3" in message
        assert "secret-token-xyz" not in message

    def test_a_detected_hostname_gives_way_to_otel_host_name(
        self, no_otel_env: pytest.MonkeyPatch
    ) -> None:
        """host.name from OTEL_RESOURCE_ATTRIBUTES wins over the hostname the library only
        detected, not over one given with hostname= (as the config says it was: a given
        one that is the machine's own name is given too)."""
        env = {"OTEL_RESOURCE_ATTRIBUTES": "host.name=node-7"}
        line = SEPARATOR + orjson.dumps({"line": "x", "timestamp": 1, "level": "INFO"})

        def host_name(hostname: str, given: bool) -> str:
            encoder = OTLPEncoder(
                app=None, env=None, hostname=hostname, hostname_given=given, environ=env
            )
            body = orjson.loads(encoder.encode([line]))
            attributes = body["resourceLogs"][0]["resource"]["attributes"]
            return {a["key"]: a["value"]["stringValue"] for a in attributes}["host.name"]  # type: ignore[no-any-return]

        detected = socket.gethostname()[:80]
        assert "node-7" == host_name(detected, False)
        assert detected == host_name(detected, True)
        assert "web-1" == host_name("web-1", True)


class TestScopes:
    def test_each_logger_is_a_scope(self, otlp: Server) -> None:
        """Records go in a scope named after their logger, as the OpenTelemetry SDK's
        LoggingHandler puts them (the old code put all in 'logdna_client'), and keep the
        order they were logged in across interleaved loggers."""
        names = ["tests.scope.db", "tests.scope.db", "tests.scope.web", "tests.scope.db"]
        ship(otlp, names, hostname="h")
        assert {
            "tests.scope.db": ["line 0", "line 1", "line 3"],
            "tests.scope.web": ["line 2"],
        } == scopes(otlp)
        in_order = [
            (sl.scope.name, record.body.string_value)
            for request in otlp.requests
            for rl in request.parsed.resource_logs  # type: ignore[union-attr]
            for sl in rl.scope_logs
            for record in sl.log_records
        ]
        assert [(name, f"line {i}") for i, name in enumerate(names)] == in_order

    def test_lines_of_other_apps_and_envs_keep_their_order(self, otlp: Server) -> None:
        """Lines with their own app= or env= go in their resource, in runs, in the order
        they were logged: the resources were gathered from across the batch, so such a
        line came after all the others (H198)."""
        client = otlp_client(
            otlp.url, key="k", app="main", env="prod", hostname="h", flush_interval=3600
        )
        client.log("1 main")
        client.log("2 other", app="other")
        client.log("3 main")
        client.log("4 dev", env="dev")
        client.log("5 main")
        assert client.flush(10)
        client.close()
        got = [
            (rl.resource.attributes[0].value.string_value, record.body.string_value)
            for request in otlp.requests
            for rl in request.parsed.resource_logs  # type: ignore[union-attr]
            for sl in rl.scope_logs
            for record in sl.log_records
        ]
        assert ["1 main", "2 other", "3 main", "4 dev", "5 main"] == [text for _, text in got]
        (request,) = otlp.requests
        assert 5 == len(request.parsed.resource_logs)  # type: ignore[union-attr]

    def test_many_loggers_in_one_batch_cost_a_bounded_header_each(self) -> None:
        """A batch of 500 records from 500 loggers keeps them all, in order, each in its
        logger's scope, for at most 60 bytes per record over one logger's body."""

        def body(name: Callable[[int], str]) -> bytes:
            lines = [
                SEPARATOR
                + orjson.dumps(
                    {"line": f"l{i}", "timestamp": 1, "level": "INFO", "meta": {"name": name(i)}}
                )
                for i in range(500)
            ]
            return OTLPEncoder(app="a", env=None, hostname="h", environ={}).encode(lines)

        many, one = body(lambda i: f"lg{i:03d}"), body(lambda i: "lg000")
        (resource_logs,) = orjson.loads(many)["resourceLogs"]
        got = [
            (sl["scope"]["name"], record["body"]["stringValue"])
            for sl in resource_logs["scopeLogs"]
            for record in sl["logRecords"]
        ]
        assert [(f"lg{i:03d}", f"l{i}") for i in range(500)] == got
        assert len(many) - len(one) <= 500 * 60


@pytest.fixture
def custom_levels() -> Iterator[dict[int, str]]:
    """Registers NOTICE=25, TRACE=5 and AUDIT=35 with logging, and takes them back."""
    levels = {5: "TRACE", 25: "NOTICE", 35: "AUDIT"}
    with logging._lock:  # type: ignore[attr-defined]
        saved = dict(logging._levelToName), dict(logging._nameToLevel)  # type: ignore[attr-defined]
    for number, name in levels.items():
        logging.addLevelName(number, name)
    try:
        yield levels
    finally:
        with logging._lock:  # type: ignore[attr-defined]
            logging._levelToName.clear()  # type: ignore[attr-defined]
            logging._levelToName.update(saved[0])  # type: ignore[attr-defined]
            logging._nameToLevel.clear()  # type: ignore[attr-defined]
            logging._nameToLevel.update(saved[1])  # type: ignore[attr-defined]


class TestCustomLevels:
    def test_named_levels_land_in_their_range(
        self, otlp: Server, custom_levels: dict[int, str]
    ) -> None:
        """logging.addLevelName(35, 'AUDIT') ships as WARN4 (16), not 0 (unspecified, the
        old code's, which a severity filter drops); the text stays the name."""
        got = severities(otlp, "tests.otlp_custom_levels", custom_levels)
        assert {5: ("TRACE", 1), 25: ("NOTICE", 12), 35: ("AUDIT", 16)} == got


class TestHookLines:
    def test_a_hooks_keys_and_level_number_make_a_valid_record(self, otlp: Server) -> None:
        """A before_send hook's key that meta also has is one attribute (the hook's), not
        two with one key, which the data model forbids; its level number 35 is WARN4."""

        def hook(line: dict[str, Any]) -> dict[str, Any]:
            return {**line, "user": "from-hook", "level": 35}

        client = LogDNAHandler(
            key="k", url=otlp.url, protocol="otlp", hostname="h", kubernetes=False,
            handle_signals=False, before_send=hook,
        ).client  # fmt: skip
        try:
            client.log("hooked", meta={"user": "from-meta", "id": 7})
            assert client.flush(timeout=30)
        finally:
            client.close()
        records = [
            record
            for request in otlp.requests
            for rl in request.parsed.resource_logs  # type: ignore[union-attr]
            for sl in rl.scope_logs
            for record in sl.log_records
        ]
        (record,) = records
        keys = [kv.key for kv in record.attributes]
        assert sorted(keys) == sorted(set(keys))
        attributes = {kv.key: kv.value for kv in record.attributes}
        assert "from-hook" == attributes["user"].string_value
        assert 7 == attributes["id"].int_value
        assert 16 == record.severity_number


class TestCollectorRefusals:
    def test_a_413_splits_until_every_record_fits(self, otlp: Server) -> None:
        """A Collector's 413 (max_request_body_size) splits the batch: every record
        arrives, in order, none counted as rejected."""
        otlp.max_body = 4096
        client = LogDNAHandler(
            key="k", url=otlp.url, protocol="otlp", hostname="h", kubernetes=False,
            handle_signals=False, flush_interval=3600,
        ).client  # fmt: skip
        try:
            for i in range(40):
                client.log(f"record {i:02d} " + "x" * 200)
            assert client.flush(timeout=60)
            stats = client.stats()
        finally:
            client.close()
        assert [f"record {i:02d}" for i in range(40)] == [line["line"][:9] for line in otlp.lines]
        assert 0 == sum(stats["dropped"].values())
        assert any(r.status == 413 for r in otlp.requests)

    def test_a_400_status_costs_only_the_bad_record_and_reports_its_message(
        self, otlp: Server
    ) -> None:
        """A 400 with a google.rpc.Status body drops only the record it is about, counted
        as rejected, and the report carries the Status message."""
        otlp.poison = "poison"
        seen: list[str] = []

        class Collect(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                seen.append(record.getMessage())

        collect = Collect()
        own = logging.getLogger("logdna_client")
        own.addHandler(collect)
        client = LogDNAHandler(
            key="k", url=otlp.url, protocol="otlp", hostname="h", kubernetes=False,
            handle_signals=False, flush_interval=3600, compress=False,
        ).client  # fmt: skip
        try:
            for text in ("a", "poison", "b"):
                client.log(text)
            client.flush(timeout=60)
            stats = client.stats()
        finally:
            client.close()
            own.removeHandler(collect)
        assert ["a", "b"] == [
            line["line"] for line in otlp.lines if not line["line"].startswith("logdna_")
        ]
        assert 1 == stats["dropped"]["rejected"]
        assert any("unable to decode the record" in message for message in seen)

    @pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
    def test_transient_answers_are_retried_and_the_batch_arrives_once(
        self, otlp: Server, status: int
    ) -> None:
        """The OTLP spec's retryable answers (429, 502, 503, 504) and, by the library's
        own rule (docs/scaling.md), 408 and 500 too: the batch is sent again and arrives
        once, nothing dropped."""
        otlp.answer_next(status, body=status_body(14, "try again"))
        client = LogDNAHandler(
            key="k", url=otlp.url, protocol="otlp", hostname="h", kubernetes=False,
            handle_signals=False, retry_max_backoff=0.2,
        ).client  # fmt: skip
        try:
            client.log("retried")
            assert client.flush(timeout=60)
            stats = client.stats()
        finally:
            client.close()
        assert ["retried"] == [line["line"] for line in otlp.lines]
        assert [status, 200] == [r.status for r in otlp.requests]
        assert 1 == stats["retries"]
        assert 0 == sum(stats["dropped"].values())
