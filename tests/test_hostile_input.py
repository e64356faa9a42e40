"""Bad input never hurts (issue 5): hostile text, meta and objects; a hardened devserver."""

# House style asserts `expected == actual`; ruff's SIM300 calls that a Yoda condition.

from __future__ import annotations

import datetime as dt
import io
import logging
import math
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import orjson
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logdna_client import Client, LogDNAHandler
from logdna_client._devserver import DevServer
from tests.helpers import make_logger

# Every test here runs on each way handle can run (the C extension, the Python code).
pytestmark = pytest.mark.usefixtures("handle_path")

UNREACHABLE = "https://127.0.0.1:9/logs/ingest"
LINE_LIMIT = 1000
# The builder keeps a whole line under max_line_length plus a bounded meta excerpt.
WHOLE_LINE_LIMIT = 256 * 1024 + LINE_LIMIT
TIMEOUT = 5.0
HYPOTHESIS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large],
)  # fmt: skip


# -- hostile values ------------------------------------------------------------


class RaisingStr:
    """Both __str__ and __repr__ raise."""

    def __str__(self) -> str:
        raise RuntimeError("no str for you")

    def __repr__(self) -> str:
        raise RuntimeError("no repr either")


class RaisingBase:
    """Its __str__ raises something that is not an Exception subclass of the usual kind."""

    def __str__(self) -> str:
        raise ValueError("\udcff bad")

    __repr__ = __str__


class WeirdStr:
    """__str__ returns a str subclass with a broken __str__ of its own."""

    class Sub(str):
        def __str__(self) -> str:
            raise RuntimeError("sub")

    def __str__(self) -> str:
        return self.Sub("weird")


class NotAString:
    """__str__ returns something that is not a string at all."""

    def __str__(self) -> Any:
        return 42  # noqa: PLE0307 - that is the point


class Slow:
    """A value whose __str__ is slow: the library must call it a bounded number of times."""

    calls = 0

    def __str__(self) -> str:
        Slow.calls += 1
        deadline = time.perf_counter() + 0.01
        while time.perf_counter() < deadline:
            pass
        return "slow value"

    __repr__ = __str__


class RaisingMapping(dict):  # type: ignore[type-arg]
    """A dict whose items() raises."""

    def items(self) -> Any:
        raise RuntimeError("no items")

    def __iter__(self) -> Any:
        raise RuntimeError("no iter")


HOSTILE_OBJECTS = [RaisingStr(), RaisingBase(), WeirdStr(), NotAString(), object(),
                   RaisingMapping(a=1), Decimal("NaN"), uuid.UUID(int=5), dt.datetime.now(),
                   dt.date(2024, 1, 2), complex(1, 2), range(3), type, len]  # fmt: skip


class Token:
    """Stands in for a hostile object while hypothesis holds it (hypothesis reprs its values)."""

    def __init__(self, index: int) -> None:
        self.index = index

    def __repr__(self) -> str:
        return f"HOSTILE_OBJECTS[{self.index}]"


def arm(value: Any) -> Any:
    """Replace every Token in ``value`` with the hostile object it stands for."""
    if isinstance(value, Token):
        return HOSTILE_OBJECTS[value.index]
    if isinstance(value, dict):
        return {k: arm(v) for k, v in value.items()}
    if isinstance(value, list):
        return [arm(v) for v in value]
    if isinstance(value, tuple):
        return tuple(arm(v) for v in value)
    return value


hostile = st.integers(0, len(HOSTILE_OBJECTS) - 1).map(Token)
any_char = st.characters(codec=None, categories=None)  # surrogates, NULs, controls included
texts = st.one_of(
    st.text(any_char, max_size=200),
    st.builds(lambda c, n: c * n, any_char, st.integers(0, 200_000)),  # huge
    st.sampled_from(["", "\x00", "\ud800", "\udfff\ud800", "%s %d %(x)s", "\u2028", "é" * 5000]),
)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=2**64, max_value=2**200),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([math.nan, math.inf]),
    texts, st.binary(max_size=100), hostile,
)  # fmt: skip
keys = st.one_of(st.text(any_char, max_size=20), st.integers(), st.sampled_from(
    [None, b"password", ("t", 1), 1.5, "password", "Authorization"]))  # fmt: skip
metas = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.tuples(children, children),
        st.frozensets(st.integers(), max_size=3),
        st.dictionaries(keys, children, max_size=5),
    ),
    max_leaves=30,
)


