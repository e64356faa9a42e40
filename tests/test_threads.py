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


def _record(**attrs: object) -> logging.LogRecord:
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "m", None, None)
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

    def test_an_unhashable_thread_is_not_ours(self) -> None:
        """A thread that cannot be looked up does not raise: the record is not ours."""
        assert not made_on_sender(_record(thread=[SENDER]), SENDER)
