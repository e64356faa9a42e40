"""OTLP/HTTP JSON logs: the encoder the sender uses, and the receiving side.

Lines stay in the LogDNA line format in the buffer and the spool (the hot path
and the spool format do not change with the protocol). At send time
``OTLPEncoder`` parses each line of a batch with orjson and builds one
``ExportLogsServiceRequest`` in the OTLP JSON encoding (opentelemetry-proto,
``logs/v1``): severity number and text from the level, body from the text,
``timeUnixNano`` from the timestamp, attributes from meta, resource attributes
from app, env, hostname, tags and the Kubernetes metadata. Lines of one batch
that name another app or env go in a resource of their own.

The receiving side (``decode_export_request``, ``export_response``) turns such
a body back into the devserver's line dicts, so the devserver can accept
``/v1/logs`` and show those lines in the same tail.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import logging
import math
import os
import re
import reprlib
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson
from typing_extensions import Required, TypedDict, Unpack

from ._buffer import SEPARATOR
from ._event import exception_info, unnamed_level_number
from ._kubernetes import parse_resource_attributes
from ._limits import LINE_BYTES, Cuts, count_excerpt, enforce_line
from ._line import EMPTY_TEXT, ENTRY_HEAD, ENTRY_LEVEL, ENTRY_TIMESTAMP, FIELDS
from ._redact import MAX_DEPTH
from ._transport import Kind, Outcome, classify, read_json, unconfirmed
from ._values import utf8_text
from ._version import __version__

__all__ = [
    "OTLPEncoder",
    "any_value",
    "classify_otlp",
    "decode_export_request",
    "exception_of",
    "export_response",
    "from_any_value",
    "level_for",
    "otel_resource",
    "receive",
    "severity_for",
    "with_exception",
]

#: OpenTelemetry's SeverityNumber for the level names clients send (logs data
#: model, "Mapping of SeverityNumber"): the first number of each range.
_SEVERITY = {
    "TRACE": 1, "FINEST": 1, "FINER": 2, "FINE": 5, "DEBUG": 5,
    "INFO": 9, "NOTICE": 10,
    "WARN": 13, "WARNING": 13,
    "ERR": 17, "ERROR": 17, "SEVERE": 17,
    "CRITICAL": 21, "FATAL": 21, "ALERT": 22, "EMERGENCY": 23, "EMERG": 23, "PANIC": 24,
}  # fmt: skip
# Back from a number (when a sender gives no text): the range's name.
_LEVEL_OF_RANGE = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")

_INT64 = (-(2**63), 2**63 - 1)
# timeUnixNano is a fixed64: the latest millisecond whose nanoseconds it can hold (year
# 2554). A timestamp past it (a before_send hook's in micro- or nanoseconds) made protobuf's
# parser refuse the whole body: 400, and every line of the batch lost.
_LATEST_MS = (2**64 - 1) // 1_000_000
_SCOPE = {"name": "logdna_client", "version": __version__}
_SCOPE_JSON = orjson.dumps(_SCOPE)
# How the builder's fast-path lines begin, and the markers between their first fields
# (its ENTRY_* pieces, with the quotes of a text and a level).
_HEAD = ENTRY_HEAD + b'"'
_TEXT_AT = len(ENTRY_HEAD)  # where the text's JSON string starts
_AFTER_TEXT = b'"' + ENTRY_TIMESTAMP
_LEVEL = ENTRY_LEVEL + b'"'
_TAIL_KEYS = frozenset({"app", "env"})
# Line keys that are not attributes: they become body, time, severity or resource.
_LINE_KEYS = frozenset(FIELDS)


def severity_for(level: str) -> int:
    """The SeverityNumber for a level name (0, unspecified, when it names none).

    A name ``logging`` knows (its own, and any an application registered with
    ``logging.addLevelName(25, "NOTICE")``) takes its number's place among the
    stdlib's levels, as the OpenTelemetry SDK's ``LoggingHandler`` places a record's
    ``levelno``; so does a level ``logging`` has no name for (``Level 25``). Other
    names (structlog's, syslog's) are looked up in the data model's table.
    """
    if not level:
        return 0
    number = unnamed_level_number(level)
    if number is not None:
        return _severity_of_number(number)
    number = _registered(level)
    if number is not None:
        return _severity_of_number(number)
    return _SEVERITY.get(level.upper(), 0)


def _registered(level: str) -> int | None:
    """The number ``logging`` registered for a level name, or None.

    ``getLevelName`` reads logging's tables without its module lock: the sender
    thread must never wait on that lock (DESIGN, "Deadlock on logging's module lock").
    """
    for name in (level, level.upper()):
        number = logging.getLevelName(name)
        if isinstance(number, int):
            return number
    return None


def _severity_of_number(number: int) -> int:
    """A stdlib level number's SeverityNumber: the SDK's ``std_to_otel`` from DEBUG up
    (each decade a range of four, past its 4th the 4th; above 53 FATAL4); below DEBUG,
    where the SDK gives 0, TRACE: a level under DEBUG is a trace level (TRACE=5), and
    unspecified would rank it with records of no level at all."""
    if number <= 0:
        return 0
    if number < 10:
        return 1
    return min(5 + (number // 10 - 1) * 4 + min(number % 10, 3), 24)


def level_for(number: int) -> str:
    """A level name for a SeverityNumber (1-24), as the LogDNA line carries it."""
    if 1 <= number <= 24:
        return _LEVEL_OF_RANGE[(number - 1) // 4]
    return "INFO"


def any_value(value: Any) -> dict[str, Any]:
    """A value as an OTLP ``AnyValue`` in the JSON encoding, as the SDK's ``_encode_value``
    maps it: int64 as a string, bytes as ``bytesValue`` (base64), NaN and the infinities
    as proto3's JSON mapping writes a double ("NaN", "Infinity", "-Infinity").

    Bounded: a mapping or list met again inside itself is cut to ``<cycle>``, and one
    nested deeper than the line builder keeps (``MAX_DEPTH``) to ``<too deep>`` (its
    markers): another writer's spool line may nest 1,024 levels, where recursing
    without end failed the whole batch's body.
    """
    return _any_value(value, 0, set())


def key_values(mapping: Mapping[Any, Any]) -> list[dict[str, Any]]:
    """A mapping as a list of OTLP ``KeyValue`` (its values bounded as ``any_value``'s)."""
    return _key_values(mapping, 0, {id(mapping)})


def _json_key_values(mapping: Mapping[Any, Any]) -> list[dict[str, Any]]:
    """``key_values`` of a parsed line's mapping: JSON holds no cycle, only depth to bound
    (no path of containers kept, per line, on the sender thread)."""
    return _key_values(mapping, 0, None)


def _key_values(
    mapping: Mapping[Any, Any], depth: int, path: set[int] | None
) -> list[dict[str, Any]]:
    # A str, the usual value, without the call (a third of the cost on flat meta).
    return [
        {
            "key": str(k),
            "value": {"stringValue": v} if type(v) is str else _any_value(v, depth, path),
        }
        for k, v in mapping.items()
    ]


def _any_value(value: Any, depth: int, path: set[int] | None) -> dict[str, Any]:
    """``any_value`` at ``depth``; ``path``: the containers it is inside, None for JSON."""
    kind = type(value)
    if kind is str:
        return {"stringValue": value}
    if kind is int and _INT64[0] <= value <= _INT64[1]:
        return {"intValue": str(value)}
    if kind is bool:
        return {"boolValue": value}
    if kind is float and math.isfinite(value):
        return {"doubleValue": value}
    if value is None:
        return {}  # an AnyValue with no value set: OTLP's null
    if kind is not dict and kind is not list and not isinstance(value, Mapping | list | tuple):
        return _scalar(value)
    if depth >= MAX_DEPTH:
        return {"stringValue": "<too deep>"}
    if path is not None:
        if id(value) in path:
            return {"stringValue": "<cycle>"}
        path.add(id(value))
    try:
        if kind is dict or isinstance(value, Mapping):
            return {"kvlistValue": {"values": _key_values(value, depth + 1, path)}}
        return {"arrayValue": {"values": [_any_value(v, depth + 1, path) for v in value]}}
    finally:
        if path is not None:
            path.discard(id(value))


def _scalar(value: Any) -> dict[str, Any]:
    """The AnyValue of a value that is no container (those are ``_any_value``'s)."""
    if isinstance(value, str):
        return {"stringValue": str(value)}
    if value is True or value is False:
        return {"boolValue": value}
    if isinstance(value, int):
        if _INT64[0] <= value <= _INT64[1]:
            return {"intValue": str(value)}
        return {"stringValue": str(value)}
    if isinstance(value, float):
        if math.isfinite(value):
            return {"doubleValue": float(value)}
        # proto3's JSON mapping of a double JSON has no number for.
        text = "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
        return {"doubleValue": text}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"bytesValue": base64.b64encode(value).decode("ascii")}
    return {"stringValue": str(value)}


