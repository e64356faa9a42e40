"""More ways to end or interrupt a process while it logs, in real child processes
against the real devserver: KeyboardInterrupt raised inside the library's own code,
signals arriving during the library's own ending, finalizers and threads that log
while the interpreter goes down, thread starts that fail.

What must hold each time: the application's logging call never blocks, raises or
writes to stdout; the process ends within the deadline in force; every line is
delivered or counted; none is delivered twice.
"""

from __future__ import annotations

import dis
import inspect
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback
import types

import pytest

from logdna_client import Client
from logdna_client._devserver import DevServer
from tests._bad_servers import bad_server
from tests._children import (
    ENDS_AFTER_MAIN_WENT_ON,
    REPO,
    Child,
    assert_exactly_once_in_order,
    losses_said,
    texts,
)

# Child code: SIGINT, sent in a storm by a thread, raises KeyboardInterrupt whenever it
# finds the main thread inside the library's own code (as Ctrl-C does, at whatever
# bytecode it lands on), while ``call()`` logs in a loop that catches it and goes on, as
# an interactive tool or a server that handles Ctrl-C itself does. ``storm()`` returns
# once the library was interrupted ``HITS`` times (or the time is up), and says whether
# the thread was left marked busy in between calls.  ``deep[0] = True``: also when the
# main thread is in code a frame of the library's called (the stdlib's).
KEYBOARD_INTERRUPT_STORM = """
import threading
from logdna_client import _threads
hits = [0]
armed = [False]
deep = [False]  # also where a frame of ours called the one running (Thread.start)
def ours(frame):
    while frame is not None:
        if "logdna_client" in frame.f_code.co_filename:
            return True
        frame = frame.f_back if deep[0] else None
    return False
def on_sigint(signum, frame):
    if armed[0] and ours(frame):
        hits[0] += 1
        raise KeyboardInterrupt
signal.signal(signal.SIGINT, on_sigint)

def storm(call, hits_wanted, seconds):
    stop = threading.Event()
    def sender():
        while not stop.is_set():
            os.kill(os.getpid(), signal.SIGINT)
            stop.wait(0.0002)
    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    began = time.monotonic()
    n = 0
    left_marked = False
    armed[0] = True
    while hits[0] < hits_wanted and time.monotonic() - began < seconds:
        try:
            call(n)
            n += 1
        except KeyboardInterrupt:
            pass
        if threading.get_ident() in _threads.BUSY_THREADS:  # between two calls: never
            left_marked = True
            break
    armed[0] = False
    stop.set()
    thread.join()
    return left_marked
"""


class TestKeyboardInterruptInsideTheLibrary:
    @pytest.mark.parametrize("path", ["c", "python", "structlog"])
    def test_a_caught_ctrl_c_leaves_logging_working(self, server: DevServer, path: str) -> None:
        """KeyboardInterrupt raised at any bytecode of a logging call (the app catches it
        and goes on) never leaves the thread marked as inside the library: afterwards
        its lines ship, and so does a line logged one level deep (from a ``__str__``),
        which a thread left marked would drop as ``reentrant``."""
        child = Child(
            KEYBOARD_INTERRUPT_STORM
            + textwrap.dedent(
                """
            if os.environ["LOG_PATH"] == "structlog":
                from logdna_client.structlog import LogDNAProcessor
                processor = LogDNAProcessor(client=client)
                def call(n):
                    processor(None, "info", {"event": "storm %d" % n})
            else:
                def call(n):
                    log.info("storm %d", n)
            left_marked = storm(call, 200, 30)
            client.flush(30)  # room for what follows
            class Nested:
                def __str__(self):
                    log.info("logged from __str__")
                    return "outer"
            for i in range(100):
                log.info("after %d", i)
            log.info("%s line", Nested())
            client.flush(30)
            s = client.stats()
            mark("result " + json.dumps({"left_marked": left_marked, "hits": hits[0],
                                         "reentrant": s["dropped"]["reentrant"]}))
            """
            ),
            server.url,
            env={"LOG_PATH": path, "LOGDNA_CLIENT_PURE_PYTHON": "0" if path == "c" else "1"},
            flush_interval="0.05",
            max_batch_bytes="2KiB",  # the locked path (waking the sender) is taken often
            max_buffer_bytes="256KiB",  # and what ships stays a few thousand lines
            overflow="drop_newest",
        )
        result = json.loads(child.expect("result", timeout=120))
        code, _ = child.finish()
        assert 0 == code, child.stderr
        assert result["hits"] > 0
        assert not result["left_marked"], result
        assert 0 == result["reentrant"], result
        got = texts(server)
        assert_exactly_once_in_order(
            [f"after {i}" for i in range(100)] + ["logged from __str__", "outer line"], got
        )
        assert "" == child.stdout

    @pytest.mark.parametrize("overflow", ["drop_oldest", "drop_newest"])
    def test_a_caught_ctrl_c_on_a_full_buffer_loses_no_line_uncounted(
        self, server: DevServer, overflow: str
    ) -> None:
        """Ctrl-C storms a logging loop on a full buffer (the sender asleep: nothing
        leaves), interrupting the library wherever it lands, in its overflow path too:
        afterwards every line accepted is queued or counted as dropped, once (each
        call that returned counted, each interrupted one at most once), the bytes held
        are what the queued lines cost, and the next summary would tell every drop.
        (tests/test_buffer_interrupts.py raises at each place in turn.)"""
        child = Child(
            KEYBOARD_INTERRUPT_STORM
            + textwrap.dedent(
                """
            from logdna_client._buffer import cost_of
            done = [0]
            def call(n):
                log.info("storm %d", n)
                done[0] += 1
            storm(call, 300, 60)
            buf = client._buffer
            s = client.stats()
            mark("result " + json.dumps({
                "hits": hits[0], "returned": done[0], "counted": s["queued"] + s["dropped_total"],
                "bytes_ok": buf.queued_bytes == cost_of(list(buf.entries)),
                "told_ok": buf.dropped == buf.unreported, "full": s["dropped"]["buffer_full"]}))
            """
            ),
            server.url,
            flush_interval="60",
            max_batch_bytes="8MiB",  # no wake-up: the buffer stays full
            max_buffer_bytes="64KiB",
            overflow=overflow,
        )
        result = json.loads(child.expect("result", timeout=120))
        code, _ = child.finish(timeout=60)
        assert 0 == code, child.stderr
        assert result["hits"] > 0 and result["full"] > 0, result
        assert result["bytes_ok"] and result["told_ok"], result
        assert result["returned"] <= result["counted"] <= result["returned"] + result["hits"], (
            result
        )

    def test_ctrl_c_while_the_sender_starts_leaves_one_sender(self, server: DevServer) -> None:
        """KeyboardInterrupt out of ``Thread.start()`` (it waits for the thread it launched)
        while a client's first line starts its sender: a sender that runs is its client's
        (marked started), later lines never start a second one on the same buffer, nor is
        a client left unable to start one. Every line arrives once, in order."""
        child = Child(
            KEYBOARD_INTERRUPT_STORM
            + textwrap.dedent(
                """
            import threading
            from logdna_client import Client
            deep[0] = True
            clients = []
            def call(n):
                if n % 5 == 0:
                    clients.append(Client(flush_interval=0.05, hostname="c%d" % len(clients)))
                clients[-1].log("client %d line %d" % (len(clients) - 1, n % 5))
            storm(call, 200, 30)
            def senders_of(c):  # the live threads running c's sender
                serve = c._sender._serve
                return sum(getattr(t, "_target", None) == serve for t in threading.enumerate())
            senders = [senders_of(c) for c in clients]
            doubled = sum(n > 1 for n in senders)  # two on one buffer
            unmarked = sum(n > 0 and not c._started for c, n in zip(clients, senders))
            stuck = sum(1 for c in clients if c._starting)  # no sender will ever start
            for c in clients:
                c.flush(10)
            accepted = sum(c.stats()["accepted"] for c in clients)
            sent = sum(c.stats()["sent"] for c in clients)
            mark("result " + json.dumps({"hits": hits[0], "senders": sum(senders),
                                         "doubled": doubled, "unmarked": unmarked, "stuck": stuck,
                                         "accepted": accepted, "sent": sent}))
            """
            ),
            server.url,
        )
        result = json.loads(child.expect("result", timeout=120))
        code, _ = child.finish()
        assert 0 == code, child.stderr
        assert result["hits"] > 0
        # Per client, not the process's sender threads against its clients marked started:
        # one a Ctrl-C left marked before it could tell whether its thread was launched
        # counts as started without one until its next call looks (see
        # TestKeyboardInterruptAtEachStepOfTheStart, which tries each such point in turn).
        assert {"doubled": 0, "unmarked": 0, "stuck": 0} == {
            k: result[k] for k in ("doubled", "unmarked", "stuck")
        }, result
        assert result["accepted"] == result["sent"] == server.line_count, result
        by_client: dict[str, list[str]] = {}
        for line in texts(server):
            by_client.setdefault(line.split(" line ")[0], []).append(line)
        for lines in by_client.values():
            assert lines == sorted(set(lines)), lines  # once each, in order


