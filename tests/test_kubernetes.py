"""Tests for _kubernetes: pod metadata from env vars and files, read once at start."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from logdna_client import Client, _kubernetes
from logdna_client._devserver import DevServer
from logdna_client._kubernetes import attributes_for, container_id, detect, tags_for
from tests._otlp_server import running

CID = "3f4b1c2d" * 8  # 64 hex digits

POD_ENV = {
    "KUBERNETES_SERVICE_HOST": "10.0.0.1",
    "POD_NAME": "web-7d9f-abcde",
    "POD_NAMESPACE": "shop",
    "NODE_NAME": "node-3",
    "POD_UID": "0b4a-11ef",
    "CONTAINER_NAME": "web",
}


@pytest.fixture
def no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The detector's files pointed at an empty folder (this machine may be a pod)."""
    for name in ("NAMESPACE_FILE", "CGROUP_FILE", "MOUNTINFO_FILE"):
        monkeypatch.setattr(_kubernetes, name, str(tmp_path / name.lower()))
    return tmp_path


class TestDetect:
    def test_outside_a_pod_nothing(self, no_files: Path) -> None:
        """Without KUBERNETES_SERVICE_HOST, "auto" finds nothing, even with the other variables."""
        env = dict(POD_ENV)
        del env["KUBERNETES_SERVICE_HOST"]
        assert {} == detect(env)

    def test_downward_api_variables(self, no_files: Path) -> None:
        """The five commonly set variables, under OpenTelemetry's names."""
        expected = {
            "k8s.pod.name": "web-7d9f-abcde", "k8s.namespace.name": "shop",
            "k8s.node.name": "node-3", "k8s.pod.uid": "0b4a-11ef", "k8s.container.name": "web",
        }  # fmt: skip
        assert expected == detect(POD_ENV)

    def test_otel_resource_attributes_win(self, no_files: Path) -> None:
        """OTEL_RESOURCE_ATTRIBUTES k8s.* keys (percent-decoded) come first; others are not ours."""
        env = dict(POD_ENV, OTEL_RESOURCE_ATTRIBUTES=(
            "service.name=x, k8s.pod.name=from%2Cotel,k8s.deployment.name=web,junk"
        ))  # fmt: skip
        found = detect(env)
        assert "from,otel" == found["k8s.pod.name"]
        assert "web" == found["k8s.deployment.name"]
        assert "service.name" not in found
        assert "shop" == found["k8s.namespace.name"]

    def test_namespace_file_and_hostname(self, no_files: Path) -> None:
        """Without the variables: the service-account namespace file, and HOSTNAME as the pod."""
        Path(_kubernetes.NAMESPACE_FILE).write_text("payments\n")
        env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "HOSTNAME": "api-5c6d-xyz12"}
        assert {"k8s.namespace.name": "payments", "k8s.pod.name": "api-5c6d-xyz12"} == detect(env)

    def test_an_explicit_namespace_file(self, tmp_path: Path, no_files: Path) -> None:
        """The namespace file's path can be given (for tests and unusual mounts)."""
        path = tmp_path / "ns"
        path.write_text("elsewhere")
        found = detect({"KUBERNETES_SERVICE_HOST": "x"}, namespace_file=str(path))
        assert {"k8s.namespace.name": "elsewhere"} == found

    def test_force_reads_outside_a_pod(self, no_files: Path) -> None:
        """kubernetes=True reads the metadata without KUBERNETES_SERVICE_HOST."""
        assert {"k8s.pod.name": "p"} == detect({"POD_NAME": "p"}, force=True)

    def test_false_reads_nothing(self, monkeypatch: pytest.MonkeyPatch, no_files: Path) -> None:
        """kubernetes=False: nothing, even in a pod; "auto" and True read it."""
        for name, value in POD_ENV.items():
            monkeypatch.setenv(name, value)
        assert {} == attributes_for(False)
        assert "web-7d9f-abcde" == attributes_for("auto")["k8s.pod.name"]
        assert "web-7d9f-abcde" == attributes_for(True)["k8s.pod.name"]


