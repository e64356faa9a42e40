"""The signal watcher (``_exit._watch``), and SIGTERMs the application's own handler took.

The watcher reads each signal's number from the wakeup fd on a thread of its own, as a
rule only once the main thread lets go of the GIL: by then the application's handler may
have taken that signal and put the library's back (a try/finally around a critical
section; a handler that cleans up, puts the previous handler back and sends the signal
again). Such a signal is never the library's, and the one sent again is no second signal.
The children here keep the GIL on their main thread (``sys.setswitchinterval(60)``) from
the signal until they wait, so that the watcher reads the numbers only then, every time
(left to the scheduler, it did in about half the runs).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from logdna_client import _exit
from logdna_client._devserver import DevServer
from tests._bad_servers import bad_server
from tests._children import (
    REPO,
    Child,
    assert_exactly_once_in_order,
    texts,
    watcher_looks_late,
)

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="POSIX signals and /proc are the contract"
)

# The devserver's answer to each request waits this long before it reads the body: a
# process ended while it waits has delivered nothing.
SLOW_ANSWER = 0.5

# Child code: our handler is in force (the sender started on the main thread).
OURS_IN_FORCE = """
from logdna_client import _exit
for i in range(50):
    log.info("buffered %d", i)
mark("ours " + str(signal.getsignal(signal.SIGTERM) is _exit._on_termination))
"""

# The application's handler cleans up, puts the previous handler back and sends the
# signal again (chain); or it defers SIGTERM through a critical section, the popular
# context manager, and sends it again at its end (defer).
HANDS_IT_ON = """
import contextlib
sys.setswitchinterval(60.0)  # the main thread keeps the GIL until it waits
if os.environ["PATTERN"] == "chain":
    previous = signal.getsignal(signal.SIGTERM)
    def clean_up_then_hand_on(signum, frame):
        signal.signal(signal.SIGTERM, previous)
        os.kill(os.getpid(), signal.SIGTERM)
    signal.signal(signal.SIGTERM, clean_up_then_hand_on)
    os.kill(os.getpid(), signal.SIGTERM)  # (a supervisor's)
else:
    @contextlib.contextmanager
    def sigterm_deferred():
        got = []
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)
            if got:
                os.kill(os.getpid(), signal.SIGTERM)
    with sigterm_deferred():
        os.kill(os.getpid(), signal.SIGTERM)  # comes during the critical section
wait_for("never")
"""

# The application's handler takes SIGTERM for a while and then puts the previous one
# back (ours); it carries on with its own orderly end.
TAKES_IT_ITSELF = """
import select, threading
took = []
sys.setswitchinterval(60.0)  # the main thread keeps the GIL until it waits
previous = signal.signal(signal.SIGTERM, lambda signum, frame: took.append(signum))
try:
    os.kill(os.getpid(), signal.SIGTERM)  # (a supervisor's)
finally:
    signal.signal(signal.SIGTERM, previous)
# Until the watcher has read the signal's number, ours back in force meanwhile.
while select.select([_exit._watch_fds[0]], [], [], 0)[0]:
    threading.Event().wait(0.005)
