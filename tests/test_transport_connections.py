"""The transport's connections over their life (``HTTPTransport``): a kept-alive one
used again only while its server said it would keep it (``Keep-Alive: timeout=N,
max=N``), and every one closed by the transport's close, the process's end included.
Each against a real server on loopback; the idle time is told by a clock of the test's."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from logdna_client import Config
from logdna_client._devserver import DevServer
from logdna_client._transport import HTTPTransport, Kind, Outcome
from tests._children import REPO
from tests._claims_servers import Request, answer, scripted_server
from tests.test_claims_hostile import WAIT

BODY = b'{"lines":[{"line":"x"}]}'


class Connections:
    """A responder for ``scripted_server``: the k-th request on the n-th connection the
    server accepted is answered ``reply(n, k)`` (None: the connection closed unanswered);
    ``went_on`` holds the connection each request came on, in turn."""

    def __init__(self, reply: Callable[[int, int], bytes | None]) -> None:
        self._reply = reply
        self.went_on: list[int] = []
        self._seen: dict[int, tuple[int, int]] = {}  # id(sock): (connection, requests read)
        self._held: list[socket.socket] = []  # held: a socket freed could lend its id on
        self._lock = threading.Lock()

    def __call__(
        self, request: Request, sock: socket.socket, stop: threading.Event
    ) -> bytes | None:
        with self._lock:
            if id(sock) not in self._seen:
                self._held.append(sock)
            which, read = self._seen.get(id(sock), (len(self._seen), 0))
            self._seen[id(sock)] = which, read + 1
            self.went_on.append(which)
        return self._reply(which, read)


class Clock:
    """The transport's clock, moved on by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sent_after(
    reply: Callable[[int, int], bytes | None], idle: list[float]
) -> tuple[list[int], list[Outcome]]:
    """Send one body through an ``HTTPTransport`` of a server answering ``reply`` after
    each wait of ``idle`` (seconds on the transport's clock, none really waited); the
    connection each request came on, and the outcomes."""
    responder, clock = Connections(reply), Clock()
    outcomes = []
    with scripted_server(responder) as server:
        transport = HTTPTransport(Config(url=server.url, hostname="t"), clock=clock)
        try:
            for seconds in idle:
                clock.now += seconds
                outcomes.append(transport.send(BODY, gzipped=False, timeout=WAIT))
        finally:
            transport.close()
    return responder.went_on, outcomes


def kept(keep_alive: bytes) -> bytes:
    """A 200 that says its connection is kept, and for how long (``keep_alive``)."""
    return answer(200, headers=b"Connection: keep-alive\r\nKeep-Alive: " + keep_alive + b"\r\n")


class TestAnAnnouncedKeepAlive:
    @pytest.mark.parametrize(
        ("keep_alive", "within", "past"),
        [(b"timeout=5, max=100", 3.75, 4.0), (b"timeout=2", 1.25, 1.5)],
        ids=["5s", "2s"],
    )
    def test_a_connection_idle_past_its_timeout_is_not_used_again(
        self, keep_alive: bytes, within: float, past: float
    ) -> None:
        """A server that announces its idle timeout (``Keep-Alive: timeout=5``) closes
        a connection idle that long: one idle for less than it, less a margin (a second,
        or a quarter of the timeout under 4 s), carries the next request; one idle
        longer is not used again, and the request goes out on a new connection, with no
        failed write and nothing sent twice."""
        went_on, outcomes = sent_after(lambda n, k: kept(keep_alive), [0, within, past, 0])
        assert [0, 0, 1, 1] == went_on
        assert [(Kind.OK, False)] * 4 == [(each.kind, each.resent) for each in outcomes]

    def test_a_connection_is_not_used_past_the_requests_its_max_allows(self) -> None:
        """A server that announces how many more requests a connection takes
        (``max=1``), then closes it under the one past them unanswered: that one goes
        out on a new connection instead, not on the closed one and then again."""

        def reply(which: int, read: int) -> bytes | None:
            return [kept(b"timeout=60, max=1"), answer(200), None][min(read, 2)]

        went_on, outcomes = sent_after(reply, [0, 0, 0])
        assert [0, 0, 1] == went_on
        assert [(Kind.OK, False)] * 3 == [(each.kind, each.resent) for each in outcomes]


#: Run first in each process below, its atexit handler last: once the sender and
#: watchdog threads have ended (the exit delivered and closed the transport), it writes
#: the sockets still open to the server on stderr. Left open, each is also said by a
#: ResourceWarning under -X dev once nothing holds it, whichever of the two comes first.
_PRELUDE = """
import atexit, gc, socket, sys, threading
from logdna_client import Client

URL = sys.argv[1]
PORT = int(URL.rsplit(":", 1)[1].split("/")[0])

def _peer_port(sock):
    try:
        return sock.getpeername()[1]
    except OSError:
        return None

def none_left_open():
    for thread in threading.enumerate():
        if thread.name in ("logdna_client-sender", "logdna_client-watchdog"):
            thread.join(30)
    left = [each for each in gc.get_objects() if isinstance(each, socket.socket)
            and each.fileno() != -1 and _peer_port(each) == PORT]
    for each in left:
        sys.stderr.write(f"left open: {each!r}\\n")

atexit.register(none_left_open)
"""

#: A process that delivers a line, then ends without closing: its exit delivers one
#: more, logged by an atexit handler that runs after weakref's (which urllib3's pool made
#: as it was first used) and before the library's (registered with the Client).
_DELIVERS_AT_EXIT = (
    _PRELUDE
    + """
client = Client(url=URL, key="k", hostname="t", shutdown_timeout=30)
atexit.register(client.log, "two")
client.log("one")
assert client.flush(30)
"""
)

#: The same under asyncio, its close begun and cancelled: the exit delivers what the
#: close began to send (the server holds its answer while the process ends).
_CANCELS_ITS_ACLOSE = (
    _PRELUDE
    + """
import asyncio

client = Client(url=URL, key="k", hostname="t", shutdown_timeout=30)

async def main():
    client.log("one")
    assert await client.aflush(30)
    client.log("two")
    try:
        await asyncio.wait_for(client.aclose(), 0.001)
    except asyncio.TimeoutError:
        pass

asyncio.run(main())
"""
)


class TestAtTheProcessEnd:
    @pytest.mark.parametrize(
        ("script", "delay"),
        [(_DELIVERS_AT_EXIT, 0.0), (_CANCELS_ITS_ACLOSE, 0.3)],
        ids=["delivered-at-exit", "cancelled-aclose"],
    )
    def test_no_socket_is_left_unclosed(self, script: str, delay: float, tmp_path: Path) -> None:
        """A process whose exit delivers its last line on a pool made earlier leaves no
        socket open once the exit closed the transport, and says nothing under ``-X
        dev`` (no "ResourceWarning: unclosed socket"); every line delivered once.
        urllib3 2 closes a dropped pool's connections only when the pool is garbage-
        collected, by a weakref finalizer, and those no longer run once atexit began.
        ``delay``: the server holds each answer that long, so the exit finds the batch
        the cancelled close began still out."""
        app = tmp_path / "app.py"
        app.write_text(script)
        with DevServer() as server:
            server.set_delay(delay)
            done = subprocess.run(
                [sys.executable, "-X", "dev", str(app), server.url],
                check=False, capture_output=True, text=True, timeout=WAIT,
                env={**os.environ, "PYTHONPATH": REPO},
            )  # fmt: skip
            assert 0 == done.returncode, done.stderr
            assert server.wait_for_lines(2, timeout=WAIT)
            got = [line["line"] for line in server.lines]
        assert ["one", "two"] == got
        assert "" == done.stderr
