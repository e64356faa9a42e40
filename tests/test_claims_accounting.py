"""docs/delivery.md, "Loss accounting", against a real Client and a scripted transport.

What must hold without a spool: every line logged through the library at or above its
level is counted exactly once, as ``queued``, ``sent``, ``filtered`` or one reason of
``dropped``; ``accepted`` counts only the lines that reached the buffer (those dropped
before it, ``after_close``, ``error`` when no line could be built, and ``buffer_full``
for a new line refused under ``drop_newest``, were never accepted; lines ``drop_oldest``
evicts were). docs/delivery.md and docs/configuration.md on ``max_batch_bytes``: a batch
is bounded by the same per-line cost as ``max_buffer_bytes``, so its body is smaller.
And the 10 MB body limit has one home, which the batch cap stays below."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from logdna_client import Client
from logdna_client._buffer import LINE_OVERHEAD
from logdna_client._config import _MAX_BATCH_CAP
from logdna_client._devserver import MAX_BODY_BYTES
from logdna_client._limits import BODY_BYTES
from logdna_client._line import LineBuilder
from logdna_client._transport import Kind, Outcome

URL = "http://127.0.0.1:1/logs/ingest"
WAIT = 10.0
OK = Outcome(Kind.OK, 200)
BAD = Outcome(Kind.BAD_REQUEST, 400, detail="bad line")


class GatedTransport:
    """Holds every request until ``gate`` is set; answers 400 to a body holding the
    line ``poison`` (so the sender bisects down to it), 200 to the rest. Records the
    application lines of each body the service stored, and each body's size."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()  # a request is out, waiting on the gate
        self.stored: list[list[str]] = []
        self.body_sizes: list[int] = []

    def send(self, body: bytes, *, gzipped: bool, timeout: float) -> Outcome:
        assert not gzipped
        self.entered.set()
        assert self.gate.wait(WAIT)
        lines = [line["line"] for line in orjson.loads(body)["lines"]]
        if "poison" in lines:
            return BAD
        self.body_sizes.append(len(body))
        self.stored.append(lines)
        return OK

    def close(self) -> None:
        pass

    def app_lines(self) -> list[str]:
        """What the service stored, less the library's drop-summary lines."""
        return [t for batch in self.stored for t in batch if not t.startswith("logdna_client:")]


def gated_client(**options: Any) -> tuple[Client, GatedTransport]:
    transport = GatedTransport()
    options = {"flush_interval": 3600, "compress": False, "retry_max_backoff": 0.1,
               "handle_signals": False, **options}  # fmt: skip
    return Client(url=URL, transport=transport, **options), transport


