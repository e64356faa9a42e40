"""Exceptions raised by logdna_client.

The tree::

    LogDNAError
    ├── ConfigurationError (also a ValueError): a bad option, raised when a
    │   Client, handler or processor is built, never at log time
    └── TransportError: a delivery attempt failed; carries ``status`` and
        ``retry_after`` as attributes (used inside the sender, never raised
        into the application)

None of them ever carries the ingestion key in its message or attributes.
"""

from __future__ import annotations

__all__ = ["ConfigurationError", "LogDNAError", "TransportError"]


class LogDNAError(Exception):
    """Base class for every error this library raises."""


class ConfigurationError(LogDNAError, ValueError):
    """An option has a value the library cannot use.

    Attributes:
        option: the name of the offending option (``"flush_interval"``), or
            ``None`` when the problem spans several options.
    """

    def __init__(self, message: str, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option

    def __reduce__(self) -> tuple[type[ConfigurationError], tuple[str, str | None]]:
        return (type(self), (str(self), self.option))


class TransportError(LogDNAError):
    """One delivery attempt failed.

    Attributes:
        status: the HTTP status code, or ``None`` for a connection-level failure.
        retry_after: seconds the server asked us to wait, or ``None``.
    """

    def __init__(
        self, message: str, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after

    def __reduce__(
        self,
    ) -> tuple[type[TransportError], tuple[str, int | None, float | None]]:
        return (type(self), (str(self), self.status, self.retry_after))
