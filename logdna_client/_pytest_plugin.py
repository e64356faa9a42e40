"""The pytest plugin (entry point ``pytest11``): the ``logdna_lines`` fixture.

A module of its own so that ``logdna_client.testing`` imports without pytest.
pytest imports it at startup wherever the package is installed, in every test run,
most of which never use the fixture: it imports nothing of the package's but its
``__init__`` (which imports its names on their first use) until a test asks for
the fixture. Importing it all cost each pytest run about 170 ms and 200 modules
(requests, asyncio, ssl) and an exit hook.

A test that uses the fixture is captured from before its first fixture is set up
until after its last one is torn down: pytest sets fixtures up in the order a test
names them, and an app fixture named before ``logdna_lines`` would otherwise ship
the lines it logs as it starts and stops.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

__all__ = ["logdna_lines"]

_FIXTURE = "logdna_lines"
# The capture of a test that uses the fixture, from its setup to its teardown.
_CAPTURE = pytest.StashKey[tuple[ExitStack, list[dict[str, Any]]]]()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    if _FIXTURE in getattr(item, "fixturenames", ()):
        from .testing import capture_lines  # noqa: PLC0415 - only for tests that use it

        stack = ExitStack()
        item.stash[_CAPTURE] = (stack, stack.enter_context(capture_lines()))
    yield


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    try:
        yield
    finally:
        held = item.stash.get(_CAPTURE, None)
        if held is not None:
            del item.stash[_CAPTURE]
            held[0].close()


@pytest.fixture
def logdna_lines(request: pytest.FixtureRequest) -> Iterator[list[dict[str, Any]]]:
    """The lines every LogDNA handler, processor and Client shipped during the test,
    its fixtures' setup and teardown included (see
    ``logdna_client.testing.capture_lines``); none is sent."""
    held = request.node.stash.get(_CAPTURE, None)
    if held is not None:
        yield held[1]
        return
    from .testing import capture_lines  # noqa: PLC0415 - only for tests that use it

    with capture_lines() as lines:  # asked for with request.getfixturevalue()
        yield lines
