"""logdna_client: ship Python logs to LogDNA / Mezmo, fast and without loss.

Importing the package starts nothing: no threads, no sockets and no
environment reads until a Client (or handler, or processor) is built.
"""

from ._client import Client
from ._config import Config
from ._errors import ConfigurationError, LogDNAError
from ._handler import LogDNAHandler
from ._options import ClientOptions
from ._stats import ClientStats
from ._version import __version__

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
