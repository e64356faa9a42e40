"""Process ends the other tests leave out, in real child processes with real signals against
the real devserver (an adversarial review: only the last broke a promise, the others stay
so that none does later).

- SIGKILL again and again through the whole client (sender, spool, adoption), two
  processes at a time on one folder, against a service that fails half its requests: every
  line logged a moment before its kill arrives through a later process.
- An application's SIGTERM handler set after the library's: one that logs and passes the
  signal on to ours, and one that logs and calls ``sys.exit`` wherever it lands in a tight
  logging loop (both handle paths).
- SIGTERM at a random point of a tight logging loop with the spool on and the service down:
  every line logged before the signal is on disk, and the next process sends each once.
- ``concurrent.futures.ProcessPoolExecutor`` (fork, spawn, forkserver) with the service down
  and the spool on, and ``Pool(maxtasksperchild=...)``: every line a worker logged arrives once.
- Lines an ending leaves in the spool are counted on stderr where no logging is configured
  (docs/spool.md: "the exit report says how many lines were left there"; it said nothing).
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from logdna_client._devserver import DevServer
from tests._children import REPO, Child, texts
from tests.test_spool import segments

#: A line logged this long before its process was killed must survive the kill
#: (flush_interval is 0.05 s: generous, for a machine whose cores are busy).
SAFE_AGE = 1.0

# Logs "<run> <n>" at about 2,000 lines a second, marking how far it got every 50 lines.
_LOGGING = """
run = os.environ["RUN"]
pace = __import__("threading").Event()  # never set: waiting on it is the app's own pause
i = 0
start = time.monotonic()
while True:
    log.info("%s %d", run, i)
    i += 1
    if i % 50 == 0:
        mark("at %d" % i)
        ahead = start + i / 2000 - time.monotonic()
        if ahead > 0:
            pace.wait(ahead)
"""

# Logs "<run> <n>" as fast as it can, marking how far it got every 100 lines.
_TIGHT = """
run = os.environ.get("RUN", "l")
i = 0
while True:
    log.info("%s %d", run, i)
    i += 1
    if i % 100 == 0:
        mark("at %d" % i)
"""

_REPLAYER = """
from logdna_client import Client
c = Client(spool_dir=os.environ["SPOOL"], flush_interval=0.05)
c.log("replayer up")  # a process that logs starts its sender, which replays
mark("flushed " + str(c.flush(90)))
c.close(10)
"""


def _replay(server: DevServer, spool: Path) -> None:
    child = Child(_REPLAYER, server.url, env={"SPOOL": str(spool)})
    assert "True" == child.expect("flushed", timeout=120), child.stderr
    code, _ = child.finish()
    assert 0 == code, child.stderr
    assert [] == segments(spool)


def _numbers(got: Counter[str], run: str) -> Counter[int]:
    return Counter({int(t.split()[1]): n for t, n in got.items() if t.split()[0] == run})


def _clean(child: Child) -> None:
    assert "Traceback" not in child.stderr, child.stderr
    assert "" == child.stdout


class TestKilledAgainAndAgain:
    def test_two_processes_at_a_time_killed_ten_times_lose_nothing_old(
        self, server: DevServer, tmp_path: Path
    ) -> None:
        """Ten rounds of two processes logging into one spool folder at once, each killed
        with SIGKILL at a random moment (each adopting and replaying what the ones before
        left, against a service that fails half its requests): afterwards every line logged
        SAFE_AGE before its kill arrives, every line that arrives was logged, nothing is left
        on disk, and a line arrives more than once only as the batch a kill interrupted."""
        rng = random.Random(131)
        spool = tmp_path / "spool"
        server.set_fail_rate(0.5)
        safe: dict[str, int] = {}

        def one(run: str, wait: float) -> None:
            child = Child(
                _LOGGING, server.url, env={"RUN": run}, spool_dir=str(spool),
                flush_interval="0.05", retry_max_backoff="0.5", shutdown_timeout="1",
            )  # fmt: skip
            marks: list[tuple[int, float]] = []
            while not marks or time.monotonic() - marks[0][1] < wait:
                marks.append((int(child.expect("at", timeout=60)), time.monotonic()))
            killed = child.kill(signal.SIGKILL)
            code, _ = child.finish()
            assert -signal.SIGKILL == code, child.stderr
            _clean(child)
            safe[run] = max((n for n, at in marks if at <= killed - SAFE_AGE), default=0)

        errors: list[BaseException] = []

        def guarded(run: str, wait: float) -> None:
            try:
                one(run, wait)
            except BaseException as exc:  # reported by the test's thread below
                errors.append(exc)

        runs = []
        for round_ in range(10):
            pair = [f"r{round_}a", f"r{round_}b"]
            threads = [
                threading.Thread(target=guarded, args=(run, rng.uniform(0.3, 2.5))) for run in pair
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)
            assert not errors, errors
            runs += pair
        server.set_fail_rate(0)
        _replay(server, spool)

        got = Counter(texts(server))
        kills = len(runs)
        for run in runs:
            numbers = _numbers(got, run)
            missing = [n for n in range(safe[run]) if n not in numbers]
            assert [] == missing[:5], (run, safe[run], len(missing))
            assert max(numbers.values(), default=1) <= 1 + kills, run
        ours = [t for t in got if re.fullmatch(r"r\d+[ab] \d+", t)]
        assert len(ours) >= sum(safe.values())
        assert all(t.split()[0] in safe for t in ours)


# An application's SIGTERM handler, set after the library took the signal.
_PASSES_IT_ON = """
ours = signal.getsignal(signal.SIGTERM)
def mine(signum, frame):
    log.warning("app got SIGTERM")
    ours(signum, frame)