class TestContainerId:
    @pytest.mark.parametrize(
        "cgroup",
        [
            f"12:memory:/kubepods/burstable/pod0b4a/{CID}\n",  # v1, docker
            f"0::/kubepods.slice/kubepods-pod0b4a.slice/cri-containerd-{CID}.scope\n",  # v2
            f"0::/kubepods/besteffort/pod0b4a/crio-{CID}\n",  # cri-o
            f"1:name=systemd:/docker/{CID}\n",
        ],
    )
    def test_from_the_cgroup_file(self, tmp_path: Path, cgroup: str) -> None:
        """Each runtime's cgroup path gives the 64-digit id."""
        (tmp_path / "cgroup").write_text("2:cpu:/\n" + cgroup)
        assert CID == container_id(str(tmp_path / "cgroup"), str(tmp_path / "none"))

    def test_from_mountinfo_under_cgroup_v2(self, tmp_path: Path) -> None:
        """cgroup v2 with its own namespace shows "0::/": a bind mount from the container's
        own folder (CRI-O's and Podman's secrets) names it."""
        (tmp_path / "cgroup").write_text("0::/\n")
        (tmp_path / "mountinfo").write_text(
            "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"
            f"2 1 0:54 /containers/storage/overlay-containers/{CID}/userdata/run/secrets "
            "/run/secrets rw - tmpfs tmpfs rw\n"
        )
        assert CID == container_id(str(tmp_path / "cgroup"), str(tmp_path / "mountinfo"))

    def test_none_found(self, tmp_path: Path) -> None:
        """No container, no id (and no error for missing files)."""
        (tmp_path / "cgroup").write_text("0::/user.slice/session-1.scope\n")
        assert container_id(str(tmp_path / "cgroup"), str(tmp_path / "none")) is None

    def test_detect_includes_it(self, no_files: Path) -> None:
        """detect() adds container.id from the cgroup file."""
        Path(_kubernetes.CGROUP_FILE).write_text(f"0::/kubepods/pod1/{CID}\n")
        assert CID == detect({"KUBERNETES_SERVICE_HOST": "x"})["container.id"]


PAUSE = "a" * 64  # the pod's sandbox ("pause") container
APP_UID = "0b4a7c1e-1111-2222-3333-444455556666"


def docker_pod_mountinfo(*extra: str) -> str:
    """/proc/self/mountinfo of an app container in a pod on Docker (cri-dockerd), as
    opentelemetry-go#3508 shows it: the network files and /dev/shm come from the pause
    container's folder, /etc/hosts and the termination log from the kubelet's."""
    docker = "/var/lib/docker/containers"
    rows = [
        "1076 961 0:286 / / rw,relatime - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/"
        f"l/X,upperdir=/var/lib/docker/overlay2/{'3' * 64}/diff",
        f"1090 1078 254:1 /var/lib/kubelet/pods/{APP_UID}/containers/web/1b2c3d4e "
        "/dev/termination-log rw - ext4 /dev/vda1 rw",
        f"1091 1078 0:281 {docker}/{PAUSE}/mounts/shm /dev/shm rw - tmpfs shm rw",
        f"1093 1076 254:1 {docker}/{PAUSE}/resolv.conf /etc/resolv.conf rw - ext4 /dev/vda1 rw",
        f"1094 1076 254:1 {docker}/{PAUSE}/hostname /etc/hostname rw - ext4 /dev/vda1 rw",
        f"1095 1076 254:1 /var/lib/kubelet/pods/{APP_UID}/etc-hosts /etc/hosts rw - ext4 "
        "/dev/vda1 rw",
        *extra,
    ]
    return "\n".join(rows) + "\n"


