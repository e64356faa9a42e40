"""OpenTelemetry's exporter variables (``OTEL_EXPORTER_OTLP_*``), read for protocol="otlp".

The endpoint, headers, CA file, timeout and compression the SDK's exporter takes from
the environment, read as it reads them. ``Config`` reads them only when neither url=
nor LOGDNA_URL is given. A malformed one is a ``ConfigurationError`` naming the
variable, never its value: headers often carry a token.
"""

from __future__ import annotations

import os
import re
from urllib.parse import unquote

from ._errors import ConfigurationError
from ._secret import Secret, environ

#: OpenTelemetry's exporter variables (SDK environment variables, OTLP exporter
#: configuration) read with protocol="otlp": the logs signal's own wins over the generic.
OTEL_ENDPOINTS = ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
OTEL_HEADERS = ("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS")
OTEL_CERTIFICATES = ("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE")
OTEL_TIMEOUTS = ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")
OTEL_COMPRESSIONS = ("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION")
# An HTTP header name (RFC 9110's token).
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _otel_variable(names: tuple[str, str]) -> tuple[str, str] | None:
    """(name, value) of the first of ``names`` set to something other than blanks."""
    for name in names:
        value = environ(name)
        if value is not None and value.strip():
            return name, value.strip()
    return None


def otel_endpoint() -> tuple[str, str | None]:
    """(the variable, the URL) the OTel endpoint variables give; ("url", None) for none.

    The logs endpoint is used as it is; the generic one is a base URL that the logs
    path ``v1/logs`` is appended to, as the SDK's exporter does."""
    found = _otel_variable(OTEL_ENDPOINTS)
    if found is None:
        return "url", None
    name, url = found
    if name == OTEL_ENDPOINTS[1]:
        url += "v1/logs" if url.endswith("/") else "/v1/logs"
    return name, url


def otel_headers() -> tuple[str, tuple[tuple[str, Secret], ...]]:
    """(the variable, the headers) ``OTEL_EXPORTER_OTLP_(LOGS_)HEADERS`` give: ``k=v,k2=v2``,
    names and values percent-decoded; each value held in a Secret (they often carry a token).

    A malformed entry is a ConfigurationError naming the variable and the entry's place,
    never its text: without the header the receiver refuses every request, which is
    better said at start than found in a 401 later."""
    found = _otel_variable(OTEL_HEADERS)
    if found is None:
        return "", ()
    name = found[0]
    headers = _parse_headers(found[1])
    del found  # the raw text: not in this frame's locals when an error is captured
    if isinstance(headers, int):
        raise ConfigurationError(
            f"{name}: entry {headers} is not key=value with a header name and a value of "
            "printable ASCII (percent-encoded)",
            "url",
        )
    return name, headers


# Header names that carry a credential (see _auth.credentials_in): one such header in
# the OTel headers and the key would be two credentials on one request.
_CREDENTIAL_HEADERS = ("authorization", "apikey")


def one_credential(
    secret: Secret | None, key_given: str, variable: str, headers: tuple[tuple[str, Secret], ...]
) -> Secret | None:
    """The key to send beside the OTel ``headers``: a request carries one credential.

    A credential header there is the OTel endpoint's own (the variables came with it).
    Beside a key given on purpose (``key_given`` names how), it is a ConfigurationError
    naming both, neither's value. An ambient ``LOGDNA_INGESTION_KEY`` is not read at all
    beside OTel headers (``Config``: whatever their names, they may carry another
    vendor's credential); one that reached here anyway is not sent."""
    credential = next((n for n, _ in headers if n.lower() in _CREDENTIAL_HEADERS), None)
    if credential is None or secret is None:
        return secret
    if key_given:
        raise ConfigurationError(
            f"key: {key_given} and the {credential} header in {variable} are two credentials, "
            "and a request carries one; drop one of them",
            "key",
        )
    return None


def otel_certificate() -> str | None:
    """The CA file ``OTEL_EXPORTER_OTLP_(LOGS_)CERTIFICATE`` names to verify the OTel
    endpoint with, as the SDK's exporter does; None when neither is set. A file that is
    not there is a ConfigurationError naming the variable: without it every request
    would fail TLS verification."""
    found = _otel_variable(OTEL_CERTIFICATES)
    if found is None:
        return None
    name, path = found
    if not os.path.exists(path):  # (a folder of CA files too, as verify= takes one)
        raise ConfigurationError(f"{name}: expected the path of an existing CA file", "verify")
    return path


def otel_timeout() -> float | None:
    """``request_timeout`` as ``OTEL_EXPORTER_OTLP_(LOGS_)TIMEOUT`` gives it, in seconds;
    None when neither is set.

    The specification's unit is milliseconds (the Python SDK's exporter reads seconds
    today: a pod-wide ``10`` meant for it is 10 ms here, below the floor, and refused
    rather than read as either). Out of request_timeout's range, or no number, is a
    ConfigurationError naming the variable."""
    found = _otel_variable(OTEL_TIMEOUTS)
    if found is None:
        return None
    name, text = found
    millis = float(text) if _MILLIS.fullmatch(text) else -1.0
    if not 100 <= millis <= 600_000:
        raise ConfigurationError(
            f"{name}: expected milliseconds, as the OpenTelemetry specification says, from "
            "100 to 600000 (request_timeout's 0.1 to 600 s); request_timeout= wins over it",
            "request_timeout",
        )
    return millis / 1000


def otel_compression() -> bool | None:
    """``compress`` as ``OTEL_EXPORTER_OTLP_(LOGS_)COMPRESSION`` gives it: "gzip" True,
    "none" False (either case, as the SDK reads it); None when neither is set. Anything
    else is a ConfigurationError naming the variable: the SDK's exporter warns and sends
    plain, which here would turn gzip off without a word."""
    found = _otel_variable(OTEL_COMPRESSIONS)
    if found is None:
        return None
    name, text = found
    value = text.lower()
    if value not in ("gzip", "none"):
        raise ConfigurationError(f'{name}: expected "gzip" or "none"', "compress")
    return value == "gzip"


_MILLIS = re.compile(r"\d+(?:\.\d*)?")


def _parse_headers(text: str) -> tuple[tuple[str, Secret], ...] | int:
    """``k=v,...`` as headers, or the place (from 1) of the first malformed entry."""
    headers: list[tuple[str, Secret]] = []
    for place, entry in enumerate(text.split(","), 1):
        if not entry.strip():
            continue
        key, equals, value = entry.partition("=")
        # Both decoded, then trimmed, as the SDK's parse_env_headers does: a name sent
        # still encoded ("x%2Dtenant") is another header, and a value that decodes to a
        # leading space made requests refuse every request (InvalidHeader).
        try:
            key = unquote(key, errors="strict").strip()
            value = unquote(value, errors="strict").strip()
        except UnicodeDecodeError:  # percent-escapes that are not UTF-8
            return place
        if not (equals and _TOKEN.fullmatch(key) and value.isascii() and value.isprintable()):
            return place
        headers.append((key, Secret(value)))
    return tuple(headers)
