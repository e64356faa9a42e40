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
from collections.abc import Iterable, Mapping
from dataclasses import fields, is_dataclass
from enum import Enum
from typing import Any

__all__ = ["DEFAULT_SECRET_KEYS", "MARKER", "PRESET_PATTERNS", "Redactor"]

MARKER = "[REDACTED]"

#: Matched case-insensitively anywhere in a key, ignoring "-", "_", "." and spaces:
#: "X-Api-Key", "db_password" and "sessionId" are all secrets.
DEFAULT_SECRET_KEYS: tuple[str, ...] = (
    "password", "passwd", "secret", "token", "apikey", "authorization", "cookie",
    "session", "privatekey", "creditcard", "cardnumber",
)  # fmt: skip
# Short names match only as a whole word ("user_ssn", not "classname").
_WHOLE_WORD_KEYS: tuple[str, ...] = ("ssn", "ccn", "cvv", "pwd")

#: Ready-made text patterns, off by default: name them in ``redact_patterns=``.
PRESET_PATTERNS: dict[str, str] = {
    "card": r"\b(?:\d[ -]?){12,18}\d\b",
    "us_ssn": r"\b\d{3}-\d{2}-\d{4}\b",
    "email": r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b",
    # A scoped flag: a global "(?i)" cannot be combined with other patterns.
    "bearer": r"\b(?i:bearer)\s+[A-Za-z0-9\-._~+/]+=*",
}


class _Patterns:
    """Several regular expressions applied as one: one combined pass when they combine.

    A user's pattern may carry global inline flags ("(?i)...") that are valid
    alone but not inside an alternation; those are applied one after another.
    """

    __slots__ = ("_regexes",)

    def __init__(self, patterns: list[str]) -> None:
        self._regexes: tuple[re.Pattern[str], ...]
        try:
            # Python 3.10 only warns about a global flag mid-pattern (3.11 refuses):
            # treat the warning as the refusal, so both take the one-by-one path.
            with warnings.catch_warnings():
                warnings.simplefilter("error", DeprecationWarning)
                self._regexes = (re.compile("|".join(f"(?:{p})" for p in patterns)),)
        except (re.error, DeprecationWarning):
            self._regexes = tuple(re.compile(p) for p in patterns)

    def sub(self, replacement: str, text: str) -> str:
        for regex in self._regexes:
            text = regex.sub(replacement, text)
        return text

    def search(self, text: str) -> bool:
        """Whether any pattern matches ``text``."""
        return any(regex.search(text) for regex in self._regexes)


_SEPARATORS = re.compile(r"[-_.\s]+")
_CACHE_LIMIT = 4096


class Redactor:
    """Replaces secret values in meta and pattern matches in text."""

    __slots__ = ("_cache", "_key_re", "_plain_keys", "_text_re", "_words")

    def __init__(self, extra_keys: Iterable[str] = (), patterns: Iterable[str] = (),
                 *, defaults: bool = True) -> None:  # fmt: skip
        names = list(DEFAULT_SECRET_KEYS) if defaults else []
        names += [_SEPARATORS.sub("", k.lower()) for k in extra_keys if k.strip()]
        self._key_re = re.compile("|".join(map(re.escape, names))) if names else None
        self._words = frozenset(_WHOLE_WORD_KEYS) if defaults else frozenset()
        compiled = [PRESET_PATTERNS.get(p, p) for p in patterns]
        self._text_re = _Patterns(compiled) if compiled else None
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
        is deep enough for the walk to cut either: the JSON ships without the
        walk. Text patterns are not checked this way (builders with them never
        take it).
        """
        return self._plain_keys

    @property
    def redacts_text(self) -> bool:
        return self._text_re is not None

    def is_secret(self, key: str) -> bool:
        """Whether a meta key names a secret."""
        hit = self._cache.get(key)
        if hit is None:
            low = key.lower()
            hit = bool(
                (self._key_re and self._key_re.search(_SEPARATORS.sub("", low)))
                or (self._words and not self._words.isdisjoint(_SEPARATORS.split(low)))
            )
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
                self._plain_keys.clear()
            self._cache[key] = hit
            if not hit:
                self._plain_keys.add(key)
        return hit

    def text(self, value: str) -> str:
        """The text with every configured pattern replaced by the marker."""
        if self._text_re is None:
            return value
        return self._text_re.sub(MARKER, value)

    def meta(self, value: Any) -> Any:
        """A copy of ``value`` with secrets replaced; ``value`` itself when nothing changed.

        Never mutates the caller's objects (they may be shared with other
        handlers) and never raises. Anything the serializer would show as a
        mapping (dicts, other ``Mapping`` types, dataclass instances) is walked
        at any depth up to a limit; deeper parts, cycles and containers that
        cannot be read are replaced by a marker rather than shipped unchecked.
        """
        if type(value) is dict and self._text_re is None:
            # The common case: flat meta whose keys were all seen before and are
            # not secrets. One pass over cached answers instead of the walk.
            try:
                if self._plain_keys.issuperset(value) and _SCALARS.issuperset(
                    map(type, value.values())
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
        if isinstance(key, str):
            return self.is_secret(key)
        if isinstance(key, bytes):
            return self.is_secret(key.decode("latin-1"))
        return False

    def _walk(self, value: Any, path: set[int], depth: int) -> Any:
        if isinstance(value, str):
            return self._text_re.sub(MARKER, value) if self._text_re else value
        if value is None or isinstance(value, int | float | bool):
            return value
        if isinstance(value, bytes | bytearray):
            if self._text_re is None:
                return value
            # The line builder ships bytes as text; check that text like any other.
            text = bytes(value).decode("utf-8", "backslashreplace")
            new_text = self._text_re.sub(MARKER, text)
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
            for index, item in enumerate(items):
                new = self._walk(item, path, depth + 1)
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
