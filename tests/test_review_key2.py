"""Second review of where the ingestion key could leak: a key pasted where a path, a
number or a flag's value belongs, shown back in an error; and the command line."""

from __future__ import annotations

import contextlib
import http.client
import io
import logging
import os
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

from logdna_client import Client, Config, ConfigurationError, LogDNAHandler, _transport
from logdna_client._cli import main
from logdna_client.devserver import DevServer

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
        # (a URL holding the key is refused as such: see TestTheKeyInTheUrl)
        assert "<hidden>" in str(caught.value) or "carry the ingestion key" in str(caught.value)
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


@contextlib.contextmanager
def key_pipe() -> Iterator[str]:
    """A path that gives KEY once, as ``<(pass show key)`` does."""
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, KEY.encode())
        os.close(write_end)
        yield f"/dev/fd/{read_end}"
    finally:
        os.close(read_end)


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

    @pytest.mark.parametrize("flag", ["--timeout", "--url", "--app"])
    @pytest.mark.parametrize("form", ["two words", "one word"])
    def test_the_key_files_key_pasted_into_another_flag_is_not_echoed(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, flag: str, form: str
    ) -> None:
        """--key-file's key pasted into another flag: refused unseen, by argparse
        (--timeout's type) and by the Config (--url, --app) alike, as with --key (H187:
        both showed it)."""
        monkeypatch.delenv("LOGDNA_INGESTION_KEY", raising=False)
        secret = tmp_path / "key"
        secret.write_text(KEY + "\n")
        value = {"--timeout": KEY, "--url": "ftp://" + KEY, "--app": KEY * 8}[flag]
        given = (["--key-file", str(secret)] if form == "two words"
                 else [f"--key-file={secret}"])  # fmt: skip
        code, text = run_cli(["send", *given, flag, value, "hello"])
        assert code == 2
        assert flag in text
        assert_hidden(text)

    def test_key_file_flag_pasted_with_the_key_is_not_echoed(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("LOGDNA_INGESTION_KEY", raising=False)
        code, text = run_cli(["send", "--key-file", KEY, "--url", REMOTE, "hello"])
        assert code == 2
        assert "--key-file" in text
        assert_hidden(text)

    @pytest.mark.parametrize(
        "args",
        [
            ["spool", "ls", "--key", KEY, "--spool-dir", KEY],
            ["spool", "purge", "--key", KEY, "--spool-dir", "/nonexistent/" + KEY],
            ["devserver", "--key", KEY, "--port", "0", "--store", "/nonexistent/" + KEY],
        ],
        ids=["spool-ls", "spool-purge", "devserver-store"],
    )
    def test_a_commands_own_messages_do_not_show_the_key(
        self, monkeypatch: pytest.MonkeyPatch, args: list[str]
    ) -> None:
        """The key pasted into a path flag: the command's own complaint (not argparse's)
        names the flag's value with the key hidden (H192: "SECRETKEY... is not a folder",
        "cannot open '/x/SECRETKEY...'")."""
        monkeypatch.delenv("LOGDNA_INGESTION_KEY", raising=False)
        code, text = run_cli(args)
        assert code != 0
        assert "<hidden>" in text
        assert_hidden(text)

    def test_a_key_file_that_is_a_pipe_hides_every_value_argparse_quotes(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A --key-file that is a pipe (``<(pass show key)``) cannot be read before the
        flags (it gives its key once): any value argparse's error quotes may be that
        key, and is hidden (H192: --timeout <key> showed it)."""
        monkeypatch.delenv("LOGDNA_INGESTION_KEY", raising=False)
        with key_pipe() as fifo:
            code, text = run_cli(["send", "--key-file", fifo, "--timeout", KEY, "hello"])
        assert code == 2
        assert "--timeout" in text
        assert_hidden(text)

    def test_a_key_file_that_is_a_pipe_is_read_once_and_hidden(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A --key-file that gives its key only once is read before the flags, and its
        key then hidden in the command's own messages too (H195: "spool ls --key-file
        <(...) --spool-dir <key>" showed it); the command uses that key."""
        monkeypatch.delenv("LOGDNA_INGESTION_KEY", raising=False)
        with key_pipe() as fifo:
            code, text = run_cli(["spool", "ls", "--key-file", fifo, "--spool-dir", KEY])
        assert code != 0
        assert "<hidden> is not a folder" in text
        assert_hidden(text)

    @pytest.mark.parametrize(
        "tail", [["--help"], ["--bogus", "hi"], ["--key", KEY, "hi"]], ids=["help", "usage", "key"]
    )
    def test_a_key_file_fifo_no_one_writes_holds_nothing_that_needs_no_key(
        self, tmp_path: Path, tail: list[str]
    ) -> None:
        """A --key-file FIFO no one writes: --help, a usage error, and a run given --key
        (which never reads the file) end as they did, not wait for a writer for good
        (H196: reading such files before the flags held each of them)."""
        import subprocess
        import sys

        fifo = tmp_path / "key"
        os.mkfifo(fifo)
        env = {k: v for k, v in os.environ.items() if k != "LOGDNA_INGESTION_KEY"}
        url = ["--url", "http://127.0.0.1:9/logs/ingest", "--timeout", "0.5"]
        args = ["send", "--key-file", str(fifo), *(url if tail[0] == "--key" else []), *tail]
        result = subprocess.run(
            [sys.executable, "-m", "logdna_client", *args], env=env, capture_output=True,
            timeout=60, cwd=tmp_path, check=False,
        )  # fmt: skip
        assert result.returncode in (0, 1, 2), result
        assert_hidden(result.stdout.decode() + result.stderr.decode())


@pytest.mark.skipif(not os.path.exists("/proc/self/cmdline"), reason="needs /proc")
def test_help_names_a_way_that_ps_does_not_show() -> None:
    code, text = run_cli(["send", "--help"])
    assert code == 0
    assert "--key-file" in text


class _Grab(logging.Handler):
    """Keeps the library's reports, as an error reporter listening on the logger does."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class _Stop(BaseException):
    """What a custom transport's gevent Timeout looks like to the sender: no Exception."""


def _frames_with_locals(exc: BaseException) -> str:
    """Every local of every frame of ``exc`` and of the exceptions chained to it, as an
    error reporter capturing locals (Sentry's logging integration) records them."""
    return "".join(traceback.TracebackException.from_exception(exc, capture_locals=True).format())


class TestReportedTracebacks:
    """A report with a traceback (a bug while sending, logged with exc_info) must carry
    no frame whose locals hold the request's headers: requests', urllib3's and
    http.client's frames do (``headers``, the ``msg`` bytes sent)."""

    @pytest.fixture
    def reports(self) -> Iterator[_Grab]:
        grab = _Grab()
        library = logging.getLogger("logdna_client")
        library.addHandler(grab)
        try:
            yield grab
        finally:
            library.removeHandler(grab)

    def _send_once(self, reports: _Grab, url: str) -> logging.LogRecord:
        client = Client(key=KEY, url=url, flush_interval=0.05)
        try:
            client.log("hello")
            client.flush(timeout=2)
        finally:
            client.close(timeout=0.5)
        with_trace = [r for r in reports.records if r.exc_info]
        assert with_trace, [r.getMessage() for r in reports.records]
        return with_trace[0]

    def test_a_bug_while_handling_a_connection_error(
        self, reports: _Grab, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The requests ConnectionError (its ``.request`` and its urllib3 frames hold the
        headers) is the context of the bug's exception."""

        def bug(*args: object, **kwargs: object) -> object:
            raise RuntimeError("a bug of ours")

        monkeypatch.setattr(_transport, "_failure", bug)
        record = self._send_once(reports, "http://127.0.0.1:9/logs/ingest")
        assert record.exc_info is not None and record.exc_info[1] is not None
        text = _frames_with_locals(record.exc_info[1])
        assert "a bug of ours" in text
        assert_hidden(text)

    def test_an_interruption_inside_http_client(
        self, reports: _Grab, monkeypatch: pytest.MonkeyPatch, server: DevServer
    ) -> None:
        """A BaseException (a gevent Timeout) out of http.client's send: its own frames
        below ours hold the headers."""

        def stop(self: object, data: object) -> None:
            raise _Stop("cut short")

        monkeypatch.setattr(http.client.HTTPConnection, "send", stop)
        record = self._send_once(reports, server.url)
        assert record.exc_info is not None and record.exc_info[1] is not None
        text = _frames_with_locals(record.exc_info[1])
        assert "_Stop" in text
        assert_hidden(text)


class TestTheKeyInTheUrl:
    """A URL holding the key anywhere (not only as ``user:KEY@`` or ``?apikey=``) would
    carry it into proxy logs, urllib3's debug lines and every report naming the URL."""

    @pytest.mark.parametrize(
        "url",
        [
            f"{REMOTE}/{KEY}",
            f"{REMOTE}?api_key={KEY}",
            f"{REMOTE}?key={KEY}&x=1",
            f"https://logs.example.com/inputs/{KEY}/tag/http/",
        ],
        ids=["path", "api_key", "key", "loggly-style"],
    )
    @pytest.mark.parametrize("given", ["argument", "environment", "file"])
    def test_refused_unshown(
        self, url: str, given: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        options: dict[str, object] = {"url": url}
        if given == "argument":
            options["key"] = KEY
        elif given == "environment":
            monkeypatch.setenv("LOGDNA_INGESTION_KEY", KEY)
        else:
            (tmp_path / "key").write_text(KEY + "\n")
            options["key_file"] = str(tmp_path / "key")
        with pytest.raises(ConfigurationError) as caught:
            Config(**options)
        assert caught.value.option == "url"
        assert "must not carry the ingestion key" in str(caught.value)
        assert_hidden(str(caught.value))
        if given != "file":  # (a key file's key is known only once read: after the url is)
            assert_hidden(library_frames(caught.value))

    def test_a_url_without_it_is_taken(self) -> None:
        assert Config(key=KEY, url=REMOTE + "?tag=" + KEY[:6]).url.endswith(KEY[:6])
