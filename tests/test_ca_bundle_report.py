"""A missing CA bundle's report points at the settings that name one (verify=,
REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE), not only at the url and the proxy."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from logdna_client import Client


def test_a_missing_ca_bundle_names_the_settings_that_name_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """REQUESTS_CA_BUNDLE naming a file that is not there: the report says to check the CA
    bundle settings, not only the url and the proxy."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "gone.pem"))
    caplog.set_level(logging.ERROR, logger="logdna_client")
    client = Client(key="k" * 32, url="https://127.0.0.1:9/logs/ingest", shutdown_timeout=0.2)
    try:
        client.log("never sent")
        client.flush(timeout=2)
    finally:
        client.close(0.2)
    reports = [r.getMessage() for r in caplog.records if "no request can be made" in r.getMessage()]
    assert reports, [r.getMessage() for r in caplog.records]
    assert "REQUESTS_CA_BUNDLE" in reports[0]
