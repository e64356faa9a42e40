"""``logdna-client spool ls|verify|replay|purge``: look after a spool folder by hand.

- ``ls``: each segment with its size, age, lines waiting, destination (a short
  fingerprint of the ingestion key and URL it was written for, never the key)
  and whether it is the given key and URL's (which replay with them sends),
  and whether a live process holds it; the quarantine folder.
- ``verify``: checks every record's CRC; exit 1 when damage other than a torn
  tail is found.
- ``replay``: delivers what dead processes left for the given key and URL (a
  live process's segments are never touched, nor, without
  ``--any-destination``, other destinations' and format 1 ones, whose
  destination is not recorded), with the library's flags
  (``--key``, ``--url``...).
- ``purge``: lists what it would delete (segments no live process holds that
  were written for the given key and URL; with ``--any-destination``, every
  destination's and the quarantine files) and what it leaves; deletes with
  ``--yes``.

The folder is ``--spool-dir`` or ``LOGDNA_SPOOL_DIR``. Kept apart from
``_cli`` (which only registers these commands) so the spool's commands and
the others change independently.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from typing import Any, Protocol, TextIO
from urllib.parse import urlsplit

from ._config import ENV_VARS, Config, posts_otlp_logs
from ._devserver import isatty
from ._errors import ConfigurationError
from ._retry import Backoff
from ._sender import app_outcome, gzip_entries
from ._spool import Spool, destination
from ._spool._destination import belongs, short
from ._spool._inspect import (
    SegmentInfo,
    inspect_segment,
    quarantine_paths,
    remove_orphaned,
    segment_paths,
)
from ._transport import HTTPTransport, Kind

__all__ = ["register"]

PROG = "logdna-client"


class _Console(Protocol):
    out: TextIO
    err: TextIO

    def say(self, text: str = "", *, to: TextIO | None = None, flush: bool = False) -> None: ...

    def warn(self, text: str) -> None: ...


def register(commands: Any, library: argparse.ArgumentParser) -> None:
    """Add ``spool`` and its subcommands to the CLI's subparsers."""
    spool = commands.add_parser(
        "spool",
        help="inspect, verify, replay or purge a spool folder",
        description=(
            "Look after the folder where spool_dir keeps batches not yet delivered. "
            f"The folder is --spool-dir, or {ENV_VARS['spool_dir']}."
        ),
    )
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "--spool-dir", metavar="DIR", help=f"the spool folder (env {ENV_VARS['spool_dir']})"
    )
    # ls and purge: whose segments are an OTLP app's that takes its endpoint and headers
    # from OpenTelemetry's variables (its segments' destination counts those headers).
    otel = argparse.ArgumentParser(add_help=False)
    otel.add_argument(
        "--otel",
        action="store_true",
        help="the destination of an OTLP app that takes its endpoint and headers from "
        "OTEL_EXPORTER_OTLP_(LOGS_)ENDPOINT and _HEADERS, read here (instead of --url)",
    )
    actions = spool.add_subparsers(dest="spool_command", metavar="ACTION", required=True)
    ls = actions.add_parser(
        "ls",
        parents=[where, library, otel],
        help="list segments, lines waiting, their destination and who holds them",
        description="Each segment's destination is a short fingerprint of the ingestion key "
        "and URL it was written for (never the key); 'yours' marks those of --key and --url "
        f"(or {ENV_VARS['key']} and {ENV_VARS['url']}), which replay with them sends; "
        "format 1 segments do not record theirs: replay sends them only with "
        "--any-destination, given the key and URL they were written for.",
    )
    ls.set_defaults(func=_cmd_ls)
    verify = actions.add_parser(
        "verify",
        parents=[where],
        help="check every record's CRC (exit 1 on corruption)",
        description="Check every record. A torn tail (a write cut by a crash) is normal and "
        "reported; anything else is corruption: exit status 1.",
    )
    verify.set_defaults(func=_cmd_verify)
    replay = actions.add_parser(
        "replay",
        parents=[where, library],
        help="deliver what dead processes left in the folder",
        description="Send every batch no live process holds that was written for this key and "
        "URL, oldest first, and mark it done. Stops "
        "(exit 1) when the service keeps failing for --timeout seconds or refuses a batch, "
        "and at once when it refuses the key or does not speak HTTP/1.1; what is not "
        "delivered stays on disk. Exit status 1 too when the service refused some lines of "
        "a batch (those are not sent again) or damaged records were moved to quarantine.",
    )
    replay.add_argument(
        "--any-destination",
        action="store_true",
        help="also send segments written for other keys or URLs, and format 1 ones (which do "
        "not record theirs), with this key to this URL (into this account)",
    )
    replay.set_defaults(func=_cmd_replay)
    purge = actions.add_parser(
        "purge",
        parents=[where, library, otel],
        help="delete this key and URL's segments no live process holds",
        description="Delete the segments no live process holds that were written for --key "
        f"and --url (or {ENV_VARS['key']} and {ENV_VARS['url']}), as replay sends them; "
        "other keys' and URLs', format 1 ones (whose is not recorded) and the quarantine "
        "files are left unless --any-destination. Without --yes, only lists what would be "
        "deleted.",
    )
    purge.add_argument(
        "--any-destination",
        action="store_true",
        help="delete every destination's segments no live process holds (other apps' "
        "undelivered lines too), and the quarantine files",
    )
    purge.add_argument("--yes", action="store_true", help="really delete")
    purge.set_defaults(func=_cmd_purge)


