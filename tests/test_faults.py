"""Delivery under faults: each test runs a real client against the DevServer over a
real socket, with faults injected, and checks that no line is lost or duplicated,
that the app is never slowed or hung, and that every loss is counted and reported.

Process-level behaviour (exit, deadlines, memory, fork) runs in a child interpreter;
the parent drives the server's faults and talks to the child over stdin/stderr.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import time
from typing import Any

import pytest

from logdna_client import Client
from logdna_client._devserver import DevServer
from tests._children import Child, assert_exactly_once_in_order, texts

# Fast retries and flushes, so a test spends its time on the fault, not on backoff.
FAST = {"flush_interval": "0.05", "retry_max_backoff": "0.2", "shutdown_timeout": "10"}


class TestTransientFailures:
    def test_503s_lose_and_duplicate_nothing(self, server: DevServer) -> None:
        """A run of 503s, before and in the middle of a stream, costs no line and no duplicate."""
        server.fail_next(5, 503)
        child = Child(
            """
            for i in range(1000):
                log.info("a %d", i)
            mark("first")
            wait_for("go")
            for i in range(1000):
                log.info("b %d", i)
            """,
            server.url,
            **FAST,
        )
        child.expect("first")
        assert server.wait_for_lines(1000, 20)
        server.fail_next(4, 503)
        child.send("go")
        code, _ = child.finish()
        assert 0 == code, child.stderr
        assert server.wait_for_lines(2000, 10)
        expected = [f"a {i}" for i in range(1000)] + [f"b {i}" for i in range(1000)]
        assert_exactly_once_in_order(expected, texts(server))
        assert 9 == sum(1 for r in server.requests if r.status == 503)
        assert "" == child.stdout

    @pytest.mark.parametrize(
        ("form", "at_exit"), [("seconds", False), ("http-date", False), ("seconds", True)]
    )
    def test_429_retry_after_is_honoured(self, server: DevServer, form: str, at_exit: bool) -> None:
        """After a 429 with Retry-After, the next attempt waits at least that long, also
        when the process is exiting (close() cuts backoff short, not Retry-After)."""
        value = "1" if form == "seconds" else email.utils.formatdate(time.time() + 3, usegmt=True)
        server.fail_next(1, 429, retry_after=value)
        child = Child(
            """
            for i in range(20):
                log.info("r %d", i)
            if os.environ["AT_EXIT"] != "1":
                wait_for("go")
            """,
            server.url,
            flush_interval="0.05",
            retry_max_backoff="5",
            env={"AT_EXIT": "1" if at_exit else "0"},
        )
        if not at_exit:
            assert server.wait_for_lines(20, 10)
            child.send("go")
        code, _ = child.finish()
        assert 0 == code, child.stderr
        assert server.wait_for_lines(20, 10)
        requests = [r for r in server.requests if r.method == "POST"]
        assert 429 == requests[0].status
        assert 200 == requests[1].status
        if form == "seconds":
            waited = requests[1].received_at - requests[0].received_at
            assert waited >= 0.9, f"retried after {waited:.2f} s"
        else:
            # Not before the moment named (the child's start-up ate some of the 3 s).
            when = email.utils.parsedate_to_datetime(value).timestamp()
            assert requests[0].received_at < when
            assert requests[1].received_at >= when - 0.05
        assert_exactly_once_in_order([f"r {i}" for i in range(20)], texts(server))

    def test_outage_with_port_closed(self, server: DevServer) -> None:
        """Lines logged before and during a multi-second outage (connection refused)
        all arrive exactly once and in order when the service comes back."""
        child = Child(
            """
            for i in range(200):
                log.info("before %d", i)
            # Delivered and answered before the outage: a request the outage cuts
            # after the server read it is sent again (at least once), by design.
            client.flush(10)
            mark("before")
            wait_for("down")
            # An app that keeps working through the outage: it logs until the
            # client has demonstrably hit the closed port a few times.
            during = 0
            deadline = time.monotonic() + 30
            while (during < 300 or client.stats()["retries"] < 3) and time.monotonic() < deadline:
                log.info("during %d", during)
                during += 1
            mark("logged %d %d" % (during, client.stats()["retries"]))
            wait_for("up")
            for i in range(100):
                log.info("after %d", i)
            mark("flushed " + str(client.flush(20)))
            """,
            server.url,
            **FAST,
        )
        child.expect("before")
        assert server.wait_for_lines(200, 20)
        server.go_down()
        child.send("down")
        during, retries = map(int, child.expect("logged").split())
        assert retries >= 3  # it kept trying through the outage
        server.come_up()
        child.send("up")
        assert "True" == child.expect("flushed")
        code, _ = child.finish()
        assert 0 == code, child.stderr
        expected = (
            [f"before {i}" for i in range(200)]
            + [f"during {i}" for i in range(during)]
            + [f"after {i}" for i in range(100)]
        )
        assert_exactly_once_in_order(expected, texts(server))
        assert not any("dropped" in t for t in texts(server))

    def test_slow_server_never_delays_the_app(self, server: DevServer) -> None:
        """With every request taking 1.5 s, logging calls stay fast and nothing duplicates."""
        server.set_delay(1.5)
        child = Child(
            """
            # Keep logging until two slow requests have gone out, so calls are
            # timed while requests are in flight, not only before the first one;
            # at most 100,000 lines (6 requests), however fast this machine logs.
            worst = 0.0
            n = 0
            while n < 3000 or (client.stats()["requests"] < 2 and n < 100_000):
                t0 = time.perf_counter()
                log.info("slow %d", n)
                worst = max(worst, time.perf_counter() - t0)
                n += 1
            mark("logged %d" % n)
            mark("worst " + repr(worst))
            mark("flushed " + str(client.flush(20)))
            """,
            server.url,
            **FAST,
        )
        logged = int(child.expect("logged"))
        worst = float(child.expect("worst"))
        assert "True" == child.expect("flushed", 30)
        code, _ = child.finish()
        assert 0 == code, child.stderr
        assert worst < 0.25, f"a logging call took {worst:.3f} s with a 1.5 s server"
        assert_exactly_once_in_order([f"slow {i}" for i in range(logged)], texts(server))

    def test_dropped_connections(self, server: DevServer) -> None:
        """Connections closed after the body was read, without an answer, are retried.

        The DevServer closes before storing, so nothing duplicates here; a real
        service that stored the batch before the connection broke would see it twice.
        """
        server.drop_next(3)
        child = Child(
            """
            for i in range(500):
                log.info("d %d", i)
            """,
            server.url,
            **FAST,
        )
        code, _ = child.finish()
        assert 0 == code, child.stderr
        assert server.wait_for_lines(500, 10)
        assert 3 == sum(1 for r in server.requests if r.status is None)
        assert_exactly_once_in_order([f"d {i}" for i in range(500)], texts(server))

    def test_random_failures(self, server: DevServer) -> None:
        """With 40% of requests failing at random, every line arrives once, in order."""
        server.set_fail_rate(0.4, 503, seed=7)
        child = Child(
            """
            for i in range(3000):
                log.info("x %d", i)
            mark("flushed " + str(client.flush(45)))
            """,
            server.url,
            # Small batches: dozens of requests, many chances to fail.
            **FAST, max_batch_bytes="8KiB",
        )  # fmt: skip
        assert "True" == child.expect("flushed", 60)
        code, _ = child.finish(60)
        assert 0 == code, child.stderr
        assert server.wait_for_lines(3000, 10)
        assert any(r.status == 503 for r in server.requests)
        assert_exactly_once_in_order([f"x {i}" for i in range(3000)], texts(server))

    def test_timed_out_request_the_server_stored_duplicates(self, server: DevServer) -> None:
        """The one case that duplicates: a request that timed out on our side but was
        stored by the server is sent again. Nothing is lost and first arrivals keep order."""
        server.set_delay(0.8)
        client = Client(
            url=server.url, hostname="dup", flush_interval=0.05, retry_max_backoff=0.2,
            request_timeout=0.3,
        )  # fmt: skip
        try:
            for i in range(10):
                client.log(f"t {i}")
            client._start()
            client._wake()
            # The first attempts time out; stored late, they are resent meanwhile.
            assert server.wait_for_requests(2, 10)
            server.set_delay(0)
            assert client.flush(10)
            assert server.wait_for_lines(10, 10)
        finally:
            client.close(2)
        got = texts(server)
        first_seen = list(dict.fromkeys(got))
        assert [f"t {i}" for i in range(10)] == first_seen
        assert client.stats()["retries"] >= 1


class TestRejections:
    def test_413_splits_batches_until_they_fit(self) -> None:
        """A server with a small body limit answers 413; halves are sent, nothing is lost,
        and one line too big on its own is dropped and counted as rejected."""
        with DevServer(max_body_bytes=20_000) as server:
            client = Client(url=server.url, hostname="split", flush_interval=0.05,
                            retry_max_backoff=0.2, compress=False)  # fmt: skip
            try:
                for i in range(1000):
                    client.log(f"line {i:04d} " + "x" * 80)
                # Big by its meta, in two strings: text over 16 KiB, or one string
                # over it, would be cut to the service's limit.
                client.log("huge", meta={"blob": "y" * 12_500, "more": "y" * 12_500})
                client.log("tail")
                client.flush(20)
                assert server.wait_for_lines(1002, 10)  # 1000 + tail + summary
                stats = client.stats()
            finally:
                client.close(2)
            got = texts(server)
            expected = [f"line {i:04d} " + "x" * 80 for i in range(1000)] + ["tail"]
            assert_exactly_once_in_order(expected, got)
            assert any(r.status == 413 for r in server.requests)
            assert all(r.body_bytes <= 20_000 for r in server.requests if r.status == 200)
            assert 1 == stats["dropped"]["rejected"]
            assert 0 == stats["dropped"]["buffer_full"]
            assert [t for t in got if "lines dropped" in t] == [
                "logdna_client: 1 lines dropped (1 rejected)"
            ]

    def test_400_drops_only_the_bad_line(self, server: DevServer) -> None:
        """A 400 on a batch is bisected down to the one bad line, which alone is dropped,
        counted as rejected and reported in a summary line."""
        server.reject_lines_matching("POISON")
        client = Client(url=server.url, hostname="bad", flush_interval=0.05,
                        retry_max_backoff=0.2)  # fmt: skip
        try:
            for i in range(200):
                client.log("POISON here" if i == 137 else f"ok {i}")
            client.flush(20)
            assert server.wait_for_lines(200, 10)  # 199 + summary
            stats = client.stats()
        finally:
            client.close(2)
        got = texts(server)
        assert_exactly_once_in_order([f"ok {i}" for i in range(200) if i != 137], got)
        assert 1 == stats["dropped"]["rejected"]
        assert 1 == stats["dropped_total"]
        assert ["logdna_client: 1 lines dropped (1 rejected)"] == [t for t in got if "dropped" in t]
        # Bisecting 200 lines to one costs about 2 * log2(200) requests, not 200.
        assert sum(1 for r in server.requests if r.status == 400) <= 20

    def test_207_counts_the_lines_the_service_refused(self, server: DevServer) -> None:
        """A 207 whose per-line status refuses some lines: those are counted as rejected,
        the batch is not resent, and a summary line follows."""
        server.fail_next(1, 207, body='{"status": [200, 400, 200]}')
        client = Client(url=server.url, hostname="p", flush_interval=30)
        try:
            for i in range(3):
                client.log(f"p {i}")
            client.flush(10)
            client.log("next")
            client.flush(10)
            assert server.wait_for_lines(2, 10)  # the summary and "next"
            stats = client.stats()
        finally:
            client.close(2)
        assert 1 == stats["dropped"]["rejected"]
        assert 2 + 1 == stats["sent"]  # the summary line is ours: not counted as sent
        assert ["logdna_client: 1 lines dropped (1 rejected)", "next"] == texts(server)
        assert 3 == len([r for r in server.requests if r.method == "POST"])


class TestBadKey:
    def test_bad_key_reported_once_kept_and_not_hammered(self) -> None:
        """A refused key is reported once at ERROR (never showing the key), lines are
        kept, and the client does not hammer the service."""
        key = "wrong-key-0123456789abcdef"
        with DevServer(key="right") as server:
            child = Child(
                """
                logging.basicConfig(stream=sys.stderr, level=logging.DEBUG,
                                    format="%(name)s %(levelname)s %(message)s")
                for i in range(5):
                    log.info("k %d", i)
                wait_for("go")
                for i in range(5):
                    log.info("k2 %d", i)
                stats = client.stats()
                mark("stats " + json.dumps(stats))
                """,
                server.url,
                key=key,
                flush_interval="0.05",
                shutdown_timeout="1",
            )
            assert server.wait_for_requests(1, 10)
            # Over the next second: no more than the one retry close() may cause later.
            assert not server.wait_for_requests(2, 1.0)
            began = time.monotonic()  # the exit, not the start and the waits above
            child.send("go")
            stats = json.loads(child.expect("stats"))
            code, _ = child.finish()
            elapsed = time.monotonic() - began
        assert 0 == code, child.stderr
        assert elapsed < 1 + 8
        assert 403 == server.requests[0].status
        assert server.request_count <= 3
        assert 0 == server.line_count
        assert stats["queued_bytes"] > 0
        assert 0 == stats["dropped_total"]
        err = child.stderr
        refused = [line for line in child.stderr_lines if "key was refused" in line]
        assert 1 == len(refused), err
        assert refused[0].startswith("logdna_client ERROR")
        assert key not in err
        assert key not in child.stdout
        assert "" == child.stdout
        # At exit, the undelivered lines are reported.
        assert "could not be delivered" in err or "were not delivered" in err

    def test_error_body_echoing_the_key_is_scrubbed(
        self, server: DevServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A 500 whose body quotes the key is reported without it, and the line still arrives."""
        key = "secret-key-fedcba9876543210"
        server.fail_next(1, 500, body=f"upstream refused apikey={key}")
        caplog.set_level(logging.DEBUG, logger="logdna_client")
        client = Client(key=key, url=server.url, hostname="echo", flush_interval=0.05,
                        retry_max_backoff=0.2)  # fmt: skip
        try:
            client.log("after the echo")
            assert client.flush(10)
        finally:
            client.close(2)
        assert ["after the echo"] == texts(server)
        messages = [r.getMessage() for r in caplog.records if r.name == "logdna_client"]
        assert any("upstream refused apikey=***" in m for m in messages), messages
        assert not any(key in m for m in messages)

    def test_stats_queued_counts_lines_in_flight(self) -> None:
        """Lines held for retry count as queued in stats(), in flight or not."""
        with DevServer(key="right") as server:
            client = Client(key="wrong", url=server.url, hostname="q", flush_interval=0.05)
            try:
                for i in range(5):
                    client.log(f"q {i}")
                assert server.wait_for_requests(1, 10)
                assert 5 == client.stats()["queued"]
            finally:
                client.close(0.5)


