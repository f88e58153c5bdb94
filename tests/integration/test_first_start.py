"""A source's first start reads nothing back from topics it shares with other sources: no
transaction of its own ever committed, so none of their records can be its own. A fleet
started together from far back used to have each source read every record the sources
before it had published (ten sources, a day's backlog: about 0.07 CPU s a source)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

import pytest

from bridge.service import RunOptions
from passentry_simulator.app import SimulatorConfig
from passentry_simulator.server import SimulatorServer
from passentry_simulator.store import WorldConfig
from tests.integration.harness import RunningBridge, bridge_config, drain


def _run_once(sim: SimulatorServer, bootstrap: str, scans: str, dlq: str, state: str,
              source: str, reader: str) -> None:  # fmt: skip
    config = bridge_config(
        sim.url, sim.token, bootstrap, scans_topic=scans, dlq_topic=dlq,
        passentry={"filters": {"reader_id": reader}},
        bridge={"source_id": source, "state_topic": state, "group_id": ""},
    )  # fmt: skip
    with RunningBridge(config, RunOptions(once=True, since_ms=0, serve_http=False)) as bridge:
        assert bridge.join(120) == 0


def _restores(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Each run's restore line, in the order of the runs."""
    said = ("no checkpoint: starting fresh", "resumed from checkpoint")
    return [r for r in caplog.records if r.getMessage() in said]


def test_a_first_start_reads_back_nothing_that_other_sources_published(
    kafka_bootstrap: str, new_topic: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    scans, dlq = new_topic(partitions=3), new_topic(partitions=1)
    state = new_topic(partitions=1, config={"cleanup.policy": "compact"})
    world = WorldConfig(readers=2, passes=50, seed=5150, backlog=600)
    tag = uuid.uuid4().hex[:8]
    first, second = f"first-{tag}", f"second-{tag}"
    caplog.set_level(logging.INFO, logger="bridge")
    with SimulatorServer(SimulatorConfig(world=world, rate_limit=None)) as sim:
        by_reader = {
            reader: {s.id for s in sim.store.all_scans() if s.spec.reader.id == reader}
            for reader in ("gate-001", "gate-002")
        }
        assert all(by_reader.values())
        _run_once(sim, kafka_bootstrap, scans, dlq, state, first, "gate-001")
        # The topic holds the first source's records now; the second starts from as far back.
        _run_once(sim, kafka_bootstrap, scans, dlq, state, second, "gate-002")
        # And the first again: it has a checkpoint, and reads its window back.
        _run_once(sim, kafka_bootstrap, scans, dlq, state, first, "gate-001")

    runs = _restores(caplog)
    assert [r.getMessage() for r in runs] == [
        "no checkpoint: starting fresh",
        "no checkpoint: starting fresh",
        "resumed from checkpoint",
    ]
    # The second source started with the first's records on the topic, and read none.
    assert runs[1].__dict__["records_read"] == 0
    # The first source's resume reads its window back: both sources' records by then.
    assert runs[2].__dict__["records_read"] >= sum(len(ids) for ids in by_reader.values())
    records = drain(kafka_bootstrap, scans)
    ids = [r.headers["scan-id"].decode() for r in records]
    assert len(ids) == len(set(ids)), "a scan published twice"
    assert set(ids) == by_reader["gate-001"] | by_reader["gate-002"]
    for r in records:
        owner = first if r.headers["scan-id"].decode() in by_reader["gate-001"] else second
        assert r.headers["source-id"] == owner.encode()
