"""Every file in examples/ runs against a DevServer (LOGDNA_URL) and delivers what it logs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from logdna_client._devserver import DevServer
from tests._helpers_integrations import REPO_ROOT, TIMEOUT

EXAMPLES = REPO_ROOT / "examples"


def run_example(server: DevServer, name: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGDNA_")}
    env["LOGDNA_URL"] = server.url
    env["PYTHONPATH"] = str(REPO_ROOT)
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        check=False,
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert 0 == result.returncode, result.stderr
    return result


def texts(server: DevServer, n: int) -> list[str]:
    assert server.wait_for_lines(n, TIMEOUT), server.lines
    return [line["line"] for line in server.lines]


def by_text(server: DevServer, start: str) -> dict[str, Any]:
    (line,) = [line for line in server.lines if line["line"].startswith(start)]
    return line


def test_every_example_is_tested() -> None:
    """Each example file has a test here (so a new one is not forgotten)."""
    tested = {
        "stdlib_basic.py",
        "dictconfig.py",
        "structlog_example.py",
        "flask_app.py",
        "multiprocessing_fork.py",
        "django_app/run.py",
        "django_app/settings.py",
        "django_app/urls.py",
    }
    found = {str(p.relative_to(EXAMPLES)) for p in EXAMPLES.rglob("*.py")}
    assert tested == found


def test_stdlib_basic(server: DevServer) -> None:
    """The stdlib example ships its three lines with extras and the traceback."""
    run_example(server, "stdlib_basic.py")
    lines = texts(server, 3)
    assert ["order 1001 created", "stock low"] == lines[:2]
    assert lines[2].startswith("could not compute the discount\nTraceback")
    expected = {"name": "shop.orders", "customer_id": 7, "total": 19.99}
    assert expected == by_text(server, "order")["meta"]
    assert ["examples"] == list(server.requests[0].tags)


def test_dictconfig(server: DevServer) -> None:
    """The dictConfig example (string options) ships both lines."""
    run_example(server, "dictconfig.py")
    assert ["invoice INV-7 sent", "payment declined"] == texts(server, 2)
    assert "billing" == server.lines[0]["app"]
    assert ["web", "eu-west"] == list(server.requests[0].tags)


def test_structlog_example(server: DevServer) -> None:
    """The structlog example ships events with context and the exception."""
    result = run_example(server, "structlog_example.py")
    lines = texts(server, 3)
    assert ["job started", "retrying"] == lines[:2]
    assert lines[2].startswith("job failed\nTraceback")
    assert {"queue": "emails", "job_id": "job-17"} == server.lines[0]["meta"]
    assert "job started" in result.stdout  # the console renderer still ran


def test_flask_app(server: DevServer) -> None:
    """The Flask example ships the view's line and the access line, both with context."""
    result = run_example(server, "flask_app.py")
    assert "200 demo-req-1" in result.stdout
    texts(server, 2)
    view = by_text(server, "showing order 42")
    access = by_text(server, "GET /orders/42 200")
    assert "demo-req-1" == view["meta"]["request_id"]
    assert 200 == access["meta"]["http_status"]


def test_multiprocessing_fork(server: DevServer) -> None:
    """Parent and three forked workers each deliver their own lines, once."""
    if not hasattr(os, "fork"):
        pytest.skip("fork is POSIX only")
    run_example(server, "multiprocessing_fork.py")
    lines = texts(server, 11)
    expected = {f"worker {w} finished job {j}" for w in (1, 2, 3) for j in range(3)}
    expected |= {"parent starting 3 workers", "parent done"}
    assert sorted(expected) == sorted(lines)
    assert [0, 0, 0] == by_text(server, "parent done")["meta"]["exit_codes"]


def test_django_app(server: DevServer) -> None:
    """The Django example ships view, error and access lines with request context."""
    result = run_example(server, "django_app/run.py")
    assert result.stdout.startswith("200 demo-req-1 500 ")
    texts(server, 4)
    view = by_text(server, "showing order 42")
    assert {"order_id": 42, "request_id": "demo-req-1", "http_method": "GET",
            "http_path": "/orders/42", "name": "shop.views"} == view["meta"]  # fmt: skip
    error = by_text(server, "Internal Server Error: /fail")
    assert "RuntimeError: the view failed" in error["line"]
    assert "/fail" == error["meta"]["http_path"]
    assert 500 == by_text(server, "GET /fail 500")["meta"]["http_status"]


# -- the docs: every ```python block runs as-is; ```py fragments must at least compile.

DOCS = REPO_ROOT / "docs"
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)

