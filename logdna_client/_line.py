"""Line building: text, level, timestamp and meta -> one serialized JSON line.

This runs in the application's thread. ``LineBuilder.entry`` makes the entries
of the logging calls' lines: for the common line, one escape, one ``orjson.dumps``
of the meta and one bytes template built from the ``ENTRY_*`` pieces below;
``encode`` (which ``entry`` falls back to) serializes every other line, the
library's own and ``Client.log``'s too. The C extension (``_speedups.c``) is handed
the same pieces and writes the same bytes as ``entry`` for the common stdlib
record. Everything unusual (values orjson cannot encode, cycles,
surrogates, huge integers, oversize lines, a raising ``__str__``) is handled
on slower fallback paths that only run when the fast ones fail, and each bad
value degrades alone instead of spoiling the line.
"""

from __future__ import annotations

import json.encoder
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import orjson

from ._buffer import BODY_HEAD, BODY_TAIL, LINE_OVERHEAD, SEPARATOR
from ._config import Config
from ._context import clean_path
from ._limits import LINE_BYTES, META_BYTES, META_EXCERPT, META_MARK, NAME_CHARS, cap_text
from ._redact import (
    MAX_DEPTH,
    Redactor,
    bytes_text,
    has_trigger,
    is_named_tuple,
    named_tuple_fields,
    safe_str,
)

__all__ = [
    "EMPTY_TEXT",
    "ENTRY_END",
    "ENTRY_HEAD",
    "ENTRY_LEVEL",
    "ENTRY_META",
    "ENTRY_TIMESTAMP",
    "FIELDS",
    "LineBuilder",
    "created_millis",
    "millis",
    "now_millis",
    "safe_str",
]

_log = logging.getLogger("logdna_client")


class EntryMaker(Protocol):
    """The type of ``LineBuilder.entry``."""

    def __call__(
        self,
        text: str,
        level: str,
        timestamp: int,
        meta: dict[str, Any] | None = None,
        data: bytes | None = None,
    ) -> bytes | None: ...


# JSON string escaping in C (the stdlib's json accelerator), with its pure
# Python twin where the accelerator is missing.
_escape: Callable[[str], str] = json.encoder.c_encode_basestring or json.encoder.encode_basestring  # type: ignore[attr-defined]

#: A line's wire fields, in the order every line carries them: ``encode`` writes them
#: (``LineBuilder._names`` the level, app and env), ``entry`` with the pieces below.
#: Readers of lines (the OTLP encoder, the test helpers) take the names from here.
FIELDS = ("line", "timestamp", "level", "app", "env", "meta")

#: The fast path's entry, in order: ``ENTRY_HEAD`` text ``ENTRY_TIMESTAMP`` ms, the
#: level's tail (``LineBuilder.level_tails``: level, app, env; it starts with
#: ``ENTRY_LEVEL``), then ``ENTRY_META`` meta when there is meta, then ``ENTRY_END``;
#: text and meta as JSON.
ENTRY_HEAD = SEPARATOR + b'{"line":'
ENTRY_TIMESTAMP = b',"timestamp":'
ENTRY_LEVEL = b',"level":'
ENTRY_META = b',"meta":'
ENTRY_END = b"}"

#: The line an empty message ships as (the service refuses an empty one).
EMPTY_TEXT = "(empty message)"
# The service's limits live in _limits.py; the sender enforces them (and counts cuts).
_NAME_CAP = NAME_CHARS
# Meta that makes a line bigger than this plus max_line_length is replaced by a
# short excerpt here; meta within it but over the service's limit is cut on the sender.
_MAX_META_BYTES = META_BYTES


def _log_report(kind: str, level: int, message: str, *args: object, exc_info: bool = False) -> bool:
    _log.log(level, message, *args, exc_info=exc_info)
    return True


def millis(seconds: float) -> int:
    """Epoch seconds as a line's timestamp: whole epoch milliseconds, cut toward zero.

    The one rule for every path that stamps a line (the C code's ``millis_of``
    mirrors it); ``seconds`` may be any number (a Decimal, say).
    """
    return int(seconds * 1000)


def created_millis(created: object) -> int:
    """A record's ``created`` as its line's timestamp (``millis``); now, where it is no
    usable time (NaN, infinite, a string, None, or one a line's timestamp cannot hold:
    past a 64-bit integer, which a service's JSON reader refuses, and the batch with
    it). The one rule for a LogRecord's time, on every path that ships one."""
    if type(created) is float and -1e15 < created < 1e15:  # the usual float
        return millis(created)
    if not isinstance(created, str | bytes):  # a number of any kind (a Decimal, say)
        try:
            ms = millis(created)  # type: ignore[arg-type]
            if -(2**63) <= ms < 2**63:
                return ms
        except Exception:  # NaN, infinite, None, an object
            pass
    return now_millis()


