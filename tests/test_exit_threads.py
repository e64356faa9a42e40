"""Delivering at interpreter exit needs no new thread.

Python 3.12 refuses to start a thread once the interpreter is finalizing, and
atexit hooks run then. The library used to start a watchdog thread for every
request, so on 3.12 each request made at exit failed before it was sent: every
line still in memory when a script ended was lost (counted as ``error``, and
the exit took all of ``shutdown_timeout``). These run a real child on the
running Python, and again with thread creation refused at exit as 3.12 refuses
it, so that any Python running the suite holds the library to it.
"""

from __future__ import annotations

import textwrap
import time

import pytest

from logdna_client._devserver import DevServer
from tests._children import Child, assert_exactly_once_in_order, texts

# Run before the client's exit hook (atexit runs the last registered first): from
# then on no thread starts, as on Python 3.12 during finalization.
REFUSE_THREADS = """
import atexit, threading
def _refuse(self):
    raise RuntimeError("can't create new thread at interpreter shutdown")
atexit.register(lambda: setattr(threading.Thread, "start", _refuse))
"""


@pytest.mark.parametrize("refused", [False, True], ids=["as-is", "threads-refused-at-exit"])
@pytest.mark.parametrize("sent_before", [False, True], ids=["first-request-at-exit", "sent-before"])
def test_lines_in_memory_at_exit_are_delivered(
    server: DevServer, refused: bool, sent_before: bool
) -> None:
    """A script logs and ends (nothing sent before exit, or one batch sent already):
    every line arrives once, in order, the exit is prompt and says nothing."""
    child = Child(
        (REFUSE_THREADS if refused else "")
        + textwrap.dedent(
            """
        if os.environ["SENT_BEFORE"] == "1":
            log.info("at exit -1")
            assert client.flush(10)
        for i in range(300):
            log.info("at exit %d", i)
        mark("logged")
        """
        ),
        server.url,
        env={"SENT_BEFORE": "1" if sent_before else "0"},
        flush_interval="60",  # nothing leaves before the exit
        shutdown_timeout="20",
    )
    child.expect("logged")
    began = time.monotonic()  # the exit, not the start: a loaded machine starts slowly
    code, _ = child.finish()
    took = time.monotonic() - began
    assert 0 == code, child.stderr
    expected = ([f"at exit {-1}"] if sent_before else []) + [f"at exit {i}" for i in range(300)]
    assert_exactly_once_in_order(expected, texts(server))
    assert "" == child.stdout
    assert [] == [line for line in child.stderr_lines if not line.startswith("@@")]
    assert took < 15  # not the whole shutdown_timeout: nothing waited on a failing request


def test_lines_refused_at_exit_are_said_on_stderr(server: DevServer) -> None:
    """Lines the service refuses while a script's last lines are delivered at exit are
    counted, and said on stderr (nothing else would show them then), with their reason."""
    server.reject_lines_matching("refused")
    child = Child(
        """
        for i in range(300):
            log.info("%s %d", "refused" if i % 100 == 0 else "kept", i)
        mark("logged")
        """,
        server.url,
        flush_interval="60",  # nothing leaves before the exit
    )
    child.expect("logged")
    code, _ = child.finish()
    assert 0 == code, child.stderr
    kept = [f"kept {i}" for i in range(300) if i % 100]
    assert_exactly_once_in_order(kept, texts(server))
    said = [line for line in child.stderr_lines if not line.startswith("@@")]
    assert 1 == len(said), said
    assert "3 lines were dropped while delivering at exit (rejected 3;" in said[0]


def test_lines_refused_at_the_applications_own_close_are_not_the_exits(
    server: DevServer,
) -> None:
    """The application closes its client itself, the service refusing lines then, and
    the process ends later: the exit delivered nothing, so the refused lines are said
    as dropped before the end and never told to the service, not as dropped "while
    delivering at exit" (H193)."""
    server.reject_lines_matching(" ")  # every line, our summary line's too
    child = Child(
        """
        for i in range(5):
            log.info("refused %d", i)
        handler.close()  # (its client's close(), which delivers)
        mark("closed")
        """,
        server.url,
        flush_interval="60",  # nothing leaves before the close
    )
    child.expect("closed")
    code, _ = child.finish()
    assert 0 == code, child.stderr
    said = [line for line in child.stderr_lines if not line.startswith("@@")]
    assert 1 == len(said), said
    assert "5 lines dropped before the process ended were never reported" in said[0]


def test_first_lines_logged_at_exit_when_no_thread_can_start(server: DevServer) -> None:
    """An atexit handler logs a client's first lines after thread starts are refused (as
    Python 3.12 refuses them then): no sender thread can start, and the exit delivers
    them on its own thread, by the same deadline."""
    child = Child(
        """
        import atexit, threading
        def _refuse(self):
            raise RuntimeError("can't create new thread at interpreter shutdown")
        # Run last-registered first: the refusal, then the lines, then the client's hook.
        atexit.register(lambda: [log.warning("first at exit %d", i) for i in range(3)])
        atexit.register(lambda: setattr(threading.Thread, "start", _refuse))
        mark("ready")
        """,
        server.url,
    )
    child.expect("ready")
    code, _ = child.finish()
    assert 0 == code, child.stderr
    assert_exactly_once_in_order([f"first at exit {i}" for i in range(3)], texts(server))
    assert [] == [line for line in child.stderr_lines if not line.startswith("@@")]


def test_first_lines_from_two_threads_at_once_at_exit(server: DevServer) -> None:
    """Two threads log a client's first lines at the same moment during the exit, after
    thread starts are refused (the second while the first is failing to start the
    sender): both lines are delivered once by the exit, no sender is started twice,
    and nothing hangs."""
    child = Child(
        """
        import atexit, threading
        def _refuse(self):
            raise RuntimeError("can't create new thread at interpreter shutdown")
        go = threading.Event()
        done = [threading.Event(), threading.Event()]
        def worker(k):
            go.wait()
            log.warning("first at exit from %d", k)
            done[k].set()
        for k in range(2):
            threading.Thread(target=worker, args=(k,), daemon=True).start()
        def both_log():
            go.set()
            for d in done:
                assert d.wait(30)
        # Run last-registered first: the refusal, then the lines, then the client's hook.
        atexit.register(both_log)
        atexit.register(lambda: setattr(threading.Thread, "start", _refuse))
        mark("ready")
        """,
        server.url,
        shutdown_timeout="20",
    )
    child.expect("ready")
    began = time.monotonic()
    code, _ = child.finish()
    took = time.monotonic() - began
    assert 0 == code, child.stderr
    got = sorted(texts(server))
    assert ["first at exit from 0", "first at exit from 1"] == got
    assert [] == [line for line in child.stderr_lines if not line.startswith("@@")]
    assert took < 15
