"""The text-pattern engine's fast forms against the plain one (tests/_redact_reference.py).

_Patterns runs the built-in patterns in forms the regex engine scans faster
(digits written "0", lower-cased words as literals, keys read back once per
distinct key); every span it replaces must be the plain form's.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logdna_client import _redact
from logdna_client._redact import (
    CREDENTIAL_PATTERNS,
    MARKER,
    PRESET_PATTERNS,
    Redactor,
    _is_card,
    expand_patterns,
)
from tests._redact_reference import ReferencePatterns
from tests._redact_reference import _is_card as reference_is_card

#: Pattern choices to compare: every preset at once, each preset alone, and the
#: digit presets in pairs (they share one regex).
CHOICES = (
    ["phi", "bearer"],
    *([name] for name in PRESET_PATTERNS),
    ["card", "us_ssn"],
    ["us_ssn", "phone"],
    ["card", "phone_plain"],
)


def both(choice: list[str], defaults: bool = True) -> tuple[Redactor, ReferencePatterns]:
    """A redactor and the reference engine for the same patterns and key rules."""
    redactor = Redactor(patterns=choice, defaults=defaults)
    chosen = expand_patterns([*CREDENTIAL_PATTERNS, *choice] if defaults else choice)
    return redactor, ReferencePatterns(chosen, redactor)


def fast(redactor: Redactor, text: str) -> str:
    patterns = redactor._text_re
    assert patterns is not None
    return patterns.sub(MARKER, text)


_PIECES = st.sampled_from(
    ["4", "41", "411", "4111", "1111", "123", "45", "6789", "000", "666", "9", "0", "5",
     "37", "3782", "822463", "10005", "555", "4567", "1732280000123", "4111111111111111",
     " ", " ", "-", ".", ",", ";", "&", "+", "(", ")", "_", ":", "=", "@", '"', "'", "\t", "\n",
     "\\",
     "a", "x", "Z", "é", "٣", "𝟙", "\u017f", "\u212a", "\u0131", "\u0130", "€", "ß",
     "password", "PASSWORD", "pin", "pass", "key",
     "Token", "user", "KeyError", "Authorization", "AUTHORIZATION", "cookie", "Cookie",
     "Bearer", "bearer", "basic", "ssn", "SSN", "social", "Social Security", "security",
     "number", "no", "ann.lee", "example.com", ".com", "bob", "eyJ", "AKIA", "://",
     MARKER, "1-", "4 ", "12:30", "db_token", "sid", "PHPSESSID", "pw12", "=>", "b'", "[",
     "]", "%5B", "%5D", "5B", "tokens", '["', "['", "[1", "[-", "[[",
     # (the review's shapes: tuple values, spaced values to a ";", keys ending in
     # digits, user/password@db, bytearray reprs, prefixed tokens, PEM keys)
     "('", "(1", "((", "token01", "session2", "Password", "/", "scott", "tiger@orcl",
     "bytearray(b'", "ghp_", "sk_live_", "xoxb-", "-----BEGIN PRIVATE KEY-----",
     "-----END PRIVATE KEY-----", "a" * 12, "@v4", "@EXAMPLE.COM", "-u", "--user=",
     # (this round's: YAML blocks, "-U u -P pw", "-pw", "-passin pass:", "--pass", AWS
     # secrets before their key id or after a space, values encoded twice, git refs)
     "|", ">-", "\n  ", "\n    ", "secret:", "  credentials:", "- ", "-U ", "-P ", "-pw ",
     "-passin pass:", "--pass ", "aws_secret_access_key ", "SECRET_ACCESS_KEY\t",
     "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "AKIAIOSFODNN7EXAMPLE", "%253D", "%25",
     "%2522", "%253A%2520", "%253F", "@feature-x", "@fix/y", "22"]
)  # fmt: skip


#: Hand-picked positives and near misses for every built-in pattern.
EXAMPLES = [
    "card 4111 1111 1111 1111 and 4111111111111111, not 4111111111111112",
    "amex 3782 822463 10005; ssn 123-45-6789 123 45 6789 123.45.6789 not 123-45-67890",
    "never issued: 000-12-3456 666-12-3456 923-45-6789 123-00-4567 123-45-0000",
    "call 555-123-4567 or 555.123.4567, not x555-123-4567 or 555-123-4567-8",
    "v1.4111111111111111 -4111111111111111 ,4111111111111111 a4111111111111111",
    "٣123-45-6789 and 123-45-6789 with Arabic-Indic ٣٤٥ digits about",
    "4 4 4 4 4 4 4 4 4 4 4 4 4 4 4 4 4 4 4 1-" * 20,
    "41111111111111114111111111111111" * 20,
    "123-45-6789 " + "4" * 25 + " 4111 1111 1111 1111." + "1" * 20 + "-555-123-4567",
    "4111111111111111111 " + "5" * 19 + ",1234567890123456789 " + "7" * 21 + "x",
    "Authorization: Bearer abc.def COOKIE=a=b; AUTHORIZATION='x' bearer  tok==",
    "SSN: 123456789 social security no. 123456789 Social_Security_Number=123456789",
    "ann.lee@example.com and a.b.c@d.e.org and @example.com and x@y",
    "password=hunter2 PIN: 1234 pin=1234 \"pin\": 1 KeyError: 'k' user=bob a=b=c",
    "password= token=abc db_token: x 10:30:00 password: [REDACTED] then",
    "spin=3 pin=4 user_pin=5 apassword=x PIN: 6 'pin': 7 pin = 8 pin    =9 key.pin=1",
    'password=a/password="b c" "password" : "d e" password=password=f '
    + "k" * 70
    + "=x "
    + "x" * 60
    + "_password=y",
    # Not ASCII: letters that match an ASCII one case-insensitively, others.
    "AUTHOR\u0131ZATION: x; co\u212aie=a=b; \u017f\u017fn 123456789; éAuthorization: y",
    "Bearer€ tok; ébearer tok; Bearer tök; \u0130 SSN: 123456789 ça",
    "€ 4111 1111 1111 1111 ٣ 123-45-6789 555.123.4567 ann@example.com",
    "€555-123-4567 …4111 1111 1111 1111… 123-45-6789€ ✓555.123.4567✓ 😀123 45 6789" * 3,
    # escaped quotes: JSON inside a JSON string, a quote inside a quoted value
    r'{"body": "{\"password\": \"hunter2\", \"pin\": \"12\"}"} pass=\"x\" user=\"bob\"',
    r"""{'token': 'it\'s', "secret": "a\"b\\", 'pw' : 'x\\'} key=\'v\' api_key=\" end""",
    r'{"b": "{\\\"password\\\": \\\"x\\\", \\\"pin\\\": 1}"} a=\"\npw=\"\\\n" pin="\\',
    # AWS secret keys before runs of key ids, each key id reading back only to the one
    # before it: a key found by the one before, one ended by "/" (the second form,
    # which the first form's find wins over), one behind a line break, one past 128
    # characters, one inside a base64 run longer than a key
    "S wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY AKIAIOSFODNN7EXAMPLE "
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKE2/AKIAIOSFODNN7EXAMPLF AKIAIOSFODNN7EXAMPLG",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKE2/AKIAIOSFODNN7EXAMPLF "
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKE3/AKIAIOSFODNN7EXAMPLG",
    "x" + "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEYab" * 2 + " AKIAIOSFODNN7EXAMPLE "
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKE2/AKIAIOSFODNN7EXAMPLF",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY AKIAIOSFODNN7EXAMPLE\nASIAY34FZKBOKMUTVV7A "
    "AKIAIOSFODNN7EXAMPLE " + "z " * 60 + "AKIAIOSFODNN7EXAMPLF",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY " + "AKIAIOSFODNN7EXAMPLE " * 12,
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY " + "AKIAIOSFODNN7EXAMPLE/" * 12,
    # values that hold keys, each key's value running on over the others'
    'password=\\"' * 60,
    'token=\\"a\\" ' * 40 + "pw='" * 30 + "key=\\'x" * 30,
    "pw=" * 200 + " password=" * 30 + '"pin": "' * 40,
    # joiners (",", ";", "&") inside bare values and between pairs, and past the bound
    "password=abc,def pw=a,b;c&d, user=bob,pin=1;x=2&token=t&&u a=1,pw=x,k= pw=,;&",
    "pw=" + "a," * 300 + " token=" + "b" * 300 + ",c" * 10 + " pin=" + ",x" * 200,
    # hash arrows, bytes reprs, joiners before a quote or bracket, bracketed keys
    """{"password"=>"x", :pw=>'y'} {'pin': b'1', "token": b"2"} pw=a&user[n]=b&u%5Bp%5D=c"""
    ' {"pin":1,"x":2} f(token=t,) sid=a,b; pw12=z',
    # bracketed keys (form fields, URL-encoded, print_r) and list values
    'user[password]=x&a[b][pin]=1 u%5Bpw%5D=y d%5Bpin=2 [password] => z cfg["token"] = "t"'
    " 5Bpin=3 5B5Bpassword=4 %5D=5 ]=6 x]]=7 [REDACTED]=8 c[key] = 9 [pin]\t=>0 [pw] :1",
    '{"tokens": ["a", "b]c", "d"], "pin": [1, -2], "pw": [["x"]], "key": [], "sid": [REDACTED]}'
    " {'api_key': ['k1', b'k2']} password=[abc] token=[\\\"q\\\" pw=[1\n2]"
    ' "password": "token: [\\"a\\"] and more than sixteen", "user": "bob"]',
    # a backslash before a line break after a quote: a bare value of one character
    'pw="\\\n pin=\'\\\r\n token="\\',
    # the review's shapes: spaced values to a ";", keys ending in digits, "@" in a URL
    # password, bytearray reprs, tuples, user/password@db, PEM keys, prefixed tokens
    "Password=a b; pw=c d e;x token01: y 10:30: z 16:9 pw= a b c d e f g h i j; k",
    "https://u:p@s@s@h/x s://u:a@b c@d {'pin': bytearray(b'1')} auth=('a', 'b)c'), pw=(1,",
    "sqlplus scott/tiger@orcl a/b@v4 x/y@EXAMPLE.COM /p/q@r u/p@(D=1) jdbc:o:s/t@h:1:O",
    "-----BEGIN RSA PRIVATE KEY-----\nMII\n-----END RSA PRIVATE KEY----- ghp_"
    + "a" * 36
    + " xoxb-"
    + "1" * 12
    + " sk_live_"
    + "b" * 16
    + " -----BEGIN PRIVATE KEY-----",
    # this round's: YAML blocks under secret keys (nested, blank lines, less indented
    # lines ending them), command-line passwords, AWS secrets before their key id,
    # URL-encoded separators encoded twice, git refs after "/name@"
    "db:\n  password: |\n    a\n\n    b\n  user: x\nsecret:\n  token:\n    y\n  z\nw\n"
    '- secret: >-\n   q\n pin:\n   1\n"password":\n  "v"\r\n  credentials: # c\n   k',
    "sqlcmd -U sa -P pw -U u -P 22 -U v -P a=b -pw x -passin pass:y --pass z --pass-x q",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY AKIAIOSFODNN7EXAMPLE/"
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY aws_secret_access_key "
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY ASIAY34FZKBOKMUTVV7A",
    "u=%253Fpassword%253Dx%2526pw%253Dy%2520z%2522pin%2522%253A%2520%25221%2522 %25pw%3Dq",
    "org/deploy@feature-x scott/tiger@fix/y a/b@hotfix-1 u/p@release-2 x/y@refs/heads/z",
]