def _senders_of(client: Client) -> list[threading.Thread]:
    """The live threads running ``client``'s sender (however many were started)."""
    serve = client._sender._serve
    return [t for t in threading.enumerate() if getattr(t, "_target", None) == serve]


class _InterruptAt:
    """Raises KeyboardInterrupt, on this thread, where Ctrl-C's handler can run while
    ``Client._start`` starts the sender: at the ``at``-th point, counted in every frame
    under ``_start`` (the standard library's too), where CPython runs a pending signal
    handler (a function's start, just after a call returned, a loop's jump back); then,
    with ``again``, once more at the ``again``-th function start after it (a second
    Ctrl-C landing in the code that handles the first). ``seen`` counts the points."""

    def __init__(self, at: int, again: int = 0) -> None:
        self.at, self.again = at, again
        self.seen = 0
        self._last: dict[types.FrameType, str] = {}

    def trace(self, frame: types.FrameType, event: str, arg: object) -> object:
        if event == "call":
            if not _in_start(frame):
                return None
            frame.f_trace_opcodes = True
            frame.f_trace_lines = False
        elif event == "opcode":
            last = self._last.get(frame)
            self._last[frame] = dis.opname[frame.f_code.co_code[frame.f_lasti]]
            if last is None or last in _HANDLERS_RUN_AFTER:
                self.seen += 1
                if self.seen == self.at:
                    sys.settrace(None)
                    if self.again:
                        sys.setprofile(self.profile)
                    raise KeyboardInterrupt
        elif event == "return":
            self._last.pop(frame, None)
        return self.trace

    def profile(self, frame: types.FrameType, event: str, arg: object) -> None:
        if event == "call" and _in_start(frame):
            self.again -= 1
            if not self.again:
                sys.setprofile(None)
                raise KeyboardInterrupt


def _where(exc: BaseException | None) -> str:
    """Where ``exc`` and the exceptions it interrupted were raised, innermost last."""
    places = []
    while exc is not None:
        frames = traceback.extract_tb(exc.__traceback__)[-3:]
        places.append(" < ".join(f"{f.name}:{f.lineno}" for f in reversed(frames)))
        exc = exc.__context__
    return "; while handling ".join(places)


def _in_start(frame: types.FrameType) -> bool:
    """Whether ``frame`` runs under ``Client._start``: not where a Ctrl-C would come out
    of the interpreter's own calls instead (a weakref's callback, a generator's
    finalizing), nor in the conversion of ``pthread_sigmask``'s result to enums (all
    the one point after its call)."""
    code = frame.f_code
    if code.co_flags & inspect.CO_GENERATOR or code.co_filename.endswith(
        ("weakref.py", "_weakrefset.py")
    ):
        return False
    inside = frame.f_back
    while inside is not None:
        if inside.f_code is _SIGMASK:
            return False
        if inside.f_code is Client._start.__code__:
            return True
        inside = inside.f_back
    return frame.f_code is Client._start.__code__


_SIGMASK = signal.pthread_sigmask.__code__

#: The instructions after which CPython looks for a pending signal (the eval breaker).
_HANDLERS_RUN_AFTER = {"CALL", "CALL_FUNCTION_EX", "JUMP_BACKWARD"}


#: Set in the child process the sweep below runs in.
_SWEEP_CHILD = "LOGDNA_TEST_START_SWEEP"


