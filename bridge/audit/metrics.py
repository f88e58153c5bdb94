"""The audit's result as Prometheus metrics, pushed to a Pushgateway.

A CronJob's pod lives for a few minutes and cannot be scraped, so ``audit --pushgateway URL``
pushes these once, at the end, under the job ``passentry-bridge-audit`` grouped by
``source_id`` (sources are configured, a small fixed set: one series each). The
Pushgateway keeps the last push of each source until the next one replaces it, which is
what the alert on ``passentry_bridge_audit_missing_scans`` and the staleness alert read.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, pushadd_to_gateway

from bridge.audit.report import AuditReport

__all__ = ["JOB", "audit_registry", "push"]

JOB = "passentry-bridge-audit"
P = "passentry_bridge_audit"


def audit_registry(report: AuditReport | None, *, succeeded: bool) -> CollectorRegistry:
    """The gauges for one run. A run that could not finish sets only its failure time, so
    the last success (and the alerts that read it) keep their meaning."""
    registry = CollectorRegistry()

    def gauge(name: str, doc: str, value: float) -> None:
        Gauge(f"{P}_{name}", doc, registry=registry).set(value)

    now = time.time()
    if not succeeded or report is None:
        gauge("last_failure_timestamp_seconds", "When an audit last failed to run.", now)
        return registry
    gauge("missing_scans", "Scans PassEntry lists that are in no main topic nor the DLQ,"
          " after repair if it ran.", report.missing)  # fmt: skip
    gauge("duplicated_scans", "Records beyond one per scan id in the source's topics.",
          report.duplicated)  # fmt: skip
    gauge("unknown_scans", "Ids in Kafka that PassEntry does not list.", report.unknown)
    gauge("dead_lettered_scans", "Scans in the dead-letter topic only.", report.dead_lettered)
    gauge("repaired_scans", "Scans the last run published by --repair.", report.published)
    gauge("range_end_timestamp_seconds", "End (--until) of the range audited.",
          report.until_ms / 1000)  # fmt: skip
    gauge("duration_seconds", "How long the audit took.", report.seconds)
    gauge("api_requests", "PassEntry API requests the audit made.", report.requests)
    gauge("kafka_records_read", "Kafka records the audit read.", report.kafka_records)
    gauge("last_success_timestamp_seconds", "When an audit last finished.", now)
    return registry


def push(
    url: str, source_id: str, registry: CollectorRegistry, *, replace: bool,
    timeout_s: float = 10.0, job: str = JOB,
) -> None:  # fmt: skip
    """A finished run replaces this source's group on the Pushgateway (PUT); a failed one
    only adds its failure time (POST), keeping the last result and success time."""
    send = push_to_gateway if replace else pushadd_to_gateway
    send(url, job=job, grouping_key={"source_id": source_id}, registry=registry,
         timeout=timeout_s)  # fmt: skip
