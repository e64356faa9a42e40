"""docs/cli.md's tables, walked against the parser: the commands, the library flags of
``send`` and ``pipe`` (their variables and defaults, and "a flag wins over its
environment variable" over a real socket), and the devserver's options."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

import pytest

from logdna_client._cli import build_parser
from logdna_client._config import DEFAULT_URL, ENV_VARS, Config
from logdna_client._devserver import DevServer
from tests._helpers_integrations import REPO_ROOT, TIMEOUT

PAGE = (REPO_ROOT / "docs" / "cli.md").read_text()
TICKED = re.compile(r"`([^`]*)`")


def table_after(heading: str) -> list[list[str]]:
    """The rows (cells stripped) of the first table after ``heading``, header left out."""
    text = PAGE.split(heading, 1)[1]
    rows = re.search(r"^\|.*?(?=\n\n|\n[^|])", text, re.MULTILINE | re.DOTALL)
    assert rows is not None
    cells = [
        [c.strip().replace("\0", "|") for c in row.replace("\\|", "\0").strip("|").split("|")]
        for row in rows[0].splitlines()
    ]
    return cells[2:]


def subparser(*path: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in path:
        (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = commands.choices[name]
    return parser


def option(parser: argparse.ArgumentParser, flag: str) -> argparse.Action:
    (action,) = [a for a in parser._actions if flag in a.option_strings]
    return action


def test_commands_table() -> None:
    """The five sub-commands the page lists are the ones the command has."""
    listed = [TICKED.findall(row[0])[0].split()[0] for row in table_after("five sub-commands")]
    (commands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert sorted(commands.choices) == sorted(listed)


LIBRARY_FLAGS = table_after("take the library's options as\nflags")


@pytest.mark.parametrize("command", ["send", "pipe"])
@pytest.mark.parametrize("row", LIBRARY_FLAGS, ids=[row[0] for row in LIBRARY_FLAGS])
def test_library_flag_row(command: str, row: list[str]) -> None:
    """Each flag is the command's; its help names the variable the table names (the one
    the library reads for that option), and its stated default is the parser's or the
    library's."""
    flag = TICKED.findall(row[0])[0].split()[0]
    action = option(subparser(command), flag)
    variable = TICKED.findall(row[1])
    if variable:
        name = flag.lstrip("-").replace("-", "_")
        assert [ENV_VARS[name]] == variable
        assert variable[0] in (action.help or "")
    default = row[2]
    if flag == "--url":
        assert f"`{DEFAULT_URL}`" == default
    elif flag == "--timeout":
        assert default.startswith(f"{action.default:g}:")
    elif flag == "--flush-interval":
        assert None is action.default  # the library's own default applies
        assert f"{Config.flush_interval:g}" == default
        assert f"(default {default})" in (action.help or "")
    else:
        assert None is action.default


@pytest.mark.parametrize(
    "row", table_after("Options:"), ids=[row[0] for row in table_after("Options:")]
)
def test_devserver_option_row(row: list[str]) -> None:
    """Each devserver option of the table is one, and a default it states is the parser's."""
    parser = subparser("devserver")
    for flag in (t.split()[0] for t in TICKED.findall(row[0])):
        action = option(parser, flag)
        stated = re.search(r"\(default `?([\w.]+)`?", row[1])
        if stated and action.default is not None:
            assert stated[1] == str(action.default), row
    listed = {t.split()[0] for r in table_after("Options:") for t in TICKED.findall(r[0])}
    flags = {s for a in parser._actions for s in a.option_strings if s.startswith("--")}
    assert flags - {"--help"} == listed


def test_a_flag_wins_over_its_environment_variable() -> None:
    """ "A flag wins over its environment variable": send, with every variable set and
    every flag given, ships under the flags' values (over a real socket)."""
    with DevServer() as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOGDNA_")}
        env.update(
            PYTHONPATH=str(REPO_ROOT), LOGDNA_URL="http://127.0.0.1:9/not-this-one",
            LOGDNA_APP="env-app", LOGDNA_ENV="env-env", LOGDNA_HOSTNAME="env-host",
            LOGDNA_TAGS="env-tag",
        )  # fmt: skip
        result = subprocess.run(
            [sys.executable, "-m", "logdna_client", "send", "flags win", "--url", server.url,
             "--app", "flag-app", "--env", "flag-env", "--hostname", "flag-host",
             "--tags", "flag-a,flag-b"],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert 0 == result.returncode, result.stderr
        assert server.wait_for_lines(1, TIMEOUT)
        (line,) = server.lines
        (request,) = server.requests
    assert ("flags win", "flag-app", "flag-env") == (line["line"], line["app"], line["env"])
    assert ("flag-host", ["flag-a", "flag-b"]) == (request.hostname, list(request.tags))