class TestKeyboardInterruptAtEachStepOfTheStart:
    def test_in_a_process_of_its_own(self) -> None:
        """The sweep raises KeyboardInterrupt from a trace function at opcodes of the
        standard library's own code (threading, signal, enum), more places than a real
        Ctrl-C lands: once it left the pytest process's main thread "handling" an enum
        lookup's ValueError for good, and every later test's exceptions carried it (a TLS
        error read as "ValueError: ... is not a valid Handlers"). So it runs in a child
        pytest, and nothing it breaks outlives it."""
        if os.environ.get(_SWEEP_CHILD):
            pytest.skip("the child runs the sweep itself")
        name = f"{__file__}::TestKeyboardInterruptAtEachStepOfTheStart"
        child = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "sweep",
             name],
            check=False, env={**os.environ, _SWEEP_CHILD: "1", "PYTHONPATH": REPO}, cwd=REPO,
            capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert 0 == child.returncode, child.stdout[-6000:] + child.stderr[-2000:]
        assert "4 passed" in child.stdout, child.stdout[-2000:]

    @pytest.mark.skipif(not os.environ.get(_SWEEP_CHILD), reason="run by the test above")
    @pytest.mark.parametrize("again", [0, 1, 2, 3])
    def test_sweep_a_live_sender_is_the_clients_one_and_marked_started(
        self, server: DevServer, again: int
    ) -> None:
        """KeyboardInterrupt at each point in turn where a signal handler can run while a
        client's first line starts its sender (and, ``again``, a second one soon after,
        in the code handling the first): then the client is not left starting, the one
        sender thread that runs on its buffer, if any, is the client's (marked started),
        and later lines start no second one and arrive once each, in order."""
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, ())
        at = 0
        while True:
            at += 1
            client = Client(url=server.url, flush_interval=0.05, hostname=f"h{at}")
            interrupt = _InterruptAt(at, again)
            sys.settrace(interrupt.trace)
            caught = None
            try:
                client.log(f"{at} a")
            except KeyboardInterrupt as exc:
                caught = exc
            finally:
                sys.settrace(None)
                sys.setprofile(None)
            where = _where(caught)
            # Put back: blocked, no handler would run here again, nor in a child process.
            assert mask == signal.pthread_sigmask(signal.SIG_BLOCK, ()), where
            try:
                # At most one sender, and one that runs is the client's: marked started.
                senders = len(_senders_of(client))
                assert (False, True) == (client._starting, senders <= client._started), where
                for text in ("b", "c", "d"):
                    client.log(f"{at} {text}")
                    assert 1 == len(_senders_of(client)), at
                assert client.flush(10), at
            finally:
                client.close(5)
            if interrupt.seen < at:  # not interrupted: every point was tried
                break
        by_client: dict[str, list[str]] = {}
        for line in texts(server):
            if line.startswith("logdna_client: "):  # a line the harness's interrupt cost
                assert line.endswith(" lines dropped (1 error)"), line
                continue
            number, text = line.split(" ")
            by_client.setdefault(number, []).append(text)
        assert [str(k) for k in range(1, at + 1)] == sorted(by_client, key=int)
        for lines in by_client.values():
            assert lines in (["a", "b", "c", "d"], ["b", "c", "d"]), lines


# Child code: from here on the process can start no thread (RLIMIT_NPROC of 1; root is
# not held to it, so the child becomes nobody first, having imported all it needs);
# ``allow_threads()`` lifts the limit again.
NO_MORE_THREADS = """
import resource, threading
_soft, _hard = resource.getrlimit(resource.RLIMIT_NPROC)
resource.setrlimit(resource.RLIMIT_NPROC, (1, _hard))
if os.getuid() == 0:
    os.setgid(65534)
    os.setuid(65534)
try:
    threading.Thread(target=print).start()
    raise SystemExit("a thread started in spite of RLIMIT_NPROC")
except RuntimeError:
    pass
def allow_threads():
    resource.setrlimit(resource.RLIMIT_NPROC, (_hard, _hard))
"""


class TestNoThreadCanStart:
    def test_lines_wait_for_a_sender_that_can_start_later(self, server: DevServer) -> None:
        """While no thread can start, logging calls neither raise nor print (no
        traceback per line): the lines are kept. Once threads can start again, flush()
        starts the sender and every line arrives, once, in order."""
        child = Child(
            NO_MORE_THREADS
            + textwrap.dedent(
                """
            for i in range(50):
                log.info("before %d", i)
            client.log("direct")
            s = client.stats()
            mark("held %d flushed %s" % (s["queued"], client.flush(0.2)))
            allow_threads()
            for i in range(50):
                log.info("after %d", i)
            mark("flushed %s" % client.flush(30))
            """
            ),
            server.url,
            flush_interval="60",
        )
        assert "51 flushed False" == child.expect("held")
        assert "True" == child.expect("flushed")
        code, _ = child.finish()
        assert 0 == code, child.stderr
        assert "Traceback" not in child.stderr
        assert "" == child.stdout
        expected = [f"before {i}" for i in range(50)] + ["direct"]
        assert_exactly_once_in_order(expected + [f"after {i}" for i in range(50)], texts(server))

    @pytest.mark.parametrize("how", ["exit", "sigterm"])
    def test_lines_left_at_exit_are_delivered_by_the_exiting_thread(
        self, server: DevServer, how: str
    ) -> None:
        """No thread can ever start: the exit (or the SIGTERM's ending) does the sender's
        work on its own thread, delivers every line, and ends as it would have (status 0,
        or by SIGTERM), with nothing to say."""
        child = Child(
            NO_MORE_THREADS
            + textwrap.dedent(
                """
            for i in range(20):
                log.info("never %d", i)
            mark("logged")
            if os.environ["HOW"] == "sigterm":
                wait_for("never")
            """
            ),
            server.url,
            env={"HOW": how},
        )
        child.expect("logged")
        if how == "sigterm":
            child.kill(signal.SIGTERM)
        code, _ = child.finish()
        assert (-signal.SIGTERM if how == "sigterm" else 0) == code, child.stderr
        assert "Traceback" not in child.stderr
        assert "could not be delivered" not in child.stderr
        assert_exactly_once_in_order([f"never {i}" for i in range(20)], texts(server))


