"""Redaction: secrets in meta keys, and optional patterns in text.

Runs in the application thread before a line is serialized, so nothing
unredacted ever sits in the buffer. It looks inside everything the serializer
would expand (dicts and other mappings, lists, tuples, sets, dataclass
instances, enum members' values), cuts cycles and meta deeper than
``MAX_DEPTH``, and never raises.
It only walks meta when a line has meta, and answers "is this key a secret?"
from a small cache, because the same few keys come back on every line.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields, is_dataclass
from enum import Enum
from typing import Any

__all__ = [
    "CREDENTIAL_PATTERNS",
    "DEFAULT_SECRET_KEYS",
    "MARKER",
    "PHI_PRESETS",
    "PRESET_PATTERNS",
    "SECRET_LAST_WORDS",
    "SECRET_WORDS",
    "Redactor",
    "key_words",
]

MARKER = "[REDACTED]"

#: Secret and PHI key names, matched anywhere in a key once it is lower-cased and
#: its separators ("-", "_", ".", spaces) removed: "X-Api-Key", "db_password",
#: "AWS_ACCESS_KEY_ID" and "sessionId" are all secrets.
DEFAULT_SECRET_KEYS: tuple[str, ...] = (
    # credentials
    "password", "passwd", "passphrase", "passcode", "secret", "token", "apikey",
    "accesskey", "privatekey", "signingkey", "licensekey", "authorization", "cookie",
    "session", "credential", "signature", "jwt", "databaseurl", "connectionstring",
    # payment cards
    "creditcard", "cardnumber", "cardnum", "ccnumber", "ccnum",
    # PHI / identity
    "socialsecurity", "dateofbirth", "birthdate",
)  # fmt: skip
#: Short names, matched only as a whole word of the key (words split at separators
#: and camelCase humps): "user_ssn" and "userSSN", not "classname"; "pin", not "spinner".
SECRET_WORDS: tuple[str, ...] = (
    "pass", "pw", "pwd", "auth", "bearer", "otp", "totp", "pin", "sig", "dsn",
    "ssn", "ccn", "cvv", "cvc", "pan", "dob", "mrn",
)  # fmt: skip
#: Matched only as a key's last word: "key", "api_key", "licenseKey", "X-Api-Key";
#: not "KeyError" or "key_count".
SECRET_LAST_WORDS: tuple[str, ...] = ("key",)

#: Credential patterns for message text, on by default (with ``redact`` on). Each
#: has a fixed start (a literal or a word that may not continue a longer token)
#: and only bounded repeats, so each runs in time linear in the text. A group
#: named ``keep`` is kept before the marker ("password=" stays, its value goes).
CREDENTIAL_PATTERNS: dict[str, str] = {
    # "Authorization: Basic ...", "Proxy-Authorization=...", "Cookie: a=b; c=d":
    # the whole value, to the end of the line or a closing quote.
    "auth_header": r"""(?P<keep>(?<![A-Za-z0-9_-])(?i:(?:proxy-)?authorization|(?:set-)?cookie)"""
    r"""["']?[ \t]{0,3}[:=][ \t]{0,3}["']?)[^\r\n"']{1,4096}""",
    # key=value and key: value where the key names a secret (by the same rules as
    # meta keys: checked again by Redactor.is_secret); quoted values whole.
    "secret_kv": r"""(?P<keep>(?<![A-Za-z0-9_.-])(?P<key>[A-Za-z0-9_.-]{1,64})["']?[ \t]{0,3}[:=]"""
    # Space after the separator, then another key and separator: this key's value
    # is empty ("password= token=abc"), and the next one is matched on its own.
    r"""(?:[ \t]{1,3}(?![A-Za-z0-9_.-]{1,64}["']?[ \t]{0,3}[:=]))?(?P<q>["']?)"""
    r"""(?:(?i:bearer|basic|token|digest)[ \t]{1,3})?)"""
    r"""(?:(?<=")[^"\r\n]{1,256}|(?<=')[^'\r\n]{1,256}|[^\s"'&,;)\]}]{1,256})""",
    # AWS access key ids (long-term, temporary and the other principal kinds).
    "aws_key": r"(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)"
    r"[A-Z0-9]{16}(?![A-Za-z0-9])",
    # scheme://user:password@host: the password goes.
    "url_credentials": r"(?P<keep>://[^\s/?#@:]{0,128}:)[^\s/?#@]{1,256}(?=@)",
    # JSON Web Tokens: header.payload.signature, base64url.
    "jwt": r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{4,4096}\.[A-Za-z0-9_-]{4,8192}"
    r"\.[A-Za-z0-9_-]{0,4096}",
}

#: Ready-made text patterns for PHI and more, off by default: name them in
#: ``redact_patterns=`` ("phi" names the first four).
PHI_PRESETS: dict[str, str] = {
    # 13-19 digits, continuous or in groups of 4 (Amex 4-6-5); Redactor keeps only
    # those with a card prefix and a valid Luhn check digit.
    # (The first digit leads, its lookbehind after it: a leading character class lets
    # the regex engine skip ahead to digits.)
    "card": r"\d(?<![\d.,-]\d)(?:\d{12,18}|\d{3}(?P<s>[ .-])\d{4}(?P=s)\d{4}(?P=s)\d{1,7}"
    r"|\d{3}(?P<t>[ .-])\d{6}(?P=t)\d{4,5})(?![\d])",
    # 123-45-6789, 123 45 6789, 123.45.6789 (never-issued areas excluded), and nine
    # digits right after "SSN".
    "us_ssn": r"(?<![\d.-])(?!000|666|9\d\d)\d{3}(?P<s>[- .])(?!00)\d{2}(?P=s)(?!0000)\d{4}"
    r"(?![\d-])|(?P<keep>(?<![A-Za-z])(?i:ssn|social[ _-]?security(?:[ _-]?(?:number|no))?)"
    r"[^A-Za-z0-9\r\n]{0,3})\d{9}(?!\d)",
    "email": r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.){1,8}"
    r"[A-Za-z]{2,24}(?![A-Za-z0-9-])",
    # North American numbers with separators ("(555) 123-4567", "+1 555.123.4567") and
    # international ones written with "+": bare digit runs (ids) are left alone.
    "phone": r"(?<![\w+.-])(?:\+?1[ .-]?)?(?:\(\d{3}\)[ ]?|\d{3}[ .-])\d{3}[ .-]\d{4}"
    r"(?![\w-])|(?<![\w+])\+\d{1,3}[ .-]?(?:\d[ .-]?){6,12}\d(?![\d])",
}

#: Every pattern that can be named in ``redact_patterns=``.
PRESET_PATTERNS: dict[str, str] = {
    **PHI_PRESETS,
    # A scoped flag: a global "(?i)" cannot be combined with other patterns.
    "bearer": r"(?<![A-Za-z0-9])(?i:bearer)[ \t]{1,3}[A-Za-z0-9\-._~+/]{1,4096}=*",
    **CREDENTIAL_PATTERNS,
}
#: Names that stand for several presets.
PRESET_GROUPS: dict[str, tuple[str, ...]] = {
    "phi": tuple(PHI_PRESETS),
    "credentials": tuple(CREDENTIAL_PATTERNS),
}

# Every default credential pattern needs one of these in the text: ":" or "=" (headers,
# key=value), "@" (URLs), "eyJ" (JWTs), an AWS key id's prefix. Text without any skips
# the patterns; _speedups.c has the same test (may_hold_secret), kept equal by tests.
TRIGGER = re.compile(r"[:=@]|eyJ|A(?:KIA|SIA|BIA|CCA|GPA|IDA|ROA|IPA|NPA|NVA|PKA)")
# The same for a flat JSON object of meta: its own ":" are counted instead.
_JSON_TRIGGER = re.compile(rb"[=@]|eyJ|A(?:KIA|SIA|BIA|CCA|GPA|IDA|ROA|IPA|NPA|NVA|PKA)")

_NOT_KEYS = ("Error", "Exception", "Warning")
_LUHN_DOUBLE = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def _is_card(digits: str) -> bool:
    """Whether a 13-19 digit string has a card network's prefix and a valid Luhn digit."""
    if not 13 <= len(digits) <= 19:
        return False
    first, two = digits[0], int(digits[:2])
    if not (
        first == "4"
        or 51 <= two <= 55
        or 2221 <= int(digits[:4]) <= 2720
        or two in (34, 37, 36, 38, 39, 30, 35, 50)
        or first == "6"
    ):
        return False
    odd = digits[-1::-2]
    even = digits[-2::-2]
    total = sum(map(int, odd)) + sum(_LUHN_DOUBLE[int(d)] for d in even)
    return total % 10 == 0


_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")


def key_words(key: str) -> list[str]:
    """A key's words, lower-cased: split at separators and camelCase humps.

    ``"userSSN"`` -> ``["user", "ssn"]``; ``"X-Api-Key"`` -> ``["x", "api", "key"]``.
    """
    return [w.lower() for w in _CAMEL.findall(key)]


_GROUP = re.compile(r"\(\?P<(\w+)>|\(\?P=(\w+)\)")


class _Patterns:
    """Several regular expressions applied as one: one combined pass when they combine.

    Each pattern is wrapped in a named group, so a match tells which pattern made
    it; group names inside are made unique. A user's pattern may carry global
    inline flags ("(?i)...") or numbered back-references that are valid alone but
    not inside an alternation; then they are applied one after another.
    """

    __slots__ = ("_is_secret", "_late", "_regexes")

    def __init__(self, patterns: list[str], is_secret: Callable[[str], bool]) -> None:
        self._is_secret = is_secret
        self._regexes: tuple[re.Pattern[str], ...] = ()
        if "secret_kv" in patterns:
            # Its own pass, after the others: a key=value candidate it then leaves as
            # is ("redis://:pw@h" starts with "redis:") must not hide their matches.
            patterns = [p for p in patterns if p != "secret_kv"]
            self._late: re.Pattern[str] | None = re.compile(_wrap("secret_kv", 99))
        else:
            self._late = None
        if not patterns:
            return
        try:
            if any(re.search(r"\\[1-9]", p) for p in patterns):
                raise re.error("numbered back-references do not combine")
            # Python 3.10 only warns about a global flag mid-pattern (3.11 refuses):
            # treat the warning as the refusal, so both take the one-by-one path.
            with warnings.catch_warnings():
                warnings.simplefilter("error", DeprecationWarning)
                self._regexes = (re.compile("|".join(_wrap(p, i) for i, p in enumerate(patterns))),)
        except (re.error, DeprecationWarning):
            self._regexes = tuple(_compile_alone(p, i) for i, p in enumerate(patterns))

    def sub(self, replacement: str, text: str) -> str:
        for regex in self._regexes:
            text = regex.sub(self._replace, text)
        if self._late is not None:
            text = self._late.sub(self._replace, text)
        return text

    def search(self, text: str) -> bool:
        """Whether any pattern would replace something in ``text``."""
        return self.sub(MARKER, text) != text

    def _replace(self, match: re.Match[str]) -> str:
        groups = match.groupdict()
        key = None
        keep = ""
        card = False
        for name, value in groups.items():
            if value is None or not name.startswith("_"):
                continue
            kind, _, _ = name[1:].partition("_")
            if kind == "keep":
                keep = value
            elif kind == "key":
                key = value
            elif kind == "card":
                card = True
        if key is not None and (key.endswith(_NOT_KEYS) or not self._is_secret(key)):
            # "monkey=3": the key only looked like a secret's; "KeyError: 'k'" or
            # "TokenExpiredError: ..." is a traceback's last line, not a key and value.
            return match.group()
        if card and not _is_card("".join(c for c in match.group() if c.isdigit())):
            return match.group()  # a timestamp, an id: no card prefix or Luhn digit
        if match.string.startswith(MARKER, match.start() + len(keep)):
            return match.group()  # redacted already (meta's values in structlog text)
        return keep + MARKER


def _compile_alone(pattern: str, index: int) -> re.Pattern[str]:
    """One pattern on its own: wrapped when it can be, as given when it must be
    (global flags belong at the very start)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            return re.compile(_wrap(pattern, index))
    except (re.error, DeprecationWarning):
        return re.compile(PRESET_PATTERNS.get(pattern, pattern))


def _wrap(pattern: str, index: int) -> str:
    """``pattern`` in a group that names it, its own group names made unique."""
    source = PRESET_PATTERNS.get(pattern, pattern)

    def rename(m: re.Match[str]) -> str:
        if m.group(1) is not None:
            return f"(?P<_{m.group(1)}_{index}>"
        return f"(?P=_{m.group(2)}_{index})"

    renamed = _GROUP.sub(rename, source)
    marker = "_card" if pattern == "card" else "_p"
    return f"(?P<{marker}_{index}>{renamed})"


_SEPARATORS = re.compile(r"[-_.\s]+")
_CACHE_LIMIT = 4096
#: Text patterns run on at most this many characters past ``max_line_length``: a
#: secret that straddles the cut is still whole for them.
_CUT_MARGIN = 256
_CUT = "… [cut by logdna_client before redaction]"


def expand_patterns(patterns: Iterable[str]) -> list[str]:
    """Pattern names with the group names ("phi") expanded, duplicates dropped."""
    out: list[str] = []
    for pattern in patterns:
        for name in PRESET_GROUPS.get(pattern, (pattern,)):
            if name not in out:
                out.append(name)
    return out


class Redactor:
    """Replaces secret values in meta and pattern matches in text.

    Args:
        extra_keys: more key names, matched like ``DEFAULT_SECRET_KEYS``.
        patterns: regular expressions and preset names for text (and string meta values).
        defaults: the default key names and ``CREDENTIAL_PATTERNS`` (``redact=False``
            turns both off).
        max_chars: text longer than this is cut before the patterns run (the line
            builder cuts it to ``max_line_length`` anyway): every pattern is linear,
            and this bounds the input too.
    """

    __slots__ = ("_cache", "_key_re", "_max_chars", "_plain_keys", "_text_re", "_trigger",
                 "_words")  # fmt: skip

    def __init__(self, extra_keys: Iterable[str] = (), patterns: Iterable[str] = (),
                 *, defaults: bool = True, max_chars: int = 1 << 20) -> None:  # fmt: skip
        names = list(DEFAULT_SECRET_KEYS) if defaults else []
        names += [_SEPARATORS.sub("", k.lower()) for k in extra_keys if k.strip()]
        self._key_re = re.compile("|".join(map(re.escape, names))) if names else None
        self._words = frozenset(SECRET_WORDS) if defaults else frozenset()
        chosen = expand_patterns([*CREDENTIAL_PATTERNS, *patterns] if defaults else patterns)
        self._text_re = _Patterns(chosen, self.is_secret) if chosen else None
        # With only the default credential patterns, text without a trigger cannot
        # match: one cheap search instead of the patterns (None: no such shortcut).
        self._trigger = TRIGGER if chosen and set(chosen) <= set(CREDENTIAL_PATTERNS) else None
        self._max_chars = max_chars + _CUT_MARGIN
        self._cache: dict[str, bool] = {}
        # Keys known not to be secrets: lets flat meta skip the walk entirely.
        self._plain_keys: set[str] = set()

    @property
    def active(self) -> bool:
        """Whether this redactor can change anything at all."""
        return bool(self._key_re or self._words or self._text_re)

    @property
    def plain_keys(self) -> set[str]:
        """Keys found not to be secrets so far: the live set (it grows; it is
        emptied, never replaced, when the cache is full).

        The line builders' shortcut: when meta's own keys are all in it and its
        JSON has no nested object (no "{" after the first byte), no secret key
        can be anywhere in it; with fewer than ``MAX_DEPTH`` "[" in it, no list
        is deep enough for the walk to cut either; and where text patterns run,
        ``json_may_hold_secret`` says whether a value may match one.
        """
        return self._plain_keys

    @property
    def redacts_text(self) -> bool:
        return self._text_re is not None

    @property
    def cheap_text(self) -> bool:
        """Whether text can be checked cheaply first (``may_hold_secret``): only the
        default credential patterns run. The fast paths stay open then."""
        return self._trigger is not None

    def may_hold_secret(self, text: str) -> bool:
        """Whether the text patterns could change ``text`` (False means certainly not)."""
        if self._text_re is None:
            return False
        trigger = self._trigger
        return trigger is None or trigger.search(text) is not None

    def json_may_hold_secret(self, data: bytes, keys: int) -> bool:
        """``may_hold_secret`` for the JSON of a flat object with ``keys`` keys: its
        own ":" (one a key) are not counted."""
        if self._text_re is None:
            return False
        if self._trigger is None:
            return True
        return data.count(b":") != keys or _JSON_TRIGGER.search(data) is not None

    def is_secret(self, key: str) -> bool:
        """Whether a meta key names a secret."""
        hit = self._cache.get(key)
        if hit is None:
            hit = bool(
                (self._key_re and self._key_re.search(_SEPARATORS.sub("", key.lower())))
                or (self._words and self._has_secret_word(key))
            )
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
                self._plain_keys.clear()
            self._cache[key] = hit
            if not hit:
                self._plain_keys.add(key)
        return hit

    def _has_secret_word(self, key: str) -> bool:
        words = key_words(key)
        return not self._words.isdisjoint(words) or (bool(words) and words[-1] in SECRET_LAST_WORDS)

    def text(self, value: str) -> str:
        """The text with every configured pattern replaced by the marker.

        Text longer than ``max_chars`` (and a margin) is cut first: the caller cuts
        it to the line cap anyway, and the patterns run on bounded input.
        """
        if self._text_re is None:
            return value
        if len(value) > self._max_chars:
            value = value[: self._max_chars]
        return self._apply(value)

    def _apply(self, value: str) -> str:
        patterns = self._text_re
        trigger = self._trigger
        if patterns is None or (trigger is not None and trigger.search(value) is None):
            return value
        return patterns.sub(MARKER, value)

    def meta(self, value: Any) -> Any:
        """A copy of ``value`` with secrets replaced; ``value`` itself when nothing changed.

        Never mutates the caller's objects (they may be shared with other
        handlers) and never raises. Anything the serializer would show as a
        mapping (dicts, other ``Mapping`` types, dataclass instances) is walked
        at any depth up to a limit; deeper parts, cycles and containers that
        cannot be read are replaced by a marker rather than shipped unchecked.
        """
        if type(value) is dict and (self._text_re is None or self._trigger is not None):
            # The common case: flat meta whose keys were all seen before and are
            # not secrets. One pass over cached answers instead of the walk.
            try:
                if (
                    self._plain_keys.issuperset(value)
                    and _SCALARS.issuperset(map(type, value.values()))
                    and not (
                        self._text_re is not None
                        and self.may_hold_secret(
                            "\0".join(v for v in value.values() if type(v) is str)
                        )
                    )
                ):
                    return value
            except Exception:  # the dict changed under us
                pass
        try:
            result = self._walk(value, set(), 0)
        except Exception:  # a hostile container: ship nothing of it rather than secrets
            return _UNREADABLE
        return value if result is _OTHER else result

    def _key_is_secret(self, key: object) -> bool:
        """Whether a mapping key names a secret: str and bytes keys, an Enum key by
        its value and name (orjson ships its value), a tuple key by any part."""
        if isinstance(key, str):
            return self.is_secret(key)
        if isinstance(key, bytes | bytearray):
            return self.is_secret(bytes(key).decode("latin-1"))
        if isinstance(key, Enum):
            return self._key_is_secret(key.value) or self.is_secret(key.name)
        if isinstance(key, tuple | frozenset):
            return any(self._key_is_secret(part) for part in key)
        return False

    def _header_pair(self, item: Any) -> Any:
        """A (name, value) pair (an ASGI or raw header, a form field) whose name is a
        secret's, with its value replaced; None for anything else."""
        if (
            isinstance(item, tuple | list)
            and len(item) == 2
            and isinstance(item[0], str | bytes | bytearray)
            and self._key_is_secret(item[0])
        ):
            return [item[0], MARKER]
        return None

    def _meta_text(self, value: str) -> str:
        """A string in meta, patterns applied: one longer than the text cap is cut
        first, with a marker (the patterns only ever run on bounded input)."""
        if len(value) > self._max_chars:
            value = value[: self._max_chars] + _CUT
        return self._apply(value)

    def _walk(self, value: Any, path: set[int], depth: int) -> Any:
        if isinstance(value, str):
            return self._meta_text(value) if self._text_re else value
        if value is None or isinstance(value, int | float | bool):
            return value
        if isinstance(value, bytes | bytearray):
            if self._text_re is None:
                return value
            # The line builder ships bytes as text; check that text like any other.
            text = bytes(value).decode("utf-8", "backslashreplace")
            new_text = self._meta_text(text)
            return value if new_text == text else new_text
        if isinstance(value, Enum):
            # orjson ships a member as its value (a dict, say): check that instead.
            inner = value.value
            new_inner = self._walk(inner, path, depth)
            return _OTHER if new_inner is _OTHER or new_inner is inner else new_inner
        if type(value) is not dict:
            value = _as_container(value)
            if value is None:
                return _OTHER  # not a container: the sentinel tells the caller "unchanged"
        if depth >= MAX_DEPTH:
            return TOO_DEEP
        if id(value) in path:
            # A cycle. Returning the original would smuggle its unredacted
            # items past a copy made higher up; cut it here instead.
            return CYCLE
        path.add(id(value))
        try:
            if isinstance(value, dict):
                out: dict[Any, Any] | None = None
                for k, v in list(value.items()):
                    if self._key_is_secret(k):
                        new: Any = MARKER
                    else:
                        new = self._walk(v, path, depth + 1)
                        if new is _OTHER:
                            continue
                    if new is not v:
                        if out is None:
                            out = dict(value)
                        out[k] = new
                return value if out is None else out
            items = list(value)
            changed = not isinstance(value, list | tuple)
            pair = self._header_pair(value) if isinstance(value, tuple) else None
            if pair is not None:
                return pair
            for index, item in enumerate(items):
                pair = self._header_pair(item)
                new = pair if pair is not None else self._walk(item, path, depth + 1)
                if new is not _OTHER and new is not item:
                    items[index] = new
                    changed = True
            return items if changed else value
        finally:
            path.discard(id(value))


