"""The text-pattern engine as it was before issue 15's speed work: the reference
the faster engine (logdna_client._redact._Patterns) is checked against, span for span.

Each pattern runs on its own (finditer over the whole text) with its own callback;
slow, but plainly what the patterns mean.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator

from logdna_client._redact import (
    _BARE_UNIT,
    _COUNT_VALUE,
    _LIST_START,
    _LIST_UNIT,
    _ORACLE_USER_REVERSED,
    _RUN_ON,
    _TUPLE_START,
    _TUPLE_UNIT,
    MARKER,
    PRESET_PATTERNS,
    Redactor,
    _block_key,
    _block_span,
    _encoded_key,
    _option_names_secret,
    _redacted_already,
    _secret_before,
    _value_class,
)

_NOT_KEYS = ("Error", "Exception", "Warning")
# A digit doubled, its two digits summed (Luhn): 7 -> 14 -> 5.
_LUHN_DOUBLED = str.maketrans("0123456789", "0246813579")
_CARD_SEPARATORS = str.maketrans("", "", " .-")


def _is_card(digits: str) -> bool:
    """Whether a 13-19 digit string has a card network's prefix and a valid Luhn digit."""
    if not 13 <= len(digits) <= 19:
        return False
    first, two = digits[0], int(digits[:2])
    if not (
        first in "46"
        or 51 <= two <= 55
        or 2221 <= int(digits[:4]) <= 2720
        or two in (30, 34, 35, 36, 37, 38, 39, 50)
    ):
        return False
    total = sum(map(int, digits[-1::-2])) + sum(map(int, digits[-2::-2].translate(_LUHN_DOUBLED)))
    return total % 10 == 0


