"""Where the time goes: ``LogDNAHandler.emit`` piece by piece, and the sender's batch work.

    .venv/bin/python benchmarks/profile_hot_path.py [--cprofile]

Each figure is nanoseconds per record (best of several timeit repetitions, so
noise only ever makes a figure larger). The pieces are timed on the real
objects of a live handler whose sender cannot send, so nothing competes for
the GIL. Figures for the sender are per line, for a batch of ``max_batch_bytes``.
"""

from __future__ import annotations

import argparse
import collections
import gc
import logging
import os
import resource
import socket
import statistics
import sys
import threading
import time
import timeit
import zlib
from typing import Any

import orjson

FMT = "request %s served in %d ms"
_PROBE = logging.LogRecord("p", logging.INFO, __file__, 1, "p", None, None).__dict__
_PLAIN_LEN = len(_PROBE)
_LAST_STANDARD = list(_PROBE)[-1]
_FORMATTER_ATTRS = frozenset({"message", "asctime"})
_STANDARD = frozenset(_PROBE) | _FORMATTER_ATTRS


def best_ns(stmt: str, env: dict[str, Any], number: int = 20_000, repeat: int = 7) -> float:
    timer = timeit.Timer(stmt, globals=env)
    return min(timer.repeat(repeat=repeat, number=number)) / number * 1e9


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/logs/ingest"


def make_handler(python: bool = False) -> Any:
    """A handler whose sender sleeps (no full batch, hourly interval): only the
    caller's work is timed. ``python``: on the Python path, not the C extension."""
    from logdna_client import LogDNAHandler

    if python:
        os.environ["LOGDNA_CLIENT_PURE_PYTHON"] = "1"
    try:
        return _handler_for_profiling(LogDNAHandler)
    finally:
        os.environ.pop("LOGDNA_CLIENT_PURE_PYTHON", None)


def _handler_for_profiling(cls: Any) -> Any:
    return cls(
        key="k", url=dead_url(), hostname="bench", app="bench", flush_interval=3600,
        max_batch_bytes=8 * 1024 * 1024, max_buffer_bytes=1 << 40, shutdown_timeout=0,
    )  # fmt: skip


