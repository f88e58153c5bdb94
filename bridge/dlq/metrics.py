"""A replay's result as Prometheus metrics, pushed to a Pushgateway (``--pushgateway``).

As for the audit (``bridge.audit.metrics``): a command's pod cannot be scraped, so the run
pushes once, at the end, under the job ``passentry-bridge-dlq-replay`` grouped by
``source_id``. Labels come from small fixed sets: the dead-letter reasons and the outcomes.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Gauge

from bridge.dlq.report import Outcome, ReplayReport

__all__ = ["JOB", "replay_registry"]

JOB = "passentry-bridge-dlq-replay"
P = "passentry_bridge_dlq_replay"


def replay_registry(report: ReplayReport | None, *, succeeded: bool) -> CollectorRegistry:
    """The gauges for one run; a run that could not finish sets only its failure time."""
    registry = CollectorRegistry()
    now = time.time()
    if not succeeded or report is None:
        Gauge(f"{P}_last_failure_timestamp_seconds", "When a replay last failed to run.",
              registry=registry).set(now)  # fmt: skip
        return registry
    scans = Gauge(
        f"{P}_scans",
        "Dead-lettered scans the last replay judged, by their reason before it and what it"
        " did with them.",
        ["reason", "outcome"],
        registry=registry,
    )
    for reason, per in report.counts().items():
        for outcome in Outcome:
            scans.labels(reason, outcome.value).set(per[outcome.value])

    def gauge(name: str, doc: str, value: float) -> None:
        Gauge(f"{P}_{name}", doc, registry=registry).set(value)

    gauge("published_scans", "Scans the last replay published.", report.published)
    gauge("dead_letters_written", "Dead letters the last replay wrote with a new reason.",
          report.dead_letters_written)  # fmt: skip
    gauge("dry_run", "1 if the last replay was a dry run.", 1 if report.dry_run else 0)
    gauge("duration_seconds", "How long the replay took.", report.seconds)
    gauge("last_success_timestamp_seconds", "When a replay last finished.", now)
    return registry
