"""Every ``helm/passentry-bridge/ci/*-values.yaml`` against the real API server and node.

For each file, as a user would: ``helm install --dry-run=server`` prints the NOTES, whose
"Prerequisites" list is all the test goes by to create what the release needs first
(Secrets with the keys named, the service account, the dashboard's namespace; the CRDs are
checked to exist). Then the rendered manifests, the test hook included, pass the API
server's strict field validation (``kubectl apply --dry-run=server --validate=strict``) with
no warning, in a namespace enforcing Pod Security ``restricted``. Then the release is
installed for real: every object exists, the Deployment's pods are admitted and scheduled
(one per node when anti-affinity is hard) and their containers start (the startup probe on
/healthz passes), the audit CronJob's pod starts too, and the ``helm test`` pod passes the
server's dry run (it needs the release's service account, so only now). The only override
is where the image comes from (the local one, never pulled): nothing else in the file is
changed, so the bridge cannot reach the Kafka or PassEntry it names, and its pods start but
are not Ready.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.chart_support import CHART, helm, wait_until
from tests.k8s.k8s_support import Cluster

CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
IMAGE_OVERRIDES = (
    "--set", "image.repository=localhost/passentry-bridge",
    "--set", "image.pullPolicy=Never",
    "--set", "image.digest=",
)  # fmt: skip
START_TIMEOUT = 180
KEY_PASSWORD = "k8s-test-key-password"

SECRET = re.compile(
    r"^  - Secret (?P<name>\S+) in namespace (?P<ns>\S+), "
    r"(?:type (?P<type>\S+)|keys? (?P<keys>.+?)) \(.*\)$"
)
SERVICE_ACCOUNT = re.compile(r"^  - ServiceAccount (?P<name>\S+) in namespace (?P<ns>\S+)$")
NAMESPACE = re.compile(r"^  - Namespace (?P<name>\S+) \(.*\)$")
CRD = re.compile(r"^  - CRD (?P<name>\S+) \(.*\)$")


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """A CA, and a client certificate signed by it with an encrypted key (openssl)."""
    d = tmp_path_factory.mktemp("pem")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-subj",
        "/CN=k8s-test-ca",
        "-days",
        "2",
    )
    openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-passout",
        f"pass:{KEY_PASSWORD}",
        "-keyout",
        "tls.key",
        "-out",
        "tls.csr",
        "-subj",
        "/CN=passentry-bridge",
    )
    openssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "tls.crt", "-days", "2")  # fmt: skip
    return {name: (d / name).read_bytes() for name in ("ca.crt", "tls.crt", "tls.key")}


def secret_data(keys: list[str], pem: dict[str, bytes]) -> dict[str, bytes]:
    """Something fit for each key, by its name: PEM files, the key's password, a token."""
    data = {}
    for key in keys:
        if key.endswith(".crt"):
            data[key] = pem["ca.crt" if key.startswith("ca") else "tls.crt"]
        elif key.endswith(".key"):
            data[key] = pem["tls.key"]
        elif key == "key-password":
            data[key] = KEY_PASSWORD.encode()
        elif key == "basic-auth-user-info":
            data[key] = b"bridge:registry-password"
        else:
            # 32 bytes at least: the bridge refuses a shorter webhook secret.
            data[key] = f"k8s-test-{key}-".ljust(40, "0").encode()
    return data


