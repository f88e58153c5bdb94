"""Shared helpers for tests/deploy: paths, pins, tool lookup, helm rendering, metric names.

A plain module (not conftest) so test modules can import it: ``from deploy_support import ...``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml
from prometheus_client import CollectorRegistry

from bridge.audit.horizon import LiveHorizon
from bridge.audit.metrics import audit_registry
from bridge.audit.report import AuditReport
from bridge.ops.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "passentry-bridge"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
ALERTS_TEST = ROOT / "deploy" / "prometheus" / "alerts.test.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "passentry-bridge.json"
OPERATIONS_DOC = ROOT / "docs" / "operations.md"

# The chart's kubeVersion floor and the newest schema kubernetes-validate 1.37.0 ships: every
# rendered manifest must be valid for both.
K8S_VERSIONS = ("1.30.0", "1.37.0")
# helm template's own default Kubernetes version is older than the chart's kubeVersion.
HELM_KUBE_VERSION = K8S_VERSIONS[0]
INSTALL_HINT = "run scripts/install-deploy-tools (or make check-deploy)"

Doc = dict[str, Any]
Render = Callable[..., list[Doc]]


def tools_required() -> bool:
    return os.environ.get("CI") == "true" or os.environ.get("DEPLOY_TOOLS_REQUIRED") == "1"


def missing_tool(message: str) -> NoReturn:
    """Fail under CI (a skipped check must never look green there), skip locally."""
    if tools_required():
        pytest.fail(f"{message}; {INSTALL_HINT}", pytrace=False)
    pytest.skip(f"{message}; {INSTALL_HINT}")


def find_tool(name: str, *candidates: Path) -> str:
    """The first executable candidate, then the venv's bin dir, then PATH."""
    for path in (*candidates, Path(sys.executable).parent / name):
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    found = shutil.which(name)
    if found is None:
        missing_tool(f"{name} is not installed")
    return found


def run(cmd: Sequence[str], *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        pytest.fail(
            f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}", pytrace=False
        )
    return proc


def helm_args(values: Path | None, *sets: str) -> list[str]:
    args = ["--kube-version", HELM_KUBE_VERSION]
    if values is not None:
        args += ["-f", str(values)]
    for item in sets:
        if item.startswith("json:"):
            args += ["--set-json", item.removeprefix("json:")]
        else:
            args += ["--set", item]
    return args


def render_chart(helm: str, values: Path | None = None, *sets: str) -> list[Doc]:
    out = run(
        [helm, "template", "rel", str(CHART), "--namespace", "bridges", *helm_args(values, *sets)]
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[Doc], kind: str) -> Doc:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "info": ("_info",),
}


def exported_metric_names() -> set[str]:
    """Every series name bridge/ops/metrics.py exports, and those the audit pushes."""
    registries = [
        Metrics(CollectorRegistry()).registry,
        audit_registry(AuditReport("s", 0, 1, 1, LiveHorizon(None, None, "")), succeeded=True),
        audit_registry(None, succeeded=False),
    ]
    names = set()
    for registry in registries:
        for family in registry.collect():
            for suffix in _SUFFIXES.get(family.type, ("",)):
                names.add(family.name + suffix)
    return names


def metric_names_in(expr: str) -> set[str]:
    return set(re.findall(r"\bpassentry_bridge_[a-z0-9_]+", expr))


def per_source_metric_names() -> set[str]:
    """The series names whose every sample is about one source (a source_id label): the
    bridge's own, and the audit's (grouped by source_id on the Pushgateway)."""
    metrics = Metrics(CollectorRegistry())
    metrics.published_up_to("s", 1.0)  # the lag, computed at scrape time, shows its label
    names: set[str] = set()
    collectors = metrics.registry._collector_to_names  # test code: private is fine here
    for collector in collectors:
        labelled = "source_id" in getattr(collector, "_labelnames", ())
        for family in collector.collect():
            if labelled or any("source_id" in sample.labels for sample in family.samples):
                names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
    audit = audit_registry(AuditReport("s", 0, 1, 1, LiveHorizon(None, None, "")), succeeded=True)
    for family in audit.collect():
        names.add(family.name)
    return names
