"""Shared fixtures: a real local ingest server, and a logging setup restored after each test."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from logdna_client._devserver import DevServer


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Each test gets the root logger back as it found it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    own = logging.getLogger("logdna_client")
    own_handlers, own_level, own_propagate = own.handlers[:], own.level, own.propagate
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    own.handlers[:] = own_handlers
    own.setLevel(own_level)
    own.propagate = own_propagate


@pytest.fixture
def server() -> Iterator[DevServer]:
    """A DevServer on a free loopback port."""
    with DevServer() as srv:
        yield srv
