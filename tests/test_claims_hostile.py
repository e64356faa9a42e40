"""README and docs/delivery.md against endpoints that lie, stall or storm, each a real
server on loopback (tests/_claims_servers.py): a body never read, answers that never
end, a wrong Content-Length, a 207 that counts more lines than were sent, a server that
refuses gzip, Retry-After far in the future, a 503 storm.

What must hold: close() and flush() keep their deadlines, and every line the buffer
accepted is counted once: queued, sent, or one reason of dropped."""

from __future__ import annotations

import email.utils
import logging
import socket
import threading
import time

import orjson
import pytest

from logdna_client import Client
from tests._claims_servers import Request, answer, scripted_server

WAIT = 20.0
# A deadline the library promises, and the slack its own bookkeeping may take; a loaded
# machine adds nothing to a deadline the library itself enforces.
DEADLINE = 1.5
SLACK = 1.0


def assert_accounted(client: Client) -> None:
    """docs/delivery.md: every accepted line is queued, sent, or dropped for a reason
    (after_close lines were never accepted; with the default drop_oldest, every
    buffer_full line was)."""
    s = client.stats()
    dropped = s["dropped_total"] - s["dropped"]["after_close"]
    assert s["accepted"] == s["queued"] + s["sent"] + dropped, s
    assert s["sent"] >= 0 and s["queued"] >= 0, s


def close_took(client: Client, timeout: float) -> float:
    started = time.monotonic()
    client.close(timeout)
    return time.monotonic() - started


