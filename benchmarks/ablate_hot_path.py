"""What each duty of ``LogDNAHandler.handle`` costs inside a real ``log.info`` call.

    .venv/bin/python benchmarks/ablate_hot_path.py [--reps 9] [--lines 20000] [--extra]
    .venv/bin/python benchmarks/ablate_hot_path.py --structlog

``profile_hot_path.py`` times the pieces of the handler one by one, on a record
that stays warm in the cache. Inside a real call they cost more (a fresh
record, its dict built on first read, the entry kept in fresh memory), and
the caller ratio is about that. So this script times whole ``log.info`` calls
for: the ``NullHandler`` floor; the handler as shipped (its C extension, when
built); the handler on its Python path; that Python path with one
duty taken out at a time (its ``handle`` recompiled from the source with that
piece replaced, so nothing else changes); and a handler that does only the
bare minimum of any client that formats in the caller (format the message,
escape it, add level and timestamp, encode, append to a deque). The runs are
interleaved and each figure is the best of ``--reps`` (noise only ever adds).
The variants are measurements, not alternatives: each one drops something the
behaviour contract requires. ``--structlog`` does the same for the structlog
processor: its floor, ``LogDNAProcessor``, and the least a processor built on
the shared pieces can do.
"""

from __future__ import annotations

import argparse
import collections
import inspect
import logging
import os
import socket
import sys
import textwrap
import timeit
from collections.abc import Callable
from typing import Any

FMT = "request %s served in %d ms"

#: (label, LogDNAHandler method, text in it, what replaces it)
DUTIES: tuple[tuple[str, str, str, str], ...] = (
    ("records from sender threads are skipped", "_deliver",
     "if made_on_sender(record, current):", "if False:"),
    ("the library's own loggers are skipped", "_deliver",
     "if own is not False and self._is_own(name):", "if False:"),
    ("the re-entry guard is checked", "_deliver",
     "marks = marks_for(current)", "marks = _native.BUSY_THREADS"),
    ("records with a traceback or stack are told apart", "_queue_record",
     "and not (record.exc_info or record.exc_text or record.stack_info)", ""),
    ("a patched getMessage is looked for", "_queue_record",
     "and type(record).getMessage is _GET_MESSAGE", ""),
    ("the logger name ships (record_meta, its JSON cached)", "_queue_record",
     "            names = self._record_attrs\n            cache = self._meta_cache",
     "            names = ()\n            cache = None"),
    ("extras are looked for (len(record.__dict__))", "_queue_record",
     "if type(value) is str and len(attrs) == PLAIN_RECORD_LEN:",
     "if type(value) is str:"),
    ("request context is looked for", "_queue_record",
     "if _context.in_use:\n            context = request_context()",
     "if False:\n            context = request_context()"),
)  # fmt: skip


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/logs/ingest"


def _without(cls: type, *duties: tuple[str, str, str, str]) -> type:
    """A subclass of ``cls`` whose methods are the real ones without ``duties``."""
    from logdna_client import _handler

    methods: dict[str, str] = {}
    for _, method, old, new in duties:
        source = methods.get(method) or inspect.getsource(getattr(_handler.LogDNAHandler, method))
        if old not in source:
            raise SystemExit(
                f"ablate_hot_path.py is out of date: {old!r} is no longer in LogDNAHandler.{method}"
            )
        methods[method] = source.replace(old, new, 1)
    namespace: dict[str, Any] = dict(vars(_handler))
    for source in methods.values():
        exec(compile(textwrap.dedent(source), "<ablated>", "exec"), namespace)
    # A handle of the class's own: the handler runs the Python path.
    body = {name: namespace[name] for name in methods}

    def handle(self: Any, record: logging.LogRecord) -> Any:
        return _handler.LogDNAHandler.handle(self, record)

    body["handle"] = handle
    return type(f"{cls.__name__}Ablated", (cls,), body)


