"""Tests for the official client's form (_official.py): LogDNAHandler(key, options)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from logdna_client import ConfigurationError, LogDNAHandler
from logdna_client._devserver import DevServer
from logdna_client._official import IGNORED
from logdna_client.testing import capture_lines
from tests._helpers_integrations import REPO_ROOT, TIMEOUT
from tests.helpers import make_logger

# The official client's README (logdna/python, "Setup" and "Usage"), verbatim but for
# the import line.
README_EXAMPLE = """
import logging
from logdna import LogDNAHandler

key = 'YOUR INGESTION KEY HERE'

log = logging.getLogger('logdna')
log.setLevel(logging.INFO)

options = {
  'hostname': 'pytest',
  'ip': '10.0.1.1',
  'mac': 'C0:FF:EE:C0:FF:EE'
}

# Defaults to False; when True meta objects are searchable
options['index_meta'] = True

test = LogDNAHandler(key, options)

log.addHandler(test)

log.warning("Warning message", {'app': 'bloop'})
log.info("Info message")

# Simplest use case
log.info('My Sample Log Line')

# Add a custom level
log.info('My Sample Log Line', { 'level': 'MyCustomLevel' })

# Include an App name with this specific log
log.info('My Sample Log Line', { 'level': 'Warn', 'app': 'myAppName'})

# Pass any associated objects along as metadata
meta = {
    'foo': 'bar',
    'nested': {
        'nest1': 'nested text'
    }
}

opts = {
  'level': 'warn',
  'meta': meta
}

log.info('My Sample Log Line', opts)
"""

# The README's "Usage with fileConfig" section.
README_FILECONFIG = """
[loggers]
keys=root

[handlers]
keys=LogdnaHandler

[formatters]
keys=LogdnaFormatter

[logger_root]
level=INFO
handlers=LogdnaHandler

[handler_LogdnaHandler]
class=logdna.LogDNAHandler
level=INFO
formatter=LogdnaFormatter
args=('YOUR_INGESTION_KEY',{'app':'Some App Name','tags':'sample_tag','hostname':'myhost'})

[formatter_LogdnaFormatter]
format=%(name)s - %(levelname)s - %(message)s
"""


def _run(code: str, server: DevServer, cwd: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGDNA_")}
    env["LOGDNA_URL"] = server.url  # where the README's handler would reach LogDNA
    env["PYTHONPATH"] = str(REPO_ROOT)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert 0 == result.returncode, result.stderr
    assert "" == result.stdout  # the official client printed its own debug lines here


class TestOfficialExamplesRunUnchanged:
    def test_readme_example(self, server: DevServer, tmp_path: Path) -> None:
        """The README's example, import changed, delivers every line as it documents them."""
        code = README_EXAMPLE.replace(
            "from logdna import LogDNAHandler", "from logdna_client import LogDNAHandler"
        )
        _run(code, server, tmp_path)
        assert server.wait_for_lines(6, TIMEOUT)
        got = [(x["line"], x["level"], x.get("app")) for x in server.lines]
        assert [
            ("Warning message", "WARNING", "bloop"),
            ("Info message", "INFO", None),
            ("My Sample Log Line", "INFO", None),
            ("My Sample Log Line", "MYCUSTOMLEVEL", None),
            ("My Sample Log Line", "WARNING", "myAppName"),
            ("My Sample Log Line", "WARNING", None),
        ] == got
        # The logger's name first, as every line of the handler carries it (record_meta).
        assert {"name": "logdna", "foo": "bar", "nested": {"nest1": "nested text"}} == server.lines[
            5
        ]["meta"]
        request = server.requests[0]
        assert ("pytest", "10.0.1.1", "C0:FF:EE:C0:FF:EE") == (
            request.hostname, request.query.get("ip"), request.query.get("mac")
        )  # fmt: skip
        assert request.key_present

    def test_readme_fileconfig(self, server: DevServer, tmp_path: Path) -> None:
        """The README's fileConfig section, class changed, configures and delivers."""
        ini = README_FILECONFIG.replace("class=logdna.", "class=logdna_client.")
        (tmp_path / "logging.ini").write_text(ini)
        code = textwrap.dedent(
            """
            import logging, logging.config
            logging.config.fileConfig("logging.ini")
            logging.getLogger("shop").info("from fileConfig")
            """
        )
        _run(code, server, tmp_path)
        assert server.wait_for_lines(1, TIMEOUT)
        line = server.lines[0]
        assert ("shop - INFO - from fileConfig", "Some App Name") == (line["line"], line["app"])
        assert ("myhost", ["sample_tag"]) == (server.requests[0].hostname, server.requests[0].tags)


