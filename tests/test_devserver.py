"""Tests for the local ingest server (logdna_client.devserver), over real sockets."""

from __future__ import annotations

import gzip
import io
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest
import requests

from logdna_client._transport import one_line
from logdna_client.devserver import MAX_BODY_BYTES, DevServer
from logdna_client.devserver import _body as devserver_module
from logdna_client.devserver._store import Origin
from logdna_client.devserver._tail import _clean
from logdna_client.devserver._web import EventHub, count_levels

REPO_ROOT = Path(__file__).resolve().parent.parent
KEY = "sekrit-ingest-key-5f2b"
WRONG_KEY = "wrong-ingest-key-91c3"
HOST = {"hostname": "web-1"}
TIMEOUT = 5.0


@pytest.fixture
def keyed() -> Iterator[DevServer]:
    """A started server that requires KEY."""
    with DevServer(key=KEY) as srv:
        yield srv


def body_of(lines: list[Any]) -> bytes:
    return orjson.dumps({"lines": lines})


def post(
    srv: DevServer,
    data: bytes | Iterator[bytes],
    *,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    session: requests.Session | None = None,
    **kwargs: Any,
) -> requests.Response:
    sender = session if session is not None else requests
    return sender.post(
        srv.url,
        params=HOST if params is None else params,
        data=data,
        headers={"Content-Type": "application/json", **(headers or {})},
        timeout=TIMEOUT,
        **kwargs,
    )


def raw_exchange(port: int, data: bytes) -> bytes:
    """Send raw bytes, then read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


class TestIngest:
    def test_plain_body_is_accepted_and_stored_as_sent(self, server: DevServer) -> None:
        """A plain JSON batch gets 200 with a batchID and its lines are kept exactly."""
        lines = [
            {"line": "user 42 logged in", "app": "api", "level": "INFO", "meta": {"u": 42}},
            {"line": "second", "timestamp": 1732280000123},
        ]

        response = post(server, body_of(lines))

        assert 200 == response.status_code
        assert "ok" == response.json()["status"]
        uuid.UUID(response.json()["batchID"])
        assert lines == server.lines
        assert 2 == server.line_count

    def test_gzip_body_is_decompressed(self, server: DevServer) -> None:
        """A gzip body is inflated and recorded as gzip with its on-wire size."""
        lines = [{"line": f"line {i}", "app": "api"} for i in range(100)]
        wire = gzip.compress(body_of(lines))

        response = post(server, wire, headers={"Content-Encoding": "gzip"})

        assert 200 == response.status_code
        assert lines == server.lines
        record = server.requests[-1]
        assert record.gzip
        assert len(wire) == record.body_bytes
        assert 100 == record.n_lines

    def test_legacy_body_form_is_accepted(self, server: DevServer) -> None:
        """The legacy {"e": "ls", "ls": [...]} body is accepted like {"lines": [...]}."""
        lines = [{"line": "old client", "app": "legacy"}]

        response = post(server, orjson.dumps({"e": "ls", "ls": lines}))

        assert 200 == response.status_code
        assert lines == server.lines

    def test_agent_path_is_an_alias(self, server: DevServer) -> None:
        """POST /logs/agent is handled like /logs/ingest."""
        response = requests.post(
            server.base_url + "/logs/agent",
            params=HOST,
            data=body_of([{"line": "via agent"}]),
            timeout=TIMEOUT,
        )

        assert 200 == response.status_code
        assert "/logs/agent" == server.requests[-1].path

    def test_request_record_holds_query_and_line_index(self, server: DevServer) -> None:
        """The record keeps hostname, tags, other params and where its lines start."""
        post(server, body_of([{"line": "a"}, {"line": "b"}]))
        params = {"hostname": "db-2", "tags": "a, b,,c", "ip": "10.0.0.2", "mac": "m", "now": "7"}

        post(server, body_of([{"line": "c"}]), params=params)

        record = server.requests[-1]
        assert "POST" == record.method
        assert "/logs/ingest" == record.path
        assert params == record.query
        assert "db-2" == record.hostname
        assert ["a", "b", "c"] == record.tags
        assert 2 == record.first_line_index
        assert 200 == record.status
        assert not record.gzip
        assert "application/json" == record.headers["content-type"]
        assert [{"line": "c"}] == server.lines[2:]

    def test_chunked_body_is_accepted(self, server: DevServer) -> None:
        """A body sent with Transfer-Encoding: chunked is read in full."""
        chunks = iter([b'{"lines": [{"line": "one"},', b' {"line": "two"}]}'])

        response = post(server, chunks)

        assert 200 == response.status_code
        assert ["one", "two"] == [line["line"] for line in server.lines]
        assert "chunked" == server.requests[-1].headers["transfer-encoding"]

    def test_missing_hostname_is_400(self, server: DevServer) -> None:
        """Without the hostname parameter the answer is the service's exact 400."""
        response = post(server, body_of([{"line": "x"}]), params={})

        assert 400 == response.status_code
        assert {"error": "Missing param hostname."} == response.json()
        assert [] == server.lines

    @pytest.mark.parametrize(
        "body",
        [
            b"not json",
            b"",
            b"[]",
            b'{"lines": "x"}',
            b'{"e": "other", "ls": [{"line": "x"}]}',
            b'{"lines": [1]}',
            b'{"lines": [{"app": "no line"}]}',
            b'{"lines": [{"line": ""}]}',
            b'{"lines": [{"line": 5}]}',
            b'{"lines": [{"line": "good"}, {"line": null}]}',
        ],
    )
    def test_bad_bodies_are_400(self, server: DevServer, body: bytes) -> None:
        """Invalid JSON, a wrong shape or a line without text gets 400 and stores nothing."""
        response = post(server, body)

        assert 400 == response.status_code
        assert response.json()["error"]
        assert 0 == server.line_count

    def test_invalid_gzip_is_400(self, server: DevServer) -> None:
        """A body labelled gzip that is not gzip gets 400."""
        response = post(server, body_of([{"line": "x"}]), headers={"Content-Encoding": "gzip"})

        assert 400 == response.status_code
        assert 0 == server.line_count

    def test_truncated_gzip_is_400(self, server: DevServer) -> None:
        """A gzip stream cut short gets 400."""
        wire = gzip.compress(body_of([{"line": "x" * 1000}]))[:-20]

        response = post(server, wire, headers={"Content-Encoding": "gzip"})

        assert 400 == response.status_code

    def test_unknown_content_encoding_is_415(self, server: DevServer) -> None:
        """An encoding the server cannot decode gets 415."""
        response = post(server, body_of([{"line": "x"}]), headers={"Content-Encoding": "br"})

        assert 415 == response.status_code

    def test_every_response_is_json_with_content_length(self, keyed: DevServer) -> None:
        """Success, errors and injected failures all carry JSON and a Content-Length."""
        good = {"apikey": KEY}
        keyed.fail_next(1, 503)
        responses = [
            post(keyed, body_of([{"line": "x"}]), headers=good),
            post(keyed, body_of([{"line": "x"}]), headers=good),
            post(keyed, b"{", headers=good),
            post(keyed, body_of([{"line": "x"}])),
            requests.get(keyed.base_url + "/nope", timeout=TIMEOUT),
            requests.put(keyed.url, timeout=TIMEOUT),
            requests.get(keyed.base_url, timeout=TIMEOUT),
        ]

        assert [503, 200, 400, 401, 404, 405, 200] == [r.status_code for r in responses]
        for response in responses:
            assert str(len(response.content)) == response.headers["Content-Length"]
            assert response.headers["Content-Type"].startswith("application/json")
            orjson.loads(response.content)


