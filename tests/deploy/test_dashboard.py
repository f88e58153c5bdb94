"""The Grafana dashboard: recent schema, datasource and source variables, required panels,
real metrics, every per-source series filtered by source, runbook links on the panels the
alerts watch."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from tests.deploy.deploy_support import (
    ALERTS,
    DASHBOARD,
    exported_metric_names,
    metric_names_in,
    per_source_metric_names,
)


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def _panels() -> list[dict[str, Any]]:
    return [p for p in _dashboard()["panels"] if p["type"] != "row"]


def test_schema_and_datasource_variable() -> None:
    dash = _dashboard()
    assert dash["schemaVersion"] >= 36
    assert dash["uid"] == "passentry-bridge"
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in _panels():
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_required_panels() -> None:
    titles = " | ".join(p["title"].lower() for p in _panels())
    for topic in (
        "throughput",
        "lag",
        "end-to-end latency",
        "api latency",
        "status class",
        "rate limiting",
        "dedup",
        "dlq",
        "producer queue",
        "producer errors",
        "transactions",
        "webhooks accepted",
        "webhooks refused by reason",
        "webhook inbox lag",
        "latency by path",
        "active sources per pod",
        "rebalances",
        "takeover time",
        "last audit: scans missing",
        "last audit: scans duplicated",
        "last audit finished",
    ):
        assert topic in titles, topic
    rows = {p["title"] for p in _dashboard()["panels"] if p["type"] == "row"}
    assert {"Webhooks", "Ownership", "Audit"} <= rows


def test_a_source_variable_filters_every_per_source_series() -> None:
    """A stuck source must be visible on its own: every query of a per-source series selects
    source_id=~"$source_id"."""
    variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}
    source = variables["source_id"]
    assert "source_id" in source["query"]["query"]
    assert source["multi"] is True
    assert source["includeAll"] is True
    per_source = per_source_metric_names()
    for panel in _panels():
        for target in panel["targets"]:
            expr = target["expr"]
            for name in metric_names_in(expr) & per_source:
                for selector in re.findall(rf"{name}\{{([^}}]*)\}}", expr) or [""]:
                    assert 'source_id=~"$source_id"' in selector, (panel["title"], name, expr)


def test_the_freshest_poll_cannot_hide_a_stale_source() -> None:
    (panel,) = [p for p in _panels() if p["title"].startswith("Last successful poll")]
    assert "time() - min(" in panel["targets"][0]["expr"]


def test_every_alert_links_its_runbook_from_a_panel() -> None:
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    runbooks = {
        rule["alert"]: rule["annotations"]["runbook_url"]
        for group in doc["groups"]
        for rule in group["rules"]
    }
    linked = {link["url"]: panel["title"] for panel in _panels() for link in panel.get("links", [])}
    for alert, url in runbooks.items():
        assert url in linked, f"no panel links the runbook of {alert}"
    for url, title in linked.items():
        assert url in runbooks.values(), f"{title} links {url}, which no alert names"


def test_panels_do_not_overlap() -> None:
    cells: set[tuple[int, int]] = set()
    for panel in _dashboard()["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, panel["title"]
                cells.add((x, y))


def test_queries_use_exported_metrics_and_unique_ids() -> None:
    exported = exported_metric_names()
    ids = [p["id"] for p in _dashboard()["panels"]]
    assert len(ids) == len(set(ids))
    for panel in _panels():
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            unknown = metric_names_in(target["expr"]) - exported
            assert not unknown, f"{panel['title']}: unknown metrics {unknown}"