URL = "http://127.0.0.1:9/logs/ingest"


class TestOptionMapping:
    def test_renamed_options(self) -> None:
        """flush_limit and buf_retention_limit become max_batch_bytes and max_buffer_bytes."""
        handler = LogDNAHandler(
            "k", {"url": URL, "flush_limit": 100_000, "buf_retention_limit": 8_000_000}
        )
        config = handler.client.config
        handler.close()
        assert (100_000, 8_000_000) == (config.max_batch_bytes, config.max_buffer_bytes)
        assert config.secret is not None and "k" == config.secret.reveal()

    def test_ignored_options_accepted(self) -> None:
        """Official options with no counterpart are accepted and change nothing."""
        options = dict.fromkeys(IGNORED, 1) | {"url": URL, "level": "debug"}
        handler = LogDNAHandler("k", options)
        try:
            assert 0 == handler.level  # the official handler ships every level too
        finally:
            handler.close()

    def test_unknown_official_option(self) -> None:
        """A name neither client knows is a ConfigurationError with the closest one."""
        with pytest.raises(ConfigurationError, match="did you mean 'flush_limit'"):
            LogDNAHandler("k", {"url": URL, "flush_limt": 1})

    def test_key_twice(self) -> None:
        """The key as the first argument and in options is refused."""
        with pytest.raises(ConfigurationError, match="given twice"):
            LogDNAHandler("k", {"url": URL, "key": "other"})

    def test_options_not_a_dict(self) -> None:
        """A second positional argument that is no mapping is refused clearly."""
        with pytest.raises(ConfigurationError, match="options: expected a dict"):
            LogDNAHandler("k", ["app"])  # type: ignore[arg-type]

    @pytest.mark.usefixtures("handle_path")
    def test_keyword_form_unaffected(self) -> None:
        """Without the positional form, a dict argument is an ordinary %-argument."""
        handler = LogDNAHandler(url=URL)
        log = make_logger("official.kw", handler)
        with capture_lines() as lines:
            log.info("value %(level)s", {"level": "x"})
        handler.close()
        assert [("value x", "INFO")] == [(x["line"], x["level"]) for x in lines]

    def test_per_line_options_keep_extras_and_filters(self) -> None:
        """Per-line options merge with extra= meta; the handler's filters still apply."""
        handler = LogDNAHandler("k", {"url": URL})
        handler.addFilter(lambda record: record.getMessage() != "skip me")
        log = make_logger("official.opts", handler)
        with capture_lines() as lines:
            log.info("skip me", {"app": "x"})  # noqa: PLE1205 - the official per-line dict
            log.info("kept", {"env": "staging", "meta": {"a": 1}}, extra={"b": 2})  # noqa: PLE1205
        handler.close()
        # The logger's name first, as every line of the handler carries it (record_meta).
        assert [("kept", "staging", {"name": "official.opts", "b": 2, "a": 1})] == [
            (x["line"], x["env"], x["meta"]) for x in lines
        ]