def now_millis() -> int:
    """A line's timestamp for now: ``millis(time.time())``, the clock read at each call
    (a clock patched later, by freezegun say, is the one used)."""
    return millis(time.time())


def _default(value: Any) -> Any:
    """orjson's fallback for types it does not know: lossy but never raising."""
    if isinstance(value, tuple) and is_named_tuple(value):
        return named_tuple_fields(value)  # an object, as the redaction walk sees it
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes_text(value)
    if isinstance(value, set | frozenset):
        try:
            return sorted(value, key=repr)
        except Exception:
            return [safe_str(v) for v in value]
    request = _request_text(value)
    if request is not None:
        return request
    return safe_str(value)


def _request_text(value: object) -> str | None:
    """A web request object (Django's ``django.request`` lines pass one as ``extra=``)
    as method and path: its repr carries the query string, which may hold tokens."""
    if not type(value).__name__.endswith("Request"):
        return None
    try:
        method, path = getattr(value, "method", None), getattr(value, "path", None)
        if isinstance(method, str) and isinstance(path, str):
            return f"<{type(value).__name__}: {method} {clean_path(path)}>"
    except Exception:  # a property that raises: the generic fallback copes
        pass
    return None


def _clean_str(text: str) -> str:
    # Lone surrogates (from os.fsdecode, bad JSON input) are not valid UTF-8.
    return text.encode("utf-8", "replace").decode("utf-8")


def _sanitize(value: Any, depth: int, path: set[int]) -> Any:
    """A pure-JSON copy of ``value``: cycles cut, bad values replaced one by one."""
    # Exact floats only: orjson writes int and str subclasses itself, but not float
    # ones, which go the way of any other object below (as the first try's default).
    if value is None or isinstance(value, bool) or type(value) is float:
        return value
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return _clean_str(value)
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else str(value)
    if depth >= MAX_DEPTH:  # the redaction walk's limit: both cut at the same depth
        return "<too deep>"
    if isinstance(value, Mapping | list | tuple | set | frozenset):
        if id(value) in path:
            return "<cycle>"
        path.add(id(value))
        try:
            if isinstance(value, Mapping):
                items = list(value.items())
                return {
                    _sanitize(k, depth + 1, path) if isinstance(k, str) else safe_str(k): (
                        _sanitize(v, depth + 1, path)
                    )
                    for k, v in items
                }
            seq = _default(value) if isinstance(value, set | frozenset) else value
            return [_sanitize(v, depth + 1, path) for v in seq]
        except Exception:
            return safe_str(value)
        finally:
            path.discard(id(value))
    try:
        # Let orjson handle what it knows natively (datetime, UUID, dataclass, enum ...).
        return orjson.loads(orjson.dumps(value, default=_default))
    except Exception:
        return _clean_str(safe_str(value))


