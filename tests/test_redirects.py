"""Redirects are never followed (issue 15): the key and the lines stay with the configured host.

Real servers on loopback: an HTTPS ingest endpoint with a self-signed
certificate that answers 3xx, and trap servers (another host, plain http)
that record anything that reaches them.
"""

from __future__ import annotations

import http.server
import logging
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from logdna_client import Client
from logdna_client._report import KIND_ATTR
from logdna_client._transport import Kind, classify
from tests.helpers import make_cert

KEY = "rd7Q-redirect-Key-93be0c1f5a"
WAIT = 10.0


def _make_cert(directory: Path) -> tuple[Path, Path] | None:
    # Good for 127.0.0.1, 127.0.0.2 and localhost: a followed redirect to any of
    # them would get through TLS, so the tests show the client refusing to follow.
    return make_cert(directory, "IP:127.0.0.1,IP:127.0.0.2,DNS:localhost")


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, _Handler)
        #: (method, path, headers, body) of every request that arrived.
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.arrived = threading.Event()
        #: The first this many requests are answered with ``status`` and ``location``.
        self.redirects = 1 << 30
        self.status = 307
        self.location = ""
        #: Set once this many requests arrived.
        self.enough = threading.Event()
        self.wanted = 3

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        scheme = "https" if isinstance(self.socket, ssl.SSLSocket) else "http"
        return f"{scheme}://{host!s}:{port}"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        server = self.server
        server.requests.append((self.command, self.path, dict(self.headers.items()), body))
        server.arrived.set()
        if len(server.requests) >= server.wanted:
            server.enough.set()
        if len(server.requests) <= server.redirects and server.location:
            self.send_response(server.status)
            self.send_header("Location", server.location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "15")
        self.end_headers()
        self.wfile.write(b'{"status":"ok"}')

    do_POST = _answer
    do_GET = _answer

    def log_message(self, format: str, *args: Any) -> None:
        return


def _serve(server: _Server) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    made = _make_cert(tmp_path_factory.mktemp("tls"))
    if made is None:
        pytest.skip("openssl cannot make a test certificate here")
    return made


def _start(cert: tuple[Path, Path] | None, host: str = "127.0.0.1") -> _Server:
    server = _Server((host, 0))
    if cert is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*cert)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    _serve(server)
    return server


@pytest.fixture
def ingest(cert: tuple[Path, Path]) -> Iterator[_Server]:
    """The configured HTTPS ingest endpoint (it answers with redirects)."""
    server = _start(cert)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(params=["other-host-http", "other-host-https", "same-host-http"])
def trap(request: pytest.FixtureRequest, cert: tuple[Path, Path]) -> Iterator[_Server]:
    """Where the redirect points: another host (plain http or https), or plain http."""
    host = "127.0.0.1" if request.param == "same-host-http" else "127.0.0.2"
    server = _start(cert if request.param.endswith("https") else None, host)
    yield server
    server.shutdown()
    server.server_close()


