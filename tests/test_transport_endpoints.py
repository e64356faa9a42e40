"""The transport against endpoints that are not what the url says: a plain HTTP port
behind an https:// url, a 207 that does not say which lines were stored, a SOCKS proxy.
Each is a real server on loopback."""

from __future__ import annotations

import gzip
import logging
import socket
import socketserver
import ssl
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest
import urllib3

from logdna_client import Client, Config, _transport
from logdna_client._devserver import DevServer
from logdna_client._otlp import decode_export_request
from logdna_client._retry import Backoff
from logdna_client._transport import HTTPTransport, Kind, Outcome
from tests._bad_servers import bad_server
from tests._children import texts
from tests._claims_servers import answer, scripted_server
from tests.helpers import make_cert
from tests.test_claims_hostile import WAIT
from tests.test_hostile_endpoints import assert_adds_up, own_reports

KEY = "k" * 20 + "secret" + "k" * 6
BODY = b'{"lines":[{"line":"x"}]}'


_Served = TypeVar("_Served", bound=socketserver.BaseServer)


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
def serving(server: _Served) -> Iterator[_Served]:
    """``server`` serving on a thread of its own until the block ends."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class _Told(logging.Handler):
    """Sets ``once`` at the first record."""

    def __init__(self) -> None:
        super().__init__()
        self.once = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.once.set()


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
        told = _Told()
        own = logging.getLogger("logdna_client")
        own.addHandler(told)
        try:
            with own_reports() as reports, serving(_RawServer(PLAIN_400)) as plain:
                client = Client(
                    key=KEY, url=f"https://127.0.0.1:{plain.server_address[1]}/logs/ingest",
                    hostname="t", flush_interval=0.05,
                    backoff=Backoff(cap=60, rand=lambda: 0.0),
                )  # fmt: skip
                client.log("kept")
                # The first failure is counted, then reported; a quick retry would follow.
                assert told.once.wait(WAIT)
                assert not client.flush(1.0)
                connections = plain.connections
                s = client.stats()
                client.close(0)
        finally:
            own.removeHandler(told)
        assert 1 == connections
        assert (1, 0, 1) == (s["queued"], s["dropped_total"], s["retries"])
        assert "protocol" == (s["last_error"] or {}).get("kind"), s
        (report,) = [r for r in reports if "does not speak TLS" in r]
        assert "answered the TLS handshake in plain HTTP (HTTP 400)" in report, report
        assert "http://" in report and "check the url" in report, report
        assert not [r for r in reports if "secret" in r], reports
        assert_adds_up(client, 1)

    @pytest.mark.skipif(
        urllib3.__version__.startswith("1."),
        reason="urllib3 1.26 makes no TLS connection to a proxy named by its IP address",
    )
    def test_a_plain_proxy_behind_an_https_proxy_url_is_blamed(
        self, server: DevServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An https:// proxy url to a plain HTTP proxy port: the proxy is named, and its
        url (the environment's) is what should say http://; the service's url is right
        as it is (changed to http:// as told, the key would cross in the clear)."""
        for name in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
            monkeypatch.delenv(name, raising=False)
        for name in ("https_proxy", "HTTPS_PROXY"):
            monkeypatch.setenv(name, f"https://127.0.0.1:{server.port}")
        transport = HTTPTransport(
            Config(key=KEY, url="https://logs.example/logs/ingest", hostname="h")
        )
        try:
            outcome = transport.send(BODY, gzipped=False, timeout=10)
        finally:
            transport.close()
        assert Kind.PROTOCOL is outcome.kind, outcome
        assert outcome.detail.startswith("the proxy for logs.example does not speak TLS"), outcome
        assert "the proxy's url (HTTPS_PROXY, ALL_PROXY) says https://" in outcome.detail

    @pytest.mark.parametrize(
        ("waiting", "told"),
        [(b"1.1 400 Bad Request\r\n\r\n", True), (b"\x17\x03\x03\x00\x10garbage", False)],
        ids=["plain-http", "a-tls-record"],
    )  # fmt: skip
    def test_openssl_3_2s_record_layer_failure_counts_with_plain_http_seen(
        self, waiting: bytes, told: bool
    ) -> None:
        """OpenSSL 3.2 and later say "record layer failure" where 3.0 said "wrong version
        number", and of any record they cannot read: a misconfiguration when what the
        server sent after the record header (what OpenSSL read) is a plain HTTP status
        line, else a failure that may pass."""
        from logdna_client._transport import _misspoken

        error = ssl.SSLError(1, "[SSL] record layer failure (_ssl.c:1000)")
        ours, theirs = socket.socketpair()
        with ours, theirs:
            theirs.sendall(waiting)
            detail = _misspoken(error, "logs.example", str, ours)
            assert waiting == ours.recv(100)  # peeked at, not taken
        if told:
            assert detail is not None and "plain HTTP (HTTP 400)" in detail, detail
        else:
            assert detail is None, detail

    def test_another_protocol_is_told_as_such(self) -> None:
        """A port that answers the handshake in something neither TLS nor HTTP is a
        misconfiguration too; the report does not claim it was plain HTTP."""
        with serving(_RawServer(b"SSH-2.0-OpenSSH_9.6\r\n")) as other:
            url = f"https://127.0.0.1:{other.server_address[1]}/logs/ingest"
            transport = HTTPTransport(Config(key=KEY, url=url, hostname="h"))
            try:
                outcome = transport.send(BODY, gzipped=False, timeout=10)
            finally:
                transport.close()
        assert Kind.PROTOCOL is outcome.kind, outcome
        assert "in another protocol" in outcome.detail, outcome.detail


