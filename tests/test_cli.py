"""Tests for the command line: every command runs as a subprocess against a real server."""

from __future__ import annotations

import contextlib
import io
import json
import os
import queue
import re
import select
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import IO, Any

import orjson
import pytest
import requests

from logdna_client._cli import LineFilter, build_parser, main
from logdna_client._devserver import DevServer
from tests._children import watcher_looks_late
from tests._claims_servers import Request, scripted_server
from tests.test_hostile_endpoints import NOT_HTTP_1_1

KEY = "cli-test-key-0123456789"
COMMANDS = ["devserver", "demo", "send", "pipe", "spool"]


@pytest.fixture
def env(server: DevServer) -> dict[str, str]:
    """A child environment pointing at the test server and free of stray LOGDNA_ settings."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("LOGDNA_")}
    out["LOGDNA_URL"] = server.url
    out["PYTHONUNBUFFERED"] = "1"
    out["NO_COLOR"] = "1"
    return out


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "logdna_client", *args]


def run(
    *args: str, env: dict[str, str], input: bytes | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        cli(*args), env=env, input=input, capture_output=True, timeout=timeout, check=False
    )


def _answer_200() -> bytes:
    return b'HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{"status":"ok"}'


def _replay(
    respond: Any, env: dict[str, str], folder: Path, timeout: str
) -> tuple[subprocess.CompletedProcess[bytes], float, bool]:
    """``spool replay --timeout`` of a crashed process's segment (2 batches of 10 lines)
    to a scripted server: its result, how long it took, and whether the lines are left."""
    from logdna_client._secret import Secret
    from logdna_client._spool._destination import fingerprint
    from tests.test_spool import segments, write_segment

    with scripted_server(respond) as server:
        write_segment(folder, 2, destination=fingerprint(Secret(KEY), server.url))
        before = {p: p.read_bytes() for p in segments(folder)}
        started = time.monotonic()
        result = run("spool", "replay", "--spool-dir", str(folder), "--url", server.url,
                     "--key", KEY, "--timeout", timeout, env=env)  # fmt: skip
        elapsed = time.monotonic() - started
    return result, elapsed, before == {p: p.read_bytes() for p in segments(folder)}


def dead_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def py(code: str) -> list[str]:
    """A child command: this Python running ``code``."""
    return [sys.executable, "-c", code]


def status_after_signal(
    args: list[str],
    env: dict[str, str],
    ready: str,
    sig: int,
    stdin: bytes | None = None,
    *,
    again: bool = False,
) -> int | None:
    """Start ``args`` (feeding ``stdin`` and keeping it open), wait until it prints
    ``ready``, send ``sig``, and return its exit status. With ``again``, ``sig`` is sent
    again every half second until it ends (None: not within 30 s)."""
    proc = subprocess.Popen(
        args, env=env, stdin=subprocess.PIPE if stdin is not None else None,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    reader = LineReader(proc.stdout)
    try:
        if stdin is not None:
            assert proc.stdin is not None
            proc.stdin.write(stdin)
            proc.stdin.flush()
        reader.until(ready)
        proc.send_signal(sig)
        if not again:
            return proc.wait(timeout=20)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(subprocess.TimeoutExpired):
                return proc.wait(timeout=0.5)
            proc.send_signal(sig)
        return None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()


class LineReader:
    """Reads a child's stream line by line on a thread, so tests can wait with a timeout."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        thread.start()

    def _run(self, stream: IO[bytes]) -> None:
        for raw in stream:
            self.lines.put(raw.decode("utf-8", "replace"))
        self.lines.put(None)

    def until(self, pattern: str, timeout: float = 15.0) -> str:
        """Return the first line (from here on) matching ``pattern``; fail on timeout or EOF."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(0.01, left))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r}; saw {self.seen!r}") from None
            if line is None:
                raise AssertionError(f"EOF before {pattern!r}; saw {self.seen!r}")
            self.seen.append(line)
            if re.search(pattern, line):
                return line

    def rest(self, timeout: float = 15.0) -> str:
        """Everything up to EOF."""
        out: list[str] = []
        while True:
            line = self.lines.get(timeout=timeout)
            if line is None:
                return "".join(out)
            self.seen.append(line)
            out.append(line)


class TestHelp:
    @pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)])
    def test_help_works_for_every_command(self, command: list[str], env: dict[str, str]) -> None:
        """--help prints a usage text and exits 0 for the program and every command."""
        result = run(*command, "--help", env=env)
        assert 0 == result.returncode, result.stderr
        assert b"usage:" in result.stdout

    def test_every_command_is_registered(self) -> None:
        """The parser knows exactly the documented commands."""
        parser = build_parser()
        sub = next(a for a in parser._actions if a.dest == "command")
        assert sorted(COMMANDS) == sorted(sub.choices)  # type: ignore[arg-type]

    def test_no_command_prints_help_and_exits_2(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Without a command the help goes to stderr and the status is 2."""
        assert 2 == main([])
        assert "usage:" in capsys.readouterr().err

    def test_console_script_is_declared(self) -> None:
        """pyproject declares the logdna-client script that points at main."""
        text = (Path(__file__).parent.parent / "pyproject.toml").read_text()
        assert 'logdna-client = "logdna_client._cli:main"' in text


