"""Tests for _auth: the key goes out in exactly one header, in the form the ``auth`` option
names, and every form it may come back in from a server is known, to be scrubbed."""

from __future__ import annotations

import base64
import binascii

import pytest

from logdna_client._auth import auth_headers, credentials_in, secret_forms

AUTHS = ["apikey", "basic", "bearer", "pipeline"]
#: Eighteen characters: an ingestion key's length class, with letters whose base64 differs
#: between the standard and the URL-safe alphabets ("~~~" is "fn5+", "???" is "Pz8/").
KEY = "k3y~~~???~~~???abc"


def whole_encodings(key: str) -> set[str]:
    """The key, its hex, and its base64 (alone and as a Basic token's ``key:``) in both
    alphabets, unpadded: the forms the module documents, worked out here."""
    data = key.encode()
    forms = {key, binascii.hexlify(data).decode()}
    for raw in (data, data + b":"):
        std = base64.b64encode(raw).decode().rstrip("=")
        forms |= {std, std.replace("+", "-").replace("/", "_")}
    return forms


class TestAuthHeaders:
    @pytest.mark.parametrize("auth", AUTHS)
    def test_no_key_no_header(self, auth: str) -> None:
        """Without a key nothing is sent (a collector that needs none)."""
        assert {} == auth_headers(auth, None)

    def test_each_option_sends_its_one_header(self) -> None:
        """apikey, bearer and pipeline put the key as the documented header says, one
        header each."""
        assert {"apikey": KEY} == auth_headers("apikey", KEY)
        assert {"Authorization": f"Bearer {KEY}"} == auth_headers("bearer", KEY)
        assert {"Authorization": KEY} == auth_headers("pipeline", KEY)

    def test_basic_sends_the_key_as_the_user_name(self) -> None:
        """basic is ``Authorization: Basic base64(key:)``: the key as user, no password,
        and the key never in clear."""
        (header,) = auth_headers("basic", KEY).items()
        name, value = header
        scheme, _, token = value.partition(" ")
        assert ("Authorization", "Basic") == (name, scheme)
        assert f"{KEY}:".encode() == base64.b64decode(token, validate=True)
        assert KEY not in value

    @pytest.mark.parametrize("auth", AUTHS)
    def test_what_is_sent_is_known_to_the_scrubber(self, auth: str) -> None:
        """The credential a header carries is one of the key's known forms: a server
        that echoes the header back in its answer has it scrubbed."""
        ((_, value),) = auth_headers(auth, KEY).items()
        credential = value.rpartition(" ")[2]
        assert credential.rstrip("=") in secret_forms(KEY)


class TestSecretForms:
    @pytest.mark.parametrize("key", [None, "", "short7!", "   abc   ", "\t       "])
    def test_no_forms_for_a_missing_or_short_key(self, key: str | None) -> None:
        """A key under eight characters (blanks aside) is no ingestion key: nothing is
        scrubbed, or its letters would cut up every message they are in."""
        assert () == secret_forms(key)

    def test_the_key_hex_and_base64_in_both_alphabets(self) -> None:
        """The key itself, its hex, and its base64 with and without the Basic token's
        colon, in the standard and URL-safe alphabets, without padding."""
        expected = whole_encodings(KEY)
        assert len(expected) == 6  # the two alphabets do differ for this key
        assert expected <= set(secret_forms(KEY))

    def test_longest_first(self) -> None:
        """Longest first, so a scrubber replaces a whole token before a piece of it."""
        lengths = [len(form) for form in secret_forms(KEY)]
        assert sorted(lengths, reverse=True) == lengths

    @pytest.mark.parametrize("prefix", [b"", b"a", b"ab", b"apikey: ", b"x-key:  "])
    @pytest.mark.parametrize("urlsafe", [False, True])
    def test_the_key_inside_a_longer_encoded_text(self, prefix: bytes, urlsafe: bool) -> None:
        """A server that base64-encodes a whole text holding the key (a header dump) shows
        a run of characters that one of the forms matches, at any byte offset."""
        encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
        echoed = encode(prefix + KEY.encode() + b", host: h").decode()
        assert KEY not in echoed
        assert any(form in echoed for form in secret_forms(KEY))

    @pytest.mark.parametrize("key", ["abcdefgh", "abcdefghi", "abcdefghijk", KEY])
    def test_pieces_are_twelve_characters_at_least(self, key: str) -> None:
        """Beyond the whole encodings, the pieces matched inside a longer text are never
        shorter than twelve characters: no word of a message is scrubbed."""
        pieces = set(secret_forms(key)) - whole_encodings(key)
        assert all(len(piece) >= 12 for piece in pieces), pieces


class TestCredentialsIn:
    """The receiving side; the forms one by one are in test_otlp."""

    def test_schemes_are_case_insensitive(self) -> None:
        """``bearer``/``BASIC`` in any case are the schemes they name, and the ``apikey``
        query parameter in any case counts."""
        token = base64.b64encode(b"k1:").decode()
        headers = [("authorization", "bEaReR  t0 "), ("AUTHORIZATION", f"BASIC {token}")]
        expected = [("bearer", "t0"), ("basic", "k1"), ("query", "k2")]
        assert expected == credentials_in(headers, [("ApiKey", "k2")])

    def test_a_basic_token_not_text_has_no_user(self) -> None:
        """A Basic token that decodes to bytes that are not UTF-8 still counts as a
        credential, with no user name, and raises nothing."""
        token = base64.b64encode(b"\xff\xfe:").decode()
        assert [("basic", "")] == credentials_in([("Authorization", f"Basic {token}")])
