"""Settings requests reads from the environment: a proxy URL, or a CA bundle, no request
can be made with (the same on every retry: a settings failure, reported once and retried
slowly, whose report never shows the proxy's password), and a proxy set for every URL, a
loopback one too."""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from logdna_client import Client, Config
from logdna_client._transport import HTTPTransport, Kind
from tests._claims_servers import Request, answer, scripted_server
from tests.test_claims_hostile import WAIT

KEY = "k" * 20 + "secret" + "k" * 6
PASSWORD = "pw5ecretPr0xy"
PROXY_VARIABLES = ("no_proxy", "NO_PROXY", "http_proxy", "HTTP_PROXY", "https_proxy",
                   "HTTPS_PROXY", "all_proxy", "ALL_PROXY")  # fmt: skip

#: An ingest URL the environment's proxy is used for (a loopback one never goes through
#: a proxy); no request to it gets past the proxy's URL.
REMOTE = "http://ingest.invalid/logs/ingest"
#: Proxy URLs requests refuses before any connection is made.
UNUSABLE = {
    "port-out-of-range": f"http://user:{PASSWORD}@127.0.0.1:99999",
    "port-not-a-number": f"http://user:{PASSWORD}@127.0.0.1:nope",
    "unknown-scheme": f"ftp://user:{PASSWORD}@127.0.0.1:21",
    "no-host": "http://:3128",
    # requests raised a TypeError of its own for it (prepend_scheme_if_needed), taken for
    # a bug below us and retried on the quick backoff.
    "user-info-and-no-host": f"http://user:{PASSWORD}@",
}


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> str:
    """The environment's proxy for every request of the test: ``request.param``."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    url: str = request.param
    monkeypatch.setenv("ALL_PROXY", url)
    monkeypatch.setenv("HTTP_PROXY", url)
    return url


class Reports(logging.Handler):
    """The library's reports, as (level, message); ``said`` once one was made."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.reports: list[tuple[int, str]] = []
        self.said = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.reports.append((record.levelno, record.getMessage()))
        self.said.set()


@pytest.fixture
def reports() -> Iterator[Reports]:
    handler = Reports()
    own = logging.getLogger("logdna_client")
    own.addHandler(handler)
    old = own.level
    own.setLevel(logging.DEBUG)
    yield handler
    own.removeHandler(handler)
    own.setLevel(old)


class TestAProxyURLNoRequestCanUse:
    @pytest.mark.parametrize("proxy", list(UNUSABLE.values()), ids=list(UNUSABLE), indirect=True)
    def test_is_a_settings_failure_that_shows_no_password(self, proxy: str) -> None:
        """The transport answers a settings failure (it was a connection failure, retried
        on the quick backoff), and its detail carries neither the proxy's password (it
        quoted the URL whole: "Failed to parse: http://user:PASSWORD@...") nor the key."""
        transport = HTTPTransport(Config(key=KEY, url=REMOTE, hostname="h", allow_insecure=True))
        try:
            outcome = transport.send(b'{"lines":[]}', gzipped=False, timeout=5)
        finally:
            transport.close()
        assert Kind.SETTINGS is outcome.kind, outcome
        assert PASSWORD not in outcome.detail and KEY not in outcome.detail, outcome

    @pytest.mark.parametrize("proxy", [UNUSABLE["port-out-of-range"]], indirect=True)
    def test_reported_once_and_retried_slowly(self, proxy: str, reports: Reports) -> None:
        """A Client behind such a proxy reports it once at ERROR, without the password,
        and waits the slow pace before the next try: one request in the flush's two
        seconds (the quick backoff's first retry comes within half a second)."""
        client = Client(key=KEY, url=REMOTE, hostname="t", flush_interval=0.05, allow_insecure=True)
        client.log("behind an unusable proxy")
        assert reports.said.wait(WAIT)
        assert not client.flush(2.0)
        s, reported = client.stats(), list(reports.reports)
        client.close(0)
        assert (1, 1) == (s["requests"], s["queued"]), s
        assert "settings" == s["last_error"]["kind"], s  # type: ignore[index]
        assert 1 == len(reported), reported
        level, said = reported[0]
        assert logging.ERROR == level and "no request can be made" in said, said
        assert PASSWORD not in said and KEY not in said


def _wants_credentials(request: Request, sock: socket.socket, stop: threading.Event) -> bytes:
    """A proxy's answer to CONNECT when it wants credentials (or refused those given)."""
    return b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n"


