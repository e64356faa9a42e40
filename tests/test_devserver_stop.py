"""Tests for DevServer.stop(): what the server holds when it returns is final."""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from logdna_client import _otlp
from logdna_client.devserver import DevServer, _body

TIMEOUT = 30.0


class TestStop:
    @pytest.mark.parametrize("path", ["/logs/ingest", "/v1/logs"])
    def test_lines_read_before_stop_and_taken_after_are_not_kept(
        self, path: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """A request whose body was read before stop() but whose lines come to be taken
        after it returned (stop waits for connection threads only so long) is recorded
        as stopped and not answered: the lines, the count, the tail and the store file
        stay as stop() left them."""
        reading, go = threading.Event(), threading.Event()
        parse, receive = _body.parse_lines, _otlp.receive

        def held(real: Any) -> Any:
            def call(*args: Any) -> Any:
                reading.set()
                assert go.wait(TIMEOUT)
                return real(*args)

            return call

        monkeypatch.setattr(_body, "parse_lines", held(parse))
        monkeypatch.setattr(_otlp, "receive", held(receive))
        tail, store = io.StringIO(), tmp_path / "store.jsonl"
        srv = DevServer(out=tail, json_output=True, store=str(store)).start()
        if path == "/v1/logs":
            record = {"body": {"stringValue": "late"}}
            body = {"resourceLogs": [{"scopeLogs": [{"logRecords": [record]}]}]}
        else:
            body = {"lines": [{"line": "late"}]}
        answers: list[Any] = []

        def send() -> None:
            try:
                answers.append(
                    requests.post(
                        f"{srv.base_url}{path}",
                        params={"hostname": "h"},
                        json=body,
                        timeout=TIMEOUT,
                    )
                )
            except requests.RequestException as exc:
                answers.append(exc)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        try:
            assert reading.wait(TIMEOUT)
            srv.stop()
        finally:
            go.set()
        assert srv.wait_for_requests(1, TIMEOUT)
        sender.join(TIMEOUT)

        assert 0 == srv.line_count
        assert [] == srv.lines
        assert "" == tail.getvalue()
        assert b"" == store.read_bytes()
        assert isinstance(answers[0], requests.RequestException)
        assert "server stopped" == srv.requests[0].error

    def test_a_started_again_server_takes_lines(self) -> None:
        """stop() then start() takes lines again."""
        srv = DevServer().start()
        srv.stop()
        srv.start()
        try:
            answer = requests.post(
                srv.url, params={"hostname": "h"}, data=orjson.dumps({"lines": [{"line": "x"}]}),
                timeout=TIMEOUT,
            )  # fmt: skip
        finally:
            srv.stop()

        assert 200 == answer.status_code
        assert 1 == srv.line_count