def _bare_minimum() -> logging.Handler:
    """Format, escape, level, timestamp, encode, append: nothing else."""
    from logdna_client._line import _escape

    queue: collections.deque[bytes] = collections.deque()
    tail = ',"level":"INFO","app":"bench"}'

    class Bare(logging.Handler):
        entries = queue

        def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
            text = record.msg % record.args
            queue.append(
                f',{{"line":{_escape(text)},"timestamp":{int(record.created * 1000)}{tail}'
                .encode()
            )  # fmt: skip
            return True

    return Bare()


def _shared_pieces_only(**options: Any) -> logging.Handler:
    """The message formatted, then the library's two shared pieces and nothing else:
    ``LineBuilder.entry`` (credential trigger test, level tail, template) with the
    logger name's meta JSON made once, and ``Buffer.put_entry`` (the byte-counted,
    bounded queue). No re-entry guard, hook check, sender or own-logger test."""
    from logdna_client import Client

    client = Client(**options)
    client.put_entry(b',{"line":"start"}')  # starts the sender: puts skip the lock from now on
    builder = client._builder
    made: dict[str, tuple[dict[str, Any], bytes]] = {}

    class Shared(logging.Handler):
        def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
            text = record.msg % record.args
            meta = made.get(record.name)
            if meta is None:
                names = {"name": record.name}
                meta = made[record.name] = (names, builder.meta_json(names))
            entry = builder.entry(text, record.levelname, int(record.created * 1000), *meta)
            if entry is not None:
                client.put_entry(entry)
            return True

    handler = Shared()
    handler.client = client  # type: ignore[attr-defined]
    return handler


