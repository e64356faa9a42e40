"""Tests for Client's user-facing API: context manager, aflush/aclose, typed stats()."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from logdna_client import Client
from logdna_client._stats import ClientStats, DroppedLines, LastError
from logdna_client._transport import Kind, Outcome
from tests.test_sender import OK, URL, FakeTransport, RecordingBackoff, client_with


class TestContextManager:
    def test_with_delivers_and_closes(self) -> None:
        """Leaving the with block delivers what was logged and closes the client."""
        client, transport, _ = client_with(lambda lines, gz: OK)
        with client as entered:
            assert entered is client
            client.log("inside")
        assert client.closed
        assert ["inside"] == transport.delivered
        assert not client.log("after")
        assert 1 == client.stats()["dropped"]["after_close"]

    def test_exception_propagates_after_close(self) -> None:
        """An exception in the block still closes (and delivers), then propagates."""
        client, transport, _ = client_with(lambda lines, gz: OK)
        with pytest.raises(RuntimeError, match="boom"), client:
            client.log("before the error")
            raise RuntimeError("boom")
        assert client.closed
        assert ["before the error"] == transport.delivered


class _GatedTransport(FakeTransport):
    """Holds every request until ``release`` is set; ``entered`` says one is waiting."""

    def __init__(self) -> None:
        super().__init__(lambda lines, gz: OK)
        self.entered = threading.Event()
        self.release = threading.Event()

    def send(self, body: bytes, *, gzipped: bool, timeout: float) -> Outcome:
        self.entered.set()
        self.release.wait(30)
        return super().send(body, gzipped=gzipped, timeout=timeout)


async def _tick_then_release(transport: _GatedTransport, ticks: int) -> int:
    """Count loop iterations; once a request is held, release it after ``ticks`` more.

    Only a loop that keeps running while aflush/aclose wait gets here: a
    blocked loop would leave the request held until their timeout.
    """
    count = 0
    while not transport.entered.is_set():
        await asyncio.sleep(0)
    while count < ticks:
        await asyncio.sleep(0)
        count += 1
    transport.release.set()
    return count


def _gated_client() -> tuple[Client, _GatedTransport]:
    transport = _GatedTransport()
    client = Client(url=URL, transport=transport, backoff=RecordingBackoff(), flush_interval=0.01)
    return client, transport


class TestAsyncio:
    def test_aflush_keeps_the_loop_running(self) -> None:
        """The loop ticks while aflush waits for a held request; then aflush says True."""
        client, transport = _gated_client()

        async def main() -> tuple[bool, int, bool]:
            client.log("one")
            flush = asyncio.create_task(client.aflush(timeout=3))
            ticks = await _tick_then_release(transport, 200)
            pending_at_release = not flush.done()
            return await flush, ticks, pending_at_release

        done, ticks, pending_at_release = asyncio.run(main())
        client.close(1)
        assert (True, 200, True) == (done, ticks, pending_at_release)
        assert ["one"] == transport.delivered

    def test_aclose_keeps_the_loop_running(self) -> None:
        """The loop ticks while aclose waits; the line is delivered and the client closed."""
        client, transport = _gated_client()

        async def main() -> int:
            client.log("last words")
            close = asyncio.create_task(client.aclose(timeout=3))
            ticks = await _tick_then_release(transport, 200)
            await close
            return ticks

        assert 200 == asyncio.run(main())
        assert client.closed
        assert ["last words"] == transport.delivered
        assert 1 == client.stats()["sent"]

    def test_aflush_with_nothing_pending(self) -> None:
        """Nothing queued: aflush is True at once."""
        client, _ = _gated_client()
        try:
            assert asyncio.run(client.aflush(0))
        finally:
            client.close(0)


class TestTimeouts:
    """A NaN timeout (from a config value, a division by zero) is refused at once, the
    line kept: every comparison with NaN is false, and flush(nan) waited in a busy
    loop for good while aclose(nan) and close(nan) dropped what was queued at once."""

    def _held(self) -> tuple[Client, _GatedTransport]:
        client, transport = _gated_client()
        client.log("kept")
        assert transport.entered.wait(10)
        return client, transport

    @pytest.mark.parametrize("call", ["flush", "close"])
    def test_nan_is_refused(self, call: str) -> None:
        client, transport = self._held()
        with pytest.raises(ValueError, match="NaN"):
            getattr(client, call)(float("nan"))
        assert not client.closed
        transport.release.set()
        client.close(10)
        assert ["kept"] == transport.delivered

    def test_a_huge_timeout_is_no_nan(self) -> None:
        """An int past a float's range waits as any long timeout does (H181: the NaN
        test raised OverflowError for it)."""
        client, transport = self._held()
        transport.release.set()
        assert client.flush(10)
        assert client.flush(10**400)  # (nothing left to wait for)
        client.close(10)

    @pytest.mark.parametrize("call", ["aflush", "aclose"])
    def test_nan_is_refused_async(self, call: str) -> None:
        client, transport = self._held()
        with pytest.raises(ValueError, match="NaN"):
            asyncio.run(getattr(client, call)(float("nan")))
        assert not client.closed
        transport.release.set()
        client.close(10)
        assert ["kept"] == transport.delivered


class TestStats:
    def test_typed_keys(self) -> None:
        """stats() has every key its TypedDict declares, and no other: without a spool
        exactly the required ones."""
        client, _, _ = client_with(lambda lines, gz: OK)
        try:
            stats = client.stats()
            assert set(ClientStats.__required_keys__) == set(stats)
            assert set(DroppedLines.__required_keys__) == set(stats["dropped"])
            assert stats["last_error"] is None
        finally:
            client.close(1)

    def test_with_a_spool_its_reasons_are_there_too(self, tmp_path: Any) -> None:
        """With a spool, every reason of DroppedLines is in stats(), 0 until it happens."""
        from logdna_client._devserver import DevServer

        with DevServer() as server:
            client = Client(url=server.url, hostname="t", spool_dir=str(tmp_path))
            try:
                client.log("delivered through the spool")
                assert client.flush(30)
                dropped = client.stats()["dropped"]
                assert list(DroppedLines.__annotations__) == list(dropped)
                assert not any(dropped.values())
            finally:
                client.close(5)

    def test_every_reason_counted_in_the_code_is_a_declared_one(self) -> None:
        """A drop is counted under a literal reason at each call site: each of them is
        one DroppedLines declares (a typo would be a reason stats() never shows)."""
        import pathlib
        import re

        import logdna_client

        package = pathlib.Path(logdna_client.__file__).parent
        call = re.compile(r"(?:count_drop|_count_drop|_drop|discard_all)\(\s*(?:\w+,\s*)?\"(\w+)\"")
        found = {
            reason for path in package.rglob("*.py") for reason in call.findall(path.read_text())
        }
        found |= set(re.findall(r'dropped\["(\w+)"\]', "".join(
            p.read_text() for p in package.rglob("*.py"))))  # fmt: skip
        assert {"shutdown", "after_close", "spool_age"} <= found  # the pattern finds them
        assert found <= set(DroppedLines.__annotations__)

    def test_last_error_kind_status_when(self) -> None:
        """A refused key shows in last_error (kind, status, when), never the key itself."""
        answers = [Outcome(Kind.AUTH, 401, detail="key sekrit-key-1234 refused"), OK]

        def answer(lines: list[dict[str, Any]], gzipped: bool) -> Outcome:
            return answers.pop(0) if answers else OK

        before = time.time()
        client, transport, _ = client_with(answer, key="sekrit-key-1234")
        try:
            client.log("x")
            assert client.flush(5)
            error: LastError | None = client.stats()["last_error"]
            assert error is not None
            assert ("auth", 401) == (error["kind"], error["status"])
            assert before <= error["when"] <= time.time()
            assert {"kind", "status", "when"} == set(error)
            assert "sekrit" not in repr(client.stats())
            error["kind"] = "changed by the caller"  # a snapshot: the next one is intact
            assert "auth" == client.stats()["last_error"]["kind"]  # type: ignore[index]
        finally:
            client.close(1)
        assert ["x"] == transport.delivered

    def test_connection_error_has_no_status(self) -> None:
        """A connection-level failure is kind "retry" with status None."""
        answers = [Outcome(Kind.RETRY, None, detail="connection refused"), OK]
        client, _, _ = client_with(lambda lines, gz: answers.pop(0) if answers else OK)
        try:
            client.log("x")
            assert client.flush(5)
            error = client.stats()["last_error"]
            assert error is not None
            assert ("retry", None) == (error["kind"], error["status"])
        finally:
            client.close(1)
