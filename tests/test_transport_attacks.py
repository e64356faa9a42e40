"""The transport against servers that try to pass a failure that may pass off as a
misconfiguration (an https:// url to a port that does not speak TLS), and answers that
try to have lines counted sent that no answer confirmed. Each is a real server on
loopback, or the answer a real server sent as the transport reads it."""

from __future__ import annotations

import gzip
import os
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest

from logdna_client import Client, Config
from logdna_client._devserver import DevServer
from logdna_client._transport import HTTPTransport, Kind, Outcome
from tests import test_hostile_endpoints
from tests._claims_servers import Request, Responder, answer, scripted_server
from tests.test_claims_hostile import WAIT

KEY = "k" * 20 + "secret" + "k" * 6
BODY = b'{"lines":[{"line":"x"}]}'
OK = b'HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{"status":"ok"}'
PLAIN_503 = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"

tls = test_hostile_endpoints.tls  # the fixture: a TLS context for 127.0.0.1, and its certificate

Behaviour = Callable[[socket.socket, threading.Event], None]


@contextmanager
def raw_server(behave: Behaviour) -> Iterator[int]:
    """A loopback port whose every connection ``behave`` handles on a thread of its own;
    its event is set when the block ends (to stop waiting)."""
    listener = socket.create_server(("127.0.0.1", 0))
    ending = threading.Event()

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    def handle(conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(WAIT)
                behave(conn, ending)
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        ending.set()
        try:  # wakes the accept() under way (closing alone does not, on Linux)
            listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        listener.close()
        thread.join(WAIT)


def send(
    port: int, times: int = 1, timeout: float = 10, verify: bool | str = False
) -> list[Outcome]:
    """What the transport made of ``times`` requests to ``port`` over https://."""
    url = f"https://127.0.0.1:{port}/logs/ingest"
    transport = HTTPTransport(Config(key=KEY, url=url, hostname="h", verify=verify))
    try:
        return [transport.send(BODY, gzipped=False, timeout=timeout) for _ in range(times)]
    finally:
        transport.close()


def read_request(sock: socket.socket | ssl.SSLSocket) -> None:
    """Read one request's head and its Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the request ended early")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    fields = dict(line.split(b":", 1) for line in head.split(b"\r\n")[1:])
    length = int({k.lower(): v for k, v in fields.items()}.get(b"content-length", b"0"))
    while len(body) < length:
        body += sock.recv(65536)


class TestATLSServerIsNoPlainHTTPPort:
    @pytest.mark.parametrize("served_first", [1, 0], ids=["kept-alive", "new-connection"])
    def test_plain_bytes_after_the_handshake_are_a_failure_that_passes(
        self, tls: tuple[ssl.SSLContext, Path], served_first: int
    ) -> None:
        """A server that completed the TLS handshake (and answered over it) speaks TLS:
        plain bytes where a TLS record should be (a middlebox, a server restarting) are a
        TLS error retried as any, not a port that "does not speak TLS" with the advice to
        change a correct https:// url to http://."""
        context, ca = tls

        def tls_then_plain(conn: socket.socket, ending: threading.Event) -> None:
            with context.wrap_socket(conn, server_side=True) as secure:
                for _ in range(served_first):
                    read_request(secure)
                    secure.sendall(OK)
                read_request(secure)
                os.write(secure.fileno(), PLAIN_503)  # past TLS, on the socket itself
                ending.wait(WAIT)

        with raw_server(tls_then_plain) as port:
            outcomes = send(port, times=served_first + 1, verify=str(ca))
        assert [Kind.OK] * served_first == [o.kind for o in outcomes[:-1]], outcomes
        last = outcomes[-1]
        assert Kind.RETRY is last.kind, last
        assert last.detail.startswith("TLS error:"), last.detail
        assert "http://" not in last.detail and "secret" not in last.detail

    def test_a_bad_certificate_stays_a_verification_error(
        self, tls: tuple[ssl.SSLContext, Path]
    ) -> None:
        """A real TLS server whose certificate does not verify: a TLS error that says so,
        not a misconfigured protocol."""
        context, _ = tls

        def answer(conn: socket.socket, ending: threading.Event) -> None:
            with context.wrap_socket(conn, server_side=True) as secure:
                read_request(secure)
                secure.sendall(OK)

        with raw_server(answer) as port:
            (outcome,) = send(port, verify=True)
        assert Kind.RETRY is outcome.kind, outcome
        assert "CERTIFICATE_VERIFY_FAILED" in outcome.detail, outcome.detail


def _silent(conn: socket.socket, ending: threading.Event) -> None:
    ending.wait(WAIT)


def _closes(conn: socket.socket, ending: threading.Event) -> None:
    pass  # closed on return


def _resets(conn: socket.socket, ending: threading.Event) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _alert(description: int) -> Behaviour:
    def alert(conn: socket.socket, ending: threading.Event) -> None:
        conn.recv(65536)
        conn.sendall(bytes([0x15, 3, 3, 0, 2, 2, description]))  # a fatal TLS alert
        ending.wait(WAIT)

    return alert


def _half_a_record(conn: socket.socket, ending: threading.Event) -> None:
    conn.recv(65536)
    conn.sendall(b"\x16\x03")
    ending.wait(WAIT)


def _plain_http_later(conn: socket.socket, ending: threading.Event) -> None:
    conn.recv(65536)
    conn.recv(1)  # the end: the client gave up waiting for an answer
    conn.sendall(PLAIN_503)


#: Servers whose failure may pass, each a request retried as any (kind RETRY): none
#: may be reported as an https:// url to a port that does not speak TLS.
PASSING = {
    "never-answers": _silent,
    "closes-at-once": _closes,
    "resets-at-once": _resets,
    "handshake-failure-alert": _alert(40),
    "protocol-version-alert": _alert(70),
    "half-a-record-then-silence": _half_a_record,
    "plain-http-after-the-timeout": _plain_http_later,
}


class TestFailuresThatPass:
    @pytest.mark.parametrize("behave", PASSING.values(), ids=PASSING.keys())
    def test_retried_not_reported_as_a_protocol(self, behave: Behaviour) -> None:
        """A TLS server slow to answer the handshake, one that closes or resets at once,
        one that sends an alert, a plain HTTP server that answers the ClientHello only
        after the request timed out: failures that may pass, not misconfigurations."""
        with raw_server(behave) as port:
            (outcome,) = send(port, timeout=1.0)
        assert Kind.RETRY is outcome.kind, outcome
        assert "does not speak" not in outcome.detail and "secret" not in outcome.detail


def _script(*answers: bytes) -> Responder:
    """Answers each request with the next of ``answers``, then with 200."""
    left = iter(answers)
    return lambda request, sock, ending: next(left, answer(200))


def deliver(respond: Responder, *batches: list[str]) -> tuple[tuple[int, int], object, list[str]]:
    """Each of ``batches`` logged and flushed in turn: the (sent, rejected) counted,
    nothing left queued, the kind of ``last_error`` (None: none), and the texts of the
    lines the server was sent, in order."""
    with scripted_server(respond) as server:
        client = Client(url=server.url, hostname="t", flush_interval=60)
        for batch in batches:
            for text in batch:
                client.log(text)
            client.flush(WAIT)
        s = client.stats()
        client.close(WAIT)
        requests = server.requests
    assert 0 == s["queued"], s
    texts: list[str] = []
    for request in requests:
        body = gzip.decompress(request.body)
        texts += [str(line["line"]) for line in orjson.loads(body)["lines"]]
    failed = None if s["last_error"] is None else s["last_error"]["kind"]
    return (s["sent"], s["dropped"].get("rejected", 0)), failed, texts


#: 207 answers to a batch of three lines, and the (sent, rejected) they count.
HOSTILE_207S = {
    "more-statuses-than-lines": (b'{"status": [200, 200, 200, 400, 400]}', (3, 0)),
    "statuses-no-integers": (b'{"status": [200.0, "ok", null]}', (1, 2)),
    "negative-and-huge": (b'{"status": [-200, 99999999999999999999999, 200]}', (1, 2)),
    "a-key-twice": (b'{"status": [400, 400, 400], "status": [200, 200, 201]}', (3, 0)),
    # What orjson refuses and JSON's own module reads: the statuses still say which.
    "past-a-double": (b'{"status": [200, 1e400, 200]}', (2, 1)),
    "a-lone-surrogate": (b'{"status": [200, 400, 200], "error": "line \\ud800 bad"}', (2, 1)),
}


class TestHostile207s:
    @pytest.mark.parametrize(("body", "counted"), HOSTILE_207S.values(), ids=HOSTILE_207S.keys())
    def test_each_line_counted_once_as_its_status_says(
        self, body: bytes, counted: tuple[int, int]
    ) -> None:
        """A 207 counts each line of the batch once, sent only where its status says
        2xx, and sends none again: statuses past the batch refuse nothing of it, one
        that is no 2xx integer (a float, a word, negative, huge) refuses its line. An
        answer orjson cannot read but JSON's own module can (a lone surrogate escaped,
        as json.dumps writes one; a number past a double) was taken for one with no
        status array, and its stored lines counted as rejected. ``last_error`` says
        "partial" when lines of the batch were refused, and only then."""
        lines = [f"line {i}" for i in range(3)]
        got, failed, stored = deliver(_script(answer(207, body)), lines)
        assert counted == got
        assert ("partial" if counted[1] else None) == failed
        assert lines == stored[:3]  # once each
        assert all(text.startswith("logdna_client:") for text in stored[3:]), stored

    def test_a_207_to_half_of_a_split_batch(self) -> None:
        """413, then a 207 to the first half: its statuses speak for that half only, the
        other half is sent once, and no line is counted twice."""
        script = _script(answer(413), answer(207, b'{"status": [400, 200, 200]}'))
        lines = [f"line {i}" for i in range(4)]
        got, failed, stored = deliver(script, lines)
        assert ((3, 1), "partial") == (got, failed)
        # The whole batch refused for its size, then each half once.
        assert lines + lines == stored[:8], stored
        assert all(text.startswith("logdna_client:") for text in stored[8:]), stored

    def test_a_207_that_refuses_the_drop_summary(self) -> None:
        """The drop-summary line refused by a 207 (wherever in its batch) is neither
        sent nor rejected: no summary of a summary, no line counted twice. Not stored,
        its drops are told again with the next batch of application lines ("c"), as
        after a 400, and only with one: none follows once no app line comes (H193: taken
        as told, a refused summary's drops were never told)."""

        def refuse_b_and_summaries(request: Request, sock: socket.socket, e: object) -> bytes:
            texts = [str(line["line"]) for line in request.lines]
            refused = [t == "b" or t.startswith("logdna_client:") for t in texts]
            return answer(207, orjson.dumps({"status": [400 if r else 200 for r in refused]}))

        got, failed, stored = deliver(refuse_b_and_summaries, ["a", "b"], ["c"])
        assert ((2, 1), "partial") == (got, failed)
        summary = "logdna_client: 1 lines dropped (1 rejected)"
        assert ["a", "b", summary, "c", summary] == stored, stored


class TestAnAnswerNotClassified:
    def test_a_2xx_is_never_sent_again(
        self, server: DevServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Whatever fails in reading a 2xx answer (here a stand-in for a bug: int() of
        over 4,300 digits raised so), the batch is not confirmed stored, and not a
        failed request: as one, it was sent again without end, stored each time."""

        def chokes(*args: object, **kwargs: object) -> Outcome:
            raise ValueError("Exceeds the limit (4300 digits) for integer string conversion")

        transport = HTTPTransport(Config(key=KEY, url=server.url, hostname="h"))
        monkeypatch.setattr(transport, "_classify", chokes)
        try:
            outcome = transport.send(BODY, gzipped=False, timeout=10)
        finally:
            transport.close()
        assert (Kind.PARTIAL, 200, 0) == (outcome.kind, outcome.status, outcome.answered)
        assert "ValueError" in outcome.detail, outcome.detail
