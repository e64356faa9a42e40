"""How an option's value is read: from text or a Python value, into what ``Config`` keeps.

Options arrive as Python values from code, and as strings from dictConfig/fileConfig
files and environment variables: ``"2.5s"``, ``"512KiB"``, ``"off"``, ``"a, b"``, a
dotted path to a callable. Each reader takes the option's name, and refuses what it
cannot read with a ``ConfigurationError`` that names the option and what it expected,
the value hidden when it may show the key.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

from ._errors import ConfigurationError
from ._limits import NAME_CHARS
from ._secret import shows_key

# hostname, app, env and level: capped at 80 characters as the official clients do.
_NAME_CAP = NAME_CHARS

TRUE = frozenset({"1", "true", "yes", "on", "y", "t"})
FALSE = frozenset({"0", "false", "no", "off", "n", "f"})
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "ki": 1024, "kib": 1024,
    "m": 1000**2, "mb": 1000**2, "mi": 1024**2, "mib": 1024**2,
    "g": 1000**3, "gb": 1000**3, "gi": 1024**3, "gib": 1024**3,
}  # fmt: skip
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h)?\s*$", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def blank(value: object) -> bool:
    """Whether ``value`` is None or text of blanks: an option not given."""
    return value is None or (isinstance(value, str) and not value.strip())


def bad(option: str, value: object, expected: str) -> ConfigurationError:
    """The error for ``value`` given as ``option`` where ``expected`` was wanted; the
    value hidden when it may show the key, and cut to 80 characters."""
    hidden = option in ("key", "key_file") or shows_key(value)
    shown = "<hidden>" if hidden else repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return ConfigurationError(f"{option}: expected {expected}, got {shown}", option)


def to_bool(option: str, value: object) -> bool:
    """Coerce a bool, or a string such as "true"/"0"/"off" from a config file."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        low = value.strip().lower()
        if low in TRUE:
            return True
        if low in FALSE:
            return False
    raise bad(option, value, "a boolean (true/false, yes/no, on/off, 1/0)")


def to_duration(option: str, value: object, *, minimum: float, maximum: float) -> float:
    """Coerce seconds: a number, or a string such as "5", "2.5s", "500ms", "1m" or "1h"."""
    seconds: float
    if isinstance(value, bool):
        raise bad(option, value, "a number of seconds")
    if isinstance(value, int | float):
        # (an int past float's range: out of range, as inf is)
        seconds = float(value) if abs(value) < 1e300 else float("inf")
    elif isinstance(value, str):
        m = _DURATION_RE.match(value)
        if not m:
            raise bad(
                option, value, 'a number of seconds such as "5", "2.5s", "500ms", "1m" or "1h"'
            )
        seconds = float(m.group(1)) * _DURATION_UNITS[(m.group(2) or "").lower()]
    else:
        raise bad(option, value, "a number of seconds")
    if not (minimum <= seconds <= maximum):  # also rejects NaN
        raise bad(option, value, f"seconds between {minimum:g} and {maximum:g}")
    return seconds


def to_size(option: str, value: object, *, minimum: int, maximum: int) -> int:
    """Coerce a byte count: an int, or a string such as "2097152", "512KiB" or "2MB"."""
    if isinstance(value, bool):
        raise bad(option, value, "a number of bytes")
    size: int
    if isinstance(value, int):
        size = value
    elif isinstance(value, float) and value.is_integer():
        size = int(value)
    elif isinstance(value, str):
        m = _SIZE_RE.match(value)
        if not m:
            raise bad(option, value, 'a number of bytes such as "1048576", "512KiB" or "2MB"')
        number = float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "").lower()]
        # (digits past float's range are inf: out of range, not an OverflowError)
        size = int(number) if number < 1e300 else maximum + 1
    else:
        raise bad(option, value, "a number of bytes")
    if not (minimum <= size <= maximum):
        raise bad(option, value, f"a number of bytes between {minimum} and {maximum}")
    return size


def to_level(option: str, value: object) -> int:
    """Coerce a logging level: an int, a numeric string or a name such as "warning"."""
    if isinstance(value, bool):
        raise bad(option, value, "a logging level")
    if isinstance(value, int):
        if value < 0:
            raise bad(option, value, "a logging level >= 0")
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.isdecimal():  # (what int() reads: isdigit() also takes "²")
            return int(text)
        level = logging.getLevelName(text.upper())
        if isinstance(level, int):
            return level
    raise bad(option, value, "a logging level (DEBUG, INFO, WARNING, ERROR, CRITICAL or a number)")


