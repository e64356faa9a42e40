"""Shared fixtures: a real local ingest server, an OTLP/HTTP receiver, and a logging setup
restored after each test."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from logdna_client import _exit, _native
from logdna_client._devserver import DevServer

if TYPE_CHECKING:
    from tests._otlp_server import Server

#: The ways LogDNAHandler.handle can run here: the C extension when it is built,
#: and always the Python code it falls back to.
HANDLE_PATHS = ["c", "python"] if _native.speedups is not None else ["python"]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Each test gets the root logger back as it found it, and no exit under way."""
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
    # A test that ended "the process" in-process (logging.shutdown()) opened the exit's
    # one deadline: the next test is a process of its own, with no exit under way.
    _exit._window_end = float("-inf")


@pytest.fixture
def server() -> Iterator[DevServer]:
    """A DevServer on a free loopback port."""
    with DevServer() as srv:
        yield srv


@pytest.fixture
def otlp() -> Iterator[Server]:
    """An OTLP/HTTP receiver on a free loopback port (tests/_otlp_server.py). Imported
    here, not at the top: it needs the official protobuf definitions (a dev extra)."""
    from tests._otlp_server import running

    with running() as receiver:
        yield receiver


@pytest.fixture(params=HANDLE_PATHS)
def handle_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test once per handle path: handlers built in it use that path."""
    if request.param == "python":
        monkeypatch.setenv("LOGDNA_CLIENT_PURE_PYTHON", "1")
    else:
        monkeypatch.delenv("LOGDNA_CLIENT_PURE_PYTHON", raising=False)
    return str(request.param)
