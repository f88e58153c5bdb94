"""``check``'s replication rows, from what the cluster says of each topic: ok when a broker
can be lost, WARN when a loss would lose commits or stop writes, FAIL when Kafka would take
no write at all; the topics asked about are those the bridge writes, and the transaction log.

The same rows against real brokers: tests/integration/test_check_replication_broker.py (one
broker), tests/cluster/test_check_replication_cluster.py (three)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import bridge.checks.kafka as check_module
from bridge.checks.kafka import check_replication
from bridge.config import load_config
from bridge.kafka.replication import TRANSACTION_LOG, Durability

SECRET = "whsec-check-0123456789abcdef0123456789abcdef"


def _rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, said: dict[str, Durability], yaml: str
) -> tuple[list[str], list[check_module.CheckResult]]:
    asked: list[str] = []

    def durability(conf: dict[str, Any], topics: list[str], timeout_s: float) -> list[Durability]:
        asked.extend(topics)
        return [said.get(t, Durability(t, error="not created yet", missing=True)) for t in topics]

    monkeypatch.setattr(check_module, "topic_durability", durability)
    config_file = tmp_path / "bridge.yaml"
    config_file.write_text(yaml)
    return asked, check_replication(load_config(config_file))


def test_each_topic_the_bridge_writes_and_the_transaction_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = {"replication_factor": 3, "min_insync": 2, "unclean": False}
    said = {
        "scans.north": Durability("scans.north", **good),
        "scans.south": Durability("scans.south", replication_factor=3, min_insync=1, unclean=False),
        "dlq": Durability("dlq", replication_factor=1, min_insync=2, unclean=False),
        TRANSACTION_LOG: Durability(TRANSACTION_LOG, **good),
    }
    asked, rows = _rows(
        tmp_path,
        monkeypatch,
        said,
        f"passentry:\n  api_token: t\n  webhook_secret: {SECRET}\n"
        "bridge:\n  dlq_topic: dlq\n  state_topic: state\n  webhook_topic: inbox\n"
        "sources:\n  - id: north\n    topic: scans.north\n"
        "  - id: south\n    topic: scans.south\n    webhook_secret: " + SECRET[::-1] + "\n",
    )
    assert asked == ["scans.north", "scans.south", "dlq", "state", "inbox", TRANSACTION_LOG]
    by_topic = {r.detail.split(":", 1)[0]: r for r in rows}
    verdicts = {t: (r.ok, r.warning) for t, r in by_topic.items()}
    assert verdicts == {
        "scans.north": (True, False),
        "scans.south": (True, True),
        "dlq": (False, False),  # every write refused: a failure, not a warning
        # Not made yet: said how the bridge will make it, not judged.
        "state": (True, False),
        "inbox": (True, False),
        TRANSACTION_LOG: (True, False),
    }
    assert "refuses every write" in by_topic["dlq"].detail
    assert by_topic["state"].detail.startswith(
        "state: not created yet: the bridge makes it with BRIDGE_TOPIC_REPLICATION_FACTOR (-1;"
    )
    assert {r.name for r in rows} == {"replication"}


def test_no_inbox_row_without_webhooks_and_no_row_for_a_transaction_log_not_made_yet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked, rows = _rows(
        tmp_path,
        monkeypatch,
        {},
        "passentry:\n  api_token: t\nbridge:\n  dlq_topic: dlq\n  state_topic: state\n"
        "sources:\n  - id: north\n    topic: scans\n",
    )
    assert asked == ["scans", "dlq", "state", TRANSACTION_LOG]
    assert [r.detail.split(":", 1)[0] for r in rows] == ["scans", "dlq", "state"]
