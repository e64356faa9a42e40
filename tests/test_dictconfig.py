"""LogDNAHandler configured through logging.config.dictConfig and fileConfig, strings only."""

from __future__ import annotations

import logging
import logging.config
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from logdna_client import Client, LogDNAHandler
from logdna_client._context import bind_request_context, reset_request_context
from logdna_client._devserver import DevServer
from tests._helpers_integrations import TIMEOUT

LOGGER = "t.dictconfig"


def config_for(server: DevServer, **handler: Any) -> dict[str, Any]:
    """A dictConfig dict with one LogDNA handler on LOGGER; every option a string."""
    entry: dict[str, Any] = {
        "class": "logdna_client.LogDNAHandler",
        "level": "DEBUG",
        "url": server.url,
        "hostname": "web-1",
        "app": "billing",
        "env": "staging",
        "tags": "blue, canary",
        "flush_interval": "0.05",
        "max_batch_bytes": "512KiB",
        "max_buffer_bytes": "8MB",
        "request_timeout": "5",
        "shutdown_timeout": "3",
        "compress": "false",
        "index_meta": "true",
        "verify": "true",
        "overflow": "drop_newest",
        "redact": "password, card_number",
        "max_line_length": "4000",
    }
    entry.update(handler)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"logdna": entry},
        "loggers": {LOGGER: {"handlers": ["logdna"], "level": "DEBUG", "propagate": False}},
    }


def our_handler() -> LogDNAHandler:
    (handler,) = logging.getLogger(LOGGER).handlers
    assert isinstance(handler, LogDNAHandler)
    return handler


@pytest.fixture(autouse=True)
def _unconfigure() -> Iterator[None]:
    yield
    log = logging.getLogger(LOGGER)
    for handler in log.handlers[:]:
        log.removeHandler(handler)
        handler.close()


class TestDictConfig:
    def test_string_options_are_coerced(self, server: DevServer) -> None:
        """Every option given as a string reaches the Config as the right type."""
        logging.config.dictConfig(config_for(server))
        config = our_handler().client.config
        assert ("blue", "canary") == config.tags
        assert 0.05 == config.flush_interval
        assert 512 * 1024 == config.max_batch_bytes
        assert 8_000_000 == config.max_buffer_bytes
        assert (5.0, 3.0) == (config.request_timeout, config.shutdown_timeout)
        assert (False, True, True) == (config.compress, config.index_meta, config.verify)
        assert "drop_newest" == config.overflow
        assert ("password", "card_number") == config.redact
        assert 4000 == config.max_line_length

    def test_lines_arrive(self, server: DevServer) -> None:
        """A dictConfig-built handler delivers, with app, env, tags and hostname."""
        logging.config.dictConfig(config_for(server))
        log = logging.getLogger(LOGGER)
        log.info("charged %s", "acme", extra={"invoice": 12, "password": "hunter2"})
        assert our_handler().client.flush(TIMEOUT)
        assert server.wait_for_lines(1, TIMEOUT)
        (line,) = server.lines
        assert "charged acme" == line["line"]
        assert ("billing", "staging") == (line["app"], line["env"])
        assert 12 == line["meta"]["invoice"]
        assert "hunter2" != line["meta"]["password"]
        request = server.requests[-1]
        assert ["blue", "canary"] == list(request.tags)
        assert "web-1" == request.hostname

    def test_handler_level_string(self, server: DevServer) -> None:
        """The dictConfig ``level`` of the handler filters as usual."""
        logging.config.dictConfig(config_for(server, level="WARNING"))
        log = logging.getLogger(LOGGER)
        log.info("dropped")
        log.warning("kept")
        assert our_handler().client.flush(TIMEOUT)
        assert server.wait_for_lines(1, TIMEOUT)
        assert ["kept"] == [line["line"] for line in server.lines]

    def test_bad_option_names_the_option(self, server: DevServer) -> None:
        """A bad string fails dictConfig with the option's name in the error chain."""
        with pytest.raises(ValueError) as info:
            logging.config.dictConfig(config_for(server, flush_interval="soon"))
        chain = []
        exc: BaseException | None = info.value
        while exc is not None:
            chain.append(str(exc))
            exc = exc.__cause__ or exc.__context__
        assert any("flush_interval" in text for text in chain), chain

    def test_request_context_filter_by_dotted_path(self, server: DevServer) -> None:
        """The request-context filter is configured with "()" and adds context as meta."""
        cfg = config_for(server, filters=["request_context"])
        cfg["filters"] = {
            "request_context": {"()": "logdna_client.contrib.django.RequestContextFilter"}
        }
        logging.config.dictConfig(cfg)
        token = bind_request_context(request_id="req-1", http_method="GET")
        try:
            logging.getLogger(LOGGER).info("inside")
        finally:
            reset_request_context(token)
        logging.getLogger(LOGGER).info("outside")
        assert our_handler().client.flush(TIMEOUT)
        assert server.wait_for_lines(2, TIMEOUT)
        inside, outside = server.lines
        assert {"request_id": "req-1", "http_method": "GET", "name": LOGGER} == inside["meta"]
        assert {"name": LOGGER} == outside["meta"]

    def test_redact_patterns_with_commas_in_one_string(self, server: DevServer) -> None:
        """Presets and regexes holding commas, in one string, redact what they name at
        the server. Before, every comma split a pattern: 'ORD-\\d{3' and '6}' compiled,
        matched nothing, and the order and MRN numbers arrived in clear."""
        patterns = r"phi, ORD-\d{3,6}, MRN-\d{6,8}, [,;]secret=\w+"
        logging.config.dictConfig(config_for(server, redact_patterns=patterns))
        config = our_handler().client.config
        assert ("phi", r"ORD-\d{3,6}", r"MRN-\d{6,8}", r"[,;]secret=\w+") == (
            config.redact_patterns
        )
        log = logging.getLogger(LOGGER)
        log.info("order ORD-12345 for ada@example.com")
        log.info("patient MRN-1234567 called;secret=abc")
        assert our_handler().client.flush(TIMEOUT)
        assert server.wait_for_lines(2, TIMEOUT)
        assert ["order [REDACTED] for [REDACTED]", "patient [REDACTED] called[REDACTED]"] == [
            line["line"] for line in server.lines
        ]

    def test_a_verbose_pattern_with_a_commented_comma(self, server: DevServer) -> None:
        """A verbose regex (a YAML block's) whose comment holds a comma redacts both of
        its alternatives at the server. Before, it was cut at the comment's comma: the
        rest lost its "(?x)", matched nothing, and the SSN arrived in clear."""
        verbose = (
            "(?x) MRN: \\s* \\d{7}  # record number, 7 digits\n | SSN: \\s* \\d{3}-\\d{2}-\\d{4}"
        )
        logging.config.dictConfig(config_for(server, redact_patterns=f"email, {verbose}"))
        logging.getLogger(LOGGER).info("patient MRN: 1234567, SSN: 123-45-6789")
        assert our_handler().client.flush(TIMEOUT)
        assert server.wait_for_lines(1, TIMEOUT)
        assert ["patient [REDACTED], [REDACTED]"] == [line["line"] for line in server.lines]


