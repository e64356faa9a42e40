"""The ingest service's published limits, in one place, and their enforcement.

INGEST_API.md, "Limits": the service-limits page (as the OpenTelemetry
Collector's former Mezmo exporter cites it) gives a 16 KiB line, 32 KiB of
meta, a 512-character app name and an 80-character level; an oversize line is
answered with 400 "Message size too large", which would cost the line. The
builder (``_line.py``) already cuts text at ``max_line_length`` and app, env
and level at 80 characters as it makes each line; what can still arrive over a
limit (a ``before_send`` hook's result, a larger ``max_line_length``, meta
between 32 KiB and the builder's excerpt threshold, a spool written by another
version) is cut here, on the sender thread, just before a body is built:
never on the application's hot path. Each cut is marked in the line and
counted in ``stats()["cut"]``.
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from typing import Any

import orjson

from ._buffer import SEPARATOR
from ._redact import MAX_DEPTH, TOO_DEEP

__all__ = [
    "APP_CHARS",
    "BODY_BYTES",
    "LEVEL_CHARS",
    "LINE_BYTES",
    "META_BYTES",
    "META_EXCERPT",
    "META_MARK",
    "NAME_CHARS",
    "Cuts",
    "cap_text",
    "count_excerpt",
    "enforce_entries",
    "enforce_line",
    "threshold_for",
]

#: Line text, in UTF-8 bytes.
LINE_BYTES = 16 * 1024
#: Meta, as serialized JSON bytes.
META_BYTES = 32 * 1024
#: The service's caps on app and level names (what the sender enforces on a line
#: that reached it longer, from ``before_send`` say).
APP_CHARS = 512
LEVEL_CHARS = 80
#: The builder's cap on app, env and level names, as the official clients cap them
#: (``LineBuilder`` is its one home); within the service's caps above.
NAME_CHARS = 80  # tests/test_limits.py holds it within them
#: The one hard number the vendor documents: 10 MB per request body. Its one home:
#: the devserver enforces it, and ``_config._MAX_BATCH_CAP`` stays below it.
BODY_BYTES = 10_000_000

#: Kinds of cut, as ``stats()["cut"]`` shows them (0 when none).
CUT_KINDS = ("line", "meta", "app", "level")

# The marker of a cut text (``cap_text``, the builder's and the sender's); matched to
# count the builder's cuts, and kept (with the original size it names) when a line is
# cut again here.
_TEXT_MARK = "… [truncated by logdna_client: {} bytes in all]"
_TEXT_MARK_RE = re.compile(re.escape(_TEXT_MARK).replace(re.escape("{}"), r"(\d+)") + r"\Z")
#: The key of the excerpt that replaces meta too big to ship, and its length.
META_MARK = "logdna_client_truncated"
META_EXCERPT = 1000
_NAME_MARK = "…"

Cuts = Counter[str]


def cap_text(text: str, limit: int, size: int | None = None) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, with a marker saying so.

    ``size``: the whole text's size, when ``text`` is already a cut piece of it
    (it is then marked whatever its own length).
    """
    if size is None and len(text) * 4 <= limit:  # no character is longer than 4 bytes
        return text
    raw = text.encode("utf-8", "replace")
    if size is None:
        if len(raw) <= limit:
            return text
        size = len(raw)
    marker = _TEXT_MARK.format(size)
    keep = max(0, limit - len(marker.encode("utf-8")))
    return raw[:keep].decode("utf-8", "ignore") + marker


def _cut_text(text: str, limit: int) -> tuple[str, bool]:
    """``cap_text`` for a line that may have been cut before (max_line_length): the
    earlier cut's marker gives way to one that names the size the text had then."""
    capped = cap_text(text, limit)
    if capped is text:
        return text, False
    found = _TEXT_MARK_RE.search(text)
    if found is not None:
        return cap_text(text[: found.start()], limit, int(found.group(1))), True
    return capped, True


def _cut_name(value: object, limit: int) -> tuple[Any, bool]:
    if isinstance(value, str) and len(value) > limit:
        return value[: limit - len(_NAME_MARK)] + _NAME_MARK, True
    return value, False


def threshold_for(max_line_length: int) -> int:
    """Entries longer than this may hold a cut or a line over a limit: a line the
    builder cut is at least ``max_line_length`` less a partial character long."""
    return min(LINE_BYTES, max_line_length - 8)