# Child code, before NO_MORE_THREADS: two threads, started while threads still can be,
# log their first lines at once when no thread can start (``go``). The first ("one") begins to
# start the sender; the second ("two") logs while it does, and (traced) is held right
# after the library told it the sender is starting, until the first's start has failed
# and its logging call returned.
TWO_FIRST_LINES = """
import sys, threading
go, one_starting, two_held, one_done = (threading.Event() for _ in range(4))
original_start = threading.Thread.start
def start(self):
    if self.name == "logdna_client-sender" and not one_starting.is_set():
        one_starting.set()
        assert two_held.wait(30)
    original_start(self)  # refused: RuntimeError
threading.Thread.start = start
def hold_after_start(frame, event, arg):
    if event == "return" and frame.f_code.co_name == "_start":
        two_held.set()
        assert one_done.wait(30)
        sys.settrace(None)
    return hold_after_start if frame.f_code.co_name == "_start" else None
def one():
    assert go.wait(30)
    log.info("first from one")
    one_done.set()
def two():
    assert one_starting.wait(30)
    sys.settrace(hold_after_start)
    log.info("first from two")
    sys.settrace(None)
threads = [threading.Thread(target=one), threading.Thread(target=two)]
for t in threads:
    t.start()
"""


class TestFirstLinesFromTwoThreadsWhenNoThreadCanStart:
    def test_both_kept_one_sender_and_a_later_line_starts_it(self, server: DevServer) -> None:
        """Two threads log their first lines at once while no thread can start (the
        second while the first is starting the sender, which then fails): neither
        line is lost, nothing deadlocks, and the second thread, told the sender was
        starting, does not take it for started: a line logged once threads can start
        again (after the retry pause) starts the one sender, and every line arrives once."""
        child = Child(
            TWO_FIRST_LINES
            + NO_MORE_THREADS
            + textwrap.dedent(
                """
            go.set()
            for t in threads:
                t.join(60)
            s = client.stats()
            mark("held %d" % s["queued"])
            allow_threads()
            threading.Event().wait(max(0.0, client._start_retry_at - time.monotonic()))
            log.info("later")
            started = client._started  # by that line, not by a flush
            mark("result " + json.dumps({
                "started": started, "flushed": client.flush(30),
                "senders": sum(t.name == "logdna_client-sender" for t in threading.enumerate()),
                "dropped": client.stats()["dropped_total"]}))
            """
            ),
            server.url,
            flush_interval="60",
        )
        assert "2" == child.expect("held")
        result = json.loads(child.expect("result"))
        code, _ = child.finish()
        assert 0 == code, child.stderr
        assert {"started": True, "flushed": True, "senders": 1, "dropped": 0} == result
        got = [t for t in texts(server) if not t.startswith("logdna_client:")]
        assert ["first from one", "first from two", "later"] == sorted(got)
        assert "later" == got[-1]
        assert "" == child.stdout


class TestThreadsLoggingThroughTheExit:
    def test_daemon_threads_logging_on_do_not_hold_the_exit(self, server: DevServer) -> None:
        """Daemon threads that log in a loop while the main thread returns (a poller, a
        heartbeat): the exit takes what draining takes, not the whole shutdown_timeout,
        and their lines dropped after the close are told in a summary line or two, not
        in a request each until the deadline. Everything the main thread logged arrives."""
        child = Child(
            """
            import threading
            def spin(k):
                pace = threading.Event()
                i = 0
                while True:
                    log.info("daemon %d %d", k, i)
                    i += 1
                    pace.wait(0.0002)  # steady, not a flood that fills the buffer
            for k in range(4):
                threading.Thread(target=spin, args=(k,), daemon=True).start()
            for i in range(1000):
                log.info("main %d", i)
            mark("exiting")
            """,
            server.url,
            shutdown_timeout="20",
            max_buffer_bytes="256KiB",
        )
        child.expect("exiting")
        began = time.monotonic()
        code, _ = child.finish(timeout=60)
        took = time.monotonic() - began
        assert 0 == code, child.stderr
        got = texts(server)
        summaries = [t for t in got if t.startswith("logdna_client:") and "after close" in t]
        assert 1 <= len(summaries) <= 5, summaries[:10]
        assert took < 10, took  # the deadline is 20 s; draining 256 KiB takes a fraction
        main = [t for t in got if t.startswith("main ")]
        assert [f"main {i}" for i in range(1000)] == main
        assert "" == child.stdout

    @pytest.mark.parametrize("ending", ["exit", "sigterm"])
    def test_lines_logged_while_the_ending_delivers_are_said(self, ending: str) -> None:
        """A thread logs 300 lines while the ending (the exit hook, or SIGTERM with that
        thread still running) waits on a service that never answers: they are dropped
        (the ending closed the buffer), and said on stderr with the 10 lines the
        ending could not deliver: every line lost is said, none twice."""
        with bad_server("silent") as bad:
            child = Child(
                f"""
                import threading
                ending = {ending!r}
                def still_running():
                    sys.stdin.readline()  # the test says when: the ending delivers
                    for i in range(300):
                        log.info("late %d", i)
                    mark("late logged")
                    threading.Event().wait()  # (the ending is cut short meanwhile)
                threading.Thread(target=still_running, daemon=ending == "exit").start()
                for i in range(10):
                    log.info("pending %d", i)
                mark("logged")
                """,
                bad.url,
                flush_interval="60",  # the ending's request is the first
                shutdown_timeout="60",  # cut short below, once the thread logged
            )
            child.expect("logged")
            if ending == "sigterm":
                child.kill(signal.SIGTERM)
            assert bad.got_request.wait(30)  # the ending's delivery: it waits on it
            child.send("go")
            child.expect("late logged")
            child.kill(signal.SIGINT)  # Ctrl-C: the ending ends now, and says its loss
            code, _ = child.finish(timeout=60)
        expected_code = 0 if ending == "exit" else -signal.SIGTERM
        assert expected_code == code, child.stderr
        late = re.findall(r"(\d+) lines logged while the process was ending", child.stderr)
        assert 1 == len(late), child.stderr
        assert 0 < int(late[0])
        # With the 10 the ending could not deliver (and any of the 300 that got in before
        # the buffer closed): what was said adds up to what was lost, each line once.
        assert 310 == sum(losses_said(child.stderr)), child.stderr

    def test_lines_logged_after_the_applications_own_close_are_not_the_endings(
        self, server: DevServer
    ) -> None:
        """Lines logged into a client the application closed itself, while the process
        went on, are counted as after_close (as ever), not said at exit as lines the
        ending dropped: the ending had not begun."""
        child = Child(
            """
            log.info("delivered")
            client.close(10)
            log.info("after my own close 1")
            log.info("after my own close 2")
            mark("closed %d" % client.stats()["dropped"]["after_close"])
            """,
            server.url,
        )
        assert "2" == child.expect("closed")
        code, _ = child.finish()
        assert 0 == code, child.stderr
        assert ["delivered"] == texts(server)
        assert [] == [line for line in child.stderr_lines if not line.startswith("@@")]


