"""The typed shape of ``Client.stats()``."""

from typing import Literal

from typing_extensions import NotRequired, TypedDict

__all__ = [
    "DROP_REASONS",
    "SPOOL_DROP_REASONS",
    "ClientStats",
    "DropReason",
    "DroppedLines",
    "LastError",
    "ToldReason",
    "said_of_failure",
]


class DroppedLines(TypedDict):
    """Lines lost, by reason (each 0 until it happens; the spool's with a spool)."""

    buffer_full: int  #: the buffer was full; the overflow policy chose these
    rejected: int  #: the service refused them (400, 413, 207), or refuses everything
    shutdown: int  #: still undelivered at the close or exit deadline
    after_close: int  #: logged after close()
    reentrant: int  #: logged from inside a line being logged, more than one level deep
    error: int  #: no line could be built
    spool_full: NotRequired[int]  #: with a spool: the spool folder was full
    spool_age: NotRequired[int]  #: with a spool: older than max_spool_age, unsent
    spool_damaged: NotRequired[int]  #: with a spool: in a damaged record of a segment


#: A reason a line can be dropped for, as the code names it where it counts one: a
#: misspelt reason is a type error there (``tests/test_stats.py`` holds it to
#: ``DroppedLines``, whose keys ``stats()`` shows).
DropReason = Literal[
    "buffer_full", "rejected", "shutdown", "after_close", "reentrant", "error",
    "spool_full", "spool_age", "spool_damaged",
]  # fmt: skip

#: What a drop-summary line tells: the drop reasons, and lines the service refused from
#: the spool (``stats()["replay_rejected"]``, not a drop reason: they were delivered to
#: it).
ToldReason = DropReason | Literal["replay_rejected"]

#: Every reason a line can be dropped for, in order (``stats()["dropped"]`` has each,
#: 0 until it happens); with a spool, ``SPOOL_DROP_REASONS`` too. The one list.
DROP_REASONS = tuple(k for k in DroppedLines.__annotations__ if k in DroppedLines.__required_keys__)
SPOOL_DROP_REASONS = tuple(
    k for k in DroppedLines.__annotations__ if k in DroppedLines.__optional_keys__
)


class LastError(TypedDict):
    """The last failed delivery attempt. Never holds the key, a URL or the server's text."""

    kind: str  #: "retry" (connection, timeout, 408/429/5xx), "auth", "too_large", ...
    status: int | None  #: the HTTP status; None for a connection-level failure
    when: float  #: epoch seconds


# ``LastError``'s kinds (the sender's ``Kind`` values) in the words of the exit's report.
_FAILURE_WORDS = {
    "auth": "the service refused the key",
    "retry": "the service was unreachable or busy",
    "too_large": "the service refused a body as too large",
    "bad_request": "the service refused a line",
    "partial": "the service refused lines of a batch, or did not confirm them stored",
    "unsupported_encoding": "the service refused the body's media type",
    "redirect": "the url answered with a redirect, which is never followed",
    "other": "the url answered with an error",
    "protocol": "the url does not answer in HTTP/1.1",
    "settings": "no request could be made with the settings (url, proxy, CA bundle)",
}


def said_of_failure(last: "LastError | None", now: float) -> str:
    """``last`` (``stats()["last_error"]``) in words for the report of lines lost at the
    process's end, with how long before ``now`` (epoch seconds) it failed; "" when no
    attempt failed. That report is often the only one a script shows, and said only how
    many lines were lost while ``last_error`` knew why (a refused key, a wrong url).
    Kind and status only, as ``last_error`` holds: never the key or the server's text."""
    if last is None:
        return ""
    words = _FAILURE_WORDS.get(last["kind"], last["kind"])
    status = f", HTTP {last['status']}" if last["status"] is not None else ""
    ago = max(0.0, now - last["when"])
    return f" (the last failed attempt, {ago:.1f} s before: {words}{status})"


class ClientStats(TypedDict):
    """What ``Client.stats()`` returns: a snapshot, safe to keep and compare."""

    queued: int  #: lines waiting or in flight
    queued_bytes: int  #: their bytes, with per-line overhead
    accepted: int  #: lines ever queued
    dropped: DroppedLines
    dropped_total: int
    filtered: int  #: lines before_send dropped (not losses)
    sender_alive: bool
    sent: int  #: lines the service accepted
    retries: int  #: failed attempts that were retried
    requests: int  #: requests made
    bytes_sent: int  #: request bytes (compressed) the service accepted
    last_error: LastError | None  #: None until a delivery attempt fails
    replay_rejected: int  #: lines from the spool the service refused
    cut: dict[str, int]  #: lines cut to the service's limits, by what: line, meta, app, level
    # With spool_dir set (docs/spool.md):
    spooled: NotRequired[int]  #: lines written to the spool
    replayed: NotRequired[int]  #: lines delivered from the spool
    quarantined: NotRequired[int]  #: damaged spool pieces moved aside
    salvaged: NotRequired[int]  #: lines after damage in a segment, queued again
    torn: NotRequired[int]  #: cut-short writes trimmed
    spool_bytes: NotRequired[int]  #: disk the spool folder takes
    spool_bytes_written: NotRequired[int]  #: bytes written to it so far
    spool_dropped: NotRequired[dict[str, int]]  #: the spool's drops by reason
    spool_enabled: NotRequired[bool]  #: False once the disk failed