sys.setswitchinterval(0.005)
log.info("my handler took %d", len(took))
mark("went on")
"""


class TestASigtermTheApplicationTook:
    @pytest.mark.parametrize("pattern", ["chain", "defer"])
    def test_handed_on_by_sending_it_again_delivers_every_line(
        self, server: DevServer, pattern: str
    ) -> None:
        """The signal sent again is the first one ours takes, not a second signal: every
        buffered line arrives (the service answering slowly), then SIGTERM ends the
        process. The watcher counted both numbers as ours and ended it at once, with
        nothing delivered and nothing said."""
        server.set_delay(SLOW_ANSWER)
        child = Child(
            OURS_IN_FORCE + HANDS_IT_ON, server.url, env={"PATTERN": pattern}, flush_interval="60"
        )
        assert "True" == child.expect("ours")
        code, _ = child.finish()
        assert -signal.SIGTERM == code, child.stderr
        assert_exactly_once_in_order([f"buffered {i}" for i in range(50)], texts(server))
        assert "" == child.stdout

    def test_taken_and_ours_put_back_the_process_goes_on(self, server: DevServer) -> None:
        """The application's handler took the signal and put ours back: the process is
        the application's to end. It goes on, logs, and exits 0 with every line
        delivered. The watcher took the signal for ours and ended the process by it."""
        child = Child(OURS_IN_FORCE + TAKES_IT_ITSELF, server.url, flush_interval="60")
        assert "True" == child.expect("ours")
        child.expect("went on")
        code, _ = child.finish()
        assert 0 == code, child.stderr
        expected = [f"buffered {i}" for i in range(50)] + ["my handler took 1"]
        assert_exactly_once_in_order(expected, texts(server))
        assert "" == child.stdout

    def test_demo_open_stopped_by_sigterm_exits_0(self, tmp_path: Path) -> None:
        """``demo --open`` takes SIGTERM itself, puts the previous handlers back and ends
        with exit status 0 (docs/cli.md). Here the watcher reads the signal's number only
        once the demo put ours back, as it did on a loaded machine: it exited -15."""
        code = textwrap.dedent(
            """
            import signal, sys, threading
            from logdna_client import _cli, _cli_demo, _exit
            restored = threading.Event()
            real_restore_signal = _cli_demo._restore_signal
            def restore_signal(signum, previous):
                real_restore_signal(signum, previous)
                if signum == signal.SIGTERM:
                    restored.set()
            _cli_demo._restore_signal = restore_signal
            """
        )
        code += watcher_looks_late("restored", 30)
        code += 'sys.exit(_cli.main(["demo", "--open", "--no-color"]))\n'
        env = dict(os.environ, PYTHONPATH=REPO, BROWSER="true")
        for name in ("LOGDNA_HANDLE_SIGNALS", "LOGDNA_INGESTION_KEY", "LOGDNA_URL"):
            env.pop(name, None)
        proc = subprocess.Popen(
            [sys.executable, "-c", code], env=env, cwd=tmp_path, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            for line in proc.stdout:  # the handlers are the demo's from here on
                if "Live tail in your browser" in line:
                    break
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert 0 == proc.returncode, err
        assert "Traceback" not in err, err


# Child code: once the main thread sleeps in its read, a thread of the application's
# sends SIGTERM to itself (the kernel may hand a process's signal to any thread): no
# handler runs until the watcher wakes the main thread.
SECOND_SIGNAL_WHILE_THE_MAIN_THREAD_SLEEPS = """
import threading
for i in range(100):
    log.info("pending %d", i)
# The first SIGTERM lands under logging's module lock: ours cannot wait there, so a
# thread of ours waits for the delivery (which hangs) and the main thread goes on.
logging._lock.acquire()
os.kill(os.getpid(), signal.SIGTERM)
logging._lock.release()
def application_thread():
    wchan = f"/proc/self/task/{os.getpid()}/wchan"
    while "pipe_read" not in open(wchan).read():
        threading.Event().wait(0.005)
    mark("second")
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
threading.Thread(target=application_thread, daemon=True).start()
wait_for("never")  # the main thread sleeps here for good
"""


class TestASecondSignalTheMainThreadCannotRun:
    def test_ends_the_process_at_once(self) -> None:
        """A second SIGTERM while the ending waits on a service that never answers,
        landing where the main thread cannot run its handler: the watcher wakes that
        thread, our handler counts it as the second, and the process ends by SIGTERM
        far within the 30 s deadline."""
        with bad_server("silent") as bad:
            child = Child(
                SECOND_SIGNAL_WHILE_THE_MAIN_THREAD_SLEEPS,
                bad.url,
                flush_interval="60",
                shutdown_timeout="30",
            )
            child.expect("second")
            sent = time.monotonic()
            try:
                # Waited for with stdin open: closing it would wake the main thread.
                child.proc.wait(20)
            except subprocess.TimeoutExpired:
                pass
            took = time.monotonic() - sent
            code, _ = child.finish()
        assert -signal.SIGTERM == code, child.stderr
        assert took < 20, child.stderr
        assert "" == child.stdout
        # The loss is said, as a Ctrl-C's cut is (H185: not a word on stderr).
        said = "a second SIGTERM ended the process while it delivered; 100 line(s) held"
        assert said in child.stderr, child.stderr


# -- the wake itself

# Child code: ``SETUP`` (the application's signal handling), then one wake of the main
# thread, then rest; prints what the kernel says is caught (SigCgt) at each step.
WAKE_AND_REST = """
import json, signal, threading
from pathlib import Path
from logdna_client import _exit

def caught():
    status = Path("/proc/self/status").read_text()
    mask = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:"))
    return [s.name for s in (signal.SIGURG, signal.SIGWINCH) if int(mask, 16) >> (s - 1) & 1]

