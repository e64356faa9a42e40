"""Tests for _context.py: per-request fields in a ContextVar, and the filter that adds them."""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from logdna_client import _context
from logdna_client._context import (
    RequestContextFilter,
    bind_request_context,
    clean_request_id,
    get_request_context,
    new_request_id,
    remember_context,
    reset_request_context,
    update_request_context,
)


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    reset_request_context()
    yield
    reset_request_context()


def record() -> logging.LogRecord:
    return logging.LogRecord("t.context", logging.INFO, __file__, 1, "m", None, None)


class TestBinding:
    def test_bind_merges_and_reset_restores(self) -> None:
        """Binding merges over what is bound; resetting its token restores the rest."""
        outer = bind_request_context(request_id="r-1", http_method="GET")
        inner = bind_request_context(http_method="POST", user_id="7")
        assert {"request_id": "r-1", "http_method": "POST", "user_id": "7"} == (
            get_request_context()
        )
        reset_request_context(inner)
        assert {"request_id": "r-1", "http_method": "GET"} == get_request_context()
        reset_request_context(outer)
        assert {} == get_request_context()

    def test_update_adds_fields(self) -> None:
        """update_request_context changes the current fields (a response status, say)."""
        bind_request_context(request_id="r-2")
        update_request_context(http_status=200)
        assert {"request_id": "r-2", "http_status": 200} == get_request_context()

    def test_snapshots_are_never_changed(self) -> None:
        """What a reader got stays as it was when fields change later."""
        bind_request_context(request_id="r-3")
        seen = _context.current()
        update_request_context(http_status=500)
        assert {"request_id": "r-3"} == dict(seen)
        copy = get_request_context()
        copy["request_id"] = "changed"
        assert "r-3" == get_request_context()["request_id"]

    def test_reset_without_token_or_with_a_foreign_one_clears(self) -> None:
        """No token, or a token from another context, clears everything."""
        bind_request_context(request_id="r-4")
        reset_request_context()
        assert {} == get_request_context()
        foreign = contextvars.copy_context().run(bind_request_context, request_id="x")
        bind_request_context(request_id="r-5")
        reset_request_context(foreign)
        assert {} == get_request_context()

    def test_threads_see_their_own_fields(self) -> None:
        """Another thread (another context) does not see this one's fields."""
        bind_request_context(request_id="main")
        seen: list[dict[str, object]] = []
        thread = threading.Thread(target=lambda: seen.append(get_request_context()))
        thread.start()
        thread.join()
        assert [{}] == seen

    def test_in_use_turns_on_at_the_first_bind(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The hot paths' flag says whether any context was ever bound in the process."""
        monkeypatch.setattr(_context, "in_use", False)
        update_request_context(a=1)
        assert _context.in_use
        monkeypatch.setattr(_context, "in_use", False)
        bind_request_context(a=1)
        assert _context.in_use


class TestRequestIds:
    def test_new_ids_are_random_hex(self) -> None:
        """Fresh ids are 32 hex digits, never the same twice."""
        ids = {new_request_id() for _ in range(100)}
        assert 100 == len(ids)
        assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)

    @pytest.mark.parametrize("value", ["abc-123", "a.b:c/d+e=f@g_h", "x" * 128])
    def test_sane_incoming_ids_are_kept(self, value: str) -> None:
        """Short printable tokens are trusted as request ids."""
        assert value == clean_request_id(value)

    @pytest.mark.parametrize(
        "value", ["", "x" * 129, "has space", "line\nbreak", "é", None, 42, b"bytes"]
    )
    def test_other_incoming_ids_are_refused(self, value: object) -> None:
        """Attacker-controlled ids that are long, odd or not text are refused."""
        assert None is clean_request_id(value)


class TestRequestContextFilter:
    def test_outside_a_request_nothing_changes(self) -> None:
        """Without a bound context the record passes untouched."""
        r = record()
        before = dict(r.__dict__)
        assert RequestContextFilter().filter(r) is True
        assert before == r.__dict__

    def test_fields_reach_the_record(self) -> None:
        """Bound fields are added, never over an attribute the record has."""
        bind_request_context(request_id="r-6", name="not the logger")
        r = record()
        result = RequestContextFilter().filter(r)
        shipped = result if isinstance(result, logging.LogRecord) else r
        assert "r-6" == shipped.request_id  # type: ignore[attr-defined]
        assert "t.context" == shipped.name
        if sys.version_info >= (3, 12):
            # A copy goes to the handler; other handlers see the record as it was.
            assert shipped is not r
            assert "request_id" not in r.__dict__

    def test_context_left_on_a_django_request(self) -> None:
        """After the middleware returned, fields left on record.request still ship."""

        class Request:
            def __init__(self) -> None:
                self.logdna_context = {"request_id": "r-7"}

        r = record()
        r.request = Request()
        result = RequestContextFilter().filter(r)
        shipped = result if isinstance(result, logging.LogRecord) else r
        assert "r-7" == shipped.request_id  # type: ignore[attr-defined]


def failed(request_id: str) -> RuntimeError:
    """An exception that escaped a request, carrying its context as the ASGI middleware
    leaves it (remember_context)."""
    exc = RuntimeError(f"request {request_id} failed")
    remember_context(exc, {"request_id": request_id, "http_status": 500})
    return exc


def shipped_by_filter(r: logging.LogRecord) -> dict[str, Any]:
    """The attributes the handler gets from RequestContextFilter, beyond the record's."""
    before = set(r.__dict__)
    result = RequestContextFilter().filter(r)
    shipped = result if isinstance(result, logging.LogRecord) else r
    return {k: v for k, v in shipped.__dict__.items() if k not in before}


class TestContextOfTheHandledException:
    """Outside a request, a line logged in an ``except`` block that handles an exception
    escaped from one (Starlette's ``exception_handler(Exception)``) carries its context,
    with or without ``exc_info``."""

    def test_line_without_exc_info_in_the_except_block(self) -> None:
        """A plain error line logged while the request's exception is handled gets its
        context."""
        try:
            raise failed("r-8")
        except RuntimeError:
            added = shipped_by_filter(record())
        assert {"request_id": "r-8", "http_status": 500} == added

    def test_the_records_own_exception_wins(self) -> None:
        """A record that logs another exception gets that one's context, not the one
        being handled."""
        logged = failed("r-logged")
        try:
            raise failed("r-handled")
        except RuntimeError:
            r = record()
            r.exc_info = (RuntimeError, logged, None)
            added = shipped_by_filter(r)
        assert "r-logged" == added["request_id"]

    def test_unrelated_exception_adds_nothing(self) -> None:
        """Handling an exception that left no request adds nothing; neither does a line
        after the except block."""
        try:
            raise KeyError("not a request's")
        except KeyError:
            assert {} == shipped_by_filter(record())
        try:
            raise failed("r-9")
        except RuntimeError:
            pass
        assert {} == shipped_by_filter(record())
