"""Which connection each request goes out on (``HTTPTransport``, ``_read_capped``): one
kept alive while its answers are whole and the server does not end it, never one left
in a state the next request would read wrongly. Each is a real server on loopback that
records the connection every request came on (``on_connections``)."""

from __future__ import annotations

import contextlib
import gzip
import io
import socket
import ssl
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from logdna_client import _transport
from tests._claims_servers import Request, Responder, answer
from tests.test_claims_hostile import WAIT
from tests.test_hostile_endpoints import (
    Step,
    assert_adds_up,
    deliver,
    own_reports,
    tls,  # noqa: F401 (a fixture)
)


def on_connections(*scripts: Sequence[Step]) -> tuple[Responder, list[int]]:
    """A responder giving the n-th connection ``scripts[n]``'s steps in turn, then 200s;
    and, for each request read, which connection (0, 1, ...) it came on."""
    went_on: list[int] = []
    held: list[socket.socket] = []  # held: a socket freed could lend its id to the next one
    lock = threading.Lock()

    def respond(request: Request, sock: socket.socket, stop: threading.Event) -> bytes | None:
        with lock:
            if sock not in held:
                held.append(sock)
            which = held.index(sock)
            n = sum(1 for each in went_on if each == which)
            went_on.append(which)
        script = scripts[which] if which < len(scripts) else ()
        step = script[n] if n < len(script) else answer(200)
        return step(request, sock, stop) if callable(step) else step

    return respond, went_on


def lines_of(requests: list[Request]) -> list[str]:
    return [str(line["line"]) for request in requests for line in request.lines]


#: A 400 no request was answered with: read as the next request's answer, it would
#: have that request's line dropped as refused.
FORGED = answer(400, b'{"error":"forged"}')


def then_forged(head: bytes) -> bytes:
    """``head`` (a whole answer), then FORGED, padded so that FORGED begins just past
    what http.client's reader takes from the socket at a time: sent at once over TLS,
    in one record, it is left in the TLS connection's own buffer, not the socket's."""
    return head + b" " * (io.DEFAULT_BUFFER_SIZE - len(head)) + FORGED


class TestBytesPastAnAnswer:
    @pytest.mark.parametrize(
        "head",
        [
            answer(200),
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
        ],
        ids=["content-length", "chunked", "204"],
    )
    def test_over_tls_they_are_never_the_next_answer(
        self,
        head: bytes,
        tls: tuple[ssl.SSLContext, Path],  # noqa: F811
    ) -> None:
        """Bytes a server sent past the end of an answer over https:// (here a forged
        400) are read by TLS into its own buffer with the answer, where the check of a
        kept-alive connection (is its socket readable?) does not see them: the
        connection is not used again, and the next batch is stored, not refused."""
        context, ca = tls
        respond, went_on = on_connections([then_forged(head)])
        batches = [["one"], ["two"], ["three"]]
        with own_reports() as said:
            client, read = deliver(
                respond, *batches, tls=context, verify=str(ca), flush_interval=60
            )
        assert [] == said
        assert ["one", "two", "three"] == lines_of(read)
        s = client.stats()
        assert (3, 0, 0, 3) == (s["sent"], s["retries"], s["dropped_total"], s["requests"])
        assert [0, 1, 1] == went_on
        assert_adds_up(client, 3)

    def test_over_plain_http_the_connection_is_not_used_again(self) -> None:
        """The same over http://: the bytes past the answer wait in the socket, and the
        next batch goes out on a new connection."""
        respond, went_on = on_connections([then_forged(answer(200))])
        client, read = deliver(respond, ["one"], ["two"], flush_interval=60)
        assert ["one", "two"] == lines_of(read)
        assert (2, 0) == (client.stats()["sent"], client.stats()["dropped_total"])
        assert [0, 1] == went_on


