"""docs/security.md on ``before_send``: "If it raises, or returns something that is not a
line dict, the line is sent as the built-in redaction left it", also when the hook had
already changed the dict it was given before it failed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from logdna_client import Client
from logdna_client._devserver import DevServer

WAIT = 10.0


def half_done_then_raise(line: dict[str, Any]) -> dict[str, Any]:
    """A hook that enriches the line in place, then fails on a later step."""
    line["meta"]["authorization"] = "Bearer raw-token-from-the-hook"
    line["meta"]["user"]["name"] = "changed"
    line["line"] = "rewritten by a hook that then failed"
    raise RuntimeError("lookup failed")


def half_done_then_bad_result(line: dict[str, Any]) -> object:
    """A hook that changes the line in place, then returns something that is not a line."""
    line["meta"]["authorization"] = "Bearer raw-token-from-the-hook"
    line["meta"]["user"]["name"] = "changed"
    line["line"] = "rewritten by a hook that returned junk"
    return True


HOOKS: dict[str, Callable[[dict[str, Any]], object]] = {
    "raises": half_done_then_raise,
    "returns-junk": half_done_then_bad_result,
}


class TestFailingHook:
    @pytest.mark.parametrize("hook", list(HOOKS.values()), ids=list(HOOKS))
    def test_the_line_ships_as_redaction_left_it(self, server: DevServer, hook: Any) -> None:
        """What ships is exactly the line without the hook: the hook's half-done changes
        (an unredacted header it added, a nested value, the text) are not shipped."""

        def meta() -> dict[str, Any]:  # a fresh one each time: the hook changes nested dicts
            return {"password": "hunter2", "user": {"name": "bob", "id": 7}}

        with Client(url=server.url, hostname="t", flush_interval=3600) as plain:
            plain.log("the original text", meta=meta())
            assert plain.flush(WAIT)
        expected = server.lines[0]
        server.clear()
        with Client(url=server.url, hostname="t", flush_interval=3600, before_send=hook) as c:
            c.log("the original text", meta=meta())
            assert c.flush(WAIT)
        got = server.lines[0]
        assert {k: v for k, v in expected.items() if k != "timestamp"} == {
            k: v for k, v in got.items() if k != "timestamp"
        }
        assert {"password": "[REDACTED]", "user": {"name": "bob", "id": 7}} == got["meta"]
