"""Ingest: ``POST /logs/ingest`` (and ``/logs/agent``) from request to stored lines,
and OTLP/HTTP JSON logs at ``POST /v1/logs`` (a Collector's path) into the same tail.

The order of checks follows the service: body framing and size, injected
faults, the key (401 / 403), ``hostname`` (400), the body's encoding and
JSON (400 / 413 / 415), then the lines are accepted. OTLP requests carry
the host in the body, take exactly one credential in any of the client's
``auth`` forms, and answer refused records with a partial success.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from .. import _auth, _otlp
from . import _body
from ._body import HTTPError
from ._store import Origin

if TYPE_CHECKING:
    from ._http import Handler

OTLP_PATH = "/v1/logs"
INGEST_PATHS = frozenset({"/logs/ingest", "/logs/agent", OTLP_PATH})
_LINGER_SECONDS = 1.0  # how long to drain an unread body before closing
_LINGER_BYTES = 64 * 1024 * 1024


def post(handler: Handler, path: str) -> None:
    """Answer one POST: lines on the ingest paths, 404 or 405 elsewhere."""
    owner = handler.server.owner
    query = handler._query()
    if path not in INGEST_PATHS:
        handler._drain_or_close()
        status, message = (405, "Method not allowed") if path == "/" else (404, "Not found")
        headers = [("Allow", "GET, HEAD")] if status == 405 else []
        owner._add_record(handler._record(path, status, query=query, error=message))
        handler._send(status, {"error": message}, headers=headers)
        return
    delay = owner._current_delay()
    # The injected delay passes before the body is read, outside the gate
    # below, so a slow answer never holds a body in memory meanwhile.
    if delay > 0 and handler.server.closing.wait(delay):
        length_header = handler.headers.get("Content-Length", "").strip()
        claimed = int(length_header) if length_header.isdigit() else 0
        _stopped(handler, path, query=query, body_bytes=claimed)
        return
    # Only a few bodies are in memory at a time; the others wait here, unread.
    with owner._gate.slot(handler.server.closing):
        _ingest(handler, path, query)


def _ingest(handler: Handler, path: str, query: dict[str, str]) -> None:
    owner = handler.server.owner
    content_encoding = (handler.headers.get("Content-Encoding") or "").strip().lower()
    key_present, key_valid, auth = _check_key(handler)
    origin = Origin.from_query(query)
    common: dict[str, Any] = {
        "query": query,
        "gzip": content_encoding in ("gzip", "x-gzip"),
        "key_present": key_present,
        "key_valid": key_valid,
        "auth": auth,
        "hostname": origin.hostname,
        "tags": list(origin.tags),
    }
    length_header = handler.headers.get("Content-Length", "").strip()
    claimed = int(length_header) if length_header.isdigit() else 0

    try:
        body = _body.read_body(handler.rfile, handler.headers, owner._max_body_bytes)
    except HTTPError as exc:
        owner._add_record(
            handler._record(path, exc.status, body_bytes=claimed, error=exc.message, **common)
        )
        handler._send(exc.status, {"error": exc.message}, close=True)
        _linger(handler)
        return
    common["body_bytes"] = body.wire_bytes

    fault = owner._take_fault()
    if fault is not None and fault.drop:
        owner._add_record(handler._record(path, None, error="dropped (drop_next)", **common))
        handler.close_connection = True
        return
    if fault is not None:
        extra = [("Retry-After", fault.retry_after)] if fault.retry_after is not None else []
        message = "injected failure"
        raw = fault.body.encode() if fault.body else None
        owner._add_record(handler._record(path, fault.status, error=message, **common))
        handler._send(fault.status, {"error": message}, headers=extra, raw=raw)
        return

    if path == OTLP_PATH:
        _otlp_logs(handler, path, body.decoded(), common)
        return
    try:
        if owner._key is not None and not key_present:
            raise HTTPError(401, "Missing apikey.")
        if owner._key is not None and not key_valid:
            raise HTTPError(403, "Invalid apikey.")
        if origin.hostname is None:
            raise HTTPError(400, "Missing param hostname.")
        lines = _body.parse_lines(body.decoded())
        del body  # the decoded bytes can go before the lines are shown
        # Counted now, while parsing left the lines in the CPU's caches: later
        # the same pass costs several times more.
        counts = owner._hub.count_if_watched(lines)
        if owner._rejects(lines):
            raise HTTPError(400, "bad line")
    except HTTPError as exc:
        owner._add_record(handler._record(path, exc.status, error=exc.message, **common))
        handler._send(exc.status, {"error": exc.message}, close=exc.close)
        return

    batch_id = str(uuid.uuid4())
    taken = owner._accept(
        lines,
        origin,
        lambda first: handler._record(
            path,
            200,
            n_lines=len(lines),
            first_line_index=first,
            batch_id=batch_id,
            **common,
        ),
        handler._received_at,
        counts,
    )
    if not taken:
        _stopped(handler, path, **common)
        return
    handler._send(200, {"status": "ok", "batchID": batch_id})


def _otlp_logs(
    handler: Handler, path: str, body: bytes | bytearray, common: dict[str, Any]
) -> None:
    """``POST /v1/logs``: an OTLP/HTTP JSON ``ExportLogsServiceRequest``."""
    owner = handler.server.owner
    found = _auth.credentials_in(handler.headers.items(), parse_qsl(urlsplit(handler.path).query))
    common.update(key_present=bool(found), auth=found[0][0] if len(found) == 1 else None)
    try:
        if len(found) > 1:  # a client must send exactly one
            raise HTTPError(400, f"{len(found)} credentials sent; send exactly one")
        if owner._key is not None:
            if not found:
                raise HTTPError(401, "Missing credentials.")
            common["key_valid"] = hmac.compare_digest(found[0][1].encode(), owner._key.encode())
            if not common["key_valid"]:
                raise HTTPError(403, "Invalid credentials.")
        if "protobuf" in (handler.headers.get("Content-Type") or ""):
            raise HTTPError(415, "only the JSON encoding of OTLP is taken here")
    except HTTPError as exc:
        owner._add_record(handler._record(path, exc.status, error=exc.message, **common))
        handler._send(exc.status, {"error": exc.message})
        return
    needle = owner._reject_substring
    refuse = (lambda line: needle in line["line"]) if needle else None
    status, answer, lines = _otlp.receive(body, refuse)
    if status != 200:
        owner._add_record(handler._record(path, status, error="not an OTLP logs request", **common))
        handler._send(status, None, raw=answer)
        return
    hosts = {line.get("hostname") for line in lines} - {None}
    origin = Origin(query=common["query"], hostname=hosts.pop() if len(hosts) == 1 else None)
    common["hostname"] = origin.hostname
    taken = owner._accept(
        lines,
        origin,
        lambda first: handler._record(
            path, 200, n_lines=len(lines), first_line_index=first, **common
        ),
        handler._received_at,
        owner._hub.count_if_watched(lines),
    )
    if not taken:
        _stopped(handler, path, **common)
        return
    handler._send(200, None, raw=answer)


def _stopped(handler: Handler, path: str, **fields: Any) -> None:
    """The server stopped before the request's lines were taken: recorded, and the
    connection closed without an answer (the client sends them again elsewhere)."""
    handler.server.owner._add_record(handler._record(path, None, error="server stopped", **fields))
    handler.close_connection = True


def _check_key(handler: Handler) -> tuple[bool, bool | None, str | None]:
    """Find the key in header, Basic auth or query; say whether it is valid."""
    key: str | None = handler.headers.get("apikey")
    auth: str | None = "header" if key is not None else None
    if key is None:
        authorization = handler.headers.get("Authorization", "")
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
        raw_query = urlsplit(handler.path).query
        for name, value in parse_qsl(raw_query, keep_blank_values=True):
            if name.lower() == "apikey" and value:
                key, auth = value, "query"
    expected = handler.server.owner._key
    if expected is None:
        return key is not None, None, auth
    if key is None:
        return False, False, None
    valid = hmac.compare_digest(key.encode(), expected.encode())
    return True, valid, auth


def _linger(handler: Handler) -> None:
    """Close after an error answered before the body was read.

    Closing a socket with unread data sends a reset, and a client still
    sending its body may then never read our answer. Half-close and
    discard what it sends for a moment, as nginx's lingering_close does.
    """
    sock: socket.socket = handler.request
    try:
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + _LINGER_SECONDS
        drained = 0
        while drained < _LINGER_BYTES:
            left = deadline - time.monotonic()
            if left <= 0 or handler.server.closing.is_set():
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
    handler.close_connection = True
