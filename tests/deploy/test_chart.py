"""The Helm chart: lint, render, validate against Kubernetes schemas, and its invariants."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from bridge.config import (
    BridgeSettings,
    KafkaSettings,
    PassEntrySettings,
    RegistrySettings,
    load_config,
)
from bridge.config.convert import settings_fields
from bridge.tracing.env import check as check_tracing
from bridge.tracing.env import tracing_enabled
from tests.deploy.deploy_support import (
    CHART,
    CI_VALUES,
    HELM_KUBE_VERSION,
    K8S_VERSIONS,
    Render,
    by_kind,
    helm_args,
    one,
    run,
)

DEFAULT = CHART / "ci" / "default-values.yaml"
WEBHOOK_SECRET = "whsec-chart-0123456789abcdef0123456789abcdef"
CRD_GROUPS = ("monitoring.coreos.com/",)
ids = [p.name.removesuffix("-values.yaml") for p in CI_VALUES]


def test_the_value_combinations_are_all_there() -> None:
    assert {
        "default",
        "existing-secret",
        "sasl-tls",
        "kafka-secrets",
        "monitoring",
        "schema-registry",
        "webhook",
        "sources",
        "audit",
        "tracing",
    } <= set(ids)


@pytest.mark.parametrize("values", CI_VALUES, ids=ids)
def test_helm_lint_strict(helm: str, values: Path) -> None:
    run(
        [
            helm,
            "lint",
            "--strict",
            str(CHART),
            "-f",
            str(values),
            "--kube-version",
            HELM_KUBE_VERSION,
        ]
    )


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """A CRD schema that refuses unknown fields, as ``kubectl apply --validate=strict``
    does: the API server would otherwise drop them without a word."""
    out = dict(schema)
    if "properties" in out:
        out["properties"] = {k: _strict(v) for k, v in out["properties"].items()}
        if "additionalProperties" not in out and not out.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            out["additionalProperties"] = False
    if isinstance(out.get("items"), dict):
        out["items"] = _strict(out["items"])
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _strict(out["additionalProperties"])
    return out


def _check_custom_resource(doc: dict[str, Any], crds: dict[tuple[str, str], Any]) -> None:
    import jsonschema

    schema = crds.get((doc["apiVersion"], doc["kind"]))
    assert schema is not None, f"no CRD schema for {doc['apiVersion']} {doc['kind']}"
    # metadata is the API server's business: the CRD schema leaves it open.
    errors = sorted(
        jsonschema.Draft7Validator(_strict(schema)).iter_errors(doc), key=lambda e: list(e.path)
    )
    if errors:
        pytest.fail(
            f"{doc['kind']}/{doc['metadata']['name']}: "
            + "; ".join(f"{e.message} at {list(e.path)}" for e in errors[:5]),
            pytrace=False,
        )


def test_the_crd_check_refuses_an_unknown_field_and_a_wrong_type(
    operator_crds: dict[tuple[str, str], Any],
) -> None:
    good = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "m"},
        "spec": {"selector": {}, "endpoints": [{"port": "metrics", "interval": "30s"}]},
    }
    _check_custom_resource(good, operator_crds)
    for bad in (
        {**good, "spec": {**good["spec"], "endpoint": []}},
        {**good, "spec": {**good["spec"], "endpoints": [{"port": 9108}]}},
    ):
        with pytest.raises(pytest.fail.Exception):
            _check_custom_resource(bad, operator_crds)


@pytest.mark.parametrize("values", CI_VALUES, ids=ids)
def test_manifests_are_valid_kubernetes(
    render: Render,
    kubernetes_validate: Any,
    operator_crds: dict[tuple[str, str], Any],
    values: Path,
) -> None:
    docs = render(values)
    assert docs
    for doc in docs:
        if doc["apiVersion"].startswith(CRD_GROUPS):
            # ServiceMonitor, PrometheusRule: the prometheus-operator's own CRD schemas.
            _check_custom_resource(doc, operator_crds)
            continue
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(
                    f"{doc['kind']}/{doc['metadata']['name']} invalid for Kubernetes "
                    f"{version}: {exc.message} at {list(exc.path)}",
                    pytrace=False,
                )


# --- values.schema.json rejects bad values ------------------------------------------------

BAD_VALUES = {
    "negative port": ["metrics.port=-1"],
    "port too large": ["service.port=70000"],
    "unknown top-level key": ["replicas=1"],
    "unknown nested key": ["bridge.shutdownGrace=10"],
    "no token and no existingSecret": ["passentry.apiToken="],
    "no bootstrap servers": ["kafka.bootstrapServers="],
    "bad security protocol": ["kafka.securityProtocol=TLS"],
    "SASL without mechanism or user": ["kafka.securityProtocol=SASL_SSL"],
    "TLS without its secret": ["kafka.tls.enabled=true"],
    "SASL without a user name": [
        "kafka.securityProtocol=SASL_SSL",
        "kafka.sasl.mechanism=PLAIN",
        "kafka.sasl.password=p",
    ],
    "SASL user name key without its Secret": [
        "kafka.securityProtocol=SASL_SSL",
        "kafka.sasl.mechanism=PLAIN",
        "kafka.sasl.password=p",
        "kafka.sasl.usernameKey=username",
    ],
    "client certificate without a key name": [
        "kafka.tls.clientCertificate.existingSecret=client",
        "kafka.tls.clientCertificate.keyKey=",
    ],
    "unknown client certificate key": ["kafka.tls.clientCertificate.cert=tls.crt"],
    "schema registry without url": ["schemaRegistry.enabled=true"],
    "pinned schema without version": [
        "schemaRegistry.enabled=true",
        "schemaRegistry.url=https://r",
        "schemaRegistry.mode=pinned",
    ],
    "bad subject strategy": ["schemaRegistry.subjectNameStrategy=subject"],
    "bad filter value": ["passentry.filters.status=ok"],
    "zero shutdown grace": ["bridge.shutdownGraceSeconds=0"],
    "shutdown grace as a string": ["bridge.shutdownGraceSeconds=25s"],
    "bad topic name": ["bridge.scansTopic=a topic"],
    "webhooks without a secret": ["webhook.enabled=true"],
    "a webhook secret under 32 characters": ["webhook.enabled=true", "webhook.secret=short"],
    "webhook ingress without a host": [
        "webhook.enabled=true",
        f"webhook.secret={WEBHOOK_SECRET}",
        "webhook.ingress.enabled=true",
        "webhook.ingress.tlsSecretName=tls",
    ],
    "webhook ingress without its TLS secret": [
        "webhook.enabled=true",
        f"webhook.secret={WEBHOOK_SECRET}",
        "webhook.ingress.enabled=true",
        "webhook.ingress.host=bridge.example.com",
    ],
    "a bad ingress body size": ["webhook.ingress.nginx.bodySize=lots"],
    "bad inbox topic": ["webhook.topic=in box"],
    "one webhook secret shared by the sources": [
        "sources[0].id=a",
        "sources[0].apiToken=t",
        "webhook.enabled=true",
        f"webhook.secret={WEBHOOK_SECRET}",
    ],
    "webhooks on with sources, none with a secret": [
        "sources[0].id=a",
        "sources[0].apiToken=t",
        "webhook.enabled=true",
    ],
    "a source's webhook secret given twice": [
        "sources[0].id=a",
        "sources[0].apiToken=t",
        f"sources[0].webhook.secret={WEBHOOK_SECRET}",
        "sources[0].webhook.existingSecret=s",
    ],
    "a short source webhook secret": [
        "sources[0].id=a",
        "sources[0].apiToken=t",
        "sources[0].webhook.secret=short",
    ],
    "metrics open to anyone": ["json:networkPolicy.metricsFrom=[]"],
    "the webhook port open to anyone": ["json:networkPolicy.webhookFrom=[]"],
    "an existing registry Secret with two credentials": [
        "schemaRegistry.enabled=true",
        "schemaRegistry.url=https://r",
        "schemaRegistry.existingSecret=s",
        "schemaRegistry.bearerTokenKey=bearer-token",
    ],
    "two replicas without a group": ["replicaCount=2", "bridge.groupId="],
    "zero replicas": ["replicaCount=0"],
    "a source without a token": ["sources[0].id=a"],
    "a source with both tokens": [
        "sources[0].id=a",
        "sources[0].apiToken=t",
        "sources[0].existingSecret=s",
    ],
    "a bad source id": ["sources[0].id=a b", "sources[0].apiToken=t"],
    "a bad anti-affinity": ["podAntiAffinity=always"],
    "bad audit bucket": ["audit.bucket=hourly"],
    "bad audit schedule": ["audit.schedule=daily"],
    "unknown audit key": ["audit.since=yesterday"],
    "a tracing endpoint that is not a URL": ["tracing.endpoint=collector:4318"],
    "a sampling ratio above 1": ["tracing.endpoint=http://c:4318", "tracing.samplingRatio=2"],
}


@pytest.mark.parametrize("sets", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_schema_rejects_bad_values(helm: str, sets: list[str]) -> None:
    for command in (["template", "rel"], ["lint", "--strict"]):
        cmd = [helm, *command, str(CHART), *helm_args(DEFAULT, *sets)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode != 0, f"helm {command} accepted {sets}"
        assert "schema" in (proc.stdout + proc.stderr), proc.stdout + proc.stderr


def test_existing_secret_alone_needs_no_token(render: Render) -> None:
    docs = render(DEFAULT, "passentry.apiToken=", "passentry.existingSecret=mine")
    assert not by_kind(docs, "Secret"), "nothing to store: no chart Secret"
    volumes = one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
    token = next(v for v in volumes if v["name"] == "api-token")
    assert token["secret"] == {
        "secretName": "mine",
        "defaultMode": 0o440,
        "items": [{"key": "api-token", "path": "token"}],
    }


# --- the Deployment ----------------------------------------------------------------------


def _container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def _env(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """Every env var of the container: ConfigMap values, then explicit env entries."""
    (config,) = [
        d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"] == "rel-passentry-bridge"
    ]
    env: dict[str, Any] = dict(config["data"])
    for item in _container(docs).get("env", []):
        env[item["name"]] = item.get("value", item.get("valueFrom"))
    return env


def test_deployment_shape(render: Render) -> None:
    docs = render(DEFAULT)
    deploy = one(docs, "Deployment")
    spec = deploy["spec"]
    # Two replicas share the sources through the consumer group: a new pod rolls in before
    # an old one goes, and the group hands its sources over.
    assert spec["replicas"] == 2
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    affinity = spec["template"]["spec"]["affinity"]["podAntiAffinity"]
    (preferred,) = affinity["preferredDuringSchedulingIgnoredDuringExecution"]
    assert preferred["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert (
        preferred["podAffinityTerm"]["labelSelector"]["matchLabels"]
        == spec["selector"]["matchLabels"]
    )
    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = _container(docs)
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert isinstance(sc["runAsUser"], int)
    assert sc["runAsUser"] > 0
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["args"] == ["run"]
    assert [p["name"] for p in container["ports"]] == ["http"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    annotations = spec["template"]["metadata"]["annotations"]
    assert {"checksum/config", "checksum/secret"} <= set(annotations)
    for doc in docs:
        labels = doc["metadata"]["labels"]
        for key in ("name", "instance", "version", "managed-by", "part-of"):
            assert f"app.kubernetes.io/{key}" in labels, (doc["kind"], key)


def test_token_is_a_mounted_file(render: Render) -> None:
    docs = render(DEFAULT)
    env = _env(docs)
    assert "PASSENTRY_API_TOKEN" not in env
    path = Path(env["PASSENTRY_API_TOKEN_FILE"])
    mounts = {m["name"]: m["mountPath"] for m in _container(docs)["volumeMounts"]}
    assert str(path.parent) == mounts["api-token"]
    secret = one(docs, "Secret")
    assert set(secret["data"]) == {"api-token"}


@pytest.mark.parametrize("grace", [25, 40.5, 3])
def test_termination_grace_follows_the_shutdown_grace(render: Render, grace: float) -> None:
    docs = render(DEFAULT, f"json:bridge.shutdownGraceSeconds={grace}")
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert float(_env(docs)["BRIDGE_SHUTDOWN_GRACE_S"]) == grace
    assert pod["terminationGracePeriodSeconds"] == math.ceil(grace) + 10


def test_config_change_rolls_the_pod(render: Render) -> None:
    def checksums(*sets: str) -> tuple[str, str]:
        ann = one(render(DEFAULT, *sets), "Deployment")["spec"]["template"]["metadata"][
            "annotations"
        ]
        return ann["checksum/config"], ann["checksum/secret"]

    base = checksums()
    assert checksums("bridge.logLevel=DEBUG")[0] != base[0]
    assert checksums("passentry.apiToken=other")[1] != base[1]


def test_pod_disruption_budget_keeps_one_replica_and_allows_drains(render: Render) -> None:
    selector = one(render(DEFAULT), "Deployment")["spec"]["selector"]
    # Two replicas: an eviction that would take both is refused.
    pdb = one(render(DEFAULT), "PodDisruptionBudget")
    assert pdb["spec"] == {"minAvailable": 1, "selector": selector}
    # One (without a group): a drain may still evict it.
    single = render(DEFAULT, "replicaCount=1", "bridge.groupId=")
    assert one(single, "PodDisruptionBudget")["spec"] == {"maxUnavailable": 1, "selector": selector}
    deploy = one(single, "Deployment")["spec"]
    assert deploy["strategy"] == {"type": "Recreate"}


def test_sources_from_values_with_tokens_from_secrets(render: Render, tmp_path: Path) -> None:
    docs = render(CHART / "ci" / "sources-values.yaml")
    container = _container(docs)
    assert container["args"] == ["run", "--config", "/etc/passentry-bridge/sources/sources.yaml"]
    env = _env(docs)
    assert "BRIDGE_SOURCE_ID" not in env
    assert "PASSENTRY_API_TOKEN_FILE" not in env
    (sources,) = [
        d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-sources")
    ]
    volumes = {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    items = {
        i["path"]: (s["secret"]["name"], i["key"])
        for s in volumes["source-tokens"]["projected"]["sources"]
        for i in s["secret"]["items"]
    }
    assert items == {
        "eu-events/token": ("rel-passentry-bridge", "source-eu-events-token"),
        "us-events/token": ("passentry-us", "token"),
        "apac-events/token": ("rel-passentry-bridge", "source-apac-events-token"),
    }
    assert "source-eu-events-token" in one(docs, "Secret")["data"]
    # The bridge reads the file the chart writes, with the env the chart sets.
    config_file = tmp_path / "sources.yaml"
    config_file.write_text(sources["data"]["sources.yaml"])
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            if isinstance(value, str):
                mp.setenv(name, value)
        config = load_config(config_file)
    eu, us, _ = config.sources
    assert (eu.id, eu.scans_topic, eu.passentry.filters.entity) == (
        "eu-events",
        "passentry.eu.scans",
        "0a1b2c3d",
    )
    assert (
        str(eu.passentry.api_token_file)
        == "/var/run/secrets/passentry-bridge/sources/eu-events/token"
    )
    assert (us.topic_template, us.passentry.lookback_s, us.passentry.filters.reader_id) == (
        "passentry.us.{status}",
        600,
        "gate-7",
    )
    assert config.bridge.group_id == "passentry-bridge"
    pdb = one(docs, "PodDisruptionBudget")["spec"]
    assert pdb["minAvailable"] == 1
    # Each source that takes webhooks reads its own subscription's secret, nothing shared.
    assert "PASSENTRY_WEBHOOK_SECRET_FILE" not in env
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    webhook_items = {
        i["path"]: (s["secret"]["name"], i["key"])
        for s in volumes["webhook-secret"]["projected"]["sources"]
        for i in s["secret"]["items"]
    }
    assert webhook_items == {
        "eu-events/secret": ("rel-passentry-bridge", "source-eu-events-webhook-secret"),
        "us-events/secret": ("passentry-us-webhook", "current"),
        "us-events/previous": ("passentry-us-webhook", "previous"),
    }
    files = {
        s.id: (s.passentry.webhook_secret_file, s.passentry.webhook_previous_secret_file)
        for s in config.sources
    }
    root = Path(mounts["webhook-secret"])
    assert files == {
        "eu-events": (root / "eu-events/secret", None),
        "us-events": (root / "us-events/secret", root / "us-events/previous"),
        "apac-events": (None, None),
    }
    assert "source-eu-events-webhook-secret" in one(docs, "Secret")["data"]


# --- env names match bridge/config ------------------------------------------------------

_GROUPS: dict[str, type[msgspec.Struct]] = {
    "PASSENTRY_": PassEntrySettings,
    "KAFKA_": KafkaSettings,
    "BRIDGE_": BridgeSettings,
    "SCHEMA_REGISTRY_": RegistrySettings,
}


@pytest.mark.parametrize("values", CI_VALUES, ids=ids)
def test_env_is_what_the_bridge_reads(
    render: Render, values: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _env(render(values))
    # The standard OpenTelemetry variables: the bridge checks them as it starts.
    otel = {n: v for n, v in env.items() if n.startswith("OTEL_")}
    if tracing_enabled(otel):
        check_tracing(otel)
    for name, value in env.items():
        if name.startswith("OTEL_"):
            continue
        prefix = next((p for p in _GROUPS if name.startswith(p)), None)
        assert prefix is not None, f"unknown setting {name}"
        field = name.removeprefix(prefix).split("__")[0].lower()
        group = _GROUPS[prefix]
        assert field in settings_fields(group), f"{name}: {group.__name__} has no {field}"
        if isinstance(value, dict) and value.get("secretKeyRef", {}).get("optional"):
            # Set only when the Secret has the key: an existing Secret holds basic auth
            # or a bearer token, never both.
            continue
        # Secrets are references in the manifest; any value stands in for them here.
        monkeypatch.setenv(name, value if isinstance(value, str) else "from-a-secret")
    config = load_config()
    assert config.bridge.http_port == 9108
    if "KAFKA_SASL_PASSWORD_FILE" in env:
        assert config.kafka.sasl_password_file is not None
    # Passwords and tokens are files, never environment variables.
    assert not {n for n in env if n.endswith(("PASSWORD", "TOKEN", "USER_INFO", "SECRET"))}


def test_schema_registry_settings(render: Render) -> None:
    docs = render(CHART / "ci" / "schema-registry-values.yaml")
    env = _env(docs)
    assert set(env) >= {
        "SCHEMA_REGISTRY_URL",
        "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO_FILE",
        "SCHEMA_REGISTRY_SSL_CA_LOCATION",
        "SCHEMA_REGISTRY_SUBJECT_NAME_STRATEGY",
        "SCHEMA_REGISTRY_MODE",
        "SCHEMA_REGISTRY_VERSION",
        "SCHEMA_REGISTRY_CACHE_TTL_S",
    }
    assert "SCHEMA_REGISTRY_BEARER_TOKEN_FILE" not in env
    assert env["SCHEMA_REGISTRY_MODE"] == "pinned"
    assert env["SCHEMA_REGISTRY_VERSION"] == "3"
    mounts = {m["name"]: m["mountPath"] for m in _container(docs)["volumeMounts"]}
    ca = Path(env["SCHEMA_REGISTRY_SSL_CA_LOCATION"])
    assert str(ca.parent) == mounts["schema-registry-tls"]
    user_info = Path(env["SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO_FILE"])
    assert str(user_info.parent) == mounts["schema-registry-credentials"]
    volumes = {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["schema-registry-credentials"]["secret"]["secretName"] == "registry-credentials"
    assert volumes["schema-registry-credentials"]["secret"]["items"] == [
        {"key": "basic-auth-user-info", "path": user_info.name}
    ]


def test_a_registry_bearer_token_is_a_file_too(render: Render) -> None:
    token = 'json:schemaRegistry={"enabled": true, "url": "https://r", "bearerToken": "t"}'
    docs = render(DEFAULT, token)
    env = _env(docs)
    path = Path(env["SCHEMA_REGISTRY_BEARER_TOKEN_FILE"])
    mounts = {m["name"]: m["mountPath"] for m in _container(docs)["volumeMounts"]}
    assert str(path.parent) == mounts["schema-registry-credentials"]
    assert "bearer-token" in one(docs, "Secret")["data"]
    existing = render(
        DEFAULT,
        "schemaRegistry.enabled=true",
        "schemaRegistry.url=https://r",
        "schemaRegistry.existingSecret=creds",
        "schemaRegistry.basicAuthUserInfoKey=",
        "schemaRegistry.bearerTokenKey=token",
    )
    volumes = {
        v["name"]: v for v in one(existing, "Deployment")["spec"]["template"]["spec"]["volumes"]
    }
    assert volumes["schema-registry-credentials"]["secret"] == {
        "secretName": "creds",
        "defaultMode": 0o440,
        "items": [{"key": "token", "path": "bearer"}],
    }
    assert "SCHEMA_REGISTRY_BEARER_TOKEN_FILE" in _env(existing)


def test_kafka_tls_and_sasl(render: Render) -> None:
    docs = render(CHART / "ci" / "sasl-tls-values.yaml")
    env = _env(docs)
    mounts = {m["name"]: m["mountPath"] for m in _container(docs)["volumeMounts"]}
    assert str(Path(env["KAFKA_SASL_PASSWORD_FILE"]).parent) == mounts["kafka-sasl"]
    volumes = {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["kafka-sasl"]["secret"]["items"] == [
        {"key": "sasl-password", "path": Path(env["KAFKA_SASL_PASSWORD_FILE"]).name}
    ]
    # The key's password is a key of the TLS Secret, which is mounted whole.
    assert env["KAFKA_SSL_KEY_PASSWORD_FILE"] == "/etc/passentry-bridge/kafka-tls/key-password"
    for key in ("CA", "CERTIFICATE", "KEY"):
        assert str(Path(env[f"KAFKA_SSL_{key}_LOCATION"]).parent) == mounts["kafka-tls"]
    assert json.loads(env["KAFKA_PROPERTIES"]) == {"client.rack": "eu-1a"}
    assert "sasl-password" in one(docs, "Secret")["data"]


def test_kafka_credentials_ca_and_client_certificate_from_existing_secrets(
    render: Render, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = render(CHART / "ci" / "kafka-secrets-values.yaml")
    env = _env(docs)
    assert env["KAFKA_SASL_USERNAME"] == {
        "secretKeyRef": {"name": "kafka-user-bridge", "key": "username"}
    }
    mounts = {m["name"]: m["mountPath"] for m in _container(docs)["volumeMounts"]}
    assert str(Path(env["KAFKA_SASL_PASSWORD_FILE"]).parent) == mounts["kafka-sasl"]
    key_password = Path(env["KAFKA_SSL_KEY_PASSWORD_FILE"])
    assert (str(key_password.parent), key_password.name) == (
        mounts["kafka-client-tls"],
        "key-password",
    )
    assert str(Path(env["KAFKA_SSL_CA_LOCATION"]).parent) == mounts["kafka-tls"]
    for key in ("CERTIFICATE", "KEY"):
        assert str(Path(env[f"KAFKA_SSL_{key}_LOCATION"]).parent) == mounts["kafka-client-tls"]
    assert Path(env["KAFKA_SSL_CERTIFICATE_LOCATION"]).name == "tls.crt"
    assert Path(env["KAFKA_SSL_KEY_LOCATION"]).name == "tls.key"
    volumes = {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["kafka-tls"]["secret"]["secretName"] == "kafka-cluster-ca"
    client = volumes["kafka-client-tls"]["secret"]
    assert client["secretName"] == "bridge-client-cert"
    assert {i["key"] for i in client["items"]} == {"tls.crt", "tls.key", "key-password"}
    assert volumes["kafka-sasl"]["secret"] == {
        "secretName": "kafka-user-bridge",
        "defaultMode": 0o440,
        "items": [{"key": "password", "path": "password"}],
    }
    assert not by_kind(docs, "Secret"), "every credential is in an existing Secret"
    # The bridge reads the user name from the Secret, as it would the value.
    for name, value in env.items():
        monkeypatch.setenv(name, value if isinstance(value, str) else "from-a-secret")
    kafka = load_config().kafka
    assert kafka.sasl_username == "from-a-secret"
    assert kafka.ssl_key_password_file == key_password


# The bridge's pods of release "rel" (deploy_support.render_chart).
SELECTOR = {"app.kubernetes.io/name": "passentry-bridge", "app.kubernetes.io/instance": "rel"}
PROMETHEUS = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
}


def test_network_policy_is_on_by_default_and_open_to_no_one_in_particular(
    render: Render,
) -> None:
    policy = one(render(DEFAULT), "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    # Only Prometheus may scrape, and the release's own pods ask each other GET /status
    # (passentry-bridge status); no webhook port without webhooks.
    own = {"podSelector": {"matchLabels": SELECTOR}}
    assert policy["ingress"] == [
        {"ports": [{"port": "http", "protocol": "TCP"}], "from": [PROMETHEUS]},
        {"ports": [{"port": "http", "protocol": "TCP"}], "from": [own]},
    ]
    egress = {p["port"]: rule.get("to") for rule in policy["egress"] for p in rule["ports"]}
    assert set(egress) == {9108, 53, 9092, 9093, 443}
    assert egress[9108] == [own]
    assert egress[443] == [{"ipBlock": {"cidr": "0.0.0.0/0"}}]
    registry = one(render(CHART / "ci" / "schema-registry-values.yaml"), "NetworkPolicy")["spec"]
    assert 8081 in {p["port"] for rule in registry["egress"] for p in rule["ports"]}
    dns = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}
    pinned = one(render(DEFAULT, f"json:networkPolicy.dns.to=[{json.dumps(dns)}]"), "NetworkPolicy")
    (dns_rule,) = [r for r in pinned["spec"]["egress"] if r["ports"][0]["port"] == 53]
    assert dns_rule["to"] == [dns]
    assert not by_kind(render(DEFAULT, "networkPolicy.enabled=false"), "NetworkPolicy")


def test_tracing_is_off_by_default_and_its_values_become_the_otel_variables(
    render: Render,
) -> None:
    assert not [n for n in _env(render(DEFAULT)) if n.startswith("OTEL_")]
    docs = render(CHART / "ci" / "tracing-values.yaml")
    otel = {n: v for n, v in _env(docs).items() if n.startswith("OTEL_")}
    assert otel == {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector.observability:4318",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.25",
        "OTEL_SERVICE_NAME": "rel-passentry-bridge",
    }
    assert tracing_enabled(otel)
    named = _env(render(DEFAULT, "tracing.endpoint=http://c:4318", "tracing.serviceName=gates"))
    assert named["OTEL_SERVICE_NAME"] == "gates"
    assert named["OTEL_TRACES_SAMPLER_ARG"] == "0.1"
    # The collector is reachable through the NetworkPolicy, only when tracing is on.
    egress = one(docs, "NetworkPolicy")["spec"]["egress"]
    (rule,) = [r for r in egress if r["ports"] == [{"port": 4318, "protocol": "TCP"}]]
    assert rule["to"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}}}
    ]
    default = one(render(DEFAULT), "NetworkPolicy")["spec"]["egress"]
    assert 4318 not in {p["port"] for r in default for p in r["ports"]}


def test_webhooks_receive_on_their_own_port_with_the_secret_as_a_file(render: Render) -> None:
    docs = render(CHART / "ci" / "webhook-values.yaml")
    env = _env(docs)
    container = _container(docs)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 9108, "webhook": 8080}
    assert env["BRIDGE_WEBHOOK_PORT"] == "8080"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    for name in ("PASSENTRY_WEBHOOK_SECRET_FILE", "PASSENTRY_WEBHOOK_PREVIOUS_SECRET_FILE"):
        assert str(Path(env[name]).parent) == mounts["webhook-secret"]
    volumes = {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    secret = volumes["webhook-secret"]["secret"]
    assert secret["secretName"] == "passentry-webhook"
    assert {i["key"]: i["path"] for i in secret["items"]} == {
        "current": "secret",
        "previous": "previous",
    }
    service_ports = {p["name"]: p["targetPort"] for p in one(docs, "Service")["spec"]["ports"]}
    assert service_ports == {"http": "http", "webhook": "webhook"}


def test_the_ingress_exposes_only_the_webhook_path(render: Render) -> None:
    docs = render(CHART / "ci" / "webhook-values.yaml")
    ingress = one(docs, "Ingress")["spec"]
    (rule,) = ingress["rules"]
    (path,) = rule["http"]["paths"]
    assert path["path"] == "/webhooks/passentry/"
    assert path["backend"]["service"]["port"] == {"name": "webhook"}
    assert ingress["tls"] == [
        {"hosts": ["bridge.example.com"], "secretName": "bridge-example-com-tls"}
    ]
    assert not by_kind(render(DEFAULT), "Ingress")


def test_the_ingress_carries_the_ingress_nginx_limits(render: Render) -> None:
    docs = render(CHART / "ci" / "webhook-values.yaml")
    annotations = one(docs, "Ingress")["metadata"]["annotations"]
    nginx = "nginx.ingress.kubernetes.io/"
    assert annotations == {
        # The bridge's own body limit, enforced at the edge, the body buffered whole there.
        nginx + "proxy-body-size": "256k",
        nginx + "client-body-buffer-size": "256k",
        nginx + "proxy-request-buffering": "on",
        nginx + "proxy-connect-timeout": "5",
        nginx + "proxy-send-timeout": "10",
        # The values file's own annotation wins over the generated one.
        nginx + "proxy-read-timeout": "20",
        nginx + "limit-rps": "50",
        nginx + "limit-connections": "100",
    }
    # The bridge may wait 10 s for Kafka: the controller must wait longer by default.
    default = render(CHART / "ci" / "webhook-values.yaml", "json:webhook.ingress.annotations={}")
    read = one(default, "Ingress")["metadata"]["annotations"][nginx + "proxy-read-timeout"]
    assert int(read) > 10
    # A limit set to 0 is left out.
    off = render(CHART / "ci" / "webhook-values.yaml", "webhook.ingress.nginx.limitRps=0")
    assert nginx + "limit-rps" not in one(off, "Ingress")["metadata"]["annotations"]


def test_network_policy_admits_only_the_webhook_and_metrics_ports(render: Render) -> None:
    docs = render(CHART / "ci" / "webhook-values.yaml")
    ingress = one(docs, "NetworkPolicy")["spec"]["ingress"]
    assert [r["ports"] for r in ingress] == [
        [{"port": "http", "protocol": "TCP"}],
        [{"port": "http", "protocol": "TCP"}],
        [{"port": "webhook", "protocol": "TCP"}],
    ]
    assert ingress[0]["from"] == [PROMETHEUS]
    assert ingress[1]["from"] == [{"podSelector": {"matchLabels": SELECTOR}}]
    assert ingress[2]["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/component": "controller"}},
        }
    ]
    # The default admits the ingress-nginx controller's pods only.
    default = one(
        render(DEFAULT, "webhook.enabled=true", f"webhook.secret={WEBHOOK_SECRET}"), "NetworkPolicy"
    )
    assert default["spec"]["ingress"][2]["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "ingress-nginx"}},
        }
    ]


def test_a_webhook_secret_given_as_a_value_is_stored_in_the_chart_secret(render: Render) -> None:
    docs = render(DEFAULT, "webhook.enabled=true", f"webhook.secret={WEBHOOK_SECRET}")
    assert "webhook-secret" in one(docs, "Secret")["data"]
    volumes = one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
    (secret,) = [v["secret"] for v in volumes if v["name"] == "webhook-secret"]
    assert secret["items"] == [{"key": "webhook-secret", "path": "secret"}]


# --- prometheus-operator resources and the dashboard --------------------------------------


def test_servicemonitor(render: Render) -> None:
    docs = render(CHART / "ci" / "monitoring-values.yaml")
    monitor = one(docs, "ServiceMonitor")
    service = one(docs, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    spec = monitor["spec"]
    assert set(spec) == {"jobLabel", "selector", "namespaceSelector", "endpoints"}
    assert service["metadata"]["labels"][spec["jobLabel"]] == "passentry-bridge"
    selector = spec["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert spec["namespaceSelector"] == {"matchNames": ["bridges"]}
    (endpoint,) = spec["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert endpoint["interval"] == "15s"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert not by_kind(render(DEFAULT), "ServiceMonitor"), "off by default"


def test_prometheusrule_is_the_alerts_file(render: Render, promtool: str, tmp_path: Path) -> None:
    values = CHART / "ci" / "monitoring-values.yaml"
    base = yaml.safe_load(values.read_text(encoding="utf-8"))["prometheusRule"]["runbookBaseUrl"]
    rule = one(render(values), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(rule["spec"]) == {"groups"}
    source = (CHART / "files" / "alerts.yaml").read_text(encoding="utf-8")
    expected = yaml.safe_load(
        source.replace(
            "https://github.com/passentry/passentry-bridge/blob/main/docs/operations.md", base
        )
    )
    assert rule["spec"] == expected
    for group in rule["spec"]["groups"]:
        for r in group["rules"]:
            assert set(r) <= {"alert", "expr", "for", "labels", "annotations"}
            assert r["annotations"]["runbook_url"].startswith(base + "#")
    rendered = tmp_path / "rules.yaml"
    rendered.write_text(yaml.safe_dump(rule["spec"]), encoding="utf-8")
    run([promtool, "check", "rules", str(rendered)])


def test_dashboard_configmap(render: Render) -> None:
    docs = render(CHART / "ci" / "monitoring-values.yaml")
    (cm,) = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == "monitoring"
    shipped_text = (CHART / "files" / "dashboard.json").read_text(encoding="utf-8")
    default = "https://github.com/passentry/passentry-bridge/blob/main/docs/operations.md"
    base = "https://runbooks.example.com/passentry-bridge.md"
    docs = render(CHART / "ci" / "monitoring-values.yaml", f"prometheusRule.runbookBaseUrl={base}")
    (cm,) = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]
    # The panels' runbook links follow the rules' base URL; nothing else changes.
    assert json.loads(cm["data"]["passentry-bridge.json"]) == json.loads(
        shipped_text.replace(default, base)
    )
    assert base + "#passentrybridgepollstale" in cm["data"]["passentry-bridge.json"]
    assert not [
        d
        for d in by_kind(render(DEFAULT), "ConfigMap")
        if d["metadata"]["name"].endswith("-dashboard")
    ], "off by default"


# --- the audit CronJob -------------------------------------------------------------------


def test_audit_cronjob(render: Render) -> None:
    docs = render(CHART / "ci" / "audit-values.yaml")
    cron = one(docs, "CronJob")
    spec = cron["spec"]
    assert spec["schedule"] == "15 2 * * *"
    assert spec["timeZone"] == "Etc/UTC"
    assert spec["concurrencyPolicy"] == "Forbid"
    job = spec["jobTemplate"]["spec"]
    (rule,) = job["podFailurePolicy"]["rules"]
    assert rule == {
        "action": "FailJob",
        "onExitCodes": {"containerName": "audit", "operator": "In", "values": [2, 4, 5, 6]},
    }
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["args"] == [
        "audit", "--since", "yesterday", "--until", "today", "--bucket", "30m",
        "--budget", "2", "--repair",
    ]  # fmt: skip
    assert container["envFrom"] == [{"configMapRef": {"name": "rel-passentry-bridge"}}]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PUSHGATEWAY_URL"] == "http://prometheus-pushgateway.monitoring:9091"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["api-token"] == "/var/run/secrets/passentry-bridge/api"
    # The bridge's selectors must not pick up audit pods (the Service would scrape them).
    labels = job["template"]["metadata"]["labels"]
    selector = one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert not selector.items() <= labels.items()
    assert labels["app.kubernetes.io/component"] == "audit"
    assert not by_kind(render(DEFAULT), "CronJob"), "off by default"


def test_audit_cronjob_runs_the_cli_with_the_bridges_settings(
    render: Render, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The args parse, with the ConfigMap's environment, as the audit command's."""
    from click.testing import CliRunner

    from bridge.cli.audit import audit

    docs = render(CHART / "ci" / "audit-values.yaml")
    container = one(docs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"][
        "containers"
    ][0]
    ctx = audit.make_context("audit", container["args"][1:])
    assert ctx.params["since"] == "yesterday"
    assert ctx.params["repair"] is True
    assert CliRunner().invoke(audit, ["--help"]).exit_code == 0