def create_prerequisites(
    k8s: Cluster, notes: str, pem: dict[str, bytes]
) -> list[tuple[str, str, str]]:
    """Whatever the NOTES' Prerequisites list names; returns (kind, namespace, name)."""
    made = []
    block = (
        notes.split("\nPrerequisites ", 1)[1].split("\n\n", 1)[0]
        if "\nPrerequisites " in notes
        else ""
    )
    for line in (x for x in block.splitlines() if x.startswith("  - ")):
        if m := SECRET.match(line):
            if m["type"] == "kubernetes.io/tls":
                secret_type, keys = m["type"], ["tls.crt", "tls.key"]
                data = {"tls.crt": pem["tls.crt"], "tls.key": pem["tls.key"]}
            else:
                secret_type = "Opaque"
                # "a and/or b (...either may be absent)": give only the first
                keys = re.split(r", | and/or ", m["keys"])
                keys = keys[:1] if " and/or " in m["keys"] else keys
                data = secret_data(keys, pem)
            k8s.apply(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "type": secret_type,
                    "metadata": {"name": m["name"], "namespace": m["ns"]},
                    "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
                }
            )
            made.append(("secret", m["ns"], m["name"]))
        elif m := SERVICE_ACCOUNT.match(line):
            k8s.kubectl("create", "serviceaccount", m["name"], "-n", m["ns"])
            made.append(("serviceaccount", m["ns"], m["name"]))
        elif m := NAMESPACE.match(line):
            k8s.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": m["name"]}})
            made.append(("namespace", "", m["name"]))
        elif m := CRD.match(line):
            k8s.kubectl("get", "crd", m["name"])
        else:
            raise AssertionError(f"a prerequisite the test cannot read: {line!r}")
    return made


def manifests(release: dict[str, Any]) -> list[dict[str, Any]]:
    texts = [release["manifest"], *(hook["manifest"] for hook in release.get("hooks") or [])]
    return [doc for text in texts for doc in yaml.safe_load_all(text) if doc]


def pod_started(pod: dict[str, Any]) -> bool:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return bool(statuses) and all(
        s.get("started") or "terminated" in s.get("state", {}) for s in statuses
    )


def pods_report(k8s: Cluster, ns: str, selector: str) -> str:
    """What a pod that did not start says: its containers' states and its last log lines."""
    pods = json.loads(k8s.kubectl("get", "pods", "-n", ns, "-l", selector, "-o", "json"))
    lines = []
    for pod in pods["items"]:
        name = pod["metadata"]["name"]
        lines.append(f"pod {name}: {json.dumps(pod.get('status', {}).get('containerStatuses'))}")
        for previous in ("--previous=false", "--previous=true"):
            with contextlib.suppress(AssertionError):
                log = k8s.kubectl("logs", "-n", ns, name, "-c", "bridge", previous, "--tail=15")
                lines.append(f"logs {name} {previous}:\n{log}")
    return "\n".join(lines)


def unschedulable(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(
        c["type"] == "PodScheduled"
        and c["status"] == "False"
        and c.get("reason") == "Unschedulable"
        for c in conditions
    )


def server_dry_run(k8s: Cluster, docs: list[dict[str, Any]]) -> None:
    """``kubectl apply --dry-run=server --validate=strict``: accepted, and no warning (Pod
    Security's included)."""
    validated = subprocess.run(
        k8s.in_net(
            str(k8s.kubectl_path), "--kubeconfig", str(k8s.kubeconfig), "apply",
            "--dry-run=server", "--validate=strict", "-f", "-",
        ),
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}),
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert validated.returncode == 0, validated.stderr
    assert "Warning" not in validated.stderr, validated.stderr


