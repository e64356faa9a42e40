"""Transport: one keep-alive ``requests.Session`` that turns a batch into an outcome.

The sender hands it a body; it answers with an ``Outcome`` and never raises.
The key travels only in one header (``apikey`` or ``Authorization``, see
``_auth.py``), never in a URL or a message.
"""

from __future__ import annotations

import base64
import binascii
import collections
import contextlib
import enum
import functools
import http.client
import http.cookiejar
import importlib
import json
import math
import os
import platform
import re
import socket
import ssl
import sys
import threading
import time
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol
from urllib.parse import urlsplit

import orjson
import requests
import requests.auth
import urllib3.connection
import urllib3.connectionpool
from requests.adapters import HTTPAdapter
from urllib3.util.ssl_ import resolve_cert_reqs

from ._auth import auth_headers, secret_forms
from ._config import Config, _is_loopback
from ._controls import CONTROL
from ._kubernetes import attributes_for, tags_for
from ._retry import parse_retry_after
from ._threads import Wakeup, start_library_thread
from ._version import __version__

__all__ = [
    "HTTPTransport", "Kind", "Outcome", "Transport", "classify", "read_json", "unconfirmed",
]  # fmt: skip

USER_AGENT = f"logdna_client/{__version__} (python {platform.python_version()})"

# Where proxy settings come only from the environment (not the Windows registry
# or macOS system settings), what requests derives from it per request (proxies,
# no_proxy, a CA bundle) can only change when os.environ does.
_PROXIES_FROM_ENVIRON = urllib.request.getproxies is urllib.request.getproxies_environment

#: Bytes of a response body read at most: the API's answers are tiny, and a
#: hostile or broken server's 400 MB body must not become 400 MB of memory.
MAX_RESPONSE_BYTES = 64 * 1024
#: Bytes of a 207's body read at most: it carries a status per line of the batch,
#: which for a large batch of short lines (8 MiB of them: about 150,000, each
#: status about 4 bytes) is far more than 64 KiB. Cut, the statuses read still
#: count, and the lines past them are unconfirmed (``Outcome.answered``).
MAX_PARTIAL_BYTES = 1024 * 1024


class Kind(enum.Enum):
    OK = "ok"
    PARTIAL = "partial"  # 207: some lines rejected
    RETRY = "retry"  # connection trouble, timeouts, 408, 429, 5xx
    TOO_LARGE = "too_large"  # 413: split and resend
    BAD_REQUEST = "bad_request"  # 400: find the bad line(s)
    UNSUPPORTED_ENCODING = "unsupported_encoding"  # 415
    AUTH = "auth"  # 401, 403
    # 3xx: never followed (the apikey header would go along to wherever it points);
    # lines are kept and retried like OTHER.
    REDIRECT = "redirect"
    OTHER = "other"  # anything else (404 ...): keep lines, back off, report
    # No HTTP/1.1 answer at all (HTTP/2 only, TLS behind http://, another protocol): a
    # misconfiguration, which retrying soon cannot fix: lines kept, retried like OTHER.
    PROTOCOL = "protocol"
    # No request can be made with the settings as they are (a SOCKS proxy without PySocks,
    # a proxy URL requests cannot use): retrying soon cannot fix it; kept, retried like OTHER.
    SETTINGS = "settings"


@dataclass(frozen=True)
class Outcome:
    kind: Kind
    status: int | None = None
    retry_after: float | None = None
    detail: str = ""
    rejected: int = 0  # for PARTIAL: lines the service refused
    #: For PARTIAL, where the answer says: the refused lines' places in the request.
    rejected_at: tuple[int, ...] = ()
    #: For PARTIAL, when the answer speaks for only the request's first places (a 207: the
    #: places its status array holds, 0 without one; 0, an OTLP count that cannot be
    #: read): the lines past them are unconfirmed. None: it speaks for all.
    answered: int | None = None
    #: Whether the body went out a second time, at once, on a new connection, because the
    #: server had closed the kept-alive one under the first (``_closed_by_server``): one
    #: more request made, no failure. The outcome is the second request's.
    resent: bool = False


class Transport(Protocol):
    """What the sender needs from a transport; tests swap in their own."""

    def send(self, body: bytes, *, gzipped: bool, timeout: float) -> Outcome: ...

    def close(self) -> None: ...


def one_line(text: str) -> str:
    """``text`` (what a server said, quoted in our reports) with its control characters
    escaped: a server must not write lines of its own into the application's log."""
    # The set holds lone surrogates, which an answer can too: charset=unicode_escape
    # decodes "\ud800" to one.
    if CONTROL.search(text) is None:
        return text
    return CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def classify(
    status: int,
    retry_after: str | None,
    text: str,
    location: str | None = None,
    *,
    whole: bool = True,
) -> Outcome:
    """Map an HTTP answer to what the sender should do with the batch.

    ``location`` is a 3xx answer's ``Location`` header: only its host is kept
    for the report (its path or query may carry tokens of someone else's).
    ``whole``: False when ``text`` is the body cut at the cap the transport reads.
    """
    detail = text[:200]
    if 200 <= status < 300:
        if status == 207:
            return _partial(status, text, whole)
        return Outcome(Kind.OK, status)
    wait = parse_retry_after(retry_after)
    if 300 <= status < 400:
        host = _host_of(location)
        return Outcome(
            Kind.REDIRECT, status, wait,
            f"redirect to {host} refused: the ingest API never redirects; "
            "check the url option",
        )  # fmt: skip
    if status in (408, 429) or status >= 500:
        return Outcome(Kind.RETRY, status, wait, detail)
    if status == 413:
        return Outcome(Kind.TOO_LARGE, status, detail=detail)
    if status == 400:
        return Outcome(Kind.BAD_REQUEST, status, detail=detail)
    if status == 415:
        return Outcome(Kind.UNSUPPORTED_ENCODING, status, detail=detail)
    if status in (401, 403):
        return Outcome(Kind.AUTH, status, wait, detail)
    return Outcome(Kind.OTHER, status, wait, detail)


def _host_of(location: str | None) -> str:
    """The host a Location header names, or a placeholder when it names none."""
    try:
        host = urlsplit(location or "").hostname
    except ValueError:  # an invalid IPv6 literal, say
        host = None
    return host[:100] if host else "the same host (relative Location)"


def _partial(status: int, text: str, whole: bool) -> Outcome:
    """A 207: the places of the lines its per-line ``status`` array (in the request's
    order) says were not stored. It speaks for the places its array holds (``answered``),
    and no further: the lines past them are unconfirmed, as are all of them when there
    is no array to read (not JSON, no ``status`` list). Cut at MAX_PARTIAL_BYTES, the
    array's statuses read to their end still count."""
    statuses: object = None
    try:
        doc = read_json(text)
    except ValueError:
        if not whole:
            statuses = _statuses_read(text)
    else:
        statuses = doc.get("status") if isinstance(doc, dict) else None
    if not isinstance(statuses, list):
        # Not read to its end, it may have said anything past where it stops (the status
        # array past the cap, or cut by the connection); read whole, it says some lines
        # were refused without saying which: either way it confirms no line as stored.
        return unconfirmed(status, f"no per-line status array in its answer {text[:100]!r}")
    at = tuple(i for i, s in enumerate(statuses) if not (isinstance(s, int) and 200 <= s < 300)
               and not (isinstance(s, str) and s.lower() in ("ok", "200")))  # fmt: skip
    detail = text[:200]
    if not whole:
        detail = (
            f"its answer not read to its end (over {MAX_PARTIAL_BYTES // 1024} KiB, or cut "
            f"short) after {len(statuses)} statuses; the lines past them are unconfirmed"
        )
    return Outcome(
        Kind.PARTIAL, status, detail=detail, rejected=len(at), rejected_at=at,
        answered=len(statuses),
    )  # fmt: skip


