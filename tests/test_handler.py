"""Tests for LogDNAHandler against a real local server: what a record becomes on the wire."""

from __future__ import annotations

import functools
import json
import logging
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logdna_client import Client, ConfigurationError, LogDNAHandler
from logdna_client._devserver import DevServer
from logdna_client._record import NOT_EXTRAS
from tests._helpers_integrations import _only_handler
from tests.helpers import in_a_collection, make_logger, on_a_sender_thread, run_with_forced_switches

# Every test here runs on each way handle can run (the C extension, the Python code).
pytestmark = pytest.mark.usefixtures("handle_path")


def handler_for(server: DevServer, **options: Any) -> LogDNAHandler:
    options.setdefault("hostname", "test-host")
    return LogDNAHandler(url=server.url, **options)


def delivered(server: DevServer, handler: LogDNAHandler, n: int) -> list[dict[str, Any]]:
    assert handler.client.flush(10)
    assert server.wait_for_lines(n, 10)
    return server.lines


class TestRecordToLine:
    def test_message_level_timestamp_app_env(self, server: DevServer) -> None:
        """Line is the formatted message, level the level name, timestamp record.created in ms."""
        h = handler_for(server, app="api", env="prod")
        log = make_logger("t.basic", h)
        log.warning("user %s logged in", 42)
        (line,) = delivered(server, h, 1)
        assert "user 42 logged in" == line["line"]
        assert "WARNING" == line["level"]
        assert ("api", "prod") == (line["app"], line["env"])
        assert {"name": "t.basic"} == line["meta"]  # record_meta's default: the logger
        assert isinstance(line["timestamp"], int)
        h.close()

    def test_timestamp_comes_from_the_record(self, server: DevServer) -> None:
        """The timestamp is when the record was made, not when it was sent."""
        h = handler_for(server)
        record = logging.LogRecord("t.ts", logging.INFO, __file__, 1, "old", None, None)
        record.created = 1_600_000_000.123456
        h.handle(record)
        (line,) = delivered(server, h, 1)
        assert 1_600_000_000_123 == line["timestamp"]
        h.close()

    def test_extra_becomes_meta_and_record_is_untouched(self, server: DevServer) -> None:
        """Every extra= attribute becomes meta; the record keeps all its attributes."""
        h = handler_for(server)
        seen: list[logging.LogRecord] = []
        spy = logging.Handler()
        spy.emit = seen.append  # type: ignore[method-assign]
        log = make_logger("t.extra", h)
        log.addHandler(spy)
        log.info("order placed", extra={"order_id": 7, "items": [1, 2], "request": object()})
        (line,) = delivered(server, h, 1)
        assert 7 == line["meta"]["order_id"]
        assert [1, 2] == line["meta"]["items"]
        assert line["meta"]["request"].startswith("<object object")
        assert 7 == seen[0].order_id  # type: ignore[attr-defined]
        assert seen[0].exc_text is None
        h.close()

    def test_exception_and_stack_ship_as_text(self, server: DevServer) -> None:
        """log.exception ships the traceback in the line; stack_info too."""
        h = handler_for(server)
        log = make_logger("t.exc", h)
        try:
            raise ValueError("bad value 99")
        except ValueError:
            log.exception("it failed")
        log.info("here", stack_info=True)
        exc_line, stack_line = delivered(server, h, 2)
        assert exc_line["line"].startswith("it failed\nTraceback")
        assert "ValueError: bad value 99" in exc_line["line"]
        assert "ERROR" == exc_line["level"]
        assert "Stack (most recent call last)" in stack_line["line"]
        h.close()

    def test_formatter_is_used_when_set(self, server: DevServer) -> None:
        """A formatter set on the handler shapes the line text."""
        h = handler_for(server)
        h.setFormatter(logging.Formatter("[%(name)s] %(message)s"))
        make_logger("t.fmt", h).info("hello")
        (line,) = delivered(server, h, 1)
        assert "[t.fmt] hello" == line["line"]
        h.close()

    def test_basicconfig_does_not_impose_its_format(self, server: DevServer) -> None:
        """logging.basicConfig(handlers=[...]) leaves the line as the plain message."""
        h = handler_for(server)
        logging.basicConfig(handlers=[h], level=logging.INFO, force=True)
        logging.getLogger("t.basic_config").info("plain %s", "message")
        (line,) = delivered(server, h, 1)
        assert "plain message" == line["line"]
        logging.getLogger().removeHandler(h)
        h.close()

    def test_request_context_becomes_meta(self, server: DevServer) -> None:
        """Fields bound as request context ride along as meta, under any extra= fields."""
        from logdna_client._context import bind_request_context, reset_request_context

        h = handler_for(server)
        log = make_logger("t.ctx", h)
        token = bind_request_context(request_id="r-1", http_method="GET")
        try:
            log.info("in request", extra={"http_method": "POST"})
        finally:
            reset_request_context(token)
        log.info("outside")
        inside, outside = delivered(server, h, 2)
        assert {"request_id": "r-1", "http_method": "POST", "name": "t.ctx"} == inside["meta"]
        assert {"name": "t.ctx"} == outside["meta"]
        h.close()

    def test_filters_apply(self, server: DevServer) -> None:
        """Handler filters still decide which records ship."""
        h = handler_for(server)
        h.addFilter(lambda r: "secret" not in r.getMessage())
        log = make_logger("t.filter", h)
        log.info("public")
        log.info("secret stuff")
        log.info("public again")
        lines = delivered(server, h, 2)
        assert ["public", "public again"] == [x["line"] for x in lines]
        h.close()