class Host(TypedDict, total=False):
    """The resource's fields that do not change with a line's app and env."""

    hostname: Required[str | None]
    ip: str | None
    mac: str | None
    tags: Iterable[str]
    extra: Mapping[str, str] | None  # more attributes (Kubernetes metadata, say)
    #: The resource OpenTelemetry's environment variables give (``otel_resource``).
    otel: Mapping[str, str] | None
    #: Whether ``hostname`` was set (hostname= or LOGDNA_HOSTNAME), not detected.
    hostname_given: bool


_logger = logging.getLogger("logdna_client")
# The OTEL_RESOURCE_ATTRIBUTES values whose malformed entries were reported.
_reported: set[str] = set()


def otel_resource(environ: Mapping[str, str]) -> dict[str, str]:
    """The resource attributes ``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_SERVICE_NAME``
    give, as the OpenTelemetry SDK reads them.

    ``OTEL_RESOURCE_ATTRIBUTES`` is ``k=v,k2=v2`` with values percent-encoded;
    ``OTEL_SERVICE_NAME`` wins over its ``service.name``. An entry without ``=`` or
    a key is skipped and reported, once per process, as the SDK's detector does: one typo
    must not cost the other attributes, nor fail the client (the variable is often
    set for other processes of the pod too). The report names the entry's place,
    not its text, which may hold a token.
    """
    text = utf8_text(environ.get("OTEL_RESOURCE_ATTRIBUTES", ""))
    places: list[int] = []
    parsed = parse_resource_attributes(text, places)
    attrs = {utf8_text(k): utf8_text(v) for k, v in parsed.items()}
    skipped = [str(place) for place in places]
    if skipped and text not in _reported:
        # Once per process and value: not again for each client, nor in a forked child
        # (its fresh sender is built in the fork hook, no place to emit records from).
        _reported.add(text)
        _logger.warning(
            "OTEL_RESOURCE_ATTRIBUTES: entries %s are not key=value and were skipped",
            ", ".join(skipped[:10]) + (", ..." if len(skipped) > 10 else ""),
        )
    service = utf8_text(environ.get("OTEL_SERVICE_NAME", "").strip())
    if service:
        attrs["service.name"] = service
    return attrs


