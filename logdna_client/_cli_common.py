"""What the command line's modules share: its name, the console it writes to,
the devserver's port and level ranks, and the library flags of send, pipe and spool."""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from typing import TextIO

from ._config import DEFAULT_URL, ENV_VARS, Config
from ._secret import Secret, hide_keys

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


def _level_rank(name: str) -> int | None:
    """The rank of a level name (upper case) for the devserver's --level filter: a name
    of ``_LEVEL_RANKS``, a number ("35"), or logging's name for an unnamed level
    ("LEVEL 35"); None for any other name."""
    found = _LEVEL_RANKS.get(name)
    if found is not None:
        return found
    number = name[6:] if name.startswith("LEVEL ") else name
    return int(number) if number.isascii() and number.isdigit() and len(number) < 10 else None


def _filter_level(text: str) -> str:
    """The devserver's --level: a level it can rank (a name it does not know would
    filter as INFO, whatever was meant)."""
    name = _level_name(text)
    if _level_rank(name) is None:
        known = ", ".join(n for n in _LEVEL_RANKS if n not in ("FINE", "ERR", "SEVERE"))
        raise argparse.ArgumentTypeError(f"expected a level name ({known}) or a number")
    return name


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
    """Flags shared by send, pipe and spool ls/replay/purge; absent ones stay None so env
    vars apply."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("library options (fall back to environment variables)")
    group.add_argument(
        "--key",
        help=f"ingestion key (env {ENV_VARS['key']}; prefer the env var or --key-file: "
        "flags show in `ps`)",
    )
    group.add_argument(
        "--key-file",
        metavar="PATH",
        help="file holding the ingestion key (a mounted secret); unlike --key, never "
        "visible to other users in `ps`",
    )
    group.add_argument(
        "--url",
        help=f"ingest URL (env {ENV_VARS['url']}; default {DEFAULT_URL})",
    )
    group.add_argument("--app", help=f"app name on every line (env {ENV_VARS['app']})")
    group.add_argument("--env", help=f"environment name on every line (env {ENV_VARS['env']})")
    group.add_argument(
        "--hostname", help=f"hostname sent with each request (env {ENV_VARS['hostname']})"
    )
    group.add_argument("--tags", help=f"comma-separated tags (env {ENV_VARS['tags']})")
    group.add_argument(
        "--allow-insecure",
        action="store_true",
        default=None,  # (absent: None, so that the variable applies)
        help=f"allow a plain http:// URL to a host that is not loopback even though the key "
        f"then crosses the network unencrypted (env {ENV_VARS['allow_insecure']}); with no "
        "key none is needed",
    )
    group.add_argument(
        "--flush-interval",
        type=_positive_float,
        metavar="SECONDS",
        help=f"how often queued lines are sent (default {Config.flush_interval:g})",
    )
    group.add_argument(
        "--timeout",
        type=_positive_float,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for delivery before giving up (default 10)",
    )
    return parent


class _Console:
    """Where a command writes: what it shows (``out``) and what went wrong (``err``).

    ``main`` points both at the terminal; the commands write only through this,
    so their output goes wherever ``main`` was told.
    """

    def __init__(self, out: TextIO, err: TextIO, *, keys: tuple[Secret, ...] = ()) -> None:
        self.out = out
        self.err = err
        #: The keys the command was given: never shown, whatever flag they were pasted in.
        self.keys = keys

    def say(self, text: str = "", *, to: TextIO | None = None, flush: bool = False) -> None:
        """One line (or several) to ``out``, or to ``to``."""
        stream = self.out if to is None else to
        if self.keys:
            text = hide_keys(text, self.keys)
        stream.write(text + "\n")
        if flush:
            stream.flush()

    def warn(self, text: str) -> None:
        """A complaint, to ``err`` at once."""
        self.say(text, to=self.err, flush=True)


def _self_command() -> str:
    """How the user can run this command line again: the script when it is on PATH,
    else this interpreter with -m (a venv's bin is often not on PATH, as after the
    README's Quickstart)."""
    if shutil.which(PROG):
        return PROG
    return f"{shlex.quote(sys.executable)} -m logdna_client"
