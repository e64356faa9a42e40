"""The disk spool: durable delivery across crashes, restarts and long outages.

``_format`` is the file format; ``_store`` the ``Spool`` the sender drives.
See docs/spool.md for what it guarantees and ``_sender.py`` for
where the sender calls it.
"""

from ._destination import destination
from ._store import (
    QUARANTINE_KEEP,
    SYNC_INTERVAL,
    SYNC_MODES,
    BatchId,
    ReplayBatch,
    Spool,
    SyncMode,
)

__all__ = [
    "QUARANTINE_KEEP",
    "SYNC_INTERVAL",
    "SYNC_MODES",
    "BatchId",
    "ReplayBatch",
    "Spool",
    "SyncMode",
    "destination",
]