signal.signal(signal.SIGTERM, mine)
"""
_EXITS = """
def mine(signum, frame):
    log.warning("app got SIGTERM")
    sys.exit(0)
signal.signal(signal.SIGTERM, mine)
"""


class TestAnApplicationsHandlerSetAfterOurs:
    def test_one_that_logs_and_passes_it_on_delivers_and_ends_by_the_signal(
        self, server: DevServer
    ) -> None:
        child = Child(
            _PASSES_IT_ON
            + 'for i in range(1000):\n    log.info("before %d", i)\nmark("ready")\n'
            + 'wait_for("never")\n',
            server.url,
            flush_interval="60",
        )
        child.expect("ready")
        child.kill(signal.SIGTERM)
        code, _ = child.finish()
        assert -signal.SIGTERM == code, child.stderr
        assert [f"before {i}" for i in range(1000)] + ["app got SIGTERM"] == texts(server)
        _clean(child)

    def test_one_that_logs_and_exits_wherever_it_lands(
        self, server: DevServer, handle_path: str
    ) -> None:
        """Landing at a random point of a tight logging loop (inside the handler's emit as
        often as not): exit status 0, every line logged before it arrives once and in order
        with no gap, and the handler's own line too."""
        rng = random.Random(7)
        for round_ in range(5):
            run = f"r{round_}"
            child = Child(_EXITS + _TIGHT, server.url, env={"RUN": run})
            seen = 0
            for _ in range(rng.randint(1, 30)):
                seen = int(child.expect("at"))
            child.kill(signal.SIGTERM)
            code, _ = child.finish()
            assert 0 == code, child.stderr
            _clean(child)
            got = Counter(texts(server))
            numbers = _numbers(got, run)
            assert 1 == max(numbers.values())
            assert sorted(numbers) == list(range(len(numbers)))
            assert len(numbers) >= seen
            assert round_ + 1 == got["app got SIGTERM"]


class TestSigtermWithTheSpoolAndTheServiceDown:
    def test_every_line_logged_before_the_signal_is_sent_once_by_the_next_process(
        self, server: DevServer, tmp_path: Path, handle_path: str
    ) -> None:
        rng = random.Random(17)
        spool = tmp_path / "spool"
        server.go_down()
        seen: dict[str, int] = {}
        for round_ in range(5):
            run = f"r{round_}"
            child = Child(
                _TIGHT, server.url, env={"RUN": run}, spool_dir=str(spool),
                flush_interval="0.1", shutdown_timeout="1",
            )  # fmt: skip
            for _ in range(rng.randint(1, 60)):
                seen[run] = int(child.expect("at"))
            child.kill(signal.SIGTERM)
            code, _ = child.finish()
            assert -signal.SIGTERM == code, child.stderr
            _clean(child)
        server.come_up()
        _replay(server, spool)
        got = Counter(texts(server))
        for run, at_least in seen.items():
            numbers = _numbers(got, run)
            assert 1 == max(numbers.values()), run
            assert sorted(numbers) == list(range(len(numbers))), run
            assert len(numbers) >= at_least, run


_POOLS = """
import logging, os, sys, multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from logdna_client import LogDNAHandler

log = logging.getLogger("app")
log.setLevel(logging.INFO)
log.propagate = False

def init():
    log.addHandler(LogDNAHandler(
        flush_interval=60, shutdown_timeout=1, spool_dir=os.environ.get("SPOOL") or None))

def work(k):
    for i in range(100):
        log.info("w%d %d", k, i)
    return k

if __name__ == "__main__":
    how, method = sys.argv[1], sys.argv[2]
    ctx = mp.get_context(method)
    if how == "executor":
        executor = ProcessPoolExecutor(4, mp_context=ctx, initializer=init)
        assert list(range(40)) == list(executor.map(work, range(40)))
        executor.shutdown()
    else:
        with ctx.Pool(3, initializer=init, maxtasksperchild=2) as pool:
            assert list(range(40)) == pool.map(work, range(40), chunksize=1)
"""


