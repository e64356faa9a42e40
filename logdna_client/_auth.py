"""Which header carries the key, per the ``auth`` option: exactly one credential.

- ``apikey``: the ``apikey`` header, what the ingest API's own clients send.
  HTTP header names are case-insensitive, so it is also the ``apiKey`` header
  Mezmo's OTLP endpoint documents.
- ``basic``: ``Authorization: Basic base64(key:)``, the key as the user name
  (what Vector's ``mezmo`` sink sends).
- ``bearer``: ``Authorization: Bearer <key>`` (OpenTelemetry Collectors with
  a bearer-token authenticator, most gateways).
- ``pipeline``: ``Authorization: <key>``, as Mezmo Pipeline's HTTP sources take it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable

from ._secret import SHORTEST_KEY

__all__ = ["auth_headers", "credentials_in", "secret_forms"]


def auth_headers(auth: str, key: str | None) -> dict[str, str]:
    """The one header that carries ``key`` for ``auth``; none without a key."""
    if key is None:
        return {}
    if auth == "basic":
        token = base64.b64encode(f"{key}:".encode()).decode("ascii")
        return {"Authorization": f"Basic {token}"}
    if auth == "bearer":
        return {"Authorization": f"Bearer {key}"}
    if auth == "pipeline":
        return {"Authorization": key}
    return {"apikey": key}


def secret_forms(key: str | None) -> tuple[str, ...]:
    """The key as it may come back in a server's answer: itself, base64-encoded as in a
    Basic token (with and without the colon) in either alphabet (the URL-safe one of a
    token in a URL) and without its padding, and in hex (H206: a server echoing these
    showed the key whole); the longest first. None for a key shorter than
    ``SHORTEST_KEY``: no ingestion key, and scrubbed it would cut up every message its
    letters are in."""
    if not key or len(key.strip()) < SHORTEST_KEY:
        return ()
    forms = {key, key.encode().hex()}
    data = key.encode()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        forms.add(encode(f"{key}:".encode()).decode("ascii").rstrip("="))
        forms.add(encode(data).decode("ascii").rstrip("="))
        # Inside a longer text encoded whole (``b64("apikey: " + key + ...)``): at each
        # of the three byte offsets, the characters that its bytes alone make (H208).
        for shift in (0, 1, 2):
            text = encode(b"\0" * shift + data).decode("ascii")
            first, last = (shift + 2) // 3, (shift + len(data)) // 3
            if last - first >= 3:  # 12 characters at least: no word of a message
                forms.add(text[4 * first : 4 * last])
    return tuple(sorted(forms, key=len, reverse=True))


def credentials_in(
    headers: Iterable[tuple[str, str]], query: Iterable[tuple[str, str]] = ()
) -> list[tuple[str, str]]:
    """Every credential a request carries, as (form, key): the receiving side.

    Forms: ``apikey`` (the header, any case), ``basic`` (the user name),
    ``bearer``, ``pipeline`` (a bare ``Authorization``) and ``query`` (an
    ``apikey`` query parameter). A well-formed request carries exactly one.
    """
    found: list[tuple[str, str]] = []
    for name, value in headers:
        low = name.lower()
        if low == "apikey":
            found.append(("apikey", value))
        elif low == "authorization":
            scheme, _, rest = value.strip().partition(" ")
            if scheme.lower() == "basic" and rest:
                try:
                    user = base64.b64decode(rest.strip(), validate=True).decode().partition(":")[0]
                except (binascii.Error, UnicodeDecodeError):
                    user = ""
                found.append(("basic", user))
            elif scheme.lower() == "bearer" and rest:
                found.append(("bearer", rest.strip()))
            else:
                found.append(("pipeline", value.strip()))
    found += [("query", value) for name, value in query if name.lower() == "apikey"]
    return found