def enforce_line(line: dict[str, Any], cuts: Cuts, *, meta_size: int | None = None) -> bool:
    """Cut ``line`` (a parsed line dict) to the service's limits in place.

    Counts each cut in ``cuts`` by kind, and a cut the builder already made
    (its marker) too. True when it changed. ``meta_size``: the serialized
    meta's size when the caller knows it is no larger than that.
    """
    changed = False
    text = line.get("line")
    if isinstance(text, dict | list):  # a structured body (protocol="otlp"), a hook's too
        with contextlib.suppress(orjson.JSONEncodeError):  # (past orjson's depth: as it is)
            data = orjson.dumps(text)
            if len(data) > LINE_BYTES:  # as its JSON text, cut below as any text
                text = data.decode()
    if isinstance(text, str):
        text, cut = _cut_text(text, LINE_BYTES)
        if cut:
            line["line"] = text
            changed = True
            cuts["line"] += 1
        elif text.endswith("bytes in all]") and _TEXT_MARK_RE.search(text):
            cuts["line"] += 1  # cut where it was built; marked there already
    meta = line.get("meta")
    if (isinstance(meta, dict) and META_MARK in meta) or (
        isinstance(meta, str) and meta.startswith('{"' + META_MARK)
    ):
        cuts["meta"] += 1  # the builder's excerpt
    elif meta is not None and (meta_size is None or meta_size > META_BYTES):
        try:
            data = meta.encode() if isinstance(meta, str) else orjson.dumps(meta)
        except orjson.JSONEncodeError:  # past orjson's 254 levels (another writer's spool)
            line["meta"] = meta = _shallow(meta, 0)
            changed = True
            data = orjson.dumps(meta)
        if len(data) > META_BYTES:
            excerpt = data[:META_EXCERPT].decode("utf-8", "ignore")
            shrunk: dict[str, Any] = {
                META_MARK: f"meta of {len(data)} bytes cut to an excerpt",
                "excerpt": excerpt,
            }
            line["meta"] = orjson.dumps(shrunk).decode() if isinstance(meta, str) else shrunk
            changed = True
            cuts["meta"] += 1
    for name, limit in (("app", APP_CHARS), ("level", LEVEL_CHARS)):
        value, cut = _cut_name(line.get(name), limit)
        if cut:
            line[name] = value
            changed = True
            cuts[name] += 1
    return changed


def _shallow(value: Any, depth: int) -> Any:
    """Parsed JSON cut to ``<too deep>`` past MAX_DEPTH levels, as the line builder and
    the OTLP encoder cut it (JSON holds no cycle)."""
    if type(value) is dict:
        if depth >= MAX_DEPTH:
            return TOO_DEEP
        return {k: _shallow(v, depth + 1) for k, v in value.items()}
    if type(value) is list:
        return TOO_DEEP if depth >= MAX_DEPTH else [_shallow(v, depth + 1) for v in value]
    return value


#: The builder replaces oversize meta by an excerpt of this many characters: a
#: line holding one is at least this long.
EXCERPT_MIN = META_EXCERPT
META_MARK_BYTES = b'"' + META_MARK.encode() + b'"'
META_MARK_ESCAPED = b'\\"' + META_MARK.encode() + b'\\"'


def count_excerpt(entry: bytes, cuts: Cuts) -> None:
    """Count a meta excerpt the builder made (the line is small again, so the
    limits' check does not parse it): one length test for most lines."""
    if len(entry) > EXCERPT_MIN and (
        META_MARK_BYTES in entry or META_MARK_ESCAPED in entry  # meta as an object or a string
    ):
        cuts["meta"] += 1


def enforce_entries(
    entries: list[bytes], cuts: Cuts, *, threshold: int = LINE_BYTES, inspect_all: bool = False
) -> list[bytes]:
    """``entries`` with every line over a limit cut (a new list only when one was).

    Only entries longer than ``LINE_BYTES`` can hold text or meta over its
    limit, or text the builder cut (``threshold``: a little under
    ``max_line_length`` when that is lower), and the builder keeps app and
    level within theirs: those few are parsed, the rest pass untouched at the
    cost of one ``len``. A ``before_send`` hook can return anything, so
    ``inspect_all`` parses all.
    """
    if not inspect_all and (not entries or max(map(len, entries)) <= min(threshold, EXCERPT_MIN)):
        return entries
    out: list[bytes] | None = None
    skip = len(SEPARATOR)
    for index, entry in enumerate(entries):
        size = len(entry)
        if size <= threshold and not inspect_all:
            count_excerpt(entry, cuts)
            continue
        try:
            line = orjson.loads(memoryview(entry)[skip:])
        except orjson.JSONDecodeError:
            continue  # not ours to judge: the service's 400 finds it
        if type(line) is dict and enforce_line(line, cuts, meta_size=size):
            if out is None:
                out = list(entries)
            out[index] = SEPARATOR + orjson.dumps(line)
    return entries if out is None else out
