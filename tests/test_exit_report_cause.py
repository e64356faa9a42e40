"""The reports a default app sees say why lines were lost: the exit's loss report names
the last failed attempt (a refused key, a wrong url), and a missing CA bundle's report
points at the settings that name one. Before, the exit said only "N lines could not be
delivered", while ``stats()["last_error"]`` knew it was a 403."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from logdna_client import Client
from logdna_client._stats import said_of_failure
from tests._claims_servers import Request, answer, scripted_server

REPO_ROOT = Path(__file__).resolve().parent.parent


class TestSaidOfFailure:
    def test_none_says_nothing(self) -> None:
        assert "" == said_of_failure(None, 100.0)

    def test_a_refused_key_and_its_status(self) -> None:
        said = said_of_failure({"kind": "auth", "status": 403, "when": 98.0}, 100.0)
        assert "the service refused the key, HTTP 403" in said
        assert "2.0 s before" in said

    def test_no_status_for_a_connection_failure(self) -> None:
        said = said_of_failure({"kind": "retry", "status": None, "when": 100.0}, 100.0)
        assert "unreachable" in said
        assert "HTTP" not in said


def _refuse(request: Request, sock: socket.socket, stop: threading.Event) -> bytes:
    return answer(403, b'{"error":"forbidden"}')


def test_the_exit_report_says_the_key_was_refused() -> None:
    """A script with no logging configured, whose key the service refuses: the one line it
    sees on stderr at exit says the lines were lost and that the key was refused."""
    with scripted_server(_refuse) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOGDNA_")}
        env.update(PYTHONPATH=str(REPO_ROOT), LOGDNA_URL=server.url)
        code = """
            import logging
            from logdna_client import LogDNAHandler
            handler = LogDNAHandler(key="k" * 32, shutdown_timeout="0.5")
            log = logging.getLogger("app")
            log.addHandler(handler)
            log.warning("will not arrive")
            handler.flush(timeout=5)  # the 403 comes back before the exit
        """
        run = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True,
            text=True, timeout=60, check=False,
        )  # fmt: skip
    assert 0 == run.returncode, run.stderr
    said = [
        line for line in run.stderr.splitlines() if "not delivered" in line or "could not" in line
    ]
    assert 1 == len(said), run.stderr
    assert "the service refused the key, HTTP 403" in said[0]


def test_a_missing_ca_bundle_names_the_settings_that_name_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """REQUESTS_CA_BUNDLE naming a file that is not there: the report says to check the CA
    bundle settings, not only the url and the proxy."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "gone.pem"))
    caplog.set_level(logging.ERROR, logger="logdna_client")
    client = Client(key="k" * 32, url="https://127.0.0.1:9/logs/ingest", shutdown_timeout=0.2)
    try:
        client.log("never sent")
        client.flush(timeout=2)
    finally:
        client.close(0.2)
    reports = [r.getMessage() for r in caplog.records if "no request can be made" in r.getMessage()]
    assert reports, [r.getMessage() for r in caplog.records]
    assert "REQUESTS_CA_BUNDLE" in reports[0]