class TestSend:
    def test_send_delivers_line_with_level_app_and_meta(
        self, server: DevServer, env: dict[str, str]
    ) -> None:
        """send ships one line with the level, app, env, meta and hostname given."""
        result = run(
            "send",
            "deploy finished",
            "--level",
            "warning",
            "--app",
            "deploy",
            "--env",
            "prod",
            "--meta",
            '{"sha": "abc", "n": 3}',
            "--hostname",
            "ci-1",
            "--tags",
            "a,b",
            env=env,
        )
        assert 0 == result.returncode, result.stderr
        assert server.wait_for_lines(1, timeout=5)
        line = server.lines[0]
        assert "deploy finished" == line["line"]
        assert "WARNING" == line["level"]
        assert "deploy" == line["app"]
        assert "prod" == line["env"]
        assert {"sha": "abc", "n": 3} == line["meta"]
        request = next(r for r in server.requests if r.status == 200)
        assert "ci-1" == request.hostname
        assert ["a", "b"] == request.tags

    def test_options_fall_back_to_environment(self, server: DevServer, env: dict[str, str]) -> None:
        """Absent flags come from LOGDNA_APP, LOGDNA_ENV, LOGDNA_HOSTNAME, LOGDNA_TAGS."""
        env = {
            **env,
            "LOGDNA_APP": "envapp",
            "LOGDNA_ENV": "staging",
            "LOGDNA_HOSTNAME": "envhost",
            "LOGDNA_TAGS": "x,y",
        }
        result = run("send", "from env", env=env)
        assert 0 == result.returncode, result.stderr
        assert server.wait_for_lines(1, timeout=5)
        assert ("envapp", "staging", "INFO") == tuple(
            server.lines[0][k] for k in ("app", "env", "level")
        )
        request = next(r for r in server.requests if r.status == 200)
        assert ("envhost", ["x", "y"]) == (request.hostname, request.tags)

    def test_key_flag_is_sent_as_header(self, env: dict[str, str]) -> None:
        """--key reaches a server that requires it, as the apikey header."""
        with DevServer(key=KEY) as keyed:
            env = {**env, "LOGDNA_URL": keyed.url}
            assert 0 == run("send", "with key", "--key", KEY, env=env).returncode
            assert ["header"] == [r.auth for r in keyed.requests if r.status == 200]

    def test_refused_key_fails_fast_without_printing_it(self, env: dict[str, str]) -> None:
        """A 403 is not retried until the timeout; the message never shows the key."""
        with DevServer(key=KEY) as keyed:
            env = {**env, "LOGDNA_URL": keyed.url}
            started = time.monotonic()
            result = run("send", "bad key", "--key", "wrong-" + KEY, "--timeout", "30", env=env)
            elapsed = time.monotonic() - started
        assert 1 == result.returncode
        assert b"403" in result.stderr
        assert KEY.encode() not in result.stderr + result.stdout
        assert elapsed < 15

    def test_a_server_not_speaking_http_1_1_fails_fast(self, env: dict[str, str]) -> None:
        """A URL whose server answers in HTTP/2 is a misconfiguration retrying cannot fix:
        send says so and exits 1 at once, not at the end of --timeout."""
        h2_preface, _ = NOT_HTTP_1_1["h2"]

        def respond(request: Request, sock: socket.socket, stop: threading.Event) -> None:
            sock.sendall(h2_preface)

        with scripted_server(respond) as h2:
            started = time.monotonic()
            result = run("send", "to h2", "--timeout", "60", env={**env, "LOGDNA_URL": h2.url})
            elapsed = time.monotonic() - started
        assert 1 == result.returncode
        assert b"does not speak HTTP/1.1" in result.stderr, result.stderr
        assert elapsed < 30  # half the timeout: it did not wait it out

    def test_dead_port_exits_1_quickly_with_a_message(self, env: dict[str, str]) -> None:
        """Connection refused: exit 1 within the timeout, saying why on stderr."""
        env = {**env, "LOGDNA_URL": f"http://127.0.0.1:{dead_port()}/logs/ingest"}
        started = time.monotonic()
        result = run("send", "nobody home", "--timeout", "1.5", env=env, timeout=30)
        elapsed = time.monotonic() - started
        assert 1 == result.returncode
        assert b"not delivered within 1.5 s" in result.stderr
        assert b"refused" in result.stderr.lower()
        assert elapsed < 10

    def test_spool_replay_gives_up_after_one_request_to_a_hanging_service(
        self, env: dict[str, str], tmp_path: Path
    ) -> None:
        """``spool replay --timeout 1`` against a service that takes the request and never
        answers gives up once that request's request_timeout (15 s) ended it, saying how
        long it failed for, its lines left on disk (the first failure only began the
        count: a second request, 30 s)."""

        def respond(request: Request, sock: socket.socket, stop: threading.Event) -> None:
            stop.wait()  # hangs until the test ends

        result, elapsed, left = _replay(respond, env, tmp_path, "1")
        assert 1 == result.returncode, result.stderr
        said = re.search(rb"giving up after ([0-9.]+) s of failures", result.stderr)
        assert said is not None, result.stderr
        assert 14.0 <= float(said[1]) < 25.0  # (what it says: the time it failed for)
        assert left  # the lines stay
        assert elapsed < 25  # one request_timeout, not two

    def test_spool_replay_honours_retry_after(self, env: dict[str, str], tmp_path: Path) -> None:
        """A 503 with Retry-After: 2 is retried after 2 s, not at the backoff's cap (a
        quarter of --timeout: 0.75 s for 3, a request the service had asked not to get)."""
        refused: list[float] = []

        def respond(request: Request, sock: socket.socket, stop: threading.Event) -> bytes:
            if not refused or time.monotonic() - refused[0] < 1.9:
                refused.append(time.monotonic())
                return b"HTTP/1.1 503 Busy\r\nRetry-After: 2\r\nContent-Length: 0\r\n\r\n"
            return _answer_200()

        result, _, left = _replay(respond, env, tmp_path, "3")
        assert 0 == result.returncode, result.stderr
        assert 1 == len(refused)  # the one 503: the retry came when it asked
        assert not left

    def test_spool_replay_waits_for_a_slow_service_past_its_timeout(
        self, env: dict[str, str], tmp_path: Path
    ) -> None:
        """--timeout bounds failures, not a request: a service that answers each request
        after 2 s gets the lines with --timeout 1 (a request cut at --timeout lost the
        answer of a service that had stored the batch, which then stayed on disk to be
        sent again)."""

        def respond(request: Request, sock: socket.socket, stop: threading.Event) -> bytes:
            stop.wait(2)
            return _answer_200()

        result, _, left = _replay(respond, env, tmp_path, "1")
        assert 0 == result.returncode, result.stderr
        assert b"replayed 20 line(s)" in result.stdout + result.stderr
        assert not left

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--meta", "{nope"], b"not valid JSON"),
            (["--meta", "[1, 2]"], b"JSON object"),
            # (with a key: one that travels; with none, plain http carries nothing secret)
            (["--url", "http://example.com/logs/ingest", "--key", "not-a-real-key"], b"url:"),
            (["--url", "ftp://x"], b"url:"),
        ],
    )
    def test_bad_options_exit_2_with_message(
        self, env: dict[str, str], args: list[str], message: bytes
    ) -> None:
        """Bad JSON meta or a bad URL is exit status 2 and a one-line explanation."""
        result = run("send", "x", *args, env=env)
        assert 2 == result.returncode
        assert message in result.stderr
        assert b"Traceback" not in result.stderr

    def test_missing_key_for_remote_url_is_exit_2(self, env: dict[str, str]) -> None:
        """A non-loopback URL without a key is a ConfigurationError: exit 2, no traceback."""
        env = {**env, "LOGDNA_URL": "https://logs.example.invalid/logs/ingest"}
        result = run("send", "x", env=env)
        assert 2 == result.returncode
        assert b"LOGDNA_INGESTION_KEY" in result.stderr


