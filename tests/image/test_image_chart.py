"""The Helm chart and the image agree: user and group, ports, the writable paths, the tag.

The chart's side comes from ``helm template`` (tests/deploy's helpers), the image's from its
configuration and from running it the way the chart's pod runs it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.deploy.deploy_support import CHART, find_tool, one, render_chart
from tests.image.engine import PROBE_WRITES, BuiltImage, Engine

DEFAULT_VALUES = CHART / "ci" / "default-values.yaml"


@pytest.fixture(scope="module")
def chart() -> list[dict[str, Any]]:
    helm = find_tool("helm", CHART.parents[1] / ".local" / "bin" / "helm")
    return render_chart(helm, DEFAULT_VALUES)


def _pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod: dict[str, Any] = one(docs, "Deployment")["spec"]["template"]["spec"]
    return pod


def _bridge(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = _pod(docs)["containers"]
    return dict(container)


def _writable_paths(docs: list[dict[str, Any]]) -> set[str]:
    """Where the chart's pod may write: the emptyDir volumes it mounts read-write."""
    empty_dirs = {v["name"] for v in _pod(docs)["volumes"] if "emptyDir" in v}
    return {
        m["mountPath"]
        for m in _bridge(docs)["volumeMounts"]
        if m["name"] in empty_dirs and not m.get("readOnly", False)
    }


def test_user_and_group(chart: list[dict[str, Any]], bridge_image: BuiltImage) -> None:
    uid, gid = (int(x) for x in bridge_image.inspect["Config"]["User"].split(":"))
    pod_sc = _pod(chart)["securityContext"]
    sc = _bridge(chart)["securityContext"]
    assert (sc["runAsUser"], sc["runAsGroup"]) == (uid, gid)
    assert (pod_sc["runAsUser"], pod_sc["runAsGroup"], pod_sc["fsGroup"]) == (uid, gid, gid)
    assert sc["runAsNonRoot"] is True
    assert uid != 0


def test_ports(chart: list[dict[str, Any]], bridge_image: BuiltImage) -> None:
    exposed = set(bridge_image.inspect["Config"]["ExposedPorts"])
    ports = _bridge(chart)["ports"]
    assert {f"{p['containerPort']}/{p['protocol'].lower()}" for p in ports} == exposed
    (http,) = (p["containerPort"] for p in ports if p["name"] == "http")
    settings = one(chart, "ConfigMap")["data"]
    assert int(settings["BRIDGE_HTTP_PORT"]) == http
    service = one(chart, "Service")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]


def test_the_tag_is_the_image_version(bridge_image: BuiltImage) -> None:
    chart_yaml = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    assert chart_yaml["appVersion"] == bridge_image.labels["org.opencontainers.image.version"]


def test_writable_paths_as_the_chart_runs_it(
    chart: list[dict[str, Any]], engine: Engine, bridge_image: BuiltImage
) -> None:
    """The pod's security context, emptyDirs as tmpfs: the image's HOME is among the chart's
    writable paths, each is writable by the chart's user, and nothing else is."""
    writable = _writable_paths(chart)
    assert writable == {"/tmp"}
    assert bridge_image.env["HOME"] in writable
    sc = _bridge(chart)["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    flags = ["--user", f"{sc['runAsUser']}:{sc['runAsGroup']}", "--cap-drop", "ALL"]
    flags += ["--security-opt", "no-new-privileges"]
    for path in sorted(writable):
        flags += ["--tmpfs", f"{path}:rw,mode=1777"]
    elsewhere = ["/", "/opt/venv", "/opt/venv/lib", "/var/tmp", "/run"]
    out = engine.run(
        bridge_image.ref, "-c", PROBE_WRITES, *sorted(writable), *elsewhere,
        extra=["--entrypoint", "python", *flags],
    )  # fmt: skip
    assert json.loads(out.stdout) == {
        **dict.fromkeys(sorted(writable), "written"),
        **dict.fromkeys(elsewhere, "EROFS"),
    }