class TestExitDeadline:
    @pytest.mark.parametrize("fault", ["port_closed", "hanging"])
    def test_exit_within_deadline_and_loss_on_stderr(self, server: DevServer, fault: str) -> None:
        """With the service down or hanging, the process exits within shutdown_timeout plus
        a margin, reports the loss on stderr, and writes nothing on stdout."""
        if fault == "port_closed":
            server.go_down()
        else:
            server.set_delay(30)
        child = Child(
            """
            for i in range(200):
                log.warning("lost %d", i)
            mark("logged")
            """,
            server.url,
            shutdown_timeout="1.5",
            flush_interval="0.05",  # a request is in flight when exit begins
        )
        child.expect("logged")
        began = time.monotonic()  # the exit, not the start: a loaded machine starts slowly
        code, _ = child.finish()
        elapsed = time.monotonic() - began
        assert 0 == code, child.stderr
        assert elapsed < 1.5 + 3.0, f"exit took {elapsed:.1f} s"
        assert "logdna_client" in child.stderr
        assert "delivered" in child.stderr
        assert "" == child.stdout


class TestFlushCloseDeadlines:
    def test_flush_and_close_return_on_time_while_service_hangs(self, server: DevServer) -> None:
        """flush(timeout) says False and close(timeout) returns, each on time, while every
        request hangs far longer."""
        server.set_delay(20)
        client = Client(url=server.url, hostname="hang", flush_interval=0.05)
        for i in range(50):
            client.log(f"h {i}")
        assert server.wait_for_requests(0, 1)
        started = time.monotonic()
        flushed = client.flush(0.5)
        flush_took = time.monotonic() - started
        started = time.monotonic()
        client.close(0.5)
        close_took = time.monotonic() - started
        assert not flushed
        assert flush_took < 0.5 + 1.0
        assert close_took < 0.5 + 1.5
        assert client.closed
        assert not client.log("after close")
        assert 1 == client.stats()["dropped"]["after_close"]


