"""The optional C extension (``_speedups.c``): whether it is here, and what it is handed.

It makes the entries of the common stdlib record (``Handle``, each
``LogDNAHandler``'s ``handle``) and of the common structlog event
(``EventHandle``, the base of ``LogDNAProcessor``) as the Python code makes
them, and hands every other record and event to that code. Both are built
from the same pieces (``pieces``: the builder's and the buffer's, which this module
alone chooses), and each with its own (the handler's in
``LogDNAHandler._speedups_handle``, the processor's in ``LogDNAProcessor.__init__``).
"""

from __future__ import annotations

import os
import sys
from threading import get_ident
from typing import TYPE_CHECKING, Any

import orjson

from . import _context
from ._buffer import ENTRY_OVERHEAD
from ._line import ENTRY_END, ENTRY_HEAD, ENTRY_META, ENTRY_TIMESTAMP, LineBuilder, _escape
from ._threads import BUSY_THREADS, SENDER_THREADS
from ._values import FALSE

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["API", "enabled", "pieces", "pure_python_asked", "put_built", "speedups"]

#: The version of the arguments the C code takes; a build that says otherwise is
#: one left from another version of the package (an editable install not rebuilt).
API = 10

#: The extension module, or None: not built (no compiler at install), not
#: CPython, or a build without a GIL (it relies on one, and importing it there
#: would turn the GIL back on).
speedups: Any = None
if sys.implementation.name == "cpython" and getattr(sys, "_is_gil_enabled", lambda: True)():
    try:
        from . import _speedups as speedups  # type: ignore[attr-defined, no-redef]
    except ImportError:
        pass
    else:
        if getattr(speedups, "API", None) != API:
            speedups = None


def pure_python_asked() -> bool:
    """Whether ``LOGDNA_CLIENT_PURE_PYTHON`` asks a handler or processor made now to
    keep off the C code: set to anything but blank or a false word ("0", "false",
    "no", "off"). Read once, when one is made (H199: a handler read it again when a
    hook changed, and moved between paths)."""
    value = os.environ.get("LOGDNA_CLIENT_PURE_PYTHON", "").strip().lower()
    return bool(value) and value not in FALSE


def enabled(builder: LineBuilder) -> bool:
    """Whether a handler or processor built with ``builder`` (and not asked to keep off
    it: ``pure_python_asked``) uses the C code.

    Not when it is not here, or when no line could take ``LineBuilder.entry``'s fast
    path anyway (other text patterns than the defaults, a ``before_send`` hook, string
    meta).
    """
    return speedups is not None and builder.plain_max_chars > 0


def put_built(client: Client, entry: bytes) -> object:
    """Queue an entry a C call built the locked way (``Client.put_entry``: the buffer
    is full, closed, due to wake the sender, or not started yet), and return the
    buffer the C call is to use from now on (a forked child's is new). Raises what
    ``put_entry`` raises.

    The thread is marked busy meanwhile, as the Python paths mark it: a signal
    handler or finalizer that logs while it holds the buffer's lock takes the
    nested path instead of deadlocking on that lock.
    """
    current = get_ident()
    try:
        BUSY_THREADS.add(current)  # inside the try: see LogDNAHandler._deliver
        client.put_entry(entry)
        return client._buffer
    finally:
        BUSY_THREADS.discard(current)


def pieces(builder: LineBuilder, buffer: object) -> dict[str, Any]:
    """What both C types are handed (as keyword arguments) besides their own: the
    thread sets and request context that tell where a line must not ship or goes
    to Python, ``LineBuilder.entry``'s pieces, and ``Buffer.put_entry``'s buffer."""
    return {
        "sender_threads": SENDER_THREADS,
        "busy_threads": BUSY_THREADS,
        "context_var": _context._request_context,
        "buffer": buffer,
        "safe_keys": builder.meta_safe_keys,
        "dumps": orjson.dumps,
        "escape": _escape,
        "head": ENTRY_HEAD,
        "timestamp_key": ENTRY_TIMESTAMP,
        "level_tails": builder.level_tails,
        "meta_key": ENTRY_META,
        "end": ENTRY_END,
        "max_chars": builder.plain_max_chars,
        "max_entry": builder.total_limit,
        "entry_overhead": ENTRY_OVERHEAD,
        # Only the default credential patterns leave this path open (see
        # LineBuilder.text_check): C tests for their triggers, Python redacts.
        "redact_text": builder.redact_triggered if builder.text_check is not None else None,
        # Its answers on keys: text whose every "key:" is a known plain one (a log
        # message's "1: ...", "user=bob") needs no call to Python.
        "secret_cache": builder.secret_cache,
    }