#: 207 answers to a batch of three lines that do not say which were stored, and the
#: (sent, rejected) they count: no status array to read, or one that ends early.
UNCONFIRMING_207S = {
    "not-json": ("not json", (0, 3)),
    "html": ("<html><body>Multi-Status</body></html>", (0, 3)),
    "status-not-a-list": ('{"status": "partial"}', (0, 3)),
    "no-status": ('{"error": "some lines were refused"}', (0, 3)),
    "a-list-not-an-object": ("[200, 200, 200]", (0, 3)),
    "statuses-for-one-line": ('{"status": [200]}', (1, 2)),
    "statuses-for-every-line": ('{"status": [200, 400, 200]}', (2, 1)),
}


class TestA207ThatConfirmsLess:
    @pytest.mark.parametrize(("body", "counted"), UNCONFIRMING_207S.values(),
                             ids=UNCONFIRMING_207S.keys())  # fmt: skip
    def test_lines_it_does_not_confirm_are_rejected_not_sent(
        self, server: DevServer, body: str, counted: tuple[int, int]
    ) -> None:
        """A whole 207 speaks for the places its status array holds and no further: the
        lines past them, and all of them when there is no array (not JSON, no status
        list), are counted as rejected, as for a 207 cut short; never resent, which
        would store the others twice. Each such 207 counted every line as sent; then
        counted as rejected, they left ``last_error`` unset."""
        server.fail_next(1, 207, body=body)
        client = Client(url=server.url, hostname="p", flush_interval=30)
        try:
            for i in range(3):
                client.log(f"p {i}")
            client.flush(10)
            s = client.stats()
            client.log("next")
            assert client.flush(10)
        finally:
            client.close(2)
        assert counted == (s["sent"], s["dropped"]["rejected"]), s
        assert 0 == s["queued"]
        assert "partial" == (s["last_error"] or {}).get("kind"), s
        # Only the 207 stored nothing: a batch sent again would be stored.
        summary = f"logdna_client: {counted[1]} lines dropped ({counted[1]} rejected)"
        assert [summary, "next"] == texts(server)
        assert_adds_up(client, 4)


#: Answers of an OTLP endpoint to a batch of five records that do not say which or how
#: many were stored, and the (sent, rejected) they count.
UNCONFIRMING_OTLP = {
    "207-not-json": (207, b"not json", (0, 5)),
    "207-statuses-for-two": (207, b'{"status": [200, 200]}', (2, 3)),
    "partial-success-no-object": (200, b'{"partialSuccess": "yes"}', (0, 5)),
    "partial-success-a-list": (200, b'{"partialSuccess": [2]}', (0, 5)),
    "partial-success-null": (200, b'{"partialSuccess": null}', (5, 0)),
    "partial-success-empty": (200, b'{"partialSuccess": {}}', (5, 0)),
}


