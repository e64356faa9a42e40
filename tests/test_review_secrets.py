"""Security review of redaction at the size caps: a secret that is long, or that a
cap cuts, must not ship in part, on the C path and the Python path alike."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from logdna_client import LogDNAHandler
from logdna_client.testing import capture_lines
from tests.helpers import make_logger

UNREACHABLE = "https://127.0.0.1:9/logs/ingest"
LIMIT = 16384  # the default max_line_length
#: A password with no repeated 8-character piece: any piece of it that ships is found.
PASSWORD = "".join(chr(97 + i % 26) + str(i % 10) for i in range(60))
PIECES = [PASSWORD[i : i + 8] for i in range(0, len(PASSWORD) - 8, 4)]
#: A token longer than the patterns' bounded value (256 characters), distinct throughout.
LONG = "".join(f"{i:04d}tk" for i in range(900))
LONG_PIECES = [LONG[i : i + 12] for i in range(0, len(LONG) - 12, 6)]


@pytest.fixture(params=["c", "python"])
def shipped(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Log through a handler (on the C path, then the Python one) and return the JSON
    of what ships."""
    if request.param == "python":
        monkeypatch.setenv("LOGDNA_CLIENT_PURE_PYTHON", "1")
    handler = LogDNAHandler(key="k", url=UNREACHABLE, flush_interval=3600)
    monkeypatch.delenv("LOGDNA_CLIENT_PURE_PYTHON", raising=False)
    # (The C path runs only with the default text patterns: no preset here.)
    assert (handler._fast is None) == (request.param == "python")
    log = make_logger("review-secrets", handler)

    def ship(message: str, **extra: Any) -> str:
        with capture_lines() as lines:
            log.info("%s", message, extra=extra)
        assert 1 == len(lines)
        return json.dumps(lines)

    yield ship
    handler.client.close(timeout=0)
    handler.close()


def leaked(blob: str, pieces: list[str]) -> list[str]:
    return [piece for piece in pieces if piece in blob]


class TestCutsKeepSecretsWhole:
    def test_url_password_across_the_line_cap(self, shipped: Any) -> None:
        """A URL whose "@" the line cap cuts off still has its password redacted."""
        for before in range(LIMIT - 150, LIMIT - 40, 7):
            blob = shipped("x" * before + " postgres://admin:" + PASSWORD + "@db/app")
            assert [] == leaked(blob, PIECES), before

    def test_url_password_across_a_meta_string_cap(self, shipped: Any) -> None:
        """The same in a meta string longer than its cap."""
        for before in range(LIMIT + 256 - 150, LIMIT + 256, 7):
            value = "x" * before + " postgres://admin:" + PASSWORD + "@db/app"
            blob = shipped("m", note=value)
            assert [] == leaked(blob, PIECES), before


class TestLongValues:
    @pytest.mark.parametrize(
        "template",
        [
            "password={}",
            'body {{"client_secret": "{}"}}',
            "body {{'api_key': '{}'}}",
            "token: Bearer {} rest",
            "Authorization: Basic {}",
            "Cookie: session={}",
        ],
    )
    def test_a_long_value_goes_whole_in_text(self, shipped: Any, template: str) -> None:
        """A secret value longer than a pattern's bounded repeat is replaced to its end."""
        long = LONG * 2 if "Basic" in template or "Cookie" in template else LONG
        pieces = [long[i : i + 12] for i in range(0, len(long) - 12, 6)]
        blob = shipped(template.format(long))
        assert [] == leaked(blob, pieces)

    def test_a_long_bearer_token_goes_whole(self) -> None:
        """With the ``bearer`` preset, a token longer than its bound goes whole too."""
        handler = LogDNAHandler(
            key="k", url=UNREACHABLE, flush_interval=3600, redact_patterns=["bearer"]
        )
        log = make_logger("review-secrets-bearer", handler)
        try:
            with capture_lines() as lines:
                log.info("got Bearer %s from the proxy", LONG * 2)
        finally:
            handler.client.close(timeout=0)
            handler.close()
        long = LONG * 2
        pieces = [long[i : i + 12] for i in range(0, len(long) - 12, 6)]
        assert [] == leaked(json.dumps(lines), pieces)
        assert "got [REDACTED] from the proxy" == lines[0]["line"]

    def test_a_long_value_goes_whole_in_meta(self, shipped: Any) -> None:
        """The same in a meta string."""
        blob = shipped("m", note="retrying with token=" + LONG + " now")
        assert [] == leaked(blob, LONG_PIECES)
        assert " now" in blob

    def test_a_repeated_key_runs_on_once(self, shipped: Any) -> None:
        """Many secret keys in one long run still give one marker for the run."""
        blob = shipped("x " + "password=" * 1500 + " ; tail")
        assert "x password=[REDACTED] ; tail" == json.loads(blob)[0]["line"]


