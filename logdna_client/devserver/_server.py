"""``DevServer``: wires the HTTP server, the store, the tail, the page and the faults."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, TextIO

from .._threads import start_library_thread
from ._body import MAX_BODY_BYTES, MAX_CONCURRENT_BODIES, BodyGate
from ._faults import Faults
from ._http import Server
from ._store import Origin, RequestRecord, Store, StoreFile
from ._tail import Tail, isatty
from ._web import ASSETS, DEFAULT_PAGE_LINES, EventHub, load_asset

_POLL_INTERVAL = 0.05  # how quickly stop() / go_down() end the accept loop
_JOIN_TIMEOUT = 2.0  # how long stop() waits for connection threads to finish
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class DevServer(Faults):
    """A local LogDNA / Mezmo ingest server for tests, benchmarks and demos.

    Example::

        with DevServer() as server:
            client = Client(key="any", url=server.url, hostname="test")
            client.log("hello")
            client.flush()
            assert server.wait_for_lines(1, timeout=5)
            assert "hello" == server.lines[0]["line"]

    Args:
        host: Address to listen on; loopback by default. The web page at
            ``page_url`` answers only to loopback names while it is.
        port: Port to listen on; 0 picks a free one (see ``port`` after start).
        key: When given, requests must carry this key (401 missing,
            403 wrong). Without it any key, or none, is accepted.
        out: Stream for the live tail of received lines; None prints nothing.
        json_output: Tail each line as one raw JSON object per line, with its
            request's hostname, tags, ip and mac.
        color: Colour the tail by level; None means ``out.isatty()`` (and no
            ``NO_COLOR`` in the environment).
        store: Path of a JSON Lines file every shown line is appended to
            (as ``json_output`` prints it). When writing it fails, storing
            stops (the server keeps serving) and ``store_error`` holds the reason.
        keep_lines: Keep accepted lines in ``lines``. Benchmarks turn it off
            and read ``line_count``; then only the most recent request
            records are kept (``request_count`` counts all).
        max_body_bytes: The body size limit, on the wire and inflated.
        timeout: Socket timeout for client connections, in seconds.
        show: Which accepted lines the tail and the store file get; all when None.
        notices: Where the server reports its own trouble; ``out`` when None.
        page_lines: How many lines the web page keeps (the newest).
        max_concurrent_bodies: How many request bodies are read and decoded
            at once; the others wait, unread, which bounds memory.
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
        show: Callable[[Mapping[str, Any]], bool] | None = None,
        notices: TextIO | None = None,
        page_lines: int = DEFAULT_PAGE_LINES,
        max_concurrent_bodies: int = MAX_CONCURRENT_BODIES,
    ) -> None:
        super().__init__()
        self.host = host
        self.port = port
        self._key = key
        if color is None:
            color = out is not None and "NO_COLOR" not in os.environ and isatty(out)
        self._tail = Tail(out, json_output=json_output, color=color) if out is not None else None
        notice_stream = notices if notices is not None else out
        self._notices = (
            Tail(notice_stream, json_output=False, color=False) if notice_stream else None
        )
        self._store_file = StoreFile(store) if store is not None else None
        self._show = show
        self._shown = 0
        self._max_body_bytes = max_body_bytes
        self._timeout = timeout
        self._gate = BodyGate(max_concurrent_bodies)
        self._hub = EventHub(page_lines)
        self._assets: dict[str, tuple[bytes, str]] = {}

        self._store = Store(keep_lines=keep_lines)
        self._out_lock = threading.Lock()
        self._control = threading.RLock()  # start/stop/go_down/come_up
        self._connection_seq = 0
        self._open: dict[socket.socket, tuple[Server, threading.Thread]] = {}

        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._running = False
        self._taking = False  # whether lines are taken (under _out_lock): from start to stop

    def __repr__(self) -> str:
        state = "up" if self._server is not None else "down" if self._running else "stopped"
        return f"<DevServer {self.url} {state} lines={self._store.line_count}>"

    # -- lifecycle

    def start(self) -> DevServer:
        """Listen and serve from a daemon thread; return self.

        Raises:
            OSError: The address cannot be bound, or the store file cannot be opened.
        """
        with self._control:
            if self._running:
                return self
            if self._store_file is not None:
                self._store_file.open()
            try:
                self._listen()
            except BaseException:
                self._close_store()
                raise
            self._hub.reopen()
            with self._out_lock:
                self._taking = True
            self._running = True
        return self

    def stop(self) -> None:
        """Close the listening socket, every open connection and every event stream.

        Lines are taken until it returns and none after, so what ``lines``,
        ``line_count``, the tail and the store file hold then is final: a request still
        on its way (connection threads are waited for only so long) is not answered.
        """
        with self._control:
            self._running = False
            self._hub.close()
            self._shutdown_listener()
            with self._out_lock:  # (waits for lines being taken)
                self._taking = False
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
        server = Server((self.host, self.port), self, family, threading.Event())
        self.port = int(server.server_address[1])
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL},
            name=f"logdna-devserver:{self.port}",
            daemon=True,
        )
        # Signals blocked, in it and in the connection threads it starts: a SIGTERM or
        # Ctrl-C sent to the process (``devserver``, ``demo``, an app or a test run
        # serving one) goes to a thread that acts on it (see start_library_thread).
        start_library_thread(thread)
        self._server, self._thread = server, thread

    def _shutdown_listener(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._server = self._thread = None
        server.closing.set()  # wakes delayed handlers; new connections close
        self._hub.wake_all()  # event streams wait on their own wake-up
        server.shutdown()
        server.server_close()
        thread.join()
        with self._store.lock:
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

    # -- called from connection threads

    def _register(self, server: Server, sock: socket.socket) -> int:
        with self._store.lock:
            self._connection_seq += 1
            self._store.connections += 1
            self._open[sock] = (server, threading.current_thread())
            connection_id = self._connection_seq
            closing = server.closing.is_set()
        if closing:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        return connection_id

    def _unregister(self, sock: socket.socket) -> None:
        with self._store.lock:
            self._open.pop(sock, None)

    def _add_record(self, record: RequestRecord) -> None:
        self._store.add_record(record)

    def _accept(
        self,
        lines: list[dict[str, Any]],
        origin: Origin,
        make_record: Callable[[int], RequestRecord],
        received: float,
        counts: dict[str, int] | None = None,
    ) -> bool:
        """Show, store and count ``lines``; False (nothing done) once stopped."""
        # Output first, then publish: whoever wakes from wait_for_lines()
        # finds the tail and the store file already written.
        with self._out_lock:
            if not self._taking:
                return False
            show = self._show
            shown = lines if show is None else [line for line in lines if show(line)]
            self._shown += len(shown)
            if shown and self._store_file is not None:
                error = self._store_file.write(shown, origin)
                if error is not None and self._notices is not None:
                    self._notices.notice(f"devserver: cannot write the store file: {error}")
            if shown and self._tail is not None:
                self._tail.write(shown, origin, received)
            self._hub.publish(lines, origin, received, counts)
            self._store.add_lines(lines, make_record)
        return True

    def _status_page(self) -> dict[str, Any]:
        store = self._store
        with store.lock:
            return {
                "status": "ok",
                "service": "logdna_client devserver",
                "ingest_url": self.url,
                "page_url": self.page_url,
                "key_required": self._key is not None,
                "lines": store.line_count,
                "requests": store.request_count,
                "connections": store.connections,
                "page_clients": self._hub.subscribers,
            }

    def _page_hello(self) -> dict[str, Any]:
        return {
            "limit": self._hub.limit,
            "ingest_url": self.url,
            "lines": self.line_count,
            "instance": self._hub.instance,
        }

    def _asset(self, path: str) -> tuple[bytes, str]:
        if path not in self._assets:
            name, content_type = ASSETS[path]
            self._assets[path] = (load_asset(name), content_type)
        return self._assets[path]

    def _host_allowed(self, host_header: str | None) -> bool:
        """Whether the page may answer a request that names ``host_header``.

        While listening on loopback, only loopback names: this stops DNS
        rebinding, where a web site makes the browser send its requests here.
        """
        if not _is_loopback(self.host):
            return True
        if not host_header:
            return False
        host = host_header.strip()
        if host.startswith("["):
            host = host[1 : host.find("]")] if "]" in host else host
        else:
            host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        return _is_loopback(host)

    # -- what the server saw

    @property
    def store_error(self) -> Exception | None:
        """Why writing the ``store`` file failed, once it did (storing then stops)."""
        return self._store_file.error if self._store_file is not None else None

    @property
    def url(self) -> str:
        """The ingest URL, e.g. ``http://127.0.0.1:8080/logs/ingest``."""
        return f"{self.base_url}/logs/ingest"

    @property
    def page_url(self) -> str:
        """The web page's address, e.g. ``http://127.0.0.1:8080/``."""
        return f"{self.base_url}/"

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
        with self._store.lock:
            return list(self._store.lines)

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the records of the requests handled, in order."""
        with self._store.lock:
            return list(self._store.requests)

    @property
    def line_count(self) -> int:
        """How many lines were accepted (also when ``keep_lines`` is off)."""
        with self._store.lock:
            return self._store.line_count

    @property
    def shown(self) -> int:
        """How many accepted lines passed ``show`` (went to the tail and the store file)."""
        with self._out_lock:
            return self._shown

    @property
    def request_count(self) -> int:
        """How many requests were handled (also those no longer kept)."""
        with self._store.lock:
            return self._store.request_count

    @property
    def connections(self) -> int:
        """How many TCP connections were accepted."""
        with self._store.lock:
            return self._store.connections

    @property
    def page_clients(self) -> int:
        """How many browsers have the page's event stream open."""
        return self._hub.subscribers

    def wait_for_page_clients(self, n: int, timeout: float) -> bool:
        """Wait until exactly ``n`` browsers have the event stream open; False on timeout."""
        return self._hub.wait_for_subscribers(n, timeout)

    def wait_for_lines(self, n: int, timeout: float) -> bool:
        """Wait until at least ``n`` lines were accepted; False on timeout."""
        store = self._store
        return store.wait_for(lambda: store.line_count >= n, timeout)

    def wait_for_requests(self, n: int, timeout: float) -> bool:
        """Wait until at least ``n`` requests (of any kind) were handled; False on timeout."""
        store = self._store
        return store.wait_for(lambda: store.request_count >= n, timeout)

    def clear(self) -> None:
        """Forget lines, request records and counts; faults stay as set."""
        self._store.clear()
