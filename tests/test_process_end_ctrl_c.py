"""Ctrl-C while the process's exit delivers, in real child processes with real signals
against a service that never answers.

Someone who presses Ctrl-C at an exit that waits on the log service wants out: as a
second SIGTERM does (docs/delivery.md), it ends the wait at once. What must hold: the
process ends promptly (not at the shutdown deadline), the lines still pending are
counted and said on stderr, and the library prints no traceback.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests._bad_servers import bad_server
from tests._children import Child

# Long, so that waiting it out is plainly not what happened.
DEADLINE = 30.0


def assert_loss_said(child: Child) -> None:
    """The 300 pending lines are said lost: by the sender as it stops, or by the exit
    while the sender is still stuck in its request (a connect under way when the
    deadline came is not cut at once)."""
    said = re.search(r"300 lines (could not be|were not) delivered", child.stderr)
    assert said is not None, child.stderr
    # What ended it, not the deadline that did not pass ("(30 s)").
    assert "cut short by Ctrl-C" in child.stderr, child.stderr


def interrupt_sigterms_delivery(setup: str, interrupt: int) -> tuple[Child, int, float]:
    """A child (its code begun by ``setup``) with 300 lines pending gets SIGTERM, whose
    delivery then waits on a service that never answers; ``interrupt`` is sent then.
    The child, its exit code, and the seconds it took to end after ``interrupt``."""
    with bad_server("silent") as bad:
        child = Child(
            f"""
            import signal, sys
            {setup}
            for i in range(300):
                log.info("pending %d", i)
            mark("logged")
            wait_for("never")
            """,
            bad.url,
            flush_interval="60",
            shutdown_timeout=str(DEADLINE),
        )
        child.expect("logged")
        child.kill(signal.SIGTERM)
        assert bad.got_request.wait(30)  # delivering: the handler waits for it
        sent = child.kill(interrupt)
        code, _ = child.finish(timeout=2 * DEADLINE)
        return child, code, time.monotonic() - sent


class TestCtrlCDuringTheExit:
    def test_a_second_ctrl_c_ends_the_exits_wait(self) -> None:
        """The first Ctrl-C ends the script; the exit hook then waits on the service;
        a second Ctrl-C ends that wait, and the loss is said, without a traceback."""
        with bad_server("silent") as bad:
            child = Child(
                """
                for i in range(300):
                    log.info("pending %d", i)
                mark("logged")
                wait_for("never")  # the first Ctrl-C lands here
                """,
                bad.url,
                flush_interval="60",  # nothing leaves before the exit
                shutdown_timeout=str(DEADLINE),
            )
            child.expect("logged")
            child.kill(signal.SIGINT)
            # The exit woke the sender, whose request the service now holds: the exit
            # hook waits for it.
            assert bad.got_request.wait(30)
            sent = child.kill(signal.SIGINT)
            code, _ = child.finish(timeout=2 * DEADLINE)
            took = time.monotonic() - sent
        assert -signal.SIGINT == code, child.stderr
        assert took < DEADLINE / 2, (took, child.stderr)
        assert_loss_said(child)
        # The script's own KeyboardInterrupt is the one traceback.
        assert 1 == child.stderr.count("Traceback"), child.stderr
        assert "Exception ignored" not in child.stderr, child.stderr
        assert "" == child.stdout

    def test_ctrl_c_while_sigterm_delivers_ends_it_by_sigterm(self) -> None:
        """SIGTERM begins the delivery; Ctrl-C meanwhile ends the wait at once, as a
        second SIGTERM does: the process ends by SIGTERM, the loss is said, and no
        KeyboardInterrupt comes out of the library's handler."""
        child, code, took = interrupt_sigterms_delivery("", signal.SIGINT)
        assert -signal.SIGTERM == code, child.stderr
        assert took < DEADLINE / 2, (took, child.stderr)
        assert_loss_said(child)
        assert "Traceback" not in child.stderr, child.stderr
        assert "" == child.stdout

    def test_ctrl_c_landing_on_an_application_thread(self) -> None:
        """The kernel hands a process's Ctrl-C to any thread that does not block it: in
        a threaded app, often not the main one, whose wait in the exit no signal then
        wakes. The exit still notices it promptly (as it does a SIGINT that lands just
        before that wait blocks), ends the wait and says the loss."""
        with bad_server("silent") as bad:
            child = Child(
                """
                import threading
                def application_thread():
                    sys.stdin.readline()  # the test says when: the exit is waiting
                    signal.pthread_kill(threading.get_ident(), signal.SIGINT)
                threading.Thread(target=application_thread, daemon=True).start()
                for i in range(300):
                    log.info("pending %d", i)
                raise SystemExit(0)  # the exit hook then waits on the service
                """,
                bad.url,
                flush_interval="60",
                shutdown_timeout=str(DEADLINE),
            )
            assert bad.got_request.wait(30)  # the exit woke the sender: it waits
            sent = time.monotonic()
            child.send("go")
            code, _ = child.finish(timeout=2 * DEADLINE)
            took = time.monotonic() - sent
        assert 0 == code, child.stderr
        assert took < DEADLINE / 2, (took, child.stderr)
        assert_loss_said(child)
        assert "Traceback" not in child.stderr, child.stderr
        assert "" == child.stdout

    @pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="reads the main thread's state from /proc"
    )
    def test_ctrl_c_while_the_main_thread_cannot_run_handlers(self) -> None:
        """SIGTERM, then Ctrl-C, both landing on an application thread while the main
        thread sleeps in a read (so no handler of its runs): the signal watcher, which
        begins the delivery, also cuts it short on the Ctrl-C. Ended by SIGTERM, promptly,
        the loss said."""
        with bad_server("silent") as bad:
            child = Child(
                """
                import threading
                for i in range(300):
                    log.info("pending %d", i)
                def application_thread():
                    wchan = f"/proc/self/task/{os.getpid()}/wchan"
                    while "pipe_read" not in open(wchan).read():  # main: in its read
                        threading.Event().wait(0.005)
                    mark("signalled")
                    me = threading.get_ident()
                    signal.pthread_kill(me, signal.SIGTERM)
                    signal.pthread_kill(me, signal.SIGINT)
                threading.Thread(target=application_thread, daemon=True).start()
                wait_for("never")  # the main thread sleeps here for good
                """,
                bad.url,
                flush_interval="60",
                shutdown_timeout=str(DEADLINE),
            )
            child.expect("signalled")
            sent = time.monotonic()
            try:
                # Waited for with stdin open: closing it would wake the main thread.
                child.proc.wait(2 * DEADLINE)
            except subprocess.TimeoutExpired:
                pass
            took = time.monotonic() - sent
            code, _ = child.finish()
        assert -signal.SIGTERM == code, child.stderr
        assert took < DEADLINE / 2, (took, child.stderr)
        assert_loss_said(child)
        assert "" == child.stdout


