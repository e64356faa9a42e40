"""logdna_client: ship Python logs to LogDNA / Mezmo, fast and without loss.

Importing the package starts nothing: no threads, no sockets and no
environment reads until a Client (or handler, or processor) is built. Nor does
it import what those need (requests, the C extension) until one of its
names is first used: pytest imports the package's plugin, and so the package,
at the start of every test run wherever it is installed, and most of those runs
never log through it. asyncio it never imports (aflush and aclose run where it is).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:  # what type checkers and IDEs see: the names, eagerly
    from ._client import Client
    from ._config import Config
    from ._errors import ConfigurationError, LogDNAError
    from ._handler import LogDNAHandler
    from ._options import ClientOptions
    from ._stats import ClientStats

__all__ = [
    "Client",
    "ClientOptions",
    "ClientStats",
    "Config",
    "ConfigurationError",
    "LogDNAError",
    "LogDNAHandler",
    "__version__",
]

#: Where each public name lives, imported on its first use (PEP 562).
_HOMES = {
    "Client": "._client",
    "ClientOptions": "._options",
    "ClientStats": "._stats",
    "Config": "._config",
    "ConfigurationError": "._errors",
    "LogDNAError": "._errors",
    "LogDNAHandler": "._handler",
}


if not TYPE_CHECKING:  # hidden from type checkers: they would take any name as valid

    def __getattr__(name: str) -> Any:
        home = _HOMES.get(name)
        if home is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(import_module(home, __name__), name)
        globals()[name] = value  # later uses are plain lookups
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
