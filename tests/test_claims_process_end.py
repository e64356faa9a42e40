"""README, "Clean exit, however the process ends ... With the service down, hanging or
trickling its answers, every exit path still ends within that one deadline", tried on
the paths tests/test_process_end.py does not run against a bad server: a termination
signal, ``with Pool(...)``, an uncaught exception, ``sys.exit``, a signal that lands
while the exit is already delivering, and a signal after the main thread has returned
while another thread still logs. Real child processes, real signals, real sockets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from logdna_client._devserver import DevServer
from tests._bad_servers import bad_server
from tests._children import REPO, Child, assert_exactly_once_in_order, losses_said, texts

DEADLINE = 1.5
# Over the deadline the library enforces: its own bookkeeping, and starting and reaping
# a process on a loaded machine.
SLACK = 1.0
BAD_KINDS = ["silent", "trickle", "error500"]


def run_against_a_silent_server(
    tmp_path: Path, script: str, method: str
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (a multiprocessing app, given its start method) against a service
    that accepts connections and never answers; DEADLINE is its shutdown_timeout."""
    path = tmp_path / "app.py"
    path.write_text(script)
    with bad_server("silent") as bad:
        env = dict(os.environ, LOGDNA_URL=bad.url, PYTHONPATH=REPO, DEADLINE=str(DEADLINE))
        env.pop("LOGDNA_INGESTION_KEY", None)
        return subprocess.run(
            [sys.executable, str(path), method], env=env, capture_output=True,
            text=True, timeout=120, cwd=tmp_path, check=False,
        )  # fmt: skip


def assert_loss_reported(child: Child) -> None:
    """docs/delivery.md: "Lines cut off at exit are reported on stderr"; nothing on stdout."""
    assert losses_said(child.stderr), child.stderr
    assert "" == child.stdout


class TestSignalsAgainstABadServer:
    @pytest.mark.parametrize("kind", BAD_KINDS)
    @pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["TERM", "HUP"])
    def test_ends_by_the_signal_within_the_deadline(self, kind: str, signum: int) -> None:
        """SIGTERM or SIGHUP with the service hanging, trickling or failing: the process
        ends by that signal within shutdown_timeout, and says what it lost."""
        with bad_server(kind) as bad:
            child = Child(
                """
                for i in range(300):
                    log.info("doomed %d", i)
                client.flush(0.3)  # a request is out when the signal comes
                mark("logged")
                wait_for("never")
                """,
                bad.url,
                shutdown_timeout=str(DEADLINE),
                retry_max_backoff="0.2",
            )
            child.expect("logged")
            sent = child.kill(signum)
            code, _ = child.finish()
            took = time.monotonic() - sent
        assert -signum == code, child.stderr
        assert took < DEADLINE + SLACK, f"{kind}: {took:.2f} s"
        assert_loss_reported(child)


class TestExitsAgainstABadServer:
    @pytest.mark.parametrize("kind", ["silent", "trickle"])
    @pytest.mark.parametrize(
        ("how", "status"), [("raise RuntimeError('boom')", 1), ("sys.exit(3)", 3)],
        ids=["uncaught-exception", "sys.exit"],
    )  # fmt: skip
    def test_ends_within_the_deadline(self, kind: str, how: str, status: int) -> None:
        """An uncaught exception or sys.exit(3) with the service hanging or trickling:
        the process ends within shutdown_timeout, with its own exit status."""
        with bad_server(kind) as bad:
            child = Child(
                f"""
                for i in range(300):
                    log.info("doomed %d", i)
                client.flush(0.3)
                mark("exiting")
                {how}
                """,
                bad.url,
                shutdown_timeout=str(DEADLINE),
            )
            child.expect("exiting")
            began = time.monotonic()
            code, _ = child.finish()
            took = time.monotonic() - began
        assert status == code, child.stderr
        assert took < DEADLINE + SLACK, f"{how} against {kind}: {took:.2f} s"
        assert_loss_reported(child)

    def test_a_signal_during_the_exit_keeps_the_exits_deadline(self) -> None:
        """docs/delivery.md, "One deadline per exit": a SIGTERM that lands while the exit
        is already delivering (a supervisor stopping a process that is ending anyway)
        ends it by the deadline the exit set, not by a fresh shutdown_timeout from the
        signal."""
        deadline = 4.0
        with bad_server("silent") as bad:
            child = Child(
                """
                log.info("held by a server that never answers")
                mark("exiting")
                """,
                bad.url,
                shutdown_timeout=str(deadline),
                flush_interval="60",  # the exit sends the first request
            )
            child.expect("exiting")
            began = time.monotonic()
            assert bad.got_request.wait(deadline), "the exit sent nothing"
            # Well into the exit's deadline: a fresh one would end 2.5 s after it.
            threading.Event().wait(max(0.0, began + 2.5 - time.monotonic()))
            child.kill(signal.SIGTERM)
            code, _ = child.finish()
            took = time.monotonic() - began
        assert code in (0, -signal.SIGTERM), child.stderr
        assert took < deadline + SLACK, f"{took:.2f} s"
        assert_loss_reported(child)


