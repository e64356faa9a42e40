"""What each part of the C extension buys, inside a real ``log.info`` call.

    .venv/bin/python benchmarks/ablate_speedups.py [--reps 7] [--rounds 3] [--lines 20000]

``_speedups.c`` is longer than a leaf would like to be; this script says what
its larger parts are worth. It builds the extension several times from the
source with one part switched off (the C text patched, so nothing else
changes: the record or event then takes the Python function that part
mirrors, or a slower C route), each build into its own copy of the package,
and times whole logging calls through each in a fresh process, against the
``NullHandler`` floor (the structlog floor for events) measured in that same
process. Each figure is the best of ``--reps`` runs in a process and of
``--rounds`` processes, the builds interleaved (noise only ever adds).

The workloads: ``plain`` and ``extra`` are run.py's (a message with a %s and a
%d; the same with five ``extra=`` fields); ``kv`` is a ``key=value`` message
(``"user=%s status=%d"``), which the default credential patterns must look at;
``structlog`` is run.py's plain structlog call through ``LogDNAProcessor``.

Each row also says how many lines of ``_speedups.c`` the part takes (the
functions that only it uses): what removing it would save.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "logdna_client" / "_speedups.c"

#: label -> (the functions only that part uses, [(C text, what replaces it)]).
PARTS: dict[str, tuple[tuple[str, ...], list[tuple[str, str]]]] = {
    "the commonest messages written straight into bytes (format_direct)": (
        ("format_direct",),
        [("if ((*n = format_direct(msg, args == Py_None ? NULL : args, buf, room)) >= 0) {",
          "if (0) {")],
    ),
    "meta's ints and plain strs written directly, not by orjson (put_json)": (
        (),
        [("    if (PyUnicode_CheckExact(value) && json_plain_str(value)) {\n"
          "        n = PyUnicode_GET_LENGTH(value);",
          "    if (0) {\n        n = PyUnicode_GET_LENGTH(value);"),
         ("    else if (PyLong_CheckExact(value)) {\n        int overflow;",
          "    else if (0) {\n        int overflow;"),
         ("    else if (!PyFloat_CheckExact(value) && !PyUnicode_CheckExact(value)) {",
          "    else if (!PyFloat_CheckExact(value) && !PyUnicode_CheckExact(value) &&\n"
          "             !PyLong_CheckExact(value)) {")],
    ),
    "extras in C at all (else a record with extras takes the Python path)": (
        (),  # add_meta and put_json serve structlog's meta too
        [("    /* Extras: what follows the attributes LogRecord.__init__ sets (_extras). */",
          "    if (size > self->plain_len) {\n        return NULL;\n    }")],
    ),
    "the key before a ':' or '=' looked up in C (key_known_plain)": (
        ("key_known_plain",),
        [("            int plain = key_known_plain(self, kind, data, i, n);",
          "            int plain = 0;")],
    ),
    "the lock-free put in C (put_entry), not a call of Buffer.put_entry": (
        ("put_entry",),
        [("static PyObject *\nfinish(",
          "static int\npython_put(Handle *self, PyObject *entry)\n{\n"
          "    PyObject *r = PyObject_CallMethod(self->buffer, \"put_entry\", \"O\", entry);\n"
          "    Py_XDECREF(r);\n    return r == NULL ? -1 : 1;\n}\n\n"
          "static PyObject *\nfinish("),
         ("put_entry(self, entry, SIZE(entry) + self->entry_overhead)",
          "python_put(self, entry)")],
    ),
}  # fmt: skip

#: The child's measurement: the floor and the handler (or processor), interleaved.
CHILD = r"""
import json, logging, socket, sys, timeit
sys.path.insert(0, sys.argv[1])
lines, reps = int(sys.argv[2]), int(sys.argv[3])
from logdna_client import LogDNAHandler, _native
assert _native.speedups is not None, "the build did not load"
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
options = dict(key="k", url=f"http://127.0.0.1:{port}/logs/ingest", hostname="bench",
               app="bench", flush_interval=3600, max_batch_bytes=8 << 20,
               max_buffer_bytes=1 << 40, shutdown_timeout=0)
handler = LogDNAHandler(**options)
client = handler.client
loggers = {}
for label, h in (("floor", logging.NullHandler()), ("ours", handler)):
    log = logging.getLogger("ablate." + label)
    log.handlers[:] = [h]; log.propagate = False; log.setLevel(logging.INFO)
    log.info("warm up"); log.info("warm up")
    loggers[label] = log
import structlog
from logdna_client.structlog import LogDNAProcessor
def bound(processors):
    structlog.configure(processors=processors,
                        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
                        logger_factory=structlog.ReturnLoggerFactory(),
                        cache_logger_on_first_use=False)
    return structlog.get_logger("bench").bind()