class TestNeverHurtsTheApp:
    def test_a_formatter_that_returns_no_text_still_ships_text(self, server: DevServer) -> None:
        """An app's Formatter returning a dict, bytes, None or a number ships its text: the
        service accepts every line (H191: a dict went out as JSON in "line" and got a 400,
        lost as rejected; bytes and None were lost as errors)."""
        results: list[object] = [{"a": 1}, b"raw \xff bytes", None, 42]

        class OddFormatter(logging.Formatter):
            def format(self, record: logging.LogRecord) -> str:
                return results[int(record.getMessage())]  # type: ignore[return-value]

        h = handler_for(server)
        h.setFormatter(OddFormatter())
        log = make_logger("t.odd_format", h)
        for i in range(len(results)):
            log.info("%d", i)
        lines = delivered(server, h, len(results))
        assert ["{'a': 1}", "raw \\xff bytes", "None", "42"] == [x["line"] for x in lines]
        assert not any(h.client.stats()["dropped"].values())
        h.close()

    def test_format_error_still_ships_a_line(self, server: DevServer) -> None:
        """A record whose message cannot be formatted ships a best-effort line, no exception."""
        h = handler_for(server)
        log = make_logger("t.bad", h)
        log.info("%d items", "not a number")
        log.info("after")
        bad, after = delivered(server, h, 2)
        assert bad["line"].startswith("%d items [logdna_client: message could not be formatted")
        assert "after" == after["line"]
        h.close()

    @pytest.mark.parametrize(
        ("message", "args", "shape"),
        [
            ("login user={} password={}", ("bob", "hunter2"), "args: 2 (str, str)"),  # {}-style
            ("login user=%s pw=%s", ("bob", "hunter2", 3), "args: 3 (str, str, int)"),  # too many
            ("retry %d for user=%s pw=%s", ("3", "bob", "hunter2"), "args: 3 (str, str, str)"),
            ("login %(user)s %(pw)s", ({"user": "bob", "password": "hunter2"},), "args: a dict"),
        ],
    )
    def test_format_error_note_holds_no_argument_values(
        self, server: DevServer, message: str, args: tuple[Any, ...], shape: str
    ) -> None:
        """The note of a message that cannot be formatted names the error and the
        arguments' types, not their values: a password passed by position has no key
        that redaction could judge (``args=('bob', 'hunter2')`` shipped in clear)."""
        h = handler_for(server)
        log = make_logger("t.bad_args", h)
        log.info(message, *args)
        (line,) = delivered(server, h, 1)
        # (The message as written; the text patterns may redact a placeholder after "pw=".)
        assert line["line"].startswith(message[:10])
        assert "[logdna_client: message could not be formatted" in line["line"]
        assert "hunter2" not in line["line"] and "bob" not in line["line"]
        assert line["line"].endswith(f"; {shape}]")
        h.close()

    def test_format_error_keeps_the_traceback(self, server: DevServer) -> None:
        """log.exception with arguments that do not fit the message still ships the traceback."""
        h = handler_for(server)
        log = make_logger("t.bad_exc", h)
        try:
            raise ValueError("the real problem")
        except ValueError:
            log.exception("failed for user %d", "not a number")
        log.info("stack %s %s", "one", stack_info=True)
        exc_line, stack_line = delivered(server, h, 2)
        assert exc_line["line"].startswith("failed for user %d [logdna_client: message could not")
        assert "ValueError: the real problem" in exc_line["line"]
        assert "could not be formatted" in stack_line["line"]
        assert "Stack (most recent call last)" in stack_line["line"]
        h.close()

    def test_unhashable_logger_name(self, server: DevServer) -> None:
        """A record whose name is unhashable (makeLogRecord) still ships, without raising."""
        h = handler_for(server)
        h.handle(logging.makeLogRecord({"name": ["not", "a", "str"], "msg": "odd name"}))
        h.handle(logging.makeLogRecord({"name": "t.ok", "msg": "after"}))
        assert ["odd name", "after"] == [line["line"] for line in delivered(server, h, 2)]
        h.close()

    def test_logger_name_whose_hash_raises(self, server: DevServer) -> None:
        """A record whose name raises on hash() ships; nothing reaches the application."""

        class Name(str):
            def __hash__(self) -> int:
                raise ValueError("no hash")

        h = handler_for(server)
        h.handle(logging.makeLogRecord({"name": Name("odd"), "msg": "odd name"}))
        assert ["odd name"] == [line["line"] for line in delivered(server, h, 1)]
        h.close()

    def test_hostile_objects_in_message_and_meta(self, server: DevServer) -> None:
        """An argument or extra whose __str__ raises does not take the line down."""

        class Hostile:
            def __str__(self) -> str:
                raise RuntimeError("boom")

            __repr__ = __str__

        h = handler_for(server)
        log = make_logger("t.hostile", h)
        log.info("value: %s", Hostile())
        log.info("meta", extra={"h": Hostile()})
        first, second = delivered(server, h, 2)
        assert "could not be formatted" in first["line"]
        assert "<unprintable Hostile>" == second["meta"]["h"]
        h.close()

    def test_a_str_that_logs_does_not_recurse(self, server: DevServer) -> None:
        """An argument whose __str__ logs through the same handler: the line it logs ships
        (one level of nesting), the one that line's own formatting logs is counted as
        ``reentrant`` instead of recursing, and the outer line ships."""
        h = handler_for(server)
        log = make_logger("t.reentrant", h)

        class Chatty:
            def __str__(self) -> str:
                log.info("from inside __str__ %s", self)
                return "chatty"

        log.info("value: %s", Chatty())
        log.info("after")
        lines = delivered(server, h, 4)
        expected = [
            "from inside __str__ chatty",
            "value: chatty",
            "after",
            "logdna_client: 1 lines dropped (1 reentrant)",
        ]
        assert expected == [x["line"] for x in lines]
        assert 1 == h.client.stats()["dropped"]["reentrant"]
        h.close()

    def test_record_handled_on_another_thread_does_not_silence_its_maker(
        self, server: DevServer
    ) -> None:
        """While a QueueListener-style thread handles a record made on the main thread,
        the main thread's own lines still ship (the re-entry guard is per handling thread)."""
        h = handler_for(server)
        inside, release = threading.Event(), threading.Event()

        class SlowFormatter(logging.Formatter):
            def format(self, record: logging.LogRecord) -> str:
                if record.getMessage() == "queued":
                    inside.set()
                    release.wait(10)
                return record.getMessage()

        h.setFormatter(SlowFormatter())
        queued = logging.LogRecord("t.q", logging.INFO, __file__, 1, "queued", None, None)
        worker = threading.Thread(target=h.handle, args=(queued,))
        worker.start()
        assert inside.wait(10)
        make_logger("t.q", h).info("direct")
        release.set()
        worker.join(10)
        lines = delivered(server, h, 2)
        assert ["direct", "queued"] == [x["line"] for x in lines]
        h.close()

    def test_own_logger_and_sender_thread_records_are_not_shipped(self, server: DevServer) -> None:
        """Records from the logdna_client logger and from the sender thread never ship."""
        h = handler_for(server)
        root = logging.getLogger()
        root.addHandler(h)
        root.setLevel(logging.DEBUG)
        logging.getLogger("logdna_client").propagate = True
        logging.getLogger("logdna_client").warning("internal trouble")
        logging.getLogger("app").info("app line")
        assert h.client.flush(10)
        # urllib3 logged "POST /logs/ingest" at DEBUG on the sender thread: not shipped.
        logging.getLogger("app").info("second")
        assert h.client.flush(10)
        texts = [x["line"] for x in server.lines]
        assert ["app line", "second"] == texts
        root.removeHandler(h)
        h.close()

    @pytest.mark.parametrize(
        ("name", "ours"),
        [("logdna_client", True), ("logdna_client.sender", True),
         ("logdna_clientele", False), ("logdna_client_app", False)],
    )  # fmt: skip
    def test_only_the_librarys_own_logger_names_are_skipped(self, name: str, ours: bool) -> None:
        """The library's own logger and those below it are skipped, on the handler and
        on the structlog processor alike (one rule); a name that only starts alike is
        the application's and ships."""
        from logdna_client.structlog import LogDNAProcessor
        from logdna_client.testing import capture_lines

        h = LogDNAHandler(url=UNREACHABLE, hostname="t")
        proc = LogDNAProcessor(client=h.client)
        record = logging.makeLogRecord({"msg": "m", "name": name, "levelname": "INFO"})
        try:
            with capture_lines() as lines:
                h.handle(record)
                proc(None, "info", {"event": "via structlog", "_record": record})
        finally:
            h.close()
        assert (0 if ours else 2) == len(lines)

    def test_record_without_a_name_still_ships(self, server: DevServer) -> None:
        """A record built by makeLogRecord without a name ships; nothing raises."""
        h = handler_for(server)
        h.handle(logging.makeLogRecord({"msg": "nameless", "name": None}))
        (line,) = delivered(server, h, 1)
        assert "nameless" == line["line"]
        h.close()

    def test_emit_never_writes_stdout(
        self, server: DevServer, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Even with a dead endpoint and bad input, nothing is written to stdout."""
        h = LogDNAHandler(url="http://127.0.0.1:1/logs/ingest", shutdown_timeout=0.2)
        log = make_logger("t.quiet", h)
        log.info("%s %s", 1)  # noqa: PLE1206 - the bad call is the test
        log.error("x", extra={"bad": {1: {2, 3}}})
        h.close()
        assert "" == capsys.readouterr().out


class TestOptions:
    def test_shared_client(self, server: DevServer) -> None:
        """Two handlers built with client= ship through the same pipeline, and close leaves it."""
        client = Client(url=server.url, hostname="h")
        a, b = LogDNAHandler(client=client), LogDNAHandler(client=client)
        assert a.client is b.client is client
        make_logger("t.a", a).info("from a")
        make_logger("t.b", b).info("from b")
        a.close()
        assert not client.closed
        assert client.flush(10)
        assert server.wait_for_lines(2, 10)
        client.close()

    def test_client_and_options_together_is_an_error(self) -> None:
        """Passing client= and options at once is a configuration error."""
        with pytest.raises(ConfigurationError):
            LogDNAHandler(client=Client(url="http://127.0.0.1:1/x"), app="x")

    def test_string_options_work(self, server: DevServer) -> None:
        """Options given as strings (as from dictConfig) produce a working handler."""
        h = LogDNAHandler(url=server.url, flush_interval="0.05", max_batch_bytes="64KiB",
                          compress="false", tags="a,b", index_meta="true")  # fmt: skip
        make_logger("t.str", h).info("x", extra={"k": 1})
        delivered(server, h, 1)
        request = server.requests[-1]
        assert "a,b" == request.query["tags"]
        assert not request.gzip
        h.close()

    def test_key_goes_in_header_only(self) -> None:
        """The key travels in the apikey header, never in the URL."""
        seen: dict[str, str] = {}
        with DevServer(key="k-123") as srv:
            h = LogDNAHandler(url=srv.url, key="k-123", hostname="h")
            make_logger("t.key", h).info("authorized")
            assert h.client.flush(10)
            assert srv.wait_for_lines(1, 10)
            record = srv.requests[-1]
            seen.update(record.query)
            assert "header" == record.auth
            assert record.key_valid
            h.close()
        assert "k-123" not in str(seen)

    def test_repr_hides_key(self) -> None:
        """Neither handler nor client repr shows the key."""
        h = LogDNAHandler(key="super-secret-value", url="http://127.0.0.1:1/x")
        assert "super-secret-value" not in repr(h) + repr(h.client) + str(h.client.config)
        h.close()


class TestConcurrency:
    def test_many_threads_lose_nothing(self, server: DevServer) -> None:
        """Lines from 8 threads all arrive, each thread's lines in order."""
        h = handler_for(server)
        log = make_logger("t.threads", h)
        start = threading.Barrier(8)

        def work(t: int) -> None:
            start.wait()
            for i in range(500):
                log.info("t%d %d", t, i)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        lines = delivered(server, h, 4000)
        for t in range(8):
            mine = [int(x["line"].split()[1]) for x in lines if x["line"].startswith(f"t{t} ")]
            assert list(range(500)) == mine
        h.close()

    @pytest.mark.parametrize("hook", ["settrace", "setprofile"])
    def test_byte_count_exact_under_a_tracer(self, server: DevServer, hook: str) -> None:
        """Under a debugger, coverage or profiler hook (threads switch at more points),
        8 threads through the lock-free put: every line arrives once, the byte count
        ends at exactly 0."""
        h = handler_for(server, flush_interval=0.05, max_batch_bytes=4096)
        log = make_logger("t.traced", h)
        start = threading.Barrier(8)

        def work(t: int) -> None:
            getattr(sys, hook)(lambda *args: None)
            start.wait()
            for i in range(2500):
                log.info("t%d %d", t, i)

        run_with_forced_switches([functools.partial(work, t) for t in range(8)])
        lines = delivered(server, h, 20_000)
        assert 20_000 == len({x["line"] for x in lines}) == len(lines)
        buffer = h.client._buffer
        assert (0, 0, 0) == (buffer.queued_bytes, buffer.inflight_bytes, len(buffer))
        h.close()


def test_devserver_status_page(server: DevServer) -> None:
    """The devserver answers GET / (used by benchmarks and humans)."""
    assert 200 == requests.get(server.base_url, timeout=5).status_code


UNREACHABLE = "https://127.0.0.1:9/logs/ingest"


class TestInlinePath:
    """The common record is built inside handle(); it must match the general builder."""

    @pytest.fixture
    def offline(self) -> Iterator[LogDNAHandler]:
        # Never sends (a port nobody serves, an hourly interval): lines stay queued.
        h = LogDNAHandler(key="k", url=UNREACHABLE, hostname="t", app="a\"pp", env="é",
                          flush_interval=3600)  # fmt: skip
        yield h
        h.client.close(timeout=0)
        h.close()

    @staticmethod
    def queued_twice(h: LogDNAHandler, record: logging.LogRecord) -> list[dict[str, Any]]:
        # The first of a second takes the general path and notes the second; the
        # repeat (same created) takes the inline one. Both must be right.
        h.handle(record)
        h.handle(record)
        return [json.loads(entry) for entry in h.client._buffer.snapshot()[-2:]]

    # The handler is reused on purpose: its cached second must never leak between records.
    @settings(
        max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(
        text=st.text(max_size=300),
        created=st.floats(min_value=-1e10, max_value=4e10, allow_nan=False) | st.integers(0, 2**40),
        level=st.sampled_from(["INFO", "WARNING", 'ODD "LEVEL"', "ÜBER", "\ud800"]),
    )
    def test_same_line_as_the_general_builder(
        self, offline: LogDNAHandler, text: str, created: float, level: str
    ) -> None:
        """Text, level, app, env and timestamp come out as encode() makes them."""
        record = logging.LogRecord("t.inline", logging.INFO, __file__, 1, text, None, None)
        record.levelname = level
        record.created = created
        expected = json.loads(
            offline.client._builder.encode(
                text, level[:80], int(created * 1000), {"name": "t.inline"}
            )
            or b"{}"
        )
        for line in self.queued_twice(offline, record):
            assert expected == line

    # Meta values: what extra= carries in practice, and what must not slip past redaction.
    _meta_values = st.recursive(
        st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
        | st.text(max_size=20) | st.sampled_from(["{", "/api/{id}", '{"password": 1}']),
        lambda inner: st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "password", "api_key", "x{"]), inner, max_size=3),
        max_leaves=8,
    )  # fmt: skip

    @settings(
        max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(
        meta=st.dictionaries(
            st.sampled_from(["user_id", "path", "token", "db_password", "x{", "é", "status"])
            | st.text(min_size=1, max_size=10).filter(lambda k: k not in NOT_EXTRAS),
            _meta_values,
            min_size=1,
            max_size=5,
        ),
        text=st.text(max_size=50),
        created=st.floats(min_value=0, max_value=4e10) | st.integers(0, 2**40),
    )
    def test_meta_lines_as_the_general_builder(
        self, offline: LogDNAHandler, meta: dict[str, Any], text: str, created: float
    ) -> None:
        """A record with extra= ships what encode() makes of it, secrets redacted,
        whether its keys were seen before (the inline way) or not (the general one)."""
        record = logging.getLogger("t.meta").makeRecord(
            "t.meta", logging.INFO, __file__, 1, text, None, None, extra=meta
        )
        record.created = created
        expected = json.loads(
            offline.client._builder.encode(
                text, "INFO", int(created * 1000), {"name": "t.meta", **meta}
            )
            or b"{}"
        )
        for line in self.queued_twice(offline, record):
            assert expected == line

    def test_secrets_in_extra_stay_redacted_once_keys_are_known(
        self, offline: LogDNAHandler
    ) -> None:
        """Known-safe keys take the inline way; a secret key, or a secret nested under
        a safe key, sends the line the way that redacts it."""
        log = logging.getLogger("t.meta.secret")
        log.handlers[:] = [offline]
        log.propagate = False
        log.setLevel(logging.INFO)
        for _ in range(3):
            log.info("safe", extra={"user": 1, "ctx": "x"})
        log.info("secret", extra={"user": 1, "api_token": "s3cr3t"})
        log.info("nested", extra={"user": 1, "ctx": {"password": "s3cr3t"}})
        log.info("in a list", extra={"user": 1, "ctx": [{"session_id": "s3cr3t"}]})
        lines = [json.loads(e) for e in offline.client._buffer.snapshot()[-6:]]
        name = {"name": "t.meta.secret"}
        assert [{**name, "user": 1, "ctx": "x"}] * 3 == [line["meta"] for line in lines[:3]]
        assert {**name, "user": 1, "api_token": "[REDACTED]"} == lines[3]["meta"]
        assert {**name, "user": 1, "ctx": {"password": "[REDACTED]"}} == lines[4]["meta"]
        assert {**name, "user": 1, "ctx": [{"session_id": "[REDACTED]"}]} == lines[5]["meta"]
        assert not any("s3cr3t" in e.decode() for e in offline.client._buffer.snapshot())

    @pytest.mark.parametrize("formatted", [False, True])
    def test_extras_kept_when_a_filter_sets_a_standard_attribute_again(
        self, offline: LogDNAHandler, formatted: bool
    ) -> None:
        """A filter that deletes a standard attribute and sets it again moves it after
        the extras: they still ship, also when a formatter added message/asctime."""
        log = logging.getLogger("t.readd")
        for _ in range(2):  # the second: keys known, the level's tail cached
            record = log.makeRecord(
                "t.readd", logging.INFO, __file__, 1, "m %s", ("a",), None, extra={"user": 1}
            )
            value = record.funcName
            del record.funcName
            record.funcName = value
            if formatted:
                logging.Formatter("%(asctime)s %(message)s").format(record)
            offline.handle(record)
            line = json.loads(offline.client._buffer.snapshot()[-1])
            assert ("m a", {"name": "t.readd", "user": 1}) == (line["line"], line.get("meta"))

    @pytest.mark.parametrize("deleted", [("processName",), ("funcName", "lineno")])
    def test_extras_kept_when_a_filter_deletes_a_standard_attribute(
        self, offline: LogDNAHandler, deleted: tuple[str, ...]
    ) -> None:
        """A filter that deletes standard attributes (one or two) moves the extras
        before the tail where they are looked for: every one still ships."""
        log = logging.getLogger("t.deleted")
        extra = {"user": 1, "path": "/x", "method": "GET"}
        for _ in range(2):  # the second: keys known, the level's tail cached
            record = log.makeRecord(
                "t.deleted", logging.INFO, __file__, 1, "m %s", ("a",), None, extra=extra
            )
            for name in deleted:
                delattr(record, name)
            offline.handle(record)
            line = json.loads(offline.client._buffer.snapshot()[-1])
            assert ("m a", {"name": "t.deleted", **extra}) == (line["line"], line.get("meta"))

    @pytest.mark.parametrize("depth", [31, 32, 33, 40, 200])
    def test_deep_lists_in_extra_as_the_general_builder(
        self, offline: LogDNAHandler, depth: int
    ) -> None:
        """Lists nested deeper than the redaction walk goes are cut the same way on
        the inline path (keys known, no nested object) as by encode(), byte for byte."""
        deep: Any = "v"
        for _ in range(depth):
            deep = [deep]
        meta = {"user": 1, "path": deep}
        record = logging.getLogger("t.deep").makeRecord(
            "t.deep", logging.INFO, __file__, 1, "deep", None, None, extra=meta
        )
        offline.handle(record)  # the first: keys not known yet, nor the level's tail
        expected = offline.client._builder.encode(
            "deep", "INFO", int(record.created * 1000), {"name": "t.deep", **meta}
        )
        offline.handle(record)
        offline.handle(record)
        assert [expected] * 3 == offline.client._buffer.snapshot()[-3:]

    @pytest.mark.parametrize("chars", [1, 60, 150, 199, 200, 201, 400, 2_000])
    @pytest.mark.parametrize("char", ["a", '"', "é", "€", "\n"])
    def test_texts_around_the_line_cap(self, chars: int, char: str) -> None:
        """Texts near max_line_length (in bytes, after escaping) ship as encode() makes
        them: whole when they fit, cut with the marker when they do not."""
        h = LogDNAHandler(key="k", url=UNREACHABLE, hostname="t", app="a", flush_interval=3600,
                          max_line_length=200)  # fmt: skip
        try:
            text = char * chars
            record = logging.LogRecord("t.cap", logging.INFO, __file__, 1, text, None, None)
            expected = json.loads(
                h.client._builder.encode(
                    text, "INFO", int(record.created * 1000), {"name": "t.cap"}
                )
                or b"{}"
            )
            for line in self.queued_twice(h, record):
                assert expected == line
            assert len(expected["line"].encode()) <= 200 + len(
                "… [truncated by logdna_client: 8000 bytes in all]".encode()
            )
        finally:
            h.client.close(timeout=0)
            h.close()

    @pytest.mark.parametrize(
        ("created", "millis"),
        [
            (1_600_000_000.123456, 1_600_000_000_123),
            (1_600_000_000.9995, 1_600_000_000_999),
            (1_600_000_001.0, 1_600_000_001_000),
            (1_600_000_000, 1_600_000_000_000),  # an int, as a filter might set
            (0.5, 500),  # the first second of 1970: no leading-zero timestamp
        ],
    )
    def test_timestamps(self, offline: LogDNAHandler, created: float, millis: int) -> None:
        """Milliseconds since the epoch, from record.created, on both paths."""
        record = logging.LogRecord("t.ts", logging.INFO, __file__, 1, "at %s", (created,), None)
        record.created = created
        lines = self.queued_twice(offline, record)
        assert [millis, millis] == [line["timestamp"] for line in lines]

    def test_same_created_same_timestamp(self, offline: LogDNAHandler) -> None:
        """Records made at the same instant get the same timestamp, whichever path built them."""
        for created in (1_795_400_001.001, 1_795_400_001.999, 1_600_000_000.000999):
            record = logging.LogRecord("t.ts", logging.INFO, __file__, 1, "x", None, None)
            record.created = created
            first, second = self.queued_twice(offline, record)
            assert int(created * 1000) == first["timestamp"] == second["timestamp"]

    @pytest.mark.parametrize(
        "created",
        [1e300, -1e300, 9_223_372_036_854_776, 10**400],
        ids=["1e300", "-1e300", "a second past int64", "10**400"],
    )
    def test_times_no_timestamp_holds_are_now(self, offline: LogDNAHandler, created: float) -> None:
        """A created time past what a 64-bit timestamp holds (in milliseconds) ships
        with the time of the call, not as a number the service cannot read."""
        record = logging.LogRecord("t.ts", logging.INFO, __file__, 1, "x", None, None)
        record.created = created
        before = int(time.time() * 1000)
        offline.handle(record)
        after = int(time.time() * 1000)
        stamp = json.loads(offline.client._buffer.snapshot()[-1])["timestamp"]
        assert before <= stamp <= after

    def test_odd_times(self, offline: LogDNAHandler) -> None:
        """Negative times (cut toward 0, as int() cuts) and exact times beyond what a
        float holds exactly each ship their own millisecond."""
        from decimal import Decimal
        from fractions import Fraction

        made: list[Any] = [
            -0.0015, -0.0005, -0.9995, -0.9990, 0.0005,
            Decimal("9007199254740.992"), Decimal("9007199254740.993"),
            Fraction(1125899906842624, 125), 9_223_372_036_854_774, 9_223_372_036_854_775,
        ]  # fmt: skip
        for created in made:
            record = logging.LogRecord("t.ts", logging.INFO, __file__, 1, "x", None, None)
            record.created = created
            offline.handle(record)
        lines = [json.loads(e) for e in offline.client._buffer.snapshot()[-len(made) :]]
        assert [int(t * 1000) for t in made] == [line["timestamp"] for line in lines]

    def test_decimal_created(self, offline: LogDNAHandler) -> None:
        """A record.created set to a Decimal (by a filter, say) still ships, in ms."""
        from decimal import Decimal

        record = logging.LogRecord("t.ts", logging.INFO, __file__, 1, "x", None, None)
        record.created = Decimal("1600000000.25")  # type: ignore[assignment]
        lines = self.queued_twice(offline, record)
        assert [1_600_000_000_250] * 2 == [line["timestamp"] for line in lines]

    def test_times_and_levels_never_mix(self, offline: LogDNAHandler) -> None:
        """Each record ships its own millisecond and its own level (whose tail is
        cached), whatever order records of several levels and times arrive in."""
        made = [
            (1_700_000_000.2501, logging.INFO),
            (1_700_000_000.2502, logging.WARNING),
            (1_700_000_000.2503, logging.INFO),  # the same millisecond as the first
            (1_700_000_001.5, logging.INFO),
            (1_700_000_000.2504, logging.WARNING),
            (1_700_000_000.2514, logging.WARNING),  # the next millisecond
            (1_700_000_000.75, logging.INFO),
            (1.0, logging.ERROR),
            (1_700_000_000.75, logging.ERROR),
        ]
        for created, level in made * 2:
            record = logging.LogRecord("t.ts", level, __file__, 1, "x", None, None)
            record.created = created
            offline.handle(record)
        lines = [json.loads(e) for e in offline.client._buffer.snapshot()]
        expected = [(int(t * 1000), logging.getLevelName(level)) for t, level in made * 2]
        assert expected == [(line["timestamp"], line["level"]) for line in lines]

    def test_context_bound_later_still_reaches_the_line(self, server: DevServer) -> None:
        """Lines logged before and after a request context is first bound are both right."""
        from logdna_client._context import bind_request_context, reset_request_context

        h = handler_for(server)
        log = make_logger("t.ctx", h)
        log.info("before")
        token = bind_request_context(request_id="r-9")
        log.info("during")
        reset_request_context(token)
        log.info("after")
        before, during, after = delivered(server, h, 3)
        assert {"name": "t.ctx"} == before["meta"]
        assert {"request_id": "r-9", "name": "t.ctx"} == during["meta"]
        assert {"name": "t.ctx"} == after["meta"]
        h.close()


def offline_handler(cls: type[LogDNAHandler] = LogDNAHandler, **options: Any) -> LogDNAHandler:
    """A handler whose lines stay queued (a port nobody serves, an hourly interval)."""
    options.setdefault("flush_interval", 3600)
    return cls(key="k", url=UNREACHABLE, hostname="t", **options)


def queued_lines(h: LogDNAHandler) -> list[dict[str, Any]]:
    lines = [json.loads(entry) for entry in h.client._buffer.snapshot()]
    h.client.close(timeout=0)
    h.close()
    return lines


class TestRecordMeta:
    def test_logger_name_ships_by_default(self) -> None:
        """Every line carries its logger's name as meta, under any extra= fields."""
        h = offline_handler()
        log = make_logger("t.names.api", h)
        for _ in range(3):  # the first readies the short paths; the others take them
            log.info("plain %s", "x")
        log.info("with extra", extra={"user": 1})
        log.info("with extra", extra={"user": 1})
        lines = queued_lines(h)
        assert [{"name": "t.names.api"}] * 3 == [line["meta"] for line in lines[:3]]
        assert [{"name": "t.names.api", "user": 1}] * 2 == [line["meta"] for line in lines[3:]]

    def test_chosen_attributes_ship_in_order(self) -> None:
        """record_meta names the attributes that ship, in the order given."""
        h = offline_handler(record_meta="lineno, funcName,name")
        log = make_logger("t.names.chosen", h)
        for _ in range(2):
            log.warning("here")
        lines = queued_lines(h)
        expected = {
            "lineno": lines[0]["meta"]["lineno"],
            "funcName": "test_chosen_attributes_ship_in_order",
            "name": "t.names.chosen",
        }
        assert [expected] * 2 == [line["meta"] for line in lines]
        assert ["lineno", "funcName", "name"] == list(lines[1]["meta"])
        assert isinstance(expected["lineno"], int)

    def test_empty_ships_no_record_attributes(self) -> None:
        """record_meta="" ships the line without meta; extras still ship."""
        h = offline_handler(record_meta="")
        log = make_logger("t.names.none", h)
        for _ in range(2):
            log.info("bare")
        log.info("extra", extra={"k": 1})
        lines = queued_lines(h)
        assert ["meta" not in line for line in lines[:2]] == [True, True]
        assert {"k": 1} == lines[2]["meta"]

    def test_from_dict_config_and_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """record_meta comes from dictConfig as a string, else from LOGDNA_RECORD_META."""
        import logging.config

        monkeypatch.setenv("LOGDNA_RECORD_META", "module")
        h = offline_handler()
        assert ("module",) == h.client.config.record_meta
        h.close()
        logging.config.dictConfig({
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"logdna": {
                "class": "logdna_client.LogDNAHandler", "key": "k", "url": UNREACHABLE,
                "hostname": "t", "flush_interval": "3600", "record_meta": "name,levelno",
            }},
            "loggers": {"t.names.dict": {"handlers": ["logdna"], "propagate": False}},
        })  # fmt: skip
        log = logging.getLogger("t.names.dict")
        (h,) = log.handlers
        assert isinstance(h, LogDNAHandler)
        log.error("configured")
        log.handlers[:] = []
        assert {"name": "t.names.dict", "levelno": 40} == queued_lines(h)[0]["meta"]

    def test_unknown_attribute_is_a_configuration_error(self) -> None:
        """A name that is not a LogRecord attribute fails when the handler is built."""
        with pytest.raises(ConfigurationError) as caught:
            offline_handler(record_meta="name,user_id")
        assert "record_meta" == caught.value.option
        assert "user_id" in str(caught.value)


