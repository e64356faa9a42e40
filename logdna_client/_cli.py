"""The command line: ``python -m logdna_client CMD`` and the ``logdna-client`` script.

Commands:

- ``devserver``: a local ingest server with a live tail, filters, a store
  file and fault injection, in the foreground until Ctrl-C.
- ``demo``: the devserver in-process plus a few realistic lines logged
  through ``LogDNAHandler``; shows what arrived. Needs no key, no network.
- ``send TEXT``: ship one line and say whether it was delivered.
- ``pipe [-- CMD ARGS...]``: run a command (or read stdin), pass its output
  through unchanged and ship stdout lines as INFO, stderr lines as ERROR.

``send`` and ``pipe`` take the library's options as flags and fall back to the
same environment variables as the library (``LOGDNA_INGESTION_KEY``,
``LOGDNA_URL``, ...): an absent flag is passed on as None, so ``Config``
decides. The key is never printed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import FrameType
from typing import IO, Any, TextIO

import orjson

from ._cli_spool import register as _register_spool
from ._client import Client
from ._config import ENV_VARS
from ._errors import ConfigurationError
from ._report import logger as _library_logger
from ._version import __version__
from .devserver import DEFAULT_PAGE_LINES, MAX_CONCURRENT_BODIES, DevServer, isatty

__all__ = ["DEFAULT_DEVSERVER_PORT", "build_parser", "main"]

#: The devserver's default port: fixed, so ``LOGDNA_URL`` can be set once.
DEFAULT_DEVSERVER_PORT = 7080

PROG = "logdna-client"

# Level ranks for the devserver's --level filter. The service takes any level
# name; these are the ones clients commonly send. Unknown names rank as INFO.
_LEVEL_RANKS = {
    "TRACE": 5, "DEBUG": 10, "FINE": 10, "INFO": 20, "NOTICE": 25,
    "WARN": 30, "WARNING": 30, "ERR": 40, "ERROR": 40,
    "CRITICAL": 50, "SEVERE": 50, "FATAL": 50, "ALERT": 50, "EMERGENCY": 50, "PANIC": 50,
}  # fmt: skip

# pipe: a line longer than this without a newline is shipped in pieces, so a
# child that never writes "\n" cannot grow our memory without bound.
_MAX_PENDING_LINE = 1024 * 1024
_READ_SIZE = 65536
# pipe: once the command exited, how long its pipes may stay silent (held open
# by something it started in the background) before we stop reading them.
_AFTER_EXIT_QUIET = 1.0


# -- argument parsing ------------------------------------------------------------


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0:  # also rejects NaN
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction 0..1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, got {text!r}")
    return value


def _status(text: str) -> int:
    if not text.isdigit() or not 100 <= int(text) <= 599:
        raise argparse.ArgumentTypeError(f"expected an HTTP status code 100..599, got {text!r}")
    return int(text)


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0..65535, got {text!r}")
    return int(text)


def _level_name(text: str) -> str:
    name = text.strip().upper()
    if not name:
        raise argparse.ArgumentTypeError("expected a level name such as INFO or ERROR")
    return name


def _library_flags() -> argparse.ArgumentParser:
    """Flags shared by send and pipe; absent ones stay None so env vars apply."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("library options (fall back to environment variables)")
    group.add_argument(
        "--key",
        help=f"ingestion key (env {ENV_VARS['key']}; prefer the env var: flags show in `ps`)",
    )
    group.add_argument(
        "--url",
        help=f"ingest URL (env {ENV_VARS['url']}; default https://logs.logdna.com/logs/ingest)",
    )
    group.add_argument("--app", help=f"app name on every line (env {ENV_VARS['app']})")
    group.add_argument("--env", help=f"environment name on every line (env {ENV_VARS['env']})")
    group.add_argument(
        "--hostname", help=f"hostname sent with each request (env {ENV_VARS['hostname']})"
    )
    group.add_argument("--tags", help=f"comma-separated tags (env {ENV_VARS['tags']})")
    group.add_argument(
        "--flush-interval",
        type=_positive_float,
        metavar="SECONDS",
        help="how often queued lines are sent (default 1)",
    )
    group.add_argument(
        "--timeout",
        type=_positive_float,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for delivery before giving up (default 10)",
    )
    return parent


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Ship logs to LogDNA / Mezmo from the shell, and run a local ingest server.",
        epilog=f"Run '{PROG} CMD --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="CMD")
    library = _library_flags()

    dev = commands.add_parser(
        "devserver",
        help="run a local ingest server with a live tail of what arrives",
        description=(
            "Run a local LogDNA/Mezmo ingest server in the foreground, print every line it "
            "receives and show them live on a web page at its address "
            f"(http://127.0.0.1:{DEFAULT_DEVSERVER_PORT}/). Point an application at it with "
            f"{ENV_VARS['url']}=http://127.0.0.1:{DEFAULT_DEVSERVER_PORT}/logs/ingest. "
            "Ctrl-C stops it."
        ),
    )
    dev.add_argument(
        "--host",
        default="127.0.0.1",
        help=(
            "address to listen on (default %(default)s: this machine only, the live tail page "
            "included; 0.0.0.0 serves every network)"
        ),
    )
    dev.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_DEVSERVER_PORT,
        help="port to listen on; 0 picks a free one (default %(default)s)",
    )
    dev.add_argument("--key", help="require this ingestion key (401/403 otherwise); never printed")
    dev.add_argument(
        "--json",
        action="store_true",
        help="print JSON lines (with the request's hostname, tags, ip, mac) instead of the tail",
    )
    dev.add_argument(
        "--store", metavar="FILE", help="also append each shown line to FILE (JSON Lines)"
    )
    dev.add_argument(
        "--color",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="colour the tail (default: when stdout is a terminal and NO_COLOR is unset)",
    )
    shown = dev.add_argument_group(
        "filters (they choose what is shown and stored; every line is still accepted)"
    )
    shown.add_argument(
        "--level", type=_level_name, metavar="LEVEL", help="show lines at this level or above"
    )
    shown.add_argument(
        "--app", action="append", metavar="APP", help="show lines of this app (repeatable)"
    )
    shown.add_argument("--grep", metavar="TEXT", help="show lines whose text or meta contains TEXT")
    dev.add_argument(
        "--page-lines",
        type=_positive_int,
        default=DEFAULT_PAGE_LINES,
        metavar="N",
        help="how many of the newest lines the web page keeps (default %(default)s)",
    )
    dev.add_argument(
        "--max-concurrent-bodies",
        type=_positive_int,
        default=MAX_CONCURRENT_BODIES,
        metavar="N",
        help="request bodies read and decoded at once; the rest wait (default %(default)s)",
    )
    faults = dev.add_argument_group("fault injection (for testing clients)")
    faults.add_argument(
        "--fail-rate",
        type=_rate,
        metavar="R",
        help="answer a fraction R (0..1) of ingest requests with --status, storing nothing",
    )
    faults.add_argument(
        "--status",
        type=_status,
        metavar="N",
        help="status code of injected failures (default 503; alone it fails every request)",
    )
    faults.add_argument(
        "--retry-after",
        metavar="S",
        help="send 'Retry-After: S' with injected failures",
    )
    faults.add_argument(
        "--delay",
        type=_positive_float,
        metavar="S",
        help="wait S seconds before answering each ingest request",
    )
    dev.set_defaults(func=_cmd_devserver)

    demo = commands.add_parser(
        "demo",
        help="log a few lines through the handler into a local server and show what arrived",
        description=(
            "Start a local ingest server on a free port, log a handful of realistic lines through "
            "logging and LogDNAHandler (levels, extra= meta, a redacted password, an exception), "
            "and show what the server received. Needs no key and no network."
        ),
    )
    demo.add_argument(
        "--color",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="colour the tail (default: when stdout is a terminal and NO_COLOR is unset)",
    )
    demo.add_argument(
        "--open",
        action="store_true",
        help="then open the live tail page in a browser and keep the server up until Ctrl-C",
    )
    demo.set_defaults(func=_cmd_demo)

    send = commands.add_parser(
        "send",
        parents=[library],
        help="send one line",
        description=(
            "Send one line and wait until it is delivered. Exit status 0 when delivered, 1 when "
            "not (within --timeout), 2 for a bad option."
        ),
        epilog=f"example: {PROG} send 'deploy finished' --app deploy --meta '{{\"sha\": \"abc\"}}'",
    )
    send.add_argument("text", help="the line to send")
    send.add_argument("--level", default="INFO", type=_level_name, help="level (default INFO)")
    send.add_argument("--meta", metavar="JSON", help="meta as a JSON object")
    send.set_defaults(func=_cmd_send)

    pipe = commands.add_parser(
        "pipe",
        parents=[library],
        help="run a command (or read stdin) and ship its output lines",
        usage=f"{PROG} pipe [options] [-- CMD [ARGS...]]",
        description=(
            "With a command: run it, pass its stdout and stderr through unchanged, ship each "
            "stdout line at --stdout-level and each stderr line at --stderr-level, and exit with "
            "the command's exit status (128+N when a signal N ended it). SIGINT and SIGTERM are "
            "passed on to the command. Without a command: read stdin, echo it to stdout and ship "
            "each line at --stdout-level (make 2>&1 | logdna-client pipe --app build)."
        ),
        epilog=f"example: {PROG} pipe --app web -- python app.py",
    )
    pipe.add_argument(
        "--stdout-level", default="INFO", type=_level_name, help="level of stdout lines (INFO)"
    )
    pipe.add_argument(
        "--stderr-level", default="ERROR", type=_level_name, help="level of stderr lines (ERROR)"
    )
    pipe.add_argument("argv", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    pipe.set_defaults(func=_cmd_pipe)
    _register_spool(commands, library)
    return parser


# The library's messages name its keyword arguments; on the command line the flags are meant.
_PYTHON_WORDS = (
    ("pass key=, key_file= or set", "pass --key or set"),
    ("looked at key=", "looked at --key"),
    (", or pass allow_insecure=True if you really mean it", ""),
)


def _in_flags(exc: ConfigurationError) -> str:
    """A ConfigurationError's message in the command line's words."""
    text = str(exc)
    for python, flags in _PYTHON_WORDS:
        text = text.replace(python, flags)
    option = exc.option
    if option and text.startswith(option + ":"):
        text = "--" + option.replace("_", "-") + text[len(option) :]
    return text


def _self_command() -> str:
    """How the user can run this command line again: the script when it is on PATH,
    else this interpreter with -m (a venv's bin is often not on PATH, as after the
    README's Quickstart)."""
    if shutil.which(PROG):
        return PROG
    return f"{shlex.quote(sys.executable)} -m logdna_client"


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run the command line; return the exit status.

    ``out`` and ``err`` are where the commands write (the terminal by default).
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    after_dashes: list[str] | None = None
    if args_list[:1] == ["pipe"] and "--" in args_list:
        # Everything after "--" is the command, even words that look like our flags.
        cut = args_list.index("--")
        args_list, after_dashes = args_list[:cut], args_list[cut + 1 :]
    parser = build_parser()
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    if args.command == "pipe":
        if after_dashes is not None and args.argv:
            parser.error("pipe: give the command after '--' only")
        args.argv = after_dashes if after_dashes is not None else list(args.argv)
    func: Callable[[argparse.Namespace], int] = args.func
    console = args.console = _Console(
        sys.stdout if out is None else out, sys.stderr if err is None else err
    )
    try:
        return int(func(args))
    except ConfigurationError as exc:
        console.warn(f"{PROG} {args.command}: {_in_flags(exc)}")
        return 2
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    except BrokenPipeError:
        # Our stdout was closed early (| head): no traceback, and none at exit
        # either when Python flushes stdout.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 1


# -- devserver -------------------------------------------------------------------


class _Console:
    """Where a command writes: what it shows (``out``) and what went wrong (``err``).

    ``main`` points both at the terminal; the commands write only through this,
    so their output goes wherever ``main`` was told.
    """

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out = out
        self.err = err

    def say(self, text: str = "", *, to: TextIO | None = None, flush: bool = False) -> None:
        """One line (or several) to ``out``, or to ``to``."""
        stream = self.out if to is None else to
        stream.write(text + "\n")
        if flush:
            stream.flush()

    def warn(self, text: str) -> None:
        """A complaint, to ``err`` at once."""
        self.say(text, to=self.err, flush=True)


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
            minimum = _LEVEL_RANKS.get(self.level, 20)
            level = str(line.get("level") or "INFO").upper()
            if _LEVEL_RANKS.get(level, 20) < minimum:
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
        banner.append(f"  send to it:  {ENV_VARS['url']}={server.url} {PROG} send 'hello'")
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


# -- demo ------------------------------------------------------------------------


def _demo_lines(log: logging.Logger) -> int:
    """Log what a small web shop might; return how many lines were logged."""
    log.info("shop started on port %d", 8000, extra={"version": "1.4.2", "workers": 4})
    log.debug("cache warmed", extra={"entries": 1250, "duration_ms": 84})
    log.info(
        "user %s logged in",
        "ada",
        extra={"user_id": 42, "password": "hunter2", "ip": "203.0.113.7"},
    )
    log.info(
        "order %s placed", "A-1001", extra={"order_id": "A-1001", "user_id": 42, "total": 59.9}
    )
    log.info(
        "GET /api/orders/A-1001 200",
        extra={"method": "GET", "status": 200, "duration_ms": 37},
    )
    log.warning(
        "payment provider slow: %d ms", 2350, extra={"provider": "acme-pay", "duration_ms": 2350}
    )
    log.error(
        "order %s failed: card declined",
        "A-1002",
        extra={"order_id": "A-1002", "user_id": 7, "reason": "card_declined"},
    )
    try:
        _send_receipt("A-1001")
    except ConnectionError:
        log.exception("could not send the receipt for order %s", "A-1001",
                      extra={"order_id": "A-1001"})  # fmt: skip
    return 8


def _send_receipt(order_id: str) -> None:
    raise ConnectionError(f"smtp.example.com:587 refused the connection (order {order_id})")


def _cmd_demo(args: argparse.Namespace) -> int:
    from ._handler import LogDNAHandler  # noqa: PLC0415 - only this command needs it

    console: _Console = args.console
    out = console.out
    color = _want_color(args.color, out)
    bold, dim, reset = ("\x1b[1m", "\x1b[2m", "\x1b[0m") if color else ("", "", "")
    server = DevServer(out=out, color=color)
    try:
        server.start()
    except OSError as exc:
        console.warn(f"{PROG} demo: cannot start the local server: {exc}")
        return 1
    log = logging.getLogger("shop")
    handler: logging.Handler | None = None
    try:
        console.say(f"{bold}logdna_client demo{reset}", flush=True)
        console.say(f"  A local ingest server is listening on {server.url}")
        console.say(
            '  Logging 8 lines through logging.getLogger("shop") with\n'
            f'  LogDNAHandler(url="{server.url}", app="demo", env="local", '
            'hostname="demo-host")'
        )
        legend = f"{dim}(time, level, host [app], line, meta, (env)){reset}"
        console.say(f"\n{bold}What the server received{reset} {legend}", flush=True)
        lhandler = handler = LogDNAHandler(
            url=server.url, app="demo", env="local", hostname="demo-host"
        )
        log.setLevel(logging.DEBUG)
        log.propagate = False  # the demo's lines go to the server only, not to the console
        log.addHandler(lhandler)
        sent = _demo_lines(log)
        delivered = lhandler.client.flush(timeout=10.0)
        arrived_all = server.wait_for_lines(sent, timeout=5.0)
        stats = lhandler.client.stats()
        arrived = server.line_count
        requests = [r for r in server.requests if r.status == 200]
        lines = server.lines
        _demo_summary(console, (bold, reset), sent, arrived, requests, stats, lines)
        if args.open:
            _demo_live(console, server, log, (bold, reset))
    finally:
        if handler is not None:
            log.removeHandler(handler)
            handler.close()
        server.stop()
    if not (delivered and arrived_all and arrived >= sent):
        console.warn(f"{PROG} demo: {sent - arrived} of {sent} lines did not arrive")
        return 1
    return 0


def _demo_summary(
    console: _Console,
    style: tuple[str, str],
    sent: int,
    arrived: int,
    requests: list[Any],
    stats: Mapping[str, Any],
    lines: list[dict[str, Any]],
) -> None:
    bold, reset = style
    console.say(f"\n{bold}Summary{reset}")
    gzip = " gzip-compressed" if requests and all(r.gzip for r in requests) else ""
    console.say(
        f"  {sent} lines sent, {arrived} arrived in {len(requests)}{gzip} request(s); stats: "
        f"sent={stats.get('sent')} retries={stats.get('retries')} "
        f"dropped={stats.get('dropped_total')} bytes_sent={stats.get('bytes_sent')}"
    )
    notes = []
    for line in lines:
        meta = line.get("meta")
        if isinstance(meta, dict) and "password" in meta:
            notes.append(f"the password in extra= arrived as {meta['password']}")
        if "Traceback" in str(line.get("line", "")):
            notes.append("log.exception() shipped the traceback with its line")
    notes.append("every extra= field arrived as searchable meta")
    for note in notes:
        console.say(f"  - {note}")
    console.say(
        f"\n  Next: run '{_self_command()} devserver' and point your app at it with\n"
        f"  {ENV_VARS['url']}=http://127.0.0.1:{DEFAULT_DEVSERVER_PORT}/logs/ingest",
        flush=True,
    )


# What the demo keeps logging while the page is open, so the tail moves.
_LIVE_LINES: list[tuple[int, str, dict[str, Any]]] = [
    (logging.INFO, "GET /api/orders 200", {"method": "GET", "status": 200, "duration_ms": 21}),
    (logging.DEBUG, "cache hit", {"key": "orders:42"}),
    (logging.INFO, "POST /api/cart 201", {"method": "POST", "status": 201, "duration_ms": 48}),
    (logging.WARNING, "slow query: %d ms", {"table": "orders", "duration_ms": 812}),
    (logging.INFO, "GET /health 200", {"method": "GET", "status": 200, "duration_ms": 1}),
    (logging.ERROR, "payment declined", {"order_id": "A-1003", "reason": "insufficient_funds"}),
]


def _demo_live(
    console: _Console, server: DevServer, log: logging.Logger, style: tuple[str, str]
) -> None:
    """Keep the server up with a line now and then, until Ctrl-C or SIGTERM."""
    import webbrowser  # noqa: PLC0415 - only --open needs it

    bold, reset = style
    stop = threading.Event()
    previous = {
        signum: _on_signal(signum, lambda signum, frame: stop.set())
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        console.say(
            f"\n{bold}Live tail in your browser:{reset} {server.page_url}\n"
            "  The demo keeps logging a line every second. Ctrl-C to stop.",
            flush=True,
        )
        with contextlib.suppress(webbrowser.Error):
            webbrowser.open(server.page_url)
        n = 0
        while not stop.wait(1.0):
            level, text, meta = _LIVE_LINES[n % len(_LIVE_LINES)]
            args = (meta["duration_ms"],) if "%" in text else ()
            log.log(level, text, *args, extra=meta)
            n += 1
    except KeyboardInterrupt:
        pass
    finally:
        for signum, handler in previous.items():
            _restore_signal(signum, handler)


# -- send and pipe -----------------------------------------------------------------


class _Trouble(logging.Handler):
    """Collects what the library reports on its own logger, to explain a failure.

    ``fatal`` is set when retrying cannot help: the key was refused or the
    service rejected a line.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        self.fatal = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:
            return
        self.messages.append(message)
        if "key was refused" in message or "rejected" in message:
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
        "url": args.url,
        "app": args.app,
        "env": args.env,
        "hostname": args.hostname,
        "tags": args.tags,
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
    return f"{PROG} {what}: not delivered within {timeout:g} s: {reason}"


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


class _StreamPump(threading.Thread):
    """Copies one byte stream to another unchanged and ships each complete line."""

    def __init__(
        self,
        source: IO[bytes] | int,
        sink: IO[bytes] | None,
        ship: Callable[[str], None],
        name: str,
    ) -> None:
        super().__init__(name=f"logdna-client-pipe-{name}", daemon=True)
        self._fd = source if isinstance(source, int) else source.fileno()
        self._sink = sink
        self._ship = ship
        #: When the last chunk was dealt with; None while one is being dealt with.
        self.idle_since: float | None = time.monotonic()

    def run(self) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(self._fd, _READ_SIZE)
            except InterruptedError:
                continue
            except OSError:
                break
            if not chunk:
                break
            self.idle_since = None
            pending += chunk
            if b"\n" in pending:
                *complete, pending = pending.split(b"\n")
                for raw in complete:
                    self._ship_raw(raw)
            while len(pending) > _MAX_PENDING_LINE:
                self._ship_raw(pending[:_MAX_PENDING_LINE])
                pending = pending[_MAX_PENDING_LINE:]
            # Shown only once its complete lines are queued: whoever sees a line on
            # our output and then stops us (SIGTERM, Ctrl-C) knows it still ships.
            self._pass_through(chunk)
            self.idle_since = time.monotonic()
        if pending:
            self._ship_raw(pending)  # a last line without a newline still ships

    def quiet_for(self, seconds: float, since: float) -> bool:
        """Whether nothing arrived for ``seconds`` after ``since`` (and nothing is in hand)."""
        idle = self.idle_since
        return idle is not None and time.monotonic() - max(idle, since) >= seconds

    def _pass_through(self, chunk: bytes) -> None:
        sink = self._sink
        if sink is None:
            return
        try:
            sink.write(chunk)
            sink.flush()
        except (OSError, ValueError):
            self._sink = None  # our output is closed (| head): keep shipping

    def _ship_raw(self, raw: bytes) -> None:
        text = raw.removesuffix(b"\r").decode("utf-8", errors="replace")
        if text.strip():
            self._ship(text)


def _binary(stream: TextIO) -> IO[bytes] | None:
    buffer = getattr(stream, "buffer", None)
    return buffer if buffer is not None else None


def _terminal_delivers_sigint() -> bool:
    """Whether Ctrl-C on our terminal reaches the child by itself (same foreground group)."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return False
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)


def _cmd_pipe(args: argparse.Namespace) -> int:
    argv: list[str] = args.argv
    with _watch_library() as trouble:
        client = _client_from(args)
        try:
            if argv:
                status = _pipe_command(
                    argv, client, args.stdout_level, args.stderr_level, args.console
                )
            else:
                status = _pipe_stdin(client, args.stdout_level)
            if not _deliver(client, trouble, args.timeout):
                args.console.warn(_explain("pipe", client, trouble, args.timeout))
                if not argv and status == 0:
                    status = 1
        finally:
            client.close(timeout=0.0)
    return status


def _shipper(client: Client, level: str) -> Callable[[str], None]:
    def ship(text: str) -> None:
        client.log(text, level=level)

    return ship


def _pipe_stdin(client: Client, level: str) -> int:
    pump = _StreamPump(sys.stdin.fileno(), _binary(sys.stdout), _shipper(client, level), "stdin")
    stopped_by: list[int] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        stopped_by.append(signum)

    # Ctrl-C or SIGTERM ends reading; what was read so far is still delivered.
    previous = {signum: _on_signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        pump.start()
        _join(pump, until=lambda: bool(stopped_by))
    finally:
        for signum, handler in previous.items():
            _restore_signal(signum, handler)
    return 128 + stopped_by[0] if stopped_by else 0


def _join(thread: threading.Thread, until: Callable[[], bool] = lambda: False) -> None:
    # Short waits: a signal may be delivered to another thread, and Python
    # runs its handler only when the main thread gets back to bytecode.
    while thread.is_alive() and not until():
        thread.join(0.2)


def _pipe_command(
    argv: list[str], client: Client, out_level: str, err_level: str, console: _Console
) -> int:
    try:
        child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        console.warn(f"{PROG} pipe: cannot run {argv[0]!r}: {exc.strerror or exc}")
        return 127 if isinstance(exc, FileNotFoundError) else 126
    assert child.stdout is not None and child.stderr is not None
    terminal_sigint = _terminal_delivers_sigint()

    def forward(signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and terminal_sigint:
            return  # the terminal sent Ctrl-C to the child as well
        with contextlib.suppress(OSError):
            child.send_signal(signum)

    previous = {signum: _on_signal(signum, forward) for signum in (signal.SIGINT, signal.SIGTERM)}
    pumps = [
        _StreamPump(child.stdout, _binary(sys.stdout), _shipper(client, out_level), "stdout"),
        _StreamPump(child.stderr, _binary(sys.stderr), _shipper(client, err_level), "stderr"),
    ]
    try:
        for pump in pumps:
            pump.start()
        returncode = _wait(child)
        # Read to EOF; but a background process the command left behind may
        # hold the pipes open for ever: stop once they have been quiet a while.
        exited = time.monotonic()
        for pump in pumps:
            _join(pump, until=functools.partial(pump.quiet_for, _AFTER_EXIT_QUIET, exited))
    finally:
        for signum, handler in previous.items():
            _restore_signal(signum, handler)
        child.stdout.close()
        child.stderr.close()
    return 128 - returncode if returncode < 0 else returncode


def _wait(child: subprocess.Popen[bytes]) -> int:
    # Not a plain wait(): a blocking waitpid would hold back the signal handler
    # when the signal lands on one of our other threads (see _join).
    while True:
        try:
            return child.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            continue
