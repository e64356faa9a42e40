"""A Flask app whose log lines carry the request's id, method, path and status.

Serve it:        flask --app examples/flask_app.py run
Or try it once:  python examples/flask_app.py   (one request through the test client)

    python -m logdna_client devserver
    LOGDNA_URL=http://127.0.0.1:7080/logs/ingest python examples/flask_app.py
"""

import logging.config

from flask import Flask

from logdna_client.contrib.flask import LogDNA

# Configure logging before the app is created (as Flask's docs advise).
logging.config.dictConfig(
    {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "request_context": {"()": "logdna_client.contrib.flask.RequestContextFilter"},
        },
        "handlers": {
            "console": {"class": "logging.StreamHandler"},
            "logdna": {
                "class": "logdna_client.LogDNAHandler",
                "app": "flask-example",
                "filters": ["request_context"],
            },
        },
        "root": {"handlers": ["console", "logdna"], "level": "INFO"},
        "loggers": {
            # The dev server's access lines (query strings, colour codes) stay on the
            # console; access_log=True below ships a clean one.
            "werkzeug": {"handlers": ["console"], "level": "INFO", "propagate": False},
        },
    }
)

app = Flask(__name__)
LogDNA(app, access_log=True)  # one "GET /orders/42 200 (0.4 ms)" line per request


@app.get("/orders/<int:order_id>")
def show_order(order_id: int) -> dict[str, object]:
    app.logger.info("showing order %s", order_id)
    return {"order": order_id}


if __name__ == "__main__":
    response = app.test_client().get("/orders/42", headers={"X-Request-ID": "demo-req-1"})
    print(response.status_code, response.headers["X-Request-ID"])
