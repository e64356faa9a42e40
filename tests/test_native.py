"""Tests for _native: when the C extension is used, what switches it off, and what it is
handed. The C code's bytes against the Python code's are in test_speedups and
test_speedups_events; these run without the extension too, except the last."""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
import types
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import pytest

import logdna_client
from logdna_client import _native
from logdna_client._config import Config
from logdna_client._line import LineBuilder
from logdna_client._threads import BUSY_THREADS, SENDER_THREADS
from tests.helpers import needs_speedups

if TYPE_CHECKING:
    from logdna_client import Client

UNREACHABLE = "http://127.0.0.1:1/logs/ingest"


def builder(**options: Any) -> LineBuilder:
    return LineBuilder(Config(url=UNREACHABLE, **options))


def fresh_native(monkeypatch: pytest.MonkeyPatch, extension: object) -> types.ModuleType:
    """A new copy of _native, imported with ``extension`` as the built C module (None:
    not built), as a process importing the package for the first time would see it."""
    monkeypatch.setitem(sys.modules, "logdna_client._speedups", extension)
    monkeypatch.delattr(logdna_client, "_speedups", raising=False)
    spec = importlib.util.spec_from_file_location("logdna_client._native_copy", _native.__file__)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_build(api: int) -> types.ModuleType:
    build = types.ModuleType("logdna_client._speedups")
    build.API = api  # type: ignore[attr-defined]
    return build


class TestPurePythonAsked:
    @pytest.mark.parametrize("value", ["1", "yes", "TRUE", " on ", "python"])
    def test_any_other_value_asks(self, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
        """Any value but a blank or a false word keeps a new handler off the C code."""
        monkeypatch.setenv("LOGDNA_CLIENT_PURE_PYTHON", value)
        assert _native.pure_python_asked()

    @pytest.mark.parametrize("value", [None, "", "   ", "0", "false", " FALSE ", "No", "off"])
    def test_unset_blank_or_false_does_not(
        self, monkeypatch: pytest.MonkeyPatch, value: str | None
    ) -> None:
        """Unset, blank, or a false word in any case and spacing leaves the C code on."""
        if value is None:
            monkeypatch.delenv("LOGDNA_CLIENT_PURE_PYTHON", raising=False)
        else:
            monkeypatch.setenv("LOGDNA_CLIENT_PURE_PYTHON", value)
        assert not _native.pure_python_asked()


class TestEnabled:
    def test_not_without_the_extension(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without a usable build nothing takes the C path, whatever the options."""
        monkeypatch.setattr(_native, "speedups", None)
        assert not _native.enabled(builder())

    def test_default_options_use_it(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """With a build here, the default options (default patterns, no hook) use it."""
        monkeypatch.setattr(_native, "speedups", fake_build(_native.API))
        assert _native.enabled(builder())

    def test_not_where_no_line_could_take_the_fast_path(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A before_send hook sees every line in Python: the C code would build none."""
        monkeypatch.setattr(_native, "speedups", fake_build(_native.API))
        assert not _native.enabled(builder(before_send=lambda line: line))


class TestWhichBuild:
    def test_a_build_of_this_version_is_used(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A build that takes this version's arguments is the one used."""
        build = fake_build(_native.API)
        assert build is fresh_native(monkeypatch, build).speedups

    def test_a_build_left_from_another_version_is_not(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A build of another version (an editable install not rebuilt) is left alone:
        the Python code runs, rather than C code handed arguments it does not take."""
        assert fresh_native(monkeypatch, fake_build(_native.API - 1)).speedups is None

    def test_no_build_is_no_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """No compiler at install, so no build: importing works, on the Python code."""
        assert fresh_native(monkeypatch, None).speedups is None

    def test_not_on_a_build_without_a_gil(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """On a free-threaded Python without its GIL, the build (which relies on one, and
        would turn it back on) is not imported."""
        monkeypatch.setattr(sys, "_is_gil_enabled", lambda: False, raising=False)
        assert fresh_native(monkeypatch, fake_build(_native.API)).speedups is None


class FakeClient:
    """What put_built uses of a Client: ``put_entry`` and the current ``_buffer``."""

    def __init__(self, fail: bool = False) -> None:
        self._buffer = object()
        self.busy_while_putting: list[bool] = []
        self.entries: list[bytes] = []
        self._fail = fail

    def put_entry(self, entry: bytes) -> bool:
        self.busy_while_putting.append(threading.get_ident() in BUSY_THREADS)
        if self._fail:
            raise RuntimeError("buffer closed")
        self.entries.append(entry)
        return True


class TestPutBuilt:
    def test_queues_marked_busy_and_hands_back_the_buffer(self) -> None:
        """The entry is queued with this thread marked busy (a signal handler logging
        meanwhile takes the nested path), unmarked after; the buffer to use from now
        on comes back (a forked child's is a new one)."""
        client = FakeClient()
        buffer = _native.put_built(cast("Client", client), b"entry")
        assert [b"entry"] == client.entries
        assert [True] == client.busy_while_putting
        assert threading.get_ident() not in BUSY_THREADS
        assert client._buffer is buffer

    def test_an_error_is_raised_and_the_thread_unmarked(self) -> None:
        """What put_entry raises reaches the C caller, and the thread is not left busy
        (it would lose every later line to the nested path)."""
        client = FakeClient(fail=True)
        with pytest.raises(RuntimeError, match="buffer closed"):
            _native.put_built(cast("Client", client), b"entry")
        assert [True] == client.busy_while_putting
        assert threading.get_ident() not in BUSY_THREADS


class TestPieces:
    def test_the_live_sets_and_the_buffer(self) -> None:
        """The C code is handed the very thread sets, buffer and key cache the Python
        code updates, not copies: a thread marked later is seen."""
        built = builder()
        buffer = object()
        pieces = _native.pieces(built, buffer)
        assert pieces["busy_threads"] is BUSY_THREADS
        assert pieces["sender_threads"] is SENDER_THREADS
        assert pieces["buffer"] is buffer
        assert pieces["secret_cache"] is built.secret_cache

    def test_no_redaction_call_without_text_patterns(self) -> None:
        """With redaction off the C code is handed nothing to redact text with; with the
        default patterns, the builder's own redaction."""
        assert _native.pieces(builder(redact=False), None)["redact_text"] is None
        on = builder()
        assert on.redact_triggered == _native.pieces(on, None)["redact_text"]


@pytest.fixture
def offline_client() -> Iterator[Client]:
    client = logdna_client.Client(key="k", url=UNREACHABLE, flush_interval=3600)
    yield client
    client.close(timeout=0)


@needs_speedups
class TestTheBuild:
    def test_the_build_takes_every_piece(self, offline_client: Client) -> None:
        """The built C type accepts each piece this module hands it, by name: a piece
        added here and not in the C code would leave every handler on the Python code."""
        from logdna_client.structlog import timestamp_of

        pieces = _native.pieces(offline_client._builder, offline_client._buffer)
        native = {"levels": {}, "key_kinds": {}, "time": time, "timestamp_of": timestamp_of}
        handle = _native.speedups.EventHandle(slow=print, queue=print, **native, **pieces)
        assert isinstance(handle, _native.speedups.EventHandle)
