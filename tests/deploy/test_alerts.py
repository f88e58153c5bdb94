"""Alert rules: promtool-valid, unit-tested both ways, documented, on metrics that exist."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.deploy.deploy_support import (
    ALERTS,
    ALERTS_TEST,
    CHART,
    DASHBOARD,
    OPERATIONS_DOC,
    exported_metric_names,
    metric_names_in,
    run,
)

REQUIRED_ALERTS = {
    "PassEntryBridgeDown",
    "PassEntryBridgeAbsent",
    "PassEntryBridgeNoProgress",
    "PassEntryBridgePollStale",
    "PassEntryBridgeEndToEndLatencyHigh",
    "PassEntryBridgeApiAuthFailure",
    "PassEntryBridgeApiErrorRate",
    "PassEntryBridgeRateLimited",
    "PassEntryBridgeProducerErrors",
    "PassEntryBridgeDlqGrowing",
    "PassEntryBridgeLateScans",
    "PassEntryBridgeTransactionAborts",
    "PassEntryBridgeWebhookSignatureFailures",
    "PassEntryBridgeWebhookInboxLag",
    "PassEntryBridgeSourceUnowned",
    "PassEntryBridgeSourceOwnedTwice",
    "PassEntryBridgeAuditFoundMissingScans",
    "PassEntryBridgeAuditFoundDuplicates",
    "PassEntryBridgeAuditStale",
}


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_deploy_files_are_the_chart_files() -> None:
    """One copy: deploy/ links to the files the chart embeds."""
    assert ALERTS.is_symlink()
    assert ALERTS.resolve() == (CHART / "files" / "alerts.yaml").resolve()
    assert DASHBOARD.is_symlink()
    assert DASHBOARD.resolve() == (CHART / "files" / "dashboard.json").resolve()


def test_promtool_check_rules(promtool: str) -> None:
    run([promtool, "check", "rules", str(ALERTS)])


def test_promtool_unit_tests(promtool: str) -> None:
    run([promtool, "test", "rules", str(ALERTS_TEST)])


def test_every_alert_is_required_and_present() -> None:
    assert {r["alert"] for r in _rules()} == REQUIRED_ALERTS


def test_every_alert_fires_and_stays_silent_in_the_unit_tests() -> None:
    tests = yaml.safe_load(ALERTS_TEST.read_text(encoding="utf-8"))["tests"]
    fired: set[str] = set()
    silent: set[str] = set()
    for case in tests:
        for check in case["alert_rule_test"]:
            (fired if check.get("exp_alerts") else silent).add(check["alertname"])
    assert fired == REQUIRED_ALERTS, REQUIRED_ALERTS - fired
    assert silent == REQUIRED_ALERTS, REQUIRED_ALERTS - silent


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    anchors = set()
    for line in markdown.splitlines():
        if m := re.match(r"#{1,6}\s+(.*)", line):
            text = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def test_annotations_and_runbooks() -> None:
    anchors = _anchors(OPERATIONS_DOC.read_text(encoding="utf-8"))
    for rule in _rules():
        ann = rule["annotations"]
        assert ann.get("summary"), rule["alert"]
        assert ann.get("description"), rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}
        url = ann["runbook_url"]
        assert url.startswith("https://"), url
        assert "/docs/operations.md#" in url, url
        anchor = url.split("#", 1)[1]
        assert anchor == rule["alert"].lower()
        assert anchor in anchors, f"docs/operations.md has no section #{anchor}"


def test_rules_only_use_metrics_the_bridge_exports() -> None:
    exported = exported_metric_names() | {"up"}
    for rule in _rules():
        unknown = metric_names_in(rule["expr"]) - exported
        assert not unknown, f"{rule['alert']}: unknown metrics {unknown}"
