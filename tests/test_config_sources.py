"""Where an option's value came from, as _config keeps and names it: a relative path is
kept from the working directory of the construction (verify, spool_dir, key_file), and an
error about a value from a LOGDNA_* variable names the variable."""

from __future__ import annotations

import shutil
import ssl
from pathlib import Path

import pytest

from logdna_client import Client, ConfigurationError
from logdna_client._config import ENV_VARS, Config
from logdna_client._devserver import DevServer
from logdna_client._secret import Secret
from tests._claims_servers import answer, scripted_server
from tests.test_hostile_endpoints import tls  # noqa: F401 (a fixture)

KEY = "c0ffee-ingestion-key-1234"
LOCAL = "http://127.0.0.1:9/logs/ingest"  # loopback: no key needed; never contacted here
REMOTE = "https://logs.example.com/logs/ingest"  # a key is needed; never contacted here
WAIT = 10.0


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No LOGDNA_ variable of the machine's reaches these tests."""
    for name in ENV_VARS.values():
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def two_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Folders A and B; the test starts in A."""
    a, b = tmp_path / "A", tmp_path / "B"
    a.mkdir()
    b.mkdir()
    monkeypatch.chdir(a)
    return a, b


class TestRelativePaths:
    def test_a_relative_ca_bundle_still_verifies_after_a_chdir(
        self,
        tls: tuple[ssl.SSLContext, Path],  # noqa: F811
        two_folders: tuple[Path, Path],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """verify="certs/ca.pem" is the file it named when the client was built: after a
        chdir (a daemon's chdir("/")) lines are still delivered over verified TLS (no
        request could be made before: the bundle was looked for in the new folder)."""
        context, cert = tls
        a, b = two_folders
        (a / "certs").mkdir()
        shutil.copy(cert, a / "certs" / "ca.pem")
        with scripted_server(lambda r, s, e: answer(200), tls=context) as server:
            client = Client(url=server.url, verify="certs/ca.pem", hostname="t",
                            flush_interval=0.05, handle_signals=False,
                            kubernetes=False)  # fmt: skip
            try:
                monkeypatch.chdir(b)
                assert str(a / "certs" / "ca.pem") == client.config.verify
                client.log("after the chdir")
                assert client.flush(timeout=WAIT)
            finally:
                client.close(timeout=0)
            assert ["after the chdir"] == [r.lines[0]["line"] for r in server.requests]

    @pytest.mark.parametrize("how", ["option", "variable"])
    def test_a_relative_spool_folder_stays_where_it_was_given(
        self,
        how: str,
        server: DevServer,
        two_folders: tuple[Path, Path],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """spool_dir="spool" (or LOGDNA_SPOOL_DIR=spool) is the folder in the working
        directory of the construction: the spool is made there, not where the process
        has moved to when the sender opens it."""
        a, b = two_folders
        given = {"spool_dir": "spool"} if how == "option" else {}
        if how == "variable":
            monkeypatch.setenv("LOGDNA_SPOOL_DIR", "spool")
        client = Client(url=server.url, hostname="t", flush_interval=0.05,
                        handle_signals=False, kubernetes=False, **given)  # fmt: skip
        try:
            monkeypatch.chdir(b)
            client.log("spooled where it was said")
            assert client.flush(timeout=WAIT)
        finally:
            client.close(timeout=WAIT)
        assert str(a / "spool") == client.config.spool_dir
        assert (a / "spool").is_dir()
        assert not (b / "spool").exists()

    def test_a_relative_key_file_is_read_again_from_where_it_was_given(
        self, two_folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """replace(url=...) reads key_file= again for the new URL: from the file named at
        construction, also after a chdir (it was looked for in the new folder)."""
        a, b = two_folders
        (a / "key.txt").write_text(KEY + "\n")
        config = Config(key_file="key.txt", url=REMOTE)
        monkeypatch.chdir(b)
        moved = config.replace(url="https://logs.mezmo.com/logs/ingest")
        assert Secret(KEY) == moved.secret
        assert str(a / "key.txt") == moved.key_file

    def test_an_absolute_path_is_kept_as_given(self, tmp_path: Path) -> None:
        """An absolute path is not rewritten (nor normalized: the kernel resolves "..")."""
        given = str(tmp_path / "x" / ".." / "spool")
        assert given == Config(url=LOCAL, spool_dir=given).spool_dir


#: (variable, a value it cannot have, the option it fills)
BAD_VARIABLES = [
    ("LOGDNA_RECORD_META", "name,line", "record_meta"),
    ("LOGDNA_HANDLE_SIGNALS", "enabled", "handle_signals"),
    ("LOGDNA_HOSTNAME", "ip-10-0-0-1." + "x" * 70 + ".compute.internal", "hostname"),
    ("LOGDNA_APP", "a" * 81, "app"),
    ("LOGDNA_ENV", "e" * 81, "env"),
    ("LOGDNA_URL", "ftp://logs.example.com/x", "url"),
    ("LOGDNA_INGESTION_KEY", "abc\ndef", "key"),
]


class TestErrorsNameTheVariable:
    @pytest.mark.parametrize(("variable", "value", "option"), BAD_VARIABLES)
    def test_a_bad_value_from_the_environment(
        self, variable: str, value: str, option: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The error names the variable the value came from, which is what the user
        fixes; its ``option`` attribute is still the option."""
        monkeypatch.setenv(variable, value)
        others = {"url": REMOTE} if option in ("key", "url") else {"url": LOCAL}
        others.pop(option, None)
        with pytest.raises(ConfigurationError) as caught:
            Config(**({"key": KEY} if option == "url" else {}), **others)
        assert str(caught.value).startswith(f"{variable}: "), str(caught.value)
        assert option == caught.value.option

    @pytest.mark.parametrize(("variable", "value", "option"), BAD_VARIABLES)
    def test_the_same_value_given_names_the_option(
        self, variable: str, value: str, option: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Given as the keyword instead (the variable set too: the keyword wins), the error
        names the keyword."""
        monkeypatch.setenv(variable, value)
        options = {"url": REMOTE, "key": KEY, option: value}
        with pytest.raises(ConfigurationError) as caught:
            Config(**options)
        assert str(caught.value).startswith(f"{option}: "), str(caught.value)

    def test_a_blank_variable_is_not_named(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A blank LOGDNA_INGESTION_KEY is no key (as an unset one): the error is the key's."""
        monkeypatch.setenv("LOGDNA_INGESTION_KEY", "  ")
        with pytest.raises(ConfigurationError, match=r"^key: no ingestion key found"):
            Config(url=REMOTE)