def resource_attributes(
    *, app: str | None, env: str | None, **host: Unpack[Host]
) -> dict[str, Any]:
    """Resource attributes (semantic-convention names) for one app and env.

    The library's own settings win over OpenTelemetry's environment variables for the
    attributes both name (app over ``OTEL_SERVICE_NAME``): they are this library's,
    set for it on purpose, where the OTel variables are often set for the whole pod.
    A hostname the library only detected gives way to an OTel ``host.name``.
    """
    attrs: dict[str, Any] = dict(host.get("otel") or {})
    if app:
        attrs["service.name"] = app
    elif "service.name" not in attrs:
        # The resource conventions' default, which the SDK sends: backends group by
        # service.name, and a record without one lands in no service's view.
        attrs["service.name"] = "unknown_service"
    if env:
        attrs["deployment.environment.name"] = env
    if host["hostname"] and (host.get("hostname_given", True) or "host.name" not in attrs):
        attrs["host.name"] = host["hostname"]
    ip, mac = host.get("ip"), host.get("mac")
    if ip:
        attrs["host.ip"] = [ip]
    if mac:
        attrs["host.mac"] = [mac]
    tags = list(host.get("tags", ()))
    if tags:
        attrs["logdna.tags"] = tags  # no semantic convention for tags; our own namespace
    extra = host.get("extra")
    if extra:
        attrs.update(extra)
    attrs["telemetry.sdk.name"] = "logdna_client"
    attrs["telemetry.sdk.language"] = "python"
    attrs["telemetry.sdk.version"] = __version__
    return attrs


#: A resource's (app, env): text, or None for none named.
_Key = tuple[str | None, str | None]


def _named(value: Any) -> str | None:
    """A line's app or env as its resource names it (and batches are grouped by).

    Text as it is; None (JSON's null) names none. Anything else a ``before_send`` hook
    may set (a list, an object, a number) is its JSON text: the ingest API receives
    that value as it is, and the resource, whose ``service.name`` and
    ``deployment.environment.name`` are strings, carries it as text. Used as it was,
    a list made the grouping key unhashable and failed the whole batch.
    """
    if value is None or type(value) is str:
        return value
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:  # (parsed JSON always serializes; the config's is text)
        return str(value)


