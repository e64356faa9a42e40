"""The Django and Flask configs of the docs (and examples), pasted into fresh apps served by
the frameworks' own development servers, ship the app's lines and clean access lines: never a
dev server's raw access line, with its query string and colour codes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import orjson
import pytest

from logdna_client._devserver import DevServer
from tests._helpers_integrations import REPO_ROOT, TIMEOUT

DOCS = REPO_ROOT / "docs"
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
SECRET = "s3cret-token"
# Requests every app gets: a view, a 404 (coloured by Werkzeug), and a path holding
# an escape character (decoded by the framework, so a real ESC in request.path).
PATHS = [f"/orders/42?token={SECRET}", f"/missing?token={SECRET}", f"/%1B%5B31mred?token={SECRET}"]

REQUESTS = f"""
import threading, urllib.error, urllib.request
threading.Thread(target=server.serve_forever, daemon=True).start()
for path in {PATHS!r}:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{{server.server_port}}{{path}}").read()
    except urllib.error.HTTPError:
        pass
server.shutdown()
"""

FLASK_SERVE = (
    """
from werkzeug.serving import make_server  # what `flask run` serves with
server = make_server("127.0.0.1", 0, app)
"""
    + REQUESTS
)

DJANGO_SETTINGS = """
SECRET_KEY = "test-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "urls"
INSTALLED_APPS = ["django.contrib.auth", "django.contrib.contenttypes",
                  "django.contrib.sessions", "django.contrib.messages"]
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"  # no database
DATABASES = {}
"""

DJANGO_URLS = """
import logging
from django.http import JsonResponse
from django.urls import path

log = logging.getLogger("shop.orders")

def show_order(request, order_id):
    log.info("showing order %s", order_id)
    return JsonResponse({"order": order_id})

urlpatterns = [path("orders/<int:order_id>", show_order)]
"""

DJANGO_SERVE = (
    """
import os
os.environ["DJANGO_SETTINGS_MODULE"] = "settings"
import django
django.setup()
from django.core.servers.basehttp import (  # what `manage.py runserver` serves with
    WSGIRequestHandler, WSGIServer, get_internal_wsgi_application,
)
server = WSGIServer(("127.0.0.1", 0), WSGIRequestHandler)
server.set_app(get_internal_wsgi_application())
"""
    + REQUESTS
)


def doc_block(page: str, lang: str, containing: str) -> str:
    """The first ``lang`` block of ``page`` containing ``containing``, as written."""
    for found_lang, code in FENCE.findall((DOCS / page).read_text()):
        if found_lang == lang and containing in code:
            return str(code)
    raise AssertionError(f"no {lang} block with {containing!r} in {page}")


def run(cwd: Path, code: str, server: DevServer) -> str:
    """Run ``code`` in a fresh interpreter; returns what it wrote to the console."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGDNA_")}
    env["LOGDNA_URL"] = server.url
    env["PYTHONPATH"] = f"{cwd}{os.pathsep}{REPO_ROOT}"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert 0 == result.returncode, result.stderr
    return result.stderr


def check_shipped(server: DevServer, console: str) -> list[dict[str, Any]]:
    """What arrived holds the view's line and clean access lines, and no raw one."""
    assert server.wait_for_lines(4, TIMEOUT), server.lines
    lines = server.lines
    texts = [line["line"] for line in lines]
    # The dev server did log raw access lines: to the console only.
    assert SECRET in console
    assert SECRET not in orjson.dumps(lines).decode()
    assert not any("HTTP/1.1" in text for text in texts), texts
    assert "showing order 42" in texts
    view = next(line for line in lines if line["line"] == "showing order 42")
    assert ("GET", "/orders/42") == (view["meta"]["http_method"], view["meta"]["http_path"])
    assert len(view["meta"]["request_id"]) >= 7  # with the request's context
    access = {
        line["line"].split(" (")[0]: line for line in lines if line["line"].startswith("GET ")
    }
    assert {"GET /orders/42 200", "GET /missing 404", "GET /[31mred 404"} <= set(access), texts
    for line in access.values():
        assert "\x1b" not in line["line"] and "\x1b" not in line["meta"]["http_path"]
        assert "?" not in line["meta"]["http_path"]
    return lines


