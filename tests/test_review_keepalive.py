"""The batch sent again at once when the server closed a kept-alive connection under
a request (``HTTPTransport._send``), against servers that make the most of it: whatever
the request sent again is answered, the stats add up; a server that closes every
kept-alive connection under its next request, after storing what it read, gets each
batch twice, never more; a timeout of the request sent again is reported as long as the
two took; a TLS connection closed under a large upload is sent again too; and SIGTERM
during the resend ends the process within shutdown_timeout. Each is a real server on
loopback."""

from __future__ import annotations

import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from logdna_client import Client, _transport
from tests._children import Child
from tests._claims_servers import Request, Responder, answer, scripted_server
from tests.test_claims_hostile import WAIT
from tests.test_hostile_endpoints import (
    Step,
    assert_adds_up,
    by_connection,
    deliver,
    one_retry,
    own_reports,
    scripted_connections,
    stall_until_given_up,
    tls,  # noqa: F401 (a fixture)
)
from tests.test_review_endpoints2 import read_whole


def texts(request: Request) -> list[str]:
    return [str(line["line"]) for line in request.lines]


#: More requests than any test here makes on one connection.
MANY = 64


def kept_alive_closed(inner: Responder, *, every: bool = False) -> tuple[Responder, list[str]]:
    """A responder that closes the first connection under its second request (``every``:
    each connection under each request after its first) after reading and storing it,
    and answers every other request with ``inner``; and the lines stored (each request
    it closed, and each one answered 2xx)."""

    def store_and_close(request: Request, sock: socket.socket, stop: threading.Event) -> None:
        stored.extend(texts(request))

    def script_of(which: int) -> list[Step]:
        if every:
            return [inner] + [store_and_close] * MANY
        first = [inner, store_and_close] if which == 0 else []
        return first + [inner] * MANY

    respond, stored = scripted_connections(script_of)
    return respond, stored


def ok(request: Request, sock: socket.socket, stop: threading.Event) -> bytes:
    return answer(200)


def too_large(request: Request, sock: socket.socket, stop: threading.Event) -> bytes:
    return answer(413) if len(request.lines) > 1 else answer(200)


def bad_line(request: Request, sock: socket.socket, stop: threading.Event) -> bytes:
    return answer(400) if any("bad" in each for each in texts(request)) else answer(200)


def partial(request: Request, sock: socket.socket, stop: threading.Event) -> bytes:
    return answer(207, b'{"status":[200,400]}') if len(request.lines) == 2 else answer(200)


def once_then_200(reply: bytes) -> Responder:
    """``reply`` to the first request that is not the first batch's, then 200s."""
    said: list[bytes] = []

    def respond(request: Request, sock: socket.socket, stop: threading.Event) -> bytes:
        if said or "first" in texts(request):
            return answer(200)
        said.append(reply)
        return reply

    return respond


BUSY = answer(429, headers=b"Retry-After: 0\r\n")
REDIRECT = answer(301, headers=b"Location: http://e.invalid/\r\n")


class TestWhatTheResendIsAnswered:
    @pytest.mark.parametrize(
        ("inner", "second", "sent", "rejected", "retries"),
        [
            (too_large, ["a", "b", "c"], 3, 0, 0),
            (bad_line, ["a", "bad", "c"], 2, 1, 0),
            (once_then_200(BUSY), ["a", "b"], 2, 0, 1),
            (partial, ["a", "b"], 1, 1, 0),
            (once_then_200(REDIRECT), ["a"], 1, 0, 1),
        ],
        ids=["413 split", "400 bad line", "429 Retry-After", "207 partial", "301 redirect"],
    )
    def test_the_stats_add_up(
        self, inner: Responder, second: list[str], sent: int, rejected: int, retries: int
    ) -> None:
        """Whatever the request sent again at once is answered (a 413 that splits the
        batch, a 400 that finds a bad line, a 429, a 207 refusing a line, a redirect),
        every request made is counted once, only failures after it count as retries,
        and every line is sent, rejected or queued."""
        respond, _ = kept_alive_closed(inner)
        with scripted_server(respond) as server:
            client = Client(
                url=server.url, hostname="t", flush_interval=60, compress=False,
                retry_max_backoff=0.2,
            )  # fmt: skip
            client.log("first")
            assert client.flush(WAIT)
            for line in second:
                client.log(line)
            client.flush(WAIT)  # (False where a line was rejected)
            client.close(WAIT)
            read = server.requests
        s = client.stats()
        assert (1 + sent, rejected, retries) == (
            s["sent"],
            s["dropped"].get("rejected", 0),
            s["retries"],
        )
        assert len(read) == s["requests"]
        assert second == texts(read[1]) == texts(read[2])  # closed under, then sent again
        assert_adds_up(client, 1 + len(second))


