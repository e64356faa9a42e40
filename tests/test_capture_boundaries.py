"""Tests for the edges of a ``capture_lines()`` block while other threads log: every
line logged goes to the capture or to the service, never to neither."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from logdna_client import Client, LogDNAHandler, _capture
from logdna_client._devserver import DevServer
from logdna_client.testing import capture_lines
from tests.helpers import in_forked_child, make_logger

# Per logging thread: enough for hundreds of capture blocks to open and end meanwhile.
LINES_PER_THREAD = 20_000
WAIT = 60.0  # generous: the machine may be loaded


@pytest.fixture
def frequent_switches() -> Iterator[None]:
    """Threads switch as often as the interpreter allows: the logging threads run
    inside each capture's start and stop, not only between them."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


@pytest.mark.usefixtures("handle_path", "frequent_switches")
class TestCaptureBoundaries:
    def test_no_line_lost_as_captures_open_and_end(self, server: DevServer) -> None:
        """Two threads log while the main thread opens and ends captures back to back
        (and one nested in each): every line is in a capture or at the server, once,
        and none is counted as dropped. A line logged as the last capture ended used to
        reach no capture and not the server either, uncounted (thousands of 40,000)."""
        handler = LogDNAHandler(url=server.url, key="not-used-in-tests", flush_interval=0.01)
        log = make_logger("capture.boundaries", handler)
        log.info("warm up")  # the sender runs: the inlined fast put is on between captures
        assert handler.client.flush(WAIT)
        server.clear()

        def work(tag: str) -> None:
            for i in range(LINES_PER_THREAD):
                log.info("%s-%d", tag, i)

        workers = [threading.Thread(target=work, args=(tag,)) for tag in "ab"]
        for worker in workers:
            worker.start()
        captured: list[str] = []
        blocks = 0
        while any(worker.is_alive() for worker in workers):
            with capture_lines() as lines, capture_lines() as inner:
                pass
            captured += [line["line"] for line in lines]
            assert {line["line"] for line in inner} <= {line["line"] for line in lines}
            blocks += 1
        for worker in workers:
            worker.join(WAIT)
        assert handler.client.flush(WAIT)
        stats = handler.client.stats()
        handler.close()

        sent = [line["line"] for line in server.lines]
        expected = {f"{tag}-{i}" for tag in "ab" for i in range(LINES_PER_THREAD)}
        assert 0 == stats["dropped_total"]
        assert len(sent) == len(set(sent)) and len(captured) == len(set(captured))
        assert set() == set(sent) & set(captured)  # none both captured and sent
        assert set() == expected - set(sent) - set(captured)  # none lost
        assert blocks > 10 and captured and sent  # both sides of the boundary were seen


class TestLastCaptureEnding:
    def test_a_line_being_captured_as_the_last_capture_ends(
        self, server: DevServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A thread's line on its way into the only capture as that capture ends: the
        line is in the capture (or at the server), never in neither. The old code ended
        the capture at once, and the line, already handed over by the buffer, was lost
        uncounted."""
        entered, release = threading.Event(), threading.Event()
        real = _capture.to_dict

        def slow_to_dict(data: bytes) -> dict[str, Any]:
            entered.set()
            release.wait(WAIT)
            return real(data)

        client = Client(url=server.url, key="not-used-in-tests")
        ended = threading.Event()
        capture = capture_lines()
        lines = capture.__enter__()
        monkeypatch.setattr(_capture, "to_dict", slow_to_dict)
        logger = threading.Thread(target=client.log, args=("racing",))
        logger.start()
        assert entered.wait(WAIT)

        def end_capture() -> None:
            capture.__exit__(None, None, None)
            ended.set()

        ender = threading.Thread(target=end_capture)
        ender.start()
        # The old code ends the capture at once; the new one waits for the line (and
        # would wait this long in vain, passing all the same).
        ended.wait(2)
        release.set()
        ender.join(WAIT)
        logger.join(WAIT)
        monkeypatch.setattr(_capture, "to_dict", real)
        assert client.flush(WAIT)
        stats = client.stats()
        client.close(WAIT)
        shipped = [line["line"] for line in lines] + [line["line"] for line in server.lines]
        assert (["racing"], 0) == (shipped, stats["dropped_total"])


class TestForkedChild:
    def test_a_child_forked_inside_a_capture_keeps_its_lines_to_itself(
        self, server: DevServer
    ) -> None:
        """docs/testing.md: a child forked while a capture is open collects its lines
        into its copy of the list and sends none; the parent's list never sees them."""
        client = Client(url=server.url, key="not-used-in-tests")
        with capture_lines() as lines:
            client.log("parent")

            def child() -> dict[str, Any]:
                client.log("child")
                return {"seen": [line["line"] for line in lines], "flushed": client.flush(WAIT)}

            seen = in_forked_child(child)
        client.log("after")
        assert client.flush(WAIT)
        client.close(WAIT)
        assert {"seen": ["parent", "child"], "flushed": True} == seen
        assert ["parent"] == [line["line"] for line in lines]
        assert ["after"] == [line["line"] for line in server.lines]


class TestCapturesOnTwoThreads:
    def test_two_tests_at_once_see_each_others_lines(self) -> None:
        """docs/testing.md: two captures open at once on two threads (two tests run in
        parallel in one process) each see every line logged while both are open."""
        client = Client(url="http://127.0.0.1:9/logs/ingest", key="not-used-in-tests")
        both_open, both_logged = (
            threading.Barrier(2, timeout=WAIT),
            threading.Barrier(2, timeout=WAIT),
        )
        seen: dict[str, list[str]] = {}

        def one_test(name: str) -> None:
            with capture_lines() as lines:
                both_open.wait()
                client.log(name)
                both_logged.wait()
            seen[name] = sorted(line["line"] for line in lines)

        tests = [threading.Thread(target=one_test, args=(name,)) for name in ("t1", "t2")]
        for test in tests:
            test.start()
        for test in tests:
            test.join(WAIT)
        client.close(0)
        assert {"t1": ["t1", "t2"], "t2": ["t1", "t2"]} == seen