class TestAsyncio:
    @pytest.mark.parametrize("call", ["aflush", "aclose"])
    def test_ctrl_c_while_awaiting_ends_within_the_deadline(self, call: str) -> None:
        """Ctrl-C while ``asyncio.run`` awaits ``aflush(30)`` or ``aclose(30)`` against a
        service that never answers: asyncio.run cancels the task and then waits for its
        executor's threads, so the wait in that thread must end too. The process ends by
        the KeyboardInterrupt within shutdown_timeout, and reports the lines it lost."""
        with bad_server("silent") as bad:
            child = Child(
                """
                import asyncio
                async def main():
                    for i in range(100):
                        log.info("async %d", i)
                    try:
                        await getattr(client, os.environ["CALL"])(30)
                    finally:
                        log.info("finally")  # a task's cleanup logs
                asyncio.run(main())
                """,
                bad.url,
                env={"CALL": call},
                flush_interval="60",  # the request goes when the call wakes the sender
                shutdown_timeout="1.5",
            )
            assert bad.got_request.wait(30)  # the call's thread waits for it
            sent = child.kill(signal.SIGINT)
            code, _ = child.finish(timeout=60)
            took = time.monotonic() - sent
        assert -signal.SIGINT == code, child.stderr
        assert took < 15, took  # the call's own timeout is 30 s
        assert "" == child.stdout
        lost = 101 if call == "aflush" else 100  # aclose: "finally" is after the close
        assert lost in losses_said(child.stderr), child.stderr

    def test_ctrl_c_as_the_start_lock_is_let_go(self, server: DevServer) -> None:
        """KeyboardInterrupt right as ``Client._start`` lets go of its lock (where
        CPython runs a pending signal handler: after the ``__exit__`` call) must not
        leave the client marked as starting for good, or no sender would ever start
        and its lines would wait for nothing, unreported, until they were lost."""
        client = Client(url=server.url, flush_interval=0.05)
        real = client._start_lock

        class InterruptedOnRelease:
            def __enter__(self) -> None:
                real.acquire()

            def __exit__(self, *exc: object) -> None:
                real.release()
                client._start_lock = real  # once
                raise KeyboardInterrupt

        client._start_lock = InterruptedOnRelease()  # type: ignore[assignment]
        with pytest.raises(KeyboardInterrupt):
            client.log("interrupted")
        assert not client._starting
        client.log("next")
        assert client.flush(10)
        client.close(5)
        assert ["next"] == texts(server)


class TestSignalThatCannotWaitWhereItLands:
    @pytest.mark.parametrize("then", ["return", "sys.exit(0)", "raise"])
    def test_main_thread_going_on_to_exit_still_ends_by_the_signal(
        self, server: DevServer, then: str
    ) -> None:
        """SIGTERM lands while the main thread holds logging's module lock: the handler
        cannot wait there, so a thread of ours waits and the main thread goes on. When
        the main thread then comes to the exit first (its work was nearly done), the
        process must still end by SIGTERM once the lines are delivered, not with the
        status of a finished job."""
        child = Child(
            ENDS_AFTER_MAIN_WENT_ON
            + textwrap.dedent(
                """
            for i in range(100):
                log.info("line %d", i)
            logging._lock.acquire()  # (3.13 has no _acquireLock)
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here, under the lock
            logging._lock.release()
            mark("went on")
            went_on.set()  # the library's thread may end the process from here on
            then = os.environ["THEN"]
            if then == "sys.exit(0)":
                sys.exit(0)
            elif then == "raise":
                raise RuntimeError("the job failed")
            """
            ),
            server.url,
            env={"THEN": then},
            flush_interval="60",
            shutdown_timeout="5",
        )
        child.expect("went on")
        code, _ = child.finish()
        assert -signal.SIGTERM == code, child.stderr
        assert_exactly_once_in_order([f"line {i}" for i in range(100)], texts(server))
        assert "" == child.stdout


# Child code: the first line's sender start is where SIGTERM comes. Before it, another
# thread queues 100 lines (the client is starting: they wait in the buffer). "before":
# the signal is handled on the main thread inside Thread.start(), before the thread is
# launched; "launched": the new thread runs, and the main thread is still in
# Thread.start() waiting for it, when the signal comes (the watcher begins the ending).
SIGTERM_WHILE_THE_SENDER_STARTS = """
import threading
from logdna_client import _sender
real_start_library_thread = _sender.start_library_thread
def start_library_thread(thread):
    if thread.name == "logdna_client-sender" and not getattr(start_library_thread, "done", False):
        start_library_thread.done = True
        queuer = threading.Thread(target=lambda: [log.info("queued %d", i) for i in range(100)])
        queuer.start()
        queuer.join()
        if os.environ["WHEN"] == "before":
            os.kill(os.getpid(), signal.SIGTERM)  # handled at the next bytecode: no launch
        else:
            original_start = thread.start
            def start():
                # Inside the start, where the signals are blocked: handled as they are
                # let through again, with the sender launched.
                os.kill(os.getpid(), signal.SIGTERM)
                original_start()
            thread.start = start
    real_start_library_thread(thread)
_sender.start_library_thread = start_library_thread
log.info("first")  # starts the sender
mark("not reached")
"""