class OTLPEncoder:
    """Turns a batch of buffer entries into one ``ExportLogsServiceRequest`` body.

    Runs on the sender thread, once per request; each line is parsed once, cut
    to the service's limits if it must be, and re-serialized as a LogRecord.
    """

    def __init__(
        self,
        *,
        app: str | None,
        env: str | None,
        environ: Mapping[str, str] | None = None,
        **host: Unpack[Host],
    ) -> None:
        """``environ``: where OpenTelemetry's variables are read (``os.environ`` by
        default), once: the resource is the same for the client's life."""
        env_vars = os.environ if environ is None else environ
        if "otel" not in host:
            host["otel"] = otel_resource(env_vars)
        # Kept as given, but copied: a caller's list or dict changed later changes nothing.
        self._host: Host = {
            **host,
            "tags": tuple(host.get("tags", ())),
            "extra": dict(host.get("extra") or {}),
            "otel": dict(host.get("otel") or {}),
        }
        self._app = app
        self._env = env
        # Resources by (app, env): almost every batch has one; each is built once.
        self._resources: dict[_Key, dict[str, Any]] = {}
        self._severities: dict[str, bytes] = {}
        self._level_fragments: dict[bytes, bytes] = {}
        self._tails: dict[bytes, tuple[_Key, bytes]] = {}
        #: Lines longer than this are checked against the service's limits
        #: (see ``_limits.enforce_entries``); all of them with ``inspect_all``.
        self.threshold = LINE_BYTES
        self.inspect_all = False

    def _resource(self, app: str | None, env: str | None) -> dict[str, Any]:
        found = self._resources.get((app, env))
        if found is None:
            attrs = resource_attributes(app=app, env=env, **self._host)
            found = {"attributes": key_values(attrs)}
            if len(self._resources) < 256:  # apps and envs are few; a flood is not kept
                self._resources[(app, env)] = found
        return found

    def _severity(self, level: Any) -> bytes:
        """The record's severity fields as JSON (after a comma), cached per level name."""
        fragment = self._severities.get(level) if isinstance(level, str) else None
        if fragment is None:
            text = level if isinstance(level, str) else ""
            # A hook's level number (25) placed as a stdlib record's levelno is.
            number = _severity_of_number(level) if type(level) is int else severity_for(text)
            fragment = b',"severityNumber":%d' % number
            if text:
                fragment += b',"severityText":' + orjson.dumps(text)
            if isinstance(level, str) and len(self._severities) < 64:
                self._severities[level] = fragment
        return fragment

    def encode(
        self,
        entries: list[bytes],
        cuts: Cuts | None = None,
        failed: list[tuple[int, Exception]] | None = None,
    ) -> bytes:
        """The JSON body for ``entries`` (each a separator, then one LogDNA line).

        One bad line never spoils the batch (DESIGN): when the body cannot be built (a
        bug's exception), each line is converted on its own, and those that fail are
        left out and added, with their place in ``entries``, to ``failed`` for the
        caller to count; the others are sent. Without ``failed`` the exception is
        raised (the caller has nowhere to count the line); a MemoryError always is (the
        sender tries a smaller batch).
        """
        # Counted into ``cuts`` only for the body returned (None: not cut at all, as
        # callers without a count asked).
        found: Cuts | None = None if cuts is None else Counter()
        try:
            body = self._encode(entries, found)
        except MemoryError:
            raise
        except Exception:
            if failed is None:
                raise
            kept: list[bytes] = []
            for place, entry in enumerate(entries):
                try:
                    self._encode([entry], None if cuts is None else Counter())
                except MemoryError:
                    raise
                except Exception as exc:
                    failed.append((place, exc))
                else:
                    kept.append(entry)
            found = None if cuts is None else Counter()
            body = self._encode(kept, found)
        if cuts is not None and found:
            cuts.update(found)
        return body

    def _encode(self, entries: list[bytes], cuts: Cuts | None) -> bytes:
        """``encode``'s body, raising what converting any line raises.

        Lines as the builder makes them (``line``, ``timestamp``, ``level``,
        then app, env and meta) are taken apart as bytes, not parsed: the text
        is already a JSON string and goes into the record as it is, and the
        tail after the level (app, env) is the same on every line of an app,
        so it is parsed once and cached. Lines with meta are parsed whole.
        That is about a third less CPU than parsing each line. Anything else
        (a ``before_send`` hook's keys, a line near a limit, another writer's
        spool) takes the general path, ``_convert``.
        """
        # Records in runs of one resource, and in those in runs of one scope (None: the
        # library's own), in the order they were logged: a resource's or a scope's records
        # are not gathered from across the batch, which would reorder lines of interleaved
        # apps or loggers (H198: lines of another app= or env= came after the rest). A
        # run's header costs about 50 bytes before gzip, at most one per record.
        resources: list[tuple[_Key, list[tuple[str | None, list[bytes]]]]] = []
        last_key: object = None
        last_scope: object = None
        group: list[bytes] | None = None
        threshold, inspect_all = self.threshold, self.inspect_all
        # The observed time is the timestamp: the handler observed the record as it was
        # logged (the SDK's LoggingHandler sets both then), not when the batch went out
        # (a spooled batch may go hours later). Repeated, it costs little after gzip.
        template = (
            b'{"timeUnixNano":"%b000000","observedTimeUnixNano":"%b000000"%b,'
            b'"body":{"stringValue":%b}%b}'
        )
        tails = self._tails
        severities = self._level_fragments
        for entry in entries:
            record = None
            if (
                entry.startswith(_HEAD)
                and not entry.endswith(b"}}")  # an object last: meta, the general path's
                and not (inspect_all or len(entry) > threshold)
                # A traceback: its exception.* attributes are _record's. find, not "in":
                # bytes' "in" first tries the needle as an int (an exception raised and
                # cleared), 200 ns a line on 3.11 against 90.
                and entry.find(_TRACEBACK_BYTES) < 0
            ):
                # The text's closing quote: a quote inside the text is escaped, so the
                # first unescaped '","timestamp":' is the end of the "line" value.
                end = entry.find(_AFTER_TEXT, _TEXT_AT + 1)
                level_at = entry.find(_LEVEL, end)
                level_end = entry.find(b'"', level_at + len(_LEVEL))
                # No '","' inside: that would be a closing quote and another key, not
                # text (a quote in the text is always preceded by a backslash).
                if (
                    end > 0
                    and level_at > 0
                    and level_end > 0
                    and entry.find(b'","', _TEXT_AT, end) < 0
                ):
                    timestamp = entry[end + len(_AFTER_TEXT) : level_at]
                    tail = entry[level_end + 1 :]
                    found = tails.get(tail)
                    if found is None:
                        found = self._tail(tail)
                    severity = severities.get(entry[level_at + len(_LEVEL) : level_end])
                    if severity is None:
                        severity = self._level_fragment(entry[level_at + len(_LEVEL) : level_end])
                    if (
                        found is not None
                        and severity is not None
                        and timestamp.isdigit()
                        and len(timestamp) < 14  # within _LATEST_MS; longer: the general path
                    ):
                        key, attributes = found
                        record = template % (
                            timestamp, timestamp, severity, entry[_TEXT_AT : end + 1], attributes
                        )  # fmt: skip
            scope: str | None = None
            if record is None:
                key, scope, record = self._convert(entry, cuts)
            # Lines in a row of one resource (the fast path's key is one cached tuple)
            # and scope skip the lookups.
            if key is not last_key or scope != last_scope or group is None:
                last_key, last_scope = key, scope
                if not resources or resources[-1][0] != key:
                    resources.append((key, []))
                runs = resources[-1][1]
                if runs and runs[-1][0] == scope:
                    group = runs[-1][1]
                else:
                    group = []
                    runs.append((scope, group))
            group.append(record)
        return b"".join(
            (
                b'{"resourceLogs":[',
                b",".join(
                    b'{"resource":'
                    + orjson.dumps(self._resource(*key))
                    + b',"scopeLogs":['
                    + b",".join(
                        b'{"scope":'
                        + (_SCOPE_JSON if scope is None else orjson.dumps({"name": scope}))
                        + b',"logRecords":['
                        + b",".join(records)
                        + b"]}"
                        for scope, records in runs
                    )
                    + b"]}"
                    for key, runs in resources
                ),
                b"]}",
            )
        )

    def _convert(self, entry: bytes, cuts: Cuts | None) -> tuple[_Key, str | None, bytes]:
        """The general path: parse the line, cut it to the limits, build its record."""
        try:
            line = orjson.loads(entry[len(SEPARATOR) :])
        except orjson.JSONDecodeError:
            line = {"line": bytes(entry[len(SEPARATOR) :]).decode("utf-8", "replace")}
        if type(line) is not dict:
            line = {"line": orjson.dumps(line).decode()}
        if cuts is not None:
            if len(entry) > self.threshold or self.inspect_all:
                enforce_line(line, cuts, meta_size=len(entry))
            else:
                count_excerpt(entry, cuts)
        app, env = line.get("app", self._app), line.get("env", self._env)
        # (Text, the usual value, without the call: this runs for every line with meta.)
        if not (type(app) is str or app is None) or not (type(env) is str or env is None):
            app, env = _named(app), _named(env)
        key = (app, env)
        meta = line.get("meta")
        text = line.get("line")
        timestamp = line.get("timestamp")
        if not (
            type(text) is str
            and type(timestamp) is int
            and 0 < timestamp <= _LATEST_MS
            and len(line) == 3 + ("app" in line) + ("env" in line) + ("meta" in line)
            and _TRACEBACK not in text
        ):
            # keys of a hook's, odd values, a traceback to take apart
            return key, _scope_of(meta), orjson.dumps(self._record(line))
        attributes = b""
        if type(meta) is dict:
            trace, meta = _trace_context(meta)
            if trace:
                attributes = b"," + orjson.dumps(trace)[1:-1]
            if meta:
                attributes += b',"attributes":' + orjson.dumps(_json_key_values(meta))
        elif meta is not None:  # index_meta=False: meta as a JSON string
            attributes = b',"attributes":' + orjson.dumps(
                [{"key": "meta", "value": any_value(meta)}]
            )
        record = (
            b'{"timeUnixNano":"%d000000","observedTimeUnixNano":"%d000000"%b,'
            b'"body":{"stringValue":%b}%b}'
        ) % (
            timestamp,
            timestamp,
            self._severity(line.get("level")),
            orjson.dumps(text),
            attributes,
        )
        return key, _scope_of(meta), record

    def _tail(self, tail: bytes) -> tuple[_Key, bytes] | None:
        """The resource key a line's tail (``,"app":..,"env":..}``) gives, cached;
        None for a tail with meta or anything else (the general path is as fast
        for those: the meta's conversion dominates)."""
        if tail == b"}":
            rest: Any = {}
        else:
            if not tail.startswith(b',"') or b'"meta":' in tail or len(self._tails) >= 64:
                return None
            try:
                rest = orjson.loads(b"{" + tail[1:])
            except orjson.JSONDecodeError:
                return None
        if type(rest) is not dict or not rest.keys() <= _TAIL_KEYS:
            return None
        found = ((_named(rest.get("app", self._app)), _named(rest.get("env", self._env))), b"")
        self._tails[tail] = found
        return found

    def _level_fragment(self, level: bytes) -> bytes | None:
        if b"\\" in level:  # escaped: leave it to the general path
            return None
        try:
            fragment = self._severity(level.decode("utf-8"))
        except UnicodeDecodeError:
            return None
        if len(self._level_fragments) < 64:
            self._level_fragments[level] = fragment
        return fragment

    def _record(self, line: dict[str, Any]) -> dict[str, Any]:
        """A LogRecord for any line dict (the general path)."""
        nanos = _nanos(line.get("timestamp"))
        record: dict[str, Any] = (
            {"timeUnixNano": nanos, "observedTimeUnixNano": nanos}
            if nanos is not None
            # Unknown time: the data model's observed time (now, as the record is sent),
            # which receivers use in its place, as the ingest API uses its own clock.
            else {"observedTimeUnixNano": str(time.time_ns())}
        )
        record.update(orjson.loads(b"{" + self._severity(line.get("level"))[1:] + b"}"))
        text = line.get("line", "")
        fields: dict[str, Any] = {}
        found = exception_of(text) if isinstance(text, str) else None
        if found is not None:
            text, exception = found
            fields.update(exception)
        record["body"] = _any_value(text, 0, None)  # (parsed JSON, as the fields below)
        meta = line.get("meta")
        if isinstance(meta, dict):
            trace, meta = _trace_context(meta)
            record.update(trace)
            fields.update(meta)  # over the exception.* taken from the text: set on purpose
        elif meta is not None:
            fields["meta"] = meta
        # A hook's own keys, over meta's of the same name: an attribute map's keys are
        # unique in OTLP, and receivers keep one of two at random (the hook ran last).
        fields.update((k, v) for k, v in line.items() if k not in _LINE_KEYS)
        if fields:
            record["attributes"] = _json_key_values(fields)
        return record