class TestFlask:
    def test_docs_config(self, server: DevServer, tmp_path: Path) -> None:
        """docs/flask.md's example, served by Werkzeug's dev server."""
        app = doc_block("flask.md", "python", "dictConfig")
        console = run(tmp_path, app + FLASK_SERVE, server)
        lines = check_shipped(server, console)
        assert not any("\x1b" in line["line"] for line in lines)  # the banner neither

    def test_example_app(self, server: DevServer, tmp_path: Path) -> None:
        """examples/flask_app.py, served by Werkzeug's dev server."""
        code = (
            f"import runpy\napp = runpy.run_path({str(REPO_ROOT / 'examples/flask_app.py')!r})"
            '["app"]\n' + FLASK_SERVE
        )
        console = run(tmp_path, code, server)
        check_shipped(server, console)


class TestDjango:
    def _project(self, tmp_path: Path, settings: str) -> Path:
        (tmp_path / "settings.py").write_text(DJANGO_SETTINGS + settings)
        (tmp_path / "urls.py").write_text(DJANGO_URLS)
        return tmp_path

    def test_docs_config(self, server: DevServer, tmp_path: Path) -> None:
        """docs/django.md's settings, pasted into a fresh project served by runserver's server."""
        settings = doc_block("django.md", "py", "LOGGING = {")
        project = self._project(tmp_path, settings)
        console = run(project, DJANGO_SERVE, server)
        check_shipped(server, console)

    def test_testing_docs_testcase(self, server: DevServer, tmp_path: Path) -> None:
        """docs/testing.md's Django TestCase passes in that fresh project, sending nothing."""
        settings = doc_block("django.md", "py", "LOGGING = {")
        db = "\nDATABASES = {'default': {'ENGINE': 'django.db.backends.sqlite3'}}\n"
        project = self._project(tmp_path, settings + db)
        (project / "test_orders.py").write_text(
            doc_block("testing.md", "py", "class OrderViewTests")
        )
        code = (
            "import os, sys\n"
            "os.environ['DJANGO_SETTINGS_MODULE'] = 'settings'\n"
            "from django.core.management import execute_from_command_line\n"
            "execute_from_command_line(['django-admin', 'test', 'test_orders', '-v', '2'])\n"
        )
        console = run(project, code, server)
        assert "test_view_logs_with_request_context" in console and "\nOK" in console, console
        assert [] == [line for line in server.lines if line["line"] == "showing order 42"]

    def test_example_settings(self, server: DevServer, tmp_path: Path) -> None:
        """examples/django_app/settings.py's LOGGING, in the same fresh project."""
        example = (REPO_ROOT / "examples/django_app/settings.py").read_text()
        logging_part = example[example.index("MIDDLEWARE = [") :]
        project = self._project(tmp_path, textwrap.dedent(logging_part))
        console = run(project, DJANGO_SERVE, server)
        check_shipped(server, console)


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/a/b?token=x", "/a/b"), ("/\x1b[31mred", "/[31mred"), ("/x\x00\x7f\x9by", "/xy"),
     ("/" + "a" * 2000, "/" + "a" * 1020 + "...")],
)  # fmt: skip
def test_clean_path(path: str, expected: str) -> None:
    """Paths lose the query string and control characters, and are capped."""
    from logdna_client._context import clean_path

    assert expected == clean_path(path)


class _FakeRequest:
    method = "GET"
    path = "/search"

    def __repr__(self) -> str:
        return f"<_FakeRequest: GET '/search?token={SECRET}'>"


def test_request_object_in_meta_ships_without_query() -> None:
    """A request object in extra= (as django.request passes one) ships as method and path."""
    from logdna_client import Client
    from logdna_client.testing import capture_lines

    client = Client(url="http://127.0.0.1:9/logs/ingest")
    with capture_lines() as lines:
        client.log("Not Found: /search", meta={"request": _FakeRequest(), "status_code": 404})
    client.close(0)
    assert "<_FakeRequest: GET /search>" == lines[0]["meta"]["request"]
