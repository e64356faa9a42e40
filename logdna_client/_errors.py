"""Exceptions raised by logdna_client.

The tree::

    LogDNAError
    └── ConfigurationError (also a ValueError): a bad option, raised when a
        Client, handler or processor is built, never at log time

Delivery trouble is never raised into the application: it is counted in
``Client.stats()`` and reported through the ``logdna_client`` logger.

None of them ever carries the ingestion key in its message or attributes.
"""

from __future__ import annotations

__all__ = ["ConfigurationError", "LogDNAError"]


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
