"""``logdna-client devserver``: the local ingest server in the foreground, with its tail."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import signal
import threading
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any, TextIO

import orjson

from ._cli_common import (
    PROG,
    _Console,
    _level_rank,
    _self_command,
)
from ._config import ENV_VARS
from .devserver import DevServer, isatty


@dataclasses.dataclass(frozen=True)
class LineFilter:
    """What the devserver shows and stores: minimum level, apps, a text match."""

    level: str | None = None
    apps: frozenset[str] = frozenset()
    grep: str | None = None

    @property
    def active(self) -> bool:
        return self.level is not None or bool(self.apps) or bool(self.grep)

    def describe(self) -> str:
        parts = []
        if self.level is not None:
            parts.append(f"level >= {self.level}")
        if self.apps:
            parts.append("app " + " or ".join(sorted(self.apps)))
        if self.grep:
            parts.append(f"text contains {self.grep!r}")
        return ", ".join(parts)

    def matches(self, line: Mapping[str, Any]) -> bool:
        """Whether a received line passes every filter."""
        if self.level is not None:
            minimum = _level_rank(self.level)
            rank = _level_rank(str(line.get("level") or "INFO").upper())
            # (A line's level the filter cannot rank ranks as INFO, as the service's own.)
            if (20 if rank is None else rank) < (20 if minimum is None else minimum):
                return False
        if self.apps and str(line.get("app") or line.get("file") or "") not in self.apps:
            return False
        if self.grep:
            text = str(line.get("line", ""))
            meta = line.get("meta")
            if meta is not None and not isinstance(meta, str):
                meta = orjson.dumps(meta).decode()
            if self.grep not in text and (meta is None or self.grep not in meta):
                return False
        return True


def _want_color(flag: bool | None, stream: TextIO) -> bool:
    if flag is not None:
        return flag
    return "NO_COLOR" not in os.environ and isatty(stream)


def _cmd_devserver(args: argparse.Namespace) -> int:
    console: _Console = args.console
    out = console.out
    notices = console.err if args.json else out
    rate: float = args.fail_rate if args.fail_rate is not None else 0.0
    if args.status is not None and args.fail_rate is None:
        rate = 1.0
    if args.retry_after is not None and rate == 0.0:
        console.warn(f"{PROG} devserver: --retry-after needs --fail-rate or --status")
        return 2
    line_filter = LineFilter(
        level=args.level, apps=frozenset(args.app or ()), grep=args.grep or None
    )
    if args.store:
        try:
            open(args.store, "ab").close()  # say so now, before listening, when it cannot be
        except OSError as exc:
            console.warn(f"{PROG} devserver: cannot open {args.store!r}: {exc.strerror}")
            return 1
    server = DevServer(
        args.host,
        args.port,
        key=args.key,
        out=out,
        json_output=args.json,
        color=_want_color(args.color, out),
        store=args.store or None,
        keep_lines=False,
        show=line_filter.matches if line_filter.active else None,
        notices=console.err,
        page_lines=args.page_lines,
        max_concurrent_bodies=args.max_concurrent_bodies,
    )
    status = args.status if args.status is not None else 503
    if rate > 0.0:
        server.set_fail_rate(rate, status, retry_after=args.retry_after)
    if args.delay:
        server.set_delay(args.delay)
    try:
        server.start()
    except OSError as exc:
        console.warn(
            f"{PROG} devserver: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}"
        )
        return 1
    stop = threading.Event()
    # Handled explicitly: a shell starting us in the background ignores SIGINT.
    previous = {
        signum: _on_signal(signum, lambda signum, frame: stop.set())
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        auth = "key required" if args.key is not None else "any key accepted"
        banner = [f"logdna_client devserver listening on {server.url} ({auth})"]
        banner.append(f"  live tail:   {server.page_url}")
        # A command that runs where this one did: the script is not on PATH in a venv
        # that was never activated (the README's Quickstart).
        send = f"{_self_command()} send 'hello'"
        banner.append(f"  send to it:  {ENV_VARS['url']}={server.url} {send}")
        if line_filter.active:
            banner.append(f"  showing:     {line_filter.describe()}")
        fault_parts = []
        if rate > 0.0:
            fault = f"{rate:.0%} of requests answered {status}"
            if args.retry_after is not None:
                fault += f" (Retry-After: {args.retry_after})"
            fault_parts.append(fault)
        if args.delay:
            fault_parts.append(f"{args.delay:g} s delay per request")
        if fault_parts:
            banner.append(f"  faults:      {', '.join(fault_parts)}")
        if args.store:
            banner.append(f"  storing to:  {args.store}")
        banner.append("  Ctrl-C to stop")
        console.say("\n".join(banner), to=notices, flush=True)
        # A bounded wait lets Ctrl-C through on every platform.
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            server.stop()
        for signum, handler in previous.items():
            _restore_signal(signum, handler)
    shown = f", {server.shown} shown" if line_filter.active else ""
    with contextlib.suppress(OSError, ValueError):
        console.say(
            f"devserver stopped: {server.line_count} lines in {server.request_count} "
            f"requests{shown}",
            to=notices,
            flush=True,
        )
    return 0


_SignalHandler = Callable[[int, FrameType | None], Any] | int | None


def _on_signal(signum: int, handler: Callable[[int, FrameType | None], Any]) -> _SignalHandler:
    """Install a handler when we can (main thread only); return the previous one."""
    try:
        return signal.signal(signum, handler)
    except (ValueError, OSError):
        return None


def _restore_signal(signum: int, previous: _SignalHandler) -> None:
    if previous is None:
        return
    with contextlib.suppress(ValueError, OSError):
        signal.signal(signum, previous)
