"""The thread rules in ``_threads.py`` the handler and the processor share."""

from __future__ import annotations

import gc
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from logdna_client import _native
from logdna_client._threads import (
    COLLECTING,
    _collection,
    gc_hook,
    made_on_sender,
    sender_ended,
    sender_started,
)
from tests._helpers_integrations import REPO_ROOT
from tests.helpers import on_a_sender_thread

SENDER = threading.get_ident() + 1  # an ident no test thread here has


@pytest.fixture(autouse=True)
def _a_sender() -> Iterator[None]:
    """``SENDER`` is a sender thread for the test."""
    with on_a_sender_thread(SENDER):
        yield


@contextmanager
def _collecting(thread: int, collecting: bool) -> Iterator[None]:
    """``thread`` inside a garbage collection (``collecting``) for the duration, as the
    collection hook marks it at its start."""
    if collecting:
        _collection("start", {}, ident_of=lambda: thread)
    try:
        yield
    finally:
        if collecting:
            _collection("stop", {}, ident_of=lambda: thread)


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

    @pytest.mark.parametrize("name", ["urllib3", "urllib3.connectionpool", "requests.packages",
                                      "charset_normalizer", "http.cookiejar"])  # fmt: skip
    def test_the_http_stacks_records_never_ship(self, name: str) -> None:
        """The sender's HTTP stack's records made on it are never shipped, those made in a
        garbage collection there included (a connection it closes may log)."""
        for collecting in (False, True):
            with _collecting(SENDER, collecting):
                assert made_on_sender(_record(name, thread=SENDER), SENDER)
                assert made_on_sender(_record(name, thread=None), SENDER)

    @pytest.mark.parametrize("name", ["root", "app", "asyncio", "py.warnings", "myapm.http"])
    def test_a_record_made_on_a_sender_ships_only_from_a_collection(self, name: str) -> None:
        """Code a garbage collection runs on a sender thread (a finalizer; asyncio's "Task
        exception was never retrieved", a never-awaited coroutine's warning) logs the
        application's lines: they ship (H198: a third of them were lost, counted
        nowhere). Any other record made there is the sender's work, whatever its logger
        (H201: an HTTP client's instrumentation logged a line per request under its own
        name, and each shipped line made the next request)."""
        assert made_on_sender(_record(name, thread=SENDER), SENDER)
        with _collecting(SENDER, True):
            assert not made_on_sender(_record(name, thread=SENDER), SENDER)
            assert not made_on_sender(_record(name, thread=None), SENDER)
            # Made there, handled on another thread (a QueueListener's): the same.
            assert not made_on_sender(_record(name, thread=SENDER), threading.get_ident())

    def test_collections_are_marked_on_sender_threads_only(self) -> None:
        """gc.callbacks marks a sender thread for the length of a collection run on it."""
        seen: list[bool] = []

        class Watch:
            def __init__(self) -> None:
                self.me = self  # a cycle: only a collection ends it

            def __del__(self) -> None:
                seen.append(threading.get_ident() in COLLECTING)

        for sender in (False, True):
            Watch()
            if sender:
                with on_a_sender_thread():
                    gc.collect()
            else:
                gc.collect()
        assert [False, True] == seen
        assert threading.get_ident() not in COLLECTING

    def test_an_unhashable_thread_is_not_ours(self) -> None:
        """A thread that cannot be looked up does not raise: the record is not ours."""
        assert not made_on_sender(_record(thread=[SENDER]), SENDER)


class TestMadeInACollection:
    def test_a_finalizers_record_handled_on_another_thread_is_known(self) -> None:
        """A record a finalizer made on a sender thread, handled on another thread (a
        QueueListener's), is known by its time against the collection's: it ships; one
        made there outside a collection, or by the HTTP stack in one, does not (H204:
        behind a QueueListener every finalizer line was dropped, counted nowhere)."""
        made: list[logging.LogRecord] = []

        class Freed:
            def __init__(self) -> None:
                self.me = self  # a cycle: only a collection ends it

            def __del__(self) -> None:
                made.append(_record("app.res"))
                made.append(_record("urllib3.connectionpool"))

        def on_the_sender() -> None:
            with on_a_sender_thread():
                made.append(_record("myapm.http"))  # the sender's work
                Freed()
                gc.collect()

        worker = threading.Thread(target=on_the_sender)
        worker.start()
        worker.join()
        outside, finalizers, http_stack = made
        listener = threading.get_ident()
        # (The sender is gone: a listener handles its records later, its ident known.)
        with on_a_sender_thread(outside.thread):
            assert made_on_sender(outside, listener)
            assert not made_on_sender(finalizers, listener)
            assert made_on_sender(http_stack, listener)