def read_json(text: str) -> object:
    """A server's answer read as JSON; ValueError when it is none.

    What orjson refuses and Python's json module reads is read too: a lone surrogate
    escaped (``json.dumps`` writes one so: a Python server quoting a refused record),
    NaN, Infinity, a number past a double's range. Taken for no JSON, an OTLP answer
    that said N records were refused had every record counted as sent."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(text)
    except RecursionError:  # nested deeper than the stack allows (orjson stops at 1024)
        raise ValueError("nested too deep") from None


def unconfirmed(status: int, why: str) -> Outcome:
    """A partial answer that confirms none of the batch as stored, for the reason ``why``:
    the sender counts every line of it as rejected, and never sends it again (some lines
    may have been stored: sent again, they would be stored twice)."""
    detail = f"{why}: no line of the batch is confirmed stored"
    return Outcome(Kind.PARTIAL, status, detail=detail, answered=0)


_STATUS_ARRAY = re.compile(r'"status"\s*:\s*\[')


def _statuses_read(text: str) -> list[object] | None:
    """The statuses a 207 body cut short holds whole: its ``status`` array up to the
    last comma that ends an element (a comma inside an element, an object's or a
    string's, is passed over: the parse fails and an earlier one is tried). None when
    no status array begins in it."""
    found = _STATUS_ARRAY.search(text)
    if found is None:
        return None
    start = found.end()
    end = len(text)
    for _ in range(8):  # elements with commas of their own: at most this many parses
        end = text.rfind(",", start, end)
        if end < 0:
            break
        try:
            statuses = read_json("[" + text[start:end] + "]")
        except ValueError:
            continue
        return statuses if isinstance(statuses, list) else None
    return []


# A request that failed this close to its deadline failed by it (the sockets' timeouts
# are rounded to the millisecond).
_DEADLINE_SLACK = 0.01


class _Exchange:
    """One request's deadline, and the connection it uses so the deadline can cut it.

    ``requests`` bounds each socket operation, not the exchange: a server
    that trickles a byte a second holds a request forever. The transport's
    watchdog thread shuts the connection's socket down at the deadline instead,
    which ends whatever call the sender is blocked in (connect, TLS, upload,
    headers or body). ``hurry`` brings the deadline forward (close() began).
    """

    __slots__ = (
        "began", "closed_by_server", "conn", "connected", "deadline", "dialed", "done",
        "ending", "expired", "fresh", "heard", "opening", "poke", "status", "watched",
    )  # fmt: skip

    def __init__(self, deadline: float, began: float = 0.0) -> None:
        self.conn: object = None
        #: The transport's clock as the request began: a kept-alive connection its server
        #: said it ends by then is not used for it (``_Watched.spent``).
        self.began = began
        #: A new connection's socket while its connect runs (a SOCKS proxy's: its
        #: handshake too), before urllib3 has a connection to hold (``_connect_held``):
        #: set and cleared on the sender thread.
        self.opening: socket.socket | None = None
        # A duplicate of a new connection's socket, made before its TLS handshake: the
        # handshake runs on an SSLSocket that took the original's descriptor over (and
        # left ``conn.sock`` detached), so only this can still shut it down.
        self.fresh: socket.socket | None = None
        #: Whether a new connection's connect() began: False, with ``conn`` set, when the
        #: request went out on a connection kept alive from an earlier one.
        self.dialed = False
        #: Whether a new connection's connect() (TCP, proxy, TLS handshake) completed.
        self.connected = False
        #: Whether any byte of an answer arrived (``_FinalResponse``).
        self.heard = False
        #: Whether it failed as a kept-alive connection the server closed fails
        #: (``_closed_by_server``), or was answered 408 on one (``_idle_timeout``): then
        #: sent again at once (``HTTPTransport._send``).
        self.closed_by_server = False
        self.deadline = deadline
        self.done = False
        #: Held by ``finish`` and ``cut``: a cut never lands once the request is over.
        self.ending = threading.Lock()
        self.expired = False
        #: The final answer's status, once its status line was read (_FinalResponse).
        self.status: int | None = None
        #: Whether a watchdog thread watches it (then that thread closes ``fresh``).
        self.watched = False
        #: Raised by hurry and finish: the watching thread's (``_Watchdog.watch``).
        self.poke = Wakeup()

    def watch(self) -> None:
        """On the watchdog thread: cut the connection at the deadline, unless done first."""
        try:
            while not self.done:
                left = self.deadline - time.monotonic()
                if left <= 0:
                    self.cut()
                    return
                self.poke.wait(left)
        finally:
            fresh, self.fresh = self.fresh, None
            if fresh is not None:  # closed on this thread, never while cut() uses it
                fresh.close()

    def hold(self, sock: socket.socket) -> None:
        """Keep a duplicate of a new connection's socket, for ``cut`` (sender thread)."""
        if self.fresh is None and not (self.done or self.expired):
            try:
                self.fresh = sock.dup()
            except OSError:
                pass
        # Read after ``fresh`` was written, as ``cut`` writes ``expired`` before it reads
        # ``fresh``: one of the two sees the other. A deadline that passed while the TCP
        # connect ran, with no socket yet to cut, cuts this one now; the request went on
        # past it, each step within request_timeout, and no second cut came.
        if self.expired:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def hurry(self, deadline: float) -> None:
        """End the exchange by ``deadline`` at the latest; safe from a signal handler."""
        if deadline < self.deadline:
            self.deadline = deadline
            self.poke.set()

    def finish(self) -> None:
        with self.ending:
            self.done = True
        self.poke.set()
        if not self.watched:  # no watchdog thread to close it: this is the only user
            fresh, self.fresh = self.fresh, None
            if fresh is not None:
                fresh.close()

    def cut(self) -> None:
        with self.ending:
            # Over (its answer read whole, the sender gone on): its connection may be back
            # in the pool, or carrying the next request already, which the cut ended (the
            # batch sent a second time). The watchdog found the deadline passed while the
            # request was not over yet, and the sender may have finished it since.
            if self.done:
                return
            self.expired = True
            for sock in (getattr(self.conn, "sock", None), self.fresh, self.opening):
                if sock is not None:
                    try:
                        # The plain socket's shutdown, even under TLS: it touches no SSL
                        # state the sender thread is using, and the blocked read then sees
                        # the end.
                        socket.socket.shutdown(sock, socket.SHUT_RDWR)
                    except OSError:
                        pass


class _Watchdog:
    """The one thread that cuts a transport's requests at their deadlines.

    One for the transport's life, started with its sender (``start``) or its
    first request, not one per request: Python 3.12 refuses to start a thread
    once the interpreter is finalizing, which is when atexit delivers the last
    lines, and a thread per request costs the sender CPU besides. Where no
    thread can be started, a request goes unwatched: requests' per-operation
    timeouts still bound it, and whoever waits for the delivery (close, the
    exit hook) has a deadline of its own.

    Each thread has a queue and a flag of its own. ``stop`` hands the thread its
    last item and forgets it: a request made after that (the transport used again,
    a restarted sender) starts a new thread rather than being handed to one on
    its way out, which never watched it. The same after a fork: the parent's
    thread does not exist in the child, and neither do its queue's exchanges.
    """

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        # Every exchange handed over, each watched in turn: one that ended before the
        # thread got to it still has its socket duplicate closed there. None: stop.
        self._exchanges: collections.deque[_Exchange | None] = collections.deque()
        self._poke = Wakeup()  # the thread's only waiter: watch, stop, hurry, finish

    def start(self) -> bool:
        """Have the thread running; False where none can start."""
        if self._thread is not None and self._thread.is_alive():
            return True
        exchanges: collections.deque[_Exchange | None] = collections.deque()
        poke = Wakeup()
        thread = threading.Thread(
            target=_Watchdog._run, args=(exchanges, poke), name="logdna_client-watchdog",
            daemon=True,
        )  # fmt: skip
        try:
            start_library_thread(thread)
        except RuntimeError:  # the interpreter is finalizing, or no more threads
            return False
        self._thread, self._exchanges, self._poke = thread, exchanges, poke
        return True

    def watch(self, exchange: _Exchange) -> None:
        """Cut ``exchange`` at its deadline (called on the sender thread)."""
        if self.start():
            exchange.watched = True
            exchange.poke = self._poke
            self._exchanges.append(exchange)
            self._poke.set()

    def stop(self) -> None:
        """Let the thread end once it has watched what it was handed (the transport closed)."""
        if self._thread is not None:
            self._thread = None
            self._exchanges.append(None)
            self._poke.set()

    @staticmethod
    def _run(exchanges: collections.deque[_Exchange | None], poke: Wakeup) -> None:
        while True:
            try:
                exchange = exchanges.popleft()
            except IndexError:
                poke.wait(None)  # raised by the next watch or stop (or a stale poke)
                continue
            if exchange is None:
                return
            try:
                exchange.watch()
            except Exception:  # (closing a socket failed): the next exchanges still count
                pass


# The exchange of the request the calling (sender) thread is making.
_current = threading.local()


class _Watched:
    """Mixed into urllib3's connections: tell the current exchange which one it uses,
    and keep what the server announced of the connection's life (``Keep-Alive``)."""

    #: The transport's clock at the last answer read on it, when its idle time began.
    idle_since = 0.0
    #: How long it may stay idle and still be used: the idle timeout the server last
    #: announced, less ``_keep_alive_margin``; unlimited where none was.
    idle_limit = math.inf
    #: The requests the server said it still takes on it (its last ``max=``), less those
    #: made since; unlimited where it said none.
    requests_left = math.inf

    def connect(self) -> None:
        _watch(self)
        exchange = getattr(_current, "exchange", None)
        if exchange is not None:
            exchange.dialed = True
        # A new socket: what the server announced of the one before holds no more.
        self.idle_limit = self.requests_left = math.inf
        super().connect()  # type: ignore[misc]
        if exchange is not None:
            exchange.connected = True

    def answered(self, keep_alive: str | None, now: float) -> None:
        """An answer was read on it at ``now``, with ``keep_alive`` (its ``Keep-Alive``
        header, if any): its idle time begins, under what the server announced."""
        self.idle_since = now
        if keep_alive is not None:
            timeout, left = _keep_alive(keep_alive)
            if timeout is not None:
                self.idle_limit = timeout - _keep_alive_margin(timeout)
            if left is not None:
                self.requests_left = left

    def spent(self, now: float) -> bool:
        """Whether the server has ended it by ``now``, as it announced: idle past its
        timeout (less the margin), or as many requests made as its ``max=`` allowed.
        Used, a request on it races the server's close: it fails on the closed socket
        (sent again, at the cost of a failed write) or, written as the close comes, may
        cost a retry or be stored twice."""
        return self.requests_left < 1 or now - self.idle_since >= self.idle_limit

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch(self)
        self.requests_left -= 1
        try:
            super().request(*args, **kwargs)  # type: ignore[misc]
        except _ENDED:
            # The server ended the connection under the upload: it may have answered
            # first (a 413 or 408 from the request's head alone), and that answer is
            # there to read. urllib3 passes over a broken pipe here for that (2.x a reset
            # too), not TLS's end: a 413 over https:// was never read, and the batch was
            # retried without end, never split. Where no answer came, reading it fails
            # as the end of the connection (``_closed_by_server``).
            if getattr(self, "sock", None) is None:  # never connected: nothing to read
                raise

    def _new_conn(self) -> socket.socket:
        exchange = getattr(_current, "exchange", None)
        if exchange is None:
            sock: socket.socket = super()._new_conn()  # type: ignore[misc]
            return sock
        return _direct_connect(self, exchange)


def _watch(conn: object) -> None:
    exchange = getattr(_current, "exchange", None)
    if exchange is not None:
        exchange.conn = conn


#: The most taken off an announced idle timeout before a connection idle that long is not
#: used again: the server's timer starts once it sent its answer, before the client read
#: it, and the next request takes as long again to reach it.
_KEEP_ALIVE_MARGIN = 1.0
_KEEP_ALIVE_NUMBER = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?")


def _keep_alive_margin(timeout: float) -> float:
    """What is taken off an announced idle ``timeout``: ``_KEEP_ALIVE_MARGIN``, or a
    quarter of it where that is less (announced 1 s, a connection is used again within
    0.75 s, not never)."""
    return min(_KEEP_ALIVE_MARGIN, timeout / 4)


def _keep_alive(value: str) -> tuple[float | None, int | None]:
    """The idle timeout (seconds) and the requests still taken that a ``Keep-Alive``
    header announces (``timeout=5, max=100``; RFC 2068, 19.7.1.1), each None where it
    says none that can be read. Said twice (two headers, joined), the lesser holds."""
    timeout: float | None = None
    left: int | None = None
    for part in value.split(","):
        name, _, number = part.partition("=")
        number = number.strip().strip('"')
        if _KEEP_ALIVE_NUMBER.fullmatch(number) is None:
            continue
        name = name.strip().lower()
        if name == "timeout":
            seconds = float(number)
            timeout = seconds if timeout is None else min(timeout, seconds)
        elif name == "max" and "." not in number:
            count = int(number)
            left = count if left is None else min(left, count)
    return timeout, left


class _Pooled:
    """Mixed into urllib3's pools: a kept-alive connection its server announced it has
    ended by now (``_Watched.spent``) is closed rather than used, as urllib3 closes one
    it finds dropped; the request goes out on a new one."""

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)  # type: ignore[misc]
        exchange = getattr(_current, "exchange", None)
        if isinstance(conn, _Watched) and exchange is not None and conn.spent(exchange.began):
            conn.close()  # type: ignore[attr-defined]
        return conn