class TestBodyLimits:
    def test_content_length_over_limit_is_413_without_reading(self, server: DevServer) -> None:
        """A Content-Length above 10 MB gets 413 and a closed connection, body unsent."""
        head = (
            b"POST /logs/ingest?hostname=h HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 20000000\r\n\r\n" + b'{"lines": ['
        )

        response = raw_exchange(server.port, head)

        assert 413 == status_of(response)
        assert b"Connection: close" in response
        assert response.endswith(b'{"error":"Request entity too large"}')
        assert 20_000_000 == server.requests[-1].body_bytes

    def test_client_sending_oversized_body_still_reads_413(self) -> None:
        """A client that sends its whole too-large body still gets the 413 answer."""
        with DevServer(max_body_bytes=1000) as srv:
            response = post(srv, b"x" * 4_000_000)

            assert 413 == response.status_code
            assert {"error": "Request entity too large"} == response.json()
            assert 200 == post(srv, body_of([{"line": "after"}])).status_code

    def test_gzip_bomb_over_limit_is_413(self, server: DevServer) -> None:
        """A small gzip body that inflates past 10 MB gets 413."""
        text = b"a" * MAX_BODY_BYTES
        wire = gzip.compress(b'{"lines": [{"line": "' + text + b'"}]}', compresslevel=1)
        assert len(wire) < 100_000

        response = post(server, wire, headers={"Content-Encoding": "gzip"})

        assert 413 == response.status_code
        assert {"error": "Request entity too large"} == response.json()
        assert 0 == server.line_count

    def test_inflated_limit_is_inclusive(self) -> None:
        """A body inflating to exactly the limit passes; one byte more is 413."""
        exact = body_of([{"line": "y" * 100}])
        with DevServer(max_body_bytes=len(exact)) as srv:
            ok = post(srv, gzip.compress(exact), headers={"Content-Encoding": "gzip"})
            over_body = body_of([{"line": "y" * 101}])
            over = post(srv, gzip.compress(over_body), headers={"Content-Encoding": "gzip"})

        assert 200 == ok.status_code
        assert 413 == over.status_code

    def test_gzip_with_several_members_is_read_whole(self, server: DevServer) -> None:
        """Concatenated gzip members inflate to their joined content."""
        body = body_of([{"line": "joined"}])
        wire = gzip.compress(body[:10]) + gzip.compress(body[10:])

        response = post(server, wire, headers={"Content-Encoding": "gzip"})

        assert 200 == response.status_code
        assert [{"line": "joined"}] == server.lines


class TestAuth:
    @pytest.mark.parametrize(
        ("kwargs", "how"),
        [
            ({"headers": {"apikey": KEY}}, "header"),
            ({"auth": (KEY, "")}, "basic"),
            ({"params": {**HOST, "apikey": KEY}}, "query"),
        ],
    )
    def test_key_is_accepted_in_each_form(
        self, keyed: DevServer, kwargs: dict[str, Any], how: str
    ) -> None:
        """The key is accepted as the apikey header, Basic user name or query parameter."""
        response = post(keyed, body_of([{"line": "x"}]), **kwargs)

        assert 200 == response.status_code
        record = keyed.requests[-1]
        assert (True, True, how) == (record.key_present, record.key_valid, record.auth)

    def test_missing_key_is_401(self, keyed: DevServer) -> None:
        """A server built with a key answers 401 to a request without one."""
        response = post(keyed, body_of([{"line": "x"}]))

        assert 401 == response.status_code
        assert response.json()["error"]
        assert 0 == keyed.line_count

    def test_wrong_key_is_403(self, keyed: DevServer) -> None:
        """A server built with a key answers 403 to a wrong one."""
        response = post(keyed, body_of([{"line": "x"}]), headers={"apikey": WRONG_KEY})

        assert 403 == response.status_code
        assert (True, False) == (keyed.requests[-1].key_present, keyed.requests[-1].key_valid)

    def test_without_key_anything_is_accepted(self, server: DevServer) -> None:
        """A server built without a key accepts any key or none."""
        assert 200 == post(server, body_of([{"line": "x"}])).status_code
        assert 200 == post(server, body_of([{"line": "y"}]), headers={"apikey": "z"}).status_code
        assert [False, True] == [r.key_present for r in server.requests]
        assert [None, None] == [r.key_valid for r in server.requests]

    def test_key_is_never_recorded(self, keyed: DevServer) -> None:
        """Neither the key nor a wrong key appears in any request record."""
        post(keyed, body_of([{"line": "x"}]), headers={"apikey": KEY})
        post(keyed, body_of([{"line": "x"}]), auth=(KEY, ""))
        post(keyed, body_of([{"line": "x"}]), params={**HOST, "apikey": WRONG_KEY})

        text = repr(keyed.requests)
        assert KEY not in text
        assert WRONG_KEY not in text
        assert "apikey" not in keyed.requests[0].headers
        assert "authorization" not in keyed.requests[1].headers
        assert HOST == keyed.requests[2].query


