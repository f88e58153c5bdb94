"""Fixtures for the tests against the secure broker (``scripts/kafka-local --secure``).

``secure_kafka`` (session): the running SASL_SSL broker, started on first use beside the
plaintext one (its own instance dir, .local/kafka-secure, or KAFKA_LOCAL_SECURE_DIR) and stopped
at session end only if this session started it. It always runs from the local jars: these
tests need a broker that checks passwords, certificates and ACLs, which neither
KAFKA_BOOTSTRAP_SERVERS nor the testcontainers broker provides.
``acls`` (session): an ``AclAdmin`` acting as the super user.
``kafka_user`` (function): a fresh SCRAM user ``(name, password)`` with no ACLs; its ACLs are
revoked at teardown.
``secure_topic`` (function): factory ``secure_topic(partitions=3, config=None) -> name``,
created by the super user and deleted at teardown.
``setup`` (function): a ``Setup``: a fresh user, a scans and a state topic with one committed
record each, and a transactional id; no ACLs yet.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from tests.integration.secure.secure_kafka import (
    AclAdmin,
    SecureKafka,
    Setup,
    running_secure_kafka,
)


@pytest.fixture(scope="session")
def secure_kafka(session_environ: dict[str, str]) -> Iterator[SecureKafka]:
    env = dict(session_environ)
    # KAFKA_LOCAL_DIR names the plaintext instance; the secure one has its own.
    env.pop("KAFKA_LOCAL_DIR", None)
    if env.get("KAFKA_LOCAL_SECURE_DIR"):
        env["KAFKA_LOCAL_DIR"] = env["KAFKA_LOCAL_SECURE_DIR"]
    try:
        with running_secure_kafka(env) as kafka:
            yield kafka
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def acls(secure_kafka: SecureKafka) -> AclAdmin:
    return AclAdmin(secure_kafka)


@pytest.fixture(scope="session")
def secure_admin(secure_kafka: SecureKafka) -> AdminClient:
    return secure_kafka.admin()


@pytest.fixture
def kafka_user(acls: AclAdmin) -> Iterator[tuple[str, str]]:
    name, password = acls.add_user()
    yield name, password
    acls.revoke_all(f"User:{name}")


@pytest.fixture
def secure_topic(secure_admin: AdminClient) -> Iterator[Callable[..., str]]:
    created: list[str] = []

    def create(partitions: int = 3, config: dict[str, str] | None = None) -> str:
        name = f"secure-{uuid.uuid4().hex[:12]}"
        topic = NewTopic(name, partitions, 1, config=config or {})
        secure_admin.create_topics([topic], operation_timeout=30)[name].result(timeout=60)
        created.append(name)
        return name

    yield create
    if created:
        with contextlib.suppress(Exception):  # best effort
            for future in secure_admin.delete_topics(created, operation_timeout=30).values():
                future.result(timeout=60)


@pytest.fixture
def setup(
    secure_kafka: SecureKafka, kafka_user: tuple[str, str], secure_topic: Callable[..., str]
) -> Setup:
    scans = secure_topic(partitions=1)
    state = secure_topic(partitions=1, config={"cleanup.policy": "compact"})
    # One committed record on each, as a restarting bridge finds them.
    producer = Producer(secure_kafka.conf("admin", transactional_id=f"seed-{uuid.uuid4()}"))
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(scans, b"scan", b"reader")
    producer.produce(state, b"checkpoint", b"source")
    producer.commit_transaction(30)
    return Setup(
        secure_kafka, *kafka_user, scans, state, f"passentry-bridge.{uuid.uuid4().hex[:8]}"
    )
