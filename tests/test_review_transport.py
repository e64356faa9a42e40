"""Review of the transport's own connects and deadlines, over real sockets: names
with several addresses, DNS that hangs, proxies, TLS and answers that stall."""

from __future__ import annotations

import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from logdna_client import Client, Config
from logdna_client._devserver import DevServer
from logdna_client._transport import HTTPTransport, Kind
from tests._bad_servers import Blackhole, bad_server, blackhole
from tests._claims_servers import Request, answer, scripted_server
from tests.helpers import make_cert
from tests.test_review_day3 import tunnel_to
from tests.test_transport_endpoints import _Socks5, by_name, serving

KEY = "k" * 32
BODY = b'{"lines":[{"line":"x"}]}'
LINES = 100
WAIT = 60.0  # for what a loaded machine may take to get there
# Well over the deadlines tested (1 to 8 s), well under request_timeout (30 s).
WITHIN = 15.0

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the blackhole reads /proc/net/tcp"
)


@pytest.fixture
def hole() -> Iterator[Blackhole]:
    with blackhole() as hole:
        yield hole


def resolve(monkeypatch: pytest.MonkeyPatch, names: dict[str, list[int]]) -> None:
    """Each of ``names`` resolves to 127.0.0.1 once per port given, in turn (each address
    its own port, so one can be a blackhole and the next a server)."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in names:
            return real(host, port, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", p)) for p in names[host]]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    for proxy in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                  "ALL_PROXY", "no_proxy", "NO_PROXY"):  # fmt: skip
        monkeypatch.delenv(proxy, raising=False)


def send(url: str, timeout: float, verify: bool | str = True) -> tuple[Kind, float, str]:
    """One request to ``url`` by a transport of its own: its outcome, how long it took
    and what it said."""
    config = Config(key=KEY, url=url, hostname="h", allow_insecure=True, verify=verify)
    transport = HTTPTransport(config)
    try:
        began = time.monotonic()
        outcome = transport.send(BODY, gzipped=False, timeout=timeout)
        return outcome.kind, time.monotonic() - began, outcome.detail
    finally:
        transport.close()


@linux_only
class TestANameWithSeveralAddresses:
    def test_the_next_address_is_tried_when_the_first_gets_no_answer(
        self, hole: Blackhole, server: DevServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A name whose first address is blackholed (an IPv6 route that drops packets)
        and whose second answers is reached within request_timeout, as with any HTTP
        client that spreads its connect timeout over the addresses."""
        resolve(monkeypatch, {"two.test": [hole.port, server.port]})

        kind, took, detail = send(f"http://two.test:{server.port}/logs/ingest", 8.0)

        assert Kind.OK is kind, f"{detail} after {took:.1f} s"
        assert 1 == server.request_count

    def test_so_is_a_socks_proxys(
        self, hole: Blackhole, server: DevServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The same for a SOCKS proxy's name (its first address blackholed)."""
        pytest.importorskip("socks", reason="PySocks is not installed")
        with serving(_Socks5()) as proxy:
            resolve(monkeypatch, {"socks.test": [hole.port, proxy.server_address[1]]})
            monkeypatch.setenv("ALL_PROXY", "socks5h://socks.test:1080")

            kind, took, detail = send(by_name(f"{server.base_url}/logs/ingest"), 8.0)

        assert Kind.OK is kind, f"{detail} after {took:.1f} s"
        assert 1 == server.request_count


class TestDNSThatHangs:
    def test_close_keeps_its_deadline_and_nothing_is_sent_late(
        self, server: DevServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A name resolution that hangs (getaddrinfo has no timeout, and no shutdown can
        end it) still lets close() return by its deadline, and a name resolved after it
        sends nothing late: the lines are counted as ``shutdown``."""
        resolving, resolve_now = threading.Event(), threading.Event()
        real = socket.getaddrinfo

        def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            if host != "slow-dns.test":
                return real(host, port, *args, **kwargs)
            resolving.set()
            resolve_now.wait(WAIT)
            return real("127.0.0.1", port, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        for proxy in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
            monkeypatch.delenv(proxy, raising=False)
        client = Client(
            key=KEY, url=f"http://slow-dns.test:{server.port}/logs/ingest", allow_insecure=True,
            request_timeout=30, shutdown_timeout=1, flush_interval=0.05, handle_signals=False,
        )  # fmt: skip
        try:
            for i in range(LINES):
                client.log(f"line {i}")
            assert resolving.wait(WAIT), "the sender never resolved the name"
            began = time.monotonic()
            client.close()
            took = time.monotonic() - began
            during = client.stats()
        finally:
            resolve_now.set()
        assert took < WITHIN, took
        # The one step nothing cuts (docs/delivery.md): its lines are shown as queued
        # until it returns, then counted.
        assert (LINES, 0) == (during["queued"], during["sent"])
        assert client._sender.finished.wait(WAIT)
        stats = client.stats()
        assert 0 == server.request_count, "the batch went out after the close's deadline"
        assert (0, 0, LINES) == (stats["queued"], stats["sent"], stats["dropped"]["shutdown"])


@pytest.fixture(scope="module")
def named_tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path, list[str]]:
    """A server-side TLS context whose certificate names only ingest.test, the
    certificate to verify it with, and the server names (SNI) its handshakes were given."""
    made = make_cert(tmp_path_factory.mktemp("tls"), "DNS:ingest.test")
    if made is None:
        pytest.skip("openssl cannot make a test certificate here")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*made)
    names: list[str] = []

    def heard(_: ssl.SSLObject, name: str | None, __: ssl.SSLContext) -> None:
        names.append(str(name))

    context.sni_callback = heard
    return context, made[0], names


def ok(request: Request, sock: socket.socket, stop: threading.Event) -> bytes:
    return answer(200)


class TestTLSOnTheClientsOwnSockets:
    """The client makes the TCP connection; urllib3 still wraps it in TLS with the
    url's host name, sent as SNI and checked against the certificate."""

    @pytest.mark.parametrize("proxied", [False, True], ids=["direct", "connect-proxy"])
    def test_the_urls_host_name_is_sent_and_checked(
        self,
        named_tls: tuple[ssl.SSLContext, Path, list[str]],
        monkeypatch: pytest.MonkeyPatch,
        proxied: bool,
    ) -> None:
        """The url's host name goes out as SNI and must be the certificate's, directly
        and through an HTTPS proxy's tunnel: another name the same address answers for
        is a TLS error that says so, the key never in it."""
        context, ca, names = named_tls
        with scripted_server(ok, tls=context) as service:
            port = int(service.url.split(":")[2].split("/")[0])
            resolve(monkeypatch, {"ingest.test": [port], "other.test": [port]})
            with scripted_server(tunnel_to(port)) as proxy:
                if proxied:
                    monkeypatch.setenv("https_proxy", proxy.url.replace("/logs/ingest", ""))
                outcomes = {
                    host: send(f"https://{host}:{port}/logs/ingest", 10.0, verify=str(ca))
                    for host in ("ingest.test", "other.test")
                }
                tunnelled = len(proxy.requests)
        (kind, _, detail), (wrong, _, said) = outcomes["ingest.test"], outcomes["other.test"]
        assert Kind.OK is kind, detail
        assert Kind.RETRY is wrong and said.startswith("TLS error"), said
        assert "ingest.test" in said or "other.test" in said, said  # says which name
        assert KEY not in said
        assert ["ingest.test", "other.test"] == names[-2:]
        assert (2 if proxied else 0) == tunnelled


class TestStepsThatStall:
    @pytest.mark.parametrize(
        ("kind", "scheme"), [("silent", "https"), ("trickle", "http")],
        ids=["tls-handshake-never-answered", "answer-a-byte-at-a-time"],
    )  # fmt: skip
    def test_cut_at_request_timeout(self, kind: str, scheme: str) -> None:
        """A server that takes the TCP connection and never answers the TLS handshake,
        or trickles its answer inside every read timeout, is cut at request_timeout."""
        with bad_server(kind) as server:
            url = server.url.replace("http", scheme, 1)
            outcome, took, detail = send(url, 2.0)
        assert Kind.RETRY is outcome, detail
        assert 1.5 < took < WITHIN, took
