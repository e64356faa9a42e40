"""Ingest endpoints that misbehave at the socket level, for exit-deadline tests.

The DevServer answers like the service; these do what a broken load balancer
or a hostile endpoint does: never answer, trickle an answer a byte at a time,
answer 500 forever, or send a huge body. Each is a real server on loopback.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: What each kind of server does with a request, once its headers and body are read.
KINDS = ("silent", "trickle", "error500", "huge")

# The trickling server's pace: one byte of the answer per this many seconds.
TRICKLE_EVERY = 0.5
HUGE_BODY = 50 * 1024 * 1024


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(30)
        server = self.server
        try:
            while not server.stopping.is_set():
                if not _read_request(sock):
                    return
                with server.lock:
                    server.requests += 1
                server.got_request.set()
                if server.kind == "silent":
                    server.stopping.wait(60)
                    return
                if server.kind == "error500":
                    body = b'{"error":"always failing"}'
                    sock.sendall(
                        b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                    )
                    continue
                if server.kind == "huge":
                    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % HUGE_BODY)
                    chunk = b"x" * 65536
                    for _ in range(HUGE_BODY // len(chunk)):
                        sock.sendall(chunk)
                        with server.lock:
                            server.body_bytes_sent += len(chunk)
                    continue
                # trickle: headers and body, one byte at a time, never done in time
                head = b"HTTP/1.1 200 OK\r\nContent-Length: 2014\r\n\r\n"
                answer = head + b'{"status":"ok"' + b" " * 2000
                for i in range(len(answer)):
                    sock.sendall(answer[i : i + 1])
                    if server.stopping.wait(TRICKLE_EVERY):
                        return
        except OSError:
            return


def _read_request(sock: socket.socket) -> bool:
    """Read one request's head and body (Content-Length); False at the end of the stream."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        rest += chunk
    return True


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, kind: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.kind = kind
        self.stopping = threading.Event()
        self.got_request = threading.Event()
        self.lock = threading.Lock()
        self.requests = 0
        self.body_bytes_sent = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/logs/ingest"


@contextmanager
def bad_server(kind: str) -> Iterator[_Server]:
    """A running server of ``kind`` (see KINDS) on loopback; stopped on exit."""
    assert kind in KINDS, kind
    server = _Server(kind)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


class Blackhole:
    """A loopback port whose connects get no answer, as a blackholed address's: a
    listener that never accepts, its accept queue filled by connects of its own. Linux
    then drops every SYN to it, and a client's connect() hangs until its own timeout
    (or until its socket is shut down)."""

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(0)  # an accept queue of one
        self.port: int = self._listener.getsockname()[1]
        self._fillers: list[socket.socket] = []
        for _ in range(3):  # one fills the queue; the others hang as the client's will
            filler = socket.socket()
            filler.setblocking(False)
            try:
                filler.connect(("127.0.0.1", self.port))
            except BlockingIOError:
                pass
            self._fillers.append(filler)
        self._ours = {filler.getsockname()[1] for filler in self._fillers}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/logs/ingest"

    def connecting(self) -> int:
        """How many connects to this port, not the fillers', are waiting for an answer
        (in SYN_SENT, as /proc/net/tcp lists them)."""
        count = 0
        with open("/proc/net/tcp") as table:
            for row in table.readlines()[1:]:
                fields = row.split()
                local, remote, state = fields[1], fields[2], fields[3]
                if (
                    state == "02"  # SYN_SENT
                    and int(remote.split(":")[1], 16) == self.port
                    and int(local.split(":")[1], 16) not in self._ours
                ):
                    count += 1
        return count

    def close(self) -> None:
        for sock in (*self._fillers, self._listener):
            sock.close()


@contextmanager
def blackhole() -> Iterator[Blackhole]:
    """A ``Blackhole`` (Linux only: it reads /proc/net/tcp); closed on exit."""
    hole = Blackhole()
    try:
        yield hole
    finally:
        hole.close()
