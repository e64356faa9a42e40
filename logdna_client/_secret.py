"""The ingestion key as a credential: held so that nothing shows it.

The first frame that receives the key wraps it in a ``Secret``, so no repr, message
or captured traceback (Sentry records frame locals) holds its text; a URL that carries
credentials is held the same way. ``shows_key`` tells whether a value, as a message
would show it, holds a key of the ``Config`` being built, so that the message hides it.
Where the key comes from (``key=``, ``key_file=``, the environment) is ``_config.py``'s.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any, cast
from urllib.parse import urlsplit

from ._errors import ConfigurationError

#: The environment variable the key is read from when neither key= nor key_file= is given.
KEY_VARIABLE = "LOGDNA_INGESTION_KEY"


class Secret:
    """Holds the ingestion key so that no repr, str or traceback shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The key itself, for the one place that needs it: the request header."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:
        # Pickling a Secret (multiprocessing spawn of a handler) keeps it usable
        # but the pickled form is as sensitive as the key itself.
        return (Secret, (self._value,))


def environ(name: str) -> str | None:
    """One environment variable (os.environ itself never sits in a caller's frame)."""
    return os.environ.get(name)


def as_secret(value: object) -> Secret | None:
    """The key as a Secret (None stays None); a key that is not a string is refused
    without being shown, or kept in this frame's locals."""
    if isinstance(value, Secret) and isinstance(value.reveal(), str):
        return value
    if value is None or isinstance(value, str):
        return None if value is None else Secret(value)
    del value  # not in this frame's locals when the error's traceback is captured
    return _refuse_key()


def _refuse_key() -> Secret:
    raise ConfigurationError("key: expected a string, got <hidden>", "key")


# A file name that may be an ingestion key pasted where its path belongs: letters and
# digits only, both, 16 or more (Mezmo's keys are 32 hexadecimal digits).
_KEY_LIKE = re.compile(r"(?=[^/]*[0-9])(?=[^/]*[A-Za-z])[A-Za-z0-9]{16,}")


def may_be_key(path: str) -> bool:
    """Whether ``path``, shown in a message, may show a key: one of the Config being built,
    or a last part that looks like one."""
    name = path.strip().rstrip("/").rpartition("/")[2]
    return shows_key(path) or _KEY_LIKE.fullmatch(name) is not None


def hide_key(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with a ``key`` given as text wrapped in a Secret, and a ``url`` that
    carries credentials too (see ``hide_url``): the first frame that receives keyword
    options calls this before anything else."""
    key = options.get("key")
    if key is not None and not isinstance(key, Secret):
        # Whatever its type: a key given as bytes is refused later, unseen.
        options = {**options, "key": Secret(cast(str, key))}
    del key
    key_file = options.get("key_file")
    if isinstance(key_file, str) and may_be_key(key_file):
        # The key itself pasted where its path belongs: unseen until it is read as a path.
        options = {**options, "key_file": Secret(key_file)}
    del key_file
    if not isinstance(options.get("url"), Secret) and carries_credentials(options.get("url")):
        options = {**options, "url": Secret(options["url"])}
    elif isinstance(options.get("url"), str):
        # The key in its path or query (``?api_key=``, ``/inputs/KEY``): refused, unseen.
        keys = (options.get("key"), as_secret(environ(KEY_VARIABLE)))
        if shows_key(options["url"], [key for key in keys if isinstance(key, Secret)]):
            options = {**options, "url": Secret(options["url"])}
        del keys
    return options


def carries_credentials(url: object) -> bool:
    """Whether ``url`` carries credentials (a user or password, an ``apikey=``): such a
    URL is refused, and held in a Secret until then, as a key is (it often holds one).
    Whatever the type it is given as: text, bytes, a URL object (by its str()), or a
    Secret (by what it holds)."""
    while isinstance(url, Secret):
        url = url.reveal()
    if isinstance(url, bytes | bytearray):
        url = bytes(url).decode("latin-1")
    elif url is not None and not isinstance(url, str):
        try:
            url = str(url)
        except Exception:  # refused later, as not a URL
            return False
    if not isinstance(url, str):
        return False
    try:
        parts = urlsplit(url.strip())
        return bool(
            parts.username
            or parts.password
            or "apikey=" in parts.query.lower()
            # Without "//", "user:KEY@host" reads as scheme "user" and a path: no
            # host, so refused anyway; hidden if an "@" may end a user part.
            or (not parts.netloc and "@" in url)
        )
    except ValueError:
        # Not a URL at all (refused later, as such): hidden if it may be one with
        # credentials in it.
        return "@" in url or "apikey=" in url.lower()


def hide_url(url: object) -> object:
    """``url``, in a Secret when it carries credentials."""
    if isinstance(url, Secret) or not carries_credentials(url):
        return url
    return Secret(cast(str, url))  # (whatever its type: refused, unseen)


# The keys of the Config being built (given, and LOGDNA_INGESTION_KEY's), or given to a
# command line (_cli.main), as Secrets: a value that holds one (the key pasted into url=
# or app=, a swapped variable, a flag's value) is not shown.
KEYS: ContextVar[tuple[Secret, ...]] = ContextVar("KEYS", default=())


def shows_key(value: object, keys: Iterable[Secret] | None = None) -> bool:
    """Whether ``value``, as a message would show it, holds a key of the Config being built
    (or one of ``keys``; one of 8 characters or more: a shorter one is no key, and would
    hide every value)."""
    text = (value if isinstance(value, str) else repr(value)).lower()
    for secret in KEYS.get() if keys is None else keys:
        key = secret.reveal()
        if not isinstance(key, str) or len(key.strip()) < SHORTEST_KEY:  # (bytes: refused)
            continue
        key = key.strip().lower()
        # Any run of 12 of its characters (the whole key when shorter), in any case: a
        # paste cut short, or a value upper-cased on its way, shows it too.
        run = min(len(key), _KEY_RUN)
        if any(key[i : i + run] in text for i in range(len(key) - run + 1)):
            return True
    return False


def hide_keys(message: str, keys: Iterable[Secret] | None = None) -> str:
    """``message`` with each key in it, then each quoted value that still shows one
    (``shows_key``: a part of it), as ``<hidden>``; all after its first colon, when one
    still shows unquoted."""
    if not shows_key(message, keys):
        return message
    for secret in KEYS.get() if keys is None else keys:
        key = secret.reveal()
        if isinstance(key, str) and len(key.strip()) >= SHORTEST_KEY:
            message = re.sub(re.escape(key.strip()), "<hidden>", message, flags=re.IGNORECASE)
    message = QUOTED.sub(lambda m: "<hidden>" if shows_key(m.group(), keys) else m.group(), message)
    if shows_key(message, keys):
        message = message.split(":", 1)[0] + ": <hidden>"
    return message


#: A quoted value in a message, as repr() and argparse quote them.
QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")

#: How many consecutive characters of a key a value must hold to be hidden as showing it.
_KEY_RUN = 12
#: A key shorter than this is no ingestion key (those are 32 characters): a test's "k".
#: Neither hidden in values nor scrubbed from answers, where it would hide every "k" of
#: every message ("does not spea*** TLS").
SHORTEST_KEY = 8
