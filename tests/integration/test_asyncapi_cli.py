"""The AsyncAPI document, validated by the official AsyncAPI CLI (@asyncapi/cli from npm,
pinned in asyncapi/package-lock.json, installed by scripts/asyncapi-validate): the committed
schemas/asyncapi.yaml, one generated for a registry + routed topics + SASL_SSL
configuration, and, to show the check can fail, a document made invalid on purpose."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from bridge.cli.schema import schema

ROOT = Path(__file__).resolve().parents[2]
VALIDATE = ROOT / "scripts" / "asyncapi-validate"
# Cold, npm fetches the CLI's tree (about 1.5 GB unpacked); CI starts it early.
INSTALL_TIMEOUT_S = 1800
# The first test's fixture may wait that long, beyond pytest's default 300 s.
pytestmark = pytest.mark.timeout(INSTALL_TIMEOUT_S + 300)


@pytest.fixture(scope="module")
def validator() -> Path:
    if shutil.which("npm") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("npm is not installed (CI=true: CI must validate the AsyncAPI document)")
        pytest.skip("npm is not installed: the AsyncAPI CLI cannot be installed here")
    proc = subprocess.run(
        [str(VALIDATE), "install"],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return VALIDATE


def validate(validator: Path, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(validator), str(path)], capture_output=True, text=True, timeout=300, check=False
    )


def test_the_committed_document_is_valid_asyncapi(validator: Path) -> None:
    proc = validate(validator, ROOT / "schemas" / "asyncapi.yaml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "is valid" in proc.stdout


def test_a_document_for_registry_routing_and_sasl_is_valid(
    validator: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCHEMA_REGISTRY_URL", "https://registry.example:8081")
    monkeypatch.setenv("SCHEMA_REGISTRY_SUBJECT_NAME_STRATEGY", "topic_record")
    config = tmp_path / "bridge.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "kafka": {
                    "bootstrap_servers": "kafka-1:9093,kafka-2:9093",
                    "security_protocol": "SASL_SSL",
                    "sasl_mechanism": "SCRAM-SHA-256",
                    "sasl_username": "bridge",
                    "sasl_password": "x",
                    "ssl_certificate_location": "/certs/client.pem",
                    "ssl_key_location": "/certs/client.key",
                },
                "bridge": {"topic_template": "passentry.{status}.{scan_type}"},
            }
        )
    )
    printed = CliRunner().invoke(schema, ["asyncapi", "--config", str(config)])
    assert printed.exit_code == 0, printed.output
    document = tmp_path / "asyncapi.yaml"
    document.write_text(printed.output)
    proc = validate(validator, document)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_an_invalid_document_fails(validator: Path, tmp_path: Path) -> None:
    doc = yaml.safe_load((ROOT / "schemas" / "asyncapi.yaml").read_text())
    # AsyncAPI 3 has send and receive; 2.x's publish is an error now.
    next(iter(doc["operations"].values()))["action"] = "publish"
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(doc, sort_keys=False))
    proc = validate(validator, broken)
    assert proc.returncode != 0
    assert "action" in proc.stdout + proc.stderr
