"""The handler and processor used as the Python logging ecosystem uses handlers: queue
handlers and listeners, MemoryHandler, fileConfig, basicConfig, shared clients,
adapters, record factories, captureWarnings, caplog; what ships is what
docs/stdlib.md says, nothing is lost or doubled, and the app sees no exception."""

from __future__ import annotations

import asyncio
import io
import logging
import logging.config
import logging.handlers
import queue
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from asgiref.sync import async_to_sync
from django.http import HttpRequest, StreamingHttpResponse
from django.test import AsyncClient as DjangoAsyncClient
from django.test import Client as DjangoClient
from django.urls import path
from flask import Flask, request, stream_with_context
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from logdna_client import Client, ConfigurationError, LogDNAHandler, _exit
from logdna_client._devserver import DevServer
from logdna_client.contrib.asgi import LogDNAMiddleware
from logdna_client.contrib.flask import LogDNA
from logdna_client.structlog import LogDNAProcessor
from logdna_client.testing import capture_lines
from tests._children import Child, assert_exactly_once_in_order, losses_said, texts
from tests.helpers import django_settings

# Every test here runs on each way handle can run (the C extension, the Python code).
pytestmark = pytest.mark.usefixtures("handle_path")


@pytest.fixture
def logger(request: pytest.FixtureRequest) -> Iterator[logging.Logger]:
    """A logger of the test's own, at DEBUG, not propagating; handlers removed after."""
    log = logging.getLogger(f"t.eco.{request.node.name}")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield log
    for handler in log.handlers[:]:
        log.removeHandler(handler)


def delivered(server: DevServer, client: Client, n: int) -> list[dict[str, Any]]:
    assert client.flush(10)
    assert server.wait_for_lines(n, 10)
    return server.lines


class TestSharedClient:
    def test_each_handler_of_a_shared_client_has_its_own_level(
        self, server: DevServer, logger: logging.Logger
    ) -> None:
        """LogDNAHandler(client=..., level=...): the level is the handler's (a name, in
        any case, or a number), as for a handler built from options; other options
        with client= are still refused."""
        client = Client(url=server.url, hostname="h", flush_interval="0.05")
        try:
            audit = logging.getLogger(logger.name + ".audit")
            warnings_only = LogDNAHandler(client=client, level="warning")
            everything = LogDNAHandler(client=client)
            assert (logging.WARNING, logging.NOTSET) == (warnings_only.level, everything.level)
            logger.addHandler(warnings_only)
            audit.addHandler(everything)
            audit.propagate = False
            logger.info("not shipped")
            logger.warning("shipped")
            audit.debug("audit debug")
            assert ["shipped", "audit debug"] == [
                line["line"] for line in delivered(server, client, 2)
            ]
            assert logging.ERROR == LogDNAHandler(client=client, level=40).level
            with pytest.raises(ConfigurationError, match="level"):
                LogDNAHandler(client=client, level="loud")
            with pytest.raises(ConfigurationError, match="not both"):
                LogDNAHandler(client=client, level="INFO", app="x")
        finally:
            audit.handlers.clear()
            client.close()

    def test_a_processor_of_a_shared_client_has_its_own_level(self, server: DevServer) -> None:
        """LogDNAProcessor(client=..., level=...): structlog events below that level do not
        ship, while the client's stdlib handler ships everything."""
        client = Client(url=server.url, hostname="h", flush_interval="0.05")
        try:
            processor = LogDNAProcessor(client=client, level="WARNING")
            everything = LogDNAHandler(client=client)
            record = logging.LogRecord("std", logging.DEBUG, __file__, 1, "std debug", None, None)
            processor(None, "info", {"event": "not shipped"})
            processor(None, "info", {"event": "not shipped", "level": "info", "k": [1]})
            processor(None, "warning", {"event": "warned"})
            processor(None, "error", {"event": "failed", "k": [1]})
            everything.handle(record)
            lines = delivered(server, client, 3)
            assert ["warned", "failed", "std debug"] == [line["line"] for line in lines]
            with pytest.raises(ConfigurationError, match="not both"):
                LogDNAProcessor(client=client, level="INFO", app="x")
        finally:
            client.close()

    @pytest.mark.parametrize("given", ["cfg://clients.main", {"url": "http://localhost"}, 42])
    def test_a_client_that_is_no_client_is_a_configuration_error(self, given: object) -> None:
        """``client=`` given what is no Client (a dictConfig string, the options dict)
        is a ConfigurationError naming ``client``, for the handler and the processor (it
        was an AttributeError about ``_builder``)."""
        for make in (LogDNAHandler, LogDNAProcessor):
            with pytest.raises(ConfigurationError, match=r"expected a .*Client") as err:
                make(client=given)  # type: ignore[arg-type]
            assert "client" == err.value.option


