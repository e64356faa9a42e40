"""Transport: one keep-alive ``requests.Session`` that turns a batch into an outcome.

The sender hands it a body; it answers with an ``Outcome`` and never raises.
The key travels only in the ``apikey`` header, never in a URL or a message.
"""

from __future__ import annotations

import enum
import os
import platform
import time
import urllib.request
from dataclasses import dataclass, replace
from typing import Any, Protocol
from urllib.parse import urlsplit

import orjson
import requests

from ._config import Config
from ._retry import parse_retry_after
from ._version import __version__

__all__ = ["HTTPTransport", "Kind", "Outcome", "Transport", "classify"]

USER_AGENT = f"logdna_client/{__version__} (python {platform.python_version()})"

# Where proxy settings come only from the environment (not the Windows registry
# or macOS system settings), what requests derives from it per request (proxies,
# no_proxy, a CA bundle) can only change when os.environ does.
_PROXIES_FROM_ENVIRON = urllib.request.getproxies is urllib.request.getproxies_environment


class Kind(enum.Enum):
    OK = "ok"
    PARTIAL = "partial"  # 207: some lines rejected
    RETRY = "retry"  # connection trouble, timeouts, 408, 429, 5xx
    TOO_LARGE = "too_large"  # 413: split and resend
    BAD_REQUEST = "bad_request"  # 400: find the bad line(s)
    UNSUPPORTED_ENCODING = "unsupported_encoding"  # 415
    AUTH = "auth"  # 401, 403
    # 3xx: never followed (the apikey header would go along to wherever it points);
    # lines are kept and retried like OTHER.
    REDIRECT = "redirect"
    OTHER = "other"  # anything else (404 ...): keep lines, back off, report


@dataclass(frozen=True)
class Outcome:
    kind: Kind
    status: int | None = None
    retry_after: float | None = None
    detail: str = ""
    rejected: int = 0  # for PARTIAL: lines the service refused


class Transport(Protocol):
    """What the sender needs from a transport; tests swap in their own."""

    def send(self, body: bytes, *, gzipped: bool, timeout: float) -> Outcome: ...

    def close(self) -> None: ...


def classify(
    status: int, retry_after: str | None, text: str, location: str | None = None
) -> Outcome:
    """Map an HTTP answer to what the sender should do with the batch.

    ``location`` is a 3xx answer's ``Location`` header: only its host is kept
    for the report (its path or query may carry tokens of someone else's).
    """
    detail = text[:200]
    if 200 <= status < 300:
        if status == 207:
            return Outcome(Kind.PARTIAL, status, detail=detail, rejected=_count_rejected(text))
        return Outcome(Kind.OK, status)
    wait = parse_retry_after(retry_after)
    if 300 <= status < 400:
        host = _host_of(location)
        return Outcome(
            Kind.REDIRECT, status, wait,
            f"redirect to {host} refused: the ingest API never redirects; "
            "check the url option",
        )  # fmt: skip
    if status in (408, 429) or status >= 500:
        return Outcome(Kind.RETRY, status, wait, detail)
    if status == 413:
        return Outcome(Kind.TOO_LARGE, status, detail=detail)
    if status == 400:
        return Outcome(Kind.BAD_REQUEST, status, detail=detail)
    if status == 415:
        return Outcome(Kind.UNSUPPORTED_ENCODING, status, detail=detail)
    if status in (401, 403):
        return Outcome(Kind.AUTH, status, wait, detail)
    return Outcome(Kind.OTHER, status, wait, detail)


def _host_of(location: str | None) -> str:
    """The host a Location header names, or a placeholder when it names none."""
    try:
        host = urlsplit(location or "").hostname
    except ValueError:  # an invalid IPv6 literal, say
        host = None
    return host[:100] if host else "the same host (relative Location)"


def _count_rejected(text: str) -> int:
    """Lines a 207 answer says were not stored (its per-line ``status`` array)."""
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        return 0
    statuses = doc.get("status") if isinstance(doc, dict) else None
    if not isinstance(statuses, list):
        return 0
    return sum(1 for s in statuses if not (isinstance(s, int) and 200 <= s < 300)
               and not (isinstance(s, str) and s.lower() in ("ok", "200")))  # fmt: skip


