"""The disk spool wired into delivery: crashes, signals and outages, in real processes.

A child logs through a Client with ``spool_dir`` against the devserver while
the service is down, and is ended the hard way; a second process on the same
folder, with the service up, must deliver what the first one logged, once.
(``tests/test_spool.py`` tests the spool itself.)
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from logdna_client import Client
from logdna_client._devserver import DevServer
from tests._children import REPO, Child, texts
from tests.test_spool import segments

# How long the service is down before the crash: 30 s for kill -9 (the scenario the
# spool exists for), shorter for SIGTERM, whose path differs only at the end.
OUTAGES = {signal.SIGKILL: 30.0, signal.SIGTERM: 6.0}
# A line logged this long before the crash must survive it (flush_interval is 0.1 s).
SAFE_AGE = 0.5

LOGGING_CHILD = """
from logdna_client import Client
c = Client(spool_dir=os.environ["SPOOL"], flush_interval=0.1, retry_max_backoff=1,
           shutdown_timeout=1)
import threading
pace = threading.Event()  # never set: waiting on it is the app's own pause
i = 0
start = time.monotonic()
while True:
    c.log("spooled %d" % i)
    i += 1
    if i % 100 == 0:
        mark("at %d %f" % (i, time.time()))
        # about 2,000 lines a second, as an app that has other work between its lines
        ahead = start + i / 2000 - time.monotonic()
        if ahead > 0:
            pace.wait(ahead)
