"""structlog with LogDNAProcessor: each event ships as a line, then renders as usual.

python -m logdna_client devserver
LOGDNA_URL=http://127.0.0.1:7080/logs/ingest python examples/structlog_example.py
"""

import structlog

from logdna_client.structlog import LogDNAProcessor

logdna = LogDNAProcessor(app="worker", env="dev")  # key/URL from the environment

structlog.configure(
    processors=[
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso"),
        logdna,  # before the renderer: it ships a copy and passes the event on
        structlog.dev.ConsoleRenderer(colors=False),
    ]
)

log = structlog.get_logger()
structlog.contextvars.bind_contextvars(job_id="job-17")
log.info("job started", queue="emails")
log.warning("retrying", attempt=2)
try:
    {}["missing"]
except KeyError:
    log.exception("job failed")
structlog.contextvars.clear_contextvars()
