"""A local ingest server that speaks the LogDNA / Mezmo ingest API.

Used by the integration tests, the benchmarks, the demo and by users who want
to see what their application ships (``python -m logdna_client devserver``).
Standard library plus orjson only.

The server records every request it handles (never the API key), keeps the
accepted lines in memory (optional), can tail them to a stream, append them
to a JSON Lines file, and inject faults for tests of retry and backoff:
failures, dropped connections, delays, outages and rejected lines.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import os
import random
import socket
import socketserver
import sys
import threading
import time
import traceback
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import IO, Any, TextIO, cast
from urllib.parse import parse_qsl, urlsplit

import orjson

__all__ = ["MAX_BODY_BYTES", "DevServer", "RequestRecord"]

#: The vendor's documented limit on a request body, on the wire and inflated.
MAX_BODY_BYTES = 10_000_000

INGEST_PATHS = frozenset({"/logs/ingest", "/logs/agent"})

_JSON_CONTENT_TYPE = "application/json; charset=utf-8"
_POLL_INTERVAL = 0.05  # how quickly stop() / go_down() end the accept loop
_JOIN_TIMEOUT = 2.0  # how long stop() waits for connection threads to finish
_LINGER_SECONDS = 1.0  # how long to drain an unread body before closing
_LINGER_BYTES = 64 * 1024 * 1024
_MAX_CHUNK_LINE = 1024
_KEPT_RECORDS_WITHOUT_LINES = 10_000
_REDACTED_HEADERS = frozenset({"apikey", "authorization"})


@dataclass(frozen=True)
class RequestRecord:
    """What the server saw of one HTTP request; never holds the API key.

    Attributes:
        method: The HTTP method.
        path: The request path, without the query string.
        query: Query parameters (last value wins), without ``apikey``.
        headers: Request headers with lower-cased names, without ``apikey``
            and ``authorization``.
        status: The status code answered, or None when the connection was
            closed without a response (``drop_next``, stop, outage).
        gzip: Whether the body was sent with ``Content-Encoding: gzip``.
        body_bytes: The body's length on the wire (Content-Length when given).
        n_lines: Lines accepted from this request (0 unless status is 200).
        connection_id: Distinct per TCP connection, counting from 1.
        key_present: Whether an API key came in any of the three forms.
        key_valid: Whether the key matched; None when the server checks none.
        auth: How the key came: ``"header"``, ``"basic"``, ``"query"`` or None.
        hostname: The ``hostname`` query parameter, if any.
        tags: The ``tags`` query parameter split on commas.
        first_line_index: Index in ``DevServer.lines`` of this request's first
            line, or None when nothing was accepted.
        batch_id: The ``batchID`` answered on success.
        error: The error message answered, if any.
        received_at: ``time.time()`` when the request line arrived.
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    status: int | None
    gzip: bool
    body_bytes: int
    n_lines: int
    connection_id: int
    key_present: bool = False
    key_valid: bool | None = None
    auth: str | None = None
    hostname: str | None = None
    tags: list[str] = field(default_factory=list)
    first_line_index: int | None = None
    batch_id: str | None = None
    error: str | None = None
    received_at: float = 0.0


