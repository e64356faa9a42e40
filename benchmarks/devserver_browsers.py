"""Devserver ingestion throughput with browsers on its live tail page, and without.

The page must never slow ingestion down: a browser only costs the server a
reference per batch in its queue, and its own thread to write events. This
measures lines accepted per second by a devserver (its own process, lines
counted, not kept, no terminal tail unless --tail) from one sender process
posting gzip batches over keep-alive, alternating runs with no browser and
runs with N headless Chromium instances (separate processes, one tab each)
showing the page. Chromium runs on the same machine and competes for its CPU.
Each run also reports the server process's CPU time per line (all its threads),
which other load on the machine disturbs far less than wall-clock throughput.

The server is first warmed up until it holds as many request records as it
keeps (10,000 requests): until then each run finds it slower than the last
(its collector scans more records), which would count against whichever
configuration runs second. Rounds also alternate which one runs first.

    python benchmarks/devserver_browsers.py [--browsers 3] [--rounds 5] [--lines 1000000]

Prints one row per run, the median of each round's ratio and the ratio of the
median CPU per line; writes benchmarks/results/devserver_browsers.json
(devserver_readers.json with --readers).
Needs Chromium (apt-get install chromium).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import http.client
import multiprocessing
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from logdna_client.devserver import DevServer  # noqa: E402
from logdna_client.devserver._store import _KEPT_RECORDS_WITHOUT_LINES  # noqa: E402
from tests._cdp import Browser, Page, browser  # noqa: E402

RESULTS = REPO_ROOT / "benchmarks" / "results"
BATCH_LINES = 500
TIMEOUT = 120.0


def server_main(conn: Any, tail: bool) -> None:
    """The devserver under test, in its own process; answers the parent's questions."""
    # A tail that formats every line, written nowhere.
    out = open(os.devnull, "w") if tail else None  # noqa: SIM115 - lives as long as the process
    server = DevServer(keep_lines=False, timeout=60.0, out=out, color=False).start()
    conn.send(server.url)
    try:
        while True:
            cmd, *args = conn.recv()
            if cmd == "wait_lines":
                conn.send(server.wait_for_lines(args[0], TIMEOUT))
            elif cmd == "wait_clients":
                conn.send(server.wait_for_page_clients(args[0], TIMEOUT))
            elif cmd == "count":
                conn.send(server.line_count)
            elif cmd == "cpu":
                conn.send(time.process_time())  # every thread of the server process
            elif cmd == "stop":
                break
    except EOFError:
        pass
    finally:
        server.stop()


def make_body(first: int) -> bytes:
    """One gzip batch as the library sends it: message, level, app, timestamp, meta."""
    levels = ("INFO", "INFO", "INFO", "DEBUG", "WARNING", "ERROR")
    lines = [
        {
            "line": f"request {i} served in {i % 997} ms",
            "level": levels[i % len(levels)],
            "app": "bench",
            "env": "local",
            "timestamp": 1_732_280_000_000 + i,
            "meta": {"user_id": i, "path": "/api/v1/items", "status": 200},
        }
        for i in range(first, first + BATCH_LINES)
    ]
    return gzip.compress(orjson.dumps({"lines": lines}), compresslevel=1)


