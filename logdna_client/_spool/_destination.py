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
``apikey`` header to ``bearer`` keeps its own backlog). The headers
OpenTelemetry's variables give an OTLP app are: they often are its credential
or its tenant (``x-honeycomb-team``, ``X-Scope-OrgID``), and apps of several
tenants post to one node's Collector URL (H198: another tenant's process sent a
dead one's lines with its own header).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ._format import DESTINATION_SIZE

if TYPE_CHECKING:
    from .._config import Config
    from .._secret import Secret

__all__ = ["UNNAMED", "belongs", "destination", "fingerprint", "short"]

_PERSON = b"logdna-spool-dst"  # BLAKE2b's personalisation: 16 bytes at most
#: The destination of a Spool opened without one (tests, tools): all zeros.
UNNAMED = bytes(DESTINATION_SIZE)


def fingerprint(key: Secret | None, url: str, headers: Sequence[tuple[str, Secret]] = ()) -> bytes:
    """The destination of lines sent with ``key`` (None: no key) to ``url``, with
    ``headers`` (an OTLP app's OTel headers; none: the digest of key and URL alone, as
    segments written before they counted have it)."""
    where = _as_sent(url)
    digest = hashlib.blake2b(digest_size=DESTINATION_SIZE, person=_PERSON)
    # The key is hashed where it is revealed: no local of this frame holds its text
    # (error reporters capture frame locals). Its part has a fixed length and comes
    # first, and no key is told apart from an empty one: no two inputs collide.
    digest.update(b"-" if key is None else b"+" + hashlib.blake2b(key.reveal().encode()).digest())
    digest.update(where.encode())
    # After the URL, whose text holds no NUL: each header as it is sent (its name in any
    # case, as HTTP reads it; the last value of a name given twice) in the order of their
    # names, its value through a slow digest: a header value need not be random as a key
    # is (a tenant's name, a Basic password), and ``short`` shows 32 bits of the result,
    # other destinations' too, in warnings (H202: a guess was checked in microseconds).
    sent = {name.lower(): value for name, value in headers}
    for name in sorted(sent):
        digest.update(b"\0" + name.encode() + b"\0")
        digest.update(_slow_digest(name, sent[name]))
    return digest.digest()


#: PBKDF2 rounds for a header value: about 40 ms once per process with a spool.
_HEADER_ROUNDS = 100_000


def _slow_digest(name: str, value: Secret) -> bytes:
    return hashlib.pbkdf2_hmac(
        "sha256", value.reveal().encode(), _PERSON + name.encode(), _HEADER_ROUNDS
    )


def _as_sent(url: str) -> str:
    """``url`` the same however it was typed where requests go to the same place: scheme
    and host in any case, the scheme's default port written or not, a host's final dot
    (H188: ``:443`` or ``logs.logdna.com.`` orphaned the backlog). The path is the
    server's to read: ``/logs/ingest/`` may be another endpoint."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        host, port = (parts.hostname or "").rstrip("."), parts.port
    except ValueError:  # (no URL a Config takes: as it is)
        return parts._replace(scheme=scheme, netloc=parts.netloc.lower()).geturl()
    if port == _DEFAULT_PORTS.get(scheme):
        port = None
    netloc = (f"[{host}]" if ":" in host else host) + ("" if port is None else f":{port}")
    return parts._replace(scheme=scheme, netloc=netloc).geturl()


_DEFAULT_PORTS = {"http": 80, "https": 443}


def destination(config: Config) -> bytes:
    """Where ``config`` sends its lines, as segments record it."""
    return fingerprint(config.secret, config.url, config.otlp_headers)


def belongs(segment: bytes | None, destination: bytes) -> bool:
    """Whether a segment written for ``segment`` is for ``destination``: the one rule for
    who adopts, sends and drops a segment.

    ``segment`` None is a version 1 segment, which does not record where its lines were
    going: it belongs to no destination. Taking it for anyone's sent one app's lines with
    another's key (two apps sharing a folder before an upgrade); only the user can say
    whose it is (``spool replay --any-destination`` with its key and URL).
    """
    return segment is not None and segment == destination


def short(fingerprint: bytes) -> str:
    """A fingerprint as people are shown it: enough to tell destinations apart."""
    # Safe to print where a key must never be (spool ls output and warnings get pasted
    # into tickets): these are 32 bits of a digest of the key's own BLAKE2b digest and the
    # URL. Ingestion keys are random (32 hex digits, 128 bits), so each value is shared by
    # some 2**96 keys: it neither reveals a key nor narrows one down. All it can do is
    # confirm a guess at a guessable key, which the full 16 bytes in every segment header
    # already allow anyone who can read the folder (and so the lines themselves); cut to 4
    # bytes, a list of more than 2**32 guesses matches by chance, so even that is weaker.
    return fingerprint[:4].hex()