# The README's "Usage with fileConfig" section, which shows a dictConfig dict (a Django
# settings.py); only <True|False> filled in. Its handler class is the name the official
# package published into the stdlib's module at import; ours publishes nothing there.
README_DICTCONFIG = """
import os
import logging
from logdna import LogDNAHandler #  required to register `logging.handlers.LogDNAHandler`

LOGGING = {
    # Other logging settings...
    'handlers': {
        'logdna': {
            'level': logging.DEBUG,
            'class': 'logging.handlers.LogDNAHandler',
            'key': os.environ.get('LOGDNA_INGESTION_KEY'),
            'options': {
                'app': '<app name>',
                'env': os.environ.get('ENVIRONMENT'),
                'index_meta': True,
            },
        },
    },
    'loggers': {
        '': {
            'handlers': ['logdna'],
            'level': logging.DEBUG
        },
    },
}
"""


class TestDictConfigForm:
    def test_readme_dictconfig(
        self, server: DevServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The README's dictConfig dict, with the class path docs/migration.md gives,
        configures and delivers with its options applied."""
        code = (
            README_DICTCONFIG.replace("from logdna import LogDNAHandler", "")
            .replace("'logging.handlers.LogDNAHandler'", "'logdna_client.LogDNAHandler'")
            .replace("<app name>", "shop")
        )
        # ("Other logging settings...": the version dictConfig needs.)
        code += "\nimport logging.config\nlogging.config.dictConfig({**LOGGING, 'version': 1})\n"
        code += "logging.getLogger('shop').info('from dictConfig', extra={'order': 42})\n"
        monkeypatch.setenv("ENVIRONMENT", "staging")
        _run(code, server, tmp_path)
        assert server.wait_for_lines(1, TIMEOUT)
        line = server.lines[0]
        assert ("from dictConfig", "shop", "staging") == (line["line"], line["app"], line["env"])
        assert {"name": "shop", "order": 42} == line["meta"]  # index_meta: an object

    def test_keywords_are_the_positional_pair(self) -> None:
        """key= and options= as keywords (as dictConfig passes them) build the handler
        the positional pair builds, translated alike."""
        options = {"url": URL, "app": "shop", "flush_limit": 100_000, "verbose": True}
        by_position = LogDNAHandler("k", options)
        by_keyword = LogDNAHandler(key="k", options=options)  # type: ignore[call-arg]
        by_position.close()
        by_keyword.close()
        assert by_position.client.config == by_keyword.client.config
        assert 100_000 == by_keyword.client.config.max_batch_bytes
        assert 0 == by_keyword.level  # the official form: every level

    def test_options_keyword_alone(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """options= without key=: the key comes from LOGDNA_INGESTION_KEY, as the
        positional form with None for the key takes it."""
        monkeypatch.setenv("LOGDNA_INGESTION_KEY", "env-key")
        handler = LogDNAHandler(options={"url": URL, "flush_limit": 100_000})  # type: ignore[call-arg]
        handler.close()
        config = handler.client.config
        assert config.secret is not None and "env-key" == config.secret.reveal()
        assert 100_000 == config.max_batch_bytes

    @pytest.mark.parametrize("options", ["app=shop", ["app"], 3])
    def test_options_keyword_not_a_mapping(self, options: object) -> None:
        """options= holding anything but a dict is refused, as the positional one is."""
        with pytest.raises(ConfigurationError, match="options: expected a dict"):
            LogDNAHandler(key="k", options=options)  # type: ignore[call-arg]

    def test_options_given_twice(self) -> None:
        """The options by position and as options= is refused."""
        with pytest.raises(ConfigurationError, match="options: given twice"):
            LogDNAHandler("k", {"url": URL}, options={"url": URL})  # type: ignore[call-arg]

    def test_key_given_twice(self) -> None:
        """The key by position and as key= beside options= is refused."""
        with pytest.raises(ConfigurationError, match="key: given twice"):
            LogDNAHandler("k", key="other", options={"url": URL})  # type: ignore[call-arg]
