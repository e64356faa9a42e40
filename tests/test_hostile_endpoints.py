"""Delivery promises against endpoints that answer in ways a client must survive: a
charset nobody knows, a Retry-After nobody can read, interim (1xx) answers before the
real one, a 207 too long for the usual answer cap, keep-alive connections that die
under the next request. Each is a real server on loopback (tests/_claims_servers.py).

What must hold: an answer the service gave is taken as given (never turned into a
retry that stores the lines again and again), every line is delivered or counted
once, and close() keeps its deadline."""

from __future__ import annotations

import contextlib
import functools
import gzip
import io
import itertools
import logging
import os
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from urllib3.exceptions import InsecureRequestWarning

from logdna_client import Client
from logdna_client._auth import credentials_in
from logdna_client._report import KIND_ATTR
from logdna_client._retry import Backoff, parse_retry_after
from logdna_client._transport import MAX_PARTIAL_BYTES, MAX_RESPONSE_BYTES
from tests._children import REPO
from tests._claims_servers import Request, Responder, answer, scripted_server
from tests.helpers import make_cert
from tests.test_claims_hostile import DEADLINE, SLACK, WAIT, assert_accounted, close_took


def assert_adds_up(client: Client, logged: int) -> None:
    """docs/delivery.md, "What adds up": lines logged = queued + sent + filtered +
    dropped_total, and every accepted line is queued, sent or dropped."""
    s = client.stats()
    assert logged == s["queued"] + s["sent"] + s["filtered"] + s["dropped_total"], s
    assert_accounted(client)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    """A server-side TLS context for 127.0.0.1, and the certificate to verify it with."""
    made = make_cert(tmp_path_factory.mktemp("tls"))
    if made is None:
        pytest.skip("openssl cannot make a test certificate here")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*made)
    return context, made[0]


def texts(requests: list[Request]) -> list[str]:
    return [str(line["line"]) for request in requests for line in request.lines]


def deliver(
    respond: Responder,
    *batches: list[str],
    flushed: bool = True,
    tls: ssl.SSLContext | None = None,
    read_body: bool = True,
    receive_buffer: int | None = None,
    **options: Any,
) -> tuple[Client, list[Request]]:
    """Log each batch of lines through a Client of a scripted server answering with
    ``respond``, flushing after each (``flushed``: what every flush must return), then
    close it within DEADLINE. Returns the client and the requests the server read."""
    with scripted_server(
        respond, tls=tls, read_body=read_body, receive_buffer=receive_buffer
    ) as server:
        client = Client(url=server.url, **{"hostname": "t", "flush_interval": 0.05, **options})
        for batch in batches:
            for line in batch:
                client.log(line)
            assert flushed is client.flush(WAIT)
        client.close(DEADLINE)
        return client, server.requests


def numbered(prefix: str, count: int) -> list[str]:
    return [f"{prefix} {i}" for i in range(count)]


class TestAnswersInOddCharsets:
    @pytest.mark.parametrize("charset", ["no-such-charset", "idna", "rot13"])
    def test_a_200_in_a_charset_python_cannot_decode_is_a_delivery(self, charset: str) -> None:
        """A 200 whose Content-Type names a charset Python does not know (or a codec
        that is not a text encoding) is still the service saying it stored the lines:
        counted as sent once and never sent again (it was retried without end, every
        retry stored again, none counted)."""
        head = f"Content-Type: application/json; charset={charset}\r\n".encode()
        reply = b"HTTP/1.1 200 OK\r\n" + head + b'Content-Length: 15\r\n\r\n{"status":"ok"}'
        client, requests = deliver(lambda r, s, e: reply, numbered("charset", 5))
        assert numbered("charset", 5) == texts(requests)
        s = client.stats()
        assert (5, 0, 0) == (s["sent"], s["retries"], s["dropped_total"])
        assert_adds_up(client, 5)


#: Retry-After values no parser can turn into a wait: a digit that is not ASCII (a
#: header is read as Latin-1, so the byte 0xB2 is "²", which str.isdigit() accepts and
#: float() refuses), and HTTP-dates whose year or zone overflow.
UNREADABLE_RETRY_AFTER = [
    b"\xb2",
    b"Mon, 01 Jan 99999999999999999999 00:00:00 GMT",
    b"Mon, 01 Jan 2026 00:00:00 +99999999999999999999",
]


class TestRetryAfterNobodyCanRead:
    @pytest.mark.parametrize("value", UNREADABLE_RETRY_AFTER)
    def test_is_no_wait(self, value: bytes) -> None:
        """An unreadable Retry-After is no wait at all (the client's own backoff)."""
        assert None is parse_retry_after(value.decode("latin-1"))

    @pytest.mark.parametrize("value", UNREADABLE_RETRY_AFTER)
    def test_a_400_carrying_one_is_still_a_bad_request(self, value: bytes) -> None:
        """A 400 with an unreadable Retry-After refuses the line like any 400: counted as
        rejected after a probe or two (it was taken for a failed request and the line
        was sent again without end, never counted)."""
        refuse = answer(400, b'{"error":"bad line"}', b"Retry-After: " + value + b"\r\n")
        client, requests = deliver(lambda r, s, e: refuse, ["refused"], flushed=False)
        sent = texts(requests)
        s = client.stats()
        assert (1, 0, 0) == (s["dropped"]["rejected"], s["retries"], s["queued"])
        # The gzip body, then the same line plain (then, maybe, the drop-summary line).
        assert ["refused", "refused"] == [text for text in sent if text == "refused"]
        assert_adds_up(client, 1)


