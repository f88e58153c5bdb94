"""``passentry-bridge check``'s probes: is the config valid, does the API answer, does Kafka
let the bridge in, and may it do everything it needs there? ``passentry`` checks the API and
the webhook subscription, ``kafka`` the cluster; :func:`run_checks` runs them in order and
returns one :class:`CheckResult` row each. ``bridge.cli.check`` only prints them.

With ``running`` it also asks whether running replicas own every source: the consumer group
is stable and a member holds each source's coordination partition (the chart's ``helm
test``).
"""

from __future__ import annotations

from bridge.checks.kafka import (
    check_kafka,
    check_owners,
    check_replication,
    check_retention,
    check_running,
)
from bridge.checks.passentry import check_api, check_webhooks
from bridge.checks.result import CheckResult
from bridge.config import Config, SourceConfig
from bridge.errors import BridgeError
from bridge.kafka.tls import check_tls_files

__all__ = ["CheckResult", "run_checks"]


def run_checks(config: Config, *, running: bool = False) -> list[CheckResult]:
    br = config.bridge
    several = len(config.sources) > 1
    ids = ", ".join(s.id for s in config.sources)
    detail = f"source(s) {ids}; dlq {br.dlq_topic}, state {br.state_topic}"
    try:
        check_tls_files(config.kafka)
    except BridgeError as exc:
        return [CheckResult("config", False, str(exc))]
    results = [CheckResult("config", True, detail)]
    for source in config.sources:
        results.append(_named(check_api(config, source), source, several))
    kafka = check_kafka(config)
    results += kafka
    if any(r.name == "kafka" and r.ok for r in kafka):
        results += check_retention(config)
        results += check_replication(config)
        results += check_owners(config)
    for source in config.sources:
        results.append(_named(check_webhooks(config, source), source, several))
    if running:
        results.append(check_running(config))
    return results


def _named(result: CheckResult, source: SourceConfig, several: bool) -> CheckResult:
    """With several sources, each per-source verdict says which source it is about."""
    if not several:
        return result
    return CheckResult(result.name, result.ok, f"[{source.id}] {result.detail}")
