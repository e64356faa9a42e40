"""The stdlib logging handler in a few lines.

Run a local ingest server in one terminal and this in another:

    python -m logdna_client devserver
    LOGDNA_URL=http://127.0.0.1:7080/logs/ingest python examples/stdlib_basic.py

For the real service, set LOGDNA_INGESTION_KEY instead of LOGDNA_URL.
"""

import logging

from logdna_client import LogDNAHandler

# key and URL come from LOGDNA_INGESTION_KEY / LOGDNA_URL (no key needed on loopback).
handler = LogDNAHandler(app="example", env="dev", tags="examples")
logging.basicConfig(level=logging.INFO)  # a console handler, as usual
# (basicConfig(handlers=[handler, ...]) works too: it keeps the handler's own formatter.)
logging.getLogger().addHandler(handler)

log = logging.getLogger("shop.orders")
log.info("order %s created", 1001, extra={"customer_id": 7, "total": 19.99})
log.warning("stock low", extra={"sku": "A-42", "left": 3})
try:
    discount = 100 / 0
except ZeroDivisionError:
    log.exception("could not compute the discount")

# Nothing else to do: pending lines are delivered at exit (within shutdown_timeout).
print("stats:", handler.client.stats()["accepted"], "lines accepted")