def switched(request: Request, sock: socket.socket, stop: threading.Event) -> None:
    """Answer 101, then speak HTTP/2 on the connection (a SETTINGS frame) to whatever
    comes next, and close it."""
    sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
    sock.settimeout(30)
    if sock.recv(65536):
        sock.sendall(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")


class TestASwitchedProtocol:
    def test_the_connection_is_never_used_again(self) -> None:
        """A 101 (a server switching the connection to another protocol, which this
        client never asks for) is no answer to the batch, which is sent again later; not
        on that connection, which no longer speaks HTTP/1.1: sent there, the batch was
        answered in HTTP/2 and reported as a server that cannot speak HTTP/1.1."""
        respond, went_on = on_connections([answer(200), switched])
        with own_reports() as said:
            client, read = deliver(
                respond, ["one"], ["two"], ["three"], flush_interval=60, retry_max_backoff=0.1
            )
        assert ["one", "two", "two", "three"] == lines_of(read)
        assert 1 == len(said), said
        assert "HTTP/1.1" not in said[0]
        s = client.stats()
        assert (3, 1, 4) == (s["sent"], s["retries"], s["requests"])
        assert [0, 0, 1, 1] == went_on
        assert_adds_up(client, 3)


class TestAnAnswerCutShortInsideItsCoding:
    def test_its_connection_is_kept(self) -> None:
        """A 200 whose gzip body stops before the gzip stream's end, its Content-Length
        honest about what was sent: the answer's own framing is whole, so the connection
        is kept for the next batch (it was closed, and a new one made)."""
        cut = gzip.compress(b'{"status":"ok"}' * 50)[:20]
        respond, went_on = on_connections([answer(200, cut, b"Content-Encoding: gzip\r\n")])
        client, read = deliver(respond, ["one"], ["two"], ["three"], flush_interval=60)
        assert ["one", "two", "three"] == lines_of(read)
        assert (3, 0) == (client.stats()["sent"], client.stats()["retries"])
        assert [0, 0, 0] == went_on


#: The body of the redirect below: far more than an answer is ever read.
HUGE = 64 << 20


class TestARedirectsBody:
    def test_is_read_no_further_than_any_answer(self) -> None:
        """A 3xx with a Location (never followed) and a 64 MiB body: requests read such
        a body whole, decoded, before handing the answer back (to free the connection
        for the redirect it would follow), past the cap every other answer is read to;
        a gzip bomb would have cost the sender gigabytes. Read up to the cap, the rest
        is left unsent, and the connection closed."""
        sent: list[int] = []
        done = threading.Event()

        def redirect(request: Request, sock: socket.socket, stop: threading.Event) -> None:
            sock.sendall(
                b"HTTP/1.1 301 Moved\r\nLocation: https://elsewhere.invalid/\r\n"
                b"Content-Length: %d\r\n\r\n" % HUGE
            )
            chunk = b"x" * (1 << 20)
            count = 0
            try:
                while count < HUGE:
                    sock.sendall(chunk)
                    count += len(chunk)
            except OSError:  # the client closed the connection
                pass
            sent.append(count)
            done.set()

        respond, went_on = on_connections([redirect])
        with own_reports() as said:
            client, read = deliver(respond, ["one"], flush_interval=60, retry_max_backoff=0.1)
        assert done.wait(WAIT)
        assert ["one", "one"] == lines_of(read)
        assert 1 == len(said), said
        # What the kernel's buffers took, at most a few MiB: not the body.
        assert sent[0] < HUGE // 2
        assert [0, 1] == went_on
        assert (1, 1) == (client.stats()["sent"], client.stats()["retries"])


class TestADeadlineThatPassesAsTheAnswerIsRead:
    def test_its_cut_never_lands_on_the_next_request(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The watchdog, finding a request's deadline passed, cuts its connection; when
        the answer was read whole just before (the connection back in the pool), and the
        next batch went out on that connection before the cut came, the cut must not end
        the next request: it ended it, and the batch went out a second time."""
        cutting = threading.Event()
        second = threading.Event()
        cut_done = threading.Event()
        real_cut = _transport._Exchange.cut
        real_read = _transport._read_capped
        reads: list[int] = []

        def cut(exchange: _transport._Exchange) -> None:
            if cutting.is_set():  # (a later request's: as it is)
                real_cut(exchange)
                return
            cutting.set()
            second.wait(WAIT)  # the next request went out on the connection
            real_cut(exchange)
            cut_done.set()

        def read(response: Any, cap: int, *, keep: bool) -> tuple[str, bool]:
            said = real_read(response, cap, keep=keep)
            reads.append(cap)
            if len(reads) == 1:
                assert cutting.wait(WAIT)  # the first request's deadline passes here
            return said

        def the_second(request: Request, sock: socket.socket, stop: threading.Event) -> bytes:
            second.set()
            cut_done.wait(WAIT)  # answered once the cut came (or did not)
            return answer(200)

        monkeypatch.setattr(_transport._Exchange, "cut", cut)
        monkeypatch.setattr(_transport, "_read_capped", read)
        respond, went_on = on_connections([answer(200), the_second])
        client, read_ = deliver(respond, ["one"], ["two"], flush_interval=60, request_timeout=2)
        assert ["one", "two"] == lines_of(read_)
        assert [0, 0] == went_on
        s = client.stats()
        assert (2, 0, 2) == (s["sent"], s["retries"], s["requests"])


class TestAnAnswerReadUntilTheConnectionEnds:
    def test_cut_at_the_deadline_is_not_taken_for_all_of_it(self) -> None:
        """An answer with neither a Content-Length nor chunks ends where the connection
        does, and so, to the reader, does one the deadline cut: a 207 cut there was read
        as a whole body that is no JSON, and every line of the batch counted as refused,
        the statuses it did send for the first lines unread."""

        def trickled(request: Request, sock: socket.socket, stop: threading.Event) -> None:
            sock.sendall(b'HTTP/1.1 207 Multi-Status\r\n\r\n{"status":[200,200,')
            sock.settimeout(WAIT)
            with contextlib.suppress(OSError):
                sock.recv(1)  # until the client ends the connection

        respond, went_on = on_connections([trickled])
        client, read = deliver(
            respond, ["one", "two", "three"], flushed=False, flush_interval=60,
            request_timeout=1,
        )  # fmt: skip
        assert ["one", "two", "three"] == lines_of(read[:1])
        s = client.stats()
        assert (2, 1) == (s["sent"], s["dropped"]["rejected"])
        assert [0, 1] == went_on  # (the second request: the summary of the line dropped)
        assert_adds_up(client, 3)
