"""Second review of a day's changes: what it found, each as a test that failed before."""

from __future__ import annotations

import logging
import socket

import pytest

from logdna_client import Client
from logdna_client._report import KIND_ATTR


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_exit_loss_report_carries_its_kind_too(caplog: pytest.LogCaptureFixture) -> None:
    """The lines a close could not deliver by its deadline are reported at ERROR like the
    library's other trouble; that record carries its kind as they do (docs/delivery.md:
    each report does, for a filter or alert that tells them apart), where it had none."""
    caplog.set_level(logging.DEBUG, logger="logdna_client")
    client = Client(url=f"http://127.0.0.1:{_dead_port()}/logs/ingest", hostname="t",
                    retry_max_backoff=0.2)  # fmt: skip
    client.log("never delivered")
    client.close(timeout=0.2)
    lost = [r for r in caplog.records if "could not be delivered" in r.getMessage()]
    assert lost, caplog.messages
    assert all(r.levelno >= logging.WARNING for r in lost)
    assert all(getattr(r, KIND_ATTR, None) == "exit-loss" for r in lost)
