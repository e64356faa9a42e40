"""An adversarial review of the transport's answer reading (the body read as sent and
decoded under the caps) and of aflush()/aclose() waiting in the event loop: real
servers on loopback (tests/_claims_servers.py), each case checked against the
accounting identity of docs/delivery.md."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import select
import socket
import subprocess
import sys
import textwrap
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Iterator

import orjson
import pytest

from logdna_client import Client
from logdna_client._transport import MAX_PARTIAL_BYTES
from tests._children import REPO
from tests._claims_servers import Request, answer, scripted_server
from tests.test_claims_hostile import DEADLINE, WAIT
from tests.test_hostile_endpoints import (
    BROKEN_HEADERS,
    assert_adds_up,
    deliver,
    numbered,
    texts,
    tls,  # noqa: F401 - a fixture
)

STATUSES = b'{"status":[200,400,200]}'


def gzipped_207(body: bytes, coding: bytes = b"gzip", extra: bytes = b"") -> bytes:
    return answer(207, body, b"Content-Encoding: %s\r\n%s" % (coding, extra))


def refused(reply: bytes, count: int = 3) -> tuple[int, int]:
    """(sent, rejected) once a batch of ``count`` lines got ``reply``; the identity holds."""
    client, requests = deliver(
        lambda r, s, e: reply, numbered("line", count), flushed=False, flush_interval=60
    )
    assert numbered("line", count) == texts(requests[:1])  # then, the drop-summary line
    assert_adds_up(client, count)
    s = client.stats()
    return s["sent"], s["dropped"]["rejected"]


class TestCodingsThatHeld:
    """Lists, case and aliases of Content-Encoding, and what follows a gzip member."""

    @pytest.mark.parametrize(
        "coding", [b"GZIP", b"x-gzip", b"identity, gzip", b"gzip, identity", b"Deflate"]
    )
    def test_a_coding_read(self, coding: bytes) -> None:
        packed = zlib.compressobj(9, zlib.DEFLATED, 31 if b"zip" in coding.lower() else 15)
        body = packed.compress(STATUSES) + packed.flush()
        assert (2, 1) == refused(gzipped_207(body, coding))

    @pytest.mark.parametrize("coding", [b"gzip, gzip", b"gzip,\tdeflate", b"br"])
    def test_a_coding_not_read_is_decided_by_its_status(self, coding: bytes) -> None:
        body = gzip.compress(gzip.compress(STATUSES))
        client, _ = deliver(
            lambda r, s, e: answer(200, body, b"Content-Encoding: %s\r\n" % coding),
            ["stored"],
        )
        assert (1, 0) == (client.stats()["sent"], client.stats()["retries"])
        assert_adds_up(client, 1)

    @pytest.mark.parametrize("after", [b"garbage after the member", b"\x00" * 8, b"\x1f\x8b"])
    def test_bytes_past_the_gzip_member(self, after: bytes) -> None:
        assert (2, 1) == refused(gzipped_207(gzip.compress(STATUSES) + after))

    def test_a_chunked_gzip_answer(self) -> None:
        body = gzip.compress(STATUSES)
        chunks = b"".join(b"%x\r\n%s\r\n" % (1, body[i : i + 1]) for i in range(len(body)))
        reply = (
            b"HTTP/1.1 207 Multi\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunks
            + b"0\r\n\r\n"
        )
        assert (2, 1) == refused(reply)


def padded_207(request: Request, sock: socket.socket, stop: threading.Event) -> bytes:
    """A 207 whose status array (the second line refused) starts past MAX_PARTIAL_BYTES."""
    statuses = [200] * len(request.lines)
    statuses[1] = 400
    body = b'{"note":"' + b"x" * MAX_PARTIAL_BYTES + b'","status":' + orjson.dumps(statuses) + b"}"
    return answer(207, body)


class TestAnswersThatCannotConfirm:
    """A 207 the client could not read to its end confirms only the statuses it read:
    the lines past them are unconfirmed (counted as rejected, never resent), never
    counted as sent."""

    def test_a_truncated_gzip_207(self) -> None:
        """A gzip 207 cut short (its Content-Length honest about the bytes sent): not
        read to its end, it confirms only what it decoded."""
        body = gzip.compress(STATUSES)[:-12]  # the deflate stream's end and the trailer gone
        assert b'{"status":[200,400,' == zlib.decompressobj(31).decompress(body)
        # The first two statuses read to their end; the third line unconfirmed (all
        # three counted as sent: the cut answer did not parse, read as refusing none).
        assert (1, 2) == refused(gzipped_207(body))

    def test_a_207_cut_short_of_its_content_length(self) -> None:
        """A 207 whose connection ends before its Content-Length: the statuses read to
        their end count (the first), the rest is unconfirmed."""

        def cut(request: Request, sock: socket.socket, stop: threading.Event) -> None:
            body = b'{"status":[200,400,200]}'
            sock.sendall(
                b"HTTP/1.1 207 Multi\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body[:16])
            )
            sock.shutdown(socket.SHUT_RDWR)

        client, requests = deliver(cut, numbered("line", 3), flushed=False, flush_interval=60)
        assert numbered("line", 3) == texts(requests[:1])
        s = client.stats()
        assert (1, 2) == (s["sent"], s["dropped"]["rejected"])
        assert_adds_up(client, 3)

    def test_a_207_whose_statuses_start_past_the_cap(self) -> None:
        """Nothing read of its status array: no line is confirmed (all were counted as
        sent, the refused one too)."""
        client, requests = deliver(
            padded_207, numbered("line", 3), flushed=False, flush_interval=60
        )
        assert numbered("line", 3) == texts(requests[:1])
        s = client.stats()
        assert (0, 3) == (s["sent"], s["dropped"]["rejected"])
        assert_adds_up(client, 3)

    def test_a_207_in_a_coding_not_read(self) -> None:
        """A 207 in br (never decoded): it says nothing the client read, so no line is
        confirmed (all were counted as sent)."""
        assert (0, 3) == refused(gzipped_207(b"\x8b\x02\x80" + STATUSES, b"br"))

    @pytest.mark.parametrize("headers", BROKEN_HEADERS.values(), ids=BROKEN_HEADERS.keys())
    def test_a_207_whose_headers_cannot_be_read(self, headers: bytes) -> None:
        """Its status read, nothing after it: no line is confirmed (all were counted as
        sent, whichever the service refused)."""
        assert (0, 3) == refused(b"HTTP/1.1 207 Multi\r\n" + headers)


def run_child(code: str) -> str:
    """Run ``code`` in a child interpreter within WAIT seconds; its stdout. A child still
    running then (a deadlock) fails the test rather than hanging the run."""
    try:
        run = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
            timeout=WAIT, env=dict(os.environ, PYTHONPATH=REPO), check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail(f"the child did not end within {WAIT} s (a deadlock)")
    assert 0 == run.returncode, run.stderr[-2000:]
    return run.stdout


class TestCaptureLocking:
    def test_a_finalizer_logging_to_another_client_during_a_capture(self) -> None:
        """A finalizer a collection runs while a line is turned into the capture's dict
        (here: called from to_dict itself, deterministically) logs to another client,
        whose own thread is delivering a line meanwhile: both lines are captured (the
        two threads deadlocked: one held the capture's append lock and waited for the
        other client's buffer lock, the other held that lock and waited for the first)."""
        out = run_child(
            """
            import threading
            from logdna_client import Client, _capture
            from logdna_client.testing import capture_lines

            a = Client(url="http://127.0.0.1:9/logs/ingest", hostname="t")
            b = Client(url="http://127.0.0.1:9/logs/ingest", hostname="t")
            real = _capture.to_dict
            b_holds_its_lock = threading.Event()

            def to_dict(data):
                if b'"from a"' in data:  # what a finalizer run here would do
                    assert b_holds_its_lock.wait(20)
                    b.log("from a finalizer")
                return real(data)

            _capture.to_dict = to_dict
            with capture_lines() as lines:
                deliver = b._buffer._sink

                def sink(entry):  # called under b's buffer lock
                    if b"from b" in entry:
                        b_holds_its_lock.set()
                    return deliver(entry)

                b._buffer._sink = sink
                threads = [
                    threading.Thread(target=a.log, args=("from a",), daemon=True),
                    threading.Thread(target=b.log, args=("from b",), daemon=True),
                ]
                threads[0].start()
                threads[1].start()
                for thread in threads:
                    thread.join(10)
                    if thread.is_alive():
                        import os
                        os._exit(3)
            print(sorted(line["line"] for line in lines))
            """
        )
        assert "['from a', 'from a finalizer', 'from b']" in out

    def test_a_finalizer_logging_to_the_same_client_during_a_capture(self) -> None:
        """A real finalizer, run by a collection while a line is captured (every
        allocation collects), logs to the same client: both lines are captured, once."""
        out = run_child(
            """
            import gc
            from logdna_client import Client
            from logdna_client.testing import capture_lines

            client = Client(url="http://127.0.0.1:9/logs/ingest", hostname="t")

            class Logs:
                def __del__(self):
                    client.log("from a finalizer")

            with capture_lines() as lines:
                cycle = Logs()
                cycle.me = cycle
                del cycle
                gc.set_threshold(1)
                try:
                    client.log("logged", meta={"a": {"b": [{"c": 1}]}})
                finally:
                    gc.set_threshold(700)
            print(sorted(line["line"] for line in lines))
            """
        )
        assert "['from a finalizer', 'logged']" in out

    def test_fork_while_another_thread_appends_to_a_capture(self) -> None:
        """A process forked while another thread was appending a line to an open
        capture: the child's own lines are captured (it hung for good, the capture's
        lock held by a thread that does not exist in the child)."""
        out = run_child(
            """
            import os, threading
            from logdna_client import Client, _capture
            from logdna_client.testing import capture_lines

            client = Client(url="http://127.0.0.1:9/logs/ingest", hostname="t")
            with capture_lines() as lines:
                holding, release = threading.Event(), threading.Event()

                def appending():  # a thread in the middle of deliver()
                    with _capture._appending:
                        holding.set()
                        release.wait(30)

                thread = threading.Thread(target=appending, daemon=True)
                thread.start()
                assert holding.wait(20)
                read, write = os.pipe()
                pid = os.fork()
                if pid == 0:
                    client.log("in the child")
                    os.write(write, ("%d" % len(lines)).encode())
                    os._exit(0)
                os.close(write)
                import select
                ready, _, _ = select.select([read], [], [], 10)
                said = os.read(read, 100) if ready else b"hung"
                if not ready:
                    os.kill(pid, 9)
                os.waitpid(pid, 0)
                release.set()
                thread.join()
            print("child:", said.decode())
            """
        )
        assert "child: 1" in out


@contextlib.contextmanager
def held_client() -> Iterator[tuple[Client, threading.Event]]:
    """A client of a server that answers each request 200 only once the event is set;
    one line logged and on its way."""
    release = threading.Event()

    def held(request: Request, sock: socket.socket, stop: threading.Event) -> bytes:
        release.wait(WAIT)
        return answer(200)

    with scripted_server(held) as server:
        client = Client(url=server.url, hostname="t", flush_interval=0.01)
        client.log("held")
        assert server.wait_for_requests(1, WAIT)
        try:
            yield client, release
        finally:
            release.set()
            client.close(DEADLINE)


class FastClockLoop(asyncio.SelectorEventLoop):
    """A loop whose clock runs a thousand times fast (as test loops with a fake clock
    do): its sleeps end at once."""

    def time(self) -> float:
        return super().time() * 1000


class TestAwaitingInTheLoop:
    def test_a_loop_with_a_fast_clock_still_waits_the_timeout_in_seconds(self) -> None:
        """The sender works in real seconds: aflush(timeout) waits that long, whatever
        the loop's clock says, and is False while the answer is held."""
        with held_client() as (client, release):
            loop = FastClockLoop()
            try:
                started = time.monotonic()
                assert loop.run_until_complete(client.aflush(0.5)) is False
                assert time.monotonic() - started >= 0.5
                release.set()
                assert loop.run_until_complete(client.aflush(WAIT)) is True
            finally:
                loop.close()
            assert_adds_up(client, 1)

    def test_asyncio_run_ending_while_a_task_awaits_aflush(self) -> None:
        """asyncio.run returns while a task still awaits aflush(None): the task is
        cancelled, no thread is left behind, and the line is still delivered."""
        with held_client() as (client, release):
            before = set(threading.enumerate())

            async def main() -> asyncio.Task[bool]:
                task = asyncio.create_task(client.aflush(None))
                await asyncio.sleep(0.05)  # it is awaiting (nothing to wait for: a lower bound)
                return task

            task = asyncio.run(main())
            assert task.cancelled()
            assert set(threading.enumerate()) <= before
            release.set()
            assert client.flush(WAIT)
            assert_adds_up(client, 1)

    def test_aclose_cancelled_mid_wait_then_close(self) -> None:
        """aclose() cancelled while it waits: close() afterwards still delivers the line
        by the deadline, once."""
        with held_client() as (client, release):

            async def main() -> None:
                closing = asyncio.create_task(client.aclose(WAIT))
                await asyncio.sleep(0.05)
                closing.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await closing

            asyncio.run(main())
            release.set()
            client.close(WAIT)
            s = client.stats()
            assert (1, 0) == (s["sent"], s["dropped_total"]), s
            assert_adds_up(client, 1)

    def test_aflush_on_uvloop(self) -> None:
        uvloop = pytest.importorskip("uvloop")
        with held_client() as (client, release):

            async def main() -> tuple[bool, bool]:
                held = await client.aflush(0.3)
                waiting = asyncio.create_task(client.aflush(None))
                await asyncio.sleep(0.05)
                waiting.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await waiting
                release.set()
                return held, await client.aflush(WAIT)

            assert (False, True) == uvloop.run(main())
            assert_adds_up(client, 1)

    def test_aflush_of_nothing_outside_any_loop_needs_none(self) -> None:
        """Nothing pending: aflush answers without awaiting, even driven by hand."""
        client = Client(url="http://127.0.0.1:9/logs/ingest", hostname="t")
        coroutine = client.aflush(0)
        with pytest.raises(StopIteration) as done:
            coroutine.send(None)
        assert done.value.value is True
        client.close(0)


class TestConnectionsAfterAnUnreadBody:
    @pytest.mark.parametrize(
        "coding", [b"br", b"gzip, gzip", b"gzip"], ids=["not-read", "list-not-read", "endless"]
    )
    def test_a_body_left_unread_is_never_the_next_answer(self, coding: bytes) -> None:
        """An answer whose body is left unread (a coding not decoded, or more than the
        cap): its connection is not used again, so the next request never reads the rest
        of that body (here a forged 400) as its answer."""
        forged = b"HTTP/1.1 400 Forged\r\nContent-Length: 0\r\n\r\n" * 2000
        if coding == b"gzip":  # decodes past the 64 KiB cap: the rest is unread
            forged = gzip.compress(b"x" * 200_000) + forged
        first = answer(200, forged, b"Content-Encoding: %s\r\n" % coding)
        seen: set[int] = set()

        def respond(request: Request, sock: socket.socket, stop: threading.Event) -> bytes:
            fresh = id(sock) not in seen
            seen.add(id(sock))
            return first if fresh else answer(200)

        batches = [numbered(f"b{batch}", 2) for batch in range(3)]
        client, requests = deliver(respond, *batches, flush_interval=60)
        assert [line for batch in batches for line in batch] == texts(requests)
        s = client.stats()
        assert (6, 0, 0) == (s["sent"], s["dropped_total"], s["retries"]), s
        assert_adds_up(client, 6)

    def test_a_redirect_with_a_compressed_body(self) -> None:
        """A 302 whose body is a gzip answer (decoding past the cap) is a redirect
        refused: the lines are kept, sent again to the url, stored once."""
        body = gzip.compress(b"x" * 300_000)
        redirect = answer(302, body, b"Content-Encoding: gzip\r\nLocation: http://elsewhere/\r\n")
        answers = iter([redirect])
        client, requests = deliver(
            lambda r, s, e: next(answers, None) or answer(200), ["moved"],
            retry_max_backoff=0.1,
        )  # fmt: skip
        assert ["moved", "moved"] == texts(requests)
        s = client.stats()
        assert (1, 0) == (s["sent"], s["dropped_total"]), s
        assert_adds_up(client, 1)

    @pytest.mark.parametrize("coding", [b"identity", b"gzip", b"deflate"])
    def test_an_empty_answer_keeps_its_connection(self, coding: bytes) -> None:
        """A 200 with no body that says Content-Encoding gzip (some frameworks label
        every answer so): read to its end, its connection is kept for the next batch
        (each batch opened a new one, a TLS handshake each)."""
        socks: list[socket.socket] = []  # kept: ids of live objects are unique

        def respond(request: Request, sock: socket.socket, stop: threading.Event) -> bytes:
            if not any(sock is s for s in socks):
                socks.append(sock)
            return answer(200, b"", b"Content-Encoding: %s\r\n" % coding)

        batches = [numbered(f"b{batch}", 2) for batch in range(3)]
        client, requests = deliver(respond, *batches, flush_interval=60)
        assert 6 == len(texts(requests)) == client.stats()["sent"]
        assert 1 == len(socks)
        assert_adds_up(client, 6)


class TestAcloseWhereNoThreadCanStart:
    def test_aclose_delivers_as_close_does(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """No thread of the library's or the loop's executor can start (RLIMIT_NPROC, no
        memory for a stack): aclose() delivers the queued line on the loop's own thread,
        as close() does on its caller's (it raised RuntimeError, the line left queued,
        and the executor kept the work it was handed, to run whenever a thread could)."""
        real_start = threading.Thread.start

        def start(thread: threading.Thread) -> None:
            if thread.name.startswith(("logdna_client", "asyncio")):
                raise RuntimeError("can't start new thread")
            real_start(thread)

        with scripted_server(lambda r, s, e: answer(200)) as server:
            loop = asyncio.new_event_loop()
            monkeypatch.setattr(threading.Thread, "start", start)
            try:
                client = Client(url=server.url, hostname="t", handle_signals=False)
                client.log("no thread")
                loop.run_until_complete(client.aclose(WAIT))
            finally:
                monkeypatch.undo()
                loop.close()
            assert ["no thread"] == texts(server.requests)
        s = client.stats()
        assert (1, 0, 0) == (s["sent"], s["queued"], s["dropped_total"]), s
        assert_adds_up(client, 1)


def tunnel_to(port: int) -> Callable[[Request, socket.socket, threading.Event], None]:
    """A CONNECT proxy's responder: a tunnel to 127.0.0.1:``port``, whatever was asked."""

    def tunnel(request: Request, sock: socket.socket, stop: threading.Event) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as upstream:
            sock.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            ends = [sock, upstream]
            while not stop.is_set():
                ready, _, _ = select.select(ends, [], [], 30)
                if not ready:
                    return
                for end in ready:
                    data = end.recv(65536)
                    if not data:
                        return
                    (upstream if end is sock else sock).sendall(data)

    return tunnel


class TestThroughAProxy:
    def test_an_unverified_compressed_207_through_a_connect_proxy(
        self, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """verify=False through an HTTPS proxy's tunnel, warnings as errors, the 207 in
        gzip: the refused line is counted as rejected, the others sent, once each."""
        context, _ = request.getfixturevalue("tls")
        reply = gzipped_207(gzip.compress(STATUSES))
        for name in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
            monkeypatch.delenv(name, raising=False)
        with scripted_server(lambda r, s, e: reply, tls=context) as service:
            port = int(service.url.split(":")[2].split("/")[0])
            with scripted_server(tunnel_to(port)) as proxy:
                monkeypatch.setenv("https_proxy", proxy.url.replace("/logs/ingest", ""))
                monkeypatch.setenv("HTTPS_PROXY", proxy.url.replace("/logs/ingest", ""))
                with warnings.catch_warnings():
                    warnings.simplefilter("error")
                    client = Client(
                        key="k" * 32, url=service.url.replace("127.0.0.1", "service.invalid"),
                        hostname="t", verify=False, flush_interval=60,
                    )  # fmt: skip
                    for line in numbered("line", 3):
                        client.log(line)
                    assert client.flush(WAIT) is False  # one line refused
                    client.close(DEADLINE)
            assert numbered("line", 3) == texts(service.requests[:1])
        s = client.stats()
        assert (2, 1, 0) == (s["sent"], s["dropped"]["rejected"], s["retries"]), s
        assert_adds_up(client, 3)
