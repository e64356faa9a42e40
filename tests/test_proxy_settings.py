"""Proxy settings from the environment that no request can be made with: a proxy URL
requests cannot parse or use. Each is the same on every retry: a settings failure,
reported once and retried slowly, whose report never shows the proxy's password."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

from logdna_client import Client, Config
from logdna_client._transport import HTTPTransport, Kind
from tests._claims_servers import answer, scripted_server
from tests.test_claims_hostile import WAIT

KEY = "k" * 20 + "secret" + "k" * 6
PASSWORD = "pw5ecretPr0xy"
PROXY_VARIABLES = ("no_proxy", "NO_PROXY", "http_proxy", "HTTP_PROXY", "https_proxy",
                   "HTTPS_PROXY", "all_proxy", "ALL_PROXY")  # fmt: skip

#: Proxy URLs requests refuses before any connection is made.
UNUSABLE = {
    "port-out-of-range": f"http://user:{PASSWORD}@127.0.0.1:99999",
    "port-not-a-number": f"http://user:{PASSWORD}@127.0.0.1:nope",
    "unknown-scheme": f"ftp://user:{PASSWORD}@127.0.0.1:21",
    "no-host": "http://:3128",
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
        transport = HTTPTransport(
            Config(key=KEY, url="http://127.0.0.1:9/logs/ingest", hostname="h")
        )
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
        with scripted_server(lambda r, s, e: answer(200)) as server:
            client = Client(key=KEY, url=server.url, hostname="t", flush_interval=0.05)
            client.log("behind an unusable proxy")
            assert reports.said.wait(WAIT)
            assert not client.flush(2.0)
            s, reported = client.stats(), list(reports.reports)
            client.close(0)
            reached = len(server.requests)
        assert (0, 1, 1) == (reached, s["requests"], s["queued"]), s
        assert "settings" == s["last_error"]["kind"], s  # type: ignore[index]
        assert 1 == len(reported), reported
        level, said = reported[0]
        assert logging.ERROR == level and "no request can be made" in said, said
        assert PASSWORD not in said and KEY not in said
