"""Requests through a SOCKS proxy (``ALL_PROXY=socks5://...``) against proxies that
stall or trickle their own handshake, and with PySocks, which SOCKS needs, missing.
Each proxy is a real server on loopback; the missing PySocks is a real child
interpreter that cannot import it."""

from __future__ import annotations

import json
import os
import socket
import socketserver
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest

from logdna_client import Client, Config
from logdna_client._transport import HTTPTransport, Kind, Outcome
from tests._children import REPO
from tests.test_claims_hostile import DEADLINE, SLACK, WAIT, assert_accounted, close_took

KEY = "k" * 20 + "secret" + "k" * 6
#: An ingest URL sent through the proxy (a loopback one never is), by name: the proxy is
#: asked for it by name (socks5h), and never resolves or reaches it.
REMOTE = "http://ingest.invalid/logs/ingest"
BODY = b'{"lines":[{"line":"x"}]}'
#: The trickling proxy's pace: a byte of its handshake every this many seconds, well
#: inside any per-read timeout the tests set, so no single read ever times out.
TRICKLE_EVERY = 0.2
PROXY_VARIABLES = ("no_proxy", "NO_PROXY", "http_proxy", "HTTP_PROXY", "https_proxy",
                   "HTTPS_PROXY", "all_proxy", "ALL_PROXY")  # fmt: skip


class _TricklingSocks5(socketserver.ThreadingTCPServer):
    """A SOCKS5 proxy that reads the client's greeting and request as they come, and
    answers them a byte at a time: its CONNECT reply names a bound host of 255
    characters, so the handshake alone would take about a minute."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _TricklingHandler)
        self.stopping = threading.Event()
        self.greeted = threading.Event()

    @property
    def url(self) -> str:
        return f"socks5h://127.0.0.1:{self.server_address[1]}"


class _TricklingHandler(socketserver.BaseRequestHandler):
    server: _TricklingSocks5

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(60)
        bound = b"b" * 255
        reply = b"\x05\x00\x00\x03" + bytes([len(bound)]) + bound + b"\x00\x50"
        try:
            sock.recv(3)  # version, one method, "no authentication"
            self.server.greeted.set()
            self._trickle(sock, b"\x05\x00")
            sock.recv(262)  # the CONNECT request
            self._trickle(sock, reply)
            self.server.stopping.wait(60)  # never relays: the handshake is all it does
        except OSError:
            return

    def _trickle(self, sock: socket.socket, data: bytes) -> None:
        for i in range(len(data)):
            if self.server.stopping.wait(TRICKLE_EVERY):
                raise OSError("stopping")
            sock.sendall(data[i : i + 1])


@pytest.fixture
def trickling_proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[_TricklingSocks5]:
    """A trickling SOCKS5 proxy that every request of the test goes through."""
    pytest.importorskip("socks", reason="PySocks is not installed")
    proxy = _TricklingSocks5()
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ALL_PROXY", proxy.url)
    try:
        yield proxy
    finally:
        proxy.stopping.set()
        proxy.shutdown()
        proxy.server_close()
        thread.join(5)


class TestAProxyThatTricklesItsHandshake:
    def test_the_request_is_cut_at_its_deadline(self, trickling_proxy: _TricklingSocks5) -> None:
        """A SOCKS proxy that answers its handshake a byte at a time cannot hold a request
        past request_timeout: the handshake is cut at the exchange's deadline as the
        rest of the exchange is (it ran inside PySocks, bounded only per read, and held
        the sender for a minute here, for hours with a longer pace)."""
        outcomes: list[Outcome] = []
        transport = HTTPTransport(Config(key=KEY, url=REMOTE, hostname="h", allow_insecure=True))
        sender = threading.Thread(
            target=lambda: outcomes.append(transport.send(BODY, gzipped=False, timeout=1.0))
        )
        started = time.monotonic()
        sender.start()
        sender.join(WAIT)
        took = time.monotonic() - started
        cut_in_time = not sender.is_alive()
        trickling_proxy.stopping.set()  # frees a sender the deadline did not
        sender.join(WAIT)
        transport.close()
        assert cut_in_time, f"the request was not cut at its deadline ({took:.1f} s)"
        assert trickling_proxy.greeted.is_set()
        (outcome,) = outcomes
        assert Kind.RETRY is outcome.kind, outcome
        assert outcome.detail.startswith("timed out"), outcome
        assert KEY not in outcome.detail

    def test_close_cuts_the_handshake_at_its_deadline(
        self, trickling_proxy: _TricklingSocks5
    ) -> None:
        """close() cuts a request stuck in the proxy's handshake at the close's deadline
        (far below request_timeout): the sender ends, and the line counts as shutdown
        (the sender stayed in the handshake, and the line was left queued)."""
        client = Client(
            key=KEY, url=REMOTE, hostname="t", flush_interval=0.05, request_timeout=60,
            allow_insecure=True,
        )  # fmt: skip
        client.log("never through the proxy")
        assert trickling_proxy.greeted.wait(WAIT)
        took = close_took(client, DEADLINE)
        assert client._sender.thread is not None
        client._sender.thread.join(WAIT)
        s = client.stats()
        assert (1, False) == (s["dropped"]["shutdown"], s["sender_alive"]), s
        assert took < DEADLINE + SLACK, f"close took {took:.2f} s"
        assert_accounted(client)


#: A child interpreter with no PySocks to import, sending one line through the SOCKS proxy
#: ALL_PROXY names; it prints its stats and the library's reports before close(), as JSON.
_WITHOUT_PYSOCKS = """
import json, logging, sys
sys.modules["socks"] = None  # "import socks" fails, as where PySocks is not installed
from logdna_client import Client

reports = []
class Reports(logging.Handler):
    def emit(self, record):
        reports.append([record.levelname, record.getMessage()])
own = logging.getLogger("logdna_client")
own.addHandler(Reports())
own.setLevel(logging.DEBUG)

client = Client(key=sys.argv[1], url=sys.argv[2], hostname="t", flush_interval=0.05,
                allow_insecure=True)
client.log("through a socks proxy")
# Long enough for retries on the quick backoff (the first within 0.5 s) to show.
client.flush(2.0)
stats, reported = client.stats(), list(reports)
client.close(0.5)
print(json.dumps({"stats": stats, "reports": reported}))
"""


class TestWithoutPySocks:
    def test_reported_once_clearly_and_retried_slowly(self) -> None:
        """A socks5:// proxy where PySocks is not installed fails every request the same
        way: reported once at ERROR, naming PySocks and how to install it, counted under
        last_error kind "settings", and retried at the slow pace of the other settings
        failures (it was a connection error, retried on the quick backoff: a request
        every half second at first, reported as a passing failure)."""
        env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
        env.update(ALL_PROXY="socks5://127.0.0.1:9", PYTHONPATH=REPO)
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(_WITHOUT_PYSOCKS), KEY, REMOTE],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert 0 == done.returncode, done.stderr
        result = json.loads(done.stdout)
        stats, reports = result["stats"], result["reports"]
        assert (1, 1) == (stats["requests"], stats["queued"]), stats
        assert "settings" == stats["last_error"]["kind"], stats
        errors = [text for level, text in reports if level == "ERROR"]
        assert 1 == len(errors), reports
        assert "PySocks" in errors[0] and "requests[socks]" in errors[0], errors
        assert not [text for level, text in reports if level == "WARNING"], reports
        assert KEY not in done.stdout + done.stderr
