"""The broker_faults scenario's own parts: when a killed node counts as failed over, and its
table."""

from __future__ import annotations

import time

import pytest

from bench.broker_faults import KINDS, FailoverWatch, markdown
from scripts.lib.kafka_wire import Metadata, Partition


def _meta(brokers: list[int], leaders: list[int]) -> Metadata:
    parts = {i: Partition(leader, [1, 2, 3], [1, 2, 3]) for i, leader in enumerate(leaders)}
    return Metadata(brokers, {"scans": parts, "__transaction_state": {0: Partition(2, [2], [2])}})


def test_a_node_is_failed_over_once_it_is_neither_a_broker_nor_a_leader() -> None:
    answers = iter(
        [
            _meta([1, 2, 3], [3, 1]),  # not yet fenced
            _meta([1, 2], [3, 1]),  # fenced, its partition not yet moved
            _meta([1, 2], [2, 1]),  # failed over
        ]
    )
    asked: list[str] = []

    def ask(address: str) -> Metadata:
        asked.append(address)
        if address == "dead:1":
            raise OSError("connection refused")
        return next(answers)

    watch = FailoverWatch(3, ["dead:1", "live:2"], ask, interval_s=0.01)
    before = time.time()
    watch.start()
    moment = watch.result(timeout_s=5)
    assert before <= moment <= time.time()
    # Each round skips the address that does not answer and asks the next one, once.
    assert asked == ["dead:1", "live:2"] * 3


def test_a_node_never_failed_over_is_a_timeout() -> None:
    watch = FailoverWatch(1, ["live:2"], lambda _: _meta([1, 2], [1]), interval_s=0.01)
    watch.start()
    with pytest.raises(TimeoutError, match="node 1 still in the metadata"):
        watch.result(timeout_s=0.1)


def test_the_table_splits_each_kill_into_the_brokers_and_the_sources_share() -> None:
    kind_result = {
        "median_s": 12.0, "max_s": 14.0, "values_s": [10.0, 12.0, 14.0],
        "failover_s": [9.0, 11.0, 11.5], "after_failover_s": [1.0, 1.5, 2.5],
    }  # fmt: skip
    found = {
        "rate_per_s": 30.0,
        "rounds": 3,
        "classic": {
            kind: dict(kind_result) if n < 3 else {"median_s": 1.0, "max_s": 2.0, "values_s": [1]}
            for n, kind in enumerate(KINDS)
        },
    }
    lines = markdown(found)
    assert "| sigkill_txn_coordinator | 12.0 / 14.0 (n=3) | 15.0 |" in lines
    split = lines[next(i for i, line in enumerate(lines) if line.startswith("SIGKILLs split")) :]
    rows = [line for line in split if line.startswith("| sigkill") or line.startswith("| roll")]
    # Only the SIGKILLs are split: a rolling restart has no failover to time.
    assert rows == [f"| {kind} | 11.00 / 11.50 | 1.50 / 2.50 |" for kind in KINDS[:3]]