class TestExitReport:
    def test_loss_at_exit_is_said_on_stderr_when_the_only_handler_is_a_stopped_queue(
        self,
    ) -> None:
        """An application that logs through a QueueHandler and stops its listener at exit
        (the logging cookbook's way): the library's report of lines lost at exit reaches
        the queue after the listener stopped, where nobody reads it. It is written on
        stderr then, as when no handler would show it."""
        # A port nothing listens on: every send fails, the lines are lost at exit.
        with DevServer() as dead:
            url = dead.url
        code = """
        import atexit, logging.handlers, queue
        q = queue.SimpleQueue()
        listener = logging.handlers.QueueListener(q, logging.StreamHandler(sys.stderr))
        listener.start()
        atexit.register(listener.stop)
        logging.getLogger().addHandler(logging.handlers.QueueHandler(q))
        for i in range(3):
            log.warning("lost %d", i)
        mark("logged")
        """
        child = Child(code, url, shutdown_timeout="0.5", flush_interval="0.05")
        child.expect("logged")
        status, _ = child.finish()
        assert 0 == status, child.stderr
        assert 3 in losses_said(child.stderr), child.stderr
        assert "" == child.stdout

    def test_a_running_dictconfig_listener_shows_the_report_once(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Python 3.12+: a QueueHandler whose dictConfig-made listener still runs, feeding
        a stream handler, shows the report itself: it is not written on stderr too. Once
        that listener stopped, the report goes to stderr."""
        if sys.version_info < (3, 12):
            pytest.skip("dictConfig makes a QueueHandler's listener from Python 3.12 on")
        shown = io.StringIO()
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "handlers": {
                    "shown": {"class": "logging.StreamHandler", "stream": shown},
                    "q": {"class": "logging.handlers.QueueHandler", "handlers": ["shown"]},
                },
                "root": {"handlers": ["q"]},
            }
        )
        queued = logging.getHandlerByName("q")
        assert isinstance(queued, logging.handlers.QueueHandler)
        listener = queued.listener  # type: ignore[attr-defined]
        listener.start()
        try:
            _exit.report_exit_loss("logdna_client: 7 lines could not be delivered")
        finally:
            listener.stop()  # joins its thread: what it took is written
        assert "7 lines could not be delivered" in shown.getvalue()
        assert "7 lines" not in capsys.readouterr().err
        _exit.report_exit_loss("logdna_client: 8 lines could not be delivered")
        assert "8 lines could not be delivered" in capsys.readouterr().err


class TestLoggedDuringExit:
    def test_first_lines_logged_by_an_atexit_handler_are_delivered(self, server: DevServer) -> None:
        """An application's atexit handler (registered after the handler was built, so it
        runs before the library's) logs the handler's first lines: they are delivered
        (on Python 3.12, which starts no sender thread then, by the exiting thread)."""
        code = """
        import atexit
        atexit.register(lambda: [log.warning("bye %d", i) for i in range(3)])
        mark("ready")
        """
        child = Child(code, server.url, flush_interval="0.05")
        child.expect("ready")
        status, _ = child.finish()
        assert 0 == status, child.stderr
        # The child ended: what it delivered, the server had stored and acknowledged.
        got = [line["line"] for line in server.lines]
        assert ["bye 0", "bye 1", "bye 2"] == got, child.stderr
        assert "" == child.stdout

    def test_a_queue_listener_stopped_at_exit_delivers_what_it_still_held(
        self, server: DevServer
    ) -> None:
        """The logging cookbook's QueueHandler/QueueListener with the listener stopped by
        an atexit handler: records still in the queue at exit (here: all of them, the
        listener's queue hands nothing out before) reach the LogDNAHandler then, and are
        delivered, with their traceback text and extras."""
        code = """
        import atexit, logging.handlers, queue, threading
        log.removeHandler(handler)
        gate = threading.Event()
        class Gated(queue.Queue):
            def get(self, block=True, timeout=None):
                gate.wait()
                return super().get(block, timeout)
        listener = logging.handlers.QueueListener(Gated(), handler)
        listener.start()
        q = listener.queue
        def stop():
            gate.set()
            listener.stop()
        atexit.register(stop)
        log.addHandler(logging.handlers.QueueHandler(q))
        log.info("queued %d", 1, extra={"order": 7})
        try:
            1 / 0
        except ZeroDivisionError:
            log.exception("failed")
        mark("logged")
        """
        child = Child(code, server.url, flush_interval="0.05")
        child.expect("logged")
        status, _ = child.finish()
        assert 0 == status, child.stderr
        assert 2 == len(server.lines), child.stderr
        first, second = server.lines
        assert ("queued 1", "INFO", {"name": "app", "order": 7}) == (
            first["line"],
            first["level"],
            first["meta"],
        )
        assert second["line"].startswith("failed\nTraceback (most recent call last):")
        assert second["line"].endswith("ZeroDivisionError: division by zero")
        assert "ERROR" == second["level"]


class TestASGIStreaming:
    def test_access_line_of_a_streaming_response_has_its_status(
        self, logger: logging.Logger
    ) -> None:
        """Starlette's StreamingResponse starts the response from a task of its own: the
        access line (logged in the middleware's task) still has ``http_status``, as it
        has for any other response."""

        async def chunks() -> Any:
            logger.info("streaming")
            yield b"chunk"

        async def stream(request: Request) -> StreamingResponse:
            return StreamingResponse(chunks(), status_code=201)

        app = LogDNAMiddleware(Starlette(routes=[Route("/s", stream)]), access_log=True)
        access = logging.getLogger("asgi.access")
        handler = LogDNAHandler(key="not-used")
        logger.addHandler(handler)
        access.addHandler(handler)
        old_level = access.level
        access.setLevel(logging.INFO)

        async def exchange() -> list[dict[str, Any]]:
            scope = {
                "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                "method": "GET", "scheme": "http", "path": "/s", "raw_path": b"/s",
                "query_string": b"", "root_path": "", "headers": [],
                "client": ("127.0.0.1", 5000), "server": ("testserver", 80),
            }  # fmt: skip
            requested = False
            never = asyncio.Event()
            sent: list[dict[str, Any]] = []

            async def receive() -> dict[str, Any]:
                nonlocal requested
                if not requested:
                    requested = True
                    return {"type": "http.request", "body": b"", "more_body": False}
                await never.wait()  # no disconnect: the response ends the exchange
                return {"type": "http.disconnect"}

            async def send(message: dict[str, Any]) -> None:
                sent.append(message)

            await app(scope, receive, send)
            return sent

        try:
            with capture_lines() as lines:
                sent = asyncio.run(exchange())
        finally:
            access.removeHandler(handler)
            access.setLevel(old_level)
            handler.close()
        assert 201 == sent[0]["status"]
        streamed, line = lines
        assert (201, 201) == (streamed["meta"]["http_status"], line["meta"]["http_status"])
        assert line["line"].startswith("GET /s 201 (")
        assert streamed["meta"]["request_id"] == line["meta"]["request_id"]


class TestMemoryHandler:
    def test_what_a_memory_handler_holds_at_exit_is_delivered(self, server: DevServer) -> None:
        """A MemoryHandler targeting the LogDNAHandler: what it still buffers at exit is
        handed on (logging.shutdown() does that, but after the library's exit hook) and
        delivered once, in order (newest MemoryHandler first, as logging.shutdown() goes).
        One made with flushOnClose=False keeps its records where logging.shutdown()
        honours that (Python 3.12+), and hands them on before, as the stdlib does."""
        code = """
        import logging.handlers
        log.removeHandler(handler)
        direct = logging.getLogger("direct")
        direct.addHandler(handler)
        direct.propagate = False
        direct.setLevel(logging.INFO)
        direct.info("started")  # the sender runs: Python 3.12 starts none at exit
        memory = logging.handlers.MemoryHandler(100, flushLevel=logging.CRITICAL, target=handler)
        log.addHandler(memory)
        kept = logging.handlers.MemoryHandler(100, target=handler, flushOnClose=False)
        quiet = logging.getLogger("quiet")
        quiet.addHandler(kept)
        quiet.propagate = False
        quiet.warning("never handed on")
        for i in range(5):
            log.info("buffered %d", i, extra={"i": i})
        mark("logged")
        """
        child = Child(code, server.url, flush_interval="0.05")
        child.expect("logged")
        status, _ = child.finish()
        assert 0 == status, child.stderr
        got = [(line["line"], line["meta"]) for line in server.lines]
        expected = [("started", {"name": "direct"})]
        if sys.version_info < (3, 12):  # logging.shutdown() flushes it all the same
            expected += [("never handed on", {"name": "quiet"})]
        expected += [(f"buffered {i}", {"name": "app", "i": i}) for i in range(5)]
        assert expected == got, child.stderr
        assert "" == child.stdout
        assert "not delivered" not in child.stderr


class TestWhatShips:
    def test_through_a_queue_listener(self, server: DevServer, logger: logging.Logger) -> None:
        """QueueHandler -> QueueListener -> LogDNAHandler (the cookbook's way): message,
        traceback, stack, extras (also a LoggerAdapter's), logger name and level ship as
        they do without the queue, once each, in order."""
        handler = LogDNAHandler(url=server.url, hostname="h", flush_interval="0.05")
        records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        listener = logging.handlers.QueueListener(records, handler)
        logger.addHandler(logging.handlers.QueueHandler(records))
        listener.start()
        try:
            logger.info("paid %s", "inv-1", extra={"cents": 1999})
            try:
                {}["currency"]
            except KeyError:
                logger.exception("no currency")
            logger.warning("here", stack_info=True)
            logging.LoggerAdapter(logger, {"tenant": "t1"}).error("adapted %d", 2)
        finally:
            listener.stop()  # hands on all it holds
        try:
            lines = delivered(server, handler.client, 4)
        finally:
            handler.close()
        name = logger.name
        paid, failed, stack, adapted = lines
        assert ("paid inv-1", "INFO", {"name": name, "cents": 1999}) == (
            paid["line"],
            paid["level"],
            paid["meta"],
        )
        assert failed["line"].startswith("no currency\nTraceback (most recent call last):")
        assert failed["line"].endswith("KeyError: 'currency'")
        assert ("ERROR", {"name": name}) == (failed["level"], failed["meta"])
        assert stack["line"].startswith("here\nStack (most recent call last):")
        assert ("adapted 2", "ERROR", {"name": name, "tenant": "t1"}) == (
            adapted["line"],
            adapted["level"],
            adapted["meta"],
        )

    def test_brace_style_formatter_factory_attributes_and_warnings(
        self, logger: logging.Logger
    ) -> None:
        """A "{"-style formatter set on the handler makes the line (traceback included);
        a record factory's attributes ship as meta; logging.captureWarnings' records
        ship from the py.warnings logger."""
        formatted = LogDNAHandler(key="not-used")
        formatted.setFormatter(logging.Formatter("{levelname}|{message}", style="{"))
        plain = LogDNAHandler(key="not-used")
        warnings_logger = logging.getLogger("py.warnings")
        old_factory = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = old_factory(*args, **kwargs)
            record.trace_id = "abc"
            return record

        logger.addHandler(formatted)
        warnings_logger.addHandler(plain)
        logging.setLogRecordFactory(factory)
        logging.captureWarnings(True)
        try:
            with capture_lines() as lines:
                try:
                    1 / 0  # noqa: B018
                except ZeroDivisionError:
                    logger.exception("boom %s", 1)
                warnings.warn("careful", UserWarning, stacklevel=1)
        finally:
            logging.captureWarnings(False)
            logging.setLogRecordFactory(old_factory)
            warnings_logger.removeHandler(plain)
        boom, warned = lines
        assert boom["line"].startswith("ERROR|boom 1\nTraceback (most recent call last):")
        assert {"name": logger.name, "trace_id": "abc"} == boom["meta"]
        assert ("WARNING", "py.warnings") == (warned["level"], warned["meta"]["name"])
        assert "UserWarning: careful" in warned["line"]


class TestFlaskStreaming:
    def test_lines_logged_while_a_response_streams_have_the_request_context(
        self, server: DevServer, logger: logging.Logger
    ) -> None:
        """A streamed Flask response wrapped in stream_with_context (which keeps the
        request available to the generator): lines its generator logs carry the request's
        context, status included, as the view's lines do; and nothing of it is left for the
        lines logged after the response, or for the next request."""
        app = Flask(__name__)
        LogDNA(app)
        handler = LogDNAHandler(url=server.url, hostname="h", flush_interval="0.05")
        logger.addHandler(handler)

        @app.get("/stream")
        def stream() -> Any:
            logger.info("in view")

            def chunks() -> Iterator[str]:
                logger.info("streaming %s", request.path)
                yield "chunk"

            return app.response_class(stream_with_context(chunks()))

        @app.get("/plain")
        def plain() -> str:
            logger.info("plain")
            return "ok"

        try:
            web = app.test_client()
            streamed = web.get("/stream", headers={"X-Request-ID": "s-1"})
            assert b"chunk" == streamed.data
            logger.info("between")
            web.get("/plain", headers={"X-Request-ID": "p-1"})
            lines = delivered(server, handler.client, 4)
        finally:
            handler.close()
        got = {line["line"]: line["meta"] for line in lines}
        assert "s-1" == got["in view"]["request_id"]
        assert ("s-1", 200, "/stream") == (
            got["streaming /stream"].get("request_id"),
            got["streaming /stream"].get("http_status"),
            got["streaming /stream"].get("http_path"),
        )
        assert {"name": logger.name} == got["between"]
        assert "p-1" == got["plain"]["request_id"]
        assert "http_status" not in got["plain"]


class TestCaptures:
    def test_nested_captures_do_not_share_what_they_caught(self, logger: logging.Logger) -> None:
        """A test editing a line its capture caught (popping a meta key to compare the
        rest, say) leaves the enclosing capture's copy (the logdna_lines fixture's) as
        it was."""
        logger.addHandler(LogDNAHandler(key="not-used"))
        with capture_lines() as outer:
            with capture_lines() as inner:
                logger.info("once", extra={"request_id": "r-1", "order": 7})
            inner[0]["meta"].pop("request_id")
            inner[0]["line"] = "edited"
        assert {"name": logger.name, "order": 7} == inner[0]["meta"]
        assert ("once", {"name": logger.name, "request_id": "r-1", "order": 7}) == (
            outer[0]["line"],
            outer[0]["meta"],
        )


# -- Django: a view whose response streams (StreamingHttpResponse)

django_log = logging.getLogger("t.eco.django")
DJANGO_MIDDLEWARE = ["logdna_client.contrib.django.LogDNARequestContextMiddleware"]


def django_stream(request: HttpRequest) -> StreamingHttpResponse:
    django_log.info("in view")

    def chunks() -> Iterator[bytes]:
        django_log.info("streaming")
        yield b"chunk"

    return StreamingHttpResponse(chunks())


async def django_stream_async(request: HttpRequest) -> StreamingHttpResponse:
    async def chunks() -> Any:
        django_log.info("streaming async")
        yield b"chunk"

    return StreamingHttpResponse(chunks())


def django_stream_closed(request: HttpRequest) -> StreamingHttpResponse:
    def chunks() -> Iterator[bytes]:
        try:
            for _ in range(5):
                yield b"chunk"
        finally:
            django_log.info("generator cleanup")

    return StreamingHttpResponse(chunks())


urlpatterns = [
    path("stream", django_stream),
    path("stream-async", django_stream_async),
    path("stream-closed", django_stream_closed),
]


@pytest.fixture
def _django() -> Iterator[None]:
    with django_settings(__name__, DJANGO_MIDDLEWARE):
        yield


@pytest.mark.usefixtures("_django")
class TestDjangoStreaming:
    def test_lines_a_streaming_response_logs_have_the_request_context(
        self, server: DevServer
    ) -> None:
        """A StreamingHttpResponse's generator runs after the middleware returned, while
        the server sends it: its lines carry the request's context (status included)
        too, sync under WSGI and async under ASGI; lines logged between its chunks and
        after it do not."""
        handler = LogDNAHandler(url=server.url, hostname="h", flush_interval="0.05")
        django_log.addHandler(handler)
        django_log.setLevel(logging.INFO)
        django_log.propagate = False

        async def fetch_async() -> bytes:
            response = await DjangoAsyncClient().get(
                "/stream-async", headers={"X-Request-ID": "a-1"}
            )
            return b"".join([chunk async for chunk in response.streaming_content])

        try:
            response = DjangoClient().get("/stream", HTTP_X_REQUEST_ID="s-1")
            content = iter(response.streaming_content)
            assert b"chunk" == next(content)
            django_log.info("between chunks")
            assert [] == list(content)
            django_log.info("after")
            assert b"chunk" == async_to_sync(fetch_async)()
            lines = delivered(server, handler.client, 5)
        finally:
            django_log.removeHandler(handler)
            handler.close()
        got = {line["line"]: line["meta"] for line in lines}
        assert "s-1" == got["in view"]["request_id"]
        assert ("s-1", 200) == (
            got["streaming"].get("request_id"),
            got["streaming"].get("http_status"),
        )
        assert {"name": django_log.name} == got["between chunks"]
        assert {"name": django_log.name} == got["after"]
        assert ("a-1", "/stream-async") == (
            got["streaming async"].get("request_id"),
            got["streaming async"].get("http_path"),
        )

    def test_a_stream_closed_early_cleans_up_with_the_request_context(self) -> None:
        """The server closes a response whose client went away (PEP 3333): the lines
        the generator's ``finally`` logs then carry the request's context too (H191:
        Django closed the view's generator with none bound)."""
        handler = LogDNAHandler(key="not-used-in-tests", hostname="h")
        django_log.addHandler(handler)
        django_log.setLevel(logging.INFO)
        django_log.propagate = False
        try:
            with capture_lines() as lines:
                response = DjangoClient().get("/stream-closed", HTTP_X_REQUEST_ID="c-1")
                assert b"chunk" == next(iter(response.streaming_content))
                response.close()
        finally:
            django_log.removeHandler(handler)
            handler.close()
        (cleanup,) = [line for line in lines if line["line"] == "generator cleanup"]
        assert ("c-1", "/stream-closed") == (
            cleanup["meta"].get("request_id"),
            cleanup["meta"].get("http_path"),
        )


class TestDictConfigQueueAtExit:
    def test_a_listener_nobody_stopped_hands_on_what_it_holds_at_exit(
        self, server: DevServer
    ) -> None:
        """Python 3.12+: dictConfig's QueueHandler with "handlers" makes a listener; the
        application starts it and never stops it (a daemon thread). At exit, what its
        queue still holds is handed on and delivered, all of it, once, in order."""
        if sys.version_info < (3, 12):
            pytest.skip("dictConfig makes a QueueHandler's listener from Python 3.12 on")
        n = 3000
        code = f"""
        import atexit, logging.config, threading
        log.removeHandler(handler)
        logging.config.dictConfig({{
            "version": 1, "disable_existing_loggers": False,
            "handlers": {{
                "logdna": {{"class": "logdna_client.LogDNAHandler", "flush_interval": "0.05"}},
                "q": {{"class": "logging.handlers.QueueHandler", "handlers": ["logdna"]}},
            }},
            "loggers": {{"app": {{"handlers": ["q"], "level": "INFO", "propagate": False}}}},
        }})
        shipping = logging.getHandlerByName("logdna")
        listener = logging.getHandlerByName("q").listener
        listener.start()
        log.info("first")
        listener.queue.join()  # handed on (the listener marks each record done)
        assert shipping.client.flush(10)  # the sender runs (Python 3.12 starts none at exit)
        # The listener waits for the exit: everything below is still queued then.
        held = threading.Lock()
        held.acquire()
        class Wait(logging.Filter):
            def filter(self, record):
                with held:
                    return True
        shipping.addFilter(Wait())
        atexit.register(held.release)  # runs before the library's exit hook
        for i in range({n}):
            log.info("queued %d", i)
        mark("logged")
        """
        child = Child(code, server.url, flush_interval="0.05")
        child.expect("logged")
        status, _ = child.finish()
        assert 0 == status, child.stderr
        assert_exactly_once_in_order(["first"] + [f"queued {i}" for i in range(n)], texts(server))
        assert "" == child.stdout


class TestStructlogBehindAQueue:
    def test_processor_in_a_formatter_behind_a_queue_skips_the_senders_records(
        self, server: DevServer
    ) -> None:
        """LogDNAProcessor in a ProcessorFormatter whose handler sits behind a
        QueueListener, with the root logger at DEBUG: urllib3's records of the library's
        own requests reach the processor on the listener's thread. They are not shipped
        (each would make another request: a loop without end)."""
        processor = LogDNAProcessor(url=server.url, hostname="h", flush_interval="0.05")
        formatter = structlog.stdlib.ProcessorFormatter(
            processors=[processor, structlog.processors.JSONRenderer()],
            foreign_pre_chain=[structlog.stdlib.add_log_level],
        )
        shown = io.StringIO()
        console = logging.StreamHandler(shown)
        console.setFormatter(formatter)
        # A Queue, not a SimpleQueue: join() waits until the listener handled it all.
        records: queue.Queue[logging.LogRecord] = queue.Queue()
        listener = logging.handlers.QueueListener(records, console)
        root = logging.getLogger()
        root.setLevel(logging.DEBUG)
        root.addHandler(logging.handlers.QueueHandler(records))
        listener.start()
        try:
            logging.getLogger("t.eco.app").info("hello")
            records.join()  # the processor took it
            assert processor.flush(10)  # sent: urllib3 logged the request on the sender
            records.join()  # ... and the processor saw those records too
            assert processor.flush(10)  # what it took of them, if anything, is sent
        finally:
            root.handlers.pop()
            listener.stop()
            processor.close()
        assert ["hello"] == [line["line"] for line in server.lines]
        assert "POST /logs/ingest" in shown.getvalue()  # they did reach the processor's formatter
