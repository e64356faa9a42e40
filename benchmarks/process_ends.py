"""What happens to buffered lines for every way a process can end, measured.

Each case runs a child interpreter that logs 1,000 lines through a
LogDNAHandler whose sender would not send them on its own for a minute
(``flush_interval=60``), then ends the way the case says. The local devserver
counts what arrived. Prints one row per case: lines delivered, the exit
status, and how long the end took; docs/delivery.md's table comes from it.

    python benchmarks/process_ends.py
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

from logdna_client._devserver import DevServer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINES = 1000

SETUP = """
import logging, os, sys, signal, multiprocessing
from logdna_client import LogDNAHandler
handler = LogDNAHandler(url=os.environ["LOGDNA_URL"], hostname="ends",
                        flush_interval=60, shutdown_timeout=5)
log = logging.getLogger("ends")
log.addHandler(handler)
log.setLevel(logging.INFO)
log.propagate = False

def burst(tag="main"):
    for i in range(LINES):
        log.info("%s line %d", tag, i)
""".replace("LINES", str(LINES))

# case name -> (code after SETUP, signal the parent sends once the child says "ready")
CASES: dict[str, tuple[str, int | None]] = {
    "return from main": ("burst()", None),
    "uncaught exception": ("burst()\nraise RuntimeError('boom')", None),
    "sys.exit(3)": ("burst()\nsys.exit(3)", None),
    "SIGINT (Ctrl-C)": (
        "burst()\nsys.stderr.write('ready\\n'); sys.stderr.flush()\nsys.stdin.read()",
        signal.SIGINT,
    ),
    "SIGTERM": (
        "burst()\nsys.stderr.write('ready\\n'); sys.stderr.flush()\nsys.stdin.read()",
        signal.SIGTERM,
    ),
    "SIGHUP": (
        "burst()\nsys.stderr.write('ready\\n'); sys.stderr.flush()\nsys.stdin.read()",
        signal.SIGHUP,
    ),
    "Pool terminate (with Pool(4), fork)": (
        textwrap.dedent(
            """
            def work(t):
                for i in range(QUARTER):
                    log.info("worker %d line %d", t, i)
            if __name__ == "__main__":
                with multiprocessing.get_context("fork").Pool(4) as pool:
                    pool.map(work, range(4))
            """
        ).replace("QUARTER", str(LINES // 4)),
        None,
    ),
    "fork in a thread; the child's thread returns": (
        textwrap.dedent(
            """
            import threading
            def work():
                pid = os.fork()
                if pid == 0:
                    burst("child")
                    return  # the child's last thread of the application's ends
                _, status = os.waitpid(pid, 0)
                os._exit(os.waitstatus_to_exitcode(status))  # the child's status is ours
            threading.Thread(target=work).start()
            """
        ),
        None,
    ),
    "os._exit(0)": ("burst()\nos._exit(0)", None),
    "SIGKILL (kill -9; also the kernel's OOM killer)": (
        "burst()\nsys.stderr.write('ready\\n'); sys.stderr.flush()\nsys.stdin.read()",
        signal.SIGKILL,
    ),
    "MemoryError (address-space limit hit)": (
        "import resource\nburst()\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "hog = [bytearray(1 << 20) for _ in range(4096)]",
        None,
    ),
}


def run_case(server: DevServer, code: str, signum: int | None) -> tuple[int, int, float]:
    server.clear()
    with tempfile.TemporaryDirectory() as folder:
        script = os.path.join(folder, "app.py")
        with open(script, "w") as fh:
            fh.write(SETUP + "\n" + code + "\n")
        env = dict(os.environ, LOGDNA_URL=server.url, PYTHONPATH=REPO)
        env.pop("LOGDNA_INGESTION_KEY", None)
        proc = subprocess.Popen(
            [sys.executable, script], env=env, cwd=folder,
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert proc.stderr is not None
        began = time.monotonic()
        if signum is not None:
            assert proc.stderr.readline().strip() == b"ready"
            began = time.monotonic()
            proc.send_signal(signum)
        status = proc.wait(60)
        took = time.monotonic() - began
        proc.stderr.read()
    server.wait_for_lines(LINES, 2)  # what arrived arrived before the process ended
    return server.line_count, status, took


def main() -> None:
    with DevServer() as server:
        print(f"{'how the process ends':48} {'delivered':>10} {'status':>7} {'end took':>9}")
        for name, (code, signum) in CASES.items():
            delivered, status, took = run_case(server, code, signum)
            print(f"{name:48} {delivered:>5}/{LINES:<4} {status:>7} {took:>8.2f}s")


if __name__ == "__main__":
    main()
