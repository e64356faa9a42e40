"""Tests for _stats: the reasons a line is dropped for, and the last failed attempt in the
words of the exit's loss report (the kinds one by one are in test_exit_report_cause)."""

from __future__ import annotations

from typing import Any, cast, get_args

from logdna_client._stats import (
    DROP_REASONS,
    SPOOL_DROP_REASONS,
    DroppedLines,
    DropReason,
    LastError,
    said_of_failure,
)

KEY = "0123456789abcdef0123456789abcdef"


def failed(kind: str, status: int | None, when: float) -> LastError:
    return {"kind": kind, "status": status, "when": when}


class TestDropReasons:
    def test_every_reason_in_order_spool_ones_apart(self) -> None:
        """``stats()["dropped"]`` always has the six reasons, in the documented order; the
        spool's three only come with a spool (the docs' list: test_claims_docs)."""
        expected = ("buffer_full", "rejected", "shutdown", "after_close", "reentrant", "error")
        assert expected == DROP_REASONS
        assert ("spool_full", "spool_age", "spool_damaged") == SPOOL_DROP_REASONS

    def test_the_lists_cover_the_typed_dict(self) -> None:
        """No reason the type names is left out of both lists, or in both."""
        assert set(DroppedLines.__annotations__) == set(DROP_REASONS) | set(SPOOL_DROP_REASONS)
        assert not set(DROP_REASONS) & set(SPOOL_DROP_REASONS)

    def test_the_type_of_a_reason_is_the_typed_dicts_keys(self) -> None:
        """``DropReason``, the type every place that counts a drop takes (a misspelt
        reason is a type error there), names exactly ``stats()``'s reasons, in order."""
        assert DROP_REASONS + SPOOL_DROP_REASONS == get_args(DropReason)

    def test_last_error_has_no_room_for_text(self) -> None:
        """The last error holds its kind, status and time, and no field where the key, a
        URL or the server's answer could go."""
        assert {"kind", "status", "when"} == set(LastError.__annotations__)


class TestSaidOfFailure:
    def test_the_whole_sentence(self) -> None:
        """A bracket after the report's count: the failure in words, its HTTP status, and
        how long before it came, to a tenth of a second."""
        said = said_of_failure(failed("redirect", 301, 1000.0), 1002.54)
        expected = (
            " (the last failed attempt, 2.5 s before:"
            " the url answered with a redirect, which is never followed, HTTP 301)"
        )
        assert expected == said

    def test_a_clock_set_back_says_no_time_not_negative(self) -> None:
        """If the wall clock went back since the failure, it came 0.0 s before, never a
        negative time."""
        said = said_of_failure(failed("auth", 401, 500.0), 400.0)
        assert "0.0 s before" in said
        assert "-" not in said

    def test_an_unknown_kind_is_said_by_its_name(self) -> None:
        """A kind the words do not know yet (a newer sender) is named as is, not lost
        and not an error."""
        said = said_of_failure(failed("tls_downgrade", None, 5.0), 5.0)
        assert " (the last failed attempt, 0.0 s before: tls_downgrade)" == said

    def test_only_kind_and_status_are_said(self) -> None:
        """Whatever else the dict holds (a server's text with the key in it) is never said."""
        last = cast(Any, dict(failed("bad_request", 400, 1.0)))
        last["detail"] = f"bad key {KEY} at https://logs.example/ingest"
        said = said_of_failure(cast(LastError, last), 2.0)
        assert KEY not in said
        assert "logs.example" not in said
        assert "the service refused a line, HTTP 400" in said
