"""Tests for _line: every line ships as valid JSON within caps, bad values degrade alone."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logdna_client._config import Config
from logdna_client._limits import NAME_CHARS, cap_text
from logdna_client._line import ENTRY_LEVEL, FIELDS, LineBuilder, safe_str
from logdna_client._redact import MARKER


def builder(**options: Any) -> LineBuilder:
    return LineBuilder(Config(url="http://127.0.0.1:1/logs/ingest", **options))


class Hostile:
    """An object whose str and repr both raise."""

    def __str__(self) -> str:
        raise RuntimeError("no str for you")

    def __repr__(self) -> str:
        raise RuntimeError("no repr either")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
odd_values = st.one_of(
    json_values,
    st.binary(max_size=20),
    st.integers(min_value=2**64, max_value=2**80),
    st.just(Hostile()),
    st.just(float("nan")),
    st.builds(object),
    st.frozensets(st.integers(), max_size=3),
)


class TestEncode:
    def test_fields(self) -> None:
        """The line carries text, level, timestamp, app, env and meta as the API wants."""
        data = builder(app="api", env="prod").encode("hello", "INFO", 1_700_000_000_123,
                                                      {"user_id": 42})  # fmt: skip
        expected = {"line": "hello", "timestamp": 1_700_000_000_123, "level": "INFO",
                    "app": "api", "env": "prod", "meta": {"user_id": 42}}  # fmt: skip
        assert data is not None
        assert expected == orjson.loads(data)

    def test_per_line_app_and_env_override(self) -> None:
        """app= and env= given with a line override the configured ones."""
        data = builder(app="api", env="prod").encode("x", "INFO", 1, None, "worker", "dev")
        assert data is not None
        line = orjson.loads(data)
        assert ("worker", "dev") == (line["app"], line["env"])
        assert "meta" not in line

    def test_meta_as_string_when_not_indexed(self) -> None:
        """index_meta=False sends meta as a JSON string, which the service stores unindexed."""
        data = builder(index_meta=False).encode("x", "INFO", 1, {"a": 1})
        assert data is not None
        assert {"a": 1} == orjson.loads(orjson.loads(data)["meta"])

    def test_empty_message_still_ships(self) -> None:
        """The API refuses an empty line, so an empty message gets a placeholder."""
        data = builder().encode("", "INFO", 1)
        assert data is not None
        assert orjson.loads(data)["line"]

    def test_non_json_values_degrade_one_by_one(self) -> None:
        """Each value orjson cannot encode becomes text; the other values are untouched."""
        meta = {
            "ok": 1, "nan": float("nan"), "when": dt.datetime(2024, 1, 2, 3, 4, 5),
            "id": uuid.UUID(int=1), "raw": b"\xffab", "big": 2**70, "bad": Hostile(),
            "tags": {"x"}, 7: "int key",
        }  # fmt: skip
        data = builder().encode("x", "INFO", 1, meta)  # type: ignore[arg-type]
        assert data is not None
        got = orjson.loads(data)["meta"]
        assert 1 == got["ok"]
        assert got["nan"] is None
        assert "2024-01-02T03:04:05" == got["when"]
        assert str(uuid.UUID(int=1)) == got["id"]
        assert str(2**70) == got["big"]
        assert "<unprintable Hostile>" == got["bad"]
        assert ["x"] == got["tags"]
        assert "int key" == got["7"]

    def test_cycles_are_cut(self) -> None:
        """A self-referencing meta value is cut instead of failing the line."""
        loop: dict[str, Any] = {"name": "loop"}
        loop["self"] = loop
        data = builder().encode("x", "INFO", 1, {"loop": loop})
        assert data is not None
        assert "<cycle>" == orjson.loads(data)["meta"]["loop"]["self"]

    def test_surrogates_are_replaced(self) -> None:
        """Lone surrogates in text or meta are replaced, keeping the JSON valid UTF-8."""
        data = builder().encode("a\udcffb", "INFO", 1, {"k": "\ud800"})
        assert data is not None
        line = orjson.loads(data)
        assert line["line"].startswith("a") and line["line"].endswith("b")

    def test_a_surrogate_does_not_spoil_a_float_subclass_beside_it(self) -> None:
        """The general path's last resort (a lone surrogate sends the line through
        ``_sanitize``) ships a float subclass as the first try does, by ``default``:
        orjson takes int and str subclasses, not float ones, and the line was dropped."""

        class Celsius(float):
            pass

        b = builder()
        data = b.encode("a\udcffb", "INFO", 1, {"t": Celsius(1.5), "n": 2.5})
        assert data is not None
        alone = b.encode("ab", "INFO", 1, {"t": Celsius(1.5), "n": 2.5})
        assert alone is not None
        assert orjson.loads(alone)["meta"] == orjson.loads(data)["meta"]

    def test_long_line_capped_in_bytes(self) -> None:
        """The line text is capped by encoded bytes, not characters, with a marker."""
        text = "é" * 50_000  # 2 bytes each
        data = builder(max_line_length=1000).encode(text, "INFO", 1)
        assert data is not None
        line = orjson.loads(data)["line"]
        assert len(line.encode()) <= 1000
        assert "truncated" in line

    def test_huge_meta_replaced_by_excerpt(self) -> None:
        """A line whose meta would make it enormous keeps an excerpt of the meta."""
        data = builder().encode("x", "INFO", 1, {"blob": "y" * 2_000_000})
        assert data is not None
        assert len(data) < 64 * 1024
        meta = orjson.loads(data)["meta"]
        # The redactor cuts strings longer than the line cap before its text
        # patterns run (with a marker); what is left is small enough to ship whole.
        assert "excerpt" in meta or meta["blob"].endswith("[cut by logdna_client before redaction]")

    def test_before_send_can_rewrite_and_drop(self) -> None:
        """before_send may rewrite a line or drop it (None); a raising hook is ignored."""

        def hook(line: dict[str, Any]) -> dict[str, Any] | None:
            if "drop" in line["line"]:
                return None
            if "boom" in line["line"]:
                raise ValueError("hook bug")
            return {**line, "line": line["line"].upper()}

        b = builder(before_send=hook)
        dropped: list[int] = []
        b.on_filtered = lambda: dropped.append(1)
        kept = b.encode("keep", "INFO", 1)
        assert kept is not None
        assert "KEEP" == orjson.loads(kept)["line"]
        assert b.encode("drop me", "INFO", 1) is None
        assert [1] == dropped
        boom = b.encode("boom", "INFO", 1)
        assert boom is not None
        assert "boom" == orjson.loads(boom)["line"]


class TestRedaction:
    def test_secret_keys_redacted_at_any_depth(self) -> None:
        """Meta keys that name secrets lose their values at any depth, case-insensitively."""
        meta = {"user": "ann", "Password": "hunter2",
                "request": {"headers": {"Authorization": "Bearer x", "X-Api-Key": "k"}},
                "items": [{"session_id": "s"}], "user_ssn": "1"}  # fmt: skip
        data = builder().encode("x", "INFO", 1, meta)
        assert data is not None
        got = orjson.loads(data)["meta"]
        assert "ann" == got["user"]
        assert MARKER == got["Password"]
        assert MARKER == got["request"]["headers"]["Authorization"]
        assert MARKER == got["request"]["headers"]["X-Api-Key"]
        assert MARKER == got["items"][0]["session_id"]
        assert MARKER == got["user_ssn"]
        assert "hunter2" == meta["Password"], "the caller's dict is not mutated"

    def test_redaction_configurable(self) -> None:
        """redact= adds keys, redact=False turns the defaults off, patterns scrub text."""
        data = builder(redact=["tenant"]).encode("x", "INFO", 1, {"tenant": "t", "token": "z"})
        assert data is not None
        assert {"tenant": MARKER, "token": MARKER} == orjson.loads(data)["meta"]
        off = builder(redact=False).encode("x", "INFO", 1, {"token": "z"})
        assert off is not None
        assert {"token": "z"} == orjson.loads(off)["meta"]
        scrubbed = builder(redact_patterns=["email", "us_ssn"]).encode(
            "mail ann@example.com ssn 123-45-6789", "INFO", 1, {"note": "bob@example.org"}
        )
        assert scrubbed is not None
        line = orjson.loads(scrubbed)
        assert "example.com" not in line["line"] and "123-45-6789" not in line["line"]
        assert MARKER == line["meta"]["note"]


class TestProperties:
    @settings(max_examples=300, deadline=None)
    @given(text=st.text(), meta=st.dictionaries(st.text(max_size=10), odd_values, max_size=6),
           level=st.sampled_from(["INFO", "ERROR", "DEBUG"]))  # fmt: skip
    def test_any_input_gives_one_valid_json_line(
        self, text: str, meta: dict[str, Any], level: str
    ) -> None:
        """Arbitrary text and odd meta always encode to one valid JSON object within the caps."""
        b = builder(max_line_length=2000)
        data = b.encode(text, level, 1, meta)
        assert data is not None
        line = orjson.loads(data)
        assert isinstance(line["line"], str) and line["line"]
        assert len(line["line"].encode()) <= 2000
        assert level == line["level"]
        assert b"\n" not in data

    @settings(max_examples=300, deadline=None)
    @given(
        text=st.text(min_size=1, max_size=40),
        meta=st.dictionaries(
            st.sampled_from(["user", "token", "db_password", "x{", "ctx"]) | st.text(max_size=6),
            st.recursive(
                st.none()
                | st.integers()
                | st.text(max_size=5)
                | st.sampled_from(["{", '{"password": 1}', "/a/{id}"]),
                lambda inner: (
                    st.lists(inner, max_size=3)
                    | st.dictionaries(
                        st.sampled_from(["a", "password", "api_key"]), inner, max_size=3
                    )
                ),
                max_leaves=6,
            ),
            min_size=1,
            max_size=5,
        ),
        redact=st.sampled_from([True, False, ["user"]]),
    )
    def test_plain_is_encode_with_a_separator(
        self, text: str, meta: dict[str, Any], redact: Any
    ) -> None:
        """plain() (the fast path with meta) makes what encode() makes, secrets redacted,
        the first time it sees meta's keys and every time after."""
        b = builder(redact=redact)
        expected = b.encode(text, "INFO", 1_700_000_000_000, meta)
        assert expected is not None
        for _ in range(3):
            assert b"," + expected == b.entry(text, "INFO", 1_700_000_000_000, meta)

    def test_names_are_cut_alike_and_in_one_order(self) -> None:
        """A line's level, app and env (given per line, as Client.log takes them) are cut
        to NAME_CHARS each, by encode() and by entry()'s cached level tail alike, and
        come in FIELDS' order, the tail starting as ENTRY_LEVEL says."""
        long = "\u00e9" * (NAME_CHARS + 50)
        b = builder(app="web", env="prod")
        line = orjson.loads(b.encode("x", long, 1, app="a" * 600, env=long) or b"")
        assert (long[:NAME_CHARS], "a" * NAME_CHARS, long[:NAME_CHARS]) == (
            line["level"],
            line["app"],
            line["env"],
        )
        assert [name for name in FIELDS if name in line] == list(line)
        for _ in range(2):  # the tail made, then the tail cached
            assert b"," + (b.encode("x", long, 1) or b"") == b.entry("x", long, 1)
        assert all(tail.startswith(ENTRY_LEVEL) for tail in b.level_tails.values())

    @pytest.mark.parametrize("depth", [31, 32, 33, 200])
    def test_plain_cuts_deep_lists_as_encode_does(self, depth: int) -> None:
        """Lists nested deeper than the redaction walk goes come out of plain() as
        encode() makes them (cut), also once meta's keys are known."""
        deep: Any = "v"
        for _ in range(depth):
            deep = [deep]
        b = builder()
        meta = {"user": 1, "path": deep}
        expected = b.encode("x", "INFO", 1_700_000_000_000, meta)
        assert expected is not None
        for _ in range(3):
            assert b"," + expected == b.entry("x", "INFO", 1_700_000_000_000, meta)

    @given(st.text(), st.integers(min_value=64, max_value=500))
    def test_cap_text_respects_byte_limit(self, text: str, limit: int) -> None:
        """cap_text never exceeds the byte limit and keeps short text as it is."""
        capped = cap_text(text, limit)
        if len(text.encode("utf-8", "replace")) <= limit:
            assert text == capped
        else:
            assert len(capped.encode()) <= limit


def test_safe_str_never_raises() -> None:
    """safe_str returns a marker for objects whose __str__ raises."""
    assert "<unprintable Hostile>" == safe_str(Hostile())
    assert "nan" == safe_str(math.nan)