class TestPipe:
    def test_command_output_passes_through_and_ships_with_levels(
        self, server: DevServer, env: dict[str, str]
    ) -> None:
        """stdout lines ship as INFO, stderr lines as ERROR; both pass through unchanged."""
        code = (
            "import sys\n"
            "for i in range(50):\n"
            "    print(f'out {i}', flush=True)\n"
            "    print(f'err {i}', file=sys.stderr, flush=True)\n"
        )
        result = run("pipe", "--app", "job", "--", *py(code), env=env)
        assert 0 == result.returncode, result.stderr
        assert "".join(f"out {i}\n" for i in range(50)).encode() == result.stdout
        assert "".join(f"err {i}\n" for i in range(50)).encode() == result.stderr
        assert server.wait_for_lines(100, timeout=5)
        lines = server.lines
        assert [f"out {i}" for i in range(50)] == [x["line"] for x in lines if x["level"] == "INFO"]
        assert [f"err {i}" for i in range(50)] == [
            x["line"] for x in lines if x["level"] == "ERROR"
        ]
        assert {"job"} == {x["app"] for x in lines}

    def test_exit_status_of_the_command_is_kept(self, env: dict[str, str]) -> None:
        """pipe exits with the command's status, 0 and non-zero alike."""
        assert 0 == run("pipe", "--", *py("pass"), env=env).returncode
        assert 3 == run("pipe", "--", *py("raise SystemExit(3)"), env=env).returncode

    def test_partial_last_lines_are_shipped(self, server: DevServer, env: dict[str, str]) -> None:
        """A last line without a newline, on either stream, still ships and passes through."""
        code = "import sys; sys.stdout.write('a\\nlast out'); sys.stderr.write('last err')"
        result = run("pipe", "--", *py(code), env=env)
        assert 0 == result.returncode
        assert b"a\nlast out" == result.stdout
        assert b"last err" == result.stderr
        assert server.wait_for_lines(3, timeout=5)
        got = {(x["line"], x["level"]) for x in server.lines}
        assert {("a", "INFO"), ("last out", "INFO"), ("last err", "ERROR")} == got

    def test_levels_are_configurable(self, server: DevServer, env: dict[str, str]) -> None:
        """--stdout-level and --stderr-level choose the levels."""
        code = "import sys; print('o'); print('e', file=sys.stderr)"
        args = ["pipe", "--stdout-level", "debug", "--stderr-level", "WARNING", "--"]
        assert 0 == run(*args, *py(code), env=env).returncode
        assert server.wait_for_lines(2, timeout=5)
        assert {("o", "DEBUG"), ("e", "WARNING")} == {(x["line"], x["level"]) for x in server.lines}

    def test_command_without_dashes_and_flags_after_dashes(
        self, server: DevServer, env: dict[str, str]
    ) -> None:
        """Words after '--' belong to the command, even ones that look like our flags."""
        code = "import sys; print(' '.join(sys.argv[1:]))"
        result = run("pipe", "--", *py(code), "--app", "x", env=env)
        assert b"--app x\n" == result.stdout
        assert server.wait_for_lines(1, timeout=5)
        assert "--app x" == server.lines[0]["line"]
        assert "app" not in server.lines[0] or server.lines[0]["app"] != "x"

    def test_stdin_mode_echoes_and_ships_every_line(
        self, server: DevServer, env: dict[str, str]
    ) -> None:
        """Without a command, stdin lines are echoed to stdout and shipped as INFO, in order."""
        data = "".join(f"line {i}\n" for i in range(200)) + "no newline"
        result = run("pipe", "--app", "stdin", env=env, input=data.encode())
        assert 0 == result.returncode, result.stderr
        assert data.encode() == result.stdout
        assert server.wait_for_lines(201, timeout=5)
        assert [f"line {i}" for i in range(200)] + ["no newline"] == [
            x["line"] for x in server.lines
        ]
        assert {"INFO"} == {x["level"] for x in server.lines}

    def test_undecodable_bytes_are_replaced_not_fatal(
        self, server: DevServer, env: dict[str, str]
    ) -> None:
        """Bytes that are not UTF-8 pass through as they are and ship with U+FFFD."""
        result = run("pipe", env=env, input=b"caf\xe9 ok\n")
        assert 0 == result.returncode
        assert b"caf\xe9 ok\n" == result.stdout
        assert server.wait_for_lines(1, timeout=5)
        assert "caf\ufffd ok" == server.lines[0]["line"]

    def test_background_process_holding_the_pipes_does_not_hang_pipe(
        self, server: DevServer, env: dict[str, str], tmp_path: Path
    ) -> None:
        """A command that leaves a process behind with its stdout open: pipe still ends."""
        pid_file = tmp_path / "grandchild.pid"
        # The grandchild lives until this test kills it: it waits for a signal.
        grandchild = "import signal; signal.pause()"
        code = (
            "import subprocess, sys\n"
            f"p = subprocess.Popen([sys.executable, '-c', {grandchild!r}])\n"
            f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
            "print('parent done', flush=True)\n"
        )
        started = time.monotonic()
        try:
            result = run("pipe", "--", *py(code), env=env, timeout=30)
            assert 0 == result.returncode
            assert b"parent done\n" == result.stdout
            assert time.monotonic() - started < 15
            assert server.wait_for_lines(1, timeout=5)
            assert "parent done" == server.lines[0]["line"]
        finally:
            if pid_file.exists():
                with contextlib.suppress(OSError):
                    os.kill(int(pid_file.read_text()), signal.SIGKILL)

    def test_missing_command_is_127(self, env: dict[str, str]) -> None:
        """A command that does not exist is status 127 with a message, like a shell."""
        result = run("pipe", "--", "no-such-command-for-logdna-tests", env=env)
        assert 127 == result.returncode
        assert b"cannot run" in result.stderr

    def test_dead_server_keeps_exit_status_and_says_so(self, env: dict[str, str]) -> None:
        """With nobody listening, pipe still exits with the command's status, within --timeout."""
        env = {**env, "LOGDNA_URL": f"http://127.0.0.1:{dead_port()}/logs/ingest"}
        started = time.monotonic()
        result = run(
            "pipe", "--timeout", "1", "--", *py("print('x'); raise SystemExit(4)"), env=env
        )
        assert 4 == result.returncode
        assert b"not delivered" in result.stderr
        assert time.monotonic() - started < 15

    def test_sigterm_reaches_the_child(self, server: DevServer, env: dict[str, str]) -> None:
        """SIGTERM to pipe is passed on; the child's last words ship; its status is kept."""
        code = (
            "import signal, sys, time\n"
            "def bye(n, f):\n"
            "    print('got TERM', flush=True); sys.exit(7)\n"
            "signal.signal(signal.SIGTERM, bye)\n"
            "print('ready', flush=True)\n"
            "signal.pause()\n"
        )
        assert 7 == status_after_signal(cli("pipe", "--", *py(code)), env, "ready", signal.SIGTERM)
        assert server.wait_for_lines(2, timeout=5)
        assert ["ready", "got TERM"] == [x["line"] for x in server.lines]

    def test_stdin_mode_stops_on_sigterm_and_delivers_what_it_read(
        self, server: DevServer, env: dict[str, str]
    ) -> None:
        """SIGTERM while reading an open stdin: exit 143, the lines read so far still ship."""
        status = status_after_signal(
            cli("pipe"), env, "second", signal.SIGTERM, stdin=b"first\nsecond\n"
        )
        assert 128 + signal.SIGTERM == status
        assert server.wait_for_lines(2, timeout=5)
        assert ["first", "second"] == [x["line"] for x in server.lines]

    @pytest.mark.parametrize("mode", ["stdin", "command"])
    @pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["term", "int"])
    def test_a_second_signal_ends_the_wait_for_delivery(
        self, env: dict[str, str], mode: str, sig: int
    ) -> None:
        """Stopped by a signal with the service down, pipe waits up to --timeout for
        delivery; the same signal again ends that wait at once, as it did before pipe
        kept its own handlers for the rest of the run (they took it and did nothing:
        the wait ran to its end). The status is still the first signal's (stdin) or the
        command's."""
        env = {**env, "LOGDNA_URL": f"http://127.0.0.1:{dead_port()}/logs/ingest"}
        if mode == "stdin":
            args, stdin, ready = cli("pipe", "--timeout", "300"), b"first\n", "first"
        else:
            # The command ends by the signal pipe forwards (SIGINT: set back to the default).
            code = "import signal; signal.signal(signal.SIGINT, signal.SIG_DFL); " \
                   "print('ready', flush=True); signal.pause()"  # fmt: skip
            args, stdin, ready = cli("pipe", "--timeout", "300", "--", *py(code)), None, "ready"
        # Sent again until it ends: the first one that comes while pipe waits for delivery
        # must end it (within 30 s, far below --timeout).
        assert 128 + sig == status_after_signal(args, env, ready, sig, stdin, again=True)

    @pytest.mark.parametrize("mode", ["stdin", "command"])
    @pytest.mark.parametrize(
        "sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=["term", "int", "hup"]
    )
    def test_a_first_signal_during_the_wait_keeps_the_status_and_says_the_drops(
        self, env: dict[str, str], mode: str, sig: int
    ) -> None:
        """The command ended by itself (or stdin did), and pipe waits for delivery to a
        service that is down when a first signal comes: the wait goes on to --timeout,
        and pipe exits with the command's status (stdin: 1, lines undelivered), saying
        what it dropped (H192: the library's handler, put back, ended pipe by the
        signal, -15 with nothing said; Ctrl-C's raised: 130)."""
        env = {**env, "LOGDNA_URL": f"http://127.0.0.1:{dead_port()}/logs/ingest"}
        code = textwrap.dedent(
            """
            import sys
            from logdna_client import _cli, _cli_pipe
            real_deliver = _cli_pipe._deliver
            def deliver(*args):
                print("waiting", flush=True)  # (pipe's own stdout: the test reads it)
                return real_deliver(*args)
            _cli_pipe._deliver = deliver
            """
        )
        if mode == "stdin":
            code += 'sys.exit(_cli.main(["pipe", "--timeout", "2"]))\n'
            stdin, expected = subprocess.PIPE, 1
        else:
            command = [sys.executable, "-c", "print('one'); raise SystemExit(3)"]
            code += f'sys.exit(_cli.main(["pipe", "--timeout", "2", "--", *{command!r}]))\n'
            stdin, expected = None, 3
        proc = subprocess.Popen(
            py(code), env=env, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True,
        )  # fmt: skip
        assert proc.stdout is not None and proc.stderr is not None
        if proc.stdin is not None:  # one line, then the end of input
            proc.stdin.write(b"first\n")
            proc.stdin.close()
        try:
            LineReader(proc.stdout).until("waiting")
            proc.send_signal(sig)
            assert expected == proc.wait(timeout=60)
            said = proc.stderr.read().decode()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert "not delivered within 2 s" in said
        assert "1 line(s) were dropped" in said

    def test_two_signals_while_the_command_runs_still_deliver(
        self, server: DevServer, env: dict[str, str]
    ) -> None:
        """Ctrl-C twice (or SIGTERM twice) while the command runs, the second to make it
        quit sooner: pipe passes both on, and then still waits for delivery: neither came
        during the wait (H195: pipe counted them as "sent again" and dropped every line
        the command wrote as it shut down)."""
        code = textwrap.dedent(
            """
            import signal, sys, threading
            hits = []
            second = threading.Event()
            def on(signum, frame):
                hits.append(signum)
                print("stop %d" % len(hits), flush=True)
                if len(hits) == 2:
                    second.set()
            signal.signal(signal.SIGTERM, on)
            print("ready", flush=True)
            second.wait(60)
            for i in range(50):
                print("cleanup %d" % i, flush=True)
            """
        )
        proc = subprocess.Popen(
            cli("pipe", "--", *py(code)), env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        assert proc.stdout is not None
        try:
            reader = LineReader(proc.stdout)
            reader.until("ready")
            proc.send_signal(signal.SIGTERM)
            reader.until("stop 1")
            proc.send_signal(signal.SIGTERM)
            assert 0 == proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert server.wait_for_lines(53, timeout=10)
        assert [f"cleanup {i}" for i in range(50)] == [x["line"] for x in server.lines][3:]

    def test_pipe_run_in_a_callers_process_gives_its_signals_back(self, server: DevServer) -> None:
        """main() called in a process of the caller's (a test's): the handlers in force
        before pipe ran are in force after it (H195: they were left ignored, Ctrl-C dead
        in the caller's process). Run as the program, pipe ignores them at its end."""
        code = textwrap.dedent(
            f"""
            import json, signal, sys
            from logdna_client import _cli
            before = [repr(signal.getsignal(s)) for s in (signal.SIGINT, signal.SIGTERM)]
            status = _cli.main(["pipe", "--url", {server.url!r}, "--", sys.executable,
                                "-c", "print('ran')"])
            after = [repr(signal.getsignal(s)) for s in (signal.SIGINT, signal.SIGTERM)]
            print(json.dumps({{"status": status, "before": before, "after": after}}))
            """
        )
        result = subprocess.run(py(code), capture_output=True, timeout=60, check=False)
        facts = json.loads(result.stdout.decode().splitlines()[-1])
        assert 0 == facts["status"]
        # Ctrl-C's as before; SIGTERM the library's handler, in force once a client runs
        # (handle_signals), as after any client: neither ignored.
        assert facts["before"][0] == facts["after"][0]
        assert "_on_termination" in facts["after"][1]

    def test_a_sigterm_pipe_took_is_not_taken_again_by_the_library(
        self, server: DevServer, env: dict[str, str]
    ) -> None:
        """The library's signal watcher reads each signal's byte from the wakeup fd on
        its own thread, and acts on it when the library's handler is the one in force.
        Under load it may look only after pipe's own handler took the SIGTERM and pipe
        was done reading: pipe must not have put the library's handler back by then,
        or the process ends by SIGTERM (-15) instead of exiting 143. Here the watcher
        looks at that very moment every time."""
        code = textwrap.dedent(
            """
            import signal, sys, threading
            from logdna_client import _cli, _cli_pipe, _exit
            read_done = threading.Event()
            real_pipe_stdin = _cli_pipe._pipe_stdin
            def pipe_stdin(*args):
                try:
                    return real_pipe_stdin(*args)
                finally:
                    read_done.set()
            _cli_pipe._pipe_stdin = pipe_stdin
            """
        )
        code += watcher_looks_late("read_done", 20)
        code += 'sys.exit(_cli.main(["pipe"]))\n'
        status = status_after_signal(
            py(code), env, "second", signal.SIGTERM, stdin=b"first\nsecond\n"
        )
        assert 128 + signal.SIGTERM == status
        assert server.wait_for_lines(2, timeout=5)
        assert ["first", "second"] == [x["line"] for x in server.lines]

    def test_a_line_is_queued_before_it_is_shown(self) -> None:
        """Whoever sees a line on pipe's output can stop pipe at once and the line
        still ships: it is handed to the client before it is passed through."""
        from logdna_client._cli_pipe import _StreamPump

        events: list[tuple[str, str]] = []

        class Sink(io.BytesIO):
            def write(self, data: Any) -> int:
                events.append(("shown", bytes(data).decode()))
                return len(data)

        read_end, write_end = os.pipe()
        pump = _StreamPump(read_end, Sink(), lambda text: events.append(("queued", text)), "t")
        pump.start()
        os.write(write_end, b"first\nsecond\n")
        os.close(write_end)
        pump.join(10)
        os.close(read_end)
        assert [("queued", "first"), ("queued", "second"), ("shown", "first\nsecond\n")] == events

    def test_non_blocking_input_and_output_are_waited_for(self) -> None:
        """Descriptors another program left non-blocking (node, ssh): input with no data
        yet is waited for, not taken for its end, and output whose reader is behind is
        waited for, not taken for closed (H192: pipe read nothing; the echo stopped for
        good after about 1,000 of 20,000 lines)."""
        from logdna_client._cli_pipe import _StreamPump

        source_read, source_write = os.pipe()
        sink_read, sink_write = os.pipe()
        os.set_blocking(source_read, False)
        os.set_blocking(sink_write, False)
        shipped: list[str] = []
        sink = os.fdopen(sink_write, "wb")
        pump = _StreamPump(source_read, sink, shipped.append, "t")
        pump.start()  # finds no input yet: EAGAIN
        data = b"".join(b"line %06d\n" % i for i in range(20_000))  # past a pipe's 64 KiB
        writer = threading.Thread(
            target=lambda: (os.write(source_write, data), os.close(source_write))
        )
        writer.start()
        echoed = bytearray()
        # The reader keeps up only now; it stops once nothing came for 10 s.
        while len(echoed) < len(data) and select.select([sink_read], [], [], 10)[0]:
            chunk = os.read(sink_read, 65536)
            if not chunk:
                break
            echoed += chunk
        pump.join(30)
        writer.join(30)
        sink.close()
        os.close(sink_read)
        os.close(source_read)
        assert data == bytes(echoed)
        assert 20_000 == len(shipped)

    def test_child_killed_by_signal_is_128_plus_n(self, env: dict[str, str]) -> None:
        """A child that dies of SIGINT (forwarded from pipe) makes pipe exit 130."""
        code = (
            "import signal, time\n"
            "signal.signal(signal.SIGINT, signal.SIG_DFL)\n"
            "print('ready', flush=True)\n"
            "signal.pause()\n"
        )
        status = status_after_signal(cli("pipe", "--", *py(code)), env, "ready", signal.SIGINT)
        assert 128 + signal.SIGINT == status


def start_devserver(
    *args: str, env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], LineReader, str]:
    proc = subprocess.Popen(
        cli("devserver", "--port", "0", *args),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    reader = LineReader(proc.stdout)
    banner = reader.until("listening on")
    match = re.search(r"(http://\S+/logs/ingest)", banner)
    assert match is not None, banner
    return proc, reader, match.group(1)


def post(url: str, lines: list[dict[str, Any]], **kwargs: Any) -> requests.Response:
    return requests.post(
        url, params={"hostname": "test"}, json={"lines": lines}, timeout=10, **kwargs
    )


class TestDevserver:
    def stop(self, proc: subprocess.Popen[bytes], reader: LineReader) -> str:
        proc.send_signal(signal.SIGINT)
        try:
            assert 0 == proc.wait(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return reader.rest()

    def test_accepts_a_post_prints_it_and_exits_0_on_sigint(self, env: dict[str, str]) -> None:
        """The devserver tails a received line (level, app, text, meta) and stops cleanly."""
        proc, reader, url = start_devserver("--no-color", env=env)
        try:
            response = post(
                url,
                [{"line": "hello tail", "app": "web", "level": "WARN", "meta": {"user_id": 42}}],
            )
            assert 200 == response.status_code
            shown = reader.until("hello tail")
            assert "WARN" in shown
            assert "[web]" in shown
            assert "user_id=42" in shown
            assert "\x1b[" not in shown
        finally:
            rest = self.stop(proc, reader)
        assert "devserver stopped: 1 lines in 1 requests" in rest

    def test_sigterm_also_exits_0(self, env: dict[str, str]) -> None:
        """SIGTERM stops the devserver as cleanly as Ctrl-C."""
        proc, reader, _ = start_devserver(env=env)
        proc.send_signal(signal.SIGTERM)
        assert 0 == proc.wait(timeout=15)
        assert "devserver stopped" in reader.rest()

    def test_key_is_required_and_never_printed(self, env: dict[str, str]) -> None:
        """--key makes the server answer 401/403, and the key is never in its output."""
        proc, reader, url = start_devserver("--key", KEY, env=env)
        try:
            assert 401 == post(url, [{"line": "x"}]).status_code
            assert 403 == post(url, [{"line": "x"}], headers={"apikey": "nope"}).status_code
            assert 200 == post(url, [{"line": "keyed ok"}], headers={"apikey": KEY}).status_code
            reader.until("keyed ok")
        finally:
            rest = self.stop(proc, reader)
        assert KEY not in "".join(reader.seen) + rest
        assert "key required" in reader.seen[0]

    def test_filters_choose_what_is_shown_and_stored(
        self, env: dict[str, str], tmp_path: Path
    ) -> None:
        """--level, --app and --grep filter the tail and the store file; all lines are accepted."""
        store = tmp_path / "lines.jsonl"
        proc, reader, url = start_devserver(
            "--level",
            "warning",
            "--app",
            "api",
            "--grep",
            "slow",
            "--store",
            str(store),
            "--json",
            env=env,
        )
        try:
            lines: list[dict[str, Any]] = [
                {"line": "slow but info", "app": "api", "level": "INFO"},
                {"line": "slow query", "app": "api", "level": "ERROR", "meta": {"ms": 900}},
                {"line": "slow elsewhere", "app": "web", "level": "ERROR"},
                {"line": "fast", "app": "api", "level": "ERROR"},
                {"line": "meta match", "app": "api", "level": "WARN", "meta": {"why": "slow"}},
            ]
            assert 200 == post(url, lines).status_code
            reader.until("meta match")
            end = {"line": "end", "app": "api", "level": "ERROR", "meta": {"slow": 1}}
            assert 200 == post(url, [end]).status_code
            reader.until('"end"')
        finally:
            rest = self.stop(proc, reader)
        shown = [orjson.loads(x) for x in reader.seen if x.startswith("{")]
        assert ["slow query", "meta match", "end"] == [x["line"] for x in shown]
        stored = [orjson.loads(x) for x in store.read_text().splitlines()]
        assert shown == stored
        assert "devserver stopped: 6 lines in 2 requests, 3 shown" in rest

    def test_fault_flags_answer_status_with_retry_after_and_delay(
        self, env: dict[str, str]
    ) -> None:
        """--status alone fails every request, with --retry-after's header, after --delay."""
        proc, reader, url = start_devserver(
            "--status", "500", "--retry-after", "3", "--delay", "0.2", env=env
        )
        try:
            started = time.monotonic()
            response = post(url, [{"line": "doomed"}])
            assert 500 == response.status_code
            assert "3" == response.headers["Retry-After"]
            assert time.monotonic() - started >= 0.2
            assert "500 (Retry-After: 3)" in reader.until("faults:")
        finally:
            rest = self.stop(proc, reader)
        assert "doomed" not in rest
        assert "devserver stopped: 0 lines in 1 requests" in rest

    def test_port_in_use_is_exit_1(self, env: dict[str, str]) -> None:
        """A taken port is a clear message and status 1."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            result = run("devserver", "--port", str(taken.getsockname()[1]), env=env)
        assert 1 == result.returncode
        assert b"cannot listen" in result.stderr

    def test_send_and_pipe_deliver_into_the_devserver_command(self, env: dict[str, str]) -> None:
        """The CLI's own send and pipe reach the CLI's devserver."""
        proc, reader, url = start_devserver("--no-color", env=env)
        try:
            env = {**env, "LOGDNA_URL": url}
            assert 0 == run("send", "sent by send", "--app", "cli", env=env).returncode
            reader.until("sent by send")
            assert 0 == run("pipe", env=env, input=b"piped line\n").returncode
            reader.until("piped line")
        finally:
            self.stop(proc, reader)


class TestDemo:
    def test_demo_exits_0_and_shows_what_arrived(self) -> None:
        """demo needs no key or network, prints the received lines and a summary."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOGDNA_")}
        env["NO_COLOR"] = "1"
        result = subprocess.run(cli("demo"), env=env, capture_output=True, timeout=60, check=False)
        assert 0 == result.returncode, result.stderr
        out = result.stdout.decode()
        assert "8 lines sent, 8 arrived" in out
        assert "password=[REDACTED]" in out
        assert "hunter2" not in out
        assert "Traceback (most recent call last)" in out
        assert "order_id=A-1002" in out
        for level in ("DEBUG", "INFO", "WARNING", "ERROR"):
            assert f" {level} " in out
        assert "[demo]" in out
        assert "\x1b[" not in out

    def test_output_goes_where_main_is_told(self, capsys: pytest.CaptureFixture[str]) -> None:
        """main(out=, err=) gets every word a command writes; the process's own
        stdout and stderr get none."""
        out, err = io.StringIO(), io.StringIO()
        assert 0 == main(["demo", "--no-color"], out=out, err=err)
        assert 2 == main(["send", ""], out=out, err=err)
        assert "8 lines sent, 8 arrived" in out.getvalue()
        assert "send: the text is empty" in err.getvalue()
        assert ("", "") == capsys.readouterr()


