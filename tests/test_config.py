"""Tests for _config: coercion of strings, env fallbacks, clear errors, the key kept secret."""

from __future__ import annotations

import pickle

import pytest

from logdna_client import ConfigurationError
from logdna_client._config import DEFAULT_URL, Config
from logdna_client._secret import Secret

KEY = "c0ffee-ingestion-key-1234"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LOGDNA_INGESTION_KEY", "LOGDNA_URL", "LOGDNA_APP", "LOGDNA_ENV",
                 "LOGDNA_HOSTNAME", "LOGDNA_TAGS"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)


class TestCoercion:
    def test_strings_from_config_files_are_coerced(self) -> None:
        """Numbers, sizes, durations, booleans and tag lists given as strings become typed."""
        c = Config(
            key=KEY, flush_interval="250ms", max_batch_bytes="512KiB", max_buffer_bytes="8MB",
            request_timeout="20", shutdown_timeout="2.5s", compress="false", index_meta="no",
            tags="a, b ,,c", level="warning", overflow="DROP_NEWEST", verify="true",
        )  # fmt: skip
        assert 0.25 == c.flush_interval
        assert 512 * 1024 == c.max_batch_bytes
        assert 8_000_000 == c.max_buffer_bytes
        assert 20.0 == c.request_timeout
        assert 2.5 == c.shutdown_timeout
        assert c.compress is False
        assert c.index_meta is False
        assert ("a", "b", "c") == c.tags
        assert 30 == c.level
        assert "drop_newest" == c.overflow
        assert c.verify is True

    def test_defaults(self) -> None:
        """Defaults match the documented ones: classic host, gzip on, TLS verified, 1 s interval."""
        c = Config(key=KEY)
        assert DEFAULT_URL == c.url
        assert c.compress is True
        assert c.verify is True
        assert 1.0 == c.flush_interval
        assert c.max_batch_bytes < 10_000_000
        assert c.hostname

    @pytest.mark.parametrize(
        ("option", "value"),
        [
            ("flush_interval", "soon"),
            ("flush_interval", -1),
            ("flush_interval", float("nan")),
            ("max_batch_bytes", "lots"),
            ("max_batch_bytes", 20_000_000),
            ("max_buffer_bytes", 10),
            ("overflow", "explode"),
            ("compress", "maybe"),
            ("level", "LOUD"),
            ("tags", 5),
            ("request_timeout", True),
            ("app", "x" * 81),
            ("verify", "/no/such/ca-bundle.pem"),
            ("redact_patterns", ["("]),
            ("before_send", "no_such_module_xyz.fn"),
        ],
    )
    def test_bad_values_name_the_option(self, option: str, value: object) -> None:
        """A bad value raises ConfigurationError (a ValueError) that names the option."""
        with pytest.raises(ConfigurationError) as info:
            Config(key=KEY, **{option: value})
        assert option == info.value.option
        assert option in str(info.value)
        assert isinstance(info.value, ValueError)


