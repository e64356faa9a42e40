"""The structlog processor's mapping, checked on both paths: the C call and pure Python."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog

from logdna_client import LogDNAHandler, _native
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


json_renderer = structlog.processors.JSONRenderer()


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


def app_call(log: Any) -> Any:
    """The application's logging call: where a stack must end."""
    return log.info("x", stack_info=True)


class TestStack:
    def test_stack_info_stack_ends_at_the_call(
        self, processor: Callable[..., LogDNAProcessor]
    ) -> None:
        """``stack_info=True`` ships the stack that structlog's StackInfoRenderer makes:
        up to the application's call, without structlog's frames or ours."""
        p = processor(redact=False)  # (pytest's frames hold "session=session")
        log = structlog.wrap_logger(
            structlog.ReturnLogger(),
            processors=[p, structlog.processors.StackInfoRenderer(), json_renderer],
        )

        rendered = json.loads(app_call(log))

        [line] = queued(p)
        assert f"x\n{rendered['stack']}" == line["line"]
        assert "in app_call\n" in line["line"].splitlines(keepends=True)[-2]

    def test_stack_info_through_the_stdlib_handler_ends_at_the_call(self) -> None:
        """An event handed to a LogDNAHandler by ``wrap_for_formatter`` with
        ``stack_info=True``: the stack ends at the application's call too, without
        logging's, structlog's or the handler's frames."""
        handler = LogDNAHandler(key="k", url=UNREACHABLE, hostname="t", flush_interval=3600)
        logger = logging.getLogger("t.structlog.paths.stack")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        log = structlog.wrap_logger(
            logger,
            processors=[structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
            wrapper_class=structlog.stdlib.BoundLogger,
        )
        try:
            app_call(log)
            [line] = [json.loads(entry[1:]) for entry in handler.client._buffer.entries]
        finally:
            logger.removeHandler(handler)
            handler.client.close(timeout=0)
            handler.close()

        last = line["line"].splitlines()[-2:]
        assert "in app_call" in last[0]
        assert 'return log.info("x", stack_info=True)' == last[1].strip()


class TestAfterARenderer:
    """The processor put after the renderer ships what the renderer made."""

    def test_rendered_bytes_ship_as_their_text(
        self, processor: Callable[..., LogDNAProcessor]
    ) -> None:
        """A renderer that makes bytes (``JSONRenderer(serializer=orjson.dumps)`` for a
        BytesLogger): the line is their text, not the bytes' repr."""
        p = processor()
        rendered = '{"event":"héllo","user":"bob"}'.encode()

        assert rendered is p(None, "info", rendered)

        [line] = queued(p)
        assert '{"event":"héllo","user":"bob"}' == line["line"]

    @pytest.mark.parametrize(("method", "level"), [("notice", "NOTICE"), ("warn", "WARNING")])
    def test_level_from_the_method_name_as_for_an_event_dict(
        self, processor: Callable[..., LogDNAProcessor], method: str, level: str
    ) -> None:
        """The level of rendered text follows the method-name rule of an event dict: a
        custom method (a BoundLogger's ``notice``) names its level."""
        p = processor()

        p(None, method, "rendered")
        p(None, method, {"event": "dict"})

        assert [level, level] == [line["level"] for line in queued(p)]
