"""The terminal tail: one readable (or raw JSON) line per received line."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO, cast

import orjson

from .._controls import CONTROL, escaped
from ._store import NESTED_TOO_DEEP, Origin, dump_line

_RESET = "\x1b[0m"
_DIM = "\x1b[2m"
_APP_COLOR = "\x1b[35m"
_HOST_COLOR = "\x1b[34m"
_LEVEL_COLORS = {
    "TRACE": _DIM,
    "DEBUG": "\x1b[36m",
    "FINE": "\x1b[36m",
    "INFO": "\x1b[32m",
    "NOTICE": "\x1b[32m",
    "WARN": "\x1b[33m",
    "WARNING": "\x1b[33m",
    "ERR": "\x1b[31m",
    "ERROR": "\x1b[31m",
    "SEVERE": "\x1b[1;31m",
    "CRITICAL": "\x1b[1;31m",
    "FATAL": "\x1b[1;31m",
    "ALERT": "\x1b[1;31m",
    "EMERGENCY": "\x1b[1;31m",
    "PANIC": "\x1b[1;31m",
}
# Lines are written in slices of this many, so one huge batch never becomes
# one huge string.
_WRITE_SLICE = 1000


def _clean(text: str) -> str:
    """``text`` with what could drive the terminal or reorder what it shows (escape
    sequences, bidirectional controls: the library's one set) escaped as ``\\x1b``,
    ``\\u202e``."""
    return CONTROL.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    # Newlines and tabs stay: a traceback shows as lines, indented under its line.
    return char if char in "\t\n" else escaped(char)


def _format_time(timestamp: object, received: float) -> str:
    """Local HH:MM:SS.mmm of a line's millisecond timestamp, else of ``received``."""
    millis_total = int(received * 1000)
    if type(timestamp) in (int, float):
        with contextlib.suppress(OverflowError, ValueError):
            millis_total = int(cast(float, timestamp))  # integer maths: no 0.123 -> 122
    seconds, millis = divmod(millis_total, 1000)
    try:
        local = time.localtime(seconds)
    except (OverflowError, OSError, ValueError):
        seconds, millis = divmod(int(received * 1000), 1000)
        local = time.localtime(seconds)
    return f"{time.strftime('%H:%M:%S', local)}.{millis:03d}"


def _format_value(value: object) -> str:
    if type(value) is str and value and not any(c.isspace() or c in '="' for c in value):
        return value
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:  # valid JSON nested deeper than orjson writes back
        return NESTED_TOO_DEEP


def _format_meta(meta: object) -> str:
    if meta is None:
        return ""
    if type(meta) is str:
        try:
            parsed = orjson.loads(meta)
        except orjson.JSONDecodeError:
            return f"meta={_format_value(meta)}"
        if type(parsed) is not dict:
            return f"meta={_format_value(meta)}"
        meta = parsed
    if type(meta) is dict:
        return " ".join(f"{key}={_format_value(value)}" for key, value in meta.items())
    return f"meta={_format_value(meta)}"


def _format_context(line: Mapping[str, Any], origin: Origin | None) -> str:
    """``env=... tags=... ip=... mac=...``: what the request and the line say of the source."""
    parts = []
    env = line.get("env")
    if env:
        parts.append(f"env={_format_value(str(env))}")
    if origin is not None:
        if origin.tags:
            parts.append(f"tags={_format_value(','.join(origin.tags))}")
        if origin.ip is not None:
            parts.append(f"ip={_format_value(origin.ip)}")
        if origin.mac is not None:
            parts.append(f"mac={_format_value(origin.mac)}")
    return " ".join(parts)


def format_line(
    line: Mapping[str, Any], color: bool, received: float, origin: Origin | None = None
) -> str:
    """Render one line for the live tail: time, level, host, [app], text, meta, (source)."""
    stamp = _format_time(line.get("timestamp"), received)
    level = _clean(str(line.get("level") or "-"))
    host = _clean(origin.hostname) + " " if origin is not None and origin.hostname else ""
    source = line.get("app") or line.get("file")
    app = f"[{_clean(str(source))}] " if source else ""
    text = _clean(str(line.get("line", ""))).replace("\n", "\n    ")
    meta = _clean(_format_meta(line.get("meta")))
    context = _clean(_format_context(line, origin))
    if color:
        level_color = _LEVEL_COLORS.get(level.upper(), "")
        padded = f"{level:<8}"
        level_part = f"{level_color}{padded}{_RESET}" if level_color else padded
        host_part = f"{_HOST_COLOR}{host}{_RESET}" if host else ""
        app_part = f"{_APP_COLOR}{app}{_RESET}" if app else ""
        meta_part = f"  {_DIM}{meta}{_RESET}" if meta else ""
        context_part = f"  {_DIM}({context}){_RESET}" if context else ""
        return (
            f"{_DIM}{stamp}{_RESET} {level_part} {host_part}{app_part}{text}"
            f"{meta_part}{context_part}"
        )
    meta_part = f"  {meta}" if meta else ""
    context_part = f"  ({context})" if context else ""
    return f"{stamp} {level:<8} {host}{app}{text}{meta_part}{context_part}"


def isatty(stream: TextIO) -> bool:
    """Whether ``stream`` is a terminal; False for anything that cannot say."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class Tail:
    """Writes received lines to a stream, readable or as raw JSON Lines.

    A stream that fails (closed, broken pipe) ends the tail; the server keeps
    serving.
    """

    def __init__(self, out: TextIO, *, json_output: bool, color: bool) -> None:
        self.out: TextIO | None = out
        self._json = json_output
        self._color = color

    def write(self, lines: Sequence[Mapping[str, Any]], origin: Origin, received: float) -> None:
        render: Callable[[Mapping[str, Any]], str]
        if self._json:

            def render(line: Mapping[str, Any]) -> str:
                return dump_line(line, origin).decode()

        else:
            color = self._color

            def render(line: Mapping[str, Any]) -> str:
                return format_line(line, color, received, origin)

        for start in range(0, len(lines), _WRITE_SLICE):
            out = self.out
            if out is None:
                return
            text = "".join(render(line) + "\n" for line in lines[start : start + _WRITE_SLICE])
            try:
                out.write(text)
                out.flush()
            except (OSError, ValueError):
                self.out = None  # closed stream or broken pipe: stop tailing, keep serving

    def notice(self, text: str) -> None:
        """A message about the server itself, in the tail."""
        if self.out is not None:
            with contextlib.suppress(OSError, ValueError):
                self.out.write(text + "\n")
                self.out.flush()
