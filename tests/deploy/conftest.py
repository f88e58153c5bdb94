"""Fixtures for the deployment checks: the Dockerfile, the Helm chart, alerts and dashboard.

The tools come from ``scripts/install-deploy-tools`` (``make check-deploy`` runs it). When one
is missing the test that needs it is skipped locally, but fails under ``CI=true`` or
``DEPLOY_TOOLS_REQUIRED=1`` (set by ``scripts/check-deploy``), so CI can never go green by
skipping.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.deploy_support import (
    ROOT,
    Render,
    find_tool,
    missing_tool,
    render_chart,
)


@pytest.fixture(scope="session")
def helm() -> str:
    return find_tool("helm", ROOT / ".local" / "bin" / "helm")


@pytest.fixture(scope="session")
def hadolint() -> str:
    return find_tool("hadolint")


@pytest.fixture(scope="session")
def promtool() -> str:
    return find_tool("promtool")


@pytest.fixture(scope="session")
def kubernetes_validate() -> Any:
    try:
        import kubernetes_validate
    except ImportError:
        missing_tool("the kubernetes-validate package is not installed in this venv")
    return kubernetes_validate


@pytest.fixture(scope="session")
def operator_crds() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> the openAPIV3Schema of the prometheus-operator CRDs that
    scripts/install-deploy-tools took from the operator's Go module."""
    import yaml

    found = sorted((ROOT / ".local" / "crds").glob("monitoring.coreos.com_*.yaml"))
    if len(found) < 2:
        missing_tool("the prometheus-operator CRDs are not in .local/crds")
    schemas = {}
    for path in found:
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return schemas


@pytest.fixture(scope="session")
def render(helm: str) -> Render:
    """``render(values_file=None, *sets) -> documents`` from ``helm template``; a set item
    starting with ``json:`` goes through ``--set-json`` (numbers stay numbers)."""
    return lambda values=None, *sets: render_chart(helm, values, *sets)