def hot_path(report: list[tuple[str, float]]) -> None:
    from logdna_client import _handler as handler_mod
    from logdna_client import _threads

    def add(label: str, ns: float) -> None:
        report.append((label, ns))
        print(f"  {ns:8.0f} ns  {label}", flush=True)

    floor_log = logging.getLogger("floor")
    floor_log.handlers[:] = [logging.NullHandler()]
    floor_log.propagate = False
    floor_log.setLevel(logging.INFO)
    handler = make_handler()
    ours_log = logging.getLogger("ours")
    ours_log.handlers[:] = [handler]
    ours_log.propagate = False
    ours_log.setLevel(logging.INFO)
    ours_log.info("start the sender")
    client = handler.client
    buffer = client._buffer
    encode = client._builder.encode
    record = logging.LogRecord("ours", logging.INFO, __file__, 1, FMT, (42, 7), None)
    extra_record = logging.LogRecord("ours", logging.INFO, __file__, 1, FMT, (42, 7), None)
    extra_record.__dict__.update(
        {"user_id": 42, "path": "/api/v1/items", "method": "GET", "status": 200, "bytes": 5120}
    )
    data = encode(record.getMessage(), "INFO", int(record.created * 1000), None)
    deque: collections.deque[bytes] = collections.deque()

    def drain() -> None:
        # Keep the buffer from growing without end between timings: recycled memory.
        with buffer._lock:
            buffer.entries.clear()
            buffer.queued_bytes = 0

    env: dict[str, Any] = {
        "floor": floor_log, "ours": ours_log, "h": handler, "record": record,
        "extra_record": extra_record, "client": client, "buffer": buffer, "encode": encode,
        "data": data, "orjson": orjson, "deque": deque, "drain": drain,
        "STANDARD": handler_mod.STANDARD_RECORD_ATTRS, "FMT": FMT,
        "line": {"line": "request 42 served in 7 ms", "timestamp": 1732280000123, "level": "INFO",
                 "app": "bench"},
        "sender": client._sender, "PLAIN_LEN": _PLAIN_LEN,
    }  # fmt: skip
    n = 20_000

    def timed(stmt: str, label: str, setup_drain: bool = True) -> float:
        # ``drain`` runs once per timeit repetition (outside the timing).
        timer = timeit.Timer(stmt, setup="drain()" if setup_drain else "pass", globals=env)
        ns = min(timer.repeat(repeat=7, number=n)) / n * 1e9
        add(label, ns)
        return ns

    print("\nwhole calls (application thread):")
    fl = timed("floor.info(FMT, 42, 7)", "log.info with only a NullHandler (the floor)")
    ou = timed(
        "ours.info(FMT, 42, 7)", "log.info with LogDNAHandler (sender asleep, memory reused)"
    )
    add(f"-> caller ratio, warm memory: {ou / fl:.2f}x", 0)
    timed("h.handle(record)", "LogDNAHandler.handle(record): the handler's whole share")
    timed("h.handle(extra_record)", "LogDNAHandler.handle(record with 5 extra= fields)")
    if handler._fast is not None:
        # The pieces below are the Python method's, the C extension's fallback.
        env["py"] = py = make_handler(python=True)
        py.handle(record)  # starts its sender, notes the level
        timed("py.handle(record)", "the same on the Python path (no C extension)")
        timed("py.handle(extra_record)", "the same with 5 extra= fields, Python path")
        with py.client._buffer._lock:  # nothing to deliver: no loss report at close
            py.client._buffer.entries.clear()
            py.client._buffer.queued_bytes = 0
        py.client.close(timeout=0)

    print("\npieces of the Python path (plain record), in the order it runs them:")
    env["get_ident"] = threading.get_ident
    env["made_on_sender"] = _threads.made_on_sender
    env["BUSY"] = _threads.BUSY_THREADS
    env["plain"] = client._builder.entry
    env["extras"] = handler_mod._extras
    env["meta5"] = {"user_id": 42, "path": "/api/v1/items", "method": "GET", "status": 200,
                    "bytes": 5120}  # fmt: skip
    env["redactor"] = client._builder._redactor
    env["entry"] = b"," + data
    env["meta_json"] = client._builder.meta_json
    env["name_meta"] = {"name": "ours"}
    env["name_json"] = client._builder.meta_json({"name": "ours"})
    env["put_entry"] = buffer.put_entry
    timed("c = get_ident(); made_on_sender(record, c) or c in BUSY",
          "sender-thread and re-entry checks")  # fmt: skip
    timed("h._skip_names.get(record.name)", "own-logger check (a cached answer)")
    timed("BUSY.add(1); BUSY.discard(1)", "re-entry guard add + discard")
    timed("h._queue_record(record)",
          "LogDNAHandler._queue_record: text, meta, entry and the put")  # fmt: skip
    timed("record.msg % record.args", "  of which: the message's % formatting")
    timed("plain('request 42 served in 7 ms', 'INFO', 1732280000123, name_meta, name_json)",
          "  of which: LineBuilder.entry with the logger name's JSON kept")  # fmt: skip
    timed("put_entry(entry)", "  of which: Buffer.put_entry, the lock-free put")

    print("\npieces for a record with 5 extra= fields:")
    timed("extras(extra_record.__dict__)", "extras read from the record's tail")
    timed("redactor.meta(meta5)", "Redactor.meta on 5 flat, known keys (the full check)")
    timed("meta_json(meta5)",
          "LineBuilder.meta_json instead: dumps, keys known, nothing nested")  # fmt: skip
    timed("plain('request 42 served in 7 ms', 'INFO', 1732280000123, meta5)",
          "LineBuilder.entry with meta (that check + template)")  # fmt: skip
    timed("encode('request 42 served in 7 ms', 'INFO', 1732280000123, meta5)",
          "LineBuilder.encode with meta (the general path, for comparison)")  # fmt: skip

    print("\nholding orjson's output vs a right-sized copy (fresh process memory):")
    fresh_memory(add)


def fresh_memory(add: Any) -> None:
    """orjson returns bytes with a ~4 KiB allocation; holding them costs that, and page faults."""
    import tracemalloc

    line = {"line": "request 42 served in 7 ms", "timestamp": 1732280000123, "level": "INFO",
            "app": "bench"}  # fmt: skip
    dumps = orjson.dumps
    count = 50_000
    for label, make in (
        ("orjson.dumps(line) held as is", lambda: dumps(line)),
        ("orjson.dumps(line) + b',' (a right-sized copy)", lambda: dumps(line) + b","),
    ):
        gc.collect()
        tracemalloc.start()
        base, _ = tracemalloc.get_traced_memory()
        held = [make() for _ in range(1000)]
        size, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        per_line = (size - base - 8 * len(held)) / len(held)
        del held
        # Timed on memory this process never touched: what a filling buffer pays.
        q: collections.deque[bytes] = collections.deque()
        faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter_ns()
        for _ in range(count):
            q.append(make())
        ns = (time.perf_counter_ns() - t0) / count
        faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0) / count
        add(f"{label}: {per_line:,.0f} B held per {len(dumps(line))}-B line, "
            f"{faults:.2f} page faults per line, time per line (dumps + append) on fresh memory",
            ns)  # fmt: skip
        del q