ran = []
def mine(signum, frame):
    ran.append(signum)
SETUP
waker = _exit._Waker.from_libc()
before = caught()
woke = waker.wake(threading.get_ident())
during = caught()
waker.rest()
print(json.dumps({
    "before": before, "woke": woke, "during": during, "after": caught(), "ran": ran,
    "urg": {signal.SIG_DFL: "default", mine: "mine"}.get(signal.getsignal(signal.SIGURG)),
}))
"""


def _wake_and_rest(setup: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", WAKE_AND_REST.replace("SETUP", setup)],
        env=dict(os.environ, PYTHONPATH=REPO), capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert 0 == done.returncode, done.stderr
    facts: dict[str, Any] = json.loads(done.stdout)
    return facts


class TestWaker:
    """The wake: a signal ignored by default, with a no-op C handler in place only while
    it is used, and only where neither the application nor another library handles it.
    In a child of its own: a test runner may have such handlers (readline's)."""

    def test_the_default_is_back_once_at_rest(self) -> None:
        """SIGURG's no-op handler is in place while the watcher uses it, then gone."""
        facts = _wake_and_rest("")
        assert [[], True, ["SIGURG"], []] == [
            facts[k] for k in ("before", "woke", "during", "after")
        ]
        assert "default" == facts["urg"]

    def test_a_signal_the_application_handles_is_left_to_it(self) -> None:
        """Where the application handles SIGURG, the wake is a SIGWINCH: the application's
        handler never runs for it, and stays in place."""
        facts = _wake_and_rest("signal.signal(signal.SIGURG, mine)")
        assert True is facts["woke"]
        assert ["SIGURG", "SIGWINCH"] == facts["during"]
        assert ["SIGURG"] == facts["after"]
        assert [] == facts["ran"]
        assert "mine" == facts["urg"]

    def test_a_c_handler_python_knows_nothing_of_is_left_alone(self) -> None:
        """readline handles SIGWINCH in C (Python's getsignal says SIG_DFL): with SIGURG
        the application's, there is no wake, and both handlers stay."""
        facts = _wake_and_rest("import readline\nsignal.signal(signal.SIGURG, mine)")
        assert False is facts["woke"]
        assert ["SIGURG", "SIGWINCH"] == facts["before"] == facts["during"] == facts["after"]

    def test_no_wake_when_the_application_takes_them_all(self) -> None:
        """With every wake signal ignored by the application, there is no wake."""
        facts = _wake_and_rest(
            "signal.signal(signal.SIGURG, signal.SIG_IGN)\n"
            "signal.signal(signal.SIGWINCH, signal.SIG_IGN)"
        )
        assert False is facts["woke"]
        assert [] == facts["during"]


# -- the watcher's rules, on a pipe of the test's


class _Watched:
    """``_exit._watch`` on a thread, reading a pipe of the test's, with our handler taken
    to be in force for SIGTERM and SIGHUP and the wakes and cuts it makes recorded."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.wakes: list[int] = []
        self.woken = threading.Semaphore(0)
        self.cuts = 0
        self.rested = threading.Semaphore(0)
        watched = self

        class Waker:
            def wake(self, thread: int) -> bool:
                watched.wakes.append(thread)
                watched.woken.release()
                return True

            def rest(self) -> None:
                watched.rested.release()

        class Signals:  # _exit's signal module, as the watcher sees it
            def __getattr__(self, name: str) -> Any:
                return getattr(signal, name)

            def getsignal(self, signum: int) -> Any:
                if signum in (signal.SIGTERM, signal.SIGHUP):
                    return _exit._on_termination
                if signum == signal.SIGINT:
                    return signal.default_int_handler
                return signal.getsignal(signum)

        def cut() -> None:
            watched.cuts += 1

        monkeypatch.setattr(_exit, "signal", Signals())
        monkeypatch.setattr(_exit, "_waker", Waker())
        monkeypatch.setattr(_exit, "_cut_deadline", cut)
        monkeypatch.setattr(_exit, "_WAKE_HOLD", 0.2)
        self.read_fd, self.write_fd = os.pipe()
        self.thread = threading.Thread(target=_exit._watch, args=(self.read_fd,), daemon=True)
        self.thread.start()

    def write(self, *numbers: int) -> None:
        os.write(self.write_fd, bytes(numbers))

    def stop(self) -> None:
        os.close(self.write_fd)
        self.thread.join(10)
        os.close(self.read_fd)


@pytest.fixture
def watched(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Watched]:
    made = _Watched(monkeypatch)
    try:
        yield made
    finally:
        made.stop()


class TestWatch:
    def test_a_signal_ours_took_needs_no_wake(self, watched: _Watched) -> None:
        """Our handler's mark after the number: nothing to wake the main thread for (the
        SIGHUP after it, which ours does not take, is the only wake)."""
        watched.write(signal.SIGTERM, _exit._TAKEN + signal.SIGTERM, signal.SIGHUP)
        assert watched.woken.acquire(timeout=10)
        assert [threading.main_thread().ident] == watched.wakes
        assert watched.rested.acquire(timeout=10)  # then forgotten, the default put back
        assert 1 == len(watched.wakes)

    def test_one_ours_did_not_take_wakes_the_main_thread_once(self, watched: _Watched) -> None:
        """A number read, our handler's mark never comes (the application's handler had
        taken the signal, ours back since): one wake, however many numbers, then the
        signal is forgotten and nothing else happens."""
        watched.write(signal.SIGTERM, signal.SIGTERM)
        assert watched.woken.acquire(timeout=10)
        assert watched.rested.acquire(timeout=10)
        watched.write(signal.SIGHUP)  # (its wake comes after any other of SIGTERM's would)
        assert watched.woken.acquire(timeout=10)
        assert 2 == len(watched.wakes)
        assert 0 == watched.cuts

    def test_a_ctrl_c_meanwhile_cuts_short_once_ours_took_the_signal(
        self, watched: _Watched
    ) -> None:
        """SIGTERM, then Ctrl-C, where the main thread runs neither handler: once woken
        and our handler took the SIGTERM, the Ctrl-C cuts the ending short."""
        watched.write(signal.SIGTERM, signal.SIGINT)
        assert watched.woken.acquire(timeout=10)
        watched.write(_exit._TAKEN + signal.SIGTERM)
        assert watched.rested.acquire(timeout=10)
        assert 1 == watched.cuts

    def test_a_ctrl_c_meanwhile_cuts_nothing_when_ours_never_took_it(
        self, watched: _Watched
    ) -> None:
        """The same, but the application's handler had taken the SIGTERM (our handler's
        mark never comes): the Ctrl-C is the application's, and the exit it begins is
        not cut short for it."""
        watched.write(signal.SIGTERM, signal.SIGINT)
        assert watched.woken.acquire(timeout=10)
        assert watched.rested.acquire(timeout=10)
        assert 0 == watched.cuts


class TestAProgramThatClosesEveryFd:
    def test_signals_never_write_into_the_files_it_opens_after(
        self, server: DevServer, tmp_path: Path
    ) -> None:
        """A daemon detaching closes every fd (``os.closerange``, as python-daemon does)
        and opens its own files, which get the lowest free numbers. The watcher's pipe is
        placed high, away from those, and the watcher stands down once its pipe is gone,
        pointing the wakeup fd's number at nothing: a signal the program handles writes
        nothing into its files (each SIGUSR1 wrote its number, b"\\n", into one of them,
        as Python's C handler writes to the wakeup fd whatever file that number is now)."""
        code = f"""
            import threading
            signal.signal(signal.SIGUSR1, lambda *args: None)  # the program's own handler
            log.info("before")
            watchers = [t for t in threading.enumerate() if t.name == "logdna_client-signals"]
            os.closerange(3, 65536)
            files = [os.open(os.path.join({str(tmp_path)!r}, "data%d" % i),
                             os.O_WRONLY | os.O_CREAT | os.O_TRUNC) for i in range(4)]
            for watcher in watchers:
                watcher.join(30)
            for fd in files:
                os.write(fd, b"app data;")
            for _ in range(3):
                os.kill(os.getpid(), signal.SIGUSR1)
            for fd in files:
                os.write(fd, b"more")
                os.close(fd)
            mark("written %d %s" % (len(watchers), [w.is_alive() for w in watchers]))
            """
        child = Child(code, server.url, flush_interval="60")
        assert "1 [False]" == child.expect("written", timeout=60), child.stderr
        code_, _ = child.finish(timeout=60)
        assert 0 == code_, child.stderr
        for i in range(4):
            assert b"app data;more" == (tmp_path / f"data{i}").read_bytes()
        assert "wakeup fd" not in child.stderr, child.stderr
