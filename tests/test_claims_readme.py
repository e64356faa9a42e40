"""README.md's sentences that no other module held to their word: what a stdlib line is
made of, the environment variables, the Client's calls, the install line and "never
output on stdout", each against a real local server (in-process, or a child process's)."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import textwrap
from importlib import metadata
from typing import Any, ClassVar

from logdna_client import Client, LogDNAHandler
from logdna_client._devserver import DevServer
from tests._helpers_integrations import REPO_ROOT, TIMEOUT, handler_for, logger_with

README = (REPO_ROOT / "README.md").read_text()


def run_child(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter, with no LOGDNA_ variable but those in ``env``."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("LOGDNA_")}
    full.update(env, PYTHONPATH=str(REPO_ROOT))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=full, capture_output=True,
        text=True, timeout=60, check=False,
    )  # fmt: skip


class TestInstall:
    def test_python_and_runtime_dependencies(self) -> None:
        """ "Python 3.10+. Runtime dependencies: requests 2.28+, urllib3 1.26.5+, ...;
        structlog 23.1+ for the processor" is what the installed package declares, and
        the versions CI's lowest-versions stage pins (.ci/lowest-deps.txt) are those."""
        said = re.search(
            r"Python (\d+\.\d+)\+\. Runtime dependencies: (.+?); (structlog \S+) for",
            README,
            re.DOTALL,
        )
        assert said is not None
        assert f">={said[1]}" == metadata.metadata("logdna_client")["Requires-Python"]
        listed = " ".join(said[2].split())  # (the sentence wraps)
        readme = dict(part.split() for part in [*listed.split(", "), said[3]])
        declared = {
            _name(r): re.search(r">=([\d.]+)", r)[1]  # type: ignore[index]
            for r in _requires()
            if "extra ==" not in r or re.search(r"extra == .structlog.", r)
        }
        assert {name: f"{low}+" for name, low in declared.items()} == readme
        pinned = re.findall(
            r"^([\w-]+)==(\S+)$", (REPO_ROOT / ".ci/lowest-deps.txt").read_text(), re.M
        )
        assert {k: _version(v) for k, v in declared.items()} == {k: _version(v) for k, v in pinned}

    def test_structlog_extra(self) -> None:
        """``pip install 'logdna_client[structlog]'`` names an extra that brings structlog."""
        assert "pip install 'logdna_client[structlog]'" in README
        extra = [_name(r) for r in _requires() if re.search(r"extra == .structlog.", r)]
        assert ["structlog"] == extra


def _requires() -> list[str]:
    return metadata.requires("logdna_client") or []


def _version(text: str) -> tuple[int, ...]:
    """A release number as numbers, without trailing zeros ("3.8.0" is "3.8")."""
    parts = [int(part) for part in text.split(".")]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~; \[]", requirement, maxsplit=1)[0]


class TestStdlibLine:
    """README, stdlib logging: "The line is the formatted message, the level is the
    record's level name, the timestamp is `record.created`, and every `extra=` field
    becomes searchable meta. Exceptions (`log.exception`) ship with their traceback."""

    def test_line_level_timestamp_meta(self, server: DevServer, monkeypatch: Any) -> None:
        """Each part of the line, as the service receives it, is the record's."""
        # A level name of the app's own, for this test only (logging keeps names globally).
        monkeypatch.setattr(logging, "_levelToName", dict(logging._levelToName))
        monkeypatch.setattr(logging, "_nameToLevel", dict(logging._nameToLevel))
        records: list[logging.LogRecord] = []
        seen = logging.Handler()
        seen.emit = records.append  # type: ignore[method-assign]
        logging.addLevelName(25, "NOTICE")
        handler = handler_for(server)
        with logger_with("billing.invoices", handler) as log:
            log.addHandler(seen)
            log.warning("invoice %s overdue", 1042, extra={"customer_id": 77, "days": 12})
            log.log(25, "a level of the app's own")
            try:
                raise KeyError("no price for invoice 1043")
            except KeyError:
                log.exception("could not price invoice %d", 1043)
            assert handler.client.flush(TIMEOUT)
        assert server.wait_for_lines(3, TIMEOUT)
        first, _custom, failed = server.lines
        assert "invoice 1042 overdue" == first["line"]
        assert ["WARNING", "NOTICE", "ERROR"] == [line["level"] for line in server.lines]
        for line, record in zip(server.lines, records, strict=True):
            assert abs(record.created * 1000 - line["timestamp"]) < 1  # ms, per the API
        expected = {"name": "billing.invoices", "customer_id": 77, "days": 12}
        assert expected == first["meta"]
        assert failed["line"].startswith("could not price invoice 1043\nTraceback")
        assert failed["line"].endswith("KeyError: 'no price for invoice 1043'")