class LineBuilder:
    """Turns the parts of one log line into the bytes the buffer holds.

    Built once per Client from its Config; ``entry`` is the hot path.
    """

    __slots__ = (
        "_after",
        "_app",
        "_before_send",
        "_body_limit",
        "_env",
        "_index_meta",
        "_line_limit",
        "_redactor",
        "_redacts_meta",
        "_redacts_text",
        "entry",
        "level_tails",
        "meta_json",
        "meta_safe_keys",
        "on_filtered",
        "plain_max_chars",
        "redact_triggered",
        "report",
        "secret_cache",
        "text_check",
        "total_limit",
    )

    def __init__(self, config: Config) -> None:
        redact = config.redact
        self._redactor = Redactor(
            () if isinstance(redact, bool) else redact,
            config.redact_patterns,
            defaults=redact is not False,
            max_chars=config.max_line_length,
            describe=_default,
        )
        self._redacts_meta = self._redactor.active
        self._redacts_text = self._redactor.redacts_text
        self._app = config.app
        self._env = config.env
        self._index_meta = config.index_meta
        self._before_send = config.before_send
        self._line_limit = config.max_line_length
        #: A structured body's (``encode``'s body=), as JSON: the sender cuts no body to the
        #: service's line limit, as it cuts text, so one over it is its text.
        self._body_limit = min(config.max_line_length, LINE_BYTES)
        # A line must fit a batch alone: with its costs there, and the body around it.
        alone = config.max_batch_bytes - LINE_OVERHEAD - len(BODY_HEAD) - len(BODY_TAIL)
        self.total_limit = min(alone, _MAX_META_BYTES + config.max_line_length)
        self.on_filtered: Callable[[], None] | None = None
        #: Where trouble is told, rate-limited (the Client points it at its Reporter).
        self.report: Callable[..., object] = _log_report
        #: Whether text may hold something the text patterns replace (None: no
        #: patterns). Cheap with the default patterns, which leave the fast paths open.
        self.text_check: Callable[[str], bool] | None = (
            (has_trigger if self._redactor.cheap_text else self._redactor.may_hold_secret)
            if self._redacts_text
            else None
        )
        #: For text ``text_check`` said may hold one: the redacted text.
        self.redact_triggered: Callable[[str], str] = self._redactor.text_triggered
        #: The redactor's cached answers, key -> whether it names a secret (a live dict):
        #: for the C handle's trigger test, a key answered False leaves no text pattern
        #: anything to redact after it. That holds while the key names are on, which
        #: cover the auth_header pattern's words; with them off (redact=False) the pattern
        #: may still be named, so no answer can be trusted: an empty dict.
        self.secret_cache: dict[str, bool] = self._redactor.cache if redact is not False else {}
        simple = (not self._redacts_text or self._redactor.cheap_text) and (
            self._before_send is None
        )
        #: Texts up to this many characters take ``entry``'s fast path (nothing to redact
        #: in text, no hook, meta as an object, certainly under the byte cap);
        #: -1 when nothing can.
        self.plain_max_chars = self._line_limit // 4 if simple and self._index_meta else -1
        #: Level name -> the entry's level, app and env fields, filled by ``entry``.
        self.level_tails: dict[str, bytes] = {}
        #: Meta keys the redactor has found safe (a live set), or None when meta is
        #: not redacted: the C handle's part of ``Redactor.plain_meta``.
        self.meta_safe_keys: set[str] | None = (
            self._redactor.plain_keys if self._redacts_meta else None
        )
        self.meta_json = self._make_meta_json()
        #: The one way a buffer entry is made (see ``_make_entry``).
        self.entry = self._make_entry()

    def redact_meta(self, value: dict[Any, Any]) -> Any:
        """``value`` as meta redaction leaves it (``value`` itself when unchanged)."""
        return self._redactor.meta(value) if self._redacts_meta else value

    def _make_meta_json(self) -> Callable[[dict[str, Any]], bytes]:
        """``meta_json(meta)``: meta as JSON, secrets redacted; for the fast paths.

        One ``orjson.dumps`` (a value it does not know raises TypeError before any
        of the application's code runs: callers fall back to ``encode``), and, for
        meta ``Redactor.plain_meta`` passes, that is all: no code of the
        application's ran between the two. Other meta is walked, and the walk runs
        such code (a str subclass's ``__len__``, a mapping's ``items``, a
        ``__str__``), which may change what it judged before or after judging it;
        so the bytes made of its answer are judged once more, as the JSON they are,
        where no such code runs (H210, H212: a list emptied or filled meanwhile
        shipped a password, in either order; a list subclass whose ``__iter__``
        hid its items from the walk shipped them).
        """
        dumps, loads = orjson.dumps, orjson.loads
        redactor = self._redactor
        redact, plain = redactor.meta, redactor.plain_meta
        redacts = self._redacts_meta

        def meta_json(meta: dict[str, Any]) -> bytes:
            data = dumps(meta)
            if not redacts or plain(meta):
                return data
            data = dumps(redact(meta))
            shipped = loads(data)
            judged = redact(shipped)
            return data if judged is shipped else dumps(judged)

        return meta_json

    def _make_entry(self) -> EntryMaker:
        """``entry(text, level, timestamp, meta=None, data=None)``: a buffer entry
        (separator, then the line), or None when ``before_send`` dropped the line;
        ``data`` is ``meta_json(meta)`` when the caller has it.

        The fast path, for texts of 1 to ``plain_max_chars`` characters: one
        C-level string escape, one ``orjson.dumps`` of the meta (if any) and one
        bytes format, with app and env baked into the template: no line dict
        and no extra copy. The output is the JSON ``encode`` makes. Longer
        texts, a builder with other text patterns than the default ones, with
        ``before_send`` or string meta (``index_meta=False``), and anything
        unusual (text that is not valid UTF-8, meta orjson cannot encode, an
        oversize line) take ``encode``.
        """
        # The ENTRY_* pieces as one template, the level's tail (level, app, env) filled in.
        head = ENTRY_HEAD + b"%b" + ENTRY_TIMESTAMP + b"%d%b"
        template = head + ENTRY_END
        template_meta = head + ENTRY_META + b"%b" + ENTRY_END
        levels = self.level_tails
        names = self._names
        encode = self.encode
        dumps = orjson.dumps
        meta_json = self.meta_json
        limit = self.total_limit
        check = self.text_check
        redact_text = self._redactor.text_triggered
        max_chars = self.plain_max_chars

        def entry(
            text: str,
            level: str,
            timestamp: int,
            meta: dict[str, Any] | None = None,
            data: bytes | None = None,
        ) -> bytes | None:
            if 0 < len(text) <= max_chars:
                if check is not None and check(text):
                    text = redact_text(text)
                # (Markers can make redacted text longer: encode() caps it then.)
                if len(text) <= max_chars:
                    try:
                        tail = levels.get(level)
                        if tail is None:
                            # The fields as encode() writes them, without the braces.
                            tail = b"," + dumps(names(level, None, None))[1:-1]
                            # Level names are few; a flood of odd ones is not cached.
                            if len(levels) < 64:
                                levels[level] = tail
                        if meta is None:
                            return template % (_escape(text).encode(), timestamp, tail)
                        made = template_meta % (
                            _escape(text).encode(),
                            timestamp,
                            tail,
                            meta_json(meta) if data is None else data,
                        )
                        if len(made) <= limit:
                            return made
                    except (UnicodeEncodeError, TypeError):
                        pass  # surrogates, odd meta: encode() repairs them
            line = encode(text, level, timestamp, meta)
            return SEPARATOR + line if line is not None else None

        return entry

    def structured_entry(
        self, body: Any, text: str, level: str, timestamp: int, meta: dict[str, Any] | None
    ) -> bytes | None:
        """``entry`` for a message that is a dict or a list (protocol="otlp"): ``body``
        as the line's ``line`` (see ``encode``), ``text`` its text past the cap."""
        line = self.encode(text, level, timestamp, meta, body=body)
        return None if line is None else SEPARATOR + line

    def encode(
        self,
        text: str,
        level: str,
        timestamp: int,
        meta: dict[str, Any] | None = None,
        app: str | None = None,
        env: str | None = None,
        *,
        count_filtered: bool = True,
        body: Any = None,
    ) -> bytes | None:
        """The serialized line, or None when ``before_send`` dropped it (counted as
        ``filtered`` unless ``count_filtered`` is False: the library's own lines).

        ``body``: a structured message (a dict or a list, protocol="otlp" only) that is
        the line's ``line`` in place of ``text``, redacted as meta is; the OTLP encoder
        sends it as the record's structured body. Its JSON over the text's cap
        (``max_line_length``): ``text``, cut to it, as before."""
        limit = self._line_limit
        if self._redacts_text:
            # The patterns only ever see bounded input: the redactor cuts a text
            # over the cap to it and a margin (a secret the cap cuts, such as a URL
            # whose "@" is past it, is still found whole), then it is capped (its
            # whole size kept for the marker; a marker can be longer than what it
            # replaces).
            size = None
            if len(text) > limit:  # more characters than the cap has bytes
                size = len(text.encode("utf-8", "replace"))
            text = self._redactor.text(text)
            if size is not None or len(text) * 4 > limit:
                text = cap_text(text, limit, size)
        elif len(text) * 4 > limit:
            text = cap_text(text, limit)
        line_text = text or EMPTY_TEXT
        line: dict[str, Any] = {
            "line": line_text,
            "timestamp": timestamp,
            **self._names(level, app, env),
        }
        if meta:
            if self._redacts_meta:
                meta = self._redactor.meta(meta)
            line["meta"] = meta
        structured = False
        if body is not None and _may_fit(body, self._body_limit):
            body = self._redactor.meta(body) if self._redacts_meta else body
            if len(self._dumps(body)) <= self._body_limit:  # the text's cap, as JSON
                line["line"] = body
                structured = True
        if self._before_send is not None:
            changed = self._run_before_send(line, count_filtered, line_text if structured else None)
            if changed is None:
                return None
            line = changed
        if not self._index_meta and "meta" in line:
            line["meta"] = self._dumps(line["meta"]).decode("utf-8")
        data = self._dumps(line)
        if len(data) > self.total_limit:
            data = self._shrink(line, len(data))
        return data

    def _names(self, level: str, app: str | None, env: str | None) -> dict[str, str]:
        """A line's ``level``, ``app`` and ``env`` fields, in the order lines carry them:
        the builder's app and env where none is given, none where empty, each cut to
        ``NAME_CHARS`` (the one rule for them: ``entry``'s level tails are these as JSON)."""
        names = {"level": level[:_NAME_CAP]}
        app = app or self._app
        if app:
            names["app"] = app[:_NAME_CAP]
        env = env or self._env
        if env:
            names["env"] = env[:_NAME_CAP]
        return names

    def _dumps(self, value: Any) -> bytes:
        try:
            return orjson.dumps(value, default=_default)
        except TypeError:
            pass
        try:
            return orjson.dumps(value, default=_default, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:
            # Cycles, >64-bit ints, surrogates, or a default() that failed.
            return orjson.dumps(_sanitize(value, 0, set()))

    def _shrink(self, line: dict[str, Any], size: int) -> bytes:
        """Keep an oversize line under the cap by replacing its meta with an excerpt."""
        line = dict(line)
        meta = line.pop("meta", None)
        if meta is not None:
            excerpt = meta if isinstance(meta, str) else self._dumps(meta).decode("utf-8")
            line["meta"] = {
                META_MARK: f"meta of a {size}-byte line cut to an excerpt",
                "excerpt": excerpt[:META_EXCERPT],
            }
            if not self._index_meta:
                line["meta"] = self._dumps(line["meta"]).decode("utf-8")
        text = line.get("line", EMPTY_TEXT)
        if not isinstance(text, str):  # a structured body (``encode``'s or a hook's)
            data = self._dumps(line)
            if len(data) <= self.total_limit:  # the meta's excerpt was enough: it stays one
                return data
            text = self._dumps(text).decode("utf-8")  # else as JSON text, cut
        line["line"] = cap_text(text, self._line_limit)
        return self._dumps(line)

    def _run_before_send(
        self, line: dict[str, Any], count: bool = True, text: str | None = None
    ) -> dict[str, Any] | None:
        """``line`` as the hook returns it, or as redaction left it if the hook fails.
        ``text``: the text of a line whose ``line`` is a structured body, for a hook
        written for text lines (``re.sub(.., line["line"])``) that fails on the body."""
        # The line as redaction left it, to ship if the hook fails: the hook gets the
        # dict itself (it may change it in place), and one that fails half-way must not
        # ship its half-done changes (a header it added, unredacted, say).
        pristine = self._dumps(line)
        try:
            result = self._before_send(line)  # type: ignore[misc]
        except Exception:
            if text is not None:
                # It gets the text, as before bodies were structured: a scrubbing hook
                # must not leave the line unscrubbed for a dict it was not written for.
                line = _restored(pristine)
                line["line"] = text
                return self._run_before_send(line, count)
            self.report(
                "before-send", logging.WARNING,
                "logdna_client: before_send raised; lines are sent without it", exc_info=True,
            )  # fmt: skip
            return _restored(pristine)
        if result is None:
            if count and self.on_filtered is not None:
                self.on_filtered()
            return None
        wrong = _not_a_line(result)
        if wrong is not None:
            self.report(
                "before-send", logging.WARNING,
                "logdna_client: before_send returned %s, not a line dict; lines are sent as is",
                wrong,
            )  # fmt: skip
            return _restored(pristine)
        return result


def _not_a_line(result: object) -> str | None:
    """What a ``before_send`` result is, when it is no line the service takes (the
    report's words); None when it is one: a dict whose ``line`` is text that is not
    empty, or a structured body (protocol="otlp"). Shipped as it is, the service refuses
    it (400: 'no "line" field with non-empty text'), the line then lost. Its other
    fields are the hook's to set: odd ones are made right where they are sent (an
    ``app`` that is a list, a ``timestamp`` out of range)."""
    if not isinstance(result, dict):
        return type(result).__name__
    text = result.get("line")
    if not (type(text) is str and text) and type(text) not in _EMPTY_BODIES:
        return f"a dict whose line is {'empty' if text == '' else type(text).__name__}"
    return None


def _may_fit(body: Any, limit: int) -> bool:
    """Whether a structured body may be within ``limit`` bytes as JSON: not one of more
    items than that at 2 bytes each (``0,``), which then costs no redaction and no
    serialization on the logging call only to be found too long."""
    try:
        return 2 * len(body) < limit
    except Exception:  # a Mapping of the application's whose __len__ fails: its text
        return False


#: The types of an empty line a hook may return: a structured body (protocol="otlp").
_EMPTY_BODIES = (dict, list)


def _restored(serialized: bytes) -> dict[str, Any]:
    """A line back from its serialized form (which serializes to the same bytes)."""
    line: dict[str, Any] = orjson.loads(serialized)
    return line
