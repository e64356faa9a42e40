"""Benchmark logdna_client against the floor and the alternatives, side by side.

    .venv/bin/python benchmarks/run.py            # about 3 minutes on 2 cores
    .venv/bin/python benchmarks/run.py --quick    # under 30 seconds, rougher

Starts a local ingest server (``logdna_client._devserver.DevServer``) in its
own process, then runs every client in a fresh process on the same workloads,
repeated and interleaved, and prints a table of ratios against the
``logging.NullHandler`` floor and the official ``logdna`` client. Writes
``benchmarks/results/latest.json`` and ``docs/performance.png``. The method is
described in docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _harness as harness

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "latest.json"
PLOT = ROOT / "docs" / "performance.png"
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- benchmark:begin -->", "<!-- benchmark:end -->"

LABELS = {
    "null": "logging.NullHandler (floor)",
    "queue": "logging QueueHandler+Listener",
    "logdna": "logdna 1.18.12 (official)",
    "ours": "logdna_client LogDNAHandler",
    "ours_python": "  the same, Python path only",
    "ours_spool": "  the same, disk spool on",
    "structlog_floor": "structlog, no processor (floor)",
    "structlog_ours": "logdna_client LogDNAProcessor",
    "ours_baseline": "  the same at the --baseline commit",
}
#: The floor each client's caller time and CPU are compared with.
FLOOR = {"structlog_floor": "structlog_floor", "structlog_ours": "structlog_floor"}

_ctx = multiprocessing.get_context("spawn")


class Server:
    """The DevServer in its own process."""

    def __init__(self) -> None:
        self.conn, child = _ctx.Pipe()
        self.proc = _ctx.Process(target=harness.server_main, args=(child,), daemon=True)
        self.proc.start()
        self.url: str = self.conn.recv()

    def ask(self, *cmd: Any) -> Any:
        self.conn.send(cmd)
        return self.conn.recv()

    def count(self) -> int:
        return int(self.ask("count")[0])

    def stop(self) -> None:
        try:
            self.conn.send(("stop",))
        except OSError:
            pass
        self.proc.join(5)


def _wait_lines(server: Server, target: int, stall: float, limit: float) -> int:
    """Poll until the server holds ``target`` lines, or none arrived for ``stall`` s."""
    deadline = time.monotonic() + limit
    last = server.count()
    last_change = time.monotonic()
    while last < target and time.monotonic() < deadline:
        time.sleep(0.005)
        now = server.count()
        if now != last:
            last, last_change = now, time.monotonic()
        elif time.monotonic() - last_change > stall:
            break
    return last


def run_one(server: Server, name: str, workload: str, n: int) -> dict[str, Any] | None:
    """One client, one workload, one fresh process; None when the client is missing."""
    conn, child = _ctx.Pipe()
    proc = _ctx.Process(
        target=harness.client_main, args=(child, name, workload, n, server.url), daemon=True
    )
    delivers = name in harness.DELIVERING
    start_count, _ = server.ask("count")
    proc.start()
    try:
        kind, payload = conn.recv()
        if kind == "skip":
            return {"skipped": payload}
        warm = payload
        if delivers:
            _wait_lines(server, start_count + warm, stall=1.0, limit=30)
        base, base_requests = server.ask("count")
        conn.send("go")
        kind, info = conn.recv()
        n = info["n"]
        got = base
        if delivers:
            got = _wait_lines(server, base + n, stall=1.0, limit=120)
        if got < base + n and delivers:
            conn.send("close")
            conn.recv()
            got = _wait_lines(server, base + n, stall=1.0, limit=60)
        conn.send("done")
        kind, result = conn.recv()
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
    end_count, end_requests = server.ask("count")
    # Lines that came after the measured window (close() at the end) still count as delivered.
    result["delivered"] = end_count - base if delivers else 0
    result["delivered_in_window"] = got - base if delivers else 0
    result["lost"] = (n - result["delivered"]) if delivers else None
    records = server.ask("records", end_requests - base_requests)
    result["requests"] = len(records)
    result["requests_truncated"] = end_requests - base_requests > len(records)
    result["connections"] = len({r[1] for r in records})
    result["wire_bytes"] = sum(r[0] for r in records)
    result["http_errors"] = sum(1 for r in records if r[2] != 200)
    statuses: dict[str, int] = {}
    for r in records:
        statuses[str(r[2])] = statuses.get(str(r[2]), 0) + 1
    result["http_statuses"] = statuses
    ok = [r for r in records if r[2] == 200 and r[3]]
    if delivers and ok:
        elapsed = max(r[4] for r in ok) - info["wall0"]
        result["delivery_s"] = elapsed
        result["lines_per_s"] = result["delivered_in_window"] / elapsed if elapsed > 0 else None
    return result


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """Per-run figures from the raw batch timings and counters."""
    per_call = sorted(t / harness.BATCH for t in result.pop("batch_ns"))
    n = result["n"]
    result["call_median_ns"] = statistics.median(per_call)
    result["call_p99_ns"] = per_call[min(len(per_call) - 1, int(len(per_call) * 0.99))]
    result["call_mean_ns"] = result["loop_wall_s"] * 1e9 / n * result["threads"]
    result["cpu_per_logged_line_ns"] = result["cpu_s"] * 1e9 / n
    result["cpu_per_delivered_line_ns"] = (
        result["cpu_s"] * 1e9 / result["delivered_in_window"]
        if result.get("delivered_in_window")
        else None
    )
    return result


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Best (lowest) of the repetitions for costs, worst for losses; all reps kept."""
    keys_min = ("call_median_ns", "call_p99_ns", "call_mean_ns", "cpu_per_logged_line_ns",
                "cpu_per_delivered_line_ns", "peak_rss_delta_kib", "delivery_s")  # fmt: skip
    out: dict[str, Any] = {"reps": len(runs)}
    for key in keys_min:
        values = [r[key] for r in runs if r.get(key) is not None]
        out[key] = min(values) if values else None
        out[key + "_median"] = statistics.median(values) if values else None
    for key in ("lines_per_s",):
        values = [r[key] for r in runs if r.get(key) is not None]
        out[key] = max(values) if values else None
    for key in ("lost", "requests", "connections", "wire_bytes", "http_errors",
                "page_faults_per_call"):  # fmt: skip
        values = [r[key] for r in runs if r.get(key) is not None]
        out[key] = max(values) if values else None
    out["n"] = runs[0]["n"]
    out["closed_in_window"] = any(r.get("closed_in_window") for r in runs)
    out["runs"] = runs
    return out


