"""Prometheus metrics, one object per bridge so tests can read their own numbers.

Names follow Prometheus conventions: prefix ``passentry_bridge_``, base units, ``_total`` on
counters. Label values come from small fixed sets (endpoint names, status classes, reasons,
configured topics and source ids), never from scan, pass or reader ids. Every series about
one source carries its ``source_id``.
"""

from __future__ import annotations

import bisect
import contextlib
import copy
import time
from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from bridge import __version__

__all__ = [
    "CounterView",
    "GaugeView",
    "HistogramView",
    "LatencyHistogram",
    "LatencyView",
    "Metrics",
    "status_class",
]

PREFIX = "passentry_bridge"

# API calls sit around 50 ms to several seconds; end-to-end adds poll interval and commit.
_API_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_E2E_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60, 300)
_TAKEOVER_BUCKETS = (0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 60, 120)
_CYCLE_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class LatencyHistogram(Histogram):
    """A histogram of how long ago things were created, updated once per chunk of them.

    ``observe_created`` gives the buckets and the count the same values as one ``observe``
    per item (each item's seconds are computed exactly as that would), from a few binary
    searches on the sorted creation times instead of a call per item; the sum is the
    same up to float rounding."""

    def observe_created(self, created_ms: list[int], now_ms: float) -> None:
        """Observe ``max(0, now_ms - c) / 1000`` seconds for every ``c`` in ``created_ms``."""
        self._raise_if_not_observable()  # type: ignore[no-untyped-call]
        if not created_ms:
            return
        created = sorted(created_ms)  # oldest first: the longest latency first

        def minus_seconds(c: int) -> float:
            return -max(0.0, (now_ms - c) / 1000)

        below = 0  # items counted in the buckets so far
        for bucket, bound in zip(self._buckets, self._upper_bounds, strict=True):
            # Seconds fall as creation times rise: the items within ``bound`` are a suffix.
            within = len(created) - bisect.bisect_left(created, -bound, key=minus_seconds)
            if within > below:
                bucket.inc(within - below)
                below = within
        past = bisect.bisect_left(created, now_ms)  # created before now: the rest count 0
        # Whole milliseconds in integers, so that nothing cancels out in a float.
        whole = int(now_ms)
        self._sum.inc((past * whole - sum(created[:past]) + past * (now_ms - whole)) / 1000)


def status_class(status: int | None) -> str:
    """``2xx``..``5xx`` for an HTTP status, ``error`` when no response came back."""
    if status is None:
        return "error"
    return f"{status // 100}xx"


class _Count(Protocol):
    def inc(self, amount: float = ...) -> None: ...


class _Observe(Protocol):
    def observe(self, amount: float) -> None: ...


class _Set(Protocol):
    def set(self, value: float) -> None: ...


class _ObserveCreated(Protocol):
    def observe_created(self, created_ms: list[int], now_ms: float) -> None: ...


class CounterView(Protocol):
    """A counter as the stages use it: ``.labels(...).inc()`` or ``.inc()``."""

    def labels(self, *labelvalues: str) -> _Count: ...

    def inc(self, amount: float = ...) -> None: ...


class HistogramView(Protocol):
    def labels(self, *labelvalues: str) -> _Observe: ...

    def observe(self, amount: float) -> None: ...


class LatencyView(Protocol):
    def labels(self, *labelvalues: str) -> _ObserveCreated: ...


class GaugeView(Protocol):
    def labels(self, *labelvalues: str) -> _Set: ...

    def set(self, value: float) -> None: ...


class _Bound:
    """A metric family with its ``source_id`` label given: the stages name their other
    labels (or none) as before, and every series says which source it is about."""

    __slots__ = ("_family", "_source")

    def __init__(self, family: Any, source_id: str) -> None:
        self._family = family
        self._source = source_id

    def labels(self, *labelvalues: str) -> Any:
        return self._family.labels(self._source, *labelvalues)

    def inc(self, amount: float = 1) -> None:
        self._family.labels(self._source).inc(amount)

    def observe(self, amount: float) -> None:
        self._family.labels(self._source).observe(amount)

    def set(self, value: float) -> None:
        self._family.labels(self._source).set(value)