class TestAServerThatClosesEveryKeptAliveConnection:
    def test_each_batch_is_sent_again_once_and_stored_twice_at_most(self) -> None:
        """A server that reads and stores a request on a kept-alive connection, then
        closes it without a word, stores that batch twice, as after any connection
        broken once the body was sent (docs/delivery.md, "What can duplicate"). Done to
        every kept-alive connection, each batch is sent again once at once on a new
        connection and stored twice, never more: no loop, and every line counted once
        as sent. (Neither counted as a retry nor reported: a server that closes every
        kept-alive connection unread is as likely, and is no failure.)"""
        respond, stored = kept_alive_closed(ok, every=True)
        with own_reports() as said:
            client, read = deliver(respond, *[[f"b{n}"] for n in range(4)], flush_interval=60)
        assert ["b0", "b1", "b1", "b2", "b2", "b3", "b3"] == stored
        assert [] == said
        s = client.stats()
        assert (4, 0, 7, 7) == (s["sent"], s["retries"], s["requests"], len(read))
        assert_adds_up(client, 4)

    def test_an_idle_close_after_answers_on_kept_alive_connections_is_sent_again(
        self,
    ) -> None:
        """A kept-alive connection closed under a request, then the next ones answered
        on the connection kept alive, then closed under one again (an idle timeout
        racing the client now and then): each is sent again at once, none counted."""
        # Connection 0's second request closed under, then connection 1's fourth.
        respond, stored = by_connection([answer(200), None], [answer(200)] * 3 + [None])
        with own_reports() as said:
            client, read = deliver(respond, *[[f"b{n}"] for n in range(5)], flush_interval=60)
        assert [f"b{n}" for n in range(5)] == stored
        assert [] == said
        s = client.stats()
        assert (5, 0, 7, 7) == (s["sent"], s["retries"], s["requests"], len(read))
        assert_adds_up(client, 5)


