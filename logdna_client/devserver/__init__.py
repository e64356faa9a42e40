"""A local ingest server that speaks the LogDNA / Mezmo ingest API.

Used by the integration tests, the benchmarks, the demo and by users who want
to see what their application ships (``python -m logdna_client devserver``).
Standard library plus orjson only.

The server records every request it handles (never the API key), keeps the
accepted lines in memory (optional), can tail them to a stream, append them
to a JSON Lines file, show them live on a web page at ``/``, and inject
faults for tests of retry and backoff: failures, dropped connections, delays,
outages and rejected lines.

One module per job: ``_http`` (the socket and what each path answers),
``_ingest`` (POSTed lines), ``_body`` (request bodies, their limits and
decoding), ``_store`` (what is kept), ``_tail`` (the terminal), ``_web`` (the
page's event stream; the page itself is in ``static/``), ``_faults`` (fault
injection) and ``_server`` (``DevServer``, which wires them).
"""

from ._body import MAX_BODY_BYTES, MAX_CONCURRENT_BODIES
from ._server import DevServer
from ._store import Origin, RequestRecord, dump_line
from ._tail import format_line, isatty
from ._web import DEFAULT_PAGE_LINES

__all__ = [
    "DEFAULT_PAGE_LINES",
    "MAX_BODY_BYTES",
    "MAX_CONCURRENT_BODIES",
    "DevServer",
    "Origin",
    "RequestRecord",
    "dump_line",
    "format_line",
    "isatty",
]
