"""README: "The key ... never appears in a repr, message or URL", tried against servers
that echo it back in ways the existing scrub did not expect, and keys that no HTTP
header can carry."""

from __future__ import annotations

import base64
import functools
import json
import logging
import re
import socket
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from logdna_client import Client, ConfigurationError, LogDNAHandler
from tests._claims_servers import Request, answer, scripted_server

# Upper and lower case on purpose: a host name comes back lower-cased.
KEY = "Zq7SecretKEY0123456789abcdefABCD"
WAIT = 10.0


def leaked_fragments(text: str) -> list[str]:
    """Any 8 characters of the key, in any case, found in ``text``: a cut-off message
    or a lower-cased host leaks part of the key, not all of it."""
    low = text.lower()
    return [KEY[i : i + 8] for i in range(len(KEY) - 7) if KEY[i : i + 8].lower() in low]


class Messages(logging.Handler):
    """Every record of the library's logger, formatted; ``seen`` once one names ``wanted``."""

    def __init__(self, wanted: str) -> None:
        super().__init__(logging.DEBUG)
        self.wanted = wanted
        self.texts: list[str] = []
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        self.texts.append(text)
        if self.wanted in text:
            self.seen.set()


@pytest.fixture
def messages() -> Iterator[Messages]:
    handler = Messages("")
    own = logging.getLogger("logdna_client")
    own.addHandler(handler)
    own.setLevel(logging.DEBUG)
    yield handler
    own.removeHandler(handler)


def run_against(respond: Any, messages: Messages, wanted: str, key: str = KEY) -> Client:
    """One line sent with ``key`` to a server answering with ``respond``, until the
    library has logged a message naming ``wanted``."""
    messages.wanted = wanted
    with scripted_server(respond) as server:
        client = Client(
            key=key, url=server.url, hostname="t", flush_interval=0.05, retry_max_backoff=0.2
        )
        try:
            client.log("hello")
            assert messages.seen.wait(WAIT), messages.texts
        finally:
            client.close(timeout=0)
    return client


#: How a server may echo the key: as it came, or case-folded (a host name, a log
#: pipeline that lower-cases what it quotes).
ECHOES = {"as-sent": str, "lower-cased": str.lower}


class TestServerEchoesTheKey:
    @pytest.mark.parametrize("echo", list(ECHOES.values()), ids=list(ECHOES))
    def test_a_key_straddling_the_detail_cut_is_not_logged_in_part(
        self, messages: Messages, echo: Any
    ) -> None:
        """An error body echoing the key where the 200-character detail cuts it leaves no
        half of the key in the library's report, nor in stats()."""

        def respond(request: Request, sock: socket.socket, stop: threading.Event) -> bytes:
            return answer(500, b"x" * (200 - 16) + echo(request.headers["apikey"]).encode())

        client = run_against(respond, messages, "HTTP 500")
        assert [] == leaked_fragments("\n".join(messages.texts))
        assert [] == leaked_fragments(repr(client.stats()))

    @pytest.mark.parametrize("echo", list(ECHOES.values()), ids=list(ECHOES))
    def test_a_redirect_whose_host_echoes_the_key_is_not_logged(
        self, messages: Messages, echo: Any
    ) -> None:
        """A 3xx whose Location puts the key in the host name (which the report shows
        lower-cased, and cut to 100 characters) is reported without any of the key."""

        def respond(request: Request, sock: socket.socket, stop: threading.Event) -> bytes:
            host = "h" * (100 - 16) + echo(request.headers["apikey"])
            location = f"http://{host}.evil.example/ingest"
            return answer(307, b"", f"Location: {location}\r\n".encode())

        run_against(respond, messages, "redirect to")
        assert [] == leaked_fragments("\n".join(messages.texts))

    @pytest.mark.parametrize("padding", [0, 20, 170], ids=["quoted", "across-the-cut", "past"])
    @pytest.mark.parametrize("echo", list(ECHOES.values()), ids=list(ECHOES))
    def test_a_malformed_status_line_echoing_the_key_is_not_logged_in_part(
        self, messages: Messages, echo: Any, padding: int
    ) -> None:
        """An answer whose status line is not HTTP quotes its start in the report (the
        server does not speak HTTP/1.1); a key it echoes there, across the point where
        the quote is cut, or past it, leaves no part of itself in that report."""

        def respond(request: Request, sock: socket.socket, stop: threading.Event) -> bytes:
            key = echo(request.headers["apikey"]).encode()
            status = b"XTTP/1.1 200 " + b"x" * padding + key
            return status + b"\r\nContent-Length: 0\r\n\r\n"

        client = run_against(respond, messages, "does not speak HTTP/1.1")
        assert [] == leaked_fragments("\n".join(messages.texts))
        assert [] == leaked_fragments(repr(client.stats()))


