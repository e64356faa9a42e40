"""Small helpers shared by test modules."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable


def make_logger(name: str, handler: logging.Handler) -> logging.Logger:
    """A logger whose only handler is ``handler`` (no propagation to root)."""
    log = logging.getLogger(name)
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.DEBUG)
    return log


def run_with_forced_switches(workers: list[Callable[[], object]]) -> None:
    """Run ``workers`` in threads at once, with a thread switch forced at every chance."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=work) for work in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
