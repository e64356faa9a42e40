"""Tests for the typed options (_options.py): static types, run-time typos, help()."""

from __future__ import annotations

import logging.config
import pydoc
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from logdna_client import Client, ConfigurationError, LogDNAHandler
from logdna_client._config import Config
from logdna_client._options import (
    OPTION_NAMES,
    ClientOptions,
    check_option_names,
    config_option_names,
    option_docs,
)
from logdna_client.structlog import LogDNAProcessor

LOCAL = "http://127.0.0.1:9/logs/ingest"  # loopback: no key needed; never contacted here


class TestOptionsMatchConfig:
    def test_typed_dict_names_every_config_field(self) -> None:
        """ClientOptions and Config name the same options: a new Config field needs its line."""
        missing = sorted(config_option_names() - OPTION_NAMES)
        extra = sorted(OPTION_NAMES - config_option_names())
        assert ([], []) == (missing, extra), (
            "add each new Config field to ClientOptions in _options.py, with its type and "
            f"one line of documentation: missing {missing}, not in Config {extra}"
        )

    def test_every_option_documented(self) -> None:
        """Every option carries a one-line doc in its Annotated type."""
        docs = option_docs()
        assert set(docs) == OPTION_NAMES
        assert all(doc and "\n" not in doc for _typ, doc in docs.values())

    @pytest.mark.parametrize(
        "name",
        ["flush_interval", "max_batch_bytes", "max_buffer_bytes", "overflow", "block_timeout",
         "request_timeout", "shutdown_timeout", "retry_max_backoff", "compress", "verify",
         "redact", "max_line_length", "allow_insecure", "spool_sync", "max_spool_bytes",
         "kubernetes"],
    )  # fmt: skip
    def test_default_in_help_is_the_default(self, name: str) -> None:
        """The default an option's help line states (after its last ": ") is Config's:
        help(Client) said max_line_length defaults to 32000, where it is 16 KiB."""
        stated = option_docs()[name][1].rsplit(": ", 1)[1].split(",")[0].split(" (")[0]
        given = Config(url=LOCAL, **{name: stated.strip('"').replace(" ", "")})
        assert getattr(Config(url=LOCAL), name) == getattr(given, name), stated

    def test_total_false(self) -> None:
        """Every option may be left out."""
        assert ClientOptions.__required_keys__ == frozenset()


class TestRuntimeTypos:
    @pytest.mark.parametrize(
        "build",
        [
            lambda: Client(url=LOCAL, flush_intervall=1),  # type: ignore[call-arg]
            lambda: LogDNAHandler(url=LOCAL, flush_intervall=1),  # type: ignore[call-arg]
            lambda: LogDNAProcessor(url=LOCAL, flush_intervall=1),  # type: ignore[call-arg]
        ],
        ids=["Client", "LogDNAHandler", "LogDNAProcessor"],
    )
    def test_typo_names_option_and_closest(self, build: object) -> None:
        """A misspelled option is a ConfigurationError naming it and the closest valid one."""
        with pytest.raises(ConfigurationError) as info:
            build()  # type: ignore[operator]
        assert "flush_intervall" == info.value.option
        assert "did you mean 'flush_interval'?" in str(info.value)
        assert "Config" not in str(info.value)  # no internal class named

    def test_no_close_match(self) -> None:
        """A name like no option points at help()."""
        with pytest.raises(ConfigurationError, match=r"zzz: not an option; see help"):
            check_option_names(["zzz"])

    def test_dictconfig_typo(self) -> None:
        """A typo in a dictConfig handler entry names the option too."""
        with pytest.raises(ValueError) as info:
            logging.config.dictConfig(
                {
                    "version": 1,
                    "handlers": {
                        "logdna": {
                            "class": "logdna_client.LogDNAHandler",
                            "url": LOCAL,
                            "shutdown_timout": "1",
                        }
                    },
                }
            )
        cause = info.value.__cause__
        assert isinstance(cause, ConfigurationError)
        assert "shutdown_timout: not an option; did you mean 'shutdown_timeout'?" == str(cause)

    def test_valid_options_pass(self) -> None:
        """Every documented option is accepted by name."""
        check_option_names(OPTION_NAMES)