class _HTTPError(Exception):
    """An error answer decided while handling a request."""

    def __init__(self, status: int, message: str, *, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.close = close


class _Disconnected(Exception):
    """The client went away in the middle of a request."""


@dataclass(frozen=True)
class _Fault:
    drop: bool
    status: int = 503
    retry_after: str | None = None
    body: str = ""


def _inflate(data: bytes, limit: int, wbits: int) -> bytes:
    """Decompress ``data`` without ever holding more than ``limit`` + 1 bytes.

    Raises:
        _HTTPError: 413 when the inflated body exceeds ``limit``, 400 when the
            data is not a complete stream in the expected format.
    """
    chunks: list[bytes] = []
    total = 0
    while True:
        inflater = zlib.decompressobj(wbits)
        try:
            # max_length 0 would mean "no limit"; limit + 1 - total is >= 1 here.
            chunk = inflater.decompress(data, limit + 1 - total)
        except zlib.error as exc:
            raise _HTTPError(400, f"Invalid compressed body: {exc}") from exc
        total += len(chunk)
        if total > limit:
            raise _HTTPError(413, "Request entity too large")
        chunks.append(chunk)
        if not inflater.eof:
            raise _HTTPError(400, "Invalid compressed body: truncated stream")
        data = inflater.unused_data
        # gzip allows several members back to back; padding with NULs is common.
        if wbits < 16 or not data.strip(b"\x00"):
            break
    return b"".join(chunks)


def _parse_lines(body: bytes) -> list[dict[str, Any]]:
    """Turn an ingest body into its list of line objects, or raise a 400."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _HTTPError(400, f"Invalid JSON body: {exc}") from None
    if type(doc) is dict:
        lines = doc.get("lines")
        if lines is None and doc.get("e") == "ls":
            lines = doc.get("ls")
    else:
        lines = None
    if type(lines) is not list:
        raise _HTTPError(400, 'Body must be {"lines": [...]} or {"e": "ls", "ls": [...]}.')
    for index, item in enumerate(lines):
        if type(item) is not dict:
            raise _HTTPError(400, f"Line {index} is not an object.")
        text = item.get("line")
        if type(text) is not str or not text:
            raise _HTTPError(400, f'Line {index} has no "line" field with non-empty text.')
    return cast("list[dict[str, Any]]", lines)


# -- live tail -----------------------------------------------------------------

_RESET = "\x1b[0m"
_DIM = "\x1b[2m"
_APP_COLOR = "\x1b[35m"
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
# A log line must not be able to drive the terminal: show control characters
# (escape sequences included) as \xNN. Newlines and tabs stay.
_CONTROL_ESCAPES = {
    code: f"\\x{code:02x}"
    for code in [*range(0x20), 0x7F, *range(0x80, 0xA0)]
    if code not in (0x09, 0x0A)
}


def _clean(text: str) -> str:
    return text.translate(_CONTROL_ESCAPES)


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
        return "<nested too deeply to show>"


def dump_line(line: Mapping[str, Any]) -> bytes:
    """One received line as JSON, even when its meta is nested too deeply to re-encode."""
    try:
        return orjson.dumps(line)
    except orjson.JSONEncodeError:
        return orjson.dumps({**line, "meta": "<nested too deeply to show>"})


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


def format_line(line: Mapping[str, Any], color: bool, received: float) -> str:
    """Render one line for the live tail: time, level, app, text, meta."""
    stamp = _format_time(line.get("timestamp"), received)
    level = _clean(str(line.get("level") or "-"))
    source = line.get("app") or line.get("file")
    app = f"[{_clean(str(source))}] " if source else ""
    text = _clean(str(line.get("line", ""))).replace("\n", "\n    ")
    meta = _clean(_format_meta(line.get("meta")))
    if color:
        level_color = _LEVEL_COLORS.get(level.upper(), "")
        padded = f"{level:<8}"
        level_part = f"{level_color}{padded}{_RESET}" if level_color else padded
        app_part = f"{_APP_COLOR}{app}{_RESET}" if app else ""
        meta_part = f"  {_DIM}{meta}{_RESET}" if meta else ""
        return f"{_DIM}{stamp}{_RESET} {level_part} {app_part}{text}{meta_part}"
    meta_part = f"  {meta}" if meta else ""
    return f"{stamp} {level:<8} {app}{text}{meta_part}"


# -- HTTP plumbing -------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    """One listening socket; go_down/come_up replace it with a fresh one."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], owner: DevServer, family: int) -> None:
        self.address_family = family
        self.owner = owner
        self.closing = threading.Event()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (getfqdn), which can
        # take seconds on a machine with slow DNS; nothing here needs it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return  # clients vanish; that is their business
        traceback.print_exc(file=sys.stderr)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "logdna-devserver"
    sys_version = ""
    disable_nagle_algorithm = True  # small responses on keep-alive: no 40 ms stalls

    server: _Server
    connection_id = 0
    _received_at = 0.0
    _responded = False

    # -- connection lifecycle

    def setup(self) -> None:
        owner = self.server.owner
        super().setup()
        self.connection.settimeout(owner._timeout)  # a slow client cannot pin a thread forever
        self.connection_id = owner._register(self.server, self.request)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.owner._unregister(self.request)

    def handle_one_request(self) -> None:
        self.command = ""
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.requestline = ""
                self.request_version = ""
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            self._received_at = time.time()
            self._responded = False
            if not self.parse_request():
                return
            self._dispatch()
        except (OSError, _Disconnected):
            self.close_connection = True
        except Exception:
            # A bug here must cost one request, not the server: say so and answer 500.
            traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            if not self._responded:
                with contextlib.suppress(OSError):
                    self._send_json(500, {"error": "Internal server error"}, close=True)

    def log_message(self, format: str, *args: Any) -> None:
        # The request line can carry the key as a query parameter: never log it.
        return

    # -- responses

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # Used by http.server for malformed requests. Its messages quote the
        # request line, which may hold the key: answer with the phrase only.
        status = HTTPStatus(code)
        self._send_json(status, {"error": status.phrase}, close=True)

    def _send_json(
        self,
        status: int,
        payload: object,
        *,
        headers: Iterable[tuple[str, str]] = (),
        close: bool = False,
        raw: bytes | None = None,
    ) -> None:
        body = orjson.dumps(payload) if raw is None else raw
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        head = [
            f"{self.protocol_version} {status} {phrase}",
            f"Server: {self.server_version}",
            f"Date: {self.date_time_string()}",
            f"Content-Type: {_JSON_CONTENT_TYPE}",
            f"Content-Length: {len(body)}",
        ]
        head.extend(f"{name}: {value}" for name, value in headers)
        if close or self.close_connection:
            head.append("Connection: close")
            self.close_connection = True
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1", "replace")
        if self.command != "HEAD":
            data += body
        self._responded = True
        # One write: headers and body in the same segment.
        self.wfile.write(data)

    def handle_expect_100(self) -> bool:
        length = self.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.server.owner._max_body_bytes:
            self._send_json(413, {"error": "Request entity too large"}, close=True)
            return False
        return super().handle_expect_100()

    # -- body

    def _read_body(self) -> tuple[bytes, int]:
        """Read the request body; return it and its on-wire length."""
        limit = self.server.owner._max_body_bytes
        encoding = self.headers.get("Transfer-Encoding")
        if encoding is not None:
            if encoding.strip().lower() != "chunked":
                raise _HTTPError(501, "Unsupported Transfer-Encoding", close=True)
            return self._read_chunked(limit)
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            return b"", 0
        length_header = length_header.strip()
        if not length_header.isdigit():
            raise _HTTPError(400, "Invalid Content-Length", close=True)
        length = int(length_header)
        if length > limit:
            raise _HTTPError(413, "Request entity too large", close=True)
        body = self.rfile.read(length)
        if len(body) < length:
            raise _Disconnected
        return body, length

    def _read_chunked(self, limit: int) -> tuple[bytes, int]:
        chunks: list[bytes] = []
        total = 0
        while True:
            size_line = self.rfile.readline(_MAX_CHUNK_LINE)
            if not size_line:
                raise _Disconnected
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _HTTPError(400, "Invalid chunked body", close=True) from None
            if size < 0:
                raise _HTTPError(400, "Invalid chunked body", close=True)
            if size == 0:
                while self.rfile.readline(_MAX_CHUNK_LINE) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks), total
            total += size
            if total > limit:
                raise _HTTPError(413, "Request entity too large", close=True)
            chunk = self.rfile.read(size)
            if len(chunk) < size:
                raise _Disconnected
            chunks.append(chunk)
            self.rfile.readline(_MAX_CHUNK_LINE)  # the CRLF after the chunk

    def _linger(self) -> None:
        """Close after an error answered before the body was read.

        Closing a socket with unread data sends a reset, and a client still
        sending its body may then never read our answer. Half-close and
        discard what it sends for a moment, as nginx's lingering_close does.
        """
        sock: socket.socket = self.request
        try:
            sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + _LINGER_SECONDS
            drained = 0
            while drained < _LINGER_BYTES:
                left = deadline - time.monotonic()
                if left <= 0 or self.server.closing.is_set():
                    break
                sock.settimeout(min(left, 0.25))
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                drained += len(data)
        except OSError:
            pass
        self.close_connection = True

    # -- dispatch

    def _dispatch(self) -> None:
        command = self.command
        path = urlsplit(self.path).path or "/"
        if command == "POST":
            self._post(path)
        elif command in ("GET", "HEAD"):
            self._get(path)
        else:
            self._other(path)

    def _record(self, path: str, status: int | None, **fields: Any) -> RequestRecord:
        headers = {
            name.lower(): value
            for name, value in self.headers.items()
            if name.lower() not in _REDACTED_HEADERS
        }
        record = RequestRecord(
            method=self.command,
            path=path,
            query=fields.pop("query", {}),
            headers=headers,
            status=status,
            gzip=fields.pop("gzip", False),
            body_bytes=fields.pop("body_bytes", 0),
            n_lines=fields.pop("n_lines", 0),
            connection_id=self.connection_id,
            received_at=self._received_at,
            **fields,
        )
        return record

    def _query(self) -> dict[str, str]:
        query = urlsplit(self.path).query
        return {
            name: value
            for name, value in parse_qsl(query, keep_blank_values=True)
            if name.lower() != "apikey"
        }

    def _drain_or_close(self) -> None:
        """Read and discard a body we do not care about, keeping keep-alive."""
        try:
            self._read_body()
        except _HTTPError:
            self.close_connection = True

    def _get(self, path: str) -> None:
        owner = self.server.owner
        query = self._query()
        payload: dict[str, Any]
        if path == "/":
            payload = owner._status_page()
            status = 200
        elif path in INGEST_PATHS:
            payload = {"error": "Method not allowed; POST lines here."}
            status = 405
        else:
            payload = {"error": "Not found"}
            status = 404
        allow = [("Allow", "POST")] if status == 405 else []
        owner._add_record(self._record(path, status, query=query, error=payload.get("error")))
        self._send_json(status, payload, headers=allow)

    def _other(self, path: str) -> None:
        owner = self.server.owner
        self._drain_or_close()
        if path in INGEST_PATHS or path == "/":
            status, message = 405, "Method not allowed"
            headers = [("Allow", "POST" if path in INGEST_PATHS else "GET, HEAD")]
        else:
            status, message, headers = 404, "Not found", []
        owner._add_record(self._record(path, status, query=self._query(), error=message))
        self._send_json(status, {"error": message}, headers=headers)

    def _post(self, path: str) -> None:
        owner = self.server.owner
        query = self._query()
        if path not in INGEST_PATHS:
            self._drain_or_close()
            status, message = (405, "Method not allowed") if path == "/" else (404, "Not found")
            headers = [("Allow", "GET, HEAD")] if status == 405 else []
            owner._add_record(self._record(path, status, query=query, error=message))
            self._send_json(status, {"error": message}, headers=headers)
            return

        content_encoding = (self.headers.get("Content-Encoding") or "").strip().lower()
        is_gzip = content_encoding in ("gzip", "x-gzip")
        key_present, key_valid, auth = self._check_key()
        hostname = query.get("hostname") or None
        tags = [tag.strip() for tag in query.get("tags", "").split(",") if tag.strip()]
        common: dict[str, Any] = {
            "query": query,
            "gzip": is_gzip,
            "key_present": key_present,
            "key_valid": key_valid,
            "auth": auth,
            "hostname": hostname,
            "tags": tags,
        }
        length_header = self.headers.get("Content-Length", "").strip()
        claimed = int(length_header) if length_header.isdigit() else 0

        try:
            body, wire_bytes = self._read_body()
        except _HTTPError as exc:
            owner._add_record(
                self._record(path, exc.status, body_bytes=claimed, error=exc.message, **common)
            )
            self._send_json(exc.status, {"error": exc.message}, close=True)
            self._linger()
            return
        common["body_bytes"] = wire_bytes

        fault = owner._take_fault()
        delay = owner._current_delay()
        if delay > 0 and self.server.closing.wait(delay):
            owner._add_record(self._record(path, None, error="server stopped", **common))
            self.close_connection = True
            return
        if fault is not None and fault.drop:
            owner._add_record(self._record(path, None, error="dropped (drop_next)", **common))
            self.close_connection = True
            return
        if fault is not None:
            extra = [("Retry-After", fault.retry_after)] if fault.retry_after is not None else []
            message = "injected failure"
            raw = fault.body.encode() if fault.body else None
            owner._add_record(self._record(path, fault.status, error=message, **common))
            self._send_json(fault.status, {"error": message}, headers=extra, raw=raw)
            return

        try:
            if owner._key is not None and not key_present:
                raise _HTTPError(401, "Missing apikey.")
            if owner._key is not None and not key_valid:
                raise _HTTPError(403, "Invalid apikey.")
            if hostname is None:
                raise _HTTPError(400, "Missing param hostname.")
            if is_gzip:
                body = _inflate(body, owner._max_body_bytes, 16 + zlib.MAX_WBITS)
            elif content_encoding == "deflate":
                body = _inflate(body, owner._max_body_bytes, zlib.MAX_WBITS)
            elif content_encoding not in ("", "identity"):
                raise _HTTPError(415, "Unsupported Content-Encoding.")
            lines = _parse_lines(body)
            needle = owner._reject_substring
            if needle is not None and any(needle in line["line"] for line in lines):
                raise _HTTPError(400, "bad line")
        except _HTTPError as exc:
            owner._add_record(self._record(path, exc.status, error=exc.message, **common))
            self._send_json(exc.status, {"error": exc.message}, close=exc.close)
            return

        batch_id = str(uuid.uuid4())
        owner._accept(
            lines,
            lambda first: self._record(
                path,
                200,
                n_lines=len(lines),
                first_line_index=first,
                batch_id=batch_id,
                **common,
            ),
            self._received_at,
        )
        self._send_json(200, {"status": "ok", "batchID": batch_id})

    def _check_key(self) -> tuple[bool, bool | None, str | None]:
        """Find the key in header, Basic auth or query; say whether it is valid."""
        key: str | None = self.headers.get("apikey")
        auth: str | None = "header" if key is not None else None
        if key is None:
            authorization = self.headers.get("Authorization", "")
            scheme, _, credentials = authorization.partition(" ")
            if scheme.lower() == "basic" and credentials.strip():
                try:
                    decoded = base64.b64decode(credentials.strip(), validate=True).decode()
                except (binascii.Error, UnicodeDecodeError):
                    decoded = ""
                user = decoded.partition(":")[0]
                if user:
                    key, auth = user, "basic"
        if key is None:
            raw_query = urlsplit(self.path).query
            for name, value in parse_qsl(raw_query, keep_blank_values=True):
                if name.lower() == "apikey" and value:
                    key, auth = value, "query"
        expected = self.server.owner._key
        if expected is None:
            return key is not None, None, auth
        if key is None:
            return False, False, None
        valid = hmac.compare_digest(key.encode(), expected.encode())
        return True, valid, auth


