"""Meta keys that pose as plain ones: what is judged is the text a key ships as,
never what its own ``__hash__`` and ``__eq__`` answer."""

from __future__ import annotations

from typing import Any

import pytest

from logdna_client import Client, LogDNAHandler
from logdna_client._redact import MARKER, Redactor
from tests.helpers import make_logger
from tests.test_redact import RecordingTransport, lines_of, shipped, wire  # noqa: F401


class PosingStr(str):
    """A str subclass whose hash and equality say "user" while it ships as its text."""

    def __hash__(self) -> int:
        return hash("user")

    def __eq__(self, other: object) -> bool:
        return other == "user" or str.__eq__(self, other)


class PosingObject:
    """Not a str at all: hashes and compares as "user", ships as "password"."""

    def __hash__(self) -> int:
        return hash("user")

    def __eq__(self, other: object) -> bool:
        return other == "user"

    def __str__(self) -> str:
        return "password"


POSERS = [PosingStr("password"), PosingObject()]


def _warmed() -> Redactor:
    """A redactor that has found "user" plain (as after the first line with it)."""
    redactor = Redactor()
    redactor.meta({"user": "bob"})
    return redactor


class TestPosingKeys:
    @pytest.mark.parametrize("key", POSERS, ids=type)
    def test_redactor_meta(self, key: Any) -> None:
        """Flat meta whose keys all look known-plain to a set lookup is still judged
        by each key's text (it shipped {"password": "hunter2"})."""
        redacted = _warmed().meta({key: "hunter2"})

        assert [MARKER] == list(redacted.values())

    @pytest.mark.parametrize("key", POSERS, ids=type)
    def test_client_log(self, key: Any, wire: tuple[Client, RecordingTransport]) -> None:  # noqa: F811
        """Client.log(meta=): the line builder's JSON shortcut asks the same question."""
        client, transport = wire
        client.log("warm", meta={"user": "bob"})
        client.log("posing", meta={key: "hunter2"})

        lines = lines_of(shipped(client, transport))

        assert {"password": MARKER} == lines[-1]["meta"]

    def test_stdlib_extra(self, wire: tuple[Client, RecordingTransport]) -> None:  # noqa: F811
        """A str subclass key in extra= (the record's __dict__) through the handler."""
        client, transport = wire
        log = make_logger("tests.redact_keys", LogDNAHandler(client=client))
        log.info("warm", extra={"user": "bob"})
        log.info("posing", extra={PosingStr("password"): "hunter2"})

        lines = lines_of(shipped(client, transport))

        assert MARKER == lines[-1]["meta"]["password"]
