"""Review of protocol="otlp": a hook's list or object as a line's app or env, a line that
cannot be converted, and which hostname is ``host.name``. (Where LOGDNA_INGESTION_KEY goes
and what of an OTel header is scrubbed: tests/test_security.py.)"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from logdna_client._buffer import SEPARATOR
from logdna_client._config import Config
from logdna_client._otlp import OTLPEncoder
from tests._otlp_server import Server, otlp_client
from tests.helpers import library_reports
from tests.test_otlp_environment import _OTEL


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No OTel exporter, resource or LOGDNA_ variable set but those a test sets."""
    for name in (*_OTEL, "OTEL_RESOURCE_ATTRIBUTES", "OTEL_SERVICE_NAME", "LOGDNA_HOSTNAME"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def reports() -> Iterator[list[logging.LogRecord]]:
    """The records the library logs through its own logger while the test runs."""
    with library_reports(lambda record: record) as said:
        yield said


def app_lines(server: Server) -> list[str]:
    """The texts the server took, but the library's drop summary ("N lines dropped")."""
    return [line["line"] for line in server.lines if not line["line"].startswith("logdna_client:")]


def resources(server: Server) -> dict[str, dict[str, Any]]:
    """Each line's text -> its resource's attributes, from what the server took."""
    return {line["line"]: line["resource"] for line in server.lines}


class TestOneBadValueSpoilsNoBatch:
    @pytest.mark.parametrize(
        ("field", "value", "named"),
        [
            ("env", ["prod", "eu"], '["prod","eu"]'),
            ("app", {"team": "payments"}, '{"team":"payments"}'),
            ("app", 7, "7"),
        ],
    )
    def test_a_hooks_list_or_object_as_app_or_env_costs_no_line(
        self, otlp: Server, env: pytest.MonkeyPatch, field: str, value: Any, named: str
    ) -> None:
        """A before_send hook that sets one line's env or app to a list, an object or a
        number: every line of the batch is delivered (as on protocol="logdna"), that one
        in a resource naming the value's JSON text, the others in the client's.
        Before: TypeError (unhashable type), and all 50 lines were dropped as error."""

        def hook(line: dict[str, Any]) -> dict[str, Any]:
            if line["line"] == "line 7":
                line[field] = value
            return line

        client = otlp_client(otlp.url, key="k", app="shop", env="dev", before_send=hook)
        for i in range(50):
            client.log(f"line {i}")
        client.flush(timeout=30)
        stats = client.stats()
        client.close()
        assert (50, 0) == (stats["sent"], stats["dropped_total"])
        got = resources(otlp)
        assert [f"line {i}" for i in range(50)] == sorted(got, key=lambda t: int(t.split()[1]))
        attribute = {"app": "service.name", "env": "deployment.environment.name"}[field]
        assert named == got["line 7"][attribute]
        assert {"service.name": "shop", "deployment.environment.name": "dev"} == {
            k: got["line 8"][k] for k in ("service.name", "deployment.environment.name")
        }

    def test_a_spooled_line_with_a_list_env_takes_the_fast_path_safely(self) -> None:
        """A line another process left in the spool with a list as its env (its hook's),
        sent by a client with no hook (the fast path, which reads app and env from the
        line's tail): both lines of the batch are in the body. Before: TypeError."""
        odd = SEPARATOR + b'{"line":"odd","timestamp":1,"level":"INFO","env":["prod","eu"]}'
        plain = SEPARATOR + b'{"line":"plain","timestamp":2,"level":"INFO"}'
        encoder = OTLPEncoder(app="shop", env="dev", hostname="h", otel={})
        body = orjson.loads(encoder.encode([odd, plain]))
        by_env = {
            {a["key"]: a["value"] for a in rl["resource"]["attributes"]}[
                "deployment.environment.name"
            ]["stringValue"]: [r["body"]["stringValue"] for r in rl["scopeLogs"][0]["logRecords"]]
            for rl in body["resourceLogs"]
        }
        assert {'["prod","eu"]': ["odd"], "dev": ["plain"]} == by_env

    @pytest.mark.parametrize("spool", [False, True])
    def test_a_line_that_fails_to_convert_is_dropped_alone(
        self,
        otlp: Server,
        env: pytest.MonkeyPatch,
        reports: list[logging.LogRecord],
        tmp_path: Path,
        spool: bool,
    ) -> None:
        """A line whose conversion raises (a bug's exception, here injected) is counted
        alone as error and reported with its traceback; the other lines of its batch
        are delivered, once, and a spooled batch is done with (a new client on the same
        spool sends nothing again). Before: the whole batch was dropped as error."""
        convert = OTLPEncoder._convert

        def failing(self: OTLPEncoder, entry: bytes, cuts: Any) -> Any:
            if b"poison" in entry:
                raise RuntimeError("a bug converting this line")
            return convert(self, entry, cuts)

        env.setattr(OTLPEncoder, "_convert", failing)
        folder = {"spool_dir": str(tmp_path / "spool")} if spool else {}
        client = otlp_client(otlp.url, key="k", flush_interval=3600, **folder)
        for i in range(10):  # meta: every line takes the general path, _convert
            client.log("poison 3" if i == 3 else f"line {i}", meta={"i": i})
        client.flush(timeout=30)
        stats = client.stats()
        client.close()
        expected = [f"line {i}" for i in range(10) if i != 3]
        assert expected == app_lines(otlp)
        assert (9, {"error": 1}, 0) == (
            stats["sent"], {k: n for k, n in stats["dropped"].items() if n}, stats["queued"]
        )  # fmt: skip
        said = [r for r in reports if "converting lines to OTLP" in r.getMessage()]
        assert 1 == len(said) and "1 line(s) dropped" in said[0].getMessage()
        assert said[0].exc_info is not None
        assert "a bug converting this line" == str(said[0].exc_info[1].__cause__)  # type: ignore[union-attr]
        if spool:
            again = otlp_client(otlp.url, key="k", **folder)
            again.flush(timeout=30)
            again.close()
            assert expected == app_lines(otlp)


class TestHostName:
    @pytest.mark.parametrize(
        ("variables", "options", "expected"),
        [
            ({}, {"hostname": socket.gethostname()}, socket.gethostname()),
            ({}, {"hostname": "web-1"}, "web-1"),
            ({"LOGDNA_HOSTNAME": socket.gethostname()}, {}, socket.gethostname()),
            ({"LOGDNA_HOSTNAME": "  "}, {}, "node-a"),
            ({}, {"hostname": " "}, "node-a"),
            ({}, {}, "node-a"),
        ],
    )
    def test_a_hostname_given_is_host_name(
        self,
        otlp: Server,
        env: pytest.MonkeyPatch,
        variables: dict[str, str],
        options: dict[str, Any],
        expected: str,
    ) -> None:
        """hostname= or LOGDNA_HOSTNAME is host.name over OTEL_RESOURCE_ATTRIBUTES'
        even when it is the machine's own name; blank, it is not given, and the
        detected hostname gives way. Before: a hostname= equal to the detected one lost
        to host.name, and a LOGDNA_HOSTNAME of blanks won over it."""
        env.setenv("OTEL_RESOURCE_ATTRIBUTES", "host.name=node-a")
        for name, value in variables.items():
            env.setenv(name, value)
        client = otlp_client(otlp.url, key="k", **options)
        client.log("hello")
        assert client.flush(timeout=30)
        client.close()
        assert expected == otlp.lines[0]["resource"]["host.name"]

    def test_replace_keeps_a_detected_hostname_detected(self, env: pytest.MonkeyPatch) -> None:
        """Config.replace() of a config whose hostname was detected: still not given in
        the copy (it still gives way to OTel's host.name); one given stays given."""
        detected = Config(protocol="otlp", url="http://127.0.0.1:4318/v1/logs",
                          handle_signals=False)  # fmt: skip
        assert (False, False) == (
            detected.hostname_given, detected.replace(level="INFO").hostname_given
        )  # fmt: skip
        given = detected.replace(hostname=socket.gethostname())
        assert (True, True) == (given.hostname_given, given.replace(level="INFO").hostname_given)