@pytest.mark.parametrize("values", CI_VALUES, ids=[v.name for v in CI_VALUES])
def test_values_file_validates_and_installs(
    k8s: Cluster,
    restricted_namespace: str,
    bridge_image: str,
    pem: dict[str, bytes],
    values: Path,
) -> None:
    ns = restricted_namespace
    name = "rel"
    dry = helm(k8s, "install", name, str(CHART), "-n", ns, "-f", str(values),
               "--dry-run=server", "-o", "json")  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    release = json.loads(dry.stdout)
    made = create_prerequisites(k8s, release["info"]["notes"], pem)
    docs = manifests(release)

    hooks = [d for d in docs if d["kind"] == "Pod"]  # the helm test pod
    # the API server's own validation, strict: unknown or duplicate fields are errors. The
    # test pod can only be checked once the release's service account exists.
    server_dry_run(k8s, [d for d in docs if d not in hooks])

    try:
        installed = helm(k8s, "install", name, str(CHART), "-n", ns, "-f", str(values),
                         *IMAGE_OVERRIDES, timeout=300)  # fmt: skip
        assert installed.returncode == 0, installed.stderr
        assert "Warning" not in installed.stderr, installed.stderr
        for doc in manifests(json.loads(dry.stdout) | {"hooks": []}):
            where = doc["metadata"].get("namespace") or ns
            k8s.kubectl("get", doc["kind"].lower(), doc["metadata"]["name"], "-n", where)

        (deployment,) = (d for d in docs if d["kind"] == "Deployment")
        spec = deployment["spec"]
        selector = ",".join(f"{k}={v}" for k, v in spec["selector"]["matchLabels"].items())
        hard = "requiredDuringSchedulingIgnoredDuringExecution" in json.dumps(
            spec["template"]["spec"].get("affinity", {})
        )
        # a hard anti-affinity: one replica on this one node, the others wait for nodes
        runnable = 1 if hard else spec["replicas"]

        def settled() -> list[dict[str, Any]] | None:
            pods = json.loads(k8s.kubectl("get", "pods", "-n", ns, "-l", selector, "-o", "json"))
            items: list[dict[str, Any]] = pods["items"]
            started = [p for p in items if pod_started(p)]
            waiting = [p for p in items if unschedulable(p)]
            ok = len(items) == spec["replicas"] and len(started) == runnable
            return items if ok and len(waiting) == spec["replicas"] - runnable else None

        try:
            pods = wait_until(settled, START_TIMEOUT, f"{runnable} started pods", 1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{pods_report(k8s, ns, selector)}") from None
        for pod in pods:
            for status in pod["status"].get("containerStatuses") or []:
                assert status["image"].endswith(bridge_image.split("/", 1)[1]), status

        for cronjob in (d for d in docs if d["kind"] == "CronJob"):
            job = f"{cronjob['metadata']['name']}-now"
            k8s.kubectl("create", "job", job, f"--from=cronjob/{cronjob['metadata']['name']}",
                        "-n", ns)  # fmt: skip

            def job_pod_started(job: str = job) -> bool:
                out = k8s.kubectl("get", "pods", "-n", ns, "-l", f"job-name={job}", "-o", "json")
                return any(pod_started(p) for p in json.loads(out)["items"])

            wait_until(job_pod_started, START_TIMEOUT, f"a pod of job {job} to start", 1)

        # the helm test pod would be admitted too (it mounts what the Deployment's pods
        # mount, through the same template, and those started); test_chart_bridge runs it
        server_dry_run(k8s, hooks)
    finally:
        helm(k8s, "uninstall", name, "-n", ns, "--wait", "--timeout", "120s")
        for kind, _where, what in made:
            if kind == "namespace":
                k8s.kubectl("delete", "namespace", what, "--wait=false")


def test_the_longest_names_pass_the_api_server(k8s: Cluster, restricted_namespace: str) -> None:
    """A 63-character full name (the most Kubernetes allows for a Service) with every
    optional object on: each name fits its kind's limit (a CronJob's is 52)."""
    longest = "x" * 63
    rendered = helm(
        k8s, "install", "rel", str(CHART), "-n", restricted_namespace, "--dry-run=server",
        "-o", "json",
        "-f", str(CHART / "ci" / "sources-values.yaml"),
        "-f", str(CHART / "ci" / "monitoring-values.yaml"),
        "--set", f"fullnameOverride={longest}", "--set", "dashboard.namespace=",
        "--set", "webhook.ingress.enabled=true", "--set", "webhook.ingress.host=b.example.com",
        "--set", "webhook.ingress.tlsSecretName=b-example-com-tls",
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    docs = manifests(json.loads(rendered.stdout))
    kinds = {d["kind"] for d in docs}
    assert {"CronJob", "Deployment", "Service", "Ingress", "ServiceMonitor"} <= kinds
    # the test pod needs the release's service account to exist: apply that one for real
    k8s.apply(*(d for d in docs if d["kind"] == "ServiceAccount"))
    server_dry_run(k8s, docs)