def derive(table: dict[str, dict[str, Any]]) -> None:
    """Ratios against the floor and the official client, per workload."""
    for row in table.values():
        for key in ("caller_ratio", "caller_ratio_mean", "client_cpu_per_line_ns", "vs_official"):
            row[key] = None
    for name, row in table.items():
        floor = table.get(FLOOR.get(name, "null"))
        if floor is None:
            continue
        row["caller_ratio"] = row["call_median_ns"] / floor["call_median_ns"]
        row["caller_ratio_mean"] = row["call_mean_ns"] / floor["call_mean_ns"]
        if name in harness.DELIVERING and row["cpu_per_delivered_line_ns"] is not None:
            row["client_cpu_per_line_ns"] = (
                row["cpu_per_delivered_line_ns"] - floor["cpu_per_logged_line_ns"]
            )
        elif name not in harness.DELIVERING:
            row["client_cpu_per_line_ns"] = (
                row["cpu_per_logged_line_ns"] - floor["cpu_per_logged_line_ns"]
            )
    official = table.get("logdna")
    if official is None or not official.get("client_cpu_per_line_ns"):
        return
    for row in table.values():
        mine = row.get("client_cpu_per_line_ns")
        if mine and mine > 0:
            row["vs_official"] = official["client_cpu_per_line_ns"] / mine


def _fmt(value: Any, scale: float = 1.0, digits: int = 0, suffix: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float | int):
        return f"{value / scale:,.{digits}f}{suffix}"
    return str(value)


COLUMNS = [
    ("client", 31),
    ("median ns", 9),
    ("p99 ns", 8),
    ("caller x", 8),
    ("mean ns", 8),
    ("mean x", 6),
    ("CPU/line ns", 11),
    ("CPU med", 7),
    ("client CPU", 10),
    ("vs logdna", 9),
    ("lines/s", 9),
    ("lost", 6),
    ("reqs", 5),
    ("conns", 5),
    ("wire KB", 8),
    ("RSS MB", 6),
]