class HTTPTransport:
    """Sends bodies over one ``requests.Session`` (one kept-alive connection)."""

    def __init__(self, config: Config) -> None:
        self._url = config.url
        self._verify = config.verify
        session = requests.Session()
        session.headers.update(
            {
                "User-Agent": USER_AGENT,
                "Content-Type": "application/json; charset=UTF-8",
                "Accept": "application/json",
            }
        )
        secret = config.secret
        # To scrub from what servers and proxies say back (some quote the headers).
        self._key = secret.reveal() if secret is not None else None
        if self._key is not None:
            session.headers["apikey"] = self._key
        self._session = session
        params = {"hostname": config.hostname}
        if config.ip:
            params["ip"] = config.ip
        if config.mac:
            params["mac"] = config.mac
        if config.tags:
            params["tags"] = ",".join(config.tags)
        self._params = params
        # requests.Session.request reads the environment for every request
        # (proxies, no_proxy, CA bundle: two walks over os.environ, a Python
        # loop per variable). We keep its answer until os.environ changes.
        self._environ_seen: dict[bytes, bytes] | None = None
        self._environ_settings: dict[str, Any] = {}

    def send(self, body: bytes, *, gzipped: bool, timeout: float) -> Outcome:
        outcome = self._send(body, gzipped=gzipped, timeout=timeout)
        key = self._key
        if key and key in outcome.detail:
            # The detail is logged: an error body echoing the key must not leak it.
            outcome = replace(outcome, detail=outcome.detail.replace(key, "***"))
        return outcome

    def _send(self, body: bytes, *, gzipped: bool, timeout: float) -> Outcome:
        headers = {"Content-Encoding": "gzip"} if gzipped else None
        params = dict(self._params, now=str(int(time.time() * 1000)))
        session = self._session
        try:
            # What session.post(url, params=, data=, headers=, timeout=, verify=)
            # does, with the environment's settings read only when they can differ.
            prepared = session.prepare_request(
                requests.Request("POST", self._url, headers=headers, data=body, params=params)
            )
            response = session.send(
                prepared, timeout=timeout, allow_redirects=False, **self._settings(prepared.url)
            )
            try:
                return classify(
                    response.status_code, response.headers.get("Retry-After"), response.text,
                    response.headers.get("Location"),
                )  # fmt: skip
            finally:
                response.close()
        except requests.exceptions.SSLError as exc:
            # Not retried any faster than other failures, but said plainly.
            return Outcome(Kind.RETRY, None, None, f"TLS error: {_describe(exc)}")
        except requests.exceptions.Timeout as exc:
            return Outcome(Kind.RETRY, None, None, f"timed out: {_describe(exc)}")
        except requests.exceptions.RequestException as exc:
            return Outcome(Kind.RETRY, None, None, f"connection failed: {_describe(exc)}")
        except Exception as exc:  # a bug below us must not kill the sender
            return Outcome(Kind.RETRY, None, None, f"unexpected {type(exc).__name__}")

    def _settings(self, url: str | None) -> dict[str, Any]:
        """``Session.merge_environment_settings`` for our URL, for as long as it holds."""
        session = self._session
        environ = getattr(os.environ, "_data", None)  # the mapping os.environ keeps in sync
        if not (_PROXIES_FROM_ENVIRON and isinstance(environ, dict)):
            return dict(session.merge_environment_settings(url, {}, None, self._verify, None))
        if environ != self._environ_seen:  # a comparison in C, not a walk over the variables
            # The copy first: a change another thread makes while requests reads the
            # variables then differs from it, and the next request reads them again.
            seen = dict(environ)
            self._environ_settings = dict(
                session.merge_environment_settings(url, {}, None, self._verify, None)
            )
            self._environ_seen = seen
        settings = self._environ_settings
        return {**settings, "proxies": dict(settings["proxies"])}

    def close(self) -> None:
        try:
            self._session.close()
        except Exception:
            pass


def _describe(exc: BaseException) -> str:
    # The innermost reason is the useful part; requests' messages can be long.
    # They carry the URL (never the key: it only travels in a header).
    reason: BaseException = exc
    while reason.__context__ is not None and reason.__context__ is not reason:
        reason = reason.__context__
    return f"{type(reason).__name__}: {str(reason)[:200]}"
