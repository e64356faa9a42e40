"""How much work redaction does on text built against it: a bounded few times the text.

Counted, not timed: every regex that reads a key=value value (the rule's own,
the forward key finders', and the value runs that carry a value to its end) is
wrapped, and what its matches consumed is summed; the lines under YAML keys read
and the keys judged one by one are counted likewise. What a regex reads past a
match cannot be counted: cli_password's bound is pinned by what it still finds.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from logdna_client import _redact
from logdna_client._redact import CREDENTIAL_PATTERNS, MARKER, Redactor
from tests._redact_reference import ReferencePatterns


class _Counted:
    """A compiled regex whose matches' reads are added to ``count`` (its value
    group's, when it has one: the rest is the key and separator, read once)."""

    def __init__(self, regex: re.Pattern[str], count: list[int]) -> None:
        self._regex = regex
        self._count = count
        self.pattern = regex.pattern
        self.groupindex = regex.groupindex

    def _add(self, m: re.Match[str] | None, pos: int) -> re.Match[str] | None:
        if m is not None:
            self._count[0] += m.end("v") - m.start("v") if "v" in self.groupindex else m.end() - pos
        return m

    def match(self, text: str, pos: int = 0, *args: Any) -> re.Match[str] | None:
        return self._add(self._regex.match(text, pos, *args), pos)

    def finditer(self, text: str, *args: Any) -> Iterator[re.Match[str]]:
        for m in self._regex.finditer(text, *args):
            self._add(m, m.start())
            yield m


def _count(extra: Any, count: list[int]) -> Any:
    """The rule's other form, counted if it is a regex (the value's start)."""
    return _Counted(extra, count) if isinstance(extra, re.Pattern) else extra


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> tuple[Redactor, list[int]]:
    """A default redactor and the number of characters its key=value reads consumed."""
    count = [0]
    monkeypatch.setattr(_redact, "_BARE_RUN", _Counted(_redact._BARE_RUN, count))
    monkeypatch.setattr(
        _redact,
        "_QUOTED_RUN",
        {quote: _Counted(run, count) for quote, run in _redact._QUOTED_RUN.items()},
    )
    finder = _redact._Patterns._key_finder

    def counted_finder(self: Any, *args: Any) -> Any:
        return _Counted(finder(self, *args), count)

    monkeypatch.setattr(_redact._Patterns, "_key_finder", counted_finder)
    redactor = Redactor()
    patterns = redactor._text_re
    assert patterns is not None
    patterns._rules = tuple(
        (kind, needs, _Counted(regex, count), _count(extra, count), *rest)
        if kind == _redact._KEY_VALUE
        else (kind, needs, regex, extra, *rest)
        for kind, needs, regex, extra, *rest in patterns._rules
    )
    return redactor, count


def _cost_ratio(redactor: Redactor, text: str, plain: str) -> float:
    """What redacting ``text`` costs over redacting ``plain`` (same length), in this
    thread's CPU time: the best of a few runs of each, in turn (load only adds)."""
    assert len(text) == len(plain)
    best = [float("inf"), float("inf")]
    for _ in range(7):
        for index, each in enumerate((text, plain)):
            started = time.thread_time()
            redactor.text(each)
            best[index] = min(best[index], time.thread_time() - started)
    return best[0] / max(best[1], 1e-6)


#: An ordinary log of the default line cap's length that reaches the patterns (a
#: ":", an "=", line breaks): what an input built against them is measured against.
PLAIN = (
    "GET /api/v1/orders/42 200 in 12 ms user=bob trace=9f86d081884c7d65 at "
    "2024-01-15T10:30:00.123Z id 550e8400-e29b-41d4-a716-446655440000 host: web-1\n" * 120
)[: 16 * 1024]


