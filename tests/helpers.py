"""Small helpers shared by test modules."""

from __future__ import annotations

import logging


def make_logger(name: str, handler: logging.Handler) -> logging.Logger:
    """A logger whose only handler is ``handler`` (no propagation to root)."""
    log = logging.getLogger(name)
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.DEBUG)
    return log
