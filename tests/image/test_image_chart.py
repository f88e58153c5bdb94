"""The Helm chart and the image agree: user and group, ports, the writable paths, the tag.

The chart's side comes from ``helm template`` of every ``ci/*-values.yaml`` (tests/deploy's
helpers), the image's from its configuration and from running it the way the chart's pod
runs it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.deploy.deploy_support import CHART, CI_VALUES, find_tool, one, render_chart
from tests.image.engine import PROBE_WRITES, BuiltImage, Engine

Docs = list[dict[str, Any]]
# Which setting each named container port must match.
PORT_SETTINGS = {"http": "BRIDGE_HTTP_PORT", "webhook": "BRIDGE_WEBHOOK_PORT"}


@pytest.fixture(scope="module")
def charts() -> dict[str, Docs]:
    helm = find_tool("helm", CHART.parents[1] / ".local" / "bin" / "helm")
    return {values.name: render_chart(helm, values) for values in CI_VALUES}


def _pod(docs: Docs) -> dict[str, Any]:
    pod: dict[str, Any] = one(docs, "Deployment")["spec"]["template"]["spec"]
    return pod


def _bridge(docs: Docs) -> dict[str, Any]:
    (container,) = _pod(docs)["containers"]
    return dict(container)


def _writable_paths(docs: Docs) -> set[str]:
    """Where the chart's pod may write: the emptyDir volumes it mounts read-write."""
    empty_dirs = {v["name"] for v in _pod(docs)["volumes"] if "emptyDir" in v}
    return {
        m["mountPath"]
        for m in _bridge(docs)["volumeMounts"]
        if m["name"] in empty_dirs and not m.get("readOnly", False)
    }


def _settings(docs: Docs) -> dict[str, str]:
    """The ConfigMap the bridge container takes its environment from."""
    (ref,) = (e["configMapRef"]["name"] for e in _bridge(docs)["envFrom"] if "configMapRef" in e)
    (found,) = (d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == ref)
    data: dict[str, str] = found["data"]
    return data


def _exposed(image: BuiltImage) -> set[str]:
    return set(image.inspect["Config"]["ExposedPorts"])


def test_every_value_set_renders(charts: dict[str, Docs]) -> None:
    assert {"default-values.yaml", "webhook-values.yaml"} <= set(charts)


def test_user_and_group(charts: dict[str, Docs], bridge_image: BuiltImage) -> None:
    uid, gid = (int(x) for x in bridge_image.inspect["Config"]["User"].split(":"))
    assert uid != 0
    for name, docs in charts.items():
        pod_sc = _pod(docs)["securityContext"]
        sc = _bridge(docs)["securityContext"]
        assert (sc["runAsUser"], sc["runAsGroup"]) == (uid, gid), name
        assert (pod_sc["runAsUser"], pod_sc["runAsGroup"], pod_sc["fsGroup"]) == (uid, gid, gid)
        assert sc["runAsNonRoot"] is True, name


def test_ports(charts: dict[str, Docs], bridge_image: BuiltImage) -> None:
    """Each container port is one the image exposes and the setting the bridge listens on;
    together the value sets use every port the image exposes."""
    used: set[str] = set()
    for name, docs in charts.items():
        ports = _bridge(docs)["ports"]
        settings = _settings(docs)
        for port in ports:
            spec = f"{port['containerPort']}/{port['protocol'].lower()}"
            assert spec in _exposed(bridge_image), (name, port)
            assert int(settings[PORT_SETTINGS[port["name"]]]) == port["containerPort"], name
            used.add(spec)
        names = {p["name"] for p in ports}
        for service in (d for d in docs if d["kind"] == "Service"):
            for port in service["spec"]["ports"]:
                assert port["targetPort"] in names, (name, service["metadata"]["name"], port)
    assert used == _exposed(bridge_image)


def test_the_tag_is_the_image_version(bridge_image: BuiltImage) -> None:
    chart_yaml = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    assert chart_yaml["appVersion"] == bridge_image.labels["org.opencontainers.image.version"]


def test_writable_paths_as_the_chart_runs_it(
    charts: dict[str, Docs], engine: Engine, bridge_image: BuiltImage
) -> None:
    """The pod's security context, emptyDirs as tmpfs: the image's HOME is among the chart's
    writable paths, each is writable by the chart's user, and nothing else is."""
    for name, docs in charts.items():
        assert _writable_paths(docs) == {"/tmp"}, name
        assert _bridge(docs)["securityContext"]["readOnlyRootFilesystem"] is True, name
    docs = charts["default-values.yaml"]
    writable = sorted(_writable_paths(docs))
    assert bridge_image.env["HOME"] in writable
    sc = _bridge(docs)["securityContext"]
    flags = ["--user", f"{sc['runAsUser']}:{sc['runAsGroup']}", "--cap-drop", "ALL"]
    flags += ["--security-opt", "no-new-privileges"]
    for path in writable:
        flags += ["--tmpfs", f"{path}:rw,mode=1777"]
    elsewhere = ["/", "/opt/venv", "/opt/venv/lib", "/var/tmp", "/run"]
    out = engine.run(
        bridge_image.ref, "-c", PROBE_WRITES, *writable, *elsewhere,
        extra=["--entrypoint", "python", *flags],
    )  # fmt: skip
    assert json.loads(out.stdout) == {
        **dict.fromkeys(writable, "written"),
        **dict.fromkeys(elsewhere, "EROFS"),
    }
