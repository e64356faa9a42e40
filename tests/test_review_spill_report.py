"""Review of the exit's loss report with the spool on: the lines it says were not delivered
and the lines the next process adopts from the spool add up to the lines logged.

A close (``aclose()``, ``close()``, or none: the exit hook's) whose spill to a slow disk
outlasts its deadline leaves the sender writing memory to the spool after the close
returned. The exit hook then waited a moment, counted the lines not on disk yet and said
that many were not delivered, while the sender went on writing until the interpreter
stopped its thread: the batch it was writing as the count was taken (and any after it)
reached the disk too, and the next process adopted lines the report had counted lost
(182 adopted + 1832 said for 2000 logged).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from logdna_client._spool._inspect import inspect_segment, segment_paths
from tests._children import REPO, losses_said
from tests._claims_servers import Request, scripted_server
from tests._slow_disk import SLOW_DISK

KEY = "k" * 32
WAIT = 120.0
LINES = 2000  # about 1 KB each: 125 batches of 16 KiB, each synced (0.1 s): 12.5 s

CHILD = (
    "import asyncio, os, sys\n"
    + SLOW_DISK
    + """
from logdna_client import Client

client = Client(
    key=os.environ["KEY"], url=os.environ["URL"], spool_dir=os.environ["SPOOL"],
    spool_sync="always", max_batch_bytes="16KiB", shutdown_timeout=1.0,
    flush_interval=3600, request_timeout=120, handle_signals=False,
)
for i in range(int(os.environ["LINES"])):
    client.log(f"held {i} " + "x" * 1000)
how = os.environ["HOW"]
if how == "aclose":
    asyncio.run(client.aclose())
elif how == "close":
    client.close()
# "exit": the exit hook closes it
"""
)


def never_answer(request: Request, sock: socket.socket, stop: threading.Event) -> None:
    stop.wait(WAIT)


def run_child(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a child against a service that never answers; it must end well."""
    with scripted_server(never_answer) as server:
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=WAIT,
            check=False, env=dict(os.environ, PYTHONPATH=REPO, KEY=KEY, URL=server.url, **env),
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc


def adoptable(folder: Path) -> int:
    """The lines the next process adopts from ``folder``: on disk and not done."""
    return sum(inspect_segment(path).pending_lines for path in segment_paths(str(folder)))


@pytest.mark.parametrize("how", ["aclose", "close", "exit"])
def test_the_lines_said_lost_and_those_left_on_disk_add_up(tmp_path: Path, how: str) -> None:
    proc = run_child(CHILD, SPOOL=str(tmp_path), LINES=str(LINES), HOW=how)
    said = losses_said(proc.stderr)
    on_disk = adoptable(tmp_path)
    # The disk is slow: the spill cannot be done by the deadline, and the loss is said.
    assert said, proc.stderr
    assert on_disk + sum(said) == LINES, (on_disk, said, proc.stderr)


# The same child, with the disk's sync held until the exit has said its loss: the batch
# whose write the sync ends is in the file while the exit counts (the window the load
# opened by chance: 168 adopted + 1846 said, again one batch over).
HELD_SYNC_CHILD = (
    CHILD
    + """
import atexit, threading
import logdna_client._exit as ending

ended = threading.Event()
atexit.register(ended.set)  # (runs before the client's exit hook, registered earlier)
said = threading.Event()
real_report = ending.report_exit_loss
def report_exit_loss(message):
    real_report(message)
    said.set()
ending.report_exit_loss = report_exit_loss
def before_sync():
    # The sync of a batch the sender wrote (Spool.append's) while the process ends: held
    # until the exit said what it lost (or gave up waiting for the sender).
    if (
        ended.is_set()
        and threading.current_thread().name == "logdna_client-sender"
        and sys._getframe(3).f_code.co_name == "append"
    ):
        said.wait(%r)
"""
    % (WAIT / 4)
)


@pytest.mark.parametrize("how", ["aclose", "close", "exit"])
def test_a_batch_written_as_the_exit_counts_is_not_said_lost(tmp_path: Path, how: str) -> None:
    """A batch written to the spool file whose sync was still running when the exit took
    its count was said lost and adopted by the next process too (one batch over)."""
    proc = run_child(HELD_SYNC_CHILD, SPOOL=str(tmp_path), LINES=str(LINES), HOW=how)
    said = losses_said(proc.stderr)
    on_disk = adoptable(tmp_path)
    assert said, proc.stderr
    assert on_disk + sum(said) == LINES, (on_disk, said, proc.stderr)


# A child whose spool folder cannot be made (its parent is a file): the spool is off.
SPOOL_OFF_CHILD = """
import asyncio, os
from logdna_client import Client

client = Client(
    key=os.environ["KEY"], url=os.environ["URL"], spool_dir=os.environ["SPOOL"],
    shutdown_timeout=0.5, request_timeout=120, handle_signals=False,
)
for i in range(int(os.environ["LINES"])):
    client.log(f"line {i}")
asyncio.run(client.aclose())
"""


def test_a_loss_with_the_spool_off_says_why(tmp_path: Path) -> None:
    """The spool folder could not be used (here: made): its failure went to the library's
    logger only, which at exit usually shows nothing, and the exit said "200000 lines
    could not be delivered before the shutdown deadline (0.5 s) and were dropped", as
    if the spool had been there and lost them. It says the spool was off, and why."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    lines = 2000
    proc = run_child(SPOOL_OFF_CHILD, SPOOL=str(blocker / "spool"), LINES=str(lines))
    assert losses_said(proc.stderr) == [lines], proc.stderr
    assert f"the spool at {blocker / 'spool'} is off (open: ENOTDIR)" in proc.stderr, proc.stderr
