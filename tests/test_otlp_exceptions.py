"""Tests for exceptions over OTLP: the logs semantic conventions' exception.type,
exception.message and exception.stacktrace, read on the sender from the traceback
text the stdlib handler ships, checked against a real server's protobuf parse."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from typing import Any

import pytest

from logdna_client import LogDNAHandler
from logdna_client._otlp import exception_of
from logdna_client.structlog import LogDNAProcessor
from logdna_client.testing import capture_lines
from tests._otlp_server import Server


class AppError(Exception):
    pass


@pytest.fixture
def log(otlp: Server) -> Iterator[logging.Logger]:
    handler = LogDNAHandler(
        key="k", url=otlp.url, protocol="otlp", kubernetes=False, handle_signals=False,
        flush_interval=3600,
    )  # fmt: skip
    logger = logging.getLogger("tests.otlp.exceptions")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger
        assert handler.client.flush(timeout=30)
    finally:
        logger.removeHandler(handler)
        handler.close()


def received(server: Server) -> list[tuple[str, dict[str, Any]]]:
    """(body, attributes) of every record, as protobuf parsed them."""
    return [
        (r.body.string_value, {kv.key: kv.value.string_value for kv in r.attributes})
        for request in server.requests
        if request.parsed is not None
        for rl in request.parsed.resource_logs
        for sl in rl.scope_logs
        for r in sl.log_records
    ]


def _raise(exc: BaseException) -> None:
    raise exc


class TestExceptionAttributes:
    def test_logger_exception_sends_the_semantic_convention_attributes(
        self, otlp: Server, log: logging.Logger
    ) -> None:
        """logger.exception(): the body is the message (as the SDK's LoggingHandler sends
        it), and exception.type (qualified as the traceback shows it), exception.message
        and exception.stacktrace are attributes; a chained exception's type is the one
        raised, a multi-line message is whole (old code: the traceback in the body only)."""
        try:
            _raise(ValueError("bad value"))
        except ValueError:
            log.exception("request %d failed", 7)
        try:
            try:
                _raise(KeyError("k"))
            except KeyError as exc:
                raise AppError("first line\nsecond line") from exc
        except AppError:
            log.error("chained", exc_info=True)
        log.info("no exception here")
        log.handlers[0].flush()
        assert otlp.wait_for_lines(3, timeout=30)
        (body, attrs), (body2, attrs2), (body3, attrs3) = received(otlp)
        assert "request 7 failed" == body
        assert ("ValueError", "bad value") == (attrs["exception.type"], attrs["exception.message"])
        stack = attrs["exception.stacktrace"]
        assert stack.startswith("Traceback (most recent call last):\n")
        assert stack.endswith("ValueError: bad value") and "in _raise" in stack
        assert "chained" == body2
        assert f"{__name__}.AppError" == attrs2["exception.type"]
        assert "first line\nsecond line" == attrs2["exception.message"]
        assert "KeyError: 'k'" in attrs2["exception.stacktrace"]  # the cause, still there
        assert "no exception here" == body3
        assert not any(name.startswith("exception.") for name in attrs3)
        # The receiving side (the devserver's tail) shows the line as the handler made it.
        assert otlp.lines[0]["line"] == f"request 7 failed\n{stack}"
        assert "exception.stacktrace" not in otlp.lines[0]["meta"]

    def test_meta_of_the_same_name_wins_and_stack_info_is_not_the_message(
        self, otlp: Server, log: logging.Logger
    ) -> None:
        """An exception.* key the application set in extra= wins; stack_info after the
        traceback stays out of exception.message."""
        try:
            _raise(RuntimeError("boom"))
        except RuntimeError:
            log.error("with extras", exc_info=True, stack_info=True,
                      extra={"exception.type": "Mine"})  # fmt: skip
        log.handlers[0].flush()
        assert otlp.wait_for_lines(1, timeout=30)
        [(body, attrs)] = received(otlp)
        assert ("with extras", "Mine", "boom") == (
            body, attrs["exception.type"], attrs["exception.message"]
        )  # fmt: skip
        assert "Stack (most recent call last):" in attrs["exception.stacktrace"]


class TestParsing:
    @pytest.mark.parametrize(
        "text",
        [
            "no traceback",
            "quoted: Traceback (most recent call last):\n  File 'x'\nValueError: x",
            "cut\nTraceback (most recent call last):\n  File 'x.py', line 1, in f\n    g()",
            "group\n  + Exception Group Traceback (most recent call last):\n  | ValueError: x",
            "odd\nTraceback (most recent call last):\n  File 'x'\n!not a type: x",
        ],
        ids=["none", "not-at-a-line-start", "cut-before-the-exception", "group", "no-type"],
    )
    def test_text_without_a_readable_traceback_is_left_as_it_is(self, text: str) -> None:
        """No traceback at a line's start, or no exception line after it: no attributes,
        and the line goes as it is."""
        assert exception_of(text) is None

    def test_a_class_made_in_a_function(self) -> None:
        """A type whose qualified name has ``<locals>`` in it is read whole."""

        class LocalError(Exception):
            pass

        try:
            _raise(LocalError("x"))
        except LocalError:
            text = "msg\n" + traceback.format_exc()
        found = exception_of(text)
        assert found is not None
        assert f"{__name__}.{LocalError.__qualname__}" == found[1]["exception.type"]
        assert ("msg", "x") == (found[0], found[1]["exception.message"])

    def test_an_exception_without_a_message(self) -> None:
        """``raise RuntimeError``: a type and no exception.message."""
        text = "Traceback (most recent call last):\n  File 'x.py', line 1\nRuntimeError\n"
        assert (
            "",
            {"exception.type": "RuntimeError", "exception.stacktrace": text.rstrip("\n")},
        ) == exception_of(text)


class TestWhichExceptionWasRaised:
    """scaling.md: "the type and message are those of the last traceback's exception
    line (the exception raised)" (H182: the last "Traceback" header anywhere was taken,
    a quoted one in a message included)."""

    def _read(self, exc: BaseException) -> dict[str, str]:
        found = exception_of("giving up\n" + "".join(traceback.format_exception(exc)))
        assert found is not None
        assert "giving up" == found[0]
        return found[1]

    def test_a_message_that_quotes_a_traceback(self) -> None:
        """A worker's traceback quoted in the error raised for it (a process pool's,
        a subprocess's stderr): the raised one is named, its whole message kept."""
        quoted = (
            "job 7 failed on the worker:\nTraceback (most recent call last):\n"
            '  File "worker.py", line 9, in run\nConnectionResetError: peer closed'
        )
        try:
            _raise(RuntimeError(quoted))
        except RuntimeError as exc:
            found = self._read(exc)
        assert ("RuntimeError", quoted) == (found["exception.type"], found["exception.message"])

    @pytest.mark.parametrize("how", ["cause", "context"])
    def test_a_chain_names_the_last(self, how: str) -> None:
        try:
            try:
                _raise(KeyError("k"))
            except KeyError as cause:
                if how == "cause":
                    raise AppError("outer") from cause
                _raise(AppError("outer"))
        except AppError as exc:
            found = self._read(exc)
        assert (f"{__name__}.AppError", "outer") == (
            found["exception.type"], found["exception.message"]
        )  # fmt: skip

    def test_one_never_raised_with_a_raised_cause(self) -> None:
        """``log.error("...", exc_info=exc)`` of an exception made, not raised, whose
        cause was raised: it has no traceback header of its own."""
        try:
            _raise(KeyError("k"))
        except KeyError as cause:
            outer = ValueError("outer")
            outer.__cause__ = cause
        found = self._read(outer)
        assert ("ValueError", "outer") == (found["exception.type"], found["exception.message"])