class TestOTLPAnswersThatConfirmLess:
    @pytest.mark.parametrize(("status", "body", "counted"), UNCONFIRMING_OTLP.values(),
                             ids=UNCONFIRMING_OTLP.keys())  # fmt: skip
    def test_records_it_does_not_confirm_are_rejected_not_sent(
        self, status: int, body: bytes, counted: tuple[int, int]
    ) -> None:
        """OTLP answers follow the one rule: a 207 the same as for the ingest API, and a
        200 whose partialSuccess is there but no object (a word, a list) confirms none
        of the batch, as one whose count is no count does; null or an empty object is a
        full success. The batch is never sent again either way."""
        answers = iter([answer(status, body)])
        with scripted_server(lambda r, s, e: next(answers, answer(200, b"{}"))) as server:
            client = Client(url=server.url, protocol="otlp", hostname="t", flush_interval=60)
            for i in range(5):
                client.log(f"record {i}")
            client.flush(timeout=10)
            s = client.stats()
            client.close(5)
            bodies = [gzip.decompress(r.body) for r in server.requests]
        assert counted == (s["sent"], s["dropped"]["rejected"]), s
        assert 0 == s["queued"]
        sent = [line["line"] for body in bodies for line in decode_export_request(body)]
        assert [f"record {i}" for i in range(5)] == sent[:5]  # once each
        assert all(str(text).startswith("logdna_client:") for text in sent[5:]), sent