class _Reports(logging.Handler):
    """The library's own records that speak of a redirect, apart from the report of
    lines lost at the close (kind ``exit-loss``), which names the last failed attempt
    again: that one is kept in ``exit_loss``."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []
        self.exit_loss: list[str] = []
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if getattr(record, KIND_ATTR, None) == "exit-loss":
            self.exit_loss.append(text)
        elif "redirect" in text:
            self.messages.append(text)
            self.seen.set()


@pytest.fixture
def reports() -> Iterator[_Reports]:
    handler = _Reports()
    own = logging.getLogger("logdna_client")
    own.addHandler(handler)
    own.setLevel(logging.DEBUG)
    yield handler
    own.removeHandler(handler)


def _client(ingest: _Server, cert: tuple[Path, Path]) -> Client:
    return Client(
        key=KEY, url=ingest.url + "/logs/ingest", hostname="t", verify=str(cert[0]),
        flush_interval=0.05, retry_max_backoff=0.1, shutdown_timeout=0.5,
    )  # fmt: skip


class TestRedirectsAreNotFollowed:
    @pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
    def test_the_key_and_lines_never_reach_the_redirect_target(
        self, status: int, ingest: _Server, trap: _Server, cert: tuple[Path, Path],
        reports: _Reports,
    ) -> None:  # fmt: skip
        """However it redirects, nothing reaches the target, no line counts as sent, and
        the redirect is reported once, naming the status and the target host only."""
        ingest.status, ingest.location = status, trap.url + "/steal?token=zz9"
        client = _client(ingest, cert)
        try:
            for i in range(10):
                client.log(f"patient 42 record {i}")
            assert not client.flush(timeout=0.2)
            assert ingest.enough.wait(WAIT), "the client stopped retrying"
            assert reports.seen.wait(WAIT)
            stats = client.stats()
        finally:
            client.close(timeout=0)

        assert [] == trap.requests
        assert 0 == stats["sent"]
        assert 0 == stats["dropped_total"]
        assert 1 == len(reports.messages)
        message = reports.messages[0]
        assert str(status) in message
        assert str(trap.server_address[0]) in message
        assert KEY not in message
        assert "steal" not in message and "zz9" not in message
        for lost in reports.exit_loss:  # the close's loss report names the redirect too
            assert KEY not in lost and "steal" not in lost and "zz9" not in lost, lost
        # Each attempt went to the configured endpoint with the key and the lines.
        assert all(KEY == headers.get("apikey") for _, _, headers, _ in ingest.requests)

    def test_the_batch_is_kept_and_delivered_once_redirects_stop(
        self, ingest: _Server, cert: tuple[Path, Path], reports: _Reports
    ) -> None:
        """A redirect keeps the lines: retried under the normal policy, they arrive
        (in order) when the endpoint answers 2xx again, and only then count as sent."""
        ingest.status, ingest.location, ingest.redirects = 302, "http://127.0.0.2:9/x", 2
        client = _client(ingest, cert)
        try:
            for i in range(10):
                client.log(f"line {i}")
            assert client.flush(timeout=WAIT)
            stats = client.stats()
        finally:
            client.close(timeout=0)

        assert 3 == len(ingest.requests)
        assert 10 == stats["sent"]
        assert ingest.requests[0][3] == ingest.requests[2][3]  # the same batch, resent
        assert reports.seen.is_set()


class TestClassify:
    @pytest.mark.parametrize("status", [300, 301, 302, 303, 304, 307, 308])
    def test_every_3xx_is_a_redirect(self, status: int) -> None:
        """Every 3xx is its own kind, which the sender keeps and retries."""
        outcome = classify(status, None, "", "https://evil.example:8443/a?apikey=k")

        assert Kind.REDIRECT is outcome.kind
        assert status == outcome.status
        assert "evil.example" in outcome.detail
        assert "apikey" not in outcome.detail and "8443" not in outcome.detail

    def test_relative_or_missing_location(self) -> None:
        """Without a host in Location the report says so rather than inventing one."""
        assert "same host" in classify(307, None, "", "/elsewhere").detail
        assert "same host" in classify(307, None, "", None).detail


class TestVerifyOff:
    @pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
    def test_verify_false_is_reported_once(self, ingest: _Server) -> None:
        """verify=False is said once through the library's logger, however many lines
        and requests follow, with the host and without the key."""
        warned: list[str] = []

        class Keep(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                if "verification is off" in record.getMessage():
                    warned.append(record.getMessage())

        own = logging.getLogger("logdna_client")
        keep = Keep()
        own.addHandler(keep)
        client = Client(key=KEY, url=ingest.url + "/logs/ingest", hostname="t", verify=False,
                        flush_interval=0.05)  # fmt: skip
        try:
            for i in range(3):
                client.log(f"line {i}")
                assert client.flush(timeout=WAIT)
        finally:
            client.close(timeout=1)
            own.removeHandler(keep)

        assert 3 == len(ingest.requests)
        assert 1 == len(warned)
        assert "127.0.0.1" in warned[0] and KEY not in warned[0]
