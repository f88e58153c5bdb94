"""Each source's series carry its source_id, so that a failing source cannot hide behind the
others of its process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from bridge.ops.metrics import Metrics


def _exposition(metrics: Metrics) -> str:
    return generate_latest(metrics.registry).decode()


def test_each_source_counts_on_its_own_series() -> None:
    metrics = Metrics(CollectorRegistry())
    eu, us = metrics.for_source("eu"), metrics.for_source("us")
    eu.scans_published.labels("scans").inc(3)
    us.scans_published.labels("scans").inc()
    eu.poll_cycles.labels("ok").inc()
    us.api_auth_failures.inc()
    text = _exposition(metrics)
    assert 'passentry_bridge_scans_published_total{source_id="eu",topic="scans"} 3.0' in text
    assert 'passentry_bridge_scans_published_total{source_id="us",topic="scans"} 1.0' in text
    assert 'passentry_bridge_poll_cycles_total{outcome="ok",source_id="eu"} 1.0' in text
    assert 'passentry_bridge_api_auth_failures_total{source_id="us"} 1.0' in text


def test_a_source_has_its_counters_at_zero_before_anything_happens() -> None:
    """increase() over a series that appears at 1 sees nothing: the first 401 of a source
    must be an increase from 0."""
    metrics = Metrics(CollectorRegistry())
    metrics.for_source("eu")
    text = _exposition(metrics)
    assert 'passentry_bridge_api_auth_failures_total{source_id="eu"} 0.0' in text
    assert 'passentry_bridge_late_scans_total{source_id="eu"} 0.0' in text
    assert 'passentry_bridge_takeover_duration_seconds_count{source_id="eu"} 0.0' in text
    # Series with more labels than the source's appear on their first use only.
    assert 'source_id="eu",topic=' not in text
