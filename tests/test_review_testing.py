"""A user's review of the test helpers (``logdna_client.testing`` and the ``logdna_lines``
pytest fixture): each test runs a user's test file in a child ``python -m pytest`` against
a real local server standing in for the service, and checks what the user sees and what
reaches the server."""

from __future__ import annotations

import logging
import logging.handlers
import queue
import subprocess
import sys

import pytest

from logdna_client import Client, LogDNAHandler
from logdna_client._devserver import DevServer
from logdna_client.testing import capture_lines
from tests.helpers import UNREACHABLE, make_logger

pytest_plugins = ["pytester"]


def _run(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(source)
    return pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider", *args)


#: A user's module: a handler on a logger, and a fixture that logs as it sets up and
#: tears down (an app started and stopped for each test).
_APP = """
import logging, os

import pytest

from logdna_client import LogDNAHandler

log = logging.getLogger("shop")
log.setLevel(logging.INFO)
log.propagate = False
log.addHandler(LogDNAHandler(url=os.environ["SERVICE_URL"], app="shop", key="not-used"))


@pytest.fixture
def app():
    log.info("app started")
    yield
    log.info("app stopped")
"""


class TestFixtureSpansTheWholeTest:
    def test_lines_of_fixtures_set_up_before_it_are_captured_not_sent(
        self, pytester: pytest.Pytester, server: DevServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``def test(app, logdna_lines)``: the app fixture is set up before logdna_lines
        and torn down after it. Its lines are the test's too: captured, and none reaches
        the service, whatever the order the test names its fixtures in."""
        monkeypatch.setenv("SERVICE_URL", server.url)
        result = _run(
            pytester,
            _APP
            + """
HELD = []


def test_app_named_first(app, logdna_lines):
    HELD.append(logdna_lines)
    log.info("checkout")
    assert ["app started", "checkout"] == [line["line"] for line in logdna_lines]


def test_app_named_last(logdna_lines, app):
    HELD.append(logdna_lines)
    log.info("checkout")
    assert ["app started", "checkout"] == [line["line"] for line in logdna_lines]


def test_their_teardown_lines_were_captured_too():
    assert [["app started", "checkout", "app stopped"]] * 2 == [
        [line["line"] for line in lines] for lines in HELD
    ]
""",
        )
        result.assert_outcomes(passed=3)
        assert [] == server.lines
        assert 0 == server._store.request_count

    def test_no_capture_left_open_by_failing_fixtures_or_skips(
        self, pytester: pytest.Pytester, server: DevServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A fixture that fails as it sets up, or as it tears down, a skipped test, and the
        fixture asked for with ``request.getfixturevalue``: every capture ends with its
        test, so the next test's lines ship."""
        monkeypatch.setenv("SERVICE_URL", server.url)
        result = _run(
            pytester,
            _APP
            + """
from logdna_client._capture import active


@pytest.fixture
def broken_setup():
    log.info("setting up")
    raise RuntimeError("setup failed")


@pytest.fixture
def broken_teardown():
    yield
    raise RuntimeError("teardown failed")


def test_setup_fails(broken_setup, logdna_lines):
    pass


def test_teardown_fails(broken_teardown, logdna_lines):
    log.info("in the test")


@pytest.mark.skip(reason="skipped")
def test_skipped(logdna_lines):
    pass


def test_asked_for_by_name(request):
    assert not active()
    lines = request.getfixturevalue("logdna_lines")
    log.info("by name")
    assert ["by name"] == [line["line"] for line in lines]


def test_next_test_ships():
    assert not active()
    log.info("shipped")
""",
        )
        result.assert_outcomes(passed=3, skipped=1, errors=2)
        assert ["shipped"] == [line["line"] for line in server.lines]


class TestWhatACaptureCounts:
    def test_no_buffer_full_in_a_capture_and_captured_lines_counted_nowhere(self) -> None:
        """docs/testing.md: a capture queues nothing, so the smallest buffer never fills
        (1,000 lines of 1 KB into 64 KiB, drop_newest: all captured, none dropped), and the
        lines it took are in none of the counters."""
        client = Client(url=UNREACHABLE, max_buffer_bytes=64 * 1024, overflow="drop_newest")
        with capture_lines() as lines:
            for i in range(1000):
                client.log(f"{i:04d} " + "x" * 1000)
        stats = client.stats()
        client.close(0)
        assert 1000 == len(lines)
        assert (0, 0, 0, 0) == (
            stats["dropped_total"], stats["accepted"], stats["queued"], stats["sent"]
        )  # fmt: skip


class TestLoadingThePlugin:
    @pytest.mark.parametrize(
        ("autoload", "args", "outcome"),
        [
            ("", (), {"passed": 1}),
            ("", ("-p", "no:logdna_client"), {"errors": 1}),  # turned off: no fixture
            ("1", (), {"errors": 1}),  # autoloading off, nothing named
            ("1", ("-p", "logdna_client"), {"passed": 1}),
        ],
    )
    def test_by_the_entry_points_name(
        self,
        pytester: pytest.Pytester,
        monkeypatch: pytest.MonkeyPatch,
        autoload: str,
        args: tuple[str, ...],
        outcome: dict[str, int],
    ) -> None:
        """docs/testing.md: the plugin loads by itself, ``-p no:logdna_client`` turns it
        off, and where autoloading is off ``-p logdna_client`` loads it."""
        monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", autoload)
        source = "def test_it(logdna_lines):\n    assert [] == logdna_lines\n"
        result = _run(pytester, source, *args)
        result.assert_outcomes(**outcome)


class TestBehindAQueueHandler:
    def test_listener_stopped_inside_the_block_nothing_ships(self, server: DevServer) -> None:
        """docs/testing.md: behind a QueueHandler, stopping the QueueListener inside the
        block hands every queued record to the handler first: all captured, none sent."""
        handler = LogDNAHandler(url=server.url)
        records: queue.Queue[logging.LogRecord] = queue.Queue()
        listener = logging.handlers.QueueListener(records, handler)
        listener.start()
        log = make_logger("review.queue", logging.handlers.QueueHandler(records))
        with capture_lines() as lines:
            for i in range(2000):
                log.info("line %d", i)
            listener.stop()
        assert handler.client.flush(30)
        handler.close()
        assert 2000 == len(lines)
        assert 0 == server._store.request_count


class TestAPytestRunThatDoesNotUseIt:
    def test_imports_none_of_the_client(self, pytester: pytest.Pytester) -> None:
        """pytest loads the plugin in every run wherever the package is installed: a run
        whose tests never ask for ``logdna_lines`` imports the package's ``__init__`` and
        the plugin only (not the client, requests, its C extension), and registers no
        exit hook of ours; a test that asks for it gets it as before."""
        source = """
import sys


def test_nothing_of_ours_was_imported():
    ours = sorted(m for m in sys.modules if m.startswith("logdna_client"))
    assert ["logdna_client", "logdna_client._pytest_plugin", "logdna_client._version"] == ours
"""
        result = _run(pytester, source)
        result.assert_outcomes(passed=1)

    def test_the_names_are_there_on_first_use(self) -> None:
        """``import logdna_client`` then its names, ``from ... import *`` and dir()."""
        code = (
            "import logdna_client, sys\n"
            "assert 'logdna_client._client' not in sys.modules\n"
            "assert logdna_client.Client.__name__ == 'Client'\n"
            "ns = {}\n"
            "exec('from logdna_client import *', ns)\n"
            "assert set(logdna_client.__all__) <= set(ns) | {'__version__'}\n"
            "assert set(logdna_client.__all__) <= set(dir(logdna_client))\n"
            "try:\n"
            "    logdna_client.Nope\n"
            "except AttributeError as exc:\n"
            "    assert 'Nope' in str(exc)\n"
            "else:\n"
            "    raise SystemExit('no AttributeError')\n"
        )
        subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
