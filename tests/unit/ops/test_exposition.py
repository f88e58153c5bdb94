"""/metrics as ``TextExposition`` writes it: ``generate_latest``'s bytes, scrape after scrape,
while series appear, change and go."""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Iterator

import pytest
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client import metrics as client_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from bridge.ops import exposition as exposition_module
from bridge.ops.exposition import TextExposition
from bridge.ops.metrics import Metrics

# Label values a source id, topic or reason could never hold, but an escape must survive.
ODD = ('a"quoted"', "back\\slash", "new\nline", "ünïcödé", "", "{x=1}", "tab\there")
VALUES = (0.0, -0.0, 1.0, 2.5, -3.25, 1e-9, 1234567.0, 12345678.0, 1e21, math.inf, -math.inf)


def _exercise(metrics: Metrics, rng: random.Random, sources: list[str]) -> None:
    """Every family of the bridge's metrics, for several sources, with odd label values."""
    for source_id in sources:
        view = metrics.for_source(source_id)
        view.api_requests.labels("list_scans", rng.choice(("2xx", "4xx", "error"))).inc()
        view.api_request_duration.labels(rng.choice(("list_scans", *ODD))).observe(rng.random())
        view.api_retries.labels("get_pass", rng.choice(ODD)).inc(rng.randint(1, 5))
        view.scans_published.labels(rng.choice(("scans", "scans.rejected"))).inc(100)
        view.poll_cycle_duration.observe(rng.choice((0.001, 0.05, 7.0, 1000.0)))
        view.end_to_end_latency.labels(rng.choice(("poll", "webhook"))).observe_created(
            [1_765_000_000_000 - rng.randint(0, 90_000) for _ in range(rng.randint(0, 20))],
            1_765_000_000_000.5,
        )
        view.takeover_duration.observe(rng.random() * 30)
        view.producer_queue.set(rng.randint(0, 10_000))
        view.transactions.labels("committed").inc()
        metrics.watermark_timestamp.labels(source_id).set(rng.choice(VALUES))
        metrics.dedup_window_ids.labels(source_id).set(rng.randint(0, 10**6))
        metrics.source_active.labels(source_id).set(1)
        metrics.published_up_to(source_id, 1_765_000_000.0 + rng.random())
    metrics.webhook_requests.labels("", rng.choice(("accepted", *ODD))).inc()
    metrics.webhook_connections.set_function(lambda: len(sources))  # as the receiver does
    metrics.rebalances.labels("assigned").inc()
    metrics.ready.set(1)


def test_every_metric_of_the_bridge_is_written_as_generate_latest_writes_it() -> None:
    rng = random.Random(7)
    metrics = Metrics()
    exposition = TextExposition(metrics.registry)
    assert exposition.render() == generate_latest(metrics.registry)  # nothing happened yet
    sources = [f"source-{i}" for i in range(3)] + list(ODD[:3])
    for scrape in range(12):
        _exercise(metrics, rng, sources)
        if scrape % 4 == 3:
            metrics.forget_source(rng.choice(sources))  # its gauges' series go
        # The lag collector's value is computed at scrape time: left to the library, and
        # left out of the comparison (two calls, two clocks).
        assert _without_lag(exposition.render()) == _without_lag(generate_latest(metrics.registry))


def test_without_created_series_too(monkeypatch: pytest.MonkeyPatch) -> None:
    # PROMETHEUS_DISABLE_CREATED_SERIES sets this when the library is imported.
    monkeypatch.setattr(client_metrics, "_use_created", False)
    metrics = Metrics()
    _exercise(metrics, random.Random(3), ["one", "two"])
    text = TextExposition(metrics.registry).render()
    assert b"_created" not in text
    assert _without_lag(text) == _without_lag(generate_latest(metrics.registry))


def test_a_gauge_whose_value_a_function_gives() -> None:
    """``set_function`` replaces the sampling of the child it is called on, after the
    exposition first wrote the gauge, too."""
    registry = CollectorRegistry()
    plain = Gauge("connections", "Open.", registry=registry)
    labelled = Gauge("lag", "Lag.", ["source_id"], registry=registry)
    labelled.labels("a").set(1)
    exposition = TextExposition(registry)
    assert exposition.render() == generate_latest(registry)
    plain.set_function(lambda: 300)
    labelled.labels("b").set_function(lambda: 2.5)
    text = exposition.render()
    assert text == generate_latest(registry)
    assert b"connections 300.0" in text
    assert b'lag{source_id="b"} 2.5' in text


