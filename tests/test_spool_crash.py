"""The spool as a crash sees it: real child processes killed with SIGKILL at random points
of their writing, rotating, replaying and acking (a seeded RNG picks how far each gets,
counted in the steps it reports on a pipe: no sleeps), and a file-size limit (the full
disk a test cannot mount) in a real child. After each run every line the spool accepted
is delivered, at least once, and only a batch a kill interrupted is delivered twice."""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from logdna_client._spool import Spool
from tests._children import REPO
from tests.test_spool import drain, segments

#: Deadline for a child to report a step or end: only reached when something hangs.
_ANSWER = 60.0
#: Lines per batch: each line is its own number, so a batch is ``_PER`` numbers.
_PER = 10

# The child: replays what it finds (oldest first, one batch per request), then writes
# new batches, "sends" them (the service: a file appended to in one write per request)
# and acks them; every third one waits on disk as in an outage and is replayed later.
# It writes one byte to stdout after each step, and the numbers the spool accepted to
# a file once append returned. A SIGKILL can cut a write() to a file short (Linux checks
# for a fatal signal between the pages it copies), so each record ends in ";" and each
# child starts on a new line: a torn record is left unterminated and is not read.
_CHILD = r"""
import os, sys
from logdna_client._spool import Spool
folder, service, accepted, start = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
svc, acc = os.open(service, flags, 0o600), os.open(accepted, flags, 0o600)
os.write(svc, b"\n")  # a record a kill tore is ended here, away from the next
os.write(acc, b"\n")
spool = Spool.open(folder, sync="none", segment_bytes=1024, max_bytes=1 << 30)

def step():
    os.write(1, b".")

def send(entries):
    os.write(svc, b" ".join(e[10:-2] for e in entries) + b";\n")  # ',{"line":"N"}' -> N
    step()

def replay():
    while (batch := spool.next_replay_batch(1)) is not None:  # one batch per request
        step()
        send(batch.entries)
        spool.ack(batch.id)
        step()

replay()
for n in range(200):
    first = start + n * PER
    entries = [b',{"line":"%d"}' % i for i in range(first, first + PER)]
    batch_id = spool.append(entries)
    step()
    assert batch_id is not None
    os.write(acc, b" ".join(b"%d" % i for i in range(first, first + PER)) + b";\n")
    if n % 3 == 0:
        spool.release(batch_id)
        continue
    send(entries)
    spool.ack(batch_id)
    step()
    if n % 5 == 0:
        replay()
replay()
spool.close()
""".replace("PER", str(_PER))


def _numbers(path: Path) -> list[int]:
    """The numbers of the whole records in ``path`` (a record a kill tore has no ";")."""
    if not path.exists():
        return []
    records = [r[:-1] for r in path.read_bytes().split(b"\n") if r.endswith(b";")]
    return [int(n) for r in records for n in r.split()]


def _run_until(argv: list[str], steps: int) -> bool:
    """Run the child until it has reported ``steps`` steps, then SIGKILL it; False when it
    ended first."""
    env = dict(os.environ, PYTHONPATH=REPO)
    child = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout is not None
    seen = 0
    try:
        while seen < steps:
            ready, _, _ = select.select([child.stdout], [], [], _ANSWER)
            assert ready, "the child reported no step"
            got = os.read(child.stdout.fileno(), steps - seen)
            if not got:
                _, err = child.communicate(timeout=_ANSWER)
                assert 0 == child.returncode, err.decode()
                return False
            seen += len(got)
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=_ANSWER)
        return True
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(_ANSWER)


class TestKilledAtRandomPoints:
    def test_every_accepted_line_is_delivered_and_only_killed_batches_twice(
        self, tmp_path: Path
    ) -> None:
        """Thirty processes in turn on one folder, each SIGKILLed after a random number of
        its steps (write, send, ack, replay, segment rotation every few batches), each
        adopting what the ones before left: every line the spool accepted reaches the
        service, every line that reaches it was logged, and each kill duplicates at most
        the one batch it interrupted between send and done mark."""
        rng = random.Random(102)
        folder, service, accepted = tmp_path / "spool", tmp_path / "service", tmp_path / "acc"
        kills = 0
        for run in range(30):
            argv = [sys.executable, "-c", _CHILD, str(folder), str(service), str(accepted),
                    str(run * 100_000)]  # fmt: skip
            kills += _run_until(argv, rng.randint(1, 400))
        spool = Spool.open(folder, sync="none")
        last = drain(spool)
        spool.close()
        assert [] == segments(folder)
        delivered = Counter(_numbers(service) + [int(e[10:-2]) for e in last])
        logged = {run * 100_000 + i for run in range(30) for i in range(200 * _PER)}
        assert kills >= 20  # the seed kills most of them mid-way
        assert [] == sorted(set(_numbers(accepted)) - set(delivered))
        assert [] == sorted(set(delivered) - logged)
        twice = sum(n - 1 for n in delivered.values())
        assert twice <= kills * _PER, (twice, kills)
        assert max(delivered.values()) <= 1 + kills