def to_str_list(option: str, value: object, *, patterns: bool = False) -> tuple[str, ...]:
    """Coerce a list of strings, or one comma-separated string ("a, b"); blank items
    are dropped. ``patterns``: regular expressions (``to_pattern_list``)."""
    if value is None:
        return ()
    what = (
        f"a list of {'regular expressions' if patterns else 'strings'} or a comma-separated string"
    )
    items: Iterable[object]
    if isinstance(value, str):
        items = split_patterns(option, value) if patterns else value.split(",")
    elif isinstance(value, Iterable) and not isinstance(value, bytes | Mapping):
        items = value
    else:
        raise bad(option, value, what)
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise bad(option, value, what)
        # (A blank pattern would match everywhere, or every space: a list left ragged.)
        if item.strip():
            # A pattern is not stripped: a space at either end of a regex is part of
            # what it matches (split_patterns trims a string's pieces by its own rule).
            out.append(utf8_text(item if patterns else item.strip()))
    return tuple(out)


def to_pattern_list(option: str, value: object) -> tuple[str, ...]:
    """Coerce regular expressions and preset names: a list taken item by item, as given,
    or one string of them separated by commas (``split_patterns``)."""
    return to_str_list(option, value, patterns=True)


#: A regex quantifier in braces, as split_patterns reads one.
_QUANTIFIER = re.compile(r"\{\d*(?:,\d*)?\}")
#: A piece's global flags at its start ("(?x)", "(?ix)"), and a group's own ("(?x:",
#: "(?-x:"), as split_patterns reads them for verbose mode.
_GLOBAL_FLAGS = re.compile(r"\s*\(\?([aiLmsux]+)\)")
_GROUP_FLAGS = re.compile(r"\(\?([aiLmsux]*)(?:-([imsx]+))?:")


def split_patterns(option: str, text: str) -> list[str]:
    """``text`` split at the commas that separate regular expressions: those outside
    ``(...)``, ``[...]`` and ``{...}`` and not after a backslash, with the blanks around
    each piece dropped (but an escaped one at its end: ``"a\\ "``).

    A regex's own commas (``\\d{6,8}``, ``[,;]``, ``(?:a,b)``, ``\\,``, a verbose
    pattern's ``# comment, to the line's end``) stay in it: cut there, both halves may
    still compile and match something else than meant, or nothing, and text the user
    wanted redacted would ship. For the same reason a piece whose brackets do not pair
    up is refused rather than read some other way.
    """
    cuts: list[int] = []
    # (position, what is wrong there) of the first bracket that does not pair up
    trouble: tuple[int, str] | None = None
    opened: list[tuple[int, bool]] = []  # the "(" still open, and verbose mode in each
    verbose = _verbose_at(text, 0)  # the piece's own mode (re.VERBOSE, "(?x)")
    i, end = 0, len(text)
    while i < end:
        char = text[i]
        if char == "\\":
            # (A named character's braces are its own: "\N{EURO SIGN}".)
            named = text.startswith("N{", i + 1) and text.find("}", i) >= 0
            i = text.find("}", i) + 1 if named else i + 2
            continue
        if char == "#" and (opened[-1][1] if opened else verbose):
            # A verbose pattern's comment runs to the line's end, commas and all. One
            # that runs to the text's end holds the rest: its comma is either.
            j = text.find("\n", i)
            if j < 0 and "," in text[i:]:
                trouble = trouble or (i, "a comma in its '#' comment, which runs to the end")
            i = end if j < 0 else j
            continue
        if char == "[":
            # A class ends at its first "]" but one right after "[" or "[^" (a literal
            # "]"), and "(", "{" and "," in it are literals.
            j = i + 1
            if text.startswith("^", j):
                j += 1
            if text.startswith("]", j):
                j += 1
            while j < end and text[j] != "]":
                j += 2 if text[j] == "\\" else 1
            if j >= end:
                trouble = trouble or (i, "its '[' is not closed")
            i = j + 1
            continue
        if char == "{":
            # A quantifier ("{2}", "{6,8}", "{,4}", "{2,}"): its comma is its own. Any
            # other "{" is a literal the regex would take too, but then its comma could
            # be either: refused, as a piece cut at it would be ("[x]{", ",a}").
            quantifier = _QUANTIFIER.match(text, i)
            if quantifier is None:
                trouble = trouble or (i, "its '{' starts no quantifier such as {2} or {6,8}")
                i += 1
                continue
            i = quantifier.end()
            continue
        if text.startswith("(?#", i):
            # A comment runs to its first ")", whatever it holds.
            j = text.find(")", i)
            if j < 0:
                trouble = trouble or (i, "its '(' is not closed")
                break
            i = j + 1
            continue
        if char == "(":
            flags = _GROUP_FLAGS.match(text, i)
            inside = opened[-1][1] if opened else verbose
            if flags is not None and "x" in flags[1]:
                inside = True
            elif flags is not None and "x" in (flags[2] or ""):
                inside = False
            opened.append((i, inside))
        elif char == ")":
            if opened:
                opened.pop()
            else:
                trouble = trouble or (i, "its ')' closes nothing")
        elif char in "]}":
            trouble = trouble or (i, f"its {char!r} closes nothing")
        elif char == "," and not opened:
            cuts.append(i)
            verbose = _verbose_at(text, i + 1)
        i += 1
    if opened:
        trouble = trouble or (opened[0][0], "its '(' is not closed")
    bounds = list(zip([-1, *cuts], [*cuts, end], strict=True))
    if trouble is not None:
        at, what = trouble
        start, stop = next((a, b) for a, b in bounds if a < at < b)
        raise _fragment(option, text[start + 1 : stop], what)
    return [_trimmed(text[start + 1 : stop]) for start, stop in bounds]


