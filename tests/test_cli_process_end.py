"""``pipe`` and ``devserver`` stopped by a real SIGTERM or SIGINT while lines flow.

Each command runs as a child process, fed without pause, and is sent the signal once
it has shown a good number of lines. Then it must exit with the status it promises and
have lost nothing it showed: every line ``pipe`` passed through is delivered, once, in
order; every line the devserver answered 200 for is in its tail and in its count.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import IO

import orjson
import pytest
import requests

from logdna_client._devserver import DevServer
from tests._children import REPO

#: Lines shown before the signal is sent: the flow is well under way by then.
SHOWN_BEFORE_SIGNAL = 2_000
#: Lines a feeder writes at most (then it waits to be stopped): the buffer always has
#: room for them all, so none may be dropped for want of it.
MAX_LINES = 20_000
SIGNALS = [signal.SIGTERM, signal.SIGINT]
#: pipe also passes on SIGHUP (a supervisor's reload or stop, the terminal closing).
PIPE_SIGNALS = [*SIGNALS, signal.SIGHUP]


def child_env(url: str | None = None) -> dict[str, str]:
    """This environment, free of stray LOGDNA_ settings, shipping to ``url``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGDNA_")}
    env.update(PYTHONPATH=REPO, NO_COLOR="1")
    if url is not None:
        env["LOGDNA_URL"] = url
    return env


class Lines:
    """A child's stream read line by line on a thread; ``reached(n)`` waits for n lines."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.lines: list[bytes] = []
        self._changed = threading.Condition()
        self._ended = False
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[bytes]) -> None:
        for raw in stream:
            with self._changed:
                self.lines.append(raw.rstrip(b"\n"))
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def reached(self, n: int, timeout: float = 60) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self.lines) >= n or self._ended, timeout)

    def said(self, text: bytes, timeout: float = 60) -> bool:
        """Whether a line holding ``text`` came (waiting up to ``timeout`` seconds)."""

        def found() -> bool:
            return any(text in line for line in self.lines)

        with self._changed:
            return self._changed.wait_for(lambda: found() or self._ended, timeout) and found()

    def all(self, timeout: float = 60) -> list[bytes]:
        """Every line, once the stream ended."""
        with self._changed:
            assert self._changed.wait_for(lambda: self._ended, timeout), "stream still open"
            return list(self.lines)


# Puts SIGINT and SIGHUP back to their default, then runs the interpreter with the rest
# of its arguments (an exec keeps a default disposition; no preexec_fn, which is unsafe
# with the test's server threads running).
_DEFAULT_SIGNALS_THEN_RUN = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
signal.signal(signal.SIGHUP, signal.SIG_DFL)
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
"""


@contextlib.contextmanager
def started(
    args: list[str], env: dict[str, str], script: str | None = None, **kwargs: object
) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m logdna_client ARGS`` (or ``python -c SCRIPT``) in a new session, with
    SIGINT and SIGHUP at their default: a suite run under nohup or in the background
    passes them on ignored, and pipe honours an ignored SIGHUP (its own test sets one
    with ``preexec_fn``)."""
    command = ["-m", "logdna_client", *args] if script is None else ["-c", script]
    if "preexec_fn" not in kwargs:
        command = ["-c", _DEFAULT_SIGNALS_THEN_RUN, *command]
    proc = subprocess.Popen(
        [sys.executable, *command], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, start_new_session=True, **kwargs,  # type: ignore[call-overload]
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def numbered(lines: list[bytes]) -> list[int]:
    return [int(line.removeprefix(b"line ")) for line in lines]


#: Writes numbered lines without pause, in writes a pipe takes whole (under PIPE_BUF),
#: then waits to be stopped. SIGINT and SIGHUP at their default (a runner in the background
#: or under nohup passes them on ignored): it ends by the signal pipe passes on.
FEEDER = f"""
import signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
signal.signal(signal.SIGHUP, signal.SIG_DFL)
out = sys.stdout.buffer
for start in range(0, {MAX_LINES}, 100):
    out.write(b"".join(b"line %d\\n" % i for i in range(start, start + 100)))
    out.flush()
