"""Helpers for the integration tests (structlog, Django, Flask, dictConfig, examples)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from logdna_client import Client, LogDNAHandler
from logdna_client._buffer import SEPARATOR
from logdna_client._context import RequestContextFilter
from logdna_client._devserver import DevServer

REPO_ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 10.0


class CapturingClient(Client):
    """A Client whose ``put`` keeps the serialized lines instead of sending them."""

    def __init__(self, **options: Any) -> None:
        options.setdefault("url", "http://127.0.0.1:9/logs/ingest")
        options.setdefault("hostname", "test-host")
        super().__init__(**options)
        self.captured: list[bytes] = []
        # Client.put and put_entry are attributes the pipeline sets (and swaps after
        # the first line): the fast path hands over entries, a comma then the line.
        self.put = self._capture
        self.put_entry = self._capture_entry

    def _capture(self, data: bytes) -> bool:
        self.captured.append(data)
        return True

    def _capture_entry(self, entry: bytes) -> bool:
        assert entry.startswith(SEPARATOR)
        return self._capture(entry[len(SEPARATOR) :])

    @property
    def lines(self) -> list[dict[str, Any]]:
        return [orjson.loads(data) for data in self.captured]


def delivered(server: DevServer, client: Client, n: int) -> list[dict[str, Any]]:
    """Flush ``client`` and return the server's lines once it holds at least ``n``."""
    assert client.flush(TIMEOUT)
    assert server.wait_for_lines(n, TIMEOUT), server.lines
    return server.lines


@contextmanager
def _only_handler(names: tuple[str, ...], handler: logging.Handler, level: int) -> Iterator[None]:
    """``handler`` as the only handler of the ``names`` loggers (no propagation) for
    the duration; the loggers are restored and the handler closed afterwards."""
    saved = {}
    for name in names:
        log = logging.getLogger(name)
        saved[name] = log.handlers[:], log.level, log.propagate
        log.handlers[:] = [handler]
        log.setLevel(level)
        log.propagate = False
    try:
        yield
    finally:
        for name, (handlers, old_level, propagate) in saved.items():
            log = logging.getLogger(name)
            log.handlers[:], log.level, log.propagate = handlers, old_level, propagate
        handler.close()


@contextmanager
def logger_with(name: str, handler: logging.Handler) -> Iterator[logging.Logger]:
    """A DEBUG logger whose only handler is ``handler``; restored afterwards."""
    with _only_handler((name,), handler, logging.DEBUG):
        yield logging.getLogger(name)


@contextmanager
def context_handler_on(server: DevServer, names: tuple[str, ...]) -> Iterator[LogDNAHandler]:
    """Our handler, with the request-context filter, as the only handler of the
    ``names`` loggers at INFO."""
    handler = handler_for(server)
    handler.addFilter(RequestContextFilter())
    with _only_handler(names, handler, logging.INFO):
        yield handler


def handler_for(server: DevServer, **options: Any) -> LogDNAHandler:
    options.setdefault("hostname", "test-host")
    options.setdefault("flush_interval", 0.05)
    return LogDNAHandler(url=server.url, **options)
