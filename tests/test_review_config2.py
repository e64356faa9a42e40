"""Review of configuration as users write it: Config.replace() of options whose default
is computed at construction, one credential per request with the OTel headers, and
option values as config files and the environment give them."""

from __future__ import annotations

import os
import pathlib
from typing import Any

import pytest

from logdna_client import Client, ConfigurationError
from logdna_client._config import Config
from tests._otlp_server import Server, running

KEY = "review-config2-key-0123456789abcdef"
TOKEN = "review-config2-otel-token-0123456789"
_VARIABLES = tuple(
    name
    for name in os.environ
    if name.startswith(("OTEL_EXPORTER_OTLP_", "LOGDNA_")) and name != "LOGDNA_CLIENT_PURE_PYTHON"
)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No OTel exporter or LOGDNA_ variable set but those a test sets."""
    for name in _VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name in ("TIMEOUT", "COMPRESSION", "CERTIFICATE", "HEADERS", "ENDPOINT"):
        monkeypatch.delenv(f"OTEL_EXPORTER_OTLP_{name}", raising=False)
        monkeypatch.delenv(f"OTEL_EXPORTER_OTLP_LOGS_{name}", raising=False)
    for name in ("LOGDNA_INGESTION_KEY", "LOGDNA_URL"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


class TestReplaceUnsets:
    def test_none_goes_back_to_what_the_otel_variables_give(
        self, env: pytest.MonkeyPatch, tmp_path: Any
    ) -> None:
        """replace(request_timeout=None), compress=None and verify=True mean "not given",
        as at construction: with the URL from the OTel endpoint variables, their timeout,
        compression and CA again. Before: 15 s, gzip and the default CAs."""
        ca = tmp_path / "collector-ca.pem"
        ca.write_text("")
        env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
        env.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "500")
        env.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "none")
        env.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(ca))
        built = Config(protocol="otlp", handle_signals=False)
        given = built.replace(request_timeout=3, compress=True, verify=False)
        assert (3.0, True, False) == (given.request_timeout, given.compress, given.verify)
        unset = given.replace(request_timeout=None, compress=None, verify=True)
        expected = (built.request_timeout, built.compress, built.verify)
        assert (0.5, False, str(ca)) == expected
        assert expected == (unset.request_timeout, unset.compress, unset.verify)
        # And they are the OTel endpoint's still: a new URL leaves them behind.
        moved = unset.replace(url="https://otlp.example.com/v1/logs")
        assert (15.0, True, True) == (moved.request_timeout, moved.compress, moved.verify)

    def test_none_without_the_otel_variables_is_the_default(self, env: pytest.MonkeyPatch) -> None:
        """Without the OTel endpoint, "not given" is the option's own default."""
        config = Config(url="http://127.0.0.1:9/", request_timeout=3, compress=False)
        unset = config.replace(request_timeout=None, compress=None)
        assert (15.0, True) == (unset.request_timeout, unset.compress)

    def test_protocol_otlp_reads_the_otel_endpoint_when_url_was_not_given(
        self, env: pytest.MonkeyPatch
    ) -> None:
        """replace(protocol="otlp") on a config whose URL was the default reads the OTel
        endpoint variables, as Config(protocol="otlp") does. Before: the default ingest
        URL was taken as given, and refused for OTLP."""
        env.setenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://127.0.0.1:4318/v1/logs")
        config = Config(key=KEY, handle_signals=False)
        moved = config.replace(protocol="otlp")
        assert Config(key=KEY, protocol="otlp", handle_signals=False).url == moved.url
        assert "http://127.0.0.1:4318/v1/logs" == moved.url


