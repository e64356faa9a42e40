"""README, "Fork-safe. gunicorn --preload, Celery prefork and multiprocessing children ship
their own lines with a fresh sender and never re-send the parent's", and docs/delivery.md
("Termination signals": a framework that installs its SIGTERM handler later wins, and ends
through sys.exit, which delivers at exit), tried with the real frameworks: a gunicorn master
and its forked workers, a Celery worker and its prefork pool children, real signals, a real
local ingest server over a socket.

Every handler here has ``flush_interval=60``: nothing leaves a process on the timer while
a test runs, so what arrives was sent at the process's exit, and the parent's lines are
still in its buffer when it forks (a child that kept them would send them again).

A Celery pool child ends with os._exit (billiard's pool worker), not sys.exit: its lines
arrive because the library delivers on Celery's worker_process_shutdown signal.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from logdna_client._devserver import DevServer
from tests._children import REPO, texts

# Generous: each thing waited for takes about a second on an idle machine.
DEADLINE = 60.0
MASTER_LINES = 50

# What both apps do at import, in the parent, before any fork: a handler that ships only
# at exit (so what arrives was sent as each process ended), and the parent's own lines.
PARENT_LOGGING = f"""
handler = LogDNAHandler(flush_interval=60, shutdown_timeout=10)
log = logging.getLogger("app")
log.addHandler(handler)
log.setLevel(logging.INFO)
log.propagate = False
for i in range({MASTER_LINES}):
    log.info("master %d pid %d", i, os.getpid())
"""

WSGI_APP = """
import logging, os
from logdna_client import LogDNAHandler
{logging}

def app(environ, start_response):
    body = environ["wsgi.input"].read()  # a held request waits here for its body
    request_id = environ["QUERY_STRING"] or body.decode()
    log.info("request %s pid %d", request_id, os.getpid())
    pid = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(pid)))])
    return [pid]
"""


class _Framework:
    """A framework's main process in a child: ended by a signal, or killed."""

    proc: subprocess.Popen[bytes]

    def release(self) -> None:
        """What the test holds besides the process (a socket, an app)."""

    def stop(self, signum: int = signal.SIGTERM) -> tuple[int, float]:
        """Signal the main process (SIGTERM: gunicorn's and Celery's warm shutdown); its
        exit status and how long it took to exit."""
        sent = time.monotonic()
        self.proc.send_signal(signum)
        try:
            status = self.proc.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.proc.args!r} still running {DEADLINE} s after "
                                 f"signal {signum}") from None  # fmt: skip
        return status, time.monotonic() - sent

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.release()


class Gunicorn(_Framework):
    """``gunicorn --preload -w 2`` on a listening socket the test made (``fd://``), so
    requests queue in its backlog until a worker accepts them: no wait for start-up."""

    def __init__(self, tmp_path: Path, url: str) -> None:
        (tmp_path / "wsgi_app.py").write_text(WSGI_APP.format(logging=PARENT_LOGGING))
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        fd = self.listener.fileno()
        env = dict(os.environ, LOGDNA_URL=url, PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}")
        env.pop("LOGDNA_INGESTION_KEY", None)
        # Newer gunicorns open a control socket in the home folder: not for a test.
        from gunicorn.config import KNOWN_SETTINGS

        quiet = [s.cli[0] for s in KNOWN_SETTINGS if s.name == "control_socket_disable"]
        self.output = tmp_path / "gunicorn.log"
        with self.output.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "--preload", "-w", "2",
                 "-b", f"fd://{fd}", "--timeout", "300", "--graceful-timeout", "60",
                 *quiet, "wsgi_app:app"],
                cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, pass_fds=(fd,),
            )  # fmt: skip
        self.served: dict[str, int] = {}  # request id -> pid of the worker that served it

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def get(self, request_id: str) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=DEADLINE)
        try:
            conn.request("GET", f"/?{request_id}")
            response = conn.getresponse()
            assert 200 == response.status, self.log()
            pid = int(response.read())
        finally:
            conn.close()
        self.served[request_id] = pid
        return pid

    @contextmanager
    def held(self, request_id: str) -> Iterator[None]:
        """A request one worker holds, reading its body, while the block runs: every
        other request meanwhile goes to another worker (sync workers serve one at a time)."""
        conn = socket.create_connection(("127.0.0.1", self.port), timeout=DEADLINE)
        try:
            body = request_id.encode()
            conn.sendall(
                b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body)
            )
            seen = b""
            while b"\r\n\r\n" not in seen:  # a worker took it and is about to call the app
                chunk = conn.recv(4096)
                assert chunk, self.log()
                seen += chunk
            assert seen.startswith(b"HTTP/1.1 100"), seen
            yield
            conn.sendall(body)
            reply = b""
            while chunk := conn.recv(4096):
                reply += chunk
        finally:
            conn.close()
        head, _, pid = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), reply
        self.served[request_id] = int(pid)

    def serve_on_both_workers(self, prefix: str, n: int) -> set[int]:
        """``n`` requests plus a held one: the pids of the two workers that served them."""
        before = set(self.served)
        with self.held(f"{prefix}-held"):
            for i in range(n):
                self.get(f"{prefix}-{i}")
        pids = {pid for rid, pid in self.served.items() if rid not in before}
        assert 2 == len(pids), (self.served, self.log())
        return pids

    def release(self) -> None:
        self.listener.close()