def u_escaped(text: str, every: int = 1, upper: bool = False) -> str:
    """``text`` with every ``every``-th character as a JSON ``\\uXXXX`` escape."""
    digits = "04X" if upper else "04x"
    return "".join(f"\\u{ord(c):{digits}}" if i % every == 0 else c for i, c in enumerate(text))


#: How a JSON body (or a URL inside one) may carry the key: a JSON encoder escapes any
#: character it likes as \uXXXX (in either case), "/" as "\/" (PHP does by default), a
#: quote and a backslash with a backslash; a URL percent-encodes.
ESCAPED_ECHOES: dict[str, Callable[[str], str]] = {
    "every-char-u-escaped": u_escaped,
    "upper-case-hex": functools.partial(u_escaped, upper=True),
    "every-third-char-u-escaped": functools.partial(u_escaped, every=3),
    "lower-cased-then-u-escaped": lambda key: u_escaped(key.lower(), every=2),
    "percent-encoded": lambda key: "".join(
        f"%{ord(c):02X}" if i % 2 else c for i, c in enumerate(key)
    ),
    "json-with-slashes-escaped": lambda key: json.dumps(key)[1:-1].replace("/", "\\/"),
    "html-character-references": lambda key: "".join(
        (f"&#{ord(c)};" if i % 3 == 0 else f"&#x{ord(c):X};") if i % 2 else c
        for i, c in enumerate(key)
    ),
    "html-references-without-semicolons": lambda key: "".join(f"&#{ord(c)}" for c in key),
}
#: A key with the characters JSON escapes with a backslash, and one whose Basic token
#: (base64 of "key:") holds a "/".
KEYS_TO_ESCAPE = {
    "plain": KEY,
    "slash-quote-backslash": 'Zq7Secret/KEY"0123\\456789abcdef',
    "slash-in-base64": "Zq7SecretKEY0123456789abcdef???",
}