signal.pause()
"""


class TestPipe:
    @pytest.mark.parametrize("sig", PIPE_SIGNALS, ids=lambda s: s.name)
    def test_a_command_stopped_mid_flow_loses_nothing_it_showed(
        self, server: DevServer, sig: signal.Signals
    ) -> None:
        """The signal goes on to the command, which ends by it: pipe exits 128+N, and
        every line it passed through was delivered, once, in order."""
        args = ["pipe", "--timeout", "60", "--", sys.executable, "-c", FEEDER]
        with started(args, child_env(server.url)) as proc:
            assert proc.stdout is not None and proc.stderr is not None
            shown = Lines(proc.stdout)
            assert shown.reached(SHOWN_BEFORE_SIGNAL)
            proc.send_signal(sig)
            assert 128 + sig == proc.wait(60)
            lines = shown.all()
            errors = proc.stderr.read()
        assert SHOWN_BEFORE_SIGNAL <= len(lines)
        assert list(range(len(lines))) == numbered(lines)
        assert server.wait_for_lines(len(lines), 30), errors
        assert [line.decode() for line in lines] == [x["line"] for x in server.lines]
        assert b"not delivered" not in errors

    def test_a_sighup_ignored_when_it_started_stays_ignored(self, server: DevServer) -> None:
        """Under nohup (SIGHUP ignored when pipe starts) SIGHUP neither stops pipe nor
        reaches the command; a SIGTERM after it still does: exit 143, not 129."""

        def nohup() -> None:
            signal.signal(signal.SIGHUP, signal.SIG_IGN)

        args = ["pipe", "--timeout", "60", "--", sys.executable, "-c", FEEDER]
        with started(args, child_env(server.url), preexec_fn=nohup) as proc:
            assert proc.stdout is not None
            shown = Lines(proc.stdout)
            assert shown.reached(SHOWN_BEFORE_SIGNAL)
            proc.send_signal(signal.SIGHUP)
            proc.send_signal(signal.SIGTERM)
            assert 128 + signal.SIGTERM == proc.wait(60)
            lines = shown.all()
        assert server.wait_for_lines(len(lines), 30)

    @pytest.mark.parametrize("sig", PIPE_SIGNALS, ids=lambda s: s.name)
    def test_stdin_stopped_mid_flow_loses_nothing_it_showed(
        self, server: DevServer, sig: signal.Signals
    ) -> None:
        """pipe reading stdin that never pauses: exit 128+N, and every line it echoed
        was delivered, once, in order."""
        with started(
            ["pipe", "--timeout", "60"], child_env(server.url), stdin=subprocess.PIPE
        ) as proc:
            assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
            shown = Lines(proc.stdout)
            feed = proc.stdin

            def write() -> None:
                with contextlib.suppress(OSError):  # pipe ended: the rest is not read
                    for start in range(0, MAX_LINES, 100):
                        feed.write(b"".join(b"line %d\n" % i for i in range(start, start + 100)))
                        feed.flush()

            writer = threading.Thread(target=write, daemon=True)
            writer.start()
            assert shown.reached(SHOWN_BEFORE_SIGNAL)
            proc.send_signal(sig)
            assert 128 + sig == proc.wait(60)
            lines = shown.all()
            errors = proc.stderr.read()
            writer.join(30)
        assert SHOWN_BEFORE_SIGNAL <= len(lines)
        assert list(range(len(lines))) == numbered(lines)
        assert server.wait_for_lines(len(lines), 30), errors
        assert [line.decode() for line in lines] == [x["line"] for x in server.lines]
        assert b"not delivered" not in errors


#: pipe reading stdin, with more input arriving just after it delivered what it read
#: (as a feeder that never pauses makes happen now and then): it waits until the pump
#: thread has dealt with that input, by showing it or by ending.
LATE_INPUT = """
import os, sys, threading
from logdna_client import _cli, _cli_pipe

Pump = _cli_pipe._StreamPump
dealt_with = threading.Event()
real_pass_through, real_run, real_deliver = Pump._pass_through, Pump.run, _cli_pipe._deliver

def pass_through(self, chunk):
    real_pass_through(self, chunk)
    if b"late" in chunk:
        dealt_with.set()

def run(self):
    try:
        real_run(self)
    finally:
        dealt_with.set()

def deliver(*args):
    delivered = real_deliver(*args)
    os.write(int(sys.argv[1]), b"late\\n")
    assert dealt_with.wait(60)
    return delivered

Pump._pass_through, Pump.run, _cli_pipe._deliver = pass_through, run, deliver
sys.exit(_cli.main(["pipe"]))
"""


def test_pipe_shows_no_line_it_read_after_delivering(server: DevServer) -> None:
    """Stopped by SIGTERM, pipe delivers what it read, and its reading thread reads
    on: a line it read after that was shown and never delivered, and said nowhere.
    Now it is neither shown nor shipped (what pipe shows, it delivers)."""
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-c", LATE_INPUT, str(write_end)], env=child_env(server.url),
        stdin=read_end, stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(write_end,),
    )  # fmt: skip
    os.close(read_end)
    try:
        os.write(write_end, b"first\n")
        assert proc.stdout is not None
        assert b"first\n" == proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        rest, errors = proc.communicate(timeout=60)
    finally:
        os.close(write_end)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert 128 + signal.SIGTERM == proc.returncode, errors
    shown = ["first", *rest.decode().splitlines()]
    assert server.wait_for_lines(len(shown), 10)
    assert shown == [x["line"] for x in server.lines]


@contextlib.contextmanager
def posting(url: str) -> Iterator[list[int]]:
    """Four clients post batches of numbered lines to ``url`` without pause, until the
    block ends or the server stops answering; yields the ids of lines answered 200."""
    acknowledged: list[int] = []
    stop = threading.Event()

    def post(client: int) -> None:
        session = requests.Session()
        n = 0
        with contextlib.suppress(requests.RequestException):
            while not stop.is_set() and n < MAX_LINES:
                ids = [client * MAX_LINES + n + i for i in range(50)]
                n += 50
                body = {"lines": [{"line": f"line {i}"} for i in ids]}
                answer = session.post(url, params={"hostname": "t"}, json=body, timeout=30)
                if answer.status_code == 200:
                    acknowledged.extend(ids)

    clients = [threading.Thread(target=post, args=(c,), daemon=True) for c in range(4)]
    for client in clients:
        client.start()
    try:
        yield acknowledged
    finally:
        stop.set()
        for client in clients:
            client.join(60)


def ingest_url(notices: Lines) -> str:
    """The ingest URL the devserver's banner names."""
    assert notices.reached(1)
    found = re.search(rb"(http://\S+/logs/ingest)", notices.lines[0])
    assert found is not None, notices.lines
    return found.group(1).decode()