class TestSysExitDuringTheExit:
    def test_a_signal_handlers_sys_exit_cuts_the_wait_short(self) -> None:
        """An application's signal handler that calls ``sys.exit()`` while the exit hook
        waits on the service (gunicorn's worker does, on a timeout's SIGABRT): the wait
        ends, and the 300 pending lines are counted and said, cut short by it. Before,
        its SystemExit left the hook ("Exception ignored in atexit callback") with the
        lines neither sent nor counted, and nothing said of them."""
        with bad_server("silent") as bad:
            child = Child(
                """
                import signal, sys
                signal.signal(signal.SIGUSR1, lambda signum, frame: sys.exit(1))
                for i in range(300):
                    log.info("pending %d", i)
                mark("logged")
                """,
                bad.url,
                flush_interval="60",  # nothing leaves before the exit
                shutdown_timeout=str(DEADLINE),
            )
            child.expect("logged")
            assert bad.got_request.wait(30)  # the exit hook now waits on the service
            sent = child.kill(signal.SIGUSR1)
            child.finish(timeout=2 * DEADLINE)
            took = time.monotonic() - sent
        assert took < DEADLINE / 2, (took, child.stderr)
        said = re.search(r"300 lines (could not be|were not) delivered", child.stderr)
        assert said is not None, child.stderr
        assert "cut short by sys.exit() in a signal handler" in child.stderr, child.stderr
        assert "Exception ignored" not in child.stderr, child.stderr
        assert "Traceback" not in child.stderr, child.stderr

    def test_sys_exit_while_sigterm_delivers(self) -> None:
        """SIGTERM begins the delivery; an application's handler calls ``sys.exit()``
        meanwhile: the wait is cut short, the loss said, and the process still ends by
        SIGTERM. Before, the library's handler let the SystemExit through its wait and
        ended the process at once, the 300 lines unsaid."""
        child, code, took = interrupt_sigterms_delivery(
            "signal.signal(signal.SIGUSR1, lambda signum, frame: sys.exit(1))", signal.SIGUSR1
        )
        assert -signal.SIGTERM == code, child.stderr
        assert took < DEADLINE / 2, (took, child.stderr)
        said = re.search(r"300 lines (could not be|were not) delivered", child.stderr)
        assert said is not None, child.stderr
        assert "cut short by sys.exit() in a signal handler" in child.stderr, child.stderr

    @pytest.mark.parametrize(
        ("handler", "exitcode"), [("sys.exit(3)", 3), ("raise KeyboardInterrupt", 1)]
    )
    def test_in_a_multiprocessing_childs_delivery(self, handler: str, exitcode: int) -> None:
        """A multiprocessing child ends by os._exit: its lines are delivered by a
        finalizer, which a handler's ``sys.exit()`` or KeyboardInterrupt cut short the
        same way (before, the child ended at once, its 300 lines neither counted nor
        said). The exception then goes on: the child's exit code is the one it asked
        (before 3.13)."""
        with bad_server("silent") as bad:
            child = Child(
                f"""
                import multiprocessing, signal, sys
                def work():
                    def on_usr1(signum, frame):
                        {handler}
                    signal.signal(signal.SIGUSR1, on_usr1)
                    for i in range(300):
                        log.info("pending %d", i)
                    mark("logged " + str(os.getpid()))
                worker = multiprocessing.get_context("fork").Process(target=work)
                worker.start()
                worker.join()
                mark("joined " + str(worker.exitcode))
                """,
                bad.url,
                flush_interval="60",
                shutdown_timeout=str(DEADLINE),
            )
            pid = int(child.expect("logged"))
            assert bad.got_request.wait(30)  # the child's finalizer now waits on it
            sent = time.monotonic()
            os.kill(pid, signal.SIGUSR1)
            # (From 3.13 multiprocessing runs the finalizers as atexit callbacks, once the
            # exit code is set: the exception goes on there, but decides it no more.)
            asked = exitcode if sys.version_info < (3, 13) else 0
            assert str(asked) == child.expect("joined", timeout=2 * DEADLINE)
            took = time.monotonic() - sent
            child.finish(timeout=2 * DEADLINE)
        assert took < DEADLINE / 2, (took, child.stderr)
        said = re.search(r"300 lines (could not be|were not) delivered", child.stderr)
        assert said is not None, child.stderr
