"""The disk spool's costs: sender-side throughput, bytes on disk per line, replay memory.

    python benchmarks/spool.py [--backlog-mib 1024] [--folder DIR]

Prints, for lines shaped like the library's (about 150 bytes of JSON each):

- fdatasync cost on this disk (what the "interval" choice rests on);
- append + ack throughput in lines/s, per sync mode and batch size (the
  sender's side: write before sending, mark done after the 2xx);
- bytes the spool writes per line, against the line's serialized size and
  its gzipped size on the wire;
- replay of a backlog (1 GiB by default) written by one process and read
  back by another: throughput and the reader's peak RSS before and after.

The folder defaults to a temporary one beside this file's repository (on the
same disk as the project, not a tmpfs) and is deleted afterwards.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from logdna_client._sender import gzip_entries
from logdna_client._spool import Spool


def make_entries(start: int, count: int) -> list[bytes]:
    """Entries as the sender queues them: a comma, then a line like the handler's."""
    return [
        b","
        + orjson.dumps(
            {
                "line": f"request {i} served in {i % 997} ms",
                "timestamp": 1_764_800_000_000 + i,
                "level": "INFO",
                "app": "api",
                "env": "production",
                "meta": {"logger": "bench", "path": "/orders/42", "status": 200},
            }
        )
        for i in range(start, start + count)
    ]


def fdatasync_cost(folder: str, rounds: int = 200) -> float:
    fd, path = tempfile.mkstemp(dir=folder)
    try:
        chunk = b"x" * 64 * 1024
        started = time.perf_counter()
        for _ in range(rounds):
            os.write(fd, chunk)
            os.fdatasync(fd)
        return (time.perf_counter() - started) / rounds
    finally:
        os.close(fd)
        os.unlink(path)


def throughput(folder: str, mode: str, per_batch: int, total: int) -> tuple[float, int]:
    """Lines per second through append + ack; and bytes written."""
    spool = Spool.open(os.path.join(folder, f"tp-{mode}-{per_batch}"), sync=mode)  # type: ignore[arg-type]
    batches = [make_entries(i, per_batch) for i in range(0, total, per_batch)]
    started = time.perf_counter()
    for batch in batches:
        batch_id = spool.append(batch)
        assert batch_id is not None
        spool.tick()
        spool.ack(batch_id)
    spool.close()
    elapsed = time.perf_counter() - started
    return total / elapsed, spool.written


_BACKLOG = textwrap.dedent(
    """
    import os, sys, time

    def peak_rss_kib():
        # VmHWM, not ru_maxrss: that one starts at the forking parent's peak.
        with open("/proc/self/status") as fh:
            return next(int(l.split()[1]) for l in fh if l.startswith("VmHWM:"))

    sys.path.insert(0, sys.argv[1])
    from benchmarks.spool import make_entries
    from logdna_client._spool import Spool
    folder, mode, total = sys.argv[2], sys.argv[3], int(sys.argv[4])
    spool = Spool.open(folder, max_bytes=1 << 50, sync="none")
    before = peak_rss_kib()
    started = time.perf_counter()
    count = 0
    if mode == "write":
        template = make_entries(0, 10_000)
        while count < total:
            spool.append(template)
            count += len(template)
        spool.forget_after_fork()  # as if killed: nothing acked
    else:
        while (batch := spool.next_replay_batch(2 << 20)) is not None:
            count += len(batch.entries)
            spool.ack(batch.id)
        spool.close()
    elapsed = time.perf_counter() - started
    after = peak_rss_kib()
    print(count, elapsed, before, after)
    """
)


def backlog(folder: str, mib: int) -> None:
    path = os.path.join(folder, "backlog")
    line_bytes = sum(map(len, make_entries(0, 1000))) / 1000
    total = int(mib * 1024 * 1024 / (line_bytes + 4)) // 10_000 * 10_000
    root = str(Path(__file__).resolve().parent.parent)
    run = [sys.executable, "-c", _BACKLOG, root, path]
    for mode in ("write", "replay"):
        out = subprocess.run([*run, mode, str(total)], check=True, capture_output=True, text=True)
        count, elapsed, before, after = out.stdout.split()
        on_disk = sum(f.stat().st_size for f in Path(path).glob("seg-*.spool"))
        size = f", {on_disk / 2**20:.0f} MiB on disk" if mode == "write" else ""
        print(
            f"  {mode:<6} {int(count):>10,} lines in {float(elapsed):6.2f} s = "
            f"{int(count) / float(elapsed):>10,.0f} lines/s, "
            f"{int(count) * line_bytes / float(elapsed) / 2**20:6.0f} MiB/s of lines{size}; "
            f"peak RSS {int(before) / 1024:.0f} MiB -> {int(after) / 1024:.0f} MiB"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backlog-mib", type=int, default=1024)
    parser.add_argument("--lines", type=int, default=400_000, help="per throughput run")
    parser.add_argument("--folder", help="where to write (default: a temporary folder)")
    args = parser.parse_args()
    base = args.folder or str(Path(__file__).resolve().parent.parent)
    folder = tempfile.mkdtemp(prefix=".spool-bench-", dir=base)
    try:
        entries = make_entries(0, 10_000)
        line_bytes = sum(map(len, entries)) / len(entries)
        wire = len(gzip_entries(entries)) / len(entries)
        print(f"lines: {line_bytes:.0f} bytes serialized, {wire:.1f} bytes gzipped on the wire")
        print(f"fdatasync of 64 KiB: {fdatasync_cost(folder) * 1000:.2f} ms")
        print("append + ack (the sender's side), lines/s and bytes written per line:")
        for per_batch in (100, 2_000, 13_000):  # 13,000 of these lines are a 2 MiB batch
            for mode in ("none", "interval", "always"):
                rate, written = throughput(folder, mode, per_batch, args.lines)
                per_line = written / args.lines
                print(
                    f"  {per_batch:>6} lines/batch  sync={mode:<8} {rate:>10,.0f} lines/s  "
                    f"{per_line:6.1f} B/line written ({per_line / line_bytes:.3f}x serialized, "
                    f"{per_line / wire:.1f}x wire)"
                )
        print(f"backlog of {args.backlog_mib} MiB, written by one process, replayed by another:")
        backlog(folder, args.backlog_mib)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
