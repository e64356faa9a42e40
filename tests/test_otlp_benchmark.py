"""benchmarks/otlp_encode.py, the source of docs/scaling.md's encoding figures, still runs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "otlp_encode.py"


def test_it_measures_every_workload_with_bodies_a_collector_takes() -> None:
    """Each workload's OTLP body parses as an ExportLogsServiceRequest (the script checks),
    and the byte figures docs/scaling.md quotes are what it finds."""
    spec = importlib.util.spec_from_file_location("_bench_otlp_encode", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    results = module.measure(200, 1)
    assert ["plain", "meta", "extra", "k8s", "loggers"] == list(results)
    raw = {name: r["otlp_bytes"] / r["logdna_bytes"] for name, r in results.items()}
    assert 1.45 < raw["plain"] < 1.65  # "1.55 times (plain lines)"
    assert 2.05 < raw["extra"] < 2.3  # "to 2.15 times (five meta fields)"
