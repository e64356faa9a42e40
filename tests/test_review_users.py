"""A demanding user's review: asyncio waits, the ASGI middleware, the test helpers and
the typed options, each checked the way an application would use them."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from tests.test_client_api import _gated_client


class TestAsyncWaits:
    def test_many_awaiting_tasks_leave_the_default_executor_free(self) -> None:
        """40 tasks awaiting aflush() against a service that does not answer yet: the
        loop's default executor (asyncio.to_thread, run_in_executor(None), getaddrinfo)
        still runs the app's work at once; no waiter holds one of its few threads."""
        client, transport = _gated_client()

        async def main() -> tuple[bool, list[bool]]:
            client.log("held")
            flushes = [asyncio.create_task(client.aflush(60)) for _ in range(40)]
            for _ in range(3):
                await asyncio.sleep(0)  # every task is waiting now
            loop = asyncio.get_running_loop()
            probe = loop.run_in_executor(None, lambda: "the app's own work")
            done, _ = await asyncio.wait({probe}, timeout=20)
            transport.release.set()
            return probe in done, await asyncio.gather(*flushes)

        try:
            probe_ran, flushed = asyncio.run(main())
        finally:
            transport.release.set()
            client.close(1)
        assert (True, [True] * 40) == (probe_ran, flushed)

    def test_timeout_counts_from_the_call(self) -> None:
        """aflush(timeout) gives up by its own timeout, however many other tasks wait:
        with the default executor down to one thread, 8 waiters still each end by it."""
        client, transport = _gated_client()

        async def main() -> list[bool]:
            loop = asyncio.get_running_loop()
            loop.set_default_executor(ThreadPoolExecutor(max_workers=1))
            client.log("held")
            return await asyncio.wait_for(
                asyncio.gather(*(client.aflush(2.0) for _ in range(8))), timeout=12
            )

        try:
            assert [False] * 8 == asyncio.run(main())
        finally:
            transport.release.set()
            client.close(1)
