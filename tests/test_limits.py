"""Tests for _limits: the service's published limits, each cut marked and counted."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import pytest

from logdna_client import Client
from logdna_client._devserver import DevServer
from logdna_client._limits import (
    APP_CHARS,
    LEVEL_CHARS,
    LINE_BYTES,
    META_BYTES,
    NAME_CHARS,
    enforce_entries,
    enforce_line,
)
from tests._otlp_server import running
from tests.helpers import UNREACHABLE


def within_limits(line: dict[str, Any]) -> bool:
    """What the service takes without 400 "Message size too large"."""
    meta = line.get("meta")
    return (
        len(line["line"].encode()) <= LINE_BYTES
        and (meta is None or len(orjson.dumps(meta)) <= META_BYTES)
        and len(line.get("app") or "") <= APP_CHARS
        and len(line.get("level") or "") <= LEVEL_CHARS
    )


def ship(server: DevServer, lines: list[tuple[str, dict[str, Any] | None]],
         **options: Any) -> tuple[list[dict[str, Any]], dict[str, int]]:  # fmt: skip
    client = Client(key="k", url=server.url, hostname="h", app="api", handle_signals=False,
                    flush_interval=3600, **options)  # fmt: skip
    for text, meta in lines:
        client.log(text, meta=meta)
    assert client.flush(timeout=10)
    client.close()
    return server.lines, client.stats()["cut"]


class TestLine:
    def test_longer_than_the_service_takes_is_cut_on_the_sender(self, server: DevServer) -> None:
        """With max_line_length above the limit, the sender cuts the text to 16 KiB, marked."""
        text = "é" * 15_000  # 30,000 bytes, within max_line_length
        (line,), cut = ship(server, [(text, None)], max_line_length=64 * 1024)
        assert within_limits(line)
        assert line["line"].endswith("… [truncated by logdna_client: 30000 bytes in all]")
        assert {"line": 1, "meta": 0, "app": 0, "level": 0} == cut

    def test_the_builders_cut_is_counted(self, server: DevServer) -> None:
        """By default the builder cuts at the same limit; the sender counts that cut."""
        (line,), cut = ship(server, [("x" * 100_000, None)])
        assert within_limits(line)
        assert line["line"].endswith("[truncated by logdna_client: 100000 bytes in all]")
        assert 1 == cut["line"]

    def test_a_second_cut_keeps_the_first_size(self) -> None:
        """A line cut before (another max_line_length) and again says its original size."""
        cuts: Counter[str] = Counter()
        line = {"line": "y" * 20_000 + "… [truncated by logdna_client: 99999 bytes in all]"}
        assert enforce_line(line, cuts)
        assert line["line"].endswith("99999 bytes in all]")
        assert len(line["line"].encode()) <= LINE_BYTES


class TestMeta:
    def test_meta_over_32_kib_becomes_a_marked_excerpt(self, server: DevServer) -> None:
        """Meta over the limit is replaced by an excerpt that says so; the text stays."""
        # Several strings: each one alone is cut to the line cap before redaction.
        (line,), cut = ship(server, [("big meta", _wide_meta(40_000))])
        assert within_limits(line)
        assert "big meta" == line["line"]
        assert line["meta"]["logdna_client_truncated"].startswith("meta of ")
        assert line["meta"]["excerpt"].startswith('{"blob0":"zzz')
        assert 1 == cut["meta"]

    @pytest.mark.parametrize("index_meta", [True, False])
    @pytest.mark.parametrize("protocol", ["logdna", "otlp"])
    def test_the_builders_excerpt_is_counted(
        self, server: DevServer, protocol: str, index_meta: bool
    ) -> None:
        """Meta so big the builder already replaced it (the line is small again) counts too."""
        meta = _wide_meta(60_000)
        if protocol == "logdna":
            (line,), cut = ship(server, [("huge meta", meta)], index_meta=index_meta)
        else:
            with running() as otlp:
                client = Client(key="k", url=otlp.url, protocol="otlp", handle_signals=False,
                                index_meta=index_meta)  # fmt: skip
                client.log("huge meta", meta=meta)
                assert client.flush(timeout=10)
                cut = client.stats()["cut"]
                client.close()
            (line,) = otlp.lines
        assert "logdna_client_truncated" in str(line["meta"])  # an object, or a string
        assert {"line": 0, "meta": 1, "app": 0, "level": 0} == cut

    def test_meta_as_a_string_too(self, server: DevServer) -> None:
        """index_meta=False ships meta as a string: over the limit, an excerpt string."""
        (line,), cut = ship(server, [("m", _wide_meta(40_000))], index_meta=False)
        assert within_limits(line)
        assert "logdna_client_truncated" in orjson.loads(line["meta"])
        assert 1 == cut["meta"]


def _wide_meta(total: int) -> dict[str, str]:
    """Meta of about ``total`` bytes in strings of 8,000 (each under the line cap)."""
    return {f"blob{i}": "z" * 8000 for i in range(total // 8000)}


def _long_names(line: dict[str, Any]) -> dict[str, Any]:
    return dict(line, app="a" * 600, level="L" * 100)


class TestNames:
    def test_app_and_level_from_before_send_are_cut(self, server: DevServer) -> None:
        """A before_send hook can set anything: app and level are cut to the limits, marked."""
        (line,), cut = ship(server, [("named", None)], before_send=_long_names)
        assert within_limits(line)
        assert (APP_CHARS, "…") == (len(line["app"]), line["app"][-1])
        assert (LEVEL_CHARS, "…") == (len(line["level"]), line["level"][-1])
        assert {"line": 0, "meta": 0, "app": 1, "level": 1} == cut

    def test_names_the_builder_made_are_never_cut_again(self) -> None:
        """The builder cuts app and level names (NAME_CHARS) within the service's caps:
        the sender finds nothing to cut in a line the builder made, however long."""
        c = Client(key="k", url=UNREACHABLE, hostname="t", flush_interval=3600)
        try:
            c.log("named", level="L" * 600, app="a" * 600)
            (data,) = c._buffer.snapshot()
            line, cut = orjson.loads(data), Counter[str]()
            assert not enforce_line(line, cut)
            assert not cut
            assert 0 < len(line["level"]) <= LEVEL_CHARS
            assert 0 < len(line["app"]) <= APP_CHARS
        finally:
            c._buffer.discard_all("shutdown")
            c.close(timeout=0)

    def test_every_path_cuts_a_long_level_name_alike(self) -> None:
        """The stdlib handler, the structlog processor and Client.log cut a long level
        name at the builder's one cap (NAME_CHARS), to the same text."""
        import logging

        from logdna_client import LogDNAHandler
        from logdna_client.structlog import LogDNAProcessor
        from logdna_client.testing import capture_lines

        long = "V" * 300
        client = Client(url=UNREACHABLE, hostname="t")
        handler = LogDNAHandler(client=client)
        proc = LogDNAProcessor(client=client)
        record = logging.LogRecord("app", logging.INFO, __file__, 1, "via stdlib", None, None)
        record.levelname = long
        try:
            with capture_lines() as lines:
                handler.handle(record)
                proc(None, "info", {"event": "via structlog", "level": long})
                client.log("via Client.log", level=long)
        finally:
            client.close(timeout=0)
        assert 3 == len(lines)
        assert {long[:NAME_CHARS]} == {line["level"] for line in lines}


