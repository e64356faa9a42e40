"""The command line tried as an operator runs it: ``pipe`` and ``send`` in child
processes against real loopback servers, each line read either delivered, left in the
spool or counted on stderr; usage errors that name the flag the operator typed."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from logdna_client._devserver import DevServer
from tests._claims_servers import Request, answer, scripted_server
from tests._helpers_integrations import REPO_ROOT

# What pipe (or, when its sender ended late, the library at the exit) says it lost.
_DROPPED = re.compile(
    rb"(\d+) line\(s\) were dropped, not confirmed delivered|(\d+) lines (?:could not be|were not) "
    rb"delivered"
)


def child_env(url: str, **extra: str) -> dict[str, str]:
    """This environment without stray LOGDNA_ settings, shipping to ``url``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGDNA_")}
    env.update(LOGDNA_URL=url, PYTHONPATH=str(REPO_ROOT), NO_COLOR="1", **extra)
    return env


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "logdna_client", *args]


def run(*args: str, env: dict[str, str], stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        cli(*args), env=env, input=stdin, capture_output=True, timeout=120, check=False
    )


def dead_url() -> str:
    """An ingest URL on a loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/logs/ingest"


def dropped_said(stderr: bytes) -> int:
    return sum(int(a or b) for a, b in _DROPPED.findall(stderr))


class TestPipeSaysWhatItLost:
    def test_lines_a_full_buffer_dropped_are_counted_and_stdin_mode_exits_1(self) -> None:
        """Fed faster than the service takes (80 MiB while it holds the first request),
        pipe drops the oldest lines from its 64 MiB buffer. Each line read is then
        delivered or counted on stderr, and stdin mode exits 1: it exited 0 in silence,
        the flush that waited for the rest blind to the drops before it (1,000,000 lines
        of 80 bytes fed, 414,761 delivered)."""
        release = threading.Event()

        def respond(request: Request, sock: socket.socket, stopping: threading.Event) -> bytes:
            release.wait(60)
            return answer(200)

        total = 80 * 1024
        lines = b"".join(b"%08d " % i + b"x" * 1015 + b"\n" for i in range(total))
        with scripted_server(respond) as server:
            proc = subprocess.Popen(
                cli("pipe", "--timeout", "100"), env=child_env(server.url),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )  # fmt: skip
            assert proc.stdin is not None and proc.stdout is not None
            echoed = threading.Event()

            def read_echo() -> None:
                assert proc.stdout is not None
                seen = 0
                while chunk := proc.stdout.read1(1 << 20):
                    seen += chunk.count(b"\n")
                    if seen >= total:
                        echoed.set()  # every line is queued (or dropped) once shown
                echoed.set()

            reader = threading.Thread(target=read_echo, daemon=True)
            reader.start()
            try:
                proc.stdin.write(lines)
                proc.stdin.close()
                assert echoed.wait(60)
                release.set()
                proc.wait(120)
                assert proc.stderr is not None
                stderr = proc.stderr.read()
            finally:
                release.set()
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            texts = [line["line"] for request in server.requests for line in request.lines]
        # (Besides the library's own line saying how many it dropped.)
        delivered = {text for text in texts if isinstance(text, str) and text.endswith("x")}
        dropped = dropped_said(stderr)
        assert dropped > 0, stderr
        assert total == len(delivered) + dropped, stderr
        assert 1 == proc.returncode, stderr

    @pytest.mark.parametrize("mode", ["stdin", "command"])
    def test_lines_the_service_never_took_are_counted(self, mode: str) -> None:
        """With nobody listening, pipe says how many lines it lost, not only that some
        were (the library's count went to pipe's own listener on its logger, and no
        further); stdin mode exits 1, command mode with the command's status."""
        stdin, command = b"".join(b"line %d\n" % i for i in range(500)), []
        if mode == "command":
            stdin, command = b"", ["--", sys.executable, "-c", "print('one'); exit(3)"]
        result = run("pipe", "--timeout", "0", *command, env=child_env(dead_url()), stdin=stdin)
        assert (500 if mode == "stdin" else 1) == dropped_said(result.stderr), result.stderr
        assert (1 if mode == "stdin" else 3) == result.returncode

    def test_lines_left_in_the_spool_are_said_with_their_folder(self, tmp_path: Path) -> None:
        """With a spool (LOGDNA_SPOOL_DIR) and the service down, the lines go to disk:
        pipe says how many and where, instead of leaving "not delivered" to read as lost.
        ``spool ls`` agrees."""
        env = child_env(dead_url(), LOGDNA_SPOOL_DIR=str(tmp_path))
        stdin = b"".join(b"line %d\n" % i for i in range(500))
        result = run("pipe", "--timeout", "0", env=env, stdin=stdin)
        assert 1 == result.returncode
        said = re.findall(rb"(\d+) line\(s\) left in the spool at (\S+)", result.stderr)
        assert [(b"500", os.fsencode(tmp_path))] == said, result.stderr
        assert 0 == dropped_said(result.stderr)
        listed = run("spool", "ls", "--spool-dir", str(tmp_path), env=env)
        assert b"total: " in listed.stdout and b", 500 line(s) waiting" in listed.stdout

    def test_a_spool_that_is_off_is_said(self, tmp_path: Path) -> None:
        """A LOGDNA_SPOOL_DIR that cannot be a folder (a file there) turns the spool off:
        pipe says so, and why, beside the lines it dropped; it said only that they were
        not delivered, the operator left to believe them on disk."""
        not_a_folder = tmp_path / "file"
        not_a_folder.write_bytes(b"")
        env = child_env(dead_url(), LOGDNA_SPOOL_DIR=str(not_a_folder))
        result = run("pipe", "--timeout", "0", env=env, stdin=b"one\ntwo\n")
        assert 1 == result.returncode
        assert 2 == dropped_said(result.stderr), result.stderr
        said = re.findall(
            rb"the spool folder '([^']+)' failed \(.+\); spooling is off", result.stderr
        )
        assert [os.fsencode(not_a_folder)] == said, result.stderr

    def test_nothing_is_said_when_every_line_arrived(self, server: DevServer) -> None:
        """The counts are said only when there is a loss: a good run's stderr is empty."""
        result = run("pipe", env=child_env(server.url), stdin=b"a\nb\n")
        assert (0, b"a\nb\n", b"") == (result.returncode, result.stdout, result.stderr)


