"""Run the example Django project once: two requests through Django's test client.

    python -m logdna_client devserver
    LOGDNA_URL=http://127.0.0.1:7080/logs/ingest python examples/django_app/run.py

Every line logged during a request carries request_id, http_method and
http_path in its meta (and user_id for an authenticated user, once the
view has used request.user: the middleware never loads it itself).
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")

import django
from django.test import Client

django.setup()  # applies settings.LOGGING

client = Client(raise_request_exception=False)
ok = client.get("/orders/42", HTTP_X_REQUEST_ID="demo-req-1")
failed = client.get("/fail")
print(ok.status_code, ok["X-Request-ID"], failed.status_code, failed["X-Request-ID"])