class TestBlankStrings:
    def test_blank_redact_and_verify_keep_their_defaults(self, server: DevServer) -> None:
        """A settings file that fills options from variables left empty
        (``"redact": os.environ.get("EXTRA_REDACT", "")``) keeps redaction and TLS
        verification on: blank is not given, not false."""
        logging.config.dictConfig(config_for(server, redact="", verify="", compress=""))
        config = our_handler().client.config
        assert (True, True) == (config.verify, config.compress)
        logging.getLogger(LOGGER).info("login", extra={"password": "hunter2"})
        assert our_handler().client.flush(TIMEOUT)
        assert server.wait_for_lines(1, TIMEOUT)
        (line,) = server.lines
        assert "[REDACTED]" == line["meta"]["password"]


class TestReconfigure:
    def test_second_dictconfig_loses_nothing(self, server: DevServer) -> None:
        """Replacing the handler closes the old one without waiting; its lines all arrive."""
        n = 3000
        logging.config.dictConfig(config_for(server, flush_interval="30", shutdown_timeout="5"))
        old = our_handler()
        log = logging.getLogger(LOGGER)
        for i in range(n):
            log.info("before %d", i)
        started = time.monotonic()
        logging.config.dictConfig(config_for(server, app="second"))
        took = time.monotonic() - started
        new = our_handler()
        assert new is not old
        assert old.client.closed
        assert took < 2.0  # did not wait for the old sender under logging's lock
        log.info("after")
        assert new.client.flush(TIMEOUT)
        assert server.wait_for_lines(n + 1, TIMEOUT)
        assert old.client._sender.finished.wait(TIMEOUT)
        before = [line["line"] for line in server.lines if line["line"].startswith("before")]
        assert [f"before {i}" for i in range(n)] == before
        assert 0 == old.client.stats()["dropped_total"]
        assert ["after"] == [line["line"] for line in server.lines if line.get("app") == "second"]

    def test_old_handler_drains_within_its_deadline_when_server_is_slow(
        self, server: DevServer
    ) -> None:
        """With a slow server, dictConfig returns at once; the old client drains in time."""
        logging.config.dictConfig(config_for(server, flush_interval="30", shutdown_timeout="4"))
        old = our_handler()
        log = logging.getLogger(LOGGER)
        for i in range(50):
            log.info("slow %d", i)
        server.set_delay(0.5)
        started = time.monotonic()
        logging.config.dictConfig(config_for(server))
        assert time.monotonic() - started < 2.0
        assert old.client._sender.finished.wait(4 + 2)
        server.set_delay(0)
        assert server.wait_for_lines(50, TIMEOUT)
        assert 0 == old.client.stats()["dropped_total"]

    def test_replacing_a_handler_is_not_a_process_exit(self, server: DevServer) -> None:
        """dictConfig closes the handlers it replaces the way logging.shutdown() does;
        that must not start the exit's one deadline, which would cut short a close
        elsewhere in the process right after (here: a client's own 10 s close)."""
        logging.config.dictConfig(config_for(server, shutdown_timeout="0"))
        logging.config.dictConfig(config_for(server, app="second"))
        client = Client(key="k", url=server.url, hostname="web-1", handle_signals=False)
        client.log("closed right after a reconfiguration")

        client.close(10)

        assert 1 == client.stats()["sent"]
        assert server.wait_for_lines(1, TIMEOUT)