class TestUsageErrorsNameTheFlag:
    def test_a_timeout_over_the_limit_names_timeout(self, server: DevServer) -> None:
        """``--timeout 601`` is refused naming ``--timeout``, the flag typed: it named
        ``--shutdown-timeout``, a flag that does not exist."""
        for command in (["send", "x"], ["pipe"]):
            result = run(*command, "--timeout", "601", env=child_env(server.url))
            assert 2 == result.returncode
            assert b"--timeout: expected seconds between 0 and 600" in result.stderr
            assert b"shutdown" not in result.stderr
            assert b"" == result.stdout

    def test_a_key_in_the_url_points_at_the_flags(self) -> None:
        """A key pasted into ``--url`` is refused (never shown) pointing at ``--key``,
        not at the Python keyword ``key=``."""
        url = "http://user:secret-key-in-url-0123@127.0.0.1:9/logs/ingest"
        result = run("send", "x", "--url", url, env=child_env(dead_url()))
        assert 2 == result.returncode
        assert b"pass the key with --key, --key-file or LOGDNA_INGESTION_KEY" in result.stderr
        assert b"secret-key-in-url" not in result.stderr + result.stdout


class TestSpoolReplay:
    def test_damage_found_while_replaying_is_exit_1(
        self, server: DevServer, tmp_path: Path
    ) -> None:
        """A segment damaged in its first record (a flipped byte): replay sends what is
        before the damage, moves the rest to the quarantine folder, says so on stdout too
        and exits 1, as ``verify`` does for the same damage; it exited 0, so that
        ``spool replay && spool purge`` went on as if every line had been sent."""
        env = child_env(dead_url(), LOGDNA_SPOOL_DIR=str(tmp_path))
        stdin = b"".join(b"%06d " % i + b"y" * 93 + b"\n" for i in range(40_000))  # 2 batches
        assert 1 == run("pipe", "--timeout", "0", env=env, stdin=stdin).returncode
        (segment,) = tmp_path.glob("*.seg")
        data = bytearray(segment.read_bytes())
        data[len(data) // 4] ^= 0xFF
        segment.write_bytes(bytes(data))
        assert 1 == run("spool", "verify", env=env).returncode

        result = run("spool", "replay", "--any-destination", env=child_env(server.url,
                     LOGDNA_SPOOL_DIR=str(tmp_path)))  # fmt: skip
        assert 1 == result.returncode, result.stderr
        assert b"damaged piece(s) of segments to the quarantine folder" in result.stdout
        assert b"quarantine" in result.stderr  # (said as found, as before)
        assert list((tmp_path / "quarantine").iterdir())
        # The batch after the damaged one was salvaged and sent, once.
        sent = [x["line"] for x in server.lines]
        assert len(sent) == len(set(sent)) and "039999 " + "y" * 93 in sent
        assert re.search(rb"(\d+) line\(s\) found whole after the damage were re-queued",
                         result.stdout)  # fmt: skip
        assert 0 == run("spool", "replay", "--any-destination", env=child_env(server.url,
                        LOGDNA_SPOOL_DIR=str(tmp_path))).returncode  # fmt: skip

    def test_lines_refused_by_the_service_are_exit_1(self, tmp_path: Path) -> None:
        """A batch the service answered with a 207 that confirms none of its lines: replay
        marks it done (refused lines are not sent again), says them dropped, and exits 1;
        it exited 0, so that ``spool replay && spool purge`` went on as if every line had
        been delivered."""
        env = child_env(dead_url(), LOGDNA_SPOOL_DIR=str(tmp_path))
        stdin = b"".join(b"refused %d\n" % i for i in range(10))
        assert 1 == run("pipe", "--timeout", "0", env=env, stdin=stdin).returncode

        def partly(request: Request, sock: socket.socket, stop: threading.Event) -> bytes:
            return answer(207)

        with scripted_server(partly) as server:
            result = run("spool", "replay", "--any-destination", env=child_env(server.url,
                         LOGDNA_SPOOL_DIR=str(tmp_path)))  # fmt: skip
        assert 1 == result.returncode, result.stdout + result.stderr
        assert b"'rejected': 10" in result.stdout
        assert [] == list(tmp_path.glob("*.seg"))  # done: not sent again


def run_with_closed(fd: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    """The command line started with one of its standard streams closed, as ``<&-`` or
    ``2>&-`` in a shell (or a supervisor that closes it) leave it."""
    return subprocess.run(
        ["sh", "-c", f'exec "$@" {fd}>&-' if fd != "0" else 'exec "$@" <&-', "sh", *cli(*args)],
        env=env, capture_output=fd != "2", stdout=subprocess.PIPE if fd == "2" else None,
        timeout=120, check=False,
    )  # fmt: skip


class TestClosedStreams:
    def test_complaints_never_go_to_stdout_when_stderr_is_closed(self) -> None:
        """With stderr closed, what send and pipe would say there is lost, not written
        to stdout, which a pipeline reads as data: ``pipe 2>&- | consumer`` got
        "logdna-client pipe: not delivered ..." among the lines it passed through."""
        env = child_env(dead_url())
        result = run_with_closed("2", "send", "x", "--timeout", "0", env=env)
        assert (1, b"") == (result.returncode, result.stdout)
        result = run_with_closed("2", "pipe", "--timeout", "0", "--", "echo", "data", env=env)
        assert (0, b"data\n") == (result.returncode, result.stdout)

    def test_pipe_with_stdin_closed_says_so(self) -> None:
        """``pipe`` with no command and stdin closed (``<&-``) says there is nothing to
        read and exits 2; it died with a traceback (AttributeError) and status 1."""
        result = run_with_closed("0", "pipe", env=child_env(dead_url()))
        assert 2 == result.returncode
        assert b"standard input is closed" in result.stderr
        assert b"Traceback" not in result.stderr
        assert b"" == result.stdout

    def test_spool_ls_with_stdout_closed_is_no_traceback(self, tmp_path: Path) -> None:
        """``spool ls >&-`` writes nowhere and exits 0, instead of a traceback."""
        result = run_with_closed("1", "spool", "ls", "--spool-dir", str(tmp_path),
                                 env=child_env(dead_url()))  # fmt: skip
        assert (0, b"") == (result.returncode, result.stderr)


class TestPipeCommandWords:
    ECHO_ARGS = "import sys; print(' '.join(sys.argv[1:]))"

    def test_a_double_dash_after_the_command_is_the_commands(self, server: DevServer) -> None:
        """Without a leading "--" the command begins at the first word that is not one of
        pipe's options, and every word after it is its own, a "--" too (``pipe grep -- -v
        x``): that "--" was taken for pipe's, and the command refused (exit 2)."""
        result = run("pipe", "--app", "words", sys.executable, "-c", self.ECHO_ARGS,
                     "--", "--app", "-v", env=child_env(server.url))  # fmt: skip
        assert (0, b"-- --app -v\n") == (result.returncode, result.stdout), result.stderr
        assert server.wait_for_lines(1, timeout=30)
        assert [("-- --app -v", "words")] == [(x["line"], x.get("app")) for x in server.lines]

    @pytest.mark.parametrize(
        "options",
        [
            ["--app", "words"],
            ["--app=words"],
            ["--ap", "words"],
            ["--timeout", "9", "--app", "words"],
        ],
    )
    def test_pipe_options_before_the_double_dash_are_pipes(
        self, server: DevServer, options: list[str]
    ) -> None:
        """Options before the separating "--", in each form argparse takes (a value after
        the flag or after "=", an unambiguous prefix), are pipe's; what follows is the
        command's, words like pipe's own options among them."""
        result = run("pipe", *options, "--", sys.executable, "-c", self.ECHO_ARGS, "--app", "--",
                     env=child_env(server.url))  # fmt: skip
        assert (0, b"--app --\n") == (result.returncode, result.stdout), result.stderr
        assert server.wait_for_lines(1, timeout=30)
        assert "words" == server.lines[0].get("app")