class TestFaults:
    def test_fail_next_answers_status_with_retry_after(self, server: DevServer) -> None:
        """fail_next(n) fails exactly n POSTs with the status and Retry-After, storing nothing."""
        server.fail_next(2, status=503, retry_after="3")

        first = post(server, body_of([{"line": "a"}]))
        second = post(server, body_of([{"line": "b"}]))
        third = post(server, body_of([{"line": "c"}]))

        assert [503, 503, 200] == [r.status_code for r in (first, second, third)]
        assert "3" == first.headers["Retry-After"]
        assert "Retry-After" not in third.headers
        assert [{"line": "c"}] == server.lines
        assert [503, 503, 200] == [r.status for r in server.requests]

    def test_fail_next_with_custom_body(self, server: DevServer) -> None:
        """fail_next sends the given body verbatim."""
        server.fail_next(1, status=429, body='{"error": "slow down"}')

        response = post(server, body_of([{"line": "a"}]))

        assert 429 == response.status_code
        assert '{"error": "slow down"}' == response.text

    def test_drop_next_closes_without_answer(self, server: DevServer) -> None:
        """drop_next makes the client see a connection error, then service resumes."""
        server.drop_next(1)

        with pytest.raises(requests.ConnectionError):
            post(server, body_of([{"line": "lost"}]))
        after = post(server, body_of([{"line": "kept"}]))

        assert 200 == after.status_code
        assert [{"line": "kept"}] == server.lines
        assert [None, 200] == [r.status for r in server.requests]

    def test_set_delay_slows_answers(self, server: DevServer) -> None:
        """set_delay holds each answer for the given time."""
        server.set_delay(0.3)
        started = time.monotonic()

        response = post(server, body_of([{"line": "slow"}]))

        assert 200 == response.status_code
        assert 0.3 <= time.monotonic() - started

    def test_stop_wakes_a_delayed_request(self) -> None:
        """stop() ends a long delay at once; the waiting client sees a connection error."""
        srv = DevServer().start()
        srv.set_delay(30)
        errors: list[BaseException] = []

        def send() -> None:
            try:
                post(srv, body_of([{"line": "x"}]))
            except requests.RequestException as exc:
                errors.append(exc)

        thread = threading.Thread(target=send)
        started = time.monotonic()
        thread.start()
        srv.stop()
        thread.join(TIMEOUT)

        assert not thread.is_alive()
        assert time.monotonic() - started < 3
        assert 1 == len(errors)
        assert 0 == srv.line_count

    def test_fail_rate_one_fails_everything(self, server: DevServer) -> None:
        """A fail rate of 1 fails every POST with the chosen status."""
        server.set_fail_rate(1.0, status=500)

        statuses = [post(server, body_of([{"line": "x"}])).status_code for _ in range(5)]

        assert [500] * 5 == statuses
        assert 0 == server.line_count

    def test_fail_rate_is_reproducible_with_a_seed(self) -> None:
        """The same seed gives the same sequence of failures."""
        runs = []
        for _ in range(2):
            with DevServer() as srv:
                srv.set_fail_rate(0.5, seed=1234)
                with requests.Session() as session:
                    runs.append(
                        [
                            post(srv, b'{"lines": []}', session=session).status_code
                            for _ in range(20)
                        ]
                    )

        assert runs[0] == runs[1]
        assert {200, 503} == set(runs[0])

    def test_reject_lines_matching_fails_the_batch(self, server: DevServer) -> None:
        """A batch with a matching line gets 400 "bad line"; others and later batches pass."""
        server.reject_lines_matching("POISON")
        bad_batch = [{"line": "fine"}, {"line": "has POISON inside"}]

        rejected = post(server, body_of(bad_batch))
        accepted = post(server, body_of([{"line": "fine"}]))
        server.reject_lines_matching(None)
        later = post(server, body_of(bad_batch))

        assert 400 == rejected.status_code
        assert {"error": "bad line"} == rejected.json()
        assert (200, 200) == (accepted.status_code, later.status_code)
        assert 3 == server.line_count

    def test_go_down_refuses_and_come_up_reuses_the_port(self, server: DevServer) -> None:
        """During an outage connections are refused; afterwards the same port serves again."""
        port = server.port
        assert 200 == post(server, body_of([{"line": "before"}])).status_code

        server.go_down()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
        with pytest.raises(requests.ConnectionError):
            post(server, body_of([{"line": "during"}]))
        server.come_up()

        assert port == server.port
        assert 200 == post(server, body_of([{"line": "after"}])).status_code
        assert ["before", "after"] == [line["line"] for line in server.lines]

    def test_go_down_drops_open_connections(self, server: DevServer) -> None:
        """go_down closes an idle keep-alive connection."""
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            # The answer first (a request is counted before it is answered): the
            # connection is idle from then on.
            received = b""
            while b"\r\n\r\n" not in received:
                chunk = sock.recv(65536)
                assert chunk, received
                received += chunk
            server.go_down()
            while chunk := sock.recv(65536):  # ends only when the server closes it
                received += chunk

        assert 200 == status_of(received)

    def test_reset_faults_turns_everything_off(self, server: DevServer) -> None:
        """reset_faults cancels pending failures, drops, delays and rejections."""
        server.fail_next(5)
        server.drop_next(5)
        server.set_fail_rate(1.0)
        server.reject_lines_matching("x")
        server.reset_faults()

        assert 200 == post(server, body_of([{"line": "x"}])).status_code