def _filled(unit: str) -> str:
    """``unit`` repeated to PLAIN's length, after a line break and an indented line
    (which the block pattern needs)."""
    text = ("x\n " + unit * (len(PLAIN) // len(unit)))[: len(PLAIN)]
    return text + PLAIN[len(text) :]


# Values that hold keys: each key's value runs on over all the others.
HOSTILE = [
    'password=\\"',  # JSON inside a JSON string: {\"password=\"...
    'token=\\"a\\"',
    "password=\\'",  # the same in single quotes
    "pw=",  # a bare value, its separator inside it
    "pw=a,",  # the same, a joiner inside it
    "pw=,,",  # joiners only
    "pw12=",  # a key that ends with two digits
    "sid=",  # a key that is a secret only whole
    "pw=b'",  # a bytes repr's quote inside a value
    "pw=> ",  # a hash arrow, a space after it
    "pw=a b ",  # spaces inside a value that no ";" ends
    "pw=a b;",  # spaces inside values that a ";" ends
    "pw=('a', ",  # tuples that never close
    "token01: a ",  # keys that end in digits before a ":"
    "".join(f'k{i}_token=\\"' for i in range(20)),  # more keys than the finders take
]


class TestValuesReadOnce:
    @pytest.mark.parametrize("unit", HOSTILE)
    @pytest.mark.parametrize("size", [2000, 16 * 1024])
    def test_a_few_reads_per_character(
        self, counted: tuple[Redactor, list[int]], unit: str, size: int
    ) -> None:
        """Values that start inside other values are not read again from each start
        (it read up to 256 characters from each, a line of 16 KB 4 MB)."""
        redactor, count = counted
        text = (unit * (size // len(unit) + 1))[:size]

        for _ in range(4):  # (the forward finders take over after a few texts)
            count[0] = 0
            redacted = redactor.text(text)

            assert count[0] <= 4 * size
        reference = ReferencePatterns(list(CREDENTIAL_PATTERNS), redactor)
        assert reference.sub(MARKER, text) == redacted


class TestBlocksReadOnce:
    @pytest.mark.parametrize(
        "text",
        [
            # nested secret keys, each block inside the one before
            "".join(" " * i + "secret:\n" for i in range(400)) + " " * 400 + "x",
            # secret keys whose next line is not indented deeper: no block at all
            " password:\n x\n" * 400,
            # blank lines after each key, then a line that ends the block
            ("token:\n" + "  \n" * 5 + "x: 1\n") * 200,
        ],
    )
    def test_each_line_read_a_few_times(self, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
        """The lines under YAML keys are read once for each block that starts before
        them, not once for each key inside a block found already."""
        count = [0]
        monkeypatch.setattr(_redact, "_BLOCK_LINE", _Counted(_redact._BLOCK_LINE, count))
        redacted = Redactor().text(text)

        assert count[0] <= 2 * len(text)
        reference = ReferencePatterns(list(CREDENTIAL_PATTERNS), Redactor())
        assert reference.sub(MARKER, text) == redacted


class TestBlockKeysJudgedOnce:
    def test_many_keys_none_secret_cost_one_scan(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Many ":" ending lines before indented ones, no key a secret: one scan says
        so, not one Python step for each (a 128 KB line of "a:\\n  " took 148 ms)."""
        judged = [0]
        real = _redact._block_key

        def counted_key(*args: Any) -> int:
            judged[0] += 1
            return real(*args)

        monkeypatch.setattr(_redact, "_block_key", counted_key)
        text = "a:\n  " * 4000

        assert text == Redactor().text(text)
        assert judged[0] <= _redact._BLOCKS_CHECKED_ONE_BY_ONE


class TestBlockCommentsReadOnce:
    @pytest.mark.parametrize("unit", [":#", "a: #", ": >- #x"])
    def test_a_line_of_comments_costs_a_few_plain_lines(self, unit: str) -> None:
        """Only a line's first ":" is tried as a YAML key's: each ":" of a line of
        ":#" read the line on to its end as a comment (up to 256 characters, then
        back again), 146 times a plain line's cost (53 ms for 16 KB); now 4."""
        text = _filled(unit)

        assert _cost_ratio(Redactor(), text, PLAIN) < 20

    def test_a_comment_after_a_secret_key_still_opens_its_block(self) -> None:
        """The key and its comment are still read: on the first line, on a later
        one, with more ":" in the comment."""
        for text in (
            "password: # rotate: soon\n  s3cret",
            "cfg:\n  token: # note: a: #\n    s3cret\n  x: 1",
            "a:b c: d\nsecret: |\n  s3cret",
        ):
            assert "s3cret" not in Redactor().text(text)


class TestMysqlPasswordSearchedOnce:
    @pytest.mark.parametrize("unit", ["-mysqlghp_-", "mysql a:", "-mysqlaaaaaaaaaaaaaaaaaaaaaaaa:"])
    def test_many_commands_cost_a_few_plain_lines(self, unit: str) -> None:
        """mysql_password's search for "-p" is not read again for each length of the
        command's name backtracking gives back (17 of them, 256 characters each), nor
        from each "mysql" over the ones after it: 327, 29 and 116 times a plain
        line's cost before (118 ms for 16 KB of "-mysqlghp_-"); now 2 to 3."""
        text = _filled(unit)

        assert _cost_ratio(Redactor(), text, PLAIN) < 20

    @pytest.mark.parametrize(
        "text",
        [
            "mysql -h mysql.internal -u app -ps3cret shop",
            "mysqldump-8.0 -u root -ps3cret shop",
            "xmysql mysql mariadb -u root -ps3cret",
            "mariadb --host=db -ps3cret",
        ],
    )
    def test_the_password_is_still_found(self, text: str) -> None:
        """The password after another "mysql" on the line, after a long name."""
        assert "s3cret" not in Redactor().text(text)


class TestCommandLinesReadAFewWordsOn:
    @pytest.mark.parametrize(("words", "redacted"), [(4, True), (5, False)])
    def test_a_user_reads_at_most_four_words_on(self, words: int, redacted: bool) -> None:
        """cli_password's "-U user" looks for its "-P" at most four words on, not 256
        characters on (a 128 KB line of "-U a " took 466 ms, 3,550 ns a byte): past
        them, a "-P" is not the user's password."""
        text = "sqlcmd -U sa " + "x " * words + "-P s3cret"

        assert redacted == ("s3cret" not in Redactor().text(text))

    def test_a_one_line_message_does_not_run_the_block_pattern(self) -> None:
        """yaml_block's regex runs only on a message with a line break: a ":" alone
        (in many one-line messages) does not run it."""
        runs = []

        class Runs:
            def __init__(self, regex: re.Pattern[str]) -> None:
                self.regex = regex

            def finditer(self, text: str) -> Iterator[re.Match[str]]:
                runs.append(text)
                return self.regex.finditer(text)

        redactor = Redactor()
        patterns = redactor._text_re
        assert patterns is not None
        patterns._rules = tuple(
            (kind, needs, Runs(regex) if kind == _redact._BLOCK else regex, *rest)
            for kind, needs, regex, *rest in patterns._rules
        )

        redactor.text("login: password accepted for bob")
        assert [] == runs
        redactor.text("config:\n  password: x")
        assert ["config:\n  password: x"] == runs
