"""README.md: its Python examples run, and its links lead somewhere."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from logdna_client._devserver import DevServer
from tests._helpers_integrations import REPO_ROOT, TIMEOUT

README = (REPO_ROOT / "README.md").read_text()
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_python_blocks_run(server: DevServer, tmp_path: Path) -> None:
    """Every ```python block runs as written, against a local server (LOGDNA_URL)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGDNA_")}
    env["LOGDNA_URL"] = server.url
    env["PYTHONPATH"] = str(REPO_ROOT)
    blocks = [code for lang, code in FENCE.findall(README) if lang == "python"]
    assert len(blocks) >= 5
    for code in blocks:
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
            text=True, timeout=60, check=False,
        )  # fmt: skip
        assert 0 == result.returncode, f"{code}\n{result.stderr}"
    assert server.wait_for_lines(4, TIMEOUT)
    texts = {line["line"] for line in server.lines}
    assert {"invoice 1042 overdue", "job finished", "batch done", "served"} <= texts
    assert "stock low" not in texts  # captured by the testing example, never sent


def test_testing_block_runs_with_no_settings(tmp_path: Path) -> None:
    """The "Assert what your app ships" block runs as written where no LOGDNA_* variable
    is set (a CI job, a fresh checkout): the capture needs no server and no real key
    (old block: ConfigurationError, no ingestion key found)."""
    section = README.split("### Assert what your app ships", 1)[1]
    code = next(code for lang, code in FENCE.findall(section) if lang == "python")
    assert "capture_lines()" in code
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGDNA_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=60, check=False,
    )  # fmt: skip
    assert 0 == result.returncode, f"{code}\n{result.stderr}"


@pytest.mark.parametrize("target", sorted(set(LINK.findall(README))))
def test_links(target: str) -> None:
    """Absolute links are https; relative ones name a file in the repository and the
    source distribution (MANIFEST.in), as the README's note says."""
    if "://" in target:
        assert target.startswith("https://")
        return
    path = target.split("#", 1)[0]
    assert (REPO_ROOT / path).exists(), target
    top = Path(path).parts[0]
    manifest = (REPO_ROOT / "MANIFEST.in").read_text()
    assert f"graft {top}" in manifest or f"include {path}" in manifest, target


def test_note_on_relative_links() -> None:
    """The README says where its relative links work (the package index shows it too)."""
    assert "not on the\npackage index" in README or "not on the package index" in README
