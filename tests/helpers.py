"""Small helpers shared by test modules."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from logdna_client import _native

#: A loopback address nothing listens on (no key needed for loopback; never contacted
#: by a test that keeps its lines queued).
UNREACHABLE = "http://127.0.0.1:9/logs/ingest"

#: For tests of the C path: skipped where it is not built, or switched off for the run
#: (``LOGDNA_CLIENT_PURE_PYTHON``, as _native.enabled reads it: CI's pure-Python stage).
needs_speedups = pytest.mark.skipif(
    _native.speedups is None or os.environ.get("LOGDNA_CLIENT_PURE_PYTHON", "") not in ("", "0"),
    reason="the C extension is not built, or switched off",
)


def make_logger(name: str, handler: logging.Handler) -> logging.Logger:
    """A logger whose only handler is ``handler`` (no propagation to root)."""
    log = logging.getLogger(name)
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.DEBUG)
    return log


_T = TypeVar("_T")


@contextmanager
def library_reports(keep: Callable[[logging.LogRecord], _T]) -> Iterator[list[_T]]:
    """What the library logs through its own logger ("logdna_client"), at every level,
    for the duration: each record as ``keep`` makes of it when it is logged."""
    said: list[_T] = []

    class Listen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            said.append(keep(record))

    own = logging.getLogger("logdna_client")
    listener = Listen(logging.DEBUG)
    own.addHandler(listener)
    try:
        yield said
    finally:
        own.removeHandler(listener)


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


def make_cert(directory: Path, names: str = "IP:127.0.0.1") -> tuple[Path, Path] | None:
    """A self-signed certificate and key for ``names`` (subjectAltName), or None
    when openssl is not there to make one."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert, key = directory / "cert.pem", directory / "key.pem"
    result = subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", f"subjectAltName={names}",
         "-keyout", str(key), "-out", str(cert)],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    return (cert, key) if result.returncode == 0 else None


def in_forked_child(work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """What ``work`` returns when run in a forked child of this process (as JSON through
    a pipe); the child leaves with ``os._exit`` right after, running no exit handlers."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(write_end, json.dumps(work()).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        seen: dict[str, Any] = json.loads(pipe.read())
    os.waitpid(pid, 0)
    return seen


def busy_while_putting(client: Any, monkeypatch: Any) -> list[bool]:
    """For each entry handed to ``client.put_entry`` from now on: whether the thread
    handing it was marked busy (``BUSY_THREADS``), as the locked put must be."""
    from logdna_client._threads import BUSY_THREADS

    real_put = client.put_entry
    seen: list[bool] = []

    def put_entry(entry: bytes) -> bool:
        seen.append(threading.get_ident() in BUSY_THREADS)
        return bool(real_put(entry))

    monkeypatch.setattr(client, "put_entry", put_entry)
    return seen


@contextmanager
def django_settings(urlconf: str, middleware: list[str]) -> Iterator[None]:
    """Django set up (once per process: its settings can be configured only once),
    with ``urlconf`` and ``middleware`` in force for the duration."""
    import django
    from django.conf import settings
    from django.test import override_settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="test-only",
            ALLOWED_HOSTS=["testserver"],
            INSTALLED_APPS=[],
            DATABASES={},
            LOGGING_CONFIG=None,
            ROOT_URLCONF=urlconf,
            MIDDLEWARE=middleware,
        )
        django.setup()
    with override_settings(ROOT_URLCONF=urlconf, MIDDLEWARE=middleware):
        yield


@contextmanager
def on_a_sender_thread(ident: int | None = None) -> Iterator[int]:
    """Thread ``ident`` (the calling one when None) counts as one of this process's
    sender threads for the duration; yields its ident."""
    from logdna_client._threads import sender_ended, sender_started

    ident = threading.get_ident() if ident is None else ident
    sender_started(ident)
    try:
        yield ident
    finally:
        sender_ended(ident)


@contextmanager
def in_a_collection(ident: int) -> Iterator[None]:
    """Sender thread ``ident`` inside a garbage collection for the duration, as the
    library's collection hook marks one at its start and its end."""
    from logdna_client._threads import _collection

    _collection("start", {}, ident_of=lambda: ident)
    try:
        yield
    finally:
        _collection("stop", {}, ident_of=lambda: ident)