@pytest.fixture
def gunicorn(tmp_path: Path, server: DevServer) -> Iterator[Gunicorn]:
    pytest.importorskip("gunicorn")
    g = Gunicorn(tmp_path, server.url)
    try:
        yield g
    finally:
        g.kill()


def request_lines(g: Gunicorn) -> list[str]:
    return [f"request {rid} pid {pid}" for rid, pid in g.served.items()]


def assert_each_once(expected: list[str], got: list[str], log: str) -> None:
    counts = Counter(got)
    missing = [t for t in expected if counts[t] == 0]
    dups = {t: n for t, n in counts.items() if n > 1}
    assert not dups, f"{len(dups)} lines arrived more than once, e.g. {list(dups.items())[:3]}"
    assert not missing, f"{len(missing)} lines never arrived, e.g. {missing[:3]}\n{log}"


def master_and_requests_once(server: DevServer, gunicorn: Gunicorn) -> list[str]:
    """The master's lines and every request's line arrive, each exactly once, and nothing
    else: what arrived."""
    master = [f"master {i} pid {gunicorn.proc.pid}" for i in range(MASTER_LINES)]
    expected = master + request_lines(gunicorn)
    assert server.wait_for_lines(len(expected), DEADLINE), gunicorn.log()
    got = texts(server)
    assert_each_once(expected, got, gunicorn.log())
    assert len(expected) == len(got), sorted(set(got) - set(expected))[:5]
    return got


class TestGunicornPreload:
    def test_workers_ship_their_own_lines_and_never_the_masters(
        self, gunicorn: Gunicorn, server: DevServer
    ) -> None:
        """The master logs at import (--preload) and forks two workers, each logs a line per
        request; on SIGTERM every line arrives exactly once, from both workers, sent at
        their exits (gunicorn's handlers, then sys.exit), and gunicorn exits in time."""
        workers = gunicorn.serve_on_both_workers("r", 20)
        status, took = gunicorn.stop()
        assert 0 == status, gunicorn.log()
        assert took < DEADLINE

        got = master_and_requests_once(server, gunicorn)
        for pid in workers:
            assert any(t.endswith(f" pid {pid}") for t in got), pid

    def test_graceful_restart_sighup(self, gunicorn: Gunicorn, server: DevServer) -> None:
        """SIGHUP: the master forks two new workers (its own lines still unsent) and ends the
        old ones with SIGTERM. The old workers' lines arrive when they exit, the master's
        still arrive once, after two rounds of forks, and the new workers' at SIGTERM."""
        old = gunicorn.serve_on_both_workers("old", 10)
        gunicorn.proc.send_signal(signal.SIGHUP)
        # The old workers send their lines only as they exit: all of them arriving means
        # both were ended, and delivered through gunicorn's exit.
        old_lines = request_lines(gunicorn)
        assert server.wait_for_lines(len(old_lines), DEADLINE), gunicorn.log()
        assert_each_once(old_lines, texts(server), gunicorn.log())
        new = gunicorn.serve_on_both_workers("new", 10)
        assert not new & old, (new, old)
        status, _ = gunicorn.stop()
        assert 0 == status, gunicorn.log()

        master_and_requests_once(server, gunicorn)


CELERY_TASKS = """
import logging, os, socket
from celery import Celery
from logdna_client import LogDNAHandler

app = Celery("celery_tasks")
app.conf.update({config!r})
{logging}

@app.task(name="log_line")
def log_line(task_id):
    log.info("task %s pid %d", task_id, os.getpid())
    return os.getpid()

@app.task(name="held")
def held(task_id, port):
    # Keeps this pool child busy until the test says go: the other child takes the rest.
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(b"held")
        conn.recv(16)
    log.info("task %s pid %d", task_id, os.getpid())
    return os.getpid()
"""