class TestMainThreadGone:
    def test_sigterm_after_main_returned_while_a_thread_logs(self, server: DevServer) -> None:
        """The main thread has returned and waits for a non-daemon worker that still
        logs (a threaded server): SIGTERM delivers every line and ends it by SIGTERM."""
        child = Child(
            """
            import threading
            def worker():
                for i in range(400):
                    log.info("worker %d", i)
                mark("logged")
                wait_for("never")
            threading.Thread(target=worker).start()
            """,
            server.url,
            flush_interval="60",
            shutdown_timeout=str(DEADLINE),
        )
        child.expect("logged")
        assert 0 == server.line_count
        sent = child.kill(signal.SIGTERM)
        code, _ = child.finish()
        took = time.monotonic() - sent
        assert -signal.SIGTERM == code, child.stderr
        assert took < DEADLINE + SLACK
        assert_exactly_once_in_order([f"worker {i}" for i in range(400)], texts(server))


POOL_SCRIPT = """
import logging, multiprocessing, os, sys, time
from logdna_client import LogDNAHandler

handler = LogDNAHandler(url=os.environ["LOGDNA_URL"], hostname="pool", flush_interval=60,
                        shutdown_timeout=float(os.environ["DEADLINE"]))
log = logging.getLogger("pool")
log.addHandler(handler)
log.setLevel(logging.INFO)
log.propagate = False

def work(task):
    for j in range(200):
        log.info("task %d line %d", task, j)
    return task

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    with ctx.Pool(2) as pool:
        done = pool.map(work, range(4))
        began = time.monotonic()
    sys.stderr.write("@@pool-exit %.3f\\n" % (time.monotonic() - began))
"""


class TestPoolAgainstABadServer:
    @pytest.mark.parametrize("method", ["fork", "spawn"])
    def test_pool_exit_ends_within_the_deadline(self, tmp_path: Path, method: str) -> None:
        """README: lines are delivered "when `with Pool(...)` terminates its workers", and
        with the service hanging that exit still ends within shutdown_timeout (the
        workers end together, on one deadline each, not one after another)."""
        proc = run_against_a_silent_server(tmp_path, POOL_SCRIPT, method)
        assert 0 == proc.returncode, proc.stderr
        assert "" == proc.stdout
        took = float(proc.stderr.split("@@pool-exit ")[1].split()[0])
        assert took < DEADLINE + SLACK, f"Pool.__exit__ took {took:.2f} s"
        assert losses_said(proc.stderr), proc.stderr


class TestLossReportReachesSomeone:
    def test_loss_at_exit_is_on_stderr_when_logging_would_not_show_it(self) -> None:
        """docs/delivery.md: the loss at exit goes to the logdna_client logger at ERROR,
        "and on stderr when no handler of yours would show it": an app that logs only
        CRITICAL to the console (basicConfig(level=CRITICAL)) still sees it."""
        with bad_server("silent") as bad:
            child = Child(
                """
                logging.basicConfig(level=logging.CRITICAL)
                for i in range(100):
                    log.info("lost %d", i)
                """,
                bad.url,
                shutdown_timeout="0.5",
            )
            code, _ = child.finish()
        assert 0 == code, child.stderr
        assert_loss_reported(child)