def _ini(tmp_path: Path, kwargs: str) -> Path:
    """A fileConfig file giving the ``LOGGER`` logger our handler, with ``kwargs`` (the
    text of its ``kwargs=`` line, a dict literal) as its options."""
    ini = tmp_path / "logging.ini"
    head = textwrap.dedent(
        f"""\
        [loggers]
        keys=root,app

        [handlers]
        keys=logdna

        [formatters]
        keys=

        [logger_root]
        level=WARNING
        handlers=

        [logger_app]
        level=DEBUG
        handlers=logdna
        qualname={LOGGER}
        propagate=0

        [handler_logdna]
        class=logdna_client.LogDNAHandler
        level=DEBUG
        args=()
        """
    )
    ini.write_text(f"{head}kwargs={kwargs}\n")
    return ini


class TestFileConfig:
    def test_ini_with_string_kwargs(self, server: DevServer, tmp_path: Path) -> None:
        """fileConfig with kwargs as strings delivers lines."""
        ini = _ini(
            tmp_path,
            f'{{"url": "{server.url}", "app": "ini-app", "tags": "x,y", "flush_interval": '
            '"0.05", "compress": "yes", "shutdown_timeout": "2"}',
        )
        logging.config.fileConfig(ini, disable_existing_loggers=False)
        handler = our_handler()
        assert ("x", "y") == handler.client.config.tags
        logging.getLogger(LOGGER).error("from ini")
        assert handler.client.flush(TIMEOUT)
        assert server.wait_for_lines(1, TIMEOUT)
        (line,) = server.lines
        assert ("from ini", "ERROR", "ini-app") == (line["line"], line["level"], line["app"])

    def test_ini_redact_patterns_with_commas(self, server: DevServer, tmp_path: Path) -> None:
        """fileConfig's string reaches the same rule as dictConfig's. Before: the MRN
        pattern was cut in two at its quantifier's comma and the number arrived in clear."""
        ini = _ini(
            tmp_path,
            f'{{"url": "{server.url}", "flush_interval": "0.05", '
            '"redact_patterns": r"email, MRN-\\d{6,8}"}',
        )
        logging.config.fileConfig(ini, disable_existing_loggers=False)
        handler = our_handler()
        assert ("email", r"MRN-\d{6,8}") == handler.client.config.redact_patterns
        logging.getLogger(LOGGER).warning("patient MRN-1234567 called")
        assert handler.client.flush(TIMEOUT)
        assert server.wait_for_lines(1, TIMEOUT)
        assert "patient [REDACTED] called" == server.lines[0]["line"]


CHILD_DISABLING_EXISTING = """
import logging, logging.config, socket, sys
with socket.socket() as s:  # a loopback port nobody listens on
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
logging.config.dictConfig({
    "version": 1,  # disable_existing_loggers left at its default, True
    "handlers": {
        "console": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"},
        "logdna": {"class": "logdna_client.LogDNAHandler", "hostname": "h",
                   "url": f"http://127.0.0.1:{port}/logs/ingest", "flush_interval": "0.05"},
    },
    "root": {"handlers": ["console", "logdna"], "level": "INFO"},
})
logging.getLogger("app").warning("a line")
handler = logging.getLogger().handlers[1]
print("flushed", handler.client.flush(2.0), flush=True)
handler.client.close(0)
"""


def test_reports_reach_the_app_after_dictconfig_disabled_existing_loggers() -> None:
    """dictConfig with the default disable_existing_loggers=True disabled the library's
    own logger (made as the handler was built, inside that same call): a failing send
    was reported to no one. The report now reaches the app's handlers on root."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD_DISABLING_EXISTING], capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert "flushed False" in done.stdout, (done.stdout, done.stderr)
    assert "logdna_client: sending failed" in done.stderr, done.stderr
