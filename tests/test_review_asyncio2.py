"""Review: aflush() and aclose() as a demanding asyncio application uses them: many tasks
waiting at once, and closes cancelled and begun again. Lines go to a real server on
loopback; the spool writes to a real folder."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import threading
import weakref
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from logdna_client import Client
from logdna_client import _sender as sender_module
from logdna_client._devserver import DevServer
from tests._claims_servers import Request, Scripted, answer, scripted_server

REPO = str(Path(__file__).resolve().parent.parent)
WAIT = 60.0  # generous: the machine may be loaded
WAITERS = 200


@pytest.fixture
def held() -> Iterator[tuple[Scripted, threading.Event]]:
    """A server that holds each request until the event is set, then answers 200."""
    release = threading.Event()

    def respond(request: Request, sock: Any, stopping: threading.Event) -> bytes:
        release.wait(WAIT)
        return answer(200)

    with scripted_server(respond) as server:
        try:
            yield server, release
        finally:
            release.set()


class _Steps:
    """An awaitable that runs ``coro`` and counts how often the task resumed it: once to
    start it, once per wake-up after that."""

    def __init__(self, coro: Any) -> None:
        self.coro = coro
        self.steps = 0

    def __await__(self) -> Generator[Any, None, Any]:
        return self  # type: ignore[return-value]

    def __iter__(self) -> _Steps:
        return self

    def __next__(self) -> Any:
        return self.send(None)

    def send(self, value: Any) -> Any:
        self.steps += 1
        return self.coro.send(value)

    def throw(self, *args: Any) -> Any:
        self.steps += 1
        return self.coro.throw(*args)


async def _steps_of(work: _Steps) -> Any:
    return await work


class TestManyWaiters:
    def test_waiting_tasks_are_woken_once_not_polled(
        self, held: tuple[Scripted, threading.Event]
    ) -> None:
        """200 tasks await aflush() while the service holds the batch for at least 0.2 s
        of the loop's time: each task is resumed when its wait ends, not 20 times a second
        to look (that cost 0.65 s of CPU a 3 s wait with 1000 tasks, and stalled the loop
        120 ms with 5000). Every one answers True and the line arrives once."""
        server, release = held
        client = Client(url=server.url, key="k", shutdown_timeout=WAIT)

        async def main() -> list[tuple[bool, int]]:
            client.log("one line")
            waits = [_Steps(client.aflush(WAIT)) for _ in range(WAITERS)]
            tasks = [asyncio.ensure_future(_steps_of(w)) for w in waits]
            assert await asyncio.to_thread(server.wait_for_requests, 1, WAIT)
            await asyncio.sleep(0.2)  # the wait lasts a while (a lower bound, not a limit)
            assert not any(task.done() for task in tasks)
            release.set()
            answers = await asyncio.gather(*tasks)
            return [(ok, w.steps) for ok, w in zip(answers, waits, strict=True)]

        try:
            results = asyncio.run(main())
        finally:
            client.close(WAIT)
        assert all(ok for ok, _ in results)
        # Started, then woken when done: 2 (the old polling took 8 or more each).
        assert max(steps for _, steps in results) <= 3
        assert ["one line"] == [line["line"] for r in server.requests for line in r.lines]

    def test_aclose_waiters_and_cancelled_ones_leave_nothing_behind(
        self, held: tuple[Scripted, threading.Event]
    ) -> None:
        """Tasks awaiting aclose() and aflush() together, half of them cancelled: the
        others end when the close is done, and the client keeps no record of any waiter
        (a cancelled wait, each of thousands, must not stay behind)."""
        server, release = held
        client = Client(url=server.url, key="k", shutdown_timeout=WAIT)

        async def main() -> list[object]:
            client.log("one line")
            assert await asyncio.to_thread(server.wait_for_requests, 1, WAIT)
            tasks = [
                asyncio.ensure_future(client.aclose() if i % 2 else client.aflush(WAIT))
                for i in range(WAITERS)
            ]
            await asyncio.sleep(0)
            for task in tasks[::4]:
                task.cancel()
            release.set()
            return await asyncio.gather(*tasks, return_exceptions=True)

        results = asyncio.run(main())
        cancelled = [r for r in results if isinstance(r, asyncio.CancelledError)]
        assert len(cancelled) == WAITERS // 4
        assert client.closed
        assert 1 == client.stats()["sent"]
        assert not getattr(client, "_watches", {})


class TestSpillThreads:
    def test_cancelled_acloses_start_one_spill_thread(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With a spool, aclose() writes memory to disk on a thread of the library's. An
        app that retries a short ``wait_for(client.aclose(), ...)`` (20 times here) while
        the sender is busy on the disk got 20 such threads, each looking 20 times a second
        until the close's deadline; one does the writing for them all."""
        syncing = threading.Event()
        disk_free = threading.Event()
        real_sync = os.fdatasync

        def blocked_sync(fd: int) -> None:
            syncing.set()
            disk_free.wait(WAIT)
            real_sync(fd)

        monkeypatch.setattr(os, "fdatasync", blocked_sync)
        with scripted_server(lambda request, sock, stopping: answer(200)) as server:
            client = Client(url=server.url, key="k", spool_dir=str(tmp_path), shutdown_timeout=WAIT)

            async def main() -> int:
                client.log("first")
                assert await asyncio.to_thread(syncing.wait, WAIT)
                for i in range(20):
                    client.log(f"line {i}")
                for _ in range(20):
                    try:
                        await asyncio.wait_for(client.aclose(), 0.001)
                    except asyncio.TimeoutError:
                        pass
                return sum(t.name == "logdna_client-spill" for t in threading.enumerate())

            try:
                spillers = asyncio.run(main())
            finally:
                disk_free.set()
            asyncio.run(client.aclose())
        assert 1 == spillers
        assert client.closed
        stats = client.stats()
        # Sent from memory, or written to the spool by the spill first and sent from there.
        assert (21, 0) == (stats["sent"] + stats["replayed"], stats["dropped_total"])


