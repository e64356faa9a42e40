"""Tests for _report: the library's own trouble, told once per kind per interval, on its
own logger, and never with the HTTP stack's frames (which hold the key) in a traceback."""

from __future__ import annotations

import builtins
import logging
import sys
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

import pytest

from logdna_client._report import KIND_ATTR, Reporter, is_own_logger, logger

SECRET = "hdr-secret-0123456789"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Collect(logging.Handler):
    """Keeps every record it is handed."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def seen() -> Iterator[Collect]:
    """The records that reach the library's logger (conftest restores its handlers)."""
    handler = Collect()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    disabled = logger.disabled
    yield handler
    logger.disabled = disabled


def in_module(module: str) -> Callable[[Callable[[], None]], None]:
    """A function whose frame belongs to ``module``, holding a request's headers in its
    locals as requests and urllib3 do, that calls ``inner`` and wraps what it raises."""
    namespace: dict[str, Any] = {"__name__": module}
    code = (
        "def call(inner):\n"
        f"    headers = {{'apikey': {SECRET!r}}}\n"
        "    try:\n"
        "        inner()\n"
        "    except ValueError as exc:\n"
        "        raise OSError('connection failed') from exc\n"
    )
    exec(code, namespace)  # a function of no module, for its frame's globals
    call: Callable[[Callable[[], None]], None] = namespace["call"]
    return call


def boom() -> None:
    raise ValueError("refused")


def frames_of(exc: BaseException) -> list[tuple[str, str]]:
    """(module, function) of every frame in ``exc``'s traceback and in those of every
    exception reachable from it: its cause, its context (shown or not), a group's
    members."""
    found: list[tuple[str, str]] = []
    todo, seen = [exc], set()
    while todo:
        chained = todo.pop()
        if id(chained) in seen:
            continue
        seen.add(id(chained))
        tb: TracebackType | None = chained.__traceback__
        while tb is not None:
            found.append((tb.tb_frame.f_globals.get("__name__", "?"), tb.tb_frame.f_code.co_name))
            tb = tb.tb_next
        todo += [e for e in (chained.__cause__, chained.__context__) if e is not None]
        todo += list(getattr(chained, "exceptions", ()))
    return found


class TestIsOwnLogger:
    def test_the_library_logger_and_its_children_are_own(self) -> None:
        """Records of ``logdna_client`` and of any logger below it are the library's own."""
        assert is_own_logger("logdna_client")
        assert is_own_logger("logdna_client.transport")

    def test_other_names_are_not_own(self) -> None:
        """A logger that merely starts with the same letters, the root logger, or a record
        with no (or a non-string) name is the application's, and ships."""
        assert not is_own_logger("logdna_client_extra")
        assert not is_own_logger("app.logdna_client")
        assert not is_own_logger("root")
        assert not is_own_logger(None)
        assert not is_own_logger(42)


class TestRateLimit:
    def test_a_repeat_within_the_interval_is_held_back(self, seen: Collect) -> None:
        """The same kind of trouble reported again before ``interval`` passed logs nothing."""
        clock = FakeClock()
        reporter = Reporter(interval=60.0, clock=clock)
        assert reporter.report("auth", logging.ERROR, "key refused")
        clock.now += 59.9
        assert not reporter.report("auth", logging.ERROR, "key refused")
        assert ["key refused"] == [r.getMessage() for r in seen.records]

    def test_after_the_interval_it_logs_again_with_the_count_held_back(self, seen: Collect) -> None:
        """Once ``interval`` has passed (to the second), the next report logs and says how
        many were held back since the last one."""
        clock = FakeClock()
        reporter = Reporter(interval=60.0, clock=clock)
        reporter.report("retry", logging.WARNING, "unreachable %s", "host")
        for _ in range(3):
            clock.now += 10.0
            reporter.report("retry", logging.WARNING, "unreachable %s", "host")
        clock.now = 1000.0 + 60.0
        assert reporter.report("retry", logging.WARNING, "unreachable %s", "host")
        expected = [
            "unreachable host",
            "unreachable host (and 3 more like it since the last report)",
        ]
        assert expected == [r.getMessage() for r in seen.records]

    def test_kinds_are_limited_separately(self, seen: Collect) -> None:
        """A report of one kind does not hold back a report of another."""
        reporter = Reporter(interval=60.0, clock=FakeClock())
        assert reporter.report("auth", logging.ERROR, "a")
        assert reporter.report("rejected", logging.ERROR, "b")
        assert ["a", "b"] == [r.getMessage() for r in seen.records]

    def test_forget_lets_the_next_report_through_with_no_count(self, seen: Collect) -> None:
        """After ``forget`` (the trouble went away) the next report of that kind logs at
        once, and does not count the reports held back before."""
        reporter = Reporter(interval=60.0, clock=FakeClock())
        reporter.report("auth", logging.ERROR, "refused")
        reporter.report("auth", logging.ERROR, "refused")
        reporter.forget("auth")
        assert reporter.report("auth", logging.ERROR, "refused")
        assert ["refused", "refused"] == [r.getMessage() for r in seen.records]