def fail_to_build(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    """The builder raises for ``text`` (a bug, or an object that cannot be turned into
    a line): ``Client.log`` counts it as ``error``."""
    encode: Callable[..., bytes | None] = LineBuilder.encode

    def failing(self: LineBuilder, line: str, *args: Any, **kwargs: Any) -> bytes | None:
        if line == text:
            raise RuntimeError("cannot build this line")
        return encode(self, line, *args, **kwargs)

    monkeypatch.setattr(LineBuilder, "encode", failing)


@pytest.mark.parametrize("overflow", ["drop_newest", "drop_oldest"])
def test_every_line_logged_is_counted_once_and_accepted_is_what_reached_the_buffer(
    overflow: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/delivery.md: without a spool, lines logged at or above the level ==
    queued + sent + filtered + dropped_total, both while lines wait and after close();
    accepted == logged - filtered - the drops before the buffer (after_close, error,
    and buffer_full under drop_newest; under drop_oldest the evicted lines were
    accepted). Each kind of line is there: delivered, refused by the service (400),
    dropped as buffer_full, filtered by before_send, failed to build, after close, and
    one below the level (not logged through the library: counted nowhere)."""
    fail_to_build(monkeypatch, "build fails")
    client, transport = gated_client(
        overflow=overflow, max_buffer_bytes="64KiB", level="INFO",
        before_send=lambda line: None if line["line"] == "filter me" else line,
    )  # fmt: skip
    logged = 0

    def log(text: str) -> None:
        nonlocal logged
        client.log(text)
        logged += 1

    def counted() -> int:
        s = client.stats()
        return s["queued"] + s["sent"] + s["filtered"] + s["dropped_total"]

    log("first")
    client.flush(timeout=0)  # wakes the sender: "first" goes out and waits on the gate
    assert transport.entered.wait(WAIT)
    if overflow == "drop_newest":
        log("poison")  # kept: the lines that do not fit are the new ones
    for i in range(3000):  # far more than a 64 KiB buffer holds
        log(f"line {i:05d} " + "x" * 40)
    if overflow == "drop_oldest":
        log("poison")  # kept: the lines that do not fit are the oldest
    log("filter me")
    log("build fails")
    client.log("below the level", level="DEBUG")  # not logged: counted nowhere
    log("last")
    waiting = client.stats()
    assert waiting["dropped"]["buffer_full"] > 0, waiting
    assert waiting["queued"] > 0, waiting
    assert logged == counted(), waiting

    transport.gate.set()
    client.flush(WAIT)
    client.close(WAIT)
    log("after close")

    s = client.stats()
    dropped = s["dropped"]
    assert 0 == s["queued"], s
    assert (1, 1, 1) == (s["filtered"], dropped["error"], dropped["after_close"]), s
    assert 1 == dropped["rejected"], s
    assert 0 == dropped["shutdown"] + dropped["reentrant"], s
    delivered = transport.app_lines()
    assert len(delivered) == s["sent"], s
    assert "below the level" not in delivered
    assert logged == s["queued"] + s["sent"] + s["filtered"] + s["dropped_total"], s

    before_buffer = s["filtered"] + dropped["after_close"] + dropped["error"]
    if overflow == "drop_newest":
        before_buffer += dropped["buffer_full"]  # each a new line refused at the door
    assert logged - before_buffer == s["accepted"], s
    # The same from the other side: what reached the buffer is sent, refused, or evicted.
    evicted = dropped["buffer_full"] if overflow == "drop_oldest" else 0
    assert s["accepted"] == s["sent"] + dropped["rejected"] + evicted, s


def test_a_line_larger_than_the_whole_buffer_is_never_accepted() -> None:
    """docs/delivery.md: "A single line larger than the whole buffer is dropped", as
    buffer_full, before the buffer, under drop_oldest too: not in accepted."""
    client, transport = gated_client(max_buffer_bytes="64KiB", max_line_length="1MiB")
    transport.gate.set()
    client.log("fits")
    client.log("y" * 100_000)
    client.flush(WAIT)
    client.close(WAIT)
    s = client.stats()
    assert (1, 1, 1) == (s["accepted"], s["sent"], s["dropped"]["buffer_full"]), s
    assert ["fits"] == transport.app_lines()


def test_a_batch_is_bounded_by_the_buffers_per_line_cost() -> None:
    """docs/delivery.md and docs/configuration.md: max_batch_bytes bounds a batch by the
    same cost as max_buffer_bytes (each line's serialized bytes plus LINE_OVERHEAD), so
    a batch is as full as that cost allows and its body, before gzip, is smaller."""
    limit = 4096
    client, transport = gated_client(max_batch_bytes=limit)
    lines = [f"line {i:04d} " + "z" * (i % 50) for i in range(600)]
    client.log(lines[0])
    client.flush(timeout=0)
    assert transport.entered.wait(WAIT)  # the first batch is out: the rest piles up
    for text in lines[1:]:
        client.log(text)
    transport.gate.set()
    assert client.flush(WAIT)
    client.close(WAIT)
    assert lines == transport.app_lines()
    builder = LineBuilder(client.config)  # each line's serialized size, as queued
    size = {t: len(builder.encode(t, "INFO", 1_700_000_000_000) or b"") for t in lines}
    batches = transport.stored
    assert len(batches) > 3
    for i, batch in enumerate(batches):
        cost = sum(size[t] + LINE_OVERHEAD for t in batch)
        assert cost <= limit, (i, cost)
        assert transport.body_sizes[i] < limit
        if 0 < i < len(batches) - 1:  # piled up: taken as full as the cost allows
            following = batches[i + 1][0]
            assert cost + size[following] + LINE_OVERHEAD > limit, (i, cost)


def test_the_body_limit_has_one_home_and_the_batch_cap_stays_below_it() -> None:
    """docs/delivery.md: the service's limit is 10 MB a body, and the largest batch
    (max_batch_bytes' cap) stays below it with room for the drop-summary line; the
    devserver enforces the same number."""
    assert 10_000_000 == BODY_BYTES
    assert MAX_BODY_BYTES == BODY_BYTES
    assert 8 * 1024 * 1024 == _MAX_BATCH_CAP  # the "8 MiB" the docs give
    assert _MAX_BATCH_CAP + 64 * 1024 < BODY_BYTES
