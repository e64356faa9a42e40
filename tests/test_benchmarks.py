"""The ablation scripts still fit the code they patch.

``benchmarks/ablate_hot_path.py`` and ``benchmarks/ablate_speedups.py`` measure
the handler with one duty or one C part switched off by patching the source
text; a change to that text leaves them unable to run, which nobody notices
until the figures are needed (it happened). These tests build every variant
they would measure, without timing anything.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from logdna_client import LogDNAHandler

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_duty_of_ablate_hot_path_is_still_in_the_handler() -> None:
    ablate = _script("ablate_hot_path")
    options: dict[str, Any] = dict(key="k", url="http://127.0.0.1:9/logs/ingest", hostname="h")
    for duty in ablate.DUTIES:
        handler = ablate._without(LogDNAHandler, duty)(**options)
        try:
            record = logging.LogRecord("bench", logging.INFO, __file__, 1, "m %s", ("x",), None)
            assert handler.handle(record) is True
        finally:
            handler.client.close(timeout=0)
    ablate._without(LogDNAHandler, *ablate.DUTIES)(**options).client.close(timeout=0)


def test_every_part_of_ablate_speedups_is_still_in_the_c_file() -> None:
    ablate = _script("ablate_speedups")
    source = ablate.SOURCE.read_text()
    variants = ablate._variants(source)
    assert len(variants) == len(ablate.PARTS) + 1
    assert all(v != source for label, v in variants.items() if label != "as shipped")


def test_ablate_speedups_notices_a_part_it_can_no_longer_find() -> None:
    ablate = _script("ablate_speedups")
    source = ablate.SOURCE.read_text().replace(
        "key_known_plain(self, kind", "key_is_plain(self, kind"
    )
    with pytest.raises(SystemExit, match="out of date"):
        ablate._variants(source)