class TestSandboxContainer:
    def test_a_docker_pod_under_cgroup_v2_gets_no_id(self, no_files: Path) -> None:
        """A Docker-runtime pod on cgroup v2 ("0::/"): mountinfo names only the pause
        container, so container.id is left out (old code: the pause id, the same in
        every container of the pod)."""
        Path(_kubernetes.CGROUP_FILE).write_text("0::/\n")
        Path(_kubernetes.MOUNTINFO_FILE).write_text(docker_pod_mountinfo())
        env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "HOSTNAME": "web-7d9f8b6c5-x2k4q"}
        assert {"k8s.pod.name": "web-7d9f8b6c5-x2k4q"} == detect(env)

    @pytest.mark.parametrize(
        "mount_point", ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/dev/shm"]
    )
    def test_the_sandbox_files_never_name_the_container(
        self, tmp_path: Path, mount_point: str
    ) -> None:
        """Each file a pod's containers share with its sandbox is passed over, whatever
        folder it comes from (CRI-O's sandbox folder is an overlay-containers one too)."""
        (tmp_path / "cgroup").write_text("0::/\n")
        (tmp_path / "mountinfo").write_text(
            f"2 1 0:54 /containers/storage/overlay-containers/{PAUSE}/userdata/x "
            f"{mount_point} rw - tmpfs tmpfs rw\n"
        )
        assert container_id(str(tmp_path / "cgroup"), str(tmp_path / "mountinfo")) is None

    def test_the_container_own_mount_wins_over_the_sandbox(self, tmp_path: Path) -> None:
        """A mount from the container's own folder, listed after the sandbox's files,
        gives the container's id, not the pause container's."""
        (tmp_path / "cgroup").write_text("0::/\n")
        own = f"1096 1076 254:1 /var/lib/docker/containers/{CID}/mounts/secrets /run/secrets rw"
        (tmp_path / "mountinfo").write_text(docker_pod_mountinfo(own + " - ext4 /dev/vda1 rw"))
        assert CID == container_id(str(tmp_path / "cgroup"), str(tmp_path / "mountinfo"))

    def test_the_cgroup_file_comes_first(self, tmp_path: Path) -> None:
        """Where the cgroup file names the container (cgroup v1, or v2 in the host's
        namespace), that id is taken, whatever mountinfo holds."""
        (tmp_path / "cgroup").write_text(f"0::/kubepods/besteffort/pod0b4a/{CID}\n")
        (tmp_path / "mountinfo").write_text(docker_pod_mountinfo())
        assert CID == container_id(str(tmp_path / "cgroup"), str(tmp_path / "mountinfo"))


class TestShipping:
    def test_tags_never_hold_a_comma(self) -> None:
        """Tags are comma-joined in the query: a value's comma would split it."""
        assert ["k8s.pod.name=a_b"] == tags_for({"k8s.pod.name": "a,b"})

    def test_logdna_protocol_ships_them_as_tags(
        self, server: DevServer, monkeypatch: pytest.MonkeyPatch, no_files: Path
    ) -> None:
        """On the ingest API the metadata rides in the request's tags, after the user's."""
        for name, value in POD_ENV.items():
            monkeypatch.setenv(name, value)
        client = Client(key="k", url=server.url, hostname="h", tags="mine", handle_signals=False)
        client.log("in a pod")
        assert client.flush(timeout=10)
        client.close()
        tags = server.requests[0].tags
        assert "mine" == tags[0]
        assert {"k8s.pod.name=web-7d9f-abcde", "k8s.namespace.name=shop"} <= set(tags)

    def test_otlp_ships_them_as_resource_attributes(
        self, monkeypatch: pytest.MonkeyPatch, no_files: Path
    ) -> None:
        """On OTLP the metadata is part of the resource, once per request."""
        for name, value in POD_ENV.items():
            monkeypatch.setenv(name, value)
        with running() as otlp:
            client = Client(key="k", url=otlp.url, protocol="otlp", handle_signals=False)
            client.log("in a pod")
            assert client.flush(timeout=10)
            client.close()
        resource = otlp.lines[0]["resource"]
        assert ("web-7d9f-abcde", "node-3") == (resource["k8s.pod.name"], resource["k8s.node.name"])

    @pytest.mark.parametrize("protocol", ["logdna", "otlp"])
    def test_read_once_not_per_line(
        self, server: DevServer, monkeypatch: pytest.MonkeyPatch, no_files: Path, protocol: str
    ) -> None:
        """Detection runs once, when the client is built, never as lines are logged."""
        calls = []
        real = _kubernetes.detect
        monkeypatch.setattr(_kubernetes, "detect", lambda *a, **k: calls.append(1) or real(*a, **k))
        with contextlib.ExitStack() as stack:
            url = stack.enter_context(running()).url if protocol == "otlp" else server.url
            client = Client(key="k", url=url, hostname="h", handle_signals=False,
                            protocol=protocol)  # fmt: skip
            built = len(calls)
            for i in range(500):
                client.log(f"line {i}")
            assert client.flush(timeout=10)
            client.close()
        assert 1 == built
        assert built == len(calls)
