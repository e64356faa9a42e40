"""The ``devserver`` and ``demo`` commands' page: its address, its options, ``demo --open``."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import requests

from logdna_client._cli import build_parser

REPO_ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 30.0


class Output:
    """Lines a child prints, read on a thread, waited for with a deadline."""

    def __init__(self, stream: object) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        for raw in stream:  # type: ignore[attr-defined]
            with self._cond:
                self.lines.append(raw.decode(errors="replace"))
                self._cond.notify_all()

    def until(self, pattern: str) -> re.Match[str]:
        """The first match of ``pattern`` in a printed line; fails after TIMEOUT."""
        found: list[re.Match[str]] = []

        def seen() -> bool:
            found[:] = [m for line in self.lines if (m := re.search(pattern, line))][:1]
            return bool(found)

        with self._cond:
            assert self._cond.wait_for(seen, TIMEOUT), f"{pattern!r} not in {self.lines!r}"
        return found[0]


@pytest.fixture
def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LOGDNA_")}
    clean["NO_COLOR"] = "1"
    clean["PYTHONPATH"] = str(REPO_ROOT)
    return clean


@contextlib.contextmanager
def start(args: list[str], env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[bytes], Output]]:
    """The command running, its output read; killed at the end if still running."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "logdna_client", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        yield proc, Output(proc.stdout)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(TIMEOUT)


def first_lines_event(page_url: str) -> dict[str, object]:
    """The first ``lines`` event of the page's stream."""
    with requests.get(page_url + "events", stream=True, timeout=TIMEOUT) as stream:
        name = ""
        for raw in stream.iter_lines(chunk_size=1):
            if raw.startswith(b"event: "):
                name = raw[7:].decode()
            elif raw.startswith(b"data: ") and name == "lines":
                event: dict[str, object] = orjson.loads(raw[6:])
                return event
    raise AssertionError("the stream ended without lines")


class TestDevserverCommand:
    def test_banner_names_the_page_and_the_page_serves_html(self, env: dict[str, str]) -> None:
        """The banner prints the live tail's address; it answers a browser with the page."""
        with start(["devserver", "--port", "0", "--page-lines", "50"], env) as (proc, out):
            page_url = out.until(r"live tail:\s+(http://\S+/)").group(1)
            page = requests.get(page_url, headers={"Accept": "text/html"}, timeout=TIMEOUT)
            assert page.headers["Content-Type"].startswith("text/html")
            assert '<main id="lines"' in page.text
            with requests.get(page_url + "events", stream=True, timeout=TIMEOUT) as stream:
                hello = next(x for x in stream.iter_lines(chunk_size=1) if x.startswith(b"data"))
            assert 50 == orjson.loads(hello[6:])["limit"]
            proc.send_signal(signal.SIGINT)
            assert 0 == proc.wait(TIMEOUT)

    def test_banner_send_command_runs_without_the_script_on_path(
        self, env: dict[str, str], tmp_path: Path
    ) -> None:
        """The banner's "send to it" command works as printed where the logdna-client
        script is not on PATH (a venv never activated, as after the README's Quickstart);
        old code printed "logdna-client send", which the shell could not find (127)."""
        env["PATH"] = str(tmp_path)  # an empty folder: no logdna-client script on it
        with start(["devserver", "--port", "0"], env) as (proc, out):
            command = out.until(r"send to it:\s+(.+)$").group(1).strip()
            sent = subprocess.run(
                command,
                shell=True,
                env=env,
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                check=False,
            )
            assert 0 == sent.returncode, sent.stderr
            out.until(r" hello$")  # the devserver received and printed it
            proc.send_signal(signal.SIGINT)
            assert 0 == proc.wait(TIMEOUT)

    def test_json_and_store_carry_hostname_tags_ip_mac_and_env(
        self, env: dict[str, str], tmp_path: Path
    ) -> None:
        """devserver --json --store prints and stores each line with its request's fields."""
        store = tmp_path / "lines.jsonl"
        args = ["devserver", "--port", "0", "--json", "--store", str(store)]
        with start(args, env) as (proc, out):
            url = out.until(r"listening on (http://\S+/logs/ingest)").group(1)
            params = {"hostname": "web-9", "tags": "a,b", "ip": "10.1.2.3", "mac": "0a:1b"}
            line = {"line": "checked", "env": "staging", "app": "api"}
            response = requests.post(url, params=params, json={"lines": [line]}, timeout=TIMEOUT)
            assert 200 == response.status_code
            printed = orjson.loads(out.until(r'^\{.*"checked".*\}$').group(0))
            proc.send_signal(signal.SIGINT)
            assert 0 == proc.wait(TIMEOUT)

        expected = {
            **line,
            "hostname": "web-9",
            "tags": ["a", "b"],
            "ip": "10.1.2.3",
            "mac": "0a:1b",
        }
        assert expected == printed
        assert [expected] == [orjson.loads(x) for x in store.read_text().splitlines()]

    def test_listens_on_loopback_unless_told(self) -> None:
        """Without --host the devserver (and so its page) listens on 127.0.0.1 only."""
        assert "127.0.0.1" == build_parser().parse_args(["devserver"]).host
        assert "0.0.0.0" == build_parser().parse_args(["devserver", "--host", "0.0.0.0"]).host

    @pytest.mark.parametrize("flag", ["--page-lines", "--max-concurrent-bodies"])
    def test_limits_must_be_positive(self, flag: str, capsys: pytest.CaptureFixture[str]) -> None:
        """--page-lines and --max-concurrent-bodies refuse 0 with a clear message."""
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args(["devserver", flag, "0"])
        assert 2 == exit_info.value.code
        assert "must be at least 1" in capsys.readouterr().err


class TestDemoOpen:
    def test_prints_the_page_keeps_serving_and_stops_on_sigint(self, env: dict[str, str]) -> None:
        """demo --open prints the page's address, opens it, keeps logging there until Ctrl-C."""
        env["BROWSER"] = "true"  # webbrowser runs `true URL`: nothing opens in CI
        with start(["demo", "--open"], env) as (proc, out):
            page_url = out.until(r"Live tail in your browser: (http://\S+/)").group(1)
            assert "8 lines sent, 8 arrived" in "".join(out.lines)
            backlog = first_lines_event(page_url)
            assert 8 <= int(str(backlog["total"]))
            # The demo keeps going: a line arrives after the page connected.
            out.until(r"GET /api/orders 200")
            proc.send_signal(signal.SIGINT)
            assert 0 == proc.wait(TIMEOUT)
        with pytest.raises(requests.ConnectionError):
            requests.get(page_url, timeout=TIMEOUT)

    def test_without_open_the_demo_ends_by_itself(self, env: dict[str, str]) -> None:
        """Plain demo does not wait for Ctrl-C and prints no page address."""
        result = subprocess.run(
            [sys.executable, "-m", "logdna_client", "demo"],
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert 0 == result.returncode
        assert b"Live tail in your browser" not in result.stdout
