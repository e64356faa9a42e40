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

__all__ = ["auth_headers"]


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
