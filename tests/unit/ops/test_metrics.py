"""The end-to-end latency histogram, updated once per chunk: the same series as one
``observe`` per record."""

from __future__ import annotations

import math
import random

import pytest
from prometheus_client import generate_latest

from bridge.ops.metrics import Metrics
from tests.support import sample


def _series(metrics: Metrics) -> dict[str, float]:
    return {
        f"{s.name}{sorted(s.labels.items())}": s.value
        for family in metrics.registry.collect()
        if family.name == "passentry_bridge_end_to_end_latency_seconds"
        for s in family.samples
        if not s.name.endswith("_created")
    }


@pytest.mark.parametrize("seed", range(6))
def test_one_update_per_chunk_gives_the_buckets_of_one_observe_per_record(seed: int) -> None:
    rng = random.Random(seed)
    now_ms = 1_765_000_000_000 + rng.random() * 1000
    per_chunk, per_record = Metrics(), Metrics()
    for _ in range(20):
        # Scans from five minutes ago to a second in the future (a skewed clock), many on
        # a bucket's bound exactly, in any order; sometimes none.
        created = [
            rng.choice(
                (
                    int(now_ms - rng.random() * 300_000),
                    int(now_ms - rng.choice((10, 25, 50, 100, 1000, 5000, 60_000))),
                    int(now_ms + rng.random() * 1000),
                )
            )
            for _ in range(rng.randrange(0, 300))
        ]
        per_chunk.end_to_end_latency.labels("poll").observe_created(created, now_ms)
        child = per_record.end_to_end_latency.labels("poll")
        for c in created:
            child.observe(max(0.0, (now_ms - c) / 1000))
        now_ms += rng.random() * 2000
    chunked, recorded = _series(per_chunk), _series(per_record)
    sums = [name for name in recorded if "_sum" in name]
    assert chunked.keys() == recorded.keys()
    assert {k: v for k, v in chunked.items() if k not in sums} == {
        k: v for k, v in recorded.items() if k not in sums
    }
    for name in sums:  # added up in another order: equal to float rounding
        assert math.isclose(chunked[name], recorded[name], rel_tol=1e-12)
    assert sample(per_record, "passentry_bridge_end_to_end_latency_seconds_count", path="poll") > 0


def test_the_exposition_keeps_the_histograms_names_and_buckets() -> None:
    metrics = Metrics().for_source("s")
    metrics.end_to_end_latency.labels("webhook").observe_created([1_000, 2_000], 2_500.0)
    text = generate_latest(metrics.registry).decode()
    assert "# TYPE passentry_bridge_end_to_end_latency_seconds histogram" in text
    assert 'end_to_end_latency_seconds_bucket{le="0.5",path="webhook",source_id="s"} 1.0' in text
    assert 'end_to_end_latency_seconds_bucket{le="1.0",path="webhook",source_id="s"} 1.0' in text
    assert 'end_to_end_latency_seconds_bucket{le="1.5",path="webhook",source_id="s"} 2.0' in text
    assert 'end_to_end_latency_seconds_count{path="webhook",source_id="s"} 2.0' in text
    assert 'end_to_end_latency_seconds_sum{path="webhook",source_id="s"} 2.0' in text
