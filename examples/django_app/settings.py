"""Minimal Django settings: the LOGGING setting and the request-context middleware.

Key and URL come from LOGDNA_INGESTION_KEY / LOGDNA_URL (no key needed on loopback).
"""

SECRET_KEY = "example-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "urls"
INSTALLED_APPS: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}

MIDDLEWARE = [
    # Put it after AuthenticationMiddleware when you use django.contrib.auth,
    # so that lines carry user_id (from when the view first uses request.user).
    "logdna_client.contrib.django.LogDNARequestContextMiddleware",
]
LOGDNA_ACCESS_LOG = True  # one "GET /path 200 (1.2 ms)" line per request

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_context": {"()": "logdna_client.contrib.django.RequestContextFilter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler"},
        "logdna": {
            "class": "logdna_client.LogDNAHandler",
            "app": "django-example",
            "env": "dev",
            "filters": ["request_context"],
        },
    },
    "root": {"handlers": ["console", "logdna"], "level": "INFO"},
    "loggers": {
        "django": {"level": "INFO"},
        # runserver's access lines (query strings, colour codes) stay on the console;
        # LOGDNA_ACCESS_LOG ships a clean one.
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