def _verbose_at(text: str, at: int) -> bool:
    """Whether the piece starting at ``text[at]`` sets verbose mode (``(?x)``) first."""
    flags = _GLOBAL_FLAGS.match(text, at)
    return flags is not None and "x" in flags[1]


def _trimmed(piece: str) -> str:
    """``piece`` without the blanks around it, but an escaped one at its end."""
    kept = piece.strip()
    escapes = len(kept) - len(kept.rstrip("\\"))
    if escapes % 2:  # the last blank was escaped ("a\\ "): it is the regex's
        kept = piece.lstrip()[: len(kept) + 1]
    return kept


def _fragment(option: str, piece: str, what: str) -> ConfigurationError:
    """The error for a piece of a comma-separated string whose brackets do not pair up."""
    piece = piece.strip()
    shown = "<hidden>" if shows_key(piece) else repr(piece)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return ConfigurationError(
        f"{option}: {shown} is not a whole regular expression ({what}); a string's "
        "patterns are separated by the commas outside (), [] and {}: escape a literal "
        "bracket, brace or comma there with a backslash (\\{, \\,), or give a list",
        option,
    )


def utf8_text(value: str) -> str:
    """``value`` as text that encodes to UTF-8.

    On POSIX, ``os.environ`` turns bytes that are not UTF-8 (a Latin-1 pod or host name,
    a value cut mid-character) into lone surrogates, which no UTF-8 encoder takes: the
    entry template (app), the OTLP body and the ingest API's URL (hostname, tags) could
    not be built, and every line of the process was lost. The bytes are decoded back,
    and what is not UTF-8 becomes U+FFFD.
    """
    if value.isascii():
        return value
    try:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a surrogate no decoder made: nothing to recover
        return value.encode("utf-8", "replace").decode("utf-8")


def optional_name(option: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad(option, value, "a string")
    value = utf8_text(value.strip())
    if not value:
        return None
    if len(value) > _NAME_CAP:
        raise bad(option, value, f"at most {_NAME_CAP} characters")
    return value


def resolve_callable(option: str, value: object) -> Callable[..., Any] | None:
    """Accept a callable, or a dotted "module.attr" path (dictConfig gives strings)."""
    if value is None:
        return None
    if callable(value):
        return cast(Callable[..., Any], value)
    if isinstance(value, str) and "." in value:
        module_name, _, attr = value.rpartition(".")
        try:
            module = __import__(module_name, fromlist=[attr])
            found = getattr(module, attr)
        except (ImportError, AttributeError) as exc:
            # (Its text quotes the path, which may be the key, pasted here by mistake.)
            why = "" if shows_key(str(exc)) else f" ({exc})"
            raise bad(option, value, f"a callable or an importable dotted path{why}") from None
        if callable(found):
            return cast(Callable[..., Any], found)
    raise bad(option, value, 'a callable or a dotted path such as "myapp.logs.scrub"')


def check_pattern(pattern: str) -> None:
    from ._redact import PRESET_GROUPS, PRESET_PATTERNS  # noqa: PLC0415 - avoids an import cycle

    if pattern in PRESET_PATTERNS or pattern in PRESET_GROUPS:
        return
    if pattern.isidentifier():
        # A bare word is a regular expression that redacts that word: one that is nearly
        # a preset's name is a typo ('emails'), and the addresses would ship unredacted.
        names = [*PRESET_PATTERNS, *PRESET_GROUPS]
        close = difflib.get_close_matches(pattern.lower(), names, 1, 0.75)
        if close:
            raise ConfigurationError(
                f"redact_patterns: {pattern!r} is no preset; did you mean {close[0]!r}? "
                f"(for a regular expression that redacts the word, write (?:{pattern}))",
                "redact_patterns",
            )
    try:
        re.compile(pattern)
    except re.error as exc:
        shown = "<hidden>" if shows_key(pattern) else repr(pattern)
        raise ConfigurationError(
            f"redact_patterns: {shown} is not a valid regular expression ({exc})",
            "redact_patterns",
        ) from None