class TestConnections:
    def test_keep_alive_requests_share_one_connection(self, server: DevServer) -> None:
        """Several requests over one keep-alive session count as one connection."""
        with requests.Session() as session:
            for i in range(3):
                assert 200 == post(server, body_of([{"line": str(i)}]), session=session).status_code

        assert 1 == server.connections
        assert 1 == len({r.connection_id for r in server.requests})

    def test_separate_connections_get_distinct_ids(self, server: DevServer) -> None:
        """Requests on separate TCP connections get distinct connection ids."""
        for i in range(2):
            with requests.Session() as session:
                post(server, body_of([{"line": str(i)}]), session=session)

        assert 2 == server.connections
        assert 2 == len({r.connection_id for r in server.requests})

    def test_error_answers_keep_the_connection(self, server: DevServer) -> None:
        """A 400 does not close a keep-alive connection."""
        with requests.Session() as session:
            post(server, b"bad", session=session)
            post(server, body_of([{"line": "ok"}]), session=session)

        assert [400, 200] == [r.status for r in server.requests]
        assert 1 == server.connections

    def test_stop_closes_idle_connections(self) -> None:
        """stop() closes keep-alive connections that are waiting for a request."""
        srv = DevServer().start()
        with socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert srv.wait_for_requests(1, TIMEOUT)
            srv.stop()
            received = b""
            while chunk := sock.recv(65536):
                received += chunk

        assert 200 == status_of(received)

    def test_slow_client_is_timed_out(self) -> None:
        """A client that stops sending mid-request is disconnected after the timeout."""
        with (
            DevServer(timeout=0.2) as srv,
            socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT) as sock,
        ):
            sock.sendall(b"POST /logs/ingest?hostname=h HTTP/1.1\r\nContent-Length: 50\r\n\r\n{")
            started = time.monotonic()

            assert b"" == sock.recv(65536)
            assert time.monotonic() - started < 3

    def test_restart_after_stop(self) -> None:
        """A stopped server can start again and keeps what it recorded."""
        srv = DevServer().start()
        post(srv, body_of([{"line": "one"}]))
        srv.stop()
        srv.start()
        try:
            post(srv, body_of([{"line": "two"}]))
        finally:
            srv.stop()

        assert 2 == srv.line_count


class TestHTTP:
    def test_status_page_shows_counts(self, server: DevServer) -> None:
        """GET / without Accept: text/html, and GET /api/status, answer JSON status with counts."""
        post(server, body_of([{"line": "a"}, {"line": "b"}]))

        page = requests.get(server.base_url + "/", timeout=TIMEOUT).json()
        api = requests.get(server.base_url + "/api/status", timeout=TIMEOUT).json()

        assert "ok" == page["status"]
        assert server.url == page["ingest_url"]
        assert server.page_url == page["page_url"]
        assert (2, 1, False, 0) == (
            page["lines"],
            page["requests"],
            page["key_required"],
            page["page_clients"],
        )
        assert (2, 2) == (api["lines"], api["requests"])

    def test_unknown_path_is_404(self, server: DevServer) -> None:
        """POST and GET to an unknown path get 404."""
        posted = requests.post(server.base_url + "/nope", data=b"{}", timeout=TIMEOUT)
        fetched = requests.get(server.base_url + "/nope", timeout=TIMEOUT)

        assert (404, 404) == (posted.status_code, fetched.status_code)

    @pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW"])
    def test_other_methods_on_ingest_are_405(self, server: DevServer, method: str) -> None:
        """Methods other than POST on the ingest path get 405 with an Allow header."""
        response = requests.request(method, server.url, timeout=TIMEOUT)

        assert 405 == response.status_code
        assert "POST" == response.headers["Allow"]

    def test_malformed_request_line_is_400_and_server_survives(self, server: DevServer) -> None:
        """A garbage request line gets a JSON 400 and the server keeps serving."""
        response = raw_exchange(server.port, b"GARBAGE\r\n\r\n")

        assert 400 == status_of(response)
        assert response.endswith(b'{"error":"Bad Request"}')
        assert 200 == post(server, body_of([{"line": "still up"}])).status_code

    def test_error_for_bad_request_line_does_not_echo_the_key(self, server: DevServer) -> None:
        """An unparseable request line carrying the key is not echoed back."""
        response = raw_exchange(
            server.port, f"POST /logs/ingest?apikey={KEY} HTTP/9\r\n\r\n".encode()
        )

        assert 400 == status_of(response)
        assert KEY.encode() not in response

    def test_invalid_content_length_is_400(self, server: DevServer) -> None:
        """A Content-Length that is not a number gets 400 and a closed connection."""
        response = raw_exchange(
            server.port,
            b"POST /logs/ingest?hostname=h HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n",
        )

        assert 400 == status_of(response)
        assert b"Connection: close" in response