class TestMemory:
    @pytest.mark.parametrize(
        ("pad", "count", "buffer_mib"),
        [(1000, 200_000, 16), (40, 200_000, 4)],
        ids=["1KB", "short"],
    )
    def test_memory_bounded_during_long_outage(
        self, server: DevServer, pad: int, count: int, buffer_mib: int
    ) -> None:
        """200 MB logged during an outage grows the process by about max_buffer_bytes, not
        200 MB; drops are counted and one summary line arrives once the service is back."""
        server.go_down()
        child = Child(
            """
            def status(field):
                with open("/proc/self/status") as fh:
                    for line in fh:
                        if line.startswith(field + ":"):
                            return int(line.split()[1]) * 1024
                return 0
            pad = "p" * int(os.environ["PAD"])
            for i in range(2000):  # warm up: allocator, interned strings, the sender
                log.info("warm %d %s", i, pad)
            before = status("VmRSS")
            for i in range(int(os.environ["COUNT"])):  # 200 MB of 1 KB lines
                log.info("burst %d %s", i, pad)
            peak = status("VmHWM")
            stats = client.stats()
            mark("mem " + json.dumps({"before": before, "peak": peak, "stats": stats}))
            wait_for("up")
            mark("flushed " + str(client.flush(30)))
            """,
            server.url,
            env={"PAD": str(pad), "COUNT": str(count)},
            max_buffer_bytes=f"{buffer_mib}MiB",
            flush_interval="0.05",
            retry_max_backoff="0.2",
        )
        info = json.loads(child.expect("mem", 90))
        server.come_up()
        child.send("up")
        child.expect("flushed", 40)
        code, _ = child.finish()
        assert 0 == code, child.stderr
        limit = buffer_mib * 1024 * 1024
        growth = info["peak"] - info["before"]
        assert growth < 2 * limit + 24 * 1024 * 1024, f"grew {growth / 2**20:.0f} MiB"
        stats = info["stats"]
        assert stats["queued_bytes"] <= limit
        assert stats["dropped"]["buffer_full"] > count // 2
        summaries = [t for t in texts(server) if "lines dropped" in t]
        assert 1 <= len(summaries) <= 2, summaries
        assert "buffer full" in summaries[0]
        # The newest lines survived (drop_oldest) and arrived in order.
        burst = [t for t in texts(server) if t.startswith("burst ")]
        numbers = [int(t.split()[1]) for t in burst]
        assert numbers == sorted(numbers)
        assert count - 1 == numbers[-1]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
