"""docs/configuration.md, walked row by row against ``Config``: each option's environment
variable, default, unit, range and accepted strings is what the code does, so the table
cannot drift from the code again (a new option, a changed default or bound fails here)."""

from __future__ import annotations

import re
import socket
import sys
from dataclasses import fields
from typing import Any

import pytest

from logdna_client import ConfigurationError
from logdna_client._config import DEFAULT_URL, ENV_VARS, RECORD_META_ATTRS, Config
from logdna_client._redact import PRESET_GROUPS, PRESET_PATTERNS
from tests._helpers_integrations import REPO_ROOT

PAGE = (REPO_ROOT / "docs" / "configuration.md").read_text()
LOCAL = "http://127.0.0.1:9/logs/ingest"  # loopback: no key needed; never contacted here
ROW = re.compile(r"^\| `(\w+)` \|([^|]*)\|([^|]*)\|([^|]*)\|(.*)\|$", re.MULTILINE)
TICKED = re.compile(r"`([^`]*)`")


def _rows() -> dict[str, tuple[str, str, str, str]]:
    return {m[1]: (m[2].strip(), m[3].strip(), m[4].strip(), m[5]) for m in ROW.finditer(PAGE)}


ROWS = _rows()
YEAR = 365 * 86400.0
QUANTITY = {"": 1, "KiB": 1024, "MiB": 1024**2, "years": YEAR}


def _config(name: str, value: object = None, **more: Any) -> Config:
    """A Config with ``name`` given (unless None), on a loopback URL (or the default URL,
    with a key, for the ``url`` row itself)."""
    base: dict[str, Any] = {"url": LOCAL} if name != "url" else {"key": "doc-key"}
    if value is not None:
        base[name] = value
    return Config(**{**base, **more})


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The defaults are read with no LOGDNA_ variable set."""
    for name in ENV_VARS.values():
        monkeypatch.delenv(name, raising=False)


def test_every_option_has_one_row() -> None:
    """The table names exactly the options Config takes, each once."""
    names = [m[1] for m in ROW.finditer(PAGE)]
    assert sorted(f.name for f in fields(Config)) == sorted(names)


@pytest.mark.parametrize("name", sorted(ROWS))
def test_env_var_column(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The env var column is the variable the code reads for the option (or none), and
    setting it fills the option as the same text given as an argument would."""
    column = TICKED.findall(ROWS[name][0])
    assert ([ENV_VARS[name]] if name in ENV_VARS else []) == column
    if not column:
        return
    sample = {
        "key": "doc-key", "url": "http://127.0.0.1:1/ingest", "hostname": "doc-host",
        "tags": "a, b", "app": "doc-app", "env": "doc-env", "handle_signals": "false",
        "spool_dir": "/tmp/doc-spool", "record_meta": "module", "allow_insecure": "true",
    }[name]  # fmt: skip
    expected = getattr(_config(name, sample), name)
    assert expected != getattr(_config(name), name)  # the sample is not the default
    monkeypatch.setenv(column[0], sample)
    from_env = Config(key="doc-key") if name == "url" else Config(url=LOCAL)
    assert expected == getattr(from_env, name)


@pytest.mark.parametrize("name", sorted(ROWS))
def test_default_column(name: str) -> None:
    """The default column, given as text, is what an option left out gets."""
    text = TICKED.sub(r"\1", ROWS[name][1])
    default = getattr(_config(name), name)
    if text.startswith("none"):
        assert default in (None, ()), default
    elif text == "socket.gethostname()":
        assert socket.gethostname()[:80] == default
    else:
        stated = text.split(" (")[0]  # "NOTSET (0)", "604800 (7 days)"
        assert default == getattr(_config(name, stated), name), text
    if name == "url":
        assert DEFAULT_URL == default


def _quantity(text: str) -> float:
    number, _, unit = text.strip().partition(" ")
    return float(number) * QUANTITY[unit]


def _bounds(unit: str) -> tuple[float, float | None] | None:
    found = re.search(r"\((?:≥ ([^)]+)|([^)]+?) to ([^)]+))\)", unit)
    if found is None:
        return None
    if found[1]:
        return _quantity(found[1]), None
    return _quantity(found[2]), _quantity(found[3])


BOUNDED = [name for name in sorted(ROWS) if _bounds(ROWS[name][2])]


def test_the_bounded_options() -> None:
    """Every duration and size option states its range (the walk below checks them)."""
    assert {
        "flush_interval", "max_batch_bytes", "max_buffer_bytes", "block_timeout",
        "request_timeout", "shutdown_timeout", "retry_max_backoff", "max_line_length",
        "max_spool_bytes", "max_spool_age",
    } == set(BOUNDED)  # fmt: skip


@pytest.mark.parametrize("name", BOUNDED)
def test_unit_column_range(name: str) -> None:
    """The range in the unit column is the one the code takes: both ends accepted, a step
    beyond either refused naming the option."""
    unit = ROWS[name][2]
    bounds = _bounds(unit)
    assert bounds is not None
    low, high = bounds
    sizes = unit.startswith("bytes")
    assert unit.startswith(("bytes", "seconds")), unit
    step = 1 if sizes else 0.001

    def value(x: float) -> object:
        return int(x) if sizes else x

    assert value(low) == getattr(_config(name, value(low)), name)
    with pytest.raises(ConfigurationError, match=f"^{name}: "):
        _config(name, value(low - step))
    if high is not None:
        assert value(high) == getattr(_config(name, value(high)), name)
        with pytest.raises(ConfigurationError, match=f"^{name}: "):
            _config(name, value(high + step))