#: The devserver command, in a child that holds one request between reading its body
#: and taking its lines (a big body parsed on a loaded machine) until told on stdin,
#: and that, once the command returned, waits for stdin to close and for its
#: connection threads before it exits (an app that serves one does not end at once).
HELD_DEVSERVER = """
import sys, threading
from logdna_client import _cli
from logdna_client.devserver import _body

parse, go, inside = _body.parse_lines, threading.Event(), []

def held_parse(body):
    if b"held" in body:
        inside.append(threading.current_thread())
        sys.stderr.write("@@parsing\\n")
        sys.stderr.flush()
        go.wait()
    return parse(body)

def commands():
    sys.stdin.readline()
    go.set()
    sys.stdin.read()

_body.parse_lines = held_parse
reader = threading.Thread(target=commands, daemon=True)
reader.start()
status = _cli.main(["devserver", "--port", "0", "--json"])
reader.join()
for thread in inside:
    thread.join(60)
sys.exit(status)
"""


class TestDevserver:
    @pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
    def test_stopped_under_load_counts_and_shows_every_line_it_took(
        self, sig: signal.Signals
    ) -> None:
        """Four clients post without pause; the signal stops the devserver with status 0,
        and its tail and its count hold every line it answered 200 for, and none twice."""
        with started(["devserver", "--port", "0", "--json"], child_env()) as proc:
            assert proc.stdout is not None and proc.stderr is not None
            notices = Lines(proc.stderr)
            url = ingest_url(notices)
            tail = Lines(proc.stdout)
            with posting(url) as acknowledged:
                assert tail.reached(SHOWN_BEFORE_SIGNAL)
                proc.send_signal(sig)
                assert 0 == proc.wait(60)
            shown = [orjson.loads(raw)["line"] for raw in tail.all()]
            said = b"\n".join(notices.all()).decode()
        counted = re.search(r"devserver stopped: (\d+) lines in (\d+) requests", said)
        assert counted is not None, said
        assert len(set(shown)) == len(shown) == int(counted.group(1))
        assert set() == {f"line {i}" for i in acknowledged} - set(shown)
        assert SHOWN_BEFORE_SIGNAL <= len(acknowledged)

    @pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
    def test_a_request_taken_after_stop_is_not_shown(self, sig: signal.Signals) -> None:
        """A request read before the signal whose lines come to be taken after the
        stop (stop() waits 2 s for connection threads) is neither answered nor shown:
        the tail holds what "devserver stopped" counts, and every line answered 200."""
        with started([], child_env(), HELD_DEVSERVER, stdin=subprocess.PIPE) as proc:
            assert proc.stdin is not None and proc.stdout is not None
            assert proc.stderr is not None
            notices = Lines(proc.stderr)
            url = ingest_url(notices)
            tail = Lines(proc.stdout)

            def post_held() -> None:
                with contextlib.suppress(requests.RequestException):  # not answered: stopped
                    body = {"lines": [{"line": "held"}]}
                    requests.post(url, params={"hostname": "t"}, json=body, timeout=60)

            held = threading.Thread(target=post_held, daemon=True)
            with posting(url) as acknowledged:
                assert tail.reached(SHOWN_BEFORE_SIGNAL)
                held.start()
                assert notices.said(b"@@parsing")
                proc.send_signal(sig)
                assert notices.said(b"devserver stopped")
                proc.stdin.write(b"go\n")
                proc.stdin.close()
                assert 0 == proc.wait(60)
            shown = [orjson.loads(raw)["line"] for raw in tail.all()]
            said = b"\n".join(notices.all()).decode()
        counted = re.search(r"devserver stopped: (\d+) lines in (\d+) requests", said)
        assert counted is not None, said
        assert "held" not in shown
        assert len(set(shown)) == len(shown) == int(counted.group(1))
        assert set() == {f"line {i}" for i in acknowledged} - set(shown)