class TestForkUnderFaults:
    def test_three_children_fork_while_service_fails(self, server: DevServer) -> None:
        """Forked while every request fails, three children each deliver their own lines
        once the service recovers, and the parent's pending lines arrive exactly once."""
        server.set_fail_rate(1.0, 503)
        child = Child(
            """
            for i in range(100):
                log.info("parent before %d", i)
            client.flush(0.3)  # fails: the lines are pending (some in flight) at fork
            pids = []
            for c in range(3):
                pid = os.fork()
                if pid == 0:
                    for i in range(50):
                        log.info("child %d line %d", c, i)
                    ok = client.flush(20)
                    os._exit(0 if ok else 3)
                pids.append(pid)
            mark("forked")
            codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
            mark("children " + json.dumps(codes))
            log.info("parent after")
            """,
            server.url,
            **FAST,
        )
        child.expect("forked")
        server.reset_faults()
        assert "[0, 0, 0]" == child.expect("children")
        code, _ = child.finish()
        assert 0 == code, child.stderr
        assert server.wait_for_lines(100 + 150 + 1, 10)
        got = texts(server)
        assert_exactly_once_in_order([f"parent before {i}" for i in range(100)], got)
        for c in range(3):
            assert_exactly_once_in_order([f"child {c} line {i}" for i in range(50)], got)
        assert 1 == got.count("parent after")
        assert 251 == len(got)