class TestSignalWhileTheSenderStarts:
    @pytest.mark.parametrize("when", ["before", "launched"])
    def test_lines_queued_meanwhile_are_delivered_or_reported(
        self, server: DevServer, when: str
    ) -> None:
        """SIGTERM while the first line starts the sender: lines other threads queued
        meanwhile are delivered when the sender was launched (a signal sent inside
        Thread.start() waits for the launch), and reported on stderr as lost when it
        was not (the handler ran before the launch); never lost silently. The process
        ends by SIGTERM either way."""
        child = Child(
            SIGTERM_WHILE_THE_SENDER_STARTS,
            server.url,
            env={"WHEN": when},
            flush_interval="60",
            shutdown_timeout="5",
        )
        code, _ = child.finish(timeout=60)
        assert -signal.SIGTERM == code, child.stderr
        assert "not reached" not in child.stderr
        queued = [f"queued {i}" for i in range(100)]
        if when == "launched":
            assert_exactly_once_in_order(queued, texts(server))
        else:
            assert 0 == server.line_count
            assert "100 lines were not delivered" in child.stderr, child.stderr
        assert "" == child.stdout


class TestLoggingInAPreexecFn:
    @pytest.mark.parametrize("sending", [True, False], ids=["sender-running", "first-line"])
    def test_said_once_no_thread_started_and_the_parent_untouched(
        self, server: DevServer, sending: bool
    ) -> None:
        """Lines logged in a ``subprocess.Popen`` ``preexec_fn`` (the child between fork and
        exec: no atexit, no thread survives the exec) cannot be delivered: the child
        says so once on its stderr, starts no thread for them (none of ours: they only add
        to what may deadlock there), and the program runs. The parent's lines, before
        and after, arrive once each; none of the child's arrive."""
        child = Child(
            """
            import subprocess
            if os.environ["SENDING"] == "1":
                log.info("parent before")
                client.flush(30)
            def pre():
                for i in range(3):
                    log.info("from preexec %d", i)
                if os.path.isdir("/proc/self/task"):  # the kernel's count, not threading's
                    os.write(2, b"threads %d\\n" % len(os.listdir("/proc/self/task")))
            program = "import sys; sys.stderr.write('program ran\\\\n')"
            proc = subprocess.Popen([sys.executable, "-c", program], preexec_fn=pre,
                                    stderr=subprocess.PIPE)
            _, err = proc.communicate(timeout=30)
            log.info("parent after")
            mark("result " + json.dumps({"err": err.decode(), "code": proc.returncode,
                                         "flushed": client.flush(30),
                                         "dropped": client.stats()["dropped_total"]}))
            """,
            server.url,
            env={"SENDING": "1" if sending else "0"},
            flush_interval="0.05",
        )
        result = json.loads(child.expect("result"))
        code, _ = child.finish()
        assert 0 == code, child.stderr
        assert 0 == result["code"], result
        err = result["err"]
        assert 1 == err.count("preexec_fn was not delivered"), err
        assert err.endswith("program ran\n"), err
        if "threads " in err:
            assert "threads 1\n" in err, err
        assert (True, 0) == (result["flushed"], result["dropped"]), result
        expected = (["parent before"] if sending else []) + ["parent after"]
        assert expected == [t for t in texts(server) if not t.startswith("logdna_client:")]
        assert "" == child.stdout


# -- a child forked from a thread other than the main one
#
# Such a child has no thread whose end finalizes the interpreter: when its last thread
# ends, the OS process ends (status 0), and neither atexit nor the library's exit hook
# runs. The library's threads kept it alive for good. ``signal.alarm`` bounds each child:
# one that hangs ends by SIGALRM (-14) instead of holding the test.

# How the forking thread ends in the child.
FORKING_THREAD_ENDS = {
    "return": "return",
    "sys.exit": "sys.exit(3)",
    "exception": "raise RuntimeError('the child fails')",
}

# The same script without the library: the reference for the exit status.
FORKED_FROM_A_THREAD_ALONE = """
import os, signal, sys, threading
def work():
    pid = os.fork()
    if pid == 0:
        signal.alarm(30)
        {end}
    _, status = os.waitpid(pid, 0)
    sys.stderr.write("@@child ended %d\\n" % os.waitstatus_to_exitcode(status))
threading.Thread(target=work).start()
"""

# Child code: the parent logs on its main thread (its sender and signal watcher run when
# it forks), then forks from another thread; the child runs ``in_the_child()`` (defined
# before this), then its forking thread ends by ``{end}``. The parent says when the
# child ended (``time.monotonic()``) and with what status.
FORKED_FROM_A_THREAD = """
import threading
log.info("parent")
def work():
    pid = os.fork()
    if pid == 0:
        signal.alarm(30)
        in_the_child()
        {end}
    _, status = os.waitpid(pid, 0)
    mark("child ended %d %f" % (os.waitstatus_to_exitcode(status), time.monotonic()))
thread = threading.Thread(target=work)
thread.start()
thread.join()
"""


def forked_from_a_thread(in_the_child: str, end: str = "return") -> str:
    """Child code: ``FORKED_FROM_A_THREAD`` running ``in_the_child`` (a function's code)."""
    return textwrap.dedent(in_the_child) + FORKED_FROM_A_THREAD.format(end=end)


def run_alone(code: str) -> tuple[int, str]:
    """Run ``code`` in a fresh interpreter that never imports the library itself."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return proc.returncode, proc.stderr


def assert_child_ended_delivering(child: Child, server: DevServer, lines: list[str]) -> None:
    """The forked child ended with status 0 (and then the program did), and ``lines``
    arrived, each once and in order, beside the parent's."""
    assert "0" == child.expect("child ended", timeout=60).split()[0], child.stderr
    code, _ = child.finish(timeout=60)
    assert 0 == code, child.stderr
    assert_exactly_once_in_order(lines, [t for t in texts(server) if t != "parent"])


def ending_on_a_silent_service(url: str) -> tuple[Child, int, float]:
    """A child forked from a thread logs 100 lines for ``url`` (a service that never
    answers; ``shutdown_timeout`` 1.5 s) and its forking thread ends: the child, the
    forked child's pid, and when its forking thread ended (monotonic)."""
    in_the_child = """
        def in_the_child():
            for i in range(100):
                log.info("child %d", i)
            mark("forking thread ends %d %f" % (os.getpid(), time.monotonic()))
        """
    child = Child(
        forked_from_a_thread(in_the_child), url, flush_interval="60", shutdown_timeout="1.5"
    )
    pid, began = child.expect("forking thread ends", timeout=60).split()
    return child, int(pid), float(began)