# -- the public object ---------------------------------------------------------


class DevServer:
    """A local LogDNA / Mezmo ingest server for tests, benchmarks and demos.

    Example::

        with DevServer() as server:
            client = Client(key="any", url=server.url, hostname="test")
            client.log("hello")
            client.flush()
            assert server.wait_for_lines(1, timeout=5)
            assert "hello" == server.lines[0]["line"]

    Args:
        host: Address to listen on; loopback by default.
        port: Port to listen on; 0 picks a free one (see ``port`` after start).
        key: When given, requests must carry this key (401 missing,
            403 wrong). Without it any key, or none, is accepted.
        out: Stream for the live tail of received lines; None prints nothing.
        json_output: Tail each line as one raw JSON object per line.
        color: Colour the tail by level; None means ``out.isatty()`` (and no
            ``NO_COLOR`` in the environment).
        store: Path of a JSON Lines file every accepted line is appended to.
            When writing it fails, storing stops (the server keeps serving) and
            ``store_error`` holds the reason.
        keep_lines: Keep accepted lines in ``lines``. Benchmarks turn it off
            and read ``line_count``; then only the most recent request
            records are kept (``request_count`` counts all).
        max_body_bytes: The body size limit, on the wire and inflated.
        timeout: Socket timeout for client connections, in seconds.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        key: str | None = None,
        out: TextIO | None = None,
        json_output: bool = False,
        color: bool | None = None,
        store: str | None = None,
        keep_lines: bool = True,
        max_body_bytes: int = MAX_BODY_BYTES,
        timeout: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port
        self._key = key
        self._out = out
        #: Why writing the ``store`` file failed, once it did (storing then stops).
        self.store_error: Exception | None = None
        self._json_output = json_output
        if color is None:
            color = out is not None and "NO_COLOR" not in os.environ and isatty(out)
        self._color = color
        self._store_path = store
        self._store_file: IO[bytes] | None = None
        self._keep_lines = keep_lines
        self._max_body_bytes = max_body_bytes
        self._timeout = timeout

        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._out_lock = threading.Lock()
        self._control = threading.RLock()  # start/stop/go_down/come_up
        self._lines: list[dict[str, Any]] = []
        self._line_count = 0
        self._requests: deque[RequestRecord] = deque(
            maxlen=None if keep_lines else _KEPT_RECORDS_WITHOUT_LINES
        )
        self._request_count = 0
        self._connections = 0
        self._connection_seq = 0
        self._open: dict[socket.socket, tuple[_Server, threading.Thread]] = {}

        self._drop_n = 0
        self._fail_n = 0
        self._fail_status = 503
        self._fail_retry_after: str | None = None
        self._fail_body = ""
        self._delay = 0.0
        self._fail_rate = 0.0
        self._fail_rate_status = 503
        self._fail_rate_retry_after: str | None = None
        self._rng = random.Random()
        self._reject_substring: str | None = None

        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._running = False

    def __repr__(self) -> str:
        state = "up" if self._server is not None else "down" if self._running else "stopped"
        return f"<DevServer {self.url} {state} lines={self._line_count}>"

    # -- lifecycle

    def start(self) -> DevServer:
        """Listen and serve from a daemon thread; return self.

        Raises:
            OSError: The address cannot be bound.
        """
        with self._control:
            if self._running:
                return self
            if self._store_path is not None and self._store_file is None:
                self._store_file = open(self._store_path, "ab")  # noqa: SIM115
            try:
                self._listen()
            except BaseException:
                self._close_store()
                raise
            self._running = True
        return self

    def stop(self) -> None:
        """Close the listening socket and every open connection."""
        with self._control:
            self._running = False
            self._shutdown_listener()
            self._close_store()

    def go_down(self) -> None:
        """Simulate an outage: refuse connections and drop open ones, keep the port."""
        with self._control:
            self._shutdown_listener()

    def come_up(self) -> None:
        """End an outage: listen again on the same port.

        Raises:
            RuntimeError: The server was never started, or was stopped.
            OSError: The port was taken meanwhile.
        """
        with self._control:
            if not self._running:
                raise RuntimeError("DevServer.come_up() needs a started server")
            if self._server is None:
                self._listen()

    def __enter__(self) -> DevServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _listen(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        server = _Server((self.host, self.port), self, family)
        self.port = int(server.server_address[1])
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL},
            name=f"logdna-devserver:{self.port}",
            daemon=True,
        )
        thread.start()
        self._server, self._thread = server, thread

    def _shutdown_listener(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._server = self._thread = None
        server.closing.set()  # wakes delayed handlers; new connections are closed
        server.shutdown()
        server.server_close()
        thread.join()
        with self._lock:
            mine = [(sock, th) for sock, (srv, th) in self._open.items() if srv is server]
        for sock, _ in mine:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv
        deadline = time.monotonic() + _JOIN_TIMEOUT
        for _, handler_thread in mine:
            if handler_thread is not threading.current_thread():
                handler_thread.join(max(0.0, deadline - time.monotonic()))

    def _close_store(self) -> None:
        with self._out_lock:
            if self._store_file is not None:
                self._store_file.close()
                self._store_file = None

    # -- connection bookkeeping (called from handler threads)

    def _register(self, server: _Server, sock: socket.socket) -> int:
        with self._lock:
            self._connection_seq += 1
            self._connections += 1
            self._open[sock] = (server, threading.current_thread())
            connection_id = self._connection_seq
            closing = server.closing.is_set()
        if closing:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        return connection_id

    def _unregister(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.pop(sock, None)

    def _add_record(self, record: RequestRecord) -> None:
        with self._cond:
            self._requests.append(record)
            self._request_count += 1
            self._cond.notify_all()

    def _accept(
        self,
        lines: list[dict[str, Any]],
        make_record: Callable[[int], RequestRecord],
        received: float,
    ) -> None:
        # Output first, then publish: whoever wakes from wait_for_lines()
        # finds the tail and the store file already written.
        with self._out_lock:
            if self._out is not None or self._store_file is not None:
                self._emit(lines, received)
            with self._cond:
                first = self._line_count
                if self._keep_lines:
                    self._lines.extend(lines)
                self._line_count += len(lines)
                self._requests.append(make_record(first))
                self._request_count += 1
                self._cond.notify_all()

    def _emit(self, lines: list[dict[str, Any]], received: float) -> None:
        if self._store_file is not None:
            try:
                self._store_file.write(b"".join(dump_line(line) + b"\n" for line in lines))
                self._store_file.flush()
            except (OSError, ValueError) as exc:
                # Keep serving; the reason stays readable, and the tail (if any) says so.
                self.store_error = exc
                self._store_file = None
                if self._out is not None:
                    with contextlib.suppress(OSError, ValueError):
                        self._out.write(f"devserver: cannot write the store file: {exc}\n")
        out = self._out
        if out is None:
            return
        if self._json_output:
            text = "".join(dump_line(line).decode() + "\n" for line in lines)
        else:
            color = self._color
            text = "".join(format_line(line, color, received) + "\n" for line in lines)
        try:
            out.write(text)
            out.flush()
        except (OSError, ValueError):
            self._out = None  # closed stream or broken pipe: stop tailing, keep serving

    def _status_page(self) -> dict[str, Any]:
        with self._lock:
            return {
                "status": "ok",
                "service": "logdna_client devserver",
                "ingest_url": self.url,
                "key_required": self._key is not None,
                "lines": self._line_count,
                "requests": self._request_count,
                "connections": self._connections,
            }

    # -- what the server saw

    @property
    def url(self) -> str:
        """The ingest URL, e.g. ``http://127.0.0.1:8080/logs/ingest``."""
        return f"{self.base_url}/logs/ingest"

    @property
    def base_url(self) -> str:
        """Scheme, host and port, e.g. ``http://127.0.0.1:8080``."""
        host = self.host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def lines(self) -> list[dict[str, Any]]:
        """A copy of every accepted line, in arrival order, exactly as sent."""
        with self._lock:
            return list(self._lines)

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the records of the requests handled, in order."""
        with self._lock:
            return list(self._requests)

    @property
    def line_count(self) -> int:
        """How many lines were accepted (also when ``keep_lines`` is off)."""
        with self._lock:
            return self._line_count

    @property
    def request_count(self) -> int:
        """How many requests were handled (also those no longer kept)."""
        with self._lock:
            return self._request_count

    @property
    def connections(self) -> int:
        """How many TCP connections were accepted."""
        with self._lock:
            return self._connections

    def wait_for_lines(self, n: int, timeout: float) -> bool:
        """Wait until at least ``n`` lines were accepted; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._line_count >= n, timeout)

    def wait_for_requests(self, n: int, timeout: float) -> bool:
        """Wait until at least ``n`` requests (of any kind) were handled; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._request_count >= n, timeout)

    def clear(self) -> None:
        """Forget lines, request records and counts; faults stay as set."""
        with self._cond:
            self._lines = []
            self._line_count = 0
            self._requests.clear()
            self._request_count = 0
            self._connections = 0

    # -- fault injection

    def fail_next(
        self, n: int, status: int = 503, retry_after: str | None = None, body: str = ""
    ) -> None:
        """Answer the next ``n`` ingest POSTs with ``status``, storing nothing.

        Args:
            n: How many requests fail; 0 cancels.
            status: The status code to answer.
            retry_after: Value of a ``Retry-After`` header, if any.
            body: Response body; a JSON error object when empty.
        """
        with self._lock:
            self._fail_n = max(0, n)
            self._fail_status = status
            self._fail_retry_after = retry_after
            self._fail_body = body

    def drop_next(self, n: int) -> None:
        """Read the next ``n`` ingest POSTs, then close without answering."""
        with self._lock:
            self._drop_n = max(0, n)

    def set_delay(self, seconds: float) -> None:
        """Wait ``seconds`` before answering each ingest POST; 0 turns it off."""
        with self._lock:
            self._delay = max(0.0, seconds)

    def set_fail_rate(
        self,
        rate: float,
        status: int = 503,
        seed: int | None = None,
        retry_after: str | None = None,
    ) -> None:
        """Fail a random fraction ``rate`` (0 to 1) of ingest POSTs with ``status``
        (and a Retry-After header when ``retry_after`` is given)."""
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be between 0 and 1, got {rate!r}")
        with self._lock:
            self._fail_rate = rate
            self._fail_rate_status = status
            self._fail_rate_retry_after = retry_after
            self._rng = random.Random(seed)

    def reject_lines_matching(self, substring: str | None) -> None:
        """Answer 400 to any batch with a line whose text contains ``substring``."""
        with self._lock:
            self._reject_substring = substring or None

    def reset_faults(self) -> None:
        """Turn every injected fault off."""
        with self._lock:
            self._drop_n = self._fail_n = 0
            self._delay = self._fail_rate = 0.0
            self._reject_substring = None

    def _take_fault(self) -> _Fault | None:
        with self._lock:
            if self._drop_n > 0:
                self._drop_n -= 1
                return _Fault(drop=True)
            if self._fail_n > 0:
                self._fail_n -= 1
                return _Fault(False, self._fail_status, self._fail_retry_after, self._fail_body)
            if self._fail_rate > 0.0 and self._rng.random() < self._fail_rate:
                return _Fault(False, self._fail_rate_status, self._fail_rate_retry_after)
            return None

    def _current_delay(self) -> float:
        with self._lock:
            return self._delay


def isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False