#: The longest status line http.client reads (its ``_MAXLINE``).
_MAX_LINE = 65536
# The start of a status line: what decides when its reason phrase runs past _MAX_LINE.
_STATUS_START = re.compile(rb"(HTTP/[0-9.]{1,5}) +([0-9]{3}) ")


#: How long the body of a plain 2xx answer (not a 207's, whose statuses count) is waited
#: for once its status line was read.
_SETTLED_BODY_WAIT = 1.0

#: Interim (1xx) answers one request takes before its final one: a server may send a
#: few (100 Continue, 102 Processing, 103 Early Hints), none sends more.
_MAX_INTERIM = 16


class _EndlessInterim(http.client.BadStatusLine):
    """More interim answers than ``_MAX_INTERIM`` to one request, and no final one."""


class _FinalResponse(http.client.HTTPResponse):
    """http.client's response, which also skips interim answers other than 100 Continue.

    ``begin()`` skips only 100 and returns any other 1xx (103 Early Hints from a CDN,
    102 Processing) as if it were the answer, with the real answer left unread: the
    lines were kept and sent again without end, each time stored, never counted.
    ``_read_status`` is the hook urllib3 itself calls (for a proxy tunnel's answer).

    ``begin`` also tells the current exchange the final status, for when what follows
    the status line cannot be read (see ``HTTPTransport._send``).
    """

    def _read_status(self) -> tuple[str, int, str]:
        # What the server sent first (what the read buffer holds), left unread: a status
        # line too long to read still begins with its status (http.client reads 64 KiB of
        # it and raises, the start gone).
        peek = getattr(self.fp, "peek", None)
        head: bytes = peek(1) if peek is not None else b""
        exchange = getattr(_current, "exchange", None)
        if exchange is not None and (head or peek is None):  # (no peek: a byte may have come)
            exchange.heard = True
        try:
            version, status, reason = super()._read_status()  # type: ignore[misc]
        except http.client.LineTooLong:
            found = _STATUS_START.match(head)
            if found is None:
                raise
            # A reason phrase over 64 KiB: the status decides, as after any header
            # section that cannot be read. The rest of the line is not a header.
            while True:
                rest = self.fp.readline(_MAX_LINE + 1)
                if not rest or rest.endswith(b"\n"):
                    break
            version, status, reason = found.group(1).decode(), int(found.group(2)), ""
        if 100 <= status < 200 and status != 101:  # 101: a protocol switch, not interim
            # begin() skips its headers and reads on, with no end of its own: a server
            # sending interim answers forever kept a core busy (H206: 28 s of CPU in 30).
            self._interim: int = getattr(self, "_interim", 0) + 1
            if self._interim > _MAX_INTERIM:
                raise _EndlessInterim(f"{_MAX_INTERIM} interim answers")
            status = http.client.CONTINUE
        return version, status, reason

    def begin(self) -> None:
        # In begin(), not _read_status(): a proxy's answer to CONNECT is read with
        # _read_status() alone, and its "200 Connection established" is not the service's.
        try:
            super().begin()
        finally:
            # Set (an int) once the final status line was read, before the headers are.
            status: object = self.status
            exchange = getattr(_current, "exchange", None)
            if exchange is not None and isinstance(status, int):
                exchange.status = status


class _WatchedHTTPConnection(_Watched, urllib3.connection.HTTPConnection):
    response_class = _FinalResponse


class _WatchedHTTPSConnection(_Watched, urllib3.connection.HTTPSConnection):
    response_class = _FinalResponse