def _folder(args: argparse.Namespace) -> str | None:
    folder = args.spool_dir or os.environ.get(ENV_VARS["spool_dir"])
    console: _Console = args.console
    if not folder:
        console.warn(f"{PROG} spool: no folder: pass --spool-dir or set {ENV_VARS['spool_dir']}")
        return None
    folder = os.path.expanduser(folder)
    if not os.path.isdir(folder):
        console.warn(f"{PROG} spool: {folder} is not a folder")
        return None
    return folder


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover - the loop returns


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"


#: Failures only other settings fix (as send and pipe give up on them at once).
_SETTINGS_WRONG = {
    Kind.AUTH: "the key was refused: check --key",
    Kind.PROTOCOL: "the server does not speak HTTP/1.1: check --url",
    Kind.SETTINGS: "no request can be made: check --url and the proxy settings",
}


def _config(args: argparse.Namespace, *, sending: bool = False) -> Config:
    """The options given; ``sending``: replay's, which speaks the LogDNA API only. ls and
    purge only tell a key and URL's segments apart: an OTLP endpoint's URL is taken as
    its app takes it (protocol="otlp"), which also decides which key is the app's."""
    if getattr(args, "otel", False):
        # Asked for (never guessed from the environment: OTel variables set pod-wide for
        # traces are no LogDNA app's, H202): the URL and headers they give, as an OTLP app
        # takes them with no url=.
        if args.url is not None:
            raise ConfigurationError("--otel and --url: give one of them", "url")
        return Config(key=args.key, key_file=args.key_file, protocol="otlp",
                      hostname=args.hostname, allow_insecure=args.allow_insecure)  # fmt: skip
    url = args.url if args.url is not None else os.environ.get(ENV_VARS["url"])
    otlp = not sending and isinstance(url, str) and posts_otlp_logs(urlsplit(url.strip()).path)
    return Config(key=args.key, key_file=args.key_file, url=args.url, hostname=args.hostname,
                  tags=args.tags, app=args.app, env=args.env,
                  allow_insecure=args.allow_insecure,
                  protocol="otlp" if otlp else "logdna")  # fmt: skip


@dataclass(frozen=True)
class _Whose:
    """A segment's destination as ls and purge see it, for the key and URL given."""

    shown: str  # ls's destination column (a short fingerprint: see short() on why it is safe)
    yours: bool  # written for the key and URL given: replay sends it, purge deletes it
    unmarked: bool  # format 1: whose it is is not recorded; sent only with --any-destination


