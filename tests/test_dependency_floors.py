"""The oldest dependencies pyproject.toml allows must work: users install beside whatever
their other packages pin (botocore and older stacks hold urllib3 1.26).

CI runs the newest versions. To check the floors, make a venv with the lowest version of
each runtime dependency, install the package into it with ``--no-deps`` and the test
tools, build the C extension, and run the modules that exercise the transport and the
line building (test_transport, test_hostile_endpoints, test_redirects, test_claims_hostile,
test_integration, test_line, test_handler, test_sender, test_security, test_otlp and this
one)::

    printf 'urllib3==1.26.5\\nrequests==2.28.0\\norjson==3.8.0\\ntyping-extensions==4.5.0\\n' \\
        > /tmp/floors.txt
    python -m venv /tmp/floor
    /tmp/floor/bin/pip install -r /tmp/floors.txt -c /tmp/floors.txt pytest pytest-timeout \\
        hypothesis responses structlog opentelemetry-proto setuptools
    /tmp/floor/bin/pip install --no-deps -e .
    /tmp/floor/bin/python setup.py -q build_ext --inplace
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests._children import REPO

#: Run where warnings are errors (``python -W error``, as an application or a test suite
#: may be): the library and what it sends through are imported, and a TLS context made
#: the way every https:// connection makes one.
_WHERE_WARNINGS_ARE_ERRORS = """
import logdna_client, requests, urllib3
from urllib3.util.ssl_ import create_urllib3_context

create_urllib3_context()
print(urllib3.__version__)
"""


def test_the_library_works_where_warnings_are_errors() -> None:
    """On the Pythons the library supports (3.10 and later), urllib3 before 1.26.5 cannot
    be imported where warnings are errors (its bundled six raises ImportWarning), and made
    every TLS connection raise a DeprecationWarning (ssl.PROTOCOL_TLS): every batch
    retried until the exit dropped it. Hence the floor urllib3>=1.26.5."""
    run = subprocess.run(
        [sys.executable, "-W", "error", "-c", _WHERE_WARNINGS_ARE_ERRORS],
        env=dict(os.environ, PYTHONPATH=REPO), capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert 0 == run.returncode, run.stderr[-2000:]
