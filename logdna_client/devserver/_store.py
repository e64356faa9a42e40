"""What the server keeps: accepted lines, request records, counts, the store file."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

_KEPT_RECORDS_WITHOUT_LINES = 10_000
#: What replaces meta that is valid JSON but nested deeper than orjson writes back.
NESTED_TOO_DEEP = "<nested too deeply to show>"


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


@dataclass(frozen=True)
class Origin:
    """Where a batch of lines came from: the request's query parameters.

    The service takes ``hostname``, ``tags``, ``ip`` and ``mac`` once per
    request, not per line; the tail, the page, ``--json`` and the store file
    show them with every line.
    """

    query: dict[str, str]
    hostname: str | None = None
    tags: tuple[str, ...] = ()
    ip: str | None = None
    mac: str | None = None

    @classmethod
    def from_query(cls, query: dict[str, str]) -> Origin:
        tags = tuple(tag.strip() for tag in query.get("tags", "").split(",") if tag.strip())
        return cls(
            query=query,
            hostname=query.get("hostname") or None,
            tags=tags,
            ip=query.get("ip") or None,
            mac=query.get("mac") or None,
        )

    def fields(self) -> dict[str, Any]:
        """The request-level fields a line carries in ``--json`` and the store file."""
        found: dict[str, Any] = {}
        if self.hostname is not None:
            found["hostname"] = self.hostname
        if self.tags:
            found["tags"] = list(self.tags)
        if self.ip is not None:
            found["ip"] = self.ip
        if self.mac is not None:
            found["mac"] = self.mac
        return found


def with_origin(line: Mapping[str, Any], origin: Origin | None) -> dict[str, Any]:
    """The line plus its request's hostname, tags, ip and mac; the line's own fields win."""
    if origin is None:
        return dict(line)
    return {**line, **{k: v for k, v in origin.fields().items() if k not in line}}


def dump_line(line: Mapping[str, Any], origin: Origin | None = None) -> bytes:
    """One received line as JSON, even when its meta is nested too deeply to re-encode."""
    shown = with_origin(line, origin) if origin is not None else line
    try:
        return orjson.dumps(shown)
    except orjson.JSONEncodeError:
        return orjson.dumps({**shown, "meta": NESTED_TOO_DEEP})


class Store:
    """Accepted lines and request records, with waits on their counts.

    One condition guards everything here; whoever waits in ``wait_for_lines``
    wakes once a batch is fully published.
    """

    def __init__(self, *, keep_lines: bool) -> None:
        self.keep_lines = keep_lines
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.lines: list[dict[str, Any]] = []
        self.line_count = 0
        self.requests: deque[RequestRecord] = deque(
            maxlen=None if keep_lines else _KEPT_RECORDS_WITHOUT_LINES
        )
        self.request_count = 0
        self.connections = 0

    def add_record(self, record: RequestRecord) -> None:
        with self.cond:
            self.requests.append(record)
            self.request_count += 1
            self.cond.notify_all()

    def add_lines(self, lines: list[dict[str, Any]], record_for: Any) -> None:
        """Keep ``lines`` and the record ``record_for(index of the first line)``."""
        with self.cond:
            first = self.line_count
            if self.keep_lines:
                self.lines.extend(lines)
            self.line_count += len(lines)
            self.requests.append(record_for(first))
            self.request_count += 1
            self.cond.notify_all()

    def wait_for(self, predicate: Any, timeout: float) -> bool:
        with self.cond:
            return bool(self.cond.wait_for(predicate, timeout))

    def clear(self) -> None:
        with self.cond:
            self.lines = []
            self.line_count = 0
            self.requests.clear()
            self.request_count = 0
            self.connections = 0


class StoreFile:
    """The ``store`` JSON Lines file: every shown line appended, with its origin.

    When a write fails, storing stops and ``error`` keeps the reason; the
    server keeps serving.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.error: Exception | None = None
        self._file: IO[bytes] | None = None

    def open(self) -> None:
        if self._file is None:
            self._file = open(self.path, "ab")  # noqa: SIM115 - closed in close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def write(self, lines: Iterable[Mapping[str, Any]], origin: Origin) -> Exception | None:
        """Append ``lines``; return the error that stopped storing, if this write did."""
        file = self._file
        if file is None:
            return None
        try:
            file.write(b"".join(dump_line(line, origin) + b"\n" for line in lines))
            file.flush()
        except (OSError, ValueError) as exc:
            self.error = exc
            self._file = None
            return exc
        return None
