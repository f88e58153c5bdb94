"""Each missing ACL, met by the bridge's own Kafka components, is one KafkaAuthorizationError
that names the principal, the resource and the kafka-acls.sh grant that fixes it.

Each test gives a fresh user every grant of the bridge's set but one (``setup``, as in
test_acl_failures.py, which pins what librdkafka itself reports), then drives the component
that meets the refusal: the producer (transactional id, Write at commit, the inbox group's
position), the checkpoint store (Read on the state and output topics, the restore groups),
the topic manager (Create, Describe), the group member and the inbox reader.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid

import pytest

from bridge.dedup import DedupWindow, RejectMemory
from bridge.errors import KafkaAuthorizationError, KafkaRetriableError, TopicMissingError
from bridge.kafka.checkpoint import CheckpointStore
from bridge.kafka.membership import GroupSettings, Membership
from bridge.kafka.producer import Publisher, producer_config
from bridge.kafka.records import OutRecord
from bridge.kafka.topics import TopicManager
from bridge.ops.health import MemberHealth
from bridge.ops.metrics import Metrics
from bridge.webhook.inbox import InboxReader
from tests.integration.harness import wait_for
from tests.integration.secure.secure_kafka import (
    AclAdmin,
    Grant,
    Setup,
    grant_all_but,
)

README = "see the README: Kafka with SASL_SSL, TLS verification and ACLs"


def publisher(setup: Setup) -> Publisher:
    conf = producer_config(
        setup.conf(),
        transactional_id=setup.txn_id,
        compression="lz4",
        linger_ms=5,
        message_timeout_ms=20_000,
        transaction_timeout_ms=30_000,
    )
    return Publisher(conf, Metrics(), call_timeout_s=30)


def record(topic: str) -> OutRecord:
    return OutRecord(topic, b"reader", b"value", [])


def assert_names_the_grant(exc: KafkaAuthorizationError, setup: Setup, grant: str) -> None:
    message = str(exc)
    assert message.startswith(f"User:{setup.user} may not ")
    assert f"grant it {grant} ({README})" in message
    assert setup.password not in message


def test_no_transactional_id_acl(acls: AclAdmin, setup: Setup) -> None:
    grant_all_but(acls, setup, lambda g: g.resource == "TransactionalId")
    with pytest.raises(KafkaAuthorizationError) as raised:
        publisher(setup).init()
    assert f"may not use transactional id {setup.txn_id}" in str(raised.value)
    assert "(TRANSACTIONAL_ID_AUTHORIZATION_FAILED; Describe is missing)" in str(raised.value)
    grant = (
        f"Write and Describe on --transactional-id {setup.txn_id} --resource-pattern-type prefixed"
    )
    assert_names_the_grant(raised.value, setup, grant)


def test_describe_but_no_write_on_the_transactional_id(acls: AclAdmin, setup: Setup) -> None:
    grant_all_but(acls, setup, lambda g: g.resource == "TransactionalId")
    acls.grant(
        [Grant(f"User:{setup.user}", "TransactionalId", setup.txn_id, "LITERAL", "Describe")]
    )
    with pytest.raises(KafkaAuthorizationError) as raised:
        publisher(setup).init()
    assert "Write is missing" in str(raised.value)


def test_no_write_on_a_topic_names_that_topic_not_the_abort(acls: AclAdmin, setup: Setup) -> None:
    """The commit is refused; the abort that follows may turn fatal, and must not hide why."""
    grant_all_but(acls, setup, lambda g: g.name == setup.scans and g.operation == "Write")
    pub = publisher(setup)
    pub.init()
    with pytest.raises(KafkaAuthorizationError) as raised:
        pub.send([record(setup.scans)], record(setup.state), timeout_s=30)
    message = str(raised.value)
    assert f"may not write to topic {setup.scans} (TOPIC_AUTHORIZATION_FAILED; at commit" in message
    assert setup.state not in message  # it may write there: the probe narrowed it down
    assert_names_the_grant(raised.value, setup, f"Write and Describe on --topic {setup.scans}")
    # Nothing of it is visible, and with the grant back a new producer carries on.
    acls.grant([Grant(f"User:{setup.user}", "Topic", setup.scans, "LITERAL", "Write")])
    again = publisher(setup)
    again.init()
    assert again.send([record(setup.scans)], record(setup.state), timeout_s=30) == {setup.scans: 1}


def test_no_read_on_the_state_topic(acls: AclAdmin, setup: Setup) -> None:
    grant_all_but(acls, setup, lambda g: g.name == setup.state and g.operation == "Read")
    store = CheckpointStore(setup.conf(), setup.state, "src")
    with pytest.raises(KafkaAuthorizationError) as raised:
        store.read(timeout_s=20)
    assert f"may not read topic {setup.state} (TOPIC_AUTHORIZATION_FAILED)" in str(raised.value)
    assert_names_the_grant(raised.value, setup, f"Read and Describe on --topic {setup.state}")


def test_no_read_on_an_output_topic_when_rebuilding(acls: AclAdmin, setup: Setup) -> None:
    grant_all_but(acls, setup, lambda g: g.name == setup.scans and g.operation == "Read")
    store = CheckpointStore(setup.conf(), setup.state, "src")
    window = DedupWindow(3_600_000)
    # A watermark minted now (a UUIDv7's top 48 bits are its ms): the window then starts
    # one lookback before now, before the seed record.
    window.reset(int(time.time() * 1000) << 80)
    with pytest.raises(KafkaAuthorizationError) as raised:
        store.rebuild(window, RejectMemory(60), [setup.scans], setup.scans, timeout_s=20)
    assert f"may not read topic {setup.scans}" in str(raised.value)


def test_no_describe_on_the_restore_groups(acls: AclAdmin, setup: Setup) -> None:
    grant_all_but(acls, setup, lambda g: g.resource == "Group")
    store = CheckpointStore(setup.conf(), setup.state, "src")
    with pytest.raises(KafkaAuthorizationError) as raised:
        store.read(timeout_s=20)
    assert "may not use the consumer groups passentry-bridge-restore-*" in str(raised.value)
    grant = "Describe on --group passentry-bridge-restore- --resource-pattern-type prefixed"
    assert_names_the_grant(raised.value, setup, grant)


def test_no_create_on_a_missing_topic(acls: AclAdmin, setup: Setup) -> None:
    grant_all_but(acls, setup, lambda g: g.resource == "TransactionalId")
    missing = f"secure-missing-{uuid.uuid4().hex[:8]}"
    topics = TopicManager(setup.conf(), create=True, partitions=1, replication_factor=-1)
    with pytest.raises(KafkaAuthorizationError) as raised:
        topics.ensure([missing])
    assert f"may not create topic {missing}" in str(raised.value)
    assert_names_the_grant(raised.value, setup, f"Create on --topic {missing}")


def test_a_hidden_topic_is_not_called_missing(acls: AclAdmin, setup: Setup) -> None:
    """No ACL at all on an existing topic hides it; with creation off, say so rather than
    "does not exist"; a topic that really is missing still is TopicMissingError."""
    grant_all_but(acls, setup, lambda g: g.name == setup.scans)
    topics = TopicManager(setup.conf(), create=False, partitions=1, replication_factor=-1)
    with pytest.raises(KafkaAuthorizationError) as raised:
        topics.ensure([setup.scans])
    assert f"may not describe topic {setup.scans}" in str(raised.value)
    acls.grant([Grant(f"User:{setup.user}", "Topic", "secure-gone-", "PREFIXED", "Describe")])
    with pytest.raises(TopicMissingError):
        topics.ensure([f"secure-gone-{uuid.uuid4().hex[:8]}"])


def test_no_read_on_the_consumer_group_leaves_the_member_unready(
    acls: AclAdmin, setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    grant_all_but(acls, setup, lambda g: g.resource == "TransactionalId")
    group = f"secure-group-{uuid.uuid4().hex[:8]}"
    health = MemberHealth()
    member = Membership(
        setup.conf(),
        GroupSettings(group, setup.scans, 1, 10_000),
        ["src"],
        start=lambda ids: None,
        stop=lambda ids: None,
        hold=lambda ids: None,
        release=lambda ids: None,
        metrics=Metrics(),
        health=health,
    )
    stop = threading.Event()
    thread = threading.Thread(target=member.run, args=(stop,), daemon=True)
    with caplog.at_level(logging.ERROR, logger="bridge.kafka.membership"):
        thread.start()
        try:
            wait_for(lambda: not health.readiness().ok and _refused(health), 30, "the refusal")
            reasons = " ".join(health.readiness().reasons)
            assert f"may not join consumer group {group} (GROUP_AUTHORIZATION_FAILED)" in reasons
            assert f"grant it Read and Describe on --group {group} ({README})" in reasons
        finally:
            stop.set()
            thread.join(30)
    said = [r for r in caplog.records if r.name == "bridge.kafka.membership"]
    assert len(said) == 1, [r.getMessage() for r in said]


def test_no_read_on_the_coordination_topic_leaves_the_member_unready(
    acls: AclAdmin, setup: Setup
) -> None:
    group = f"secure-group-{uuid.uuid4().hex[:8]}"
    p = f"User:{setup.user}"
    acls.grant(
        [
            Grant(p, "Group", group, "LITERAL", "Read"),
            Grant(p, "Topic", setup.scans, "LITERAL", "Describe"),
        ]
    )
    health = MemberHealth()
    member = Membership(
        setup.conf(),
        GroupSettings(group, setup.scans, 1, 10_000),
        ["src"],
        start=lambda ids: None,
        stop=lambda ids: None,
        hold=lambda ids: None,
        release=lambda ids: None,
        metrics=Metrics(),
        health=health,
    )
    stop = threading.Event()
    thread = threading.Thread(target=member.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: _refused(health), 30, "the refusal")
    finally:
        stop.set()
        thread.join(30)
    reasons = " ".join(health.readiness().reasons)
    assert f"may not read topic {setup.scans} as a member of {group}" in reasons
    assert f"grant it Read and Describe on --topic {setup.scans}" in reasons


def _refused(health: MemberHealth) -> bool:
    return any("may not" in r for r in health.readiness().reasons)


def test_no_read_on_the_inbox_topic(acls: AclAdmin, setup: Setup) -> None:
    p = f"User:{setup.user}"
    acls.grant(
        [
            Grant(p, "Group", "passentry-bridge.inbox.", "PREFIXED", "Describe"),
            Grant(p, "Topic", setup.scans, "LITERAL", "Describe"),
        ]
    )
    reader = InboxReader(setup.conf(), setup.scans, "src", lambda: None)
    reader.open(1)
    try:
        with pytest.raises(KafkaAuthorizationError) as raised:
            _take_until_refused(reader)
    finally:
        reader.close()
    assert f"may not read topic {setup.scans}" in str(raised.value)


def _take_until_refused(reader: InboxReader) -> None:
    for _ in range(40):  # the Fetch is refused within a few polls
        with contextlib.suppress(KafkaRetriableError):  # a coordinator still loading
            reader.take(0.5, 0.0)


def test_no_describe_on_the_inbox_groups(acls: AclAdmin, setup: Setup) -> None:
    """The inbox reader's consumer looks up its group's coordinator, and reads the position
    older versions kept there when a checkpoint holds none: Describe on the group."""
    p = f"User:{setup.user}"
    acls.grant([Grant(p, "Topic", setup.scans, "LITERAL", op) for op in ("Read", "Describe")])
    reader = InboxReader(setup.conf(), setup.scans, "src", lambda: None)
    reader.open(1)
    try:
        with pytest.raises(KafkaAuthorizationError) as raised:
            _take_until_refused(reader)
    finally:
        reader.close()
    assert "may not use the consumer groups passentry-bridge.inbox.*" in str(raised.value)
    grant = "Describe on --group passentry-bridge.inbox. --resource-pattern-type prefixed"
    assert_names_the_grant(raised.value, setup, grant)