@pytest.mark.parametrize("values", CI_VALUES, ids=ids)
def test_the_helm_test_pod_checks_with_the_bridges_settings(render: Render, values: Path) -> None:
    """``helm test`` runs ``passentry-bridge check`` (``--running`` under a group) in a pod
    with the bridge's image, settings, files and restrictions, which no selector of the
    bridge's objects picks up."""
    docs = render(values)
    (pod,) = by_kind(docs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    spec = pod["spec"]
    deploy = one(docs, "Deployment")["spec"]
    bridge = _container(docs)
    (check,) = spec["containers"]
    config = _env(docs)
    args = ["check"]
    if bridge["args"][1:]:
        args += bridge["args"][1:]  # --config <the sources file>
    if config["BRIDGE_GROUP_ID"]:
        args.append("--running")
    assert check["args"] == args
    for key in ("image", "imagePullPolicy", "envFrom", "securityContext", "volumeMounts"):
        assert check[key] == bridge[key], key
    assert check.get("env") == bridge.get("env")
    for key in ("securityContext", "volumes", "serviceAccountName"):
        assert spec[key] == deploy["template"]["spec"][key], key
    assert spec["automountServiceAccountToken"] is False
    assert spec["restartPolicy"] == "Never"
    labels = pod["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "test"
    selectors = [deploy["selector"]["matchLabels"], one(docs, "Service")["spec"]["selector"]]
    selectors += [
        p["spec"]["selector"]["matchLabels"] for p in by_kind(docs, "PodDisruptionBudget")
    ]
    selectors += [n["spec"]["podSelector"]["matchLabels"] for n in by_kind(docs, "NetworkPolicy")]
    for selector in selectors:
        assert not selector.items() <= labels.items(), selector


def test_the_audit_runs_for_each_source(render: Render) -> None:
    """With a sources list, one CronJob per source, each auditing its source by id with
    the sources file and that source's token, as the bridge's pods mount them."""
    docs = render(CHART / "ci" / "sources-values.yaml")
    bridge = _container(docs)
    cronjobs = by_kind(docs, "CronJob")
    ids = [c["metadata"]["annotations"]["passentry-bridge/source-id"] for c in cronjobs]
    assert ids == ["eu-events", "us-events", "apac-events"]
    assert len({c["metadata"]["name"] for c in cronjobs}) == 3
    for cron, source in zip(cronjobs, ids, strict=True):
        (container,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        assert container["args"][-4:] == [*bridge["args"][1:], "--source", source]
        assert container["volumeMounts"] == bridge["volumeMounts"]


def test_names_fit_their_kinds_limits(render: Render) -> None:
    """A CronJob's name may have 52 characters (its Jobs add 11), a Service's 63, the rest
    253: with the longest full name a Service allows, every name still fits."""
    longest = "x" * 63
    for values in (CHART / "ci" / "audit-values.yaml", CHART / "ci" / "sources-values.yaml"):
        for doc in render(values, f"fullnameOverride={longest}"):
            limit = {"CronJob": 52, "Service": 63}.get(doc["kind"], 253)
            assert len(doc["metadata"]["name"]) <= limit, (doc["kind"], doc["metadata"]["name"])
