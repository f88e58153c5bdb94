"""What librdkafka reports for each ACL the bridge needs when it is missing, and the probes a
``check`` can run to find a missing one without side effects.

Each test gives a fresh user every ACL of the bridge's set but the one under test, then makes
the calls the bridge makes. The assertions pin librdkafka's behaviour (code, flags, which call)
that the bridge's error handling relies on.
"""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AclOperation, AdminClient, NewTopic

from bridge.avro.decoder import RecordDecoder
from bridge.cli.tail import tail_lines
from bridge.kafka.tailing import StartAt, TailSpec
from tests.integration.secure.secure_kafka import (
    AclAdmin,
    Grant,
    Setup,
    bridge_grants,
    grant_all_but,
)


def read_first_error(consumer: Consumer, partitions: list[TopicPartition]) -> KafkaError | None:
    """Read to the end; the first error other than end-of-partition, or None."""
    consumer.assign(partitions)
    at_end: set[tuple[str, int]] = set()
    deadline = time.monotonic() + 20
    try:
        while len(at_end) < len(partitions):
            assert time.monotonic() < deadline, "neither an error nor the end within 20s"
            for msg in consumer.consume(10, timeout=0.5):
                err = msg.error()
                if err is None:
                    continue
                if err.code() != KafkaError._PARTITION_EOF:
                    return err
                at_end.add((msg.topic() or "", msg.partition() or 0))
    finally:
        consumer.close()
    return None


def test_the_full_set_works(acls: AclAdmin, setup: Setup) -> None:
    acls.grant(bridge_grants(setup))
    producer = setup.producer()
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(setup.scans, b"v", b"k")
    producer.produce(setup.state, b"v", b"k")
    producer.commit_transaction(30)
    parts = [TopicPartition(t, 0, OFFSET_BEGINNING) for t in (setup.scans, setup.state)]
    assert read_first_error(setup.reader(), parts) is None


def test_no_describe_on_the_transactional_id(acls: AclAdmin, setup: Setup) -> None:
    """Fatal at once, in init_transactions: the coordinator lookup is refused."""
    grant_all_but(acls, setup, lambda g: g.resource == "TransactionalId")
    started = time.monotonic()
    with pytest.raises(KafkaException) as raised:
        setup.producer().init_transactions(30)
    err = raised.value.args[0]
    assert time.monotonic() - started < 10
    assert err.code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    assert err.fatal()
    assert "Failed to find transaction coordinator" in err.str()


def test_describe_but_no_write_on_the_transactional_id(acls: AclAdmin, setup: Setup) -> None:
    """Fatal at once, in init_transactions: the producer id is refused."""
    grant_all_but(acls, setup, lambda g: g.resource == "TransactionalId")
    acls.grant(
        [Grant(f"User:{setup.user}", "TransactionalId", setup.txn_id, "LITERAL", "Describe")]
    )
    with pytest.raises(KafkaException) as raised:
        setup.producer().init_transactions(30)
    err = raised.value.args[0]
    assert err.code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    assert err.fatal()
    assert "Failed to acquire transactional PID" in err.str()


def test_no_write_on_a_topic(acls: AclAdmin, setup: Setup) -> None:
    """produce() accepts the record; commit_transaction fails with an abortable
    TOPIC_AUTHORIZATION_FAILED. When no partition of the transaction was added, the abort that
    follows turns fatal (INVALID_TXN_STATE): the producer is lost and the error it then shows
    no longer names the cause."""
    grant_all_but(acls, setup, lambda g: g.name == setup.scans and g.operation == "Write")
    producer = setup.producer()
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(setup.scans, b"v", b"k")  # no error here
    with pytest.raises(KafkaException) as raised:
        producer.commit_transaction(30)
    err = raised.value.args[0]
    assert err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert err.txn_requires_abort()
    assert not err.fatal()
    assert "Failed to add partition(s) to transaction" in err.str()
    with pytest.raises(KafkaException) as aborted:
        producer.abort_transaction(30)
    assert aborted.value.args[0].code() == KafkaError.INVALID_TXN_STATE
    assert aborted.value.args[0].fatal()


def test_no_read_on_the_state_topic(acls: AclAdmin, setup: Setup) -> None:
    """Start-up cannot read its checkpoint: a Fetch error on the consumer, not fatal. A first
    start does not notice (there is nothing to read yet); the first restart does."""
    grant_all_but(acls, setup, lambda g: g.name == setup.state and g.operation == "Read")
    err = read_first_error(setup.reader(), [TopicPartition(setup.state, 0, OFFSET_BEGINNING)])
    assert err is not None
    assert err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert not err.fatal()
    assert "Fetch from broker" in err.str()