class TestChildForkedFromAThread:
    @pytest.mark.parametrize("end", list(FORKING_THREAD_ENDS))
    def test_ends_as_without_the_library(self, server: DevServer, end: str) -> None:
        """The forking thread's end (a return, ``sys.exit(3)``, an uncaught exception)
        ends the child with the status it has without the library (0: its last thread
        ended), once the lines it logged were delivered; the parent's are not sent again."""
        how = FORKING_THREAD_ENDS[end]
        code, stderr = run_alone(FORKED_FROM_A_THREAD_ALONE.format(end=how))
        assert 0 == code, stderr
        alone = stderr.split("@@child ended ")[1].split()[0]
        assert "0" == alone, stderr
        in_the_child = """
            def in_the_child():
                for i in range(200):
                    log.info("child %d", i)
            """
        child = Child(
            forked_from_a_thread(in_the_child, how),
            server.url,
            flush_interval="60",  # delivered by the ending, not by the interval
        )
        assert alone == child.expect("child ended", timeout=60).split()[0], child.stderr
        code, _ = child.finish(timeout=60)
        assert 0 == code, child.stderr
        got = texts(server)
        assert_exactly_once_in_order([f"child {i}" for i in range(200)], got)
        assert 1 == got.count("parent")
        assert "" == child.stdout

    def test_ctrl_c_does_not_end_a_sender_that_took_the_ended_threads_ident(
        self, server: DevServer
    ) -> None:
        """A sender started after the forking thread ended may inherit its ident, and
        Python runs signal handlers on that ident: Ctrl-C's KeyboardInterrupt was raised
        in the sender, which ended, its lines undelivered till the deadline (3 to 6 of
        300 lost). Without the library no thread takes it there; the sender goes on.
        (One that lands while the sender starts, before its loop, still ends it.)"""
        in_the_child = """
            def in_the_child():
                main, ident = threading.main_thread(), threading.get_ident()
                def worker():
                    main.join()  # the forking thread has ended
                    log.info("first")  # the child's sender starts now
                    names = [t.name for t in threading.enumerate() if t.ident == ident]
                    mark("reused %s %d" % (",".join(names) or "-", os.getpid()))
                    wait_for("go")
                    pace = threading.Event()  # never set: the lines spread over a second,
                    for i in range(100):      # while the sender sends them as they come
                        log.info("after %d", i)
                        pace.wait(0.01)
                threading.Thread(target=worker).start()
            """
        child = Child(forked_from_a_thread(in_the_child), server.url, flush_interval="0.05")
        names, pid = child.expect("reused", timeout=60).split()
        if "logdna_client-sender" not in names.split(","):
            pytest.skip(f"the sender did not get the ended thread's ident here ({names})")
        # In its loop (it sent "first"), not starting: Ctrl-C then still ends it (below).
        assert server.wait_for_lines(2, 30)  # (and the parent's line)
        os.kill(int(pid), signal.SIGINT)
        child.send("go")
        assert_child_ended_delivering(child, server, ["first"] + [f"after {i}" for i in range(100)])
        assert "KeyboardInterrupt" not in child.stderr, child.stderr

    @pytest.mark.parametrize("daemon", [False, True], ids=["thread", "daemon-thread"])
    def test_an_application_thread_still_running_keeps_it_alive(
        self, server: DevServer, daemon: bool
    ) -> None:
        """A thread of the application's still running when the forking thread ends
        (a daemon thread too: it keeps an OS process alive without the library as well)
        keeps the child alive, and its lines logged after that end ship; once it ends,
        the child ends with status 0, every line delivered."""
        in_the_child = """
            def in_the_child():
                main = threading.main_thread()
                def late():
                    main.join()  # the forking thread has ended
                    mark("forking thread ended")
                    wait_for("go")
                    for i in range(100):
                        log.info("late %d", i)
                threading.Thread(target=late, daemon=os.environ["DAEMON"] == "1").start()
                log.info("early")
            """
        child = Child(
            forked_from_a_thread(in_the_child),
            server.url,
            env={"DAEMON": "1" if daemon else "0"},
            flush_interval="60",
        )
        child.expect("forking thread ended", timeout=60)
        child.send("go")
        assert_child_ended_delivering(child, server, ["early"] + [f"late {i}" for i in range(100)])

    def test_sigterm_once_the_forking_thread_ended(self, server: DevServer) -> None:
        """SIGTERM to such a child whose forking thread has ended, while a thread of the
        application's still runs: no handler of Python's can run there any more (only
        the main thread runs them, and it is gone), yet the child delivers its lines and
        ends by SIGTERM, as a process whose main thread runs does. Before, the signal
        was caught and never acted on: the child went on."""
        # Every thread started before the forking thread ends: a thread started after it
        # may get its ident, and Python then runs the handler there (which hid the bug).
        in_the_child = """
            def in_the_child():
                main = threading.main_thread()
                def last():
                    main.join()
                    for i in range(100):
                        log.info("child %d", i)  # delivered by the ending only
                    os.kill(os.getpid(), signal.SIGTERM)
                    threading.Event().wait()  # for good: only the signal ends the child
                log.info("first")
                client.flush(30)  # its sender runs
                threading.Thread(target=last).start()
            """
        child = Child(forked_from_a_thread(in_the_child), server.url, flush_interval="60")
        status = child.expect("child ended", timeout=60).split()[0]
        code, _ = child.finish(timeout=60)
        assert 0 == code, child.stderr
        assert str(-signal.SIGTERM) == status, child.stderr
        got = [t for t in texts(server) if t != "parent"]
        assert_exactly_once_in_order(["first"] + [f"child {i}" for i in range(100)], got)

    def test_a_dead_service_ends_it_by_the_deadline_said(self) -> None:
        """With the service not answering, the child ends by ``shutdown_timeout`` (and
        a moment), with status 0, and says what it lost, as a normal exit does."""
        with bad_server("silent") as bad:
            child, _, began = ending_on_a_silent_service(bad.url)
            status, ended = child.expect("child ended", timeout=60).split()
            code, _ = child.finish(timeout=60)
        assert 0 == code, child.stderr
        assert "0" == status, child.stderr
        # The deadline and the close's grace; a loaded machine's scheduling besides.
        assert float(ended) - began < 1.5 + 5, float(ended) - began
        # The child's, then the parent's at its own exit (its line went to the same server).
        assert [100, 1] == losses_said(child.stderr), child.stderr

    def test_sigterm_during_its_ending_ends_it_by_sigterm(self) -> None:
        """SIGTERM while such a child's ending waits on a service that does not answer
        (every thread left is the library's): the child ends by SIGTERM once the wait is
        over, as a process whose exit is under way does. Before, every thread blocked
        it: it stayed pending, and the child ended with status 0 as if never sent."""
        with bad_server("silent") as bad:
            child, pid, _ = ending_on_a_silent_service(bad.url)
            assert bad.got_request.wait(30)  # the ending delivers: it waits on the service
            os.kill(pid, signal.SIGTERM)
            status = child.expect("child ended", timeout=60).split()[0]
            code, _ = child.finish(timeout=60)
        assert 0 == code, child.stderr
        assert str(-signal.SIGTERM) == status, child.stderr
        assert 100 == losses_said(child.stderr)[0], child.stderr

    def test_a_client_built_in_the_child(self, server: DevServer) -> None:
        """A child whose first client is built after the fork (the parent never built
        one, so no fork hook of the library's ran) ends as well, its lines delivered."""
        code, stderr = run_alone(
            f"""
            import os, signal, sys, threading
            sys.path.insert(0, {REPO!r})
            def work():
                pid = os.fork()
                if pid == 0:
                    signal.alarm(30)
                    from logdna_client import Client
                    client = Client(url={server.url!r}, flush_interval=60)
                    for i in range(50):
                        client.log("built in the child %d" % i)
                    sys.exit(0)
                _, status = os.waitpid(pid, 0)
                sys.stderr.write("@@child ended %d\\n" % os.waitstatus_to_exitcode(status))
            threading.Thread(target=work).start()
            """
        )
        assert 0 == code, stderr
        assert "@@child ended 0" in stderr, stderr
        assert_exactly_once_in_order([f"built in the child {i}" for i in range(50)], texts(server))


