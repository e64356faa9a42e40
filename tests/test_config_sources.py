"""Where an option's value came from, as _config keeps and names it: a relative path is
kept from the working directory of the construction (verify, spool_dir, key_file), an
error about a value from a LOGDNA_* variable names the variable, and plain http:// is
refused for the credential it would carry, not for the host alone (LOGDNA_ALLOW_INSECURE)."""

from __future__ import annotations

import shutil
import socket
import ssl
from collections.abc import Iterator
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


def own_address() -> str:
    """This machine's address on its way out (not loopback), or a skip where it has none.
    (A UDP connect sends nothing: it only picks the route.)"""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("192.0.2.1", 9))
            address = str(sock.getsockname()[0])
    except OSError:
        address = ""
    if not address or address.startswith("127.") or address == "0.0.0.0":
        pytest.skip("this machine has no address besides loopback")
    return address


@pytest.fixture
def other_host() -> Iterator[tuple[DevServer, str]]:
    """A devserver listening on every address (``devserver --host 0.0.0.0``), and its
    URL at this machine's own address: as an app in a VM or a container reaches it."""
    address = own_address()
    with DevServer(host="0.0.0.0") as server:
        yield server, f"http://{address}:{server.port}/logs/ingest"


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
    ("LOGDNA_ALLOW_INSECURE", "sometimes", "allow_insecure"),
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


class TestPlainHttp:
    ELSEWHERE = "http://10.1.2.3:7080/logs/ingest"

    def test_no_key_needs_no_allow_insecure(self) -> None:
        """No key at all to a plain http:// host that is not loopback (a devserver in a
        VM): nothing secret travels, so nothing is refused (it was, for "the ingestion
        key" that was not there)."""
        config = Config(url=self.ELSEWHERE)
        assert (self.ELSEWHERE, None, False) == (config.url, config.secret, config.allow_insecure)

    def test_a_key_is_still_refused(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """With the key in LOGDNA_INGESTION_KEY, plain http:// to LOGDNA_URL is refused,
        naming the variable that gave the URL and the one that allows it."""
        monkeypatch.setenv("LOGDNA_INGESTION_KEY", KEY)
        monkeypatch.setenv("LOGDNA_URL", self.ELSEWHERE)
        with pytest.raises(ConfigurationError) as caught:
            Config()
        assert str(caught.value).startswith(
            "LOGDNA_URL: plain http:// to 10.1.2.3 would send the ingestion key unencrypted; "
        )
        assert "LOGDNA_ALLOW_INSECURE=1" in str(caught.value)
        assert "url" == caught.value.option

    @pytest.mark.parametrize("opt_in", ["1", "true", "YES", " on "])
    def test_the_variable_opts_in(self, opt_in: str, monkeypatch: pytest.MonkeyPatch) -> None:
        """LOGDNA_ALLOW_INSECURE, read as the other boolean variables are, allows it."""
        monkeypatch.setenv("LOGDNA_ALLOW_INSECURE", opt_in)
        config = Config(key=KEY, url=self.ELSEWHERE)
        assert (True, Secret(KEY)) == (config.allow_insecure, config.secret)

    @pytest.mark.parametrize("opt_out", ["0", "false", "  "])
    def test_the_variable_left_off(self, opt_out: str, monkeypatch: pytest.MonkeyPatch) -> None:
        """Off or blank (an empty template variable), the key is refused as without it."""
        monkeypatch.setenv("LOGDNA_ALLOW_INSECURE", opt_out)
        with pytest.raises(ConfigurationError, match=r"^url: plain http://"):
            Config(key=KEY, url=self.ELSEWHERE)

    def test_the_keyword_wins_over_the_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """allow_insecure=False given wins over LOGDNA_ALLOW_INSECURE=1."""
        monkeypatch.setenv("LOGDNA_ALLOW_INSECURE", "1")
        with pytest.raises(ConfigurationError, match=r"^url: plain http://"):
            Config(key=KEY, url=self.ELSEWHERE, allow_insecure=False)

    @pytest.mark.parametrize(
        "url", ["http://logs.mezmo.com/logs/ingest", "https://logs.example.com/logs/ingest"]
    )
    def test_where_the_service_is_a_key_is_still_needed(self, url: str) -> None:
        """Mezmo's own hosts (over http too) and any https:// URL still want a key: a
        missing one is said at construction, not as every request refused."""
        with pytest.raises(ConfigurationError, match=r"^key: no ingestion key found"):
            Config(url=url)

    def test_an_app_reaches_a_devserver_on_another_host(
        self, other_host: tuple[DevServer, str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An app configured by the environment alone (LOGDNA_URL) delivers to a devserver
        on another host with no key; with a key, once LOGDNA_ALLOW_INSECURE=1 says so."""
        server, url = other_host
        monkeypatch.setenv("LOGDNA_URL", url)
        for key, line in ((None, "no key"), (KEY, "with a key, allowed")):
            if key is not None:
                monkeypatch.setenv("LOGDNA_INGESTION_KEY", key)
                monkeypatch.setenv("LOGDNA_ALLOW_INSECURE", "1")
            client = Client(hostname="vm", flush_interval=0.05, handle_signals=False,
                            kubernetes=False)  # fmt: skip
            try:
                client.log(line)
                assert client.flush(timeout=WAIT)
            finally:
                client.close(timeout=0)
        assert ["no key", "with a key, allowed"] == [line["line"] for line in server.lines]
        assert [False, True] == [request.key_present for request in server.requests]