class TestTail:
    def test_readable_tail_shows_time_level_app_text_and_meta(self) -> None:
        """Each line is tailed as local time, level, app, text and k=v meta."""
        out = io.StringIO()
        stamp = 1732280000123
        clock = time.strftime("%H:%M:%S", time.localtime(stamp // 1000)) + ".123"
        line = {
            "line": "disk almost full",
            "timestamp": stamp,
            "level": "WARN",
            "app": "api",
            "meta": {"user_id": 42, "path": "/a b", "ok": True},
        }
        with DevServer(out=out) as srv:
            post(srv, body_of([line]))

        meta = 'user_id=42 path="/a b" ok=true'
        expected = f"{clock} WARN     web-1 [api] disk almost full  {meta}\n"
        assert expected == out.getvalue()

    def test_meta_as_json_string_is_shown_as_pairs(self) -> None:
        """Meta sent as a JSON string is shown like meta sent as an object."""
        out = io.StringIO()
        with DevServer(out=out) as srv:
            post(srv, body_of([{"line": "m", "level": "INFO", "meta": '{"a": 1, "b": "x"}'}]))

        assert out.getvalue().rstrip("\n").endswith("INFO     web-1 m  a=1 b=x")

    def test_color_marks_the_level(self) -> None:
        """With color on the level is wrapped in its ANSI colour."""
        out = io.StringIO()
        with DevServer(out=out, color=True) as srv:
            post(srv, body_of([{"line": "boom", "level": "ERROR"}]))

        assert "\x1b[31mERROR   \x1b[0m" in out.getvalue()
        assert "boom" in out.getvalue()

    def test_color_auto_is_off_for_a_non_terminal(self) -> None:
        """With color=None a StringIO (not a terminal) gets no escape codes."""
        out = io.StringIO()
        with DevServer(out=out) as srv:
            post(srv, body_of([{"line": "plain", "level": "ERROR"}]))

        assert "\x1b" not in out.getvalue()
        assert "ERROR    web-1 plain" in out.getvalue()

    def test_control_characters_are_escaped(self) -> None:
        """Escape sequences in a line cannot reach the terminal; newlines are indented."""
        out = io.StringIO()
        with DevServer(out=out) as srv:
            post(srv, body_of([{"line": "evil \x1b[2J\ntrace", "level": "INFO"}]))

        assert "\x1b" not in out.getvalue()
        assert "evil \\x1b[2J\n    trace\n" in out.getvalue()

    @pytest.mark.parametrize(
        "char", ["\u202e", "\u202a", "\u2066", "\u2069", "\u200e", "\u200f", "\u061c"]
    )
    def test_bidirectional_controls_are_escaped(self, char: str) -> None:
        """A bidirectional control (an override, an isolate, a mark) is shown escaped: a
        line cannot reorder what the terminal shows (old code passed them raw)."""
        out = io.StringIO()
        with DevServer(out=out) as srv:
            post(srv, body_of([{"line": f"user {char}NIMDA logged in", "app": f"a{char}"}]))

        assert char not in out.getvalue()
        escape = f"\\u{ord(char):04x}"
        assert f"[a{escape}] user {escape}NIMDA logged in" in out.getvalue()

    def test_the_tail_escapes_what_the_reports_escape(self) -> None:
        """The tail and the library's reports (one_line) escape the same characters, from
        one definition; the tail keeps newlines and tabs."""
        kept = {"\t", "\n"}
        tail = {chr(c) for c in range(0x10000) if _clean(chr(c)) != chr(c)}
        reports = {chr(c) for c in range(0x10000) if one_line(chr(c)) != chr(c)}
        assert reports - kept == tail
        assert {"\x1b", "\x85", "\u2028", "\u202e", "\u2066", "\ud800"} <= tail

    def test_key_never_appears_in_output(self) -> None:
        """Neither the configured key nor a wrong one is ever printed."""
        out = io.StringIO()
        with DevServer(key=KEY, out=out, color=True) as srv:
            post(srv, body_of([{"line": "via header", "level": "INFO"}]), headers={"apikey": KEY})
            post(srv, body_of([{"line": "via basic"}]), auth=(KEY, ""))
            post(srv, body_of([{"line": "via query"}]), params={**HOST, "apikey": KEY})
            post(srv, body_of([{"line": "wrong"}]), params={**HOST, "apikey": WRONG_KEY})

        assert 3 == out.getvalue().count("\n")
        assert KEY not in out.getvalue()
        assert WRONG_KEY not in out.getvalue()

    def test_json_output_prints_raw_lines(self) -> None:
        """With json_output each line is printed as one JSON object per line, with its hostname."""
        out = io.StringIO()
        lines = [{"line": "a", "meta": {"k": [1, 2]}}, {"line": "b", "level": "DEBUG"}]
        with DevServer(out=out, json_output=True) as srv:
            post(srv, body_of(lines))

        assert [{**line, **HOST} for line in lines] == [
            orjson.loads(text) for text in out.getvalue().splitlines()
        ]

    def test_output_is_written_before_waiters_wake(self) -> None:
        """When wait_for_lines returns, the tail already shows the lines."""
        out = io.StringIO()
        with DevServer(out=out) as srv:
            thread = threading.Thread(target=post, args=(srv, body_of([{"line": "seen"}])))
            thread.start()
            assert srv.wait_for_lines(1, TIMEOUT)
            assert "seen" in out.getvalue()
            thread.join(TIMEOUT)

    def test_internal_error_is_500_and_server_survives(
        self, server: DevServer, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
    ) -> None:
        """A bug while handling one request answers 500 and later requests still work."""

        def broken(body: bytes) -> list[dict[str, Any]]:
            raise RuntimeError("simulated bug")

        with monkeypatch.context() as patch:
            patch.setattr(devserver_module, "parse_lines", broken)
            failed = post(server, body_of([{"line": "x"}]))

        assert 500 == failed.status_code
        assert {"error": "Internal server error"} == failed.json()
        assert "simulated bug" in capfd.readouterr().err
        assert 200 == post(server, body_of([{"line": "x"}])).status_code


class TestStore:
    def test_store_appends_json_lines(self, tmp_path: Path) -> None:
        """Every accepted line is appended to the store file as JSON Lines, with its hostname."""
        path = tmp_path / "lines.jsonl"
        path.write_bytes(b'{"line": "older"}\n')
        lines = [{"line": "a", "app": "x"}, {"line": "b"}, {"line": "c", "meta": {"n": 1}}]
        with DevServer(store=str(path)) as srv:
            post(srv, body_of(lines[:2]))
            post(srv, b"{bad")
            post(srv, body_of(lines[2:]))

        stored = [orjson.loads(text) for text in path.read_bytes().splitlines()]
        assert [{"line": "older"}, *({**line, **HOST} for line in lines)] == stored

    @pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
    def test_store_write_failure_keeps_serving(self) -> None:
        """A store file that cannot be written stops storing, not serving; the tail says why."""
        out = io.StringIO()
        with DevServer(store="/dev/full", out=out, json_output=True) as srv:
            first = post(srv, body_of([{"line": "one"}]))
            second = post(srv, body_of([{"line": "two"}]))
            assert srv.wait_for_lines(2, 5)
        assert (200, 200) == (first.status_code, second.status_code)
        assert isinstance(srv.store_error, OSError)
        assert "cannot write the store file" in out.getvalue()


class TestWaiting:
    def test_wait_for_lines_times_out(self, server: DevServer) -> None:
        """wait_for_lines returns False when the lines do not come in time."""
        assert not server.wait_for_lines(1, 0.05)

    def test_wait_for_lines_wakes_on_arrival(self, server: DevServer) -> None:
        """wait_for_lines returns True once another thread's lines arrive."""
        thread = threading.Thread(target=post, args=(server, body_of([{"line": "x"}] * 3)))
        thread.start()

        assert server.wait_for_lines(3, TIMEOUT)
        thread.join(TIMEOUT)

    def test_wait_for_requests_counts_failures_too(self, server: DevServer) -> None:
        """Failed requests count for wait_for_requests."""
        server.fail_next(1)
        post(server, body_of([{"line": "x"}]))

        assert server.wait_for_requests(1, TIMEOUT)
        assert not server.wait_for_lines(1, 0.01)

    def test_clear_forgets_everything_recorded(self, server: DevServer) -> None:
        """clear() empties lines, requests and counts."""
        post(server, body_of([{"line": "x"}]))
        server.clear()

        assert ([], []) == (server.lines, server.requests)
        assert (0, 0, 0) == (server.line_count, server.request_count, server.connections)

    def test_keep_lines_off_still_counts(self) -> None:
        """With keep_lines=False lines are counted but not kept."""
        with DevServer(keep_lines=False) as srv:
            post(srv, body_of([{"line": "x"}] * 4))

            assert [] == srv.lines
            assert 4 == srv.line_count
            assert 0 == srv.requests[-1].first_line_index

    def test_url_names_the_bound_port(self, server: DevServer) -> None:
        """url points at the port actually bound."""
        assert f"http://127.0.0.1:{server.port}/logs/ingest" == server.url
        assert 0 != server.port


class TestOrigin:
    """hostname, tags, ip and mac come once per request; every line shows them."""

    PARAMS: ClassVar[dict[str, str]] = {
        "hostname": "web-3",
        "tags": "blue, canary",
        "ip": "10.0.0.9",
        "mac": "aa:bb:cc",
    }

    def test_tail_shows_host_before_app_and_env_tags_ip_mac_after_meta(self) -> None:
        """The readable tail names the host, and env, tags, ip and mac in parentheses."""
        out = io.StringIO()
        with DevServer(out=out) as srv:
            line = {"line": "hi", "level": "INFO", "app": "api", "env": "prod", "meta": {"k": 1}}
            post(srv, body_of([line]), params=self.PARAMS)

        shown = out.getvalue().rstrip("\n").split(" ", 1)[1]
        assert (
            "INFO     web-3 [api] hi  k=1  (env=prod tags=blue,canary ip=10.0.0.9 mac=aa:bb:cc)"
            == (shown)
        )

    def test_tail_without_extras_shows_only_the_host(self) -> None:
        """A request with only a hostname adds nothing in parentheses."""
        out = io.StringIO()
        with DevServer(out=out) as srv:
            post(srv, body_of([{"line": "bare"}]))

        assert out.getvalue().rstrip("\n").endswith("-        web-1 bare")

    def test_json_output_and_store_carry_the_request_fields(self, tmp_path: Path) -> None:
        """--json and the store file add hostname, tags (a list), ip and mac to each line;
        DevServer.lines keeps the lines exactly as sent."""
        out, path = io.StringIO(), tmp_path / "s.jsonl"
        lines = [{"line": "a", "env": "prod"}, {"line": "b"}]
        with DevServer(out=out, json_output=True, store=str(path)) as srv:
            post(srv, body_of(lines), params=self.PARAMS)
            kept = srv.lines

        extra = {
            "hostname": "web-3",
            "tags": ["blue", "canary"],
            "ip": "10.0.0.9",
            "mac": "aa:bb:cc",
        }
        expected = [{**line, **extra} for line in lines]
        assert expected == [orjson.loads(text) for text in out.getvalue().splitlines()]
        assert expected == [orjson.loads(text) for text in path.read_bytes().splitlines()]
        assert lines == kept

    def test_a_lines_own_field_wins(self) -> None:
        """A line that carries its own hostname keeps it in the JSON output."""
        out = io.StringIO()
        with DevServer(out=out, json_output=True) as srv:
            post(srv, body_of([{"line": "x", "hostname": "own"}]), params=self.PARAMS)

        assert "own" == orjson.loads(out.getvalue())["hostname"]


def read_events(response: requests.Response, n: int) -> list[tuple[str, dict[str, Any]]]:
    """The next ``n`` server-sent events (name, data) from a streaming response."""
    events: list[tuple[str, dict[str, Any]]] = []
    name, data = "message", b""
    for raw in response.iter_lines(chunk_size=1):  # no waiting for a bigger chunk
        if raw.startswith(b"event: "):
            name = raw[7:].decode()
        elif raw.startswith(b"data: "):
            data = raw[6:]
        elif not raw and data:
            events.append((name, orjson.loads(data)))
            name, data = "message", b""
            if len(events) == n:
                break
    return events


def open_stream(srv: DevServer, **headers: str) -> requests.Response:
    return requests.get(srv.base_url + "/events", headers=headers, stream=True, timeout=TIMEOUT)


class TestEventStream:
    def test_hello_then_lines_with_their_query_and_counts(self, server: DevServer) -> None:
        """The stream says the page's limit, then sends batches with lines, query and counts."""
        with open_stream(server) as stream:
            assert "text/event-stream" == stream.headers["Content-Type"]
            assert server.wait_for_page_clients(1, TIMEOUT)
            post(server, body_of([{"line": "a", "level": "INFO"}, {"line": "b", "level": "ERROR"}]))
            (hello_name, hello), (name, event) = read_events(stream, 2)

        assert ("hello", 1000) == (hello_name, hello["limit"])
        assert "lines" == name
        assert {"INFO": 1, "ERROR": 1} == event["counts"]
        assert (2, 0) == (event["total"], event["skipped"])
        (batch,) = event["batches"]
        assert (0, {"hostname": "web-1"}) == (batch["seq"], batch["q"])
        assert ["a", "b"] == [line["line"] for line in batch["lines"]]

    def test_a_new_page_gets_recent_lines_and_a_reconnect_only_newer_ones(self) -> None:
        """On connect the newest page_lines lines come first; Last-Event-ID skips those seen,
        unless it names another server."""
        with DevServer(page_lines=3) as srv:
            post(srv, body_of([{"line": str(i)} for i in range(5)]))
            with open_stream(srv) as stream:
                _, first = read_events(stream, 2)[1]
            post(srv, body_of([{"line": "5"}]))
            seen = f"{srv._hub.instance}-4"
            with open_stream(srv, **{"Last-Event-ID": seen}) as stream:
                _, resumed = read_events(stream, 2)[1]
            with open_stream(srv, **{"Last-Event-ID": "another-server-4"}) as stream:
                _, elsewhere = read_events(stream, 2)[1]

        assert ["2", "3", "4"] == [line["line"] for line in first["batches"][0]["lines"]]
        assert (2, 5) == (first["batches"][0]["seq"], first["total"])
        assert [["5"]] == [[line["line"] for line in b["lines"]] for b in resumed["batches"]]
        # A page that saw another server's line 4 still gets this server's lines.
        assert ["3", "4", "5"] == [
            line["line"] for b in elsewhere["batches"] for line in b["lines"]
        ]

    def test_a_browser_that_never_reads_neither_slows_ingestion_nor_grows(self) -> None:
        """A stream nobody reads (its writes block on full socket buffers): every POST is
        still answered at once, and its queue stays within its bound."""
        limit = 2000
        with DevServer(keep_lines=False, page_lines=limit) as srv:
            sock = socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT)
            # A small receive buffer, never read: one event of a few MB cannot get through.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            try:
                assert srv.wait_for_page_clients(1, TIMEOUT)
                # 8 MB a batch: the first event alone is more than the socket buffers take.
                batch = body_of([{"line": "x" * 4000, "level": "INFO"}] * limit)
                with requests.Session() as session:
                    for _ in range(10):
                        assert 200 == post(srv, batch, session=session).status_code
                held = [sub.held for sub in srv._hub._subscribers]
                assert 10 * limit == srv.line_count
                assert 1 == len(held)
                assert held[0] <= 2 * limit
            finally:
                sock.close()

    def test_a_vanished_browser_is_unsubscribed(self, server: DevServer) -> None:
        """A browser that closed its connection is dropped at the next write."""
        with open_stream(server) as stream:
            read_events(stream, 1)
        post(server, body_of([{"line": "after it left"}]))

        assert server.wait_for_page_clients(0, TIMEOUT)

    def test_a_browser_gone_after_the_look_before_a_write_is_dropped_soon(self) -> None:
        """The look before a write can come before the browser's close is read (the lines
        that woke the stream came first over another connection), and the write then
        succeeds: the stream still leaves within a look's time, not at the keep-alive
        15 s later (the old code's: a page count stuck at 1 for 15 s on a loaded machine)."""
        hub = EventHub()
        looks: list[bool] = []
        writes: list[bytes] = []
        ended = threading.Event()

        def gone() -> bool:
            looks.append(True)
            return len(looks) > 2  # the looks at the wake and before the write: still there

        def stream() -> None:
            hub.stream(writes.append, threading.Event(), {"limit": 1}, gone=gone)
            ended.set()

        thread = threading.Thread(target=stream, daemon=True)
        thread.start()
        assert hub.wait_for_subscribers(1, TIMEOUT)
        hub.publish([{"line": "wakes it"}], Origin({}), time.time())
        assert ended.wait(TIMEOUT)
        assert 0 == hub.subscribers
        assert any(b"wakes it" in data for data in writes)  # the write before it left

    def test_stop_ends_open_streams(self) -> None:
        """stop() ends every event stream instead of waiting for its browser."""
        srv = DevServer().start()
        with open_stream(srv) as stream:
            read_events(stream, 1)
            srv.stop()
            rest = b"".join(stream.iter_content(1024))

        assert b"" == rest
        assert 0 == srv.page_clients

    def test_go_down_ends_open_streams_at_once(self, server: DevServer) -> None:
        """An outage ends the pages' streams too, without waiting for a keep-alive."""
        with open_stream(server) as stream:
            read_events(stream, 1)
            server.go_down()

            assert server.wait_for_page_clients(0, TIMEOUT)
        server.come_up()

    def test_levels_that_cannot_be_counted_as_such_are_counted_as_text(
        self, server: DevServer
    ) -> None:
        """A level that is a list or a number still counts (by its text) and breaks nothing."""
        with open_stream(server) as stream:
            assert server.wait_for_page_clients(1, TIMEOUT)
            post(server, body_of([{"line": "a", "level": [1]}, {"line": "b", "level": 5}]))
            _, event = read_events(stream, 2)[1]

        assert {"[1]": 1, "5": 1} == event["counts"]

    def test_a_lone_burst_comes_whole_and_a_flood_as_its_newest_lines(self) -> None:
        """A burst the page can keep arrives whole; more lines than it keeps, that fast,
        arrive as the newest 250, with every line counted."""
        with DevServer(keep_lines=False) as srv, open_stream(srv) as stream:
            assert srv.wait_for_page_clients(1, TIMEOUT)
            read_events(stream, 1)  # hello
            post(srv, body_of([{"line": str(i), "level": "INFO"} for i in range(1000)]))
            ((_, burst),) = read_events(stream, 1)
            post(srv, body_of([{"line": str(i), "level": "DEBUG"} for i in range(5000)]))
            ((_, flood),) = read_events(stream, 1)

        assert (1000, 0, 1000) == (
            burst["total"],
            burst["skipped"],
            len(burst["batches"][0]["lines"]),
        )
        lines = flood["batches"][0]["lines"]
        assert (5000, 4750, 250) == (flood["total"], flood["skipped"], len(lines))
        assert ("4750", "4999") == (lines[0]["line"], lines[-1]["line"])
        assert {"DEBUG": 5000} == flood["counts"]

    def test_levels_tried_first_count_as_counting_by_hash_does(self) -> None:
        """Counting with likely levels first gives the same counts as without, whatever
        the mix: levels missing, unlikely, not text, or none."""
        lines: list[dict[str, Any]] = [
            {"level": "INFO"},
            {"level": "ERROR"},
            {},
            {"level": None},
            {"level": [1]},
            {"level": 5},
            {"level": "INFO"},
            {"level": "debug"},
        ]
        mixes = [lines, lines[:2], lines[2:4], lines[4:6], [lines[0], lines[6]], []]
        for likely in [(), ("INFO",), ("INFO", "ERROR", None), ("WARNING", "5", None)]:
            for mix in mixes:
                assert count_levels(mix) == count_levels(mix, likely)
        assert {"INFO": 2, "ERROR": 1, "": 2, "[1]": 1, "5": 1, "debug": 1} == count_levels(
            lines, ("INFO", None)
        )

    def test_meta_too_deep_to_reencode_is_marked_not_fatal(self, server: DevServer) -> None:
        """Meta nested deeper than orjson writes back reaches the page as a marker."""
        deep = b'{"line": "deep", "meta": ' + b'{"a": ' * 300 + b"1" + b"}" * 300 + b"}"
        with open_stream(server) as stream:
            assert server.wait_for_page_clients(1, TIMEOUT)
            post(server, b'{"lines": [' + deep + b', {"line": "plain"}]}')
            _, event = read_events(stream, 2)[1]

        lines = event["batches"][0]["lines"]
        assert [("deep", "<nested too deeply to show>"), ("plain", None)] == [
            (line["line"], line.get("meta")) for line in lines
        ]


class TestBoundedMemory:
    def test_at_most_max_concurrent_bodies_are_decoded_at_once(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With a gate of 2 and two bodies held, three more POSTs wait at the gate, unread."""
        release = threading.Event()
        real = devserver_module.parse_lines

        def held(body: bytes) -> list[dict[str, Any]]:
            release.wait(TIMEOUT)
            return real(body)

        monkeypatch.setattr(devserver_module, "parse_lines", held)
        with DevServer(max_concurrent_bodies=2) as srv:
            threads = [
                threading.Thread(target=post, args=(srv, body_of([{"line": str(i)}])))
                for i in range(5)
            ]
            for thread in threads:
                thread.start()
            try:
                two_in_three_out = srv._gate.wait_until(
                    lambda gate: (gate.inside, gate.waiting) == (2, 3), TIMEOUT
                )
            finally:
                release.set()
                for thread in threads:
                    thread.join(TIMEOUT)
            assert two_in_three_out
            assert srv.wait_for_lines(5, TIMEOUT)

    @pytest.mark.parametrize("option", ["page_lines", "max_concurrent_bodies"])
    def test_limits_below_one_are_refused(self, option: str) -> None:
        """A page that keeps no line, or a gate that lets no body in, is a ValueError."""
        with pytest.raises(ValueError, match="at least 1"):
            DevServer(**{option: 0})

    def test_gzip_is_inflated_as_it_arrives(self, server: DevServer) -> None:
        """A gzip body sent in many small chunks is inflated whole, and a bad one is 400."""
        body = body_of([{"line": f"line {i}"} for i in range(2000)])
        wire = gzip.compress(body)
        pieces = iter([wire[i : i + 100] for i in range(0, len(wire), 100)])

        response = post(server, pieces, headers={"Content-Encoding": "gzip"})
        broken = post(server, wire[:50] + b"junk" + wire[54:], headers={"Content-Encoding": "gzip"})

        assert (200, 400) == (response.status_code, broken.status_code)
        assert 2000 == server.line_count

    @pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
    @pytest.mark.skipif(
        tuple(int(part) for part in orjson.__version__.split(".")[:2]) < (3, 11),
        reason="docs/cli.md states the bound for orjson 3.11+ (before it, about 710 MB)",
    )
    def test_thirty_concurrent_9mb_requests_stay_under_the_stated_bound(self) -> None:
        """docs/cli.md: under 30 concurrent 9 MB requests the devserver stays under 400 MB."""
        bound_mb = 400
        lines, i = [], 0
        while True:
            lines.extend(
                {
                    "line": f"GET /api/v1/items/{j} 200 in {j % 97} ms",
                    "app": "web",
                    "level": "INFO",
                    "timestamp": 1732280000000 + j,
                    "meta": {"user_id": j, "path": "/api/v1/items", "status": 200},
                }
                for j in range(i, i + 1000)
            )
            i += 1000
            if len(body_of(lines)) > 9_000_000:
                break
        body = body_of(lines)
        del lines
        proc = subprocess.Popen(
            [sys.executable, "-m", "logdna_client", "devserver", "--port", "0", "--json"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            assert proc.stderr is not None
            banner = proc.stderr.readline().decode()
            url = re.search(r"(http://\S+/logs/ingest)", banner)
            assert url is not None, banner
            codes: list[int] = []

            def send() -> None:
                response = requests.post(url.group(1), params=HOST, data=body, timeout=300)
                codes.append(response.status_code)

            threads = [threading.Thread(target=send) for _ in range(30)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            status = Path(f"/proc/{proc.pid}/status").read_text()
        finally:
            proc.terminate()
            proc.wait(TIMEOUT)
        peak_mb = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) // 1024  # type: ignore[union-attr]
        assert [200] * 30 == codes
        assert peak_mb < bound_mb


def test_answers_when_no_thread_can_be_started(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where no connection thread can be started (Python 3.12+ starts none while the
    interpreter exits, when a server run inside the application takes the exit's
    delivery), the serving thread answers the request itself: it used to print a
    traceback per attempt and the lines were lost."""
    import socketserver

    from logdna_client import Client

    def refused(self: Any, request: Any, client_address: Any) -> None:
        raise RuntimeError("can't create new thread at interpreter shutdown")

    with DevServer() as server:
        monkeypatch.setattr(socketserver.ThreadingMixIn, "process_request", refused)
        client = Client(url=server.url, flush_interval=0.05)
        try:
            client.log("delivered without a connection thread")
            assert client.flush(10)
        finally:
            client.close(0)
        assert ["delivered without a connection thread"] == [x["line"] for x in server.lines]