class TestOneCredential:
    def test_an_ambient_key_yields_to_the_otel_authorization_header(
        self, env: pytest.MonkeyPatch
    ) -> None:
        """LOGDNA_INGESTION_KEY (often set pod-wide) and an Authorization header in
        OTEL_EXPORTER_OTLP_HEADERS: the endpoint's own header is the one credential sent.
        Before: both went, and a receiver that takes one refused every request."""
        with running(expected=("bearer", TOKEN)) as bearer:
            self._deliver_through(env, bearer)

    @staticmethod
    def _deliver_through(env: pytest.MonkeyPatch, bearer: Server) -> None:
        env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", bearer.base)
        env.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Bearer {TOKEN}")
        env.setenv("LOGDNA_INGESTION_KEY", KEY)
        client = Client(
            protocol="otlp", kubernetes=False, handle_signals=False, flush_interval=0.05,
            retry_max_backoff=0.2,
        )  # fmt: skip
        client.log("hello", level="INFO")
        assert client.flush(timeout=30)
        client.close()
        assert [[("bearer", TOKEN)]] == [request.credentials for request in bearer.requests]
        assert ["hello"] == [line["line"] for line in bearer.lines]

    @pytest.mark.parametrize("header", ["Authorization=Bearer%20{}", "apiKey={}"])
    @pytest.mark.parametrize("auth", ["apikey", "bearer", "pipeline"])
    def test_an_explicit_key_and_an_otel_credential_header_are_refused(
        self, env: pytest.MonkeyPatch, header: str, auth: str
    ) -> None:
        """key= and a credential header in the OTel headers: a ConfigurationError that
        names both, and neither value. Before: both were sent (or one silently replaced
        the other)."""
        env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
        env.setenv("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "x-tenant=t1," + header.format(TOKEN))
        with pytest.raises(ConfigurationError) as info:
            Config(protocol="otlp", key=KEY, auth=auth, handle_signals=False)
        message = str(info.value)
        assert "key=" in message and "OTEL_EXPORTER_OTLP_LOGS_HEADERS" in message
        assert header.partition("=")[0] in message
        assert KEY not in message and TOKEN not in message
        config = Config(protocol="otlp", handle_signals=False)
        with pytest.raises(ConfigurationError):
            config.replace(key=KEY)

    def test_a_header_that_is_no_credential_goes_with_the_key(
        self, env: pytest.MonkeyPatch
    ) -> None:
        """OTel headers with no credential among them (a tenant) go beside the key."""
        env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
        env.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=t1")
        config = Config(protocol="otlp", key=KEY, handle_signals=False)
        assert config.secret is not None and KEY == config.secret.reveal()
        assert ["x-tenant"] == [name for name, _ in config.otlp_headers]

    def test_replace_keeps_the_ambient_key_out(self, env: pytest.MonkeyPatch) -> None:
        """replace() of a config whose OTel header won over LOGDNA_INGESTION_KEY sends
        still only the header."""
        env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
        env.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Bearer {TOKEN}")
        env.setenv("LOGDNA_INGESTION_KEY", KEY)
        config = Config(protocol="otlp", handle_signals=False)
        assert None is config.secret
        assert None is config.replace(level="INFO").secret


class TestStringsFromFiles:
    @pytest.mark.parametrize(
        ("option", "value"),
        [("level", "²"), ("level", "⁵"), ("max_batch_bytes", "9" * 400),
         ("max_spool_bytes", "9" * 400 + "GiB"), ("flush_interval", 10**400),
         ("request_timeout", -(10**400))],
        ids=["superscript-2", "superscript-5", "400-digits", "400-digits-GiB", "10**400",
             "-10**400"],
    )  # fmt: skip
    def test_a_bad_number_is_a_configuration_error_naming_the_option(
        self, env: pytest.MonkeyPatch, option: str, value: object
    ) -> None:
        """Digits int() does not read, and numbers past a float's range, are refused as
        any bad value is: a ConfigurationError naming the option. Before: a bare
        ValueError ("invalid literal for int()") or an OverflowError, naming nothing."""
        with pytest.raises(ConfigurationError) as info:
            Config(url="http://127.0.0.1:9/", **{option: value})
        assert str(info.value).startswith(f"{option}: expected ")

    @pytest.mark.parametrize("blank", ["", "   "])
    def test_a_blank_url_or_hostname_is_not_given(
        self, env: pytest.MonkeyPatch, blank: str
    ) -> None:
        """url="" or hostname="" (an empty template variable in dictConfig, a bare "url ="
        in a file) is an option not given, as a blank boolean is: LOGDNA_URL and
        LOGDNA_HOSTNAME, or the OTel endpoint, apply. Before: a blank url sent the key and
        every line to the classic host whatever LOGDNA_URL said (or, with blanks, was an
        error), and a blank hostname skipped LOGDNA_HOSTNAME."""
        env.setenv("LOGDNA_URL", "http://127.0.0.1:9/logs")
        env.setenv("LOGDNA_HOSTNAME", "web-from-env")
        config = Config(key=KEY, url=blank, hostname=blank, handle_signals=False)
        assert ("http://127.0.0.1:9/logs", "web-from-env") == (config.url, config.hostname)
        env.delenv("LOGDNA_URL")
        env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
        config = Config(protocol="otlp", url=blank, handle_signals=False)
        assert "http://127.0.0.1:4318/v1/logs" == config.url
        env.setenv("LOGDNA_URL", blank)
        assert "http://127.0.0.1:4318/v1/logs" == Config(protocol="otlp", handle_signals=False).url

    @pytest.mark.parametrize("blank", ["", "  "])
    def test_a_blank_handle_signals_variable_is_not_set(
        self, env: pytest.MonkeyPatch, blank: str
    ) -> None:
        """LOGDNA_HANDLE_SIGNALS set to blanks is the default, as handle_signals="  " is.
        Before: "" was, and "  " was a ConfigurationError."""
        env.setenv("LOGDNA_HANDLE_SIGNALS", blank)
        assert Config(url="http://127.0.0.1:9/").handle_signals is True


#: A value other than the computed one, for each option computed when not given.
GIVEN: dict[str, object] = {
    "key": "given-key-0123456789", "url": "https://otlp.example.com/v1/logs",
    "hostname": "given-host", "tags": "given", "app": "given-app", "env": "given-env",
    "request_timeout": 3, "compress": True, "record_meta": "module",
    "handle_signals": True, "spool_dir": "/tmp/given-spool", "verify": False,
}  # fmt: skip


class TestReplaceEveryComputedDefault:
    @pytest.mark.parametrize("name", sorted(GIVEN))
    def test_replace_to_none_is_construction_without_it(
        self, env: pytest.MonkeyPatch, tmp_path: Any, name: str
    ) -> None:
        """For every option whose value, not given, is computed at construction (from a
        LOGDNA_ variable, the OTel variables, the machine), replace(option=None), or
        verify=True, gives what Config() without it gives."""
        ca = tmp_path / "ca.pem"
        ca.write_text("")
        for variable, value in {
            "LOGDNA_INGESTION_KEY": KEY, "LOGDNA_HOSTNAME": "env-host", "LOGDNA_TAGS": "env",
            "LOGDNA_APP": "env-app", "LOGDNA_ENV": "env-env", "LOGDNA_RECORD_META": "lineno",
            "LOGDNA_HANDLE_SIGNALS": "false", "LOGDNA_SPOOL_DIR": str(tmp_path / "spool"),
            "OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector.example:4318",
            "OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=t1", "OTEL_EXPORTER_OTLP_TIMEOUT": "500",
            "OTEL_EXPORTER_OTLP_COMPRESSION": "none", "OTEL_EXPORTER_OTLP_CERTIFICATE": str(ca),
        }.items():  # fmt: skip
            env.setenv(variable, value)
        unset: object = True if name == "verify" else None
        expected = Config(protocol="otlp")
        changed = Config(protocol="otlp", **{name: GIVEN[name]})
        assert getattr(expected, name) != getattr(changed, name)
        again = changed.replace(**{name: unset})
        assert expected == again
        assert expected.otlp_headers == again.otlp_headers


class TestKeyInAnotherOption:
    @pytest.mark.parametrize(
        ("option", "value"),
        [("url", KEY), ("hostname", KEY * 3), ("app", " " + KEY * 3), ("tags", [KEY, 5]),
         ("flush_interval", KEY), ("redact_patterns", f"({KEY}"), ("before_send", KEY),
         ("before_send", KEY + ".scrub"), ("overflow", KEY), ("url", "ftp://" + KEY)],
        ids=["url", "hostname", "app", "tags", "flush_interval", "redact_patterns",
             "before_send", "before_send-path", "overflow", "url-scheme"],
    )  # fmt: skip
    @pytest.mark.parametrize("given", ["key=", "LOGDNA_INGESTION_KEY", "key_file="])
    def test_a_bad_value_holding_the_key_is_not_shown(
        self, env: pytest.MonkeyPatch, tmp_path: Any, option: str, value: object, given: str
    ) -> None:
        """The key pasted into another option (a swapped variable, a shifted column) is
        refused without being echoed: the error names the option, not the value. Before:
        "url: expected an http(s) URL ..., got '<the key>'"; with key_file= (H187), every
        such message showed it (the file was read after the other options were checked),
        and before_send's import error quoted it (its text, beside the hidden value)."""
        options: dict[str, Any] = {option: value, "handle_signals": False}
        if given == "key=":
            options["key"] = KEY
        elif given == "key_file=":
            (tmp_path / "key").write_text(KEY + "\n")
            options["key_file"] = tmp_path / "key"
        else:
            env.setenv("LOGDNA_INGESTION_KEY", KEY)
        with pytest.raises(ConfigurationError) as info:
            Client(**options)
        message = str(info.value)
        assert message.startswith(f"{option}: ")
        assert KEY[:12] not in message


class TestPaths:
    def test_verify_and_key_file_take_a_path_object_home_and_blanks(
        self, env: pytest.MonkeyPatch, tmp_path: Any
    ) -> None:
        """verify= and key_file= take a pathlib.Path, "~/..." and the blanks a file or a
        variable leaves around a path, as spool_dir does. Before: verify=Path(...) and
        verify="~/ca.pem" were refused, key_file="~/key" could not be read."""
        env.setenv("HOME", str(tmp_path))
        (tmp_path / "ca.pem").write_text("")
        (tmp_path / "key").write_text(KEY + "\n")
        url = "https://logs.example.com/logs/ingest"
        for verify in (tmp_path / "ca.pem", "~/ca.pem", f" {tmp_path / 'ca.pem'}\n"):
            config = Config(key=KEY, url=url, verify=verify, handle_signals=False)
            assert str(tmp_path / "ca.pem") == config.verify
        for key_file in (pathlib.Path("~/key"), "~/key", " ~/key "):
            config = Config(url=url, key_file=key_file, handle_signals=False)
            assert config.secret is not None and KEY == config.secret.reveal()

    def test_a_key_file_that_is_a_number_is_refused_not_read_as_a_descriptor(
        self, env: pytest.MonkeyPatch
    ) -> None:
        """key_file=0 (a number from a YAML file) is refused, naming the option. Before:
        open() read file descriptor 0, standard input, waiting on it, and closed it."""
        with pytest.raises(ConfigurationError) as info:
            Config(url="https://logs.example.com/logs/ingest", key_file=0)  # type: ignore[arg-type]
        assert str(info.value).startswith("key_file: expected the path of a file")


class TestReplaceTypo:
    def test_a_misspelled_option_names_the_closest(self, env: pytest.MonkeyPatch) -> None:
        """replace(flushinterval=2) is a ConfigurationError naming flush_interval, as a
        misspelled option to Client() is. Before: a TypeError from the dataclass."""
        config = Config(url="http://127.0.0.1:9/")
        with pytest.raises(ConfigurationError) as info:
            config.replace(flushinterval=2)
        assert "did you mean 'flush_interval'?" in str(info.value)


class TestKeyVariableTypo:
    @pytest.mark.parametrize("name", ["LOGDNA_KEY", "MZ_INGESTION_KEY", "LOGDNA_API_KEY"])
    def test_the_no_key_error_names_a_variable_meant_for_it(
        self, env: pytest.MonkeyPatch, name: str
    ) -> None:
        """With the key in a variable the library does not read (LOGDNA_KEY, the agent's
        MZ_INGESTION_KEY), the no-key error names that variable, never its value.
        Before: it said only that no key was found."""
        env.setenv(name, KEY)
        with pytest.raises(ConfigurationError) as info:
            Config(url="https://logs.example.com/logs/ingest")
        message = str(info.value)
        assert f"({name} is set, but not read)" in message
        assert KEY not in message
