"""Prometheus metrics, one object per bridge so tests can read their own numbers.

Names follow Prometheus conventions: prefix ``passentry_bridge_``, base units, ``_total`` on
counters. Label values come from small fixed sets (endpoint names, status classes, reasons,
configured topics), never from ids.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from bridge import __version__

__all__ = ["Metrics", "status_class"]

PREFIX = "passentry_bridge"

# API calls sit around 50 ms to several seconds; end-to-end adds poll interval and commit.
_API_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_E2E_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60, 300)
_CYCLE_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def status_class(status: int | None) -> str:
    """``2xx``..``5xx`` for an HTTP status, ``error`` when no response came back."""
    if status is None:
        return "error"
    return f"{status // 100}xx"


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        p = PREFIX
        self.build_info = Info(f"{p}_build", "Version of the running bridge.", registry=r)
        self.build_info.info({"version": __version__})

        self.api_requests = Counter(
            f"{p}_api_requests_total",
            "PassEntry API requests by endpoint and HTTP status class (error = no response).",
            ["endpoint", "status_class"],
            registry=r,
        )
        self.api_request_duration = Histogram(
            f"{p}_api_request_duration_seconds",
            "PassEntry API request latency, including body download.",
            ["endpoint"],
            buckets=_API_BUCKETS,
            registry=r,
        )
        self.api_retries = Counter(
            f"{p}_api_retries_total",
            "API requests retried, by reason (timeout, connection, rate_limited, server_error,"
            " malformed).",
            ["endpoint", "reason"],
            registry=r,
        )
        self.api_rate_limited = Counter(
            f"{p}_api_rate_limited_total",
            "429 Too Many Requests answers from PassEntry.",
            ["endpoint"],
            registry=r,
        )
        self.rate_limit_wait_seconds = Counter(
            f"{p}_rate_limit_wait_seconds_total",
            "Time spent waiting for the client's own request budget or PassEntry's reset.",
            registry=r,
        )
        self.api_auth_failures = Counter(
            f"{p}_api_auth_failures_total",
            "401/403 answers from PassEntry: the bridge stops on these.",
            registry=r,
        )
        self.pages_fetched = Counter(
            f"{p}_pages_fetched_total", "Scan list pages fetched and decoded.", registry=r
        )
        self.malformed_pages = Counter(
            f"{p}_malformed_pages_total",
            "2xx answers that were not a decodable page, by reason; they are retried.",
            ["reason"],
            registry=r,
        )
        self.scans_fetched = Counter(
            f"{p}_scans_fetched_total", "Scans read from the API, duplicates included.", registry=r
        )
        self.scans_duplicate = Counter(
            f"{p}_scans_duplicate_total",
            "Scans skipped because they were already published (dedup window hits).",
            registry=r,
        )
        self.scans_published = Counter(
            f"{p}_scans_published_total",
            "Scans whose records the broker has acknowledged (committed in EOS mode), by topic.",
            ["topic"],
            registry=r,
        )
        self.dlq_records = Counter(
            f"{p}_dlq_records_total",
            "Records sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=r,
        )
        self.enrichment_misses = Counter(
            f"{p}_enrichment_misses_total",
            "Scans whose pass or reader was not in the page's included array, by kind"
            " (pass_fetched, pass_not_found, reader).",
            ["kind"],
            registry=r,
        )
        self.late_scans = Counter(
            f"{p}_late_scans_total",
            "Scans first seen older than the lookback window, behind the watermark.",
            registry=r,
        )
        self.poll_cycles = Counter(
            f"{p}_poll_cycles_total",
            "Poll cycles by outcome (ok, api_error, kafka_error, registry_error, fatal).",
            ["outcome"],
            registry=r,
        )
        self.poll_cycle_duration = Histogram(
            f"{p}_poll_cycle_duration_seconds",
            "Duration of one poll cycle: fetch every page, publish, commit.",
            buckets=_CYCLE_BUCKETS,
            registry=r,
        )
        self.end_to_end_latency = Histogram(
            f"{p}_end_to_end_latency_seconds",
            "Commit time (when read_committed consumers see the record) minus the scan's"
            " creation time (from its UUIDv7), by the path that brought it (poll, webhook).",
            ["path"],
            buckets=_E2E_BUCKETS,
            registry=r,
        )
        self.webhook_requests = Counter(
            f"{p}_webhook_requests_total",
            "Webhook requests by outcome (accepted, ignored, unauthorized, malformed, stale,"
            " too_large, unknown_source, unavailable).",
            ["outcome"],
            registry=r,
        )
        self.webhook_events = Counter(
            f"{p}_webhook_events_total",
            "Inbox events taken by the owner of their source, by outcome (published,"
            " duplicate: already published by either path, deferred: left to polling).",
            ["outcome"],
            registry=r,
        )
        self.webhook_deferred = Counter(
            f"{p}_webhook_deferred_total",
            "Webhook scans left to polling, by reason (unknown_reader, late, invalid_scan,"
            " invalid_event).",
            ["reason"],
            registry=r,
        )
        self.webhook_inbox_lag = Gauge(
            f"{p}_webhook_inbox_lag_messages",
            "Events in the inbox partitions of the sources this process owns, not yet taken.",
            registry=r,
        )
        self.watermark_timestamp = Gauge(
            f"{p}_watermark_timestamp_seconds",
            "Creation time of the newest published scan id (the cursor), Unix seconds.",
            registry=r,
        )
        self.last_poll_timestamp = Gauge(
            f"{p}_last_successful_poll_timestamp_seconds",
            "When the last poll cycle finished without error, Unix seconds.",
            registry=r,
        )
        self.lag = Gauge(
            f"{p}_lag_seconds",
            "Now minus the creation time of the newest published scan.",
            registry=r,
        )
        self.lag.set_function(self._lag_seconds)
        self._newest_published_s = 0.0
        self.dedup_window_ids = Gauge(
            f"{p}_dedup_window_ids", "Ids held in the dedup lookback window.", registry=r
        )
        self.producer_queue = Gauge(
            f"{p}_producer_queue_messages",
            "Messages in the producer's queue, not yet acknowledged by the broker.",
            registry=r,
        )
        self.producer_errors = Counter(
            f"{p}_producer_errors_total",
            "Kafka delivery and producer errors, by class (retriable, abortable, fatal).",
            ["kind"],
            registry=r,
        )
        self.transactions = Counter(
            f"{p}_transactions_total",
            "Kafka transactions by outcome (committed, aborted).",
            ["outcome"],
            registry=r,
        )
        self.ready = Gauge(f"{p}_ready", "1 when /readyz answers ready, else 0.", registry=r)

    def published_up_to(self, created_s: float) -> None:
        if created_s > self._newest_published_s:
            self._newest_published_s = created_s
            self.watermark_timestamp.set(created_s)

    def _lag_seconds(self) -> float:
        if self._newest_published_s == 0.0:
            return 0.0
        return max(0.0, time.time() - self._newest_published_s)
