"""End-to-end: real sockets, real processes, the local devserver as the service."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from logdna_client import LogDNAHandler
from logdna_client._devserver import DevServer
from tests._children import Child, losses_said
from tests.helpers import make_logger

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(
    code: str, url: str, timeout: float = 60, path: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with LOGDNA_URL pointing at ``url``
    (from a file at ``path`` when given: spawned children re-import their main module)."""
    full_env = dict(os.environ, LOGDNA_URL=url, PYTHONPATH=REPO, **env)
    if path is not None:
        with open(path, "w") as fh:
            fh.write(textwrap.dedent(code))
    return subprocess.run(
        [sys.executable, *([path] if path else ["-c", textwrap.dedent(code)])],
        env=full_env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


class TestThroughput:
    def test_100k_lines_arrive_in_order_gzipped_over_few_connections(self) -> None:
        """100,000 lines logged in a tight loop all arrive, in order, gzip-compressed,
        over at most a few TCP connections."""
        with DevServer(keep_lines=True) as server:
            h = LogDNAHandler(url=server.url, hostname="bulk")
            log = make_logger("t.bulk", h)
            for i in range(100_000):
                log.info("request %s served in %d ms", i, i % 997)
            assert h.client.flush(60)
            assert server.wait_for_lines(100_000, 30)
            lines = server.lines
            assert [f"request {i} served in {i % 997} ms" for i in range(100_000)] == [
                x["line"] for x in lines
            ]
            requests = server.requests
            assert all(r.gzip for r in requests)
            assert server.connections <= 3
            assert all(r.body_bytes < 10_000_000 for r in requests)
            stats = h.client.stats()
            assert 100_000 == stats["sent"]
            assert 0 == stats["dropped_total"]
            h.close()


class TestProcessExit:
    def test_script_that_never_closes_still_delivers(self, server: DevServer) -> None:
        """A script that calls neither close() nor logging.shutdown() delivers everything."""
        result = run_script(
            """
            import logging
            from logdna_client import LogDNAHandler
            log = logging.getLogger("app")
            log.addHandler(LogDNAHandler(flush_interval=30))
            log.setLevel(logging.INFO)
            for i in range(500):
                log.info("line %d", i)
            """,
            server.url,
        )
        assert 0 == result.returncode, result.stderr
        assert server.wait_for_lines(500, 10)
        assert [f"line {i}" for i in range(500)] == [x["line"] for x in server.lines]

    def test_dead_service_exit_within_deadline_and_loss_reported(self) -> None:
        """With nothing listening, the process exits within shutdown_timeout and says so."""
        with DevServer() as srv:
            url = srv.url
            srv.go_down()
            child = Child(
                """
                log.warning("nobody hears this")
                mark("logged")
                """,
                url,
                shutdown_timeout="1.5",
            )
            child.expect("logged")
            # Timed from the end of the script, not from the start of an interpreter
            # (1.5 s and more of the budget on a loaded machine).
            started = time.monotonic()
            code, _ = child.finish()
            elapsed = time.monotonic() - started
        assert 0 == code, child.stderr
        assert elapsed < 1.5 + 4.0, f"exit took {elapsed:.1f} s"
        assert 1 in losses_said(child.stderr), child.stderr
        assert "" == child.stdout

    def test_dictconfig_replacing_the_handler_loses_nothing(self, server: DevServer) -> None:
        """A second dictConfig() closes the old handler under logging's lock: no hang, no loss."""
        result = run_script(
            """
            import logging, logging.config, os
            cfg = {"version": 1, "disable_existing_loggers": False,
                   "handlers": {"dna": {"class": "logdna_client.LogDNAHandler",
                   "url": os.environ["LOGDNA_URL"], "flush_interval": "30"}},
                   "root": {"handlers": ["dna"], "level": "DEBUG"}}
            logging.config.dictConfig(cfg)
            for i in range(300):
                logging.getLogger("a").info("first %d", i)
            logging.config.dictConfig(cfg)
            for i in range(300):
                logging.getLogger("a").info("second %d", i)
            """,
            server.url,
        )
        assert 0 == result.returncode, result.stderr
        assert server.wait_for_lines(600, 15)
        texts = sorted(x["line"] for x in server.lines)
        expected = sorted([f"first {i}" for i in range(300)] + [f"second {i}" for i in range(300)])
        assert expected == texts


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
class TestFork:
    def test_children_ship_their_own_lines_and_never_the_parents(self, server: DevServer) -> None:
        """After fork, each of three children sends only what it logged; the parent's lines
        arrive exactly once."""
        result = run_script(
            """
            import logging, os
            from logdna_client import LogDNAHandler
            log = logging.getLogger("app")
            log.addHandler(LogDNAHandler(flush_interval=30))
            log.setLevel(logging.INFO)
            for i in range(100):
                log.info("parent before %d", i)
            pids = []
            for c in range(3):
                pid = os.fork()
                if pid == 0:
                    for i in range(50):
                        log.info("child %d line %d", c, i)
                    log.handlers[0].client.flush(10)
                    os._exit(0)
                pids.append(pid)
            for pid in pids:
                os.waitpid(pid, 0)
            log.info("parent after")
            """,
            server.url,
        )
        assert 0 == result.returncode, result.stderr
        assert server.wait_for_lines(100 + 150 + 1, 15)
        texts = [x["line"] for x in server.lines]
        assert 251 == len(texts)
        assert [f"parent before {i}" for i in range(100)] == [t for t in texts if "before" in t]
        for c in range(3):
            assert [f"child {c} line {i}" for i in range(50)] == [
                t for t in texts if t.startswith(f"child {c} ")
            ]

    def test_multiprocessing_child_delivers_without_close(self, server: DevServer) -> None:
        """A multiprocessing (fork) child, which ends with os._exit, still delivers its lines."""
        result = run_script(
            """
            import logging, multiprocessing
            from logdna_client import LogDNAHandler
            log = logging.getLogger("app")
            log.addHandler(LogDNAHandler(flush_interval=30))
            log.setLevel(logging.INFO)

            def work(n):
                for i in range(20):
                    log.info("worker %d line %d", n, i)

            if __name__ == "__main__":
                ctx = multiprocessing.get_context("fork")
                procs = [ctx.Process(target=work, args=(n,)) for n in range(3)]
                for p in procs: p.start()
                for p in procs: p.join()
            """,
            server.url,
        )
        assert 0 == result.returncode, result.stderr
        assert server.wait_for_lines(60, 15)
        assert 60 == len(server.lines)

    @pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
    def test_client_built_inside_a_multiprocessing_child_delivers(
        self, server: DevServer, method: str, tmp_path: Path
    ) -> None:
        """A handler created in the child's own target (not inherited) delivers its lines,
        though fork and forkserver children end with os._exit and skip atexit."""
        result = run_script(
            f"""
            import logging, multiprocessing, os

            def work():
                from logdna_client import LogDNAHandler
                log = logging.getLogger("child")
                log.addHandler(LogDNAHandler(flush_interval=30))
                log.setLevel(logging.INFO)
                for i in range(10):
                    log.info("child line %d", i)

            if __name__ == "__main__":
                ctx = multiprocessing.get_context("{method}")
                p = ctx.Process(target=work)
                p.start()
                p.join()
            """,
            server.url,
            path=str(tmp_path / "mp_child.py"),
        )
        assert 0 == result.returncode, result.stderr
        assert server.wait_for_lines(10, 15)
        assert [f"child line {i}" for i in range(10)] == [x["line"] for x in server.lines]