class TestStalls:
    def test_a_server_that_never_reads_the_body_cannot_hold_close(self) -> None:
        """docs/delivery.md, "request_timeout covers the whole exchange, connect to last
        byte ... a request already out when close() begins is cut at the close's
        deadline": an upload stalled by a server that stops reading (its receive window
        full) ends at the deadline, far below request_timeout, and its lines are counted
        as shutdown."""

        def never_answer(request: Request, sock: socket.socket, stop: threading.Event) -> None:
            stop.wait(60)

        # 12 MB of lines, sent uncompressed in batches of 8 MiB: far more than the
        # loopback socket buffers hold, so the sender is blocked writing the body.
        with scripted_server(never_answer, read_body=False, receive_buffer=4096) as server:
            client = Client(
                url=server.url, hostname="stall", flush_interval=0.05, compress=False,
                max_batch_bytes="8MiB", max_buffer_bytes="32MiB", request_timeout=60,
            )  # fmt: skip
            filler = "u" * 4000
            for i in range(3000):
                client.log(f"stalled {i} {filler}")
            assert server.state.connected.wait(WAIT)
            assert server.wait_for_requests(1, WAIT)  # the head is read; the body is not
            started = time.monotonic()
            assert not client.flush(0.5)
            assert time.monotonic() - started < 0.5 + SLACK
            took = close_took(client, DEADLINE)
            # Before the server goes away (closing the connection would free the sender
            # anyway): the request was cut, and every line is counted.
            assert 3000 == client.stats()["dropped"]["shutdown"]
            # The sender marks itself finished a few bytecodes before its thread ends.
            assert client._sender.thread is not None
            client._sender.thread.join(WAIT)
            assert not client.stats()["sender_alive"]
        assert took < DEADLINE + SLACK, f"close took {took:.2f} s"
        assert_accounted(client)

    def test_a_tls_handshake_that_never_completes_cannot_hold_close(self) -> None:
        """https:// to a port that accepts the connection and then says nothing (the
        handshake never completes): close() still ends at its deadline, far below
        request_timeout, with the line counted as shutdown."""

        def silent(request: Request, sock: socket.socket, stop: threading.Event) -> None:
            stop.wait(60)  # never reached: a TLS hello is no HTTP request head

        with scripted_server(silent) as server:
            url = server.url.replace("http://", "https://")
            client = Client(url=url, hostname="t", flush_interval=0.05, request_timeout=60)
            client.log("never through the handshake")
            assert server.state.connected.wait(WAIT)
            took = close_took(client, DEADLINE)
            assert 1 == client.stats()["dropped"]["shutdown"]
            # The sender marks itself finished a few bytecodes before its thread ends.
            assert client._sender.thread is not None
            client._sender.thread.join(WAIT)
            assert not client.stats()["sender_alive"]
        assert took < DEADLINE + SLACK, f"close took {took:.2f} s"
        assert_accounted(client)

    @pytest.mark.parametrize(
        "interim",
        [b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"],
        ids=["100", "103"],
    )
    def test_an_answer_of_endless_1xx_lines_is_cut_by_request_timeout(self, interim: bytes) -> None:
        """An endpoint that answers a 1xx without end (each one quickly, so no socket
        read ever times out) fails the request once it sent 16 (as a server that does
        not speak HTTP/1.1: retried slowly), and cannot hold close() past its deadline;
        no more than request_timeout either way."""

        def endless_continue(request: Request, sock: socket.socket, stop: threading.Event) -> None:
            while not stop.wait(0.01):
                sock.sendall(interim)

        with scripted_server(endless_continue) as server:
            client = Client(
                url=server.url, hostname="t", flush_interval=0.05, request_timeout=0.5,
                retry_max_backoff=0.2,
            )  # fmt: skip
            client.log("never answered")
            assert server.wait_for_requests(2, WAIT), "the first request was never cut"
            assert "protocol" == client.stats()["last_error"]["kind"]  # type: ignore[index]
            took = close_took(client, DEADLINE)
            assert 1 == client.stats()["dropped"]["shutdown"]
        assert took < DEADLINE + SLACK, f"close took {took:.2f} s"
        assert_accounted(client)


class TestLies:
    def test_200_with_a_content_length_it_never_sends_counts_once(self) -> None:
        """A 200 whose body is shorter than its Content-Length (the connection left open)
        is a delivery: the lines count as sent once, are never sent again, and flush()
        says True once request_timeout has cut the unfinished body."""

        def short_body(request: Request, sock: socket.socket, stop: threading.Event) -> None:
            sock.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n{"status":')
            stop.wait(60)

        with scripted_server(short_body) as server:
            client = Client(url=server.url, hostname="t", flush_interval=0.05, request_timeout=1)
            for i in range(20):
                client.log(f"short {i}")
            assert client.flush(WAIT)
            assert 20 == client.stats()["sent"]
            client.close(DEADLINE)
            sent = [line["line"] for r in server.requests for line in r.lines]
        assert [f"short {i}" for i in range(20)] == sent
        assert_accounted(client)

    def test_200_with_garbage_is_a_delivery(self) -> None:
        """A 200 whose body is not JSON (an HTML page from a proxy) still means the lines
        were taken: counted as sent once, nothing dropped, nothing resent."""
        with scripted_server(lambda r, s, e: answer(200, b"<html>\x00\xff" * 50)) as server:
            client = Client(url=server.url, hostname="t", flush_interval=0.05)
            for i in range(10):
                client.log(f"garbage {i}")
            assert client.flush(WAIT)
            client.close(DEADLINE)
            assert 1 == len(server.requests)
        assert 10 == client.stats()["sent"]
        assert 0 == client.stats()["dropped_total"]
        assert_accounted(client)

    def test_207_refusing_more_lines_than_the_batch_holds(self) -> None:
        """A 207 whose status array names more refused lines than the batch had counts
        each line once: no more lines rejected than were sent, sent never negative."""
        lie = orjson.dumps({"status": [400] * 500})
        with scripted_server(lambda r, s, e: answer(207, lie)) as server:
            client = Client(url=server.url, hostname="t", flush_interval=60)
            for i in range(10):
                client.log(f"partial {i}")
            client.flush(WAIT)
            client.close(DEADLINE)
        s = client.stats()
        assert 10 == s["dropped"]["rejected"]
        assert 0 == s["sent"]
        assert_accounted(client)


def refuse_gzip(body: bytes) -> object:
    """A server that answers a gzip body with 400 and a plain one with ``body``: 207 when
    it holds a per-line status array, else 200."""

    def respond(request: Request, sock: socket.socket, stop: threading.Event) -> bytes:
        if request.headers.get("content-encoding") == "gzip":
            return answer(400, b'{"error":"cannot parse body"}')
        return answer(207 if b'"status":[' in body else 200, body)

    return respond


class TestGzipRefusedWith400:
    def test_the_summary_line_is_not_counted_as_sent(self) -> None:
        """docs/delivery.md, "sent: your lines the service accepted (the library's own
        drop-summary lines are not counted)": also when the first batch after drops goes
        to a server that refuses gzip with 400 and takes the same body plain."""
        with scripted_server(refuse_gzip(b'{"status":"ok"}')) as server:
            client = Client(
                url=server.url, hostname="t", flush_interval=60, max_buffer_bytes="64KiB"
            )
            for i in range(2000):
                client.log(f"fill {i} " + "x" * 100)
            assert client.stats()["dropped"]["buffer_full"] > 0
            assert client.flush(WAIT)
            client.close(DEADLINE)
            plain = [r for r in server.requests if r.headers.get("content-encoding") != "gzip"]
            shipped = [str(x["line"]) for r in plain for x in r.lines]
        app_lines = [text for text in shipped if text.startswith("fill ")]
        assert len(app_lines) + 1 == len(shipped), "the summary line was not shipped"
        assert len(app_lines) == client.stats()["sent"]
        assert_accounted(client)

    def test_a_207_on_the_plain_retry_counts_each_line_once(self) -> None:
        """A 207 naming more refused lines than the batch holds, on the plain resend after
        a gzip 400, counts each line once (as the same 207 on a first try does)."""
        lie = orjson.dumps({"status": [400] * 500})
        with scripted_server(refuse_gzip(lie)) as server:
            client = Client(url=server.url, hostname="t", flush_interval=60)
            for i in range(10):
                client.log(f"partial {i}")
            client.flush(WAIT)
            client.close(DEADLINE)
            assert any(r.headers.get("content-encoding") != "gzip" for r in server.requests)
        s = client.stats()
        assert 10 == s["dropped"]["rejected"]
        assert 0 == s["sent"]
        assert_accounted(client)


class TestStorms:
    @pytest.mark.parametrize("form", ["seconds", "http-date"])
    def test_retry_after_far_in_the_future_cannot_hold_close(self, form: str) -> None:
        """docs/delivery.md: close() waits out a server's Retry-After "within the shutdown
        deadline": a 429 asking for a day ends at close's deadline, its line counted as
        shutdown."""
        value = "86400" if form == "seconds" else email.utils.formatdate(time.time() + 86400)
        header = f"Retry-After: {value}\r\n".encode()
        with scripted_server(lambda r, s, e: answer(429, b"{}", header)) as server:
            client = Client(url=server.url, hostname="t", flush_interval=0.05)
            client.log("asked to wait a day")
            assert server.wait_for_requests(1, WAIT)
            took = close_took(client, DEADLINE)
            assert 1 == len(server.requests)  # and no retry sooner than asked
        assert took < DEADLINE + SLACK, f"close took {took:.2f} s"
        assert 1 == client.stats()["dropped"]["shutdown"]
        assert_accounted(client)

    def test_a_503_storm_is_not_hammered(self) -> None:
        """README: transient failures retry "with capped exponential backoff and full
        jitter": a server answering 503 (Retry-After: 0) to everything gets a handful of
        requests in 4 s, not a flood, and the lines stay queued."""
        storm = answer(503, b'{"error":"overloaded"}', b"Retry-After: 0\r\n")
        with scripted_server(lambda r, s, e: storm) as server:
            client = Client(url=server.url, hostname="t", flush_interval=0.05)
            for i in range(50):
                client.log(f"storm {i}")
            assert server.wait_for_requests(1, WAIT)
            # Waits are uniform in [0, 0.5], [0, 1], [0, 2], [0, 4] ...: about 4 to 8
            # requests in 4 s; with no backoff it would be thousands.
            assert not client.flush(4.0)
            storm_requests = len(server.requests)
            assert 50 == client.stats()["queued"]
            client.close(0)
        assert storm_requests <= 20, storm_requests
        assert_accounted(client)


class TestForgedLines:
    def test_a_server_cannot_write_lines_into_the_librarys_reports(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """What a server answers is quoted in the library's reports (why a line was
        refused): its line breaks, terminal escapes and other controls come out escaped,
        so an endpoint cannot forge lines of its own in the application's log."""
        forged = b"bad request\r\n2026-12-05 CRITICAL root: forged\x1b[2K\xe2\x80\xa8also forged"
        with scripted_server(lambda r, s, e: answer(400, forged)) as server:
            client = Client(url=server.url, hostname="t", flush_interval=0.05)
            with caplog.at_level(logging.WARNING, logger="logdna_client"):
                client.log("refused")
                client.flush(WAIT)
                client.close(DEADLINE)
        reports = [r.getMessage() for r in caplog.records if r.name.startswith("logdna_client")]
        quoted = [m for m in reports if "forged" in m]
        assert quoted, reports
        for message in quoted:
            assert not any(c in message for c in "\r\n\x1b\u2028"), message
            assert "\\r\\n2026-12-05 CRITICAL" in message
        assert 1 == client.stats()["dropped"]["rejected"]
        assert_accounted(client)

    def test_nor_reorder_what_the_report_shows(self, caplog: pytest.LogCaptureFixture) -> None:
        """Unicode's bidirectional controls in a server's answer (U+202E RIGHT-TO-LEFT
        OVERRIDE and its kin) come out escaped in the library's reports: left in, they
        reversed how the rest of the log line reads in a terminal or a log viewer."""
        bidi = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
        forged = f"refused {bidi} lla si ti".encode()
        with scripted_server(lambda r, s, e: answer(400, forged)) as server:
            client = Client(url=server.url, hostname="t", flush_interval=0.05)
            with caplog.at_level(logging.WARNING, logger="logdna_client"):
                client.log("refused")
                client.flush(WAIT)
                client.close(DEADLINE)
        reports = [r.getMessage() for r in caplog.records if r.name.startswith("logdna_client")]
        quoted = [m for m in reports if "lla si ti" in m]
        assert quoted, reports
        for message in quoted:
            assert not any(c in message for c in bidi), ascii(message)
            assert "\\u202e" in message
