"""Tests for the official client's form (_official.py): LogDNAHandler(key, options)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from logdna_client import ConfigurationError, LogDNAHandler
from logdna_client._devserver import DevServer
from logdna_client._official import IGNORED, line_options
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


OfficialEmit = Callable[[logging.LogRecord], dict[str, Any]]


@pytest.fixture
def official_emit() -> Iterator[OfficialEmit]:
    """The line the official handler (logdna 1.18.12) builds for a record: its own emit,
    stopped at its buffer_log, before any thread or request."""
    logdna = pytest.importorskip("logdna")
    handler = logdna.LogDNAHandler("not-a-key", {"app": "shop", "hostname": "web-1"})
    built: list[dict[str, Any]] = []
    handler.buffer_log = built.append

    def emit(record: logging.LogRecord) -> dict[str, Any]:
        handler.emit(record)
        return built.pop()

    try:
        yield emit
    finally:
        # Its constructor added a stdout handler to the "internal" logger, and two pools.
        logging.getLogger("internal").removeHandler(handler.internal_handler)
        handler.worker_thread_pool.shutdown()
        handler.request_thread_pool.shutdown()
        logging.Handler.close(handler)


def _record(level: int, msg: str, arg: dict[str, Any]) -> logging.LogRecord:
    """What log.<level>(msg, arg) makes (logging unpacks the lone dict into args)."""
    return logging.LogRecord("svc", level, __file__, 1, msg, (arg,), None)


# log calls with a single dict argument: (level, message, the dict).
DICT_ARGUMENT_CALLS = [
    (logging.INFO, "loaded config %s", {"env": "staging", "level": "verbose", "db": "main"}),
    (logging.INFO, "user %(user)s set log level to %(level)s", {"user": "ada", "level": "debug"}),
    (logging.WARNING, "host %(hostname)s is down", {"hostname": "db-7"}),
    (logging.INFO, "My Sample Log Line", {"level": "MyCustomLevel"}),
    (logging.INFO, "My Sample Log Line", {"level": "Error", "app": "myAppName"}),
    (logging.INFO, "order %(id)s shipped", {"id": 7, "env": "prod", "timestamp": 1700000000.25}),
    (logging.ERROR, "plain %s", {"a": 1}),
]


class TestPerLineDict:
    @pytest.mark.usefixtures("handle_path")
    @pytest.mark.parametrize(("level", "msg", "arg"), DICT_ARGUMENT_CALLS)
    def test_as_the_official_handler_ships_it(
        self, official_emit: OfficialEmit, level: int, msg: str, arg: dict[str, Any]
    ) -> None:
        """The text is the message formatted with the dict, and the level, app, env and
        timestamp the dict names are the line's, as the official handler built them
        (its level text as ours names levels: upper case)."""
        expected = official_emit(_record(level, msg, arg))
        handler = LogDNAHandler("k", {"url": URL, "app": "shop"})
        with capture_lines() as lines:
            handler.handle(_record(level, msg, arg))
        handler.close()
        (line,) = lines
        assert expected["line"] == line["line"]
        assert expected["level"].upper() == line["level"]
        assert (expected["app"], expected["env"]) == (line["app"], line["env"] or "")
        if "timestamp" in arg:  # (else the official one is the time of emit)
            assert round(expected["timestamp"] * 1000) == line["timestamp"]

    @pytest.mark.parametrize(
        ("arg", "applied"),
        [
            ({"hostname": "db-7"}, None),  # the ingest API takes a hostname per request only
            ({"level": "warn", "hostname": "db-7"}, {"level": "warn"}),
            ({"level": 30}, {"level": 30}),
            ({"level": "", "app": "", "env": None, "meta": {}}, None),
            ({"level": True, "timestamp": True}, None),
            ({"app": 5, "env": ["prod"], "timestamp": "soon", "meta": "m"}, None),
            (
                {"timestamp": 1700000000, "meta": {"a": 1}},
                {"timestamp": 1700000000, "meta": {"a": 1}},
            ),
            ({"user": "ada"}, None),
        ],
    )
    def test_which_keys_apply(self, arg: dict[str, Any], applied: dict[str, Any] | None) -> None:
        """Only the keys whose value a line can carry are per-line options."""
        assert applied == line_options(arg)

    @pytest.mark.usefixtures("handle_path")
    def test_hostname_alone_is_an_ordinary_argument(self) -> None:
        """A dict whose only option is hostname formats the message, meta as any line's."""
        handler = LogDNAHandler("k", {"url": URL})
        log = make_logger("official.host", handler)
        with capture_lines() as lines:
            log.warning("host %(hostname)s is down", {"hostname": "db-7"})
        handler.close()
        assert [("host db-7 is down", "WARNING", {"name": "official.host"})] == [
            (x["line"], x["level"], x["meta"]) for x in lines
        ]

    def test_no_place_for_the_dict(self) -> None:
        """A message that cannot take the dict ships as it is, with the options applied
        (the official handler's format raised out of the logging call there)."""
        handler = LogDNAHandler("k", {"url": URL})
        log = make_logger("official.noplace", handler)
        with capture_lines() as lines:
            log.info("paid %d in full", {"level": "warn"})
        handler.close()
        assert [("paid %d in full", "WARNING")] == [(x["line"], x["level"]) for x in lines]


class TestPerLineLevel:
    @pytest.mark.usefixtures("handle_path")
    def test_a_lower_label_still_ships(self) -> None:
        """A record that passed the handler's level ships whatever level its dict names:
        the label is only the line's level text (it was dropped, uncounted)."""
        handler = LogDNAHandler("k", {"url": URL}, level="INFO")
        log = make_logger("official.level", handler)
        with capture_lines() as lines:
            log.error("payment failed", {"level": "debug", "meta": {"order": 1}})  # noqa: PLE1205
            log.error("trace label", {"level": "trace"})  # noqa: PLE1205
            log.debug("below the handler", {"level": "error"})  # noqa: PLE1205
        stats = handler.client.stats()
        handler.close()
        assert [("payment failed", "DEBUG"), ("trace label", "TRACE")] == [
            (x["line"], x["level"]) for x in lines
        ]
        assert (0, 0) == (stats["filtered"], sum(stats["dropped"].values()))
