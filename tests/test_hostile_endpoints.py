"""Delivery promises against endpoints that answer in ways a client must survive: a
charset nobody knows, a Retry-After nobody can read, interim (1xx) answers before the
real one, a 207 too long for the usual answer cap, keep-alive connections that die
under the next request. Each is a real server on loopback (tests/_claims_servers.py).

What must hold: an answer the service gave is taken as given (never turned into a
retry that stores the lines again and again), every line is delivered or counted
once, and close() keeps its deadline."""

from __future__ import annotations

import pytest

from logdna_client import Client
from logdna_client._retry import parse_retry_after
from tests._claims_servers import Request, answer, scripted_server
from tests.test_claims_hostile import DEADLINE, WAIT, assert_accounted


def texts(requests: list[Request]) -> list[str]:
    return [str(line["line"]) for request in requests for line in request.lines]


class TestAnswersInOddCharsets:
    @pytest.mark.parametrize("charset", ["no-such-charset", "idna", "rot13"])
    def test_a_200_in_a_charset_python_cannot_decode_is_a_delivery(self, charset: str) -> None:
        """A 200 whose Content-Type names a charset Python does not know (or a codec
        that is not a text encoding) is still the service saying it stored the lines:
        counted as sent once and never sent again (it was retried without end, every
        retry stored again, none counted)."""
        head = f"Content-Type: application/json; charset={charset}\r\n".encode()
        reply = b"HTTP/1.1 200 OK\r\n" + head + b'Content-Length: 15\r\n\r\n{"status":"ok"}'
        with scripted_server(lambda r, s, e: reply) as server:
            client = Client(url=server.url, hostname="t", flush_interval=0.05)
            for i in range(5):
                client.log(f"charset {i}")
            assert client.flush(WAIT)
            client.close(DEADLINE)
            requests = server.requests
        assert [f"charset {i}" for i in range(5)] == texts(requests)
        s = client.stats()
        assert (5, 0, 0) == (s["sent"], s["retries"], s["dropped_total"])
        assert_accounted(client)


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
        with scripted_server(lambda r, s, e: refuse) as server:
            client = Client(url=server.url, hostname="t", flush_interval=0.05)
            client.log("refused")
            assert not client.flush(WAIT)
            client.close(DEADLINE)
            sent = texts(server.requests)
        s = client.stats()
        assert (1, 0, 0) == (s["dropped"]["rejected"], s["retries"], s["queued"])
        # The gzip body, then the same line plain (then, maybe, the drop-summary line).
        assert ["refused", "refused"] == [text for text in sent if text == "refused"]
        assert_accounted(client)
