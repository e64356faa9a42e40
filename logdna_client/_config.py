"""Every option the library takes: defaults, environment fallbacks, validation.

Options arrive as Python values from code, and as strings from
``logging.config.dictConfig``/``fileConfig`` files and environment variables.
They are coerced and checked here, once, so the rest of the library can trust
its ``Config``; a bad value is a ``ConfigurationError`` that names the option (or the
environment variable it came from), raised when the client is built rather than when the
first line is logged.

How one value is read from text is ``_values.py``'s; how the key is kept unseen,
``_secret.py``'s; OpenTelemetry's exporter variables, ``_otel_env.py``'s.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import os
import posixpath
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal, cast
from urllib.parse import unquote, urlsplit

from ._errors import ConfigurationError
from ._limits import BODY_BYTES, LINE_BYTES, NAME_CHARS
from ._otel_env import (
    one_credential,
    otel_certificate,
    otel_compression,
    otel_endpoint,
    otel_headers,
    otel_timeout,
)
from ._secret import (
    KEY_VARIABLE,
    KEYS,
    Secret,
    as_secret,
    carries_credentials,
    environ,
    hide_key,
    hide_url,
    may_be_key,
    shows_key,
)
from ._values import (
    FALSE,
    TRUE,
    bad,
    blank,
    check_pattern,
    optional_name,
    resolve_callable,
    to_bool,
    to_duration,
    to_level,
    to_pattern_list,
    to_size,
    to_str_list,
)

__all__ = ["DEFAULT_URL", "ENV_VARS", "Config"]

DEFAULT_URL = "https://logs.logdna.com/logs/ingest"

#: option name -> environment variable consulted when the option is not given (read
#: by ``Config._env`` alone, which an error about the value then names).
ENV_VARS: Mapping[str, str] = {
    "key": KEY_VARIABLE,
    "url": "LOGDNA_URL",
    "app": "LOGDNA_APP",
    "env": "LOGDNA_ENV",
    "hostname": "LOGDNA_HOSTNAME",
    "tags": "LOGDNA_TAGS",
    "handle_signals": "LOGDNA_HANDLE_SIGNALS",
    "spool_dir": "LOGDNA_SPOOL_DIR",
    "record_meta": "LOGDNA_RECORD_META",
    "allow_insecure": "LOGDNA_ALLOW_INSECURE",
}

# How many batches (max_batch_bytes) the spool's cap must hold at least: the one being
# sent, on disk, one written behind it, and a segment's slack for each (a batch is
# written whole into the segment it begins in).
_SPOOL_BATCHES = 4

# The largest max_batch_bytes: 8 MiB, bounded below the API's limit on a request body
# (_limits.BODY_BYTES, 10 MB) with a MiB to spare for the drop-summary line added to a
# full batch (tests/test_claims_accounting.py holds it there).
_MAX_BATCH_CAP = min(8 * 1024 * 1024, BODY_BYTES - 1024 * 1024)

#: The values each numeric option takes, both ends included: seconds for the
#: durations, bytes for the sizes. The one statement of them: Config checks
#: against it, and the official client's form (``_official``) brings its values
#: into it.
RANGES: Mapping[str, tuple[float, float]] = {
    "flush_interval": (0.01, 3600.0),
    "max_batch_bytes": (1024, _MAX_BATCH_CAP),
    "max_buffer_bytes": (64 * 1024, 1 << 40),
    "block_timeout": (0.0, 60.0),
    "request_timeout": (0.1, 600.0),
    "shutdown_timeout": (0.0, 600.0),
    "retry_max_backoff": (0.1, 3600.0),
}

Overflow = Literal["drop_oldest", "drop_newest", "block"]
_OVERFLOWS: tuple[str, ...] = ("drop_oldest", "drop_newest", "block")
SpoolSync = Literal["none", "interval", "always"]
Protocol = Literal["logdna", "otlp"]
_PROTOCOLS: tuple[str, ...] = ("logdna", "otlp")
#: The path OTLP/HTTP sends logs to (a Collector's http://host:4318/v1/logs).
_OTLP_PATH = "/v1/logs"


def posts_otlp_logs(path: str) -> bool:
    """Whether a URL's ``path`` is an OTLP logs endpoint's, as a server reads it: its
    escapes decoded and its dot segments and doubled slashes resolved ("/v1/./logs",
    "/v1/log%73")."""
    path = posixpath.normpath(re.sub("/+", "/", "/" + unquote(path)))
    return path.rstrip("/").endswith(_OTLP_PATH)


Auth = Literal["apikey", "basic", "bearer", "pipeline"]
_AUTHS: tuple[str, ...] = ("apikey", "basic", "bearer", "pipeline")
_SPOOL_SYNCS: tuple[str, ...] = ("none", "interval", "always")

# Options read as booleans (verify and redact also take a path or names): blank text
# there is an option not given. Read as false, an empty template variable or a bare
# "verify =" would turn TLS verification or redaction off without a word.
_BOOLEAN_OPTIONS = (
    "compress", "verify", "index_meta", "allow_insecure", "kubernetes", "redact", "handle_signals",
)  # fmt: skip


_CONTROL = re.compile(r"[\r\n\0]")


def _near_key_variables() -> str:
    """For the no-key error: the variables set that look meant for the key (LOGDNA_KEY,
    MZ_INGESTION_KEY, the agent's LOGDNA_AGENT_KEY), by name; never a value."""
    names = sorted(
        name
        for name in os.environ
        if name != ENV_VARS["key"]
        and name.upper().startswith(("LOGDNA", "MZ_", "MEZMO"))
        and "KEY" in name.upper()
    )
    if not names:
        return ""
    return f" ({', '.join(names[:3])} {'is' if len(names) == 1 else 'are'} set, but not read)"


def _key_path(path: object) -> str:
    """The path a ``key_file`` value names, as it is opened."""
    if isinstance(path, os.PathLike | bytes):
        path = os.fsdecode(path)
    if not isinstance(path, str):
        # (an int would be read as a file descriptor: whatever is open there)
        raise bad("key_file", path, "the path of a file")
    return path if os.path.exists(path) else os.path.expanduser(path.strip())


def key_in_file(path: object, *, once: bool = False) -> Secret | None:
    """The key in the regular file ``path`` names, for the command line's keys to hide
    while it reads its flags (before a Config reads the file, and says what is wrong
    with it); None for anything else: a pipe (``<(pass show key)``) gives it only once.
    ``once``: read such a file too (its reader must then use the key it gave, and not
    read the file again); None where it gives no key, or is a folder."""
    try:
        found = _key_path(path)
        if os.path.isdir(found) or not (once or os.path.isfile(found)):
            return None
        with open(found, encoding="utf-8") as fh:
            key = fh.read(64 * 1024).strip()
        return Secret(key) if key or not once else None
    except (ConfigurationError, OSError, ValueError):
        return None


def _read_key_file(path: object) -> tuple[Secret, str]:
    """The key a key file holds, and the path it was read at (from the working
    directory of now: ``replace()`` may read it again after a chdir)."""
    path = _key_path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            return Secret(fh.read()), _anchored(path)
    except OSError as exc:
        reason = exc.strerror
    # (Raised out of the except: the OSError, which names the path, is not its context.)
    if may_be_key(path):
        shown = "the file given (its name not shown: is it the key itself, not a path?)"
    else:
        shown = repr(path)
    del path
    raise ConfigurationError(f"key_file: cannot read {shown}: {reason}", "key_file")


def level_beside_client(client: object, options: Mapping[str, object]) -> int | None:
    """The ``level`` given beside a shared ``client=`` to a handler or processor: its
    own (handlers sharing one client may each want another). None when it is not
    given, or when no client is (the options then build the caller's own client).
    Any other option beside ``client=`` is a ConfigurationError: the client's
    options are the client's; so is a ``client=`` that is no Client."""
    if client is None:
        return None
    from ._client import Client  # noqa: PLC0415 - _client imports this module
    from ._options import check_option_names  # noqa: PLC0415 - _options imports this module

    if not isinstance(client, Client):  # (a dictConfig's string, say: "cfg://...")
        raise ConfigurationError(
            f"client: expected a logdna_client.Client to share, got {type(client).__name__}",
            "client",
        )

    # First: "levle" is a typo of the one option taken here, not a second option.
    check_option_names(options)
    level = to_level("level", options["level"]) if "level" in options else None
    others = sorted(name for name in options if name != "level")
    if others:
        raise ConfigurationError(
            "pass either client= or options (" + ", ".join(others) + "), not both"
        )
    return level


#: The attributes ``LogRecord.__init__`` sets, in the order it sets them (the record's
#: extras follow them: ``_record._extras``).
INIT_RECORD_ATTRS: tuple[str, ...] = tuple(
    logging.LogRecord("probe", logging.INFO, "p", 1, "m", None, None).__dict__
)
#: LogRecord attributes ``record_meta`` may name: what ``LogRecord.__init__`` sets,
#: less what already ships as the line, its level or its timestamp.
RECORD_META_ATTRS = frozenset(INIT_RECORD_ATTRS) - {
    "msg", "args", "exc_info", "exc_text", "stack_info", "levelname", "created",
}  # fmt: skip


def _record_attrs(value: object) -> tuple[str, ...]:
    names = to_str_list("record_meta", value)
    unknown = [name for name in names if name not in RECORD_META_ATTRS]
    if unknown:
        raise bad(
            "record_meta",
            ", ".join(unknown),
            "LogRecord attributes among " + ", ".join(sorted(RECORD_META_ATTRS)),
        )
    return tuple(dict.fromkeys(names))  # each once, in the order given


def _anchored(path: str) -> str:
    """``path`` from the working directory of now, where the option was given. A relative
    path is used later (the CA bundle at each request, the spool folder opened by the
    sender thread, a key file read again by ``replace()``), when a chdir (a daemon's
    ``chdir("/")``, a test's tmp folder) would have it point elsewhere: the check made here
    passed, and then every request failed, or the spool went to another folder."""
    if os.path.isabs(path):
        return path
    try:
        # (Joined, not normalized: "certs/../ca.pem" is left for the kernel to resolve,
        # as it would have been, across a symbolic link too.)
        return os.path.join(os.getcwd(), path)
    except OSError:  # the working directory is gone: nothing relative to it is found
        return path


def _named_for_env(exc: ConfigurationError, variables: Mapping[str, str]) -> None:
    """``exc``, about an option whose value came from its environment variable, made to
    name the variable ("LOGDNA_RECORD_META: expected ..."): that is what the user sets
    and fixes, and the keyword, never passed, would send them looking in their code (and
    the command line, after it, for a flag that may not exist). ``exc.option`` stays the
    option's name. Changed in place, so its traceback still leads to what refused it."""
    option = exc.option
    variable = variables.get(option or "")
    message = str(exc)
    if option and variable and message.startswith(option + ":"):
        exc.args = (variable + message[len(option) :], *exc.args[1:])


def _is_loopback(host: str) -> bool:
    # Only the exact name: resolvers may send "x.localhost" to DNS.
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_UNSET: Any = None  # dataclass defaults: None means "not given, use env var or default"


@dataclass(frozen=True)
class Config:
    """One validated set of options, shared by a Client and everything it owns.

    Every field may be given as a string (dictConfig, fileConfig, environment)
    and is coerced in ``__post_init__``. See docs/configuration.md for the table.
    """

    key: Secret | str | None = field(default=_UNSET, repr=False)
    key_file: str | None = field(default=None, repr=False)
    url: str = _UNSET
    hostname: str = _UNSET
    ip: str | None = None
    mac: str | None = None
    tags: tuple[str, ...] = _UNSET
    app: str | None = _UNSET
    env: str | None = _UNSET
    level: int = 0
    flush_interval: float = 1.0
    max_batch_bytes: int = 2 * 1024 * 1024
    max_buffer_bytes: int = 64 * 1024 * 1024
    overflow: Overflow = "drop_oldest"
    block_timeout: float = 1.0
    #: 15 s when neither given nor set by OTEL_EXPORTER_OTLP_(LOGS_)TIMEOUT.
    request_timeout: float = _UNSET
    shutdown_timeout: float = 5.0
    retry_max_backoff: float = 30.0
    #: True (gzip) when neither given nor set by OTEL_EXPORTER_OTLP_(LOGS_)COMPRESSION.
    compress: bool = _UNSET
    verify: bool | str = True
    index_meta: bool = True
    #: LogRecord attributes shipped as meta by the stdlib handler ("" for none).
    record_meta: tuple[str, ...] = _UNSET
    redact: tuple[str, ...] | bool = True
    redact_patterns: tuple[str, ...] = ()
    before_send: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None
    max_line_length: int = LINE_BYTES  # the service's line limit (_limits.py)
    #: False when neither given nor set by LOGDNA_ALLOW_INSECURE.
    allow_insecure: bool = _UNSET
    #: Deliver within shutdown_timeout on SIGTERM/SIGHUP left at their default
    #: disposition, then end by that signal (see docs/delivery.md).
    handle_signals: bool = _UNSET
    spool_dir: str | None = _UNSET
    spool_sync: SpoolSync = "interval"
    max_spool_bytes: int = 256 * 1024 * 1024
    max_spool_age: float = 7 * 86400.0
    #: "logdna" (the ingest API) or "otlp" (OTLP/HTTP JSON logs to ``url``).
    protocol: Protocol = "logdna"
    #: How the key is sent: "apikey" header, "basic", "bearer", or "pipeline"
    #: (Mezmo Pipeline's bare ``Authorization: <key>``).
    auth: Auth = "apikey"
    #: "auto": Kubernetes metadata when in a pod; True/False force it.
    kubernetes: bool | Literal["auto"] = "auto"

    def __post_init__(self) -> None:
        # Options filled from the environment, by variable (_env): errors about them name it.
        object.__setattr__(self, "_env_read", {})
        try:
            self._check()
        except ConfigurationError as exc:
            _named_for_env(exc, self.__dict__["_env_read"])
            raise

    def _env(self, option: str) -> str | None:
        """The value of ``option``'s environment variable (``ENV_VARS``), read for an option
        not given. Every such read is here: one that is not blank (an unset variable, as a
        blank option is) is noted, for an error about the option to name the variable.
        (No local holds the value: it may be the key; see ``_check``.)"""
        if not blank(environ(ENV_VARS[option])):
            self.__dict__["_env_read"][option] = ENV_VARS[option]
        return environ(ENV_VARS[option])

    def _check(self) -> None:
        """Coerce and check every option; ``__post_init__``'s."""
        set_ = object.__setattr__
        # The key becomes a Secret before anything can fail: a ConfigurationError's
        # traceback (Sentry captures frame locals) then shows only Secret('***').
        # os.environ is read through environ(), never held in a local here.
        set_(self, "key", as_secret(self.key))
        # And a URL carrying credentials (often the key itself) becomes one too.
        set_(self, "url", hide_url(self.url))
        if isinstance(self.key_file, Secret):  # (hide_key's: a path that may be the key)
            set_(self, "key_file", self.key_file.reveal())  # not in repr, nor in a local
        if self.key is None and self.key_file is not None:
            # Read before any other option is checked: the key it holds is then hidden in
            # their messages (KEYS, which __init__ resets), as key='s is. Read once: a
            # pipe (--key-file <(pass show key)) gives it only once.
            file_key, path = _read_key_file(self.key_file)
            KEYS.set((*KEYS.get(), file_key))
            self.__dict__["_file_key"] = file_key  # (for _resolve_key, which takes it)
            set_(self, "key_file", path)
            del file_key
        env = self._env
        for option in _BOOLEAN_OPTIONS:
            value = getattr(self, option)
            if isinstance(value, str) and not value.strip():
                set_(self, option, _DEFAULTS[option])
        # What was not given, for replace(): computed again there, as here.
        unset = frozenset(f.name for f in fields(self) if getattr(self, f.name) is None)
        set_(self, "_unset", unset)

        # -- where and as whom
        otlp = isinstance(self.protocol, str) and self.protocol.strip().lower() == "otlp"
        # A blank url (an empty template variable, a bare "url =") is one not given, as a
        # blank boolean is: the default in its place would send the key and every line to
        # the classic host, whatever LOGDNA_URL or the OTel endpoint said.
        url: object = None if blank(self.url) else self.url
        if url is None:
            set_(self, "_unset", unset | {"url"})
            url = None if blank(env("url")) else env("url")
        # Where the URL came from, as messages name it: OpenTelemetry's variables are the
        # exporter's settings, read only for OTLP and only when url= and LOGDNA_URL are not
        # given (those were set for this library on purpose, the OTel ones often pod-wide).
        source = "url"
        if url is None and otlp:
            source, url = otel_endpoint()
        url = hide_url(url or DEFAULT_URL)
        # An OTel variable's value is not shown: it may hold a token (a query's, a path's).
        said = "url" if source == "url" else f"url (from {source})"
        if carries_credentials(url):
            # The key belongs in a header: URLs end up in proxy and error logs.
            raise ConfigurationError(
                f"{said}: must not carry credentials; pass the key with key= or " + ENV_VARS["key"],
                "url",
            )
        if isinstance(url, Secret):
            # hide_key's, for the key in its path or query (asked again here, in a frame
            # that keeps no text of it); else a Secret of the caller's, which is no URL.
            if shows_key(url.reveal()):
                raise _url_carries_key(said)
            raise bad("url", url, "an http(s) URL")
        if not isinstance(url, str):
            raise bad("url", url, "an http(s) URL")
        url = url.strip()
        try:
            parts = urlsplit(url)
        except ValueError:  # ("http://[::1": an unclosed IPv6 address)
            parts = urlsplit("")
            if source == "url":
                raise bad("url", url, "an http(s) URL such as " + DEFAULT_URL) from None
        try:
            port_ok = parts.port != 0
        except ValueError:  # out of range, or not a number ("http://host:99999")
            port_ok = False
        if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
            if source != "url":
                raise ConfigurationError(
                    f"{source}: expected an http(s) URL such as http://collector:4318", "url"
                )
            shown = parts._replace(query="", fragment="").geturl()
            raise bad("url", shown, "an http(s) URL such as " + DEFAULT_URL)
        if not otlp and posts_otlp_logs(parts.path):
            # protocol="otlp" forgotten: an OpenTelemetry Collector skips the fields it
            # does not know and answers 200: every line "delivered", none stored.
            raise ConfigurationError(
                f"{said}: its path ends in {_OTLP_PATH}, an OTLP logs endpoint, which "
                "stores none of the LogDNA API's lines and still answers 200: give "
                "protocol='otlp' to send there (the spool replay tool speaks the LogDNA "
                "API only: an OTLP app delivers its own backlog when it starts again with "
                "the same spool_dir)",
                "url",
            )
        insecure = self.allow_insecure
        insecure = env("allow_insecure") if insecure is None else insecure
        # Blank: not set, as a blank option (unset, an opt-in must be said, never assumed).
        set_(
            self,
            "allow_insecure",
            False if blank(insecure) else to_bool("allow_insecure", insecure),
        )
        # The OTel headers go only to the endpoint the OTel variables name, as the SDK's
        # exporter sends them: they often hold a vendor's token, which url= or LOGDNA_URL
        # pointing elsewhere must not receive.
        headers_from, headers = otel_headers() if source != "url" else ("", ())
        # So does the CA the OTel variables name (a Collector behind a private CA): in
        # place of the default ones, it would fail a url= to a public endpoint.
        otel_ca = otel_certificate() if source != "url" else None
        # The exporter's timeout and compression likewise: set for the OTel endpoint (often
        # pod-wide), read with it; request_timeout= and compress= win, as url= does.
        # (What they gave, by option: replace(url=...) leaves it behind, as the headers.)
        from_otel: list[str] = []
        if self.request_timeout is None:
            timeout = otel_timeout() if source != "url" else None
            set_(self, "request_timeout", 15.0 if timeout is None else timeout)
            from_otel += ["request_timeout"] if timeout is not None else []
        if self.compress is None:
            compress = otel_compression() if source != "url" else None
            set_(self, "compress", True if compress is None else compress)
            from_otel += ["compress"] if compress is not None else []
        # Plain http is refused for the credentials it would carry, and only for them: a
        # client that sends none (no key: a devserver on another host, a VM's or a
        # container's; an OTLP client with no OTel headers either, to a Collector in the
        # cluster on its http port) needs no allow_insecure.
        plain = parts.scheme == "http" and not _is_loopback(parts.hostname)
        plain = plain and not self.allow_insecure
        # A key is needed where Mezmo's service may be: its hosts, and any https URL. A
        # plain http one that is not Mezmo's (whose endpoints take https only) is a
        # devserver or a relay of one's own, which may take none, and a missing key is
        # then no mistake to stop at; an OpenTelemetry Collector usually takes local
        # senders without a key.
        keyless = otlp or _is_loopback(parts.hostname)
        keyless = keyless or (parts.scheme == "http" and not _is_mezmo_host(parts.hostname))
        key_given = "key=" if self.key is not None else ""
        key_given = key_given or ("key_file=" if self.key_file is not None else "")
        # With OTLP, a key only the environment gives (LOGDNA_INGESTION_KEY, often set
        # pod-wide for handlers to the ingest API) goes only to Mezmo's own endpoint, and
        # never beside OTel headers: a Collector needs none (and forwards what it is
        # given), and another vendor's credential header has a name of its own
        # (api-key, x-honeycomb-team, dd-api-key ...) that no list here can know.
        ambient = not otlp or (not headers and _is_mezmo_host(parts.hostname))
        secret = self._resolve_key(keyless, ambient)
        secret = one_credential(secret, key_given, headers_from, headers)
        if secret is not None and shows_key(url, (secret,)):
            # (A key file's, known only now: the url's text is in this frame's locals.)
            set_(self, "url", Secret(url))
            raise _url_carries_key(said)
        carried = (("the ingestion key", secret), ("the OTel headers", headers))
        sent = [what for what, value in carried if value]
        if plain and sent:
            raise _plain_http_refused(said, parts.hostname, sent)
        set_(self, "_otlp_headers", headers)
        set_(self, "url", url)
        set_(self, "key", secret)

        # Blank is not given, as for url: a line has a hostname, LOGDNA_HOSTNAME's first.
        hostname = optional_name("hostname", self.hostname)
        hostname = hostname or optional_name("hostname", env("hostname"))
        # Known here, not guessed later from the name: a hostname= that happens to be
        # the detected one is still given (it wins over OTel's host.name).
        set_(self, "_hostname_given", hostname is not None)
        set_(self, "hostname", hostname or detected_hostname())
        set_(self, "ip", optional_name("ip", self.ip))
        set_(self, "mac", optional_name("mac", self.mac))
        tags = self.tags if self.tags is not None else env("tags")
        set_(self, "tags", to_str_list("tags", tags))
        for name in ("app", "env"):
            raw = getattr(self, name)
            set_(
                self,
                name,
                optional_name(name, raw if raw is not None else env(name)),
            )

        # -- behaviour
        set_(self, "level", to_level("level", self.level))
        for name in ("max_batch_bytes", "max_buffer_bytes"):
            low, high = RANGES[name]
            size = to_size(name, getattr(self, name), minimum=int(low), maximum=int(high))
            set_(self, name, size)
        overflow = self.overflow.strip().lower() if isinstance(self.overflow, str) else None
        if overflow not in _OVERFLOWS:
            raise bad("overflow", self.overflow, "one of " + ", ".join(_OVERFLOWS))
        set_(self, "overflow", overflow)
        for name in (
            "flush_interval", "block_timeout", "request_timeout", "shutdown_timeout",
            "retry_max_backoff",
        ):  # fmt: skip
            low, high = RANGES[name]
            set_(self, name, to_duration(name, getattr(self, name), minimum=low, maximum=high))
        set_(self, "compress", to_bool("compress", self.compress))
        signals = self.handle_signals
        if signals is None:
            signals = env("handle_signals")  # blank: not set, as a blank option
            signals = True if blank(signals) else signals
        set_(self, "handle_signals", to_bool("handle_signals", signals))
        set_(self, "index_meta", to_bool("index_meta", self.index_meta))
        record_meta = self.record_meta
        if record_meta is None:
            record_meta = env("record_meta")
            if record_meta is None:
                record_meta = "name"
        set_(self, "record_meta", _record_attrs(record_meta))
        verify = self._resolve_verify()
        # An explicit path or False wins over the OTel CA, as the library's settings do.
        if verify is True and otel_ca is not None:
            verify = _anchored(otel_ca)
            from_otel.append("verify")
        set_(self, "verify", verify)
        set_(self, "_from_otel", tuple(from_otel))
        set_(self, "max_line_length",
             to_size("max_line_length", self.max_line_length, minimum=64,
                     maximum=1024 * 1024))  # fmt: skip

        # -- data protection
        redact: tuple[str, ...] | bool
        if isinstance(self.redact, bool):
            redact = self.redact
        elif isinstance(self.redact, str) and self.redact.strip().lower() in TRUE | FALSE:
            redact = to_bool("redact", self.redact)
        else:
            redact = to_str_list("redact", self.redact)
        set_(self, "redact", redact)
        patterns = to_pattern_list("redact_patterns", self.redact_patterns)
        for pattern in patterns:
            check_pattern(pattern)
        set_(self, "redact_patterns", patterns)
        set_(self, "before_send", resolve_callable("before_send", self.before_send))

        # -- durable delivery (docs/spool.md); only checked here: no folder is made until used
        spool_dir = self.spool_dir if self.spool_dir is not None else env("spool_dir")
        if spool_dir is not None and not isinstance(spool_dir, str | os.PathLike):
            raise bad("spool_dir", spool_dir, "a folder path")
        spool_dir = os.path.expanduser(os.fspath(spool_dir)).strip() if spool_dir else None
        set_(self, "spool_dir", _anchored(spool_dir) if spool_dir else None)
        sync = self.spool_sync.strip().lower() if isinstance(self.spool_sync, str) else None
        if sync not in _SPOOL_SYNCS:
            raise bad("spool_sync", self.spool_sync, "one of " + ", ".join(_SPOOL_SYNCS))
        set_(self, "spool_sync", sync)
        set_(self, "max_spool_bytes",
             to_size("max_spool_bytes", self.max_spool_bytes, minimum=1024 * 1024,
                     maximum=1 << 50))  # fmt: skip
        least = _SPOOL_BATCHES * self.max_batch_bytes
        if spool_dir and self.max_spool_bytes < least:
            # Each batch is written before it is sent: one the cap cannot hold with the
            # batch out and one behind it never reaches the disk (H188: with 1 MiB for
            # 2 MiB batches, 1,404 of 50,000 lines were spooled, the rest at risk).
            raise ConfigurationError(
                f"max_spool_bytes: expected at least {_SPOOL_BATCHES} x max_batch_bytes "
                f"({least} bytes) with a spool_dir, got {self.max_spool_bytes}: room for "
                "the batch being sent and those written behind it; raise it, or lower "
                "max_batch_bytes",
                "max_spool_bytes",
            )
        set_(self, "max_spool_age",
             to_duration("max_spool_age", self.max_spool_age, minimum=1.0,
                         maximum=10 * 365 * 86400.0))  # fmt: skip
        self._check_transport_options()

    def _check_transport_options(self) -> None:
        """protocol, auth and kubernetes (docs/scaling.md)."""
        set_ = object.__setattr__
        protocol = self.protocol.strip().lower() if isinstance(self.protocol, str) else None
        if protocol not in _PROTOCOLS:
            raise bad("protocol", self.protocol, "one of " + ", ".join(_PROTOCOLS))
        set_(self, "protocol", protocol)
        if protocol == "otlp" and self.url == DEFAULT_URL:
            # The ingest API does not speak OTLP: a silent default would lose every line.
            raise ConfigurationError(
                "url: protocol='otlp' needs the OTLP endpoint, e.g. a Collector's "
                "http://host:4318/v1/logs or Mezmo's OTLP endpoint (url=, LOGDNA_URL or "
                "OTEL_EXPORTER_OTLP_ENDPOINT)",
                "url",
            )
        auth = self.auth.strip().lower() if isinstance(self.auth, str) else None
        if auth not in _AUTHS:
            raise bad("auth", self.auth, "one of " + ", ".join(_AUTHS))
        set_(self, "auth", auth)
        kubernetes: object = self.kubernetes
        if isinstance(kubernetes, str) and kubernetes.strip().lower() == "auto":
            kubernetes = "auto"
        else:
            try:
                kubernetes = to_bool("kubernetes", kubernetes)
            except ConfigurationError:
                raise bad("kubernetes", kubernetes, '"auto", or a boolean to force it') from None
        set_(self, "kubernetes", kubernetes)

    def _resolve_key(self, keyless: bool, ambient: bool = True) -> Secret | None:
        """The key: key=, else key_file=, else (when ``ambient``) LOGDNA_INGESTION_KEY; None
        when there is none and the URL takes requests without one (``keyless``)."""
        # Every local here holds a Secret, never the key's text (see __post_init__).
        looked: list[str] = []
        secret = cast("Secret | None", self.key)
        if secret is None:
            looked.append("key=")
            if self.key_file is not None:
                secret = self.__dict__.pop("_file_key")  # (read first: _check)
                looked.append(f"key_file={self.key_file!r}")
        if secret is None and ambient:
            looked.append(ENV_VARS["key"])
            secret = as_secret(self._env("key"))
        if secret is None or not secret.reveal().strip():
            if keyless:
                return None
            where = ", ".join(looked) if looked else "key="
            raise ConfigurationError(
                f"key: no ingestion key found (looked at {where}); pass key=, key_file= or set "
                + ENV_VARS["key"]
                + _near_key_variables(),
                "key",
            )
        secret = Secret(secret.reveal().strip())
        if _CONTROL.search(secret.reveal()):
            raise ConfigurationError("key: contains a control character", "key")
        if not secret.reveal().isascii():
            # No request header can carry it as it is (http.client encodes header values
            # as Latin-1, and a key outside that would be retried forever): it is a paste
            # error (a no-break or zero-width space, a typographic character), not a key.
            raise ConfigurationError(
                "key: contains a character that is not ASCII (a pasted space or symbol?); "
                "ingestion keys are ASCII",
                "key",
            )
        return secret

    def _resolve_verify(self) -> bool | str:
        value: object = self.verify
        if isinstance(value, os.PathLike):  # (a pathlib.Path, as spool_dir takes one)
            value = os.fspath(value)
        if isinstance(value, str):
            low = value.strip().lower()
            if low in TRUE | FALSE:
                return low in TRUE
            # "~/ca.pem", or a path with the blanks a file or variable left around it.
            path = value if os.path.exists(value) else os.path.expanduser(value.strip())
            if not os.path.exists(path):
                raise bad("verify", value, "true/false or the path of an existing CA bundle")
            return _anchored(path)
        if isinstance(value, bool):
            return value
        raise bad("verify", value, "true/false or the path of a CA bundle")

    @property
    def otlp_headers(self) -> tuple[tuple[str, Secret], ...]:
        """The headers ``OTEL_EXPORTER_OTLP_(LOGS_)HEADERS`` give, sent with every request
        when the URL came from the OTel endpoint variables (protocol="otlp" only)."""
        return cast("tuple[tuple[str, Secret], ...]", self.__dict__.get("_otlp_headers", ()))

    @property
    def hostname_given(self) -> bool:
        """Whether ``hostname`` came from hostname= or LOGDNA_HOSTNAME (not blank), not
        from the machine: a detected one gives way to OTel's ``host.name``."""
        return cast("bool", self.__dict__.get("_hostname_given", True))

    @property
    def secret(self) -> Secret | None:
        """The key, typed."""
        return cast("Secret | None", self.key)

    def replace(self, **changes: Any) -> Config:
        """A copy with some options changed (and re-validated). An option changed to None
        is not given, as at construction. So is, unless changed, one that depends on the
        URL and was not given (the URL, the timeout, compression and CA the OTel variables
        give for their endpoint, and a key from LOGDNA_INGESTION_KEY): computed again, for
        the URL and protocol of the copy. With ``url`` changed, what the OTel variables
        gave is not kept. A detected hostname is detected again, not made a given one."""
        changes = hide_key(changes)  # first: as in any frame that receives options
        from ._options import check_option_names  # noqa: PLC0415 - _options imports this module

        check_option_names(changes)  # "flushinterval": a ConfigurationError naming the closest
        current = {f.name: getattr(self, f.name) for f in fields(self)}
        unset: frozenset[str] = self.__dict__.get("_unset", frozenset())
        again = {*self.__dict__.get("_from_otel", ()), *(unset & _BY_URL)}
        if not self.hostname_given:  # detected (or given blank): detected again, not given
            again.add("hostname")
        if "url" in changes:
            again.discard("url")
        # (The OTel headers, and whether an ambient key goes, come again with the URL.)
        current.update((name, _DEFAULTS[name]) for name in again)
        current.update(changes)
        return Config(**current)


# Options whose value, when not given, depends on the URL and protocol (the OTel variables;
# and the key: LOGDNA_INGESTION_KEY is read for an OTLP URL only when it is Mezmo's).
_BY_URL = frozenset({"url", "request_timeout", "compress", "key"})


def _hiding_init(generated: Callable[..., None]) -> Callable[..., None]:
    """Config's generated ``__init__``, behind a frame that wraps a text key in a
    Secret first: the generated frame's ``key`` local is then never the key's text."""

    @functools.wraps(generated)
    def __init__(self: Config, *args: Any, **kwargs: Any) -> None:
        kwargs = hide_key(kwargs)
        if args and args[0] is not None and not isinstance(args[0], Secret):
            args = (Secret(args[0]), *args[1:])
        if len(args) > _URL_AT:  # (the url given by position: fields in order)
            args = (*args[:_URL_AT], hide_url(args[_URL_AT]), *args[_URL_AT + 1 :])
        given = args[0] if args else kwargs.get("key")
        keys = (given, as_secret(environ(ENV_VARS["key"])))
        token = KEYS.set(tuple(key for key in keys if isinstance(key, Secret)))
        del given, keys
        try:
            generated(self, *args, **kwargs)
        finally:
            KEYS.reset(token)

    return __init__


_URL_AT = [f.name for f in fields(Config)].index("url")
Config.__init__ = _hiding_init(Config.__init__)  # type: ignore[method-assign]


def _url_carries_key(said: str) -> ConfigurationError:
    """The key in a URL's path or query: URLs end up in proxy and error logs, and in
    urllib3's debug lines."""
    return ConfigurationError(
        f"{said}: must not carry the ingestion key; pass the key with key= or " + ENV_VARS["key"],
        "url",
    )


def _plain_http_refused(said: str, host: str, credentials: list[str]) -> ConfigurationError:
    return ConfigurationError(
        f"{said}: plain http:// to {host} would send {' and '.join(credentials)} "
        "unencrypted; use https://, or pass allow_insecure=True (or set "
        f"{ENV_VARS['allow_insecure']}=1) if you really mean it",
        "url",
    )


#: Hosts of Mezmo's (LogDNA's) own endpoints, and below them (logs., pipeline.): with
#: protocol="otlp", LOGDNA_INGESTION_KEY is sent only there.
_MEZMO_DOMAINS = ("mezmo.com", "logdna.com")


def _is_mezmo_host(host: str | None) -> bool:
    """Whether ``host`` is one of Mezmo's (LogDNA's) own, which the ingestion key is for."""
    name = (host or "").lower().rstrip(".")
    return any(name == domain or name.endswith("." + domain) for domain in _MEZMO_DOMAINS)


def detected_hostname() -> str:
    """The hostname lines carry when neither ``hostname=`` nor LOGDNA_HOSTNAME names one."""
    return socket.gethostname()[:NAME_CHARS] or "localhost"


OPTION_NAMES: frozenset[str] = frozenset(f.name for f in fields(Config))
_DEFAULTS: Mapping[str, object] = {f.name: f.default for f in fields(Config)}