class TestHelp:
    @pytest.mark.parametrize("cls", [Client, LogDNAHandler, LogDNAProcessor])
    def test_help_lists_every_option(self, cls: type) -> None:
        """help() on each public class lists every option with its doc line."""
        text = pydoc.render_doc(cls, renderer=pydoc.plaintext)
        for name, (_typ, doc) in option_docs().items():
            assert f"{name} " in text
            assert doc in text

    def test_help_shows_typed_signature(self) -> None:
        """The signature shows the typed options rather than **options: Any."""
        text = pydoc.render_doc(Client, renderer=pydoc.plaintext)
        assert "Unpack[ClientOptions]" in text
        handler = pydoc.render_doc(LogDNAHandler, renderer=pydoc.plaintext)
        assert "Ships records to LogDNA" in handler  # its own docstring, not the stdlib's
        assert "Unpack[ClientOptions]" in handler


_TYPED = """
from pathlib import Path

from logdna_client import Client, LogDNAHandler
from logdna_client.structlog import LogDNAProcessor

Client(url="http://127.0.0.1:1", flush_interval=1.0, tags=["a"], overflow="block")
LogDNAHandler(app="api", max_buffer_bytes="64MB", shutdown_timeout=2)
LogDNAHandler("key", {"app": "x"})
LogDNAProcessor(env="prod", compress=False)
LogDNAHandler(key_file=Path("/run/secrets/key"), spool_dir=Path("spool"), verify=Path("ca.pem"))
reveal_type(Client(url="http://127.0.0.1:1").stats()["last_error"])
"""

_TYPOS = """
from logdna_client import Client, LogDNAHandler
from logdna_client.structlog import LogDNAProcessor

Client(flush_intervall=1.0)
LogDNAHandler(shutdown_timout=2)
LogDNAProcessor(envv="prod")
Client(overflow="drop_everything")
Client(compress="yes please", tags=3)
"""


def _mypy(tmp_path: Path, code: str) -> str:
    path = tmp_path / "user_code.py"
    path.write_text(textwrap.dedent(code))
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental",
         "--cache-dir", str(tmp_path / ".mypy_cache"), str(path)],
        capture_output=True, text=True, timeout=300, check=False,
        cwd=Path(__file__).parent.parent,
    )  # fmt: skip
    return result.stdout + result.stderr


class TestStaticTypes:
    def test_mypy_catches_typos_and_accepts_options(self, tmp_path: Path) -> None:
        """mypy --strict on user code: valid options pass, misspelled ones and wrong types fail."""
        good = _mypy(tmp_path, _TYPED)
        assert "error" not in good, good
        assert 'Union[TypedDict("logdna_client._stats.LastError"' in good or "LastError" in good

        bad = _mypy(tmp_path, _TYPOS)
        assert 'Unexpected keyword argument "flush_intervall"' in bad, bad
        assert 'did you mean "flush_interval"' in bad
        assert 'Unexpected keyword argument "shutdown_timout"' in bad
        assert 'Unexpected keyword argument "envv"' in bad
        assert '"overflow"' in bad  # a Literal the value is not one of
        assert '"compress"' in bad
        assert '"tags"' in bad


class TestPublicNames:
    def test_exported(self) -> None:
        """ClientOptions and ClientStats are importable from the package, for annotations."""
        import logdna_client

        assert {"ClientOptions", "ClientStats"} <= set(logdna_client.__all__)
        settings: logdna_client.ClientOptions = {"url": LOCAL, "app": "api"}
        client = Client(**settings)
        stats: logdna_client.ClientStats = client.stats()
        client.close(0)
        assert 0 == stats["sent"]