class TestStdlibHooks:
    """A subclass's format, filter and emit, and a patched getMessage, take effect."""

    def test_format_override(self) -> None:
        """An overridden format() makes the line."""

        class Shouting(LogDNAHandler):
            def format(self, record: logging.LogRecord) -> str:
                return record.getMessage().upper()

        h = offline_handler(Shouting)
        log = make_logger("t.hooks.format", h)
        for _ in range(2):
            log.info("quiet %s", "please")
        assert ["QUIET PLEASE"] * 2 == [line["line"] for line in queued_lines(h)]

    def test_filter_override(self) -> None:
        """An overridden filter() decides, as it does for any handler."""

        class Picky(LogDNAHandler):
            def filter(self, record: logging.LogRecord) -> bool:
                return "keep" in record.getMessage()

        h = offline_handler(Picky)
        log = make_logger("t.hooks.filter", h)
        for text in ("keep 1", "drop", "keep 2", "drop"):
            log.info(text)
        assert ["keep 1", "keep 2"] == [line["line"] for line in queued_lines(h)]

    def test_emit_override(self) -> None:
        """An overridden emit() is called for every record, under the handler lock,
        and what it passes to super().emit() ships."""
        seen: list[tuple[str, bool]] = []

        class Counting(LogDNAHandler):
            def emit(self, record: logging.LogRecord) -> None:
                seen.append((record.getMessage(), self.lock is not None and _held(self.lock)))
                record.msg = "emitted: " + record.msg
                super().emit(record)

        h = offline_handler(Counting)
        log = make_logger("t.hooks.emit", h)
        for i in range(3):
            log.info("n%d", i)
        assert [("n0", True), ("n1", True), ("n2", True)] == seen
        assert ["emitted: n0", "emitted: n1", "emitted: n2"] == [
            line["line"] for line in queued_lines(h)
        ]

    @pytest.mark.parametrize("hook", ["emit", "format", "filter"])
    def test_hook_patched_on_the_handler_takes_effect_and_back(self, hook: str) -> None:
        """A hook set on a built handler (``mock.patch.object(handler, "emit")``, the
        usual way to keep a test off the network) is called, as logging's ``handle``
        calls it on any handler; once the patch is undone, the library's runs again.
        (The handler read its hooks once, when built: the mocked ones were never called
        and the lines shipped.)"""
        from unittest import mock

        h = offline_handler()
        log = make_logger(f"t.hooks.patched.{hook}", h)
        log.info("before")
        answer: Any = {"emit": None, "format": "formatted by the mock", "filter": False}[hook]
        with mock.patch.object(h, hook, return_value=answer) as patched:
            for _ in range(2):
                log.info("while patched")
        log.info("after")
        assert 2 == patched.call_count
        during = {"emit": [], "format": ["formatted by the mock"] * 2, "filter": []}[hook]
        assert ["before", *during, "after"] == [line["line"] for line in queued_lines(h)]
        assert hook not in h.__dict__

    def test_patched_get_message(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A LogRecord.getMessage patched after the handler ran ships its text."""
        h = offline_handler()
        log = make_logger("t.hooks.getmessage", h)
        for _ in range(2):
            log.info("before %s", "patch")
        monkeypatch.setattr(
            logging.LogRecord, "getMessage", lambda self: f"patched: {self.msg % self.args}"
        )
        for _ in range(2):
            log.info("after %s", "patch")
        lines = [line["line"] for line in queued_lines(h)]
        assert ["before patch"] * 2 + ["patched: after patch"] * 2 == lines

    def test_patched_get_message_for_a_structlog_event(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A record structlog's ``wrap_for_formatter`` made (its event dict the message)
        ships what a patched LogRecord.getMessage makes of it, as any other record."""
        h = offline_handler()

        def wrapped() -> logging.LogRecord:
            return logging.makeLogRecord(
                {"msg": {"event": "structlog event", "user": 1}, "_logger": None, "name": "s"}
            )

        h.handle(wrapped())
        monkeypatch.setattr(logging.LogRecord, "getMessage", lambda self: "patched")
        h.handle(wrapped())
        lines = [line["line"] for line in queued_lines(h)]
        assert ["structlog event", "patched"] == lines

    def test_record_factory_overriding_get_message(self) -> None:
        """Records of a factory's subclass with its own getMessage ship its text."""

        class Tagged(logging.LogRecord):
            def getMessage(self) -> str:
                return "[tagged] " + super().getMessage()

        old = logging.getLogRecordFactory()
        logging.setLogRecordFactory(Tagged)
        try:
            h = offline_handler()
            log = make_logger("t.hooks.factory", h)
            for _ in range(2):
                log.info("m %d", 1)
        finally:
            logging.setLogRecordFactory(old)
        assert ["[tagged] m 1"] * 2 == [line["line"] for line in queued_lines(h)]

    def test_emit_patched_on_the_class_before_the_handler_is_built(self) -> None:
        """docs/stdlib.md: patch ``LogDNAHandler.emit`` itself before building the
        handlers. The handler took the class's emit as it found it for its own, so the
        mock was never called and the lines shipped (H199)."""
        from unittest import mock

        with mock.patch.object(LogDNAHandler, "emit") as emit:
            h = offline_handler()
            log = make_logger("t.hooks.class_emit", h)
            for i in range(3):
                log.info("n%d", i)
        assert 3 == emit.call_count
        assert [] == queued_lines(h)

    def test_handle_spied_on_the_class_before_the_handler_is_built(self) -> None:
        """A spy on ``LogDNAHandler.handle`` sees every record: on the C path it saw the
        first only, the C handle then standing in for it (H199)."""
        from unittest import mock

        own = LogDNAHandler.handle
        with mock.patch.object(LogDNAHandler, "handle", autospec=True, side_effect=own) as spy:
            h = offline_handler()
            log = make_logger("t.hooks.class_handle", h)
            for i in range(3):
                log.info("n%d", i)
        assert 3 == spy.call_count
        assert ["n0", "n1", "n2"] == [line["line"] for line in queued_lines(h)]

    def test_hooks_set_on_a_handler_built_in_the_official_form(self) -> None:
        """``LogDNAHandler(key, {options})``: a format or an emit mock set on the built
        handler takes effect as on one built the usual way; the C path kept the C handle
        it was built with, and shipped as before (H199)."""
        from unittest import mock

        h = LogDNAHandler("k", {"url": UNREACHABLE, "hostname": "t", "flush_interval": 3600})
        log = make_logger("t.hooks.official", h)
        log.info("before")
        h.format = lambda record: "custom " + record.getMessage()  # type: ignore[method-assign]
        log.info("formatted")
        del h.format
        with mock.patch.object(h, "emit") as emit:
            log.info("while patched")
        log.info("after")
        assert 1 == emit.call_count
        assert ["before", "custom formatted", "after"] == [line["line"] for line in queued_lines(h)]

    def test_get_message_set_on_the_record(self) -> None:
        """A getMessage a filter (or a record factory) sets on the record itself makes its
        text, as the stdlib's formatter calls it; it is no meta. Both paths shipped
        ``msg % args``, and the function's repr as meta (H199)."""

        class Tag(logging.Filter):
            def filter(self, record: logging.LogRecord) -> bool:
                text = record.msg % record.args
                record.getMessage = lambda: "[tagged] " + text  # type: ignore[method-assign]
                return True

        h = offline_handler()
        log = make_logger("t.hooks.record_getmessage", h)
        log.addFilter(Tag())
        for i in range(2):
            log.info("m %d", i)
        lines = queued_lines(h)
        assert ["[tagged] m 0", "[tagged] m 1"] == [line["line"] for line in lines]
        assert all("getMessage" not in line["meta"] for line in lines)

    def test_get_message_patched_before_the_library_was_imported(self, tmp_path: Any) -> None:
        """A getMessage another library patched before logdna_client was imported is not
        the stdlib's: its text ships. The handler took the method it found at import
        for the stdlib's, and shipped ``msg % args`` (H199)."""
        import subprocess

        code = (
            "import json, logging\n"
            "plain = logging.LogRecord.getMessage\n"
            "logging.LogRecord.getMessage = lambda self: '[patched] ' + plain(self)\n"
            "from logdna_client import LogDNAHandler\n"
            f"h = LogDNAHandler(key='k', url={UNREACHABLE!r}, flush_interval=3600)\n"
            "log = logging.getLogger('t'); log.addHandler(h); log.propagate = False\n"
            "for i in range(2): log.warning('m %d', i)\n"
            "print(json.dumps([json.loads(e)['line'] for e in h.client._buffer.snapshot()]))\n"
            "h.client.close(timeout=0)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
        )
        assert ["[patched] m 0", "[patched] m 1"] == json.loads(done.stdout)

    def test_the_stdlibs_get_message_is_known_where_logging_runs_from_pyc(
        self, tmp_path: Any
    ) -> None:
        """Where logging runs from .pyc files alone (PyInstaller, stripped images), the
        stdlib's getMessage is still known for its own, and the short paths run: the
        file name its code gives differs there, and every record took the slow path
        (H201)."""
        import compileall
        import os
        import shutil
        import subprocess

        shutil.copytree(os.path.dirname(logging.__file__), tmp_path / "logging")
        assert compileall.compile_dir(tmp_path / "logging", quiet=1, legacy=True)
        for source in (tmp_path / "logging").glob("*.py"):
            source.unlink()
        code = (
            "import logging\n"
            "assert logging.__file__.endswith('.pyc'), logging.__file__\n"
            "from logdna_client import _handler\n"
            "print(_handler._GET_MESSAGE is logging.LogRecord.getMessage)\n"
        )
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.getcwd()])}
        done = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (0, "True") == (done.returncode, done.stdout.strip()), done.stderr

    def test_hooks_apply_to_official_records_with_per_line_options(self) -> None:
        """A record with the official client's per-line options dict, on a handler built in
        its form, goes through a subclass's emit (under the handler's lock) and an emit
        mock set on the handler, as any record does: it went around them (H201)."""
        from unittest import mock

        class Audited(LogDNAHandler):
            def emit(self, record: logging.LogRecord) -> None:
                record.msg = "[audited] " + str(record.msg)
                super().emit(record)

        options = {"url": UNREACHABLE, "hostname": "t", "flush_interval": 3600}
        h = Audited("k", options)
        log = make_logger("t.hooks.official_options", h)
        log.info("with options %s", {"app": "billing"})
        plain = LogDNAHandler("k", options)
        mocked = make_logger("t.hooks.official_options_mocked", plain)
        with mock.patch.object(plain, "emit") as emit:
            mocked.info("with options %s", {"app": "billing"})
        assert 1 == emit.call_count
        assert [] == queued_lines(plain)
        (line,) = queued_lines(h)
        assert ("billing", True) == (line["app"], line["line"].startswith("[audited] with options"))


