"""The bridge, refused by Kafka, says why in one log line and in /readyz, then exits 1 (no
group) or stays up and unready (a group member); after the fix, a restart carries on from
its checkpoint with nothing lost or doubled.

librdkafka only lets a refused login or an unverifiable certificate time out, like a broker
that is down; the bridge tells them apart (``bridge.kafka.access``) and names the setting to
fix. Secrets appear nowhere: not in the log, not in /readyz.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bridge.config import Config
from bridge.service import RunOptions
from passentry_simulator.app import SimulatorConfig
from passentry_simulator.server import SimulatorServer
from passentry_simulator.store import WorldConfig
from tests.integration.harness import RunningBridge, bridge_config, wait_for
from tests.integration.secure.secure_kafka import AclAdmin, Grant, SecureKafka, read_committed

CREDENTIALS = (
    "Kafka refused the SASL credentials (SCRAM-SHA-512) for user {user}:"
    " check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
)


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    world = WorldConfig(readers=5, passes=50, seed=21, backlog=60, backlog_span_s=120)
    with SimulatorServer(SimulatorConfig(world=world, rate_limit=None)) as server:
        yield server


def config_for(
    sim: SimulatorServer, kafka: dict[str, Any], topics: tuple[str, str, str], **bridge: Any
) -> Config:
    scans, dlq, state = topics
    return bridge_config(
        sim.url,
        sim.token,
        kafka["bootstrap_servers"],
        scans_topic=scans,
        dlq_topic=dlq,
        bridge={"state_topic": state, "http_host": "127.0.0.1", **bridge},
        kafka=kafka,
    )


def run_until_exit(config: Config, timeout_s: float = 120) -> tuple[RunningBridge, int | None]:
    bridge = RunningBridge(config, RunOptions(since_ms=0))
    bridge.__enter__()
    code = bridge.join(timeout_s)
    bridge.stop()
    return bridge, code


def assert_said_once(caplog: pytest.LogCaptureFixture, message: str, secret: str) -> None:
    """One error line of the bridge's, carrying ``message``, then the process's last line
    naming the source it came from; the secret in no line at all."""
    errors = [r for r in caplog.records if r.name.startswith("bridge") and r.levelno >= 40]
    said = [getattr(r, "error", r.getMessage()) for r in errors]
    assert said[:-1] == [message], said
    assert errors[-1].getMessage() == "exiting", said
    assert re.fullmatch(rf"source [\w.-]+: {re.escape(message)}", said[-1]), said
    for r in caplog.records:
        assert secret not in r.getMessage()
        assert secret not in str(r.__dict__)
    # librdkafka repeats a failing connection's line on every reconnect: held back here.
    lines = [r for r in caplog.records if r.name == "librdkafka"]
    assert len(lines) <= 6, [r.getMessage() for r in lines]


def _wrong_password(k: SecureKafka) -> tuple[dict[str, Any], str]:
    return k.kafka_settings("bridge", "not-the-password"), CREDENTIALS.format(user="bridge")


def _unknown_user(k: SecureKafka) -> tuple[dict[str, Any], str]:
    settings = {**k.kafka_settings("bridge"), "sasl_username": "nobody"}
    return settings, CREDENTIALS.format(user="nobody")


def _wrong_ca(k: SecureKafka) -> tuple[dict[str, Any], str]:
    settings = {**k.kafka_settings("bridge"), "ssl_ca_location": str(k.wrong_ca)}
    return settings, (
        f"Kafka TLS: the certificate of {k.bootstrap_servers} is not signed by the CA in"
        f" KAFKA_SSL_CA_LOCATION ({k.wrong_ca}) (self-signed certificate in certificate chain):"
        " set KAFKA_SSL_CA_LOCATION to the CA that signed the brokers' certificates"
    )


def _wrong_host(k: SecureKafka) -> tuple[dict[str, Any], str]:
    address = k.wrong_host_bootstrap_servers
    settings = {**k.kafka_settings("bridge"), "bootstrap_servers": address}
    return settings, (
        f"Kafka TLS: the certificate of {address} does not name 127.0.0.1 (IP address mismatch,"
        " certificate is not valid for '127.0.0.1'.): check KAFKA_BOOTSTRAP_SERVERS (or the"
        " brokers' advertised names)"
    )


CASES: dict[str, Callable[[SecureKafka], tuple[dict[str, Any], str]]] = {
    "wrong password": _wrong_password,
    "unknown user": _unknown_user,
    "CA that does not match": _wrong_ca,
    "host name not in the certificate": _wrong_host,
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_refused_without_a_group_exits_1_saying_why(
    secure_kafka: SecureKafka,
    sim: SimulatorServer,
    caplog: pytest.LogCaptureFixture,
    case: Callable[[SecureKafka], tuple[dict[str, Any], str]],
) -> None:
    kafka, message = case(secure_kafka)
    topics = ("refused.scans", "refused.dlq", "refused.state")
    with caplog.at_level(logging.INFO):
        bridge, code = run_until_exit(config_for(sim, kafka, topics, group_id=""), 120)
    assert code == 1
    readiness = bridge.service.health.readiness()
    assert not readiness.ok
    assert any(message in reason for reason in readiness.reasons), readiness.reasons
    assert_said_once(caplog, message, secure_kafka.users["bridge"])


def test_refused_in_a_group_the_member_stays_unready(
    secure_kafka: SecureKafka, sim: SimulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    kafka, message = _wrong_password(secure_kafka)
    topics = ("refused.scans", "refused.dlq", "refused.state")
    config = config_for(sim, kafka, topics)
    with caplog.at_level(logging.INFO), RunningBridge(config, RunOptions()) as bridge:
        health = bridge.service.health
        wait_for(lambda: any(message in r for r in health.readiness().reasons), 90, "the refusal")
        assert bridge.exit_code is None  # still up: the fix may come from the cluster's side
    assert bridge.exit_code == 0
    errors = [r for r in caplog.records if r.name.startswith("bridge") and r.levelno >= 40]
    assert [getattr(r, "error", "") for r in errors] == [message]


def test_after_the_fix_a_restart_carries_on_exactly_once(
    secure_kafka: SecureKafka,
    sim: SimulatorServer,
    acls: AclAdmin,
    kafka_user: tuple[str, str],
    secure_topic: Callable[..., str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Publish, then fail twice (a wrong password, then Write revoked on the scans topic),
    each time saying why; fixed, the bridge resumes from its checkpoint."""
    user, password = kafka_user
    topics = (secure_topic(3), secure_topic(1), secure_topic(1, {"cleanup.policy": "compact"}))
    scans, dlq, _ = topics
    source = f"refusals-{uuid.uuid4().hex[:6]}"
    p = f"User:{user}"
    write = [Grant(p, "Topic", scans, "LITERAL", "Write")]
    acls.grant(
        [
            *(Grant(p, "Topic", t, "LITERAL", op) for t in topics for op in ("Read", "Write")),
            Grant(p, "TransactionalId", f"passentry-bridge.{source}", "PREFIXED", "Write"),
            Grant(p, "Group", "passentry-bridge-restore-", "PREFIXED", "Describe"),
        ]
    )
    good = {**secure_kafka.kafka_settings(user, password), "sasl_username": user}
    bridge_settings = {"group_id": "", "source_id": source, "create_topics": False}

    def published() -> list[str]:
        return [_scan_id(m) for t in (scans, dlq) for m in read_committed(secure_kafka, t)]

    with RunningBridge(config_for(sim, good, topics, **bridge_settings), RunOptions(since_ms=0)):
        backlog = {s.id for s in sim.store.all_scans()}
        wait_for(lambda: backlog <= set(published()), 120, "the backlog")

    sim.store.generate(20)
    wrong = {**good, "sasl_password": "not-the-password"}
    caplog.clear()
    with caplog.at_level(logging.INFO):
        _, code = run_until_exit(config_for(sim, wrong, topics, **bridge_settings))
    assert code == 1
    assert_said_once(caplog, CREDENTIALS.format(user=user), password)

    acls.revoke(write)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        bridge, code = run_until_exit(config_for(sim, good, topics, **bridge_settings))
    assert code == 1
    reason = " ".join(bridge.service.health.readiness().reasons)
    assert f"User:{user} may not write to topic {scans} (TOPIC_AUTHORIZATION_FAILED" in reason
    assert f"grant it Write and Describe on --topic {scans} (see the README" in reason

    acls.grant(write)
    sim.store.generate(10)
    caplog.clear()
    with (
        caplog.at_level(logging.INFO, logger="bridge.runner"),
        RunningBridge(config_for(sim, good, topics, **bridge_settings), RunOptions()),
    ):
        expected = {s.id for s in sim.store.all_scans()}
        wait_for(lambda: expected <= set(published()), 120, "what came since")
    assert "resumed from checkpoint" in caplog.messages
    ids = published()
    assert len(ids) == len(set(ids)), "a scan was published twice"
    assert set(ids) == expected


def _scan_id(msg: Any) -> str:
    value = dict(msg.headers() or [])["scan-id"]
    assert isinstance(value, bytes)
    return value.decode()