#: Lines each page's runnable snippets must deliver (in any order, among others).
DOC_LINES = {
    "getting-started.md": ["user ada signed in", "disk almost full"],
    "stdlib.md": [
        "invoice 1042 overdue",
        "could not price invoice 1043",
        "configured from a dict",
        "configured from an ini file",
    ],
    "structlog.md": [
        "job started",
        "job failed",
        "one stream",
        "from structlog",
        "from a stdlib logger",
        "shipped before the queue",
        "kept as an event through the queue",
    ],
    "flask.md": ["showing order 42"],
    "asgi.md": ["showing order 42"],
    "migration.md": ["My Sample Log Line", "order 42 paid"],
    "testing.md": [],  # every line is captured: nothing arrives
    "troubleshooting.md": ["checking the pipeline"],
    "django.md": [],
    "configuration.md": [],
    "delivery.md": [],
    "security.md": [
        "patient [REDACTED] called from [REDACTED]",
        "order [REDACTED] for [REDACTED] <[REDACTED]>",
        "seen by <name>",
    ],
    "cli.md": ["sent by the official client"],
    "scaling.md": [],  # handlers built, nothing logged: they must only build
    "spool.md": [],
}

#: Lines each page's snippets must never deliver (what they show being kept back).
DOC_NOT_SENT = {"security.md": ["chart updated"]}

#: The import some pages' snippets leave out, prepended when they run. (Those pages are
#: not this test's to change; a snippet that gains its import may lose its entry here.)
DOC_PRELUDE = {
    "scaling.md": "from logdna_client import LogDNAHandler\n",
    "spool.md": "from logdna_client import LogDNAHandler\n",
}

#: Addresses and paths a snippet names, replaced by the test's own when it runs.
DOC_DEVSERVER_URL = "http://127.0.0.1:7080/logs/ingest"  # docs/cli.md's devserver
DOC_SPOOL_DIR = "/var/spool/myapp-logs"  # docs/spool.md

#: Pages whose snippets import a package this one does not depend on.
DOC_NEEDS = {"cli.md": "logdna"}


def blocks(page: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in FENCE.finditer((DOCS / page).read_text())]


def run_code(code: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def as_run(page: str, code: str, server: DevServer, tmp_path: Path) -> str:
    """A page's snippet as the test runs it: its missing import added, the devserver
    address and spool folder it names replaced by the test's own."""
    code = DOC_PRELUDE.get(page, "") + code
    return code.replace(DOC_DEVSERVER_URL, server.url).replace(
        DOC_SPOOL_DIR, str(tmp_path / "spool")
    )


@pytest.mark.parametrize("page", sorted(DOC_LINES))
def test_doc_snippets_run(page: str, server: DevServer, tmp_path: Path) -> None:
    """Each python snippet of the page runs verbatim and its lines arrive."""
    if page in DOC_NEEDS:
        pytest.importorskip(DOC_NEEDS[page])
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGDNA_")}
    env["LOGDNA_URL"] = server.url
    env["PYTHONPATH"] = str(REPO_ROOT)
    keyless = env
    for lang, code in blocks(page):
        # scaling.md's Vector handler names a remote URL: a key is needed. Its OTLP
        # handler sends to a Collector on plain http, as the page says, with no key.
        if page == "scaling.md" and 'protocol="otlp"' not in code:
            env = dict(keyless, LOGDNA_INGESTION_KEY="doc-key")
        else:
            env = keyless
        if lang == "ini":
            (tmp_path / "logging.ini").write_text(code)
        elif lang == "py":
            compile(code, f"{page} fragment", "exec")
            if "LOGGING = {" in code:
                check = code + "\nimport logging.config\nlogging.config.dictConfig(LOGGING)\n"
                result = run_code(check, tmp_path, env)
                assert 0 == result.returncode, result.stderr
        elif lang == "python":
            result = run_code(as_run(page, code, server, tmp_path), tmp_path, env)
            assert 0 == result.returncode, f"{page}:\n{code}\n{result.stderr}"
    expected = DOC_LINES[page]
    assert server.wait_for_lines(len(expected), TIMEOUT)
    got = [line["line"] for line in server.lines]
    for text in expected:
        assert any(line.startswith(text) for line in got), (text, got)
    for text in DOC_NOT_SENT.get(page, []):
        assert not any(text in line for line in got), (text, got)


def test_every_page_with_snippets_is_run() -> None:
    """Every docs page with a ```python snippet is in DOC_LINES (so a new one is run)."""
    with_snippets = {p.name for p in DOCS.glob("*.md") if any(
        lang == "python" for lang, _code in blocks(p.name))}  # fmt: skip
    assert with_snippets <= set(DOC_LINES)