"""

REPLAYER = """
from logdna_client import Client
c = Client(spool_dir=os.environ["SPOOL"], flush_interval=0.1)
c.log("replayer up")  # a process that logs starts its sender, which replays
mark("flushed " + str(c.flush(60)))
c.close(10)
mark("stats " + json.dumps(c.stats()))
"""


def crash_during_outage(server: DevServer, spool: Path, signum: int) -> tuple[int, float, int]:
    return crash_during_outage_for(server, spool, signum, OUTAGES[signum])


def crash_during_outage_for(
    server: DevServer, spool: Path, signum: int, outage: float
) -> tuple[int, float, int]:
    """Log at 2,000 lines/s through an outage, end the child by ``signum``; returns how far
    it had got SAFE_AGE s before the signal, when the signal went (wall clock), the status."""
    server.go_down()
    return log_then_end(LOGGING_CHILD, server, spool, outage, signum, SAFE_AGE)


def log_then_end(
    code: str, server: DevServer, spool: Path, seconds: float, signum: int, age: float
) -> tuple[int, float, int]:
    """Run ``code`` (LOGGING_CHILD's kind) for ``seconds``, end it by ``signum``; returns
    how far it had got ``age`` s before the signal, when the signal went (wall clock),
    the status."""
    child = Child(code, server.url, env={"SPOOL": str(spool)})
    marks: list[tuple[int, float]] = []
    began: float | None = None
    # The time counts from the first lines: an interpreter starting on a loaded machine
    # (2 s and more) would take its share of the lines the test expects.
    while began is None or time.monotonic() - began < seconds:
        n, at = child.expect("at").split()
        marks.append((int(n), float(at)))
        if began is None:
            began = time.monotonic()
    sent_at = time.time()
    child.kill(signum)
    status, _ = child.finish()
    # Lines logged ``age`` before the signal: the last mark at least that old.
    safe = max(n for n, at in marks if at <= sent_at - age)
    return safe, sent_at, status


def assert_all_arrive(server: DevServer, spool: Path, safe: int) -> None:
    """Once the next process has sent what ``spool`` holds: every "spooled N" below
    ``safe`` arrived."""
    replay(server, spool)
    got = Counter(texts(server))
    missing = [i for i in range(safe) if got[f"spooled {i}"] < 1]
    assert not missing, f"{len(missing)} of {safe} lost, from {missing[0]}"


def _records(data: bytes) -> list[tuple[int, int, int, list[int]]]:
    """A segment's records: where each starts and ends, where its lines start, and the
    numbers of its "spooled N" lines."""
    import re
    import struct

    from logdna_client._spool import _format as fmt

    found = []
    offset = fmt.HEADER_SIZE
    while offset + fmt.RECORD_HEAD <= len(data):
        _, size, _, kind, _, _, count = struct.unpack_from("<2sIIBQQI", data, offset)
        end = offset + fmt.FRAME_SIZE + size
        if end > len(data):
            break
        numbers: list[int] = []
        if kind == fmt.BATCH:
            blob = data[offset + fmt.RECORD_HEAD : end]
            numbers = [int(n) for n in re.findall(rb"spooled (\d+)", blob[4 * count :])]
        found.append((offset, end, offset + fmt.RECORD_HEAD + 4 * count, numbers))
        offset = end
    return found


def replay(server: DevServer, spool: Path, *, lossy: bool = False) -> dict[str, object]:
    """Deliver what is in the folder from a new process; ``lossy``: lines are counted lost
    on the way (damage), so its flush() may say False (if the sender counted them after
    the flush began) once it has delivered the rest."""
    server.come_up()
    child = Child(REPLAYER, server.url, env={"SPOOL": str(spool)})
    flushed = child.expect("flushed", timeout=90)
    assert flushed in (("True", "False") if lossy else ("True",))
    stats: dict[str, object] = json.loads(child.expect("stats", timeout=30))
    code, _ = child.finish()
    assert 0 == code, child.stderr
    return stats


class TestCrashes:
    @pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "term"])
    def test_next_process_delivers_what_a_crashed_one_logged(
        self, server: DevServer, tmp_path: Path, signum: int
    ) -> None:
        """kill -9 (or SIGTERM) during an outage while logging 2,000 lines/s; a new process
        on the same folder with the service up delivers every line logged more than 0.5 s
        before the end, each once."""
        spool = tmp_path / "spool"
        safe, _, code = crash_during_outage(server, spool, signum)
        assert -signum == code
        assert safe >= 2000 * OUTAGES[signum] * 0.5
        stats = replay(server, spool)
        got = [t for t in texts(server) if t.startswith("spooled ")]
        counts = Counter(got)
        dups = {t: n for t, n in counts.items() if n > 1}
        assert not dups, f"{len(dups)} duplicated"  # port closed: no batch was half-sent
        missing = [i for i in range(safe) if f"spooled {i}" not in counts]
        assert not missing, f"{len(missing)} of {safe} missing, first {missing[:5]}"
        assert int(stats["replayed"]) >= safe  # type: ignore[call-overload]
        # in the order they were logged
        order = [int(t.split()[1]) for t in got]
        assert order == sorted(order)

    def test_outage_longer_than_the_buffer_loses_nothing(
        self, server: DevServer, tmp_path: Path
    ) -> None:
        """With a 64 KiB memory buffer and the service down, 20,000 lines (over 1 MB) go to
        disk rather than being dropped, and arrive in order once it is back."""
        server.go_down()
        client = Client(url=server.url, spool_dir=str(tmp_path / "spool"), flush_interval=0.05,
                        max_buffer_bytes="64KiB", max_batch_bytes="8KiB",
                        retry_max_backoff=0.5)  # fmt: skip
        # The sender moves memory to disk every flush_interval: every 200 lines, wait until
        # it has (on a busy machine it may not run for a while; a fixed wait flaked there).
        deadline = time.monotonic() + 60  # one for all: a sender that never does fails fast
        for i in range(20_000):
            client.log(f"long outage {i}")
            if i % 200 == 199:
                while client.stats()["queued"] and time.monotonic() < deadline:
                    client.flush(0.05)
        server.come_up()
        assert client.flush(60)
        stats = client.stats()
        client.close(5)
        assert 0 == stats["dropped"]["buffer_full"]
        got = [t for t in texts(server) if t.startswith("long outage ")]
        assert [f"long outage {i}" for i in range(20_000)] == got

    def test_a_spool_smaller_than_memory_drops_nothing_in_a_short_outage(
        self, server: DevServer, tmp_path: Path
    ) -> None:
        """What memory holds (2.6 MB here) is more than the spool's cap (1 MiB) can take
        without dropping its older batches: memory keeps it through the outage, as at
        close, and every line arrives once the service is back. Before (H188): the
        backoff moved memory to disk anyway, and the spool dropped its oldest batches for
        room (spool_full) that memory alone would have delivered."""
        server.go_down()
        client = Client(url=server.url, spool_dir=str(tmp_path / "spool"), flush_interval=0.05,
                        max_spool_bytes="1MiB", max_batch_bytes="64KiB",
                        retry_max_backoff=0.2, handle_signals=False)  # fmt: skip
        count = 12_000
        for i in range(count):
            client.log(f"short outage {i} " + "y" * 200)
        # Several backoff waits go by with all of it in memory (each would have moved it).
        deadline = time.monotonic() + 60
        while client.stats()["retries"] < 6 and time.monotonic() < deadline:
            client.flush(0.05)
        assert client.stats()["retries"] >= 6
        server.come_up()
        assert client.flush(60)
        stats = client.stats()
        client.close(5)
        assert 0 == stats["dropped_total"], stats["dropped"]
        got = [t.split()[2] for t in texts(server) if t.startswith("short outage ")]
        assert [str(i) for i in range(count)] == got

    def test_a_request_that_hangs_leaves_memory_on_disk_for_a_kill(
        self, server: DevServer, tmp_path: Path
    ) -> None:
        """The service takes each request and answers only after 60 s (request_timeout
        60 s): while the request is out, memory moves to the spool behind its batch every
        flush_interval, so a SIGKILL 3 s in loses only the last moments, as in an outage
        of failed requests. Before (H188): all logged since the request went out was in
        memory only, and the kill lost it (33,000 lines in 10 s)."""
        spool = tmp_path / "spool"
        server.set_delay(60)
        code = LOGGING_CHILD.replace(
            "shutdown_timeout=1)", "shutdown_timeout=1, request_timeout=60)"
        )
        safe, _, _ = log_then_end(code, server, spool, 3.0, signal.SIGKILL, SAFE_AGE)
        server.set_delay(0)
        assert_all_arrive(server, spool, safe)

    def test_after_a_burst_went_through_the_disk_lines_go_from_memory_again(
        self, server: DevServer, tmp_path: Path
    ) -> None:
        """A burst the service takes a while to send goes partly through the disk; the
        app then logs on at a pace the service keeps up with: once the backlog is sent,
        its lines go from memory again (``sent``), none through the disk. Before (H196):
        each turn sent one batch from disk and wrote memory's lines behind it, so the
        backlog never emptied while the app logged, and every later line went through
        the disk."""
        client = Client(url=server.url, spool_dir=str(tmp_path / "spool"), flush_interval=0.1,
                        max_batch_bytes="64KiB", handle_signals=False)  # fmt: skip
        server.set_delay(0.05)
        pace = threading.Event()  # never set: the app's own pause between its lines

        def steady(name: str, count: int) -> None:
            began = time.monotonic()
            for i in range(count):
                client.log(f"{name} {i}")
                pace.wait(max(0.0, began + (i + 1) / 100 - time.monotonic()))

        for i in range(3000):
            client.log(f"burst {i} " + "w" * 80)
        steady("steady", 300)  # 3 s: the burst's backlog is sent meanwhile
        before = client.stats()
        steady("after", 100)
        assert client.flush(30)
        after = client.stats()
        client.close(5)
        assert before["replayed"] > 0  # (the burst did go through the disk)
        # (Sent since: these 100, and the steady lines still queued at the look.)
        assert after["sent"] - before["sent"] >= 100
        assert 0 == after["replayed"] - before["replayed"]

    def test_a_buffer_smaller_than_a_batch_drops_nothing_while_a_backlog_is_sent(
        self, server: DevServer, tmp_path: Path
    ) -> None:
        """A long backlog another client left is sent while the app logs into a buffer
        smaller than a batch (128 KiB against 2 MiB): memory goes to disk behind the
        backlog once it holds half its room, and no line is dropped. Before (H197): it
        waited for a full batch that could never gather, and the buffer dropped 277 of
        800 lines (buffer_full)."""
        folder = str(tmp_path / "spool")
        server.go_down()
        first = Client(url=server.url, spool_dir=folder, flush_interval=0.2,
                       max_batch_bytes="16KiB", shutdown_timeout=1, retry_max_backoff=1,
                       handle_signals=False)  # fmt: skip
        for i in range(25000):
            first.log(f"old {i} " + "x" * 150)
        first.close(5)
        server.come_up()
        server.set_delay(0.5)
        client = Client(url=server.url, spool_dir=folder, max_buffer_bytes="128KiB",
                        handle_signals=False)  # fmt: skip
        pace = threading.Event()  # never set: the app's own pause between its lines
        began = time.monotonic()
        for i in range(800):
            client.log(f"new {i} " + "y" * 280)
            if i % 20 == 19:
                pace.wait(max(0.0, began + (i + 1) / 200 - time.monotonic()))
        server.set_delay(0)
        assert client.flush(120)
        stats = client.stats()
        client.close(5)
        assert 0 == stats["dropped_total"], stats["dropped"]
        got = [t for t in texts(server) if t.startswith("new ")]
        assert [f"new {i} " + "y" * 280 for i in range(800)] == got

    def test_a_service_slower_than_the_app_leaves_memory_on_disk_for_a_kill(
        self, server: DevServer, tmp_path: Path
    ) -> None:
        """The service answers each request within flush_interval (0.5 s of 1 s) but takes
        lines more slowly than the app logs them: memory's oldest line waiting two
        flush_intervals moves memory to the spool, so a SIGKILL 3 s in loses only the last
        moments. Before (H194): no request was out long enough to spill behind it, memory
        grew for good, and the kill lost seconds of lines (15,356 in one run)."""
        spool = tmp_path / "spool"
        server.set_delay(0.5)
        code = LOGGING_CHILD.replace(
            "flush_interval=0.1,", "flush_interval=1.0, max_batch_bytes=16384,"
        )
        # Two flush_intervals and the spiller's look: what may be in memory only.
        safe, _, _ = log_then_end(code, server, spool, 4.0, signal.SIGKILL, 2.5 + SAFE_AGE)
        server.set_delay(0)
        assert_all_arrive(server, spool, safe)

    @pytest.mark.parametrize("trouble", ["slow", "outage"])
    def test_the_smallest_spool_drops_nothing_memory_would_deliver(
        self, server: DevServer, tmp_path: Path, trouble: str
    ) -> None:
        """The smallest spool allowed (4 batches) while the app logs on at a steady pace
        and the service answers only after 1.5 s, or not at all (then comes back): what
        the spills and backoffs put on disk fills it, and the batches that follow wait in
        memory rather than drop those for room; every line arrives. Before (H189): the
        next batches' appends dropped the spilled ones, 900 of 9,000 lines as spool_full
        with the slow service (none without a spool), 1,750 with the outage."""
        batch = 256 << 10  # (the cap: 1 MiB, the least there is)
        client = Client(url=server.url, spool_dir=str(tmp_path / "spool"), flush_interval=0.2,
                        max_batch_bytes=batch, max_spool_bytes=4 * batch,
                        request_timeout=30, retry_max_backoff=1, handle_signals=False)  # fmt: skip
        if trouble == "slow":
            server.set_delay(1.5)
        else:
            server.go_down()
        pace = threading.Event()  # never set: the app's own pause between its lines
        count, began = 9000, time.monotonic()
        for i in range(count):
            client.log(f"steady {i} " + "w" * 150)
            if i % 50 == 49:
                pace.wait(max(0.0, began + i / 1500 - time.monotonic()))
        server.set_delay(0)
        server.come_up()
        assert client.flush(60)
        stats = client.stats()
        client.close(5)
        assert 0 == stats["dropped_total"], stats["dropped"]
        got = Counter(t.split()[1] for t in texts(server) if t.startswith("steady "))
        assert [] == [i for i in range(count) if got[str(i)] != 1]

    def test_a_healthy_service_keeps_every_line_off_the_disk_path(
        self, server: DevServer, tmp_path: Path
    ) -> None:
        """A service answering each request in 0.1 s, well within flush_interval (0.5 s),
        and taking lines faster than the app logs them: no request is out long enough,
        and no line waits in memory long enough, to spill memory behind it, and every
        line is sent from memory (``sent``), none through the disk (``replayed``). Before
        (H189): the spiller counted the interval from its own wake, not from each
        request's start, and 87% of the lines went through the disk."""
        client = Client(url=server.url, spool_dir=str(tmp_path / "spool"), flush_interval=0.5,
                        max_batch_bytes="64KiB", handle_signals=False)  # fmt: skip
        server.set_delay(0.1)
        count = 3000  # at 1,000 a second: 3 s of requests, 2 per flush_interval
        pace = threading.Event()  # never set: the app's own pause between its lines
        began = time.monotonic()
        for i in range(count):
            client.log(f"healthy {i} " + "w" * 80)
            if i % 50 == 49:
                pace.wait(max(0.0, began + i / 1000 - time.monotonic()))
        assert client.flush(60)
        stats = client.stats()
        client.close(5)
        assert (count, 0) == (stats["sent"], stats["replayed"])

    def test_lines_left_are_this_processs_and_apart_those_it_took_on(
        self, server: DevServer, tmp_path: Path
    ) -> None:
        """Two clients share a folder through an outage: the second takes on the first's
        segments once it has closed. Each says its own lines left, and the second those
        it took on apart: the reports add up to what the folder holds (H194: the second
        counted the first's as its own, and six processes said 9,792 of 5,695)."""
        said: list[str] = []

        class Said(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                said.append(record.getMessage())

        own = logging.getLogger("logdna_client")
        hearing = Said()
        own.addHandler(hearing)
        server.go_down()
        folder = str(tmp_path / "spool")
        try:
            for name, count in (("first", 300), ("second", 200)):
                client = Client(url=server.url, spool_dir=folder, flush_interval=0.05,
                                shutdown_timeout=0.5, handle_signals=False)  # fmt: skip
                for i in range(count):
                    client.log(f"{name} {i}")
                client.close(2)
        finally:
            own.removeHandler(hearing)
        left = [text for text in said if "left in the spool" in text]
        assert 2 == len(left), said
        assert left[0].startswith("logdna_client: 300 line(s) left in the spool")
        assert left[1].startswith("logdna_client: 200 line(s) left in the spool")
        assert left[1].endswith("(and 300 of other processes' segments it had taken on)")

    def test_stats_after_close_say_what_the_folder_holds(
        self, server: DevServer, tmp_path: Path
    ) -> None:
        """Closed during an outage, the lines left on disk: stats() says the spool worked
        (``spool_enabled``) and what its folder takes (``spool_bytes``). Before (H185): a
        closed spool read as a failed one, and as an empty folder."""
        folder = tmp_path / "spool"
        server.go_down()
        client = Client(
            url=server.url, spool_dir=str(folder), flush_interval=0.05, retry_max_backoff=0.2,
            shutdown_timeout=1, handle_signals=False,
        )  # fmt: skip
        for i in range(2000):
            client.log(f"left {i}")
        assert not client.flush(0.5)
        client.close(1)
        stats = client.stats()
        on_disk = sum(path.stat().st_size for path in segments(folder))
        assert on_disk > 0
        assert (True, on_disk) == (stats["spool_enabled"], stats["spool_bytes"])

    def test_three_processes_two_killed_the_third_delivers_both(
        self, server: DevServer, tmp_path: Path
    ) -> None:
        """Two processes logging into one spool folder through an outage are killed with
        SIGKILL; a third on the same folder, with the service up, delivers every line each
        of them logged, once."""
        spool = tmp_path / "spool"
        server.go_down()
        children = []
        for n in range(2):
            code = LOGGING_CHILD.replace('"spooled %d" % i', f'"p{n} %d" % i')
            children.append(Child(code, server.url, env={"SPOOL": str(spool)}))
        logged = [0, 0]
        began = time.monotonic()
        while time.monotonic() - began < 3:
            for n, child in enumerate(children):
                logged[n] = int(child.expect("at").split()[0])
        for child in children:
            child.kill(signal.SIGKILL)
            child.finish()
        replay(server, spool)
        got = Counter(texts(server))
        for n in range(2):
            # What each had logged 2,000 lines (about a second) before it was killed.
            safe = max(0, logged[n] - 2000)
            missing = [i for i in range(safe) if got[f"p{n} {i}"] != 1]
            assert not missing, f"process {n}: {len(missing)} of {safe} not delivered once"

    @pytest.mark.parametrize("damage", ["flipped", "torn"])
    def test_damaged_segment_after_a_crash(
        self, server: DevServer, tmp_path: Path, damage: str
    ) -> None:
        """A crashed process's segment with flipped bytes in the middle of a record in its
        middle: the next process delivers every line of the other records, once, in order,
        and counts the damaged record's lines (spool_damaged) and the piece it moved to
        quarantine. A torn tail instead: the lines before the cut arrive, once, the cut
        counted."""
        spool = tmp_path / "spool"
        safe, _, _ = crash_during_outage_for(server, spool, signal.SIGKILL, 3.0)
        (segment,) = segments(spool)
        data = bytearray(segment.read_bytes())
        middle = len(data) // 2
        records = _records(bytes(data))
        if damage == "flipped":
            hit = next(r for r in records if r[0] <= middle < r[1])
            at = (hit[2] + hit[1]) // 2  # inside its lines, past its lengths: countable
            data[at : at + 8] = bytes(b ^ 0xFF for b in data[at : at + 8])
        else:
            del data[middle:]
        segment.write_bytes(bytes(data))
        stats = replay(server, spool, lossy=damage == "flipped")
        got = [int(t.split()[1]) for t in texts(server) if t.startswith("spooled ")]
        assert got == sorted(set(got))  # once each, in order
        assert got and got[0] == 0  # the records before the damage came through
        if damage == "flipped":
            kept = [n for r in records if r is not hit for n in r[3]]
            assert kept == got  # every line of every other record, and nothing else
            assert len(got) >= safe - len(hit[3])
            assert int(stats["quarantined"]) == 1  # type: ignore[call-overload]
            assert len(hit[3]) == stats["dropped"]["spool_damaged"]  # type: ignore[index]
            assert len(got) - got.index(hit[3][-1] + 1) == stats["salvaged"]
        else:
            assert len(got) < safe  # what followed the cut did not
            assert int(stats["torn"]) >= 1  # type: ignore[call-overload]

    def test_spool_cap_holds_in_a_long_outage(self, server: DevServer, tmp_path: Path) -> None:
        """An outage that outlasts both the memory buffer and ``max_spool_bytes``: the folder
        stays within its cap, memory stays bounded, and the lines that did not fit are
        counted (``buffer_full`` once the spool could not take all memory held, else
        ``spool_full``), not silently lost."""
        spool = tmp_path / "spool"
        server.go_down()
        child = Child(
            """
            import resource
            from logdna_client import Client
            c = Client(spool_dir=os.environ["SPOOL"], flush_interval=0.05, retry_max_backoff=0.2,
                       max_buffer_bytes="256KiB", max_spool_bytes="1MiB", shutdown_timeout=0.5,
                       max_batch_bytes="64KiB")
            rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            for i in range(100_000):  # about 10 MB of lines, ten times the spool's cap
                c.log("capped %d %s" % (i, "x" * 60))
                if i % 500 == 499:
                    c.flush(0.02)  # give the sender turns to move memory to disk
            s = c.stats()
            rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            mark("stats " + json.dumps({"stats": s, "rss_growth_kib": rss1 - rss0}))
            """,
            server.url,
            env={"SPOOL": str(spool)},
        )
        got = json.loads(child.expect("stats", timeout=180))
        code, _ = child.finish()
        assert 0 == code, child.stderr
        stats = got["stats"]
        on_disk = sum(f.stat().st_size for f in segments(spool))
        assert on_disk <= 1024 * 1024
        assert stats["spool_bytes"] <= 1024 * 1024
        assert got["rss_growth_kib"] < 64 * 1024  # 10 MB logged: nowhere near all of it held
        # The excess is counted, by reason, with every other loss: memory's, once the
        # spool could no longer take all it held (kept there rather than dropping the
        # spool's older batches for room), and the spool's own.
        assert stats["dropped"].get("spool_full", 0) == stats["spool_dropped"].get("spool_full", 0)
        assert stats["dropped"]["buffer_full"] + stats["dropped"].get("spool_full", 0) > 0
        from logdna_client import ClientStats

        assert set(ClientStats.__annotations__) == set(stats)  # every key typed, spool's too

    def test_pool_worker_ending_by_os_exit(self, server: DevServer, tmp_path: Path) -> None:
        """A Pool worker that logs during an outage and then ends by ``os._exit`` (no
        atexit, no finalizer): what it logged more than 0.5 s before is in the spool, and
        a new process delivers it."""
        spool = tmp_path / "spool"
        script = tmp_path / "pool_exit.py"
        script.write_text(POOL_EXIT_SCRIPT)
        server.go_down()
        env = dict(os.environ, LOGDNA_URL=server.url, PYTHONPATH=REPO, SPOOL=str(spool))
        env.pop("LOGDNA_INGESTION_KEY", None)
        proc = subprocess.run(
            [sys.executable, str(script)],
            env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False,
        )  # fmt: skip
        assert 0 == proc.returncode, proc.stderr
        assert "@@worker died" in proc.stderr
        replay(server, spool)
        got = [t for t in texts(server) if t.startswith("worker line ")]
        assert [f"worker line {i}" for i in range(1000)] == got


# A process of one app: logs COUNT lines while the service is down, waits until all are in
# the spool, says so, and waits to be killed. Its key comes in FAULT_OPTS (see _children).
SHARED_FOLDER_CHILD = """
logging.getLogger("logdna_client").addHandler(logging.StreamHandler(sys.stderr))
name, count = os.environ["NAME"], int(os.environ["COUNT"])
for i in range(count):
    log.info("%s %d", name, i)
deadline = time.monotonic() + 60
while int(client.stats().get("spooled", 0)) < count:  # the service is down: moved to disk
    assert time.monotonic() < deadline, "the lines never reached the spool"
    client.flush(0.1)
mark("spooled")
wait_for("never")
"""

# The same app restarted on the same folder, with the service up.
SHARED_FOLDER_RESTART = """
logging.getLogger("logdna_client").addHandler(logging.StreamHandler(sys.stderr))
log.info("%s restarted", os.environ["NAME"])
mark("flushed " + str(client.flush(60)))
client.close(10)
"""


# An app that logs COUNT lines of about 1 KB while the service is down, then closes
# (what is in memory at the deadline goes to the spool, or counts as shutdown).
CAPPED_CHILD = """
logging.getLogger("logdna_client").addHandler(logging.StreamHandler(sys.stderr))
name, count = os.environ["NAME"], int(os.environ["COUNT"])
for i in range(count):
    log.info("%s %d %s", name, i, "x" * 1000)
client.close(2)
mark("stats " + json.dumps(client.stats()))
"""

# Two apps' ingestion keys.
KEYS = {"alpha": "key-of-alpha-0123456789abcdef", "beta": "key-of-beta-0123456789abcdef"}


class TestSharedFolder:
    def test_two_apps_with_different_keys_each_get_only_their_own_lines(
        self, tmp_path: Path
    ) -> None:
        """Two apps with different ingestion keys (the same URL) share one spool folder,
        both are killed (kill -9) with lines spooled during an outage, then restarted one
        after the other: every line arrives once, with its own app's key, never the
        other's; the first restarted leaves the other's segments and says so."""
        from tests._otlp_server import running

        folder = tmp_path / "spool"
        count = 300
        with running() as server:
            url = server.base + "/logs/ingest"
            server.down = True
            options = {"spool_dir": str(folder), "flush_interval": "0.05",
                       "retry_max_backoff": "0.3", "max_batch_bytes": "2KiB"}  # fmt: skip
            children = [
                Child(
                    SHARED_FOLDER_CHILD,
                    url,
                    env={"NAME": name, "COUNT": str(count)},
                    key=key,
                    **options,
                )
                for name, key in KEYS.items()
            ]
            for child in children:
                child.expect("spooled", timeout=90)
            for child in children:
                child.kill(signal.SIGKILL)
                assert -signal.SIGKILL == child.finish()[0]
            assert len(segments(folder)) >= 2
            server.down = False
            seen: dict[str, str] = {}
            for name, key in KEYS.items():
                again = Child(SHARED_FOLDER_RESTART, url, key=key, spool_dir=str(folder),
                              flush_interval="0.05", env={"NAME": name})  # fmt: skip
                assert "True" == again.expect("flushed", timeout=90), again.stderr
                assert 0 == again.finish()[0], again.stderr
                seen[name] = again.stderr
            requests = [r for r in server.requests if r.status == 200]
        sent = [(line["line"], tuple(r.credentials)) for r in requests for line in r.lines]
        for name, key in KEYS.items():
            expected = [f"{name} {i}" for i in range(count)] + [f"{name} restarted"]
            theirs = [(text, how) for text, how in sent if text.startswith(name + " ")]
            assert expected == [text for text, _ in theirs]  # once each, in order
            assert {(("apikey", key),)} == {how for _, how in theirs}  # with their own key
        assert "another destination" in seen["alpha"]  # beta's, left for it
        assert "key-of-" not in seen["alpha"] + seen["beta"]
        assert [] == segments(folder)

    def test_the_cap_bounds_the_folder_whatever_the_keys(
        self, server: DevServer, tmp_path: Path
    ) -> None:
        """Two apps with different keys and the same max_spool_bytes share one folder
        through an outage: the folder stays under the cap (it grew to the cap once per
        key); the second app never drops the first one's segments to make room, and
        what finds none is counted (here at the end, as shutdown), not lost unsaid."""
        folder = tmp_path / "spool"
        cap = 1 << 20
        server.go_down()
        options = {"spool_dir": str(folder), "max_spool_bytes": str(cap),
                   "flush_interval": "0.05", "retry_max_backoff": "0.3",
                   "max_batch_bytes": "16KiB"}  # fmt: skip

        def run(name: str, count: int) -> dict[str, Any]:
            child = Child(CAPPED_CHILD, server.url, env={"NAME": name, "COUNT": str(count)},
                          key=KEYS[name], **options)  # fmt: skip
            stats: dict[str, Any] = json.loads(child.expect("stats", timeout=90))
            assert 0 == child.finish()[0], child.stderr
            stats["stderr"] = child.stderr
            return stats

        alpha = run("alpha", 1500)  # about 1.6 MB of lines: more than the cap
        assert alpha["dropped"]["spool_full"] > 0
        theirs = {p: p.read_bytes() for p in segments(folder)}
        beta = run("beta", 300)
        assert sum(p.stat().st_size for p in segments(folder)) <= cap
        assert beta["spool_bytes"] <= cap
        assert theirs == {p: p.read_bytes() for p in theirs if p.exists()}
        assert set(theirs) <= set(segments(folder))  # alpha's lines are all still there
        assert 0 == beta["dropped"]["spool_full"]  # none of beta's own were on disk to drop
        assert 300 == beta["spooled"] + beta["dropped"]["shutdown"]
        assert beta["dropped"]["shutdown"] > 0
        assert "at max_spool_bytes" in beta["stderr"]
        assert "key-of-" not in alpha["stderr"] + beta["stderr"]


POOL_EXIT_SCRIPT = """
import logging, multiprocessing, os, sys, threading
from logdna_client import LogDNAHandler

handler = LogDNAHandler(url=os.environ["LOGDNA_URL"], spool_dir=os.environ["SPOOL"],
                        flush_interval=0.1, retry_max_backoff=1)
log = logging.getLogger("pool")
log.addHandler(handler)
log.setLevel(logging.INFO)
log.propagate = False

def work():
    for i in range(1000):
        log.info("worker line %d", i)
    threading.Event().wait(1.0)  # the app goes on with other work: the lines are 1 s old
    os._exit(1)

if __name__ == "__main__":
    with multiprocessing.get_context("fork").Pool(1) as pool:
        result = pool.apply_async(work)
        try:
            result.get(timeout=5)
        except multiprocessing.TimeoutError:  # the worker died: its task never answers
            sys.stderr.write("@@worker died\\n")
"""


class TestFlushWaitsForTheSpool:
    def test_flush_is_false_while_a_batch_waits_on_disk(self, tmp_path: Path) -> None:
        """docs/spool.md: flush() (and aflush()) return True only when the spool holds no
        backlog either. With the service down, the batch goes to disk and is retried
        from there: both say False until it is delivered, then True."""
        import asyncio
        import threading

        from logdna_client._transport import Kind, Outcome
        from tests.test_sender import OK, client_with

        up = threading.Event()

        def answer(lines: list[dict[str, object]], gzipped: bool) -> Outcome:
            return OK if up.is_set() else Outcome(Kind.RETRY, 503)

        client, transport, _ = client_with(answer, spool_dir=str(tmp_path), flush_interval=0.05)
        try:
            for i in range(3):
                client.log(f"line {i}")
            assert not client.flush(1.0)
            assert not client.flush(0.2)  # asked again: still on disk
            assert not asyncio.run(client.aflush(0.2))
            up.set()
            assert client.flush(30)
            assert ["line 0", "line 1", "line 2"] == transport.delivered
        finally:
            client.close(5)

    def test_replayed_counts_only_what_the_service_stored(self, tmp_path: Path) -> None:
        """A batch replayed from disk that the service answers with a 207 refusing one
        line: ``replayed`` counts the lines it stored, ``replay_rejected`` the one it
        refused (not both), and the next summary line tells it, as the spool's other
        losses are told: it was told nowhere (H203)."""
        import threading

        from logdna_client._transport import Kind, Outcome
        from tests.test_sender import client_with

        up = threading.Event()
        sent: list[str] = []

        def answer(lines: list[dict[str, object]], gzipped: bool) -> Outcome:
            if not up.is_set():
                return Outcome(Kind.RETRY, 503)
            texts = [str(line["line"]) for line in lines]
            sent.extend(texts)
            if "line 0" in texts:
                return Outcome(Kind.PARTIAL, 207, rejected=1, rejected_at=(texts.index("line 0"),))
            return Outcome(Kind.OK, 200)

        client, _, _ = client_with(answer, spool_dir=str(tmp_path), flush_interval=0.05)
        try:
            for i in range(3):
                client.log(f"line {i}")
            assert not client.flush(1.0)  # on disk, retried from there
            up.set()
            assert not client.flush(30)  # delivered, but one line refused (a loss)
            stats = client.stats()
        finally:
            client.close(5)
        assert (2, 1, 0) == (stats["replayed"], stats["replay_rejected"], stats["sent"])
        assert "logdna_client: 1 lines dropped (1 replay rejected)" in sent, sent

    @pytest.mark.parametrize("spool", [False, True], ids=["no spool", "spool"])
    def test_a_failed_attempt_is_a_retry_with_or_without_a_spool(
        self, tmp_path: Path, spool: bool
    ) -> None:
        """One 503, then success: one retry counted (and last_error set) either way;
        with a spool the retry is made from disk."""
        from logdna_client._transport import Kind, Outcome
        from tests.test_sender import client_with, failing_first

        options = {"spool_dir": str(tmp_path)} if spool else {}
        client, transport, _ = client_with(failing_first(1, Outcome(Kind.RETRY, 503)), **options)
        try:
            client.log("once refused")
            assert client.flush(30)
            stats = client.stats()
        finally:
            client.close(5)
        assert ["once refused"] == transport.delivered
        assert 1 == stats["retries"]
        assert stats["last_error"] is not None and 503 == stats["last_error"]["status"]

    def test_lines_the_spool_gave_up_are_told_in_the_summary_line(self, tmp_path: Path) -> None:
        """docs/delivery.md: after drops, one summary line says how many. Lines the spool
        gave up (a dead process's segment older than max_spool_age, found at open) are
        told there too, once."""
        import os

        from logdna_client._config import Config
        from logdna_client._spool import destination
        from tests.test_sender import OK, URL, client_with
        from tests.test_spool import write_segment

        folder = tmp_path / "spool"
        ours = destination(Config(url=URL))  # the client's, as client_with builds it
        old = write_segment(folder, 2, destination=ours)  # 20 lines a crashed process left
        os.utime(old, (1, 1))
        client, transport, _ = client_with(lambda lines, gz: OK, spool_dir=str(folder))
        try:
            client.log("first")
            client.flush(30)  # (False when the 20 lines were given up meanwhile: a loss)
            client.log("second")
            assert client.flush(30)
            client.log("third")
            assert client.flush(30)
            stats = client.stats()
        finally:
            client.close(5)
        summaries = [t for t in transport.delivered if "lines dropped" in t]
        assert ["logdna_client: 20 lines dropped (20 spool age)"] == summaries
        assert 20 == stats["dropped"]["spool_age"]
        assert ["first", "second", "third"] == [
            t for t in transport.delivered if t not in summaries
        ]

    @pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
    def test_a_restarted_sender_keeps_the_spools_drops_and_tells_new_ones(
        self, tmp_path: Path
    ) -> None:
        """A sender that died is restarted with a spool opened anew: stats() keeps the
        first spool's drops (counters never go back), and drops the new one makes are
        told in a summary line of their own."""
        import os

        from logdna_client._config import Config
        from logdna_client._spool import destination
        from tests.test_sender import OK, URL, client_with
        from tests.test_spool import write_segment

        folder = tmp_path / "spool"
        ours = destination(Config(url=URL))  # the client's, as client_with builds it
        os.utime(
            write_segment(folder, 2, destination=ours), (1, 1)
        )  # a dead process's 20 old lines
        client, transport, _ = client_with(lambda lines, gz: OK, spool_dir=str(folder))
        try:
            client.log("first")
            client.flush(30)
            client.log("first b")
            assert client.flush(30)
            sender = client._sender
            spool = sender.spool
            assert spool is not None

            def die() -> None:
                raise SystemExit  # the thread ends, as an unforeseen bug would end it

            spool.tick = die  # type: ignore[method-assign]
            sender.wake.set()
            assert sender.thread is not None
            sender.thread.join(30)
            assert not sender.alive
            os.utime(write_segment(folder, 1, destination=ours), (1, 1))  # another dead one: 10
            client.log("second")  # wakes the sender: it is found dead and restarted
            client.flush(30)
            client.log("third")
            assert client.flush(30)
            stats = client.stats()
        finally:
            client.close(5)
        assert 30 == stats["dropped"]["spool_age"]
        assert [
            "logdna_client: 20 lines dropped (20 spool age)",
            "logdna_client: 10 lines dropped (10 spool age)",
        ] == [t for t in transport.delivered if "lines dropped" in t]
