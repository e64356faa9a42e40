"""Bugs found reviewing one day's changes: each test failed before its fix."""

from __future__ import annotations

import itertools
import signal
import socket
import textwrap
import threading
import time
import warnings
from collections import Counter
from types import FrameType
from typing import Any

from logdna_client._config import Config
from logdna_client._devserver import DevServer
from logdna_client._transport import HTTPTransport, Kind
from tests._children import (
    ENDS_AFTER_MAIN_WENT_ON,
    Child,
    assert_exactly_once_in_order,
    texts,
)
from tests._claims_servers import Request, answer, scripted_server


class TestExitReportsOnce:
    def test_signal_thread_and_atexit_say_the_exit_drops_once(self, server: DevServer) -> None:
        """SIGTERM lands under logging's lock, so a thread of ours waits for delivery,
        and the main thread goes on to the exit and waits too: the lines the service
        refused while delivering are said on stderr once, not once per waiter."""
        server.reject_lines_matching("refused")
        server.set_delay(0.2)  # the main thread reaches the exit while delivery goes on
        child = Child(
            ENDS_AFTER_MAIN_WENT_ON
            + textwrap.dedent(
                """
            for i in range(20):
                log.info("%s %d", "refused" if i == 7 else "kept", i)
            logging._lock.acquire()  # (3.13 has no _acquireLock)
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here, under the lock
            logging._lock.release()
            mark("went on")
            went_on.set()  # the library's thread may end the process from here on
            """
            ),
            server.url,
            flush_interval="60",
            shutdown_timeout="10",
        )
        child.expect("went on")
        code, _ = child.finish()
        assert -signal.SIGTERM == code, child.stderr
        assert_exactly_once_in_order([f"kept {i}" for i in range(20) if i != 7], texts(server))
        said = [line for line in child.stderr_lines if not line.startswith("@@")]
        assert 1 == len(said), said
        assert "1 lines were dropped while delivering at exit (rejected 1;" in said[0]


class TestAnswersThatWarnAsTheyDecode:
    def test_a_200_whose_charset_warns_is_a_delivery_under_warnings_as_errors(self) -> None:
        """An answer in charset=unicode_escape with an invalid escape makes Python warn
        as it decodes; where warnings are errors (``-W error``, a test suite's
        filterwarnings) that warning is raised. The 200 is still a delivery, not a
        retry that stores the lines again."""
        head = b"Content-Type: application/json; charset=unicode_escape\r\n"
        body = b'{"status":"ok"}\\q'
        reply = b"HTTP/1.1 200 OK\r\n" + head + b"Content-Length: %d\r\n\r\n" % len(body) + body
        with scripted_server(lambda r, s, e: reply) as server:
            transport = HTTPTransport(Config(url=server.url, hostname="t"))
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error")
                    outcome = transport.send(b'{"lines":[]}', gzipped=False, timeout=10)
            finally:
                transport.close()
        assert (Kind.OK, 200) == (outcome.kind, outcome.status), outcome


class TestATransportUsedAgain:
    def test_a_request_made_while_the_closed_transports_watchdog_ends_is_watched(self) -> None:
        """A transport closed and used again (a sender restarted after it died) while
        its watchdog thread is on its way out: the new request is still cut at its
        deadline, by a watchdog that runs (it was handed to the ending thread, and went
        unwatched)."""
        ending, go = threading.Event(), threading.Event()

        def tracer(frame: FrameType, event: str, arg: object) -> Any:
            code = frame.f_code
            if code.co_name != "_run" or not code.co_filename.endswith("_transport.py"):
                return None

            def local(frame: FrameType, event: str, arg: object) -> Any:
                if event == "return":  # the watchdog thread ends: hold it there
                    ending.set()
                    go.wait(30)
                return local

            return local

        asked = itertools.count()

        def ok_then_trickle(request: Request, sock: socket.socket, stop: threading.Event) -> None:
            if next(asked) == 0:
                sock.sendall(answer(200))
                return
            # A 503 whose body trickles for 5 s: no socket read times out. (Not interim
            # answers: past 16 of them the request fails at once.)
            sock.sendall(b"HTTP/1.1 503 Busy\r\nContent-Length: 1000\r\n\r\n")
            for _ in range(500):
                if stop.wait(0.01):
                    break
                sock.sendall(b" ")

        with scripted_server(ok_then_trickle) as server:
            transport = HTTPTransport(Config(url=server.url, hostname="t"))
            threading.settrace(tracer)  # the watchdog thread the first request starts
            try:
                assert Kind.OK is transport.send(b'{"lines":[]}', gzipped=False, timeout=10).kind
            finally:
                threading.settrace(None)  # type: ignore[arg-type]
            try:
                transport.close()
                assert ending.wait(10), "the watchdog thread did not end at close"
                began = time.monotonic()
                outcome = transport.send(b'{"lines":[]}', gzipped=False, timeout=0.5)
                took = time.monotonic() - began
            finally:
                go.set()
                transport.close()
        assert Kind.RETRY is outcome.kind
        assert took < 3.0, f"the request went on for {took:.1f} s, unwatched"


class _CountsGrowingWhileRead(Counter[str]):
    """A spool's drop counts that gain a reason while they are read, as they do when
    the sender counts a new kind of drop at that moment."""

    def items(self) -> Any:
        for item in super().items():
            self["spool_age"] += 1  # a new key in the middle of the iteration
            yield item


def test_drop_counts_read_while_the_sender_adds_a_reason(tmp_path: Any) -> None:
    """stats(), flush() and the close (which a signal handler may run) read the spool's
    drop counts while the sender may add a reason to them: no RuntimeError."""
    from logdna_client import Client

    client = Client(url="http://127.0.0.1:9/logs/ingest", spool_dir=str(tmp_path), hostname="h")
    try:
        client.log("starts the sender, which opens the spool")
        deadline = time.monotonic() + 30
        while client._sender.spool is None and time.monotonic() < deadline:
            client._sender.wake.set()
            client.flush(0.05)
        assert client._sender.spool is not None
        client._sender.spool_dropped_before = _CountsGrowingWhileRead({"spool_full": 2})
        assert 2 == client.stats()["dropped"]["spool_full"]
    finally:
        client.close(0)