class TestRecord:
    def test_the_record_carries_its_kind_and_level(self, seen: Collect) -> None:
        """A tool listening on the library's logger tells reports apart by the kind
        attribute, and gets the level asked for."""
        Reporter(clock=FakeClock()).report("too_large", logging.WARNING, "body too large")
        (record,) = seen.records
        assert "too_large" == getattr(record, KIND_ATTR)
        assert logging.WARNING == record.levelno
        assert "logdna_client" == record.name

    def test_a_disabled_library_logger_is_enabled_again(self, seen: Collect) -> None:
        """dictConfig's default disables the library's logger; a report still reaches
        the handlers the application gave it (end to end: test_dictconfig)."""
        logger.disabled = True
        assert Reporter(clock=FakeClock()).report("auth", logging.ERROR, "refused")
        assert ["refused"] == [r.getMessage() for r in seen.records]

    def test_a_broken_application_handler_does_not_raise(self, seen: Collect) -> None:
        """A handler of the application's that raises leaves the caller unharmed; the
        report says it was not logged."""

        class Broken(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                raise RuntimeError("broken handler")

            def handleError(self, record: logging.LogRecord) -> None:
                raise RuntimeError("broken handleError")

        logger.addHandler(Broken())
        assert not Reporter(clock=FakeClock()).report("auth", logging.ERROR, "refused")


class TestTracebacks:
    @pytest.mark.parametrize(
        "module", ["requests.adapters", "urllib3.connectionpool", "http.client", "socks"]
    )
    def test_http_stack_frames_are_cut_ours_stay(self, seen: Collect, module: str) -> None:
        """A report with its traceback keeps the library's frames and the exceptions'
        messages, but none of the HTTP stack's frames, whose locals hold the key: not in
        the exception reported, nor in the one it was raised from."""
        send = in_module(module)

        def deliver() -> None:
            send(boom)

        try:
            deliver()
        except OSError:
            Reporter(clock=FakeClock()).report("retry", logging.ERROR, "failed", exc_info=True)
        (record,) = seen.records
        assert record.exc_info is not None and record.exc_info[1] is not None
        frames = frames_of(record.exc_info[1])
        assert module not in {name for name, _ in frames}
        assert "deliver" in {function for _, function in frames}
        assert "connection failed" in seen.format(record)
        assert "refused" in seen.format(record)
        tb = record.exc_info[2]
        while tb is not None:
            assert SECRET not in repr(tb.tb_frame.f_locals)
            tb = tb.tb_next

    def test_a_context_hidden_by_raise_from_is_cut_too(self, seen: Collect) -> None:
        """``raise X from Y`` inside an ``except``: the exception handled there (the
        context, which a printer hides but a reporter that records locals still walks)
        loses the HTTP stack's frames as the cause does."""
        send = in_module("urllib3.connectionpool")
        try:
            try:
                send(boom)
            except OSError:
                raise KeyError("wrapped") from ValueError("the cause")
        except KeyError:
            Reporter(clock=FakeClock()).report("retry", logging.ERROR, "failed", exc_info=True)
        (record,) = seen.records
        assert record.exc_info is not None and record.exc_info[1] is not None
        context = record.exc_info[1].__context__
        assert isinstance(context, OSError)
        assert "urllib3.connectionpool" not in {name for name, _ in frames_of(context)}
        assert "test_a_context_hidden_by_raise_from_is_cut_too" in {
            function for _, function in frames_of(context)
        }

    @pytest.mark.skipif(sys.version_info < (3, 11), reason="exception groups: 3.11 and later")
    def test_an_exception_groups_members_are_cut_too(self, seen: Collect) -> None:
        """A member of an exception group (``asyncio.TaskGroup`` raises them) loses the
        HTTP stack's frames as a chained exception does."""
        send = in_module("requests.adapters")
        try:
            send(boom)
        except OSError as exc:
            member = exc
        group = builtins.ExceptionGroup  # (a name 3.10 has not: looked up here)
        try:
            raise group("requests failed", [member])
        except Exception:
            Reporter(clock=FakeClock()).report("retry", logging.ERROR, "failed", exc_info=True)
        (record,) = seen.records
        assert record.exc_info is not None and record.exc_info[1] is not None
        names = {name for name, _ in frames_of(record.exc_info[1])}
        assert "requests.adapters" not in names
        assert __name__ in names

    @pytest.mark.skipif(sys.version_info < (3, 11), reason="exception groups: 3.11 and later")
    def test_a_group_whose_members_cannot_be_read_is_still_reported(self, seen: Collect) -> None:
        """An exception group subclass whose ``exceptions`` raises: the report is still
        made (it reaches the library's logger's handlers), with the HTTP stack's frames
        cut from what can be read."""
        send = in_module("urllib3.connectionpool")

        class Odd(builtins.ExceptionGroup):  # type: ignore[name-defined, misc]
            @property
            def exceptions(self) -> Any:
                raise RuntimeError("unreadable")

        try:
            try:
                send(boom)
            except OSError as exc:
                raise Odd("odd", [exc]) from None
        except Exception:
            # (False here: pytest's own handler, which formats the group, fails on it.)
            Reporter(clock=FakeClock()).report("retry", logging.ERROR, "failed", exc_info=True)
        (record,) = seen.records
        assert record.exc_info is not None and record.exc_info[1] is not None
        context = record.exc_info[1].__context__
        assert context is not None
        assert "urllib3.connectionpool" not in {name for name, _ in frames_of(context)}

    def test_other_packages_frames_stay(self, seen: Collect) -> None:
        """Only the HTTP stack is cut: a package whose name merely starts like one keeps
        its frames."""
        send = in_module("requests_helper")
        try:
            send(boom)
        except OSError:
            Reporter(clock=FakeClock()).report("retry", logging.ERROR, "failed", exc_info=True)
        (record,) = seen.records
        assert record.exc_info is not None and record.exc_info[1] is not None
        assert "requests_helper" in {name for name, _ in frames_of(record.exc_info[1])}

    def test_asking_for_a_traceback_outside_an_exception(self, seen: Collect) -> None:
        """exc_info=True with no exception being handled still logs, with an error saying
        so rather than an empty traceback."""
        Reporter(clock=FakeClock()).report("other", logging.ERROR, "odd", exc_info=True)
        (record,) = seen.records
        assert record.exc_info is not None
        assert isinstance(record.exc_info[1], RuntimeError)
