"""Tests for _sender with a scripted transport: retry, split, bisect, auth, gzip, deadline."""

from __future__ import annotations

import asyncio
import gzip
import logging
import re
import signal
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from logdna_client import Client
from logdna_client._buffer import join_entries
from logdna_client._devserver import DevServer
from logdna_client._retry import Backoff
from logdna_client._sender import app_outcome, gzip_entries
from logdna_client._transport import Kind, Outcome

URL = "http://127.0.0.1:1/logs/ingest"


class FakeTransport:
    """Answers each request with ``answer(lines, gzipped)`` and records what was delivered."""

    def __init__(self, answer: Callable[[list[dict[str, Any]], bool], Outcome]) -> None:
        self.answer = answer
        self.delivered: list[str] = []
        self.requests: list[tuple[int, bool]] = []
        self.lock = threading.Lock()

    def send(self, body: bytes, *, gzipped: bool, timeout: float) -> Outcome:
        lines = orjson.loads(gzip.decompress(body) if gzipped else body)["lines"]
        outcome = self.answer(lines, gzipped)
        with self.lock:
            self.requests.append((len(lines), gzipped))
            if outcome.kind is Kind.OK:
                self.delivered.extend(line["line"] for line in lines)
        return outcome

    def close(self) -> None:
        pass


class RecordingBackoff(Backoff):
    """No real waiting; remembers the Retry-After values it was given."""

    def __init__(self) -> None:
        super().__init__(base=0.0001, cap=0.001, rand=lambda: 0.0)
        object.__setattr__(self, "seen", [])

    def delay(
        self, attempt: int, retry_after: float | None = None, budget: float | None = None
    ) -> float:
        self.seen.append(retry_after)  # type: ignore[attr-defined]
        return 0.0


OK = Outcome(Kind.OK, 200)


def client_with(answer: Callable[[list[dict[str, Any]], bool], Outcome],
                **options: Any) -> tuple[Client, FakeTransport, RecordingBackoff]:  # fmt: skip
    transport = FakeTransport(answer)
    backoff = RecordingBackoff()
    options.setdefault("retry_max_backoff", 0.1)
    client = Client(url=URL, transport=transport, backoff=backoff, **options)
    return client, transport, backoff


def failing_first(n: int, outcome: Outcome) -> Callable[[list[dict[str, Any]], bool], Outcome]:
    count = [0]

    def answer(lines: list[dict[str, Any]], gzipped: bool) -> Outcome:
        count[0] += 1
        return outcome if count[0] <= n else OK

    return answer


class TestRetry:
    def test_transient_failures_retry_until_delivered_in_order(self) -> None:
        """503s and connection errors keep the batch at the head until it is delivered."""
        client, transport, _ = client_with(failing_first(5, Outcome(Kind.RETRY, 503)))
        for i in range(100):
            client.log(f"line {i}")
        assert client.flush(10)
        assert [f"line {i}" for i in range(100)] == transport.delivered
        stats = client.stats()
        assert 100 == stats["sent"]
        assert 5 == stats["retries"]
        assert 0 == stats["dropped_total"]
        client.close()

    def test_retry_after_is_passed_to_backoff(self) -> None:
        """A Retry-After from a 429 reaches the backoff as the floor for the wait."""
        client, _, backoff = client_with(failing_first(1, Outcome(Kind.RETRY, 429, 7.0)))
        client.log("x")
        assert client.flush(10)
        assert [7.0] == backoff.seen  # type: ignore[attr-defined]
        client.close()


class TestSplitting:
    def test_413_splits_until_batches_fit(self) -> None:
        """A 413 splits the batch in halves and resends; nothing is lost or repeated."""

        def answer(lines: list[dict[str, Any]], gzipped: bool) -> Outcome:
            return Outcome(Kind.TOO_LARGE, 413) if len(lines) > 10 else OK

        client, transport, _ = client_with(answer)
        for i in range(100):
            client.log(f"line {i}")
        assert client.flush(10)
        assert [f"line {i}" for i in range(100)] == transport.delivered
        client.close()

    def test_400_finds_and_drops_only_the_bad_lines(self) -> None:
        """A 400 bisects the batch to the offending lines, which are dropped and counted."""

        def answer(lines: list[dict[str, Any]], gzipped: bool) -> Outcome:
            bad = any("BAD" in line["line"] for line in lines)
            return Outcome(Kind.BAD_REQUEST, 400, detail="bad line") if bad else OK

        client, transport, _ = client_with(answer)
        sent = [f"line {i}" if i not in (17, 60) else f"BAD {i}" for i in range(100)]
        for text in sent:
            client.log(text)
        client.close(10)  # drains everything, including the summary queued after the 400s
        summary = "logdna_client: 2 lines dropped (2 rejected)"
        assert [t for t in sent if "BAD" not in t] + [summary] == transport.delivered
        assert 2 == client.stats()["dropped"]["rejected"]


