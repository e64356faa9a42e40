"""``logdna-client send``: one line, and whether it was delivered; what ``pipe`` shares."""

from __future__ import annotations

import argparse
import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any, cast

import orjson

from ._cli_common import (
    PROG,
    _Console,
)
from ._client import Client
from ._report import KIND_ATTR
from ._report import logger as _library_logger
from ._sender import MISCONFIGURED_KINDS

# -- send and pipe -----------------------------------------------------------------


class _Trouble(logging.Handler):
    """Collects what the library reports on its own logger, to explain a failure.

    ``fatal`` is set when retrying cannot help: the sender's misconfiguration reports
    (a refused key, a server that does not speak HTTP/1.1 or takes no JSON, settings no
    request can be made with), or the service rejected a line.
    """

    #: The report kinds that set ``fatal``.
    FATAL_KINDS = MISCONFIGURED_KINDS | {"rejected"}

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        #: What the library said of lines it left in the spool ("N line(s) left in the
        #: spool at DIR for the next process"): said at the close, to us alone.
        self.spool_left: list[str] = []
        #: Why the spool configured is off ("the spool folder DIR failed (...)"), if it is.
        self.spool_off: list[str] = []
        self.fatal = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:
            return
        kind = getattr(record, KIND_ATTR, None)
        # Of the spool: said apart, not as the reason a line was not delivered.
        if kind == "spool-left":
            self.spool_left.append(message.removeprefix("logdna_client: "))
            return
        if kind == "spool-disabled":
            # "...; spooling is off, lines are kept in memory only": true while we ran.
            self.spool_off.append(message.removeprefix("logdna_client: ").split(", lines")[0])
            return
        self.messages.append(message)
        if kind in self.FATAL_KINDS:
            self.fatal.set()

    def last(self) -> str:
        if not self.messages:
            return ""
        message = self.messages[-1].removeprefix("logdna_client: ")
        # "...; retrying with backoff, lines are kept" is true of the library, not of us.
        return message.split("; retrying", 1)[0].split(". Lines are kept", 1)[0]


@contextlib.contextmanager
def _watch_library() -> Iterator[_Trouble]:
    """Listen to the library's own logger while a command runs."""
    trouble = _Trouble()
    _library_logger.addHandler(trouble)
    try:
        yield trouble
    finally:
        _library_logger.removeHandler(trouble)


def _client_from(args: argparse.Namespace) -> Client:
    """A Client from the shared flags; None for an absent flag lets Config use env vars."""
    options: dict[str, Any] = {
        "key": args.key,
        "key_file": args.key_file,
        "url": args.url,
        "app": args.app,
        "env": args.env,
        "hostname": args.hostname,
        "tags": args.tags,
        "allow_insecure": args.allow_insecure,
        "shutdown_timeout": args.timeout,
    }
    if args.flush_interval is not None:
        options["flush_interval"] = args.flush_interval
    return Client(**options)


def _deliver(client: Client, trouble: _Trouble, timeout: float) -> bool:
    """Wait for delivery up to ``timeout``; give up early when retrying cannot help."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if client.flush(timeout=max(0.0, min(left, 0.25))):
            return True
        if left <= 0 or trouble.fatal.is_set():
            return False


def _explain(what: str, client: Client, trouble: _Trouble, timeout: float) -> str:
    reason = trouble.last()
    if not reason:
        reason = f"no answer from {client.config.url}"
    if trouble.fatal.is_set():  # given up at once: the timeout had nothing to do with it
        return f"{PROG} {what}: not delivered: {reason}"
    return f"{PROG} {what}: not delivered within {timeout:g} s: {reason}"


def _say_what_close_left(
    what: str, client: Client, trouble: _Trouble, console: _Console, *, drops: bool
) -> bool:
    """Once ``client`` is closed: say on stderr what the library said only to ``trouble``
    (our handler on its logger, which stands in for stderr while a command runs): why
    the spool is off, the lines it left in the spool, and with ``drops`` the lines it
    dropped (a full buffer, a refusal, the end of the wait), whose count ``_explain``
    does not give and which a flush that waited for the rest does not see. True when
    lines were dropped."""
    stats = client.stats()
    by_reason = cast(Mapping[str, int], stats["dropped"])  # (a TypedDict of ints)
    dropped = {reason: n for reason, n in by_reason.items() if n}
    rejected = stats["replay_rejected"]
    if rejected:
        dropped["rejected from the spool"] = rejected
    if drops and dropped:
        reasons = ", ".join(f"{reason} {n}" for reason, n in dropped.items())
        console.warn(
            f"{PROG} {what}: {sum(dropped.values())} line(s) were dropped, not confirmed delivered "
            f"({reasons})"
        )
    for off in trouble.spool_off[:1]:
        console.warn(f"{PROG} {what}: {off}")
    for left in trouble.spool_left:
        console.warn(f"{PROG} {what}: {left} ('{PROG} spool replay' sends them now)")
    return bool(dropped)


def _cmd_send(args: argparse.Namespace) -> int:
    console: _Console = args.console
    meta: dict[str, Any] | None = None
    if args.meta is not None:
        try:
            parsed = orjson.loads(args.meta)
        except orjson.JSONDecodeError as exc:
            console.warn(f"{PROG} send: --meta is not valid JSON: {exc}")
            return 2
        if not isinstance(parsed, dict):
            console.warn(f"{PROG} send: --meta must be a JSON object such as '{{\"k\": 1}}'")
            return 2
        meta = parsed
    if not args.text:
        console.warn(f"{PROG} send: the text is empty")
        return 2
    with _watch_library() as trouble:
        client = _client_from(args)
        try:
            if not client.log(args.text, level=args.level, meta=meta):
                console.warn(
                    f"{PROG} send: the line was not queued ({trouble.last() or 'filtered'})"
                )
                return 1
            if _deliver(client, trouble, args.timeout):
                return 0
            console.warn(_explain("send", client, trouble, args.timeout))
            return 1
        finally:
            client.close(timeout=0.0)
            _say_what_close_left("send", client, trouble, console, drops=False)