# How logging formats an exception (traceback.format_exception), as the handler appends
# it to the message; and the stack_info logging appends after it.
_TRACEBACK = "Traceback (most recent call last):\n"
_TRACEBACK_BYTES = b"Traceback (most recent call last):"  # (its newline JSON-escaped)
_STACK = "\nStack (most recent call last):\n"
# What the traceback module writes between a cause's traceback and the next one's.
_CHAINED = (
    "\nThe above exception was the direct cause of the following exception:\n\n",
    "\nDuring handling of the above exception, another exception occurred:\n\n",
)
# The exception line: its type (qualified but for builtins; "<locals>" in the name of a
# class made in a function), then ": " and the message.
_EXCEPTION_LINE = re.compile(r"([A-Za-z_][\w.<>]*)(?:: (.*))?", re.DOTALL)


def exception_of(text: str) -> tuple[str, dict[str, str]] | None:
    """A line's text that ends in a traceback, as the stdlib handler ships one (the
    message, a newline, the formatted exception), split into the message and the logs
    semantic conventions' ``exception.type``, ``exception.message`` and
    ``exception.stacktrace``, as the OpenTelemetry SDK's ``LoggingHandler`` sends them.

    Read on the sender thread from the text, so the logging call costs nothing more.
    The type and message are the raised exception's line (after the last chain
    separator: causes come first): the first line after its frames that is not indented, then the
    rest up to any stack_info (a multi-line message or PEP 678 notes included). None
    when there is no traceback at a line's start, or no exception line after it (an
    exception group's, all indented; a traceback cut by max_line_length): the line is
    then sent as it is.
    """
    at = -1
    while True:
        at = text.find(_TRACEBACK, at + 1)
        if at <= 0 or text[at - 1] == "\n":
            break
    if at < 0:
        return None
    stacktrace = text[at:]
    # The raised one's block: after the last chain separator (causes come first), not
    # after the last "Traceback" header, which may be a message's (a worker's traceback
    # quoted in the exception raised for it). An exception never raised, logged with
    # its raised cause, has no header of its own: its line follows the separator.
    last = 0
    for separator in _CHAINED:
        found = stacktrace.rfind(separator)
        if found >= 0:
            last = max(last, found + len(separator))
    stack = stacktrace.find(_STACK, last)
    block = stacktrace[last : stack if stack >= 0 else len(stacktrace)].rstrip("\n")
    lines = block.split("\n")
    exception = _exception_line(lines[1:] if block.startswith(_TRACEBACK) else lines)
    if exception is None:
        return None
    exception["exception.stacktrace"] = stacktrace.rstrip("\n")
    return text[: max(at - 1, 0)], exception


