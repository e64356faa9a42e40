"""docs/migration.md's "Options, side by side", walked against the official-form
``LogDNAHandler(key, options)``: every official name it lists is taken, the renamed
ones land on the option the table names, the ignored ones change nothing, and no
official option the code knows is missing from the table."""

from __future__ import annotations

import re

import pytest

from logdna_client import LogDNAHandler
from logdna_client._config import Config
from logdna_client._official import IGNORED, RENAMED
from logdna_client._options import OPTION_NAMES
from tests._helpers_integrations import REPO_ROOT

PAGE = (REPO_ROOT / "docs" / "migration.md").read_text()
TABLE = PAGE.split("## Options, side by side", 1)[1].split("\n## ", 1)[0]
ROW = re.compile(r"^\| ([^|]+) \| ([^|]+) \|", re.MULTILINE)
TICKED = re.compile(r"`(\w+)`")
LOCAL = "http://127.0.0.1:9/logs/ingest"  # loopback: never contacted here


def _rows() -> dict[str, str]:
    """Official option name -> what the table says it is here ("(ignored)" or a name)."""
    out: dict[str, str] = {}
    for official, here in ROW.findall(TABLE):
        if official.startswith(("official option", "---")):
            continue
        for name in TICKED.findall(official):
            out[name] = here.strip().strip("`")
    return out


ROWS = _rows()


def test_table_names_every_official_option_the_code_knows() -> None:
    """The ignored and renamed names of _official.py are each a row, marked as such."""
    assert sorted(IGNORED) == sorted(n for n, here in ROWS.items() if here == "(ignored)")
    renamed = {n: here for n, here in ROWS.items() if here not in ("(ignored)", n)}
    assert dict(RENAMED) == renamed


@pytest.mark.parametrize("official", sorted(ROWS))
def test_each_official_option_is_taken(official: str) -> None:
    """Each row's official option is accepted in the official form, and lands on the
    option the table names (or, ignored, changes nothing)."""
    here = ROWS[official]
    value: object = {
        "key": None, "app": "shop", "env": "staging", "hostname": "web-1", "ip": "10.0.0.1",
        "mac": "C0:FF:EE:C0:FF:EE", "tags": "a,b", "url": "http://127.0.0.1:8/logs/ingest",
        "index_meta": False, "request_timeout": 7, "flush_interval": 0.25,
        "flush_limit": 100_000, "buf_retention_limit": 8_000_000,
    }.get(official, 3)  # fmt: skip
    if official == "key":  # the first argument
        handler = LogDNAHandler("official-key", {"url": LOCAL})
        config = handler.client.config
        handler.close()
        assert config.secret is not None and "official-key" == config.secret.reveal()
        return
    options = {"url": LOCAL, official: value} if official != "url" else {"url": value}
    handler = LogDNAHandler("k", options)
    config = handler.client.config
    handler.close()
    if here == "(ignored)":
        assert Config(key="k", url=LOCAL) == config
        assert 0 == handler.level  # the official handler ships every level too
        return
    assert here in OPTION_NAMES
    expected = Config(**{"key": "k", "url": LOCAL, here: value})
    assert getattr(expected, here) == getattr(config, here)
    assert getattr(Config(key="k", url=LOCAL), here) != getattr(config, here)
