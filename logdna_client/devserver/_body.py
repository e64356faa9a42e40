"""Request bodies: their limits, reading them off the socket, decoding and parsing.

Memory is the point of this module. A 9 MB body of small lines decodes to
several times its size in Python objects, so the server lets only a few
bodies in at a time (``BodyGate``) and keeps the rest waiting in the kernel's
socket buffers, where TCP slows their senders down. A compressed body is
inflated as it arrives, so the compressed and the inflated copy never both
sit in memory whole.
"""

from __future__ import annotations

import contextlib
import io
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import orjson

from .._limits import BODY_BYTES

#: The vendor's documented limit on a request body (``_limits.BODY_BYTES``), enforced
#: on the wire and inflated.
MAX_BODY_BYTES = BODY_BYTES
#: How many request bodies are read and decoded at the same time, by default.
MAX_CONCURRENT_BODIES = 4

_READ_SIZE = 256 * 1024
_MAX_CHUNK_LINE = 1024
_GATE_POLL = 0.25  # how often a request waiting for the gate checks for stop()


class HTTPError(Exception):
    """An error answer decided while handling a request."""

    def __init__(self, status: int, message: str, *, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.close = close


class Disconnected(Exception):
    """The client went away in the middle of a request (or the server is stopping)."""


class BodyGate:
    """Lets at most ``limit`` request bodies be read and decoded at once."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit!r}")
        self.limit = limit
        self._cond = threading.Condition()
        self.inside = 0  # requests holding a slot
        self.waiting = 0  # requests waiting for one

    @contextlib.contextmanager
    def slot(self, closing: threading.Event) -> Iterator[None]:
        """Hold one slot for the block; give up when ``closing`` is set.

        Raises:
            Disconnected: The server stopped while this request waited.
        """
        with self._cond:
            self.waiting += 1
            self._cond.notify_all()
            try:
                while self.inside >= self.limit:
                    if closing.is_set():
                        raise Disconnected
                    self._cond.wait(_GATE_POLL)
            finally:
                self.waiting -= 1
            self.inside += 1
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self.inside -= 1
                self._cond.notify_all()

    def wait_until(self, predicate: Callable[[BodyGate], bool], timeout: float) -> bool:
        """Wait until ``predicate(self)`` holds; False on timeout (for tests)."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)


class _Sink:
    """Collects a body as it is read, inflating it on the way when compressed.

    A decoding error is remembered, not raised, so the caller still reads the
    whole body off the connection and can keep it alive; ``finish`` raises it.
    """

    def __init__(self, limit: int, encoding: str) -> None:
        self._limit = limit
        self.data = bytearray()
        self.error: HTTPError | None = None
        self._gzip = encoding in ("gzip", "x-gzip")
        self._rest = bytearray()  # bytes after a complete stream
        self._inflater: Any = None
        if self._gzip:
            self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._inflater = zlib.decompressobj(zlib.MAX_WBITS)
        elif encoding not in ("", "identity"):
            self.error = HTTPError(415, "Unsupported Content-Encoding.")

    @property
    def plain(self) -> bool:
        """Whether the body is taken as it comes (no decoding, no error yet)."""
        return self._inflater is None and self.error is None

    def feed(self, data: bytes | memoryview) -> None:
        if self.error is not None:
            return
        inflater = self._inflater
        if inflater is None:
            self.data += data
            return
        try:
            while data:
                if inflater.eof:
                    self._rest += data
                    # gzip allows several members back to back; NUL padding is common.
                    if not self._gzip or not self._rest.strip(b"\x00"):
                        return
                    data, self._rest = bytes(self._rest), bytearray()
                    inflater = self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                # max_length 0 would mean "no limit"; it is >= 1 here.
                chunk = inflater.decompress(data, self._limit + 1 - len(self.data))
                self.data += chunk
                if len(self.data) > self._limit:
                    self._fail(HTTPError(413, "Request entity too large"))
                    return
                data = inflater.unconsumed_tail or (inflater.unused_data if inflater.eof else b"")
        except zlib.error as exc:
            self._fail(HTTPError(400, f"Invalid compressed body: {exc}"))

    def _fail(self, error: HTTPError) -> None:
        self.error = error
        self.data = bytearray()  # nothing more is kept of a body already refused

    def finish(self) -> bytearray:
        if self.error is None and self._inflater is not None and not self._inflater.eof:
            self._fail(HTTPError(400, "Invalid compressed body: truncated stream"))
        if self.error is not None:
            raise self.error
        return self.data


@dataclass
class Body:
    """A request body as read: its decoded bytes (or why not) and its size on the wire."""

    sink: _Sink
    wire_bytes: int

    def decoded(self) -> bytearray:
        """The inflated body.

        Raises:
            HTTPError: 400 (bad compressed data), 413 (inflates past the limit)
                or 415 (unknown encoding).
        """
        return self.sink.finish()


def read_body(rfile: io.BufferedIOBase, headers: Any, limit: int) -> Body:
    """Read a request body off ``rfile``, decoding it on the way.

    Raises:
        HTTPError: The framing is invalid or the body is over ``limit`` on the
            wire; the connection must then be closed.
        Disconnected: The client went away before the end of the body.
    """
    sink = _Sink(limit, (headers.get("Content-Encoding") or "").strip().lower())
    encoding = headers.get("Transfer-Encoding")
    if encoding is not None:
        if encoding.strip().lower() != "chunked":
            raise HTTPError(501, "Unsupported Transfer-Encoding", close=True)
        return Body(sink, _read_chunked(rfile, sink, limit))
    length_header = headers.get("Content-Length")
    if length_header is None:
        return Body(sink, 0)
    length_header = length_header.strip()
    if not length_header.isdigit():
        raise HTTPError(400, "Invalid Content-Length", close=True)
    length = int(length_header)
    if length > limit:
        raise HTTPError(413, "Request entity too large", close=True)
    if sink.plain:
        sink.data = _read_into_buffer(rfile, length)
    else:
        _read_into_sink(rfile, sink, length)
    return Body(sink, length)


def _read_into_buffer(rfile: io.BufferedIOBase, length: int) -> bytearray:
    """A plain body straight into its final buffer: one copy, no joining."""
    buffer = bytearray(length)
    with memoryview(buffer) as view:
        got = 0
        while got < length:
            n = rfile.readinto(view[got:])
            if not n:
                raise Disconnected
            got += n
    return buffer


def _read_into_sink(rfile: io.BufferedIOBase, sink: _Sink, length: int) -> None:
    left = length
    while left > 0:
        data = rfile.read(min(left, _READ_SIZE))
        if not data:
            raise Disconnected
        left -= len(data)
        sink.feed(data)


def _read_chunked(rfile: io.BufferedIOBase, sink: _Sink, limit: int) -> int:
    total = 0
    while True:
        size_line = rfile.readline(_MAX_CHUNK_LINE)
        if not size_line:
            raise Disconnected
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise HTTPError(400, "Invalid chunked body", close=True) from None
        if size < 0:
            raise HTTPError(400, "Invalid chunked body", close=True)
        if size == 0:
            while rfile.readline(_MAX_CHUNK_LINE) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return total
        total += size
        if total > limit:
            raise HTTPError(413, "Request entity too large", close=True)
        _read_into_sink(rfile, sink, size)
        rfile.readline(_MAX_CHUNK_LINE)  # the CRLF after the chunk


def parse_lines(body: bytes | bytearray) -> list[dict[str, Any]]:
    """Turn an ingest body into its list of line objects, or raise a 400."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HTTPError(400, f"Invalid JSON body: {exc}") from None
    if type(doc) is dict:
        lines = doc.get("lines")
        if lines is None and doc.get("e") == "ls":
            lines = doc.get("ls")
    else:
        lines = None
    if type(lines) is not list:
        raise HTTPError(400, 'Body must be {"lines": [...]} or {"e": "ls", "ls": [...]}.')
    for index, item in enumerate(lines):
        if type(item) is not dict:
            raise HTTPError(400, f"Line {index} is not an object.")
        text = item.get("line")
        if type(text) is not str or not text:
            raise HTTPError(400, f'Line {index} has no "line" field with non-empty text.')
    return cast("list[dict[str, Any]]", lines)