_OTHER: Any = object()
_SCALARS = frozenset({str, int, float, bool, type(None)})
_UNREADABLE = "[REDACTED: unreadable]"
#: Meta nested deeper than this is cut, by this walk and by the line builder alike.
MAX_DEPTH = 32
TOO_DEEP = "<too deep>"
CYCLE = "<cycle>"


def _as_container(value: Any) -> Any:
    """A dict or list view of a container the serializer would expand, else None.

    orjson serializes dataclass instances as objects, and the line builder
    turns other ``Mapping`` types, named tuples and sets into objects and
    arrays: their keys and strings must be checked like a dict's.
    """
    if isinstance(value, tuple) and is_named_tuple(value):
        return named_tuple_fields(value)
    if isinstance(value, list | tuple):
        return value
    if isinstance(value, Mapping):
        return dict(value.items())
    if isinstance(value, set | frozenset):
        return list(value)
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in fields(value)}
    return None


def is_named_tuple(value: tuple[Any, ...]) -> bool:
    """Whether a tuple is a named tuple (collections.namedtuple, typing.NamedTuple)."""
    return isinstance(getattr(type(value), "_fields", None), tuple)


def named_tuple_fields(value: tuple[Any, ...]) -> dict[Any, Any]:
    """A named tuple as the object it ships as: field names to values."""
    return dict(zip(type(value)._fields, value, strict=False))  # type: ignore[attr-defined]
