"""The pytest plugin (entry point ``pytest11``): the ``logdna_lines`` fixture.

A module of its own so that ``logdna_client.testing`` imports without pytest.
pytest imports it at startup wherever the package is installed; importing the
package starts nothing (no thread, no socket, no environment read).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .testing import capture_lines

__all__ = ["logdna_lines"]


@pytest.fixture
def logdna_lines() -> Iterator[list[dict[str, Any]]]:
    """The lines every LogDNA handler, processor and Client shipped during the test
    (see ``logdna_client.testing.capture_lines``); none is sent."""
    with capture_lines() as lines:
        yield lines