class TestJudgedByWhenMade:
    def test_a_buffered_finalizers_record_is_judged_by_when_it_was_made(self) -> None:
        """A finalizer's record handed over on the sender after its collection ended (a
        ``MemoryHandler``'s buffer flushed by the sender's work) is judged by its
        ``created`` (H205: lost, counted nowhere); handled in the collection, by the
        collection, whatever its ``created`` says (H208: a filter's int, a frozen clock)."""
        with _collecting(SENDER, True):
            finalizers = _record("app.res", thread=SENDER)
            rewritten = _record("app.res", thread=SENDER, created=int(finalizers.created) - 5)
            assert not made_on_sender(rewritten, SENDER)
        assert not made_on_sender(finalizers, SENDER)

    def test_a_buffered_work_record_is_not_a_finalizers(self) -> None:
        """The sender's own work (an instrumentation's line) made before a collection and
        handed over inside it (a MemoryHandler flushed by a finalizer's line) is still the
        sender's work, never shipped (H209: it shipped with the finalizer's)."""
        work = _record("myapm.http", thread=SENDER)
        work.created -= 1.0  # made well before the collection
        with _collecting(SENDER, True):
            assert made_on_sender(work, SENDER)
            assert made_on_sender(work, threading.get_ident())

    def test_a_frozen_clock_makes_no_collection_of_all_time(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Under a clock that does not move (freezegun), a collection on the sender is
        not kept as the time of every record made there since: the sender's own work
        after it is still the sender's (H208: an instrumentation's line per request
        shipped, each making the next request)."""
        monkeypatch.setattr(time, "time", lambda: 1_800_000_000.0)
        work = _record("myapm.http", thread=SENDER, created=1_800_000_000.0)
        with _collecting(SENDER, True):
            # (In a collection: a record handled later, on a listener, made at its start's
            # time, is not taken for one made in it; H209: an APM line shipped so.)
            assert made_on_sender(work, threading.get_ident())
        assert made_on_sender(work, SENDER)
        assert made_on_sender(work, threading.get_ident())

    def test_records_made_on_a_sender_without_threads_are_known(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With ``logging.logThreads`` off a record has no thread: one made on a sender
        and handled on another thread (a QueueListener's) is still known as the sender's
        (H205: taken for the listener's, each of urllib3's or an instrumentation's lines
        of a request shipped and made the next request, for as long as the process ran);
        a finalizer's made there in a collection ships, as with threads on."""
        monkeypatch.setattr(logging, "logThreads", False)
        factory = logging.getLogRecordFactory()
        made: list[logging.LogRecord] = []

        class Freed:
            def __init__(self) -> None:
                self.me = self  # a cycle: only a collection ends it

            def __del__(self) -> None:
                made.append(logging.getLogger("app.res").makeRecord(
                    "app.res", logging.ERROR, __file__, 1, "freed", None, None))  # fmt: skip

        def on_the_sender() -> None:
            with on_a_sender_thread():
                made.append(logging.getLogger("myapm.http").makeRecord(
                    "myapm.http", logging.INFO, __file__, 1, "GET", None, None))  # fmt: skip
                Freed()
                gc.collect()

        try:
            worker = threading.Thread(target=on_the_sender)
            worker.start()
            worker.join()
            work, finalizers = made
            assert work.thread is not None and work.thread == finalizers.thread  # the sender's
            listener = threading.get_ident()
            with on_a_sender_thread(work.thread):
                assert made_on_sender(work, listener)
                assert not made_on_sender(finalizers, listener)
            # Made on this (no sender) thread: its own, shipped, also when a sender
            # handles it (a MemoryHandler flushed there; H209: dropped).
            mine = logging.getLogger("app").makeRecord(
                "app", logging.INFO, __file__, 1, "m", None, None
            )
            assert not made_on_sender(mine, listener)
            with on_a_sender_thread() as here:
                assert not made_on_sender(mine, here)
            assert set(vars(mine)) == set(vars(work))  # no attribute of its own: no meta
        finally:
            logging.setLogRecordFactory(factory)

    def test_the_collection_hook_runs_only_while_a_sender_does(self) -> None:
        """The hook every collection on every thread pays for (about a microsecond) is
        registered while a sender thread runs, and only then (H205)."""
        from logdna_client._threads import SENDER_THREADS

        assert gc_hook() in gc.callbacks  # (this module's SENDER)
        with on_a_sender_thread(SENDER + 1):
            assert gc_hook() in gc.callbacks
        others = set(SENDER_THREADS)
        for ident in others:
            sender_ended(ident)
        try:
            assert gc_hook() not in gc.callbacks
        finally:
            for ident in others:
                sender_started(ident)
        assert gc_hook() in gc.callbacks


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_while_a_sender_started_can_start_its_own() -> None:
    """A child forked while another thread held the senders' lock (a sender starting or
    ending) starts its own sender and delivers: the lock is the child's own (it waited
    for the parent's thread, which does not exist in the child, for ever)."""
    from logdna_client import Client, _threads
    from logdna_client._devserver import DevServer
    from tests.helpers import in_forked_child

    holding, release = threading.Event(), threading.Event()
    parents = Client(url="http://127.0.0.1:1/logs/ingest", hostname="t")  # (as any app)

    def hold() -> None:
        with _threads._senders_lock:
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert holding.wait(10)
    with DevServer() as server:
        try:

            def child() -> dict[str, object]:
                # (Taken here by the child's main thread: its new threads may get the
                # parent's holder's ident by chance, and take that lock as their own.)
                free = _threads._senders_lock.acquire(timeout=5)
                if free:
                    _threads._senders_lock.release()
                client = Client(url=server.url, hostname="t", flush_interval=0.05)
                client.log("from the child")
                delivered = client.flush(10)
                hooked = gc_hook() in gc.callbacks
                client.close(timeout=1)
                return {"free": free, "delivered": delivered, "hooked": hooked}

            seen = in_forked_child(child)
        finally:
            release.set()
            holder.join(10)
            parents.close(timeout=0)
    assert {"free": True, "delivered": True, "hooked": True} == seen


