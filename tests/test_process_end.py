"""Every way a process ends, in real child processes against real local servers.

Termination signals (SIGTERM, SIGHUP) with their default disposition,
``multiprocessing.Pool`` terminating its workers, signal handlers and
finalizers that log, flush or shut logging down at any moment, and every exit
path against servers that never answer, trickle, or fail forever. What must
hold: no accepted line lost or left uncounted, no hang, exit within the one
deadline in force, and the process ends the way it would have without us.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from logdna_client import Client, LogDNAHandler
from logdna_client._devserver import DevServer
from tests._bad_servers import KINDS, bad_server
from tests._children import REPO, Child, assert_exactly_once_in_order, texts
from tests._helpers_integrations import TIMEOUT
from tests.helpers import make_logger

# Exit-path deadline tests use this shutdown_timeout; the Done means allow 0.5 s over it.
DEADLINE = 1.5
SLACK = 0.5
# Wall-clock bounds here are about a deadline the library promises; a loaded
# machine adds its own delay to starting and reaping processes, not to that.


TERMINATION = [signal.SIGTERM, signal.SIGHUP]


class TestTerminationSignals:
    @pytest.mark.parametrize("signum", TERMINATION, ids=lambda s: signal.Signals(s).name)
    def test_buffered_lines_delivered_then_the_same_signal_ends_it(
        self, server: DevServer, signum: int
    ) -> None:
        """500 buffered lines all arrive, the process still ends by that signal (the
        status a supervisor sees), within shutdown_timeout, with nothing on stdout."""
        child = Child(
            """
            for i in range(500):
                log.info("buffered %d", i)
            mark("logged")
            wait_for("never")  # blocked reading stdin when the signal comes
            """,
            server.url,
            flush_interval="60",  # nothing leaves before the signal
            shutdown_timeout=str(DEADLINE),
        )
        child.expect("logged")
        assert 0 == server.line_count
        sent = child.kill(signum)
        code, _ = child.finish()
        took = time.monotonic() - sent
        assert -signum == code, child.stderr
        assert took < DEADLINE + SLACK
        assert_exactly_once_in_order([f"buffered {i}" for i in range(500)], texts(server))
        assert "" == child.stdout

    def test_steady_logging_loses_nothing_before_the_signal(self, server: DevServer) -> None:
        """While the app logs steadily, every line logged before SIGTERM arrives: the
        received lines are exactly 0..N with no gap, however far N got."""
        child = Child(
            """
            i = 0
            while True:
                log.info("steady %d", i)
                i += 1
                if i % 2000 == 0:
                    mark("at %d" % i)  # at least this many were logged
            """,
            server.url,
            flush_interval="1",
        )
        while int(child.expect("at")) < 20_000:
            pass
        assert server.wait_for_lines(2000, 30)  # the sender is busy when the signal comes
        child.kill(signal.SIGTERM)
        code, _ = child.finish()
        assert -signal.SIGTERM == code, child.stderr
        logged_at_least = max(int(line.split()[1]) for line in child.stderr_lines
                              if line.startswith("@@at "))  # fmt: skip
        got = texts(server)
        assert len(got) >= logged_at_least
        assert_exactly_once_in_order([f"steady {i}" for i in range(len(got))], got)

    def test_lines_logged_only_from_worker_threads(self, server: DevServer) -> None:
        """Logging configured on the main thread, lines logged only by worker threads (a
        threaded server): SIGTERM still delivers them."""
        child = Child(
            """
            import threading
            def worker(w):
                for i in range(100):
                    log.info("thread %d line %d", w, i)
            threads = [threading.Thread(target=worker, args=(w,)) for w in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            mark("logged")
            wait_for("never")
            """,
            server.url,
            flush_interval="60",
        )
        child.expect("logged")
        child.kill(signal.SIGTERM)
        code, _ = child.finish()
        assert -signal.SIGTERM == code, child.stderr
        expected = {f"thread {w} line {i}" for w in range(3) for i in range(100)}
        assert expected == set(texts(server))

    def test_the_applications_own_handler_is_kept(self, server: DevServer) -> None:
        """An application that set its own SIGTERM handler keeps it: ours is not installed."""
        child = Child(
            """
            import signal
            def mine(signum, frame):
                mark("mine ran")
                raise SystemExit(3)
            signal.signal(signal.SIGTERM, mine)
            log.info("hello")
            mark("ours " + str(signal.getsignal(signal.SIGTERM) is not mine))
            wait_for("never")
            """,
            server.url,
        )
        assert "False" == child.expect("ours")
        child.kill(signal.SIGTERM)
        child.expect("mine ran")
        code, _ = child.finish()
        assert 3 == code  # SystemExit from the app's handler; atexit then delivered
        assert ["hello"] == texts(server)

    @pytest.mark.parametrize("how", ["option", "env"])
    def test_handle_signals_off_leaves_the_default(self, server: DevServer, how: str) -> None:
        """handle_signals=False (or LOGDNA_HANDLE_SIGNALS=0) installs nothing."""
        child = Child(
            """
            import signal
            log.info("hello")
            mark("default " + str(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL))
            """,
            server.url,
            env={"LOGDNA_HANDLE_SIGNALS": "0"} if how == "env" else None,
            **({"handle_signals": "false"} if how == "option" else {}),
        )
        assert "True" == child.expect("default")
        code, _ = child.finish()
        assert 0 == code

    def test_second_signal_ends_at_once(self) -> None:
        """A second SIGTERM while delivery hangs ends the process at once, by SIGTERM."""
        with bad_server("silent") as bad:
            child = Child(
                """
                log.info("stuck")
                mark("logged")
                wait_for("never")
                """,
                bad.url,
                shutdown_timeout="30",
            )
            child.expect("logged")
            child.kill(signal.SIGTERM)
            assert bad.got_request.wait(10)
            sent = child.kill(signal.SIGTERM)
            code, _ = child.finish()
            assert time.monotonic() - sent < 10  # far below the 30 s deadline
        assert -signal.SIGTERM == code


# Child code: block for good on ``lock``, with a real SIGTERM raised on another thread
# once the main thread has let go of the GIL inside acquire(), past its last look for
# signals: the moment the race leaves a signal unhandled.
SIGTERM_INSIDE_ACQUIRE = """
import signal, threading
def block_with_sigterm_inside(lock):
    lock.acquire()
    go = threading.Event()
    def land_here():
        go.wait()  # set just before the main thread blocks, holding the GIL till then
        signal.raise_signal(signal.SIGTERM)
    threading.Thread(target=land_here, daemon=True).start()
    sys.setswitchinterval(60.0)  # the main thread keeps the GIL until it blocks
    go.set()
    lock.acquire()  # never returns: only the signal ends the process
"""


class TestSignalTheMainThreadMisses:
    """A signal caught while the main thread is past its last look for one and not
    yet blocked (SemLock.acquire between sem_trywait and sem_wait, where a Pool worker
    is when Pool.terminate's SIGTERM comes) interrupts nothing: Python's handler
    never runs there. The process must end all the same."""

    @pytest.mark.parametrize("kind", ["multiprocessing", "threading"])
    def test_signal_landing_while_the_main_thread_blocks_on_a_lock(
        self, server: DevServer, kind: str
    ) -> None:
        """The main thread blocks for good on a lock; SIGTERM's C-level handler runs on
        another thread once the main thread has let go of the GIL inside acquire() (the
        moment the race leaves it in): the lines arrive and the process ends by SIGTERM."""
        child = Child(
            SIGTERM_INSIDE_ACQUIRE
            + textwrap.dedent(
                """
            import multiprocessing
            kind = os.environ["LOCK_KIND"]
            lock = multiprocessing.Lock() if kind == "multiprocessing" else threading.Lock()
            for i in range(500):
                log.info("buffered %d", i)
            mark("ready")
            block_with_sigterm_inside(lock)
            """
            ),
            server.url,
            env={"LOCK_KIND": kind},
            flush_interval="60",
            shutdown_timeout=str(DEADLINE),
        )
        child.expect("ready")
        code, _ = child.finish(timeout=DEADLINE + 15)
        assert -signal.SIGTERM == code, child.stderr
        assert_exactly_once_in_order([f"buffered {i}" for i in range(500)], texts(server))

    def test_a_forked_child_that_never_logged(self, server: DevServer) -> None:
        """The same in a child forked the moment the first handler was built (the
        library's threads just starting), which never logs a line (a Pool worker that
        got no task): the child ends by SIGTERM."""
        child = Child(
            SIGTERM_INSIDE_ACQUIRE
            + textwrap.dedent(
                """
            pid = os.fork()
            if pid == 0:
                signal.alarm(20)  # a hang ends here instead (-SIGALRM)
                block_with_sigterm_inside(threading.Lock())
                os._exit(1)  # not reached
            _, status = os.waitpid(pid, 0)
            mark("child ended %d" % os.waitstatus_to_exitcode(status))
            """
            ),
            server.url,
        )
        assert str(-signal.SIGTERM) == child.expect("child ended")
        code, _ = child.finish()
        assert 0 == code, child.stderr

    def test_a_forked_childs_signal_is_its_own(self, server: DevServer) -> None:
        """A child forked from a process whose watcher listens gets a pipe of its own: its
        SIGTERM ends the child (by SIGTERM, its lines delivered), never the parent."""
        child = Child(
            """
            import signal
            from logdna_client import _exit
            log.info("parent before")
            parents = os.fstat(_exit._watch_fds[1]).st_ino  # the watcher's pipe
            pid = os.fork()
            if pid == 0:
                log.info("child")
                client.flush(10)  # its sender runs: armed as the parent's was
                now = signal.set_wakeup_fd(-1)
                signal.set_wakeup_fd(now)
                own = now != -1 and os.fstat(now).st_ino != parents
                mark("child listens on its own %s" % own)
                os.kill(os.getpid(), signal.SIGTERM)
                os._exit(1)  # not reached
            _, status = os.waitpid(pid, 0)
            mark("child ended %d" % os.waitstatus_to_exitcode(status))
            wait_for("done")
            log.info("parent after")
            """,
            server.url,
            flush_interval="60",
        )
        assert "True" == child.expect("child listens on its own")
        assert str(-signal.SIGTERM) == child.expect("child ended")
        child.send("done")
        code, _ = child.finish()
        assert 0 == code, child.stderr
        assert ["child", "parent after", "parent before"] == sorted(texts(server))

    def test_an_applications_wakeup_fd_is_kept(self, server: DevServer, tmp_path: Path) -> None:
        """An event loop's signal wakeup fd, set before the handler, stays in place; SIGTERM
        then goes through the handler on the main thread alone, as before."""
        script = tmp_path / "loop_app.py"
        script.write_text(
            textwrap.dedent(
                """
                import logging, os, signal, socket, sys
                mine, theirs = socket.socketpair()
                mine.setblocking(False)
                signal.set_wakeup_fd(mine.fileno())  # as asyncio's add_signal_handler does
                from logdna_client import LogDNAHandler
                handler = LogDNAHandler(url=os.environ["LOGDNA_URL"], hostname="loop",
                                        flush_interval=60)
                log = logging.getLogger("loop")
                log.addHandler(handler)
                log.propagate = False
                log.warning("hello")
                kept = signal.set_wakeup_fd(mine.fileno()) == mine.fileno()
                sys.stderr.write("@@kept %s\\n" % kept)
                os.kill(os.getpid(), signal.SIGTERM)
                theirs.recv(1)
                """
            )
        )
        env = dict(os.environ, LOGDNA_URL=server.url, PYTHONPATH=REPO)
        env.pop("LOGDNA_INGESTION_KEY", None)
        proc = subprocess.run(
            [sys.executable, str(script)],
            env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False,
        )  # fmt: skip
        assert "@@kept True" in proc.stderr
        assert -signal.SIGTERM == proc.returncode, proc.stderr
        assert ["hello"] == texts(server)

    def test_an_applications_own_wakeup_fd_is_kept_in_a_forked_child(
        self, server: DevServer
    ) -> None:
        """An application that set its own wakeup fd (a select loop's self-pipe, no asyncio)
        keeps it in a child it forks: the fd the child inherits is the application's, on
        every Python. (From 3.12, importing asyncio registers a fork hook that clears it in
        every forked child; the library does not import asyncio.)"""
        child = Child(
            """
            import socket
            mine, theirs = socket.socketpair()
            mine.setblocking(False)
            signal.set_wakeup_fd(mine.fileno())
            log.info("parent")
            client.flush(10)  # its sender runs: the library's threads and handlers are in
            mark("asyncio imported %s" % ("asyncio" in sys.modules))
            pid = os.fork()
            if pid == 0:
                log.info("child")
                client.flush(10)  # the child's sender runs, and looked at the wakeup fd
                now = signal.set_wakeup_fd(mine.fileno())
                os.write(2, b"@@child kept %s (now %d)\\n" % (
                    str(now == mine.fileno()).encode(), now))
                os._exit(0)
            _, status = os.waitpid(pid, 0)
            mark("child ended %d" % os.waitstatus_to_exitcode(status))
            """,
            server.url,
            flush_interval="60",
        )
        assert "False" == child.expect("asyncio imported")
        assert child.expect("child kept").startswith("True"), child.stderr
        assert "0" == child.expect("child ended")
        code, _ = child.finish()
        assert 0 == code, child.stderr
        assert ["child", "parent"] == sorted(texts(server))


FORKSERVER_MAIN = """
import multiprocessing, sys
if __name__ == "__main__":
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["preloaded_app"])
    import preloaded_app
    worker = ctx.Process(target=preloaded_app.worker, args=(int(sys.argv[1]),))
    worker.start()
    worker.join(60)
    sys.stderr.write("@@worker ended %s\\n" % worker.exitcode)
"""

# The module a forkserver preloads: it builds the handler, and logs, so its sender and
# signal watcher run in the server, which forks every worker.
PRELOADED_APP = """
import logging, os, sys
from logdna_client import LogDNAHandler
handler = LogDNAHandler(url=os.environ["LOGDNA_URL"], hostname="fs",
                        flush_interval=60, shutdown_timeout=10)
log = logging.getLogger("fs")
log.addHandler(handler)
log.setLevel(logging.INFO)
log.propagate = False
log.info("imported in %d", os.getpid())
"""


def run_forkserver_app(server: DevServer, tmp_path: Path, module: str, arg: int) -> str:
    """Run FORKSERVER_MAIN with ``module`` as the preloaded module; its stderr."""
    (tmp_path / "preloaded_app.py").write_text(module)
    script = tmp_path / "forkserver_app.py"
    script.write_text(FORKSERVER_MAIN)
    env = dict(os.environ, LOGDNA_URL=server.url,
               PYTHONPATH=os.pathsep.join([REPO, str(tmp_path)]))  # fmt: skip
    env.pop("LOGDNA_INGESTION_KEY", None)
    proc = subprocess.run(
        [sys.executable, str(script), str(arg)],
        env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert 0 == proc.returncode, proc.stderr
    return proc.stderr


class TestForkserverWorkers:
    """Workers of a ``forkserver`` that preloaded a module building the handler: the
    server's sender and watcher run when it forks them, with its own wakeup fd set,
    which it clears in the worker only after the fork hooks ran (from 3.12, asyncio's
    fork hook clears it before ours runs)."""

    @pytest.mark.parametrize("asyncio", [False, True], ids=["no-asyncio", "asyncio"])
    @pytest.mark.parametrize("lines", [100, 0], ids=["logs", "never-logs"])
    def test_sigterm_landing_as_the_worker_blocks_on_a_lock(
        self, server: DevServer, tmp_path: Path, lines: int, asyncio: bool
    ) -> None:
        """SIGTERM landing as the worker blocks on a lock (Pool.terminate()'s race) ends it
        by SIGTERM, with its lines delivered, whether it logged or not, and whether the
        server imported asyncio or not (from 3.12 its fork hook clears the server's fd in
        the worker before the library's runs)."""
        stderr = run_forkserver_app(
            server,
            tmp_path,
            ("import asyncio\n" if asyncio else "")
            + PRELOADED_APP
            + SIGTERM_INSIDE_ACQUIRE
            + textwrap.dedent(
                """
                def worker(lines):
                    signal.signal(signal.SIGALRM, signal.SIG_DFL)
                    signal.alarm(20)  # a hang ends here instead (-SIGALRM)
                    for i in range(lines):
                        log.info("worker %d", i)
                    block_with_sigterm_inside(threading.Lock())
                """
            ),
            lines,
        )
        assert f"@@worker ended {-signal.SIGTERM}" in stderr, stderr
        got = [t for t in texts(server) if t.startswith("worker ")]
        assert_exactly_once_in_order([f"worker {i}" for i in range(lines)], got)

    @pytest.mark.parametrize("asyncio", [False, True], ids=["no-asyncio", "asyncio"])
    def test_the_wakeup_fd_an_after_fork_hook_of_the_applications_set_is_kept(
        self, server: DevServer, tmp_path: Path, asyncio: bool
    ) -> None:
        """A wakeup fd the application set in the worker before its target runs (in a
        multiprocessing after-fork hook of its own, which runs before the library's
        look) stays the worker's; SIGTERM then ends it through the handler on the main
        thread, its lines delivered."""
        stderr = run_forkserver_app(
            server,
            tmp_path,
            ("import asyncio\n" if asyncio else "")
            + textwrap.dedent(
                """
                import multiprocessing.util, signal, socket, sys
                mine = theirs = None

                class App:
                    pass

                app = App()

                def set_own_wakeup_fd(_):
                    global mine, theirs
                    mine, theirs = socket.socketpair()
                    mine.setblocking(False)
                    signal.set_wakeup_fd(mine.fileno())

                multiprocessing.util.register_after_fork(app, set_own_wakeup_fd)
                """
            )
            + PRELOADED_APP
            + textwrap.dedent(
                """
                def worker(lines):
                    signal.signal(signal.SIGALRM, signal.SIG_DFL)
                    signal.alarm(20)
                    now = signal.set_wakeup_fd(mine.fileno())
                    sys.stderr.write("@@worker kept %s\\n" % (now == mine.fileno()))
                    for i in range(lines):
                        log.info("worker %d", i)
                    os.kill(os.getpid(), signal.SIGTERM)
                    signal.pause()
                """
            ),
            10,
        )
        assert "@@worker kept True" in stderr, stderr
        assert f"@@worker ended {-signal.SIGTERM}" in stderr, stderr
        got = [t for t in texts(server) if t.startswith("worker ")]
        assert_exactly_once_in_order([f"worker {i}" for i in range(10)], got)


POOL_SCRIPT = """
import logging, multiprocessing, os, sys
from logdna_client import LogDNAHandler

# At module level, as apps configure logging: spawn and forkserver workers
# import this module and so get the handler too.
handler = LogDNAHandler(url=os.environ["LOGDNA_URL"], hostname="pool",
                        flush_interval=60, shutdown_timeout=10)
log = logging.getLogger("pool")
log.addHandler(handler)
log.setLevel(logging.INFO)
log.propagate = False

def work(task):
    for j in range(1000):
        log.info("task %d line %d", task, j)
    return task

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    with ctx.Pool(4) as pool:
        done = pool.map(work, range(8))
    sys.stderr.write("@@mapped %d\\n" % len(done))
"""


class TestPool:
    @pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
    def test_pool_exit_delivers_what_workers_logged(
        self, server: DevServer, tmp_path: Path, method: str
    ) -> None:
        """``with Pool(4) as p: p.map(...)`` (whose __exit__ terminates the workers with
        SIGTERM) delivers all 8,000 lines the workers logged, once each."""
        script = tmp_path / "pool_app.py"
        script.write_text(POOL_SCRIPT)
        env = dict(os.environ, LOGDNA_URL=server.url, PYTHONPATH=REPO)
        env.pop("LOGDNA_INGESTION_KEY", None)
        proc = subprocess.run(
            [sys.executable, str(script), method],
            env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False,
        )  # fmt: skip
        assert 0 == proc.returncode, proc.stderr
        assert "@@mapped 8" in proc.stderr
        expected = [f"task {t} line {j}" for t in range(8) for j in range(1000)]
        got = texts(server)
        assert len(expected) == len(got), proc.stderr[-2000:]
        assert sorted(expected) == sorted(got)
        for t in range(8):  # each worker's lines in the order it logged them
            assert_exactly_once_in_order([f"task {t} line {j}" for j in range(1000)], got)


FORKED_THEN_TERMINATED = """
import logging, os, signal, sys
from logdna_client import LogDNAHandler

handler = LogDNAHandler(url=os.environ["LOGDNA_URL"], flush_interval=60, shutdown_timeout=3)
log = logging.getLogger("forks")
log.addHandler(handler)
log.setLevel(logging.INFO)
log.propagate = False
log.info("the parent's line")
statuses = []
for _ in range(10):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # a Pool worker waiting for its task: only a signal ends the wait
        signal.alarm(20)  # (bounds a lost SIGTERM: the child ends by SIGALRM instead)
        os.read(read, 1)
        os._exit(0)
    os.kill(pid, signal.SIGTERM)  # at once, as Pool.terminate() a worker just replaced
    statuses.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    os.close(read)
    os.close(write)
sys.stderr.write("@@statuses %s\\n" % statuses)
"""


def run_script(tmp_path: Path, text: str, server: DevServer) -> subprocess.CompletedProcess[str]:
    """Runs ``text`` as a program of its own, shipping to ``server``, to its end."""
    script = tmp_path / "program.py"
    script.write_text(text)
    env = dict(os.environ, LOGDNA_URL=server.url, PYTHONPATH=REPO)
    return subprocess.run(
        [sys.executable, str(script)],
        env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False,
    )  # fmt: skip


class TestSigtermAsTheChildIsForked:
    def test_a_child_terminated_at_once_ends_by_it(self, server: DevServer, tmp_path: Path) -> None:
        """SIGTERM sent to a child the moment os.fork() returns (Pool.terminate() right
        after maxtasksperchild replaced a worker) ends it, ten times out of ten. It was
        lost in 40 of 40 tries: CPython's child discards the signals caught before its
        signal reset, and our handler, in force there, had taken the default action's
        place; `with Pool(4, maxtasksperchild=1)` hung for good in 1 run of 15."""
        proc = run_script(tmp_path, FORKED_THEN_TERMINATED, server)
        assert 0 == proc.returncode, proc.stderr
        assert f"@@statuses {[-signal.SIGTERM] * 10}" in proc.stderr, proc.stderr
        assert server.wait_for_lines(1, TIMEOUT)
        assert ["the parent's line"] == texts(server)


# A prefork master that respawns a worker from its SIGCHLD handler, made certain: a fork
# hook of the application's, registered before the library's (its after_in_parent runs
# first), raises the signal as a child's end would while the master forks.
FORKED_INSIDE_THE_HOOKS = """
import logging, os, signal, sys
once = [True]
def respawn(signum, frame):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
def while_forking():
    if once[0]:
        once[0] = False
        signal.raise_signal(signal.SIGUSR1)
os.register_at_fork(after_in_parent=while_forking)
signal.signal(signal.SIGUSR1, respawn)
from logdna_client import LogDNAHandler
handler = LogDNAHandler(url=os.environ["LOGDNA_URL"], shutdown_timeout=3)
logging.getLogger().addHandler(handler)
logging.getLogger().warning("the master's line")
pid = os.fork()
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
blocked = sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, ()))
sys.stderr.write("@@blocked %s\\n" % blocked)
sys.stderr.flush()
os.kill(os.getpid(), signal.SIGTERM)  # ends it, by SIGTERM, once its line is delivered
signal.alarm(20)
while True:
    signal.pause()
"""

# The application's own masks: SIGTERM blocked in the forking thread before the fork (kept
# in parent and child), SIGINT blocked in the child by a fork hook of its own, registered
# before the library's (kept).
FORKED_WITH_MASKS_OF_ITS_OWN = """
import os, signal, sys
os.register_at_fork(
    after_in_child=lambda: signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT}))
from logdna_client import LogDNAHandler
handler = LogDNAHandler(url=os.environ["LOGDNA_URL"], shutdown_timeout=3)
handler.client.log("started")  # the sender, and with it the library's signal handlers
def mask():
    return sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, ()))
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(write, repr(mask()).encode())
    os._exit(0)
os.waitpid(pid, 0)
sys.stderr.write("@@parent %s child %s\\n" % (mask(), os.read(read, 100).decode()))
"""


class TestForksInsideTheForkHooks:
    def test_a_fork_in_a_signal_handler_leaves_no_signal_blocked(
        self, server: DevServer, tmp_path: Path
    ) -> None:
        """A fork made by a signal handler that runs inside another fork's hooks (a
        prefork master respawning a worker on SIGCHLD) left SIGTERM and SIGHUP blocked
        in the master for good: SIGTERM no longer ended it, and every child it forked
        later inherited the block. The nested fork's hooks overwrote the mask the outer
        fork had kept."""
        proc = run_script(tmp_path, FORKED_INSIDE_THE_HOOKS, server)
        assert "@@blocked []" in proc.stderr, proc.stderr
        assert -signal.SIGTERM == proc.returncode, proc.stderr
        assert server.wait_for_lines(1, TIMEOUT)
        assert ["the master's line"] == texts(server)

    def test_the_applications_own_masks_are_kept(self, server: DevServer, tmp_path: Path) -> None:
        """Only what the library blocked for the fork is unblocked after it: SIGTERM the
        application blocked before the fork stays blocked in parent and child, and SIGINT
        its own fork hook blocks in the child stays blocked there (the library put the
        whole mask from before the fork back, undoing the hook's block)."""
        proc = run_script(tmp_path, FORKED_WITH_MASKS_OF_ITS_OWN, server)
        assert 0 == proc.returncode, proc.stderr
        term, sigint = int(signal.SIGTERM), int(signal.SIGINT)
        expected = f"@@parent {[term]} child {sorted([sigint, term])}"
        assert expected in proc.stderr, proc.stderr


class TestReentrantCalls:
    def test_signal_handler_shutting_logging_down_never_hangs(self, server: DevServer) -> None:
        """100 rounds: a signal handler calls logging.shutdown(), flush() or close() at a
        random moment of heavy logging into a small buffer (so the main thread is often
        inside the buffer's lock); every round ends, every line is accounted for."""
        child = Child(
            """
            import random, signal, threading
            rounds = 100
            calls = ["shutdown", "flush", "close"]
            state = {}
            def on_usr1(signum, frame):
                what = state["call"]
                if what == "shutdown":
                    logging.shutdown()
                elif what == "flush":
                    state["client"].flush(0.5)
                else:
                    state["client"].close(0.5)
                state["hit"].set()
            signal.signal(signal.SIGUSR1, on_usr1)
            rng = random.Random(7)
            unaccounted = 0
            for r in range(rounds):
                h = LogDNAHandler(max_buffer_bytes="64KiB", max_batch_bytes="8KiB",
                                  flush_interval=0.01, shutdown_timeout=0.5)
                lg = logging.getLogger(f"round{r}")
                lg.handlers[:] = [h]
                lg.propagate = False
                lg.setLevel(logging.INFO)
                state.update(call=calls[r % 3], client=h.client, hit=threading.Event())
                timer = threading.Timer(rng.uniform(0.0, 0.02),
                                        os.kill, (os.getpid(), signal.SIGUSR1))
                timer.start()
                n = 0
                while not state["hit"].is_set() or n < 2000:
                    lg.info("round %d line %d " + "x" * 200, r, n)
                    n += 1
                timer.join()
                h.close()
                s = h.client.stats()
                dealt = s["sent"] + s["dropped_total"] - s["dropped"]["after_close"]
                unaccounted += s["accepted"] - dealt
                lg.handlers[:] = []
            mark("rounds %d unaccounted %d" % (rounds, unaccounted))
            """,
            server.url,
        )
        assert "100 unaccounted 0" == child.expect("rounds", timeout=240)
        code, _ = child.finish()
        assert 0 == code, child.stderr

    def test_finalizer_logging_under_gc_pressure_never_hangs(self, server: DevServer) -> None:
        """``Client.log`` from __del__ methods that the garbage collector runs anywhere,
        including on the sender thread while it holds the buffer's lock: no hang, and
        every such line is delivered or counted."""
        child = Child(
            """
            import gc, faulthandler
            faulthandler.dump_traceback_later(40, exit=True)
            gc.set_threshold(50, 5, 5)  # collect often: on every few allocations
            from logdna_client import Client
            c = Client(flush_interval=0.01, max_batch_bytes="4KiB", max_buffer_bytes="64KiB")
            calls = [0]
            class Noisy:
                def __init__(self):
                    self.me = self  # a cycle: only the collector frees it, wherever it runs
                def __del__(self):
                    calls[0] += 1
                    c.log("from a finalizer")
            for i in range(20000):
                Noisy()
                c.log("main %d" % i)
            c.flush(30)
            gc.collect()
            c.close(30)
            s = c.stats()
            mark("stats " + json.dumps({
                "calls": calls[0], "accepted": s["accepted"], "sent": s["sent"],
                "dropped": s["dropped_total"], "after_close": s["dropped"]["after_close"]}))
            """,
            server.url,
        )
        got = json.loads(child.expect("stats", timeout=120))
        code, _ = child.finish()
        assert 0 == code, child.stderr
        assert got["calls"] > 1000
        # Every log() call: queued (then sent or dropped by reason) or dropped after close.
        assert 20000 + got["calls"] == got["accepted"] + got["after_close"]
        assert got["accepted"] == got["sent"] + got["dropped"] - got["after_close"]

    def test_finalizer_inside_the_senders_critical_section_never_hangs(
        self, server: DevServer
    ) -> None:
        """What a finalizer does when the collector runs it on the sender thread while
        the sender holds the buffer's lock (an allocation in ``take``), made certain: a
        profile hook logs at calls inside ``take``. No hang, every line delivered."""
        child = Child(
            """
            import faulthandler, threading
            faulthandler.dump_traceback_later(60, exit=True)
            from logdna_client import Client
            import logdna_client._buffer as buffer_module
            c = Client(flush_interval=0.01, max_batch_bytes="4KiB", max_buffer_bytes="1MiB")
            calls = [0]
            seen = [0]
            def as_if_a_finalizer_ran_here(frame, event, arg):
                code = frame.f_code
                if (event == "c_call" and code.co_name == "take"
                        and code.co_filename == buffer_module.__file__):
                    seen[0] += 1
                    if seen[0] % 5 == 0 and not done:
                        calls[0] += 1
                        c.log("from a finalizer")
            done = False
            threading.setprofile(as_if_a_finalizer_ran_here)  # the sender starts below
            for i in range(5000):
                c.log("main %d" % i)
            c.flush(30)
            done = True  # no more "finalizers": the last flush covers every line
            flushed = c.flush(30)
            s = c.stats()
            mark("stats " + json.dumps({"flushed": flushed, "calls": calls[0], "sent": s["sent"],
                                        "dropped": s["dropped_total"]}))
            """,
            server.url,
        )
        got = json.loads(child.expect("stats", timeout=90))
        code, _ = child.finish()
        assert 0 == code, child.stderr
        assert got["calls"] > 10
        assert got["flushed"]
        assert 0 == got["dropped"]
        assert 5000 + got["calls"] == got["sent"]


# -- exit paths against servers that never answer, trickle, or fail forever

EXIT_PATHS = {
    "implicit": "",
    "logging.shutdown": "logging.shutdown()",
    "handler.close": "handler.close()",
    "client.close": f"client.close({DEADLINE})",
    "mixed": f"""
        from logdna_client import Client, LogDNAHandler
        other = LogDNAHandler(shutdown_timeout={DEADLINE}, hostname="second")
        logging.getLogger("other").addHandler(other)
        logging.getLogger("other").warning("second handler")
        third = Client(shutdown_timeout={DEADLINE})
        third.log("third client")
        logging.shutdown()
        third.close({DEADLINE})
    """,
}


class TestExitDeadline:
    @pytest.mark.parametrize("kind", [k for k in KINDS if k != "huge"])
    @pytest.mark.parametrize("path", list(EXIT_PATHS))
    def test_every_exit_path_ends_within_the_deadline(self, kind: str, path: str) -> None:
        """From the moment the app starts to exit, the process is gone within
        shutdown_timeout + 0.5 s, whichever way it exits and whatever the server does."""
        with bad_server(kind) as bad:
            child = Child(
                f"""
                for i in range(200):
                    log.warning("exit %d", i)
                client.flush(0.3)  # a request is out when the exit begins
                mark("exiting")
                {textwrap.indent(textwrap.dedent(EXIT_PATHS[path]), " " * 16).strip()}
                """,
                bad.url,
                shutdown_timeout=str(DEADLINE),
                retry_max_backoff="0.2",
            )
            child.expect("exiting", timeout=30)
            began = time.monotonic()
            code, _ = child.finish()
            took = time.monotonic() - began
        assert 0 == code, child.stderr
        assert took < DEADLINE + SLACK, f"{path} against {kind}: {took:.2f} s"
        assert "" == child.stdout
        assert "not delivered" in child.stderr or "were dropped" in child.stderr

    def test_six_503s_at_exit_lose_nothing(self, server: DevServer) -> None:
        """A service that answers 503 six times, then works, gets all 2,000 lines of a
        process that logs them and exits at once (retries fit the time left)."""
        server.fail_next(6, 503)
        child = Child(
            """
            for i in range(2000):
                log.info("exit burst %d", i)
            """,
            server.url,
        )
        code, _ = child.finish(timeout=60)
        assert 0 == code, child.stderr
        assert_exactly_once_in_order([f"exit burst {i}" for i in range(2000)], texts(server))

    def test_close_message_names_the_deadline_used(self, caplog: pytest.LogCaptureFixture) -> None:
        """close(0.2) against a server that never answers says "0.2 s", not the default."""
        with bad_server("silent") as bad:
            client = Client(url=bad.url, flush_interval=0.01)
            client.log("never arrives")
            with caplog.at_level(logging.ERROR, logger="logdna_client"):
                client.close(0.2)
        message = " ".join(r.getMessage() for r in caplog.records)
        assert "(0.2 s)" in message
        assert 1 == client.stats()["dropped"]["shutdown"]


class TestPermanentAnswers:
    def test_413_to_everything_stays_bounded_and_counts_once(self, server: DevServer) -> None:
        """A server answering 413 to every request gets a few dozen requests for 10,000
        lines, not 20,000; each line is counted once, as rejected."""
        server.fail_next(10**9, 413)
        client = Client(url=server.url, flush_interval=0.05, retry_max_backoff=0.2)
        for i in range(10_000):
            client.log(f"too large {i}")
        assert not client.flush(60)
        stats = client.stats()
        client.close(1)
        assert 10_000 == stats["dropped"]["rejected"]
        assert 10_000 == stats["dropped_total"]
        assert 0 == stats["queued"]
        # A few dozen on an idle machine; a busy one logs the 10,000 lines over more
        # flush intervals, so more (smaller) batches: 79-82 seen with both cores
        # saturated. Per-line retries would be over 10,000.
        assert stats["requests"] <= 200, stats["requests"]


class TestAccounting:
    def test_hostile_records_are_shipped_or_counted(self, server: DevServer) -> None:
        """Records with a NaN or string ``created``, an int ``levelname``, or a message
        that cannot be formatted each still ship a best-effort line; nothing vanishes."""
        handler = LogDNAHandler(url=server.url, flush_interval=0.05)
        log = make_logger("hostile.records", handler)
        odd = []
        for name, value in [("created", float("nan")), ("created", "yesterday"),
                            ("levelname", 20), ("created", None)]:  # fmt: skip
            record = log.makeRecord(log.name, logging.INFO, __file__, 1, f"odd {name}", (), None)
            setattr(record, name, value)
            odd.append(record)
        for record in odd:
            log.handle(record)
        log.info("cannot format %d", "not a number")
        assert handler.client.flush(10)
        got = texts(server)
        assert ["odd created", "odd created", "odd levelname", "odd created"] == got[:4]
        assert got[4].startswith("cannot format %d [logdna_client: message could not be formatted")
        stats = handler.client.stats()
        assert 5 == stats["sent"]
        assert 0 == stats["dropped_total"]
        handler.close()

    def test_queued_is_what_is_held(self) -> None:
        """While a batch is being split and partly delivered, ``queued`` counts the lines
        not yet dealt with, not the whole batch."""
        import threading

        from logdna_client._transport import Kind, Outcome

        release = threading.Event()
        blocked = threading.Event()
        delivered = [0]

        class Splitting:
            def send(self, body: bytes, *, gzipped: bool, timeout: float) -> Outcome:
                import gzip

                lines = json.loads(gzip.decompress(body) if gzipped else body)["lines"]
                if len(lines) > 100:
                    return Outcome(Kind.TOO_LARGE, 413)
                if delivered[0] >= 300:
                    blocked.set()
                    release.wait(30)
                delivered[0] += len(lines)
                return Outcome(Kind.OK, 200)

            def close(self) -> None:
                pass

        client = Client(url="http://127.0.0.1:9/logs/ingest", transport=Splitting(),
                        flush_interval=0.01)  # fmt: skip
        for i in range(1000):
            client.log(f"held {i}")
        client.flush(0)
        assert blocked.wait(30)
        assert 1000 - delivered[0] == client.stats()["queued"]
        release.set()
        assert client.flush(30)
        assert 0 == client.stats()["queued"]
        client.close(1)