def fragments_of(secret: str, text: str) -> list[str]:
    """Any 8 characters of ``secret``, in any case, found in ``text`` as it is or with its
    JSON escapes and percent-encoding decoded (as whoever reads the report can)."""
    decoded = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text)
    decoded = re.sub(r"%([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), decoded)
    decoded = re.sub(r"&#([0-9]+);?", lambda m: chr(int(m.group(1))), decoded)
    decoded = re.sub(r"&#[xX]([0-9a-fA-F]+);?", lambda m: chr(int(m.group(1), 16)), decoded)
    decoded = re.sub(r'\\([/"\\])', r"\1", decoded)
    low = (text + "\n" + decoded).lower()
    return [secret[i : i + 8] for i in range(len(secret) - 7) if secret[i : i + 8].lower() in low]


class TestServerEchoesTheKeyEncoded:
    @pytest.mark.parametrize("key", list(KEYS_TO_ESCAPE.values()), ids=list(KEYS_TO_ESCAPE))
    @pytest.mark.parametrize(
        "encode",
        [bytes.hex, base64.urlsafe_b64encode, lambda data: base64.b64encode(data).rstrip(b"="),
         lambda data: base64.b64encode(b"apikey: " + data),
         lambda data: base64.b64encode(b"x" + data + b"!")],
        ids=["hex", "url-safe-base64", "base64-unpadded", "base64-of-a-header", "base64-offset-1"],
    )  # fmt: skip
    def test_no_part_of_it_is_reported(
        self, messages: Messages, key: str, encode: Callable[[bytes], Any]
    ) -> None:
        """An error body echoing the key encoded (in hex, in URL-safe base64, in base64
        without its padding, inside a longer text encoded in base64 at any offset)
        leaves none of that encoding in the library's reports or stats() (they showed it
        whole). (What encodes the key's bytes alone: the middle of the echo.)"""
        encoded = encode(key.encode())
        echoed = (encoded if isinstance(encoded, str) else encoded.decode()).rstrip("=")

        def respond(request: Request, sock: socket.socket, stop: threading.Event) -> bytes:
            return answer(500, b'{"error":"refused ' + echoed.encode() + b'"}')

        client = run_against(respond, messages, "HTTP 500", key)
        said = ("\n".join(messages.texts) + repr(client.stats())).lower()
        middle = echoed[12:-4]
        runs = [middle[i : i + 12] for i in range(len(middle) - 11)]
        assert [] == [run for run in runs if run.lower() in said]


class TestServerEchoesTheKeyEscaped:
    @pytest.mark.parametrize("auth", ["apikey", "basic"])
    @pytest.mark.parametrize("key", list(KEYS_TO_ESCAPE.values()), ids=list(KEYS_TO_ESCAPE))
    @pytest.mark.parametrize("echo", list(ESCAPED_ECHOES.values()), ids=list(ESCAPED_ECHOES))
    def test_no_part_of_it_is_reported(
        self, messages: Messages, echo: Callable[[str], str], key: str, auth: str
    ) -> None:
        """An error body echoing the credential header's value as a JSON body carries it
        (escaped as \\uXXXX in either case, every character or some, "\\/", percent-
        encoded) leaves no 8 characters of the key, nor of its Basic token, in the
        library's reports or stats() (the scrub matched only the key as sent, and the
        report showed it all but an escaped character or two)."""
        echoed: list[str] = []

        def respond(request: Request, sock: socket.socket, stop: threading.Event) -> bytes:
            header = request.headers.get("apikey") or request.headers["authorization"]
            echoed.append(echo(header.removeprefix("Basic ")))
            return answer(500, b'{"error":"refused ' + echoed[-1].encode() + b'"}')

        messages.wanted = "HTTP 500"
        with scripted_server(respond) as server:
            client = Client(
                key=key, url=server.url, hostname="t", flush_interval=0.05, auth=auth,
                retry_max_backoff=0.2,
            )  # fmt: skip
            try:
                client.log("hello")
                assert messages.seen.wait(WAIT), messages.texts
            finally:
                client.close(timeout=0)
        said = "\n".join(messages.texts) + repr(client.stats())
        token = base64.b64encode(f"{key}:".encode()).decode()
        assert echoed
        assert ([], []) == (fragments_of(key, said), fragments_of(token, said)), said


#: Keys no request header can carry as they are: each is a paste error, not a key.
UNSENDABLE = {
    "euro-sign": KEY[:10] + "\u20ac" + KEY[10:],
    "zero-width-space": KEY + "\u200b",
    "no-break-space": KEY[:10] + "\u00a0" + KEY[10:],
}


def library_frames_with_locals(exc: BaseException) -> str:
    """The traceback from the library's first frame on, with every frame's locals (as
    error reporters capture them); the test's own frames hold the key it passed."""
    tb = exc.__traceback__
    while tb is not None and "/logdna_client/" not in tb.tb_frame.f_code.co_filename:
        tb = tb.tb_next
    assert tb is not None, "raised outside the library"
    return "".join(traceback.TracebackException(type(exc), exc, tb, capture_locals=True).format())


class TestKeysAHeaderCannotCarry:
    @pytest.mark.parametrize("key", list(UNSENDABLE.values()), ids=list(UNSENDABLE))
    @pytest.mark.parametrize("entry", ["Client", "LogDNAHandler", "environment"])
    def test_refused_at_construction_without_showing_it(
        self, key: str, entry: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A key with a character that is not ASCII is a ConfigurationError when the
        client is built (not a sender that retries "unexpected UnicodeEncodeError"
        forever), and neither the message nor captured locals show it."""
        url = "https://logs.example.com/logs/ingest"
        monkeypatch.delenv("LOGDNA_INGESTION_KEY", raising=False)
        with pytest.raises(ConfigurationError) as info:
            if entry == "Client":
                Client(key=key, url=url)
            elif entry == "LogDNAHandler":
                LogDNAHandler(key=key, url=url)
            else:
                monkeypatch.setenv("LOGDNA_INGESTION_KEY", key)
                Client(url=url)
        assert "key" == info.value.option
        assert [] == leaked_fragments(str(info.value))
        assert [] == leaked_fragments(library_frames_with_locals(info.value))

    def test_a_key_of_printable_ascii_is_still_taken(self) -> None:
        """Every printable ASCII character is allowed in a key (no false refusals)."""
        key = "".join(chr(c) for c in range(0x21, 0x7F))
        client = Client(key=key, url="https://logs.example.com/logs/ingest", flush_interval=3600)
        client.close(timeout=0)


def free_port() -> int:
    """A loopback port nothing listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TestSpool:
    @pytest.mark.parametrize("auth", ["apikey", "basic"])
    def test_the_key_is_never_written_to_the_spool(self, tmp_path: Path, auth: str) -> None:
        """docs/spool.md: "The ingestion key is never written to the spool": lines kept on
        disk through an outage (batches moved to disk, the rest at close's deadline) hold
        no form of it, in any file of the folder."""
        spool = tmp_path / "spool"
        client = Client(
            key=KEY, url=f"https://127.0.0.1:{free_port()}/logs/ingest", hostname="t",
            spool_dir=str(spool), flush_interval=0.05, auth=auth, retry_max_backoff=0.2,
        )  # fmt: skip
        for i in range(500):
            client.log(f"kept on disk {i}", meta={"n": i})
        client.close(1.0)
        files = [p for p in spool.rglob("*") if p.is_file()]
        assert files, "nothing was spooled"
        data = b"".join(p.read_bytes() for p in files)
        assert b"kept on disk 499" in data
        forms = {KEY.encode(), base64.b64encode(KEY.encode()), base64.b64encode(f"{KEY}:".encode())}
        for form in forms:
            assert form.lower() not in data.lower()
        assert [] == leaked_fragments(data.decode("latin-1"))