class TestInterimAnswers:
    @pytest.mark.parametrize(
        "interim",
        [b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",
         b"HTTP/1.1 102 Processing\r\n\r\n",
         b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\n" * 3],
    )  # fmt: skip
    def test_the_answer_after_interim_ones_is_the_answer(self, interim: bytes) -> None:
        """Interim (1xx) answers before the final one (103 Early Hints from a CDN, 102
        Processing) are skipped, and the final answer decides: the lines count as sent
        once, in one request (http.client skips only 100 Continue, and the 103 was taken
        as the answer: lines kept, sent again without end, each time stored)."""
        client, requests = deliver(lambda r, s, e: interim + answer(200), numbered("interim", 5))
        assert numbered("interim", 5) == texts(requests)
        s = client.stats()
        assert (5, 0, None) == (s["sent"], s["retries"], s["last_error"])
        assert_adds_up(client, 5)

    def test_over_tls_too(self, tls: tuple[ssl.SSLContext, Path]) -> None:
        """The same over https:// (where CDNs send 103 Early Hints): skipped, and the 200
        after it counts the lines as sent once."""
        context, ca = tls
        hints = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
        client, requests = deliver(
            lambda r, s, e: hints + answer(200), numbered("tls", 5), tls=context, verify=str(ca)
        )
        assert numbered("tls", 5) == texts(requests)
        s = client.stats()
        assert (5, 0, None) == (s["sent"], s["retries"], s["last_error"])
        assert_adds_up(client, 5)

    def test_endless_interim_answers_are_no_answer(self) -> None:
        """A server that sends interim answers and never a final one is not listened to
        for ever: past 16 of them the request failed, as to a server that does not speak
        HTTP/1.1 (retried slowly, said once), and the line goes in the next request that
        gets an answer (http.client reads 1xx answers with no end: a core was busy for as
        long as the server went on)."""
        flood = b"HTTP/1.1 102 Processing\r\n\r\n" * 5000
        answers = iter([flood + answer(200)])

        def respond(request: Request, sock: socket.socket, stop: threading.Event) -> bytes:
            return next(answers, answer(200))

        with own_reports() as said:
            client, requests = deliver(respond, ["after a flood"], retry_max_backoff=1)
        s = client.stats()
        assert (1, 2) == (s["sent"], len(requests))
        assert ["after a flood"] == texts(requests[1:])
        assert any("more than 16 interim (1xx) answers" in text for text in said), said
        assert_adds_up(client, 1)

    def test_interim_answers_then_a_failure_are_a_failure(self) -> None:
        """A 103 followed by a 503 is a 503: retried, then delivered once when the
        service answers 200."""
        answers = iter([b"HTTP/1.1 103 Early Hints\r\n\r\n" + answer(503, b"{}")])

        def respond(request: Request, sock: socket.socket, stop: threading.Event) -> bytes:
            return next(answers, answer(200))

        client, _ = deliver(respond, ["after a 503"])
        s = client.stats()
        assert (1, 1) == (s["sent"], s["retries"])
        assert {"kind": "retry", "status": 503} == {
            k: v for k, v in (s["last_error"] or {}).items() if k != "when"
        }
        assert_adds_up(client, 1)


@contextmanager
def own_reports(*, exit_loss: bool = True) -> Iterator[list[str]]:
    """What the library's logger says while this is open; without the report of lines
    lost at the close (kind ``exit-loss``, which names the last failed attempt again)
    when ``exit_loss`` is False."""
    said: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if exit_loss or getattr(record, KIND_ATTR, None) != "exit-loss":
                said.append(record.getMessage())

    keep = Keep()
    own = logging.getLogger("logdna_client")
    own.addHandler(keep)
    try:
        yield said
    finally:
        own.removeHandler(keep)


def three_unverified_batches(context: ssl.SSLContext) -> tuple[Client, list[Request]]:
    """What ``deliver`` gives for three batches of a line each, over https:// with verify=False."""
    batches = [[line] for line in numbered("unverified", 3)]
    return deliver(
        lambda r, s, e: answer(200), *batches, tls=context, verify=False, flush_interval=60
    )


class TestVerifyOff:
    def test_delivers_where_warnings_are_errors(self, tls: tuple[ssl.SSLContext, Path]) -> None:
        """verify=False against https:// in an application run with warnings as errors
        (``python -W error``): the lines are delivered, once each, and the user is told
        once that verification is off (urllib3's InsecureRequestWarning was raised inside
        every request: nothing was ever sent, every batch retried until the exit)."""
        context, _ = tls
        with own_reports() as said, warnings.catch_warnings():
            warnings.simplefilter("error")
            client, requests_read = three_unverified_batches(context)
        assert numbered("unverified", 3) == texts(requests_read)
        s = client.stats()
        assert (3, 0) == (s["sent"], s["retries"])
        assert 1 == sum("verification is off" in message for message in said), said
        assert_adds_up(client, 3)

    def test_the_applications_own_unverified_requests_still_warn(
        self, tls: tuple[ssl.SSLContext, Path]
    ) -> None:
        """The library's requests warn nothing per request (it said so once), and urllib3's
        warning is not silenced for the rest of the application: its own unverified
        request still raises InsecureRequestWarning where warnings are errors."""
        context, _ = tls
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            client, _ = three_unverified_batches(context)
        assert [] == [w for w in caught if issubclass(w.category, InsecureRequestWarning)]
        with (
            scripted_server(lambda r, s, e: answer(200), tls=context) as server,
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("error")
            with pytest.raises(InsecureRequestWarning):
                requests.post(server.url, data=b"{}", verify=False, timeout=WAIT)
        assert 3 == client.stats()["sent"]


class TestPartialAnswers:
    def test_a_207_longer_than_the_usual_answer_cap_is_read(self) -> None:
        """A 207 for a large batch has a status per line, more than the 64 KiB the client
        reads of other answers: it is read whole, so the one refused line is counted as
        rejected (it was counted as sent, its cut answer read as naming none)."""
        answers: list[tuple[int, int]] = []  # (lines in the request, bytes of the answer)

        def last_refused(request: Request, sock: socket.socket, stop: threading.Event) -> bytes:
            body = orjson.dumps({"status": [200] * (len(request.lines) - 1) + [400]})
            answers.append((len(request.lines), len(body)))
            return answer(207, body)

        client, _ = deliver(
            last_refused, numbered("l", 30_000), flushed=False,
            flush_interval=60, max_batch_bytes="8MiB",
        )  # fmt: skip
        # One request took the batch (then maybe one the drop-summary line).
        assert 30_000 == answers[0][0] and answers[0][1] > MAX_RESPONSE_BYTES, answers
        s = client.stats()
        assert (29_999, 1) == (s["sent"], s["dropped"]["rejected"])
        assert_adds_up(client, 30_000)

    def test_a_207_over_the_partial_answer_cap_counts_what_it_could_not_confirm(
        self,
    ) -> None:
        """A 207 longer than the 1 MiB the client reads of one (here 2 MB: a status per
        line, padded) is read up to the cap, never whole: the refused lines among the
        statuses read are counted as rejected, and the lines past them, which the answer
        read does not confirm as stored, are counted as rejected too, never resent and
        never counted as sent (all were counted as sent: the cut answer read as refusing
        none, the refused lines lost without a count)."""
        bodies: list[bytes] = []

        def padded(request: Request, sock: socket.socket, stop: threading.Event) -> bytes:
            statuses = [b"400" if i in (10, 1990) else b"200" for i in range(len(request.lines))]
            body = b'{"status":[' + b",".join(s + b" " * 1000 for s in statuses) + b"]}"
            bodies.append(body)
            return answer(207, body)

        with own_reports() as reports:
            client, requests = deliver(
                padded, numbered("l", 2000), flushed=False, flush_interval=60
            )
        sent = [t for t in texts(requests) if not t.startswith("logdna_client")]
        # Each line sent once (then, maybe, the drop-summary line alone).
        assert numbered("l", 2000) == sent and len(bodies[0]) > MAX_PARTIAL_BYTES
        read_whole = bodies[0][:MAX_PARTIAL_BYTES].count(b",")  # statuses read to their end
        s = client.stats()
        assert (read_whole - 1, 2000 - read_whole + 1) == (s["sent"], s["dropped"]["rejected"])
        (report,) = [r for r in reports if "rejected" in r]
        assert "unconfirmed" in report, report
        assert_adds_up(client, 2000)

    @pytest.mark.parametrize(("status", "sent"), [(200, 10), (207, 0)])
    def test_an_answer_in_a_coding_the_client_cannot_read(self, status: int, sent: int) -> None:
        """docs/delivery.md: an answer in a coding the client did not ask for (br) is not
        read, and its status decides: a 200 delivers the batch, a 207 confirms none of it
        (rejected). Either way each line is sent once and counted once."""
        body = b"\x8b\x05\x80" + b"not brotli the client could read" + b"\x03"
        client, requests = deliver(
            lambda r, s, e: answer(status, body, b"Content-Encoding: br\r\n"),
            numbered("coded", 10), flushed=sent == 10, flush_interval=60,
        )  # fmt: skip
        assert numbered("coded", 10) == [t for t in texts(requests) if t.startswith("coded")]
        s = client.stats()
        assert (sent, 10 - sent) == (s["sent"], s["dropped"].get("rejected", 0))
        assert_adds_up(client, 10)

    @pytest.mark.parametrize("extra", [[400], [400] * 3, ["bad"] * 1000])
    def test_a_207_refusing_places_beyond_the_batch_refuses_none_of_it(
        self, extra: list[object]
    ) -> None:
        """A 207 whose status array says every line of the batch was stored, then goes on
        refusing places the batch does not have, refuses none of its lines: all count
        as sent (as many were counted as rejected as places it named beyond the end)."""
        client, requests = deliver(
            lambda r, s, e: answer(207, orjson.dumps({"status": [200] * len(r.lines) + extra})),
            numbered("stored", 10), flush_interval=60,
        )  # fmt: skip
        assert 1 == len(requests)
        s = client.stats()
        assert (10, 0) == (s["sent"], s["dropped_total"])
        assert_adds_up(client, 10)


class TestAServerThatRefusesEverything:
    @pytest.mark.parametrize("status", [400, 413])
    def test_the_refused_summary_is_not_sent_again_alone(self, status: int) -> None:
        """Every request refused (a 400 or 413 to any body): the batch is dropped as
        rejected, and its drop summary, refused too, waits for the next batch of
        application lines; it is not sent on its own again. Before (H186): it was, at
        once and again, 1,000 to 1,800 requests a second and most of a core, until
        close(); ``retries`` stayed 0."""
        requests: list[int] = []

        def refuse(request: Request, sock: socket.socket, stop: threading.Event) -> bytes:
            requests.append(len(request.lines))
            return answer(status, b'{"error":"no"}')

        with scripted_server(refuse) as server:
            client = Client(url=server.url, hostname="t", flush_interval=0.05)
            try:
                for line in numbered("refused", 10):
                    client.log(line)
                assert not client.flush(WAIT)  # (dropped: not delivered)
                seen = len(requests)
                # A window for the loop to show itself (it made hundreds of requests in
                # this much time); an event nothing sets, not a sleep for a thread.
                threading.Event().wait(0.5)
                more = len(requests) - seen
            finally:
                client.close(DEADLINE)
            assert more <= 1, (more, requests[-5:])
            s = client.stats()
            assert 10 == s["dropped"]["rejected"]
            assert_adds_up(client, 10)


class TestReportsOfWhatServersSay:
    def test_a_lone_surrogate_in_an_answer_cannot_break_the_apps_log_handler(self) -> None:
        """An answer in a charset that decodes to lone surrogates (unicode_escape and
        "\\ud800") is quoted in the library's report escaped: a handler writing UTF-8
        gets the report (it failed to encode it, the report lost, a "Logging error"
        traceback on stderr instead)."""
        stream = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
        handler = logging.StreamHandler(stream)
        failed: list[logging.LogRecord] = []
        handler.handleError = failed.append  # type: ignore[method-assign]
        own = logging.getLogger("logdna_client")
        own.addHandler(handler)
        body = b'{"error":"bad \\ud800 line"}'
        reply = answer(400, body).replace(
            b"application/json", b"application/json; charset=unicode_escape"
        )
        try:
            client, _ = deliver(lambda r, s, e: reply, ["refused"], flushed=False)
        finally:
            own.removeHandler(handler)
        stream.flush()
        written = stream.buffer.getvalue().decode()  # type: ignore[attr-defined]
        assert [] == failed
        assert "rejected 1 line(s)" in written and "bad \\ud800 line" in written, written
        assert 1 == client.stats()["dropped"]["rejected"]
        assert_adds_up(client, 1)


#: What a scripted connection does with a request: answer these bytes, close without
#: answering (None), or what a Responder does.
Step = bytes | None | Responder


def scripted_connections(
    script_of: Callable[[int], Sequence[Step]],
) -> tuple[Responder, list[str]]:
    """A responder giving the n-th connection the server accepts the steps
    ``script_of(n)`` in turn, then 200s; and the lines of the requests answered 2xx
    (stored)."""
    stored: list[str] = []
    held: list[socket.socket] = []  # held: a socket freed could lend its id to the next one
    seen: dict[int, tuple[int, int]] = {}  # id(sock): (which connection, requests it read)
    lock = threading.Lock()

    def respond(request: Request, sock: socket.socket, stop: threading.Event) -> bytes | None:
        with lock:
            if id(sock) not in seen:
                held.append(sock)
            which, n = seen.get(id(sock), (len(seen), -1))
            seen[id(sock)] = which, n + 1
        script = script_of(which)
        step = script[n + 1] if n + 1 < len(script) else answer(200)
        reply = step(request, sock, stop) if callable(step) else step
        if reply is not None and reply.startswith(b"HTTP/1.1 2"):
            with lock:
                stored.extend(str(line["line"]) for line in request.lines)
        return reply

    return respond, stored


def each_connection(*answers: Step) -> tuple[Responder, list[str]]:
    """A responder giving each connection ``answers`` in turn (None: close it without
    answering), then 200s; and the lines of the requests answered 2xx (stored)."""
    return scripted_connections(lambda which: answers)


def by_connection(*scripts: Sequence[Step]) -> tuple[Responder, list[str]]:
    """A responder giving the n-th connection ``scripts[n]``'s steps in turn, then 200s
    (connections past the scripts: 200s only); and the lines stored."""
    return scripted_connections(lambda which: scripts[which] if which < len(scripts) else ())


def reset_by_the_server(request: Request, sock: socket.socket, stop: threading.Event) -> None:
    """End the connection with a reset (SO_LINGER 0), not a close: the client reads
    ECONNRESET rather than the end of the stream. Closed here: the server's own
    shutdown(SHUT_WR) would send the end of the stream first."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def stall_until_given_up(request: Request, sock: socket.socket, stop: threading.Event) -> None:
    """Never answer: wait until the client ends the connection, then close it."""
    sock.settimeout(WAIT)
    with contextlib.suppress(OSError):
        sock.recv(1)


@contextmanager
def everything_logged() -> Iterator[list[logging.LogRecord]]:
    """Every record any logger makes while this is open (urllib3's DEBUG ones too)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep(logging.DEBUG)
    root = logging.getLogger()
    levels = [(each, each.level) for each in (root, logging.getLogger("urllib3"))]
    root.addHandler(keep)
    for each, _ in levels:
        each.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        root.removeHandler(keep)
        for each, level in levels:
            each.setLevel(level)


def one_retry(
    scripted: tuple[Responder, list[str]], batches: list[list[str]], requests: int, **options: Any
) -> Client:
    """Deliver ``batches`` through ``scripted`` (a responder and what it stored), and check
    that every line was stored once after one counted retry, reported once, with
    ``requests`` requests made and read. Returns the client."""
    respond, stored = scripted
    with own_reports() as said:
        client, read = deliver(respond, *batches, flush_interval=60, **options)
    lines = [line for batch in batches for line in batch]
    assert lines == stored
    assert 1 == sum("sending failed" in each for each in said), said
    s = client.stats()
    assert (len(lines), 1, requests, requests) == (
        s["sent"],
        s["retries"],
        s["requests"],
        len(read),
    )
    assert_adds_up(client, len(lines))
    return client


class TestConnectionsThatEnd:
    @pytest.mark.parametrize("ending", [None, reset_by_the_server], ids=["closed", "reset"])
    def test_a_kept_alive_connection_closed_under_the_next_request(self, ending: Step) -> None:
        """A server that closes (or resets) a kept-alive connection as the next request
        arrives (its idle timeout racing the client) stored nothing of it: the batch is
        sent again at once on a new connection, stored once, never counted as a retry,
        and nothing is reported."""
        respond, stored = each_connection(answer(200), ending)
        batches = [numbered(f"b{batch}", 4) for batch in range(3)]
        with own_reports() as said:
            client, requests = deliver(respond, *batches, flush_interval=60)
        assert [line for batch in batches for line in batch] == stored
        assert [] == said
        s = client.stats()
        assert (12, 0, 0) == (s["sent"], s["retries"], s["dropped_total"])
        assert (5, 5) == (s["requests"], len(requests))  # each resend is a request made
        assert s["last_error"] is None
        assert_adds_up(client, 12)

    def test_a_kept_alive_tls_connection_closed_under_the_next_request(
        self, tls: tuple[ssl.SSLContext, Path]
    ) -> None:
        """The same over https://, the server's TLS connection ending without a
        close_notify: sent again at once, never counted as a retry."""
        context, ca = tls
        respond, stored = each_connection(answer(200), None)
        batches = [numbered(f"tls{batch}", 2) for batch in range(3)]
        with own_reports() as said:
            client, _ = deliver(respond, *batches, tls=context, verify=str(ca), flush_interval=60)
        assert [line for batch in batches for line in batch] == stored
        assert [] == said
        s = client.stats()
        assert (6, 0, 0) == (s["sent"], s["retries"], s["dropped_total"])
        assert_adds_up(client, 6)

    def test_a_new_connection_closed_under_its_first_request_is_a_retry(self) -> None:
        """A new connection the server closes under its first request is no idle
        connection ending: the batch is retried after a backoff, counted and reported."""
        client = one_retry(by_connection([None]), [["first"]], requests=2)
        assert "retry" == (client.stats()["last_error"] or {}).get("kind")

    def test_a_reused_connection_that_fails_twice_is_one_retry(self) -> None:
        """A kept-alive connection closed under a request, then the new connection it is
        sent again on closed too: one counted retry, reported once, and every line is
        stored once."""
        one_retry(by_connection([answer(200), None], [None]), [["one"], ["two"]], requests=4)

    def test_a_kept_alive_connection_that_times_out_is_a_retry(self) -> None:
        """A kept-alive connection on which no answer comes within request_timeout was
        not closed by the server (the client cut it): the batch is retried after a
        backoff, counted and reported, never sent again at once."""
        scripted = by_connection([answer(200), stall_until_given_up])
        one_retry(scripted, [["before"], ["stalled"]], requests=3, request_timeout=0.5)

    def test_the_resend_keeps_the_first_requests_deadline(self) -> None:
        """The request sent again at once ends within request_timeout of the first one's
        start, not a whole request_timeout of its own: a server that held the kept-alive
        connection 2.5 s before closing it, then let the new one hang, costs one
        request_timeout (3 s), not two."""
        times: dict[str, float] = {}

        def hold_then_close(request: Request, sock: socket.socket, stop: threading.Event) -> None:
            times["sent"] = time.monotonic()
            stop.wait(2.5)

        def hang(request: Request, sock: socket.socket, stop: threading.Event) -> None:
            stall_until_given_up(request, sock, stop)
            times["given up"] = time.monotonic()

        respond, stored = by_connection([answer(200), hold_then_close], [hang])
        client, requests = deliver(respond, ["one"], ["two"], request_timeout=3, flush_interval=60)
        assert ["one", "two"] == stored
        assert times["given up"] - times["sent"] < 3 + SLACK
        s = client.stats()
        assert (2, 1, 4, 4) == (s["sent"], s["retries"], s["requests"], len(requests))

    def test_the_resend_keeps_the_close_deadline(self) -> None:
        """A close that begins while the kept-alive connection is closed under a request
        still ends at its deadline: the request sent again at once on a new connection,
        which hangs, is cut there too (far below request_timeout), and its line is
        counted as shutdown."""
        closing = threading.Event()

        def close_when_closing(
            request: Request, sock: socket.socket, stop: threading.Event
        ) -> None:
            closing.wait(WAIT)

        respond, stored = by_connection([answer(200), close_when_closing], [stall_until_given_up])
        with scripted_server(respond) as server:
            client = Client(url=server.url, hostname="t", flush_interval=60, request_timeout=60)
            client.log("one")
            assert client.flush(WAIT)
            client.log("two")
            assert not client.flush(0.2)  # sent, and held by the server
            assert server.wait_for_requests(2, WAIT)
            closing.set()
            took = close_took(client, DEADLINE)
            assert client._sender.thread is not None
            client._sender.thread.join(WAIT)
            assert not client.stats()["sender_alive"]
        assert took < DEADLINE + SLACK, f"close took {took:.2f} s"
        assert ["one"] == stored
        assert 3 == len(server.requests)  # the resend was read, then hung
        s = client.stats()
        # The resend's failure (cut at the deadline) is an ordinary one: counted.
        assert (1, 1, 3, 1) == (s["sent"], s["dropped"]["shutdown"], s["requests"], s["retries"])
        assert_adds_up(client, 2)

    def test_the_key_is_in_nothing_logged(self) -> None:
        """Through a resend at once and a failure after it, nothing any logger records
        (the library's reports, urllib3's DEBUG lines) holds the key."""
        key = "k3y-" + "s" * 28
        respond, stored = by_connection([answer(200), None], [None])
        with everything_logged() as records:
            client, _ = deliver(respond, ["one"], ["two"], key=key, flush_interval=60)
        assert ["one", "two"] == stored
        assert 1 == client.stats()["retries"]
        assert any("sending failed" in record.getMessage() for record in records)
        handler = logging.Handler()
        handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        said = "\n".join(handler.format(record) for record in records)
        assert key not in said
        assert key[4:] not in said

    @pytest.mark.parametrize(
        "first",
        [b'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1 400 Bad\r\n'
         b"Content-Length: 0\r\n\r\n",
         b"HTTP/1.0 200 OK\r\n\r\n{}"],
        ids=["body-past-content-length", "http-1.0-until-close"],
    )  # fmt: skip
    def test_bytes_past_an_answer_are_never_the_next_answer(self, first: bytes) -> None:
        """What a server sends past the end of an answer (a body longer than its
        Content-Length, here a forged 400) is never read as the next request's answer:
        every batch is stored and counted once, none refused."""

        def respond(request: Request, sock: socket.socket, stop: threading.Event) -> bytes | None:
            sock.sendall(first)
            return None if first.startswith(b"HTTP/1.0") else b""

        batches = [[line] for line in numbered("batch", 3)]
        client, requests = deliver(respond, *batches, flush_interval=60)
        assert numbered("batch", 3) == texts(requests)
        s = client.stats()
        assert (3, 0, 0) == (s["sent"], s["retries"], s["dropped_total"])
        assert_adds_up(client, 3)

    def test_a_chunked_answer_that_never_ends_is_a_delivery_once(self) -> None:
        """A 200 whose chunked body never ends is cut at request_timeout and is still a
        delivery: counted as sent once, never sent again."""

        def endless(request: Request, sock: socket.socket, stop: threading.Event) -> None:
            sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            while not stop.wait(0.05):
                sock.sendall(b"1\r\n \r\n")

        client, requests = deliver(endless, numbered("chunked", 5), request_timeout=1)
        assert 1 == len(requests)
        s = client.stats()
        assert (5, 0) == (s["sent"], s["retries"])
        assert_adds_up(client, 5)

    def test_a_200_whose_body_stalls_settles_at_its_status(self) -> None:
        """A 200 whose body stalls after its status line delivered the lines: flush()
        says so within a moment, not at request_timeout (the CLI's send said "not
        delivered: no answer" and exited 1 meanwhile, for lines the service stored)."""

        def stalls(request: Request, sock: socket.socket, stop: threading.Event) -> None:
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{")
            stop.wait()

        started = time.monotonic()
        client, requests = deliver(stalls, numbered("stalled", 5), request_timeout=60)
        assert time.monotonic() - started < WAIT  # deliver's flush(WAIT) was True, too
        assert 1 == len(requests)
        s = client.stats()
        assert (5, 0) == (s["sent"], s["retries"])
        assert_adds_up(client, 5)

    def test_an_otlp_200s_slow_body_is_read_for_its_partial_success(self) -> None:
        """An OTLP 200's body may refuse records (a partial success): it is read however
        long it takes within request_timeout, not settled at the status as the ingest
        API's 200 is."""
        body = b'{"partialSuccess":{"rejectedLogRecords":2}}'

        def slow(request: Request, sock: socket.socket, stop: threading.Event) -> bytes:
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(body))  # fmt: skip
            stop.wait(1.5)
            return body

        client, _ = deliver(slow, numbered("otlp", 5), flushed=False, protocol="otlp")
        s = client.stats()
        assert (3, 2) == (s["sent"], s["dropped"]["rejected"])
        assert_adds_up(client, 5)

    def test_a_chunked_207_cut_short_speaks_for_the_statuses_it_sent(self) -> None:
        """A 207 sent chunked and cut off before its last chunk speaks for the statuses
        its chunks carried whole, as one with a Content-Length does: those lines are
        sent, the rest refused (the chunks read before the cut were lost with it, and
        every line the service had stored was counted as refused)."""
        answers = iter(["cut"])

        def respond(request: Request, sock: socket.socket, stop: threading.Event) -> bytes | None:
            if next(answers, None) is None:
                return answer(200)
            sock.sendall(b"HTTP/1.1 207 Multi-Status\r\nTransfer-Encoding: chunked\r\n\r\n")
            for piece in (b'{"status":[' + b"200," * 10, b"200," * 5):
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            return None  # closed: the last chunk never comes

        client, _ = deliver(respond, numbered("chunked 207", 20), flushed=False)
        s = client.stats()
        assert (15, 5) == (s["sent"], s["dropped"]["rejected"])
        assert_adds_up(client, 20)

    @pytest.mark.parametrize("status", [200, 503])
    def test_an_answer_cut_by_a_reset(self, status: int) -> None:
        """A connection reset after the status line: a 200 is a delivery (counted once,
        not resent), a 503 a failure (retried, then counted once)."""
        answers = iter([status])

        def reset(request: Request, sock: socket.socket, stop: threading.Event) -> bytes | None:
            code = next(answers, None)
            if code is None:
                return answer(200)
            sock.sendall(b"HTTP/1.1 %d X\r\nContent-Length: 100\r\n\r\n{" % code)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return None  # closed with SO_LINGER 0: a reset

        client, requests = deliver(reset, ["reset"])
        s = client.stats()
        retried = status != 200
        assert (1, int(retried), 1 + int(retried)) == (s["sent"], s["retries"], len(requests))
        assert_adds_up(client, 1)


class TestRetryAfterOnATransientFailure:
    @pytest.mark.parametrize("value", [b"-5", b"soon", b"Thu, 01 Jan 1970 00:00:00 GMT", b"nan"])
    def test_an_unusable_value_is_the_clients_own_backoff(self, value: bytes) -> None:
        """A 503 whose Retry-After is negative, garbage, NaN or a date long past is
        retried on the client's own backoff (not parked, not hammered) and delivered."""
        busy = answer(503, b"{}", b"Retry-After: " + value + b"\r\n")
        respond, stored = each_connection(busy)
        client, _ = deliver(respond, ["after a 503"])
        assert ["after a 503"] == stored
        assert (1, 1) == (client.stats()["sent"], client.stats()["retries"])
        assert_adds_up(client, 1)

    def test_a_reset_while_the_request_is_uploaded_is_retried(self) -> None:
        """A server that resets the connection while the client is still sending the
        body (it read only the head) stored nothing: the batch is retried, stored once,
        counted once."""
        resets = iter([True])
        stored: list[int] = []

        def respond(request: Request, sock: socket.socket, stop: threading.Event) -> bytes | None:
            if next(resets, False):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return None
            body = request.body
            while len(body) < int(request.headers["content-length"]):
                body += sock.recv(1 << 20)
            stored.append(len(Request(request.headers, body).lines))
            return answer(200)

        client, _ = deliver(
            respond, [f"upload {i} " + "u" * 1000 for i in range(2000)],
            read_body=False, receive_buffer=4096,
            flush_interval=60, compress=False, max_batch_bytes="8MiB",
        )  # fmt: skip
        assert [2000] == stored
        s = client.stats()
        assert (2000, 1) == (s["sent"], s["retries"])
        assert_adds_up(client, 2_000)

    def test_an_idle_connection_the_server_closed_is_not_used(self) -> None:
        """A server that closes each connection after its answer (no "Connection: close"
        said): the next batch goes over a new connection, with no failed attempt."""

        closed = threading.Semaphore(0)

        def answer_then_close(request: Request, sock: socket.socket, stop: threading.Event) -> None:
            sock.sendall(answer(200))
            sock.shutdown(socket.SHUT_RDWR)
            closed.release()

        with scripted_server(answer_then_close) as server:
            client = Client(url=server.url, hostname="t", flush_interval=60)
            for batch in range(3):
                client.log(f"batch {batch}")
                assert client.flush(WAIT)
                assert closed.acquire(timeout=WAIT)  # closed before the next batch goes
            client.close(DEADLINE)
            assert [f"batch {i}" for i in range(3)] == texts(server.requests)
        assert (3, 0) == (client.stats()["sent"], client.stats()["retries"])
        assert_adds_up(client, 3)


#: Header sections http.client or urllib3 refuse after a status line they read: more
#: than 100 header lines, a line over 64 KiB, two different Content-Lengths.
BROKEN_HEADERS = {
    "too-many": b"X-Hop: proxy\r\n" * 150 + b"Content-Length: 0\r\n\r\n",
    "too-long": b"X-Trace: " + b"t" * 70_000 + b"\r\nContent-Length: 0\r\n\r\n",
    "two-lengths": b"Content-Length: 15\r\nContent-Length: 2\r\n\r\n" + b'{"status":"ok"}',
}


class TestHeadersPastTheStatusLine:
    @pytest.mark.parametrize("headers", BROKEN_HEADERS.values(), ids=BROKEN_HEADERS.keys())
    def test_a_200_with_a_broken_header_section_is_a_delivery(self, headers: bytes) -> None:
        """A 200 whose headers cannot be read (too many, too long, contradicting each
        other) still said the lines were stored, as a 200 with a broken body does:
        counted as sent once, never sent again (each was retried without end, stored
        every time, never counted)."""
        client, requests = deliver(
            lambda r, s, e: b"HTTP/1.1 200 OK\r\n" + headers, numbered("headers", 5)
        )
        assert numbered("headers", 5) == texts(requests)
        s = client.stats()
        assert (5, 0, 0) == (s["sent"], s["retries"], s["dropped_total"])
        assert_adds_up(client, 5)

    @pytest.mark.parametrize("headers", BROKEN_HEADERS.values(), ids=BROKEN_HEADERS.keys())
    def test_a_413_with_a_broken_header_section_still_splits(self, headers: bytes) -> None:
        """A 413 to a batch of two lines, with a header section that cannot be read, is
        still a 413: the batch is split and each line delivered (it was retried whole,
        without end)."""

        def too_large_for_two(
            request: Request, sock: socket.socket, stop: threading.Event
        ) -> bytes:
            if len(request.lines) > 1:
                return b"HTTP/1.1 413 Too Large\r\n" + headers
            return answer(200)

        client, _ = deliver(too_large_for_two, ["one", "two"], flush_interval=60)
        s = client.stats()
        assert (2, 0, 0) == (s["sent"], s["retries"], s["dropped_total"])
        assert_adds_up(client, 2)

    def test_a_proxys_answer_to_connect_is_not_the_services(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Through an HTTPS proxy, the proxy's "200 Connection established" is not the
        service's answer: a tunnel whose TLS handshake then stalls is a failed request,
        retried, its line never counted as sent."""

        def tunnel_then_stall(request: Request, sock: socket.socket, stop: threading.Event) -> None:
            sock.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            stop.wait(60)  # the client's TLS hello is never answered

        for name in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
            monkeypatch.delenv(name, raising=False)
        with scripted_server(tunnel_then_stall) as proxy:
            monkeypatch.setenv("https_proxy", proxy.url.replace("/logs/ingest", ""))
            monkeypatch.setenv("HTTPS_PROXY", proxy.url.replace("/logs/ingest", ""))
            client = Client(
                key="k" * 32, url="https://logs.example/logs/ingest", hostname="t",
                flush_interval=0.05,
                request_timeout=0.5, retry_max_backoff=0.2,
            )  # fmt: skip
            client.log("through the proxy")
            assert proxy.wait_for_requests(2, WAIT), "the first request was never retried"
            s = client.stats()
            assert (0, 1) == (s["sent"], s["queued"]), s
            assert s["retries"] >= 1
            client.close(0)
        assert_adds_up(client, 1)


#: What servers that cannot speak HTTP/1.1 to the client answer with, and what the
#: library's report says of each: an HTTP/2-only endpoint (its connection preface, a
#: SETTINGS frame, then a GOAWAY), a TLS port behind an http:// URL (an alert record), a
#: status line over 64 KiB that is no status line, and another protocol altogether.
NOT_HTTP_1_1 = {
    "h2": (
        b"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64"
        b"\x00\x00\x08\x07\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01",
        "answered in HTTP/2",
    ),
    "tls": (b"\x15\x03\x03\x00\x02\x02\x46", "answered in TLS"),
    "status-line-over-64k": (b"x" * 70_000 + b"\r\n\r\n", "status line over 64 KiB"),
    "ssh": (b"SSH-2.0-OpenSSH_9.6\r\n", "answered 'SSH-2.0-OpenSSH_9.6\\r\\n'"),
}


class TestServersThatDoNotSpeakHTTP11:
    @pytest.mark.parametrize(("reply", "said"), NOT_HTTP_1_1.values(), ids=NOT_HTTP_1_1.keys())
    def test_reported_once_and_retried_slowly(self, reply: bytes, said: str) -> None:
        """A server that does not answer in HTTP/1.1 is a misconfiguration, not a
        passing failure: reported once at ERROR, saying what it answered in, the lines
        kept, and retried at the slow pace of a refused key, not the quick backoff of a
        transient failure (with a backoff whose jitter draws 0, that was a new
        connection after another, without end, each reported as a failed connection)."""

        def respond(request: Request, sock: socket.socket, stop: threading.Event) -> None:
            sock.sendall(reply)

        with own_reports() as reports, scripted_server(respond) as server:
            client = Client(
                url=server.url, hostname="t", flush_interval=0.05,
                backoff=Backoff(cap=60, rand=lambda: 0.0),
            )  # fmt: skip
            client.log("kept")
            assert server.wait_for_requests(1, WAIT)
            assert not client.flush(1.0)
            requests_made = len(server.requests)
            s = client.stats()
            client.close(0)
        assert 1 == requests_made
        assert (1, 0, 1) == (s["queued"], s["dropped_total"], s["retries"])
        assert "protocol" == (s["last_error"] or {}).get("kind"), s
        (report,) = [r for r in reports if "does not speak HTTP/1.1" in r]
        assert said in report and "127.0.0.1" in report and "check the url" in report, report
        assert_adds_up(client, 1)

    @pytest.mark.parametrize("status", [200, 503])
    def test_a_status_line_over_64_kib_still_says_its_status(self, status: int) -> None:
        """A status line whose reason phrase runs past 64 KiB still begins with its
        status, which decides, as it does for a header section that cannot be read: a
        200 is a delivery, counted once and never sent again; a 503 is retried."""
        answers = iter([status])

        def long_reason(request: Request, sock: socket.socket, stop: threading.Event) -> bytes:
            code = next(answers, 200)
            return b"HTTP/1.1 %d " % code + b"r" * 70_000 + b"\r\nContent-Length: 0\r\n\r\n"

        client, requests = deliver(long_reason, numbered("long", 5))
        s = client.stats()
        retried = int(status != 200)
        assert (5, retried, 1 + retried) == (s["sent"], s["retries"], len(requests))
        assert_adds_up(client, 5)


class TestAnEndpointThatTakesNoJSON:
    def test_reported_once_and_retried_slowly(self) -> None:
        """A 415 to plain JSON too (gzip already turned off by the first 415: an OTLP
        endpoint that takes only protobuf, say) is settings to fix, not a passing
        failure: reported once at ERROR with what to check, the lines kept, and retried
        at the slow pace (with a backoff whose jitter draws 0 it was a new request
        after another, each reported as a failed send)."""
        with (
            own_reports(exit_loss=False) as reports,
            scripted_server(lambda r, s, e: answer(415)) as server,
        ):
            client = Client(
                url=server.url, hostname="t", flush_interval=0.05,
                backoff=Backoff(cap=60, rand=lambda: 0.0),
            )  # fmt: skip
            client.log("kept")
            assert server.wait_for_requests(2, WAIT)
            assert not client.flush(1.0)
            bodies = [r.headers.get("content-encoding") for r in server.requests]
            s = client.stats()
            client.close(0)
        assert ["gzip", None] == bodies  # once gzipped, once plain, then the slow pace
        assert (1, 0) == (s["queued"], s["dropped_total"])
        assert "unsupported_encoding" == (s["last_error"] or {}).get("kind"), s
        (report,) = [r for r in reports if "HTTP 415" in r and "media type" in r]
        assert "check the url option" in report, report
        assert_adds_up(client, 1)


def no_gzip(plain: Callable[[Request], bytes]) -> Callable[..., bytes]:
    """A server that answers 400 to every gzip body (it cannot read them) and ``plain``
    to a plain one."""

    def respond(request: Request, sock: socket.socket, stop: threading.Event) -> bytes:
        if request.headers.get("content-encoding") == "gzip":
            return answer(400, b'{"error":"cannot parse the body"}')
        return plain(request)

    return respond


class TestServersThatCannotReadGzip:
    def test_a_plain_body_too_large_is_split_not_rejected(self) -> None:
        """A server that cannot read gzip (400) and takes plain bodies only up to 100 KB
        (413): the batch is split and sent plain, every line delivered in order (the 413
        to the first plain try settled the question for gzip, so the halves went gzip,
        got 400 and every line was dropped as rejected)."""

        def small_plain(request: Request) -> bytes:
            if len(request.body) > 100_000:
                return answer(413, b'{"error":"too large"}')
            return answer(200)

        client, requests = deliver(
            no_gzip(small_plain), [f"line {i} " + "x" * 100 for i in range(2000)],
            flush_interval=60,
        )  # fmt: skip
        stored = [
            str(line["line"]).split()[1]
            for r in requests
            if r.headers.get("content-encoding") != "gzip" and len(r.body) <= 100_000
            for line in r.lines
        ]
        assert [str(i) for i in range(2000)] == stored
        s = client.stats()
        assert (2000, 0) == (s["sent"], s["dropped_total"])
        assert_adds_up(client, 2000)

    def test_a_plain_try_that_fails_for_now_decides_nothing(self) -> None:
        """A server that cannot read gzip (400), whose first answer to the plain body is
        a 503: the line is retried, plain again after the next 400, and delivered (the
        503 settled the question for gzip, and the line was dropped as rejected)."""
        plain_answers = iter([answer(503, b"{}")])
        client, _ = deliver(no_gzip(lambda r: next(plain_answers, answer(200))), ["plain at last"])
        s = client.stats()
        assert (1, 1, 0) == (s["sent"], s["retries"], s["dropped_total"])
        assert_adds_up(client, 1)


class TestCookies:
    def test_cookies_an_endpoint_sets_are_never_kept_or_sent(self) -> None:
        """An endpoint setting new cookies with every answer (a hostile one, or a proxy
        that tracks) cannot make the client keep them: no request carries a Cookie
        header (they piled up without end, every request carrying all of them, until
        the service refused the headers as too large)."""
        answers = itertools.count()

        def new_cookies(request: Request, sock: socket.socket, stop: threading.Event) -> bytes:
            n = next(answers)
            cookies = b"".join(
                b"Set-Cookie: c%d_%d=%s; Path=/\r\n" % (n, i, b"v" * 100) for i in range(50)
            )
            return answer(200, b'{"status":"ok"}', cookies)

        batches = [[line] for line in numbered("batch", 5)]
        client, requests = deliver(new_cookies, *batches, flush_interval=60)
        assert 5 == len(requests)
        assert [None] * 5 == [r.headers.get("cookie") for r in requests]
        assert_adds_up(client, 5)


class TestCredentialsFromElsewhere:
    @pytest.mark.parametrize("auth", ["apikey", "basic", "bearer", "pipeline"])
    def test_a_netrc_entry_is_never_sent(
        self, auth: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A ~/.netrc whose entry matches the endpoint (a "default" entry matches any)
        adds nothing: each request carries the key in its one header, and the netrc
        password never reaches the endpoint (requests added it as Basic auth: sent to
        the log service beside the apikey header, or in place of the key)."""
        netrc = tmp_path / "netrc"
        netrc.write_text("default login someone password netrc-password-9f1c\n")
        netrc.chmod(0o600)
        monkeypatch.setenv("NETRC", str(netrc))
        key = "nk" * 16
        client, requests = deliver(lambda r, s, e: answer(200), ["no netrc"], key=key, auth=auth)
        headers = requests[0].headers
        sent = {
            name: value for name, value in headers.items() if name in ("apikey", "authorization")
        }
        assert [(auth, key)] == credentials_in(sent.items()), sent
        assert_adds_up(client, 1)


class TestTheApplicationNeverWaits:
    def test_logging_while_the_sender_is_stuck_uploading(self) -> None:
        """While the sender is stuck writing a body a server never reads, and the buffer
        is full, logging calls neither raise nor wait: each returns at once (no call
        near the second the stuck request could hold it), the lines that do not fit are
        counted as buffer_full, and close() keeps its deadline."""

        def never_answer(request: Request, sock: socket.socket, stop: threading.Event) -> None:
            stop.wait(60)

        with scripted_server(never_answer, read_body=False, receive_buffer=4096) as server:
            client = Client(
                url=server.url, hostname="t", flush_interval=0.05, compress=False,
                max_buffer_bytes="2MiB", max_batch_bytes="1MiB", request_timeout=60,
            )  # fmt: skip
            filler = "s" * 1000
            for i in range(1500):  # 1.5 MB: a batch the server will never finish reading
                client.log(f"first {i} {filler}")
            assert server.wait_for_requests(1, WAIT)
            worst = 0.0
            for i in range(20_000):
                started = time.monotonic()
                client.log(f"stuck {i} {filler}")
                worst = max(worst, time.monotonic() - started)
            s = client.stats()
            assert s["dropped"]["buffer_full"] > 0, s
            took = close_took(client, DEADLINE)
        assert worst < 0.5, f"a logging call took {worst:.3f} s"
        assert took < DEADLINE + SLACK, f"close took {took:.2f} s"
        assert_adds_up(client, 21_500)


#: A child that makes one request through a transport (its imports and first
#: connection's memory counted before), then the one answered with a compression bomb,
#: and prints that outcome and how much its peak memory grew meanwhile, in KiB.
_BOMB_CHILD = """
import json, resource, sys
import urllib3
from logdna_client import Config
from logdna_client._transport import HTTPTransport

transport = HTTPTransport(Config(key="k" * 32, url=sys.argv[1], hostname="h"))
body = b'{"lines":[{"line":"a"},{"line":"b"},{"line":"c"}]}'
first = transport.send(body, gzipped=False, timeout=60.0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
outcome = transport.send(body, gzipped=False, timeout=60.0)
grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
transport.close()
print(json.dumps({"first": first.kind.value, "kind": outcome.kind.value,
                  "rejected": outcome.rejected, "grew_kib": grew, "urllib3": urllib3.__version__}))
"""

#: What a bomb decodes to: zeros, then the bytes that say so.
BOMB_MIB = 128


def compressed(coding: str, chunks: Iterator[bytes]) -> bytes:
    """``chunks`` compressed as Content-Encoding ``coding`` (gzip, or zlib-wrapped deflate)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS if coding == "gzip" else 15)
    return b"".join(packer.compress(chunk) for chunk in chunks) + packer.flush()


@functools.cache
def bomb(coding: str) -> bytes:
    """A 207 answer in ``coding``: about 130 KB that decode to 128 MiB of zeros and then
    a status array refusing the second line (never reached under the caps)."""
    zeros = bytes(1 << 20)
    body = compressed(coding, itertools.chain(
        itertools.repeat(zeros, BOMB_MIB), [b'{"status":[200,400,200]}']
    ))  # fmt: skip
    head = b"HTTP/1.1 207 Multi\r\nContent-Type: application/json\r\nContent-Encoding: %s\r\n"
    return head % coding.encode() + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


class TestCompressedAnswers:
    @pytest.mark.parametrize("coding", ["gzip", "deflate"])
    def test_a_compression_bomb_costs_the_sender_little(self, coding: str) -> None:
        """An answer of 130 KB that decodes to 128 MiB (within the 1 MiB a 207 may take,
        64 KiB for others, as sent) costs the sender little memory on every supported
        urllib3: the caps bound what it decodes to (urllib3 before 2.6 decoded each read
        whole: the peak grew by about 256 MiB here, and a 1 MiB answer took 1 GB)."""
        answers = iter([answer(200)])

        def respond(request: Request, sock: socket.socket, stop: threading.Event) -> bytes:
            return next(answers, None) or bomb(coding)

        with scripted_server(respond) as server:
            run = subprocess.run(
                [sys.executable, "-c", _BOMB_CHILD, server.url], capture_output=True,
                text=True, timeout=120, env=dict(os.environ, PYTHONPATH=REPO), check=False,
            )  # fmt: skip
        assert 0 == run.returncode, run.stderr[-2000:]
        said = orjson.loads(run.stdout)
        assert ("ok", "partial") == (said["first"], said["kind"]), said
        assert said["grew_kib"] < 50 * 1024, said

    def test_no_compressed_answer_is_asked_for(self) -> None:
        """The client asks for answers as they are (requests asked for gzip and deflate,
        urllib3 for br and zstd too where installed): the service's are tiny, and a
        compressed one is the server's choice, decoded only under the caps."""
        client, requests = deliver(lambda r, s, e: answer(200), ["plain"])
        assert ["identity"] == [r.headers.get("accept-encoding") for r in requests]
        assert 1 == client.stats()["sent"]

    @pytest.mark.parametrize(
        "coding", ["gzip", "x-gzip", "deflate", "raw-deflate", "gzip-members", "identity"]
    )
    def test_a_207_sent_compressed_still_says_which_line_was_refused(self, coding: str) -> None:
        """An answer the server compressed anyway is read: a 207 in gzip (also two gzip
        members), deflate with or without its zlib wrapping, refuses its line."""
        statuses = b'{"status":[200,400,200]}'
        if coding == "raw-deflate":  # what some servers send as "deflate"
            packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
            body, coding = packer.compress(statuses) + packer.flush(), "deflate"
        elif coding == "gzip-members":
            body, coding = gzip.compress(statuses[:10]) + gzip.compress(statuses[10:]), "gzip"
        elif coding == "identity":
            body = statuses
        else:
            body = compressed("gzip" if "gzip" in coding else "deflate", iter([statuses]))
        reply = answer(207, body, b"Content-Encoding: %s\r\n" % coding.encode())
        client, requests = deliver(
            lambda r, s, e: reply, numbered("line", 3), flushed=False, flush_interval=60
        )
        s = client.stats()
        assert numbered("line", 3) == texts(requests[:1])  # then, the drop-summary line
        assert (2, 1) == (s["sent"], s["dropped"]["rejected"])
        assert_adds_up(client, 3)

    def test_an_answer_in_a_coding_not_read_is_decided_by_its_status(self) -> None:
        """An answer in a coding the client does not decode (br, zstd, one over another)
        is not read: its status decides, and the report says why it quotes nothing."""
        reply = answer(400, b"\x8b\x02\x80bad line\x03", b"Content-Encoding: br\r\n")
        with own_reports() as said:
            client, _ = deliver(lambda r, s, e: reply, ["refused"], flushed=False)
        assert (1, 0) == (client.stats()["dropped"]["rejected"], client.stats()["retries"])
        assert any("Content-Encoding 'br', not read" in message for message in said), said
        assert_adds_up(client, 1)

    def test_an_endless_answer_that_decodes_to_nothing_is_not_read_to_its_end(self) -> None:
        """A gzip answer of empty blocks without end (it never decodes past its cap) is
        read only so far, as sent: a 200 is a delivery at once (it held the sender until
        request_timeout cut it, a minute here)."""

        def endless(request: Request, sock: socket.socket, stop: threading.Event) -> None:
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n")
            sock.sendall(b"Transfer-Encoding: chunked\r\n\r\n")
            # gzip's header, then stored blocks of no bytes (not the last), 5 bytes each.
            empty = b"\x00\x00\x00\xff\xff" * 10_000
            head = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
            sock.sendall(b"%x\r\n%s\r\n" % (len(head), head))
            try:
                while not stop.is_set():
                    sock.sendall(b"%x\r\n%s\r\n" % (len(empty), empty))
            except OSError:
                return

        client, _ = deliver(endless, numbered("endless", 5), request_timeout=60)
        s = client.stats()
        assert (5, 0) == (s["sent"], s["retries"])
        assert_adds_up(client, 5)
