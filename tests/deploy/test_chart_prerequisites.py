"""The NOTES' prerequisites name every Secret, and every key of it, that the rendered chart
reads but does not create. A Secret left off the list keeps the pods in ContainerCreating on
a real cluster (tests/k8s found it so); this finds it with helm template alone, for every
``ci/*-values.yaml``.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.deploy_support import CHART, CI_VALUES, HELM_KUBE_VERSION, Doc, run

PROBE = """apiVersion: v1
kind: ConfigMap
metadata:
  name: prerequisites-probe
data:
  text: {{ include "passentry-bridge.prerequisites" . | toJson }}
"""
SECRET = re.compile(
    r"^Secret (?P<name>\S+) in namespace \S+, (?:type (?P<type>\S+)|keys? (?P<keys>.+?)) \(.*\)$"
)
TLS_KEYS = {"tls.crt", "tls.key"}
ids = [p.name.removesuffix("-values.yaml") for p in CI_VALUES]


@pytest.fixture(scope="module")
def probe_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chart with one more template: a ConfigMap holding the NOTES' prerequisites list
    (helm template does not render NOTES.txt)."""
    copy = tmp_path_factory.mktemp("chart") / CHART.name
    shutil.copytree(CHART, copy)
    (copy / "templates" / "zz-prerequisites-probe.yaml").write_text(PROBE)
    return copy


def render(helm: str, chart: Path, values: Path) -> list[Doc]:
    out = run(
        [helm, "template", "rel", str(chart), "--namespace", "bridges",
         "--kube-version", HELM_KUBE_VERSION, "-f", str(values)]
    ).stdout  # fmt: skip
    return [d for d in yaml.safe_load_all(out) if d]


def listed_secrets(text: str) -> dict[str, set[str]]:
    """Each listed Secret and the keys it must hold."""
    secrets: dict[str, set[str]] = {}
    for line in (x.strip().removeprefix("- ") for x in text.splitlines()):
        if not line.startswith("Secret "):
            continue
        m = SECRET.match(line)
        assert m, f"a prerequisite line the test cannot read: {line!r}"
        keys = TLS_KEYS if m["type"] == "kubernetes.io/tls" else re.split(r", | and/or ", m["keys"])
        secrets.setdefault(m["name"], set()).update(keys)
    return secrets


def pod_specs(docs: list[Doc]) -> Iterator[dict[str, Any]]:
    for doc in docs:
        if doc["kind"] == "Pod":
            yield doc["spec"]
        elif doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield doc["spec"]["template"]["spec"]
        elif doc["kind"] == "CronJob":
            yield doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def read_secrets(docs: list[Doc]) -> Iterator[tuple[str, str | None, str]]:
    """(Secret, key or None for the whole Secret, where) for each read of a Secret."""
    for spec in pod_specs(docs):
        for volume in spec.get("volumes") or []:
            sources = [volume, *volume.get("projected", {}).get("sources", [])]
            for source in sources:
                secret = source.get("secret")
                if not secret:
                    continue
                name = secret.get("secretName") or secret["name"]
                where = f"volume {volume['name']}"
                items = secret.get("items")
                if not items:
                    yield name, None, where
                for item in items or []:
                    yield name, item["key"], where
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            for env in container.get("env") or []:
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref and not ref.get("optional"):
                    yield ref["name"], ref["key"], f"env {env['name']}"
            for source in container.get("envFrom") or []:
                if "secretRef" in source and not source["secretRef"].get("optional"):
                    yield source["secretRef"]["name"], None, "envFrom"
    for doc in docs:
        if doc["kind"] == "Ingress":
            for tls in doc["spec"].get("tls") or []:
                if tls.get("secretName"):
                    yield tls["secretName"], None, "Ingress tls"


@pytest.mark.parametrize("values", CI_VALUES, ids=ids)
def test_every_secret_read_and_not_made_is_a_listed_prerequisite(
    helm: str, probe_chart: Path, values: Path
) -> None:
    docs = render(helm, probe_chart, values)
    (probe,) = (d for d in docs if d["metadata"]["name"] == "prerequisites-probe")
    listed = listed_secrets(probe["data"]["text"] or "")
    made = {d["metadata"]["name"] for d in docs if d["kind"] == "Secret"}

    missing = []
    for name, key, where in read_secrets(docs):
        if name in made:
            continue
        if name not in listed:
            missing.append(f"Secret {name} ({where}) is not listed")
        elif key is not None and key not in listed[name]:
            missing.append(f"key {key} of Secret {name} ({where}) is not listed")
    assert not missing, "\n".join(sorted(set(missing))) + "\nlisted: " + str(listed)


def test_the_reads_include_the_client_certificate_and_sasl_user(
    helm: str, probe_chart: Path
) -> None:
    """What the list once missed (the client certificate's Secret, the SASL user name's key)
    is among the reads the check above compares with the list."""
    values = CHART / "ci" / "kafka-secrets-values.yaml"
    docs = render(helm, probe_chart, values)
    reads = {(name, key) for name, key, _ in read_secrets(docs)}
    assert ("bridge-client-cert", "tls.key") in reads
    assert ("bridge-client-cert", "key-password") in reads
    assert ("kafka-user-bridge", "username") in reads
