"""What redaction costs: long lines with every preset on, and the stdlib hot path.

    .venv/bin/python benchmarks/redaction.py [--reps 7]

1. Time to redact one line of 8 KB, 32 KB and 128 KB with every text pattern on
   (the default credential patterns, every PHI preset and ``bearer``), for
   dense log text (a secret, a card, an email and many digits every 260
   bytes), and for inputs built against the patterns (long digit runs with
   separators, email-like runs, key words without values, values that hold
   keys, commas inside values and between pairs, and the slowest inputs found
   for the newer patterns: key ids, "%253D", "-U a ", "a:\\n  " repeated).
   Linear time shows as a flat ns/byte.
2. ``log.info`` through ``LogDNAHandler`` with default redaction against
   ``redact=False`` (no text patterns, no key names), for the ordinary message
   of docs/performance.md and for one with a ":" (which takes the patterns).

Each figure is the best of ``--reps`` (noise only ever adds).
"""

from __future__ import annotations

import argparse
import logging
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from logdna_client import LogDNAHandler
from logdna_client._redact import Redactor

SIZES = (8 * 1024, 32 * 1024, 128 * 1024)

ORDINARY = (
    "GET /api/v1/orders/42 200 in 12 ms user=bob trace=9f86d081884c7d65 "
    "at 2024-01-15T10:30:00.123Z id 550e8400-e29b-41d4-a716-446655440000 "
    "password=hunter2 ann.lee@example.com card 4111 1111 1111 1111 ts 1732280000123 "
    "Authorization: Bearer abc.def call (555) 123-4567 ssn 123-45-6789 ok\n"
)
HOSTILE = {
    "digits and separators": "4 4 4 4 4 4 4 4 4 4 4 4 4 4 4 4 4 4 4 1-",
    "email-like runs": "a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a@",
    "key words, no values": "password token secret api_key pass ",
    "digit run": "4111111111111111",
    "jwt-like": "eyJeyJeyJeyJeyJeyJeyJeyJ.",
    # Values that hold keys (JSON inside a JSON string): each key's value runs on
    # over all the others.
    'password=\\" repeated': 'password=\\"',
    'token=\\"a\\" repeated': 'token=\\"a\\"',
    "pw= repeated": "pw=",
    # Commas inside values (each one looks ahead for another key's "=").
    "pw=a,b,c, repeated": "pw=a,b,c,",
    "a=1,pw=x, repeated": "a=1,pw=x,",
    # Commas and nothing else inside values; bytes reprs' quotes inside values.
    "pw=,, repeated": "pw=,,",
    "pw=b' repeated": "pw=b'",
    # The slowest inputs found for the newer patterns: key ids (aws_secret_before
    # reads back from each), a separator encoded twice (encoded_kv), users with no
    # "-P" after them (cli_password), and ":" ending lines before indented ones with
    # no key a secret (yaml_block).
    "AKIA... key ids repeated": "AKIAIOSFODNN7EXAMPLE ",
    "pw%253D repeated": "pw%253D",
    "-U a repeated": "-U a ",
    "a:\\n   repeated": "a:\n  ",
}


def best(fn: Callable[[], object], reps: int, number: int = 1) -> float:
    return min(timeit.repeat(fn, number=number, repeat=reps)) / number


def redaction(reps: int) -> None:
    redactor = Redactor(patterns=["phi", "bearer"], max_chars=max(SIZES))
    print("Redacting one line, every pattern on (ms; ns per byte):")
    print(f"{'input':<26}" + "".join(f"{size // 1024:>10} KB" for size in SIZES))
    for name, unit in {"dense log text": ORDINARY, **HOSTILE}.items():
        cells = []
        for size in SIZES:
            text = (unit * (size // len(unit) + 1))[:size]
            seconds = best(lambda text=text: redactor.text(text), reps)  # type: ignore[misc]
            cells.append(f"{seconds * 1e3:6.2f};{seconds * 1e9 / size:4.0f}")
        print(f"{name:<26}" + "".join(f"{c:>13}" for c in cells))


def hot_path(reps: int, lines: int) -> None:
    print(f"\nlog.info through LogDNAHandler, {lines:,} calls, ns per call:")
    handlers = {
        "default redaction": LogDNAHandler(
            url="http://127.0.0.1:9/logs/ingest", flush_interval=3600,
            max_buffer_bytes=1 << 30,
        ),
        "redact=False": LogDNAHandler(
            url="http://127.0.0.1:9/logs/ingest", flush_interval=3600,
            max_buffer_bytes=1 << 30, redact=False,
        ),
    }  # fmt: skip
    messages = {
        "request %s served in %d ms": "plain",
        "request %s: served in %d ms": "with ':'",
    }
    for label, handler in handlers.items():
        log = logging.getLogger(f"bench.redaction.{label}")
        log.handlers[:] = [handler]
        log.propagate = False
        log.setLevel(logging.INFO)
        row = []
        for fmt in messages:

            def run(log: logging.Logger = log, fmt: str = fmt) -> None:
                info = log.info
                for i in range(lines):
                    info(fmt, i, i % 997)

            row.append(best(run, reps) / lines * 1e9)
            handler.client._buffer.discard_all("shutdown")
        print(f"  {label:<20}" + "".join(
            f"{name}: {ns:6.0f}   " for name, ns in zip(messages.values(), row, strict=True)
        ))  # fmt: skip
    for handler in handlers.values():
        handler.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--lines", type=int, default=20_000)
    args = parser.parse_args()
    logging.getLogger("logdna_client").propagate = False
    redaction(args.reps)
    hot_path(args.reps, args.lines)


if __name__ == "__main__":
    main()