def with_cycles(meta: Any, seen: set[int] | None = None) -> Any:
    """Make every plain dict and list in ``meta`` also contain itself."""
    seen = set() if seen is None else seen
    if id(meta) in seen or type(meta) not in (dict, list):
        return meta
    seen.add(id(meta))
    for value in list(meta.values() if type(meta) is dict else meta):
        with_cycles(value, seen)
    if type(meta) is dict:
        meta["self"] = meta
    else:
        meta.append(meta)
    return meta


def nested(depth: int) -> dict[str, Any]:
    root: dict[str, Any] = {}
    node = root
    for _ in range(depth):
        node["a"] = {"password": "deep-secret"}
        node = node["a"]
    return root


# -- helpers -------------------------------------------------------------------


class StrictHandler(LogDNAHandler):
    """Records handleError calls instead of printing: any of them is a failure."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.errors: list[BaseException | None] = []

    def handleError(self, record: logging.LogRecord) -> None:
        self.errors.append(sys.exc_info()[1])


@pytest.fixture
def client() -> Iterator[Client]:
    """An offline client (never sends): its buffer is inspected directly."""
    c = Client(key="k", url=UNREACHABLE, hostname="t", flush_interval=3600,
               max_line_length=LINE_LIMIT)  # fmt: skip
    yield c
    c.close(timeout=0)


@pytest.fixture
def handler(client: Client) -> Iterator[StrictHandler]:
    h = StrictHandler(client=client)
    yield h
    h.close()


def take_new(client: Client, before: int) -> list[bytes]:
    return client._buffer.snapshot()[before:]


def check_line(data: bytes) -> dict[str, Any]:
    """A buffered line is valid JSON within the caps, with non-empty text."""
    assert len(data) <= WHOLE_LINE_LIMIT
    line = orjson.loads(data)
    assert isinstance(line["line"], str) and line["line"]
    assert len(line["line"].encode("utf-8")) <= LINE_LIMIT
    assert isinstance(line["timestamp"], int)
    return line  # type: ignore[no-any-return]


def around(client: Client, action: Any) -> dict[str, Any]:
    """Log a known line, run ``action`` (one line), log another: all three intact."""
    before = len(client._buffer)
    client.log("before", meta={"n": 1})
    action()
    client.log("after", meta={"n": 2})
    new = take_new(client, before)
    assert 3 == len(new)
    first, middle, last = (check_line(data) for data in new)
    assert ("before", {"n": 1}) == (first["line"], first["meta"])
    assert ("after", {"n": 2}) == (last["line"], last["meta"])
    return middle


# -- Client.log ----------------------------------------------------------------


class TestClientLog:
    @HYPOTHESIS
    @given(text=texts, meta=st.dictionaries(keys, metas, max_size=6), cycles=st.booleans())
    def test_arbitrary_text_and_meta(
        self, client: Client, text: str, meta: dict[Any, Any], cycles: bool
    ) -> None:
        """Any text and meta: log() returns True, the line is valid JSON within the caps."""
        meta = arm(meta)
        if cycles:
            with_cycles(meta)
        results: list[bool] = []
        around(client, lambda: results.append(client.log(text, meta=meta)))
        assert [True] == results

    @HYPOTHESIS
    @given(token=hostile, level=st.one_of(texts, st.integers(min_value=0)))
    def test_hostile_objects_as_text_level_and_meta(
        self, client: Client, token: Token, level: Any
    ) -> None:
        """An object whose str/repr raises is accepted as text and as meta value."""
        value = arm(token)
        around(client, lambda: client.log(value, meta={"v": value, "l": [value]}))
        around(client, lambda: client.log("x", level=level))

    def test_deep_nesting_is_cut_and_secrets_stay_redacted(self, client: Client) -> None:
        """Meta nested 1000 levels deep ships, cut to a marker, with no secret in it."""
        middle = around(client, lambda: client.log("deep", meta={"tree": nested(1000)}))

        assert "deep" == middle["line"]
        assert b"deep-secret" not in orjson.dumps(middle)
        assert "<too deep>" in orjson.dumps(middle).decode()

    def test_moderately_deep_meta_is_redacted_at_every_level(self, client: Client) -> None:
        """Meta 200 levels deep (orjson could serialize it as is) has no secret left."""
        middle = around(client, lambda: client.log("deep", meta=nested(200)))

        assert b"deep-secret" not in orjson.dumps(middle)

    def test_huge_dict_is_cut_to_an_excerpt(self, client: Client) -> None:
        """A meta of 100,000 keys ships as a short excerpt, the line within the caps."""
        huge = {f"k{i}": "v" * 20 for i in range(100_000)}
        middle = around(client, lambda: client.log("huge", meta=huge))

        assert "huge" == middle["line"]
        assert "logdna_client_truncated" in middle["meta"]

    def test_huge_text_is_capped_by_bytes(self, client: Client) -> None:
        """Ten million multi-byte characters are capped to max_line_length bytes."""
        middle = around(client, lambda: client.log("é" * 10_000_000))

        assert "truncated" in middle["line"]

    def test_nan_and_infinity_do_not_spoil_the_line(self, client: Client) -> None:
        """NaN and infinities in meta still give valid JSON (as null)."""
        middle = around(client, lambda: client.log("n", meta={"a": math.nan, "b": -math.inf}))

        assert {"a": None, "b": None} == middle["meta"]

    def test_slow_str_is_called_a_bounded_number_of_times(self, client: Client) -> None:
        """A slow __str__ is not called again and again (once for text, once per use)."""
        Slow.calls = 0
        value = Slow()
        started = time.perf_counter()
        around(client, lambda: client.log(value, meta={"a": value, "b": [value]}))

        assert Slow.calls <= 4
        assert time.perf_counter() - started < 2.0

    def test_huge_app_env_and_level_are_capped(self, client: Client) -> None:
        """app=, env= and level= of a megabyte each still give a line within the caps."""
        big = "A" * 1_000_000
        before = len(client._buffer)

        client.log("x", app=big, env=big, level=big)

        (data,) = take_new(client, before)
        assert len(data) <= WHOLE_LINE_LIMIT

    def test_redacted_text_stays_within_the_line_cap(self) -> None:
        """Text full of short matches, redacted, is still within max_line_length bytes."""
        c = Client(key="k", url=UNREACHABLE, flush_interval=3600, max_line_length=64,
                   redact_patterns=["email"])  # fmt: skip
        try:
            c.log("a@b.co " * 9)
            line = orjson.loads(c._buffer.snapshot()[-1])
        finally:
            c.close(timeout=0)

        assert len(line["line"].encode()) <= 64


# -- the stdlib handler ----------------------------------------------------------


class TestHandler:
    @HYPOTHESIS
    @given(
        msg=texts,
        args=st.lists(scalars, max_size=3),
        extra=st.dictionaries(st.text(max_size=10).map(lambda k: "x_" + k), metas, max_size=5),
        cycles=st.booleans(),
    )
    def test_arbitrary_messages_args_and_extra(
        self, client: Client, handler: StrictHandler, msg: str, args: list[Any],
        extra: dict[str, Any], cycles: bool,
    ) -> None:  # fmt: skip
        """Any message, args (matching or not) and extra=: one good line, nothing raised."""
        args, extra = arm(args), arm(extra)
        if cycles:
            with_cycles(extra)
        log = make_logger("test_hostile.handler", handler)
        around(client, lambda: log.warning(msg, *args, extra=extra))
        assert [] == handler.errors

    @pytest.mark.parametrize("value", HOSTILE_OBJECTS, ids=lambda v: type(v).__name__)
    def test_hostile_objects_as_message_args_and_extra(
        self, client: Client, handler: StrictHandler, value: object
    ) -> None:
        """A hostile object as the message, as an argument and in extra= ships one line."""
        log = make_logger("test_hostile.objects", handler)
        around(client, lambda: log.info(value))
        around(client, lambda: log.info("value %s %r %d", value, value, value))
        around(client, lambda: log.info("extra", extra={"x_value": value, "x_l": [value]}))
        assert [] == handler.errors

    def test_exception_with_hostile_message(self, client: Client, handler: StrictHandler) -> None:
        """log.exception() with an exception whose str raises still ships a line."""

        class Nasty(Exception):
            def __str__(self) -> str:
                raise RuntimeError("nope")

        log = make_logger("test_hostile.exc", handler)

        def action() -> None:
            try:
                raise Nasty
            except Nasty:
                log.exception("failed \x00 \ud800")

        middle = around(client, action)

        assert "Nasty" in middle["line"]
        assert [] == handler.errors

    def test_deep_extra_through_the_handler(self, client: Client, handler: StrictHandler) -> None:
        """extra= nested 1000 levels deep ships a line without secrets."""
        log = make_logger("test_hostile.deep", handler)
        middle = around(client, lambda: log.info("deep", extra={"x_tree": nested(1000)}))

        assert b"deep-secret" not in orjson.dumps(middle)
        assert [] == handler.errors

    def test_record_is_not_mutated(self, client: Client, handler: StrictHandler) -> None:
        """The handler leaves the LogRecord as it got it (other handlers share it)."""
        seen: list[dict[str, Any]] = []

        class Spy(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                seen.append(dict(record.__dict__))

        log = make_logger("test_hostile.mutation", handler)
        spy = Spy()
        log.addHandler(spy)
        secret = {"password": "p", "nested": [{"token": "t"}]}
        try:
            raise ValueError("x")
        except ValueError:
            log.exception("m %s", "a", extra={"x_secret": secret})

        assert {"password": "p", "nested": [{"token": "t"}]} == seen[0]["x_secret"]
        assert seen[0]["exc_text"] is None
        assert "m %s" == seen[0]["msg"]


# -- the structlog processor -----------------------------------------------------


class TestProcessor:
    @HYPOTHESIS
    @given(
        event=st.one_of(texts, scalars),
        extra=st.dictionaries(st.text(max_size=10), metas, max_size=5),
        method=st.sampled_from(["info", "error", "exception", "msg", "bogus"]),
    )
    def test_arbitrary_event_dicts(
        self, client: Client, event: Any, extra: dict[str, Any], method: str
    ) -> None:
        """Any event dict: the processor returns it unchanged and ships one valid line."""
        module = pytest.importorskip("logdna_client.structlog")
        processor = module.LogDNAProcessor(client=client)
        event_dict = {**arm(extra), "event": arm(event)}
        keys_before = list(event_dict)
        result: list[Any] = []

        around(client, lambda: result.append(processor(None, method, event_dict)))

        assert result[0] is event_dict
        assert keys_before == list(event_dict)


# -- the devserver ---------------------------------------------------------------


def raw_exchange(port: int, data: bytes, *, half_close: bool = True) -> bytes:
    """Send raw bytes (then EOF), read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def still_up(server: DevServer) -> bool:
    response = requests.post(
        server.url, params={"hostname": "h"}, data=b'{"lines":[{"line":"alive"}]}',
        timeout=TIMEOUT,
    )  # fmt: skip
    return response.status_code == 200


