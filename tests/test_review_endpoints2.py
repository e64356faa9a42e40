"""Endpoints that answer before they have read the request: a front end that refuses a
body for its size (413) or times out (408) from the request's head alone, sends its
answer and closes the connection while the client is still uploading. Over plain HTTP
the client reads that answer (urllib3 passes over the broken pipe or reset under the
upload); over TLS the upload ends in TLS's "EOF occurred in violation of protocol"
instead, and the answer waiting to be read was never read: a 413 was retried as a
connection failure without end, the batch never split. Each is a real server on
loopback."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from logdna_client import Client
from tests._claims_servers import Request, Responder, answer
from tests.test_hostile_endpoints import (
    assert_adds_up,
    deliver,
    own_reports,
    tls,  # noqa: F401 (a fixture)
)

#: Bodies over this many bytes are answered from their head alone.
EARLY_OVER = 200_000

#: A batch of 1.2 MB, sent plain: far over what the server reads before it answers.
LARGE = [f"{n:06d} " + "x" * 4000 for n in range(300)]


def read_whole(request: Request, sock: socket.socket, stored: list[int]) -> bytes | None:
    """For a server that reads only each request's head: read the rest of ``request``'s
    body from ``sock``, add how many lines it held to ``stored`` and answer 200; None
    (close) where the connection ends first."""
    body = bytearray(request.body)
    while len(body) < int(request.headers["content-length"]):
        chunk = sock.recv(1 << 16)
        if not chunk:
            return None
        body += chunk
    stored.append(len(Request(request.headers, bytes(body)).lines))
    return answer(200)


def early(status: int, *, once: bool = False) -> tuple[Responder, list[int]]:
    """For a server that reads only each request's head: answer a body over EARLY_OVER
    with ``status`` and "Connection: close" unread, and close the connection (``once``:
    only the first such body); read any other body and answer 200. Returns the responder
    and how many lines each request answered 200 held."""
    stored: list[int] = []
    answered: list[int] = []

    def respond(request: Request, sock: socket.socket, stop: threading.Event) -> bytes | None:
        length = int(request.headers["content-length"])
        if length > EARLY_OVER and not (once and answered):
            answered.append(status)
            # Sent at once (no Nagle delay behind data not yet acknowledged), then closed
            # at once, its body unread (a reset): an answer still queued to send would be
            # lost to the reset, as it is from a server that closes so.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(answer(status, b'{"error":"early"}', b"Connection: close\r\n"))
            return None
        return read_whole(request, sock, stored)

    return respond, stored


def large_batch(
    respond: Responder, context: ssl.SSLContext | None, ca: Path | None, **options: Any
) -> tuple[Client, list[Request]]:
    """One small batch, then LARGE, through ``respond`` (https:// with ``context``)."""
    return deliver(
        respond, ["small"], LARGE, tls=context, verify=str(ca) if ca else True,
        read_body=False, receive_buffer=4096, compress=False, max_batch_bytes=8 << 20,
        flush_interval=60, retry_max_backoff=0.5, **options,
    )  # fmt: skip


Scheme = Callable[[tuple[ssl.SSLContext, Path]], tuple[ssl.SSLContext | None, Path | None]]
SCHEMES: dict[str, Scheme] = {"http": lambda pair: (None, None), "https": lambda pair: pair}


class TestAnAnswerBeforeTheBodyWasRead:
    @pytest.mark.parametrize("scheme", SCHEMES.values(), ids=SCHEMES.keys())
    def test_a_413_splits_the_batch(
        self,
        scheme: Scheme,
        tls: tuple[ssl.SSLContext, Path],  # noqa: F811
    ) -> None:
        """A 413 sent from the head of a large body, the connection closed under the
        upload: the batch is split until its halves are small enough, every line stored
        once, no retry counted."""
        respond, stored = early(413)
        client, _ = large_batch(respond, *scheme(tls))
        s = client.stats()
        assert 1 + len(LARGE) == sum(stored)
        assert (1 + len(LARGE), 0, 0) == (s["sent"], s["retries"], s["dropped_total"])
        assert_adds_up(client, 1 + len(LARGE))

    @pytest.mark.parametrize("scheme", SCHEMES.values(), ids=SCHEMES.keys())
    def test_a_408_on_a_kept_alive_connection_is_sent_again_at_once(
        self,
        scheme: Scheme,
        tls: tuple[ssl.SSLContext, Path],  # noqa: F811
    ) -> None:
        """A 408 from the head of a large body on the kept-alive connection, closed
        under the upload: sent again at once on a new connection, not a retry, not
        reported."""
        respond, stored = early(408, once=True)
        with own_reports() as said:
            client, read = large_batch(respond, *scheme(tls))
        assert [] == said
        s = client.stats()
        assert [1, len(LARGE)] == stored
        assert (1 + len(LARGE), 0, 3, 3) == (s["sent"], s["retries"], s["requests"], len(read))
        assert_adds_up(client, 1 + len(LARGE))