_CTRL_C_IN_A_COLLECTION = """
import _thread, functools, gc, json, operator, signal, sys, threading
from logdna_client import Client, _threads
client = Client(url="http://127.0.0.1:1/logs/ingest", hostname="t")
client.log("starts the sender")
started = threading.Event()
while _threads.gc_hook() not in gc.callbacks:  # (registered as the sender starts)
    started.wait(0.01)
reached = False
try:
    # Called from C, one after the other: SIGINT arrives as the stdlib simulates it (its
    # handler is due; nothing runs it yet), and its handler can run no sooner than inside
    # the collection's hooks, as when Ctrl-C comes during a collection.
    list(map(operator.methodcaller("__call__"),
             [functools.partial(_thread.interrupt_main, signal.SIGINT), gc.collect]))
    for _ in range(1000):  # (where the handler runs when no hook ran it)
        pass
except KeyboardInterrupt:
    reached = True
hooked = _threads.gc_hook() in gc.callbacks
client.close(timeout=0)
print(json.dumps({"reached": reached, "hooked": hooked}))
"""


@pytest.mark.skipif(_native.speedups is None, reason="the C extension is not built")
def test_ctrl_c_during_a_collection_is_not_swallowed_by_the_hook() -> None:
    """Ctrl-C that comes while a garbage collection runs on the main thread, with a
    sender running (its hook registered), is not run and swallowed inside the hook: the
    collection swallowed the KeyboardInterrupt (printing "Exception ignored in:
    <function _collection") when the hook ran Python code on every thread. (Whether it
    then reaches the application is up to the collection's other Python code: the
    weakref callbacks and finalizers of what it frees, not the library's.)"""
    done = subprocess.run(
        [sys.executable, "-c", _CTRL_C_IN_A_COLLECTION],
        capture_output=True, text=True, timeout=120, check=False,
        cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )  # fmt: skip
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["hooked"], done.stderr
    assert "_collection" not in done.stderr
