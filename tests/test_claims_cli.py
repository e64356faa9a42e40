"""docs/cli.md's sentences on ``send`` and ``pipe`` that no test held: each runs the real
command in a child process against a real local server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from logdna_client._devserver import DevServer
from tests._helpers_integrations import REPO_ROOT, TIMEOUT


@pytest.fixture
def env(server: DevServer) -> dict[str, str]:
    """A child environment pointing at the test server, free of stray LOGDNA_ settings."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("LOGDNA_")}
    out.update(LOGDNA_URL=server.url, PYTHONPATH=str(REPO_ROOT))
    return out


def cli(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "logdna_client", *args], input=stdin, env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


class TestPipe:
    def test_a_command_that_cannot_be_run_is_126(self, env: dict[str, str], tmp_path: Path) -> None:
        """ "A command that cannot be found is 127, one that cannot be run 126": a script
        without the execute bit."""
        script = tmp_path / "job.sh"
        script.write_text("#!/bin/sh\necho hi\n")
        script.chmod(0o644)
        result = cli(env, "pipe", "--", str(script))
        assert 126 == result.returncode, result.stderr
        assert "cannot run" in result.stderr

    def test_empty_lines_pass_through_but_are_not_shipped(
        self, server: DevServer, env: dict[str, str]
    ) -> None:
        """ "Empty lines pass through but are not shipped.\""""
        result = cli(env, "pipe", "--app", "build", stdin="first\n\nsecond\n\n")
        assert (0, "first\n\nsecond\n\n") == (result.returncode, result.stdout)
        assert server.wait_for_lines(2, TIMEOUT)
        assert ["first", "second"] == [line["line"] for line in server.lines]

    def test_a_line_over_1_mib_ships_in_pieces(
        self, server: DevServer, env: dict[str, str]
    ) -> None:
        """ "A line longer than 1 MiB without a newline ships in pieces (each piece is capped
        by max_line_length)": 3 MiB and 5 bytes pass through whole and ship as three cut
        pieces and the rest."""
        text = "y" * (3 * 1024 * 1024 + 5)
        result = cli(env, "pipe", stdin=text)
        assert (0, len(text)) == (result.returncode, len(result.stdout)), result.stderr
        assert server.wait_for_lines(4, TIMEOUT)
        sizes = [len(line["line"].encode()) for line in server.lines]
        assert [16384, 16384, 16384, 5] == sizes
        assert all("[truncated by logdna_client: 1048576 bytes in all]" in line["line"]
                   for line in server.lines[:3])  # fmt: skip


class TestSend:
    def test_any_level_name(self, server: DevServer, env: dict[str, str]) -> None:
        """ "`--level` takes any level name (default `INFO`)", an application's own too."""
        assert 0 == cli(env, "send", "plain").returncode
        assert 0 == cli(env, "send", "own level", "--level", "notice").returncode
        assert server.wait_for_lines(2, TIMEOUT)
        assert ["INFO", "NOTICE"] == [line["level"] for line in server.lines]

    def test_a_rejected_line_fails_at_once(self, server: DevServer, env: dict[str, str]) -> None:
        """ "A refused key (401/403) or a rejected line (400) fails at once instead of
        waiting for the timeout": exit 1 with the reason, well before --timeout 60."""
        server.fail_next(10, status=400)
        started = time.monotonic()
        result = cli(env, "send", "bad line", "--timeout", "60")
        assert 1 == result.returncode
        assert "rejected 1 line(s) (HTTP 400" in result.stderr
        assert time.monotonic() - started < 30  # half the timeout: it did not wait it out