class _Socks5(socketserver.ThreadingTCPServer):
    """A SOCKS5 proxy (no authentication, CONNECT only) that relays both ways, to this
    machine whatever name it is asked for: the tests' servers listen on loopback, and a
    loopback url is never sent through a proxy (so each test names them ``BY_NAME``)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Socks5Handler)
        self.tunnels = 0
        self.stopping = threading.Event()

    @property
    def url(self) -> str:
        return f"socks5h://127.0.0.1:{self.server_address[1]}"


def by_name(url: str) -> str:
    """``url`` of a server on 127.0.0.1 with the host named ``BY_NAME`` instead."""
    return url.replace("//127.0.0.1:", f"//{BY_NAME}:", 1)


#: The name the SOCKS proxy is asked for (socks5h: the proxy resolves it, to loopback).
BY_NAME = "ingest.invalid"


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the client went away")
        data += chunk
    return data


class _Socks5Handler(socketserver.BaseRequestHandler):
    server: _Socks5

    def handle(self) -> None:
        client: socket.socket = self.request
        client.settimeout(30)
        try:
            _, methods = _read_exactly(client, 2)
            _read_exactly(client, methods)
            client.sendall(b"\x05\x00")  # no authentication
            _, _, _, kind = _read_exactly(client, 4)
            if kind == 1:
                _read_exactly(client, 4)
            else:  # a name
                _read_exactly(client, _read_exactly(client, 1)[0])
            port = int.from_bytes(_read_exactly(client, 2), "big")
            target = socket.create_connection(("127.0.0.1", port), timeout=30)
        except OSError:
            return
        self.server.tunnels += 1
        client.sendall(b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00")
        back = threading.Thread(target=_relay, args=(target, client), daemon=True)
        back.start()
        _relay(client, target)
        back.join(30)
        target.close()

    def finish(self) -> None:
        self.request.close()


def _relay(source: socket.socket, sink: socket.socket) -> None:
    """Copy ``source`` to ``sink`` until either ends; then end both."""
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    for sock in (source, sink):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


@pytest.fixture
def socks_proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Socks5]:
    """A SOCKS5 proxy on loopback that every request of the test goes through (PySocks,
    which requests needs for one, is an optional dependency: skipped without it)."""
    pytest.importorskip("socks", reason="PySocks is not installed")
    with serving(_Socks5()) as proxy:
        for name in ("no_proxy", "NO_PROXY", "http_proxy", "HTTP_PROXY", "https_proxy",
                     "HTTPS_PROXY"):  # fmt: skip
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("ALL_PROXY", proxy.url)
        monkeypatch.setenv("all_proxy", proxy.url)
        yield proxy


def _send_to_a_trickle(url_of: Callable[[str], str]) -> tuple[bool, Outcome]:
    """One request with a 1 s deadline to a server that answers a byte at a time (at
    ``url_of`` its url): whether it ended within WAIT, and its outcome."""
    outcomes: list[Outcome] = []
    with bad_server("trickle") as trickle:
        transport = HTTPTransport(
            Config(key=KEY, url=url_of(trickle.url), hostname="h", allow_insecure=True)
        )
        sender = threading.Thread(
            target=lambda: outcomes.append(transport.send(BODY, gzipped=False, timeout=1.0))
        )
        sender.start()
        sender.join(WAIT)
        cut_in_time = not sender.is_alive()
    sender.join(WAIT)  # the server stopped: the connection ends, and the request
    transport.close()
    (outcome,) = outcomes
    return cut_in_time, outcome


class TestThroughASocksProxy:
    def test_a_trickling_answer_is_cut_at_the_deadline(self, socks_proxy: _Socks5) -> None:
        """Through a SOCKS proxy a request is watched as without one: an answer trickled
        a byte at a time is cut at the request's deadline (unwatched, the SOCKS pools'
        connections held the sender for as long as the trickle went on: an hour here)."""
        cut_in_time, outcome = _send_to_a_trickle(by_name)
        assert cut_in_time, "the request was not cut at its deadline"
        assert 1 == socks_proxy.tunnels
        assert Kind.RETRY is outcome.kind and "timed out" in outcome.detail, outcome

    def test_verify_off_delivers_where_warnings_are_errors(
        self, socks_proxy: _Socks5, tmp_path: Path
    ) -> None:
        """verify=False to https:// through a SOCKS proxy warns nothing per request (the
        client said once that verification is off): where warnings are errors, each
        request raised urllib3's InsecureRequestWarning, and nothing was delivered."""
        made = make_cert(tmp_path)
        if made is None:
            pytest.skip("openssl cannot make a test certificate here")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*made)
        with (
            scripted_server(lambda r, s, e: answer(200), tls=context) as server,
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("error")
            transport = HTTPTransport(
                Config(key=KEY, url=by_name(server.url), hostname="h", verify=False)
            )
            try:
                outcomes = [transport.send(BODY, gzipped=False, timeout=10) for _ in range(2)]
            finally:
                transport.close()
            requests_read = len(server.requests)
        assert [Kind.OK, Kind.OK] == [o.kind for o in outcomes], outcomes
        assert (2, 1) == (requests_read, socks_proxy.tunnels)


class TestADeadlineThatPassesDuringTheConnect:
    def test_the_connection_is_cut_once_it_is_made(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The request's deadline passes while its TCP connect runs (a slow or black-holed
        address), when there is no socket yet to cut: the connection is cut as soon as it
        is made. It was not, and the request went on past the deadline for as long as the
        server trickled (each read within request_timeout): here for a quarter of an hour."""
        cut = threading.Event()
        real_cut = _transport._Exchange.cut

        def cut_and_say(exchange: _transport._Exchange) -> None:
            real_cut(exchange)
            cut.set()

        real_hold = _transport._Exchange.hold
        connected = []

        def slow_connect(exchange: _transport._Exchange, sock: socket.socket) -> None:
            # Called once the connect returned (_connect_held): it "returns" after the
            # deadline passed. (Not urllib3's create_connection, which the transport no
            # longer calls while a request is watched.)
            connected.append(sock)
            cut.wait(WAIT)
            real_hold(exchange, sock)

        monkeypatch.setattr(_transport._Exchange, "cut", cut_and_say)
        monkeypatch.setattr(_transport._Exchange, "hold", slow_connect)
        cut_in_time, outcome = _send_to_a_trickle(lambda url: url)
        assert 1 == len(connected)
        assert cut.is_set()
        assert cut_in_time, "the request went on past its deadline"
        assert Kind.RETRY is outcome.kind, outcome
