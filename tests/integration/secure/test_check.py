"""``passentry-bridge check`` against the secure broker: TLS, the login and each permission
the bridge needs are separate rows, and a failing row names exactly what is missing.

The grants are the README's own (its kafka-acls.sh commands, parsed and given to a fresh user
for this test's topics and group); each case leaves out one command's grants.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from bridge.checks import CheckResult, run_checks
from bridge.config import Config
from passentry_simulator.app import SimulatorConfig
from passentry_simulator.server import SimulatorServer
from passentry_simulator.store import WorldConfig
from tests.integration.harness import bridge_config
from tests.integration.secure.secure_kafka import (
    DEFAULT_GROUP,
    DEFAULT_TOPICS,
    AclAdmin,
    Grant,
    SecureKafka,
    parse_kafka_acls,
    readme_acl_commands,
)

KAFKA_ROWS = ("kafka tls", "kafka", "topic", "group", "txn id")


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    world = WorldConfig(readers=2, passes=10, seed=3, backlog=5, backlog_span_s=60)
    with SimulatorServer(SimulatorConfig(world=world, rate_limit=None)) as server:
        yield server


@dataclass
class World:
    kafka: SecureKafka
    user: str
    password: str
    topics: dict[str, str]  # the README's topic name -> this test's
    group: str
    sim: SimulatorServer

    def config(self, **kafka: Any) -> Config:
        t = self.topics
        return bridge_config(
            self.sim.url,
            self.sim.token,
            kafka.get("bootstrap_servers", self.kafka.bootstrap_servers),
            scans_topic=t["passentry.scans"],
            dlq_topic=t["passentry.scans.dlq"],
            bridge={
                "state_topic": t["passentry.bridge.state"],
                "source_id": "default",
                "group_id": self.group,
                "coordination_topic": t["passentry.bridge.coordination"],
                "webhook_topic": t["passentry.bridge.webhooks"],
            },
            kafka={
                **self.kafka.kafka_settings(self.kafka.super_user),
                "sasl_username": self.user,
                "sasl_password": self.password,
                **kafka,
            },
            passentry={"webhook_secret": "whsec-check-0123456789abcdef0123456789"},
        )

    def readme_grants(self, command: str) -> list[Grant]:
        """The command's grants, for this test's user, topics and group."""
        return [
            Grant(
                f"User:{self.user}",
                g.resource,
                self.topics.get(g.name, self.group if g.name == DEFAULT_GROUP else g.name),
                g.pattern,
                g.operation,
            )
            for g in parse_kafka_acls(command)
        ]


@pytest.fixture
def world(
    secure_kafka: SecureKafka,
    kafka_user: tuple[str, str],
    secure_topic: Callable[..., str],
    sim: SimulatorServer,
) -> World:
    topics = {
        name: secure_topic(1, {"cleanup.policy": "compact"} if name.endswith("state") else None)
        for name in DEFAULT_TOPICS
    }
    return World(secure_kafka, *kafka_user, topics, f"check-{uuid.uuid4().hex[:8]}", sim)


def kafka_rows(config: Config) -> list[CheckResult]:
    return [r for r in run_checks(config) if r.name in KAFKA_ROWS]


COMMANDS = readme_acl_commands()


def _label(command: str) -> str:
    grants = parse_kafka_acls(command)
    ops = sorted({g.operation for g in grants})
    return f"{'+'.join(ops)} on {grants[0].resource} {grants[0].name}"


@pytest.mark.parametrize("left_out", COMMANDS, ids=[_label(c) for c in COMMANDS])
def test_each_missing_readme_grant_is_named(world: World, acls: AclAdmin, left_out: str) -> None:
    acls.grant([g for c in COMMANDS if c != left_out for g in world.readme_grants(c)])
    rows = kafka_rows(world.config())
    failed = [r for r in rows if not r.ok]
    missing = world.readme_grants(left_out)
    if all(g.operation == "Create" for g in missing):
        # The topics exist: creating them is never needed.
        assert not failed, failed
        return
    assert failed
    for row in failed:
        assert any(g.name in row.detail for g in missing), (row, missing)
        assert "grant it" in row.detail
        assert f"User:{world.user}" in row.detail
        assert world.password not in row.detail
    for grant in missing:
        assert any(grant.name in r.detail for r in failed), grant


def test_all_readme_grants_pass(world: World, acls: AclAdmin) -> None:
    acls.grant([g for c in COMMANDS for g in world.readme_grants(c)])
    rows = kafka_rows(world.config())
    assert all(r.ok for r in rows), [r for r in rows if not r.ok]
    # TLS, the login, 5 topics, 3 groups (restore prefix, the group, the inbox) and the id.
    assert [r.name for r in rows].count("topic") == 5
    assert [r.name for r in rows].count("group") == 3


def test_a_wrong_password_fails_the_login_row_fast(world: World) -> None:
    started = time.monotonic()
    rows = kafka_rows(world.config(sasl_password="not-the-password"))
    assert time.monotonic() - started < 8  # the first refusal, not a timeout
    assert [(r.name, r.ok) for r in rows] == [("kafka tls", True), ("kafka", False)]
    assert rows[1].detail == (
        f"Kafka refused the SASL credentials (SCRAM-SHA-512) for user {world.user}:"
        " check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
    )


def test_tls_rows_tell_a_wrong_ca_from_a_wrong_host(world: World) -> None:
    k = world.kafka
    wrong_ca = kafka_rows(world.config(ssl_ca_location=str(k.wrong_ca)))
    assert [(r.name, r.ok) for r in wrong_ca] == [("kafka tls", False), ("kafka", False)]
    assert "is not signed by the CA in KAFKA_SSL_CA_LOCATION" in wrong_ca[0].detail
    host = k.wrong_host_bootstrap_servers
    wrong_host = kafka_rows(world.config(bootstrap_servers=host))
    assert [(r.name, r.ok) for r in wrong_host] == [("kafka tls", False), ("kafka", False)]
    assert f"the certificate of {host} does not name 127.0.0.1" in wrong_host[0].detail
    assert "check KAFKA_BOOTSTRAP_SERVERS" in wrong_host[0].detail


def test_a_mechanism_the_brokers_do_not_offer(world: World) -> None:
    rows = kafka_rows(world.config(sasl_mechanism="SCRAM-SHA-256"))
    assert rows[1].detail == (
        "the Kafka brokers do not offer SASL mechanism SCRAM-SHA-256 (they offer"
        " SCRAM-SHA-512): check KAFKA_SASL_MECHANISM"
    )


def test_one_transactional_id_row_per_source(world: World, acls: AclAdmin) -> None:
    acls.grant([g for c in COMMANDS for g in world.readme_grants(c)])
    config = world.config()
    (default,) = config.sources
    other = dataclasses.replace(default, id="other")
    rows = kafka_rows(dataclasses.replace(config, sources=(default, other)))
    ids = [(r.ok, r.detail.split(":")[0]) for r in rows if r.name == "txn id"]
    assert ids == [(True, "passentry-bridge.default"), (False, "passentry-bridge.other")]
    (refused,) = [r.detail for r in rows if r.name == "txn id" and not r.ok]
    assert refused.endswith(
        "grant it Write and Describe on --transactional-id passentry-bridge.other"
        " --resource-pattern-type prefixed"
    )
