"""Review of the OTLP structured bodies (a dict or list message as the record's body):
a ``before_send`` hook written for text lines, an empty dict or list, a line whose meta
is cut, and structlog events whose trace keys add no traceback to the text."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest

from logdna_client import Client, Config, LogDNAHandler
from logdna_client._buffer import SEPARATOR
from logdna_client.structlog import LogDNAProcessor
from logdna_client.testing import capture_lines
from tests._otlp_server import Server
from tests.helpers import library_reports
from tests.test_otlp import py, records
from tests.test_otlp_environment import _OTEL

# docs/security.md's before_send example, as it is written there: for text lines.
NAME_RE = re.compile(r"\b(?:Dr|Mr|Mrs|Ms)\. [A-Z][a-z]+")


def scrub(line: dict[str, Any]) -> dict[str, Any] | None:
    if line.get("meta", {}).get("contains_phi"):
        return None
    line["line"] = NAME_RE.sub("<name>", line["line"])
    return line


@pytest.fixture
def otel_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No OTel or LOGDNA_ variable set but those a test sets."""
    for name in (*_OTEL, "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def reports() -> Iterator[list[str]]:
    """What the library reports through its own logger while the test runs."""
    with library_reports(logging.LogRecord.getMessage) as said:
        yield said


def logger_for(handler: LogDNAHandler, name: str) -> logging.Logger:
    log = logging.getLogger(name)
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.INFO)
    return log


#: A quick OTLP client's options (a real server's URL added).
QUICK: dict[str, Any] = {
    "key": "k", "protocol": "otlp", "kubernetes": False, "handle_signals": False,
    "flush_interval": 0.05, "retry_max_backoff": 0.2,
}  # fmt: skip


def otlp_handler(url: str, **options: Any) -> LogDNAHandler:
    return LogDNAHandler(url=url, **QUICK, **options)


def shipped(message: Any, hook: Any) -> list[dict[str, Any]]:
    """The lines a protocol="otlp" handler with ``hook`` as before_send ships of
    ``logging.info(message)``."""
    with capture_lines() as lines:
        handler = otlp_handler("http://127.0.0.1:9/v1/logs", before_send=hook)
        try:
            logger_for(handler, "tests.review_otlp2.hooked").info(message)
        finally:
            handler.close()
    return lines


class TestHooksForText:
    def test_the_documented_scrub_hook_still_scrubs_a_dict_message(
        self, otlp: Server, reports: list[str]
    ) -> None:
        """docs/security.md's hook (``NAME_RE.sub(..., line["line"])``), with
        protocol="otlp", over a real socket: a dict message reaches it as the text it
        was before structured bodies (the hook raised on the dict, and the line shipped
        as redaction left it, the name in it), and is scrubbed; a hook that drops lines
        still drops. Before: body {"seen_by": "Dr. Smith"}, and "before_send raised"."""
        handler = otlp_handler(otlp.url, before_send=scrub)
        log = logger_for(handler, "tests.review_otlp2.scrub")
        try:
            log.warning({"seen_by": "Dr. Smith"})
            log.warning({"chart": "Dr. Jones"}, extra={"contains_phi": True})
            log.warning("seen by Dr. Smith")
            assert handler.client.flush(timeout=30)
        finally:
            handler.close()
        bodies = [py(record.body) for _, record in records(otlp)]
        assert ["{'seen_by': '<name>'}", "seen by <name>"] == bodies
        assert 1 == handler.client.stats()["filtered"]
        assert [] == [said for said in reports if "before_send" in said]

    def test_a_hook_for_dicts_keeps_the_dict(self) -> None:
        """A hook that reads the dict gets it, and what it returns ships."""

        def tag(line: dict[str, Any]) -> dict[str, Any]:
            if isinstance(line["line"], dict):
                line["line"] = {**line["line"], "seen": True}
            return line

        lines = shipped({"order": 1}, tag)
        assert [{"order": 1, "seen": True}] == [line["line"] for line in lines]

    def test_a_hook_that_fails_on_the_text_too_is_reported_once_per_line(
        self, reports: list[str]
    ) -> None:
        """A hook that fails on the dict and on the text too: the line ships as redaction
        left it, as its text (what the hook was last given), reported once."""

        def broken(line: dict[str, Any]) -> dict[str, Any]:
            raise ValueError("no")

        lines = shipped({"order": 2}, broken)
        assert ["{'order': 2}"] == [line["line"] for line in lines]
        assert 1 == len([said for said in reports if "before_send raised" in said])


