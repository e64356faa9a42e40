"""Second review of where the ingestion key could leak: a key pasted where a path, a
number or a flag's value belongs, shown back in an error; and the command line."""

from __future__ import annotations

import contextlib
import io
import os
import traceback
from pathlib import Path

import pytest

from logdna_client import Config, ConfigurationError, LogDNAHandler
from logdna_client._cli import main

KEY = "k3yL3AKq8ZtW2vXr9PmN4bYcD7e"
#: Any 12 characters of it, and its other cases: what a message must not show.
PIECES = [KEY[i : i + 12] for i in range(len(KEY) - 11)]
REMOTE = "https://logs.example.com/logs/ingest"


def assert_hidden(text: str) -> None:
    low = text.lower()
    for piece in PIECES:
        assert piece.lower() not in low, f"{piece!r} shown in {text!r}"


def library_frames(exc: BaseException) -> str:
    """The traceback with captured locals, from the library's first frame on."""
    tb = exc.__traceback__
    while tb is not None and "/logdna_client/" not in tb.tb_frame.f_code.co_filename:
        tb = tb.tb_next
    assert tb is not None
    return "".join(traceback.TracebackException(type(exc), exc, tb, capture_locals=True).format())


class TestTheKeyGivenAsTheKeyFile:
    """``key_file=`` takes a path; the key itself pasted there (an easy slip between two
    options of the same name) must not come back in the "cannot read" error."""

    @pytest.mark.parametrize("given", [KEY, f" {KEY}\n", f"./{KEY}"])
    def test_not_shown_in_the_error(self, given: str) -> None:
        with pytest.raises(ConfigurationError) as caught:
            Config(key_file=given, url=REMOTE)
        assert caught.value.option == "key_file"
        assert "cannot read" in str(caught.value)
        assert_hidden(str(caught.value))
        assert_hidden(repr(caught.value))

    def test_not_shown_beside_the_environment_key(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("LOGDNA_INGESTION_KEY", KEY)
        with pytest.raises(ConfigurationError) as caught:
            LogDNAHandler(key_file=f"/run/secrets/{KEY}", url=REMOTE)
        assert_hidden(str(caught.value))

    def test_not_in_the_captured_locals(self) -> None:
        with pytest.raises(ConfigurationError) as caught:
            Config(key_file=KEY, url=REMOTE)
        assert_hidden(library_frames(caught.value))

    def test_a_path_is_still_named(self, tmp_path: Path) -> None:
        missing = tmp_path / "logdna-key"
        with pytest.raises(ConfigurationError, match="cannot read") as caught:
            Config(key_file=str(missing), url=REMOTE)
        assert str(missing) in str(caught.value)


class TestTheKeyInAnotherOption:
    """The first review hid a value that holds the key; these hold it changed a little."""

    @pytest.mark.parametrize(
        "option",
        [
            {"flush_interval": KEY[:15]},  # cut short by the paste
            {"flush_interval": KEY[3:]},
            {"hostname": KEY.upper() * 4},  # upper-cased
            {"url": "ftp://logs.example.com/" + KEY.upper()},
            {"level": KEY.lower()},
        ],
        ids=["prefix", "suffix", "upper", "url-upper", "lower"],
    )
    def test_not_shown(self, option: dict[str, str]) -> None:
        with pytest.raises(ConfigurationError) as caught:
            Config(key=KEY, **{"url": REMOTE, **option})
        assert "<hidden>" in str(caught.value)
        assert_hidden(str(caught.value))

    def test_a_value_sharing_a_short_run_with_the_key_is_still_shown(self) -> None:
        with pytest.raises(ConfigurationError) as caught:
            Config(key=KEY, url=REMOTE, flush_interval=KEY[:6] + "-soon")
        assert repr(KEY[:6] + "-soon") in str(caught.value)


def run_cli(args: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    # (argparse writes its usage errors and --help to the process's streams itself)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(args, out=out, err=err)
        except SystemExit as stop:
            code = int(stop.code or 0)
    return code, out.getvalue() + err.getvalue()


class TestCommandLine:
    @pytest.mark.parametrize(
        "flags",
        [
            ["--flush-interval", KEY],
            ["--timeout", KEY + "s"],
            ["--flush-interval", KEY[:14]],
        ],
        ids=["flush-interval", "timeout", "part"],
    )
    @pytest.mark.parametrize("given", ["flag", "flag=", "environment"])
    def test_a_flag_holding_the_key_is_not_echoed(
        self, flags: list[str], given: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        if given == "environment":
            monkeypatch.setenv("LOGDNA_INGESTION_KEY", KEY)
            key: list[str] = []
        else:
            monkeypatch.delenv("LOGDNA_INGESTION_KEY", raising=False)
            key = ["--key", KEY] if given == "flag" else [f"--key={KEY}"]
        code, text = run_cli(["send", *key, "--url", REMOTE, *flags, "hello"])
        assert code == 2
        assert "--" in text and "expected a number of seconds" in text
        assert_hidden(text)

    def test_key_file_flag_keeps_the_key_off_the_command_line(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``--key-file``: a key that ``ps`` never shows (``--key`` stays in
        /proc/PID/cmdline for the whole run). Read as key_file= reads it."""
        monkeypatch.delenv("LOGDNA_INGESTION_KEY", raising=False)
        secret = tmp_path / "key"
        secret.write_text(KEY + "\n")
        seen: dict[str, object] = {}

        import logdna_client._cli_send as send

        real = send.Client

        def spy(**options: object) -> object:
            client = real(**options)
            seen["key"] = client.config.secret.reveal() if client.config.secret else None
            client.close(timeout=0)
            raise SystemExit(0)

        monkeypatch.setattr(send, "Client", spy)
        code, text = run_cli(["send", "--key-file", str(secret), "--url", REMOTE, "hello"])
        assert code == 0, text
        assert seen["key"] == KEY
        assert_hidden(text)

    def test_key_file_flag_pasted_with_the_key_is_not_echoed(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("LOGDNA_INGESTION_KEY", raising=False)
        code, text = run_cli(["send", "--key-file", KEY, "--url", REMOTE, "hello"])
        assert code == 2
        assert "--key-file" in text
        assert_hidden(text)


@pytest.mark.skipif(not os.path.exists("/proc/self/cmdline"), reason="needs /proc")
def test_help_names_a_way_that_ps_does_not_show() -> None:
    code, text = run_cli(["send", "--help"])
    assert code == 0
    assert "--key-file" in text
