"""OTLP protocol, OpenTelemetry SDK and Kubernetes metadata: costs side by side.

    .venv/bin/pip install -e '.[dev,bench]'
    .venv/bin/python benchmarks/otlp.py            # about a minute on 2 cores
    .venv/bin/python benchmarks/otlp.py --quick

Same workload and measures as benchmarks/run.py (docs/performance.md): each
client in a fresh process, on a logger with one handler and
``propagate=False``, ``log.info("request %s served in %d ms", i, i % 997)``;
a receiving server in its own process on loopback (OTLP/HTTP JSON and
protobuf at ``/v1/logs``, LogDNA bodies elsewhere).

- caller ratio: wall time per logging call over the NullHandler run's;
- client CPU per line: the process's CPU per delivered line (all threads,
  until flush says every line was delivered) minus the NullHandler run's;
- lines lost (must be 0).

Clients: ``null``; ``logdna`` (our handler, the ingest API's format);
``otlp`` (our handler, protocol="otlp"); ``otlp_k8s`` and ``logdna_k8s`` (the
same in a simulated pod: Kubernetes metadata on); ``sdk`` (the OpenTelemetry
SDK's ``LoggingHandler`` + ``BatchLogRecordProcessor`` + OTLP/HTTP exporter,
its queue raised so that it drops nothing). Then microbenchmarks of the
sender's work per line: building the LogDNA body, the OTLP body, and the
Kubernetes metadata as one meta object per line (the option not taken).
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import multiprocessing
import os
import statistics
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "otlp.json"
_ctx = multiprocessing.get_context("spawn")

POD_ENV = {
    "KUBERNETES_SERVICE_HOST": "10.0.0.1", "POD_NAME": "web-7d9f8b6c5-x2k4q",
    "POD_NAMESPACE": "shop", "NODE_NAME": "ip-10-0-3-17.ec2.internal",
    "POD_UID": "0b4a6f2e-9c1d-4e7a-8b3f-2d5c6e7f8a9b", "CONTAINER_NAME": "web",
}  # fmt: skip


# -- the receiving server ------------------------------------------------------------


def _count(path: str, content_type: str, body: bytes) -> int:
    if "protobuf" in content_type:
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
            ExportLogsServiceRequest,
        )

        req = ExportLogsServiceRequest.FromString(body)
        return sum(len(sl.log_records) for rl in req.resource_logs for sl in rl.scope_logs)
    doc = json.loads(body)
    if path == "/v1/logs":
        return sum(
            len(sl.get("logRecords", []))
            for rl in doc.get("resourceLogs", [])
            for sl in rl.get("scopeLogs", [])
        )
    return len(doc["lines"])


def server_main(conn: Any) -> None:
    lines = [0]
    requests = [0]
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if (self.headers.get("Content-Encoding") or "").lower() == "gzip":
                body = gzip.decompress(body)
            n = _count(self.path.partition("?")[0], self.headers.get("Content-Type", ""), body)
            with lock:
                lines[0] += n
                requests[0] += 1
            is_otlp = self.path.startswith("/v1/logs")
            if "protobuf" in self.headers.get("Content-Type", ""):
                answer, ctype = b"", "application/x-protobuf"
            else:
                answer, ctype = (b"{}" if is_otlp else b'{"status":"ok"}'), "application/json"
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    conn.send(httpd.server_address[1])
    while True:
        msg = conn.recv()
        if msg == "stop":
            return
        with lock:
            conn.send((lines[0], requests[0]))
            if msg == "reset":
                lines[0] = requests[0] = 0


# -- one client run ------------------------------------------------------------------


def _logger(handler: logging.Handler) -> logging.Logger:
    log = logging.getLogger("bench")
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    return log


def _setup(name: str, port: int, n: int) -> tuple[logging.Logger, Any, Any]:
    base = f"http://127.0.0.1:{port}"
    if name == "null":
        return _logger(logging.NullHandler()), lambda: None, lambda: None
    if name == "sdk":
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
        from opentelemetry.sdk.resources import Resource

        provider = LoggerProvider(resource=Resource.create({"service.name": "bench"}))
        # The default queue (2048) drops lines at this rate: raised, so that it is
        # measured delivering everything, as ours does.
        provider.add_log_record_processor(
            BatchLogRecordProcessor(
                OTLPLogExporter(endpoint=base + "/v1/logs"), max_queue_size=n + 10_000
            )
        )
        handler = LoggingHandler(level=logging.INFO, logger_provider=provider)
        return _logger(handler), lambda: provider.force_flush(60_000), provider.shutdown
    if name.endswith("_k8s"):
        os.environ.update(POD_ENV)
    from logdna_client import LogDNAHandler

    options: dict[str, Any] = {"key": "bench-key", "hostname": "bench", "app": "bench",
                               "handle_signals": False}  # fmt: skip
    if name.startswith("otlp"):
        options.update(protocol="otlp", url=base + "/v1/logs")
    else:
        options.update(url=base + "/logs/ingest")
    options["kubernetes"] = name.endswith("_k8s")
    handler = LogDNAHandler(**options)
    client = handler.client
    return _logger(handler), lambda: client.flush(60.0), handler.close


def client_main(conn: Any, name: str, port: int, n: int) -> None:
    log, flush, close = _setup(name, port, n)
    info = log.info
    for i in range(2000):  # warm up: threads, connection, caches
        info("request %s served in %d ms", i, i % 997)
    flush()
    conn.send("warm")
    conn.recv()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for i in range(n):
        info("request %s served in %d ms", i, i % 997)
    wall = time.perf_counter() - t0
    flush()
    cpu = time.process_time() - cpu0
    conn.send({"call_ns": wall / n * 1e9, "cpu_ns": cpu / n * 1e9})
    close()


def run_one(server: Any, name: str, n: int) -> dict[str, Any]:
    parent, child = _ctx.Pipe()
    proc = _ctx.Process(target=client_main, args=(child, name, server["port"], n))
    proc.start()
    assert parent.recv() == "warm"
    server["conn"].send("reset")
    server["conn"].recv()
    parent.send("go")
    result: dict[str, Any] = parent.recv()
    server["conn"].send("count")
    delivered, requests = server["conn"].recv()
    proc.join(30)
    result["lost"] = None if name == "null" else n - delivered
    result["requests"] = requests
    return result


# -- the sender's work per line ------------------------------------------------------


def micro(reps: int) -> dict[str, float]:
    import orjson

    from logdna_client import Config
    from logdna_client._buffer import join_entries
    from logdna_client._line import LineBuilder
    from logdna_client._otlp import OTLPEncoder
    from logdna_client._sender import gzip_entries

    builder = LineBuilder(Config(key="k", hostname="bench", app="bench"))
    now = int(time.time() * 1000)
    entries = [b"," + builder.encode(f"request {i} served in {i % 997} ms", "INFO", now + i)
               for i in range(2000)]  # type: ignore[operator]  # fmt: skip
    with_meta = [b"," + builder.encode(f"request {i}", "INFO", now, {"user": i, "path": "/a"})
                 for i in range(2000)]  # type: ignore[operator]  # fmt: skip
    k8s = {"k8s." + k: v for k, v in (("pod.name", POD_ENV["POD_NAME"]),
           ("namespace.name", "shop"), ("node.name", POD_ENV["NODE_NAME"]),
           ("pod.uid", POD_ENV["POD_UID"]), ("container.name", "web"))}  # fmt: skip
    plain = OTLPEncoder(app="bench", env=None, hostname="bench")
    pod = OTLPEncoder(app="bench", env=None, hostname="bench", extra=k8s)

    def as_meta(batch: list[bytes]) -> bytes:
        # The option not taken: the sender merges the metadata into every line's meta.
        out = []
        for entry in batch:
            line = orjson.loads(entry[1:])
            line["meta"] = {**line.get("meta", {}), **k8s}
            out.append(b"," + orjson.dumps(line))
        return join_entries(out)

    cases = {
        "logdna_body_ns": lambda: join_entries(entries),
        "logdna_body_gzip_ns": lambda: gzip_entries(entries),
        "otlp_body_ns": lambda: plain.encode(entries),
        "otlp_body_meta_ns": lambda: plain.encode(with_meta),
        "otlp_body_k8s_ns": lambda: pod.encode(entries),
        "k8s_as_meta_ns": lambda: as_meta(entries),
    }
    out: dict[str, float] = {}
    for label, fn in cases.items():
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) / len(entries) * 1e9)
        out[label] = statistics.median(times)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer lines and repetitions")
    args = parser.parse_args(argv)
    n, reps = (5_000, 1) if args.quick else (20_000, 3)
    conn, child = _ctx.Pipe()
    proc = _ctx.Process(target=server_main, args=(child,), daemon=True)
    proc.start()
    server = {"conn": conn, "port": conn.recv()}
    names = ["null", "logdna", "otlp", "logdna_k8s", "otlp_k8s", "sdk"]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for _ in range(reps):  # interleaved: a noisy moment spreads over every client
        for name in names:
            runs[name].append(run_one(server, name, n))
    conn.send("stop")
    table: dict[str, dict[str, Any]] = {}
    for name, results in runs.items():
        table[name] = {
            "call_ns": statistics.median(r["call_ns"] for r in results),
            "cpu_ns": statistics.median(r["cpu_ns"] for r in results),
            "lost": max((r["lost"] or 0) for r in results) if name != "null" else None,
            "requests": statistics.median(r["requests"] for r in results),
        }
    floor = table["null"]
    for row in table.values():
        row["caller_ratio"] = row["call_ns"] / floor["call_ns"]
        row["client_cpu_ns"] = row["cpu_ns"] - floor["cpu_ns"]
    print(f"{n} lines per run, median of {reps}; client CPU = CPU per line minus NullHandler's")
    print(f"{'client':12} {'call ns':>8} {'ratio':>6} {'CPU ns':>8} {'client CPU ns':>14} "
          f"{'lost':>5} {'requests':>8}")  # fmt: skip
    for name, row in table.items():
        print(f"{name:12} {row['call_ns']:8.0f} {row['caller_ratio']:6.2f} {row['cpu_ns']:8.0f} "
              f"{row['client_cpu_ns']:14.0f} {row['lost'] if row['lost'] is not None else '-':>5} "
              f"{row['requests']:8.0f}")  # fmt: skip
    sdk, otlp, logdna = (table[k]["client_cpu_ns"] for k in ("sdk", "otlp", "logdna"))
    ratios = {
        "sdk_over_otlp_client_cpu": sdk / otlp,
        "otlp_over_logdna_client_cpu": otlp / logdna,
        "k8s_client_cpu_ns_logdna": table["logdna_k8s"]["client_cpu_ns"] - logdna,
        "k8s_client_cpu_ns_otlp": table["otlp_k8s"]["client_cpu_ns"] - otlp,
    }
    print(f"SDK client CPU / ours (otlp): {ratios['sdk_over_otlp_client_cpu']:.1f}x")
    print(f"ours otlp / ours logdna client CPU: {ratios['otlp_over_logdna_client_cpu']:.2f}x")
    print(f"Kubernetes metadata, client CPU per line (run to run noise is a few 100 ns): "
          f"logdna (tags) {ratios['k8s_client_cpu_ns_logdna']:+.0f} ns, "
          f"otlp (resource) {ratios['k8s_client_cpu_ns_otlp']:+.0f} ns")  # fmt: skip
    sender = micro(reps=7 if not args.quick else 3)
    print("sender work per line (ns, median of batches of 2000):")
    for label, value in sender.items():
        print(f"  {label:22} {value:8.0f}")
    print(f"  OTLP conversion over the LogDNA body: "
          f"+{sender['otlp_body_ns'] - sender['logdna_body_ns']:.0f} ns per line; "
          f"Kubernetes metadata as meta per line would add "
          f"{sender['k8s_as_meta_ns'] - sender['logdna_body_ns']:.0f} ns, as tags 0")  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "python": sys.version.split()[0], "lines_per_run": n, "reps": reps,
        "clients": table, "ratios": ratios, "sender_per_line_ns": sender,
    }, indent=1) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
