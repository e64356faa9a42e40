"""Security defaults (issue 5): the key, the wire, redaction, and no trace of the key anywhere."""

# House style asserts `expected == actual`; ruff's SIM300 calls that a Yoda condition.

from __future__ import annotations

import base64
import collections
import dataclasses
import enum
import http.server
import logging
import os
import re
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import pytest
import requests
import responses

from logdna_client import Client, Config, ConfigurationError, LogDNAHandler
from logdna_client._devserver import DevServer
from logdna_client._redact import MARKER, PRESET_PATTERNS, Redactor
from logdna_client._secret import Secret
from logdna_client._transport import HTTPTransport
from tests._otlp_server import Server, otlp_client
from tests.helpers import make_cert as _make_cert
from tests.helpers import make_logger
from tests.test_otlp_environment import _OTEL as OTEL_VARIABLES

REPO_ROOT = Path(__file__).resolve().parent.parent
KEY = "kq7Z-ingest-Key-4f9c2e81b7d3a6"
# A leak might be partial (a truncated message): look for a distinctive middle part too.
KEY_FRAGMENTS = (KEY, KEY[5:19], KEY[-12:])
UNREACHABLE = "https://127.0.0.1:9/logs/ingest"
# Loopback URLs need no key (the devserver): key sources are tested against a remote one.
REMOTE = "https://logs.example.com/logs/ingest"
WAIT = 10.0


def assert_no_key(*texts: str | bytes) -> None:
    for text in texts:
        haystack = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        for fragment in KEY_FRAGMENTS:
            assert fragment not in haystack, f"key fragment {fragment!r} leaked in {haystack!r}"


def free_port() -> int:
    """A loopback port that nothing listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def offline() -> Iterator[Client]:
    """A client that never sends (unreachable URL, huge interval): inspect its buffer."""
    client = Client(key=KEY, url=UNREACHABLE, hostname="t", flush_interval=3600)
    yield client
    client.close(timeout=0)


def make_client(**options: Any) -> Client:
    options.setdefault("key", KEY)
    options.setdefault("url", UNREACHABLE)
    options.setdefault("hostname", "t")
    options.setdefault("flush_interval", 3600)
    return Client(**options)


def buffered(client: Client) -> list[dict[str, Any]]:
    return [orjson.loads(data) for data in client._buffer.snapshot()]


class Capture(logging.Handler):
    """Keeps every formatted record (with traceback text); sets ``seen`` on a match."""

    def __init__(self, wanted: str = "") -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.texts: list[str] = []
        self.wanted = wanted
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        self.texts.append(text)
        if self.wanted and self.wanted in text:
            self.seen.set()

    @property
    def text(self) -> str:
        return "\n".join(self.texts)


@pytest.fixture
def capture() -> Iterator[Capture]:
    """Every record of every logger (the library's, urllib3's, requests') at DEBUG."""
    handler = Capture()
    root = logging.getLogger()
    own = logging.getLogger("logdna_client")
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    own.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)


# -- the key -------------------------------------------------------------------


class TestKeyNeverShown:
    def test_repr_and_str_of_every_public_object(self) -> None:
        """Client, handler, Config, Secret and the structlog processor hide the key."""
        client = make_client()
        handler = LogDNAHandler(key=KEY, url=UNREACHABLE, hostname="t")
        shown = [client, handler, client.config, client.config.secret, handler.client]
        try:
            from logdna_client.structlog import LogDNAProcessor

            shown.append(LogDNAProcessor(key=KEY, url=UNREACHABLE, hostname="t"))
        except ImportError:
            pass
        try:
            for obj in shown:
                assert_no_key(repr(obj), str(obj), f"{obj!r:>10}")
            assert KEY == client.config.secret.reveal()  # type: ignore[union-attr]
        finally:
            handler.close()
            client.close(timeout=0)
            for obj in shown[5:]:
                obj.close(timeout=0)  # type: ignore[attr-defined]

    def test_config_replace_and_vars_hide_the_key(self) -> None:
        """A Config copy keeps the key wrapped; only Secret.reveal() shows it."""
        config = Config(key=KEY, url=UNREACHABLE).replace(app="x")

        assert isinstance(config.key, Secret)
        assert_no_key(repr(config), repr(vars(config) if hasattr(config, "__dict__") else ""))

    @pytest.mark.parametrize(
        "option",
        [
            {"flush_interval": "soon"},
            {"max_batch_bytes": "lots"},
            {"max_buffer_bytes": -1},
            {"overflow": "explode"},
            {"verify": "/no/such/ca.pem"},
            {"level": "LOUD"},
            {"url": "ftp://logs.example.com/logs/ingest"},
            {"url": "http://logs.example.com/logs/ingest"},
            {"url": f"https://user:{KEY}@logs.example.com/logs/ingest"},
            {"tags": 5},
            {"app": "a" * 81},
            {"hostname": 7},
            {"redact_patterns": ["("]},
            {"before_send": "no.such.module.scrub"},
            {"compress": "perhaps"},
            {"request_timeout": "0"},
            {"key": KEY + "\n\nX-Injected: 1"},
        ],
        ids=lambda o: next(iter(o)),
    )
    def test_configuration_errors_never_show_the_key(self, option: dict[str, Any]) -> None:
        """Each bad option raises ConfigurationError whose message and args hide the key."""
        options = {"key": KEY, "url": UNREACHABLE, **option}

        with pytest.raises(ConfigurationError) as info:
            Client(**options)

        exc = info.value
        assert_no_key(str(exc), repr(exc), repr(exc.args), repr(exc.option))

    def test_bad_scheme_url_with_key_in_query_is_not_echoed(self) -> None:
        """A mistyped URL that carries the key in its query is not quoted back."""
        with pytest.raises(ConfigurationError) as info:
            Config(key=KEY, url=f"ftp://logs.example.com/logs/ingest?apikey={KEY}")

        assert_no_key(str(info.value))

    def test_key_in_url_query_is_refused_without_echo(self) -> None:
        """An https URL carrying apikey= is refused, and the message does not quote it."""
        with pytest.raises(ConfigurationError) as info:
            Config(url=f"https://logs.example.com/logs/ingest?apikey={KEY}")

        assert "url" == info.value.option
        assert_no_key(str(info.value))

    def test_a_key_that_is_not_a_string_is_hidden(self) -> None:
        """A wrong type for key= is reported as <hidden>."""
        with pytest.raises(ConfigurationError) as info:
            Config(key=b"kq7Z-ingest-Key-4f9c2e81b7d3a6", url=UNREACHABLE)  # type: ignore[arg-type]

        assert_no_key(str(info.value))
        assert "<hidden>" in str(info.value)

    def test_pickled_config_error_hides_the_key(self) -> None:
        """A ConfigurationError survives pickling (multiprocessing) and still hides the key."""
        import pickle

        with pytest.raises(ConfigurationError) as info:
            Client(key=KEY, url=UNREACHABLE, overflow="nope")

        assert_no_key(pickle.dumps(info.value))