def _body_joiner() -> tuple[Any, bytes]:
    """The library's batch joiner and the prefix its queued entries carry, old or new layout."""
    try:
        from logdna_client._buffer import SEPARATOR, join_entries

        return join_entries, SEPARATOR
    except ImportError:
        from logdna_client._sender import join_lines

        return join_lines, b""


def sender_costs(report: list[tuple[str, float]]) -> None:
    from logdna_client._buffer import LINE_OVERHEAD

    join_lines, separator = _body_joiner()

    def add(label: str, ns: float) -> None:
        report.append((label, ns))
        print(f"  {ns:8.1f} ns/line  {label}", flush=True)

    sample = [
        orjson.dumps(
            {
                "line": f"request {i} served in {i % 997} ms",
                "timestamp": 1732280000123 + i,
                "level": "INFO",
                "app": "bench",
            }
        )
        for i in range(20_000)
    ]
    batch: list[bytes] = []
    total = 0
    for line in sample:
        if total + len(line) + LINE_OVERHEAD > 2 * 1024 * 1024:
            break
        batch.append(line)
        total += len(line) + LINE_OVERHEAD
    lines = len(batch)
    batch = [separator + line for line in batch] if separator else batch
    body = join_lines(batch)
    print(f"\nsender, per line of a {lines:,}-line batch ({len(body):,} B body):")
    env = {"join_lines": join_lines, "batch": batch, "zlib": zlib, "body": body}
    add(
        f"{join_lines.__name__} (batch -> request body)",
        best_ns("join_lines(batch)", env, number=20, repeat=5) / lines,
    )
    try:
        from logdna_client._sender import gzip_entries
    except ImportError:  # an older layout: join, then gzip the whole body
        pass
    else:
        env["gzip_entries"] = gzip_entries
        add(
            "gzip_entries (what the sender does: join and gzip a block at a time, level 1)",
            best_ns("gzip_entries(batch)", env, number=3, repeat=5) / lines,
        )
    for level in (1, 6, 9):
        env["level"] = level
        ns = best_ns(
            "c = zlib.compressobj(level, zlib.DEFLATED, 31); c.compress(body) + c.flush()",
            env, number=3, repeat=3,
        ) / lines  # fmt: skip
        c = zlib.compressobj(level, zlib.DEFLATED, 31)
        size = len(c.compress(body) + c.flush())
        add(f"gzip level {level}: {len(body) / size:.1f}x smaller ({size:,} B)", ns)
    requests_cost(add, body, lines)


def requests_cost(add: Any, body: bytes, lines: int) -> None:
    """CPU this process spends per POST through requests.Session, to a server elsewhere."""
    import multiprocessing

    import requests

    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    import _harness

    ctx = multiprocessing.get_context("spawn")
    conn, child = ctx.Pipe()
    proc = ctx.Process(target=_harness.server_main, args=(child,), daemon=True)
    proc.start()
    url = conn.recv()
    try:
        session = requests.Session()
        session.headers.update({"apikey": "k", "Content-Type": "application/json; charset=UTF-8"})
        small = b'{"lines":[{"line":"x","app":"a"}]}'
        gz = zlib.compressobj(1, zlib.DEFLATED, 31)
        big = gz.compress(body) + gz.flush()
        for label, payload, count in (
            ("1-line body", small, 300),
            ("2 MiB batch gzipped", big, 20),
        ):
            gzip_header = {"Content-Encoding": "gzip"} if payload is big else None
            session.post(url, params={"hostname": "b"}, data=payload, headers=gzip_header)
            samples = []
            for _ in range(count):
                c0 = time.process_time()
                response = session.post(
                    url, params={"hostname": "b", "now": str(int(time.time() * 1000))},
                    data=payload, headers={"Content-Encoding": "gzip"} if payload is big else None,
                )  # fmt: skip
                response.close()
                samples.append(time.process_time() - c0)
            cpu = statistics.median(samples) * 1e9
            print(f"  {cpu / 1000:8.0f} µs CPU per request through requests.Session ({label})",
                  flush=True)  # fmt: skip
            if payload is big:
                add("requests.Session.post overhead, spread over the batch", cpu / lines)
    finally:
        conn.send(("stop",))
        proc.join(5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cprofile", action="store_true", help="also cProfile 200k emits")
    args = parser.parse_args()
    report: list[tuple[str, float]] = []
    print("LogDNAHandler hot path, ns per record (best of 7):")
    hot_path(report)
    sender_costs(report)
    if args.cprofile:
        import cProfile
        import pstats

        handler = make_handler()
        record = logging.LogRecord("ours", logging.INFO, __file__, 1, FMT, (42, 7), None)
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(200_000):
            handler.handle(record)
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(12)
    return 0


if __name__ == "__main__":
    sys.exit(main())
