"""How often redaction alters ordinary log lines that nobody here wrote.

    .venv/bin/python benchmarks/false_positives.py [FILE ...] [--show 20]

Reads log files line by line (gzip too) and counts the lines that default
redaction (key=value secrets, Authorization/Cookie headers, AWS key ids,
passwords in URLs, JWTs) changes, then the same with every preset on (cards,
SSNs, emails, phones, bearer tokens). Without FILEs it uses logs that real
programs wrote on a Debian machine: gdb's test-suite log and OpenJDK's jtreg
output (shipped in /usr/share/doc by their packages), and dpkg's and apt's own
logs. Altered lines are printed (``--show``) so each can be judged a true or
a false positive. Also times redacting that text in 128 KB lines.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from logdna_client._redact import Redactor

DEFAULT_FILES = (
    "/usr/share/doc/gdb/check.log.gz",
    "/usr/share/doc/openjdk-17-jre-headless/test-amd64/jtreg_output-hotspot.log.gz",
    "/var/log/dpkg.log",
    "/var/log/apt/term.log",
)
CHUNK = 128 * 1024


def read_lines(path: Path) -> list[str]:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    return [line for line in raw.decode("utf-8", "replace").splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*")
    parser.add_argument("--show", type=int, default=20)
    args = parser.parse_args()
    paths = [Path(f) for f in (args.files or DEFAULT_FILES) if Path(f).exists()]
    if not paths:
        sys.exit("no log files found: name some")
    redactors = {
        "default": Redactor(max_chars=CHUNK),
        "every preset": Redactor(patterns=["phi", "bearer"], max_chars=CHUNK),
    }
    corpus: list[str] = []
    print(f"{'file':<78}{'lines':>8}{'default':>10}{'every preset':>15}")
    altered_default: list[str] = []
    for path in paths:
        lines = read_lines(path)
        corpus += lines
        counts = []
        for name, redactor in redactors.items():
            changed = [line for line in lines if redactor.text(line) != line]
            counts.append(len(changed))
            if name == "default":
                altered_default += changed
        print(f"{path!s:<78}{len(lines):>8}"
              f"{counts[0]:>10}{counts[1]:>15}")  # fmt: skip
    total = len(corpus)
    for name, redactor in redactors.items():
        changed = sum(1 for line in corpus if redactor.text(line) != line)
        print(f"{name}: {changed} of {total} lines altered ({changed / total:.4%})")
    if args.show:
        print(f"\nLines default redaction altered (first {args.show}), as redacted:")
        for line in altered_default[: args.show]:
            print("  " + redactors["default"].text(line)[:160])
    text = "\n".join(corpus)
    chunks = [text[i : i + CHUNK] for i in range(0, len(text) - CHUNK + 1, CHUNK)][:50]
    for name, redactor in redactors.items():
        best = []
        for chunk in chunks:
            runs = []
            for _ in range(3):  # best of 3: noise only ever adds
                started = time.perf_counter()
                redactor.text(chunk)
                runs.append(time.perf_counter() - started)
            best.append(min(runs))
        best.sort()
        print(f"{name}: a 128 KB line of this text, median {best[len(best) // 2] * 1e3:.2f} ms, "
              f"worst {best[-1] * 1e3:.2f} ms ({len(chunks)} lines)")  # fmt: skip


if __name__ == "__main__":
    main()