class TestEmpty:
    @pytest.mark.parametrize("message", [{}, []])
    def test_an_empty_dict_or_list_passes_a_hook(self, message: Any, reports: list[str]) -> None:
        """logging.info({}) (or []) through a hook that returns the line: no report that
        the hook returned 'not a line dict', and what the hook added ships. Before: the
        empty body failed the hook's result check, the hook's change was dropped and
        the library warned."""

        def mark(line: dict[str, Any]) -> dict[str, Any]:
            line["hooked"] = True
            return line

        lines = shipped(message, mark)
        assert [(message, True)] == [(line["line"], line.get("hooked")) for line in lines]
        assert [] == [said for said in reports if "before_send" in said]


class TestCutMeta:
    def test_a_structured_body_stays_structured_when_meta_is_cut(self, otlp: Server) -> None:
        """A dict message with meta over the line's size: the meta becomes its excerpt,
        the body stays the dict (it is within max_line_length). Before: the body became
        its JSON text."""
        handler = otlp_handler(otlp.url)
        log = logger_for(handler, "tests.review_otlp2.cut")
        try:
            log.info({"order": 42}, extra={f"k{i}": "v" * 30 for i in range(3000)})
            assert handler.client.flush(timeout=30)
        finally:
            handler.close()
        (got,) = records(otlp)
        assert {"order": 42} == py(got[1].body)
        attributes = {kv.key: py(kv.value) for kv in got[1].attributes}
        assert "excerpt" in attributes and "logdna_client_truncated" in attributes


class TestStructlogTraceKeys:
    def test_trace_keys_that_add_no_traceback_keep_the_body(self, otlp: Server) -> None:
        """exc_info=False, and a structured ``exception`` (dict_tracebacks: it ships as
        meta, not in the text): the dict event is still the body. A traceback in the
        text keeps it text. Before: any of those keys made the body its text."""
        structlog = pytest.importorskip("structlog")
        processor = LogDNAProcessor(url=otlp.url, **QUICK)
        log = structlog.wrap_logger(
            None, processors=[processor, structlog.processors.JSONRenderer()]
        )
        try:
            log.info({"order": 1}, exc_info=False)
            log.info({"order": 2}, exception=[{"exc_type": "ValueError"}])
            log.info({"order": 3}, stack_info="")
            log.info({"order": 4}, exception="Traceback (most recent call last):\n  x\nE: y")
            assert processor.client.flush(timeout=30)
        finally:
            processor.client.close()
        bodies = [py(record.body) for _, record in records(otlp)]
        assert [{"order": 1}, {"order": 2}, {"order": 3}] == bodies[:3]
        assert "{'order': 4}" == bodies[3]


class TestCost:
    def test_a_message_too_long_for_a_body_costs_only_its_text(self) -> None:
        """A list message of 20,000 items (JSON of 2 bytes an item at least: surely over
        max_line_length) ships as its text without being redacted and serialized as a
        body first, on the logging call: its items' __str__, which only that walk
        calls, is never called. Before: 20,000 calls and more (a flat 200,000-key dict
        took 0.5 s against 0.03 s as text), all to find it too long."""
        calls = []

        class Item:
            def __repr__(self) -> str:
                return "i"

            def __str__(self) -> str:
                calls.append(1)
                return "i"

        lines = shipped([Item() for _ in range(20_000)], None)
        assert [] == calls
        assert [("[" + "i, " * 19_999 + "i]")[:100]] == [line["line"][:100] for line in lines]