@pytest.mark.parametrize("name", [n for n in sorted(ROWS) if "(≤ 80)" in ROWS[n][2]])
def test_text_length_cap(name: str) -> None:
    """Text "(≤ 80)": 80 characters are taken, 81 refused."""
    assert "x" * 80 == getattr(_config(name, "x" * 80), name)
    with pytest.raises(ConfigurationError, match=f"^{name}: "):
        _config(name, "x" * 81)


CHOICES = [name for name in sorted(ROWS) if re.fullmatch(r"`\w+`(, `\w+`)+", ROWS[name][2])]


def test_the_options_with_choices() -> None:
    """The options whose unit column lists their accepted strings."""
    assert {"overflow", "spool_sync", "protocol", "auth"} == set(CHOICES)


@pytest.mark.parametrize("name", CHOICES)
def test_unit_column_choices(name: str) -> None:
    """The listed strings are exactly those the code accepts (its refusal lists them)."""
    listed = TICKED.findall(ROWS[name][2])
    # (An OTLP endpoint's path, /v1/logs, is refused with protocol="logdna".)
    extra = {"url": "http://127.0.0.1:4318/"} if name == "protocol" else {}
    for choice in listed:
        assert choice == getattr(_config(name, choice.upper(), **extra), name)
    with pytest.raises(ConfigurationError) as caught:
        _config(name, "not-a-choice")
    assert f"{name}: expected one of {', '.join(listed)}," in str(caught.value)


BOOLEAN_FORMS = [("true", True), ("false", False), ("yes", True), ("no", False),
                 ("on", True), ("off", False), ("1", True), ("0", False)]  # fmt: skip
BOOLEANS = [name for name in sorted(ROWS) if "boolean" in ROWS[name][2]]


def test_the_boolean_options() -> None:
    """The options whose unit column says boolean."""
    assert {"handle_signals", "compress", "verify", "index_meta", "redact",
            "allow_insecure", "kubernetes"} == set(BOOLEANS)  # fmt: skip


@pytest.mark.parametrize("name", BOOLEANS)
def test_boolean_forms_and_blank(name: str) -> None:
    """The page's boolean spellings all work; blank text is the default, never false."""
    for text, meaning in BOOLEAN_FORMS:
        assert meaning == getattr(_config(name, text.upper()), name), text
    assert getattr(_config(name), name) == getattr(_config(name, "  "), name)


class TestIntro:
    """The paragraph above the table: how strings are read."""

    def test_durations(self) -> None:
        """Durations as "5", "2.5s", "500ms", "1m" or "1h"."""
        got = [_config("shutdown_timeout", t).shutdown_timeout for t in ("5", "2.5s", "500ms")]
        assert [5.0, 2.5, 0.5] == got
        assert 60.0 == _config("flush_interval", "1m").flush_interval
        assert 3600.0 == _config("flush_interval", "1h").flush_interval

    def test_sizes(self) -> None:
        """Sizes: K/M/G are powers of 1000, Ki/Mi/Gi of 1024."""
        got = [_config("max_buffer_bytes", t).max_buffer_bytes
               for t in ("1048576", "512KiB", "2MB", "1G", "1Gi", "3M", "3Mi", "100K")]  # fmt: skip
        assert [1048576, 524288, 2_000_000, 10**9, 2**30, 3_000_000, 3 * 2**20, 100_000] == got

    def test_lists(self) -> None:
        """Lists as comma-separated text."""
        assert ("web", "eu-west") == _config("tags", "web, eu-west").tags

    def test_bad_value_names_the_option(self) -> None:
        """A bad value raises ConfigurationError (a ValueError) naming the option."""
        with pytest.raises(ValueError, match=r"^flush_interval: "):
            _config("flush_interval", "soon")


def test_record_meta_names() -> None:
    """The record_meta row lists exactly the LogRecord attributes the option takes."""
    # (the row's other code spans: `extra=`, `""`, `ConfigurationError`)
    listed = {t for t in TICKED.findall(ROWS["record_meta"][3]) if re.fullmatch(r"[a-z]\w*", t)}
    attrs = set(RECORD_META_ATTRS)
    if sys.version_info < (3, 12):
        listed.discard("taskName")
    assert attrs == listed
    assert () == _config("record_meta", "").record_meta


def test_redact_pattern_presets() -> None:
    """The presets the redact_patterns row names are presets (each accepted as one)."""
    listed = TICKED.findall(ROWS["redact_patterns"][3])
    assert listed == [p for p in listed if p in PRESET_PATTERNS or p in PRESET_GROUPS]
    assert tuple(listed) == _config("redact_patterns", ",".join(listed)).redact_patterns


def test_spool_dir_blank_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """spool_dir "" turns the spool off even when LOGDNA_SPOOL_DIR is set."""
    monkeypatch.setenv("LOGDNA_SPOOL_DIR", "/tmp/doc-spool")
    assert "/tmp/doc-spool" == Config(url=LOCAL).spool_dir
    assert None is Config(url=LOCAL, spool_dir="").spool_dir


def test_explicit_argument_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    """An explicit argument wins over the environment variable, for every env var."""
    for name, var in ENV_VARS.items():
        monkeypatch.setenv(var, "http://127.0.0.1:2/x" if name == "url" else "module")
    got = Config(url=LOCAL, key="k", hostname="h", tags="t", app="a", env="e",
                 handle_signals=True, spool_dir="/tmp/s", record_meta="lineno",
                 allow_insecure=False)  # fmt: skip
    assert (LOCAL, "k", "h", ("t",), "a", "e", True, "/tmp/s", ("lineno",), False) == (
        got.url, got.secret.reveal() if got.secret else None, got.hostname, got.tags,
        got.app, got.env, got.handle_signals, got.spool_dir, got.record_meta,
        got.allow_insecure,
    )  # fmt: skip
