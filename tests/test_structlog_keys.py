"""Tests for the structlog mapping's object keys: their text is made once per event."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from logdna_client import _native
from logdna_client.structlog import LogDNAProcessor
from tests.test_speedups import UNREACHABLE


@pytest.fixture(params=["c", "python"])
def processor(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., LogDNAProcessor]]:
    """Makes processors (with the options given) on the C call, which hands uncommon
    events to ``_process``, or on the pure Python path."""
    made: list[LogDNAProcessor] = []

    def make(**options: Any) -> LogDNAProcessor:
        if request.param == "c" and _native.speedups is None:
            pytest.skip("the C extension is not built")
        if request.param == "python":
            monkeypatch.setenv("LOGDNA_CLIENT_PURE_PYTHON", "1")
        p = LogDNAProcessor(
            key="k", url=UNREACHABLE, hostname="t", app="a", env="e", flush_interval=3600,
            **options,
        )  # fmt: skip
        monkeypatch.delenv("LOGDNA_CLIENT_PURE_PYTHON", raising=False)
        made.append(p)
        return p

    yield make
    for p in made:
        p.client.close(timeout=0)


def queued(p: LogDNAProcessor) -> list[dict[str, Any]]:
    """The lines ``p`` queued so far, as dicts."""
    return [json.loads(entry[1:]) for entry in p.client._buffer.entries]


class Fickle:
    """A key whose text is "user" the first time, "password" every time after."""

    def __init__(self) -> None:
        self.calls = 0

    def __str__(self) -> str:
        self.calls += 1
        return "user" if self.calls == 1 else "password"


class TestObjectKeys:
    @pytest.mark.parametrize("redact", [True, False])
    def test_key_text_made_once_without_a_message(
        self, processor: Callable[..., LogDNAProcessor], redact: bool
    ) -> None:
        """An event without a message shows its pairs as the text: an object key's
        str() runs once, and the text and the meta name it the same."""
        p = processor(redact=redact)
        key = Fickle()
        event = {key: "blue"}

        assert event is p(None, "info", event)

        [line] = queued(p)
        assert 1 == key.calls
        assert "user=blue" == line["line"]
        assert {"user": "blue"} == line["meta"]

    def test_key_text_made_once_with_a_message(
        self, processor: Callable[..., LogDNAProcessor]
    ) -> None:
        """With a message, an object key's str() runs once too."""
        p = processor()
        key = Fickle()

        p(None, "info", {"event": "hi", key: "blue"})

        [line] = queued(p)
        assert 1 == key.calls
        assert {"user": "blue"} == line["meta"]
