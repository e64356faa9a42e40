"""The transport against endpoints that are not what the url says: a plain HTTP port
behind an https:// url, a 207 that does not say which lines were stored, a SOCKS proxy.
Each is a real server on loopback."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from logdna_client import Client, Config
from logdna_client._devserver import DevServer
from logdna_client._retry import Backoff
from logdna_client._transport import HTTPTransport, Kind
from tests.test_claims_hostile import WAIT
from tests.test_hostile_endpoints import assert_adds_up, own_reports

KEY = "k" * 20 + "secret" + "k" * 6
BODY = b'{"lines":[{"line":"x"}]}'


class _RawServer(socketserver.ThreadingTCPServer):
    """Answers ``reply`` to the first bytes of each connection (a TLS ClientHello, say),
    then closes it; counts the connections."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, reply: bytes) -> None:
        super().__init__(("127.0.0.1", 0), _RawHandler)
        self.reply = reply
        self.connections = 0
        self.arrived = threading.Condition()

    def wait_for_connections(self, n: int, timeout: float) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: self.connections >= n, timeout)


class _RawHandler(socketserver.BaseRequestHandler):
    server: _RawServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(30)
        with self.server.arrived:
            self.server.connections += 1
            self.server.arrived.notify_all()
        try:
            if sock.recv(65536):
                sock.sendall(self.server.reply)
        except OSError:
            pass


@contextmanager
def raw_server(reply: bytes) -> Iterator[_RawServer]:
    server = _RawServer(reply)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


PLAIN_400 = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class TestHTTPSToAPlainHTTPPort:
    def test_the_devserver_behind_https_is_a_protocol_error(self, server: DevServer) -> None:
        """The DevServer (plain HTTP) behind an https:// url: what it answered the TLS
        handshake with is told (plain HTTP, its status), never the key; a misconfiguration
        (Kind.PROTOCOL), not a TLS error retried on the quick backoff."""
        url = server.url.replace("http://", "https://")
        transport = HTTPTransport(Config(key=KEY, url=url, hostname="h"))
        try:
            outcome = transport.send(BODY, gzipped=False, timeout=10)
        finally:
            transport.close()
        assert (Kind.PROTOCOL, None) == (outcome.kind, outcome.status), outcome
        assert "does not speak TLS" in outcome.detail and "plain HTTP (HTTP 4" in outcome.detail
        assert "http://" in outcome.detail and "secret" not in outcome.detail

    def test_reported_once_and_retried_slowly(self) -> None:
        """An https:// url to a port that answers the TLS handshake in plain HTTP is
        reported once at ERROR (saying so, and suggesting http://), its lines kept and
        retried at the slow pace of Kind.PROTOCOL: with a backoff whose jitter draws 0,
        it was a new connection and handshake after another, each a "TLS error"."""
        with own_reports() as reports, raw_server(PLAIN_400) as plain:
            client = Client(
                key=KEY, url=f"https://127.0.0.1:{plain.server_address[1]}/logs/ingest",
                hostname="t", flush_interval=0.05, backoff=Backoff(cap=60, rand=lambda: 0.0),
            )  # fmt: skip
            client.log("kept")
            assert plain.wait_for_connections(1, WAIT)
            assert not client.flush(1.0)
            connections = plain.connections
            s = client.stats()
            client.close(0)
        assert 1 == connections
        assert (1, 0, 1) == (s["queued"], s["dropped_total"], s["retries"])
        assert "protocol" == (s["last_error"] or {}).get("kind"), s
        (report,) = [r for r in reports if "does not speak TLS" in r]
        assert "answered the TLS handshake in plain HTTP (HTTP 400)" in report, report
        assert "http://" in report and "check the url" in report, report
        assert not [r for r in reports if "secret" in r], reports
        assert_adds_up(client, 1)

    def test_another_protocol_is_told_as_such(self) -> None:
        """A port that answers the handshake in something neither TLS nor HTTP is a
        misconfiguration too; the report does not claim it was plain HTTP."""
        with raw_server(b"SSH-2.0-OpenSSH_9.6\r\n") as other:
            url = f"https://127.0.0.1:{other.server_address[1]}/logs/ingest"
            transport = HTTPTransport(Config(key=KEY, url=url, hostname="h"))
            try:
                outcome = transport.send(BODY, gzipped=False, timeout=10)
            finally:
                transport.close()
        assert Kind.PROTOCOL is outcome.kind, outcome
        assert "in another protocol" in outcome.detail, outcome.detail
