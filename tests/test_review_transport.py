"""Review of the transport's own connects and deadlines, over real sockets: names
with several addresses, DNS that hangs, proxies, TLS and answers that stall."""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from logdna_client import Client, Config
from logdna_client._devserver import DevServer
from logdna_client._transport import HTTPTransport, Kind
from tests._bad_servers import Blackhole, blackhole

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


def resolve(monkeypatch: pytest.MonkeyPatch, name: str, *ports: int) -> None:
    """``name`` resolves to 127.0.0.1 once per port, in turn (each address its own port,
    so one can be a blackhole and the next a server)."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != name:
            return real(host, port, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", p)) for p in ports]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    for proxy in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)


def send(url: str, timeout: float) -> tuple[Kind, float, str]:
    transport = HTTPTransport(Config(key=KEY, url=url, hostname="h", allow_insecure=True))
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
        resolve(monkeypatch, "two.test", hole.port, server.port)

        kind, took, detail = send(f"http://two.test:{server.port}/logs/ingest", 8.0)

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
