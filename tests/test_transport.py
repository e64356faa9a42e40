"""Tests for _transport's use of requests: the environment's settings still apply."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from typing import Any

import pytest

from logdna_client import Config
from logdna_client._devserver import DevServer
from logdna_client._transport import HTTPTransport, Kind
from tests._children import REPO

BODY = b'{"lines":[{"line":"x"}]}'


def test_proxy_from_the_environment_applies_and_follows_changes(
    server: DevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The transport keeps what requests reads from the environment (proxies,
    no_proxy, CA bundle) until os.environ changes: a proxy set, changed or unset
    between requests still applies to the very next one, as with session.post.

    The url names a host only the proxy (the devserver, which answers absolute-form
    requests as an origin would) reaches: a loopback url never goes through a proxy."""
    for name in ("no_proxy", "NO_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    url = "http://ingest.invalid/logs/ingest"
    transport = HTTPTransport(Config(key="k" * 32, url=url, hostname="h", allow_insecure=True))
    try:
        failed = transport.send(BODY, gzipped=False, timeout=5.0)  # the name resolves nowhere
        assert (Kind.RETRY, None) == (failed.kind, failed.status)
        monkeypatch.setenv("http_proxy", server.base_url)
        assert Kind.OK is transport.send(BODY, gzipped=False, timeout=5.0).kind
        monkeypatch.setenv("no_proxy", "ingest.invalid")
        assert Kind.RETRY is transport.send(BODY, gzipped=False, timeout=5.0).kind
        monkeypatch.delenv("no_proxy")
        assert Kind.OK is transport.send(BODY, gzipped=False, timeout=5.0).kind
        monkeypatch.delenv("http_proxy")
        assert Kind.RETRY is transport.send(BODY, gzipped=False, timeout=5.0).kind
        assert 2 == server.request_count
    finally:
        transport.close()


def test_ca_bundle_from_the_environment_is_what_requests_would_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    transport = HTTPTransport(Config(key="k" * 32, url="https://logs.example/ingest"))
    url = "https://logs.example/ingest?now=1"
    try:
        for bundle in ("/tmp/one.pem", "/tmp/two.pem"):
            monkeypatch.setenv("REQUESTS_CA_BUNDLE", bundle)
            expected = transport._session.merge_environment_settings(url, {}, None, True, None)
            assert dict(expected) == transport._settings(url)
            assert bundle == transport._settings(url)["verify"]
        monkeypatch.delenv("REQUESTS_CA_BUNDLE")
        monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
        assert True is transport._settings(url)["verify"]
    finally:
        transport.close()


def test_environment_change_while_settings_are_read_is_not_missed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A variable another thread sets while the transport asks requests for the
    environment's settings applies to the next request: what is remembered as
    seen is the environment those settings were read from, not a later one."""
    for name in ("no_proxy", "NO_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    transport = HTTPTransport(Config(key="k" * 32, url="https://logs.example/ingest"))
    url = "https://logs.example/ingest?now=1"
    session = transport._session
    merge = session.merge_environment_settings
    calls = []

    def merge_then_another_thread_sets_a_proxy(*args: Any) -> Any:
        settings = merge(*args)
        if not calls:  # the other thread's write lands just after requests read os.environ
            monkeypatch.setenv("https_proxy", "http://127.0.0.1:1")
        calls.append(args)
        return settings

    monkeypatch.setattr(
        session, "merge_environment_settings", merge_then_another_thread_sets_a_proxy
    )
    try:
        assert {} == transport._settings(url)["proxies"]
        assert "http://127.0.0.1:1" == transport._settings(url)["proxies"].get("https")
    finally:
        transport.close()


@pytest.mark.parametrize(
    ("body", "at"),
    [('{"status": [200, 400, 200]}', (1,)), ('{"status": ["ok", 413, "200", "bad"]}', (1, 3)),
     ('{"status": []}', ()), ("not json", ()), ('{"status": "partial"}', ())],
)  # fmt: skip
def test_a_207_says_which_lines_were_refused(body: str, at: tuple[int, ...]) -> None:
    """A 207's per-line status array gives the refused lines' places in the request
    (the sender keeps its own summary line out of the count by them)."""
    from logdna_client._transport import classify

    outcome = classify(207, None, body)
    assert (Kind.PARTIAL, at, len(at)) == (outcome.kind, outcome.rejected_at, outcome.rejected)


@pytest.mark.parametrize(
    ("body", "at", "answered"),
    [('{"status": [200, 400, 200, 2', (1,), 3),
     ('{"status": [200, {"error": "x, y', (), 1),
     ('{"status": [{"s": 400, "e": "a, b"}, {"s": 400}, {"s"', (0, 1), 2),
     ('{"status": [20', (), 0),
     ('{"stat', (), 0)],
)  # fmt: skip
def test_a_207_cut_short_speaks_for_the_statuses_read_whole(
    body: str, at: tuple[int, ...], answered: int | None
) -> None:
    """A 207 body cut at the cap counts the statuses it holds whole (up to the last
    comma that ends one, not one inside an element) and speaks for those places only;
    one that begins no status array speaks for none (it read as refusing none, every
    line counted as sent)."""
    from logdna_client._transport import classify

    outcome = classify(207, None, body, whole=False)
    assert (Kind.PARTIAL, at, answered) == (outcome.kind, outcome.rejected_at, outcome.answered)


def _watchdogs() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "logdna_client-watchdog"]


def test_one_watchdog_thread_per_transport_ended_by_close() -> None:
    """Requests share one watchdog thread (none started per request: Python 3.12 could
    not start one at exit), and closing the transport ends it: a program that makes
    and closes clients keeps no thread per client."""
    before = set(_watchdogs())
    with DevServer() as server:
        transport = HTTPTransport(Config(url=server.url, key="k", hostname="h"))
        for _ in range(3):
            assert transport.send(b'{"lines":[]}', gzipped=False, timeout=5).kind is Kind.OK
        mine = [t for t in _watchdogs() if t not in before]
        assert 1 == len(mine)
        transport.close()
        mine[0].join(10)
        assert not mine[0].is_alive()


#: A child that starts a transport's watchdog from its main thread, as ``spool replay``
#: and a sender run on the main thread at exit (``Sender.run_here``) do, makes a request
#: through it, then blocks SIGTERM on its main thread (as an application may around a
#: critical section) and says whether a SIGTERM sent meanwhile is still waiting for it.
_MAIN_THREAD_TRANSPORT = """
import signal, sys
from logdna_client import Config
from logdna_client._transport import HTTPTransport

transport = HTTPTransport(Config(url=sys.argv[1], hostname="t"))
transport.start()
print(transport.send(b'{"lines":[]}', gzipped=False, timeout=10).kind.value, flush=True)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
print("blocked", flush=True)
sys.stdin.readline()  # the test sends SIGTERM, then a line
print("pending" if signal.SIGTERM in signal.sigpending() else "taken", flush=True)
"""


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="no thread signal masks")
def test_a_watchdog_started_from_the_main_thread_leaves_signals_to_it(server: DevServer) -> None:
    """The watchdog thread blocks the asynchronous signals however it was started: from
    the main thread (``spool replay``, a sender run there at exit) it inherited the main
    thread's mask, took a SIGTERM the application's main thread was not taking, and
    the process ended by it there and then (a Python handler's run was delayed while
    the main thread waited in a call). The signal now waits for the main thread."""
    child = subprocess.Popen(
        [sys.executable, "-c", _MAIN_THREAD_TRANSPORT, server.url],
        env=dict(os.environ, PYTHONPATH=REPO), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None and child.stdin is not None
        assert "ok" == child.stdout.readline().strip()
        assert "blocked" == child.stdout.readline().strip()
        child.send_signal(signal.SIGTERM)
        child.stdin.write("sent\n")
        child.stdin.flush()
        said = child.stdout.readline().strip()
        code = child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert ("pending", 0) == (said, code), child.stderr.read() if child.stderr else ""


@pytest.mark.parametrize(
    "reply",
    [b"HTTP/1.1 2", b"\x00\x00\x06\x04", b"SSH-2.0-OpenSSH_9.6"],
    ids=["status", "h2", "ssh"],
)
def test_a_connection_cut_inside_the_status_line_is_a_passing_failure(reply: bytes) -> None:
    """A connection closed inside the status line (no whole line, nor enough of an HTTP/2
    frame to tell) may have been cut on its way: a transient failure, retried on the
    quick backoff, not taken for a server that does not speak HTTP/1.1."""
    from tests._claims_servers import scripted_server

    def cut(request: object, sock: socket.socket, stop: threading.Event) -> None:
        sock.sendall(reply)

    with scripted_server(cut) as server:
        transport = HTTPTransport(Config(url=server.url, hostname="h"))
        try:
            outcome = transport.send(BODY, gzipped=False, timeout=10)
        finally:
            transport.close()
    assert (Kind.RETRY, None) == (outcome.kind, outcome.status), outcome


def _as_urllib3_1_26_raises(line: str) -> Exception:
    """The exception requests raises on urllib3 1.26 when a server's first line is not a
    status line: http.client's BadStatusLine, raised ``from None`` over the TypeError of
    the Python 2 call urllib3 tries first (``getresponse(buffering=True)``), inside
    urllib3's ProtocolError and requests' ConnectionError."""
    import http.client

    import requests
    import urllib3.exceptions

    try:
        try:
            try:
                raise TypeError("getresponse() got an unexpected keyword argument 'buffering'")
            except TypeError:
                raise http.client.BadStatusLine(line) from None
        except http.client.BadStatusLine as e:
            raise urllib3.exceptions.ProtocolError("Connection aborted.", e)  # noqa: B904
    except urllib3.exceptions.ProtocolError as err:
        try:
            raise requests.exceptions.ConnectionError(err)
        except requests.exceptions.ConnectionError as raised:
            return raised
    raise AssertionError("unreachable")


def test_the_reason_is_the_one_a_traceback_shows() -> None:
    """What a server that does not speak HTTP/1.1 answered is found on urllib3 1.26 too:
    a context raised ``from None`` is not the reason (its TypeError was, and every such
    server was a passing failure, retried on the quick backoff without end)."""
    from logdna_client._transport import _describe, _not_http

    exc = _as_urllib3_1_26_raises("\x00\x00\x06\x04\x00\x00\x00\x00\x00")
    assert "answered in HTTP/2" == _not_http(exc, str)
    assert _describe(exc, str).startswith("BadStatusLine: ")


def test_a_compressed_answer_decodes_to_at_most_the_room_given() -> None:
    """Each call decodes no more than the room it is given, however much its input
    would decode to (1 GiB of zeros, in about 1 MB, here)."""
    import zlib

    from logdna_client._transport import _decoder_for

    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    bomb = b"".join(packer.compress(zeros) for _ in range(1024)) + packer.flush()
    decoder = _decoder_for("gzip")
    assert decoder is not None
    assert bytes(1000) == decoder.decode(bomb, 1000)


@pytest.mark.parametrize(
    ("coding", "readable"),
    [("gzip", True), ("X-GZIP", True), ("deflate", True), ("identity, gzip", True),
     ("", True), ("br", False), ("zstd", False), ("gzip, gzip", False), ("compress", False)],
)  # fmt: skip
def test_the_codings_an_answer_is_read_in(coding: str, readable: bool) -> None:
    from logdna_client._transport import _decoder_for

    assert readable is (_decoder_for(coding) is not None)


def test_bytes_past_the_last_gzip_member_are_passed_over() -> None:
    """As urllib3 reads them: two gzip members are one body, and what follows the last
    one that is not another is left out (a corrupt first member is an error)."""
    import gzip
    import zlib

    from logdna_client._transport import _decoder_for

    decoder = _decoder_for("gzip")
    assert decoder is not None
    sent = gzip.compress(b"one ") + gzip.compress(b"two") + b"\x00junk"
    assert b"one two" == decoder.decode(sent, 100)
    broken = _decoder_for("gzip")
    assert broken is not None
    with pytest.raises(zlib.error):
        broken.decode(b"\x1f\x8b\x08\x00junk-junk-junk", 100)


class TestNewConnectionsAsUrllib3MakesThem:
    """The transport makes its connections itself (so a close can cut a connect that
    gets no answer); each is made as urllib3's ``create_connection`` makes it."""

    @staticmethod
    def _dual_stack(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
        """``name`` resolves to ::1 first, then 127.0.0.1 (where the server listens)."""
        real = socket.getaddrinfo

        def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            if host != name:
                return real(host, port, *args, **kwargs)
            return [
                (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", port, 0, 0)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
            ]

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        for proxy in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
            monkeypatch.delenv(proxy, raising=False)

    def _send(self, server: DevServer, name: str) -> Kind:
        url = f"http://{name}:{server.port}/logs/ingest"
        transport = HTTPTransport(Config(key="k" * 32, url=url, hostname="h", allow_insecure=True))
        try:
            return transport.send(BODY, gzipped=False, timeout=30.0).kind
        finally:
            transport.close()

    def test_each_address_is_tried_in_turn(
        self, server: DevServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A dual-stack name whose IPv6 address refuses is reached on its IPv4 one."""
        self._dual_stack(monkeypatch, "dual.test")

        assert Kind.OK is self._send(server, "dual.test")
        assert 1 == server.request_count

    def test_an_address_whose_socket_cannot_be_made_is_passed_over(
        self, server: DevServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A socket of one family that cannot be made (IPv6 not supported here) is
        urllib3's reason to try the next address; it ended the connect, every batch
        retried without end while the IPv4 address answered."""
        self._dual_stack(monkeypatch, "dual.test")
        real_socket = socket.socket

        class NoIPv6(real_socket):
            def __init__(self, family: int = -1, *args: Any, **kwargs: Any) -> None:
                if family == socket.AF_INET6:
                    raise OSError(97, "Address family not supported by protocol")
                super().__init__(family, *args, **kwargs)

        monkeypatch.setattr(socket, "socket", NoIPv6)

        assert Kind.OK is self._send(server, "dual.test")
        assert 1 == server.request_count

    @pytest.mark.parametrize(
        "host",
        [
            "a..example",  # an empty label: LocationParseError
            "x" * 64 + ".example",  # a label over 63 characters: the same
            "ingest.invalid",  # no such name: NameResolutionError (urllib3 2)
            "127.0.0.1",  # nothing listens: NewConnectionError
        ],
    )
    def test_a_failure_raises_what_urllib3_raises(self, host: str) -> None:
        """A connect that fails raises the error (type and message) urllib3's own
        ``_new_conn`` raises, which requests and the transport's reports sort."""
        from logdna_client import _transport

        with socket.socket() as closed:  # a port nothing listens on
            closed.bind(("127.0.0.1", 0))
            port = closed.getsockname()[1]
        conn = _transport._WatchedHTTPConnection(host, port, timeout=5.0)
        raised = []
        for exchange in (None, _transport._Exchange(float("inf"))):
            _transport._current.exchange = exchange  # None: urllib3's own path
            try:
                with pytest.raises(Exception) as failed:
                    conn._new_conn()
            finally:
                _transport._current.exchange = None
            raised.append((type(failed.value), str(failed.value)))
        urllib3s, ours = raised
        assert urllib3s == ours

    def test_socket_options_are_urllib3s(
        self, server: DevServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A connection the transport made carries urllib3's socket options (its
        default: TCP_NODELAY, so a small request is not held back by Nagle's wait)."""
        from logdna_client import _transport

        nodelay = []
        real_hold = _transport._Exchange.hold

        def hold(exchange: _transport._Exchange, sock: socket.socket) -> None:
            nodelay.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            real_hold(exchange, sock)

        monkeypatch.setattr(_transport._Exchange, "hold", hold)
        url = f"{server.base_url}/logs/ingest"
        transport = HTTPTransport(Config(key="k" * 32, url=url, hostname="h"))
        try:
            assert Kind.OK is transport.send(BODY, gzipped=False, timeout=30.0).kind
        finally:
            transport.close()
        assert [1] == nodelay
