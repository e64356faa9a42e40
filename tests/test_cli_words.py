"""The command line speaks in flags, and tells the user a command that runs (_cli.py)."""

from __future__ import annotations

import io
import shlex
import shutil
import sys

import pytest

from logdna_client import ConfigurationError, _cli_common
from logdna_client._cli import _command_flags, _in_flags, build_parser, main
from logdna_client._devserver import DevServer
from tests.test_config_sources import other_host  # noqa: F401 (a fixture)

KEY = "c0ffee-ingestion-key-1234"


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
        assert "pass --key, --key-file or set LOGDNA_INGESTION_KEY" in err  # (H187: no
        assert "key=" not in err  # --key-file)

    def test_a_url_carrying_the_key(self) -> None:
        """The key in --url's query: the flags to pass it with (H187: "key=")."""
        url = f"https://logs.example.invalid/logs/ingest?api_key={KEY}"
        status, err = run_main("send", "--url", url, "--key", KEY, "x")
        assert 2 == status
        assert "--url: must not carry the ingestion key; pass the key with --key, " in err
        assert "key=" not in err and KEY not in err

    def test_insecure_url(self) -> None:
        """Plain http to a remote host with a key: the flag that allows it, not the keyword."""
        status, err = run_main("send", "--url", "http://example.com/logs/ingest", "--key", "k", "x")
        assert 2 == status
        assert err.startswith("logdna-client send: --url: plain http:// to example.com")
        assert "or pass --allow-insecure (or set LOGDNA_ALLOW_INSECURE=1)" in err
        assert "allow_insecure" not in err

    def test_option_named_as_flag(self) -> None:
        """An option's name is shown as its flag."""
        status, err = run_main("send", "--url", "http://127.0.0.1:9/", "--flush-interval", "0", "x")
        assert 2 == status
        assert "--flush-interval: expected seconds between" in err


class TestErrorsNameVariables:
    @pytest.mark.parametrize(
        ("variable", "value"),
        [("LOGDNA_RECORD_META", "name,line"), ("LOGDNA_HANDLE_SIGNALS", "enabled"),
         ("LOGDNA_URL", "ftp://logs.example.com/x")],
    )  # fmt: skip
    @pytest.mark.parametrize("command", [["send", "x"], ["pipe", "--", "true"]])
    def test_a_bad_variable_is_named(
        self, variable: str, value: str, command: list[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A bad value from a LOGDNA_* variable: the error names the variable, never a flag
        (--record-meta and --handle-signals do not exist; --url was not given)."""
        monkeypatch.setenv("LOGDNA_URL", "http://127.0.0.1:9/logs/ingest")
        monkeypatch.setenv(variable, value)
        status, err = run_main(*command)
        assert 2 == status
        assert err.startswith(f"logdna-client {command[0]}: {variable}: "), err
        assert "--" + variable.removeprefix("LOGDNA_").lower().replace("_", "-") not in err

    def test_an_option_is_a_flag_only_where_the_command_has_it(self) -> None:
        """An option's error is named as its flag for a command that has the flag (send:
        --hostname), and keeps its name for one that has not (demo)."""
        parser = build_parser()
        error = ConfigurationError("hostname: expected at most 80 characters, got 'h'", "hostname")
        send = _command_flags(parser, parser.parse_args(["send", "x"]))
        demo = _command_flags(parser, parser.parse_args(["demo"]))
        assert "--hostname: expected at most 80 characters, got 'h'" == _in_flags(error, send)
        assert "hostname: expected at most 80 characters, got 'h'" == _in_flags(error, demo)

    @pytest.mark.parametrize(
        ("command", "has"),
        [(["send", "x"], True), (["pipe"], True), (["spool", "ls"], True),
         (["spool", "replay"], True), (["spool", "purge"], True), (["spool", "verify"], False),
         (["demo"], False)],
    )  # fmt: skip
    def test_the_commands_that_take_a_url_take_allow_insecure(
        self, command: list[str], has: bool
    ) -> None:
        """--allow-insecure is a flag of every command that takes --url (its actions'
        flags found down to spool's), and of no other."""
        parser = build_parser()
        flags = _command_flags(parser, parser.parse_args(command))
        assert has == ("--allow-insecure" in flags) == ("--url" in flags)


class TestAllowInsecure:
    def test_send_to_a_devserver_on_another_host(
        self,
        other_host: tuple[DevServer, str],  # noqa: F811
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """send to a devserver on another host (``--host 0.0.0.0``): with no key it is
        delivered; with a key it is refused unless --allow-insecure or
        LOGDNA_ALLOW_INSECURE=1 says so, and then delivered."""
        server, url = other_host
        for name in ("LOGDNA_INGESTION_KEY", "LOGDNA_ALLOW_INSECURE", "LOGDNA_URL"):
            monkeypatch.delenv(name, raising=False)
        assert (0, "") == run_main("send", "no key", "--url", url)
        status, err = run_main("send", "refused", "--url", url, "--key", KEY)
        assert 2 == status
        assert "--allow-insecure" in err
        assert (0, "") == run_main("send", "flag", "--url", url, "--key", KEY, "--allow-insecure")
        monkeypatch.setenv("LOGDNA_ALLOW_INSECURE", "1")
        assert (0, "") == run_main("send", "variable", "--url", url, "--key", KEY)
        assert ["no key", "flag", "variable"] == [line["line"] for line in server.lines]


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