class TestOverflowPolicies:
    @staticmethod
    def burst_in_outage(
        server: DevServer, prefix: str, **options: Any
    ) -> tuple[int, list[str], int]:
        """Log 2,000 lines into a 64 KiB buffer while the port is closed, then bring the
        service back and drain. Returns (lines dropped, the burst lines delivered, stats'
        sent), after checking the bound held and the summary lines account for the drops."""
        server.go_down()
        client = Client(url=server.url, hostname=prefix, max_buffer_bytes="64KiB",
                        flush_interval=0.05, retry_max_backoff=0.2, **options)  # fmt: skip
        try:
            for i in range(2000):
                client.log(f"{prefix} {i:04d} " + "z" * 60)
            stats = client.stats()
            assert stats["queued_bytes"] <= 64 * 1024
            server.come_up()
            client.flush(20)
        finally:
            client.close(5)
        dropped = stats["dropped"]["buffer_full"]
        # Usually one summary line; two when drops began before the sender first ran
        # (the first rides on the batch that then waits out the outage).
        summaries = [x for x in server.lines if "lines dropped" in x["line"]]
        assert 1 <= len(summaries) <= 2, summaries
        counted = [x["meta"]["logdna_client_dropped"]["buffer_full"] for x in summaries]
        assert dropped == sum(counted)
        burst = [t for t in texts(server) if t.startswith(prefix + " ")]
        return dropped, burst, client.stats()["sent"]

    def test_drop_newest_keeps_the_oldest(self, server: DevServer) -> None:
        """With drop_newest, an outage keeps the oldest lines, drops and counts the rest,
        and every line logged is either delivered or counted."""
        dropped, burst, sent = self.burst_in_outage(server, "n", overflow="drop_newest")
        kept = len(burst)
        assert [f"n {i:04d} " + "z" * 60 for i in range(kept)] == burst
        assert 2000 == kept + dropped
        assert kept == sent  # summary lines are ours: not counted as sent

    def test_drop_oldest_keeps_the_newest(self, server: DevServer) -> None:
        """With drop_oldest (the default), an outage keeps the batch in flight and the
        newest lines; all arrive in order and every line is delivered or counted."""
        dropped, burst, sent = self.burst_in_outage(server, "o", max_batch_bytes="8KiB")
        numbers = [int(t.split()[1]) for t in burst]
        assert numbers == sorted(set(numbers))
        assert 1999 == numbers[-1]
        assert 2000 == len(numbers) + dropped
        assert len(numbers) == sent  # summary lines are ours: not counted as sent

    def test_block_waits_at_most_block_timeout(self, server: DevServer) -> None:
        """With overflow=block and a hung service, a logging call waits no longer than
        block_timeout, then drops and counts the line."""
        server.set_delay(20)
        client = Client(url=server.url, hostname="blk", max_buffer_bytes="64KiB",
                        overflow="block", block_timeout=0.3, flush_interval=0.05)  # fmt: skip
        worst = 0.0
        try:
            for i in range(5000):
                started = time.monotonic()
                client.log(f"b {i:04d} " + "z" * 60)
                worst = max(worst, time.monotonic() - started)
                if client.stats()["dropped"]["buffer_full"] >= 3:
                    break
            stats = client.stats()
        finally:
            client.close(0.2)
        assert 3 == stats["dropped"]["buffer_full"]
        assert worst >= 0.25  # it did block ...
        assert worst < 0.3 + 1.0  # ... but not past block_timeout

    def test_close_restarts_a_dead_sender_and_delivers(self, server: DevServer) -> None:
        """A sender thread that died (as a bug would end it) with lines left: close()
        starts a new one and delivers them; it used to return at once, the lines lost
        without a word."""
        client = Client(url=server.url, hostname="dead", flush_interval=60)
        try:
            client.log("first")
            assert client.flush(20)
            sender = client._sender
            # Out of its loop, through its cleanup, with nothing changed for the client.
            sender.begin_close(0)
            assert sender.thread is not None
            sender.thread.join(10)
            sender._deadline = None
            sender._interrupt.clear()
            assert not sender.alive
            for i in range(5):  # fewer than a batch: no line wakes (and restarts) it
                client.log(f"after {i}")
        finally:
            client.close(10)
        assert ["first"] + [f"after {i}" for i in range(5)] == texts(server)
        assert 0 == client.stats()["dropped_total"]

    def test_block_restarts_a_dead_sender_instead_of_hanging(self, server: DevServer) -> None:
        """With overflow=block, a full buffer and a sender thread that has died, the
        logging call that waits for room restarts the sender (it used to deadlock on
        the buffer's lock, and then so did exit); every line is delivered."""
        child = Child(
            """
            sender = client._sender
            log.info("first")
            mark("first delivered " + str(client.flush(20)))
            # A sender thread that ended on its own, as a bug would end it: out of
            # its loop, through its cleanup, with nothing changed for the client.
            sender.begin_close(0)
            sender.thread.join(10)
            sender._deadline = None
            sender._interrupt.clear()
            # And it died after being woken, before taking a batch: puts do not wake
            # it again until it takes one, so only the blocked put can restart it.
            buffer = client._buffer
            with buffer._lock:
                buffer._wake_at = 1 << 62
                buffer._refresh_fast_limit()
            mark("dead " + str(sender.alive))
            for i in range(2000):
                log.info("x %04d " + "z" * 100, i)
            mark("logged")
            mark("flushed " + str(client.flush(20)))
            mark("alive again " + str(sender.alive))
            """,
            server.url, hostname="blk3", max_buffer_bytes="64KiB", max_batch_bytes="8KiB",
            overflow="block", block_timeout="10", **FAST,
        )  # fmt: skip
        try:
            assert "True" == child.expect("first delivered")
            assert "False" == child.expect("dead")
            child.expect("logged", timeout=60)
            assert "True" == child.expect("flushed", timeout=60)
            assert "True" == child.expect("alive again")
            status, _ = child.finish()
        finally:
            if child.proc.poll() is None:  # hung: do not leave it behind
                child.proc.kill()
                child.proc.wait()
        assert 0 == status, child.stderr
        expected = ["first"] + [f"x {i:04d} " + "z" * 100 for i in range(2000)]
        assert_exactly_once_in_order(expected, texts(server))

    def test_block_resumes_when_room_appears(self, server: DevServer) -> None:
        """With overflow=block and a slow but working service, blocked calls resume as
        batches are delivered and nothing is dropped."""
        server.set_delay(0.2)
        client = Client(url=server.url, hostname="blk2", max_buffer_bytes="64KiB",
                        max_batch_bytes="16KiB", overflow="block", block_timeout=10,
                        flush_interval=0.05)  # fmt: skip
        try:
            for i in range(1500):
                client.log(f"c {i:04d} " + "z" * 60)
            assert client.flush(20)
            stats = client.stats()
        finally:
            client.close(2)
        assert 0 == stats["dropped_total"]
        assert_exactly_once_in_order([f"c {i:04d} " + "z" * 60 for i in range(1500)], texts(server))
