"""Memory pressure: a MemoryError anywhere in the sender's work, and the OOM killer.

Each failure is injected at a chosen call (deterministic); the client is real and talks
to the DevServer over a real socket. The process-level tests run real children: one
under an address-space limit that allocates until MemoryError while it logs, one with
a spool that is SIGKILLed (the OOM killer's way) at random moments under that pressure.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from logdna_client import Client
from logdna_client import _sender as sender_module
from logdna_client._devserver import DevServer
from logdna_client._secret import Secret
from logdna_client._spool import _store
from logdna_client._spool._destination import fingerprint
from tests._children import assert_exactly_once_in_order, texts
from tests.test_spool import write_segment

KEY = "k" * 32


def failing_at(real: Callable[..., Any], at: Callable[[int, tuple[Any, ...]], bool]) -> Any:
    """``real``, raising MemoryError at the calls ``at(call number, args)`` picks."""
    calls = [0]

    def call(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if at(calls[0], args):
            raise MemoryError
        return real(*args, **kwargs)

    return call


def first_call(n: int, args: tuple[Any, ...]) -> bool:
    return n == 1


def client_for(server: DevServer, **options: Any) -> Client:
    """A client whose sender is up (its spool open): one line sent."""
    client = Client(key=KEY, url=server.url, flush_interval=0.05, handle_signals=False, **options)
    client.log("up")
    assert client.flush(30)
    return client


def dropped(client: Client) -> dict[str, int]:
    return {reason: n for reason, n in client.stats()["dropped"].items() if n}


class TestSender:
    @pytest.mark.parametrize("where", ["gzip_entries", "enforce_entries", "send"])
    @pytest.mark.parametrize("spool", [False, True])
    def test_a_batch_that_meets_a_memory_error_is_sent_in_parts(
        self, server: DevServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        where: str, spool: bool,
    ) -> None:  # fmt: skip
        """A MemoryError building the body (gzip, the limits' pass) or sending it: the
        batch goes in smaller parts, every line once and in order, none dropped. Counted
        as a bug's, the whole batch was dropped (5 lines as ``error``), and with a spool
        the batch on disk was acked (deleted) with them."""
        client = client_for(server, spool_dir=str(tmp_path) if spool else None)
        try:
            if where == "send":
                transport = client._sender._transport
                monkeypatch.setattr(transport, "send", failing_at(transport.send, first_call))
            else:
                real = getattr(sender_module, where)
                monkeypatch.setattr(sender_module, where, failing_at(real, first_call))
            ident = client._sender.ident
            expected = [f"a {i}" for i in range(5)]
            for line in expected:
                client.log(line)
            assert client.flush(30)
            assert client._sender.ident == ident and client._sender.alive
            assert {} == dropped(client)
        finally:
            client.close(10)
        assert_exactly_once_in_order(expected, texts(server))

    def test_a_line_that_alone_cannot_be_built_is_dropped_and_counted(
        self, server: DevServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A line whose body never fits in memory: after the halving and one more try it
        is dropped, counted as ``error`` and reported; the lines around it go."""
        client = client_for(server)
        try:
            real = sender_module.enforce_entries
            huge = failing_at(real, lambda n, args: any(b"huge" in e for e in args[0]))
            monkeypatch.setattr(sender_module, "enforce_entries", huge)
            expected = [f"a {i}" for i in range(5)] + [f"b {i}" for i in range(5)]
            for line in expected[:5]:
                client.log(line)
            client.log("huge")
            for line in expected[5:]:
                client.log(line)
            client.flush(30)
            assert {"error": 1} == dropped(client)
        finally:
            client.close(10)
        assert_exactly_once_in_order(expected, texts(server))
        assert "huge" not in texts(server)

    def test_a_memory_error_while_reporting_one_does_not_end_the_sender(
        self, server: DevServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A MemoryError in the sender's loop, and another while it reports that one:
        the thread goes on. It ended (a traceback on stderr), and every line after it
        waited for a restart that only close() made."""
        client = client_for(server)
        try:
            sender = client._sender
            ident = sender.ident
            monkeypatch.setattr(sender._buffer, "take", failing_at(sender._buffer.take, first_call))
            report = sender._reporter.report
            monkeypatch.setattr(sender._reporter, "report", failing_at(report, first_call))
            expected = [f"a {i}" for i in range(5)]
            for line in expected:
                client.log(line)
            assert client.flush(30)
            assert sender.ident == ident and sender.alive
        finally:
            client.close(10)
        assert_exactly_once_in_order(expected, texts(server))


class TestSpool:
    def test_a_memory_error_writing_a_batch_leaves_the_spool_on(
        self, server: DevServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A MemoryError writing a batch to disk: that batch is sent from memory, and the
        spool stays on for the next. It was switched off as for a bug of ours, for the
        rest of the process's life (and replay with it)."""
        client = client_for(server, spool_dir=str(tmp_path))
        try:
            spool = client._sender.spool
            assert spool is not None
            monkeypatch.setattr(
                _store.fmt, "batch_frame", failing_at(_store.fmt.batch_frame, first_call)
            )
            client.log("a")
            assert client.flush(30)
            spooled = spool.spooled
            client.log("b")
            assert client.flush(30)
            assert spool.enabled
            assert spool.spooled == spooled + 1  # the next batch went to disk first
        finally:
            client.close(10)
        assert ["up", "a", "b"] == texts(server)

    def test_a_memory_error_reading_back_a_backlog_delays_it_only(
        self, server: DevServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A dead process's batches, and a MemoryError reading the first back: they are
        delivered a moment later. Replay was switched off for good, and flush() waited
        for them in vain."""
        write_segment(tmp_path, 3, per_batch=4, destination=fingerprint(Secret(KEY), server.url))
        monkeypatch.setattr(_store.Spool, "_collect", failing_at(_store.Spool._collect, first_call))
        client = client_for(server, spool_dir=str(tmp_path))
        try:
            assert client.flush(30)
            assert client._sender.spool is not None and client._sender.spool.enabled
        finally:
            client.close(10)
        expected = [str(i) for i in range(12)]
        assert expected == [x for x in texts(server) if x in expected]