def _exception_line(lines: list[str]) -> dict[str, str] | None:
    """``exception.type`` and ``exception.message`` from the lines of one exception's
    block after its header: the first line that is not indented (after the frames, or a
    SyntaxError's source and caret), then the rest (a multi-line message, PEP 678 notes).
    None when there is no such line, or it is no exception's."""
    for i, line in enumerate(lines):
        if line[:1] not in (" ", ""):
            match = _EXCEPTION_LINE.fullmatch("\n".join(lines[i:]))
            if match is None:
                return None
            found = {"exception.type": match.group(1)}
            if match.group(2):
                found["exception.message"] = match.group(2)
            return found
    return None


def with_exception(meta: dict[str, Any] | None, exc_info: object) -> dict[str, Any] | None:
    """``meta`` over the ``exception.type`` and ``exception.message`` of a record's
    ``exc_info`` (see ``exception_info``); ``meta`` itself when there is no exception.

    Read from the exception, by ``_exception_line``'s rule, in the lines the traceback
    module ends its traceback with (``format_exception_only``), where ``exception_of``
    has only the line's text: a message or note that quotes another traceback (a
    worker's, re-raised) cannot rename it, and a traceback cut by ``max_line_length``
    still names it. Meta's own keys of those names win, as they win over the text's.
    Called by the handler and the processor for OTLP lines with an exception only: the
    common line pays nothing."""
    info = exception_info(exc_info)
    if info is None:
        return meta
    try:
        written = "".join(traceback.format_exception_only(info[0], info[1]))
    except Exception:  # a type or value that is no exception's: the text's reading stands
        return meta
    found = _exception_line(written.rstrip("\n").split("\n"))
    if found is None:
        return meta
    return found if not meta else {**found, **meta}


def _scope_of(meta: Any) -> str | None:
    """The instrumentation scope a line's record goes in: its logger's name, as the
    OpenTelemetry SDK's ``LoggingHandler`` names it (the stdlib handler ships the
    logger's name as meta ``name`` by default, ``record_meta``); None for the library's
    own scope, when the line names no logger."""
    if type(meta) is dict:
        name = meta.get("name")
        if type(name) is str and name:
            return name
    return None


# The trace context opentelemetry-instrumentation-logging's LoggingInstrumentor sets on
# each LogRecord (the handler ships such attributes as meta): ids as lowercase hex.
_TRACE_ID, _SPAN_ID, _SAMPLED = "otelTraceID", "otelSpanID", "otelTraceSampled"
_HEX = frozenset("0123456789abcdefABCDEF")


