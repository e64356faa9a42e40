"""Tests for _kubernetes with hostile metadata: values that are not UTF-8 in the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from logdna_client import Client, _kubernetes
from logdna_client._devserver import DevServer
from logdna_client._kubernetes import detect
from tests._otlp_server import running

# What os.environ holds for the bytes b"web-\xff1" (not UTF-8): a lone surrogate.
NOT_UTF8 = b"web-\xff1".decode("utf-8", "surrogateescape")


@pytest.fixture
def pod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pod whose POD_NAME is not UTF-8, the detector's files pointed at an empty folder."""
    for name in ("NAMESPACE_FILE", "CGROUP_FILE", "MOUNTINFO_FILE"):
        monkeypatch.setattr(_kubernetes, name, str(tmp_path / name.lower()))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("POD_NAME", NOT_UTF8)
    monkeypatch.setenv("POD_NAMESPACE", "shop")


class TestNotUTF8:
    def test_values_are_text_that_encodes(self) -> None:
        """Each key and value encodes to UTF-8; the bytes that are not UTF-8 become U+FFFD."""
        found = detect(
            {"KUBERNETES_SERVICE_HOST": "x", "POD_NAME": NOT_UTF8,
             "OTEL_RESOURCE_ATTRIBUTES": "k8s.node.name=n\ud800,k8s.\udcffx=1"},
            namespace_file="/nonexistent", cgroup_file="/nonexistent",
            mountinfo_file="/nonexistent",
        )  # fmt: skip
        assert "web-\ufffd1" == found["k8s.pod.name"]
        assert "n?" == found["k8s.node.name"]
        assert "1" == found["k8s.\ufffdx"]
        for key, value in found.items():
            (key + value).encode("utf-8")

    def test_otlp_delivers(self, pod: None) -> None:
        """Every line arrives on OTLP (old code: each batch failed to encode, 3 of 3 lost)."""
        with running() as otlp:
            client = Client(key="k", url=otlp.url, protocol="otlp", handle_signals=False)
            for i in range(3):
                client.log(f"line {i}")
            assert client.flush(timeout=10)
            client.close()
        assert ["line 0", "line 1", "line 2"] == [line["line"] for line in otlp.lines]
        assert "web-\ufffd1" == otlp.lines[0]["resource"]["k8s.pod.name"]
        assert 0 == client.stats()["dropped_total"]

    def test_logdna_protocol_delivers(self, server: DevServer, pod: None) -> None:
        """Every line arrives on the ingest API (old code: the request's URL could not be
        built, retried until the close deadline, 3 of 3 lost)."""
        client = Client(key="k", url=server.url, hostname="h", handle_signals=False)
        for i in range(3):
            client.log(f"line {i}")
        assert client.flush(timeout=10)
        client.close()
        assert ["line 0", "line 1", "line 2"] == [line["line"] for line in server.lines]
        assert "k8s.pod.name=web-\ufffd1" in server.requests[0].tags


OUTER = "0a1b2c3d" * 8  # the container the pod's node runs in (kind, docker-in-docker)
INNER = "3f4b1c2d" * 8  # this process's


class TestNestedContainers:
    @pytest.mark.parametrize(
        "cgroup",
        [
            f"12:memory:/docker/{OUTER}/kubepods/besteffort/pod0b4a/{INNER}\n",  # v1, kind
            f"0::/docker/{OUTER}/kubelet.slice/kubelet-kubepods.slice/"
            f"kubelet-kubepods-pod0b4a.slice/cri-containerd-{INNER}.scope\n",  # v2, kind
            f"1:name=systemd:/docker/{OUTER}/docker/{INNER}\n",  # docker-in-docker
        ],
    )
    def test_the_innermost_id_is_this_container(self, tmp_path: Path, cgroup: str) -> None:
        """A process in a container inside another container gets its own id, the path's
        last (old code: the outer container's, the path's first)."""
        (tmp_path / "cgroup").write_text("2:cpu:/\n" + cgroup)
        assert INNER == _kubernetes.container_id(str(tmp_path / "cgroup"), str(tmp_path / "x"))
