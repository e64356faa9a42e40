"""A small real HTTP server for the OTLP and auth tests.

It accepts OTLP/HTTP JSON at ``/v1/logs`` through exactly the functions the
devserver is to call (``decode_export_request``, ``export_response``), and
LogDNA bodies on any other path; it checks that exactly one credential
arrives, parses every OTLP body with the official protobuf definitions, and
can be told to answer the next requests with a given status.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from logdna_client import Client
from logdna_client._auth import credentials_in
from logdna_client._otlp import receive


@dataclass
class Request:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    credentials: list[tuple[str, str]]
    body: bytes
    at: float
    status: int = 0
    parsed: ExportLogsServiceRequest | None = None
    lines: list[dict[str, Any]] = field(default_factory=list)


class Server:
    """Starts on a free loopback port; ``url`` is its ``/v1/logs``."""

    def __init__(self, expected: tuple[str, str] | None = None) -> None:
        #: (header name, value) that must be the one credential, or None to take any.
        self.expected = expected
        self.requests: list[Request] = []
        self.lines: list[dict[str, Any]] = []
        #: Lines whose text holds this are refused in a 200 partial success.
        self.reject_substring: str | None = None
        #: A request with a line holding this is answered 400.
        self.poison: str | None = None
        #: While True, every request (its credential checked and recorded) is answered 503.
        self.down = False
        #: A body (inflated) longer than this is answered 413, as a Collector's
        #: ``max_request_body_size`` refuses it.
        self.max_body: int | None = None
        self._script: list[tuple[int, dict[str, str], bytes]] = []
        #: Requests still to be held unanswered (``hold_next``), and what ends the hold.
        self._holds = 0
        self._released = threading.Event()
        self._cond = threading.Condition()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                owner._handle(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        self.base = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self.url = self.base + "/v1/logs"

    def answer_next(self, status: int, headers: dict[str, str] | None = None,
                    body: bytes = b"{}") -> None:  # fmt: skip
        """Answer the next request (after those already scripted) with ``status``."""
        with self._cond:
            self._script.append((status, headers or {}, body))

    def hold_next(self, n: int = 1) -> None:
        """Leave the next ``n`` requests unanswered (read, recorded, never answered) until
        ``close``: a receiver that hangs, for the client's request timeout to end."""
        with self._cond:
            self._holds += n

    def wait_for_lines(self, n: int, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.lines) >= n, timeout)

    def wait_for_requests(self, n: int, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.requests) >= n, timeout)

    def close(self) -> None:
        self._released.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length)
        if (h.headers.get("Content-Encoding") or "").lower() == "gzip":
            raw = gzip.decompress(raw)
        parts = urlsplit(h.path)
        query = dict(parse_qsl(parts.query))
        headers = {k: v for k, v in h.headers.items()}
        found = credentials_in(h.headers.items(), parse_qsl(parts.query))
        request = Request(parts.path, query, headers, found, raw, time.monotonic())
        with self._cond:
            held = self._holds > 0
            if held:
                self._holds -= 1
                self.requests.append(request)
                self._cond.notify_all()
        if held:
            self._released.wait(60)
            h.close_connection = True
            return
        status, extra, body = self._decide(request)
        request.status = status
        with self._cond:
            self.requests.append(request)
            if status == 200:
                self.lines.extend(request.lines)
            self._cond.notify_all()
        h.send_response(status)
        for name, value in extra.items():
            h.send_header(name, value)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _decide(self, request: Request) -> tuple[int, dict[str, str], bytes]:
        if len(request.credentials) != 1:
            return 401, {}, b'{"error": "exactly one credential expected"}'
        if self.expected is not None and request.credentials[0] != self.expected:
            return 403, {}, b'{"error": "wrong credential"}'
        if self.down:
            return 503, {}, b'{"error": "down"}'
        with self._cond:
            scripted = self._script.pop(0) if self._script else None
        if scripted is not None:
            return scripted
        if request.path == "/v1/logs":
            # What the official definitions make of it first: a body that does not
            # parse is a 400 here, which the tests notice.
            # Refusals in the Collector's shape: a google.rpc.Status as JSON.
            if self.max_body is not None and len(request.body) > self.max_body:
                return 413, {}, status_body(8, "request body too large")
            try:
                request.parsed = json_format.Parse(request.body, ExportLogsServiceRequest())
            except json_format.ParseError as exc:
                return 400, {}, status_body(3, str(exc))
            if self.poison is not None and self.poison.encode() in request.body:
                return 400, {}, status_body(3, "bad line: unable to decode the record")
            needle = self.reject_substring
            status, answer, lines = receive(
                request.body, None if needle is None else (lambda line: needle in line["line"])
            )
            request.lines = lines
            return status, {}, answer
        try:
            lines = orjson.loads(request.body)["lines"]
        except (KeyError, ValueError) as exc:
            return 400, {}, orjson.dumps({"error": str(exc)})
        request.lines = lines
        return 200, {}, b'{"status": "ok"}'


def status_body(code: int, message: str) -> bytes:
    """A google.rpc.Status in the OTLP/HTTP JSON encoding, as a Collector answers a refusal."""
    return orjson.dumps({"code": code, "message": message, "details": []})


@contextmanager
def running(expected: tuple[str, str] | None = None) -> Iterator[Server]:
    server = Server(expected)
    try:
        yield server
    finally:
        server.close()


def otlp_client(url: str | None, **options: Any) -> Client:
    """An OTLP client to ``url`` (None: the OTel endpoint variables' URL), quick to flush
    and to retry."""
    defaults: dict[str, Any] = {
        "protocol": "otlp", "url": url, "kubernetes": False, "handle_signals": False,
        "flush_interval": 0.05, "retry_max_backoff": 0.2,
    }  # fmt: skip
    defaults.update(options)
    return Client(**defaults)
