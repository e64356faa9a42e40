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
from tests._claims_servers import Request, scripted_server
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
