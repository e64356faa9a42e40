"""HTTP: the listening socket, one thread per connection, and what each path answers.

``POST /logs/ingest`` (and ``/logs/agent``) takes lines; ``GET /`` is the
web page (JSON status for clients that do not ask for HTML), ``/events`` its
event stream, ``/api/status`` the status as JSON.
"""

from __future__ import annotations

import contextlib
import select
import socket
import socketserver
import sys
import time
import traceback
from collections.abc import Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from . import _body, _ingest
from ._body import Disconnected, HTTPError
from ._ingest import INGEST_PATHS
from ._store import RequestRecord
from ._web import ASSETS

if TYPE_CHECKING:
    import threading

    from ._server import DevServer

PAGE_PATHS = frozenset({*ASSETS, "/events", "/api/status"})

_JSON_CONTENT_TYPE = "application/json; charset=utf-8"
_REDACTED_HEADERS = frozenset({"apikey", "authorization"})
# The page's own files run no inline code and load nothing from elsewhere.
_PAGE_HEADERS = [
    ("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Cache-Control", "no-store"),
]


class Server(ThreadingHTTPServer):
    """One listening socket; go_down/come_up replace it with a fresh one.

    Its connection threads start plainly (``ThreadingMixIn.process_request``), not
    through ``start_library_thread``: they start from the serving thread, which
    blocks the asynchronous signals for its whole life, and a new thread inherits
    its starting thread's mask. Two more mask changes per connection would buy nothing.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], owner: DevServer, family: int, closing: threading.Event
    ) -> None:
        self.address_family = family
        self.owner = owner
        self.closing = closing
        super().__init__(address, Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request(request, client_address)
        except RuntimeError:
            # No new thread to be had: from Python 3.12 none starts while the interpreter
            # exits. The serving thread answers this connection itself, so that a server
            # run inside the application (a test's) still takes the exit's delivery.
            self.process_request_thread(request, client_address)

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


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "logdna-devserver"
    sys_version = ""
    disable_nagle_algorithm = True  # small responses on keep-alive: no 40 ms stalls

    server: Server
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
        except (OSError, Disconnected):
            self.close_connection = True
        except Exception:
            # A bug here must cost one request, not the server: say so and answer 500.
            traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            if not self._responded:
                with contextlib.suppress(OSError):
                    self._send(500, {"error": "Internal server error"}, close=True)

    def log_message(self, format: str, *args: Any) -> None:
        # The request line can carry the key as a query parameter: never log it.
        return

    # -- responses

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # Used by http.server for malformed requests. Its messages quote the
        # request line, which may hold the key: answer with the phrase only.
        status = HTTPStatus(code)
        self._send(status, {"error": status.phrase}, close=True)

    def _send(
        self,
        status: int,
        payload: object,
        *,
        headers: Iterable[tuple[str, str]] = (),
        close: bool = False,
        raw: bytes | None = None,
        content_type: str = _JSON_CONTENT_TYPE,
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
            f"Content-Type: {content_type}",
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
            self._send(413, {"error": "Request entity too large"}, close=True)
            return False
        return super().handle_expect_100()

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
        return RequestRecord(
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
            _body.read_body(self.rfile, self.headers, self.server.owner._max_body_bytes)
        except HTTPError:
            self.close_connection = True

    def _get(self, path: str) -> None:
        owner = self.server.owner
        query = self._query()
        if path in PAGE_PATHS:
            wants_page = path != "/api/status" and (
                path != "/" or "text/html" in self.headers.get("Accept", "")
            )
            if wants_page and not owner._host_allowed(self.headers.get("Host")):
                # A page on loopback answers only to loopback names, so a web
                # site that points its own name at 127.0.0.1 cannot read it.
                error = "This page answers only to the address it listens on."
                owner._add_record(self._record(path, 403, query=query, error=error))
                self._send(403, {"error": error})
                return
            if path == "/events":
                owner._add_record(self._record(path, 200, query=query))
                self._events()
                return
            if wants_page:
                owner._add_record(self._record(path, 200, query=query))
                raw, content_type = owner._asset(path)
                self._send(200, None, raw=raw, content_type=content_type, headers=_PAGE_HEADERS)
                return
            status_page = owner._status_page()  # counts as they were before this request
            owner._add_record(self._record(path, 200, query=query))
            self._send(200, status_page)
            return
        if path in INGEST_PATHS:
            status, error = 405, "Method not allowed; POST lines here."
        else:
            status, error = 404, "Not found"
        allow = [("Allow", "POST")] if status == 405 else []
        owner._add_record(self._record(path, status, query=query, error=error))
        self._send(status, {"error": error}, headers=allow)

    def _events(self) -> None:
        """The page's server-sent events: until the browser leaves or the server stops."""
        head = (
            f"{self.protocol_version} 200 OK\r\nServer: {self.server_version}\r\n"
            "Content-Type: text/event-stream\r\nCache-Control: no-store\r\n"
            "X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n"
        )
        self.close_connection = True
        self._responded = True
        self.wfile.write(head.encode("latin-1"))
        if self.command == "HEAD":
            return
        last = self.headers.get("Last-Event-ID", "")
        owner = self.server.owner
        sock: socket.socket = self.request

        def gone() -> bool:
            # A browser sends nothing after its request: readable means closed.
            try:
                readable, _, _ = select.select([sock], [], [], 0)
                return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
            except (OSError, ValueError):
                return True

        owner._hub.stream(
            self.wfile.write,
            self.server.closing,
            owner._page_hello(),
            after=owner._hub.last_seen(last),
            gone=gone,
        )

    def _post(self, path: str) -> None:
        _ingest.post(self, path)

    def _other(self, path: str) -> None:
        owner = self.server.owner
        self._drain_or_close()
        if path in INGEST_PATHS or path == "/":
            status, message = 405, "Method not allowed"
            headers = [("Allow", "POST" if path in INGEST_PATHS else "GET, HEAD")]
        else:
            status, message, headers = 404, "Not found", []
        owner._add_record(self._record(path, status, query=self._query(), error=message))
        self._send(status, {"error": message}, headers=headers)