class TestOfficialClient:
    def test_official_logdna_handler_delivers_into_the_devserver(self, env: dict[str, str]) -> None:
        """The vendor's `logdna` handler (legacy body form) delivers into `devserver --key`."""
        code = (
            "import logging, sys\n"
            "from logdna import LogDNAHandler\n"
            "h = LogDNAHandler(sys.argv[1], {'url': sys.argv[2], 'app': 'legacy',\n"
            "                  'hostname': 'old-client', 'flush_interval': 0.1})\n"
            "log = logging.getLogger('official'); log.setLevel(logging.INFO)\n"
            "log.propagate = False; log.addHandler(h)\n"
            "log.info('from the official client')\n"
            "log.warning('second official line')\n"
            "h.close()\n"
        )
        pytest.importorskip("logdna")
        proc, reader, url = start_devserver("--key", KEY, "--json", env=env)
        try:
            subprocess.run(
                [*py(code), KEY, url], env=env, timeout=60, check=True, capture_output=True
            )
            reader.until("second official line")
        finally:
            proc.send_signal(signal.SIGINT)
            assert 0 == proc.wait(timeout=15)
        shown = [orjson.loads(x) for x in reader.seen if x.startswith("{")]
        assert ["from the official client", "second official line"] == [x["line"] for x in shown]
        assert {"legacy"} == {x["app"] for x in shown}

    def test_official_client_in_process_uses_legacy_body(self) -> None:
        """In-process check of what the official client sends: legacy form, its key accepted."""
        logdna = pytest.importorskip("logdna")
        import logging

        with DevServer(key=KEY) as srv:
            handler = logdna.LogDNAHandler(
                KEY, {"url": srv.url, "app": "legacy", "hostname": "h", "flush_interval": 0.1}
            )
            log = logging.getLogger("test_cli.official")
            log.propagate = False
            log.setLevel(logging.INFO)
            log.addHandler(handler)
            try:
                log.info("legacy hello")
            finally:
                log.removeHandler(handler)
                handler.close()
            assert srv.wait_for_lines(1, timeout=10)
            assert "legacy hello" == srv.lines[0]["line"]
            assert all(r.key_valid for r in srv.requests if r.status == 200)


