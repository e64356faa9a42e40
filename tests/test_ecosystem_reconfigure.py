"""A second ``dictConfig`` (Django's setup, Celery, a test fixture) closes every handler
there is, those it does not configure again included. Logging's own handlers go on
writing after such a close; a LogDNAHandler that still gets records ships them too."""

from __future__ import annotations

import gc
import logging
import logging.config
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from logdna_client import LogDNAHandler
from logdna_client._devserver import DevServer
from tests._helpers_integrations import REPO_ROOT, TIMEOUT
from tests.helpers import library_reports

AUDIT = "t.reconfigure.audit"
WORKER = "t.reconfigure.worker"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield
    for name in (AUDIT, WORKER):
        log = logging.getLogger(name)
        for handler in log.handlers[:]:
            log.removeHandler(handler)
            handler.close()
        log.propagate = True
    for handler in root.handlers[:]:
        if handler not in saved[0]:
            root.removeHandler(handler)
            handler.close()
    root.handlers[:], root.level = saved


def _console_only() -> dict[str, Any]:
    """A framework's logging settings that know nothing of the LogDNA handler."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"null": {"class": "logging.NullHandler"}},
        "root": {"handlers": ["null"], "level": "WARNING"},
    }


def _after_close(handler: LogDNAHandler) -> int:
    return handler.client.stats()["dropped"]["after_close"]


class _EmitSubclass(LogDNAHandler):
    """A subclass with an ``emit`` of its own: the stdlib's ``handle`` runs."""

    def emit(self, record: logging.LogRecord) -> None:
        record.subclassed = True
        super().emit(record)


def _made(kind: str, server: DevServer) -> LogDNAHandler:
    if kind == "official":  # the official client's form: LogDNAHandler(key, options)
        return LogDNAHandler(
            "not-used", {"url": server.url, "flush_interval": 0.05, "app": "audit"}
        )
    cls = _EmitSubclass if kind == "subclass" else LogDNAHandler
    return cls(url=server.url, flush_interval=0.05, app="audit")


@pytest.mark.usefixtures("handle_path")
class TestHandlerLeftOutOfANewConfig:
    @pytest.mark.parametrize("kind", ["keywords", "official", "subclass"])
    def test_logger_the_new_config_left_alone_still_ships(
        self, server: DevServer, kind: str
    ) -> None:
        """A handler added in code to the ``audit`` logger, then a dictConfig that does not
        mention it (``disable_existing_loggers: False``): the logger keeps the handler,
        which dictConfig closed; its lines still arrive, none counted as dropped."""
        handler = _made(kind, server)
        audit = logging.getLogger(AUDIT)
        audit.addHandler(handler)
        audit.setLevel(logging.INFO)
        audit.info("before the framework configured logging")

        logging.config.dictConfig(_console_only())
        assert [handler] == audit.handlers
        for i in range(2):
            audit.info("user %d deleted an invoice", i)
        audit.info("user 2 deleted an invoice", {"meta": {"invoice": 12}})

        assert handler.client.flush(TIMEOUT)
        assert server.wait_for_lines(4, TIMEOUT)
        # (The closed client drains in the background: across the two, arrival order
        # is not logging order, as with the handler a reconfiguration puts in.)
        assert [
            "before the framework configured logging",
            "user 0 deleted an invoice",
            "user 1 deleted an invoice",
            "user 2 deleted an invoice",
        ] == sorted(line["line"] for line in server.lines)
        assert {"audit"} == {line["app"] for line in server.lines}
        if kind == "official":  # its per-line options still apply
            (last,) = [line for line in server.lines if line["line"].startswith("user 2")]
            assert 12 == last["meta"]["invoice"]
        if kind == "subclass":
            assert {True} == {line["meta"]["subclassed"] for line in server.lines}
        assert 0 == _after_close(handler)

    def test_closed_by_the_application_it_stays_closed(self, server: DevServer) -> None:
        """``handler.close()`` called by the application, not by a reconfiguration: later
        records are counted as ``after_close``, as before, and nothing ships."""
        handler = LogDNAHandler(url=server.url, flush_interval=0.05)
        audit = logging.getLogger(AUDIT)
        audit.addHandler(handler)
        audit.setLevel(logging.INFO)
        handler.close()

        audit.info("after the application closed it")

        assert 1 == _after_close(handler)
        assert handler.client.closed

    def test_closed_again_after_a_reconfiguration_it_stays_closed(self, server: DevServer) -> None:
        """Closed by a reconfiguration, then by the application: closed for good."""
        handler = LogDNAHandler(url=server.url, flush_interval=0.05)
        audit = logging.getLogger(AUDIT)
        audit.addHandler(handler)
        audit.setLevel(logging.INFO)
        logging.config.dictConfig(_console_only())
        handler.close()

        audit.info("after the application closed it")

        assert 1 == _after_close(handler)
        assert handler.client.closed

    def test_closed_by_the_application_a_reconfiguration_leaves_it_closed(
        self, server: DevServer
    ) -> None:
        """``handler.close()`` by the application, then a dictConfig (which closes every
        handler there is, closed ones too): it stays closed, as docs/stdlib.md says; no
        new client, no sender thread, the record counted as ``after_close``."""
        handler = LogDNAHandler(url=server.url, flush_interval=0.05)
        audit = logging.getLogger(AUDIT)
        audit.addHandler(handler)
        audit.setLevel(logging.INFO)
        client = handler.client
        handler.close()
        logging.config.dictConfig(_console_only())

        audit.info("after the application closed it, and a reconfiguration")

        assert client is handler.client and client.closed
        assert 1 == _after_close(handler)
        assert not [t for t in threading.enumerate() if t.name == "logdna_client-sender"]

    def test_a_reconfiguration_is_no_exit(self, server: DevServer) -> None:
        """A handler that shipped nothing yet, closed by a dictConfig: a line given to its
        (closed) client afterwards ships through the handler's new one, and nothing says
        it came after the library's exit hook (the process goes on)."""
        handler = LogDNAHandler(url=server.url, flush_interval=0.05)
        audit = logging.getLogger(AUDIT)
        audit.addHandler(handler)
        logging.config.dictConfig(_console_only())
        old = handler.client

        with library_reports(lambda record: record.getMessage()) as said:
            assert old.log("job 7 finished")
        assert old.closed and handler.client is not old
        assert handler.client.flush(TIMEOUT)
        assert ["job 7 finished"] == [line["line"] for line in server.lines]
        assert 0 == _after_close(handler) == old.stats()["dropped"]["after_close"]
        assert not [text for text in said if "exit hook" in text], said


