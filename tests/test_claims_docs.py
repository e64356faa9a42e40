"""Sentences of README.md and docs/ found overstated or wrong, held to what the library
does over a real socket: what ``flush()``'s True means, what a value JSON cannot encode
ships as, and the texts troubleshooting.md tells the reader to look for."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest

from logdna_client import Client, ConfigurationError
from logdna_client._config import Config
from logdna_client._devserver import DevServer
from tests._helpers_integrations import REPO_ROOT, TIMEOUT, handler_for, logger_with
from tests.helpers import in_forked_child

DOCS = REPO_ROOT / "docs"


def said(page: str) -> str:
    """The page's text with its line breaks as spaces (a sentence may wrap anywhere)."""
    return " ".join((REPO_ROOT / page).read_text().split())


class TestFlushTrue:
    """README: ``client.flush(timeout=5.0)  # True when all queued was delivered, none lost
    meanwhile``. It said "when everything accepted so far was delivered", which is not so:
    lines evicted before the call were accepted, never delivered, and flush() is True."""

    def test_earlier_drops_do_not_make_it_false(self, server: DevServer) -> None:
        """2,000 lines into a 64 KiB buffer: most are evicted before flush() is called, the
        rest arrive, and flush() is True; the loss is in stats(), as the pages now say."""
        client = Client(url=server.url, max_buffer_bytes="64KiB", overflow="drop_oldest")
        for i in range(2000):
            client.log(f"line {i} " + "x" * 100)
        evicted = client.stats()["dropped"]["buffer_full"]
        assert evicted > 1000
        assert True is client.flush(timeout=TIMEOUT)
        stats = client.stats()
        client.close()
        assert (2000, 2000 - evicted) == (stats["accepted"], stats["sent"])
        for page in ("README.md", "docs/troubleshooting.md"):
            assert "none lost meanwhile" in said(page), page
        assert "lines dropped before the call" in said("docs/stdlib.md")
        assert "lines dropped before the call" in said("docs/delivery.md")

    def test_a_line_lost_during_the_call_makes_it_false(self, server: DevServer) -> None:
        """A line the service refuses (400) while flush() waits makes it False."""
        client = Client(url=server.url, compress=False)
        server.fail_next(1, status=400)
        client.log("refused")
        assert False is client.flush(timeout=TIMEOUT)
        assert 1 == client.stats()["dropped"]["rejected"]
        client.close()


class Order:
    """A value JSON cannot encode, whose str() and repr() differ."""

    def __str__(self) -> str:
        return "order 42"

    def __repr__(self) -> str:
        return "Order(42)"


class Unprintable:
    """A value whose str() raises (its repr() works)."""

    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        return "Unprintable()"


def test_values_json_cannot_encode_ship_as_their_str(server: DevServer) -> None:
    """stdlib.md: "values that are not JSON become their `str()`"; security.md: each bad
    value degrades alone "to its `str()`, or to a marker ... when that raises";
    migration.md: "only that value degrades (to its `str()`)". The last two said `repr`."""
    handler = handler_for(server)
    with logger_with("docs.meta", handler) as log:
        log.warning("odd meta", extra={"order": Order(), "bad": Unprintable(), "n": 1})
        assert handler.client.flush(TIMEOUT)
    (line,) = server.lines
    expected = {
        "name": "docs.meta",
        "order": "order 42",
        "bad": "<unprintable Unprintable>",
        "n": 1,
    }
    assert expected == line["meta"]
    assert "values that are not JSON become their `str()`" in said("docs/stdlib.md")
    assert "degrades alone, to its `str()`, or to a marker" in said("docs/security.md")
    assert "only that value degrades (to its `str()`)" in said("docs/migration.md")


def _pattern(page: str, start: str) -> re.Pattern[str]:
    """The code span of ``page`` that begins with ``start``, its N's read as numbers."""
    found = re.search("`(" + re.escape(start) + "[^`]*)`", said(page))
    assert found is not None, start
    return re.compile(re.escape(found[1]).replace("N", r"\d+"))


def test_troubleshooting_texts_are_the_ones_shipped(server: DevServer) -> None:
    """The drop summary and the cut marker troubleshooting.md tells the reader to look
    for are what a line carries (the summary was shown as "N lines dropped (buffer
    full)"; it is "logdna_client: N lines dropped (N buffer full)")."""
    client = Client(
        url=server.url, max_buffer_bytes="64KiB", overflow="drop_newest", max_line_length=100
    )
    for i in range(2000):
        client.log(f"line {i} " + "x" * 200)
    assert client.flush(TIMEOUT)
    client.log("after the drops")
    assert client.flush(TIMEOUT)
    client.close()
    texts = [line["line"] for line in server.lines]
    summary = _pattern("docs/troubleshooting.md", "logdna_client: N lines dropped")
    assert 1 == sum(bool(summary.fullmatch(text)) for text in texts), texts[-3:]
    cut = _pattern("docs/troubleshooting.md", "[truncated by logdna_client")
    assert texts[0].startswith("line 0 ") and cut.search(texts[0])
    assert 100 == len(texts[0].encode())  # at most max_line_length bytes, as it says


