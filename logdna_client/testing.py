"""Helpers for testing what your application ships to LogDNA / Mezmo.

``capture_lines()`` collects, while it is open, every line that any
``LogDNAHandler``, ``LogDNAProcessor`` or ``Client`` in the process would
ship, as dicts in the wire format, and sends none of them::

    import logging
    from logdna_client.testing import capture_lines

    def test_signup_is_logged():
        with capture_lines() as lines:
            signup("ada@example.com")          # logs through a LogDNAHandler
        assert lines[0]["line"] == "user signed up"
        assert lines[0]["meta"]["plan"] == "free"

With pytest, the ``logdna_lines`` fixture does the same for one test, the setup
and teardown of its other fixtures included (the package registers it as a
pytest plugin; nothing to import)::

    def test_signup_is_logged(logdna_lines):
        signup("ada@example.com")
        assert [l["line"] for l in logdna_lines] == ["user signed up"]

Each dict has ``line``, ``level``, ``app``, ``env`` (None when not set),
``timestamp`` (epoch milliseconds) and ``meta`` (a dict, empty when none;
decoded also where ``index_meta=False`` ships it as a string). They are the
lines as they would leave the process: after ``level`` filtering,
``before_send``, redaction and truncation.

Lines queued before the capture started are still delivered as usual.
Captures may nest; each sees every line shipped while it is open. See
docs/testing.md for Django, Flask and structlog examples.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from . import _capture

__all__ = ["capture_lines"]


@contextmanager
def capture_lines() -> Iterator[list[dict[str, Any]]]:
    """Collect what every handler, processor and Client ships while open; send nothing.

    Yields:
        The list the lines are appended to, as wire-format dicts, in the order
        they were logged.
    """
    lines: list[dict[str, Any]] = []
    _capture.start(lines)
    try:
        yield lines
    finally:
        _capture.stop(lines)