class TestReplace:
    def test_a_new_url_leaves_the_otel_settings_behind(
        self, otel_env: pytest.MonkeyPatch, tmp_path: Any
    ) -> None:
        """Config.replace(url=...) on a config whose endpoint came from the OTel variables:
        their timeout, compression and CA are not the new URL's (as their headers are
        not, and as Config(url=...) does not read them). Before: 0.5 s, no gzip and the
        Collector's CA went with the new URL. With the URL kept they all stay, and
        options given stay given."""
        ca = tmp_path / "collector-ca.pem"
        ca.write_text("")
        otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
        otel_env.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "500")
        otel_env.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "none")
        otel_env.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(ca))
        config = Config(protocol="otlp", handle_signals=False)
        otel = (0.5, False, str(ca))
        assert otel == (config.request_timeout, config.compress, config.verify)
        kept = config.replace(level="INFO")
        assert otel == (kept.request_timeout, kept.compress, kept.verify)
        moved = config.replace(url="https://otlp.example.com/v1/logs")
        assert (15.0, True, True) == (moved.request_timeout, moved.compress, moved.verify)
        moved = kept.replace(url="https://otlp.example.com/v1/logs")
        assert (15.0, True, True) == (moved.request_timeout, moved.compress, moved.verify)
        again = moved.replace(level="INFO")
        assert (15.0, True, True) == (again.request_timeout, again.compress, again.verify)
        given = Config(protocol="otlp", handle_signals=False, request_timeout=2, compress=True)
        moved = given.replace(url="https://otlp.example.com/v1/logs")
        assert (2.0, True, True) == (moved.request_timeout, moved.compress, moved.verify)


class TestServiceLimit:
    def test_a_body_over_the_services_line_limit_is_its_text_cut(self, otlp: Server) -> None:
        """With max_line_length above the service's 16 KiB, a dict message whose JSON is
        over 16 KiB (within max_line_length) is its text, cut at the service's limit as
        any text is ("whatever the route", docs/scaling.md); one within 16 KiB is still
        the body. Before: a 30 KB kvlistValue body went out whole."""
        handler = otlp_handler(otlp.url, max_line_length=65536)
        log = logger_for(handler, "tests.review_otlp2.limit")
        try:
            log.info({"big": "x" * 30_000})
            log.info({"small": "x" * 15_000})
            assert handler.client.flush(timeout=30)
        finally:
            handler.close()
        big, small = [py(record.body) for _, record in records(otlp)]
        assert isinstance(big, str) and big.startswith("{'big': 'xxx")
        assert len(big.encode()) < 16_500
        assert {"small": "x" * 15_000} == small
        assert 1 == handler.client.stats()["cut"]["line"]

    def test_a_hooks_body_over_the_services_line_limit_is_its_text_cut(self, otlp: Server) -> None:
        """A before_send hook's dict as the line whose JSON is over 16 KiB: cut at the
        sender as a text is, as its JSON text (the hook's own keys are past the builder's
        checks). Before: a 30 KB kvlistValue body went out whole, uncounted."""

        def enrich(line: dict[str, Any]) -> dict[str, Any]:
            line["line"] = {"text": line["line"], "blob": "y" * 30_000}
            return line

        handler = otlp_handler(otlp.url, before_send=enrich)
        log = logger_for(handler, "tests.review_otlp2.hook_limit")
        try:
            log.info("one")
            assert handler.client.flush(timeout=30)
        finally:
            handler.close()
        (body,) = [py(record.body) for _, record in records(otlp)]
        assert isinstance(body, str) and body.startswith('{"text":"one","blob":"yyy')
        assert len(body.encode()) < 16_500
        assert 1 == handler.client.stats()["cut"]["line"]


class TestDeepAndLong:
    def test_the_lines_around_a_deep_and_long_line_arrive(self, otlp: Server) -> None:
        """A buffer entry with meta nested 1,000 levels deep and over the service's 32 KiB
        (another writer's spool line), between two lines, over a real socket: all three
        arrive, the deep one's meta as its excerpt (measured cut at 32 levels, as the
        builder cuts it: orjson refuses 255). Before: measuring it raised, the batch
        failed to encode and all three were dropped as 'error'."""
        client = Client(url=otlp.url, **QUICK)
        deep = b'{"k":' * 1000 + b"1" + b"}" * 1000
        pad = b"y" * 40_000
        client.log("before")
        client.put_entry(
            SEPARATOR
            + b'{"line":"deep","timestamp":1,"level":"INFO","meta":{"d":%b,"pad":"%b"}}'
            % (deep, pad)
        )
        client.log("after")
        assert client.flush(timeout=30)
        client.close()
        assert 0 == sum(client.stats()["dropped"].values())
        got = {line["line"]: line.get("meta") for line in otlp.lines}
        assert ["before", "deep", "after"] == list(got)
        assert "meta of 40213 bytes cut to an excerpt" == got["deep"]["logdna_client_truncated"]