class TestLoopClosedWhileWaiting:
    def test_the_client_keeps_no_loop_alive(self, held: tuple[Scripted, threading.Event]) -> None:
        """A loop closed while tasks await aflush() and aclose() (asyncio warns of them):
        once the app lets go of the loop and its tasks, the client, which lives on, holds
        neither."""
        server, release = held
        client = Client(url=server.url, key="k", shutdown_timeout=WAIT)
        loop = asyncio.new_event_loop()

        async def start() -> list[asyncio.Task[Any]]:
            client.log("one line")
            tasks = [asyncio.ensure_future(client.aflush(WAIT)) for _ in range(10)]
            tasks.append(asyncio.ensure_future(client.aclose()))
            await asyncio.sleep(0)
            return tasks

        tasks = loop.run_until_complete(start())
        assert not any(task.done() for task in tasks)
        loop.close()
        gone = weakref.ref(loop)
        del loop, tasks
        gc.collect()
        assert gone() is None
        # The held request answered, the close the app began ends here, not at the test
        # run's exit (which said the line lost once its 60 s deadline passed).
        release.set()
        client.close(WAIT)
        assert 1 == client.stats()["sent"]


class TestNoSenderThread:
    def test_a_second_aclose_does_not_run_the_sender_again(
        self, held: tuple[Scripted, threading.Event], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """No sender thread can be started (RLIMIT_NPROC): aclose() does the sender's work
        on a thread of its own. Cancelled while the first batch is out, and awaited again,
        it started a second run of the sender's loop on the same buffer, beside the first
        still delivering (two senders, as a second close() on another thread did); the
        first delivers it all, and the second aclose() waits for it."""

        def refuse(thread: threading.Thread) -> None:
            raise RuntimeError("can't start new thread")

        runs: list[str] = []
        real_serve = sender_module.Sender._serve

        def serve(self: sender_module.Sender) -> None:
            runs.append(threading.current_thread().name)
            real_serve(self)

        monkeypatch.setattr(sender_module, "start_library_thread", refuse)
        monkeypatch.setattr(sender_module.Sender, "_serve", serve)
        server, release = held
        client = Client(url=server.url, key="k", max_batch_bytes=1024, shutdown_timeout=WAIT)

        async def main() -> None:
            for i in range(100):
                client.log(f"line {i}")
            first = asyncio.ensure_future(client.aclose())
            assert await asyncio.to_thread(server.wait_for_requests, 1, WAIT)
            first.cancel()
            second = asyncio.ensure_future(client.aclose())
            await asyncio.sleep(0)
            release.set()
            await second

        asyncio.run(main())
        assert 1 == len(runs)
        stats = client.stats()
        assert (100, 0) == (stats["sent"], stats["dropped_total"])
        assert 100 == sum(len(r.lines) for r in server.requests)


_ENDING_APP = """
import asyncio, sys
from logdna_client import Client

client = Client(url=sys.argv[1], key="k", shutdown_timeout=30)

async def main():
    for i in range(100):
        client.log(f"line {i}")
    mode = sys.argv[2]
    if mode == "cancelled_aclose":
        try:
            await asyncio.wait_for(client.aclose(), 0.001)
        except asyncio.TimeoutError:
            pass
    elif mode == "aclose_task_left":
        asyncio.create_task(client.aclose())  # asyncio.run cancels it as it ends
        await asyncio.sleep(0)
    elif mode == "cancelled_aflush":
        try:
            await asyncio.wait_for(client.aflush(30), 0.001)
        except asyncio.TimeoutError:
            pass

asyncio.run(main())
"""


class TestProcessEnds:
    @pytest.mark.parametrize(
        "mode", ["never_closed", "cancelled_aclose", "aclose_task_left", "cancelled_aflush"]
    )
    def test_lines_are_delivered_by_the_exit(self, mode: str, tmp_path: Path) -> None:
        """``asyncio.run()`` returns with the client never closed, or its aclose()/aflush()
        cancelled, while the service takes its time; the interpreter exits: the exit
        delivers every line, once, and says nothing was lost."""
        script = tmp_path / "app.py"
        script.write_text(_ENDING_APP)
        with DevServer() as server:
            server.set_delay(0.3)  # the process ends while the batch is out
            done = subprocess.run(
                [sys.executable, str(script), server.url, mode],
                check=False, capture_output=True, text=True, timeout=WAIT,
                env={**os.environ, "PYTHONPATH": REPO},
            )  # fmt: skip
            assert 0 == done.returncode, done.stderr
            assert server.wait_for_lines(100, timeout=WAIT)
            got = [line["line"] for line in server.lines]
        assert [f"line {i}" for i in range(100)] == got
        assert "logdna_client" not in done.stderr