class TestEnvironment:
    """README: "LOGDNA_INGESTION_KEY, LOGDNA_URL, LOGDNA_APP, LOGDNA_ENV, LOGDNA_HOSTNAME
    and LOGDNA_TAGS fill any option not given explicitly (an explicit argument wins).
    With the key in the environment, LogDNAHandler() needs no arguments at all."""

    ENV: ClassVar[dict[str, str]] = {
        "LOGDNA_INGESTION_KEY": "readme-env-key",
        "LOGDNA_APP": "env-app",
        "LOGDNA_ENV": "env-env",
        "LOGDNA_HOSTNAME": "env-host",
        "LOGDNA_TAGS": "web,eu-west",
    }

    def test_no_arguments_at_all(self) -> None:
        """A process with the variables set builds ``LogDNAHandler()`` and delivers with
        the key the server requires, under the app, env, hostname and tags they name."""
        with DevServer(key="readme-env-key") as server:
            result = run_child(
                """
                import logging
                from logdna_client import LogDNAHandler
                logging.getLogger().addHandler(LogDNAHandler())
                logging.getLogger().warning("configured by the environment")
                """,
                {**self.ENV, "LOGDNA_URL": server.url},
            )
            assert 0 == result.returncode, result.stderr
            assert server.wait_for_lines(1, TIMEOUT)
            (line,) = server.lines
            (request,) = server.requests
        assert ("configured by the environment", "env-app", "env-env") == (
            line["line"], line["app"], line["env"],
        )  # fmt: skip
        assert (True, "env-host", ["web", "eu-west"]) == (
            request.key_valid, request.hostname, list(request.tags),
        )  # fmt: skip

    def test_explicit_argument_wins(self, server: DevServer, monkeypatch: Any) -> None:
        """Given explicitly, an option ignores its variable; the others still fill in."""
        for name, value in self.ENV.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("LOGDNA_URL", "http://127.0.0.1:9/never-used")
        handler = LogDNAHandler(url=server.url, app="explicit-app", hostname="explicit-host")
        with logger_with("readme.env", handler) as log:
            log.info("explicit wins")
            assert handler.client.flush(TIMEOUT)
        (line,) = server.lines
        (request,) = server.requests
        assert ("explicit-app", "env-env") == (line["app"], line["env"])
        assert ("explicit-host", ["web", "eu-west"]) == (request.hostname, list(request.tags))


class TestClientCalls:
    """README, "The Client directly" and "With `with`": what the comments promise."""

    def test_flush_and_stats(self, server: DevServer) -> None:
        """flush() is True once everything accepted was delivered; stats() has queued,
        sent, dropped (by reason), retries and bytes_sent."""
        client = Client(url=server.url, app="worker")
        client.log("job finished", level="INFO", meta={"job_id": 9, "seconds": 3.2})
        assert True is client.flush(timeout=TIMEOUT)
        stats = client.stats()
        client.close()
        assert (0, 1, 0) == (stats["queued"], stats["sent"], stats["retries"])
        assert stats["bytes_sent"] == server.requests[0].body_bytes
        assert isinstance(stats["dropped"], dict)
        assert {"buffer_full", "rejected", "shutdown"} <= set(stats["dropped"])
        assert {"job_id": 9, "seconds": 3.2} == server.lines[0]["meta"]

    def test_flush_is_false_while_not_delivered(self) -> None:
        """flush() is not True while a line is still undelivered (a port nobody serves)."""
        with DevServer() as gone:
            url = gone.url
        client = Client(url=url, shutdown_timeout=0)
        client.log("nowhere to go")
        assert False is client.flush(timeout=0.5)
        client.close()

    def test_with_block_closes_and_flushes(self, server: DevServer) -> None:
        """``with Client(...) as client`` delivers the block's lines and closes the client
        at its end (a line logged after it is counted as after_close, not sent)."""
        with Client(url=server.url, app="worker") as client:
            client.log("batch done")
        assert ["batch done"] == [line["line"] for line in server.lines]
        client.log("too late")
        assert 1 == client.stats()["dropped"]["after_close"]


def test_never_output_on_stdout() -> None:
    """README: a logging call is "never an exception, never output on stdout": a process
    whose logging goes wrong every way it can (no server, a full buffer, a message that
    cannot be formatted, meta JSON cannot encode, a hook that raises, a call after close,
    lines lost at exit) writes only its own text on stdout, and no logging error."""
    with DevServer() as gone:
        url = gone.url
    result = run_child(
        """
        import logging
        from logdna_client import LogDNAHandler

        def hook(line):
            raise RuntimeError("the hook failed")

        handler = LogDNAHandler(max_buffer_bytes="64KiB", overflow="drop_newest",
                                shutdown_timeout="0.2", before_send=hook)
        log = logging.getLogger("app")
        log.addHandler(handler)
        cycle = {}
        cycle["self"] = cycle
        for i in range(2000):
            log.error("line %d %s", i, "x" * 100)
        log.error("%d apples", "not a number")
        log.error("odd meta", extra={"cycle": cycle, "obj": object(), "nan": float("nan")})
        print("the app's own output")
        handler.close()
        log.error("after close")
        """,
        {"LOGDNA_URL": url},
    )
    assert 0 == result.returncode, result.stderr
    assert "the app's own output\n" == result.stdout
    assert "Logging error" not in result.stderr
    assert "Traceback" not in result.stderr
    # What the exit could not deliver is said, on stderr (docs/delivery.md).
    assert "could not be delivered before the shutdown deadline (0.2 s)" in result.stderr
