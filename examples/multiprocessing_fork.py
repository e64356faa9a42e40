"""Forked workers (multiprocessing, gunicorn, Celery prefork) each ship their own lines.

The handler is configured once in the parent. After fork() each child gets a
fresh sender and buffer: it never re-sends the parent's lines, and what it
logs is delivered before it exits, even though multiprocessing children end
with os._exit and skip atexit.

    python -m logdna_client devserver
    LOGDNA_URL=http://127.0.0.1:7080/logs/ingest python examples/multiprocessing_fork.py
"""

import logging
import multiprocessing
import os

from logdna_client import LogDNAHandler

root = logging.getLogger()
root.setLevel(logging.INFO)
root.addHandler(LogDNAHandler(app="forking"))
log = logging.getLogger("jobs")


def work(worker: int) -> None:
    for job in range(3):
        log.info("worker %d finished job %d", worker, job, extra={"pid": os.getpid()})


if __name__ == "__main__":
    log.info("parent starting 3 workers")
    ctx = multiprocessing.get_context("fork")  # gunicorn-style pre-fork (POSIX only)
    workers = [ctx.Process(target=work, args=(n,)) for n in range(1, 4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join()
    log.info("parent done", extra={"exit_codes": [p.exitcode for p in workers]})