class TestAuthAndEncoding:
    def test_auth_failure_reported_once_and_lines_kept(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """401 is reported once at ERROR without the key, and the lines are delivered later."""
        key = "very-secret-key-123"
        client, transport, _ = client_with(failing_first(4, Outcome(Kind.AUTH, 401)), key=key)
        with caplog.at_level(logging.ERROR, logger="logdna_client"):
            client.log("kept")
            assert client.flush(10)
        auth = [r for r in caplog.records if "refused" in r.getMessage()]
        assert 1 == len(auth)
        assert key not in caplog.text
        assert ["kept"] == transport.delivered
        client.close()

    def test_415_switches_to_plain_bodies(self) -> None:
        """A server that refuses gzip gets plain bodies from then on."""

        def answer(lines: list[dict[str, Any]], gzipped: bool) -> Outcome:
            return Outcome(Kind.UNSUPPORTED_ENCODING, 415) if gzipped else OK

        client, transport, _ = client_with(answer)
        client.log("a")
        assert client.flush(10)
        client.log("b")
        assert client.flush(10)
        assert ["a", "b"] == transport.delivered
        assert (1, False) == transport.requests[-1]
        client.close()

    def test_400_on_gzip_falls_back_to_plain(self) -> None:
        """A 400 on a gzip body that the server takes plain turns gzip off, losing nothing."""

        def answer(lines: list[dict[str, Any]], gzipped: bool) -> Outcome:
            return Outcome(Kind.BAD_REQUEST, 400) if gzipped else OK

        client, transport, _ = client_with(answer)
        for i in range(5):
            client.log(f"l{i}")
        assert client.flush(10)
        assert [f"l{i}" for i in range(5)] == transport.delivered
        assert 0 == client.stats()["dropped_total"]
        client.close()


class TestShutdownAndAccounting:
    def test_the_loss_reported_is_the_loss_counted(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The shutdown loss said at close is the number stats() counts as ``shutdown``:
        the batch in flight when the deadline cut it, and what was still queued."""
        from logdna_client import _exit

        said: list[str] = []
        monkeypatch.setattr(_exit, "report_exit_loss", said.append)
        client, _, _ = client_with(lambda lines, gz: Outcome(Kind.RETRY, 503), max_batch_bytes=2000)
        for i in range(200):
            client.log(f"line {i} " + "x" * 40)
        client.close(timeout=0.3)
        lost = client.stats()["dropped"]["shutdown"]
        assert lost > 0
        assert [f"logdna_client: {lost} lines"] == [
            m[: len(f"logdna_client: {lost} lines")] for m in said
        ]

    def test_close_returns_by_deadline_with_dead_service(self) -> None:
        """close() with a service that always fails returns on time and counts the loss."""
        client, _, _ = client_with(lambda lines, gz: Outcome(Kind.RETRY, 503))
        for i in range(10):
            client.log(f"l{i}")
        done = threading.Event()

        def closer() -> None:
            client.close(timeout=0.3)
            done.set()

        threading.Thread(target=closer, daemon=True).start()
        assert done.wait(5), "close() must return near its deadline"
        assert client._sender.finished.wait(5)
        stats = client.stats()
        assert 10 == stats["dropped"]["shutdown"]
        assert not client.log("after")
        assert 1 == client.stats()["dropped"]["after_close"]

    def test_summary_line_after_drops(self) -> None:
        """After lines were dropped, one summary line saying how many is shipped."""
        client, transport, _ = client_with(lambda lines, gz: OK, overflow="drop_newest",
                                           max_buffer_bytes="64KiB")  # fmt: skip
        gate = threading.Event()
        original = transport.answer
        transport.answer = lambda lines, gz: (gate.wait(10), original(lines, gz))[1]
        for i in range(3000):
            client.log(f"line {i:05d} " + "x" * 40)
        dropped = client.stats()["dropped"]["buffer_full"]
        assert dropped > 0
        gate.set()
        client.flush(10)
        client.close(10)
        summaries = [t for t in transport.delivered if "lines dropped" in t]
        assert [f"logdna_client: {dropped} lines dropped ({dropped} buffer full)"] == summaries

    def test_a_before_send_that_drops_the_summary_line(self) -> None:
        """A before_send that drops the library's summary line: it is not sent, not
        counted as one of the app's filtered lines, and not built again batch after
        batch (it was retried, and counted as filtered, at each one)."""
        seen: list[str] = []

        def hook(line: dict[str, Any]) -> dict[str, Any] | None:
            seen.append(line["line"])
            return None if line["line"].startswith("logdna_client:") else line

        calls = [0]

        def answer(lines: list[dict[str, Any]], gzipped: bool) -> Outcome:
            calls[0] += 1
            if calls[0] == 1:
                raise RuntimeError("transport bug")  # one line lost: a summary is due
            return OK

        client, transport, _ = client_with(answer, before_send=hook)
        client.log("lost to the bug")
        client.flush(10)
        for i in range(3):
            client.log(f"after {i}")
            assert client.flush(10)
        stats = client.stats()
        client.close(2)
        assert ["after 0", "after 1", "after 2"] == transport.delivered
        assert 0 == stats["filtered"]
        assert 1 == sum(1 for text in seen if text.startswith("logdna_client:"))

    @pytest.mark.parametrize(
        "error",
        [RuntimeError("transport bug"), asyncio.CancelledError()],
        ids=["exception", "base-exception"],
    )
    def test_sender_survives_transport_bug(self, error: BaseException) -> None:
        """An exception inside the transport, even a BaseException such as a
        CancelledError, costs that batch (counted), not the sender."""
        calls = [0]

        def answer(lines: list[dict[str, Any]], gzipped: bool) -> Outcome:
            calls[0] += 1
            if calls[0] == 1:
                raise error
            return OK

        client, transport, _ = client_with(answer)
        client.log("lost to the bug")
        client.flush(10)
        client.log("delivered")
        assert client.flush(10)
        expected = ["logdna_client: 1 lines dropped (1 error)", "delivered"]
        assert expected == transport.delivered
        assert 1 == client.stats()["dropped"]["error"]
        assert client.stats()["sender_alive"]
        client.close()

    def test_a_207_refusing_only_the_summary_line_counts_no_app_line(self) -> None:
        """The service stores the app lines of a batch and refuses our summary line
        alone, its 207 saying which by place: the app lines count as sent, none as
        rejected, and no summary of a loss that did not happen follows."""
        holder: list[Client] = []
        bodies: list[list[str]] = []

        def answer(lines: list[dict[str, Any]], gzipped: bool) -> Outcome:
            texts = [line["line"] for line in lines]
            bodies.append(texts)
            if len(bodies) == 1:  # "lost": a bug costs it (counted), while two lines queue
                holder[0].log("a")
                holder[0].log("b")
                raise RuntimeError("transport bug")
            at = tuple(i for i, text in enumerate(texts) if "lines dropped" in text)
            if at:
                return Outcome(Kind.PARTIAL, 207, rejected=len(at), rejected_at=at)
            return OK

        client, _, _ = client_with(answer)
        holder.append(client)
        client.log("lost")
        assert not client.flush(10)  # the line lost to the bug
        assert client.flush(10)
        stats = client.stats()
        client.close(2)
        assert ["a", "b", "logdna_client: 1 lines dropped (1 error)"] == bodies[1]
        assert (2, 0, 1) == (stats["sent"], stats["dropped"]["rejected"], stats["dropped_total"])
        assert 2 == len(bodies)  # no second summary

    @pytest.mark.parametrize("how", ["refused-place", "short-array"])
    def test_a_summary_line_a_207_did_not_store_is_told_again(self, how: str) -> None:
        """A 207 that refuses our summary line's place, or whose status array ends
        before it, stored no summary: the drops it told are told again with the next
        batch of application lines (H193: taken as told, 2,690 drops went untold)."""
        holder: list[Client] = []
        bodies: list[list[str]] = []

        def answer(lines: list[dict[str, Any]], gzipped: bool) -> Outcome:
            texts = [line["line"] for line in lines]
            bodies.append(texts)
            if len(bodies) == 1:  # a bug costs "lost" (counted) while two lines queue
                holder[0].log("a")
                holder[0].log("b")
                raise RuntimeError("transport bug")
            at = [i for i, text in enumerate(texts) if "lines dropped" in text]
            if len(bodies) == 2 and at:
                if how == "short-array":
                    return Outcome(Kind.PARTIAL, 207, answered=at[0])
                return Outcome(Kind.PARTIAL, 207, rejected=1, rejected_at=(at[0],))
            return OK

        client, _, _ = client_with(answer)
        holder.append(client)
        client.log("lost")
        assert not client.flush(10)
        client.flush(10)
        client.log("c")
        client.flush(10)
        client.close(2)
        summary = "logdna_client: 1 lines dropped (1 error)"
        assert ["a", "b", summary] == bodies[1]
        assert ["c", summary] == bodies[2]

    def test_a_service_refusing_everything_gets_no_summary_storm(self) -> None:
        """A 400 for every request: the app line is dropped once, and our own summary
        line, refused too, is neither counted as a lost line nor resent in a loop."""
        client, transport, _ = client_with(lambda lines, gz: Outcome(Kind.BAD_REQUEST, 400))
        client.log("refused")
        client.close(2)
        assert 1 == client.stats()["dropped"]["rejected"]
        assert len(transport.requests) <= 4

    def test_logging_after_an_early_close_starts_no_thread(self) -> None:
        """A client closed before its first line counts later lines and starts no sender."""
        client, _, _ = client_with(lambda lines, gz: OK)
        client.close()
        assert not client.log("late")
        assert 1 == client.stats()["dropped"]["after_close"]
        assert client._sender.thread is None


GZIP_BATCHES: list[list[bytes]] = [
    [],
    [b""],
    [b","],
    [b"", b",{}"],
    [b",{}"],
    [b',{"s":"\xc3\xa9"}'],
    [b',{"n":%d}' % i for i in range(255)],
    [b',{"n":%d}' % i for i in range(256)],
    [b',{"n":%d}' % i for i in range(257)],
    [b"," + b"y" * (i % 900) for i in range(1_000)],
]


@pytest.mark.parametrize("entries", GZIP_BATCHES, ids=range(len(GZIP_BATCHES)))
def test_gzip_body_is_the_joined_body(entries: list[bytes]) -> None:
    """The sender gzips a batch a block of entries at a time, never joining the whole
    body: it must still be one gzip member holding exactly join_entries' body."""
    body = gzip_entries(entries)
    assert join_entries(entries) == zlib.decompress(body, 31)
    assert gzip.decompress(body) == join_entries(entries)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads the thread's mask in /proc")
def test_sender_leaves_termination_signals_to_the_main_thread(server: DevServer) -> None:
    """The sender thread blocks SIGTERM, SIGINT and SIGHUP (not fault signals), so the
    kernel hands them to the main thread, where a blocked call wakes for Python's
    handler (one landing on the sender left a main thread waiting on a lock for good)."""
    client = Client(key="k", url=server.url, handle_signals=False)
    client.log("starts the sender")
    assert client.flush(10)
    (sender,) = [t for t in threading.enumerate() if t.ident == client._sender.ident]
    status = Path(f"/proc/self/task/{sender.native_id}/status").read_text()
    found = re.search(r"^SigBlk:\s*([0-9a-f]+)$", status, re.M)
    assert found is not None
    blocked = int(found.group(1), 16)
    client.close()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        assert blocked >> (signum - 1) & 1, signum
    assert not blocked >> (signal.SIGSEGV - 1) & 1
    assert not signal.pthread_sigmask(signal.SIG_BLOCK, [])  # this thread's mask untouched


def test_lines_an_answer_does_not_speak_for_are_refused() -> None:
    """Lines past the places an answer speaks for (a 207 cut short) count as refused,
    beside those it refuses; the drop-summary line among them is neither."""
    summary = b',{"line":"summary"}'
    part = [b',{"line":"%d"}' % i for i in range(5)] + [summary]
    outcome = Outcome(Kind.PARTIAL, 207, rejected=1, rejected_at=(1,), answered=3)
    assert (2, 3) == app_outcome(part, outcome, summary)
    assert (0, 5) == app_outcome(part, Outcome(Kind.PARTIAL, 200, answered=0), summary)
