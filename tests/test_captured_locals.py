"""The key in captured locals (issue 15): error reporters that capture frame locals
(Sentry does by default) must find no key, and no ``os.environ``, in our frames."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from logdna_client import Client, Config, ConfigurationError, LogDNAHandler
from logdna_client.structlog import LogDNAProcessor

KEY = "Lk9-captured-Locals-Key-5d2e7a"
FRAGMENTS = (KEY, KEY[4:18], KEY[-10:])
#: Another variable: os.environ shown whole in a frame would carry it too.
ENV_CANARY = "zz-environ-canary-zz"
REMOTE = "https://logs.example.com/logs/ingest"

ENTRY_POINTS: dict[str, Callable[..., Any]] = {
    "Client": Client,
    "LogDNAHandler": LogDNAHandler,
    "LogDNAProcessor": LogDNAProcessor,
    "Config": Config,
}

#: Options that each make the library raise a ConfigurationError.
BAD_OPTIONS: dict[str, dict[str, Any]] = {
    "duration": {"flush_interval": "soon"},
    "size": {"max_batch_bytes": "huge"},
    "url-credentials": {"url": "https://u:p@logs.example.com/logs/ingest"},
    "plain-http": {"url": "http://logs.example.com/logs/ingest"},
    "hostname": {"hostname": "h" * 200},
    "pattern": {"redact_patterns": ["(unclosed"]},
    "callable": {"before_send": "no.such.module.hook"},
    "verify": {"verify": "/no/such/bundle.pem"},
    "overflow": {"overflow": "explode"},
}


def captured(exc: BaseException) -> str:
    """What a reporter capturing locals would see in the library's frames: from the
    first one on (the test's own frame holds the key it passed, as any caller's does)."""
    tb = exc.__traceback__
    while tb is not None and "/logdna_client/" not in tb.tb_frame.f_code.co_filename:
        tb = tb.tb_next
    assert tb is not None, "raised outside the library"
    return "".join(traceback.TracebackException(type(exc), exc, tb, capture_locals=True).format())


def assert_clean(text: str) -> None:
    for fragment in (*FRAGMENTS, ENV_CANARY):
        assert fragment not in text, f"{fragment!r} in captured locals"


@pytest.fixture(autouse=True)
def _canary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_OTHER_SETTING", ENV_CANARY)
    monkeypatch.delenv("LOGDNA_INGESTION_KEY", raising=False)
    monkeypatch.delenv("LOGDNA_URL", raising=False)


class TestCapturedLocals:
    @pytest.mark.parametrize("entry", list(ENTRY_POINTS))
    @pytest.mark.parametrize("bad", list(BAD_OPTIONS))
    @pytest.mark.parametrize("source", ["argument", "environment", "key_file"])
    def test_configuration_errors(
        self, entry: str, bad: str, source: str, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path,
    ) -> None:  # fmt: skip
        """Whichever entry point, bad option and key source: the error's frames, locals
        and all, hold no key and no os.environ."""
        options: dict[str, Any] = {"url": REMOTE, **BAD_OPTIONS[bad]}
        if source == "argument":
            options["key"] = KEY
        elif source == "environment":
            monkeypatch.setenv("LOGDNA_INGESTION_KEY", KEY)
        else:
            path = tmp_path / "key"
            path.write_text(KEY + "\n")
            options["key_file"] = str(path)

        with pytest.raises(ConfigurationError) as info:
            ENTRY_POINTS[entry](**options)

        assert_clean(captured(info.value))

    @pytest.mark.parametrize("entry", list(ENTRY_POINTS))
    def test_a_key_with_a_line_break(self, entry: str) -> None:
        """The key's own error (a control character in it) holds no copy of it."""
        with pytest.raises(ConfigurationError) as info:
            ENTRY_POINTS[entry](key=KEY + "\n" + KEY, url=REMOTE)

        assert_clean(captured(info.value))

    @pytest.mark.parametrize("entry", list(ENTRY_POINTS))
    def test_a_key_that_is_not_text(self, entry: str) -> None:
        """A key given as bytes is refused without being shown or kept."""
        with pytest.raises(ConfigurationError) as info:
            ENTRY_POINTS[entry](key=KEY.encode(), url=REMOTE)

        assert_clean(captured(info.value))

    def test_config_positional_key(self) -> None:
        """Config(key, ...) given positionally is hidden just the same."""
        with pytest.raises(ConfigurationError) as info:
            Config(KEY, url=REMOTE, flush_interval="soon")  # type: ignore[misc]

        assert_clean(captured(info.value))

    @pytest.mark.parametrize("entry", ["LogDNAHandler", "LogDNAProcessor"])
    def test_client_and_options_conflict(self, entry: str) -> None:
        """ "Pass either client= or options" names the options, not their values."""
        client = Client(key=KEY, url=REMOTE, flush_interval=3600)
        try:
            with pytest.raises(ConfigurationError) as info:
                ENTRY_POINTS[entry](client=client, key=KEY)
        finally:
            client.close(timeout=0)

        assert_clean(captured(info.value))

    def test_client_config_and_options_conflict(self) -> None:
        """Client(config=..., key=...) refuses without showing the key."""
        config = Config(key=KEY, url=REMOTE)
        with pytest.raises(ConfigurationError) as info:
            Client(config=config, key=KEY)

        assert_clean(captured(info.value))

    @pytest.mark.parametrize("entry", ["Client", "LogDNAHandler", "LogDNAProcessor"])
    def test_half_built_objects_have_safe_reprs(self, entry: str) -> None:
        """repr() of an object whose __init__ failed neither raises nor shows the key."""
        with pytest.raises(ConfigurationError) as info:
            ENTRY_POINTS[entry](key=KEY, url=REMOTE, flush_interval="soon")
        tb = info.value.__traceback__
        while tb is not None and "self" not in tb.tb_frame.f_locals:
            tb = tb.tb_next
        assert tb is not None

        shown = repr(tb.tb_frame.f_locals["self"])

        assert type(tb.tb_frame.f_locals["self"]).__name__ in shown
        assert_clean(shown)

    @pytest.mark.parametrize(
        "url",
        [
            f"https://user:{KEY}@logs.example.com/logs/ingest",
            f"https://{KEY}@logs.example.com/logs/ingest",
            f"https://logs.example.com/logs/ingest?apikey={KEY}",
        ],
    )
    @pytest.mark.parametrize("entry", list(ENTRY_POINTS))
    def test_a_url_carrying_the_key(self, entry: str, url: str) -> None:
        """A key pasted into url= (the credentials the library refuses there) is no
        more shown in the error's frames than one passed as key=."""
        with pytest.raises(ConfigurationError) as info:
            ENTRY_POINTS[entry](key=KEY, url=url)

        assert_clean(captured(info.value))
