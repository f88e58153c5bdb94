"""The local cluster works: the API, the CRDs, pods from local images, probes, pod networking.

Images are built here from tests/k8s/probe (a static HTTP server), packed as a docker-archive or
an OCI archive (the two formats ``podman save`` writes) and loaded with
``scripts/k8s-local load-image``, then run with ``imagePullPolicy: Never``.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from tests.k8s.k8s_support import Cluster, Format, image_archive

POD_READY_TIMEOUT = "120s"
# prints the body of a GET of the URL that follows
HTTP_GET = (
    "python3",
    "-c",
    "import sys, urllib.request as u; print(u.urlopen(sys.argv[1], timeout=5).read().decode())",
)


def probe_image(probe_binary: Path, tmp_path: Path, k8s: Cluster, fmt: Format, tag: str) -> str:
    archive = image_archive(
        {"/probe": probe_binary},
        tmp_path / f"probe-{fmt}.tar",
        ref=f"localhost/k8s-probe:{tag}",
        fmt=fmt,
        entrypoint=["/probe"],
    )
    return k8s.load_image(archive)


def probe_pod(
    name: str, namespace: str, image: str, listen: str, port: int, host_network: bool
) -> dict[str, Any]:
    """A pod of the probe image under the restrictions the chart uses (uid 10001, read-only
    root, no capabilities, RuntimeDefault seccomp). Probes go to 127.0.0.1 for hostNetwork."""
    http_get: dict[str, Any] = {"path": "/healthz", "port": port}
    if host_network:
        http_get["host"] = "127.0.0.1"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "k8s-probe"}},
        "spec": {
            "hostNetwork": host_network,
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 1,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "runAsGroup": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "probe",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "env": [{"name": "LISTEN", "value": listen}],
                    "readinessProbe": {"httpGet": http_get, "periodSeconds": 1},
                    "livenessProbe": {"httpGet": http_get, "periodSeconds": 5},
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


def wait_ready(k8s: Cluster, namespace: str, *pods: str) -> None:
    k8s.kubectl(
        "wait",
        "-n",
        namespace,
        "--for=condition=Ready",
        f"--timeout={POD_READY_TIMEOUT}",
        *(f"pod/{p}" for p in pods),
        timeout=180,
    )


def test_api_server_version_and_operator_crds(k8s: Cluster) -> None:
    version = json.loads(k8s.kubectl("version", "-o", "json"))
    assert version["serverVersion"]["gitVersion"].startswith("v1.34.")
    node = json.loads(k8s.kubectl("get", "node", "localhost", "-o", "json"))
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
    assert ready == "True"
    crds = k8s.kubectl("get", "crd", "-o", "jsonpath={.items[*].metadata.name}").split()
    assert "servicemonitors.monitoring.coreos.com" in crds
    assert "prometheusrules.monitoring.coreos.com" in crds


def test_host_network_pod_from_a_local_image_gets_ready(
    k8s: Cluster, k8s_namespace: str, probe_binary: Path, tmp_path: Path
) -> None:
    image = probe_image(probe_binary, tmp_path, k8s, "docker", "docker")
    assert image == "localhost/k8s-probe:docker"
    port = k8s.free_port()
    k8s.apply(
        probe_pod("probe", k8s_namespace, image, f"127.0.0.1:{port}", port, host_network=True)
    )
    wait_ready(k8s, k8s_namespace, "probe")

    # the API server reaches the kubelet (logs) over loopback
    assert f"listening on 127.0.0.1:{port}" in k8s.kubectl("logs", "-n", k8s_namespace, "probe")
    # and the pod serves on the loopback of the node's network namespace
    get = (
        "import sys, urllib.request as u; print(u.urlopen(sys.argv[1], timeout=5).read().decode())"
    )
    body = subprocess.run(
        k8s.in_net("python3", "-c", get, f"http://127.0.0.1:{port}/healthz"),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    assert body == "ok"


def fetch_via(k8s: Cluster, namespace: str, pod: str, url: str) -> str:
    """Pod ``pod`` fetches ``url`` (through the API server's pod proxy to its /fetch)."""
    query = urllib.parse.urlencode({"url": url})
    path = f"/api/v1/namespaces/{namespace}/pods/{pod}:8080/proxy/fetch?{query}"
    return k8s.kubectl("get", "--raw", path)


def test_two_pods_on_pod_network_reach_each_other_and_the_namespace(
    k8s: Cluster, k8s_namespace: str, probe_binary: Path, tmp_path: Path
) -> None:
    if k8s.netns is None:
        pytest.skip("pod networking needs the netns mode (K8S_TEST_NETWORK=host was asked for)")
    assert k8s.node_ip is not None
    assert k8s.pod_cidr is not None
    image = probe_image(probe_binary, tmp_path, k8s, "oci", "oci")
    assert image == "localhost/k8s-probe:oci"
    # the same port twice on one node: each pod has its own network
    k8s.apply(
        probe_pod("probe-a", k8s_namespace, image, ":8080", 8080, host_network=False),
        probe_pod("probe-b", k8s_namespace, image, ":8080", 8080, host_network=False),
    )
    wait_ready(k8s, k8s_namespace, "probe-a", "probe-b")
    ips = {}
    for pod in ("probe-a", "probe-b"):
        ips[pod] = k8s.kubectl(
            "get", "pod", pod, "-n", k8s_namespace, "-o", "jsonpath={.status.podIP}"
        )
        assert ipaddress.ip_address(ips[pod]) in ipaddress.ip_network(k8s.pod_cidr)
    assert ips["probe-a"] != ips["probe-b"]

    for src, dst in (("probe-a", "probe-b"), ("probe-b", "probe-a")):
        url = f"http://{ips[dst]}:8080/healthz"
        assert fetch_via(k8s, k8s_namespace, src, url) == "200 ok"

    # a process of the test in the same namespace (as Kafka or the simulator would be), bound to
    # the node IP, is reachable from the pods
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "hello").write_text("from the namespace")
    port = k8s.free_port()
    server = subprocess.Popen(
        k8s.in_net(
            "python3",
            "-m",
            "http.server",
            "--bind",
            k8s.node_ip,
            "-d",
            str(tmp_path / "www"),
            str(port),
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://{k8s.node_ip}:{port}/hello"
        deadline = time.monotonic() + 30
        while subprocess.run(
            k8s.in_net(*HTTP_GET, url), capture_output=True, check=False
        ).returncode:
            assert server.poll() is None, "the http.server in the namespace exited"
            assert time.monotonic() < deadline, f"{url} does not answer inside the namespace"
            time.sleep(0.1)
        assert fetch_via(k8s, k8s_namespace, "probe-a", url) == "200 from the namespace"
    finally:
        server.terminate()
        server.wait(timeout=30)
