"""LogDNAHandler from logging.config.dictConfig, every option a string.

Options given as strings (from a YAML/JSON/INI file or the environment) are
coerced: numbers, durations ("500ms"), sizes ("2MB"), booleans ("false") and
comma-separated tags all work.

    python -m logdna_client devserver
    LOGDNA_URL=http://127.0.0.1:7080/logs/ingest python examples/dictconfig.py
"""

import logging
import logging.config

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"console": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "console"},
        "logdna": {
            "class": "logdna_client.LogDNAHandler",
            "level": "INFO",
            "app": "billing",
            "env": "staging",
            "tags": "web, eu-west",
            "flush_interval": "500ms",
            "max_batch_bytes": "1MB",
            "shutdown_timeout": "5",
            "compress": "true",
        },
    },
    "root": {"handlers": ["console", "logdna"], "level": "INFO"},
}

logging.config.dictConfig(LOGGING)

log = logging.getLogger("billing.invoices")
log.info("invoice %s sent", "INV-7", extra={"amount_cents": 4200, "currency": "EUR"})
log.error("payment declined", extra={"invoice": "INV-8", "reason": "card_expired"})
