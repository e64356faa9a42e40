"""The options, typed: what ``Client``, ``LogDNAHandler`` and ``LogDNAProcessor`` take.

``Config`` (``_config.py``) validates and coerces the values; this module
gives the same names static types and one line of documentation each, so

- mypy and IDEs complete the keywords and catch a misspelled one
  (``**options: Unpack[ClientOptions]``);
- a misspelled one at run time (dictConfig, ``**settings``) is a
  ``ConfigurationError`` naming the closest valid option;
- ``help(Client)`` lists every option.

Each option is one line in ``ClientOptions``: its type and, in ``Annotated``,
its documentation. A TypedDict has to be spelled out for type checkers, so it
cannot be generated from ``Config``; ``tests/test_options.py`` checks that
the two name the same options, so adding a ``Config`` field without its line
here fails the suite.

The types are what code should pass. Every option also takes a string (from
dictConfig, fileConfig or the environment), coerced by ``Config``; the
annotations admit one only where a string is a normal way to write the value
(``"5s"``, ``"2MB"``, ``"a,b"``).
"""

import difflib
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields
from typing import Annotated, Any, Literal, get_args, get_type_hints

from typing_extensions import TypedDict

from ._config import Config
from ._errors import ConfigurationError

__all__ = ["ClientOptions", "check_option_names", "options_help"]


class ClientOptions(TypedDict, total=False):
    """The keyword options of ``Client``, ``LogDNAHandler`` and ``LogDNAProcessor``."""

    key: Annotated[
        str | None, "ingestion key; env LOGDNA_INGESTION_KEY; none needed for a loopback URL"
    ]
    key_file: Annotated[
        str | os.PathLike[str] | None, "path of a file holding the key (a mounted secret)"
    ]
    url: Annotated[str, "ingest endpoint; env LOGDNA_URL; https://logs.logdna.com/logs/ingest"]
    hostname: Annotated[str, "host name shown in LogDNA; env LOGDNA_HOSTNAME; this machine's"]
    ip: Annotated[str | None, "IP address sent with every batch"]
    mac: Annotated[str | None, "MAC address sent with every batch"]
    tags: Annotated[str | Sequence[str], 'tags, a list or "a,b"; env LOGDNA_TAGS']
    app: Annotated[str | None, "app name of every line; env LOGDNA_APP"]
    env: Annotated[str | None, "environment name of every line; env LOGDNA_ENV"]
    level: Annotated[int | str, 'lowest level shipped: 20 or "INFO"; default all']
    flush_interval: Annotated[float | str, 'seconds between sends: 1.0, "500ms", "2s"']
    max_batch_bytes: Annotated[int | str, 'largest batch, at buffer cost: 2 MiB, "512KiB"']
    max_buffer_bytes: Annotated[int | str, 'memory bound of queued lines: 64 MiB, "1GB"']
    overflow: Annotated[
        Literal["drop_oldest", "drop_newest", "block"], "what a full buffer does: drop_oldest"
    ]
    block_timeout: Annotated[float | str, "longest wait for room under overflow=block: 1 s"]
    request_timeout: Annotated[float | str, "timeout of one request: 15 s"]
    shutdown_timeout: Annotated[float | str, "deadline to deliver at close and exit: 5 s"]
    retry_max_backoff: Annotated[float | str, "cap of the retry backoff: 30 s"]
    compress: Annotated[bool, "gzip request bodies: True"]
    verify: Annotated[
        bool | str | os.PathLike[str], "TLS verification: True, False or a CA bundle path"
    ]
    index_meta: Annotated[bool, "meta searchable as fields (True) or one string (False)"]
    redact: Annotated[bool | str | Sequence[str], "meta keys whose values are masked: True"]
    redact_patterns: Annotated[str | Sequence[str], "regexes or presets masked in text: none"]
    before_send: Annotated[
        Callable[[dict[str, Any]], dict[str, Any] | None] | str | None,
        "edit or drop (return None) each line dict before it is queued",
    ]
    max_line_length: Annotated[int | str, "longest line text, in bytes: 16 KiB"]
    allow_insecure: Annotated[
        bool, "send the key over http:// to a host not loopback (env LOGDNA_ALLOW_INSECURE): False"
    ]
    handle_signals: Annotated[
        bool, "deliver on SIGTERM/SIGHUP, then end by it: True; env LOGDNA_HANDLE_SIGNALS"
    ]
    spool_dir: Annotated[
        str | os.PathLike[str] | None, "folder of the disk spool: off; env LOGDNA_SPOOL_DIR"
    ]
    spool_sync: Annotated[
        Literal["none", "interval", "always"], "when spooled data is synced: interval (0.2 s)"
    ]
    max_spool_bytes: Annotated[int | str, "disk the spool folder may take: 256MiB"]
    max_spool_age: Annotated[float | str, "spooled lines older than this are dropped: 7 days"]
    record_meta: Annotated[
        str | list[str] | tuple[str, ...],
        "LogRecord attributes shipped as meta: name; env LOGDNA_RECORD_META",
    ]
    protocol: Annotated[Literal["logdna", "otlp"], "logdna (ingest API) or otlp (OTLP/HTTP JSON)"]
    auth: Annotated[
        Literal["apikey", "basic", "bearer", "pipeline"], "how the key is sent: apikey header"
    ]
    kubernetes: Annotated[bool | Literal["auto"] | str, "pod metadata when in a pod: auto"]


def option_docs() -> dict[str, tuple[str, str]]:
    """Option name -> (its type, one-line documentation), in declaration order."""
    out: dict[str, tuple[str, str]] = {}
    for name, hint in get_type_hints(ClientOptions, include_extras=True).items():
        typ, doc = get_args(hint)
        out[name] = (_short_type(typ), str(doc))
    return out


def _short_type(typ: object) -> str:
    text = typ.__name__ if isinstance(typ, type) else repr(typ)
    for long in ("typing.", "collections.abc."):
        text = text.replace(long, "")
    return text


OPTION_NAMES: frozenset[str] = frozenset(ClientOptions.__annotations__)


def check_option_names(given: Iterable[str], extra: Iterable[str] = ()) -> None:
    """Raise ``ConfigurationError`` for the first name that is no option, naming the closest."""
    valid = OPTION_NAMES | frozenset(extra)
    for name in given:
        if name in valid:
            continue
        close = difflib.get_close_matches(name, sorted(valid), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else "; see help(logdna_client.Client)"
        raise ConfigurationError(f"{name}: not an option{hint}", name)


def options_help(intro: str = "Options (keyword arguments; all accept strings):") -> str:
    """The options as a text block for docstrings, so ``help()`` shows them."""
    docs = option_docs()
    width = max(map(len, docs))
    lines = [intro, ""]
    lines.extend(f"    {name.ljust(width)}  {doc}" for name, (_typ, doc) in docs.items())
    return "\n".join(lines)


def with_options_help(doc: str | None) -> str:
    """``doc`` with the options block appended (for ``__doc__`` of the public classes)."""
    return (doc or "").rstrip() + "\n\n    " + options_help().replace("\n", "\n    ") + "\n"


def config_option_names() -> frozenset[str]:
    """The options ``Config`` takes (what ``ClientOptions`` must list)."""
    return frozenset(f.name for f in fields(Config))
