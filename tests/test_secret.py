"""Tests for _secret: the key held so that nothing shows it, and the rules that tell
whether a value or a URL shows it. Where the key is read from, and the errors Config
raises with these rules, are tests/test_config.py's and tests/test_review_key2.py's."""

from __future__ import annotations

import pickle
import traceback

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logdna_client import ConfigurationError
from logdna_client._secret import (
    KEY_VARIABLE,
    KEYS,
    Secret,
    as_secret,
    carries_credentials,
    hide_key,
    hide_url,
    may_be_key,
    shows_key,
)

KEY = "c0ffee0123456789abcdef0123456789"  # the shape of a Mezmo key: 32 hex digits


class TestSecret:
    def test_no_repr_str_or_format_shows_it(self) -> None:
        held = Secret(KEY)
        for shown in (
            repr(held),
            str(held),
            f"{held}",
            f"{held!r}",
            repr([held]),
            repr({"k": held}),
        ):
            assert KEY not in shown
            assert "***" in shown

    def test_reveal_gives_it_back(self) -> None:
        assert KEY == Secret(KEY).reveal()

    def test_equal_by_what_it_holds(self) -> None:
        assert Secret(KEY) == Secret(KEY)
        assert Secret(KEY) != Secret(KEY + "x")
        assert Secret(KEY) != KEY  # never equal to the text: a comparison is no way to read it
        assert len({Secret(KEY), Secret(KEY)}) == 1

    def test_it_pickles_to_a_working_secret(self) -> None:
        again = pickle.loads(pickle.dumps(Secret(KEY)))
        assert isinstance(again, Secret) and KEY == again.reveal()

    def test_it_has_no_dict_to_show_it(self) -> None:
        with pytest.raises(TypeError):
            vars(Secret(KEY))


class TestAsSecret:
    def test_text_is_wrapped_and_none_stays_none(self) -> None:
        held = as_secret(KEY)
        assert isinstance(held, Secret) and KEY == held.reveal()
        assert as_secret(None) is None
        kept = Secret(KEY)
        assert kept is as_secret(kept)

    @pytest.mark.parametrize("value", [KEY.encode(), 12345678901234567890, [KEY], Secret(b"x")])  # type: ignore[arg-type]
    def test_what_is_not_text_is_refused_unseen(self, value: object) -> None:
        with pytest.raises(ConfigurationError) as caught:
            as_secret(value)
        assert "key: expected a string, got <hidden>" == str(caught.value)
        # Not in the locals of the library's frames an error reporter would capture.
        caught_tb = traceback.TracebackException.from_exception(caught.value, capture_locals=True)
        ours = [f for f in caught_tb.stack if "logdna_client" in f.filename]
        assert ours and not [f for f in ours if KEY in repr(f.locals)]


class TestMayBeKey:
    @pytest.mark.parametrize(
        "path", [KEY, f"/etc/{KEY}", f"./{KEY}/", "AbCdEf0123456789", "secret0123456789"]
    )
    def test_a_last_part_of_letters_and_digits_16_or_more_may_be_a_key(self, path: str) -> None:
        assert may_be_key(path)

    @pytest.mark.parametrize(
        "path",
        ["/run/secrets/logdna-key", "/etc/logdna/ingestion_key.txt", "0123456789012345678",
         "abcdefghijklmnopqrstu", "short1", f"{KEY}/key"],
    )  # fmt: skip
    def test_an_ordinary_path_is_shown(self, path: str) -> None:
        assert not may_be_key(path)


class TestShowsKey:
    def test_any_run_of_12_of_its_characters_in_any_case(self) -> None:
        keys = [Secret(KEY)]
        assert shows_key(f"app-{KEY[5:17].upper()}-x", keys)
        assert not shows_key(f"app-{KEY[5:16]}-x", keys)  # 11 characters: not the key

    @settings(deadline=None)  # a loaded machine is slow, not wrong
    @given(st.integers(0, len(KEY) - 12), st.text(max_size=20), st.text(max_size=20))
    def test_wherever_the_run_sits(self, at: int, before: str, after: str) -> None:
        assert shows_key(before + KEY[at : at + 12] + after, [Secret(KEY)])

    def test_a_short_key_is_whole_or_nothing_and_under_8_is_no_key(self) -> None:
        assert shows_key("x-abcdefghij-y", [Secret("abcdefghij")])
        assert not shows_key("x-abcdefghi-y", [Secret("abcdefghij")])
        assert not shows_key("abcdefg", [Secret("abcdefg")])  # would hide every value

    def test_a_value_is_read_as_a_message_would_show_it(self) -> None:
        assert shows_key(["x", KEY], [Secret(KEY)])  # its repr
        assert shows_key(KEY.encode(), [Secret(KEY)])

    def test_without_keys_given_it_asks_the_config_being_built(self) -> None:
        assert not shows_key(KEY)
        token = KEYS.set((Secret(KEY),))
        try:
            assert shows_key(KEY)
        finally:
            KEYS.reset(token)


class TestCarriesCredentials:
    @pytest.mark.parametrize(
        "url",
        ["https://user:pw@logs.example/in", "https://user@logs.example/in",
         "https://logs.example/in?apikey=x", "https://logs.example/in?APIKEY=x",
         "user:pw@logs.example", b"https://u:p@logs.example/", Secret("https://u:p@h/")],
    )  # fmt: skip
    def test_a_user_password_or_apikey_in_any_form(self, url: object) -> None:
        assert carries_credentials(url)
        held = hide_url(url)
        assert isinstance(held, Secret)

    @pytest.mark.parametrize(
        "url", ["https://logs.example/logs/ingest?hostname=a", "http://127.0.0.1:8080/", None, 5]
    )
    def test_a_plain_url_is_kept_as_it_is(self, url: object) -> None:
        assert not carries_credentials(url)
        assert url is hide_url(url)

    def test_text_that_is_no_url_is_hidden_if_it_may_hold_credentials(self) -> None:
        assert carries_credentials("http://[::1:u:p@host/")  # urlsplit refuses it
        assert not carries_credentials("http://[::1/")


class TestHideKey:
    def test_the_key_and_a_url_with_credentials_are_wrapped(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv(KEY_VARIABLE, raising=False)
        given = {"key": KEY, "url": "https://u:p@logs.example/", "app": "web"}
        held = hide_key(given)
        assert isinstance(held["key"], Secret) and KEY == held["key"].reveal()
        assert isinstance(held["url"], Secret)
        assert "web" == held["app"]
        assert KEY == given["key"]  # the caller's dict is not changed

    def test_a_key_file_that_is_the_key_is_wrapped(self) -> None:
        held = hide_key({"key_file": KEY})
        assert isinstance(held["key_file"], Secret)
        assert "/run/secrets/key" == hide_key({"key_file": "/run/secrets/key"})["key_file"]

    def test_a_url_holding_the_key_given_or_from_the_environment_is_wrapped(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv(KEY_VARIABLE, raising=False)
        url = f"https://logs.example/inputs/{KEY}"
        assert isinstance(hide_key({"key": KEY, "url": url})["url"], Secret)
        assert url == hide_key({"url": url})["url"]  # no key known: nothing to find
        monkeypatch.setenv(KEY_VARIABLE, KEY)
        assert isinstance(hide_key({"url": url})["url"], Secret)