# A message that quotes a worker's chained traceback, separator and all (a process
# pool's error, a subprocess's stderr): read from text, its last link looks like the
# raised exception.
_QUOTED_CHAIN = (
    "job 7 failed on the worker:\nTraceback (most recent call last):\n"
    "  File \"worker.py\", line 3, in run\nKeyError: 'k'\n\n"
    "The above exception was the direct cause of the following exception:\n\n"
    "Traceback (most recent call last):\n"
    '  File "worker.py", line 9, in run\nConnectionResetError: peer closed'
)


class TestTheExceptionItself:
    """H183: exception.type and exception.message are read from the record's exception
    (exc_info) where there is one, not from the text, which a message or a note can make
    say something else; on both handle paths and from the structlog processor."""

    @pytest.fixture
    def log(self, otlp: Server, handle_path: str) -> Iterator[logging.Logger]:
        handler = LogDNAHandler(
            key="k", url=otlp.url, protocol="otlp", kubernetes=False, handle_signals=False,
            flush_interval=3600, max_line_length=2000,
        )  # fmt: skip
        logger = logging.getLogger(f"tests.otlp.raised.{handle_path}")
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        try:
            yield logger
        finally:
            logger.removeHandler(handler)
            handler.close()

    def _sent(self, otlp: Server, log: logging.Logger, n: int) -> list[dict[str, Any]]:
        handler = log.handlers[0]
        assert isinstance(handler, LogDNAHandler)
        assert handler.client.flush(timeout=30)
        assert otlp.wait_for_lines(n, timeout=30)
        return [attrs for _, attrs in received(otlp)]

    def test_a_message_that_quotes_a_chained_traceback(
        self, otlp: Server, log: logging.Logger
    ) -> None:
        """The quoted chain's separator made the text's reading take the quoted
        ConnectionResetError (old code: that type, and "peer closed")."""
        try:
            _raise(RuntimeError(_QUOTED_CHAIN))
        except RuntimeError:
            log.exception("giving up")
        [attrs] = self._sent(otlp, log, 1)
        assert ("RuntimeError", _QUOTED_CHAIN) == (
            attrs["exception.type"], attrs["exception.message"]
        )  # fmt: skip
        assert attrs["exception.stacktrace"].endswith(f"RuntimeError: {_QUOTED_CHAIN}")

    @pytest.mark.skipif(not hasattr(BaseException, "add_note"), reason="PEP 678: 3.11+")
    def test_a_note_that_quotes_a_chain_separator(self, otlp: Server, log: logging.Logger) -> None:
        """A PEP 678 note (traceback writes notes after the exception line) that quotes
        the separator: the note's next line was read as the exception (old code)."""
        exc = ValueError("bad input")
        exc.add_note(
            "retried after:\n\nDuring handling of the above exception, another exception"
            " occurred:\n\nTimeoutError: upstream"
        )
        try:
            _raise(exc)
        except ValueError:
            log.exception("giving up")
        [attrs] = self._sent(otlp, log, 1)
        assert "ValueError" == attrs["exception.type"]
        assert attrs["exception.message"].startswith("bad input\nretried after:")

    def test_a_traceback_cut_by_max_line_length_still_names_it(
        self, otlp: Server, log: logging.Logger
    ) -> None:
        """A long message puts the whole traceback past the cap (2,000 here): the text
        names nothing (old code: no exception.* at all); the exception does."""
        try:
            _raise(OSError("disk full"))
        except OSError:
            log.exception("write failed for %s", "y" * 2500)
        [attrs] = self._sent(otlp, log, 1)
        assert ("OSError", "disk full") == (attrs["exception.type"], attrs["exception.message"])
        assert "exception.stacktrace" not in attrs  # (the text is cut before it)

    def test_a_secret_in_the_message_is_redacted_there_too(
        self, otlp: Server, log: logging.Logger
    ) -> None:
        """exception.message is meta now: the redactor sees it as it sees the text."""
        try:
            _raise(RuntimeError("login failed password=hunter2 for bob"))
        except RuntimeError:
            log.exception("auth")
        [attrs] = self._sent(otlp, log, 1)
        assert "hunter2" not in attrs["exception.message"]
        assert attrs["exception.message"].startswith("login failed password=")
        assert "hunter2" not in attrs["exception.stacktrace"]

    def test_an_exception_passed_never_raised(self, otlp: Server, log: logging.Logger) -> None:
        """exc_info=an exception (no traceback of its own): its type and message."""
        log.error("rejected", exc_info=AppError("quota exceeded"))
        [attrs] = self._sent(otlp, log, 1)
        assert (f"{__name__}.AppError", "quota exceeded") == (
            attrs["exception.type"], attrs["exception.message"]
        )  # fmt: skip

    def test_the_processor_reads_exc_info_too(self, otlp: Server) -> None:
        """structlog's exc_info=True (no format_exc_info before it): the exception's."""
        structlog = pytest.importorskip("structlog")
        processor = LogDNAProcessor(
            key="k", url=otlp.url, protocol="otlp", kubernetes=False, handle_signals=False,
            flush_interval=3600,
        )  # fmt: skip
        log = structlog.wrap_logger(None, processors=[processor, lambda *_: ""])
        try:
            try:
                _raise(RuntimeError(_QUOTED_CHAIN))
            except RuntimeError:
                log.error("giving up", exc_info=True)
            assert processor.client.flush(timeout=30)
            assert otlp.wait_for_lines(1, timeout=30)
        finally:
            processor.close()
        [(body, attrs)] = received(otlp)
        assert ("giving up", "RuntimeError", _QUOTED_CHAIN) == (
            body, attrs["exception.type"], attrs["exception.message"]
        )  # fmt: skip

    def test_the_ingest_api_lines_carry_no_such_meta(self, handle_path: str) -> None:
        """Only OTLP lines get exception.* (the ingest API has the traceback in the text)."""
        handler = LogDNAHandler(key="k", url="http://127.0.0.1:9/logs/ingest",
                                kubernetes=False, handle_signals=False)  # fmt: skip
        logger = logging.getLogger(f"tests.ingest.raised.{handle_path}")
        logger.addHandler(handler)
        logger.propagate = False
        try:
            with capture_lines() as lines:
                try:
                    _raise(RuntimeError(_QUOTED_CHAIN))
                except RuntimeError:
                    logger.exception("giving up")
        finally:
            logger.removeHandler(handler)
            handler.close()
        [line] = lines
        assert line["line"].startswith("giving up\nTraceback")
        assert not any(key.startswith("exception.") for key in line["meta"])