class _WatchedHTTPPool(_Pooled, urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _Unwarned:
    """Mixed into urllib3's HTTPS pools: no InsecureRequestWarning per request."""

    cert_reqs: Any

    def _validate_conn(self, conn: Any) -> None:
        if resolve_cert_reqs(self.cert_reqs) != ssl.CERT_NONE:
            super()._validate_conn(conn)  # type: ignore[misc]
            return
        # verify=False: said once when the client was built. urllib3 would say it again
        # with an InsecureRequestWarning per request, which an application running with
        # warnings as errors gets raised here: no request was ever sent, every batch
        # retried. Silencing the warning's filter instead is the whole process's, not
        # ours (and warnings.catch_warnings is not thread-safe). Here is what urllib3
        # does besides warning: the base's checks, then connect early.
        urllib3.connectionpool.HTTPConnectionPool._validate_conn(self, conn)  # type: ignore[arg-type]
        if getattr(conn, "sock", None) is None:
            conn.connect()


class _WatchedHTTPSPool(_Pooled, _Unwarned, urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _WatchedSocks(_Watched):
    """Mixed into urllib3's SOCKS connections: the proxy's connect and handshake are cut
    at the exchange's deadline too (``_socks_connect``)."""

    def _new_conn(self) -> socket.socket:
        return _socks_connect(self, getattr(_current, "exchange", None))


def _socks_connect(conn: Any, exchange: _Exchange | None) -> socket.socket:
    """A new connection through ``conn``'s SOCKS proxy: what urllib3's SOCKS connections
    make with PySocks' ``create_connection``, with each socket given to ``exchange``
    before it connects to the proxy.

    PySocks' ``create_connection`` runs the proxy's handshake before it hands the socket
    back: a proxy that trickled its answers (a byte per read, each inside the read
    timeout; a bound host name of 255 bytes) held the sender for minutes, past
    request_timeout and the exit's deadline. Held from the start, ``_Exchange.cut``
    ends the connect (on Linux a shutdown aborts one in progress) or the handshake.
    Errors are raised as urllib3's SOCKS connections raise them."""
    # PySocks (installed wherever the SOCKS pools are made), which has no type stubs.
    socks = importlib.import_module("socks")

    options = conn._socks_options
    proxy_host = options["proxy_host"]
    host = conn.host
    if proxy_host.startswith("["):  # PySocks takes IPv6 addresses without brackets
        proxy_host = proxy_host.strip("[]")
    if host.startswith("["):
        host = host.strip("[]")
    failure: OSError = OSError("gai returned empty list.")
    try:
        found = socket.getaddrinfo(proxy_host, options["proxy_port"], 0, socket.SOCK_STREAM)
        for i, (family, kind, proto, _, address) in enumerate(found):
            sock: Any = None
            try:
                sock = socks.socksocket(family, kind, proto)  # (as in _direct_connect)
                _prepare(conn, sock)
                # The address found, not the name PySocks' create_connection passes:
                # a socket connected by name goes to the name's first address each time,
                # and the proxy's other addresses were never tried.
                sock.set_proxy(
                    options["socks_version"], address[0], address[1],
                    options["rdns"], options["username"], options["password"],
                )  # fmt: skip
                _connect_held(exchange, sock, (host, conn.port), len(found) - i)
            except OSError as exc:  # PySocks' ProxyError is one
                failure = exc
                if sock is not None:
                    sock.close()
                if exchange is not None and exchange.expired:
                    break  # the deadline passed: no other address of the proxy either
            else:
                connected: socket.socket = sock
                return connected
        raise failure
    except OSError as exc:
        reason = exc
        if isinstance(exc, socks.ProxyError) and exc.socket_err:  # what the socket said
            reason = exc.socket_err
        raise _connect_failed(conn, reason) from exc


def _direct_connect(conn: Any, exchange: _Exchange) -> socket.socket:
    """A new connection for ``conn``, as urllib3's ``_new_conn`` makes it
    (``create_connection``), with each socket given to ``exchange`` before it connects.

    urllib3 hands the socket over only once connected: a connect that got no answer
    (the address blackholed, a listener whose backlog is full) ran its whole connect
    timeout, request_timeout, past the close's deadline (30 s against a 2 s
    shutdown_timeout), with no socket ``_Exchange.cut`` could end. Errors are raised as
    urllib3 raises them."""
    from urllib3.exceptions import LocationParseError  # noqa: PLC0415
    from urllib3.util.connection import allowed_gai_family  # noqa: PLC0415

    host = conn._dns_host
    if host.startswith("["):
        host = host.strip("[]")
    try:
        host.encode("idna")
    except UnicodeError:
        raise LocationParseError(f"'{host}', label empty or too long") from None
    failure: OSError = OSError("getaddrinfo returns an empty list")
    try:
        found = socket.getaddrinfo(host, conn.port, allowed_gai_family(), socket.SOCK_STREAM)
        for i, (family, kind, proto, _, address) in enumerate(found):
            sock: socket.socket | None = None
            try:
                # Made inside the try, as urllib3 makes it: an address whose socket
                # cannot be made (its family unsupported here) is passed for the next.
                sock = socket.socket(family, kind, proto)
                _prepare(conn, sock)
                _connect_held(exchange, sock, address, len(found) - i)
            except OSError as exc:
                failure = exc
                if sock is not None:
                    sock.close()
                if exchange.expired:
                    break  # the deadline passed: no other address either
            else:
                sys.audit("http.client.connect", conn, conn.host, conn.port)
                return sock
        raise failure
    except OSError as exc:
        raise _connect_failed(conn, exc) from exc


def _prepare(conn: Any, sock: socket.socket) -> None:
    """``conn``'s socket options, connect timeout and source address, set on ``sock``."""
    for option in conn.socket_options or ():
        sock.setsockopt(*option)
    if isinstance(conn.timeout, (int, float)):
        sock.settimeout(conn.timeout)
    if conn.source_address:
        sock.bind(conn.source_address)


#: The least connect timeout an address is given while others wait their turn (Go's
#: dialer's "sane minimum"): the rest of the time is left to the addresses after it.
_LEAST_CONNECT_SHARE = 2.0


def _connect_held(
    exchange: _Exchange | None, sock: socket.socket, address: Any, left: int = 1
) -> None:
    """``sock.connect(address)`` (for a SOCKS socket, the proxy's handshake too) with
    ``sock`` held by ``exchange`` meanwhile: its cut ends the connect (on Linux a
    shutdown aborts one in progress), and once connected it keeps a duplicate.

    ``left``: the addresses still to try, this one included. Each but the last gets a
    share of the time to the exchange's deadline, as Go's dialer gives it: given its
    whole connect timeout (request_timeout, as urllib3 gives it), a first address that
    got no answer (an IPv6 route that drops packets) ran to the deadline, and the
    address that answered was never tried: no batch was ever delivered."""
    if exchange is None:
        sock.connect(address)
        return
    timeout = sock.gettimeout()
    remaining = exchange.deadline - time.monotonic()
    if left > 1 and 0 < remaining < math.inf:
        share = max(remaining / left, min(_LEAST_CONNECT_SHARE, remaining))
        sock.settimeout(share if timeout is None else min(timeout, share))
    exchange.opening = sock
    try:
        # After ``opening`` is set: a cut either sees the socket or is seen here.
        if exchange.expired:
            raise TimeoutError("the request's deadline passed")
        sock.connect(address)
        exchange.hold(sock)  # before ``opening`` lets go of it
    finally:
        exchange.opening = None
    sock.settimeout(timeout)  # what the request's reads are bounded by, as before


def _connect_failed(conn: Any, reason: BaseException) -> Exception:
    """The urllib3 error its own ``_new_conn`` raises for a connect that failed so."""
    from urllib3 import exceptions  # noqa: PLC0415

    if isinstance(reason, socket.gaierror):
        # NameResolutionError from urllib3 2 on (a NewConnectionError, as 1.26 raises)
        resolution = getattr(exceptions, "NameResolutionError", None)
        if resolution is not None:
            error: Exception = resolution(conn.host, conn, reason)
            return error
    if isinstance(reason, TimeoutError):
        return exceptions.ConnectTimeoutError(
            conn, f"Connection to {conn.host} timed out. (connect timeout={conn.timeout})"
        )
    return exceptions.NewConnectionError(conn, f"Failed to establish a new connection: {reason}")


@functools.cache  # made once, the same for every transport
def _socks_pools() -> dict[str, type]:
    """The pools of urllib3's SOCKSProxyManager, watched and unwarned as ours are: made
    on first use, since urllib3.contrib.socks imports only where PySocks is installed.
    The proxy's connect and handshake are cut at the exchange's deadline too, and so is
    everything after them (TLS, upload, answer), as without a proxy."""
    from urllib3.contrib import socks  # noqa: PLC0415 - needs PySocks (see above)

    class Conn(_WatchedSocks, socks.SOCKSConnection):
        response_class = _FinalResponse

    class TLSConn(_WatchedSocks, socks.SOCKSHTTPSConnection):
        response_class = _FinalResponse

    class Pool(_Pooled, socks.SOCKSHTTPConnectionPool):
        ConnectionCls = Conn

    class TLSPool(_Pooled, _Unwarned, socks.SOCKSHTTPSConnectionPool):
        ConnectionCls = TLSConn

    return {"http": Pool, "https": TLSPool}


class _Unusable(requests.exceptions.RequestException):
    """No request can be made with the settings as they are; the message says why."""


class _WatchedAdapter(HTTPAdapter):
    """requests' adapter with pools of watched connections (urllib3's documented
    override point: a pool manager's ``pool_classes_by_scheme``)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        socks = proxy.lower().startswith("socks")
        try:
            manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        except requests.exceptions.InvalidSchema as exc:
            if not socks:
                raise
            # What requests raises for a socks proxy where PySocks is not installed
            # ("Missing dependencies for SOCKS support"): said so, with the fix.
            raise _Unusable(
                f"the proxy {_shown_proxy(proxy)} is a SOCKS proxy, which needs PySocks, "
                "not installed here: pip install 'requests[socks]' (or unset the proxy)"
            ) from exc
        # requests made a SOCKSProxyManager for a socks proxy (PySocks is installed): its
        # pools are its own classes, which open connections through the proxy.
        manager.pool_classes_by_scheme = _socks_pools() if socks else _WATCHED_POOLS
        return manager

    def close(self) -> None:
        # requests' close clears the pool managers, and urllib3 2 drops their pools
        # there without closing them: a pool's connections close only when the pool is
        # garbage-collected (a weakref finalizer). At the interpreter's exit those
        # finalizers are off (weakref ends them at atexit, before the exit hook delivers
        # the last lines), and the kept-alive connection the exit used was left open to
        # the end: "ResourceWarning: unclosed socket" under -X dev. Closed here, every
        # connection of every pool closes now (urllib3 1.26's clear closes them too; a
        # pool closed twice does nothing), and one still carrying a request closes when
        # it is handed back.
        for manager in (self.poolmanager, *self.proxy_manager.values()):
            pools = manager.pools
            # keys(): a copy taken under the container's lock (iterating it raises).
            for key in pools.keys():  # noqa: SIM118
                pool = pools.get(key)
                if pool is not None:
                    pool.close()
        super().close()


def _check_proxy(url: str, proxies: dict[str, str]) -> None:
    """Raise ``_Unusable`` where the proxy requests picks for ``url`` names no host: a
    proxy URL with user info and no host (``http://user:pw@``) made requests raise a
    TypeError of its own, which said nothing of the proxy."""
    proxy = requests.utils.select_proxy(url, proxies)
    if not proxy:
        return
    try:
        # (requests takes "host:port" for http://host:port)
        host = urlsplit(proxy if "://" in proxy else "http://" + proxy).hostname
    except ValueError:
        host = None
    if not host:
        raise _Unusable(
            f"no request can be made: the proxy {_shown_proxy(proxy)} names no host "
            "(HTTPS_PROXY, HTTP_PROXY, ALL_PROXY)"
        )


def _shown_proxy(proxy: str) -> str:
    """A proxy URL as a report may show it: scheme, host and port, never its user
    name or password."""
    try:
        parts = urlsplit(proxy)
        port = parts.port
    except ValueError:
        return "(from the environment's proxy settings)"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


class _NoAuth(requests.auth.AuthBase):
    """Auth that adds nothing: the key travels in the header ``_auth.py`` chose."""

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        return r


class _Session(requests.Session):
    """requests' session, which never reads a redirect's body for us.

    Told not to follow redirects, requests still reads a 3xx answer's body whole, and
    decoded (to free the connection for the redirect it would follow if asked), before
    handing the answer back: past the cap every other answer is read to (``_read_capped``),
    a 64 MiB body, or a gzip bomb's gigabytes, all in the sender's memory."""

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        return None  # never followed: the answer's Location is read in _attempt


class HTTPTransport:
    """Sends bodies over one ``requests.Session`` (one kept-alive connection)."""

    def __init__(self, config: Config, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._url = config.url
        #: What a kept-alive connection's idle time is told by (tests pass their own).
        self._clock = clock
        self._verify = config.verify
        # A loopback url is never sent through a proxy (as Go's HTTP client decides too):
        # a proxy reaches its own loopback, not ours, and http:// to loopback needs no
        # allow_insecure because the key never leaves the machine, which it did in clear
        # through a proxy on another host (or a local one forwarding to one).
        self._direct = _is_loopback(urlsplit(config.url).hostname or "")
        session = _Session()
        # No cookies kept: the ingest API sets none, and an endpoint setting new ones
        # with every answer made every later request carry all of them, without end
        # (memory, and headers the service at last refuses as too large).
        session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        adapter = _WatchedAdapter()
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.headers.update(
            {
                "User-Agent": USER_AGENT,
                "Content-Type": "application/json; charset=UTF-8",
                "Accept": "application/json",
                # No compressed answers (requests asks for gzip and deflate, urllib3 adds
                # br and zstd where their modules are installed): the service's are tiny,
                # and one compressed is decoded under the caps only by _read_capped.
                "Accept-Encoding": "identity",
            }
        )
        secret = config.secret
        # To scrub from what servers and proxies say back (some quote the headers).
        self._key = secret.reveal() if secret is not None else None
        # OTEL_EXPORTER_OTLP_HEADERS (config.otlp_headers), scrubbed from answers as the
        # key is. Config lets a request carry one credential: the key, or an Authorization
        # or apikey header there, never both (_otel_env.one_credential).
        extra = [(name, value.reveal()) for name, value in config.otlp_headers]
        session.headers.update(extra)
        session.headers.update(auth_headers(config.auth, self._key))
        # Any auth set keeps requests from adding a ~/.netrc entry for the host (a
        # "default" entry matches every host) as Basic auth: that sent the netrc
        # password to the log service beside the key, or in its place.
        session.auth = _NoAuth()
        forms = secret_forms(self._key) + tuple(
            form for _, value in extra for form in _header_forms(value)
        )
        # Compiled when an answer first needs scrubbing, on the sender thread: tens of
        # milliseconds (H209), not paid in the thread that builds the client.
        self._forms = tuple(sorted(set(forms), key=len, reverse=True))
        self._secrets: re.Pattern[str] | None = None
        self._session = session
        params = {"hostname": config.hostname}
        if config.ip:
            params["ip"] = config.ip
        if config.mac:
            params["mac"] = config.mac
        tags = list(config.tags)
        if config.protocol == "logdna":  # OTLP puts them in the body's resource instead
            tags += tags_for(attributes_for(config.kubernetes))
        if tags:
            params["tags"] = ",".join(tags)
        self._params = params
        self._classify = classify
        # Whether a plain 2xx's body can change what it says: an OTLP 200 may carry a
        # partial success in it; the ingest API's 200 says all in its status.
        self._body_decides_2xx = config.protocol == "otlp"
        if config.protocol == "otlp":
            from ._otlp import classify_otlp  # noqa: PLC0415 - _otlp imports this module

            # OTLP carries hostname, tags and Kubernetes metadata in the body's resource.
            self._params = {}
            self._classify = classify_otlp
        # requests.Session.request reads the environment for every request
        # (proxies, no_proxy, CA bundle: two walks over os.environ, a Python
        # loop per variable). We keep its answer until os.environ changes.
        self._environ_seen: dict[bytes, bytes] | None = None
        self._exchange: _Exchange | None = None
        #: A deadline ``hurry`` gave with no exchange to hurry: the next one ends by it.
        self._hurry_by = float("inf")
        self._watchdog = _Watchdog()
        self._environ_settings: dict[str, Any] = {}

    def start(self) -> None:
        """Start what sending needs besides the sender (its watchdog thread), while
        threads can still be started: the sender calls it when it starts."""
        self._watchdog.start()

    def send(self, body: bytes, *, gzipped: bool, timeout: float) -> Outcome:
        outcome = self._send(body, gzipped=gzipped, timeout=timeout)
        detail = one_line(self._scrub(outcome.detail))
        return outcome if detail is outcome.detail else replace(outcome, detail=detail)

    def _scrub(self, text: str) -> str:
        """``text`` with the key, in any of the forms a server may echo, as ``***``."""
        if not text or not self._forms:
            return text
        secrets = self._secrets
        if secrets is None:
            secrets = self._secrets = _echoes_of(self._forms)
        if secrets is None or secrets.search(text) is None:
            return text
        return secrets.sub("***", text)

    def _send(self, body: bytes, *, gzipped: bool, timeout: float) -> Outcome:
        started = time.monotonic()
        first = _Exchange(started + timeout, self._clock())
        outcome = self._attempt(first, body, gzipped, timeout, started)
        left = first.deadline - time.monotonic()  # (brought forward if close() hurried it)
        if not (first.closed_by_server and left > 0):
            return outcome
        # The server (a load balancer's idle timeout, the service's) closed the kept-alive
        # connection as the request went out on it, and said nothing: the request is sent
        # again at once on a new connection, within the same deadline, as browsers do (Go's
        # HTTP client only when none of a POST was written: it may not send one twice):
        # no failure, no backoff, no report, no retry counted. So is one answered 408 on
        # the kept-alive connection (``_idle_timeout``): the server said it closes the
        # connection for idleness, having read no request (RFC 9110, 15.5.9).
        # Duplicates: a server closing an idle connection reads nothing more from it, so
        # it stored nothing of this batch. One that read and stored it, then closed without
        # a word, is the one case that duplicates (docs/delivery.md, "What can duplicate"),
        # and the ordinary retry after a backoff resent it just the same: sent sooner, it
        # is stored twice no more often. Once only: a second failure, on a connection just
        # made, is a failure like any other.
        again = _Exchange(first.deadline, first.began)
        outcome = self._attempt(again, body, gzipped, min(timeout, left), started)
        return replace(outcome, resent=True)

    def _attempt(
        self, exchange: _Exchange, body: bytes, gzipped: bool, timeout: float, started: float
    ) -> Outcome:
        """One request of ``body``, cut at ``exchange``'s deadline; ``timeout`` bounds
        each socket operation of it. ``started``: when the first request of ``body``
        began (a timeout's report counts from there: the two share one deadline)."""
        headers = {"Content-Encoding": "gzip"} if gzipped else None
        params = dict(self._params, now=str(int(time.time() * 1000))) if self._params else None
        session = self._session
        self._exchange = _current.exchange = exchange
        # Taken after ``_exchange`` was written, as ``hurry`` writes ``_hurry_by`` before
        # it reads ``_exchange``: a close that began after the sender chose this request's
        # timeout, before the exchange was there to hurry, still cuts it at its deadline.
        # Taken once: a later request's timeout was chosen knowing of the close.
        hurried, self._hurry_by = self._hurry_by, float("inf")
        exchange.hurry(hurried)
        self._watchdog.watch(exchange)
        response = None
        try:
            # What session.post(url, params=, data=, headers=, timeout=, verify=)
            # does, with the environment's settings read only when they can differ.
            prepared = session.prepare_request(
                requests.Request("POST", self._url, headers=headers, data=body, params=params)
            )
            settings = self._settings(prepared.url)
            settings["stream"] = True  # the body is read here, up to a cap
            if self._direct:
                settings["proxies"] = {}
            elif settings["proxies"]:
                _check_proxy(prepared.url or self._url, settings["proxies"])
            # Never follow a redirect: the key and the lines would go where the
            # configured endpoint points them (the ingest API never redirects).
            response = session.send(prepared, timeout=timeout, allow_redirects=False, **settings)
            status = response.status_code
            if 200 <= status < 300 and status != 207 and not self._body_decides_2xx:
                # The status settles a plain 2xx: its body says nothing the client uses,
                # so one that stalls is waited for a moment, not the request's whole
                # timeout (H206: flush() and the CLI's send said "no answer" meanwhile).
                exchange.hurry(time.monotonic() + _SETTLED_BODY_WAIT)
            conn = exchange.conn
            if isinstance(conn, _Watched):  # (before the read hands it back to the pool)
                conn.answered(response.headers.get("Keep-Alive"), self._clock())
            # Scrubbed whole, before anything is cut to length for a report: a key
            # echoed across the cut would otherwise leave a part of itself behind.
            cap = MAX_PARTIAL_BYTES if response.status_code == 207 else MAX_RESPONSE_BYTES
            retry_after = response.headers.get("Retry-After")
            # A 408 on a reused connection: the server closing it for idleness as the
            # request went out (``_idle_timeout``), sent again at once.
            exchange.closed_by_server = _idle_timeout(response.status_code, exchange, retry_after)
            # A 408's connection is never used again (the server closes it, said so or
            # not; RFC 9110, 15.5.9): the request after it goes out on a new one. A 101
            # (the only 1xx read as the answer, _FinalResponse) switched the connection
            # to another protocol: sent on it, the next batch was answered in that
            # protocol (and taken for a server that cannot speak HTTP/1.1).
            keep = response.status_code >= 200 and response.status_code != 408
            text, whole = _read_capped(response, cap, keep=keep)
            # An answer that ends where its connection does (no Content-Length, no
            # chunks) ends, to the reader, where the deadline's cut ended it too.
            whole = whole and not exchange.expired
            text = self._scrub(text)
            location = response.headers.get("Location")
            return self._classify(
                response.status_code, retry_after, text,
                None if location is None else self._scrub(location), whole=whole,
            )  # fmt: skip
        except Exception as exc:
            if response is not None and 200 <= response.status_code < 300:
                # Answered 2xx and read, then not classified (a bug reading what it said):
                # as a failure, the batch was sent again without end, stored each time.
                return unconfirmed(
                    response.status_code, f"its answer unread ({type(exc).__name__})"
                )
            if response is None and exchange.status is not None:
                # The status line was read and what follows it was not (over 100 header
                # lines, one over 64 KiB, two Content-Lengths, a cut): the status still
                # says what the service did. As a failure, a 200 was sent again without
                # end (stored each time) and a 413 or 400 was never split.
                # Its body unread, a 207 confirms no line as stored.
                exchange.closed_by_server = _idle_timeout(exchange.status, exchange, None)
                return self._classify(exchange.status, None, "", None, whole=False)
            now = time.monotonic()
            # Cut at the deadline, or failed as it came: the socket's own timeout (each
            # read is bounded by what is left of the deadline) may end the read before
            # the watchdog thread runs, on a busy machine.
            if exchange.expired or now >= exchange.deadline - _DEADLINE_SLACK:
                detail = f"timed out: no complete answer in {now - started:.1f} s"
                return Outcome(Kind.RETRY, None, None, detail)
            # A TLS handshake failed only on a new connection whose connect() did not end.
            handshake = None if exchange.connected else exchange.fresh
            misspoken = _misspoken(exc, urlsplit(self._url).hostname, self._scrub, handshake)
            if misspoken is not None:
                return Outcome(Kind.PROTOCOL, None, None, misspoken)
            exchange.closed_by_server = _closed_by_server(exc, exchange)
            return _failure(exc, self._scrub)
        finally:
            exchange.finish()
            self._exchange = _current.exchange = None

    def _settings(self, url: str | None) -> dict[str, Any]:
        """``Session.merge_environment_settings`` for our URL, for as long as it holds."""
        session = self._session
        environ = getattr(os.environ, "_data", None)  # the mapping os.environ keeps in sync
        if not (_PROXIES_FROM_ENVIRON and isinstance(environ, dict)):
            return dict(session.merge_environment_settings(url, {}, None, self._verify, None))
        if environ != self._environ_seen:  # a comparison in C, not a walk over the variables
            # The copy first: a change another thread makes while requests reads the
            # variables then differs from it, and the next request reads them again.
            seen = dict(environ)
            self._environ_settings = dict(
                session.merge_environment_settings(url, {}, None, self._verify, None)
            )
            self._environ_seen = seen
        settings = self._environ_settings
        return {**settings, "proxies": dict(settings["proxies"])}

    def hurry(self, deadline: float) -> None:
        """End the request in flight (or the one about to be made) by ``deadline``
        (monotonic) at the latest."""
        self._hurry_by = min(self._hurry_by, deadline)
        exchange = self._exchange
        if exchange is not None:
            exchange.hurry(deadline)

    def close(self) -> None:
        self._hurry_by = float("inf")  # the close it came from is over with its sender
        self._watchdog.stop()
        try:
            self._session.close()
        except Exception:
            pass


# An auth scheme before a credential (RFC 9110's token): "Bearer", "Basic", "ApiKey" ...
_SCHEME = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+) +(\S.*)", re.DOTALL)
# Shorter than this, a header value (or a part of one) is no credential (a "1", a region),
# and as "***" everywhere it would garble every report.
_SHORTEST_SECRET = 8


def _header_forms(value: str) -> tuple[str, ...]:
    """What of an OTel header's value (credentials to the library) a receiver may echo:
    the value; the credential after its auth scheme ("Bearer <token>": a receiver
    saying "token <token> is expired" quotes the token alone); for Basic, its decoded
    ``user:password``, the password and the user (Mezmo's Basic carries the key as the
    user). Each from 8 characters."""
    forms = [value]
    found = _SCHEME.fullmatch(value.strip())
    if found is not None:
        credential = found.group(2).strip()
        forms.append(credential)
        if found.group(1).lower() == "basic":
            try:
                pair = base64.b64decode(credential, validate=True).decode("utf-8")
            except (binascii.Error, ValueError):  # (UnicodeDecodeError is a ValueError)
                pair = ""
            user, colon, password = pair.partition(":")
            forms += [pair, password, user] if colon else [pair]
    return tuple(form for form in forms if len(form) >= _SHORTEST_SECRET)


def _echoes_of(forms: tuple[str, ...]) -> re.Pattern[str] | None:
    """What finds ``forms`` (the key as a server may echo it) in a server's answer, each
    character as it is or escaped as a JSON string, a URL or an HTML page may carry it:
    ``\\uXXXX``, ``\\/``, ``\\"``, ``\\\\``, ``%XX``, ``&#NN;``, ``&#xXX;``. A JSON
    encoder escapes what it likes (PHP writes "/" as "\\/"; others escape all but ASCII
    letters, or everything), and an echo that escaped one character of the key showed
    all the rest of it."""
    if not forms:
        return None

    def either(char: str) -> str:
        ways = {re.escape(char)}
        for each in {char.lower(), char.upper()}:  # echoed case-folded, then escaped
            ways |= {f"\\\\u{ord(each):04x}", f"%{ord(each):02x}"}
            ways |= {f"&#0*{ord(each)};?", f"&#x0*{ord(each):x};?"}  # (HTML reads them so)
        if char in '/"\\':
            ways.add(re.escape("\\" + char))
        return "(?:" + "|".join(sorted(ways, key=len, reverse=True)) + ")"

    # Any case: a host name (a redirect's Location) comes back lower-cased, and an
    # escape's hex digits may be either case.
    return re.compile("|".join("".join(map(either, form)) for form in forms), re.IGNORECASE)


def _partial_read(exc: BaseException) -> bytes:
    """The bytes a read that ``exc`` (or what it wraps) cut short had read: http.client's
    IncompleteRead keeps them; urllib3 wraps it (its own IncompleteRead keeps a count)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            break
        partial = getattr(seen, "partial", None)
        if isinstance(seen, http.client.IncompleteRead) and isinstance(partial, bytes):
            return partial
        inner = [a for a in seen.args if isinstance(a, BaseException)]
        seen = seen.__cause__ or seen.__context__ or (inner[0] if inner else None)
    return b""


def _read_capped(
    response: requests.Response, cap: int = MAX_RESPONSE_BYTES, *, keep: bool = True
) -> tuple[str, bool]:
    """The body, up to ``cap`` bytes once decoded, and whether that is all of it; the
    connection is kept only when the answer was read to its end, nothing past it waits
    (``_past_the_answer``), and ``keep``.

    Read as sent and decoded here, ``cap`` bounding what it decodes to: urllib3 before
    2.6 decodes each read whole, so the cap bounded only the compressed bytes, and a
    1 MiB gzip answer (a bomb: 1 GB of zeros) cost the sender 1 GB of memory.
    """
    raw = response.raw
    # Taken before the read: urllib3 puts the connection back in the pool itself when
    # the body's end is read, and response.close() then no longer closes it. Not to be
    # kept (a 408: the server is closing it), it would be taken again, and the close
    # arriving under the next request would cost that request.
    conn = getattr(raw, "connection", None)
    coding = response.headers.get("Content-Encoding")
    decoder = _decoder_for(coding)
    if decoder is None:  # a coding the client did not ask for (it asks for none)
        response.close()  # unread: this connection cannot be reused
        return f"(an answer in Content-Encoding {(coding or '')[:40]!r}, not read)", False
    data = bytearray()
    # Whether the answer was read to the end its framing gives it (Content-Length, the
    # last chunk): then the connection can carry the next request, whatever the body.
    ended = False
    try:
        sent = 0
        # What it was sent as is bounded too: a body that decodes to little (empty
        # deflate blocks without end) is not read without end either.
        while len(data) <= cap and sent <= 2 * cap:
            chunk = raw.read(_CHUNK, decode_content=False)
            if not chunk:
                ended = True
                break
            sent += len(chunk)
            data += decoder.decode(chunk, cap + 1 - len(data))
        # Short of its Content-Length (the connection ended): urllib3 2 raises, 1.26
        # (which does not enforce the length) just stops.
        if getattr(raw, "length_remaining", None):
            ended = False
    except Exception as exc:
        # Cut by the connection (short of its Content-Length, a reset), or a body that
        # does not decode: what was read still says something (a 207's statuses read to
        # their end count), and the rest is unread. A chunked body's read gathers its
        # chunks up to the size asked: those read before the cut come with the error
        # (H206: a chunked 207 cut short lost them all, its stored lines counted refused).
        partial = _partial_read(exc)
        if partial and len(data) <= cap:
            with contextlib.suppress(Exception):
                data += decoder.decode(partial, cap + 1 - len(data))
        ended = False
    # A gzip or deflate stream that stops before its end (the answer cut short, its
    # Content-Length honest about what was sent) is not all of the answer either; its
    # connection is as good as any (it was closed: a new one for the next request).
    whole = ended and decoder.complete and len(data) <= cap
    del data[cap:]
    if ended and keep and not _past_the_answer(conn):
        raw.release_conn()  # back to the pool for the next request
    else:
        response.close()  # the rest unread, or not to be kept: never reused
        if conn is not None:
            conn.close()  # (the pool makes a new connection for the next request)
    try:
        return data.decode(response.encoding or "utf-8", "replace"), whole
    except (LookupError, ValueError, Warning):
        # A charset Python does not know, or a codec that is not a text encoding
        # (rot13, idna): raised from here, it turned the service's answer (a 200
        # included) into a retry, and every retry stored the lines once more. Warning:
        # unicode_escape warns of an invalid escape, raised where warnings are errors.
        return data.decode("utf-8", "replace"), whole


def _past_the_answer(conn: object) -> bool:
    """Whether bytes past the answer just read wait in ``conn``'s TLS connection: a
    server that sent more than its answer (a body past its Content-Length, a 204's).
    TLS reads a record whole, and what http.client's reader did not take of it stays in
    TLS's buffer, where urllib3's check before it reuses a connection (is its socket
    readable?) does not look: the next request read those bytes as its answer (a forged
    400 had its line dropped as refused). Bytes still in the socket that check sees."""
    pending = getattr(getattr(conn, "sock", None), "pending", None)  # (None: closed)
    if pending is None:
        return False
    try:
        return bool(pending())
    except Exception:  # (a TLS object in a state it cannot say): not kept
        return True


#: Bytes of an answer asked of urllib3 at a time, as sent (compressed or not).
_CHUNK = 64 * 1024


class _Identity:
    """The decoder of a body sent as it is."""

    complete = True

    def decode(self, data: bytes, room: int) -> bytes:
        return data[:room]


class _Inflate:
    """A gzip or deflate body's decoder: at most ``room`` bytes out of each call (zlib's
    ``max_length``), whatever the input would decode to."""

    def __init__(self, gzip: bool) -> None:
        self._gzip = gzip
        self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS if gzip else zlib.MAX_WBITS)
        # deflate: what was fed before the zlib header was read, to read again as raw
        # deflate (what some servers send under that name) if it is not one.
        self._start: bytes | None = None if gzip else b""
        self._members = 1
        self._member_out = 0  # bytes the current gzip member decoded to
        self._done = False

    @property
    def complete(self) -> bool:
        """Whether the stream was read to its end (bytes that follow a gzip member and
        decode to nothing, a second member's first bytes say, are passed over)."""
        return self._done or self._zlib.eof or (self._members > 1 and self._member_out == 0)

    def decode(self, data: bytes, room: int) -> bytes:
        out = bytearray()
        while data and len(out) < room and not self._done:
            try:
                decoded = self._zlib.decompress(data, room - len(out))
            except zlib.error:
                if self._start is not None:  # no zlib header: raw deflate
                    data, self._start = self._start + data, None
                    self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                if self._members > 1:  # bytes past the last gzip member: passed over
                    self._done = True
                    break
                raise
            out += decoded
            self._member_out += len(decoded)
            if self._start is not None:
                self._start += data[: len(data) - len(self._zlib.unconsumed_tail)]
                if len(self._start) >= 2:  # the zlib header read: it is one
                    self._start = None
            data = self._zlib.unconsumed_tail
            if self._zlib.eof:
                data = self._zlib.unused_data
                if not (self._gzip and data):
                    self._done = True
                    break
                self._members += 1  # another gzip member follows, as urllib3 reads it
                self._member_out = 0
                self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
        return bytes(out)


def _decoder_for(content_encoding: str | None) -> _Identity | _Inflate | None:
    """The decoder of a body sent in ``content_encoding``; None for a coding this client
    does not decode (br, zstd, compress, codings applied one over another)."""
    codings = [c for c in (content_encoding or "").lower().replace(" ", "").split(",")
               if c and c != "identity"]  # fmt: skip
    if not codings:
        return _Identity()
    if codings in (["gzip"], ["x-gzip"], ["deflate"]):
        return _Inflate(gzip=codings[0] != "deflate")
    return None


def _failure(exc: Exception, scrub: Callable[[str], str]) -> Outcome:
    """The outcome of a request that raised: always retried, the reason said plainly.

    ``scrub`` takes the key out of the reason before it is cut to length: a server
    writes part of some messages (a malformed status line is quoted whole).
    """
    if isinstance(exc, _Unusable):
        return Outcome(Kind.SETTINGS, None, None, str(exc))
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema)) or (
        # requests wraps every socket's OSError: a bare one is raised before any connection,
        # for a TLS file it cannot find (REQUESTS_CA_BUNDLE naming a file that is not there).
        isinstance(exc, OSError) and not isinstance(exc, requests.exceptions.RequestException)
    ):
        # Raised before any connection, from a setting requests cannot use (a proxy's URL
        # from the environment, the url's own port out of range): the same on every retry.
        return Outcome(
            Kind.SETTINGS, None, None, f"no request can be made: {_describe(exc, scrub)}"
        )
    if _proxy_wants_credentials(exc):
        return Outcome(
            Kind.SETTINGS, None, None,
            "the proxy wants credentials, or refused those in its url (HTTP 407, SOCKS5 "
            f"authentication): {_describe(exc, scrub)}",
        )  # fmt: skip
    if isinstance(exc, requests.exceptions.SSLError):
        return Outcome(Kind.RETRY, None, None, f"TLS error: {_describe(exc, scrub)}")
    if isinstance(exc, requests.exceptions.Timeout):
        return Outcome(Kind.RETRY, None, None, f"timed out: {_describe(exc, scrub)}")
    if isinstance(exc, requests.exceptions.RequestException):
        return Outcome(Kind.RETRY, None, None, f"connection failed: {_describe(exc, scrub)}")
    # A bug below us must not kill the sender.
    return Outcome(Kind.RETRY, None, None, f"unexpected {type(exc).__name__}")


#: How a connection the server closed fails a request sent on it (``_closed_by_server``),
#: and the upload, where an answer sent first may still be read (``_Watched``).
_ENDED = (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError, ssl.SSLZeroReturnError)


def _closed_by_server(exc: Exception, exchange: _Exchange) -> bool:
    """Whether the request of ``exchange``, which raised ``exc``, failed because the
    server had closed the kept-alive connection it went out on: on a connection reused,
    not one just made, before any byte of an answer, the end of the stream or a reset
    where the answer should be (http.client's RemoteDisconnected is a reset), or a broken
    pipe under the upload; under TLS, the upload can end in the TLS connection's end
    instead (an SSLEOFError, "EOF occurred in violation of protocol", where a large body
    was still going out). Never a timeout, nor the deadline's cut: its shutdown reads
    as the end of the stream too, which is why ``expired`` is asked first."""
    if exchange.expired or exchange.heard or exchange.status is not None:
        return False
    if exchange.conn is None or exchange.dialed:  # no connection, or a new one
        return False
    return isinstance(_innermost(exc), _ENDED)


def _idle_timeout(status: int, exchange: _Exchange, retry_after: str | None) -> bool:
    """Whether ``status``, the answer to the request of ``exchange``, is a 408 on a
    connection reused from an earlier request: what a server sends on a kept-alive
    connection it closes for idleness (RFC 9110, 15.5.9), the request unread, as the
    request went out on it; a client sends it again (as browsers do). Then it is
    handled as ``_closed_by_server``: sent again at once, once, on a new connection.
    A 408 to a new connection's first request is a failure like any other; so is one
    whose ``retry_after`` (its Retry-After) asks for a wait: the server asks the client
    to wait, and it is a retry that honours it, as a 429's or a 503's is."""
    if status != 408 or exchange.expired:
        return False
    if (parse_retry_after(retry_after) or 0.0) > 0:
        return False
    return exchange.conn is not None and not exchange.dialed


def _proxy_wants_credentials(exc: Exception) -> bool:
    """Whether ``exc`` is a proxy refusing the connection for want of credentials: an
    HTTPS proxy's 407 to CONNECT (http.client, and urllib3's copy of its ``_tunnel``,
    raise it as an OSError in these words), or PySocks' SOCKS5 authentication error."""
    if not isinstance(exc, requests.exceptions.ConnectionError):  # ProxyError is one
        return False
    reason = _innermost(exc)
    socks = sys.modules.get("socks")  # PySocks, loaded where a SOCKS proxy was used
    if socks is not None and isinstance(reason, getattr(socks, "SOCKS5AuthError", ())):
        return True
    return type(reason) is OSError and str(reason).startswith("Tunnel connection failed: 407")


def _misspoken(
    exc: Exception, host: str | None, scrub: Callable[[str], str], sock: socket.socket | None
) -> str | None:
    """What a server that does not speak what the url says (HTTP/1.1, or TLS for
    https://) did instead, as Kind.PROTOCOL's report; None for a failure that may pass.

    ``sock``: the plain socket of a new connection whose TLS handshake failed (what
    ``_Exchange.fresh`` holds), to tell what the server answered it in; None when no
    handshake failed. A record TLS cannot read after the handshake (on a connection
    kept alive, or once connected) is no sign of a server that does not speak TLS: it
    spoke TLS, and what broke may pass (a middlebox, a server restarting)."""
    instead = _not_http(exc, scrub)
    if instead is not None:
        return f"the server at {host} does not speak HTTP/1.1 to this client: it {instead}"
    reason = _innermost(exc)
    said = str(reason).lower() if isinstance(reason, ssl.SSLError) else ""
    # The first record's header is not TLS's: the server answered the handshake in
    # something else. Not a failure that passes: retried on the quick backoff, each
    # retry was a new connection and handshake. OpenSSL says "wrong version number"
    # ("unknown protocol" before 1.1); from 3.2 "record layer failure", which it says of
    # any record it cannot read: that one counts only with a plain HTTP answer seen.
    generic = "record layer failure" in said
    if sock is None or not (
        generic or "wrong version number" in said or "unknown protocol" in said
    ):
        return None
    status = _plain_http_status(sock)
    if status is None and generic:
        return None
    # requests' ProxyError: the handshake that failed was with an https:// proxy, not the
    # service; "use http://" for the url would then send the key in the clear for nothing.
    server, url = f"the server at {host}", "the url"
    if isinstance(exc, requests.exceptions.ProxyError):
        server, url = f"the proxy for {host}", "the proxy's url (HTTPS_PROXY, ALL_PROXY)"
    if status is None:
        return (
            f"{server} does not speak TLS: it answered the TLS handshake in another "
            f"protocol (plain HTTP? then {url} should say http://, not https://)"
        )
    return (
        f"{server} does not speak TLS: it answered the TLS handshake in plain HTTP "
        f"(HTTP {status}); {url} says https:// to a port that speaks http://: use http://"
    )


# What follows the record header OpenSSL read (5 bytes: "HTTP/") in a plain HTTP status line.
_PLAIN_STATUS = re.compile(rb"(?:HTTP/)?1\.[01] ([0-9]{3})[ \r\n]")


def _plain_http_status(sock: socket.socket | None) -> str | None:
    """The status of the plain HTTP answer waiting on ``sock``, or None when what waits
    there (if anything) is none: a peek, which never blocks or takes it."""
    dontwait = getattr(socket, "MSG_DONTWAIT", None)  # (not on Windows: no peek there)
    if sock is None or dontwait is None:
        return None
    try:
        head = sock.recv(64, socket.MSG_PEEK | dontwait)
    except OSError:
        return None
    found = _PLAIN_STATUS.match(head)
    return None if found is None else found.group(1).decode()


def _not_http(exc: Exception, scrub: Callable[[str], str]) -> str | None:
    """What a server that cannot speak HTTP/1.1 answered instead of a status line, as
    the end of a sentence; None for a failure that may pass (a connection cut before
    or inside the status line)."""
    reason = _innermost(exc)
    if isinstance(reason, _EndlessInterim):
        return f"sent more than {_MAX_INTERIM} interim (1xx) answers to one request, no final one"
    if isinstance(reason, http.client.LineTooLong):  # and no status at its start
        return "sent a status line over 64 KiB" if "status line" in str(reason) else None
    if isinstance(reason, http.client.RemoteDisconnected) or not isinstance(
        reason, http.client.BadStatusLine
    ):
        return None
    line = str(reason.args[0]) if reason.args else ""  # as http.client read it, in Latin-1
    if len(line) >= 9 and line[3] == "\x04" and line[5:9] == "\x00" * 4:
        # A SETTINGS frame on stream 0: the connection preface of an HTTP/2 server.
        return "answered in HTTP/2"
    if len(line) >= 2 and line[0] in "\x15\x16" and line[1] == "\x03":  # a TLS record
        return "answered in TLS (the url says http:// to a port that speaks https://)"
    if line.endswith("\n"):  # a whole line, and not a status line
        return f"answered {scrub(line)[:40]!r}, no HTTP status line"
    return None


def _innermost(exc: BaseException) -> BaseException:
    """The innermost reason, the useful part (requests' messages can be long): what each
    exception was raised while handling (else from), but not past one raised ``from
    None``. urllib3 1.26 raises http.client's error that way over the TypeError of a
    Python 2 call it tries first (``getresponse(buffering=True)``): that TypeError was
    taken for the reason, and a server that does not speak HTTP/1.1 for a passing failure."""
    reason = exc
    seen = {id(exc)}
    while not (reason.__suppress_context__ and reason.__cause__ is None):  # from None
        # The exception handled when it was raised, else what it was raised from.
        deeper = reason.__context__ or reason.__cause__
        if deeper is None or id(deeper) in seen:
            break
        seen.add(id(deeper))
        reason = deeper
    return reason


# A URL's user information (``scheme://user:password@``): up to its last "@", as URLs split.
_USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#\s'\"]+@")


def _describe(exc: BaseException, scrub: Callable[[str], str]) -> str:
    # Requests' messages carry the URL (never the key: it only travels in a header), and
    # some a proxy's URL whole, its password too ("Failed to parse: http://u:pw@host:99999").
    reason = _innermost(exc)
    said = _USERINFO.sub(r"\1***@", scrub(str(reason)))
    return f"{type(reason).__name__}: {said[:200]}"