def test_odd_numbers_and_bounds() -> None:
    registry = CollectorRegistry()
    gauge = Gauge("g", "A gauge.\nTwo lines, a \\ too.", ["k"], registry=registry)
    for at, value in enumerate((*VALUES, math.nan)):
        gauge.labels(str(at)).set(value)
    # A first bound below zero: no _sum line.
    below = Histogram("below", "Negative bounds.", buckets=(-1.5, 0, 1e7, 2e7), registry=registry)
    for value in (-2.0, -1.0, 0.5, 1.5e7, 3e7):
        below.observe(value)
    plain = Counter("plain_total", "No labels.", registry=registry)
    plain.inc(0.1)
    plain.inc(0.2)  # 0.30000000000000004
    assert TextExposition(registry).render() == generate_latest(registry)


class _Doubled(Counter):
    """A counter that samples its own way: the library must write it."""

    def _child_samples(self):  # type: ignore[no-untyped-def]
        return tuple(s._replace(value=s.value * 2) for s in super()._child_samples())


class _Custom(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("custom", "From a collector.", labels=["x"])
        family.add_metric(["1"], 1.5)
        yield family


def test_what_it_does_not_write_itself_the_library_writes_in_its_place() -> None:
    registry = CollectorRegistry()
    Counter("first_total", "First.", registry=registry).inc()
    _Doubled("doubled_total", "Doubled.", ["k"], registry=registry).labels("a").inc(3)
    registry.register(_Custom())
    Info("build", "Build.", registry=registry).info({"version": "1.2.3"})
    Gauge("last", "Last.", registry=registry).set(4)
    text = TextExposition(registry).render()
    assert text == generate_latest(registry)
    assert b'doubled_total{k="a"} 6.0' in text  # its own sampling, not ours

    registry.set_target_info({"service": "bridge"})
    assert TextExposition(registry).render() == generate_latest(registry)


def test_the_library_writes_none_of_the_bridges_own_families(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fast path is the one taken: only the Info, the lag collector and the gauge a
    function gives are handed back."""
    handed: list[bytes] = []

    def library(registry: Collector) -> bytes:
        text = generate_latest(registry)
        handed.append(text)
        return text

    monkeypatch.setattr(exposition_module, "generate_latest", library)
    metrics = Metrics()
    _exercise(metrics, random.Random(5), ["a", "b"])
    TextExposition(metrics.registry).render()
    names = sorted(line.split()[2] for text in handed for line in text.decode().splitlines()
                   if line.startswith("# TYPE"))  # fmt: skip
    assert names == [
        "passentry_bridge_build_info",
        "passentry_bridge_lag_seconds",
        "passentry_bridge_webhook_connections",
    ]


def test_scrapes_while_series_are_added_from_other_threads() -> None:
    registry = CollectorRegistry()
    counter = Counter("events_total", "Events.", ["source_id"], registry=registry)
    histogram = Histogram("took_seconds", "Took.", ["source_id"], registry=registry)
    exposition = TextExposition(registry)
    stop = threading.Event()
    failures: list[BaseException] = []

    def scrape() -> None:
        try:
            while not stop.is_set():
                exposition.render()
        except BaseException as exc:
            failures.append(exc)

    scrapers = [threading.Thread(target=scrape) for _ in range(3)]
    for thread in scrapers:
        thread.start()
    try:
        for i in range(2000):
            counter.labels(f"s{i % 300}").inc()
            histogram.labels(f"s{i % 300}").observe(i / 1000)
    finally:
        stop.set()
        for thread in scrapers:
            thread.join()
    assert failures == []
    assert exposition.render() == generate_latest(registry)


def _without_lag(text: bytes) -> bytes:
    return b"".join(
        line
        for line in text.splitlines(keepends=True)
        if not line.startswith(b"passentry_bridge_lag_seconds{")
    )