def _whose(info: SegmentInfo, mine: bytes | None) -> _Whose:
    """``mine``: the destination of the key and URL given, None when none was."""
    header = info.header
    if header is None:
        return _Whose("-", False, False)
    if header.later:
        return _Whose(f"format {header.version}", False, False)
    if header.destination is None:
        return _Whose("format 1", False, True)
    if mine is None:
        return _Whose(short(header.destination), False, False)
    yours = belongs(header.destination, mine)
    return _Whose(short(header.destination) + (" yours" if yours else " other"), yours, False)


# An OTLP app's own backlog: replay speaks the LogDNA API only (and refuses its URL).
_SENT_BY_ITS_APP = "orphaned (its app sends it on its next start; replay cannot: OTLP)"


def _state(info: SegmentInfo, whose: _Whose, *, replayable: bool = True) -> str:
    """ls's state column; ``replayable``: whether replay sends the given URL's segments."""
    if not info.header_ok:
        return "not a spool segment"
    if info.header is not None and info.header.later:
        return "written by a later version of the library"
    if info.live:
        state = "held by a live process"
    elif whose.yours:
        state = "orphaned (replayable)" if replayable else _SENT_BY_ITS_APP
    elif whose.unmarked:
        state = "orphaned (format 1: replay --any-destination with its own key and URL)"
    else:
        state = "orphaned (replay with its own key and URL)"
    if info.damage is not None:
        state += ", torn tail" if info.damage.torn else ", DAMAGED"
    return state


