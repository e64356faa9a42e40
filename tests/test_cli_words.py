"""The command line speaks in flags, and tells the user a command that runs (_cli.py)."""

from __future__ import annotations

import io
import shlex
import shutil
import sys

import pytest

from logdna_client import _cli_common
from logdna_client._cli import main


def run_main(*args: str) -> tuple[int, str]:
    err = io.StringIO()
    status = main(list(args), out=io.StringIO(), err=err)
    return status, err.getvalue()


class TestErrorsNameFlags:
    def test_missing_key(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """No key for a remote URL: the message names --key, not key= or key_file=."""
        monkeypatch.delenv("LOGDNA_INGESTION_KEY", raising=False)
        status, err = run_main("send", "--url", "https://logs.example.invalid/logs/ingest", "x")
        assert 2 == status
        assert "--key: no ingestion key found (looked at --key, LOGDNA_INGESTION_KEY); " in err
        assert "pass --key or set LOGDNA_INGESTION_KEY" in err
        assert "key=" not in err

    def test_insecure_url(self) -> None:
        """Plain http to a remote host: no allow_insecure=True, which no flag sets."""
        status, err = run_main("send", "--url", "http://example.com/logs/ingest", "--key", "k", "x")
        assert 2 == status
        assert err.startswith("logdna-client send: --url: plain http:// to example.com")
        assert "allow_insecure" not in err

    def test_option_named_as_flag(self) -> None:
        """An option's name is shown as its flag."""
        status, err = run_main("send", "--url", "http://127.0.0.1:9/", "--flush-interval", "0", "x")
        assert 2 == status
        assert "--flush-interval: expected seconds between" in err


class TestSelfCommand:
    def test_script_on_path(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """With logdna-client on PATH, the hint names it."""
        monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/" + name)
        assert "logdna-client" == _cli_common._self_command()

    def test_script_not_on_path(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without it (a venv not activated), the hint runs this interpreter with -m."""
        monkeypatch.setattr(shutil, "which", lambda name: None)
        command = _cli_common._self_command()
        assert [sys.executable, "-m", "logdna_client"] == shlex.split(command)
