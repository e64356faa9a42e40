"""A slow disk for the spool's process-end and close tests: every ``os.fdatasync``
waits ``SYNC_TAKES`` first, as on a disk other programs keep busy, so that writing
memory to the spool takes seconds and a close, a signal or a kill lands in the middle
of it.

Two forms of the one rule: ``slow_disk`` patches this process (with pytest's
``monkeypatch``), ``SLOW_DISK`` is code a child's script (``tests._children.Child``)
starts with.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import pytest

#: How long each sync waits: 25 batches of 16 KiB take 2.5 s or more.
SYNC_TAKES = 0.1
#: Lines a test holds (about 1 KB each: 25 batches of 16 KiB, each synced).
HELD_LINES = 400

_BUSY = threading.Event()  # never set: the disk's latency, no thread is waited for


def slow_disk(monkeypatch: pytest.MonkeyPatch, after: Callable[[], None] | None = None) -> None:
    """Make this process's disk slow; ``after`` runs after each sync."""
    real_sync = os.fdatasync

    def slow_sync(fd: int) -> None:
        _BUSY.wait(SYNC_TAKES)
        real_sync(fd)
        if after is not None:
            after()

    monkeypatch.setattr(os, "fdatasync", slow_sync)


#: The same in a child. Its script may define ``before_sync()`` and ``after_sync()``
#: (looked up at each sync: defined later in the script, they count).
SLOW_DISK = f"""
import threading
busy_disk = threading.Event()  # never set: each sync takes {SYNC_TAKES} s
real_sync = os.fdatasync
def slow_sync(fd):
    globals().get("before_sync", lambda: None)()
    busy_disk.wait({SYNC_TAKES})
    real_sync(fd)
    globals().get("after_sync", lambda: None)()
os.fdatasync = slow_sync
"""