class TestBlankBooleans:
    @pytest.mark.parametrize(
        ("option", "default"),
        [
            ("verify", True),
            ("compress", True),
            ("index_meta", True),
            ("handle_signals", True),
            ("allow_insecure", False),
            ("kubernetes", "auto"),
        ],
    )
    def test_blank_is_the_default(
        self, option: str, default: object, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A blank boolean (an empty template variable, ``verify =`` in a file) is an
        option not given: its default, never false (TLS verification off, unseen)."""
        monkeypatch.delenv("LOGDNA_HANDLE_SIGNALS", raising=False)
        assert default == getattr(Config(key=KEY, **{option: " "}), option)

    def test_blank_redact_keeps_the_default_redaction(self) -> None:
        """``redact=""`` adds no key names; it does not turn redaction off."""
        assert Config(key=KEY, redact="").redact not in (False, "")


class TestRedactPatterns:
    """redact_patterns given as one string is split only at the commas between patterns;
    each test here failed before, when it was split at every comma and every piece (list
    items too) stripped."""

    def patterns(self, value: object) -> tuple[str, ...]:
        return Config(key=KEY, redact_patterns=value).redact_patterns

    def test_a_quantifier_with_a_comma_stays_whole(self) -> None:
        """Before: ('MRN-\\d{6', '8}'), both compiled, and MRN-1234567 shipped."""
        assert (r"MRN-\d{6,8}",) == self.patterns(r"MRN-\d{6,8}")

    def test_a_class_with_a_comma_stays_whole(self) -> None:
        """Before: "'[' is not a valid regular expression"."""
        assert (r"[,;]secret=\w+", r"[^],]+") == self.patterns(r"[,;]secret=\w+, [^],]+")

    def test_an_escaped_comma_stays_in_its_pattern(self) -> None:
        """Before: 'last\\' and 'first', refused as a bad escape."""
        assert (r"last\, first", "email") == self.patterns(r"last\, first, email")

    def test_presets_and_patterns_mixed(self) -> None:
        """Before: ('phi', 'ORD-\\d{3', '6}', 'credentials')."""
        assert ("phi", r"ORD-\d{3,6}", "credentials") == self.patterns(
            r"phi, ORD-\d{3,6} ,credentials"
        )

    def test_list_items_are_neither_split_nor_stripped(self) -> None:
        """Before: ' id ' became 'id', which matches inside "idle"."""
        assert (" id ", "a,b") == self.patterns([" id ", "a,b"])

    def test_a_fragment_is_refused_naming_the_option_and_the_piece(self) -> None:
        """Before: 'MRN-\\d{6' compiled (it matches "MRN-d{6" literally) and the line
        shipped unredacted, with no error."""
        with pytest.raises(ConfigurationError) as info:
            Config(key=KEY, redact_patterns=r"phi, MRN-\d{6")
        assert "redact_patterns" == info.value.option
        assert repr(r"MRN-\d{6") in str(info.value)


class TestEnvironment:
    def test_env_vars_fill_missing_options(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The key, URL, app, env, hostname and tags come from LOGDNA_* when not given."""
        monkeypatch.setenv("LOGDNA_INGESTION_KEY", f"  {KEY}\n")
        monkeypatch.setenv("LOGDNA_URL", "https://logs.mezmo.com/logs/ingest")
        monkeypatch.setenv("LOGDNA_APP", "billing")
        monkeypatch.setenv("LOGDNA_ENV", "staging")
        monkeypatch.setenv("LOGDNA_HOSTNAME", "web-7")
        monkeypatch.setenv("LOGDNA_TAGS", "k8s,blue")
        c = Config()
        assert c.secret is not None
        assert KEY == c.secret.reveal()
        assert "https://logs.mezmo.com/logs/ingest" == c.url
        assert ("billing", "staging", "web-7") == (c.app, c.env, c.hostname)
        assert ("k8s", "blue") == c.tags

    def test_explicit_argument_wins(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """An explicit argument takes precedence over the environment."""
        monkeypatch.setenv("LOGDNA_APP", "from-env")
        assert "explicit" == Config(key=KEY, app="explicit").app


class TestKey:
    def test_missing_key_says_where_it_looked(self) -> None:
        """No key anywhere is a ConfigurationError naming the places searched."""
        with pytest.raises(ConfigurationError) as info:
            Config(key="   ")
        assert "LOGDNA_INGESTION_KEY" in str(info.value)
        assert "key" == info.value.option

    def test_key_file_is_read_and_stripped(self, tmp_path: pytest.TempPathFactory) -> None:
        """key_file= reads a mounted secret and strips surrounding whitespace."""
        path = tmp_path / "key"  # type: ignore[operator]
        path.write_text(KEY + "\n")
        c = Config(key_file=str(path))
        assert c.secret is not None
        assert KEY == c.secret.reveal()

    def test_unreadable_key_file_is_a_configuration_error(self) -> None:
        """A key_file that cannot be read is reported without any key material."""
        with pytest.raises(ConfigurationError) as info:
            Config(key_file="/no/such/file")
        assert "key_file" == info.value.option

    def test_loopback_needs_no_key(self) -> None:
        """The local devserver on loopback accepts requests without a key."""
        assert Config(url="http://127.0.0.1:9999/logs/ingest").secret is None

    def test_key_never_in_repr_or_pickle_repr(self) -> None:
        """The key appears in no repr or str of the config or its Secret."""
        c = Config(key=KEY)
        for text in (repr(c), str(c), repr(c.secret), str(c.secret)):
            assert KEY not in text
        assert Secret(KEY) == pickle.loads(pickle.dumps(Secret(KEY)))


class TestWire:
    def test_plain_http_to_remote_host_is_refused(self) -> None:
        """http:// to a non-loopback host would leak the key, so it needs allow_insecure."""
        with pytest.raises(ConfigurationError) as info:
            Config(key=KEY, url="http://logs.example.com/logs/ingest")
        assert "url" == info.value.option
        assert KEY not in str(info.value)
        ok = Config(key=KEY, url="http://logs.example.com/logs/ingest", allow_insecure="true")
        assert ok.url.startswith("http://")

    @pytest.mark.parametrize(
        "url",
        [
            "https://user:pw@logs.logdna.com/logs/ingest",
            "https://logs.logdna.com/logs/ingest?apikey=abc",
            "ftp://logs.logdna.com/",
            "not a url",
        ],
    )
    def test_urls_with_credentials_or_bad_scheme_are_refused(self, url: str) -> None:
        """Credentials never go in a URL, and only http(s) URLs are accepted."""
        with pytest.raises(ConfigurationError):
            Config(key=KEY, url=url)

    @pytest.mark.parametrize("port", ["99999", "65536", "abc", "0", "-1"])
    def test_a_port_no_request_can_use_is_refused_when_configured(self, port: str) -> None:
        """A port out of range or not a number is a configuration error naming the url
        (it was accepted, and every request then failed as a settings failure)."""
        with pytest.raises(ConfigurationError) as info:
            Config(key=KEY, url=f"https://logs.example.com:{port}/logs/ingest")
        assert "url" == info.value.option
        assert KEY not in str(info.value)

    def test_replace_revalidates(self) -> None:
        """replace() returns a new, validated config."""
        c = Config(key=KEY).replace(flush_interval="2")
        assert 2.0 == c.flush_interval
        with pytest.raises(ConfigurationError):
            c.replace(flush_interval="never")


class TestDurationUnits:
    @pytest.mark.parametrize(
        ("text", "seconds"),
        [("1m", 60.0), ("1h", 3600.0), ("1.5m", 90.0), ("0.5 H", 1800.0), ("500ms", 0.5),
         ("3s", 3.0), ("7", 7.0)],
    )  # fmt: skip
    def test_minutes_and_hours(self, text: str, seconds: float) -> None:
        """Durations take m and h as sizes take their units."""
        assert seconds == Config(key=KEY, retry_max_backoff=text).retry_max_backoff

    def test_unknown_unit_names_the_forms(self) -> None:
        """A unit it does not know is refused with the forms it does."""
        with pytest.raises(ConfigurationError, match='"1m" or "1h"'):
            Config(key=KEY, flush_interval="1d")
