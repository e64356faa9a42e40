"""The transport's connections over their life (``HTTPTransport``): closed, every one,
by the transport's close, the process's end included. Each against a real server on
loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from logdna_client._devserver import DevServer
from tests._children import REPO
from tests.test_claims_hostile import WAIT

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


class TestTheProcessesEnd:
    @pytest.mark.parametrize(
        ("script", "delay"),
        [(_DELIVERS_AT_EXIT, 0.0), (_CANCELS_ITS_ACLOSE, 0.3)],
        ids=["exit-after-a-flush", "cancelled-aclose"],
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
