"""Tests for ``with Client(...)`` and ``async with Client(...)`` as an application uses
them, against a real local server: a block that raises, a service that does not answer,
and the event loop running meanwhile."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from logdna_client import Client
from logdna_client._devserver import DevServer

WAIT = 60.0  # generous: the machine may be loaded
SHUTDOWN = 1.0  # the clients' shutdown_timeout where the service never answers


class Boom(Exception):
    """The application's own exception, raised inside the block."""


@pytest.fixture
def silent_url() -> Iterator[str]:
    """An ingest URL whose server accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/logs/ingest"
    finally:
        stop.set()
        try:  # wakes the blocked accept() (close() alone does not)
            listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        listener.close()
        for conn in accepted:
            conn.close()
        thread.join(WAIT)


async def _ticking(work: asyncio.Future[None] | asyncio.Task[None]) -> float:
    """Await ``work`` while a task ticks every millisecond; the longest gap between
    ticks, in seconds (how long the loop stood still)."""
    gaps: list[float] = []

    async def tick() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.001)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    try:
        await work
    finally:
        ticker.cancel()
    return max(gaps, default=float("inf"))


class TestWithBlockRaising:
    def test_lines_delivered_and_the_same_exception_goes_on(self, server: DevServer) -> None:
        """The block raises: what it logged is delivered, and the exception that leaves
        the with statement is the block's own object."""
        raised = Boom("from the block")
        with pytest.raises(Boom) as caught, Client(url=server.url, key="k") as client:
            client.log("before the error")
            raise raised
        assert caught.value is raised
        assert client.closed
        assert ["before the error"] == [line["line"] for line in server.lines]
        assert 0 == client.stats()["dropped_total"]

    def test_a_silent_service_takes_shutdown_timeout_and_counts_the_line(
        self, silent_url: str
    ) -> None:
        """The service never answers: leaving the raising block takes about
        ``shutdown_timeout`` (not the request timeout, not minutes), the line is counted
        as dropped at shutdown, and the block's exception goes on."""
        started = time.monotonic()
        with pytest.raises(Boom), Client(url=silent_url, key="k", shutdown_timeout=SHUTDOWN) as c:
            c.log("never answered")
            raise Boom
        took = time.monotonic() - started
        assert SHUTDOWN <= took < SHUTDOWN + 10  # the bound only catches the old minutes
        assert 1 == c.stats()["dropped"]["shutdown"]


class TestAsyncWithBlockRaising:
    def test_lines_delivered_and_the_same_exception_goes_on(self, server: DevServer) -> None:
        """``async with``: the block raises; the line is delivered by aclose() and the
        exception that leaves the statement is the block's own object."""
        raised = Boom("from the block")

        async def main() -> Client:
            client = Client(url=server.url, key="k")
            with pytest.raises(Boom) as caught:
                async with client:
                    client.log("async before the error")
                    raise raised
            assert caught.value is raised
            return client

        client = asyncio.run(main())
        assert client.closed
        assert ["async before the error"] == [line["line"] for line in server.lines]
        assert 0 == client.stats()["dropped_total"]

    def test_the_loop_runs_while_a_silent_service_is_waited_for(self, silent_url: str) -> None:
        """The service never answers: leaving the raising ``async with`` block waits about
        ``shutdown_timeout`` with the event loop running all the while (a blocking close
        would stand it still that long), and the line is counted."""
        client = Client(url=silent_url, key="k", shutdown_timeout=SHUTDOWN)

        async def leave_raising() -> None:
            with pytest.raises(Boom):
                async with client:
                    client.log("never answered")
                    raise Boom

        async def main() -> tuple[float, float]:
            started = time.monotonic()
            stood_still = await _ticking(asyncio.ensure_future(leave_raising()))
            return time.monotonic() - started, stood_still

        took, stood_still = asyncio.run(main())
        assert SHUTDOWN <= took < SHUTDOWN + 10
        # Ticks every millisecond; a blocking wait would stand the loop still for the
        # whole second. Half of it leaves room for a loaded machine.
        assert stood_still < SHUTDOWN / 2
        assert 1 == client.stats()["dropped"]["shutdown"]


class TestCancelledWaits:
    def test_wait_for_around_aflush_leaves_nothing_behind(self, silent_url: str) -> None:
        """``asyncio.wait_for(client.aflush(), 0.01)``, fifty times, on a service that
        never answers: each times out, no thread is added, every line stays queued and
        counted, and close() then accounts for all of them."""
        client = Client(url=silent_url, key="k", shutdown_timeout=SHUTDOWN)
        client.log("start the sender")

        async def main() -> int:
            timeouts = 0
            for i in range(50):
                client.log(f"line {i}")
                try:
                    await asyncio.wait_for(client.aflush(WAIT), 0.01)
                except asyncio.TimeoutError:
                    timeouts += 1
            return timeouts

        threads = set(threading.enumerate())
        assert 50 == asyncio.run(main())
        assert set(threading.enumerate()) <= threads
        stats = client.stats()
        assert (51, 0) == (stats["accepted"], stats["dropped_total"])
        client.close(SHUTDOWN)
        stats = client.stats()
        assert (0, 51) == (stats["sent"], stats["dropped"]["shutdown"])