def _held(lock: Any) -> bool:
    """Whether this thread holds ``lock`` (an RLock, as Handler.createLock makes)."""
    return bool(lock._is_owned())


class TestFinalizersOnTheSenderThread:
    def test_a_lock_whose_acquire_takes_no_timeout(self) -> None:
        """A subclass's lock of its own whose ``acquire`` takes no timeout (the stdlib
        never passes one) is taken on the sender thread too: a finalizer's line ships
        (its TypeError escaped into the finalizer, the line lost, counted nowhere)."""

        class SimpleLock:
            def __init__(self) -> None:
                self._lock = threading.Lock()

            def acquire(self) -> bool:
                return self._lock.acquire()

            def release(self) -> None:
                self._lock.release()

        class Custom(LogDNAHandler):
            def createLock(self) -> None:
                self.lock = SimpleLock()  # type: ignore[assignment]

            def format(self, record: logging.LogRecord) -> str:
                return "[c] " + super().format(record)

        h = offline_handler(Custom)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with on_a_sender_thread() as me, in_a_collection(me):
                    h.handle(logging.LogRecord("app", logging.WARNING, "f", 1, "freed", (), None))
            except BaseException as exc:  # (what would reach the finalizer)
                errors.append(exc)

        worker = threading.Thread(target=run)
        worker.start()
        worker.join()
        assert [] == errors
        assert ["[c] freed"] == [line["line"] for line in queued_lines(h)]

    @pytest.mark.parametrize("kind", ["rlock", "no-timeout", "no-argument"])
    def test_no_wait_for_a_lock_whose_holder_waits_for_the_sender(self, kind: str) -> None:
        """A finalizer's line on the sender does not wait for a subclass's lock while the
        thread holding it waits for that sender (an ``emit`` that flushes on ERROR, or
        waits for room under ``block``): counted as ``reentrant`` (H205: the sender
        stalled until the flush gave up, every flush failed, block_timeout was
        overrun), whatever its lock's ``acquire`` takes (H208: one that takes no
        timeout was waited for)."""

        class NoTimeout:
            def __init__(self) -> None:
                self._lock = threading.RLock()

            def acquire(self, blocking: bool = True) -> bool:
                return self._lock.acquire(blocking)

            def release(self) -> None:
                self._lock.release()

            __enter__ = acquire

            def __exit__(self, *exc: object) -> None:
                self.release()

        class NoArgument(NoTimeout):
            def acquire(self) -> bool:  # type: ignore[override]
                return self._lock.acquire()

            __enter__ = acquire

        class Flushing(LogDNAHandler):
            def createLock(self) -> None:
                if kind == "rlock":
                    super().createLock()
                else:
                    self.lock = (NoTimeout if kind == "no-timeout" else NoArgument)()  # type: ignore[assignment]

            def format(self, record: logging.LogRecord) -> str:
                return "[f] " + super().format(record)

        h = offline_handler(Flushing)
        h.handle(logging.LogRecord("app", logging.ERROR, "f", 1, "queued", (), None))
        holding = threading.Event()

        def hold_and_flush() -> None:
            with h.lock:  # type: ignore[union-attr]
                holding.set()
                h.client.flush(timeout=60)

        waiting = threading.Event()

        # A lock that cannot be tried (the no-argument one) is not waited for only
        # once the flush's wait has begun: the finalizer starts after that.
        class Told(set[int]):
            def add(self, ident: int) -> None:
                super().add(ident)
                waiting.set()

        h.client._buffer.waiting = Told()
        holder = threading.Thread(target=hold_and_flush, daemon=True)
        holder.start()
        assert holding.wait(10)
        assert waiting.wait(10)
        done = threading.Event()

        def finalizer() -> None:
            try:
                with on_a_sender_thread() as me, in_a_collection(me):
                    h.handle(logging.LogRecord("app", logging.WARNING, "f", 1, "freed", (), None))
            finally:
                done.set()

        threading.Thread(target=finalizer, daemon=True).start()
        try:
            assert done.wait(10)
        finally:
            h.client.close(timeout=0)
            holder.join(10)
        assert 1 == h.client.stats()["dropped"]["reentrant"]
        h.close()

    def test_a_plain_lock_held_at_the_end_is_logging_shutdowns(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A subclass whose ``createLock`` makes a plain Lock: held while the process's
        ending is under way, its flush waits within the exit's deadline, as with the
        stdlib's RLock, not its own 5 s (logging.shutdown() took 6 s at a 1 s
        shutdown_timeout)."""
        from logdna_client import _exit

        class Plain(LogDNAHandler):
            def createLock(self) -> None:
                self.lock = threading.Lock()  # type: ignore[assignment]

        h = offline_handler(Plain, shutdown_timeout=1)
        waits: list[float | None] = []
        monkeypatch.setattr(h.client, "flush", lambda timeout=None: waits.append(timeout))
        monkeypatch.setattr(_exit, "ending_under_way", lambda: True)
        h.acquire()
        try:
            h.flush()
        finally:
            h.release()
        h.flush()  # not held: its own timeout
        monkeypatch.setattr(_exit, "ending_under_way", lambda: False)
        h.acquire()
        try:
            h.flush()  # held, but no ending: an application's own flush
        finally:
            h.release()
        assert waits[0] is not None and waits[0] <= 1.0
        assert [5.0, 5.0] == waits[1:]
        # Called by the application, not at the exit: logging.shutdown()'s flush too.
        logging.shutdown([weakref.ref(h)])
        assert waits[3] is not None and waits[3] <= 1.0
        monkeypatch.undo()
        h.client.close(timeout=0)

    def test_lines_the_garbage_collector_logs_on_a_sender_ship(self, server: DevServer) -> None:
        """A collection can run on any thread, the sender's among them: the finalizers it
        runs there log the application's lines (asyncio's "Task exception was never
        retrieved" at ERROR, a ``__del__``'s line), which ship; urllib3's lines made
        there do not. They were all dropped as the sender's own, counted nowhere (H198:
        a third of an asyncio app's such lines)."""
        import asyncio
        import gc

        from tests.helpers import on_a_sender_thread

        h = handler_for(server)
        app, warnings_log, urllib3 = (
            logging.getLogger(name)
            for name in ("t.finalizers.app", "py.warnings", "urllib3.connectionpool")
        )

        class Closing:
            def __init__(self) -> None:
                self.me = self  # a cycle: only a collection ends it

            def __del__(self) -> None:
                app.warning("resource closed by its finalizer")
                warnings_log.warning("RuntimeWarning: coroutine 'job' was never awaited")
                urllib3.debug("a connection pool's line")

        async def fails() -> None:
            task = asyncio.current_task()  # the frame holds its task: a cycle
            assert task is not None
            raise RuntimeError("never retrieved")

        async def fire_and_forget() -> None:
            asyncio.get_running_loop().create_task(fails())
            await asyncio.sleep(0)

        def collect_as_a_sender() -> None:
            with on_a_sender_thread():
                gc.collect()

        names = ("t.finalizers.app", "py.warnings", "urllib3.connectionpool", "asyncio")
        with _only_handler(names, h, logging.DEBUG):
            gc.disable()
            try:
                asyncio.run(fire_and_forget())
                Closing()
                collector = threading.Thread(target=collect_as_a_sender)
                collector.start()
                collector.join()
            finally:
                gc.enable()
            lines = delivered(server, h, 3)
            stats = h.client.stats()
        # (asyncio's own DEBUG line, "Using selector", ships too: logged on this thread.)
        texts = {line["line"].split("\n")[0] for line in lines}
        assert {
            "RuntimeWarning: coroutine 'job' was never awaited",
            "Task exception was never retrieved",
            "resource closed by its finalizer",
        } <= texts
        assert "a connection pool's line" not in texts
        assert 0 == stats["dropped_total"]

    def test_a_finalizers_line_behind_a_queue_listener_ships(self, server: DevServer) -> None:
        """The cookbook's QueueHandler and QueueListener in front of the handler: a line a
        finalizer logs on the sender thread is handled on the listener's thread, and
        ships; it was dropped there, counted nowhere (H204)."""
        import gc
        import logging.handlers
        import queue

        from tests.helpers import on_a_sender_thread

        h = handler_for(server)
        records: queue.Queue[logging.LogRecord] = queue.Queue()
        listener = logging.handlers.QueueListener(records, h)
        queued = logging.handlers.QueueHandler(records)

        class Freed:
            def __init__(self) -> None:
                self.me = self  # a cycle: only a collection ends it

            def __del__(self) -> None:
                logging.getLogger("t.queued.res").warning("freed on the sender")

        def collect_as_a_sender() -> None:
            with on_a_sender_thread():
                logging.getLogger("t.queued.apm").warning("the sender's own work")
                Freed()
                gc.collect()
                records.join()  # (handled while this thread is still a sender)

        listener.start()
        try:
            with _only_handler(("t.queued.res", "t.queued.apm"), queued, logging.DEBUG):
                collector = threading.Thread(target=collect_as_a_sender)
                collector.start()
                collector.join()
            lines = delivered(server, h, 1)
        finally:
            listener.stop()
            h.close()
        assert ["freed on the sender"] == [line["line"] for line in lines]

    def test_an_instrumentations_lines_on_the_sender_never_ship(self, server: DevServer) -> None:
        """An HTTP client's instrumentation (an APM agent's patch of requests) logs a line
        per request the sender makes, under a logger of its own: never shipped, or each
        line makes the next request for as long as the process runs (H201: one request
        per flush_interval from an idle app)."""
        import requests

        send = requests.Session.send

        def instrumented(self: requests.Session, request: Any, **kwargs: Any) -> Any:
            logging.getLogger("myapm.http").debug("outgoing %s %s", request.method, request.url)
            return send(self, request, **kwargs)

        h = handler_for(server, flush_interval=3600)
        requests.Session.send = instrumented  # type: ignore[method-assign]
        try:
            with _only_handler(("t.instrumented.app", "myapm.http"), h, logging.DEBUG):
                logging.getLogger("t.instrumented.app").info("the only line the app logs")
                assert h.client.flush(10)
                assert h.client.flush(10)  # (waits for any line the first request made)
        finally:
            requests.Session.send = send  # type: ignore[method-assign]
        assert (1, ["the only line the app logs"]) == (
            server.request_count,
            [line["line"] for line in server.lines],
        )

    @pytest.mark.parametrize("lock", ["reentrant", "plain"])
    def test_a_subclass_never_waits_on_the_sender_for_its_lock(self, lock: str) -> None:
        """A subclass that overrides format takes the stdlib's handle, under the handler's
        lock. A finalizer's line on the sender thread waits for that lock while another
        thread holds it briefly, and ships; while its holder waits for the sender
        (logging.shutdown() flushes each handler under it) it is counted as reentrant:
        the sender waited for the lock, the flush for the sender, both until the exit's
        deadline, and lines were lost (H203). The lock is taken once: a subclass's
        createLock may make a plain one (H204: the sender deadlocked on it)."""

        class Tagged(LogDNAHandler):
            def createLock(self) -> None:
                self.lock = threading.RLock() if lock == "reentrant" else threading.Lock()  # type: ignore[assignment]

            def format(self, record: logging.LogRecord) -> str:
                return "[svc] " + super().format(record)

        h = offline_handler(Tagged)

        def finalizer_on_the_sender(text: str) -> threading.Event:
            done = threading.Event()

            def run() -> None:
                try:
                    with on_a_sender_thread() as me, in_a_collection(me):
                        record = logging.LogRecord(
                            "app.res", logging.WARNING, "f", 1, text, (), None
                        )
                        h.handle(record)
                finally:
                    done.set()

            threading.Thread(target=run, daemon=True).start()
            return done

        assert finalizer_on_the_sender("freed alone").wait(10)
        h.acquire()
        try:
            waited = finalizer_on_the_sender("freed while the lock was held")
            assert not waited.wait(0.2)  # (held by a thread that waits for no sender)
        finally:
            h.release()
        assert waited.wait(10)
        h.acquire()
        h._waiting.add(threading.get_ident())  # as logging.shutdown()'s flush, under the lock
        try:
            assert finalizer_on_the_sender("freed during the flush").wait(10)
        finally:
            h._waiting.clear()
            h.release()
        assert 1 == h.client.stats()["dropped"]["reentrant"]
        assert ["[svc] freed alone", "[svc] freed while the lock was held"] == [
            line["line"] for line in queued_lines(h)
        ]