def celery_config(data: Path) -> dict[str, object]:
    """A broker and a result store in files: no server to run."""
    for name in ("queue", "processed", "results", "control"):
        (data / name).mkdir(exist_ok=True)
    queue = str(data / "queue")
    return {
        "broker_url": "filesystem://",
        "broker_transport_options": {
            "data_folder_in": queue,
            "data_folder_out": queue,
            "processed_folder": str(data / "processed"),
            "control_folder": str(data / "control"),  # else ./control in the cwd
        },
        "result_backend": f"file://{data / 'results'}",
        "worker_hijack_root_logger": False,
    }


class CeleryWorker(_Framework):
    """``celery worker -P prefork -c 2`` in a child process, and an app to send it tasks."""

    def __init__(self, tmp_path: Path, url: str, *options: str) -> None:
        celery = pytest.importorskip("celery")
        config = celery_config(tmp_path)
        (tmp_path / "celery_tasks.py").write_text(
            CELERY_TASKS.format(config=config, logging=PARENT_LOGGING)
        )
        env = dict(os.environ, LOGDNA_URL=url, PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}")
        env.pop("LOGDNA_INGESTION_KEY", None)
        self.output = tmp_path / "celery.log"
        with self.output.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "celery_tasks", "worker",
                 "-P", "prefork", "-c", "2", "-O", "fair", "--loglevel", "INFO",
                 "--without-gossip", "--without-mingle", "--without-heartbeat", *options],
                cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        self.app = celery.Celery("sender")
        self.app.conf.update(config)
        self.served: dict[str, int] = {}  # task id -> pid of the pool child that ran it

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def run(self, prefix: str, n: int) -> None:
        results = {f"{prefix}-{i}": self.app.send_task("log_line", args=[f"{prefix}-{i}"])
                   for i in range(n)}  # fmt: skip
        for task_id, result in results.items():
            self.served[task_id] = int(result.get(timeout=DEADLINE))

    def run_on_both_children(self, prefix: str, n: int) -> set[int]:
        """``n`` tasks while one child runs a held task: the pids of the children that ran
        them, two or more (more where children are replaced as they go)."""
        before = set(self.served)
        with socket.socket() as gate:
            gate.bind(("127.0.0.1", 0))
            gate.listen(1)
            gate.settimeout(DEADLINE)
            task_id = f"{prefix}-held"
            result = self.app.send_task("held", args=[task_id, gate.getsockname()[1]])
            try:
                conn, _ = gate.accept()
            except TimeoutError:
                raise AssertionError(f"the held task never started\n{self.log()}") from None
            with conn:
                conn.settimeout(DEADLINE)
                assert b"held" == conn.recv(16)
                self.run(prefix, n)
                conn.sendall(b"go")
            self.served[task_id] = int(result.get(timeout=DEADLINE))
        pids = {pid for tid, pid in self.served.items() if tid not in before}
        assert len(pids) >= 2, (self.served, self.log())
        return pids

    def release(self) -> None:
        self.app.close()


# Pool children that live until the worker stops; children replaced every two tasks.
CELERY_POOLS = {"two-children": (), "max-tasks-per-child": ("--max-tasks-per-child", "2")}


@pytest.fixture(params=list(CELERY_POOLS))
def celery_worker(
    request: pytest.FixtureRequest, tmp_path: Path, server: DevServer
) -> Iterator[CeleryWorker]:
    w = CeleryWorker(tmp_path, server.url, *CELERY_POOLS[request.param])
    try:
        yield w
    finally:
        w.kill()


class TestCeleryPrefork:
    def test_pool_children_ship_their_own_lines_and_never_the_parents(
        self, celery_worker: CeleryWorker, server: DevServer
    ) -> None:
        """The worker's main process logs at import and forks two pool children (or more,
        replaced every two tasks), each logs a line per task; after SIGTERM (warm shutdown)
        every line arrives exactly once, from every child, though a pool child ends with
        os._exit (billiard's pool worker): the library delivers on Celery's
        worker_process_shutdown. The main process's lines arrive once."""
        children = celery_worker.run_on_both_children("t", 20)
        status, took = celery_worker.stop()
        assert 0 == status, celery_worker.log()
        assert took < DEADLINE

        master = [f"master {i} pid {celery_worker.proc.pid}" for i in range(MASTER_LINES)]
        tasks = [f"task {tid} pid {pid}" for tid, pid in celery_worker.served.items()]
        expected = master + tasks
        assert server.wait_for_lines(len(expected), DEADLINE), celery_worker.log()
        got = texts(server)
        assert_each_once(expected, got, celery_worker.log())
        assert len(expected) == len(got), sorted(set(got) - set(expected))[:5]
        for pid in children:
            assert any(t.endswith(f" pid {pid}") for t in got), pid
