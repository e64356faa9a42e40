"""The exit's loss report says why lines were lost: it names the last failed attempt (a
refused key, a wrong url) and how long before it came. Before, the exit said only "N lines
could not be delivered", while ``stats()["last_error"]`` knew it was a 403."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from logdna_client._stats import said_of_failure
from logdna_client._transport import Kind
from tests._claims_servers import Request, Responder, answer, scripted_server

REPO_ROOT = Path(__file__).resolve().parent.parent


class TestSaidOfFailure:
    """``last_error`` in the words of the exit's report."""

    def test_none_says_nothing(self) -> None:
        """No failed attempt: no bracket."""
        assert "" == said_of_failure(None, 100.0)

    def test_a_refused_key_and_its_status(self) -> None:
        """The kind in words, its HTTP status, and how long before the report it failed."""
        said = said_of_failure({"kind": "auth", "status": 403, "when": 98.0}, 100.0)
        assert "the service refused the key, HTTP 403" in said
        assert "2.0 s before" in said

    def test_no_status_for_a_connection_failure(self) -> None:
        """A failure without an answer names no HTTP status."""
        said = said_of_failure({"kind": "retry", "status": None, "when": 100.0}, 100.0)
        assert "unreachable" in said
        assert "HTTP" not in said

    def test_every_failed_kind_has_words(self) -> None:
        """Each kind ``last_error`` can hold is said in words, not as its name."""
        for kind in Kind:
            if kind is not Kind.OK:
                said = said_of_failure({"kind": kind.value, "status": None, "when": 1.0}, 1.0)
                assert f": {kind.value})" not in said


def _refuse(request: Request, sock: socket.socket, stop: threading.Event) -> bytes:
    return answer(403, b'{"error":"forbidden"}')


class _BusyThenSilent:
    """Answers the first request 503, then answers none until the server stops."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._answered = False

    def __call__(
        self, request: Request, sock: socket.socket, stop: threading.Event
    ) -> bytes | None:
        with self._lock:
            first, self._answered = not self._answered, True
        if first:
            return answer(503, b'{"error":"busy"}')
        stop.wait(30)
        return None


# A script with no logging configured. It waits for the sender's report of the failure (its
# kind on the record), through a handler taken away before the exit: with it there, the
# exit's report would go to that handler, not to stderr.
_SCRIPT = """
    import logging, threading
    from logdna_client import LogDNAHandler
    failed = threading.Event()
    class Seen(logging.Handler):
        def emit(self, record):
            if getattr(record, "logdna_client_kind", None) == {kind!r}:
                failed.set()
    own = logging.getLogger("logdna_client")
    seen = Seen()
    own.addHandler(seen)
    handler = LogDNAHandler(key="k" * 32, shutdown_timeout="0.5", retry_max_backoff="0.2")
    log = logging.getLogger("app")
    log.addHandler(handler)
    log.warning("will not arrive")
    assert failed.wait(30), "no failure reported"
    own.removeHandler(seen)
"""


def _exit_loss_said(respond: Responder, kind: str) -> tuple[str, str]:
    """Run the script against ``respond``: the one line of stderr that says lines were
    lost at the exit, and the whole of stderr."""
    with scripted_server(respond) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOGDNA_")}
        env.update(PYTHONPATH=str(REPO_ROOT), LOGDNA_URL=server.url)
        code = textwrap.dedent(_SCRIPT.format(kind=kind))
        run = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
            check=False,
        )  # fmt: skip
    assert 0 == run.returncode, run.stderr
    said = [
        line for line in run.stderr.splitlines() if "not delivered" in line or "could not" in line
    ]
    assert 1 == len(said), run.stderr
    assert "k" * 32 not in run.stderr
    return said[0], run.stderr


def test_the_exit_report_says_the_key_was_refused() -> None:
    """The service refuses the key: the one line the script shows on stderr at its exit
    says the lines were lost, that the key was refused, and how long before."""
    said, _ = _exit_loss_said(_refuse, "auth")

    assert "the service refused the key, HTTP 403)" in said
    assert re.search(r"\(the last failed attempt, \d+\.\d s before: ", said), said


def test_the_exit_report_says_the_service_was_busy() -> None:
    """The service answered 503, then nothing until the exit's deadline: the exit's report
    says it was unreachable or busy (the 503, or the request the deadline cut short,
    whichever failed last), without the server's text."""
    said, stderr = _exit_loss_said(_BusyThenSilent(), "send-failed")

    assert re.search(r"\(the last failed attempt, \d+\.\d s before: ", said), said
    assert re.search(r"the service was unreachable or busy(, HTTP 503)?\)$", said), said
    assert '"error"' not in stderr


def _busy(request: Request, sock: socket.socket, stop: threading.Event) -> bytes:
    return answer(503, b'{"error":"busy"}')


def _refusing(request: Request, sock: socket.socket, stop: threading.Event) -> bytes:
    return answer(400, b'{"error":"bad request"}')


@pytest.mark.parametrize("respond", [_busy, _refusing], ids=["503", "400"])
def test_the_exit_says_lines_dropped_in_an_outage_it_ended_in(respond: Responder) -> None:
    """The service is down (503), or refuses every batch (400), for the whole run; a
    small buffer evicts the oldest lines (``buffer_full``). The drop summary line goes
    only once delivery works again, which never happens: the exit says how many were
    dropped and why (it said only the lines its deadline cut, and the evicted ones were
    counted only in the ended process's ``stats()``; with the 400, the summary rode a
    refused batch and was taken as told)."""
    code = textwrap.dedent(
        """
        import logging
        from logdna_client import LogDNAHandler
        handler = LogDNAHandler(max_buffer_bytes="64KiB", shutdown_timeout="0.3",
                                retry_max_backoff="0.2")
        log = logging.getLogger("app")
        log.addHandler(handler)
        for i in range(10000):
            log.warning("line %d of a run the service never answers", i)
        print(handler.client.stats()["dropped"]["buffer_full"])
        """
    )
    with scripted_server(respond) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOGDNA_")}
        env.update(PYTHONPATH=str(REPO_ROOT), LOGDNA_URL=server.url)
        run = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
            check=False,
        )  # fmt: skip
    assert 0 == run.returncode, run.stderr
    evicted = int(run.stdout)
    assert evicted > 0
    said = [line for line in run.stderr.splitlines() if "never reported" in line]
    assert 1 == len(said), run.stderr
    assert f"buffer_full {evicted}" in said[0], run.stderr
