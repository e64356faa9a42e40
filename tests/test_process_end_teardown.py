"""Lines logged while the interpreter tears itself down, after the library's exit hook:
finalizers (``__del__``) of module globals run when the modules
are cleared, where ``import`` no longer works. In real child processes against the
real devserver.

What must hold: such a line cannot be delivered any more, so it is counted as
``after_close`` and the first one is said on stderr (docs/delivery.md: "Lines cut
off at exit are reported on stderr"), never lost unseen; no traceback, nothing on stdout.
"""

from __future__ import annotations

from logdna_client._devserver import DevServer
from tests._children import Child, texts

# The object is a global of __main__, so it goes when the modules are cleared, after
# every atexit hook. Its finalizer keeps its own references: the module's globals may
# be gone by then.
FINALIZER = """
class Goodbye:
    def __del__(self, log=log):
        log.warning("finalizer at teardown")
goodbye = Goodbye()
"""


class TestFinalizersAtTeardown:
    def test_a_line_logged_at_teardown_is_said_on_stderr(self, server: DevServer) -> None:
        """A finalizer that logs as the interpreter clears the modules: its line is too
        late to deliver (everything logged before it arrives), and stderr says so."""
        child = Child(
            FINALIZER + 'for i in range(50):\n    log.info("before %d", i)\n',
            server.url,
        )
        code, _ = child.finish()
        assert 0 == code, child.stderr
        assert [f"before {i}" for i in range(50)] == texts(server)
        assert "logged after the library's exit hook ran" in child.stderr, child.stderr
        assert "Traceback" not in child.stderr
        assert "" == child.stdout