class TestTheReportOfAResendThatTimesOut:
    def test_it_says_how_long_both_requests_took(self) -> None:
        """A kept-alive connection held 1 s and then closed under a request, and the
        new connection it is sent again on never answered: the two share the first
        one's request_timeout (1.5 s), and the report says so ("no complete answer in
        1.5 s"), not the half second the second one was left ("in 0.5 s", which read as
        a request_timeout cut short)."""

        def hold_then_close(request: Request, sock: socket.socket, stop: threading.Event) -> None:
            stop.wait(1.0)

        respond, _ = by_connection([answer(200), hold_then_close], [stall_until_given_up])
        with own_reports() as said:
            client, _ = deliver(respond, ["one"], ["two"], flush_interval=60, request_timeout=1.5)
        failed = [each for each in said if "sending failed" in each]
        assert 1 == len(failed), said
        took = float(failed[0].split("no complete answer in ")[1].split(" s")[0])
        assert took >= 1.4, failed[0]
        assert (2, 1) == (client.stats()["sent"], client.stats()["retries"])

    def test_it_says_so_when_the_sockets_timeout_ends_the_read_first(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """On a busy machine the socket's own timeout (each read is bounded by what is
        left of the deadline) can end the read before the watchdog thread runs to cut
        it: the report still says the deadline ended it ("timed out: TimeoutError:
        timed out" in a loaded run of the test above). Here the watchdog never cuts."""
        monkeypatch.setattr(_transport._Exchange, "cut", lambda self: None)
        respond, _ = by_connection([stall_until_given_up])
        with own_reports() as said:
            client, _ = deliver(respond, ["one"], flush_interval=60, request_timeout=1.0)
        failed = [each for each in said if "sending failed" in each]
        assert 1 == len(failed), said
        assert "timed out: no complete answer in 1." in failed[0], failed[0]
        assert (1, 1) == (client.stats()["sent"], client.stats()["retries"])


def drained_but_the_second() -> tuple[Responder, list[int]]:
    """For a server that reads only each request's head: read the rest of its body and
    answer 200, except the first connection's second request, closed under its upload
    (its body unread); and how many lines each answered request held."""
    held: list[socket.socket] = []
    seen: dict[int, tuple[int, int]] = {}
    stored: list[int] = []

    def respond(request: Request, sock: socket.socket, stop: threading.Event) -> bytes | None:
        if id(sock) not in seen:
            held.append(sock)
        which, n = seen.get(id(sock), (len(seen), 0))
        seen[id(sock)] = which, n + 1
        if (which, n) == (0, 1):
            return None
        return read_whole(request, sock, stored)

    return respond, stored


class TestClosedUnderTheUpload:
    def test_a_kept_alive_tls_connection_closed_under_a_large_body(
        self,
        tls: tuple[ssl.SSLContext, Path],  # noqa: F811
    ) -> None:
        """A kept-alive https:// connection the server closes as a large batch goes out
        on it, before reading its body, ends the upload with TLS's "EOF occurred in
        violation of protocol" rather than a broken pipe: the same end, sent again at
        once, not reported as a TLS error and counted as a retry."""
        context, ca = tls
        respond, stored = drained_but_the_second()
        large = [f"{n:06d} " + "x" * 4000 for n in range(1500)]  # 6 MB, sent plain
        with own_reports() as said:
            client, read = deliver(
                respond, ["small"], large, tls=context, verify=str(ca), read_body=False,
                receive_buffer=4096, compress=False, max_batch_bytes=8 << 20,
                flush_interval=60,
            )  # fmt: skip
        assert [] == said
        assert [1, len(large)] == stored
        s = client.stats()
        assert (1 + len(large), 0, 3, 3) == (s["sent"], s["retries"], s["requests"], len(read))
        assert_adds_up(client, 1 + len(large))


#: The child: a line delivered, then one more sent once the test says so; then it
#: waits for the test, which ends it with SIGTERM while the second is sent again.
CHILD = """
log.info("one")
client.flush(30)
mark("delivered")
wait_for("two")
log.info("two")
wait_for("never")
"""


class TestSIGTERMDuringTheResend:
    def test_the_process_ends_within_shutdown_timeout(self) -> None:
        """A process ended by SIGTERM while its batch, whose kept-alive connection the
        server closed under it, is sent again on a new connection that hangs, ends by
        that signal within shutdown_timeout (1.5 s), not request_timeout (60 s), and
        says the line was not delivered; the key appears nowhere in what it wrote."""
        closing = threading.Event()

        def close_when_told(request: Request, sock: socket.socket, stop: threading.Event) -> None:
            closing.wait(WAIT)

        key = "k3y-" + "s" * 28
        respond, stored = by_connection([answer(200), close_when_told], [stall_until_given_up])
        with scripted_server(respond) as server:
            child = Child(
                CHILD, server.url, key=key, request_timeout="60", shutdown_timeout="1.5",
                flush_interval="0.05",
            )  # fmt: skip
            try:
                child.expect("delivered", WAIT)
                child.send("two")
                assert server.wait_for_requests(2, WAIT)
                closing.set()
                assert server.wait_for_requests(3, WAIT)  # sent again, and held
                began = child.kill(signal.SIGTERM)
                status = child.finish(WAIT)[0]
                took = time.monotonic() - began
            finally:
                child.proc.kill()  # (ended already, but where an assertion failed)
                child.proc.wait()
        assert ["one"] == stored
        # Far below request_timeout, with room for reaping a process on a loaded machine.
        assert took < 15, f"ended {took:.1f} s after SIGTERM: {child.stderr}"
        assert -signal.SIGTERM == status, child.stderr
        assert "1 lines could not be delivered" in child.stderr, child.stderr
        assert key not in child.stderr + child.stdout


#: A 408 as a server sends it on a kept-alive connection it closes for idleness (RFC 9110
#: 15.5.9): "Connection: close", then the connection closed.
TIMED_OUT = answer(408, b"", b"Connection: close\r\n")


def timed_out_and_closed(request: Request, sock: socket.socket, stop: threading.Event) -> None:
    """Answer 408 and close the connection, the request unread (not stored)."""
    sock.sendall(TIMED_OUT)


def timed_out_unsaid(request: Request, sock: socket.socket, stop: threading.Event) -> None:
    """Answer 408 without "Connection: close", then close the connection: the client
    must not take it for one it may use again."""
    sock.sendall(answer(408, b""))


def drained_or(step: Callable[[Request, socket.socket, threading.Event], None]) -> Responder:
    """For a server that reads only each request's head: ``step`` for the first
    connection's second request (its body unread: the 408 goes out while the client is
    still uploading), else read the rest of the body and answer 200."""
    respond, _ = drained_but_the_second()

    def either(request: Request, sock: socket.socket, stop: threading.Event) -> bytes | None:
        reply = respond(request, sock, stop)
        if reply is None:  # the first connection's second request
            step(request, sock, stop)
        return reply

    return either


class TestA408OnAKeptAliveConnection:
    """RFC 9110 15.5.9: a server sends 408 on a connection it closes for idleness, and a
    client resends. On a reused connection it is the server closing it as the request
    went out (as the "closed by server" case): sent again at once on a new connection,
    counted in requests, not retries, not reported. On a new connection, or twice, it
    is a failure like any other."""

    @pytest.mark.parametrize(
        "step", [timed_out_and_closed, timed_out_unsaid], ids=["connection-close", "unsaid"]
    )
    def test_it_is_sent_again_at_once_and_not_counted_as_a_retry(self, step: Step) -> None:
        respond, stored = by_connection([answer(200), step])
        batches = [["one"], ["two"], ["three"]]
        with own_reports() as said:
            client, read = deliver(respond, *batches, flush_interval=60)
        assert ["one", "two", "three"] == stored
        assert [] == said
        s = client.stats()
        assert (3, 0, 0, 4, 4) == (
            s["sent"], s["retries"], s["dropped_total"], s["requests"], len(read)
        )  # fmt: skip
        assert s["last_error"] is None
        assert ["two", "two"] == [texts(each)[0] for each in read[1:3]]
        assert_adds_up(client, 3)

    def test_the_connection_it_came_on_is_never_used_again(self) -> None:
        """A 408 without "Connection: close" on a kept-alive connection the server has
        not closed yet (its close still on the way: on a loaded host the client reads
        the 408 first): the request is sent again on a new connection, and so is the
        next one. Put back in the pool, the connection was taken again, and the close
        that came under the resend cost a retry and a WARNING."""
        respond, stored = by_connection([answer(200), answer(408, b"")])
        went_on: list[int] = []

        def watched(request: Request, sock: socket.socket, stop: threading.Event) -> bytes | None:
            went_on.append(id(sock))
            return respond(request, sock, stop)

        with own_reports() as said:
            client, _ = deliver(watched, ["one"], ["two"], ["three"], flush_interval=60)
        assert [] == said
        assert ["one", "two", "three"] == stored
        assert 4 == len(went_on)
        assert went_on[0] == went_on[1] != went_on[2] == went_on[3]
        assert (3, 0, 4) == (client.stats()["sent"], client.stats()["retries"],
                             client.stats()["requests"])  # fmt: skip

    def test_one_that_comes_under_the_upload_is_sent_again_at_once(self) -> None:
        """The 408 sent, and the connection closed, while a large body still goes out
        on it (its body unread): the same, the whole batch stored once."""
        respond = drained_or(timed_out_and_closed)
        large = [f"{n:06d} " + "x" * 4000 for n in range(1500)]  # 6 MB, sent plain
        with own_reports() as said:
            client, read = deliver(
                respond, ["small"], large, read_body=False, receive_buffer=4096,
                compress=False, max_batch_bytes=8 << 20, flush_interval=60,
            )  # fmt: skip
        assert [] == said
        s = client.stats()
        assert (1 + len(large), 0, 3, 3) == (s["sent"], s["retries"], s["requests"], len(read))
        assert_adds_up(client, 1 + len(large))

    def test_on_a_new_connection_it_is_a_retry(self) -> None:
        """A 408 to a connection's first request: no idle connection closing, a
        failure: retried after a backoff, counted and reported."""
        client = one_retry(by_connection([timed_out_and_closed]), [["first"]], requests=2)
        assert {"kind": "retry", "status": 408} == {
            k: v for k, v in (client.stats()["last_error"] or {}).items() if k != "when"
        }

    def test_one_that_asks_for_a_wait_is_a_retry_that_waits(self) -> None:
        """A 408 on the kept-alive connection with ``Retry-After: 1``: the server asks the
        client to wait, so the batch is not sent again at once but retried as after a
        429 or 503: counted, reported once, sent no sooner than the second asked for,
        on a new connection."""

        def timed_out_wait(request: Request, sock: socket.socket, stop: threading.Event) -> None:
            sock.sendall(answer(408, b"", b"Retry-After: 1\r\nConnection: close\r\n"))

        respond, stored = by_connection([answer(200), timed_out_wait])
        arrived: list[float] = []

        def timed(request: Request, sock: socket.socket, stop: threading.Event) -> bytes | None:
            arrived.append(time.monotonic())
            return respond(request, sock, stop)

        client = one_retry((timed, stored), [["one"], ["two"]], requests=3)
        assert {"kind": "retry", "status": 408} == {
            k: v for k, v in (client.stats()["last_error"] or {}).items() if k != "when"
        }
        assert arrived[2] - arrived[1] >= 0.9, arrived  # (1 s, less the clocks' grain)

    def test_twice_in_a_row_is_one_retry(self) -> None:
        """A 408 on the kept-alive connection, then another on the new connection the
        batch is sent again on: sent again at once only once, then one counted retry."""
        scripted = by_connection([answer(200), timed_out_and_closed], [timed_out_and_closed])
        one_retry(scripted, [["one"], ["two"]], requests=4)
