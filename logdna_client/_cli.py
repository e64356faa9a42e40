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

This module builds the parser and runs ``main``; each command lives in a
module of its own (``_cli_devserver``, ``_cli_demo``, ``_cli_send``,
``_cli_pipe``, ``_cli_spool``), and ``_cli_common`` holds what they share.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn, TextIO

from ._cli_common import (
    DEFAULT_DEVSERVER_PORT,
    PROG,
    _Console,
    _filter_level,
    _level_name,
    _library_flags,
    _port,
    _positive_float,
    _positive_int,
    _rate,
    _status,
)
from ._cli_demo import _cmd_demo
from ._cli_devserver import LineFilter, _cmd_devserver
from ._cli_pipe import _cmd_pipe
from ._cli_send import _cmd_send
from ._cli_spool import register as _register_spool
from ._config import ENV_VARS, key_in_file
from ._errors import ConfigurationError
from ._secret import KEYS, QUOTED, Secret, hide_keys
from ._version import __version__
from .devserver import DEFAULT_PAGE_LINES, MAX_CONCURRENT_BODIES

__all__ = ["DEFAULT_DEVSERVER_PORT", "LineFilter", "build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors never show a key given to the command
    (``main`` sets them as the keys to hide, as a Config being built does: argparse's own
    errors quote a flag's bad value, which may be the key pasted there)."""

    #: The ``pipe`` command's parser (``main`` reads its options to find where the command
    #: to run begins).
    pipe: argparse.ArgumentParser | None = None

    #: A ``--key-file`` that could not be read before the flags (a pipe gives its key
    #: only once): any value an error would quote may be that key.
    key_unread = False

    def error(self, message: str) -> NoReturn:
        if self.key_unread:
            message = QUOTED.sub("<hidden>", message)
        super().error(hide_keys(message))


def _keys_in(args: Sequence[str]) -> tuple[Secret, ...]:
    """The keys ``args`` and the environment give a command, as argparse cannot tell yet
    (a ``--key-file``'s too, when it is a regular file: see ``key_in_file``; when it is
    not, ``_Parser.key_unread`` says so, and ``_key_read_here`` reads it once the flags
    are read)."""
    found = [os.environ.get(ENV_VARS["key"])]
    files: list[Secret | None] = []
    for i, arg in enumerate(args):
        if arg == "--key" and i + 1 < len(args):
            found.append(args[i + 1])
        elif arg.startswith("--key="):
            found.append(arg[len("--key=") :])
        elif arg == "--key-file" and i + 1 < len(args):
            files.append(key_in_file(args[i + 1]))
        elif arg.startswith("--key-file="):
            files.append(key_in_file(arg[len("--key-file=") :]))
    given = tuple(Secret(key) for key in found if key)
    _Parser.key_unread = any(key is None for key in files)
    return given + tuple(key for key in files if key is not None)


def _key_read_here(args: argparse.Namespace) -> None:
    """A ``--key-file`` that gives its key only once (a pipe, ``<(pass show key)``),
    read once the flags are read, where the command will use it (no ``--key``): the
    command takes that key, not the file (read again, it gives nothing), and its
    messages hide it from the start (H195: ``spool ls --key-file <(...) --spool-dir
    <key>`` showed it). Not before the flags: a FIFO no one writes held ``--help`` for
    good (H196)."""
    path = getattr(args, "key_file", None)
    if path is None or getattr(args, "key", None) is not None or key_in_file(path):
        return  # (a regular file: the Config reads it, and _keys_in hid it)
    key = key_in_file(path, once=True)
    if key is not None:
        args.key = key
        args.key_file = None
        KEYS.set((*KEYS.get(), key))  # (main resets it)


def _split_pipe(args: list[str], pipe: argparse.ArgumentParser) -> tuple[list[str], list[str]]:
    """``pipe``'s words (from "pipe" on) cut into its own options and the command to run:
    the command begins after a "--" among the options, or else at the first word that is
    not one of them or an option's value. A "--" after that belongs to the command
    (``pipe grep -- -v x``): it was taken for pipe's, and the command refused."""
    options = {o: a.nargs != 0 for a in pipe._actions for o in a.option_strings}
    i = 1
    while i < len(args):
        word = args[i]
        if word == "--":
            return args[:i], args[i + 1 :]
        if not word.startswith("-") or word == "-":
            return args[:i], args[i:]
        name = word.split("=", 1)[0]
        # argparse takes an unambiguous prefix of a long option (--ap for --app).
        matches = [o for o in options if o == name] or [o for o in options if o.startswith(name)]
        takes_value = "=" not in word and len(matches) == 1 and options[matches[0]]
        i += 2 if takes_value else 1
    return args, []


def build_parser() -> _Parser:
    """The argument parser for every command."""
    root = _Parser(
        prog=PROG,
        description="Ship logs to LogDNA / Mezmo from the shell, and run a local ingest server.",
        epilog=f"Run '{PROG} CMD --help' for the options of a command.",
    )
    parser: argparse.ArgumentParser = root  # (so the commands' parsers are plain ones)
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
        "--level", type=_filter_level, metavar="LEVEL", help="show lines at this level or above"
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
    root.pipe = pipe
    _register_spool(commands, library)
    return root


# The library's messages name its keyword arguments; on the command line the flags are meant.
# (The Python words, the command line's, and the flag they name: replaced where the
# command has that flag.)
_PYTHON_WORDS = (
    ("pass key=, key_file= or set", "pass --key, --key-file or set", "--key-file"),
    ("looked at key=", "looked at --key", "--key"),
    (", key_file=", ", --key-file ", "--key-file"),
    ("pass allow_insecure=True (or set", "pass --allow-insecure (or set", "--allow-insecure"),
    ("pass the key with key= or", "pass the key with --key, --key-file or", "--key-file"),
)
#: Options whose flag is not their name: --timeout is the client's shutdown_timeout.
_FLAG_OF = {"shutdown_timeout": "timeout"}


def _command_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> frozenset[str]:
    """The flags of the command ``args`` ran: ``parser``'s, and those of the command it
    chose, down to spool's actions."""
    flags: set[str] = set()
    for action in parser._actions:
        flags.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            chosen = action.choices.get(getattr(args, action.dest, None) or "")
            if chosen is not None:
                flags |= _command_flags(chosen, args)
    return frozenset(flags)


def _in_flags(exc: ConfigurationError, flags: frozenset[str]) -> str:
    """A ConfigurationError's message in the command line's words: an option named as its
    flag where the command has one (``flags``). Where it has none (demo, or an option only
    the environment sets), the option keeps its name: a flag that does not exist would send
    the user looking for it; an error about a variable's value names the variable
    (``Config``), and is left as it is."""
    text = str(exc)
    for python, words, flag in _PYTHON_WORDS:
        if flag in flags:
            text = text.replace(python, words)
    option = exc.option
    if option and text.startswith(option + ":"):
        flag = "--" + _FLAG_OF.get(option, option).replace("_", "-")
        if flag in flags:
            text = flag + text[len(option) :]
    return text


def _or_nowhere(stream: TextIO | None) -> TextIO:
    """``stream``, or where writing goes nowhere when it is closed (``>&-``, ``2>&-``:
    Python's sys.stdout or sys.stderr is None then). What is meant for a closed stderr
    is lost, never written to stdout, whose data a pipeline reads (the console wrote
    its complaints there), and a closed stdout is no traceback."""
    if stream is not None:
        return stream
    return open(os.devnull, "w", encoding="utf-8")  # (kept till exit)


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run the command line; return the exit status.

    ``out`` and ``err`` are where the commands write (the terminal by default).
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    command: list[str] = []
    if args_list[:1] == ["pipe"] and parser.pipe is not None:
        # Everything after "--" is the command, even words that look like our flags.
        args_list, command = _split_pipe(args_list, parser.pipe)
    # The keys stay set while the command runs: its own messages hide them too (a key
    # pasted into --spool-dir or --host was shown in "... is not a folder": H192).
    token = KEYS.set(_keys_in(args_list))
    try:
        args = parser.parse_args(args_list)
        _key_read_here(args)
        # Run as the program (not by a caller in its own process, as tests do): what a
        # command changes for the rest of the process may stay (pipe's signals).
        args.as_program = argv is None
        return _run(parser, args, command, out, err)
    finally:
        KEYS.reset(token)


def _run(
    parser: _Parser,
    args: argparse.Namespace,
    command: list[str],
    out: TextIO | None,
    err: TextIO | None,
) -> int:
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    if args.command == "pipe":
        args.argv = command
    func: Callable[[argparse.Namespace], int] = args.func
    console = args.console = _Console(
        _or_nowhere(sys.stdout if out is None else out),
        _or_nowhere(sys.stderr if err is None else err),
        keys=KEYS.get(),
    )
    try:
        return int(func(args))
    except ConfigurationError as exc:
        console.warn(f"{PROG} {args.command}: {_in_flags(exc, _command_flags(parser, args))}")
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
