"""What the OTLP encoding costs the sender, per line: time and bytes on the wire.

    .venv/bin/python benchmarks/otlp_encode.py            # a few seconds
    .venv/bin/python benchmarks/otlp_encode.py --quick

The sender's own work only (no client, no server): for batches of lines as the
line builder makes them, the LogDNA body against the OTLP/HTTP JSON body, both
as sent (gzip at the sender's level) and before gzip. Workloads: ``plain``
(``"request 1234 served in 56 ms"``), ``meta`` (two meta fields), ``extra``
(five, as ``extra=`` gives them), ``k8s`` (plain lines, with the Kubernetes
metadata in the resource), and ``loggers`` (the logger's name as meta, from 8
loggers in turn: a scope per change of logger). docs/scaling.md's encoding figures come from here;
benchmarks/otlp.py measures whole clients.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from logdna_client import Config
from logdna_client._buffer import join_entries
from logdna_client._line import LineBuilder
from logdna_client._otlp import OTLPEncoder
from logdna_client._sender import _gzip, gzip_entries

K8S = {
    "k8s.pod.name": "checkout-7d9f8b6c5-x2k4q", "k8s.namespace.name": "shop",
    "k8s.node.name": "ip-10-0-3-17.ec2.internal", "k8s.pod.uid": "0b4a7c1e-11ef-4d2b-9f3a",
    "k8s.container.name": "web", "container.id": "3f4b1c2d" * 8,
}  # fmt: skip


def workloads(n: int) -> dict[str, list[bytes]]:
    """Buffer entries (separator, then the line) for each workload."""
    builder = LineBuilder(Config(key="k", hostname="bench", app="checkout", env="production"))
    now = int(time.time() * 1000)

    def entries(meta: Callable[[int], dict[str, Any] | None]) -> list[bytes]:
        out = []
        for i in range(n):
            line = builder.encode(f"request {i} served in {i % 997} ms", "INFO", now + i, meta(i))
            assert line is not None
            out.append(b"," + line)
        return out

    plain = entries(lambda i: None)
    return {
        "plain": plain,
        "meta": entries(lambda i: {"user": i, "path": "/cart"}),
        "extra": entries(
            lambda i: {
                "user": i,
                "path": "/cart",
                "status": 200,
                "ms": i % 997 / 10,
                "cached": i % 2 == 0,
            }
        ),
        "k8s": plain,
        # The stdlib handler's default meta, from 8 loggers in turn: each change of
        # logger is a scopeLogs entry of its own (the worst case for scopes).
        "loggers": entries(lambda i: {"name": f"shop.module{i % 8}"}),
    }


def per_line_ns(fn: Callable[[], object], lines: int, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) / lines * 1e9)
    return statistics.median(times)


def otlp_sent(encoder: OTLPEncoder, entries: list[bytes]) -> bytes:
    """The OTLP body as the sender posts it: built, then gzipped."""
    return _gzip(encoder.encode(entries))


def measure(n: int, reps: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for name, entries in workloads(n).items():
        encoder = OTLPEncoder(
            app="checkout", env="production", hostname="bench",
            extra=K8S if name == "k8s" else None,
        )  # fmt: skip
        logdna, otlp = join_entries(entries), encoder.encode(entries)
        json_format.Parse(otlp, ExportLogsServiceRequest())  # a body a collector takes
        out[name] = {
            "logdna_ns": per_line_ns(partial(gzip_entries, entries), n, reps),
            "otlp_ns": per_line_ns(partial(otlp_sent, encoder, entries), n, reps),
            "otlp_encode_ns": per_line_ns(partial(encoder.encode, entries), n, reps),
            "logdna_bytes": len(logdna) / n,
            "otlp_bytes": len(otlp) / n,
            "logdna_gzip_bytes": len(gzip_entries(entries)) / n,
            "otlp_gzip_bytes": len(_gzip(otlp)) / n,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer lines and repetitions")
    args = parser.parse_args(argv)
    n, reps = (500, 3) if args.quick else (5_000, 9)
    results = measure(n, reps)
    print(f"per line, batches of {n} lines, median of {reps}; 'sent' = built and gzipped")
    print(
        f"{'workload':9} {'LogDNA sent ns':>14} {'OTLP sent ns':>12} {'OTLP build ns':>13} "
        f"{'LogDNA B':>8} {'OTLP B':>7} {'x':>5} {'LogDNA gz B':>11} {'OTLP gz B':>9} {'x':>5}"
    )
    for name, r in results.items():
        raw, packed = (
            r["otlp_bytes"] / r["logdna_bytes"],
            r["otlp_gzip_bytes"] / r["logdna_gzip_bytes"],
        )
        print(
            f"{name:9} {r['logdna_ns']:14.0f} {r['otlp_ns']:12.0f} {r['otlp_encode_ns']:13.0f} "
            f"{r['logdna_bytes']:8.0f} {r['otlp_bytes']:7.0f} {raw:5.2f} "
            f"{r['logdna_gzip_bytes']:11.1f} {r['otlp_gzip_bytes']:9.1f} {packed:5.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