class TestOtherSignals:
    @pytest.mark.parametrize("name", ["SIGQUIT", "SIGUSR1", "SIGALRM"])
    def test_signals_other_than_term_and_hup_are_left_alone(
        self, server: DevServer, name: str
    ) -> None:
        """README: only SIGTERM and SIGHUP are taken; any other signal whose default
        action ends the process (SIGQUIT, SIGUSR1, SIGALRM ...) keeps that default and
        ends it at once, by that signal, as without the library: what is in memory is
        lost, as README and docs/delivery.md say; a change here must change them."""
        signum = getattr(signal, name)
        child = Child(
            f"""
            import signal
            log.info("hello")
            client.flush(10)
            mark("default " + str(signal.getsignal(signal.{name}) is signal.SIG_DFL))
            wait_for("never")
            """,
            server.url,
        )
        assert "True" == child.expect("default")
        child.kill(signum)
        code, _ = child.finish()
        assert -signum == code, child.stderr

    def test_an_ignored_sighup_stays_ignored(self, server: DevServer) -> None:
        """docs/delivery.md: "a signal it ignores is never replaced": under nohup (SIGHUP
        ignored) the library does not take SIGHUP, and a SIGHUP does not end the process."""
        # As nohup starts it: SIGHUP ignored from exec on (an ignored disposition is
        # inherited), before the library is imported or any handler built.
        previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
        try:
            child = Child(
                """
                import signal
                log.info("hello")
                client.flush(10)
                mark("ignored " + str(signal.getsignal(signal.SIGHUP) is signal.SIG_IGN))
                wait_for("hup sent")
                log.info("still here")
                """,
                server.url,
                env={"CHILD_KEEP_SIGNALS": "1"},
            )
        finally:
            signal.signal(signal.SIGHUP, previous)
        assert "True" == child.expect("ignored")
        child.kill(signal.SIGHUP)
        child.send("hup sent")
        code, _ = child.finish()
        assert 0 == code, child.stderr
        assert ["hello", "still here"] == texts(server)


class TestLinesLoggedDuringExit:
    def test_a_line_logged_by_an_earlier_registered_atexit_handler(self, server: DevServer) -> None:
        """README: "Pending lines are delivered ... at interpreter exit"; docs/delivery.md:
        "Lines cut off at exit are reported on stderr". An app's atexit handler registered
        before logging was configured runs after the library's (atexit is last in, first
        out): its goodbye line is either delivered or reported, never lost unseen."""
        code = textwrap.dedent(
            """
            import atexit, logging
            log = logging.getLogger("app")
            atexit.register(lambda: log.warning("goodbye"))  # before logging is set up
            from logdna_client import LogDNAHandler
            log.addHandler(LogDNAHandler())
            log.propagate = False
            log.setLevel(logging.INFO)
            log.info("hello")
            """
        )
        env = dict(os.environ, LOGDNA_URL=server.url, PYTHONPATH=REPO)
        env.pop("LOGDNA_INGESTION_KEY", None)
        proc = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
            check=False,
        )  # fmt: skip
        assert 0 == proc.returncode, proc.stderr
        assert "hello" in texts(server)
        delivered = "goodbye" in texts(server)
        reported = "logged after the library's exit hook ran" in proc.stderr
        assert delivered or reported, (texts(server), proc.stderr)


PROCESS_SCRIPT = """
import logging, multiprocessing, os, sys, time
from logdna_client import LogDNAHandler

def work():
    handler = LogDNAHandler(url=os.environ["LOGDNA_URL"], hostname="child", flush_interval=60,
                            shutdown_timeout=float(os.environ["DEADLINE"]))
    log = logging.getLogger("child")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    for j in range(200):
        log.info("child line %d", j)
    sys.stderr.write("@@child-returns %.6f\\n" % time.monotonic())
    sys.stderr.flush()

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    p = ctx.Process(target=work)
    p.start()
    p.join()
    sys.stderr.write("@@joined %.6f exitcode %d\\n" % (time.monotonic(), p.exitcode))
"""


class TestProcessAgainstABadServer:
    @pytest.mark.parametrize("method", ["fork", "spawn"])
    def test_child_ends_within_the_deadline(self, tmp_path: Path, method: str) -> None:
        """docs/delivery.md: a multiprocessing child (which ends with os._exit, skipping
        atexit) delivers through the library's finalizer "within shutdown_timeout": with
        the service hanging it ends within that, exit code 0, and says what it lost."""
        proc = run_against_a_silent_server(tmp_path, PROCESS_SCRIPT, method)
        assert 0 == proc.returncode, proc.stderr
        assert "" == proc.stdout
        returned = float(proc.stderr.split("@@child-returns ")[1].split()[0])
        joined, _, code = proc.stderr.split("@@joined ")[1].split()[:3]
        assert "0" == code, proc.stderr
        took = float(joined) - returned
        assert took < DEADLINE + SLACK, f"the child took {took:.2f} s to end"
        assert losses_said(proc.stderr), proc.stderr
