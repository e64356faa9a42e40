"""The machinery behind ``logdna_client.testing.capture_lines``.

Where to hook: every line a Client ships, whoever built it, enters its
``Buffer``: through ``Client.put``/``put_entry`` (``Client.log``, the
structlog processor, the handler's general path), or inlined by the stdlib
handler's hot path in Python and in C, which append to the buffer's deque
directly while its ``fast_limit`` allows and call ``put_entry`` otherwise.
A diverted buffer keeps ``fast_limit`` at "locked", so every one of those
paths ends in ``Buffer._put_locked``, which hands the entry here instead of
queueing it. Nothing on the hot path changed for it; the handler and the C
code know nothing of captures.

Clients that exist when a capture starts are diverted then; clients built
while one is on divert themselves (``Client._new_pipeline``, also after a
fork), and look again once they are registered (``follow``). A diverted
client does not start its sender for these lines: nothing is queued, so
nothing is sent.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import orjson

from ._buffer import SEPARATOR
from ._limits import Cuts, enforce_line
from ._line import FIELDS

__all__ = ["active", "deliver", "follow", "start", "stop"]

_lock = threading.Lock()
# Held while a line is appended to the captures, and taken by stop() before it returns:
# a capture's list never grows once its block has ended (a thread that was logging
# then). A leaf: nothing is taken under it (deliver holds a buffer's lock around it),
# and nothing that may run a finalizer is done under it (to_dict runs before: one that
# a collection there runs may log to another client, whose buffer lock a thread
# delivering a line holds while it waits for this one). Re-entrant: a signal handler
# that logs may run while it is held.
_appending = threading.RLock()


def _after_fork() -> None:
    # A thread of the parent's may have held them (inside deliver, start or stop): in
    # the child that thread does not exist, and its lines would wait for it for good.
    global _lock, _appending
    _lock = threading.Lock()
    _appending = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
# Replaced, never changed in place: deliver() reads it without the lock.
_captures: tuple[list[dict[str, Any]], ...] = ()
# The ids of those lists (each kept alive by ``_captures`` or a deliver() under way).
_open: frozenset[int] = frozenset()


def active() -> bool:
    """Whether a capture is on."""
    return bool(_captures)


def start(lines: list[dict[str, Any]]) -> None:
    """Collect every line shipped from now on into ``lines`` too."""
    global _captures, _open
    # Diverting under the lock: a capture starting on one thread while the last one
    # stops on another must not find the clients undiverted after it.
    with _lock:
        _captures = (*_captures, lines)
        _open = frozenset(map(id, _captures))
        if len(_captures) == 1:
            _divert_all(True)


def stop(lines: list[dict[str, Any]]) -> None:
    """Stop collecting into ``lines``; with no capture left, lines ship again."""
    global _captures, _open
    with _lock:
        left = tuple(c for c in _captures if c is not lines)
        if _captures and not left:
            # Undiverted while this capture is still open: a line that a buffer handed
            # over meanwhile (under its lock, which undiverting waits for) is this
            # capture's. The other way round, it reached deliver() with no capture
            # left to take it, and was neither captured nor sent nor counted.
            _divert_all(False)
        _captures = left
        _open = frozenset(map(id, _captures))
    with _appending:  # an append to ``lines`` under way ends first
        pass


def follow(client: Any) -> None:
    """Divert ``client`` or not, as the captures now say: for a client being built,
    which a capture starting or ending on another thread meanwhile may have missed
    (before it registered) or left diverted (it diverted itself, then the last capture
    ended before it was registered to be undiverted)."""
    with _lock:
        client._divert(bool(_captures))


def _divert_all(on: bool) -> None:
    from ._exit import _clients  # noqa: PLC0415 - _exit imports the client module

    for client in list(_clients):
        client._divert(on)


def deliver(entry: bytes) -> bool:
    """A diverted buffer's sink: the entry, as a wire-format dict, to every capture."""
    data = entry[len(SEPARATOR) :]
    # A dict of its own for each capture, meta included: a test that edits what it
    # caught (pops a key, say) leaves a capture around it as it was.
    made = [(lines, to_dict(data)) for lines in _captures]
    for lines, line in made:
        with _appending:  # nothing under it allocates what a collection could follow
            if id(lines) in _open:  # not one whose block ended meanwhile
                lines.append(line)
    return True


def to_dict(data: bytes) -> dict[str, Any]:
    """One serialized line as a dict with every wire field present, cut to the
    service's limits as the sender would cut it.

    ``app`` and ``env`` are None where the line has none, ``meta`` an empty
    dict; meta that ``index_meta=False`` ships as a JSON string is decoded, so
    tests read it the same way either way.
    """
    line: dict[str, Any] = orjson.loads(data)
    # As the sender cuts it: text over the service's limit (a max_line_length above
    # it), meta over its limit. (The sender's count of cuts is not this one.)
    enforce_line(line, Cuts(), meta_size=len(data))
    meta = line.get("meta")
    if isinstance(meta, str):
        try:
            meta = orjson.loads(meta)
        except orjson.JSONDecodeError:
            pass
    found = {name: line.get(name) for name in FIELDS}
    found["meta"] = meta if meta is not None else {}
    found.update((k, v) for k, v in line.items() if k not in found)
    return found
