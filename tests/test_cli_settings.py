"""One-shot commands stop at settings no request can be made with.

``send``, ``pipe`` and ``spool replay`` wait for delivery up to ``--timeout``, and give
up at once on trouble retrying cannot fix (a refused key, a server that does not speak
HTTP/1.1). A ``settings`` failure (a CA bundle the environment names and that is not
there, a SOCKS proxy without PySocks, a proxy URL no request can be made with) is such
trouble too; they waited out ``--timeout`` on it, then blamed the wait.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from logdna_client._secret import Secret
from logdna_client._spool._destination import fingerprint
from tests.test_cli import cli, dead_port
from tests.test_spool import segments, write_segment

KEY = "key-of-the-settings-test-0123456789"
TIMEOUT = "60"  # far more than a settings failure may take: the command must not wait it


def settings_broken(url: str) -> dict[str, str]:
    """An environment in which no https:// request can be made: its CA bundle is missing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGDNA_")}
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "CURL_CA_BUNDLE"):
        env.pop(name, None)
    env.update(REQUESTS_CA_BUNDLE="/nonexistent/ca-bundle.pem", LOGDNA_URL=url, NO_COLOR="1")
    return env


def timed(*args: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        cli(*args), env=env, capture_output=True, text=True, timeout=120, check=False
    )
    return done, time.monotonic() - started


def test_send_stops_at_a_settings_failure() -> None:
    url = f"https://127.0.0.1:{dead_port()}/logs/ingest"
    done, elapsed = timed("send", "a line", "--key", KEY, "--timeout", TIMEOUT,
                          env=settings_broken(url))  # fmt: skip
    assert 1 == done.returncode, done.stderr
    assert "/nonexistent/ca-bundle.pem" in done.stderr, done.stderr
    assert "send: not delivered: " in done.stderr, done.stderr  # not "within 60 s": it did not wait
    assert KEY not in done.stderr + done.stdout
    assert elapsed < 30, elapsed  # half the timeout: it did not wait it out


def test_spool_replay_stops_at_a_settings_failure(tmp_path: Path) -> None:
    url = f"https://127.0.0.1:{dead_port()}/logs/ingest"
    write_segment(tmp_path, 2, destination=fingerprint(Secret(KEY), url))
    before = {p: p.read_bytes() for p in segments(tmp_path)}
    done, elapsed = timed("spool", "replay", "--spool-dir", str(tmp_path), "--url", url,
                          "--key", KEY, "--timeout", TIMEOUT, env=settings_broken(url))  # fmt: skip
    assert 1 == done.returncode, done.stderr
    assert "no request can be made" in done.stderr, done.stderr
    assert "giving up after" not in done.stderr, done.stderr
    assert KEY not in done.stderr + done.stdout
    assert before == {p: p.read_bytes() for p in segments(tmp_path)}  # the lines stay
    assert elapsed < 30, elapsed
