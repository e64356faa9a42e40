"""Scripted ingest endpoints for the claims tests: a real server on loopback whose
answer to each request is a function of the test's, so it can lie the way a broken
proxy or a hostile endpoint does (a wrong Content-Length, a redirect echoing the key,
an answer that never ends, a body it never reads)."""

from __future__ import annotations

import gzip
import socket
import socketserver
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import orjson


@dataclass
class Request:
    """One request as the server read it."""

    headers: dict[str, str]
    body: bytes

    @property
    def lines(self) -> list[dict[str, object]]:
        data = self.body
        if self.headers.get("content-encoding") == "gzip":
            data = gzip.decompress(data)
        lines = orjson.loads(data)["lines"]
        assert isinstance(lines, list)
        return lines


#: What the server does with a request: return the bytes to answer with (None: close
#: the connection), or do anything with the socket itself (and return None).
Responder = Callable[[Request, socket.socket, threading.Event], "bytes | None"]


def answer(status: int, body: bytes = b'{"status":"ok"}', headers: bytes = b"") -> bytes:
    """A whole HTTP/1.1 answer; ``headers`` are extra header lines, each ending in CRLF."""
    head = b"HTTP/1.1 %d Scripted\r\nContent-Type: application/json\r\n" % status
    return head + b"Content-Length: %d\r\n%s\r\n%s" % (len(body), headers, body)


@dataclass
class _State:
    respond: Responder
    read_body: bool
    stopping: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Condition = field(default_factory=threading.Condition)
    requests: list[Request] = field(default_factory=list)
    connected: threading.Event = field(default_factory=threading.Event)


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(30)
        state = self.server.state
        state.connected.set()
        try:
            if self.server.tls is not None:  # the handshake here, not in the accept loop
                sock = self.server.tls.wrap_socket(sock, server_side=True)
            while not state.stopping.is_set():
                request = _read(sock, state.read_body)
                if request is None:
                    return
                with state.arrived:
                    state.requests.append(request)
                    state.arrived.notify_all()
                reply = state.respond(request, sock, state.stopping)
                if reply is None:
                    return
                sock.sendall(reply)
        except OSError:
            return
        finally:
            if sock is not self.request:  # the TLS socket: socketserver closes only its own
                sock.close()


def _read(sock: socket.socket, read_body: bool) -> Request | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    headers: dict[str, str] = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    length = int(headers.get("content-length", "0"))
    while read_body and len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        rest += chunk
    return Request(headers, rest)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, state: _State, receive_buffer: int | None, tls: ssl.SSLContext | None = None
    ) -> None:
        self.state = state
        self.receive_buffer = receive_buffer
        self.tls = tls
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        if self.receive_buffer is not None:  # accepted sockets inherit it
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)
        super().server_bind()


class Scripted:
    """A running scripted server: its URL, the requests it read, and events to wait on."""

    def __init__(self, server: _Server) -> None:
        self._server = server
        self.state = server.state

    @property
    def url(self) -> str:
        scheme = "http" if self._server.tls is None else "https"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}/logs/ingest"

    @property
    def requests(self) -> list[Request]:
        with self.state.arrived:
            return list(self.state.requests)

    def wait_for_requests(self, n: int, timeout: float) -> bool:
        """Wait until the server has read ``n`` requests (False after ``timeout``)."""
        with self.state.arrived:
            return self.state.arrived.wait_for(lambda: len(self.state.requests) >= n, timeout)


@contextmanager
def scripted_server(
    respond: Responder,
    *,
    read_body: bool = True,
    receive_buffer: int | None = None,
    tls: ssl.SSLContext | None = None,
) -> Iterator[Scripted]:
    """A server on loopback that answers each request with ``respond``; stopped on exit.

    ``read_body=False`` reads only the request's head and leaves its body unread (a
    server that stops reading); ``receive_buffer`` shrinks the socket's receive buffer;
    ``tls`` (a server-side context) makes it an https:// endpoint.
    """
    state = _State(respond, read_body)
    server = _Server(state, receive_buffer, tls)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Scripted(server)
    finally:
        state.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
