"""Whose lines a segment holds: a fingerprint of where they are sent.

A spool folder may be shared by processes that send to different places:
two apps given the same ``LOGDNA_SPOOL_DIR``, pods sharing a ``hostPath``,
an app restarted with a new ingestion key. A process sends what it adopts
with its own key and URL, so it adopts only segments written for the same
ingestion key and URL; the others are left for their owner (docs/spool.md).

The fingerprint is a BLAKE2b digest of the key and the URL, personalised for
this use: the same for every run of the same app, different for another key
or URL, and, keys being random, of no help in finding the key. The key
itself is never written. ``protocol`` and ``auth`` are not part of it: they
say how lines are carried to the URL, not where (an app moving from the
``apikey`` header to ``bearer`` keeps its own backlog).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ._format import DESTINATION_SIZE

if TYPE_CHECKING:
    from .._config import Config

__all__ = ["UNNAMED", "belongs", "destination", "fingerprint", "short"]

_PERSON = b"logdna-spool-dst"  # BLAKE2b's personalisation: 16 bytes at most
#: The destination of a Spool opened without one (tests, tools): all zeros.
UNNAMED = bytes(DESTINATION_SIZE)


def fingerprint(key: str | None, url: str) -> bytes:
    """The destination of lines sent with ``key`` (None: no key) to ``url``."""
    parts = urlsplit(url)
    # Scheme and host are case-insensitive: the same URL however it was typed.
    where = parts._replace(scheme=parts.scheme.lower(), netloc=parts.netloc.lower()).geturl()
    digest = hashlib.blake2b(digest_size=DESTINATION_SIZE, person=_PERSON)
    for field in (key, where):
        # Length-prefixed, and no key told apart from an empty one: no two inputs collide.
        raw = b"" if field is None else field.encode()
        digest.update(b"%d:" % (-1 if field is None else len(raw)) + raw)
    return digest.digest()


def destination(config: Config) -> bytes:
    """Where ``config`` sends its lines, as segments record it."""
    secret = config.secret
    return fingerprint(None if secret is None else secret.reveal(), config.url)


def belongs(segment: bytes | None, destination: bytes) -> bool:
    """Whether a segment written for ``segment`` (None: by version 1, for anyone) is for
    ``destination``: the one rule for who adopts, sends and drops a segment."""
    return segment is None or segment == destination


def short(fingerprint: bytes) -> str:
    """A fingerprint as people are shown it: enough to tell destinations apart."""
    return fingerprint[:4].hex()
