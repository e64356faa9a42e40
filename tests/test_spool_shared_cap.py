"""Apps with different keys filling one spool folder at the same time, in real processes.

``max_spool_bytes`` bounds the folder, whoever's segments fill it (docs/spool.md);
processes writing at the same moment may pass it by a batch each. Each counts the
others' segments as they are when it writes a batch: counted as of its last rescan
(every few seconds), two apps filling the folder together during an outage left it
at about twice the cap.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from logdna_client._spool._inspect import inspect_segment
from tests._children import Child
from tests._otlp_server import running
from tests.test_spool import segments

# About 1 KB lines, as fast as the app can log them: the two fill the folder together,
# well within one rescan interval.
FILLING_CHILD = """
logging.getLogger("logdna_client").addHandler(logging.StreamHandler(sys.stderr))
name, count = os.environ["NAME"], int(os.environ["COUNT"])
mark("ready")
wait_for("go")
for i in range(count):
    log.info("%s %d %s", name, i, "x" * 1000)
client.close(3)
mark("stats " + json.dumps(client.stats()))
"""

REPLAYER = """
log.info("%s replayer", os.environ["NAME"])
mark("flushed " + str(client.flush(90)))
client.close(10)
"""

KEYS = {"alpha": "key-of-alpha-0123456789abcdef", "beta": "key-of-beta-0123456789abcdef"}
CAP = 1 << 20
BATCH = 16 << 10


class TestAppsFillingOneFolderTogether:
    def test_the_folder_stays_under_the_cap_and_every_line_is_sent_or_counted(
        self, tmp_path: Path
    ) -> None:
        """Two apps with different keys and the same cap log about twice the cap each at
        the same moment during an outage: the folder they leave is within the cap (and a
        batch each); then, the service back, each key's lines arrive with that key only,
        once each, and every line that does not was counted as dropped by its app."""
        folder = tmp_path / "spool"
        count = 2000
        options = {"spool_dir": str(folder), "max_spool_bytes": str(CAP),
                   "flush_interval": "0.05", "retry_max_backoff": "0.3",
                   "max_batch_bytes": str(BATCH)}  # fmt: skip
        with running() as server:
            url = server.base + "/logs/ingest"
            server.down = True
            children = {
                name: Child(
                    FILLING_CHILD, url, env={"NAME": name, "COUNT": str(count)}, key=key, **options
                )
                for name, key in KEYS.items()
            }
            for child in children.values():
                child.expect("ready", timeout=60)
            for child in children.values():
                child.send("go")
            stats: dict[str, dict[str, Any]] = {}
            for name, child in children.items():
                stats[name] = json.loads(child.expect("stats", timeout=120))
                assert 0 == child.finish()[0], child.stderr
            left = sum(p.stat().st_size for p in segments(folder))
            assert left <= CAP + 2 * BATCH, left
            assert 0 == sum(inspect_segment(str(p)).live for p in segments(folder))
            server.down = False
            for name, key in KEYS.items():
                # A cap of its own that the folder is well under: replay drops nothing.
                replayer = Child(REPLAYER, url, env={"NAME": name}, key=key,
                                 spool_dir=str(folder), max_spool_bytes="64MiB")  # fmt: skip
                assert "True" == replayer.expect("flushed", timeout=120), replayer.stderr
                assert 0 == replayer.finish()[0], replayer.stderr
            requests = [r for r in server.requests if r.status == 200]
        sent = [(line["line"], tuple(r.credentials)) for r in requests for line in r.lines]
        for name, key in KEYS.items():
            theirs = [(text.split()[1], how) for text, how in sent if text.startswith(name + " ")]
            numbers = [int(n) for n, _ in theirs if n.isdigit()]
            assert sorted(set(numbers)) == numbers  # once each, in order
            assert {(("apikey", key),)} == {how for _, how in theirs}  # with their own key
            dropped = stats[name]["dropped"]
            lost = dropped["spool_full"] + dropped["buffer_full"] + dropped["shutdown"]
            assert count == len(numbers) + lost, (name, len(numbers), dropped)
        assert [] == segments(folder)
