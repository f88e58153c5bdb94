"""The Grafana dashboard: recent schema, datasource variable, required panels, real metrics."""

from __future__ import annotations

import json
from typing import Any

from deploy_support import DASHBOARD, exported_metric_names, metric_names_in


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
    ):
        assert topic in titles, topic


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