def row_cells(name: str, row: dict[str, Any]) -> list[str]:
    cpu = row["cpu_per_delivered_line_ns"] if name in harness.DELIVERING else row[
        "cpu_per_logged_line_ns"]  # fmt: skip
    delivers = name in harness.DELIVERING
    cpu_median = row[("cpu_per_delivered_line_ns" if delivers else "cpu_per_logged_line_ns")
                     + "_median"]  # fmt: skip
    return [
        LABELS[name],
        _fmt(row["call_median_ns"]),
        _fmt(row["call_p99_ns"]),
        _fmt(row["caller_ratio"], digits=2, suffix="x"),
        _fmt(row["call_mean_ns"]),
        _fmt(row["caller_ratio_mean"], digits=2, suffix="x"),
        _fmt(cpu),
        _fmt(cpu_median),
        _fmt(row["client_cpu_per_line_ns"]),
        _fmt(row["vs_official"], digits=1, suffix="x") if delivers else "",
        _fmt(row["lines_per_s"]) if delivers else "",
        _fmt(row["lost"]) if delivers else "",
        _fmt(row["requests"]) if delivers else "",
        _fmt(row["connections"]) if delivers else "",
        _fmt(row["wire_bytes"], scale=1024) if delivers else "",
        _fmt(row["peak_rss_delta_kib"], scale=1024, digits=1),
    ]


def print_table(results: dict[str, dict[str, dict[str, Any]]]) -> None:
    for workload, table in results.items():
        n = next(iter(table.values()))["n"]
        print(f"\n== {workload}: {n:,} calls ({WORKLOAD_TEXT[workload]})")
        print("  ".join(f"{h:>{w}}" if i else f"{h:<{w}}" for i, (h, w) in enumerate(COLUMNS)))
        for name, row in table.items():
            cells = row_cells(name, row)
            pairs = enumerate(zip(cells, COLUMNS, strict=True))
            print("  ".join(f"{c:>{w}}" if i else f"{c:<{w}}" for i, (c, (_, w)) in pairs))


def markdown_table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    lines = []
    for workload, table in results.items():
        n = next(iter(table.values()))["n"]
        lines.append(f"\n**{workload}**: {n:,} calls, {WORKLOAD_TEXT[workload]}\n")
        lines.append("| " + " | ".join(h for h, _ in COLUMNS) + " |")
        lines.append("|" + "|".join(":--" if i == 0 else "--:" for i in range(len(COLUMNS))) + "|")
        for name, row in table.items():
            lines.append("| " + " | ".join(row_cells(name, row)) + " |")
    return "\n".join(lines) + "\n"


WORKLOAD_TEXT = {
    "plain": 'log.info("request %s served in %d ms", i, i % 997), 1 thread',
    "extra": "the same with five extra= fields (structlog: five keyword arguments), 1 thread",
    "threads4": "the plain call from 4 application threads at once",
}


SHORT = {
    "null": "NullHandler\n(floor)",
    "queue": "QueueHandler\n+Listener",
    "logdna": "logdna 1.18.12\n(official)",
    "ours": "logdna_client\nLogDNAHandler",
    "ours_python": "the same,\nPython path",
    "ours_spool": "the same,\nspool on",
    "ours_baseline": "the same,\nbaseline",
    "structlog_floor": "structlog\n(floor)",
    "structlog_ours": "logdna_client\nLogDNAProcessor",
}


def plot(results: dict[str, dict[str, dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = list(results)
    names = [n for n in harness.CLIENTS if any(n in results[w] for w in workloads)]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 5.5))
    width = 0.8 / len(workloads)
    for j, workload in enumerate(workloads):
        table = results[workload]
        xs = [i + (j - (len(workloads) - 1) / 2) * width for i in range(len(names))]
        calls, cpus = [], []
        for n in names:
            row = table.get(n)
            calls.append(row["call_median_ns"] / 1000 if row else 0)
            cpu = None
            if row is not None:
                cpu = (row["cpu_per_delivered_line_ns"] if n in harness.DELIVERING
                       else row["cpu_per_logged_line_ns"])  # fmt: skip
            cpus.append(cpu / 1000 if cpu else 0)
        for ax, values in ((ax1, calls), (ax2, cpus)):
            bars = ax.bar(xs, values, width, label=workload)
            ax.bar_label(bars, fmt="%.1f", fontsize=6, padding=1)
    for ax, title in (
        (ax1, "Time per logging call in the app thread (median, µs)"),
        (ax2, "Process CPU per line, all threads, until delivered (µs)"),
    ):
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([SHORT[n] for n in names], fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    n = next(iter(results[workloads[0]].values()))["n"]
    fig.suptitle(
        f"logdna_client benchmark: {n:,} calls per run, best of the repetitions; lower is "
        "better. The floors already pay for the LogRecord.",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def memory_runs(n: int) -> list[dict[str, Any]]:
    out = []
    for workload in ("plain", "extra"):
        conn, child = _ctx.Pipe()
        proc = _ctx.Process(target=harness.memory_main, args=(child, workload, n), daemon=True)
        proc.start()
        try:
            out.append(conn.recv())
        finally:
            proc.join(30)
    return out


def _c_extension() -> bool:
    """Whether this install has the handler's C extension (``ours`` runs it)."""
    from logdna_client import _native

    return _native.speedups is not None


def _git_commit() -> str | None:
    """HEAD, marked when the library's files differ from it (others may be editing)."""
    try:
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "logdna_client"], cwd=ROOT, capture_output=True,
            text=True, check=True,
        ).stdout.strip()  # fmt: skip
        return _git_head() + (" + uncommitted changes in logdna_client/" if dirty else "")
    except Exception:
        return None


def _git_head() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
            check=True,
        ).stdout.strip()  # fmt: skip
    except Exception:
        return "unknown"