events = {"floor": bound([]), "ours": bound([LogDNAProcessor(client=client)])}
extra = {"user_id": 42, "path": "/api/v1/items", "method": "GET", "status": 200, "bytes": 5120}
workloads = {
    "plain": ("f('request %s served in %d ms', i, i % 997)", loggers, None),
    "extra": ("f('request %s served in %d ms', i, i % 997, extra=x)", loggers, extra),
    "kv": ("f('user=%s status=%d', i, i % 997)", loggers, None),
    "structlog": ("f('request %s served in %d ms', i, i % 997)", events, None),
}
result = {}
for name, (call, targets, x) in workloads.items():
    best = dict.fromkeys(targets, float("inf"))
    for _ in range(reps):
        for label, target in targets.items():
            buffer = client._buffer
            with buffer._lock:
                buffer.entries.clear()
                buffer.queued_bytes = 0
            seconds = timeit.timeit("for i in r: " + call, number=1,
                                    globals={"f": target.info, "r": range(lines), "x": x})
            best[label] = min(best[label], seconds / lines * 1e9)
    result[name] = [best["floor"], best["ours"]]
print(json.dumps(result))
client.close(timeout=0)
"""


def _functions(source: str) -> dict[str, int]:
    """Each top-level C function's name -> its lines (from the return type to the brace)."""
    sizes: dict[str, int] = {}
    for match in re.finditer(r"^static [^\n;]+\n(\w+)\((?:.|\n)*?^\}\n", source, re.M):
        sizes[match.group(1)] = match.group(0).count("\n")
    return sizes


def _variants(original: str) -> dict[str, str]:
    """The C source as shipped, and with each of ``PARTS`` switched off."""
    sizes = _functions(original)
    variants: dict[str, str] = {"as shipped": original}
    for label, (names, edits) in PARTS.items():
        source = original
        for old, new in edits:
            if source.count(old) != 1:
                raise SystemExit(f"ablate_speedups.py is out of date: {old!r} is not in "
                                 f"_speedups.c once")  # fmt: skip
            source = source.replace(old, new)
        for name in names:
            if name not in sizes or f"{name}(" in source.replace(f"\n{name}(", ""):
                raise SystemExit(f"ablate_speedups.py is out of date: {name} is not a "
                                 f"function that only {label!r} uses")  # fmt: skip
        variants[f"without {label}"] = source
    return variants


def _build(source: str, into: Path) -> None:
    """The package copied to ``into`` with the extension built from ``source``."""
    shutil.copytree(ROOT / "logdna_client", into / "logdna_client",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd"))  # fmt: skip
    (into / "logdna_client" / "_speedups.c").write_text(source)
    setup = (
        "from setuptools import Extension, setup; "
        "setup(name='ablate', ext_modules=[Extension('logdna_client._speedups', "
        "['logdna_client/_speedups.c'])])"
    )
    built = subprocess.run(
        [sys.executable, "-c", setup, "-q", "build_ext", "--inplace"],
        check=False, cwd=into, capture_output=True, text=True,
    )  # fmt: skip
    if built.returncode != 0:  # (a part switched off leaves unused functions: warnings)
        raise SystemExit(f"the build in {into} failed:\n{built.stderr}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lines", type=int, default=20_000)
    args = parser.parse_args()

    original = SOURCE.read_text()
    sizes = _functions(original)
    variants = _variants(original)

    with tempfile.TemporaryDirectory(prefix="ablate-speedups-") as tmp:
        folders: dict[str, Path] = {}
        for i, (label, source) in enumerate(variants.items()):
            folders[label] = Path(tmp) / str(i)
            _build(source, folders[label])
        best: dict[str, dict[str, list[float]]] = {}
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        env.pop("LOGDNA_CLIENT_PURE_PYTHON", None)
        for _ in range(args.rounds):
            for label, folder in folders.items():
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, str(folder), str(args.lines), str(args.reps)],
                    env=env, check=True, capture_output=True, text=True,
                ).stdout  # fmt: skip
                for workload, (floor, ours) in json.loads(out.splitlines()[-1]).items():
                    kept = best.setdefault(label, {}).setdefault(workload, [floor, ours])
                    kept[0], kept[1] = min(kept[0], floor), min(kept[1], ours)

    workloads = list(best["as shipped"])
    python = sys.version.split()[0]
    print(f"_speedups.c: {original.count(chr(10)):,} lines. Added ns per call over the floor "
          f"(and x floor), best of {args.reps} x {args.rounds}, Python {python}:\n")  # fmt: skip
    print(f"{'':76s} {'C lines':>7s} " + " ".join(f"{w:>16s}" for w in workloads))
    for label, figures in best.items():
        names = PARTS[label.removeprefix("without ")][0] if label != "as shipped" else ()
        lines = sum(sizes.get(name, 0) for name in names)
        cells = " ".join(
            f"{ours - floor:7.0f} ({ours / floor:.2f}x)" for floor, ours in figures.values()
        )
        print(f"{label[:76]:76s} {lines or '':>7} {cells}")
    print("\nA part is worth its lines where the row without it adds more than noise "
          "(about +-40 ns) to a workload it serves.")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