def test_no_read_on_the_scans_topic(acls: AclAdmin, setup: Setup) -> None:
    """Rebuilding the dedup window reads the output topics back: Read is needed there too.
    Finding where to start (ListOffsets) only needs Describe."""
    grant_all_but(acls, setup, lambda g: g.name == setup.scans and g.operation == "Read")
    consumer = setup.reader()
    low, high = consumer.get_watermark_offsets(TopicPartition(setup.scans, 0), timeout=10)
    assert high > low
    err = read_first_error(consumer, [TopicPartition(setup.scans, 0, OFFSET_BEGINNING)])
    assert err is not None
    assert err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_no_describe_on_the_restore_groups(acls: AclAdmin, setup: Setup) -> None:
    """Even an assigned consumer that never commits looks up its group coordinator."""
    grant_all_but(acls, setup, lambda g: g.resource == "Group")
    err = read_first_error(setup.reader(), [TopicPartition(setup.state, 0, OFFSET_BEGINNING)])
    assert err is not None
    assert err.code() == KafkaError.GROUP_AUTHORIZATION_FAILED
    assert "FindCoordinator" in err.str()


def test_no_acl_at_all_on_a_topic_makes_it_look_missing(acls: AclAdmin, setup: Setup) -> None:
    """list_topics (what the bridge's topic check uses) hides it; describe_topics names the
    real reason; create_topics is refused rather than answered "already exists"."""
    grant_all_but(acls, setup, lambda g: g.name == setup.scans)
    admin = AdminClient(setup.conf())
    assert setup.scans not in admin.list_topics(timeout=10).topics
    described = admin.describe_topics(TopicCollection([setup.scans]))[setup.scans]
    with pytest.raises(KafkaException) as raised:
        described.result(timeout=10)
    assert raised.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    with pytest.raises(KafkaException) as created:
        admin.create_topics([NewTopic(setup.scans, 1, -1)])[setup.scans].result(timeout=10)
    assert created.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


# --- probes for `check`: no side effects --------------------------------------------------


def test_describe_topics_lists_the_operations_the_user_may_do(acls: AclAdmin, setup: Setup) -> None:
    p = f"User:{setup.user}"
    acls.grant(
        [
            Grant(p, "Topic", setup.scans, "LITERAL", "Write"),
            Grant(p, "Topic", setup.state, "LITERAL", "Read"),
            Grant(p, "Topic", setup.state, "LITERAL", "Create"),
        ]
    )
    admin = AdminClient(setup.conf())
    futures = admin.describe_topics(
        TopicCollection([setup.scans, setup.state]), include_authorized_operations=True
    )
    ops = {t: set(f.result(timeout=10).authorized_operations) for t, f in futures.items()}
    assert ops[setup.scans] == {AclOperation.DESCRIBE, AclOperation.WRITE}
    assert ops[setup.state] == {AclOperation.DESCRIBE, AclOperation.READ, AclOperation.CREATE}


def test_validate_only_create_tells_whether_a_missing_topic_may_be_created(
    acls: AclAdmin, setup: Setup, secure_admin: AdminClient
) -> None:
    allowed, denied = (f"secure-missing-{uuid.uuid4().hex[:8]}" for _ in range(2))
    acls.grant([Grant(f"User:{setup.user}", "Topic", allowed, "LITERAL", "Create")])
    admin = AdminClient(setup.conf())
    futures = admin.create_topics(
        [NewTopic(allowed, 3, -1), NewTopic(denied, 3, -1)], validate_only=True
    )
    futures[allowed].result(timeout=10)
    with pytest.raises(KafkaException) as raised:
        futures[denied].result(timeout=10)
    assert raised.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    topics = secure_admin.list_topics(timeout=10).topics
    assert allowed not in topics
    assert denied not in topics


def test_describe_consumer_groups_probes_the_prefixed_group_acl(
    acls: AclAdmin, setup: Setup
) -> None:
    acls.grant(
        [Grant(f"User:{setup.user}", "Group", "passentry-bridge-restore-", "PREFIXED", "Describe")]
    )
    admin = AdminClient(setup.conf())
    probe = "passentry-bridge-restore-check"
    found = admin.describe_consumer_groups([probe], include_authorized_operations=True)
    group = found[probe].result(timeout=10)
    assert set(group.authorized_operations) == {AclOperation.DESCRIBE}
    other = admin.describe_consumer_groups(["passentry-bridge"])["passentry-bridge"]
    with pytest.raises(KafkaException) as raised:
        other.result(timeout=10)
    assert raised.value.args[0].code() == KafkaError.GROUP_AUTHORIZATION_FAILED


def test_tail_needs_read_and_the_prefixed_tail_group(acls: AclAdmin, setup: Setup) -> None:
    p = f"User:{setup.user}"
    acls.grant(
        [
            Grant(p, "Topic", setup.scans, "LITERAL", "Read"),
            Grant(p, "Group", "passentry-bridge-tail-", "PREFIXED", "Describe"),
        ]
    )
    lines = list(
        tail_lines(
            setup.conf(),
            TailSpec(setup.scans, StartAt("earliest"), max_records=1, idle_exit_s=20),
            RecordDecoder(),
        )
    )
    assert len(lines) == 1
    assert "undecodable" in lines[0]  # the seed record is not Avro; it was read all the same