class TestOnlyWhereNoThreadEndsTheInterpreter:
    """Guards (they passed before the fix too): the watch for the last thread runs only
    in a process forked from a thread other than the main one, and changes nothing for
    the other ways such a process ends."""

    def test_not_in_the_main_process_nor_a_child_forked_from_the_main_thread(
        self, server: DevServer
    ) -> None:
        """Neither the main process nor a child forked from its main thread (whose exit
        runs the exit hook) has the watch's thread; a child forked from another one has."""
        child = Child(
            """
            import threading
            def watching():
                return any(t.name == "logdna_client-outlive" for t in threading.enumerate())
            log.info("parent")
            client.flush(30)
            mark("parent watching %s" % watching())
            pid = os.fork()
            if pid == 0:
                log.info("from the main thread's child")
                client.flush(30)
                mark("main thread's child watching %s" % watching())
                os._exit(0)
            os.waitpid(pid, 0)
            def work():
                pid = os.fork()
                if pid == 0:
                    mark("other thread's child watching %s" % watching())
                    os._exit(0)
                os.waitpid(pid, 0)
            thread = threading.Thread(target=work)
            thread.start()
            thread.join()
            """,
            server.url,
        )
        assert "False" == child.expect("parent watching")
        assert "False" == child.expect("main thread's child watching")
        assert "True" == child.expect("other thread's child watching")
        code, _ = child.finish()
        assert 0 == code, child.stderr

    @pytest.mark.parametrize("ending", ["multiprocessing", "exec"])
    def test_a_child_that_ends_otherwise_keeps_its_status(
        self, server: DevServer, ending: str
    ) -> None:
        """A ``multiprocessing`` child (fork) started from a thread ends by its own
        ``os._exit`` with its exit code, its lines delivered by the library's finalizer;
        a child that execs another program gets that program's status."""
        child = Child(
            """
            import multiprocessing, subprocess, threading
            def target():
                for i in range(50):
                    log.info("mp child %d", i)
                sys.exit(5)
            def work():
                if os.environ["ENDING"] == "multiprocessing":
                    process = multiprocessing.get_context("fork").Process(target=target)
                    process.start()
                    process.join(60)
                    mark("child ended %s" % process.exitcode)
                    return
                pid = os.fork()
                if pid == 0:
                    signal.alarm(30)
                    log.info("before the exec")
                    os.execv(sys.executable, [sys.executable, "-c", "raise SystemExit(7)"])
                _, status = os.waitpid(pid, 0)
                mark("child ended %d" % os.waitstatus_to_exitcode(status))
            thread = threading.Thread(target=work)
            thread.start()
            thread.join()
            """,
            server.url,
            env={"ENDING": ending},
            flush_interval="60",
        )
        status = child.expect("child ended", timeout=60)
        code, _ = child.finish(timeout=60)
        assert 0 == code, child.stderr
        if ending == "multiprocessing":
            assert "5" == status, child.stderr
            assert_exactly_once_in_order([f"mp child {i}" for i in range(50)], texts(server))
        else:
            assert "7" == status, child.stderr


class TestChildForkedWhileTheParentEnds:
    def test_a_child_forked_during_the_exit_ships_its_lines(self, server: DevServer) -> None:
        """A thread forks a worker while the parent's exit hook delivers (waiting on a
        second client's service that never answers): the worker is a new process, not an
        ending one, and its lines arrive. They were all dropped, unsaid, as after_close:
        the child kept the clients the parent's ending had closed."""
        code = """
            import threading
            slow = LogDNAHandler(url=os.environ["SILENT"], shutdown_timeout="2")
            slow_log = logging.getLogger("slow")
            slow_log.addHandler(slow)
            slow_log.propagate = False
            slow_log.warning("never answered")
            log.info("parent")

            def runner():
                while not client.closed:  # the exit hook has begun (and waits)
                    pass
                if os.fork() == 0:  # forked from a thread: ends when this thread ends
                    for i in range(200):
                        log.info("child %d", i)
                    mark("child logged %s" % (client.stats()["dropped"]["after_close"],))

            threading.Thread(target=runner, daemon=True).start()
            """
        with bad_server("silent") as silent:
            child = Child(code, server.url, env={"SILENT": silent.url}, flush_interval="60")
            assert "0" == child.expect("child logged", timeout=60), child.stderr
            code_, _ = child.finish(timeout=60)
            assert 0 == code_, child.stderr
            assert server.wait_for_lines(201, 30), texts(server)
        got = texts(server)
        assert_exactly_once_in_order([f"child {i}" for i in range(200)], got)
        assert 1 == got.count("parent")
