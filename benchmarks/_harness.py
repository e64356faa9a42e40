"""Child-process halves of the benchmark: the ingest server and one client run.

``run.py`` starts each of these in a fresh ``spawn``-ed process, so no
client's threads, buffers, caches or memory leak into another's numbers and
the server's CPU is never counted against a client. They talk to the parent
over a ``multiprocessing`` pipe; a child waiting on the pipe uses no CPU.
"""

from __future__ import annotations

import gc
import logging
import os
import resource
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

#: Calls timed together with one pair of ``perf_counter_ns`` reads. Small
#: enough that p99 still sees slow calls, large enough that the two clock
#: reads (about 60 ns) stay a small part of what is measured.
BATCH = 10

FMT = "request %s served in %d ms"

CLIENTS = (
    "null", "queue", "logdna", "ours", "ours_python", "ours_spool", "structlog_floor",
    "structlog_ours", "ours_baseline",
)  # fmt: skip
#: Clients run unless asked for: the baseline needs ``run.py --baseline REV``.
ON_REQUEST = frozenset({"ours_baseline"})
WORKLOADS = ("plain", "extra", "threads4")
#: Clients that put lines on the wire (the others stop in the process).
DELIVERING = frozenset(
    {"logdna", "ours", "ours_python", "ours_spool", "structlog_ours", "ours_baseline"}
)
#: Where ``run.py --baseline`` put the earlier version's package (with its extension built).
BASELINE_ENV = "LOGDNA_BENCH_BASELINE"


# -- the ingest server ---------------------------------------------------------


def server_main(conn: Any) -> None:
    """Run a DevServer (lines counted, not kept) and answer the parent's questions."""
    from logdna_client._devserver import DevServer

    server = DevServer(keep_lines=False, timeout=60.0).start()
    conn.send(server.url)
    try:
        while True:
            cmd, *args = conn.recv()
            if cmd == "count":
                conn.send((server.line_count, server.request_count))
            elif cmd == "records":
                # The newest ``args[0]`` request records (kept: the last 10,000).
                records = server.requests[-args[0] :] if args[0] else []
                conn.send(
                    [
                        (r.body_bytes, r.connection_id, r.status, r.n_lines, r.received_at)
                        for r in records
                    ]
                )
            elif cmd == "stop":
                break
    except EOFError:
        pass
    finally:
        server.stop()


# -- one client run ------------------------------------------------------------


def _extra(i: int) -> dict[str, Any]:
    return {"user_id": i, "path": "/api/v1/items", "method": "GET", "status": 200, "bytes": 5120}


def _loop_plain(info: Callable[..., Any], lo: int, hi: int, out: list[int], k: int) -> None:
    clock = time.perf_counter_ns
    for base in range(lo, hi, BATCH):
        t0 = clock()
        for i in range(base, base + BATCH):
            info(FMT, i, i % 997)
        out[k] = clock() - t0
        k += 1


def _loop_extra_stdlib(info: Callable[..., Any], lo: int, hi: int, out: list[int], k: int) -> None:
    clock = time.perf_counter_ns
    for base in range(lo, hi, BATCH):
        t0 = clock()
        for i in range(base, base + BATCH):
            info(
                FMT, i, i % 997,
                extra={"user_id": i, "path": "/api/v1/items", "method": "GET",
                       "status": 200, "bytes": 5120},
            )  # fmt: skip
        out[k] = clock() - t0
        k += 1


def _loop_extra_kw(info: Callable[..., Any], lo: int, hi: int, out: list[int], k: int) -> None:
    clock = time.perf_counter_ns
    for base in range(lo, hi, BATCH):
        t0 = clock()
        for i in range(base, base + BATCH):
            info(FMT, i, i % 997,
                 user_id=i, path="/api/v1/items", method="GET", status=200, bytes=5120)  # fmt: skip
        out[k] = clock() - t0
        k += 1