class TestTornDoneMark:
    def test_a_done_mark_cut_at_any_byte_sends_only_its_batch_again(self, tmp_path: Path) -> None:
        """A segment whose last record, a done mark, a crash cut at any byte: the batch it
        marked is sent again (the one batch in flight at the crash), the batch marked
        before it never, the one not marked once; nothing goes to quarantine."""
        writer = Spool.open(tmp_path / "src", sync="none")
        ids = [writer.append([b',{"line":"%d"}' % i for i in range(n * 10, n * 10 + 10)])
               for n in range(3)]  # fmt: skip
        for batch_id in ids[:2]:
            assert batch_id is not None
            writer.ack(batch_id)
        writer.forget_after_fork()  # what kill -9 leaves
        (path,) = segments(tmp_path / "src")
        original = path.read_bytes()
        mark = 31  # a done mark's bytes: frame and fixed fields
        for cut in range(len(original) - mark, len(original) + 1):
            folder = tmp_path / f"cut{cut}"
            folder.mkdir()
            (folder / path.name).write_bytes(original[:cut])
            spool = Spool.open(folder, sync="none")
            again = [] if cut == len(original) else list(range(10, 20))
            expected = [b',{"line":"%d"}' % i for i in [*again, *range(20, 30)]]
            assert expected == sorted(drain(spool), key=lambda e: int(e[10:-2])), cut
            assert 0 == spool.quarantined
            spool.close()
            assert [] == segments(folder)


class TestFileSizeLimit:
    def test_a_write_refused_for_size_loses_nothing_accepted(self, tmp_path: Path) -> None:
        """A child whose writes fail past 6 KiB (RLIMIT_FSIZE, SIGXFSZ ignored: EFBIG, as a
        full disk fails them with ENOSPC) mid-batch: the spool cuts the partial record,
        switches itself off and refuses the batch (the caller keeps it in memory), and
        the next process delivers every batch it accepted, whole, none twice."""
        code = r"""
import os, resource, signal, sys
from logdna_client._spool import Spool
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (6 * 1024, resource.RLIM_INFINITY))
spool = Spool.open(sys.argv[1], sync="none", segment_bytes=1 << 20)
accepted = refused = 0
for n in range(100):
    entries = [b',{"line":"%d"}' % i for i in range(n * 10, n * 10 + 10)]
    batch_id = spool.append(entries)
    if batch_id is None:
        refused += 1
        continue
    accepted = n + 1
    spool.release(batch_id)  # an outage: waiting on disk
print(accepted, refused, spool.enabled)
os._exit(0)  # as a crash: nothing more written
"""
        env = dict(os.environ, PYTHONPATH=REPO)
        done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env,
                              capture_output=True, timeout=_ANSWER, check=True)  # fmt: skip
        accepted, refused, enabled = done.stdout.split()
        assert (b"False", b"100") == (enabled, str(int(accepted) + int(refused)).encode())
        assert 0 < int(accepted) < 100
        spool = Spool.open(tmp_path, sync="none")
        got = drain(spool)
        assert (0, 0) == (spool.torn, spool.quarantined)  # the partial record was cut
        spool.close()
        assert [b',{"line":"%d"}' % i for i in range(int(accepted) * 10)] == got

    def test_done_marks_still_written_after_a_refused_write(self, tmp_path: Path) -> None:
        """A process whose new segment hit the limit (its spool off) goes on replaying
        what a dead one left, and is killed half way through it: the done marks of what
        it delivered are in the file, where they fit (a full disk still takes an ack into
        a segment's last block), so the next process sends only the rest. They were kept
        in memory only: a kill after a full disk sent a whole segment again (up to 16 MiB
        of lines), not one batch."""
        writer = Spool.open(tmp_path, sync="none")
        for n in range(20):
            writer.append([b',{"line":"%d"}' % i for i in range(n * 10, n * 10 + 10)])
        writer.forget_after_fork()  # what kill -9 leaves
        code = r"""
import os, resource, signal, sys
from logdna_client._spool import Spool
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (8192, resource.RLIM_INFINITY))
spool = Spool.open(sys.argv[1], sync="none", segment_bytes=1 << 20)
refused = spool.append([b',{"line":"x"}' * 800]) is None  # past the limit: the spool goes off
sent = 0
for _ in range(10):
    batch = spool.next_replay_batch(1)  # one batch per request
    sent += len(batch.entries)
    spool.ack(batch.id)
print(refused, spool.enabled, sent)
os._exit(0)  # killed: nothing more written
"""
        env = dict(os.environ, PYTHONPATH=REPO)
        done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env,
                              capture_output=True, timeout=_ANSWER, check=True)  # fmt: skip
        assert [b"True", b"False", b"100"] == done.stdout.split(), done.stderr.decode()
        spool = Spool.open(tmp_path, sync="none")
        assert [b',{"line":"%d"}' % i for i in range(100, 200)] == drain(spool)
        spool.close()
        assert [] == segments(tmp_path)