def _trace_context(meta: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The record's ``traceId``, ``spanId`` and ``flags`` from a line's meta, and the meta
    without the keys they came from.

    In the record's own fields a collector and the backends join the line to its trace;
    as attributes nothing does. OTLP/JSON writes the ids as hex (not base64). Ids that
    are not hex of their length, or all zeros (no span was active: the instrumentation
    writes "0"), stay attributes: the record has no trace context then.
    """
    trace_id, span_id = meta.get(_TRACE_ID), meta.get(_SPAN_ID)
    if not (_is_id(trace_id, 32) and _is_id(span_id, 16)):
        return {}, meta
    fields: dict[str, Any] = {"traceId": str(trace_id).lower(), "spanId": str(span_id).lower()}
    if meta.get(_SAMPLED) is True:
        fields["flags"] = 1  # W3C trace flags: sampled
    rest = {k: v for k, v in meta.items() if k not in (_TRACE_ID, _SPAN_ID, _SAMPLED)}
    return fields, rest


def _is_id(value: Any, digits: int) -> bool:
    return (
        isinstance(value, str)
        and len(value) == digits
        and _HEX.issuperset(value)
        and value.strip("0") != ""
    )


def _nanos(timestamp: Any) -> str | None:
    """A timestamp (ms) as timeUnixNano; None when it is none that a fixed64 holds."""
    if isinstance(timestamp, int) and not isinstance(timestamp, bool):
        if 0 < timestamp <= _LATEST_MS:
            return str(timestamp * 1_000_000)
    elif isinstance(timestamp, float) and 0 < timestamp <= _LATEST_MS:  # NaN compares False
        return str(int(timestamp * 1_000_000))
    return None


def classify_otlp(
    status: int,
    retry_after: str | None,
    text: str,
    location: str | None = None,
    *,
    whole: bool = True,
) -> Outcome:
    """``classify`` for an OTLP endpoint: a 200 may carry a partial success.

    OTLP/HTTP answers a request it took in part with 200 and
    ``{"partialSuccess": {"rejectedLogRecords": N, "errorMessage": ...}}``;
    those records were refused for good (retrying cannot help), so they are
    counted as rejected like the LogDNA API's 207. The answer does not say which
    records: the sender counts N of the batch. A partial success that is no object,
    whose N is no count (negative, a fraction, a word), or that cannot be read in an
    answer cut at the cap, confirms none of the batch as stored (``unconfirmed``).
    """
    outcome = classify(status, retry_after, text, location, whole=whole)
    if outcome.kind is not Kind.OK or not any(name in text for name in _PARTIAL_NAMES):
        return outcome
    found: object = None
    message = ""
    try:
        doc = read_json(text)
    except ValueError:
        if whole:  # not an OTLP answer: nothing in it refuses a record
            return outcome
        # Cut at the cap (a long errorMessage): the count comes first in protobuf's
        # field order. Not found, the answer confirms nothing.
        message = f"its answer cut at {len(text) // 1024} KiB"
        match = _REJECTED_COUNT.search(text)
        if match is None:
            return unconfirmed(status, message)
        found = match.group(1)
        with contextlib.suppress(orjson.JSONDecodeError):
            found = orjson.loads(match.group(1))
    else:
        partial = _get(doc, "partialSuccess", "partial_success") if isinstance(doc, dict) else None
        if partial is None:  # absent, or null (protobuf JSON's default): a full success
            return outcome
        if not isinstance(partial, dict):  # a partial success that says nothing readable
            return unconfirmed(status, f"partialSuccess {_shown(partial)} is no object")
        found = _get(partial, *_REJECTED)
        message = str(_get(partial, "errorMessage", "error_message") or "")
        if found is None:  # no count: zero (an errorMessage alone is a warning)
            return _warning(outcome, message)
    rejected = _count(found)
    if rejected is None:
        return unconfirmed(status, f"partialSuccess.rejectedLogRecords {_shown(found)} is no count")
    if rejected == 0:
        return _warning(outcome, message)
    return Outcome(Kind.PARTIAL, status, detail=message[:200], rejected=rejected)


def _warning(outcome: Outcome, message: str) -> Outcome:
    """A full success that carries the receiver's warning as its detail: OTLP's partial
    success with no record rejected and an ``errorMessage`` ("the server accepted the
    data but has something to say"). The sender reports it, counting nothing."""
    message = message.strip()
    return dataclasses.replace(outcome, detail=message[:200]) if message else outcome


_REJECTED = ("rejectedLogRecords", "rejected_log_records")
_PARTIAL_NAMES = (*_REJECTED, "partialSuccess", "partial_success")
# A count read from a cut answer is one its end did not cut: a string closed, or a number
# followed by what ends a value (the cut may fall between its digits: "2" of 25).
_REJECTED_COUNT = re.compile(
    r'"rejected(?:LogRecords|_log_records)"\s*:\s*("[^"]*"|[^,}\s"]+(?=[,}\s]))'
)


def _shown(value: object) -> str:
    """A value the server sent, as JSON, cut short for a report."""
    try:
        shown = value if isinstance(value, str) else orjson.dumps(value, default=repr).decode()
    except (TypeError, RecursionError):  # an int past 64 bits, a lone surrogate (read_json)
        shown = reprlib.repr(value)
    if isinstance(value, float) and not math.isfinite(value):  # orjson writes them as null
        shown = repr(value)
    return repr(shown[:40])


def _count(value: object) -> int | None:
    """A ``rejectedLogRecords`` value as a count: an int64, a JSON number or (as
    protobuf's JSON mapping writes one) a string of digits; None for anything else."""
    if isinstance(value, str):
        # An int64 has 19 digits at most. Past 4,300 int() raises (Python's limit), which
        # made the answer a failed request: the batch was sent again, without end.
        digits = value.lstrip("0") if value.isascii() and value.isdigit() else None
        return int(digits or "0") if digits is not None and len(digits) <= 19 else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    return None


# -- the receiving side (for the devserver's /v1/logs) ----------------------------


class OTLPDecodeError(ValueError):
    """The body is not an OTLP/HTTP JSON ``ExportLogsServiceRequest``: answer 400."""


def _get(doc: Mapping[str, Any], camel: str, snake: str) -> Any:
    # Protobuf's JSON mapping accepts both spellings of every field name.
    value = doc.get(camel)
    return doc.get(snake) if value is None else value


def from_any_value(value: Any) -> Any:
    """An OTLP ``AnyValue`` (JSON encoding) as a plain JSON value."""
    if not isinstance(value, Mapping):
        return None
    for camel, snake in (("stringValue", "string_value"), ("boolValue", "bool_value"),
                         ("doubleValue", "double_value")):  # fmt: skip
        found = _get(value, camel, snake)
        if found is not None:
            return found
    found = _get(value, "intValue", "int_value")
    if found is not None:
        return int(found)
    found = _get(value, "kvlistValue", "kvlist_value")
    if found is not None:
        return from_key_values(found.get("values") or [])
    found = _get(value, "arrayValue", "array_value")
    if found is not None:
        return [from_any_value(v) for v in found.get("values") or []]
    found = _get(value, "bytesValue", "bytes_value")
    if found is not None:
        return found  # base64 text, as the JSON encoding carries it
    return None


def from_key_values(items: Any) -> dict[str, Any]:
    if not isinstance(items, list):
        raise OTLPDecodeError("attributes must be a list of {key, value}")
    out: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, Mapping) or not isinstance(item.get("key"), str):
            raise OTLPDecodeError("an attribute has no key")
        out[item["key"]] = from_any_value(item.get("value"))
    return out


def decode_export_request(body: bytes | bytearray) -> list[dict[str, Any]]:
    """An OTLP/HTTP JSON logs body as the devserver's line dicts, in order.

    Each has ``line``, ``timestamp`` (ms), ``level``, ``app`` (``service.name``),
    ``env`` (``deployment.environment[.name]``), ``meta`` (the record's
    attributes, when any), ``hostname`` (``host.name``), ``trace_id``, ``span_id``
    and ``trace_flags`` (when the record has them) and ``resource`` (all resource
    attributes). Raises ``OTLPDecodeError`` for a body to answer 400.
    """
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise OTLPDecodeError(f"Invalid JSON body: {exc}") from None
    if not isinstance(doc, dict):
        raise OTLPDecodeError("Body must be an ExportLogsServiceRequest object.")
    resource_logs = _get(doc, "resourceLogs", "resource_logs") or []
    if not isinstance(resource_logs, list):
        raise OTLPDecodeError("resourceLogs must be a list.")
    lines: list[dict[str, Any]] = []
    try:
        for rl in resource_logs:
            resource = from_key_values((rl.get("resource") or {}).get("attributes") or [])
            base: dict[str, Any] = {}
            app = resource.get("service.name")
            env = resource.get(
                "deployment.environment.name", resource.get("deployment.environment")
            )
            for name, value in (
                ("app", app),
                ("env", env),
                ("hostname", resource.get("host.name")),
            ):
                if isinstance(value, str):
                    base[name] = value
            for sl in _get(rl, "scopeLogs", "scope_logs") or []:
                for record in _get(sl, "logRecords", "log_records") or []:
                    lines.append(_line_of(record, base, resource))
    except (AttributeError, TypeError, ValueError) as exc:
        if isinstance(exc, OTLPDecodeError):
            raise
        raise OTLPDecodeError(f"Not an ExportLogsServiceRequest: {exc}") from None
    return lines


def _line_of(
    record: Mapping[str, Any], base: dict[str, Any], resource: dict[str, Any]
) -> dict[str, Any]:
    body = from_any_value(record.get("body"))
    text = body if isinstance(body, str) else orjson.dumps(body).decode()
    nanos = _get(record, "timeUnixNano", "time_unix_nano") or _get(
        record, "observedTimeUnixNano", "observed_time_unix_nano"
    )
    number = _get(record, "severityNumber", "severity_number") or 0
    if isinstance(number, str) and not number.isdigit():  # the enum's name is valid JSON too
        number = _SEVERITY.get(number.rpartition("_")[2].rstrip("0123456789"), 0)
    level = _get(record, "severityText", "severity_text") or level_for(int(number))
    line: dict[str, Any] = {
        "line": text or EMPTY_TEXT,
        "timestamp": int(nanos or 0) // 1_000_000,
        "level": level,
    }
    line.update(base)
    attributes = from_key_values(record.get("attributes") or [])
    stacktrace = attributes.get("exception.stacktrace")
    if isinstance(stacktrace, str) and stacktrace:
        # The traceback back after the message, as the tail showed it before it was
        # sent as an attribute (and shown once: not in meta as well).
        line["line"] = f"{text}\n{stacktrace}" if text else stacktrace
        del attributes["exception.stacktrace"]
    if attributes:
        line["meta"] = attributes
    # The trace context, where collectors join logs to traces: shown, so that a devserver
    # user can see it travels (H198).
    for name, keys in _TRACE_FIELDS:
        value = _get(record, *keys)
        if value not in (None, "", 0):
            line[name] = value
    line["resource"] = resource
    return line


#: A record's trace fields, as ``_line_of`` names them, and their JSON spellings.
_TRACE_FIELDS = (
    ("trace_id", ("traceId", "trace_id")),
    ("span_id", ("spanId", "span_id")),
    ("trace_flags", ("flags", "flags")),  # (one word in both spellings)
)


def export_response(rejected: int = 0, message: str = "") -> bytes:
    """The ``ExportLogsServiceResponse`` JSON: ``{}``, or a partial success."""
    if rejected <= 0:
        return b"{}"
    return orjson.dumps(
        {"partialSuccess": {"rejectedLogRecords": str(rejected), "errorMessage": message}}
    )


def receive(
    body: bytes | bytearray, refuse: Callable[[dict[str, Any]], bool] | None = None
) -> tuple[int, bytes, list[dict[str, Any]]]:
    """Everything a server's ``POST /v1/logs`` does with an (inflated) JSON body.

    Returns the status, the response body (``application/json``) and the lines
    taken, as line dicts. A body that is not an ``ExportLogsServiceRequest`` is
    a 400 (OTLP: not to be retried); lines ``refuse`` picks are left out and
    named in a 200 partial success, as an OTLP receiver refuses records it
    cannot store.
    """
    try:
        lines = decode_export_request(body)
    except OTLPDecodeError as exc:
        return 400, orjson.dumps({"code": 3, "message": str(exc)}), []
    if refuse is None:
        return 200, export_response(), lines
    kept = [line for line in lines if not refuse(line)]
    rejected = len(lines) - len(kept)
    return 200, export_response(rejected, f"{rejected} record(s) refused" if rejected else ""), kept