def test_own_logger_is_never_shipped(server: DevServer) -> None:
    """troubleshooting.md: "Records of this logger are never shipped by our handler, so
    this cannot loop", even with our handler on the root logger and the library's
    logger shown at DEBUG."""
    handler = handler_for(server)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    logging.getLogger("logdna_client").warning("the library's own trouble")
    logging.getLogger("app").warning("the app's line")
    assert handler.client.flush(TIMEOUT)
    handler.close()
    assert ["the app's line"] == [line["line"] for line in server.lines]


def test_a_client_closed_before_the_fork_stays_closed_in_the_child(server: DevServer) -> None:
    """docs/delivery.md: "A client closed before the fork stays closed in the child": a
    line the child logs is counted as after_close and never sent, and the child starts no
    sender."""
    client = Client(url=server.url)
    client.log("from the parent")
    client.close()

    def in_child() -> dict[str, Any]:
        client.log("from the child")
        stats = client.stats()
        return {"after_close": stats["dropped"]["after_close"], "sent": stats["sent"],
                "alive": stats["sender_alive"], "flushed": client.flush(1.0)}  # fmt: skip

    seen = in_forked_child(in_child)
    assert {"after_close": 1, "sent": 0, "alive": False, "flushed": True} == seen
    assert ["from the parent"] == [line["line"] for line in server.lines]


class TestBlankKey:
    """docs/security.md: a blank key file is named in the error, and a blank ``key=`` or
    key file is that error even with the variable set (first match wins: a key given
    another way is never replaced by the environment's)."""

    REMOTE = "https://logs.example.com/logs/ingest"  # a key is needed; never contacted

    def test_blank_key_file_is_named_and_the_variable_unused(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A key file holding only whitespace: the error names it; the variable is unused."""
        monkeypatch.setenv("LOGDNA_INGESTION_KEY", "env-key")
        path = tmp_path / "logdna"
        path.write_text(" \n")
        with pytest.raises(ConfigurationError) as caught:
            Config(key_file=str(path), url=self.REMOTE)
        assert f"looked at key=, key_file='{path}')" in str(caught.value)
        assert "env-key" not in str(caught.value)
        assert "`looked at key=, key_file='/run/secrets/logdna'`" in said("docs/security.md")

    def test_blank_key_argument_with_the_variable_set(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``key=""`` (an empty template variable, say) is an error, not the variable's key."""
        monkeypatch.setenv("LOGDNA_INGESTION_KEY", "env-key")
        with pytest.raises(ConfigurationError, match="no ingestion key found"):
            Config(key="", url=self.REMOTE)
        assert "error even when `LOGDNA_INGESTION_KEY` is set" in said("docs/security.md")


def test_the_reasons_table_lists_every_drop_reason() -> None:
    """docs/delivery.md's table of ``dropped`` reasons names each reason stats() has, in
    its order, and no other: a reason added to the code and not to the page (or renamed
    in one of them) fails here."""
    from logdna_client._stats import DROP_REASONS, SPOOL_DROP_REASONS

    page = (DOCS / "delivery.md").read_text()
    table = page.split("| reason | when |", 1)[1].split("\n\n", 1)[0]
    named = re.findall(r"^\| `([a-z_]+)` \|", table, re.MULTILINE)
    assert list(DROP_REASONS + SPOOL_DROP_REASONS) == named


_UNITS = {"s": 1, "MiB": 1024 * 1024}


def test_the_batching_table_states_the_defaults() -> None:
    """docs/delivery.md's batching table gives each option's default as ``Config`` has
    it, and the per-line cost it names is the buffer's; scaling.md and migration.md
    state ``flush_interval``'s the same: a default changed in the code and not on the
    pages (or the other way) fails here."""
    from logdna_client._buffer import LINE_OVERHEAD

    config = Config(url="http://127.0.0.1:1/logs/ingest")
    page = (DOCS / "delivery.md").read_text()
    table = page.split("## Batching", 1)[1].split("\n\n", 2)[1]
    rows = re.findall(r"^\| `([a-z_]+)` \| `([^`]+)` ?(s)? \|", table, re.MULTILINE)
    assert ["flush_interval", "max_batch_bytes", "compress", "request_timeout"] == [
        name for name, _, _ in rows
    ]
    for name, value, unit in rows:
        if value in ("true", "false"):
            assert (value == "true") is getattr(config, name), name
            continue
        number, size_unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", value).groups()  # type: ignore[union-attr]
        assert float(number) * _UNITS[unit or size_unit] == getattr(config, name), name
    assert f"line's serialized bytes plus {LINE_OVERHEAD}" in said("docs/delivery.md")
    interval = f"{config.flush_interval:g}"
    assert f"`flush_interval` ({interval} s)" in said("docs/scaling.md")
    assert f"(official default 0.25, here {interval})" in said("docs/migration.md")