def prepare_baseline(rev: str) -> Path:
    """The package as it was at ``rev``, with its C extension built, in a cache folder."""
    commit = subprocess.run(
        ["git", "rev-parse", "--verify", rev + "^{commit}"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    folder = ROOT / "build" / f"baseline-{commit[:12]}"
    if not (folder / "logdna_client" / "__init__.py").exists():
        folder.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", commit], cwd=ROOT, check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
        # Its extension, built as an install builds it (in an isolated build with the
        # setuptools its pyproject asks for; the venv's own may be too old for it),
        # then put beside its sources. Optional there too.
        built = folder / "_built"
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(built),
             str(folder)],
            check=False, capture_output=True,
        )  # fmt: skip
        for extension in built.glob("logdna_client/_speedups*"):
            shutil.copy(extension, folder / "logdna_client" / extension.name)
    print(f"baseline {rev} ({commit[:12]}) from {folder.relative_to(ROOT)}", flush=True)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=None, help="calls per run (default 50000)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per client (5)")
    parser.add_argument("--quick", action="store_true", help="fewer lines and repetitions")
    parser.add_argument(
        "--clients", default=",".join(c for c in harness.CLIENTS if c not in harness.ON_REQUEST)
    )
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="also run the handler as it was at this git commit, in the same run",
    )
    parser.add_argument("--workloads", default=",".join(harness.WORKLOADS))
    parser.add_argument("--json", type=Path, default=RESULTS, help="where to write results")
    parser.add_argument("--plot", type=Path, default=PLOT, help="where to write the PNG")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument(
        "--docs",
        choices=("auto", "yes", "no"),
        default="auto",
        help="rewrite the results block of docs/performance.md (auto: unless --quick or filtered)",
    )
    args = parser.parse_args(argv)
    n = args.lines or (10_000 if args.quick else 50_000)
    reps = args.reps or (1 if args.quick else 5)
    clients = [c for c in args.clients.split(",") if c]
    workloads = [w for w in args.workloads.split(",") if w]
    for c in clients:
        if c not in harness.CLIENTS:
            parser.error(f"unknown client {c!r}; choose from {', '.join(harness.CLIENTS)}")
    for w in workloads:
        if w not in harness.WORKLOADS:
            parser.error(f"unknown workload {w!r}; choose from {', '.join(harness.WORKLOADS)}")

    if args.baseline:
        os.environ[harness.BASELINE_ENV] = str(prepare_baseline(args.baseline))
        if "ours_baseline" not in clients:
            clients.append("ours_baseline")

    started = time.monotonic()
    server = Server()
    print(f"ingest server {server.url} (separate process); {n:,} calls per run, "
          f"{reps} repetition(s), clients interleaved", flush=True)  # fmt: skip
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {w: {c: [] for c in clients}
                                                        for w in workloads}  # fmt: skip
    skipped: dict[str, str] = {}
    try:
        for rep in range(reps):
            for workload in workloads:
                # Rotate the order so no client always runs first (or last) in a round.
                order = clients[rep % len(clients) :] + clients[: rep % len(clients)]
                for name in order:
                    if name in skipped:
                        continue
                    result = run_one(server, name, workload, n)
                    if result is None or "skipped" in result:
                        skipped[name] = (result or {}).get("skipped", "missing")
                        print(f"  skip {name}: {skipped[name]}", flush=True)
                        continue
                    summarize(result)
                    raw[workload][name].append(result)
                    lost = result.get("lost")
                    print(f"  rep {rep + 1} {workload:<8} {name:<15} "
                          f"{result['call_median_ns']:>8,.0f} ns/call  "
                          f"{result['cpu_per_logged_line_ns']:>8,.0f} ns CPU/line"
                          + (f"  lost {lost} (HTTP {result['http_statuses']})" if lost else ""),
                          flush=True)  # fmt: skip
        memory = memory_runs(20_000 if not args.quick else 5_000)
    finally:
        server.stop()

    results = {w: {c: aggregate(runs) for c, runs in raw[w].items() if runs} for w in workloads}
    for table in results.values():
        derive(table)
    print_table(results)
    print("\nbytes held per queued line (sender unable to send):")
    for m in memory:
        print(f"  {m['workload']:<6} serialized {m['serialized_bytes_per_line']:.0f} B, "
              f"counted by stats() {m['stats_queued_bytes_per_line']:.0f} B "
              f"({m['stats_queued_bytes_per_line'] / m['serialized_bytes_per_line']:.2f}x), "
              f"measured by tracemalloc {m['traced_bytes_per_line']:.0f} B "
              f"({m['traced_bytes_per_line'] / m['serialized_bytes_per_line']:.2f}x)")  # fmt: skip
    verdict = targets(results, memory)
    print("\ntargets (issue 7):")
    for line in verdict["lines"]:
        print("  " + line)
    elapsed = time.monotonic() - started
    print(f"\n{elapsed:.0f} s in all")

    doc = {
        "meta": {
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "commit": _git_commit(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "c_extension": _c_extension(),
            "lines_per_run": n,
            "reps": reps,
            "batch": harness.BATCH,
            "quick": args.quick,
            "elapsed_s": round(elapsed, 1),
            "skipped": skipped,
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
        },
        "results": results,
        "memory": memory,
        "targets": verdict,
        "markdown": markdown_table(results),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    print(f"wrote {args.json.relative_to(ROOT) if args.json.is_relative_to(ROOT) else args.json}")
    if not args.no_plot:
        plot(results, args.plot)
        shown = args.plot.relative_to(ROOT) if args.plot.is_relative_to(ROOT) else args.plot
        print(f"wrote {shown}")
    full = args.clients == parser.get_default("clients") and (
        args.workloads == parser.get_default("workloads")
    )
    wanted = args.docs == "yes" or (args.docs == "auto" and not args.quick and full)
    if wanted and update_docs(doc):
        print(f"updated the results block in {DOC.relative_to(ROOT)}")
    return 0


def docs_block(doc: dict[str, Any]) -> str:
    meta = doc["meta"]
    out = [
        BEGIN,
        "",
        f"Run {meta['date']} at commit {meta['commit']}: Python {meta['python']}, "
        f"{meta['cpus']} CPUs, {meta['lines_per_run']:,} calls per run, best of "
        f"{meta['reps']} interleaved repetitions; `{meta['command']}` "
        f"({meta['elapsed_s']:.0f} s). The handler's C extension was "
        f"{'built' if meta.get('c_extension') else 'not built (no compiler)'}.",
        "",
        "Targets (issue 7):",
        "",
        *[f"- {line}" for line in doc["targets"]["lines"]],
        "",
        "Bytes held per queued line (sender unable to send):",
        "",
    ]
    for m in doc["memory"]:
        ser = m["serialized_bytes_per_line"]
        out.append(
            f"- {m['workload']}: serialized {ser:.0f} B; counted by `stats()` "
            f"{m['stats_queued_bytes_per_line']:.0f} B "
            f"({m['stats_queued_bytes_per_line'] / ser:.2f}x); measured with tracemalloc "
            f"{m['traced_bytes_per_line']:,.0f} B ({m['traced_bytes_per_line'] / ser:.2f}x)"
        )
    out += [doc["markdown"], "![benchmark plot](performance.png)", "", END]
    return "\n".join(out)


def update_docs(doc: dict[str, Any]) -> bool:
    """Replace the generated block of docs/performance.md; False when it has none."""
    if not DOC.exists():
        return False
    text = DOC.read_text()
    if BEGIN not in text or END not in text:
        return False
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    DOC.write_text(head + docs_block(doc) + tail)
    return True


def targets(
    results: dict[str, dict[str, dict[str, Any]]], memory: list[dict[str, Any]]
) -> dict[str, Any]:
    lines = []
    ok = True
    plain = results.get("plain", {})
    ours = plain.get("ours")
    if ours and ours.get("caller_ratio") is not None:
        passed = ours["caller_ratio"] <= 1.3
        ok &= passed
        lines.append(f"{'PASS' if passed else 'FAIL'} caller ratio, plain message: "
                     f"{ours['caller_ratio']:.2f}x (median; mean {ours['caller_ratio_mean']:.2f}x)"
                     " <= 1.3x")  # fmt: skip
    for workload, table in results.items():
        row = table.get("ours")
        if row and row.get("vs_official") is not None:
            passed = row["vs_official"] >= 10
            ok &= passed
            lines.append(f"{'PASS' if passed else 'FAIL'} client CPU per line vs official, "
                         f"{workload}: {row['vs_official']:.2f}x lower (>= 10x)")  # fmt: skip
    # The Python path is what an install without a C compiler runs: shown, not a target.
    for workload, table in results.items():
        now, then = table.get("ours"), table.get("ours_baseline")
        if now and then and now.get("caller_ratio") and then.get("caller_ratio"):
            lines.append(f"INFO caller ratio vs the baseline commit, {workload}: "
                         f"{now['caller_ratio']:.3f}x now, {then['caller_ratio']:.3f}x then "
                         f"({now['caller_ratio'] - then['caller_ratio']:+.3f})")  # fmt: skip
    for workload, table in results.items():
        now, spool = table.get("ours"), table.get("ours_spool")
        if now and spool and now.get("caller_ratio") and spool.get("caller_ratio"):
            delta = spool["caller_ratio"] - now["caller_ratio"]
            passed = delta <= 0.05
            ok &= passed
            lines.append(f"{'PASS' if passed else 'FAIL'} caller ratio with the spool on, "
                         f"{workload}: {spool['caller_ratio']:.3f}x vs {now['caller_ratio']:.3f}x "
                         f"off ({delta:+.3f}, <= +0.05)")  # fmt: skip
        if spool and spool.get("lines_per_s"):
            passed = spool["lines_per_s"] >= 100_000
            ok &= passed
            lines.append(f"{'PASS' if passed else 'FAIL'} delivered lines/s with the spool on, "
                         f"{workload}: {spool['lines_per_s']:,.0f} (>= 100,000)")  # fmt: skip
        written = [
            r
            for r in (spool or {}).get("runs", [])
            if (r.get("client_stats") or {}).get("spool_bytes_written")
            and r.get("delivered")
            and r.get("wire_bytes")
        ]
        if written:
            r = written[0]
            per_line = r["client_stats"]["spool_bytes_written"] / r["delivered"]
            wire = r["wire_bytes"] / r["delivered"]
            lines.append(f"INFO spool bytes written per line, {workload}: {per_line:.0f} B "
                         f"({per_line / wire:.1f}x the {wire:.1f} B it takes gzipped on the wire)"
                         )  # fmt: skip
    python = plain.get("ours_python")
    if python and python.get("caller_ratio") is not None:
        lines.append(f"INFO Python path (no C extension): caller ratio, plain message "
                     f"{python['caller_ratio']:.2f}x")  # fmt: skip
    for workload, table in results.items():
        row = table.get("ours_python")
        if row and row.get("vs_official") is not None:
            lines.append(f"INFO Python path (no C extension): client CPU per line vs official, "
                         f"{workload}: {row['vs_official']:.2f}x lower")  # fmt: skip
    for workload, table in results.items():
        for name in ("ours", "ours_python", "ours_spool", "structlog_ours"):
            row = table.get(name)
            if row and row.get("lost") is not None:
                passed = row["lost"] == 0
                ok &= passed
                lines.append(f"{'PASS' if passed else 'FAIL'} lines lost, {name}, {workload}: "
                             f"{row['lost']}")  # fmt: skip
    for m in memory:
        ratio = m["traced_bytes_per_line"] / m["serialized_bytes_per_line"]
        passed = ratio <= 1.5
        ok &= passed
        lines.append(f"{'PASS' if passed else 'FAIL'} memory per queued line, {m['workload']}: "
                     f"{ratio:.2f}x its serialized size (<= 1.5x)")  # fmt: skip
    return {"all_passed": ok, "lines": lines}


if __name__ == "__main__":
    sys.exit(main())
