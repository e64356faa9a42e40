"""Child interpreters for process-level tests: a script runs with one LogDNAHandler
on a logger, talks to the test over stdin and stderr, and is waited for with
deadlines (never sleeps)."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter

from logdna_client._devserver import DevServer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The library's report on stderr of lines a process's end lost, in each wording it has
# (logdna_client/_client.py): the sender's own at the deadline ("N lines could not be
# delivered before the shutdown deadline ... and were dropped"), a waiter's when the
# sender had not ended by the deadline's grace ("the log service did not answer within
# the shutdown deadline (...); N lines were not delivered": on a loaded machine, where
# a test that asked for the first wording alone failed), lines dropped for other
# reasons ("N lines were dropped while delivering at exit"), and lines a thread logged
# once the ending had begun ("N lines logged while the process was ending were dropped").
_EXIT_LOSS = re.compile(
    r"logdna_client: .*?\b(\d+) lines (?:could not be|were not) delivered|"
    r"logdna_client: (\d+) lines were dropped while delivering|"
    r"logdna_client: (\d+) lines logged while the process was ending were dropped"
)


def losses_said(stderr: str) -> list[int]:
    """The numbers of lines the library said on ``stderr`` a process's end lost."""
    return [int(a or b or c) for a, b, c in _EXIT_LOSS.findall(stderr)]


# Run at the top of every child script: a logger with one LogDNAHandler whose
# options come from the FAULT_OPTS environment variable, and a tiny protocol:
# ``mark(text)`` writes "@@text" on stderr, ``wait_for(word)`` reads stdin.
_PRELUDE = """
import json, logging, os, signal, sys, time
from logdna_client import LogDNAHandler

# The tests are about the signals' default dispositions; a runner started in the
# background or under nohup passes some on ignored (which the library rightly leaves
# alone). A test of that case sets CHILD_KEEP_SIGNALS.
if not os.environ.get("CHILD_KEEP_SIGNALS"):
    for _name in ("SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM"):
        _signum = getattr(signal, _name, None)
        if _signum is not None and signal.getsignal(_signum) is signal.SIG_IGN:
            signal.signal(_signum, signal.SIG_DFL)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)

def mark(text):
    sys.stderr.write("@@" + text + "\\n")
    sys.stderr.flush()

def wait_for(word):
    line = sys.stdin.readline().strip()
    if line != word:
        raise SystemExit(f"expected {word!r} on stdin, got {line!r}")

handler = LogDNAHandler(**json.loads(os.environ.get("FAULT_OPTS", "{}")))
client = handler.client
log = logging.getLogger("app")
log.addHandler(handler)
log.setLevel(logging.INFO)
log.propagate = False
"""

# Child code for a script whose main thread goes on after a signal's handler returned
# while a thread of the library's waits for the delivery and then ends the process
# (``_exit._end_by``): that thread ends it only once the main thread called
# ``went_on.set()``, so the mark the main thread makes before is seen however the
# threads are scheduled. Without it, a main thread held up 50 ms (a loaded machine)
# let the delivery of 100 lines end the process first: "child ended before @@went on".
ENDS_AFTER_MAIN_WENT_ON = """
import threading
from logdna_client import _exit
went_on = threading.Event()
_end_by = _exit._end_by
def _end_by_once_main_went_on(signum):
    if threading.current_thread() is not threading.main_thread():
        went_on.wait(60)
    _end_by(signum)
_exit._end_by = _end_by_once_main_went_on
"""


def watcher_looks_late(event: str, seconds: int) -> str:
    """Child code: the library's signal watcher (its "logdna_client-signals" thread)
    looks at the handler in force only once the script's ``threading.Event`` named
    ``event`` is set (``seconds`` at most): the moment a loaded machine may first let
    it look. The script has imported signal, threading and ``_exit``, and made
    ``event``, before this code."""
    return f"""\
class LateWatcher:  # _exit's signal module, as the watcher thread sees it
    def __getattr__(self, name):
        return getattr(signal, name)
    def getsignal(self, signum):
        if threading.current_thread().name == "logdna_client-signals":
            {event}.wait({seconds})
        return signal.getsignal(signum)
_exit.signal = LateWatcher()
"""


class Child:
    """A child interpreter running a test script; stderr is read as it comes."""

    def __init__(
        self, code: str, url: str, env: dict[str, str] | None = None, **options: str
    ) -> None:
        env = dict(
            os.environ, LOGDNA_URL=url, PYTHONPATH=REPO, FAULT_OPTS=json.dumps(options),
            **(env or {}),
        )  # fmt: skip
        env.pop("LOGDNA_INGESTION_KEY", None)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _PRELUDE + textwrap.dedent(code)],
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.stderr_lines: list[str] = []
        self._stdout: list[str] = []
        self.stdout = ""
        self._readers = [
            threading.Thread(target=self._read_stderr, daemon=True),
            threading.Thread(target=self._read_stdout, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._lines.put(line)
        self._lines.put(None)

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        self._stdout.append(self.proc.stdout.read())

    def expect(self, marker: str, timeout: float = 30.0) -> str:
        """Wait for the child to ``mark(marker ...)``; return the rest of that line."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no @@{marker} within {timeout} s: {self.stderr_lines}")
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"child ended before @@{marker}: {self.stderr_lines}")
            self.stderr_lines.append(line)
            if line.startswith("@@" + marker):
                return line[len(marker) + 2 :].strip()

    def kill(self, signum: int) -> float:
        """Send ``signum`` to the child; returns when it was sent (monotonic)."""
        self.proc.send_signal(signum)
        return time.monotonic()

    def send(self, word: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(word + "\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float = 30.0) -> tuple[int, float]:
        """Wait for exit; return the exit status and seconds since start."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        elapsed = time.monotonic() - self.started
        for reader in self._readers:
            reader.join(5)
        while True:
            line = self._lines.get(timeout=1)
            if line is None:
                break
            self.stderr_lines.append(line)
        self.stdout = "".join(self._stdout)
        return self.proc.returncode, elapsed

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)


def texts(server: DevServer) -> list[str]:
    return [x["line"] for x in server.lines]


def assert_exactly_once_in_order(expected: list[str], got: list[str]) -> None:
    """Every expected line arrived once, in the order logged (other lines ignored)."""
    wanted = set(expected)
    mine = [t for t in got if t in wanted]
    dups = {t: n for t, n in Counter(mine).items() if n > 1}
    assert not dups, f"{len(dups)} duplicated, e.g. {list(dups.items())[:3]}"
    missing = wanted - set(mine)
    assert not missing, f"{len(missing)} missing, e.g. {sorted(missing)[:3]}"
    assert expected == mine