class _Described:
    """An object JSON cannot encode (as a mapping key or a value): it ships as its str()."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __str__(self) -> str:
        return self.name


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str")


class TestKeysThatShipAsTheirText:
    def test_an_object_key_naming_a_secret(self, shipped: Any) -> None:
        """A key object that ships as "password" has its value redacted, at any depth."""
        blob = shipped(
            "m", data={_Described("password"): PASSWORD, "x": [{_Described("apiKey"): PASSWORD}]}
        )
        assert [] == leaked(blob, PIECES)
        assert "password" in blob

    def test_an_unprintable_key_does_not_fail(self, shipped: Any) -> None:
        """A key whose str() raises ships its line, and its plain value stays."""
        blob = shipped("m", data={_Unprintable(): "plain value"})
        assert "plain value" in blob


class TestEscapedQuotes:
    @pytest.mark.parametrize(
        "text",
        [
            # JSON inside a JSON string (an API gateway event's body, a payload logged twice)
            json.dumps({"body": json.dumps({"password": PASSWORD, "user": "bob"})}),
            json.dumps(json.dumps({"api_key": PASSWORD})),
            "payload=" + json.dumps(json.dumps({"db": {"client_secret": PASSWORD}})),
            # a quote inside a quoted value, escaped
            json.dumps({"password": PASSWORD[:20] + '"' + PASSWORD[20:]}),
            repr({"token": PASSWORD[:20] + "'\"" + PASSWORD[20:]}),
        ],
    )
    def test_a_quoted_value_goes_whole(self, shipped: Any, text: str) -> None:
        """Keys and values in escaped quotes are found, and an escaped quote does not
        end a value: no piece of the secret ships, on either path."""
        shipped(text.replace(PASSWORD, "x").replace("\\", ""))  # every key's answer cached
        for _ in range(2):
            blob = shipped(text)
            assert [] == leaked(blob, PIECES), blob

    @pytest.mark.parametrize("depth", [3, 4])
    def test_json_nested_deeper(self, shipped: Any, depth: int) -> None:
        """JSON in a JSON string in a JSON string (a queue message's body logged in an
        event): its quotes are escaped more than once (\\\"password\\\":)."""
        text = json.dumps({"password": PASSWORD, "user": "bob"})
        for _ in range(depth - 1):
            text = json.dumps({"body": text})
        shipped(text.replace(PASSWORD, "x"))  # every key's answer cached
        for _ in range(2):
            blob = shipped(text)
            assert [] == leaked(blob, PIECES), blob

    def test_in_a_meta_string(self, shipped: Any) -> None:
        """The same in a meta string."""
        blob = shipped("m", event=json.dumps({"body": json.dumps({"password": PASSWORD})}))
        assert [] == leaked(blob, PIECES)


class TestObjectsThatShipAsText:
    def test_flask_request_headers(self, shipped: Any) -> None:
        """Flask's ``request.headers`` (werkzeug ``Headers``, not a Mapping) ships as
        its text: the credential patterns run on that text."""
        headers = pytest.importorskip("werkzeug.datastructures").Headers(
            [("Authorization", "Bearer " + PASSWORD), ("Cookie", "sid=" + PASSWORD),
             ("X-Api-Key", PASSWORD), ("Accept", "text/html")]
        )  # fmt: skip
        blob = shipped("m", headers=headers, nested={"h": [headers]})
        assert [] == leaked(blob, PIECES)
        assert "Accept: text/html" in blob

    def test_an_object_whose_text_holds_a_secret(self, shipped: Any) -> None:
        """An object whose str() holds ``password=...`` has it redacted; an object
        whose text holds none ships its str() as before."""
        blob = shipped("m", model=_Described("User(name='bob', password='" + PASSWORD + "')"),
                       plain=_Described("nothing here"))  # fmt: skip
        lines = json.loads(blob)
        assert [] == leaked(blob, PIECES)
        assert "User(name='bob', password='[REDACTED]')" == lines[0]["meta"]["model"]
        assert "nothing here" == lines[0]["meta"]["plain"]

    def test_an_orjson_fragment(self, shipped: Any) -> None:
        """An ``orjson.Fragment`` (JSON made beforehand, embedded as it is) has its
        secret keys and strings redacted like the same value given as objects."""
        orjson = pytest.importorskip("orjson")
        if not hasattr(orjson, "Fragment"):
            pytest.skip("orjson.Fragment came in orjson 3.9")
        raw = json.dumps({"user": "bob", "password": PASSWORD, "note": "token=" + PASSWORD})
        blob = shipped("m", body=orjson.Fragment(raw.encode()), bad=orjson.Fragment(b"{nope"))
        meta = json.loads(blob)[0]["meta"]
        assert [] == leaked(blob, PIECES)
        assert {"user": "bob", "password": "[REDACTED]", "note": "token=[REDACTED]"} == meta["body"]
        assert "nope" not in blob


#: The patterns' window past a size cut (_redact._CUT_MARGIN).
MARGIN = 256


def across_the_window(length: int, shift: int) -> str:
    """Text of ``length`` + MARGIN characters and more: a long secret value first (its
    marker is shorter: what follows moves up), then a URL whose password the
    patterns' window (``length`` + MARGIN) cuts ``shift`` characters in, its "@" past
    the window."""
    shrinks = "password=" + "s" * (length // 2) + " "
    head = shrinks + "x" * (length + MARGIN - len(shrinks) - len(" postgres://admin:") - shift)
    assert len(head) > len(shrinks)
    return head + " postgres://admin:" + PASSWORD + "@db/app " + "y" * 1000


class TestTheWindowsEnd:
    @pytest.mark.parametrize("shift", [10, 30, 100])
    def test_message(self, shipped: Any, shift: int) -> None:
        """A redaction that shortens the text does not bring the end of the patterns'
        window into view: a secret that end cuts would ship in part."""
        assert [] == leaked(shipped(across_the_window(LIMIT, shift)), PIECES)

    @pytest.mark.parametrize("shift", [10, 30, 100])
    def test_meta_string(self, shipped: Any, shift: int) -> None:
        """The same in a meta string (its window is a margin longer)."""
        blob = shipped("m", note=across_the_window(LIMIT + MARGIN, shift))
        assert [] == leaked(blob, PIECES)


class TestTheMarkerInTheText:
    @pytest.mark.parametrize(
        "text",
        [
            '{"password": "[REDACTED]' + PASSWORD + '"}',
            "password='[REDACTED] " + PASSWORD + "'",
            "x" * 3000 + ' {"password": "[REDACTED]' + PASSWORD + '"}',  # the long-text path
        ],
    )
    def test_a_value_that_starts_with_it(self, shipped: Any, text: str) -> None:
        """A value only starting with the marker is no value redacted already: the
        rest of it is replaced too (a value that is the marker alone stays as it is)."""
        assert [] == leaked(shipped(text), PIECES)
        assert [] == leaked(shipped("m", note=text), PIECES)

    def test_a_value_that_is_it(self, shipped: Any) -> None:
        for text in ('{"password": "[REDACTED]"}', "password=[REDACTED] ok"):
            assert text == json.loads(shipped(text))[0]["line"]