class TestLineFilter:
    def test_level_ranks_known_aliases(self) -> None:
        """WARN counts as WARNING, ERR as ERROR; a line without level counts as INFO."""
        f = LineFilter(level="WARNING")
        assert f.matches({"line": "x", "level": "WARN"})
        assert f.matches({"line": "x", "level": "err"})
        assert not f.matches({"line": "x"})
        assert not f.matches({"line": "x", "level": "debug"})

    def test_a_number_and_an_unnamed_level_rank_by_their_number(self) -> None:
        """--level 35 shows ERROR and "Level 37", not WARNING or INFO (H187: any number
        filtered as INFO); a line's "Level 25" ranks as 25."""
        f = LineFilter(level="35")
        assert f.matches({"line": "x", "level": "ERROR"})
        assert f.matches({"line": "x", "level": "Level 37"})
        assert not f.matches({"line": "x", "level": "WARNING"})
        assert not f.matches({"line": "x", "level": "INFO"})
        assert LineFilter(level="LEVEL 25").matches({"line": "x", "level": "NOTICE"})

    @pytest.mark.parametrize("level", ["LOUD", "3.5", "-1", ""])
    def test_a_level_it_cannot_rank_is_a_usage_error(
        self, level: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """devserver --level LOUD exits 2 naming the flag (H187: it started, and
        filtered as INFO)."""
        with pytest.raises(SystemExit) as ended:
            build_parser().parse_args(["devserver", "--level", level])
        assert 2 == ended.value.code
        assert "--level" in capsys.readouterr().err

    def test_grep_looks_at_text_and_meta(self) -> None:
        """The text match finds the needle in the line or in its meta (object or string)."""
        f = LineFilter(grep="42")
        assert f.matches({"line": "user 42"})
        assert f.matches({"line": "x", "meta": {"user_id": 42}})
        assert f.matches({"line": "x", "meta": '{"user_id": 42}'})
        assert not f.matches({"line": "x", "meta": {"user_id": 7}})

    def test_app_matches_app_or_file(self) -> None:
        """--app compares with the line's app, or its file when it has no app."""
        f = LineFilter(apps=frozenset({"web"}))
        assert f.matches({"line": "x", "app": "web"})
        assert f.matches({"line": "x", "file": "web"})
        assert not f.matches({"line": "x", "app": "api"})
        assert not LineFilter().active