def _is_ssn(text: str) -> bool:
    """Whether "AAA-GG-SSSS" (any one separator) is a number the SSA could have issued."""
    area, group, serial = text[:3], text[4:6], text[7:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


# (A quote escaped by up to 15 backslashes: JSON inside JSON, 5 deep. A bracketed
# key's last name: "user[password]=", "user%5Bpassword%5D=", "[password] =>"; not
# with space before a plain "=": "cache[key] = x".)
_SEPARATOR_KEY_REVERSED = re.compile(
    r"(?:=|:(?:(?!\d\d)|(?<!\d:)))(?:\]|D5%|(?<=>=)[ \t]{1,3}(?:\]|D5%)|[ \t]{0,3})"
    r"((?:[\"']\\{0,15})?)([A-Za-z0-9_.-]{1,64})"
)
_LOCAL_PART_REVERSED = re.compile(r"[A-Za-z0-9._%+-]{1,64}")
# (The key before a URL-encoded separator: an encoded quote or "]", the key, the "%"
# of an escape right before it.)
_ENCODED_KEY_REVERSED = re.compile(r"(22%)?(?:D5%)?([A-Za-z0-9_.-]{1,64})(%?)")

# card, us_ssn and phone_plain all start with a digit: where more than one is on,
# they run as one regex (one scan over the digits instead of one each), branches
# named after them. Same rules as their PHI_PRESETS forms.
_DIGIT_BRANCHES: dict[str, str] = {
    "card": r"(?<!,\d)(?P<card>(?:\d{12,18}|\d{3}(?P<s>[ .-])\d{4}(?P=s)\d{4}(?P=s)\d{1,7}"
    r"|\d{3}(?P<t>[ .-])\d{6}(?P=t)\d{4,5})(?!\d))",
    "us_ssn": r"(?P<us_ssn>\d\d(?P<u>[- .])\d\d(?P=u)\d{4}(?![\d-]))",
    "phone_plain": r"(?<![\w+]\d)(?P<phone_plain>\d\d[ .-]\d{3}[ .-]\d{4}(?![\w-]))",
}


Span = tuple[int, int]


class _Backwards:
    """The reverse of the text last asked about: patterns that read back from a
    match (a key before its "=", an email's local part) match it there, once each."""

    __slots__ = ("_reversed", "_text")

    def __init__(self) -> None:
        self._text = self._reversed = ""

    def of(self, text: str) -> str:
        if text is not self._text:
            self._text, self._reversed = text, text[::-1]
        return self._reversed


_Finder = Callable[[re.Match[str]], "Span | None"]


class ReferencePatterns:
    """Text patterns as rules: a cheap gate, a regex, and what of a match to replace.

    Each rule's regex runs on its own (``finditer``); the spans they find are
    merged (overlaps joined) and each replaced by one marker. Running them apart
    keeps each regex simple (a literal or class first: the engine skips ahead),
    lets one pattern's near-miss never hide another's match, and lets a user's
    pattern carry global flags or back-references.
    """

    __slots__ = ("_counts_tokens", "_is_secret", "_key_value", "_names_secret", "_rules",
                 "_run_on")  # fmt: skip

    def __init__(self, patterns: list[str], redactor: Redactor) -> None:
        # The redactor's judgement of keys: which name secrets, which do only as a
        # bare "key:", which only while their value is no number (a count of tokens).
        self._is_secret = redactor.is_secret
        self._names_secret = redactor._names_secret
        self._counts_tokens = redactor._counts_tokens
        self._key_value: _Finder | None = None
        rules: list[tuple[tuple[str, ...], tuple[str, ...] | None, re.Pattern[str], _Finder]] = []
        self._run_on: dict[re.Pattern[str], tuple[int, re.Pattern[str] | None]] = {}
        digit_rules = [name for name in _DIGIT_BRANCHES if name in patterns]
        if len(digit_rules) > 1:
            patterns = [p for p in patterns if p not in digit_rules]
            branches = "|".join(_DIGIT_BRANCHES[name] for name in digit_rules)
            regex = re.compile(rf"\d(?<![\d.-]\d)(?:{branches})")
            rules.append(((), None, regex, self._finder("digits", regex)))
        for name in patterns:
            regex = re.compile(PRESET_PATTERNS.get(name, name))
            # No literal gate (the fast engine's _NEEDS): every pattern runs, so a gate
            # that skips a pattern which would match shows up as a difference.
            rules.append(((), _WORDS.get(name), regex, self._finder(name, regex)))
            if name in _RUN_ON:
                self._run_on[regex] = _RUN_ON[name]
        self._rules = tuple(rules)

    def _finder(self, name: str, regex: re.Pattern[str]) -> _Finder:
        value = "v" in regex.groupindex

        def whole_or_value(m: re.Match[str]) -> Span | None:
            return m.span("v") if value and m.group("v") is not None else m.span()

        if name == "secret_kv":

            def key_value(m: re.Match[str]) -> Span | None:
                start = m.start("v")
                if _redacted_already(m.string, start, m.end()):
                    return None
                return start, m.end()

            self._key_value = key_value
            return key_value

        def card(m: re.Match[str]) -> Span | None:
            return m.span() if _is_card(m.group().translate(_CARD_SEPARATORS)) else None

        if name == "card":
            return card
        if name == "us_ssn":
            return lambda m: m.span() if _is_ssn(m.group()) else None
        if name == "email":
            backwards = _Backwards()

            def email(m: re.Match[str]) -> Span | None:
                text, at = m.string, m.start()
                local = _LOCAL_PART_REVERSED.match(backwards.of(text), len(text) - at)
                return (at - len(local.group()), m.end()) if local is not None else None

            return email
        if name == "connect_credentials":
            before = _Backwards()

            def connect(m: re.Match[str]) -> Span | None:
                text = m.string
                user = _ORACLE_USER_REVERSED.match(before.of(text), len(text) - m.start())
                return m.span("v") if user is not None else None

            return connect
        if name == "encoded_kv":
            behind = _Backwards()

            def encoded(m: re.Match[str]) -> Span | None:
                text = m.string
                read = _ENCODED_KEY_REVERSED.match(behind.of(text), len(text) - m.start())
                if read is None:
                    return None
                key = _encoded_key(text, m.start(), read)
                if not self._is_secret(key) or key.endswith(_NOT_KEYS):
                    return None
                bare_colon = m.group().lower().startswith(("%3a", "%253a")) and not read.group(1)
                if bare_colon and not self._names_secret(key):  # (as a bare "key:")
                    return None
                return m.span("v")

            return encoded
        if name == "cli_option":
            names_secret = self._names_secret
            return lambda m: (
                m.span("v") if _option_names_secret(m.group("k"), names_secret) else None
            )
        if name == "aws_secret_before":
            ahead = _Backwards()
            return lambda m: _secret_before(ahead.of(m.string), m.start())
        if name == "yaml_block":
            above = _Backwards()

            def block(m: re.Match[str]) -> Span | None:
                # (Every match, even one inside a block found already: its span is
                # inside that block's, and the merge joins them.)
                text = m.string
                key_start = _block_key(
                    text, above.of(text), text.find(":", m.start()), self._is_secret,
                    lambda key: not self._names_secret(key),
                )  # fmt: skip
                return None if key_start < 0 else _block_span(text, key_start, m.end())

            return block
        if name == "digits":

            def digits(m: re.Match[str]) -> Span | None:
                kind = m.lastgroup
                if kind == "card":
                    return card(m)
                if kind == "us_ssn":
                    return m.span() if _is_ssn(m.group()) else None
                return m.span()

            return digits
        return whole_or_value

    def sub(self, replacement: str, text: str) -> str:
        spans: list[Span] = []
        low: str | None = None
        # (Loops, not any() over a generator: this runs for short messages on the
        # logging call's path, where a generator costs more than the test.)
        for needs, words, regex, find in self._rules:
            for literal in needs:
                if literal in text:
                    break
            else:
                if needs:
                    continue
            if find is self._key_value:
                matches: Iterable[re.Match[str] | None] = self._at_secret_keys(regex, text)
            elif words is None:
                matches = regex.finditer(text)
            else:
                if low is None:
                    # Lower-cased ASCII keeps every index; other text may not.
                    low = text.lower() if text.isascii() else ""
                if low:
                    for word in words:
                        if word in low:
                            break
                    else:
                        continue
                matches = _at_words(regex, text, low, words) if low else regex.finditer(text)
            for m in matches:
                span = find(m) if m is not None else None
                if span is not None and span[0] < span[1]:
                    spans.append(self._long(regex, text, span))
        if not spans:
            return text
        spans.sort()
        out: list[str] = []
        pos = 0
        start, end = spans[0]
        for s, e in spans[1:]:
            if s <= end:  # overlapping or touching: one marker for both
                end = max(end, e)
                continue
            out += (text[pos:start], replacement)
            pos, start, end = end, s, e
        out += (text[pos:start], replacement, text[end:])
        return "".join(out)

    def _long(self, regex: re.Pattern[str], text: str, span: Span) -> Span:
        """A span that reached its pattern's bound, run on over the rest of its value."""
        bound, run = self._run_on.get(regex, (0, None))
        s, e = span
        if not bound or e - s < bound:
            return span
        if run is None:  # secret_kv: the class the quote before the value says
            quote = text[s - 1] if s else ""
            for start, unit, close in ((_LIST_START, _LIST_UNIT, "]"),
                                       (_TUPLE_START, _TUPLE_UNIT, ")")):  # fmt: skip
                if quote not in ('"', "'") and re.match(start, text[s:]):
                    # A list or a tuple: to its "]" or ")", if the bound did not reach it.
                    if text[e - 1] == close:
                        return span
                    more = re.compile(rf"{unit}*\{close}?").match(text, e)
                    return s, e if more is None else more.end()
            run = re.compile(
                {'"': r'(?:[^"\\\r\n]|\\[^\r\n])*', "'": r"(?:[^'\\\r\n]|\\[^\r\n])*"}.get(
                    quote, rf"{_BARE_UNIT}*"
                )
            )
        more = run.match(text, e)
        return s, e if more is None else more.end()

    def _at_secret_keys(self, regex: re.Pattern[str], text: str) -> Iterator[re.Match[str] | None]:
        """The key=value pattern matched at each separator whose key names a secret."""
        is_secret = self._is_secret
        names_secret = self._names_secret
        last = len(text) - 1
        for candidate in _SEPARATOR_KEY_REVERSED.finditer(text[::-1]):
            name = candidate.group(2)[::-1]
            if name.startswith("5B") and 2 < len(name) < 64:
                name = name[2:]  # (after a URL-encoded "[": "user%5Bpin%5D=")
            # Cheapest first: most candidates are "word:" that names no secret.
            if not is_secret(name) or name.endswith(_NOT_KEYS):
                continue  # ("KeyError: 'k'": a traceback's last line)
            at = last - candidate.start()
            if text[at] == ":" and not candidate.group(1) and not names_secret(name):
                # "PASS: test 3", "dbus-session-bus-common:all": a bare word and a
                # colon is prose, a status or a qualifier as often as a key. It counts
                # only when the word ends with one of the longer names ("password:",
                # "db_token: ..."); short ones (pass, pin, key ...) only as "pin=" or
                # '"pin":'.
                continue
            m = regex.match(text, at)
            if (
                m
                and self._counts_tokens(name)
                and _value_class(text, m.start("v")) == ""  # (bare, not in quotes)
                and _COUNT_VALUE.fullmatch(m.group("v"))
            ):
                continue  # ("prompt_tokens=120": a count of a language model's tokens)
            yield m

    def search(self, text: str) -> bool:
        """Whether any pattern would replace something in ``text``."""
        return self.sub(MARKER, text) != text


_WORDS: dict[str, tuple[str, ...]] = {
    "auth_header": ("authorization", "cookie"),
    "bearer": ("bearer",),
    "us_ssn_labelled": ("ssn", "social"),
}


def _at_words(
    regex: re.Pattern[str], text: str, low: str, words: tuple[str, ...]
) -> Iterator[re.Match[str] | None]:
    """``regex`` matched where ``low`` (``text`` lower-cased, same indexes) has a word."""
    for word in words:
        at = low.find(word)
        while at >= 0:
            m = regex.match(text, at)
            yield m
            at = low.find(word, m.end() if m is not None else at + 1)
