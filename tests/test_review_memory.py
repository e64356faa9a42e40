"""Memory pressure: a MemoryError anywhere in the sender's work, and the OOM killer.

Each failure is injected at a chosen call (deterministic); the client is real and talks
to the DevServer over a real socket. The process-level tests run real children: one
under an address-space limit that allocates until MemoryError while it logs, one with
a spool that is SIGKILLed (the OOM killer's way) at random moments under that pressure.
"""

from __future__ import annotations

import json
import logging
import random
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from logdna_client import Client, LogDNAHandler
from logdna_client import _sender as sender_module
from logdna_client._devserver import DevServer
from logdna_client._secret import Secret
from logdna_client._spool import _store
from logdna_client._spool._destination import fingerprint
from tests._children import Child, assert_exactly_once_in_order, texts
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
    options.setdefault("flush_interval", 0.05)
    client = Client(key=KEY, url=server.url, handle_signals=False, **options)
    client.log("up")
    assert client.flush(30)
    return client


def dropped(client: Client) -> dict[str, int]:
    return {reason: n for reason, n in client.stats()["dropped"].items() if n}


def never_fits(monkeypatch: pytest.MonkeyPatch, word: bytes) -> None:
    """Every body holding a line with ``word`` meets a MemoryError being built."""
    real = sender_module.enforce_entries
    huge = failing_at(real, lambda n, args: any(word in e for e in args[0]))
    monkeypatch.setattr(sender_module, "enforce_entries", huge)


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
            never_fits(monkeypatch, b"huge")
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

    def test_a_line_dropped_for_memory_is_not_sent_again_from_the_spool(
        self, server: DevServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A batch on disk whose first line cannot be sent (dropped, counted as ``error``),
        and a 503 to the next part: the rest is retried, and the dropped line is not handed
        back to the spool with the batch, to be replayed and counted a second time."""
        client = client_for(server, spool_dir=str(tmp_path), flush_interval=3600)
        try:
            never_fits(monkeypatch, b"huge")
            server.fail_next(1, 503)
            client.log("huge")
            expected = [f"a {i}" for i in range(10)]
            for line in expected:
                client.log(line)
            client.flush(30)
            assert {"error": 1} == dropped(client)
        finally:
            client.close(10)
        assert_exactly_once_in_order(expected, texts(server))

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


# Child code: the address space limited to what the process holds plus 64 MiB, then the
# application allocates in 1 MiB pieces until MemoryError (logging a line per piece),
# and fills what is left in smaller pieces (the next allocation of any size fails).
_AT_THE_LIMIT = """
import gc, resource
log.info("up")
assert client.flush(30)

def vm_size():
    for row in open("/proc/self/status"):
        if row.startswith("VmSize"):
            return int(row.split()[1]) * 1024

def fill(hog, sizes):
    for size in sizes:
        try:
            while True:
                hog.append(bytearray(size))
        except MemoryError:
            pass

resource.setrlimit(resource.RLIMIT_AS, (vm_size() + (64 << 20), resource.RLIM_INFINITY))
raised, hog, logged = [], [], 0
pad = "x" * (200 << 10)  # the message of every other line at the limit: 200 KiB
try:
    while True:
        hog.append(bytearray(1 << 20))
        try:
            log.info("during %d", logged)
        except BaseException as exc:
            raised.append(repr(exc))
        logged += 1
except MemoryError:
    pass
for i in range(300):
    fill(hog, (1 << 16, 1 << 12, 1 << 4))
    try:
        log.info("edge %d %s", i, pad if i % 2 else "")
    except BaseException as exc:
        raised.append(repr(exc))
    logged += 1
del hog
gc.collect()
for i in range(100):
    log.info("after %d", i)
logged += 101  # with "up"
flushed = client.flush(30)
stats = client.stats()
mark("result " + json.dumps({"raised": raised, "logged": logged, "flushed": flushed,
                             "sent": stats["sent"], "dropped": stats["dropped"]}))
"""


class TestAtTheLimit:
    @pytest.mark.parametrize("pure", ["", "1"])
    def test_logging_at_the_address_space_limit(self, server: DevServer, pure: str) -> None:
        """A child whose allocations fail (RLIMIT_AS) logs before, at and after the limit:
        no logging call raises, nothing is written on stdout, every line is delivered or
        counted, and the lines after the pressure all arrive."""
        child = Child(_AT_THE_LIMIT, server.url, {"LOGDNA_CLIENT_PURE_PYTHON": pure},
                      flush_interval="0.05")  # fmt: skip
        result = json.loads(child.expect("result", timeout=120))
        code, _ = child.finish(60)
        assert 0 == code, child.stderr
        assert "" == child.stdout
        assert [] == result["raised"]
        assert result["flushed"]
        assert result["logged"] == result["sent"] + sum(result["dropped"].values()), result
        got = texts(server)
        assert [f"after {i}" for i in range(100)] == [t for t in got if t.startswith("after")]


# Child code for the OOM killer: a spool, the address space limited, the application at
# the limit (freeing 8 MiB whenever an allocation fails, and taking it again). Each batch
# the spool accepted (append returned) is written to ACCEPTED, one line a row, before
# anything else happens to it; a mark every 50 lines logged.
_KILLED_AT_THE_LIMIT = """
import resource
from logdna_client._spool import _store
accepted = os.open(os.environ["ACCEPTED"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
append = _store.Spool.append

def recording_append(self, entries, **how):
    got = append(self, entries, **how)
    if got is not None:
        try:
            os.write(accepted, b"".join(json.loads(e[1:])["line"].encode() + b"\\n"
                                        for e in entries))
        except MemoryError:  # not recorded: the check below is of those recorded
            pass
    return got

_store.Spool.append = recording_append
log.info("up")
assert client.flush(30)
for row in open("/proc/self/status"):
    if row.startswith("VmSize"):
        limit = int(row.split()[1]) * 1024 + (64 << 20)
resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
hog = []
i = 0
while True:
    try:
        hog.append(bytearray(1 << 20))
    except MemoryError:
        del hog[:8]
    log.info("%s line %d", os.environ["ROUND"], i)
    i += 1
    if i % 50 == 0:
        try:
            mark("n")
        except MemoryError:
            pass
"""

_ADOPT = """
assert client.flush(60)
mark("flushed")
"""


class TestKilledAtTheLimit:
    def test_a_spool_loses_nothing_it_accepted_to_sigkill_at_the_limit(
        self, server: DevServer, tmp_path: Path
    ) -> None:
        """The OOM killer's way: a child at its memory limit, with a spool, SIGKILLed at
        a random moment (seeded: after 1 to 12 marks of 50 lines), while the service
        refuses some requests (503) so that batches wait on disk. The next process adopts
        the folder: every line the spool had accepted is delivered (docs/spool.md)."""
        rng = random.Random(145)
        accepted_file = tmp_path / "accepted"
        spool_dir = tmp_path / "spool"
        options = {"flush_interval": "0.05", "retry_max_backoff": "0.2",
                   "spool_dir": str(spool_dir)}  # fmt: skip
        for round_ in range(3):
            server.fail_next(rng.randrange(0, 6), 503)
            env = {"ACCEPTED": str(accepted_file), "ROUND": str(round_)}
            child = Child(_KILLED_AT_THE_LIMIT, server.url, env, **options)
            for _ in range(rng.randrange(1, 13)):
                child.expect("n", timeout=60)
            child.kill(signal.SIGKILL)
            code, _ = child.finish(60)
            assert -signal.SIGKILL == code, child.stderr
            assert "" == child.stdout
        successor = Child(_ADOPT, server.url, **options)
        successor.expect("flushed", timeout=90)
        assert 0 == successor.finish(60)[0], successor.stderr
        accepted = set(accepted_file.read_text().split("\n")) - {""}
        assert accepted, "the spool accepted nothing: the test tested nothing"
        missing = accepted - set(texts(server))
        assert not missing, f"{len(missing)} of {len(accepted)} lost, e.g. {sorted(missing)[:3]}"


# Child code: 200 lines held (flush_interval is long), and a MemoryError gzipping the
# first body the sender builds, which is the process's end's.
_ENDS_SHORT_OF_MEMORY = """
from logdna_client import _sender
gzip_entries = _sender.gzip_entries
calls = []

def short_of_memory_once(entries):
    calls.append(len(entries))
    if len(calls) == 1:
        raise MemoryError
    return gzip_entries(entries)

_sender.gzip_entries = short_of_memory_once
for i in range(200):
    log.info("end %d", i)
mark("ready")
if os.environ["END"] == "sigterm":
    wait_for("never")  # SIGTERM comes first
"""


class TestProcessEnd:
    @pytest.mark.parametrize("end", ["exit", "sigterm"])
    def test_the_end_delivers_a_batch_that_met_a_memory_error(
        self, server: DevServer, end: str
    ) -> None:
        """At the exit hook or on SIGTERM, the last batch meets a MemoryError: it still
        goes (in halves). It was dropped whole, 200 lines, and said lost on stderr."""
        child = Child(_ENDS_SHORT_OF_MEMORY, server.url, {"END": end}, flush_interval="3600")
        child.expect("ready")
        if end == "sigterm":
            child.kill(signal.SIGTERM)
        code, _ = child.finish(60)
        assert (-signal.SIGTERM if end == "sigterm" else 0) == code, child.stderr
        assert "" == child.stdout
        assert_exactly_once_in_order([f"end {i}" for i in range(200)], texts(server))
        assert "dropped" not in child.stderr


class TestLoggingCall:
    def test_a_memory_error_counting_a_failed_line_stays_in_the_handler(
        self, server: DevServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Two failed allocations in one logging call: building the line, then counting it
        as ``error``. The call must not raise (docs/delivery.md, Memory pressure)."""
        handler = LogDNAHandler(key=KEY, url=server.url, handle_signals=False)
        logger = logging.getLogger("test_review_memory.counting")
        logger.addHandler(handler)
        logger.propagate = False
        try:
            monkeypatch.setattr(handler, "_queue_record", failing_at(print, lambda n, a: True))
            count_drop = handler.client._count_drop
            monkeypatch.setattr(handler.client, "_count_drop", failing_at(count_drop, first_call))
            monkeypatch.setattr(handler, "handleError", lambda record: None)
            logger.error("at the limit")  # must not raise
        finally:
            logger.removeHandler(handler)
            handler.close()