def sender_main(url: str, n_batches: int, bodies: list[bytes], conn: Any) -> None:
    """POST ``n_batches`` bodies over one keep-alive connection, as fast as answered."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT)
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    path = f"{parts.path}?hostname=bench&tags=a,b"
    conn.recv()  # go
    for i in range(n_batches):
        connection.request("POST", path, body=bodies[i % len(bodies)], headers=headers)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"status {response.status}")
    connection.close()
    conn.send("done")


def one_run(server: Any, url: str, n_lines: int, bodies: list[bytes]) -> tuple[float, float]:
    """Lines per second from the first POST until the server holds every line, and
    the server's CPU time per line in microseconds."""
    before = ask(server, "count")
    cpu = ask(server, "cpu")
    parent, child = multiprocessing.Pipe()
    sender = multiprocessing.Process(
        target=sender_main, args=(url, n_lines // BATCH_LINES, bodies, child)
    )
    sender.start()
    started = time.perf_counter()
    parent.send("go")
    if not ask(server, "wait_lines", before + n_lines):
        raise RuntimeError("the lines did not arrive")
    elapsed = time.perf_counter() - started
    cpu = ask(server, "cpu") - cpu
    parent.recv()
    sender.join()
    return n_lines / elapsed, cpu / n_lines * 1e6


def browser_cpu(browsers: list[Browser]) -> float:
    """CPU seconds used so far by every process of these browsers (Linux /proc)."""
    profiles = [b.profile for b in browsers]
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_text()
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if any(profile in cmdline for profile in profiles):
            fields = stat.rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def settle(browsers: list[Browser]) -> None:
    """Wait until the browsers are idle (a navigation's work is not the run's)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        before = browser_cpu(browsers)
        time.sleep(0.5)
        if browser_cpu(browsers) - before < 0.05:
            return


def readers_main(events_url: str, n: int, conn: Any) -> None:
    """``n`` event streams read and thrown away, until told to stop: what the server
    pays for its pages, without any browser's own work on the machine."""
    import socket
    from urllib.parse import urlsplit as split

    parts = split(events_url)
    socks = []
    for _ in range(n):
        sock = socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT)
        sock.sendall(f"GET /events HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
        socks.append(sock)
    stop = threading.Event()

    def drain(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while not stop.is_set() and sock.recv(65536):
                pass

    threads = [threading.Thread(target=drain, args=(sock,), daemon=True) for sock in socks]
    for thread in threads:
        thread.start()
    conn.recv()
    stop.set()
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


class Readers:
    """Attaches and detaches plain event-stream readers (``--readers``)."""

    def __init__(self, events_url: str, n: int) -> None:
        self.events_url, self.n = events_url, n
        self._proc: Any = None
        self._conn: Any = None

    def attach(self, on: bool) -> None:
        if self._proc is not None:
            self._conn.send("stop")
            self._proc.join(10)
            self._proc = None
        if on:
            self._conn, child = multiprocessing.Pipe()
            self._proc = multiprocessing.Process(
                target=readers_main, args=(self.events_url, self.n, child), daemon=True
            )
            self._proc.start()


def ask(server: Any, *message: Any) -> Any:
    server.send(message)
    return server.recv()


def attach(pages: list[Page], url: str | None) -> None:
    """Point every tab at the page (or away from it), then let them settle:
    loading and drawing the backlog must not count against the run."""
    for page in pages:
        if url is None:
            page.call("Page.navigate", url="about:blank")
        else:
            page.navigate(url)
    for page in pages:
        if url is not None:
            page.wait_for("document.body.dataset.state === 'live'")
        page.evaluate(
            "new Promise(done => requestAnimationFrame(() => requestAnimationFrame("
            "() => requestIdleCallback(done, {timeout: 2000}))))"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--browsers", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lines", type=int, default=1_000_000, help="lines per run")
    parser.add_argument("--tail", action="store_true", help="the server also formats a tail")
    parser.add_argument(
        "--readers",
        action="store_true",
        help="attach plain event-stream readers instead of browsers (the server's own cost)",
    )
    args = parser.parse_args()

    bodies = [make_body(i * BATCH_LINES) for i in range(20)]
    server, child = multiprocessing.Pipe()
    proc = multiprocessing.Process(target=server_main, args=(child, args.tail), daemon=True)
    proc.start()
    url = server.recv()
    page_url = url.rsplit("/logs/ingest", 1)[0] + "/"
    attached = f"{args.browsers} {'readers' if args.readers else 'browsers'}"
    runs: dict[str, list[float]] = {"none": [], attached: []}
    browser_share: dict[str, list[float]] = {label: [] for label in runs}
    server_cpu: dict[str, list[float]] = {label: [] for label in runs}
    with contextlib.ExitStack() as stack:
        browsers: list[Browser] = [
            stack.enter_context(browser(TIMEOUT))
            for _ in range(0 if args.readers else args.browsers)
        ]
        pages = [b.new_page() for b in browsers]
        readers = Readers(page_url + "events", args.browsers)
        stack.callback(readers.attach, False)
        # Warm up: connections, allocators, and the server's records at their bound.
        one_run(
            server, url, max(args.lines // 4, _KEPT_RECORDS_WITHOUT_LINES * BATCH_LINES), bodies
        )
        configurations = [("none", None, 0), (attached, page_url, args.browsers)]
        for round_no in range(args.rounds):
            for label, target, clients in configurations[:: 1 if round_no % 2 == 0 else -1]:
                attach(pages, target)
                readers.attach(args.readers and target is not None)
                if not ask(server, "wait_clients", clients):
                    raise RuntimeError(f"expected {clients} page clients")
                settle(browsers)
                cpu = browser_cpu(browsers)
                started = time.perf_counter()
                rate, server_us = one_run(server, url, args.lines, bodies)
                share = (browser_cpu(browsers) - cpu) / (time.perf_counter() - started)
                runs[label].append(rate)
                server_cpu[label].append(server_us)
                browser_share[label].append(share)
                print(
                    f"round {round_no + 1}: {label:<12} {rate:>10,.0f} lines/s"
                    f"   server CPU {server_us:.2f} us/line"
                    f"   browsers used {share:.0%} of a CPU",
                    flush=True,
                )
        if pages:
            shown = pages[0].evaluate("document.getElementById('status').textContent")
            print(f"a page's status after the runs: {shown}")
        for page in pages:
            page.close()
    server.send(("stop",))
    proc.join(10)

    medians = {label: statistics.median(rates) for label, rates in runs.items()}
    cpu_medians = {label: statistics.median(us) for label, us in server_cpu.items()}
    # Each round's two runs ran back to back: their ratio is less exposed to
    # the machine's other load than the ratio of the medians.
    ratio = statistics.median(b / a for a, b in zip(runs["none"], runs[attached], strict=True))
    cpu_ratio = cpu_medians[attached] / cpu_medians["none"]
    print()
    for label, median in medians.items():
        print(
            f"median {label:<12} {median:>10,.0f} lines/s"
            f"   server CPU {cpu_medians[label]:.2f} us/line"
        )
    print(f"throughput, {attached} / none, median of rounds: {ratio:.3f} ({(ratio - 1):+.1%})")
    print(f"server CPU per line, {attached} / none: {cpu_ratio:.3f} ({(cpu_ratio - 1):+.1%})")
    results = RESULTS / ("devserver_readers.json" if args.readers else "devserver_browsers.json")
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_bytes(
        orjson.dumps(
            {
                "runs": runs,
                "browser_cpu_share": browser_share,
                "medians": medians,
                "ratio": ratio,
                "server_cpu_us_per_line": server_cpu,
                "server_cpu_ratio": cpu_ratio,
                "lines_per_run": args.lines,
                "batch_lines": BATCH_LINES,
                "tail": args.tail,
                "attached": attached,
                "python": platform.python_version(),
                "machine": platform.machine(),
                "cpus": multiprocessing.cpu_count(),
            },
            option=orjson.OPT_INDENT_2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