class TestCounting:
    def test_lines_within_limits_pass_untouched(self) -> None:
        """No line over a limit: the very same list comes back, nothing counted."""
        entries = [b"," + orjson.dumps({"line": "x" * 1000, "meta": {"a": 1}}) for _ in range(10)]
        cuts: Counter[str] = Counter()
        assert entries is enforce_entries(entries, cuts)
        assert not cuts

    def test_a_retried_batch_is_counted_once(self, server: DevServer) -> None:
        """The cut is counted when the line is delivered, not at every attempt."""
        server.fail_next(2, 503)
        _, cut = ship(server, [("q" * 20_000, None)], max_line_length=64 * 1024,
                      retry_max_backoff=0.1)  # fmt: skip
        assert 3 == server.request_count
        assert 1 == cut["line"]

    @pytest.mark.parametrize("compress", [True, False])
    def test_otlp_bodies_are_cut_the_same_way(self, compress: bool) -> None:
        """The OTLP encoder applies the same limits to the records it builds."""
        with running() as otlp:
            client = Client(key="k", url=otlp.url, protocol="otlp", handle_signals=False,
                            max_line_length=64 * 1024, compress=compress)  # fmt: skip
            client.log("w" * 20_000, meta={"blob": "z" * 40_000})
            assert client.flush(timeout=10)
            cut = client.stats()["cut"]
            client.close()
        (line,) = otlp.lines
        assert within_limits(line)
        assert (1, 1) == (cut["line"], cut["meta"])


@pytest.mark.usefixtures("handle_path")
class TestMetaStringCutEveryTime:
    @pytest.mark.parametrize("source", ["handler", "extra", "structlog", "client"])
    def test_a_long_meta_string_is_cut_on_every_line(self, source: str) -> None:
        """A meta string past ``max_line_length`` + 256 characters is cut, with the
        marker, on every line: only the first line with a set of keys was cut, and
        later ones (their keys known, nothing in them to redact) shipped it whole."""
        import logging

        from logdna_client import LogDNAHandler
        from logdna_client.structlog import LogDNAProcessor
        from logdna_client.testing import capture_lines

        options: dict[str, Any] = {"url": UNREACHABLE, "max_line_length": 1000}
        with capture_lines() as lines:
            if source in ("handler", "extra"):
                handler = LogDNAHandler(record_meta="" if source == "extra" else "name", **options)
                log = logging.getLogger(f"t.limits.cut.{source}")
                log.addHandler(handler)
                log.propagate = False
                try:
                    for i in range(3):
                        log.warning("body", extra={"body": "abcdefghij" * 500 + str(i)})
                finally:
                    log.removeHandler(handler)
            elif source == "structlog":
                processor = LogDNAProcessor(**options)
                for i in range(3):
                    processor(None, "info", {"event": "body", "body": "abcdefghij" * 500 + str(i)})
            else:
                client = Client(**options)
                for i in range(3):
                    client.log("body", meta={"body": "abcdefghij" * 500 + str(i)})
        bodies = [line["meta"]["body"] for line in lines]
        assert 3 == len(bodies)
        for body in bodies:
            assert body.endswith("[cut by logdna_client before redaction]")
            assert body.startswith("abcdefghij" * 100)
            assert len(body) < 1000 + 256 + 50