def _run_pool(tmp_path: Path, server: DevServer, how: str, method: str, spool: str) -> None:
    script = tmp_path / "pools.py"
    script.write_text(textwrap.dedent(_POOLS))
    env = dict(os.environ, LOGDNA_URL=server.url, PYTHONPATH=REPO, SPOOL=spool)
    env.pop("LOGDNA_INGESTION_KEY", None)
    done = subprocess.run(
        [sys.executable, str(script), how, method], env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert 0 == done.returncode, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "" == done.stdout


def _every_worker_line_once(server: DevServer) -> None:
    got = Counter(t for t in texts(server) if t.startswith("w"))
    assert {f"w{k} {i}" for k in range(40) for i in range(100)} == set(got)
    assert {1} == set(got.values())


class TestProcessPools:
    @pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
    def test_executor_workers_leave_their_lines_on_disk_for_the_next_process(
        self, server: DevServer, tmp_path: Path, method: str
    ) -> None:
        """ProcessPoolExecutor's workers end by returning from their loop (the
        multiprocessing finalizer, not atexit): with the service down every line goes to
        the spool within the deadline, and the next process sends each once."""
        spool = tmp_path / "spool"
        server.go_down()
        _run_pool(tmp_path, server, "executor", method, str(spool))
        server.come_up()
        _replay(server, spool)
        _every_worker_line_once(server)

    @pytest.mark.parametrize("method", ["fork", "spawn"])
    def test_pool_workers_replaced_by_maxtasksperchild_deliver(
        self, server: DevServer, tmp_path: Path, method: str
    ) -> None:
        _run_pool(tmp_path, server, "pool", method, "")
        _every_worker_line_once(server)


# Logs HELD lines with the service down and the spool on, then ends as the test says
# (no logging configuration of its own: the library's logger shows nothing).
_LEAVES_ON_DISK = """
for i in range(1000):
    log.info("l %d", i)
if os.environ.get("CLOSE"):
    client.close()
    mark("closed")
mark("ready")
if os.environ.get("WAIT"):
    wait_for("never")
"""


class TestLinesLeftInTheSpoolAreSaid:
    @pytest.mark.parametrize("ending", ["exit", "SIGTERM"])
    def test_the_exit_says_how_many_on_stderr(
        self, server: DevServer, tmp_path: Path, ending: str
    ) -> None:
        """docs/spool.md: at the deadline "the exit report says how many lines were left
        there". With no logging configured, the library's WARNING went nowhere and the
        exit said nothing at all (a loss is said on stderr then: this is the count of lines
        the next process must deliver, and where they wait)."""
        spool = tmp_path / "spool"
        server.go_down()
        child = Child(
            _LEAVES_ON_DISK, server.url, env={"WAIT": "1" if ending == "SIGTERM" else ""},
            spool_dir=str(spool), shutdown_timeout="1", flush_interval="0.1",
        )  # fmt: skip
        child.expect("ready")
        if ending == "SIGTERM":
            child.kill(signal.SIGTERM)
        code, _ = child.finish()
        assert (-signal.SIGTERM if ending == "SIGTERM" else 0) == code, child.stderr
        _clean(child)
        said = f"logdna_client: 1000 line(s) left in the spool at {spool} for the next process"
        assert 1 == child.stderr.count(said), child.stderr
        server.come_up()
        _replay(server, spool)
        assert [f"l {i}" for i in range(1000)] == [t for t in texts(server) if t[:2] == "l "]

    def test_an_applications_close_says_nothing_on_stderr(
        self, server: DevServer, tmp_path: Path
    ) -> None:
        """A close() while the process goes on is no ending: the count goes to the
        library's logger only, as every report does."""
        server.go_down()
        child = Child(
            _LEAVES_ON_DISK, server.url, env={"CLOSE": "1", "WAIT": "1"},
            spool_dir=str(tmp_path / "spool"), shutdown_timeout="1", flush_interval="0.1",
        )  # fmt: skip
        child.expect("closed")
        child.expect("ready")
        assert not [line for line in child.stderr_lines if "left in the spool" in line]
        child.kill(signal.SIGTERM)
        child.finish()
        assert "left in the spool" not in child.stderr, child.stderr
