"""structlog on top of stdlib logging, into a LogDNAHandler: an event handed over by
``ProcessorFormatter.wrap_for_formatter`` is a LogRecord like any other, and ships
the record attributes ``record_meta`` names, as every stdlib line does."""

from __future__ import annotations

import logging
import logging.handlers
import queue
from collections.abc import Iterator

import pytest
import structlog

from logdna_client._devserver import DevServer
from tests._helpers_integrations import delivered, handler_for, logger_with


@pytest.fixture(autouse=True)
def _structlog_defaults() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def _stdlib_bound(std: logging.Logger) -> structlog.stdlib.BoundLogger:
    return structlog.wrap_logger(  # type: ignore[no-any-return]
        std,
        wrapper_class=structlog.stdlib.BoundLogger,
        processors=[structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
    )


class TestWrapForFormatter:
    def test_logger_name_ships_as_for_a_stdlib_record(self, server: DevServer) -> None:
        """The logger's name (``record_meta``'s default) ships with a structlog event
        as it does with a stdlib record logged on the same logger."""
        h = handler_for(server)
        with logger_with("t.eco.structlog.name", h) as std:
            std.info("from stdlib", extra={"invoice": 6})
            _stdlib_bound(std).info("from structlog", invoice=7)
            lines = delivered(server, h.client, 2)
        assert [
            {"name": "t.eco.structlog.name", "invoice": 6},
            {"name": "t.eco.structlog.name", "invoice": 7},
        ] == [line["meta"] for line in lines]

    def test_record_meta_attributes_ship_and_event_keys_win(self, server: DevServer) -> None:
        """``record_meta`` names ship (the app's function, as structlog's logger
        factory fixes the caller), and an event key of the same name wins."""
        h = handler_for(server, record_meta="name,funcName")
        # Made by structlog's factory (as structlog.configure's logger_factory makes it).
        structlog.stdlib.LoggerFactory()("t.eco.structlog.attrs")
        with logger_with("t.eco.structlog.attrs", h) as std:

            def place_order() -> None:
                _stdlib_bound(std).info("placed", order=1)
                _stdlib_bound(std).info("renamed", name="event's own")

            place_order()
            first, second = delivered(server, h.client, 2)
        assert {"name": "t.eco.structlog.attrs", "funcName": "place_order", "order": 1} == (
            first["meta"]
        )
        assert "event's own" == second["meta"]["name"]

    def test_record_meta_empty_ships_only_the_event_keys(self, server: DevServer) -> None:
        """``record_meta=""`` ships no record attribute, for these events too."""
        h = handler_for(server, record_meta="")
        with logger_with("t.eco.structlog.none", h) as std:
            _stdlib_bound(std).info("paid", invoice=7)
            (line,) = delivered(server, h.client, 1)
        assert {"invoice": 7} == line["meta"]


class TestThroughAQueueHandler:
    def test_structlogs_bookkeeping_never_ships(self, server: DevServer, handle_path: str) -> None:
        """wrap_for_formatter -> QueueHandler -> QueueListener -> LogDNAHandler: the
        QueueHandler made the event dict text, so the record comes as a common one with
        structlog's ``_logger`` and ``_name`` among its extras; they are no meta on
        either handle path, and an ``extra=`` of a stdlib record still is."""
        h = handler_for(server)
        log_queue: queue.Queue[logging.LogRecord] = queue.Queue()
        listener = logging.handlers.QueueListener(log_queue, h)
        try:
            with logger_with(
                "t.eco.structlog.queue", logging.handlers.QueueHandler(log_queue)
            ) as std:
                listener.start()
                try:
                    _stdlib_bound(std).info("order placed", order=9)
                    std.info("from stdlib", extra={"invoice": 6})
                finally:
                    listener.stop()
                lines = delivered(server, h.client, 2)
        finally:
            h.close()
        assert [
            (str({"order": 9, "event": "order placed"}), {"name": "t.eco.structlog.queue"}),
            ("from stdlib", {"name": "t.eco.structlog.queue", "invoice": 6}),
        ] == [(line["line"], line["meta"]) for line in lines]


class TestHandlerLevel:
    def test_the_events_level_is_judged_as_the_processor_judges_it(
        self, server: DevServer, handle_path: str
    ) -> None:
        """The line's level is the event's, and the handler's level judges it (set at
        construction or later): an event whose ``level`` says debug, logged with
        ``.info()``, does not ship from a handler at INFO; nor is it counted as dropped,
        as ``LogDNAProcessor(level=...)`` counts none of the events it filters."""
        h = handler_for(server, level="INFO")
        with logger_with("t.eco.structlog.level", h) as std:
            log = _stdlib_bound(std)
            log.info("cache miss", level="debug")
            log.info("payment failed", level="error")
            log.info("served")
            h.setLevel(logging.WARNING)
            log.warning("noise", level="info")
            log.error("disk full", level="warning")
            log.warning("kept", level=35)
            lines = delivered(server, h.client, 4)
        assert [
            ("payment failed", "ERROR"),
            ("served", "INFO"),
            ("disk full", "WARNING"),
            ("kept", "Level 35"),
        ] == [(line["line"], line["level"]) for line in lines]
        assert 0 == h.client.stats()["dropped_total"]

    def test_the_processor_ships_the_same_lines(self, server: DevServer) -> None:
        """``LogDNAProcessor(level="INFO")`` ships those same events, at those levels."""
        from logdna_client.structlog import LogDNAProcessor

        p = LogDNAProcessor(url=server.url, level="INFO", flush_interval="0.05")
        try:
            log = structlog.wrap_logger(structlog.ReturnLogger(), processors=[p])
            log.info("cache miss", level="debug")
            log.info("payment failed", level="error")
            log.info("served")
            lines = delivered(server, p.client, 2)
        finally:
            p.close()
        assert [("payment failed", "ERROR"), ("served", "INFO")] == [
            (line["line"], line["level"]) for line in lines
        ]


@pytest.mark.usefixtures("handle_path")
class TestTheHandlersFormatter:
    def test_a_formatter_set_on_the_handler_makes_the_line(self, server: DevServer) -> None:
        """A formatter set on the handler (structlog's ProcessorFormatter, say) makes the
        line of a wrapped event as of any record, as docs/stdlib.md says: the handler
        read the event dict itself and left it out (H199)."""
        h = handler_for(server)
        h.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.KeyValueRenderer(key_order=["event"]),
                ]
            )
        )
        with logger_with("t.eco.structlog.formatter", h) as std:
            _stdlib_bound(std).info("hello", invoice=7)
            (line,) = delivered(server, h.client, 1)
        assert "event='hello' invoice=7" == line["line"]

    def test_a_subclass_format_makes_the_line(self, server: DevServer) -> None:
        """A subclass that overrides ``format`` gets the stdlib's semantics, a wrapped
        event's record too."""
        from logdna_client import LogDNAHandler

        class Shouting(LogDNAHandler):
            def format(self, record: logging.LogRecord) -> str:
                return "SHOUT " + str(record.msg["event"]).upper()  # type: ignore[index]

        h = Shouting(url=server.url, hostname="test-host")
        with logger_with("t.eco.structlog.subclass", h) as std:
            _stdlib_bound(std).info("hello", invoice=7)
            (line,) = delivered(server, h.client, 1)
        assert "SHOUT HELLO" == line["line"]
