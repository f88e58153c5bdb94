"""A real Prometheus scrapes a real bridge; every dashboard query and alert rule must work.

The simulator runs in-process and pushes signed webhooks for its live scans; the bridge runs
as ``passentry-bridge run`` (a subprocess, as in production) against the session's Kafka, in a
consumer group, with webhooks on; a forged webhook is refused; ``passentry-bridge audit
--pushgateway`` pushes its result to Debian's Pushgateway. Debian's ``prometheus`` binary
scrapes the bridge and the Pushgateway (``honor_labels``) every second with the alert rules
from deploy/prometheus/alerts.yaml loaded. Then, through the HTTP API:

- every panel query of deploy/grafana/passentry-bridge.json (template variables filled in as
  Grafana would) must succeed and return data;
- every alert expression must evaluate without error, every loaded rule must be healthy, and
  the alerts that a healthy bridge must not raise stay inactive.

Waits are on real conditions (target up, a scrape with published scans), never fixed sleeps.
Without the prometheus binary the test is skipped locally and fails under CI=true.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from passentry_simulator.app import SimulatorConfig
from passentry_simulator.server import SimulatorServer
from passentry_simulator.store import WorldConfig
from passentry_simulator.webhooks import WebhookConfig
from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "passentry-bridge.json"
JOB = "passentry-bridge"
# What Grafana substitutes: one job, all instances and sources, a rate window several scrapes
# wide, a short dashboard range.
VARIABLES = {
    "$__rate_interval": "1m",
    "$__range": "5m",
    "$instance": ".*",
    "$job": JOB,
    "$source_id": ".*",
}
WEBHOOK_SECRET = "p" * 40
# A healthy bridge must never raise these.
MUST_STAY_SILENT = {
    "PassEntryBridgeDown",
    "PassEntryBridgeAbsent",
    "PassEntryBridgeNoProgress",
    "PassEntryBridgeApiAuthFailure",
}

T = TypeVar("T")


def _wait(
    what: str,
    timeout_s: float,
    probe: Callable[[], T | None],
    diagnostics: Callable[[], str] = lambda: "",
) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            pytest.fail(
                f"timed out after {timeout_s}s waiting for {what}\n{diagnostics()}", pytrace=False
            )
        time.sleep(0.25)


class PromAPI:
    def __init__(self, base: str) -> None:
        self.base = base

    def get(self, path: str, **params: str) -> Any:
        url = f"{self.base}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return json.load(resp)
        except urllib.error.HTTPError as exc:  # 400/422: the body says why
            return json.load(exc)

    def query(self, expr: str) -> Any:
        return self.get("/api/v1/query", query=expr)

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base}/-/ready", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False


def _tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"({path.name}: no output)"
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    return f"--- last lines of {path.name} ---\n" + "\n".join(text)


def _stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        message = "the prometheus binary is missing; run scripts/install-deploy-tools"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found


@pytest.fixture
def plan() -> dict[str, str]:
    """The bridge's ports and source id, which the simulator's webhooks need first."""
    return {
        "metrics_port": str(free_port()),
        "webhook_port": str(free_port()),
        "source_id": str(uuid.uuid4()),
    }


@pytest.fixture
def simulator(plan: dict[str, str]) -> Iterator[SimulatorServer]:
    url = f"http://127.0.0.1:{plan['webhook_port']}/webhooks/passentry/{plan['source_id']}"
    config = SimulatorConfig(
        world=WorldConfig(backlog=500, seed=1),
        rate=20.0,
        webhooks=WebhookConfig(url=url, secret=WEBHOOK_SECRET),
    )
    with SimulatorServer(config) as sim:
        yield sim


@pytest.fixture
def pushgateway(tmp_path: Path) -> Iterator[str]:
    """Debian's Pushgateway on a free port: the audit's results go there."""
    found = shutil.which("prometheus-pushgateway")
    if found is None:
        message = "prometheus-pushgateway is missing; run scripts/install-deploy-tools"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    port = free_port()
    log = tmp_path / "pushgateway.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [found, f"--web.listen-address=127.0.0.1:{port}"], stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait("the Pushgateway to answer", 60, lambda: True if PromAPI(url).ready() else None,
              lambda: _tail(log))  # fmt: skip
        yield url
    finally:
        _stop(proc)


def _bridge_env(plan: dict[str, str], simulator: SimulatorServer, kafka: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PASSENTRY_", "KAFKA_", "BRIDGE_"))
    }
    env.update(
        {
            "PASSENTRY_API_URL": simulator.url,
            "PASSENTRY_API_TOKEN": simulator.token,
            "PASSENTRY_POLL_INTERVAL_MAX_S": "1",
            "PASSENTRY_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "KAFKA_BOOTSTRAP_SERVERS": kafka,
            "BRIDGE_HTTP_HOST": "127.0.0.1",
            "BRIDGE_HTTP_PORT": plan["metrics_port"],
            "BRIDGE_WEBHOOK_PORT": plan["webhook_port"],
            "BRIDGE_SCANS_TOPIC": f"test-scans-{plan['source_id']}",
            "BRIDGE_DLQ_TOPIC": f"test-dlq-{plan['source_id']}",
            "BRIDGE_STATE_TOPIC": f"test-state-{plan['source_id']}",
            "BRIDGE_WEBHOOK_TOPIC": f"test-inbox-{plan['source_id']}",
            "BRIDGE_GROUP_ID": f"test-group-{plan['source_id']}",
            "BRIDGE_COORDINATION_TOPIC": f"test-coordination-{plan['source_id']}",
            "BRIDGE_SOURCE_ID": plan["source_id"],
            "BRIDGE_TOPIC_PARTITIONS": "3",
            "BRIDGE_LOG_FORMAT": "text",
        }
    )
    return env


@pytest.fixture
def bridge(
    plan: dict[str, str], simulator: SimulatorServer, kafka_bootstrap: str, tmp_path: Path
) -> Iterator[tuple[int, Path]]:
    """``passentry-bridge run`` as a subprocess: (metrics port, log file)."""
    port = int(plan["metrics_port"])
    env = _bridge_env(plan, simulator, kafka_bootstrap)
    log = tmp_path / "bridge.log"
    exe = Path(sys.executable).parent / "passentry-bridge"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(exe), "run"], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path
        )
    try:
        yield port, log
    finally:
        _stop(proc)


@pytest.fixture
def prometheus(
    prometheus_binary: str, bridge: tuple[int, Path], pushgateway: str, tmp_path: Path
) -> Iterator[tuple[PromAPI, Path]]:
    bridge_port, _ = bridge
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS.resolve())],
        "scrape_configs": [
            {"job_name": JOB, "static_configs": [{"targets": [f"127.0.0.1:{bridge_port}"]}]},
            {
                # As docs/operations.md says: the pushed job and source_id labels stay.
                "job_name": "pushgateway",
                "honor_labels": True,
                "static_configs": [{"targets": [pushgateway.removeprefix("http://")]}],
            },
        ],
    }
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    log = tmp_path / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                prometheus_binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    api = PromAPI(f"http://127.0.0.1:{port}")
    try:
        _wait(
            "Prometheus to be ready",
            60,
            lambda: True if api.ready() else (None if proc.poll() is None else False),
            lambda: _tail(log),
        )
        assert proc.poll() is None, _tail(log)
        yield api, log
    finally:
        _stop(proc)


def _fill(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def _panel_queries() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [
        (f"{panel['title']} [{target['refId']}]", _fill(target["expr"]))
        for panel in dash["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


def _alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _forge_a_webhook(plan: dict[str, str]) -> None:
    """An unsigned POST: refused as unauthorized, which the refusals panel shows."""
    url = f"http://127.0.0.1:{plan['webhook_port']}/webhooks/passentry/{plan['source_id']}"
    request = urllib.request.Request(url, data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    refused.value.close()
    assert refused.value.code == 401


def _audit(plan: dict[str, str], simulator: SimulatorServer, kafka: str, pushgateway: str) -> None:
    """A real audit of a minute the bridge has published (it started polling one lookback
    before it started), its result pushed to the Pushgateway."""
    env = _bridge_env(plan, simulator, kafka)
    exe = Path(sys.executable).parent / "passentry-bridge"
    now = int(time.time())
    done = subprocess.run(
        [str(exe), "audit", "--since", _iso(now - 120), "--until", _iso(now - 60),
         "--bucket", "1m", "--pushgateway", pushgateway],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def _iso(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def test_dashboard_and_alerts_against_a_live_bridge(
    prometheus: tuple[PromAPI, Path],
    bridge: tuple[int, Path],
    plan: dict[str, str],
    simulator: SimulatorServer,
    kafka_bootstrap: str,
    pushgateway: str,
) -> None:
    api, prom_log = prometheus
    _, bridge_log = bridge

    def diagnostics() -> str:
        return _tail(bridge_log) + "\n" + _tail(prom_log, 15)

    def target_up() -> bool | None:
        targets = api.get("/api/v1/targets")["data"]["activeTargets"]
        return True if any(t["health"] == "up" for t in targets) else None

    _wait("the bridge target to be up", 90, target_up, diagnostics)

    def published() -> bool | None:
        result = api.query(f'sum(passentry_bridge_scans_published_total{{job="{JOB}"}}) > 0')
        return True if result["status"] == "success" and result["data"]["result"] else None

    _wait("a scrape with passentry_bridge_scans_published_total > 0", 180, published, diagnostics)

    def pushed_in() -> bool | None:
        query = f'sum(passentry_bridge_webhook_events_total{{job="{JOB}",outcome="published"}})'
        result = api.query(query + " > 0")
        return True if result["status"] == "success" and result["data"]["result"] else None

    _wait("a scan brought by a webhook", 120, pushed_in, diagnostics)
    _forge_a_webhook(plan)
    _audit(plan, simulator, kafka_bootstrap, pushgateway)

    # Every panel query: valid PromQL, and data. Rates need a few scrapes after the first
    # publish, so queries without data yet are retried until one shared deadline.
    pending = dict(_panel_queries())
    failures: dict[str, str] = {}
    deadline = time.monotonic() + 45
    while pending:
        for title, expr in list(pending.items()):
            result = api.query(expr)
            if result["status"] != "success":
                failures[title] = f"error {result.get('error')}: {expr}"
                del pending[title]
            elif result["data"]["result"]:
                del pending[title]
        if pending and time.monotonic() > deadline:
            failures.update({title: f"no data: {expr}" for title, expr in pending.items()})
            break
        if pending:
            time.sleep(0.5)
    assert not failures, (
        "dashboard panels failed:\n"
        + "\n".join(f"  {k}: {v}" for k, v in failures.items())
        + "\n"
        + diagnostics()
    )

    # Every alert expression evaluates (it may well be empty: nothing is wrong).
    for rule in _alert_rules():
        result = api.query(rule["expr"])
        assert result["status"] == "success", (rule["alert"], result.get("error"))

    # The rules were loaded from the same file and evaluate without errors.
    def rules_evaluated() -> list[dict[str, Any]] | None:
        groups = api.get("/api/v1/rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        if rules and all(
            r.get("lastEvaluation", "").startswith("0001") is False and r["health"] != "unknown"
            for r in rules
        ):
            return rules
        return None

    rules = _wait("every alert rule to be evaluated", 30, rules_evaluated, diagnostics)
    assert {r["name"] for r in rules} == {r["alert"] for r in _alert_rules()}
    unhealthy = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
    assert not unhealthy, unhealthy
    active = {a["labels"]["alertname"] for a in api.get("/api/v1/alerts")["data"]["alerts"]}
    assert not active & MUST_STAY_SILENT, (active, diagnostics())
