"""The thread rules in ``_threads.py`` the handler and the processor share."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator

import pytest

from logdna_client._threads import made_on_sender
from tests.helpers import on_a_sender_thread

SENDER = threading.get_ident() + 1  # an ident no test thread here has


@pytest.fixture(autouse=True)
def _a_sender() -> Iterator[None]:
    """``SENDER`` is a sender thread for the test."""
    with on_a_sender_thread(SENDER):
        yield


def _record(name: str = "urllib3.connectionpool", **attrs: object) -> logging.LogRecord:
    record = logging.LogRecord(name, logging.INFO, __file__, 1, "m", None, None)
    record.__dict__.update(attrs)
    return record


class TestMadeOnSender:
    def test_a_record_of_a_sender_thread_of_this_process(self) -> None:
        """Made on a sender thread here (its process known or not): never shipped."""
        assert made_on_sender(_record(thread=SENDER), threading.get_ident())
        assert made_on_sender(_record(thread=SENDER, process=None), threading.get_ident())

    def test_a_record_of_another_thread_or_process(self) -> None:
        """Made on an application thread, or by another process's sender (whose idents
        mean nothing here): shipped."""
        me = threading.get_ident()
        assert not made_on_sender(_record(thread=me), me)
        assert not made_on_sender(_record(thread=SENDER, process=os.getpid() + 1), me)

    def test_a_record_without_a_thread_was_made_by_the_running_one(self) -> None:
        """With logging.logThreads off the record has no thread: the running one made it."""
        assert made_on_sender(_record(thread=None), SENDER)
        assert not made_on_sender(_record(thread=None), threading.get_ident())

    def test_a_record_stripped_of_its_thread_is_not_ours(self) -> None:
        """A record without its thread is not known to be a sender's: it ships."""
        record = _record(thread=SENDER)
        del record.thread
        assert not made_on_sender(record, SENDER)

    def test_a_record_stripped_of_its_process_is_this_process(self) -> None:
        """A sender thread's record whose process a filter removed is still this
        process's (as a record made with logging.logProcesses off is): never shipped,
        or each request the sender makes could ship a line that makes another."""
        record = _record(thread=SENDER)
        del record.process
        assert made_on_sender(record, SENDER)

    @pytest.mark.parametrize(
        "name", ["urllib3", "urllib3.connectionpool", "requests.packages", "charset_normalizer",
                 "py.warnings", None, 42]
    )  # fmt: skip
    def test_the_sender_works_loggers(self, name: object) -> None:
        """Made on a sender by its own work (the HTTP stack, warnings it raises) or with no
        logger name: never shipped."""
        record = _record(thread=None)
        record.name = name  # type: ignore[assignment]
        assert made_on_sender(record, SENDER)
        record.thread = SENDER
        assert made_on_sender(record, threading.get_ident())

    @pytest.mark.parametrize("name", ["root", "app", "asyncio", "urllib3x", "py.warningsx"])
    def test_another_loggers_record_made_on_a_sender_ships(self, name: str) -> None:
        """Code the garbage collector runs on a sender thread (a finalizer; asyncio's "Task
        exception was never retrieved") logs the application's lines: they ship (H198:
        a third of them were lost, counted nowhere)."""
        assert not made_on_sender(_record(name, thread=SENDER), SENDER)
        assert not made_on_sender(_record(name, thread=None), SENDER)

    def test_an_unhashable_thread_is_not_ours(self) -> None:
        """A thread that cannot be looked up does not raise: the record is not ours."""
        assert not made_on_sender(_record(thread=[SENDER]), SENDER)