class TestAProxyThatWantsCredentials:
    @pytest.mark.parametrize("given", ["", f"user:{PASSWORD}@"], ids=["none", "refused"])
    def test_is_a_settings_failure(self, monkeypatch: pytest.MonkeyPatch, given: str) -> None:
        """An HTTPS proxy answering CONNECT with 407 (credentials missing from its url, or
        refused) is a settings failure saying so: it was a passing connection failure,
        retried on the quick backoff. Its report shows no password."""
        for name in PROXY_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        with scripted_server(_wants_credentials) as proxy:
            proxy_url = proxy.url.replace("/logs/ingest", "").replace("//", f"//{given}")
            monkeypatch.setenv("HTTPS_PROXY", proxy_url)
            transport = HTTPTransport(
                Config(key=KEY, url="https://ingest.invalid/logs/ingest", hostname="h")
            )
            try:
                outcome = transport.send(b'{"lines":[]}', gzipped=False, timeout=10)
            finally:
                transport.close()
        assert Kind.SETTINGS is outcome.kind, outcome
        assert "407" in outcome.detail and "credentials" in outcome.detail, outcome
        assert PASSWORD not in outcome.detail and KEY not in outcome.detail

    def test_a_socks_proxy_too(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A SOCKS5 proxy that accepts no method the client offers without credentials
        is the same settings failure."""
        pytest.importorskip("socks", reason="PySocks is not installed")
        for name in PROXY_VARIABLES:
            monkeypatch.delenv(name, raising=False)

        proxy = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SocksWantsAPassword)
        proxy.daemon_threads = True
        thread = threading.Thread(target=proxy.serve_forever, daemon=True)
        thread.start()
        try:
            monkeypatch.setenv("ALL_PROXY", f"socks5h://127.0.0.1:{proxy.server_address[1]}")
            transport = HTTPTransport(
                Config(key=KEY, url="https://ingest.invalid/logs/ingest", hostname="h")
            )
            try:
                outcome = transport.send(b'{"lines":[]}', gzipped=False, timeout=10)
            finally:
                transport.close()
        finally:
            proxy.shutdown()
            proxy.server_close()
            thread.join(5)
        assert Kind.SETTINGS is outcome.kind, outcome
        assert "credentials" in outcome.detail, outcome


class _SocksWantsAPassword(socketserver.BaseRequestHandler):
    """A SOCKS5 proxy that takes only the username/password method."""

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(30)
        try:
            sock.recv(16)  # the client's greeting: it offers "no authentication" only
            sock.sendall(b"\x05\x02")  # username/password, which the client did not offer
            sock.recv(16)
        except OSError:
            return


class TestACABundleThatIsNotThere:
    @pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
    def test_is_a_settings_failure_that_says_so(
        self, monkeypatch: pytest.MonkeyPatch, variable: str
    ) -> None:
        """A CA bundle the environment names and that is not there fails every https://
        request before it connects: a settings failure naming the file (it was "unexpected
        OSError", retried on the quick backoff, the cause nowhere said)."""
        for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv(variable, "/nonexistent/ca-bundle.pem")
        transport = HTTPTransport(
            Config(key=KEY, url="https://ingest.invalid/logs/ingest", hostname="h")
        )
        try:
            outcome = transport.send(b'{"lines":[]}', gzipped=False, timeout=5)
        finally:
            transport.close()
        assert Kind.SETTINGS is outcome.kind, outcome
        assert "/nonexistent/ca-bundle.pem" in outcome.detail, outcome


class _Recorder(socketserver.ThreadingTCPServer):
    """A proxy that answers every request 200 and keeps what it was sent."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RecorderHandler)
        self.received: list[bytes] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _RecorderHandler(socketserver.BaseRequestHandler):
    server: _Recorder

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(30)
        try:
            while data := sock.recv(65536):
                self.server.received.append(data)
                sock.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{"status":"ok"}')
        except OSError:
            return


class TestALoopbackURLIsNeverProxied:
    @pytest.mark.parametrize("variable", ["HTTP_PROXY", "ALL_PROXY"])
    def test_the_key_and_lines_go_straight_to_it(
        self, monkeypatch: pytest.MonkeyPatch, variable: str
    ) -> None:
        """An http:// url to a loopback host (the devserver, a local agent: allowed without
        allow_insecure since the key never leaves the machine) is sent straight to it,
        never through the environment's proxy: through one, the key crossed the network
        in clear (a remote proxy, or a local one that forwards), and the lines reached
        whatever listens on the proxy's own loopback, not ours."""
        for name in PROXY_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        recorder = _Recorder()
        thread = threading.Thread(target=recorder.serve_forever, daemon=True)
        thread.start()
        try:
            monkeypatch.setenv(variable, recorder.url)
            with scripted_server(lambda r, s, e: answer(200)) as server:
                client = Client(key=KEY, url=server.url, hostname="t", flush_interval=0.05)
                client.log("straight to the loopback server")
                assert client.flush(WAIT)
                client.close(WAIT)
                reached = [line["line"] for r in server.requests for line in r.lines]
        finally:
            recorder.shutdown()
            recorder.server_close()
            thread.join(5)
        assert [] == recorder.received
        assert ["straight to the loopback server"] == reached
