"""Redaction: secrets in meta keys, and optional patterns in text.

Runs in the application thread before a line is serialized, so nothing
unredacted ever sits in the buffer. It only walks meta when a line has meta,
and answers "is this key a secret?" from a small cache, because the same few
keys come back on every line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
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
    "bearer": r"(?i)\bbearer\s+[A-Za-z0-9\-._~+/]+=*",
}

_SEPARATORS = re.compile(r"[-_.\s]+")
_CACHE_LIMIT = 4096


class Redactor:
    """Replaces secret values in meta and pattern matches in text."""

    __slots__ = ("_cache", "_key_re", "_text_re", "_words")

    def __init__(self, extra_keys: Iterable[str] = (), patterns: Iterable[str] = (),
                 *, defaults: bool = True) -> None:  # fmt: skip
        names = list(DEFAULT_SECRET_KEYS) if defaults else []
        names += [_SEPARATORS.sub("", k.lower()) for k in extra_keys if k.strip()]
        self._key_re = re.compile("|".join(map(re.escape, names))) if names else None
        self._words = frozenset(_WHOLE_WORD_KEYS) if defaults else frozenset()
        compiled = [PRESET_PATTERNS.get(p, p) for p in patterns]
        self._text_re = re.compile("|".join(f"(?:{p})" for p in compiled)) if compiled else None
        self._cache: dict[str, bool] = {}

    @property
    def active(self) -> bool:
        """Whether this redactor can change anything at all."""
        return bool(self._key_re or self._words or self._text_re)

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
            self._cache[key] = hit
        return hit

    def text(self, value: str) -> str:
        """The text with every configured pattern replaced by the marker."""
        if self._text_re is None:
            return value
        return self._text_re.sub(MARKER, value)

    def meta(self, value: Any) -> Any:
        """A copy of ``value`` with secrets replaced; ``value`` itself when nothing changed.

        Never mutates the caller's objects (they may be shared with other handlers).
        """
        return self._walk(value, set())

    def _walk(self, value: Any, path: set[int]) -> Any:
        if isinstance(value, str):
            return self._text_re.sub(MARKER, value) if self._text_re else value
        if isinstance(value, dict):
            if id(value) in path:
                return value  # a cycle: serialization cuts it later
            path.add(id(value))
            out: dict[Any, Any] | None = None
            for k, v in value.items():
                new = MARKER if isinstance(k, str) and self.is_secret(k) else self._walk(v, path)
                if new is not v:
                    if out is None:
                        out = dict(value)
                    out[k] = new
            path.discard(id(value))
            return value if out is None else out
        if isinstance(value, list | tuple):
            if id(value) in path:
                return value
            path.add(id(value))
            items = [self._walk(v, path) for v in value]
            path.discard(id(value))
            if all(a is b for a, b in zip(items, value, strict=True)):
                return value
            return items
        return value