def post(server: DevServer, body: bytes) -> requests.Response:
    return requests.post(server.url, params={"hostname": "h"}, data=body, timeout=TIMEOUT)


@pytest.fixture
def tailing() -> Iterator[tuple[DevServer, io.StringIO]]:
    """A devserver tailing to a stream, with a short socket timeout."""
    out = io.StringIO()
    with DevServer(out=out, timeout=0.5) as srv:
        yield srv, out


class TestDevServer:
    def test_binds_loopback_by_default(self) -> None:
        """DevServer() and the devserver command listen on 127.0.0.1 unless told otherwise."""
        from logdna_client._cli import build_parser

        with DevServer() as srv:
            assert "127.0.0.1" == srv.host
            assert srv.url.startswith("http://127.0.0.1:")
            with pytest.raises(OSError):
                # Not reachable on another local address of this machine (when it has one).
                other = socket.gethostbyname(socket.gethostname())
                if other.startswith("127."):
                    raise OSError("no non-loopback address to try")
                socket.create_connection((other, srv.port), timeout=1).close()
        assert "127.0.0.1" == build_parser().parse_args(["devserver"]).host

    @pytest.mark.parametrize(
        "request_bytes",
        [
            b"\x00\x01\x02\xff\r\n\r\n",
            b"GET / HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(200)) + b"\r\n",
            b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n",
            b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n",
            b"POST /logs/ingest?hostname=h HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"POST /logs/ingest?hostname=h HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"POST /logs/ingest?hostname=h HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
            b"POST /logs/ingest?hostname=h HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n",
            b"POST /logs/ingest?hostname=h HTTP/1.1\r\nContent-Encoding: gzip\r\n"
            b"Content-Length: 4\r\n\r\nnope",
        ],
        ids=[
            "binary",
            "many-headers",
            "long-header",
            "long-uri",
            "bad-chunk",
            "bad-te",
            "negative-length",
            "huge-length",
            "bad-gzip",
        ],
    )
    def test_malformed_http_gets_4xx_or_5xx_and_server_survives(
        self, tailing: tuple[DevServer, io.StringIO], request_bytes: bytes
    ) -> None:
        """Malformed requests get a clear error answer; the server keeps serving."""
        server, _ = tailing
        response = raw_exchange(server.port, request_bytes)

        status = int(response.split(b" ", 2)[1])
        assert 400 <= status < 502 and status != 500
        assert still_up(server)

    @pytest.mark.parametrize(
        "body",
        [
            b"[" * 100_000,
            b'{"lines":[{"line":"\\ud800 x"}]}',
            b'{"lines":[{"line":"\xff\xfe x"}]}',
            b'{"lines":[{"line":"x","meta":' + b"1" * 10_000 + b"}]}",
            b'{"lines":' + b"[" * 2000 + b"]" * 2000 + b"}",
            b"\x1f\x8b garbage",
        ],
        ids=["deep-array", "lone-surrogate", "bad-utf8", "huge-number", "deep-lines", "binary"],
    )
    def test_bad_json_is_400_and_server_survives(
        self, tailing: tuple[DevServer, io.StringIO], body: bytes
    ) -> None:
        """JSON that is invalid, too deep or not UTF-8 gets 400."""
        server, _ = tailing

        assert 400 == post(server, body).status_code
        assert still_up(server)

    @pytest.mark.parametrize("json_output", [False, True])
    def test_meta_too_deep_to_show_is_not_a_500(self, json_output: bool) -> None:
        """A line whose meta is 300 levels deep is answered 4xx or stored, never 500."""
        body = b'{"lines":[{"line":"d","meta":' + b'{"a":' * 300 + b"1" + b"}" * 301 + b"]}"
        with DevServer(out=io.StringIO(), json_output=json_output) as server:
            assert 500 != post(server, body).status_code

    def test_lines_with_odd_values_are_tailed_safely(
        self, tailing: tuple[DevServer, io.StringIO]
    ) -> None:
        """Odd but valid lines (huge numbers, nulls, escapes, odd types) are tailed."""
        server, out = tailing
        lines = [
            {"line": "\x1b[31mred\x1b[0m \u202e", "timestamp": 1e300, "level": {"x": 1}},
            {"line": "x", "timestamp": -1, "app": ["a"], "meta": "not json {"},
            {"line": "y", "timestamp": "soon", "meta": [1, None, {"a": "b"}], "level": None},
            {"line": "z" * 100_000, "meta": {"k": "v" * 100_000}},
        ]

        huge_int = b'{"lines":[{"line":"big","timestamp":' + b"9" * 400 + b"}]}"

        assert 200 == post(server, orjson.dumps({"lines": lines})).status_code
        assert post(server, huge_int).status_code in (200, 400)
        assert server.wait_for_lines(4, TIMEOUT)
        assert "\x1b" not in out.getvalue()
        assert still_up(server)

    def test_slow_headers_are_timed_out(self) -> None:
        """A client that stalls in the middle of its headers is disconnected."""
        with (
            DevServer(timeout=0.2) as srv,
            socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT) as sock,
        ):
            sock.sendall(b"POST /logs/ingest?hostname=h HTTP/1.1\r\nHost: x\r\nX-Slow")
            started = time.monotonic()

            assert b"" == sock.recv(65536)
            assert time.monotonic() - started < 3
            assert still_up(srv)

    def test_many_stalled_clients_do_not_block_others(self) -> None:
        """Twenty stalled connections do not stop a well-behaved client from being served."""
        with DevServer(timeout=5) as srv:
            stalled = [socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT)
                       for _ in range(20)]  # fmt: skip
            try:
                for sock in stalled:
                    sock.sendall(b"POST /logs/ingest?hostname=h HTTP/1.1\r\nContent-Length: 9")
                assert still_up(srv)
            finally:
                for sock in stalled:
                    sock.close()

    @settings(max_examples=40, deadline=None)
    @given(data=st.binary(max_size=2000))
    def test_random_bytes_never_crash_it(self, data: bytes) -> None:
        """Any bytes on the socket: an answer or a closed connection, and the server lives."""
        with DevServer(timeout=0.3) as srv:
            thread_errors: list[BaseException] = []
            hook = threading.excepthook
            threading.excepthook = lambda args: thread_errors.append(args.exc_value)  # type: ignore[arg-type]
            try:
                response = raw_exchange(srv.port, data)
                assert still_up(srv)
            finally:
                threading.excepthook = hook
            if response:
                assert response.startswith(b"HTTP/1.1 ")
                assert b" 500 " not in response.split(b"\r\n", 1)[0]
            assert [] == thread_errors
