"""A source's parts as every command builds them: from the config, through one KafkaAccess."""

from __future__ import annotations

import pytest

from bridge.avro.framing import SingleObjectFramer
from bridge.config import load_config
from bridge.kafka.access import KafkaAccess
from bridge.ops.metrics import Metrics
from bridge.passentry.client import PassEntryClient
from bridge.passentry.ratelimit import RequestBudget
from bridge.wiring import Wiring


@pytest.fixture
def wiring(monkeypatch: pytest.MonkeyPatch, metrics: Metrics) -> Wiring:
    monkeypatch.setenv("PASSENTRY_API_TOKEN", "t0ken")
    monkeypatch.setenv("PASSENTRY_REQUEST_BUDGET", "4")
    monkeypatch.setenv("BRIDGE_SOURCE_ID", "gate-7")
    monkeypatch.setenv("PASSENTRY_FILTERS__STATUS", "failed")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    return Wiring.of(load_config(), "gate-7", metrics=metrics)


def test_every_kafka_client_reports_its_errors_to_the_access(wiring: Wiring) -> None:
    conf = wiring.kafka_conf()
    assert conf["bootstrap.servers"] == "127.0.0.1:1"
    assert conf["error_cb"] == wiring.access.report
    assert wiring.checkpoints().source_id == "gate-7"


def test_a_command_gets_an_access_that_diagnoses_at_once(wiring: Wiring) -> None:
    """No grace: a command does not wait a refusal out as the long-running bridge does."""
    shared = KafkaAccess(wiring.config.kafka)
    assert Wiring.of(wiring.config, "gate-7", access=shared).access is shared
    assert wiring.access is not shared


def test_the_api_client_keeps_to_the_lower_of_two_budgets(
    wiring: Wiring, monkeypatch: pytest.MonkeyPatch
) -> None:
    rates: list[float] = []

    def budget(per_second: float) -> RequestBudget:
        rates.append(per_second)
        return RequestBudget(per_second)

    monkeypatch.setattr("bridge.wiring.RequestBudget", budget)
    for asked in (None, 2.0, 100.0):
        client = wiring.api_client(requests_per_s=asked)
        assert isinstance(client, PassEntryClient)
        client.close()
    assert rates == [4.0, 2.0, 4.0]


def test_plans_framing_and_records_follow_the_source(wiring: Wiring) -> None:
    plan = wiring.slice_plan(overlap_ms=0)
    assert plan.filters == {"status": "failed"}
    assert plan.overlap_ms == 0
    framing = wiring.framing()
    assert isinstance(framing.framer, SingleObjectFramer)
    assert framing.registry is None
    records = wiring.records(framing.framer)
    assert records.source_id == "gate-7"