class _Setup:
    """What one client needs: the logging call, how to flush and close it."""

    def __init__(
        self,
        info: Callable[..., Any],
        flush: Callable[[], None],
        close: Callable[[], None],
        structlog: bool = False,
        stats: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.info = info
        self.flush = flush
        self.close = close
        self.structlog = structlog
        self.stats = stats


def _stdlib_logger(handler: logging.Handler) -> logging.Logger:
    log = logging.getLogger("bench")
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    return log


def _structlog_logger(processors: list[Any]) -> Any:
    import structlog

    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.ReturnLoggerFactory(),
        cache_logger_on_first_use=True,
    )
    return structlog.get_logger("bench")


def make_client(name: str, url: str, **ours: Any) -> _Setup:
    """Build client ``name`` shipping to ``url``; raises ImportError when it is missing."""
    options = {"key": "bench-key", "url": url, "hostname": "bench", "app": "bench", **ours}
    if name == "null":
        log = _stdlib_logger(logging.NullHandler())
        return _Setup(log.info, lambda: None, lambda: None)
    if name == "queue":
        import queue
        from logging.handlers import QueueHandler, QueueListener

        q: queue.Queue[Any] = queue.Queue(-1)
        listener = QueueListener(q, logging.NullHandler())
        listener.start()
        log = _stdlib_logger(QueueHandler(q))
        return _Setup(log.info, q.join, listener.stop)
    if name == "logdna":
        from logdna import LogDNAHandler as OfficialHandler

        handler = OfficialHandler(
            "bench-key", {"url": url, "hostname": "bench", "ip": "127.0.0.1", "app": "bench"}
        )
        log = _stdlib_logger(handler)
        return _Setup(log.info, handler.flush, handler.close)
    if name in ("ours", "ours_python", "ours_baseline", "ours_spool"):
        if name == "ours_spool":
            # The disk spool on (sync "interval", the default), in a fresh folder.
            import tempfile

            options["spool_dir"] = tempfile.mkdtemp(prefix="logdna-bench-spool-")
        if name == "ours_baseline":
            # The same handler from an earlier commit: this fresh process imports the
            # package from there (a sys.path entry wins over the editable install).
            baseline = os.environ.get(BASELINE_ENV)
            if not baseline:
                raise ImportError("no baseline: run.py --baseline REV")
            sys.path.insert(0, baseline)
        if name == "ours_python":
            # What an install without a C compiler runs: the extension cannot be
            # imported (this is a fresh process, and nothing imported the package yet).
            sys.modules["logdna_client._speedups"] = None  # type: ignore[assignment]
        from logdna_client import LogDNAHandler

        handler = LogDNAHandler(**options)
        if name == "ours_python":
            assert handler._fast is None
        log = _stdlib_logger(handler)
        client = handler.client
        return _Setup(log.info, lambda: client.flush(60.0), handler.close, stats=client.stats)
    if name == "structlog_floor":
        return _Setup(_structlog_logger([]).info, lambda: None, lambda: None, structlog=True)
    if name == "structlog_ours":
        from logdna_client.structlog import LogDNAProcessor

        processor = LogDNAProcessor(**options)
        slog = _structlog_logger([processor])
        client = processor.client
        return _Setup(
            slog.info, lambda: client.flush(60.0), client.close, structlog=True, stats=client.stats
        )
    raise ValueError(f"unknown client {name!r}")


def _rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _quiet_stdout() -> None:
    # The official client logs its own trouble to stdout; keep the report readable.
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115