# The series each source has of its own, labelled source_id (``Metrics.for_source``): a
# process runs several sources, and a failing one must not hide behind the others.
_PER_SOURCE = (
    "api_requests", "api_request_duration", "api_retries", "api_rate_limited",
    "rate_limit_wait_seconds", "api_auth_failures", "pages_fetched", "malformed_pages",
    "scans_fetched", "scans_duplicate", "scans_published", "dlq_records", "enrichment_misses",
    "late_scans", "poll_cycles", "poll_cycle_duration", "end_to_end_latency", "webhook_events",
    "webhook_deferred", "takeover_duration", "producer_queue", "producer_errors",
    "transactions",
)  # fmt: skip


class Metrics:
    """Every metric of the bridge. The per-source ones are bound to one source: the
    process's own ``Metrics`` to none (``source_id=""``, for the commands), and each running
    source gets ``for_source(id)``, a view sharing the same registry."""

    api_requests: CounterView
    api_request_duration: HistogramView
    api_retries: CounterView
    api_rate_limited: CounterView
    rate_limit_wait_seconds: CounterView
    api_auth_failures: CounterView
    pages_fetched: CounterView
    malformed_pages: CounterView
    scans_fetched: CounterView
    scans_duplicate: CounterView
    scans_published: CounterView
    dlq_records: CounterView
    enrichment_misses: CounterView
    late_scans: CounterView
    poll_cycles: CounterView
    poll_cycle_duration: HistogramView
    end_to_end_latency: LatencyView
    webhook_events: CounterView
    webhook_deferred: CounterView
    takeover_duration: HistogramView
    producer_queue: GaugeView
    producer_errors: CounterView
    transactions: CounterView

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        p = PREFIX
        self.build_info = Info(f"{p}_build", "Version of the running bridge.", registry=r)
        self.build_info.info({"version": __version__})

        self.api_requests = Counter(
            f"{p}_api_requests_total",
            "PassEntry API requests by endpoint and HTTP status class (error = no response).",
            ["source_id", "endpoint", "status_class"],
            registry=r,
        )
        self.api_request_duration = Histogram(
            f"{p}_api_request_duration_seconds",
            "PassEntry API request latency, including body download.",
            ["source_id", "endpoint"],
            buckets=_API_BUCKETS,
            registry=r,
        )
        self.api_retries = Counter(
            f"{p}_api_retries_total",
            "API requests retried, by reason (timeout, connection, rate_limited, server_error,"
            " malformed).",
            ["source_id", "endpoint", "reason"],
            registry=r,
        )
        self.api_rate_limited = Counter(
            f"{p}_api_rate_limited_total",
            "429 Too Many Requests answers from PassEntry.",
            ["source_id", "endpoint"],
            registry=r,
        )
        self.rate_limit_wait_seconds = Counter(
            f"{p}_rate_limit_wait_seconds_total",
            "Time spent waiting for the client's own request budget or PassEntry's reset.",
            ["source_id"],
            registry=r,
        )
        self.api_auth_failures = Counter(
            f"{p}_api_auth_failures_total",
            "401/403 answers from PassEntry: the bridge stops on these.",
            ["source_id"],
            registry=r,
        )
        self.pages_fetched = Counter(
            f"{p}_pages_fetched_total",
            "Scan list pages fetched and decoded.",
            ["source_id"],
            registry=r,
        )
        self.malformed_pages = Counter(
            f"{p}_malformed_pages_total",
            "2xx answers that were not a decodable page, by reason; they are retried.",
            ["source_id", "reason"],
            registry=r,
        )
        self.scans_fetched = Counter(
            f"{p}_scans_fetched_total",
            "Scans read from the API, duplicates included.",
            ["source_id"],
            registry=r,
        )
        self.scans_duplicate = Counter(
            f"{p}_scans_duplicate_total",
            "Scans skipped because they were already published (dedup window hits).",
            ["source_id"],
            registry=r,
        )
        self.scans_published = Counter(
            f"{p}_scans_published_total",
            "Scans whose records the broker has acknowledged (committed in EOS mode), by topic.",
            ["source_id", "topic"],
            registry=r,
        )
        self.dlq_records = Counter(
            f"{p}_dlq_records_total",
            "Records sent to the dead-letter topic, by reason.",
            ["source_id", "reason"],
            registry=r,
        )
        self.enrichment_misses = Counter(
            f"{p}_enrichment_misses_total",
            "Scans whose pass or reader was not in the page's included array, by kind"
            " (pass_fetched, pass_not_found, reader; reader_fetched: a webhook's, read with"
            " its scan).",
            ["source_id", "kind"],
            registry=r,
        )
        self.late_scans = Counter(
            f"{p}_late_scans_total",
            "Scans first seen older than the lookback window, behind the watermark.",
            ["source_id"],
            registry=r,
        )
        self.poll_cycles = Counter(
            f"{p}_poll_cycles_total",
            "Poll cycles by outcome (ok, api_error, kafka_error, registry_error, fatal).",
            ["source_id", "outcome"],
            registry=r,
        )
        self.poll_cycle_duration = Histogram(
            f"{p}_poll_cycle_duration_seconds",
            "Duration of one poll cycle: fetch every page, publish, commit.",
            ["source_id"],
            buckets=_CYCLE_BUCKETS,
            registry=r,
        )
        self.end_to_end_latency = LatencyHistogram(
            f"{p}_end_to_end_latency_seconds",
            "Commit time (when read_committed consumers see the record) minus the scan's"
            " creation time (from its UUIDv7), by the path that brought it (poll, webhook).",
            ["source_id", "path"],
            buckets=_E2E_BUCKETS,
            registry=r,
        )
        self.webhook_requests = Counter(
            f"{p}_webhook_requests_total",
            "Webhook requests by outcome (accepted, replayed, ignored, unauthorized,"
            " unknown_source, malformed, stale, future, too_large, unsupported_encoding,"
            " timeout, bad_request, method_not_allowed, not_found, too_many_connections,"
            " unavailable); source_id is empty where the request named no source this"
            " deployment runs.",
            ["source_id", "outcome"],
            registry=r,
        )
        self.webhook_connections = Gauge(
            f"{p}_webhook_connections",
            "Connections open to the webhook receiver (BRIDGE_WEBHOOK_MAX_CONNECTIONS at most).",
            registry=r,
        )
        self.webhook_events = Counter(
            f"{p}_webhook_events_total",
            "Inbox events taken by the owner of their source, by outcome (published,"
            " duplicate: already published by either path, deferred: left to polling).",
            ["source_id", "outcome"],
            registry=r,
        )
        self.webhook_deferred = Counter(
            f"{p}_webhook_deferred_total",
            "Webhook scans left to polling, by reason (unknown_reader, late, invalid_scan,"
            " invalid_event).",
            ["source_id", "reason"],
            registry=r,
        )
        self.webhook_inbox_lag = Gauge(
            f"{p}_webhook_inbox_lag_messages",
            "Events in the source's inbox partition not yet taken by its owner.",
            ["source_id"],
            registry=r,
        )
        # Per source: a process may run several, and a stuck one must not hide behind another.
        self.watermark_timestamp = Gauge(
            f"{p}_watermark_timestamp_seconds",
            "Creation time of the newest published scan id (the cursor), Unix seconds.",
            ["source_id"],
            registry=r,
        )
        self.last_poll_timestamp = Gauge(
            f"{p}_last_successful_poll_timestamp_seconds",
            "When the source's last poll cycle finished without error, Unix seconds.",
            ["source_id"],
            registry=r,
        )
        self._newest_published_s: dict[str, float] = {}
        r.register(_LagCollector(f"{p}_lag_seconds", self._newest_published_s))
        self.dedup_window_ids = Gauge(
            f"{p}_dedup_window_ids",
            "Ids held in the source's dedup lookback window.",
            ["source_id"],
            registry=r,
        )
        self.source_active = Gauge(
            f"{p}_source_active",
            "1 while this process owns and runs the source, else 0 (every configured source).",
            ["source_id"],
            registry=r,
        )
        self.rebalances = Counter(
            f"{p}_rebalances_total",
            "Consumer-group rebalances seen by this member, by event (assigned, revoked, lost).",
            ["event"],
            registry=r,
        )
        self.takeover_duration = Histogram(
            f"{p}_takeover_duration_seconds",
            "From a source's assignment to this member until it is restored and publishing.",
            ["source_id"],
            buckets=_TAKEOVER_BUCKETS,
            registry=r,
        )
        self.producer_queue = Gauge(
            f"{p}_producer_queue_messages",
            "Messages in the producer's queue, not yet acknowledged by the broker.",
            ["source_id"],
            registry=r,
        )
        self.producer_errors = Counter(
            f"{p}_producer_errors_total",
            "Kafka delivery and producer errors, by class (retriable, abortable, fatal).",
            ["source_id", "kind"],
            registry=r,
        )
        self.transactions = Counter(
            f"{p}_transactions_total",
            "Kafka transactions by outcome (committed, aborted).",
            ["source_id", "outcome"],
            registry=r,
        )
        self.ready = Gauge(f"{p}_ready", "1 when /readyz answers ready, else 0.", registry=r)
        self._families: dict[str, Any] = {name: getattr(self, name) for name in _PER_SOURCE}
        self.source_id = ""
        self._bind("")

    def for_source(self, source_id: str) -> Metrics:
        """This process's metrics, with the per-source ones labelled ``source_id``."""
        view = copy.copy(self)  # the registry, the families and the lag's dict are shared
        view.source_id = source_id
        view._bind(source_id)
        for family in self._families.values():
            # A series appears on its first use; one that only has the source's label is made
            # now instead, at 0, so that increase() and the alerts see its first event and the
            # panels have data before anything happened.
            if tuple(family._labelnames) == ("source_id",):
                family.labels(source_id)
        return view

    def _bind(self, source_id: str) -> None:
        for name, family in self._families.items():
            setattr(self, name, _Bound(family, source_id))

    def published_up_to(self, source_id: str, created_s: float) -> None:
        if created_s > self._newest_published_s.get(source_id, 0.0):
            self._newest_published_s[source_id] = created_s
            self.watermark_timestamp.labels(source_id).set(created_s)

    def forget_source(self, source_id: str) -> None:
        """The source left this process: drop its per-source series (but keep saying it is
        not active here)."""
        self._newest_published_s.pop(source_id, None)
        for gauge in (
            self.watermark_timestamp,
            self.last_poll_timestamp,
            self.dedup_window_ids,
            self.webhook_inbox_lag,
        ):
            with contextlib.suppress(KeyError):
                gauge.remove(source_id)
        self.source_active.labels(source_id).set(0)


class _LagCollector(Collector):
    """``lag_seconds{source_id}``: now minus the newest published scan's creation time,
    computed at scrape time (it grows while the source is idle)."""

    def __init__(self, name: str, newest: dict[str, float]) -> None:
        self._name = name
        self._newest = newest

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            self._name,
            "Now minus the creation time of the newest scan the source published.",
            labels=["source_id"],
        )
        now = time.time()
        for source_id, newest in list(self._newest.items()):
            family.add_metric([source_id], max(0.0, now - newest))
        yield family