class TestSameSpansAsTheReference:
    @settings(max_examples=600, deadline=None)
    @given(pieces=st.lists(_PIECES, max_size=40), choice=st.sampled_from(CHOICES))
    def test_random_text(self, pieces: list[str], choice: list[str]) -> None:
        """Text built from the patterns' own pieces (digits, separators, key words,
        cased and non-ASCII look-alikes) comes out as the reference makes it."""
        text = "".join(pieces)
        redactor, reference = both(choice)

        assert reference.sub(MARKER, text) == fast(redactor, text)

    @settings(max_examples=150, deadline=None)
    @given(pieces=st.lists(_PIECES, min_size=1, max_size=40), choice=st.sampled_from(CHOICES))
    def test_long_random_text(self, pieces: list[str], choice: list[str]) -> None:
        """The same for text long enough (2 KB and more) to take the long-text ways
        (keys found forwards, from their places)."""
        unit = "".join(pieces)
        text = unit * (2100 // len(unit) + 1)
        redactor, reference = both(choice)

        assert reference.sub(MARKER, text) == fast(redactor, text)

    @settings(max_examples=200, deadline=None)
    @given(text=st.text(max_size=60), choice=st.sampled_from(CHOICES))
    def test_any_text(self, text: str, choice: list[str]) -> None:
        """Any text at all comes out as the reference makes it."""
        redactor, reference = both(choice)

        assert reference.sub(MARKER, text) == fast(redactor, text)

    @pytest.mark.parametrize("text", EXAMPLES)
    def test_examples(self, text: str) -> None:
        """Hand-picked positives and near misses for every built-in pattern."""
        for choice in CHOICES:
            redactor, reference = both(choice)

            assert reference.sub(MARKER, text) == fast(redactor, text), choice
            long = text * 40
            assert reference.sub(MARKER, long) == fast(redactor, long), choice

    @pytest.mark.parametrize("size", [255, 256, 257, 4095, 4096, 4097, 9000])
    def test_values_past_the_bounds(self, size: int) -> None:
        """Values as long as a pattern's bounded repeat and longer (run on to their
        end), one after another and in one run of repeated keys."""
        value = "v" * size
        text = (
            f"password={value}&x=1 'token': '{value}' \"secret\": \"{value} b\" "
            f"Authorization: Basic {value}\nCookie: {value}; more\nBearer {value}== tail "
            f'tokens: ["{value}", "x"] pin=[1{value}] pw=[{value[:-2]}] '
            + "pin=" * (size // 4)
            + " end"
        )
        for choice in CHOICES:
            redactor, reference = both(choice)

            assert reference.sub(MARKER, text) == fast(redactor, text), choice
            if "bearer" in choice:
                assert "v" * 200 not in fast(redactor, text)

    def test_without_defaults(self) -> None:
        """With ``redact=False`` and only a preset, the same spans too."""
        text = "password=x 4111 1111 1111 1111 Authorization: Bearer abc"
        for choice in CHOICES:
            redactor, reference = both(choice, defaults=False)

            assert reference.sub(MARKER, text) == fast(redactor, text), choice


class TestCardCheck:
    @settings(max_examples=500, deadline=None)
    @given(
        digits=st.text(alphabet="0123456789", min_size=11, max_size=21)
        | st.from_regex(r"\A[2-6][0-9]{12,18}\Z")
        | st.text(alphabet="0123456789٠١٢٣٤٥٦٧٨٩", min_size=13, max_size=19)
    )
    def test_same_answer_as_the_reference(self, digits: str) -> None:
        """The byte-wise Luhn check answers as the plain one, for any digits."""
        assert reference_is_card(digits) == _is_card(digits)

    @pytest.mark.parametrize(
        ("digits", "expected"),
        [
            ("4111111111111111", True), ("4111111111111112", False), ("378282246310005", True),
            ("5555555555554444", True), ("2223003122003222", True), ("6011111111111117", True),
            ("1111111111111117", False), ("7992739871300000", False),
            ("411111111111", False),
        ],
    )  # fmt: skip
    def test_known_numbers(self, digits: str, expected: bool) -> None:
        """Test card numbers of each network pass; other prefixes and bad check digits do not."""
        assert expected == _is_card(digits)


#: Limits that send text each way the engine has, whatever its length and make-up.
WAYS = [
    pytest.param({"_FORWARD_FROM": 0, "_FORWARD_KEYS": 0}, id="keys-from-each-separator"),
    pytest.param(
        {"_FORWARD_FROM": 0, "_FORWARD_KEYS": 99, "_COMPILE_AFTER": 0},
        id="keys-found-forwards-when-cheaper",
    ),
    pytest.param({"_ZEROS_FROM": 0}, id="digits-written-0"),
    pytest.param({"_ZEROS_FROM": 1 << 30}, id="digits-by-backslash-d"),
]


class TestEveryWayAgrees:
    @pytest.mark.parametrize("limits", WAYS)
    @settings(max_examples=100, deadline=None)
    @given(pieces=st.lists(_PIECES, max_size=40), choice=st.sampled_from(CHOICES))
    def test_each_way(self, limits: dict[str, int], pieces: list[str], choice: list[str]) -> None:
        """Whichever way a pattern takes (chosen by the text's length and make-up),
        the spans are the reference's."""
        text = "".join(pieces) * 3
        redactor, reference = both(choice)
        with pytest.MonkeyPatch.context() as patch:
            for name, value in limits.items():
                patch.setattr(_redact, name, value)

            assert reference.sub(MARKER, text) == fast(redactor, text)

    @pytest.mark.parametrize("limits", WAYS)
    def test_examples_each_way(self, limits: dict[str, int]) -> None:
        """The hand-picked examples too, each way."""
        for text in EXAMPLES:
            for choice in CHOICES:
                redactor, reference = both(choice)
                with pytest.MonkeyPatch.context() as patch:
                    for name, value in limits.items():
                        patch.setattr(_redact, name, value)

                    assert reference.sub(MARKER, text) == fast(redactor, text), choice

    def test_a_key_back_in_long_texts_gets_its_own_finder(self) -> None:
        """A secret key that keeps turning up in long text is soon found forwards
        (its regex compiled and kept); the spans stay the reference's all along."""
        unit = "user=bob password=hunter2 Authorization: Bearer abc.def 4111 1111 1111 1111\n"
        text = unit * 200
        redactor, reference = both(["phi"])
        patterns = redactor._text_re
        assert patterns is not None
        expected = reference.sub(MARKER, text)

        outputs = [fast(redactor, text) for _ in range(_redact._COMPILE_AFTER + 1)]

        assert [expected] * len(outputs) == outputs
        assert {("password", False), ("Authorization", False)} <= set(patterns._finders)