class TestKeyNotInLibraryLogs:
    """The library's own records (and urllib3/requests', at DEBUG) through every failure."""

    def run(self, capture: Capture, wanted: str, **options: Any) -> None:
        capture.wanted = wanted
        client = make_client(flush_interval=0.05, request_timeout=2, retry_max_backoff=0.2,
                             **options)  # fmt: skip
        try:
            client.log("hello", meta={"apikey": KEY, "n": 1})
            client.flush(timeout=0.01)
            assert capture.seen.wait(WAIT), capture.text
        finally:
            client.close(timeout=0)
        assert_no_key(capture.text)

    def test_401_without_a_key(self, capture: Capture) -> None:
        """A server that wants a key the client lacks: reported, key not shown."""
        with DevServer(key=KEY) as server:
            self.run(capture, "refused (HTTP 401)", key=None, url=server.url)

    def test_403_with_a_wrong_key(self, capture: Capture) -> None:
        """A refused key is reported without quoting it."""
        with DevServer(key="some-other-key") as server:
            self.run(capture, "refused (HTTP 403)", url=server.url)

    def test_500(self, capture: Capture) -> None:
        """A failing server is reported without the key."""
        with DevServer() as server:
            server.fail_next(3, 500)
            self.run(capture, "HTTP 500", url=server.url)

    def test_connection_refused(self, capture: Capture) -> None:
        """Nothing listening: the report names the failure, not the key."""
        self.run(capture, "connection failed", url=f"http://127.0.0.1:{free_port()}/logs/ingest")

    def test_tls_error_against_a_plain_port(self, capture: Capture) -> None:
        """https:// to a plain-HTTP port: a server that does not speak TLS, reported
        without the key."""
        with DevServer() as server:
            url = f"https://127.0.0.1:{server.port}/logs/ingest"
            self.run(capture, "does not speak TLS", url=url)

    @responses.activate
    def test_server_echoing_the_key_in_an_error_body(self, capture: Capture) -> None:
        """A proxy that quotes the apikey header in its 500 body does not get it logged."""

        def echo(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
            return 500, {}, f"bad upstream for apikey {request.headers.get('apikey')}"

        url = "https://logs.example.com/logs/ingest"
        responses.add_callback(responses.POST, url, callback=echo)
        self.run(capture, "sending failed", url=url)


class TestAShortKey:
    def test_it_does_not_cut_up_the_librarys_messages(self, capture: Capture) -> None:
        """A key under 8 characters (a test's "k") is no ingestion key: its letters in a
        report are not scrubbed (H187: "does not spea*** TLS"), as it is not hidden in
        configuration errors either. A real key's still is (the tests above)."""
        capture.wanted = "does not speak TLS"
        with DevServer() as server:
            client = make_client(key="k", url=f"https://127.0.0.1:{server.port}/logs/ingest",
                                 flush_interval=0.05, request_timeout=2,
                                 retry_max_backoff=0.2)  # fmt: skip
            try:
                client.log("hello")
                client.flush(timeout=0.01)
                assert capture.seen.wait(WAIT), capture.text
            finally:
                client.close(timeout=0)
        assert "***" not in capture.text


class TestKeyOnTheWire:
    @responses.activate
    def test_key_travels_in_the_apikey_header_only(self) -> None:
        """The request carries the key in the apikey header, never in the URL or the body."""
        url = "https://logs.example.com/logs/ingest"
        responses.add(responses.POST, url, json={"status": "ok"})
        client = make_client(url=url, flush_interval=0.05, compress=False)
        try:
            client.log("hello")
            assert client.flush(timeout=WAIT)
        finally:
            client.close(timeout=0)

        request = responses.calls[0].request
        assert KEY == request.headers["apikey"]
        assert "authorization" not in {name.lower() for name in request.headers}
        assert "apikey" not in (request.url or "").lower()
        assert_no_key(request.url or "", request.body or b"")

    def test_devserver_sees_the_key_as_a_header(self, server: DevServer) -> None:
        """Against the devserver: every request authenticated by header, none by query."""
        keyed = DevServer(key=KEY).start()
        try:
            client = make_client(url=keyed.url, flush_interval=0.05)
            for i in range(3):
                client.log(f"line {i}")
                assert client.flush(timeout=WAIT)
            client.close(timeout=0)
            records = keyed.requests
        finally:
            keyed.stop()

        assert records
        assert {("header", True)} == {(r.auth, r.key_valid) for r in records}
        for record in records:
            assert "apikey" not in {name.lower() for name in record.query}
            assert_no_key(repr(record))


# -- key sources ---------------------------------------------------------------


class TestKeySources:
    @pytest.fixture(autouse=True)
    def _no_env_key(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("LOGDNA_INGESTION_KEY", raising=False)

    def test_argument(self) -> None:
        """key= is used as given, whitespace stripped."""
        assert KEY == Config(key=f"  {KEY}\n", url=REMOTE).secret.reveal()  # type: ignore[union-attr]

    def test_environment_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """LOGDNA_INGESTION_KEY is used when key= is not given."""
        monkeypatch.setenv("LOGDNA_INGESTION_KEY", f"{KEY}\n")

        assert KEY == Config(url=REMOTE).secret.reveal()  # type: ignore[union-attr]

    def test_argument_wins_over_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """An explicit key= beats the environment."""
        monkeypatch.setenv("LOGDNA_INGESTION_KEY", "from-env")

        assert KEY == Config(key=KEY, url=REMOTE).secret.reveal()  # type: ignore[union-attr]

    def test_key_file_is_read_and_stripped(self, tmp_path: Path) -> None:
        """key_file= (a mounted secret) is read, surrounding whitespace stripped."""
        path = tmp_path / "ingestion-key"
        path.write_text(f"\n  {KEY}  \r\n")

        config = Config(key_file=str(path), url=REMOTE)

        assert KEY == config.secret.reveal()  # type: ignore[union-attr]
        assert_no_key(repr(config))

    def test_key_file_wins_over_environment(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A key_file= given explicitly beats LOGDNA_INGESTION_KEY."""
        monkeypatch.setenv("LOGDNA_INGESTION_KEY", "from-env")
        path = tmp_path / "key"
        path.write_text(KEY)

        assert KEY == Config(key_file=str(path), url=REMOTE).secret.reveal()  # type: ignore[union-attr]

    def test_missing_key_names_every_place_looked(self) -> None:
        """No key anywhere: ConfigurationError naming key= and the environment variable."""
        with pytest.raises(ConfigurationError) as info:
            Config(url=REMOTE)

        message = str(info.value)
        assert "key" == info.value.option
        assert "key=" in message
        assert "LOGDNA_INGESTION_KEY" in message

    def test_blank_key_is_an_error(self) -> None:
        """A key of only whitespace counts as no key."""
        with pytest.raises(ConfigurationError, match="no ingestion key"):
            Config(key=" \n\t", url=REMOTE)

    def test_empty_key_file_names_the_file(self, tmp_path: Path) -> None:
        """An empty mounted secret is an error naming the file it read."""
        path = tmp_path / "empty-key"
        path.write_text("  \n")

        with pytest.raises(ConfigurationError) as info:
            Config(key_file=str(path), url=REMOTE)

        assert str(path) in str(info.value)
        assert "LOGDNA_INGESTION_KEY" in str(info.value)

    def test_unreadable_key_file_is_an_error(self, tmp_path: Path) -> None:
        """A key_file that does not exist is a ConfigurationError for key_file."""
        with pytest.raises(ConfigurationError) as info:
            Config(key_file=str(tmp_path / "missing"), url=REMOTE)

        assert "key_file" == info.value.option

    def test_key_argument_wins_over_key_file(self, tmp_path: Path) -> None:
        """With both key= and key_file=, the argument is used and the file is not read."""
        assert KEY == Config(key=KEY, key_file=str(tmp_path / "absent"), url=REMOTE).secret.reveal()  # type: ignore[union-attr]

    def test_key_with_a_line_break_is_refused(self) -> None:
        """A key with CR/LF inside (header injection) is refused without being shown."""
        with pytest.raises(ConfigurationError) as info:
            Config(key="abc\r\nX-Evil: 1", url=REMOTE)

        assert "abc" not in str(info.value)


# -- the wire ------------------------------------------------------------------


class _TLSIngest(http.server.ThreadingHTTPServer):
    daemon_threads = True
    lines: list[dict[str, Any]]
    got: threading.Event


class _TLSHandler(http.server.BaseHTTPRequestHandler):
    server: _TLSIngest

    def do_POST(self) -> None:
        import gzip

        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.lines.extend(orjson.loads(body)["lines"])
        self.server.got.set()
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[_TLSIngest, Path]]:
    """An HTTPS ingest endpoint on loopback with a self-signed certificate."""
    made = _make_cert(tmp_path_factory.mktemp("tls"))
    if made is None:
        pytest.skip("openssl cannot make a test certificate here")
    cert, key = made
    server = _TLSIngest(("127.0.0.1", 0), _TLSHandler)
    server.lines, server.got = [], threading.Event()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, cert
    server.shutdown()
    server.server_close()


class TestWire:
    def test_verification_is_on_by_default(self) -> None:
        """Config, the transport and its session all verify certificates by default."""
        client = make_client()
        transport = client._sender._transport
        try:
            assert client.config.verify is True
            assert isinstance(transport, HTTPTransport)
            assert transport._verify is True
            assert transport._session.verify is True
        finally:
            client.close(timeout=0)

    def test_self_signed_server_is_refused_by_default(
        self, tls_server: tuple[_TLSIngest, Path], capture: Capture
    ) -> None:
        """An untrusted certificate fails verification; nothing is delivered."""
        server, _ = tls_server
        url = f"https://127.0.0.1:{server.server_address[1]}/logs/ingest"
        capture.wanted = "TLS error"
        client = make_client(url=url, flush_interval=0.05, retry_max_backoff=0.2)
        try:
            client.log("must not arrive")
            assert capture.seen.wait(WAIT)
        finally:
            client.close(timeout=0)
        assert "CERTIFICATE_VERIFY_FAILED" in capture.text
        assert all(line["line"] != "must not arrive" for line in server.lines)

    def test_verify_takes_a_ca_bundle_path(self, tls_server: tuple[_TLSIngest, Path]) -> None:
        """verify="/path/ca.pem" trusts that CA: lines are delivered over verified TLS."""
        server, cert = tls_server
        url = f"https://127.0.0.1:{server.server_address[1]}/logs/ingest"
        client = make_client(url=url, verify=str(cert), flush_interval=0.05)
        try:
            assert str(cert) == client.config.verify
            client.log("over verified tls")
            assert client.flush(timeout=WAIT)
        finally:
            client.close(timeout=0)
        assert "over verified tls" in [line["line"] for line in server.lines]

    def test_verify_path_must_exist(self) -> None:
        """A CA bundle path that does not exist is a ConfigurationError."""
        with pytest.raises(ConfigurationError) as info:
            Config(key=KEY, url=UNREACHABLE, verify="/no/such/bundle.pem")

        assert "verify" == info.value.option

    @pytest.mark.parametrize(
        "url",
        [
            "http://logs.logdna.com/logs/ingest",
            "http://10.0.0.5:8080/logs/ingest",
            "http://localhost.example.com/logs/ingest",
            "http://127.0.0.1.nip.io/logs/ingest",
            "http://0.0.0.0/logs/ingest",
            "HTTP://LOGS.MEZMO.COM/logs/ingest",
        ],
    )
    def test_plain_http_to_a_remote_host_is_refused(self, url: str) -> None:
        """http:// to anything but loopback is a ConfigurationError for url."""
        with pytest.raises(ConfigurationError) as info:
            Config(key=KEY, url=url)

        assert "url" == info.value.option
        assert "allow_insecure" in str(info.value)

    @pytest.mark.parametrize(
        "url",
        [
            "http://127.0.0.1:7080/logs/ingest",
            "http://127.8.9.10/logs/ingest",
            "http://localhost:7080/logs/ingest",
            "http://[::1]:7080/logs/ingest",
        ],
    )
    def test_plain_http_to_loopback_is_allowed(self, url: str) -> None:
        """http:// to a loopback host (the devserver) needs no opt-in."""
        assert url == Config(key=KEY, url=url).url

    def test_localhost_subdomain_is_not_trusted_as_loopback(self) -> None:
        """http://x.localhost is refused: only literal loopback addresses and localhost pass."""
        with pytest.raises(ConfigurationError):
            Config(key=KEY, url="http://logs.attacker.localhost/logs/ingest")

    @pytest.mark.parametrize("opt_in", [True, "true", "1", "yes"])
    def test_allow_insecure_opts_in(self, opt_in: object) -> None:
        """allow_insecure=True (or its string forms, for dictConfig) permits http://."""
        url = "http://logs.internal.example/logs/ingest"

        assert url == Config(key=KEY, url=url, allow_insecure=opt_in).url  # type: ignore[arg-type]

    def test_http_proxy_from_environment_is_used(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """HTTP_PROXY from the environment routes requests through the proxy."""
        with DevServer() as proxy:  # answers absolute-form requests like an origin would
            monkeypatch.setenv("HTTP_PROXY", proxy.base_url)
            for name in ("NO_PROXY", "no_proxy", "http_proxy"):
                monkeypatch.delenv(name, raising=False)
            client = make_client(url="http://logs.example.invalid/logs/ingest",
                                 allow_insecure=True, flush_interval=0.05)  # fmt: skip
            try:
                client.log("through the proxy")
                assert client.flush(timeout=WAIT)
            finally:
                client.close(timeout=0)

            assert ["through the proxy"] == [line["line"] for line in proxy.lines]

    def test_https_proxy_from_environment_is_used(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """HTTPS_PROXY from the environment: the client tunnels (CONNECT) through it."""
        with DevServer() as proxy:  # refuses CONNECT, but records that it was asked
            monkeypatch.setenv("HTTPS_PROXY", proxy.base_url)
            for name in ("NO_PROXY", "no_proxy", "https_proxy"):
                monkeypatch.delenv(name, raising=False)
            client = make_client(url="https://logs.example.invalid/logs/ingest",
                                 flush_interval=0.05, retry_max_backoff=0.2)  # fmt: skip
            try:
                client.log("tunnelled")
                assert proxy.wait_for_requests(1, WAIT)
            finally:
                client.close(timeout=0)

            connect = proxy.requests[0]
            assert "CONNECT" == connect.method
            assert not connect.key_present  # the key stays inside the tunnel


# -- redaction -----------------------------------------------------------------


SECRET_KEYS = [
    "password", "Password", "db_password", "passwd", "pwd", "secret", "client_secret",
    "token", "access_token", "X-Auth-Token", "api_key", "apikey", "API-KEY", "x-api-key",
    "authorization", "Authorization", "cookie", "Cookie", "set-cookie", "Set-Cookie",
    "session", "sessionId", "session_id", "private_key", "privateKey", "credit_card",
    "creditCard", "credit card", "card_number", "ccn", "user_ssn", "SSN", "cvv",
]  # fmt: skip
PLAIN_KEYS = ["user", "username", "classname", "lessons", "tokenizer_name_ok", "count"]


class TestRedaction:
    @pytest.mark.parametrize("key", SECRET_KEYS)
    def test_default_secret_keys_are_redacted(self, offline: Client, key: str) -> None:
        """Each default secret key, in any case and separator style, has its value replaced."""
        offline.log("x", meta={key: "hunter2", "user": "ann"})

        assert {key: MARKER, "user": "ann"} == buffered(offline)[-1]["meta"]

    @pytest.mark.parametrize("key", ["user", "username", "classname", "count", "lessons"])
    def test_ordinary_keys_are_kept(self, offline: Client, key: str) -> None:
        """Keys that only look similar ("classname" holds "ssn") are left alone."""
        offline.log("x", meta={key: "visible"})

        assert {key: "visible"} == buffered(offline)[-1]["meta"]

    def test_redaction_reaches_any_depth_and_into_lists(self, offline: Client) -> None:
        """Secrets nested in dicts, lists and tuples are found."""
        meta = {
            "request": {"headers": {"Authorization": "Bearer abc", "Accept": "*/*"}},
            "users": [{"name": "a", "password": "p1"}, ({"token": "t"},)],
            "deep": {"a": {"b": {"c": {"d": {"e": {"api_key": "k"}}}}}},
        }

        offline.log("x", meta=meta)

        got = buffered(offline)[-1]["meta"]
        assert {"Authorization": MARKER, "Accept": "*/*"} == got["request"]["headers"]
        assert [{"name": "a", "password": MARKER}, [{"token": MARKER}]] == got["users"]
        assert {"api_key": MARKER} == got["deep"]["a"]["b"]["c"]["d"]["e"]

    def test_secret_key_with_structured_value_is_replaced_whole(self, offline: Client) -> None:
        """A secret key's value is replaced even when it is a dict or list."""
        offline.log("x", meta={"session": {"id": 1, "user": "a"}, "cookies": ["a", "b"]})

        assert {"session": MARKER, "cookies": MARKER} == buffered(offline)[-1]["meta"]

    def test_dataclasses_and_other_mappings_are_redacted(self, offline: Client) -> None:
        """Dataclass instances and non-dict mappings are checked like dicts."""

        @dataclasses.dataclass
        class User:
            name: str
            password: str

        offline.log("x", meta={
            "user": User("ann", "hunter2"),
            "proxy": types.MappingProxyType({"token": "t1"}),
            "userdict": collections.UserDict({"secret": "s1"}),
            "ordered": collections.OrderedDict(apikey="k1"),
            "bytes_key": {b"password": "b1"},
        })  # fmt: skip

        raw = client_bytes(offline)[-1]
        for secret in (b"hunter2", b"t1", b"s1", b"k1", b"b1"):
            assert secret not in raw
        got = buffered(offline)[-1]["meta"]
        assert {"name": "ann", "password": MARKER} == got["user"]

    def test_enum_members_are_redacted_as_the_values_they_ship_as(self, offline: Client) -> None:
        """orjson ships an Enum member as its value: a dict (or list of them) there is
        checked like any other, on the first line and once the keys are known."""

        Preset = enum.Enum(
            "Preset", {"PROD": {"host": "db", "password": "hunter2"}, "STAGING": [{"token": "t1"}]}
        )

        for _ in range(3):
            offline.log("x", meta={"user": "ann", "db": Preset["PROD"], "all": Preset["STAGING"]})
        for raw in client_bytes(offline)[-3:]:
            assert b"hunter2" not in raw and b"t1" not in raw
            got = orjson.loads(raw)["meta"]
            assert {"host": "db", "password": MARKER} == got["db"]
            assert [{"token": MARKER}] == got["all"]
        assert "hunter2" == Preset["PROD"].value["password"], "the member is not mutated"

    def test_named_tuples_are_redacted_by_field_name(self, offline: Client) -> None:
        """A named tuple ships as an object of its fields, and a field named like a
        secret is redacted (it used to ship as its repr, secret and all)."""
        Cred = collections.namedtuple("Cred", "user password")

        class Token(NamedTuple):
            name: str
            api_key: str

        for _ in range(3):
            offline.log("x", meta={"cred": Cred("ann", "hunter2"), "tok": [Token("ci", "k-1")]})
        for raw in client_bytes(offline)[-3:]:
            assert b"hunter2" not in raw and b"k-1" not in raw
            got = orjson.loads(raw)["meta"]
            assert {"user": "ann", "password": MARKER} == got["cred"]
            assert [{"name": "ci", "api_key": MARKER}] == got["tok"]
        off = Client(key="k", url="http://127.0.0.1:1/logs/ingest", redact=False)
        try:
            off.log("x", meta={"cred": Cred("ann", "pw")})
            assert {"user": "ann", "password": "pw"} == orjson.loads(client_bytes(off)[-1])["meta"][
                "cred"
            ]
        finally:
            off.close(timeout=0)

    def test_cycles_do_not_smuggle_secrets(self, offline: Client) -> None:
        """A dict that contains itself still has its secret redacted everywhere."""
        meta: dict[str, Any] = {"password": "hunter2", "n": 1}
        meta["self"] = meta
        items: list[Any] = [{"token": "t1"}]
        items.append(items)

        offline.log("x", meta={"a": meta, "b": items})

        raw = client_bytes(offline)[-1]
        assert b"hunter2" not in raw and b"t1" not in raw
        assert 1 == orjson.loads(raw)["meta"]["a"]["n"]

    def test_redact_adds_keys(self) -> None:
        """redact= adds keys to the defaults, matched the same way."""
        client = make_client(redact=["patient_id", "mrn"])
        try:
            client.log("x", meta={"Patient-ID": "p1", "mrn": "m1", "password": "p", "ok": 1})
            assert {"Patient-ID": MARKER, "mrn": MARKER, "password": MARKER, "ok": 1} == (
                buffered(client)[-1]["meta"]
            )
        finally:
            client.close(timeout=0)

    def test_redact_from_a_config_string(self) -> None:
        """redact="patient_id, mrn" (dictConfig form) adds both keys."""
        client = make_client(redact="patient_id, mrn")
        try:
            client.log("x", meta={"patient_id": "p1", "mrn": "m1"})
            assert {"patient_id": MARKER, "mrn": MARKER} == buffered(client)[-1]["meta"]
        finally:
            client.close(timeout=0)

    @pytest.mark.parametrize("off", [False, "false", "off"])
    def test_redact_false_turns_it_off(self, off: object) -> None:
        """redact=False ships meta as given."""
        client = make_client(redact=off)
        try:
            client.log("x", meta={"password": "visible"})
            assert {"password": "visible"} == buffered(client)[-1]["meta"]
        finally:
            client.close(timeout=0)

    @pytest.mark.parametrize(("typo", "meant"), [("emails", "email"), ("cards", "card"),
                                                 ("phones", "phone"), ("JWT", "jwt")])  # fmt: skip
    def test_a_presets_name_misspelled_is_refused(self, typo: str, meant: str) -> None:
        """redact_patterns=["emails"]: a bare word near a preset's name is a typo, refused
        with the name meant and the way to write the word as a pattern (H187: it was taken
        as a pattern for the word "emails", and addresses shipped unredacted). A word no
        preset is near, and the word written as a group, are patterns as before."""
        with pytest.raises(ConfigurationError) as caught:
            make_client(redact_patterns=[typo])
        assert f"did you mean {meant!r}?" in str(caught.value)
        assert f"(?:{typo})" in str(caught.value)
        for fine in (f"(?:{typo})", "order_id"):
            make_client(redact_patterns=[fine]).close(timeout=0)

    @pytest.mark.parametrize(
        ("preset", "text"),
        [
            ("card", "paid with 4111 1111 1111 1111 today"),
            ("card", "paid with 4111-1111-1111-1111 today"),
            ("card", "paid with 378282246310005 today"),
            ("us_ssn", "ssn is 123-45-6789 ok"),
            ("email", "mail ann.lee+x@example.co.uk now"),
            ("bearer", "Authorization: Bearer eyJhbGciOi.eyJzdWIi.sig_-+/= done"),
        ],
    )
    def test_preset_patterns_redact_text_and_meta(self, preset: str, text: str) -> None:
        """Each preset replaces matches in the line text and in string meta values."""
        client = make_client(redact_patterns=[preset])
        try:
            client.log(text, meta={"note": text, "nested": [{"n": text}]})
            line = buffered(client)[-1]
        finally:
            client.close(timeout=0)

        assert MARKER in line["line"]
        assert line["line"] == line["meta"]["note"] == line["meta"]["nested"][0]["n"]
        assert not Redactor(patterns=[preset])._text_re.search(line["line"])  # type: ignore[union-attr]

    def test_patterns_with_global_flags_combine(self) -> None:
        """A custom pattern with a global inline flag works beside the presets."""
        client = make_client(redact_patterns=[r"(?i)mrn-\d{6}", "bearer", "email"])
        try:
            client.log("mrn-123456 MRN-654321 bearer abc.def a@b.co")
            line = buffered(client)[-1]["line"]
        finally:
            client.close(timeout=0)

        assert " ".join([MARKER] * 4) == line

    def test_presets_are_off_by_default(self, offline: Client) -> None:
        """Without redact_patterns, text that looks like a card or email is shipped as is."""
        text = "4111 1111 1111 1111 ann@example.com 123-45-6789 Bearer abc"

        offline.log(text, meta={"note": text})

        assert text == buffered(offline)[-1]["line"] == buffered(offline)[-1]["meta"]["note"]

    def test_custom_regex_is_applied(self) -> None:
        """A custom regular expression in redact_patterns is applied to text and meta."""
        client = make_client(redact_patterns=[r"MRN-\d{6}", "email"])
        try:
            client.log("patient MRN-123456 ann@example.com", meta={"m": "MRN-654321", "k": 5})
            line = buffered(client)[-1]
        finally:
            client.close(timeout=0)

        assert f"patient {MARKER} {MARKER}" == line["line"]
        assert {"m": MARKER, "k": 5} == line["meta"]

    def test_a_pattern_given_as_one_string_redacts_at_the_server(self, server: DevServer) -> None:
        r"""``redact_patterns=r"MRN-\d{6,8}"``, a string rather than a list, arrives at a
        real server redacted. Before, it was split at its quantifier's comma into two
        patterns that both compiled, neither matched, and the MRN shipped in clear."""
        client = Client(url=server.url, hostname="t", redact_patterns=r"MRN-\d{6,8}")
        try:
            client.log("patient MRN-1234567 called", meta={"note": "MRN-7654321"})
            assert client.flush(WAIT)
            assert server.wait_for_lines(1, WAIT)
        finally:
            client.close(timeout=0)
        (line,) = server.lines
        assert ("patient [REDACTED] called", "[REDACTED]") == (line["line"], line["meta"]["note"])

    def test_an_invalid_regex_is_a_configuration_error(self) -> None:
        """A pattern that does not compile fails at construction, naming the option."""
        with pytest.raises(ConfigurationError) as info:
            make_client(redact_patterns=["([unclosed"])

        assert "redact_patterns" == info.value.option

    def test_every_preset_is_a_valid_regex(self) -> None:
        """The offered presets are exactly the documented ones."""
        assert {"card", "us_ssn", "us_ssn_labelled", "email", "phone", "phone_plain",
                "phone_plus", "bearer", "auth_header", "secret_kv", "aws_key",
                "url_credentials", "jwt", "private_key", "service_token",
                "connect_credentials", "cli_credentials", "cli_option", "mysql_password",
                "webhook_url", "url_token", "aws_secret", "auth_call", "encoded_kv",
                "slack_token", "cli_password", "aws_secret_option", "aws_secret_before",
                "yaml_block", "provider_key"} == set(
                    PRESET_PATTERNS)  # fmt: skip
        for pattern in PRESET_PATTERNS.values():
            re.compile(pattern)

    def test_before_send_rewrites(self) -> None:
        """before_send sees the redacted line dict and its result is what ships."""
        seen: list[dict[str, Any]] = []

        def scrub(line: dict[str, Any]) -> dict[str, Any]:
            seen.append(orjson.loads(orjson.dumps(line)))
            line["line"] = line["line"].replace("Ann", "<name>")
            line["meta"]["patient"] = "<id>"
            return line

        client = make_client(before_send=scrub)
        try:
            client.log("Ann checked in", meta={"patient": "P-1", "password": "p"})
            line = buffered(client)[-1]
        finally:
            client.close(timeout=0)

        assert MARKER == seen[0]["meta"]["password"]
        assert "<name> checked in" == line["line"]
        assert {"patient": "<id>", "password": MARKER} == line["meta"]

    def test_before_send_drops(self) -> None:
        """before_send returning None drops the line: it never reaches the buffer."""
        client = make_client(before_send=lambda line: None if "phi" in line["line"] else line)
        try:
            assert client.log("ok 1")
            assert not client.log("phi: Ann Lee")
            lines = [line["line"] for line in buffered(client)]
            stats = client.stats()
        finally:
            client.close(timeout=0)

        assert ["ok 1"] == lines
        assert 1 == stats["filtered"]

    def test_before_send_that_raises_does_not_hurt(self, capture: Capture) -> None:
        """A before_send that raises: the (already redacted) line ships, the app is unharmed."""

        def broken(line: dict[str, Any]) -> dict[str, Any]:
            raise RuntimeError("oops")

        client = make_client(before_send=broken)
        try:
            assert client.log("x", meta={"token": "t1"})
            assert {"token": MARKER} == buffered(client)[-1]["meta"]
        finally:
            client.close(timeout=0)

    @pytest.mark.parametrize(
        ("returned", "said"),
        [({"line": 5}, "line is int"), ({"line": ""}, "line is empty"),
         ({"line": None}, "line is NoneType"), (["x"], "list")],
    )  # fmt: skip
    def test_a_result_the_service_would_refuse_is_not_shipped(
        self, capture: Capture, returned: Any, said: str
    ) -> None:
        """A hook's result the service would answer 400 to (a line that is no text, or
        is empty) is "not a line dict": the line ships as redaction left it, and the
        hook's trouble is reported (H187: {'line': 5} was shipped, refused, and the line
        lost as rejected)."""
        client = make_client(before_send=lambda line: returned)
        try:
            assert client.log("kept", meta={"token": "t1"})
            [line] = buffered(client)
        finally:
            client.close(timeout=0)
        assert ("kept", {"token": MARKER}) == (line["line"], line["meta"])
        [report] = [text for text in capture.texts if "before_send returned" in text]
        assert said in report

    def test_before_send_that_raises_is_reported_once(self, capture: Capture) -> None:
        """A before_send that always raises is reported once, not once per line."""

        def broken(line: dict[str, Any]) -> dict[str, Any]:
            raise RuntimeError("oops")

        client = make_client(before_send=broken)
        try:
            for i in range(50):
                client.log(f"line {i}")
        finally:
            client.close(timeout=0)

        assert 1 == sum("before_send" in text for text in capture.texts)

    def test_redaction_happens_before_buffering(self) -> None:
        """No secret, by key or by pattern, is in the buffer's bytes."""
        client = make_client(redact_patterns=["card", "email", "us_ssn", "bearer"])
        handler = LogDNAHandler(client=client)
        log = make_logger("test_security.buffering", handler)
        try:
            log.info("card 4111 1111 1111 1111 for %s", "ann@example.com",
                     extra={"password": "hunter2", "headers": {"Cookie": "sid=abc123"},
                            "ssn_note": "123-45-6789", "auth": "Bearer tok.en.xyz"})  # fmt: skip
            client.log("direct", meta={"api_key": "k-999", "list": [{"secret": "s-888"}]})
            raw = b"\n".join(client._buffer.snapshot())
        finally:
            client.close(timeout=0)

        for secret in (b"4111", b"ann@example", b"hunter2", b"abc123", b"123-45-6789",
                       b"tok.en.xyz", b"k-999", b"s-888"):  # fmt: skip
            assert secret not in raw

    def test_callers_objects_are_never_mutated(self) -> None:
        """Redaction and before_send work on copies: the app's dicts stay as they were."""
        meta = {"password": "p", "nested": {"token": "t", "list": [{"secret": "s"}]}, "k": 1}
        extra = {"password": "p2", "ctx": {"cookie": "c"}}
        snapshot = orjson.dumps([meta, extra])

        def rewrite(line: dict[str, Any]) -> dict[str, Any]:
            line["meta"]["k"] = 2
            return line

        client = make_client(redact_patterns=["email"], before_send=rewrite)
        other = logging.Handler()
        records: list[logging.LogRecord] = []
        other.emit = records.append  # type: ignore[method-assign,assignment]
        log = make_logger("test_security.mutation", LogDNAHandler(client=client))
        log.addHandler(other)
        try:
            client.log("x", meta=meta)
            log.info("y", extra=extra)
        finally:
            client.close(timeout=0)

        assert snapshot == orjson.dumps([meta, extra])
        assert "p2" == records[0].password  # type: ignore[attr-defined]
        assert {"cookie": "c"} == records[0].ctx  # type: ignore[attr-defined]

    def test_structlog_processor_redacts(self) -> None:
        """Events through LogDNAProcessor get the same redaction as handler lines."""
        structlog_module = pytest.importorskip("logdna_client.structlog")
        client = make_client()
        processor = structlog_module.LogDNAProcessor(client=client)
        try:
            event = {"event": "login", "password": "hunter2", "user": {"token": "t1"}}
            processor(None, "info", dict(event))
            raw = client_bytes(client)[-1]
        finally:
            client.close(timeout=0)

        assert b"hunter2" not in raw and b"t1" not in raw
        assert b'"login"' in raw


def client_bytes(client: Client) -> list[bytes]:
    return client._buffer.snapshot()


# -- the big one: a whole run, everything printed, no trace of the key ----------


SCENARIO = textwrap.dedent(
    """
    import io, logging, os, socket, sys
    from logdna_client import Client, Config, ConfigurationError, LogDNAHandler
    from logdna_client._devserver import DevServer

    KEY = os.environ["TEST_KEY"]
    store = os.environ["TEST_STORE"]

    # Everything the library (and urllib3/requests) logs goes to stderr at DEBUG.
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                        format="%(name)s %(levelname)s %(message)s")

    tail = DevServer(key=KEY, out=sys.stdout, color=True).start()
    as_json = DevServer(key=KEY, out=sys.stdout, json_output=True, store=store).start()
    wrong = DevServer(key="another-key").start()
    open_ = DevServer().start()

    def client(url, **kw):
        return Client(key=KEY, url=url, hostname="scenario", flush_interval=0.05,
                      request_timeout=2, retry_max_backoff=0.1, **kw)

    handler = LogDNAHandler(key=KEY, url=tail.url, hostname="scenario", app="scenario",
                            flush_interval=0.05)
    log = logging.getLogger("app")
    log.addHandler(handler)
    log.info("user %s logged in", "ann", extra={"apikey": KEY, "headers": {"apikey": KEY}})
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("request failed", extra={"password": "hunter2"})
    config = handler.client.config
    print(repr(handler), repr(handler.client), repr(config), str(config))
    print(handler.client.stats())
    assert handler.client.flush(10)

    try:
        from logdna_client.structlog import LogDNAProcessor
        import structlog
        proc = LogDNAProcessor(key=KEY, url=as_json.url, hostname="scenario", flush_interval=0.05)
        # The app's own renderer prints the event as given (the key included):
        # that output is the application's, not the library's, so it goes elsewhere.
        structlog.configure(processors=[proc, structlog.dev.ConsoleRenderer(colors=False)],
                            logger_factory=structlog.PrintLoggerFactory(io.StringIO()))
        structlog.get_logger().info("structlog event", token=KEY, user="ann")
        print(repr(proc))
        assert proc.client.flush(10)
    except ImportError:
        print("structlog not available")

    c = client(as_json.url)
    c.log("direct line", meta={"nested": [{"secret": KEY}]})
    assert c.flush(10)
    c.close(2)

    # Failures: refused key, 500s, nothing listening, TLS against a plain port.
    open_.fail_next(2, 500)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    failing = [client(wrong.url), client(open_.url),
               client(f"http://127.0.0.1:{dead_port}/logs/ingest"),
               client(f"https://127.0.0.1:{open_.port}/logs/ingest")]
    for f in failing:
        f.log("will fail first")
    for f in failing:
        f.flush(1.0)
        print(f.stats())
        f.close(0.2)

    for bad in ({"overflow": "x"}, {"url": "http://example.com/logs/ingest"},
                {"verify": "/nope"}, {"flush_interval": "soon"}):
        try:
            Client(key=KEY, **bad)
        except ConfigurationError as exc:
            print("config error:", exc, repr(exc))

    assert tail.wait_for_lines(2, 10) and as_json.wait_for_lines(2, 10)
    handler.close()
    for server in (tail, as_json, wrong, open_):
        print(repr(server), [repr(r) for r in server.requests])
        server.stop()
    print("SCENARIO DONE")
    """
)


class TestNoTraceOfTheKey:
    def test_full_run_prints_and_stores_no_trace_of_the_key(self, tmp_path: Path) -> None:
        """Handler, processor, failures, devserver tail/JSON/store and the CLI: key nowhere."""
        store = tmp_path / "store.jsonl"
        env = {**os.environ, "TEST_KEY": KEY, "TEST_STORE": str(store),
               "PYTHONPATH": str(REPO_ROOT), "NO_COLOR": ""}  # fmt: skip
        env.pop("LOGDNA_INGESTION_KEY", None)
        run = subprocess.run(
            [sys.executable, "-c", SCENARIO], env=env, capture_output=True, timeout=60,
            check=False,
        )  # fmt: skip
        outputs: list[bytes] = [run.stdout, run.stderr, store.read_bytes()]
        assert 0 == run.returncode, run.stderr.decode()[-3000:]
        assert b"SCENARIO DONE" in run.stdout
        assert b"user ann logged in" in run.stdout  # the tail printed what arrived
        assert b"refused (HTTP 403)" in run.stderr  # the failures were reported
        assert b"does not speak TLS" in run.stderr  # https:// to a plain port

        outputs.extend(self.run_cli(tmp_path, env))

        assert_no_key(*outputs)

    def run_cli(self, tmp_path: Path, env: dict[str, str]) -> list[bytes]:
        """The CLI's devserver (--key, --store), then send and pipe through it."""
        if not (REPO_ROOT / "logdna_client" / "_cli.py").exists():
            return []
        store = tmp_path / "cli-store.jsonl"
        cmd = [sys.executable, "-m", "logdna_client"]
        server = subprocess.Popen(
            [*cmd, "devserver", "--port", "0", "--key", KEY, "--store", str(store)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        outputs: list[bytes] = []
        try:
            assert server.stdout is not None
            banner = server.stdout.readline()
            outputs.append(banner)
            url = next(w for w in banner.decode().split() if w.startswith("http://"))
            key_env = {**env, "LOGDNA_INGESTION_KEY": KEY}
            runs = [
                ([*cmd, "send", "--url", url, "--hostname", "cli", "cli send line",
                  "--meta", orjson.dumps({"apikey": KEY}).decode()], key_env, None),
                ([*cmd, "pipe", "--url", url, "--hostname", "cli"], key_env, b"piped one\n"),
                ([*cmd, "pipe", "--url", url, "--hostname", "cli", "--", sys.executable, "-c",
                  "print('from a child')"], key_env, None),
                ([*cmd, "send", "--url", url, "--hostname", "cli", "--key", "wrong-key",
                  "--timeout", "2", "refused line"], env, None),
                ([*cmd, "send", "--url", f"http://127.0.0.1:{free_port()}/logs/ingest",
                  "--hostname", "cli", "--timeout", "1", "nowhere"], key_env, None),
            ]  # fmt: skip
            codes = []
            for argv, run_env, stdin in runs:
                done = subprocess.run(argv, env=run_env, input=stdin, capture_output=True,
                                      timeout=30, check=False)  # fmt: skip
                codes.append(done.returncode)
                outputs.extend([done.stdout, done.stderr])
            assert [0, 0, 0, 1, 1] == codes, b"\n".join(outputs).decode()[-3000:]
        finally:
            server.send_signal(2)  # Ctrl-C
            out, err = server.communicate(timeout=20)
            outputs.extend([out, err])
        outputs.append(store.read_bytes())
        assert b"cli send line" in outputs[-1] and b"from a child" in outputs[-1]
        return outputs


# -- protocol="otlp": where LOGDNA_INGESTION_KEY goes, what of an OTel header is scrubbed

OTEL_TOKEN = "otel-vendor-token-9876543210fedcba"
COLLECTOR = "http://otel-collector.observability.svc:4318/v1/logs"  # docs/scaling.md, section 2


@pytest.fixture
def otlp_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No OTel exporter or LOGDNA_ variable set but those a test sets."""
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


class TestOTLPHeaderEchoes:
    USER, PASSWORD = "svc-logs-writer", "p4ssw0rd-of-the-collector"
    BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    @pytest.mark.parametrize(
        ("header", "echo"),
        [
            (f"Authorization=Bearer%20{OTEL_TOKEN}", OTEL_TOKEN),
            (f"Authorization=ApiKey%20{OTEL_TOKEN}", OTEL_TOKEN),
            (f"Authorization=Basic%20{BASIC}", f"{USER}:{PASSWORD}"),
            (f"Authorization=Basic%20{BASIC}", PASSWORD),
            (f"Authorization=Basic%20{BASIC}", USER),
        ],
    )
    def test_the_credential_after_the_scheme_is_scrubbed(
        self,
        otlp: Server,
        otlp_env: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
        header: str,
        echo: str,
    ) -> None:
        """A receiver that echoes an OTel header's credential without its scheme (the
        token of "Bearer <token>", a Basic header's user:password, password or user)
        does not put it in the library's reports. Before: only the whole header value
        was scrubbed, and "token <token> is expired" was logged as it came."""
        echoed = f'{{"code":16,"message":"token {echo} is expired"}}'
        said = self.reports_of_an_echo(otlp, otlp_env, caplog, header, echoed)
        assert "token *** is expired" in said
        assert echo not in said

    def test_short_parts_are_no_credential(
        self, otlp: Server, otlp_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Parts under 8 characters (a user "bob") are left as they are: as "***" in
        every report they would garble it. The password from 8 is scrubbed."""
        basic = base64.b64encode(f"bob:{self.PASSWORD}".encode()).decode()
        echoed = f'{{"message":"user bob, password {self.PASSWORD}"}}'
        said = self.reports_of_an_echo(
            otlp, otlp_env, caplog, f"Authorization=Basic%20{basic}", echoed
        )
        assert "user bob, password ***" in said

    @staticmethod
    def reports_of_an_echo(
        otlp: Server,
        otlp_env: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
        header: str,
        echoed: str,
    ) -> str:
        """What the library reports (warnings and up) when the OTel endpoint, sent the
        OTel ``header``, answers a line's request 500 with ``echoed`` as its body."""
        otlp_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.base)
        otlp_env.setenv("OTEL_EXPORTER_OTLP_HEADERS", header)
        otlp.answer_next(500, body=echoed.encode())
        with caplog.at_level(logging.WARNING, logger="logdna_client"):
            client = otlp_client(None)
            client.log("hello")
            assert client.flush(timeout=30)
            client.close()
        return caplog.text


class TestOTLPAmbientKey:
    @pytest.mark.parametrize(
        "header",
        [
            f"api-key={OTEL_TOKEN}",  # New Relic
            f"x-honeycomb-team={OTEL_TOKEN}",  # Honeycomb
            f"dd-api-key={OTEL_TOKEN}",  # Datadog
            f"Authorization=Bearer%20{OTEL_TOKEN}",
            "x-tenant=t1",  # no credential at all: the endpoint is not Mezmo's either
        ],
    )
    def test_not_beside_otel_headers(
        self, otlp: Server, otlp_env: pytest.MonkeyPatch, header: str
    ) -> None:
        """LOGDNA_INGESTION_KEY (set pod-wide) is not sent to the endpoint the OTel
        variables name with headers of its own, whatever their names. Before: beside
        any header not named Authorization or apikey, the Mezmo key went to the other
        vendor too."""
        otlp_env.setenv("LOGDNA_INGESTION_KEY", KEY)
        otlp_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.base)
        otlp_env.setenv("OTEL_EXPORTER_OTLP_HEADERS", header)
        client = otlp_client(None, retry_max_backoff=60)
        client.log("hello")
        assert otlp.wait_for_requests(1)
        client.close(timeout=0.5)
        assert None is client.config.secret
        sent = {name.lower(): value for name, value in otlp.requests[0].headers.items()}
        assert "apikey" not in sent
        assert KEY not in str(sent)
        name, _, _ = header.partition("=")
        assert name.lower() in sent

    def test_not_to_a_collector(self, otlp: Server, otlp_env: pytest.MonkeyPatch) -> None:
        """docs/scaling.md's Collector example, in a pod with LOGDNA_INGESTION_KEY: it
        builds (plain http needs no allow_insecure: nothing secret travels), and no
        credential goes to the Collector, with allow_insecure=True neither. Before: a
        ConfigurationError, and with allow_insecure=True the key went in clear text."""
        otlp_env.setenv("LOGDNA_INGESTION_KEY", KEY)
        assert None is Config(protocol="otlp", url=COLLECTOR, handle_signals=False).secret
        client = otlp_client(otlp.url, allow_insecure=True, retry_max_backoff=60)
        client.log("hello")
        assert otlp.wait_for_requests(1)
        client.close(timeout=0.5)
        assert [] == otlp.requests[0].credentials

    @pytest.mark.parametrize(
        "url",
        [
            "https://logs.mezmo.com/otel/v1/logs",
            "https://pipeline.mezmo.com/v1/route-id",
            "https://LOGS.LogDNA.com./otel/v1/logs",
        ],
    )
    def test_to_mezmo(self, otlp_env: pytest.MonkeyPatch, url: str) -> None:
        """To Mezmo's own endpoints (url= or LOGDNA_URL), the key from the environment
        is sent, as before."""
        otlp_env.setenv("LOGDNA_INGESTION_KEY", KEY)
        config = Config(protocol="otlp", url=url, handle_signals=False)
        assert config.secret is not None and KEY == config.secret.reveal()
        otlp_env.setenv("LOGDNA_URL", url)
        config = Config(protocol="otlp", handle_signals=False)
        assert config.secret is not None and KEY == config.secret.reveal()

    @pytest.mark.parametrize(
        "url",
        [
            "https://logs.mezmo.com.attacker.example/v1/logs",
            "https://notmezmo.com/v1/logs",
            "https://otlp.nr-data.net/v1/logs",
            "http://127.0.0.1:4318/v1/logs",
        ],
    )
    def test_not_to_any_other_host(self, otlp_env: pytest.MonkeyPatch, url: str) -> None:
        """Any other host (a look-alike, another vendor, a local Collector) gets no key
        from the environment."""
        otlp_env.setenv("LOGDNA_INGESTION_KEY", KEY)
        assert None is Config(protocol="otlp", url=url, handle_signals=False).secret

    def test_not_beside_otel_headers_to_mezmo_either(self, otlp_env: pytest.MonkeyPatch) -> None:
        """The OTel variables naming Mezmo's endpoint with headers: those are the
        request's, the ambient key is not added to them."""
        otlp_env.setenv("LOGDNA_INGESTION_KEY", KEY)
        otlp_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "https://logs.mezmo.com/otel")
        otlp_env.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=t1")
        assert None is Config(protocol="otlp", handle_signals=False).secret

    def test_a_key_given_goes_as_before(self, otlp_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """key= and key_file= are sent wherever the URL points (as before), and still
        need allow_insecure for plain http to a host that is not loopback."""
        key_file = tmp_path / "key"
        key_file.write_text(KEY)
        for given in ({"key": KEY}, {"key_file": str(key_file)}):
            config = Config(protocol="otlp", url=COLLECTOR, allow_insecure=True,
                            handle_signals=False, **given)  # fmt: skip
            assert config.secret is not None and KEY == config.secret.reveal()
            with pytest.raises(ConfigurationError, match="ingestion key"):
                Config(protocol="otlp", url=COLLECTOR, handle_signals=False, **given)

    def test_replace_to_another_url_reads_the_rule_again(
        self, otlp_env: pytest.MonkeyPatch
    ) -> None:
        """Config.replace(url=...) from Mezmo's endpoint to a Collector leaves the
        ambient key behind (it was not given); back to Mezmo's it is read again.
        Before: the copy was given the key, and sent it to the Collector."""
        otlp_env.setenv("LOGDNA_INGESTION_KEY", KEY)
        config = Config(protocol="otlp", url="https://logs.mezmo.com/otel/v1/logs",
                        handle_signals=False)  # fmt: skip
        moved = config.replace(url="http://127.0.0.1:4318/v1/logs")
        assert None is moved.secret
        back = moved.replace(url="https://logs.mezmo.com/otel/v1/logs")
        assert back.secret is not None and KEY == back.secret.reveal()
