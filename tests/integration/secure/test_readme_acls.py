"""The README's least-privilege ACLs, granted by its own ``kafka-acls.sh`` commands (run
through Apache Kafka's AclCommand), are all the bridge needs, and none of them is more.

The commands are read from the README, so the documentation is what is tested: ``check``
finds every permission it needs, the bridge creates its topics (with the Create grant),
publishes a backlog, and after the Create grant is removed, ``check`` still passes and the
bridge restarts, resumes from its checkpoint (reading the state topic, and the scans topic
and the DLQ to rebuild its dedup window) and publishes what came since: every scan exactly once.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from bridge.checks import CheckResult, run_checks
from bridge.config import Config
from bridge.service import RunOptions
from passentry_simulator.app import SimulatorConfig
from passentry_simulator.server import SimulatorServer
from passentry_simulator.store import WorldConfig
from passentry_simulator.webhooks import render_event, sign
from tests.integration.harness import RunningBridge, bridge_config, wait_for
from tests.integration.secure.secure_kafka import (
    DEFAULT_GROUP,
    DEFAULT_TOPICS,
    KAFKA_LOCAL,
    AclAdmin,
    Grant,
    SecureKafka,
    parse_kafka_acls,
    read_committed,
    readme_acl_commands,
)
from tests.support import free_port, sample

SECRET = "whsec-readme-0123456789abcdef0123456789"


def localise(command: str, kafka: SecureKafka, topics: dict[str, str], group: str) -> list[str]:
    """The command with this broker, its admin config and this test's topic and group
    names (the inbox groups' prefix stays: it is the source id's)."""
    args = shlex.split(command)
    assert args[0] == "kafka-acls.sh"
    out = [str(KAFKA_LOCAL), "acls"]
    replace = {
        "--bootstrap-server": lambda _: kafka.bootstrap_servers,
        "--command-config": lambda _: str(kafka.admin_properties),
        "--topic": lambda name: topics[name],
        "--group": lambda name: group if name == DEFAULT_GROUP else name,
    }
    i = 1
    while i < len(args):
        out.append(args[i])
        if args[i] in replace and i + 1 < len(args):
            out.append(replace[args[i]](args[i + 1]))
            i += 1
        i += 1
    return out


def test_readme_acls_are_enough_for_the_bridge(
    secure_kafka: SecureKafka,
    acls: AclAdmin,
    session_environ: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    commands = readme_acl_commands()
    assert len(commands) == 9, commands
    tag = uuid.uuid4().hex[:8]
    topics = {name: f"readme-{tag}.{name}" for name in DEFAULT_TOPICS}
    group = f"readme-{tag}-group"
    principal = "User:bridge"
    acls.revoke_all(principal)

    localised = [localise(c, secure_kafka, topics, group) for c in commands]
    for argv in localised:
        done = subprocess.run(
            argv, env=session_environ, capture_output=True, text=True, timeout=300, check=False
        )
        assert done.returncode == 0, f"{shlex.join(argv[1:])}\n{done.stdout}\n{done.stderr}"
    granted = sorted(
        g for argv in localised for g in parse_kafka_acls(shlex.join(["kafka-acls.sh", *argv[2:]]))
    )
    create = [g for g in granted if g.operation == "Create"]
    assert {g.principal for g in granted} == {principal}
    assert create
    assert all(g.resource == "Topic" for g in create)
    acls.wait_present(granted)
    present = sorted(Grant.from_binding(b) for b in acls.present() if b.principal == principal)
    assert present == granted  # the README's grants, nothing more

    try:
        with SimulatorServer(
            SimulatorConfig(
                world=WorldConfig(readers=8, passes=100, seed=15, backlog=150, backlog_span_s=240),
                rate_limit=None,
            )
        ) as sim:
            port = free_port()
            config = bridge_config(
                sim.url,
                sim.token,
                secure_kafka.bootstrap_servers,
                scans_topic=topics["passentry.scans"],
                dlq_topic=topics["passentry.scans.dlq"],
                bridge={
                    "state_topic": topics["passentry.bridge.state"],
                    "source_id": "default",  # the README's transactional id
                    "create_topics": True,
                    "group_id": group,
                    "coordination_topic": topics["passentry.bridge.coordination"],
                    "webhook_topic": topics["passentry.bridge.webhooks"],
                    "webhook_port": port,
                    "http_host": "127.0.0.1",
                },
                kafka=secure_kafka.kafka_settings("bridge"),
                passentry={"webhook_secret": SECRET},
            )
            # check finds every permission, though no topic exists yet (they may be created).
            assert_kafka_checks_pass(config, creatable=len(DEFAULT_TOPICS))
            # First start, as a member of the group, with webhooks on: no topics yet, and
            # the bridge creates them (the Create grants). A webhook goes through the inbox.
            with RunningBridge(config, RunOptions(since_ms=0)) as bridge:
                backlog = {s.id for s in sim.store.all_scans()}
                wait_for(lambda: backlog <= _published(secure_kafka, topics), 120, "the backlog")
                # Ready: the receiver's inbox is known, so the webhook below is taken.
                wait_for(lambda: bridge.service.health.readiness().ok, 60, "readiness")
                (scan,) = sim.store.generate(1)
                body = render_event(str(uuid.uuid4()), scan.created_ms or 0, scan)
                answer = httpx.post(
                    f"http://127.0.0.1:{port}/webhooks/passentry/default",
                    content=body,
                    headers={"X-Webhook-Signature": sign(body, SECRET)},
                    timeout=30,
                )
                assert answer.status_code == 200
                taken = "passentry_bridge_webhook_events_total"
                metrics = bridge.service.metrics
                wait_for(
                    lambda: sum(sample(metrics, taken, outcome=o) for o in _OUTCOMES) == 1,
                    60,
                    "the owner to take the event from the inbox",
                )
            assert bridge.exit_code == 0
            # From now on the bridge runs without the Create grants.
            acls.revoke(create)
            assert_kafka_checks_pass(config, creatable=0)
            sim.store.generate(40)
            caplog.clear()
            with (
                caplog.at_level(logging.INFO, logger="bridge.runner"),
                RunningBridge(config, RunOptions()) as bridge,
            ):
                expected = {s.id for s in sim.store.all_scans()}
                wait_for(
                    lambda: (
                        expected <= _published(secure_kafka, topics) | _dead(secure_kafka, topics)
                    ),
                    120,
                    "the restart to publish what came since",
                )
            assert bridge.exit_code == 0
            assert "resumed from checkpoint" in caplog.messages
    finally:
        acls.revoke_all(principal)

    published = [_scan_id(m) for m in read_committed(secure_kafka, topics["passentry.scans"])]
    dead = [_scan_id(m) for m in read_committed(secure_kafka, topics["passentry.scans.dlq"])]
    assert len(published) == len(set(published)), "a scan was published twice"
    assert len(dead) == len(set(dead)), "a scan was dead-lettered twice"
    assert not set(published) & set(dead)
    assert set(published) | set(dead) == expected
    assert len(published) > 100
    assert read_committed(secure_kafka, topics["passentry.bridge.state"])


_OUTCOMES = ("published", "duplicate", "deferred")
KAFKA_ROWS = ("kafka tls", "kafka", "topic", "group", "txn id")


def assert_kafka_checks_pass(config: Config, *, creatable: int) -> None:
    """Every Kafka row of ``check`` is ok: TLS, the login, each topic, group and id."""
    rows = [r for r in run_checks(config) if r.name in KAFKA_ROWS]
    failed = [r for r in rows if not r.ok]
    assert not failed, failed
    names = {r.name for r in rows}
    assert names == set(KAFKA_ROWS), names
    topics = [r for r in rows if r.name == "topic"]
    assert len(topics) == len(DEFAULT_TOPICS)
    assert sum("will be created" in r.detail for r in topics) == creatable
    (txn,) = [r.detail for r in rows if r.name == "txn id"]
    assert txn == (
        "passentry-bridge.default: User:bridge may use it (init_transactions as"
        " passentry-bridge.default.check)"
    )
    assert _no_password(rows, config)


def _no_password(rows: list[CheckResult], config: Config) -> bool:
    password = config.kafka.sasl_password
    assert password is not None
    return not any(password.get_secret_value() in r.detail for r in rows)


def _published(kafka: SecureKafka, topics: dict[str, str]) -> set[str]:
    return {_scan_id(m) for m in read_committed(kafka, topics["passentry.scans"])}


def _dead(kafka: SecureKafka, topics: dict[str, str]) -> set[str]:
    return {_scan_id(m) for m in read_committed(kafka, topics["passentry.scans.dlq"])}


def _scan_id(msg: object) -> str:
    headers = dict(msg.headers() or [])  # type: ignore[attr-defined]
    value = headers["scan-id"]
    assert isinstance(value, bytes)
    return value.decode()


def test_readme_names_the_default_topics() -> None:
    """The README's commands name exactly the bridge's default topics and transactional id."""
    from bridge.config import BridgeSettings

    defaults = BridgeSettings()
    topics = {
        defaults.scans_topic,
        defaults.dlq_topic,
        defaults.state_topic,
        defaults.coordination_topic,
        defaults.webhook_topic,
    }
    assert topics == set(DEFAULT_TOPICS)
    grants = [g for c in readme_acl_commands() for g in parse_kafka_acls(c)]
    assert {g.name for g in grants if g.resource == "Topic"} == topics
    # Prefixed: the live id, and the backfill, repair and check ids made from it.
    assert {(g.name, g.pattern) for g in grants if g.resource == "TransactionalId"} == {
        (f"passentry-bridge.{defaults.source_id}", "PREFIXED")
    }
    assert {(g.name, g.pattern) for g in grants if g.resource == "Group"} == {
        ("passentry-bridge-restore-", "PREFIXED"),
        (defaults.group_id, "LITERAL"),
        ("passentry-bridge.inbox.", "PREFIXED"),
    }
    assert Path(KAFKA_LOCAL).exists()
