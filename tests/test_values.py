"""Tests for _values: each reader of an option's value, on its own. What Config does with
them (which option uses which reader, the environment's values) is tests/test_config.py's.

Expected values are worked out from the units' definitions (a KiB is 1024 bytes, a minute
60 seconds), not read back from the code under test."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from logdna_client import ConfigurationError
from logdna_client._redact import PRESET_GROUPS, PRESET_PATTERNS
from logdna_client._secret import KEYS, Secret
from logdna_client._values import (
    FALSE,
    TRUE,
    bad,
    blank,
    check_pattern,
    optional_name,
    resolve_callable,
    to_bool,
    to_duration,
    to_level,
    to_pattern_list,
    to_size,
    to_str_list,
    utf8_text,
)

KEY = "c0ffee-ingestion-key-1234"
SIZE = {"minimum": 1, "maximum": 1 << 40}
DURATION = {"minimum": 0.0, "maximum": 86_400.0}


@contextmanager
def key_being_configured() -> Iterator[None]:
    """For the duration, ``KEY`` is a key being configured (as a Client's own is while it
    is built): a value holding it is shown as <hidden>."""
    token = KEYS.set((Secret(KEY),))
    try:
        yield
    finally:
        KEYS.reset(token)


def refused(option: str) -> AbstractContextManager[object]:
    """Refused with an error that names ``option`` first."""
    return pytest.raises(ConfigurationError, match=f"^{option}: expected ")


class TestBad:
    def test_names_the_option_and_what_was_expected(self) -> None:
        err = bad("flush_interval", "soon", "a number of seconds")
        assert "flush_interval: expected a number of seconds, got 'soon'" == str(err)
        assert "flush_interval" == err.option

    def test_a_long_value_is_cut_to_80_characters(self) -> None:
        shown = str(bad("app", "x" * 500, "a name")).partition("got ")[2]
        assert 80 == len(shown) and shown.endswith("...")

    @pytest.mark.parametrize("option", ["key", "key_file"])
    def test_the_key_options_are_never_shown(self, option: str) -> None:
        assert str(bad(option, "anything", "text")).endswith("got <hidden>")

    def test_a_value_holding_a_key_being_configured_is_hidden(self) -> None:
        with key_being_configured():
            message = str(bad("app", f"prefix-{KEY.upper()[:14]}", "a name"))
        assert message.endswith("got <hidden>")
        assert KEY[:12] not in message.lower()


class TestBlank:
    @pytest.mark.parametrize("value", [None, "", "   ", "\t\n"])
    def test_none_and_blank_text_are_not_given(self, value: object) -> None:
        assert blank(value)

    @pytest.mark.parametrize("value", ["x", " x ", 0, False, []])
    def test_anything_else_is_given(self, value: object) -> None:
        assert not blank(value)


class TestToBool:
    @settings(deadline=None)  # a loaded machine is slow, not wrong
    @given(st.sampled_from(sorted(TRUE | FALSE)), st.text(" \t", max_size=2), st.booleans())
    def test_each_word_in_any_case_with_blanks(self, word: str, pad: str, upper: bool) -> None:
        text = pad + (word.upper() if upper else word) + pad
        assert (word in TRUE) is to_bool("compress", text)

    @pytest.mark.parametrize(
        ("value", "expected"), [(True, True), (False, False), (1, True), (0, False)]
    )
    def test_bools_and_0_1(self, value: object, expected: bool) -> None:
        assert expected is to_bool("compress", value)

    @pytest.mark.parametrize("value", ["maybe", "", 2, -1, 1.0, None, b"true"])
    def test_anything_else_is_refused(self, value: object) -> None:
        with refused("compress"):
            to_bool("compress", value)


class TestToDuration:
    @pytest.mark.parametrize(
        ("text", "seconds"),
        [("5", 5.0), ("2.5s", 2.5), ("500ms", 0.5), ("1m", 60.0), ("1h", 3600.0),
         (".25", 0.25), (" 3 S ", 3.0), ("1.5H", 5400.0), ("0", 0.0)],
    )  # fmt: skip
    def test_text_in_each_unit(self, text: str, seconds: float) -> None:
        assert seconds == to_duration("flush_interval", text, **DURATION)

    @settings(deadline=None)  # a loaded machine is slow, not wrong
    @given(st.integers(0, 10_000), st.sampled_from([("ms", 0.001), ("s", 1), ("m", 60)]))
    def test_any_whole_number_of_a_unit(self, n: int, unit: tuple[str, float]) -> None:
        expected = n * unit[1]
        got = to_duration("flush_interval", f"{n}{unit[0]}", **{**DURATION, "maximum": 1e9})
        assert math.isclose(expected, got)

    def test_numbers_are_seconds(self) -> None:
        assert 7.0 == to_duration("request_timeout", 7, **DURATION)
        assert 0.125 == to_duration("request_timeout", 0.125, **DURATION)

    @pytest.mark.parametrize(
        "value",
        ["soon", "5 minutes", "-1", "1d", "", True, None, [1], float("nan"), -0.5, 10**400,
         float("inf"), "86401"],
    )  # fmt: skip
    def test_what_is_not_a_duration_in_range_is_refused(self, value: object) -> None:
        with refused("flush_interval"):
            to_duration("flush_interval", value, **DURATION)

    def test_the_range_is_said(self) -> None:
        with pytest.raises(ConfigurationError, match=r"seconds between 0\.1 and 60"):
            to_duration("request_timeout", 61, minimum=0.1, maximum=60)


class TestToSize:
    @pytest.mark.parametrize(
        ("text", "size"),
        [("2097152", 2_097_152), ("512KiB", 512 * 1024), ("2MB", 2_000_000), ("1k", 1000),
         ("1ki", 1024), ("3 GiB", 3 * 1024**3), ("1.5KiB", 1536), ("10b", 10), (" 7 ", 7)],
    )  # fmt: skip
    def test_text_in_each_unit(self, text: str, size: int) -> None:
        assert size == to_size("max_batch_bytes", text, **SIZE)

    @settings(deadline=None)  # a loaded machine is slow, not wrong
    @given(st.integers(1, 10_000), st.sampled_from([("KiB", 1024), ("kb", 1000), ("Mi", 1024**2)]))
    def test_any_whole_number_of_a_unit(self, n: int, unit: tuple[str, int]) -> None:
        assert n * unit[1] == to_size("max_batch_bytes", f"{n}{unit[0]}", **SIZE)

    def test_ints_and_whole_floats(self) -> None:
        assert 4096 == to_size("max_batch_bytes", 4096, **SIZE)
        assert 4096 == to_size("max_batch_bytes", 4096.0, **SIZE)

    @pytest.mark.parametrize(
        "value",
        ["lots", "2TB", "-5", "", 1.5, True, None, 0, "1" + "0" * 400, 1 << 41, b"10"],
    )
    def test_what_is_not_a_size_in_range_is_refused(self, value: object) -> None:
        with refused("max_batch_bytes"):
            to_size("max_batch_bytes", value, **SIZE)


class TestToLevel:
    @pytest.mark.parametrize(
        ("value", "level"),
        [("warning", logging.WARNING), (" Error ", logging.ERROR), ("DEBUG", logging.DEBUG),
         ("25", 25), (35, 35), (0, 0)],
    )  # fmt: skip
    def test_names_in_any_case_and_numbers(self, value: object, level: int) -> None:
        assert level == to_level("level", value)

    def test_a_level_added_by_name_is_read(self) -> None:
        logging.addLevelName(27, "NOTICE_FOR_TEST_VALUES")
        assert 27 == to_level("level", "notice_for_test_values")

    @pytest.mark.parametrize("value", ["loud", "²", "-1", -1, True, 2.5, None, ""])
    def test_anything_else_is_refused(self, value: object) -> None:
        with refused("level"):
            to_level("level", value)


class TestToStrList:
    def test_comma_separated_text_trimmed_and_blanks_dropped(self) -> None:
        assert ("a", "b", "c") == to_str_list("tags", " a, b ,,c, ")

    def test_any_iterable_of_strings(self) -> None:
        assert ("x", "y") == to_str_list("tags", ("x", " y ", " "))
        assert ("z",) == to_str_list("tags", iter(["z"]))
        assert () == to_str_list("tags", None)

    @pytest.mark.parametrize("value", [b"a,b", {"a": 1}, 5, ["a", 5]])
    def test_anything_else_is_refused(self, value: object) -> None:
        with refused("tags"):
            to_str_list("tags", value)


def patterns(value: object) -> tuple[str, ...]:
    return to_pattern_list("redact_patterns", value)


def fragment(piece: str) -> AbstractContextManager[object]:
    """Refused as a piece whose brackets do not pair up, the piece shown."""
    shown = re.escape(repr(piece))
    return pytest.raises(
        ConfigurationError, match=f"^redact_patterns: {shown} is not a whole regular expression"
    )


# Regular expressions that a string of them must give back whole: their commas are inside
# brackets, or escaped at the top.
_LETTER = st.sampled_from(["a", "Z", "7", "_", "=", ":", ";", "-"])
_ESCAPE = st.sampled_from([r"\,", r"\ ", r"\d", r"\w", r"\\", r"\[", r"\{", r"\(", r"\)"])
_IN_CLASS = st.sampled_from(
    ["a", "z", "0-9", ",", ";", " ", "(", ")", "{", "}", "[", r"\]", r"\\", r"\d", "^"]
)
_CLASS = st.builds(
    lambda neg, bracket, body: "[" + neg + bracket + "".join(body) + "]",
    st.sampled_from(["", "^"]),
    st.sampled_from(["", "]"]),  # a "]" right after "[" or "[^" is a literal
    # (a "[" first in a class is a literal too, but Python warns it may become a nested set)
    st.lists(_IN_CLASS, min_size=1, max_size=4).filter(lambda body: body[0] != "["),
)
_QUANTIFIER = st.sampled_from(["", "*", "+", "?", "{2}", "{1,3}", "{,4}", "{2,}", "{1,3}?"])


def _regex(depth: int) -> st.SearchStrategy[str]:
    """A regular expression of atoms, each with a quantifier or not; a group's own
    alternatives may hold bare commas and spaces."""
    atoms = [_LETTER, _ESCAPE, _CLASS]
    if depth:
        inner = st.lists(
            st.one_of(_regex(depth - 1), st.sampled_from([",", " ", ", "])),
            min_size=1,
            max_size=3,
        ).map("".join)
        atoms.append(
            st.builds(
                lambda head, alternatives: "(" + head + "|".join(alternatives) + ")",
                st.sampled_from(["", "?:", "?i:", "?="]),
                st.lists(inner, min_size=1, max_size=3),
            )
        )
    atom = st.builds(lambda a, q: a + q, st.one_of(atoms), _QUANTIFIER)
    return st.lists(atom, min_size=1, max_size=4).map("".join)


#: A whole regular expression, as one would be written in a string of them: no blank at
#: either end (but an escaped one), a plain space only between its atoms.
_PATTERN = st.builds(
    lambda first, middle, last: first + middle + last,
    _regex(2),
    st.sampled_from(["", " ", "  ", "\t"]),
    _regex(2),
)
_ENTRY = st.one_of(_PATTERN, st.sampled_from(sorted({*PRESET_GROUPS, *PRESET_PATTERNS})))


class TestToPatternList:
    def test_a_quantifier_with_a_comma_stays_whole(self) -> None:
        """Before, to_str_list cut it into 'MRN-\\d{6' and '8}', both of which compile."""
        assert (r"MRN-\d{6,8}",) == patterns(r"MRN-\d{6,8}")
        assert ("phi", r"ORD-\d{3,6}") == patterns(r"phi, ORD-\d{3,6}")

    @pytest.mark.parametrize(
        "pattern", [r"[,;]secret=\w+", r"[]a,]x", r"[^],]+", r"x[\],]y", r"[^\],]z"]
    )
    def test_a_class_with_a_comma_stays_whole(self, pattern: str) -> None:
        """A "]" first in a class, or escaped, does not end it."""
        assert ("email", pattern, "bearer") == patterns(f"email, {pattern},bearer")

    def test_a_group_or_a_comment_with_a_comma_stays_whole(self) -> None:
        assert (r"(?:ORD,|INV-)\d", r"(?#a, [b)c", "d") == patterns(
            r"(?:ORD,|INV-)\d, (?#a, [b)c ,d"
        )

    @pytest.mark.parametrize(
        "pattern",
        [
            "(?x) MRN: \\s* \\d{7}  # record number, 7 digits\n | SSN: \\s* \\d{3}-\\d{2}-\\d{4}",
            "(?ix:ssn # US, with dashes\n \\d{3}-\\d{2}-\\d{4})",
        ],
    )
    def test_a_verbose_patterns_comment_keeps_its_commas(self, pattern: str) -> None:
        """In verbose mode a "#" comment runs to the line's end: cut at its comma, the
        rest lost its "(?x)" (its spaces then literal), matched nothing, and the SSN it
        was for shipped unredacted, with no error."""
        assert ("phi", pattern) == patterns(f"phi, {pattern}")
        re.compile(pattern)
        # An escaped "#" starts no comment, nor does one in a class: three patterns.
        assert ("(?x) a \\# b", "(?x)[#] c", "d") == patterns("(?x) a \\# b, (?x)[#] c, d")

    def test_a_verbose_comment_with_a_comma_to_the_end_is_refused(self) -> None:
        """Whether its comma ends it or not cannot be told: refused, not guessed."""
        with fragment("(?x) a # mrn, b"):
            patterns("(?x) a # mrn, b")
        assert ("(?i)a # mrn", "b") == patterns("(?i)a # mrn, b")  # not verbose: a literal "#"

    def test_a_named_characters_braces_are_its_own(self) -> None:
        assert ("\\N{EURO SIGN}\\d+", "x") == patterns("\\N{EURO SIGN}\\d+, x")

    def test_an_escaped_comma_stays_in_its_pattern(self) -> None:
        """``\\,`` is a literal comma in a regex; ``\\\\,`` is a backslash, then a separator."""
        assert (r"last\, first", "x") == patterns(r"last\, first, x")
        assert ("a\\\\", "b") == patterns("a\\\\, b")

    def test_blanks_around_separators_are_dropped_but_an_escaped_one(self) -> None:
        assert ("phi", "a\\ ", "b", "\\\t") == patterns(" phi ,, a\\ ,\tb , \\\t ,")

    def test_list_items_are_taken_as_given(self) -> None:
        """Not split, not stripped: a space at either end of a regex is part of it. A
        blank item (a list left ragged) is dropped."""
        assert (" MRN-\\d{6} ", "a, b", "(x") == patterns([" MRN-\\d{6} ", "a, b", " ", "(x"])
        assert ("z",) == patterns(iter(["z"]))
        assert () == patterns(None)

    @pytest.mark.parametrize(
        ("text", "piece"),
        [
            (r"phi, MRN-\d{6", r"MRN-\d{6"),
            (r"x, 8}", "8}"),
            ("a(b, c", "a(b, c"),
            ("a), b", "a)"),
            ("[], x", "[], x"),
            ("a], b", "a]"),
            ("x{, y", "x{"),
            ("(?#a, b", "(?#a, b"),
            ("ok, a\\d{3 ", "a\\d{3"),
        ],
    )
    def test_a_piece_whose_brackets_do_not_pair_up_is_refused(self, text: str, piece: str) -> None:
        """It would be a regex other than the one meant (``\\d{6`` matches "d{6"
        literally), so it is refused, the piece named."""
        with fragment(piece):
            patterns(text)

    def test_a_piece_holding_a_key_being_configured_is_hidden(self) -> None:
        with key_being_configured(), pytest.raises(ConfigurationError) as caught:
            patterns(f"phi, ({KEY}")
        assert "<hidden>" in str(caught.value) and KEY not in str(caught.value)
        assert "redact_patterns" == caught.value.option

    @pytest.mark.parametrize("value", [b"a,b", {"a": 1}, 5, ["a", 5]])
    def test_anything_else_is_refused(self, value: object) -> None:
        with refused("redact_patterns"):
            patterns(value)

    @settings(deadline=None)
    @given(st.lists(_ENTRY, min_size=1, max_size=5), st.sampled_from([",", ", ", " , "]))
    def test_a_list_joined_with_commas_splits_back_into_it(
        self, entries: list[str], separator: str
    ) -> None:
        """Valid regexes and preset names that each read as themselves, joined with
        commas, come back one by one (the strategy makes a few invalid regexes, and a
        few with a literal "{" that a string must escape: those are left out)."""
        for entry in entries:
            try:
                re.compile(entry)
                assume((entry,) == patterns(entry))
            except (re.error, ConfigurationError):
                assume(False)
        assert tuple(entries) == patterns(separator.join(entries))

    @settings(deadline=None)
    @given(st.text(alphabet="ab ,\t"))
    def test_text_without_brackets_or_escapes_splits_as_any_list_option(self, text: str) -> None:
        """Such text is split at every comma, as tags and redact are."""
        assert to_str_list("tags", text) == patterns(text)

    @settings(deadline=None)
    @given(st.text(alphabet="a ,\\[]^(){}?#"))
    def test_any_text_splits_or_is_refused_as_configuration(self, text: str) -> None:
        """Nothing else escapes, and no piece is blank or has blanks around it unescaped."""
        try:
            pieces = patterns(text)
        except ConfigurationError as exc:
            assert "redact_patterns" == exc.option
            return
        for piece in pieces:
            assert piece.strip() and piece == piece.lstrip()
            assert piece == piece.rstrip() or piece.rstrip().endswith("\\")


class TestUtf8Text:
    def test_bytes_the_environment_could_not_decode_are_decoded_back(self) -> None:
        # How os.environ holds a value of Latin-1 bytes on POSIX: lone surrogates.
        held = "caf\xe9-pod".encode("latin-1").decode("utf-8", "surrogateescape")
        text = utf8_text(held)
        assert "caf\ufffd-pod" == text
        assert text.encode("utf-8")

    def test_utf8_split_by_the_environment_is_joined_again(self) -> None:
        held = "naïve".encode().decode("ascii", "surrogateescape")
        assert "naïve" == utf8_text(held)

    def test_a_surrogate_no_decoder_made_becomes_a_replacement(self) -> None:
        assert "a?b" == utf8_text("a\ud800b")

    @settings(deadline=None)  # a loaded machine is slow, not wrong
    @given(st.text())
    def test_whatever_the_text_the_result_encodes(self, text: str) -> None:
        utf8_text(text).encode("utf-8")


class TestOptionalName:
    def test_trimmed_and_blank_is_none(self) -> None:
        assert "web" == optional_name("app", "  web ")
        assert optional_name("app", "   ") is None
        assert optional_name("app", None) is None

    def test_80_characters_at_most(self) -> None:
        assert "x" * 80 == optional_name("app", "x" * 80)
        with pytest.raises(ConfigurationError, match="at most 80 characters"):
            optional_name("app", "x" * 81)

    def test_not_text_is_refused(self) -> None:
        with refused("app"):
            optional_name("app", 5)


class TestResolveCallable:
    def test_a_callable_or_a_dotted_path(self) -> None:
        assert math.floor is resolve_callable("redact", math.floor)
        assert math.floor is resolve_callable("redact", "math.floor")
        assert resolve_callable("redact", None) is None

    @pytest.mark.parametrize(
        "value", ["math.no_such_thing", "no_such_module.f", "floor", "math.pi", 5]
    )
    def test_what_does_not_name_a_callable_is_refused(self, value: object) -> None:
        with refused("redact"):
            resolve_callable("redact", value)


class TestCheckPattern:
    def test_a_regular_expression_or_a_preset_passes(self) -> None:
        check_pattern(r"user-\d+")
        check_pattern("email")

    def test_a_broken_expression_says_why_and_hides_a_key(self) -> None:
        with pytest.raises(ConfigurationError, match=r"'\(unclosed' is not a valid regular"):
            check_pattern("(unclosed")
        with key_being_configured(), pytest.raises(ConfigurationError) as caught:
            check_pattern(f"({KEY}")
        assert "<hidden>" in str(caught.value) and KEY not in str(caught.value)
