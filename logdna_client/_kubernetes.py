"""Kubernetes metadata: pod, namespace, node and container, read once at start.

Everything here reads the environment and two small files, once per client
(and again in a forked child, which may be another container's process only
in theory, but costs nothing to re-read). Nothing runs on the logging path.
Names follow OpenTelemetry's resource conventions (``k8s.pod.name`` ...).

Sources, the first that names a value wins:

1. ``OTEL_RESOURCE_ATTRIBUTES`` ``k8s.*`` keys (what the OpenTelemetry
   Operator and many Helm charts inject);
2. downward-API variables users commonly set: ``POD_NAME``, ``POD_NAMESPACE``,
   ``NODE_NAME``, ``POD_UID``, ``CONTAINER_NAME``;
3. the service-account namespace file, and ``HOSTNAME`` (the pod's name
   unless the pod spec sets another);
4. the container id from ``/proc/self/cgroup`` (cgroup v1 paths, and v2's
   ``.../cri-containerd-<id>.scope`` forms), else from a ``/proc/self/mountinfo``
   bind mount that is this container's own (never ``/etc/hostname``,
   ``/etc/hosts``, ``/etc/resolv.conf`` or ``/dev/shm``: in a pod those are the
   sandbox's). Where neither names it, ``container.id`` is left out: a wrong id,
   the same in every container of the pod, is worse than none.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from urllib.parse import unquote

from ._values import utf8_text

__all__ = ["NAMESPACE_FILE", "detect", "in_pod", "parse_resource_attributes", "tags_for"]

NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
CGROUP_FILE = "/proc/self/cgroup"
MOUNTINFO_FILE = "/proc/self/mountinfo"

_DOWNWARD = (
    ("POD_NAME", "k8s.pod.name"),
    ("POD_NAMESPACE", "k8s.namespace.name"),
    ("NODE_NAME", "k8s.node.name"),
    ("POD_UID", "k8s.pod.uid"),
    ("CONTAINER_NAME", "k8s.container.name"),
)
# A container id is 64 hex digits in every runtime's cgroup path (docker,
# containerd, cri-o); the prefixes and suffixes around it differ. The delimiters are
# looked at, not consumed, so that ids side by side ("/docker/<id>/<id>") all match.
_CONTAINER_ID = re.compile(r"(?:^|(?<=[/\-:]))([0-9a-f]{64})(?=(?:\.scope)?(?:/|$))")
# Mount points a pod's containers get from its sandbox ("pause") container: they join
# its network and IPC namespaces, so under Docker (cri-dockerd, minikube's docker driver)
# and CRI-O these bind mounts come from the sandbox's folder and carry the sandbox's id,
# the same in every container of the pod. opentelemetry-go left mountinfo out for this
# (#3508: its minikube pod showed only the pause id); the Java and Python contrib
# detectors read the /etc/hostname row, and give that wrong id (java-instrumentation#8462).
_SANDBOX_MOUNTS = frozenset({"/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/dev/shm"})
# Values end up in a URL's tags and in JSON: keep them to what a name can hold.
_MAX_VALUE = 253  # the longest DNS subdomain, Kubernetes' own limit for names


def in_pod(environ: Mapping[str, str]) -> bool:
    """Whether this process runs in a Kubernetes pod (the API's service is injected)."""
    return bool(environ.get("KUBERNETES_SERVICE_HOST"))


def parse_resource_attributes(text: str, skipped: list[int] | None = None) -> dict[str, str]:
    """``OTEL_RESOURCE_ATTRIBUTES`` (``k=v,k2=v2``, values percent-encoded) as a dict.

    An entry without ``=`` or a key is left out, as the SDK does; ``skipped``, when
    given, collects the places (from 1) of those that are not blank.
    """
    out: dict[str, str] = {}
    for place, item in enumerate(text.split(","), 1):
        key, sep, value = item.partition("=")
        key = key.strip()
        if sep and key:
            out[key] = unquote(value.strip())
        elif skipped is not None and item.strip():
            skipped.append(place)
    return out


def _read(path: str, limit: int = 64 * 1024) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read(limit)
    except OSError:
        return None


def container_id(
    cgroup_file: str = CGROUP_FILE, mountinfo_file: str = MOUNTINFO_FILE
) -> str | None:
    """This container's id: from the cgroup file (v1, or v2 where the path names it),
    else from a mountinfo row that is the container's own (cgroup v2 with a private
    namespace shows only ``/``); None when neither names it."""
    text = _read(cgroup_file)
    for row in (text or "").splitlines():
        found = _last_id(row)
        if found:
            return found
    text = _read(mountinfo_file)
    for row in (text or "").splitlines():
        # Fields: id, parent, major:minor, root, mount point, ... The root is the path
        # the bind mount comes from; the rest (an overlay's upperdir among the super
        # options) names layers and devices, not containers.
        fields = row.split()
        if len(fields) < 5 or fields[4] in _SANDBOX_MOUNTS:
            continue
        if "/containers/" in fields[3]:  # the runtimes' per-container folders
            found = _last_id(fields[3])
            if found:
                return found
    return None


def _last_id(path: str) -> str | None:
    # The last id in a path is this process's container: the ones before it are the
    # containers it is nested in (a kind node, docker-in-docker).
    found = _CONTAINER_ID.findall(path)
    return str(found[-1]) if found else None


def detect(
    environ: Mapping[str, str] | None = None,
    *,
    force: bool = False,
    namespace_file: str | None = None,
    cgroup_file: str | None = None,
    mountinfo_file: str | None = None,
) -> dict[str, str]:
    """The ``k8s.*`` (and ``container.id``) attributes of this process, or {} outside a pod.

    ``force``: read them even without ``KUBERNETES_SERVICE_HOST`` (the
    ``kubernetes=True`` option). The file paths are for tests (default: the
    module's ``NAMESPACE_FILE``, ``CGROUP_FILE``, ``MOUNTINFO_FILE``, read at
    call time so a test can point them elsewhere).
    """
    env = os.environ if environ is None else environ
    namespace_file = NAMESPACE_FILE if namespace_file is None else namespace_file
    cgroup_file = CGROUP_FILE if cgroup_file is None else cgroup_file
    mountinfo_file = MOUNTINFO_FILE if mountinfo_file is None else mountinfo_file
    if not (force or in_pod(env)):
        return {}
    found: dict[str, str] = {}
    otel = parse_resource_attributes(env.get("OTEL_RESOURCE_ATTRIBUTES", ""))
    for key, value in otel.items():
        if (key.startswith("k8s.") or key == "container.id") and value:
            found[key] = value
    for var, key in _DOWNWARD:
        value = env.get(var, "").strip()
        if value and key not in found:
            found[key] = value
    if "k8s.namespace.name" not in found:
        namespace = (_read(namespace_file, 256) or "").strip()
        if namespace:
            found["k8s.namespace.name"] = namespace
    if "k8s.pod.name" not in found:
        hostname = env.get("HOSTNAME", "").strip()
        if hostname:
            found["k8s.pod.name"] = hostname
    if "container.id" not in found:
        cid = container_id(cgroup_file, mountinfo_file)
        if cid:
            found["container.id"] = cid
    return {utf8_text(k): utf8_text(v)[:_MAX_VALUE] for k, v in found.items()}


def tags_for(attributes: Mapping[str, str]) -> list[str]:
    """The attributes as LogDNA host tags (``k8s.pod.name=web-1``): tags are sent
    once per request (a query parameter), so they cost nothing per line."""
    # Commas separate tags in the query parameter: a value cannot hold one.
    return [f"{k}={v.replace(',', '_')}" for k, v in attributes.items()]


def attributes_for(option: bool | str) -> dict[str, str]:
    """The metadata the ``kubernetes`` option asks for ("auto", True or False)."""
    if option is False:
        return {}
    return detect(force=option is True)