def _structlog(args: argparse.Namespace, options: dict[str, Any]) -> int:
    """The structlog processor against its floor and against the least a processor
    built on the shared pieces can do (``LineBuilder.entry``, the clock,
    ``Buffer.put_entry``; no guard, no level or key check)."""
    import time

    import structlog

    from logdna_client.structlog import LogDNAProcessor

    processor = LogDNAProcessor(**options)
    os.environ["LOGDNA_CLIENT_PURE_PYTHON"] = "1"
    python_path = LogDNAProcessor(client=processor.client)  # the same client, in Python
    del os.environ["LOGDNA_CLIENT_PURE_PYTHON"]
    processor(None, "info", {"event": "start"})  # starts the sender
    client = processor.client
    entry, put, now = client._builder.entry, client.put_entry, time.time

    def least(logger: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        made = entry(event_dict["event"], "INFO", int(now() * 1000), None, None)
        if made is not None:
            put(made)
        return event_dict

    def bound(processors: list[Any]) -> Any:
        structlog.configure(
            processors=processors,
            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
            logger_factory=structlog.ReturnLoggerFactory(),
            cache_logger_on_first_use=False,
        )
        return structlog.get_logger("bench").bind()  # bound now: later configures leave it

    loggers = {
        "structlog, no processor (the floor)": bound([]),
        "LogDNAProcessor": bound([processor]),
        "LogDNAProcessor, Python path only": bound([python_path]),
        "least processor: LineBuilder.entry, clock, Buffer.put_entry": bound([least]),
    }
    # run.py's five keyword arguments (--extra), as the handler's five extra= fields.
    extra = (
        {"user_id": 42, "path": "/api/v1/items", "method": "GET", "status": 200, "bytes": 5120}
        if args.extra
        else {}
    )
    best: dict[str, float] = dict.fromkeys(loggers, float("inf"))
    lines = range(args.lines)
    for _ in range(args.reps):
        for label, log in loggers.items():
            buffer = client._buffer
            with buffer._lock:
                buffer.entries.clear()
                buffer.queued_bytes = 0
            seconds = timeit.timeit(
                "for i in lines: info(FMT, i, i % 997, **extra)",
                globals={"info": log.info, "FMT": FMT, "lines": lines, "extra": extra},
                number=1,
            )
            best[label] = min(best[label], seconds / args.lines * 1e9)
    floor = best["structlog, no processor (the floor)"]
    call = "log.info(FMT, i, i % 997" + (", **five)" if extra else ")")
    print(f"structlog {call}, {args.lines:,} calls, best of {args.reps}, "
          f"Python {sys.version.split()[0]}:\n")  # fmt: skip
    print(f"{'':62s} {'ns/call':>8s} {'x floor':>8s}")
    for label, ns in best.items():
        print(f"{label:62s} {ns:8.0f} {ns / floor:7.2f}x")
    client.close(timeout=0)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument(
        "--extra", action="store_true", help="log with the five extra= fields of run.py"
    )
    parser.add_argument(
        "--structlog", action="store_true", help="the structlog processor instead of the handler"
    )
    args = parser.parse_args()

    from logdna_client import LogDNAHandler

    options = dict(
        key="k", url=_dead_url(), hostname="bench", app="bench", flush_interval=3600,
        max_batch_bytes=8 << 20, max_buffer_bytes=1 << 40, shutdown_timeout=0,
    )  # fmt: skip
    if args.structlog:
        return _structlog(args, options)
    handlers: dict[str, logging.Handler] = {
        "logging.NullHandler (the floor)": logging.NullHandler(),
        "LogDNAHandler, as shipped": LogDNAHandler(**options),
    }
    # The rows below are all the Python method (the C extension's fallback),
    # called as a plain method, as where the extension is not built.
    os.environ["LOGDNA_CLIENT_PURE_PYTHON"] = "1"
    handlers["LogDNAHandler, Python path"] = LogDNAHandler(**options)
    del os.environ["LOGDNA_CLIENT_PURE_PYTHON"]
    for duty in DUTIES:
        handlers[f"  without: {duty[0]}"] = _without(LogDNAHandler, duty)(**options)
    handlers["  without all of the above"] = _without(LogDNAHandler, *DUTIES)(**options)
    handlers["bare minimum: format, escape, timestamp, encode, append"] = _bare_minimum()
    handlers["format, then LineBuilder.entry and Buffer.put_entry only"] = _shared_pieces_only(
        **options
    )

    loggers: dict[str, logging.Logger] = {}
    for i, (label, handler) in enumerate(handlers.items()):
        log = logging.getLogger(f"ablate.{i}")
        log.handlers[:] = [handler]
        log.propagate = False
        log.setLevel(logging.INFO)
        log.info("warm up")  # starts the sender, notes the level and second
        log.info("warm up")
        loggers[label] = log

    def drain() -> None:
        for handler in handlers.values():
            if hasattr(handler, "client"):
                buffer = handler.client._buffer
                with buffer._lock:
                    buffer.entries.clear()
                    buffer.queued_bytes = 0
            elif hasattr(handler, "entries"):
                handler.entries.clear()

    extra = (
        {"user_id": 42, "path": "/api/v1/items", "method": "GET", "status": 200, "bytes": 5120}
        if args.extra
        else None
    )
    best: dict[str, float] = dict.fromkeys(loggers, float("inf"))
    lines = range(args.lines)
    for _ in range(args.reps):
        for label, log in loggers.items():
            drain()
            info: Callable[..., None] = log.info
            seconds = timeit.timeit(
                "for i in lines: info(FMT, i, i % 997, extra=extra)",
                globals={"info": info, "FMT": FMT, "lines": lines, "extra": extra},
                number=1,
            )
            best[label] = min(best[label], seconds / args.lines * 1e9)
    drain()

    floor = best["logging.NullHandler (the floor)"]
    python = best["LogDNAHandler, Python path"]
    call = "log.info(FMT, i, i % 997" + (", extra=5 fields)" if extra else ")")
    print(f"{call}, {args.lines:,} calls, best of {args.reps}, "
          f"Python {sys.version.split()[0]}:\n")  # fmt: skip
    print(f"{'':60s} {'ns/call':>8s} {'x floor':>8s} {'saves':>7s}")
    for label, ns in best.items():
        saves = f"{python - ns:7.0f}" if label.startswith("  without") else ""
        print(f"{label:60s} {ns:8.0f} {ns / floor:7.2f}x {saves}")
    print("\n'saves': ns per call the Python path would save without that duty "
          "(noise: about +-80 ns).")  # fmt: skip
    for handler in handlers.values():
        if hasattr(handler, "client"):
            handler.client.close(timeout=0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