def _cmd_ls(args: argparse.Namespace) -> int:
    console: _Console = args.console
    folder = _folder(args)
    if folder is None:
        return 2
    mine: bytes | None = None
    otlp = False
    try:
        config = _config(args)
        mine, otlp = destination(config), config.protocol == "otlp"
    except ConfigurationError:  # no key: the fingerprints are shown, unmatched
        if args.otel:  # (asked for: what is wrong with the OTel variables is said)
            raise
    now = time.time()
    total_lines = total_bytes = yours_lines = 0
    console.say(f"{'segment':<48} {'size':>10} {'age':>5} {'lines waiting':>13}  "
                f"{'destination':<15} state")  # fmt: skip
    for path in segment_paths(folder):
        try:
            info = inspect_segment(path)
        except OSError as exc:
            console.say(f"{os.path.basename(path):<48} unreadable: {exc.strerror or exc}")
            continue
        whose = _whose(info, mine)
        total_lines += info.pending_lines
        total_bytes += info.size
        yours_lines += info.pending_lines if whose.yours else 0
        console.say(
            f"{os.path.basename(path):<48} {_size(info.size):>10} {_age(now - info.mtime):>5} "
            f"{info.pending_lines:>13}  {whose.shown:<15} "
            f"{_state(info, whose, replayable=not otlp)}"
        )
    quarantined = quarantine_paths(folder)
    console.say(f"total: {_size(total_bytes)}, {total_lines} line(s) waiting")
    if mine is None:
        console.say(f"pass --key and --url (or set {ENV_VARS['key']}) to see which are yours")
    else:
        console.say(f"yours ({short(mine)}: this key and URL): {yours_lines} line(s) waiting")
    if quarantined:
        size = sum(os.path.getsize(p) for p in quarantined)
        console.say(f"quarantine: {len(quarantined)} file(s), {_size(size)}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    console: _Console = args.console
    folder = _folder(args)
    if folder is None:
        return 2
    corrupt = 0
    for path in segment_paths(folder):
        name = os.path.basename(path)
        try:
            info = inspect_segment(path)
        except OSError as exc:
            console.say(f"{name}: unreadable: {exc.strerror or exc}")
            corrupt += 1
            continue
        if not info.header_ok:
            console.say(f"{name}: bad header: not a spool segment")
            corrupt += 1
            continue
        if info.header is not None and info.header.later:
            console.say(f"{name}: written by a later version of the library (format "
                        f"{info.header.version}): not checked")  # fmt: skip
            continue
        line = f"{name}: {info.records} record(s) OK, {info.pending_lines} line(s) waiting"
        if info.damage is not None:
            if info.damage.torn:
                line += f"; torn tail at byte {info.damage.offset} (cut when next adopted)"
                if info.live:
                    line += " or a write in progress"
            else:
                line += (f"; CRC/format failure at byte {info.damage.offset}: "
                         f"{info.damage.reason}")  # fmt: skip
                if info.damaged_places > 1:
                    line += f", and in {info.damaged_places - 1} more place(s)"
                line += (f"; when adopted, {info.salvageable_lines} line(s) after the damage "
                         f"are re-queued, {info.damaged_bytes} damaged byte(s) go to "
                         f"quarantine")  # fmt: skip
                if info.lost_lines:
                    line += f", {info.lost_lines} line(s) in damaged records are lost"
                if info.uncounted:
                    line += ", lines in damaged bytes cannot be counted"
                corrupt += 1
        console.say(line)
    console.say("corruption found" if corrupt else "no corruption found")
    return 1 if corrupt else 0


def _cmd_purge(args: argparse.Namespace) -> int:
    console: _Console = args.console
    folder = _folder(args)
    if folder is None:
        return 2
    mine: bytes | None = None  # None: --any-destination
    if not args.any_destination:
        try:
            mine = destination(_config(args))
        except ConfigurationError as exc:
            if exc.option != "key":
                raise
            # Deleting every destination's is data loss for other apps: never by default.
            console.warn(f"{PROG} spool purge: whose segments? pass --key and --url (or set "
                         f"{ENV_VARS['key']} and {ENV_VARS['url']}) as for replay, or "
                         "--any-destination to delete every key's and URL's")  # fmt: skip
            return 2
    lines = files = left = left_lines = uncounted = 0
    for path in segment_paths(folder):
        try:
            info = inspect_segment(path)
        except OSError:
            continue
        if info.live:
            console.say(f"kept {os.path.basename(path)}: held by a live process")
            continue
        if info.header is not None and info.header.later:
            # Never read, so its lines cannot be counted nor known to be anyone's: left
            # alone, as by replay and adoption (this library deleted it as "0 lines").
            console.say(f"kept {os.path.basename(path)}: written by a later version of the "
                        f"library (format {info.header.version}); its lines are not counted "
                        "here: that version's spool purge deletes it")  # fmt: skip
            continue
        if mine is not None and not _whose(info, mine).yours:
            left, left_lines = left + 1, left_lines + info.pending_lines
            continue
        if args.yes and not remove_orphaned(path):
            continue
        files += 1
        lines += info.pending_lines
        uncounted += not info.header_ok
    # Damaged bytes do not say whose they were: deleted only with every destination's.
    quarantined = quarantine_paths(folder)
    if mine is None:
        for path in quarantined:
            if args.yes:
                os.unlink(path)
            files += 1
    verb = "deleted" if args.yes else "would delete (pass --yes)"
    unknown = f" ({uncounted} not readable as a segment: lines not counted)" if uncounted else ""
    console.say(f"{verb}: {files} file(s), {lines} line(s) never delivered{unknown}")
    if left:
        console.say(f"left {left} segment(s), {left_lines} line(s), not written for this key "
                    "and URL (other keys' or URLs', format 1 ones whose is not recorded, or "
                    "not readable as segments): spool ls shows them; --any-destination "
                    "deletes every destination's")  # fmt: skip
    if mine is not None and quarantined:
        console.say(f"left {len(quarantined)} quarantine file(s) (whose is not recorded; "
                    "--any-destination deletes them)")  # fmt: skip
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    console: _Console = args.console
    folder = _folder(args)
    if folder is None:
        return 2
    config = _config(args, sending=True)
    spool = Spool.open(
        folder,
        max_bytes=1 << 50,  # replay drops nothing for space: the folder is already as it is
        max_age=config.max_spool_age,
        sync=config.spool_sync,
        on_trouble=lambda kind, message: console.warn(message),
        destination=destination(config),
        adopt_any=args.any_destination,
    )
    transport = HTTPTransport(config)
    backoff = Backoff(cap=min(config.retry_max_backoff, max(0.5, args.timeout / 4)))
    progress = isatty(console.err)
    # Of every segment to replay, not only those held (MAX_ADOPTED) now.
    waiting = spool.waiting_lines() if progress else 0
    sent = rejected = 0
    failing_since: float | None = None
    attempt = 0
    status = 0
    try:
        while (batch := spool.next_replay_batch(config.max_batch_bytes)) is not None:
            # A failing streak counts from the start of its first request (H206: a hanging
            # service took two request_timeouts, 30 s, to give up after "3 s of failures").
            # No request is cut short by --timeout: a slow service's answer that came
            # after the cut would leave stored lines on disk, sent again (H208).
            started = time.monotonic()
            outcome = transport.send(
                gzip_entries(batch.entries), gzipped=True, timeout=config.request_timeout
            )
            if outcome.kind in (Kind.OK, Kind.PARTIAL):
                delivered, refused = app_outcome(list(batch.entries), outcome)
                spool.ack(batch.id, delivered)
                sent, rejected = sent + delivered, rejected + refused
                failing_since, attempt = None, 0
                if progress:  # one line, rewritten in place
                    console.err.write(f"\rreplayed {sent + rejected}/{waiting} line(s)")
                    console.err.flush()
                continue
            spool.release(batch.id)
            detail = f"HTTP {outcome.status} {outcome.detail}" if outcome.status else outcome.detail
            if outcome.kind in (Kind.BAD_REQUEST, Kind.TOO_LARGE, Kind.UNSUPPORTED_ENCODING):
                console.warn(f"{PROG} spool replay: the service refused a batch ({detail}); "
                             f"it stays on disk (spool purge drops it)")  # fmt: skip
                status = 1
                break
            if outcome.kind in _SETTINGS_WRONG:  # retrying until --timeout cannot help
                console.warn(f"{PROG} spool replay: {_SETTINGS_WRONG[outcome.kind]} ({detail}); "
                             f"the lines stay on disk")  # fmt: skip
                status = 1
                break
            now = time.monotonic()
            failing_since = started if failing_since is None else failing_since
            failing = now - failing_since
            if failing >= args.timeout:
                console.warn(f"{PROG} spool replay: giving up after {failing:.1f} s of "
                             f"failures ({detail}); the rest stays on disk")  # fmt: skip
                status = 1
                break
            attempt += 1
            wait = backoff.delay(attempt, outcome.retry_after)
            if outcome.retry_after is not None:
                # Honoured whole (the backoff's cap is a quarter of --timeout: H209, a
                # Retry-After of 2 s was answered after 0.75 s), or given up at once.
                wait = max(wait, outcome.retry_after)
                if wait >= args.timeout - failing:
                    console.warn(f"{PROG} spool replay: giving up after {failing:.1f} s of "
                                 f"failures ({detail}; it asks to wait {wait:.1f} s); the "
                                 f"rest stays on disk")  # fmt: skip
                    status = 1
                    break
            time.sleep(min(wait, args.timeout - failing))
    finally:
        spool.close()
        transport.close()
        if progress and sent + rejected:
            console.say(to=console.err)
    dropped = {reason: n for reason, n in spool.dropped.items() if n}
    if rejected:
        dropped["rejected"] = rejected  # as stats() names it
        # The service refused lines (a 207, or a 400 down to single lines): they are not
        # delivered, and `replay && purge` must not go on as if they had been.
        status = 1
    console.say(
        f"replayed {sent} line(s) from {folder}" + (f"; dropped {dropped}" if dropped else "")
    )
    if spool.refused:
        # Said as it was found (on_trouble): segments it may not open were not sent, and
        # `replay && purge` must not go on as if all had been.
        status = 1
    if spool.quarantined:
        # Said as it was found (on_trouble); the status says it too: the damaged records'
        # lines were not sent, and `replay && purge` must not go on as if all had been.
        console.say(f"moved {spool.quarantined} damaged piece(s) of segments to the "
                    "quarantine folder, not sent (spool ls shows its size); "
                    f"{spool.salvaged} line(s) found whole after the damage were "
                    "re-queued")  # fmt: skip
        status = 1
    if spool.others:
        console.say(f"left {spool.others} segment(s) written for other keys or URLs, or by "
                    "format 1, which does not record them (spool ls shows them; "
                    "--any-destination sends them with this key)")  # fmt: skip
    return status