def client_main(conn: Any, name: str, workload: str, n: int, url: str) -> None:
    """One measured run: warm up, log ``n`` lines, wait for delivery, report."""
    _quiet_stdout()
    try:
        setup = make_client(name, url)
    except ImportError as exc:
        conn.send(("skip", f"{type(exc).__name__}: {exc}"))
        return
    threads = 4 if workload == "threads4" else 1
    if workload == "extra":
        loop = _loop_extra_kw if setup.structlog else _loop_extra_stdlib
    else:
        loop = _loop_plain
    info = setup.info
    n -= n % (BATCH * threads)

    # Warm up: the first call starts threads, opens the connection, fills caches.
    warm = max(BATCH * threads, min(2000, n // 10))
    warm -= warm % BATCH
    loop(info, 0, warm, [0] * (warm // BATCH), 0)
    setup.flush()
    conn.send(("warm", warm))
    conn.recv()

    out = [0] * (n // BATCH)
    per_thread = n // threads
    gc.collect()
    rss0 = _rss_kib()
    faults0 = _minor_faults()
    cpu0 = time.process_time()
    wall0 = time.time()
    t0 = time.perf_counter()
    if threads == 1:
        loop(info, 0, n, out, 0)
    else:
        go = threading.Event()

        def worker(t: int) -> None:
            go.wait()
            lo = t * per_thread
            loop(info, lo, lo + per_thread, out, lo // BATCH)

        workers = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        t0 = time.perf_counter()
        go.set()
        for w in workers:
            w.join()
    loop_wall = time.perf_counter() - t0
    cpu_loop = time.process_time() - cpu0
    faults = _minor_faults() - faults0
    setup.flush()
    cpu_flushed = time.process_time() - cpu0
    conn.send(("loop_done", {"n": n, "wall0": wall0}))
    msg = conn.recv()
    closed_in_window = False
    if msg == "close":
        # Lines still held by a client that only ships on close().
        setup.close()
        closed_in_window = True
        conn.send(("closed", None))
        msg = conn.recv()
    cpu = time.process_time() - cpu0
    rss1 = _rss_kib()
    stats = setup.stats() if setup.stats is not None else None
    if not closed_in_window:
        setup.close()
    conn.send(
        (
            "result",
            {
                "n": n,
                "threads": threads,
                "batch_ns": out,
                "loop_wall_s": loop_wall,
                "cpu_loop_s": cpu_loop,
                "cpu_flushed_s": cpu_flushed,
                "cpu_s": cpu,
                "peak_rss_delta_kib": rss1 - rss0,
                "peak_rss_kib": rss1,
                "page_faults_per_call": faults / n,
                "closed_in_window": closed_in_window,
                "client_stats": _jsonable(stats),
            },
        )
    )


def _jsonable(stats: dict[str, Any] | None) -> dict[str, Any] | None:
    if stats is None:
        return None
    return {k: v if isinstance(v, int | float | str | bool | dict) else str(v)
            for k, v in stats.items()}  # fmt: skip


# -- bytes held per queued line ---------------------------------------------------


def _dead_url() -> str:
    # A loopback port nobody listens on: the sender can never deliver.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/logs/ingest"


def memory_main(conn: Any, workload: str, n: int) -> None:
    """Queue ``n`` lines with a sender that never sends; how much memory do they hold?"""
    import tracemalloc

    _quiet_stdout()
    # The sender sleeps: no full batch (8 MiB) is reached and the interval is an hour.
    setup = make_client(
        "ours", _dead_url(), flush_interval=3600, max_batch_bytes=8 * 1024 * 1024,
        shutdown_timeout=0,
    )  # fmt: skip
    assert setup.stats is not None
    loop = _loop_extra_stdlib if workload == "extra" else _loop_plain
    loop(setup.info, 0, BATCH, [0], 0)  # starts the sender thread
    out = [0] * (n // BATCH)
    gc.collect()
    before = setup.stats()
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    loop(setup.info, BATCH, BATCH + n, out, 0)
    gc.collect()
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    after = setup.stats()
    from logdna_client._buffer import LINE_OVERHEAD

    queued = after["queued"] - before["queued"]
    queued_bytes = after["queued_bytes"] - before["queued_bytes"]
    serialized = queued_bytes - LINE_OVERHEAD * queued
    conn.send(
        {
            "workload": workload,
            "queued": queued,
            "serialized_bytes_per_line": serialized / queued,
            "stats_queued_bytes_per_line": queued_bytes / queued,
            "traced_bytes_per_line": (held - base) / queued,
        }
    )
    # Silence the expected notice that the undeliverable lines were dropped at close.
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115
    setup.close()