class TestAtExit:
    def test_lines_after_a_reconfiguration_are_delivered_at_exit(self, server: DevServer) -> None:
        """A process that logs through a handler a reconfiguration closed, and ends
        without closing anything: its lines are delivered at exit, within the deadline."""
        code = textwrap.dedent(
            f"""
            import logging, logging.config
            from logdna_client import LogDNAHandler

            audit = logging.getLogger("audit")
            audit.setLevel(logging.INFO)
            audit.addHandler(LogDNAHandler(url={server.url!r}, flush_interval=30))
            logging.config.dictConfig({{"version": 1, "disable_existing_loggers": False}})
            for i in range(100):
                audit.info("after %d", i)
            """
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOGDNA_")}
        env["PYTHONPATH"] = str(REPO_ROOT)
        child = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

        assert 0 == child.returncode, child.stderr
        assert "" == child.stderr
        assert server.wait_for_lines(100, TIMEOUT)
        assert [f"after {i}" for i in range(100)] == [line["line"] for line in server.lines]


@pytest.mark.usefixtures("handle_path")
class TestThreadsLoggingWhileItRuns:
    def test_lines_logged_while_dictconfig_runs_all_arrive(self, server: DevServer) -> None:
        """A thread that logs while dictConfig replaces the handler (after it closed the
        old one, before the root logger has the new one) loses nothing; the old
        handler's new client closes once the handler is gone, its thread with it."""
        n = 50
        ready, logged = threading.Event(), threading.Event()

        class Gate(logging.Handler):
            """Built by dictConfig after it closed the old handlers: the worker logs then."""

            def __init__(self) -> None:
                super().__init__()
                ready.set()
                assert logged.wait(TIMEOUT)

        def config(app: str, *, gate: bool) -> dict[str, Any]:
            handlers: dict[str, Any] = {
                "logdna": {
                    "class": "logdna_client.LogDNAHandler",
                    "url": server.url,
                    "flush_interval": "0.05",
                    "app": app,
                },
            }
            if gate:
                handlers["gate"] = {"()": Gate}
            return {
                "version": 1,
                "disable_existing_loggers": False,
                "handlers": handlers,
                "root": {"handlers": ["logdna"], "level": "INFO"},
            }

        worker_log = logging.getLogger(WORKER)

        def work() -> None:
            assert ready.wait(TIMEOUT)
            for i in range(n):
                worker_log.info("meanwhile %d", i)
            logged.set()

        logging.config.dictConfig(config("first", gate=False))
        (old,) = logging.getLogger().handlers
        assert isinstance(old, LogDNAHandler)
        worker_log.info("before")  # (and logging's level cache for the worker's logger)
        worker = threading.Thread(target=work)
        worker.start()
        logging.config.dictConfig(config("second", gate=True))
        worker.join(TIMEOUT)
        (new,) = logging.getLogger().handlers
        assert isinstance(new, LogDNAHandler)
        worker_log.info("after")

        reopened = old.client
        assert reopened.flush(TIMEOUT)
        assert new.client.flush(TIMEOUT)
        assert server.wait_for_lines(n + 2, TIMEOUT)
        texts = sorted(line["line"] for line in server.lines)
        assert sorted(["before", "after", *(f"meanwhile {i}" for i in range(n))]) == texts
        assert 0 == _after_close(old)

        del old
        gc.collect()
        assert reopened._sender.finished.wait(TIMEOUT)
        assert reopened.closed

    def test_a_handle_looked_up_before_the_close_still_ships(self, server: DevServer) -> None:
        """A thread in ``Logger.callHandlers`` that looked ``handler.handle`` up just
        before dictConfig closed the handler calls the old one afterwards: its line goes
        to the new client, not counted as ``after_close`` (it was dropped)."""
        handler = LogDNAHandler(url=server.url, flush_interval=0.05)
        audit = logging.getLogger(AUDIT)
        audit.addHandler(handler)
        audit.setLevel(logging.INFO)
        audit.info("before")
        stale = handler.handle
        record = audit.makeRecord(AUDIT, logging.INFO, __file__, 1, "meanwhile", (), None)

        logging.config.dictConfig(_console_only())
        old = handler.client
        assert old.closed
        stale(record)

        assert handler.client is not old and handler.client.flush(TIMEOUT)
        assert old.flush(TIMEOUT)
        assert server.wait_for_lines(2, TIMEOUT)
        assert ["before", "meanwhile"] == sorted(line["line"] for line in server.lines)
        assert 0 == old.stats()["dropped"]["after_close"]

    def test_a_line_logged_while_another_thread_reopens_waits_for_it(
        self, server: DevServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Two threads log through a handler dictConfig closed: the first makes the new
        client; the second, arriving meanwhile, waits for it and ships through it (it
        used to give up at once, its line counted as ``after_close``)."""
        from logdna_client import Client, _handler

        making, made, waiting = threading.Event(), threading.Event(), threading.Event()

        class SlowClient(Client):
            def __init__(self, **kwargs: Any) -> None:
                making.set()
                assert made.wait(TIMEOUT)
                super().__init__(**kwargs)

        class WatchedLock:
            """The handler's reopening lock, saying when a second thread waits on it."""

            def __init__(self) -> None:
                self._lock = threading.Lock()

            def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
                if self._lock.locked():
                    waiting.set()
                return self._lock.acquire(blocking, timeout)

            def release(self) -> None:
                self._lock.release()

        handler = LogDNAHandler(url=server.url, flush_interval=0.05)
        audit = logging.getLogger(AUDIT)
        audit.addHandler(handler)
        audit.setLevel(logging.INFO)
        logging.config.dictConfig(_console_only())
        old = handler.client
        monkeypatch.setattr(_handler, "Client", SlowClient)
        handler._reopening = WatchedLock()  # type: ignore[assignment]

        first = threading.Thread(target=audit.info, args=("first",))
        first.start()
        assert making.wait(TIMEOUT)
        second = threading.Thread(target=audit.info, args=("second",))
        second.start()
        assert waiting.wait(TIMEOUT)
        made.set()
        first.join(TIMEOUT)
        second.join(TIMEOUT)

        assert handler.client is not old and handler.client.flush(TIMEOUT)
        assert server.wait_for_lines(2, TIMEOUT)
        assert ["first", "second"] == sorted(line["line"] for line in server.lines)
        assert 0 == old.stats()["dropped"]["after_close"]

    def test_threads_logging_through_repeated_reconfigurations_lose_nothing(
        self, server: DevServer
    ) -> None:
        """Two threads log without pause while the main thread configures logging again
        and again (the same handler settings each time, as an autoreloader does): every
        line arrives, as with logging's own handlers (11 to 722 lines were lost in 30
        reconfigurations, counted as ``after_close``)."""
        # Each replaced handler's client drains in the background within its
        # shutdown_timeout: ample here, so that a loaded machine's slow requests are no loss.
        handler = {"class": "logdna_client.LogDNAHandler", "url": server.url}
        config = {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"logdna": {**handler, "shutdown_timeout": "60"}},
            "root": {"handlers": ["logdna"], "level": "INFO"},
        }
        logging.config.dictConfig(config)
        n = 3000

        def work(tag: str) -> None:
            log = logging.getLogger(f"{WORKER}.{tag}")
            for i in range(n):
                log.info("%s %d", tag, i)

        workers = [threading.Thread(target=work, args=(tag,)) for tag in "ab"]
        for worker in workers:
            worker.start()
        reconfigured = 0
        while any(worker.is_alive() for worker in workers) or reconfigured < 5:
            logging.config.dictConfig(config)
            reconfigured += 1
        for worker in workers:
            worker.join(TIMEOUT)

        assert logging.getLogger().handlers[0].client.flush(60)  # type: ignore[attr-defined]
        assert server.wait_for_lines(2 * n, 60)
        expected = sorted(f"{tag} {i}" for tag in "ab" for i in range(n))
        assert expected == sorted(line["line"] for line in server.lines)
