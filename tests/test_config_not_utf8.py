"""app, env, hostname and tags whose bytes are not UTF-8, from the environment.

On POSIX, ``os.environ`` turns bytes that are not UTF-8 (a Latin-1 host name, a value
cut mid-character) into lone surrogates, which no UTF-8 encoder takes. Such an ``app``
made the client raise a bare TypeError while it was being built; such a ``hostname``
or tag lost every line (the ingest API's URL could not be built: retried to the close
deadline; the OTLP body could not be encoded: counted as ``error``). The bytes are now
decoded back, and what is not UTF-8 becomes U+FFFD.
"""

from __future__ import annotations

import os

import pytest

from logdna_client import Client
from logdna_client._devserver import DevServer
from tests._otlp_server import running

LATIN_1 = {b"LOGDNA_APP": b"caf\xe9", b"LOGDNA_ENV": b"pr\xf6d",
           b"LOGDNA_HOSTNAME": b"h\xf4te", b"LOGDNA_TAGS": b"t\xe9am,blue"}  # fmt: skip


@pytest.fixture
def latin_1_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in LATIN_1.items():
        monkeypatch.setitem(os.environb, name, value)


@pytest.mark.usefixtures("latin_1_environment")
class TestNamesFromTheEnvironmentThatAreNotUTF8:
    def test_the_ingest_api_gets_every_line(self, server: DevServer) -> None:
        client = Client(key="k", url=server.url, handle_signals=False)
        for i in range(3):
            client.log(f"line {i}")
        assert client.flush(timeout=30)
        client.close()
        assert ["line 0", "line 1", "line 2"] == [line["line"] for line in server.lines]
        line, request = server.lines[0], server.requests[0]
        assert ("caf\ufffd", "pr\ufffdd") == (line["app"], line["env"])
        assert "h\ufffdte" == request.hostname
        assert ["t\ufffdam", "blue"] == list(request.tags)[:2]
        assert 0 == client.stats()["dropped_total"]

    def test_otlp_gets_every_line(self) -> None:
        with running() as otlp:
            client = Client(key="k", url=otlp.url, protocol="otlp", handle_signals=False)
            for i in range(3):
                client.log(f"line {i}")
            assert client.flush(timeout=30)
            client.close()
        assert ["line 0", "line 1", "line 2"] == [line["line"] for line in otlp.lines]
        assert 0 == client.stats()["dropped_total"]
