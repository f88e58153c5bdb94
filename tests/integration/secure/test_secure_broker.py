"""The secure broker checks passwords, certificates and ACLs, and what librdkafka reports when
one of them is wrong.

librdkafka reports a failed authentication or TLS handshake only through ``error_cb`` (and its
log), once per reconnect attempt, never as fatal. The call that needed the connection just
times out: ``list_topics`` with ``_TRANSPORT``, ``init_transactions`` with a retriable
``_TIMED_OUT``. A wrong CA and a host name missing from the certificate produce the same
librdkafka text; Python's ``ssl`` module tells them apart.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from bridge.kafka.access import refusal_kind
from tests.integration.harness import wait_for
from tests.integration.secure.secure_kafka import AclAdmin, Grant, SecureKafka


def first_connection_error(conf: dict[str, Any], timeout_s: float = 20.0) -> KafkaError:
    """The first error librdkafka reports through ``error_cb`` for this configuration."""
    errors: list[KafkaError] = []
    admin = AdminClient({**conf, "error_cb": errors.append})
    deadline = time.monotonic() + timeout_s
    while not errors:
        assert time.monotonic() < deadline, f"no error reported within {timeout_s}s"
        admin.poll(0.1)
    with pytest.raises(KafkaException) as raised:
        admin.list_topics(timeout=1)
    # The call itself only says the transport failed: the cause is in error_cb.
    assert raised.value.args[0].code() == KafkaError._TRANSPORT
    return errors[0]


def test_admin_is_a_super_user(secure_kafka: SecureKafka, secure_admin: AdminClient) -> None:
    name = f"secure-admin-{uuid.uuid4().hex[:8]}"
    secure_admin.create_topics([NewTopic(name, 1, 1)])[name].result(timeout=30)
    try:
        # A topic created a moment ago can take a while to show in the metadata (a busy
        # broker): created is proven by the listing, which may lag.
        wait_for(lambda: name in secure_admin.list_topics(timeout=10).topics, 30, f"{name} listed")
        assert secure_admin.describe_cluster().result(timeout=10).cluster_id
    finally:
        secure_admin.delete_topics([name])[name].result(timeout=30)


def test_authenticated_user_without_acls_can_do_nothing(
    secure_kafka: SecureKafka, kafka_user: tuple[str, str], secure_topic: Any
) -> None:
    """allow.everyone.if.no.acl.found=false: authenticated is not authorized."""
    user, password = kafka_user
    topic = secure_topic(partitions=1)
    admin = AdminClient(secure_kafka.conf(user, password))
    metadata = admin.list_topics(timeout=10)
    assert len(metadata.brokers) == 1  # authenticated: the broker answers
    assert topic not in metadata.topics  # but hides what the user may not describe
    name = f"secure-denied-{uuid.uuid4().hex[:8]}"
    with pytest.raises(KafkaException) as raised:
        admin.create_topics([NewTopic(name, 1, 1)])[name].result(timeout=30)
    assert raised.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_transactional_produce_and_read_committed_with_granted_acls(
    secure_kafka: SecureKafka, acls: AclAdmin, kafka_user: tuple[str, str], secure_topic: Any
) -> None:
    user, password = kafka_user
    principal = f"User:{user}"
    topic = secure_topic(partitions=2)
    txn_id = f"secure-txn-{uuid.uuid4().hex[:8]}"
    acls.grant(
        [
            Grant(principal, "Topic", topic, "LITERAL", "Write"),
            Grant(principal, "Topic", topic, "LITERAL", "Read"),
            Grant(principal, "TransactionalId", txn_id, "LITERAL", "Write"),
            Grant(principal, "Group", "secure-reader-", "PREFIXED", "Describe"),
        ]
    )
    # No cluster ACL at all, IdempotentWrite included: the transactional id is enough.
    assert not [b for b in acls.present() if b.principal == principal and b.name == "kafka-cluster"]
    conf = secure_kafka.conf(user, password)
    producer = Producer({**conf, "transactional.id": txn_id})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, b"committed", b"k")
    producer.commit_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, b"aborted", b"k")
    producer.flush(30)
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, b"committed too", b"k")
    producer.commit_transaction(30)

    consumer = Consumer(
        {
            **conf,
            "group.id": f"secure-reader-{uuid.uuid4()}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(2)])
        values: list[bytes] = []
        at_end: set[int] = set()
        deadline = time.monotonic() + 30
        while len(at_end) < 2:
            assert time.monotonic() < deadline, f"read {values} and never reached the end"
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                assert err.code() == KafkaError._PARTITION_EOF, err
                at_end.add(msg.partition() or 0)
            else:
                values.append(msg.value() or b"")
    finally:
        consumer.close()
    assert values == [b"committed", b"committed too"]


def _assert_not_fatal(err: KafkaError) -> None:
    assert not err.fatal()
    assert not err.retriable()
    assert not err.txn_requires_abort()


def _assert_tls_refusal(err: KafkaError) -> None:
    """librdkafka reports a failed verification as _SSL, or (once in a CI run, when the
    failure surfaced on the handshake's read) as _TRANSPORT with the same OpenSSL text: the
    bridge must take both for a TLS refusal."""
    assert err.code() in (KafkaError._SSL, KafkaError._TRANSPORT), err
    assert refusal_kind(err) == "tls", err


def test_wrong_password(secure_kafka: SecureKafka) -> None:
    err = first_connection_error(secure_kafka.conf("bridge", "not-the-password"))
    assert err.code() == KafkaError._AUTHENTICATION
    _assert_not_fatal(err)
    assert "Authentication failed during authentication due to invalid credentials" in err.str()
    assert "SCRAM-SHA-512" in err.str()


def test_unknown_user_looks_exactly_like_a_wrong_password(secure_kafka: SecureKafka) -> None:
    err = first_connection_error(secure_kafka.conf("nobody", "not-the-password"))
    assert err.code() == KafkaError._AUTHENTICATION
    _assert_not_fatal(err)
    assert "Authentication failed during authentication due to invalid credentials" in err.str()
    assert "nobody" not in err.str()  # the broker does not say which user it did not know


def test_mechanism_the_broker_does_not_offer(secure_kafka: SecureKafka) -> None:
    err = first_connection_error(secure_kafka.conf("bridge", sasl_mechanism="SCRAM-SHA-256"))
    assert err.code() == KafkaError._AUTHENTICATION
    assert "broker's supported mechanisms: SCRAM-SHA-512" in err.str()


def test_ca_that_does_not_match(secure_kafka: SecureKafka) -> None:
    err = first_connection_error(
        secure_kafka.conf("bridge", ssl_ca_location=str(secure_kafka.wrong_ca))
    )
    _assert_tls_refusal(err)
    _assert_not_fatal(err)
    assert "certificate verify failed" in err.str()


def test_hostname_not_in_the_certificate(secure_kafka: SecureKafka) -> None:
    """Same CA, a certificate for wrong-host.invalid: refused, with the very text a wrong CA
    gives (librdkafka does not pass on OpenSSL's reason)."""
    conf = secure_kafka.conf("bridge", bootstrap_servers=secure_kafka.wrong_host_bootstrap_servers)
    err = first_connection_error(conf)
    _assert_tls_refusal(err)
    _assert_not_fatal(err)
    assert "certificate verify failed" in err.str()
    assert "hostname" not in err.str().lower()

    # The host name is all that is wrong there: without the check, the same listener works.
    unchecked = AdminClient({**conf, "ssl.endpoint.identification.algorithm": "none"})
    assert len(unchecked.list_topics(timeout=10).brokers) == 1


def _verify(host_port: str, cafile: str) -> str:
    host, port = host_port.rsplit(":", 1)
    context = ssl.create_default_context(cafile=cafile)
    try:
        with (
            socket.create_connection((host, int(port)), timeout=10) as sock,
            context.wrap_socket(sock, server_hostname=host),
        ):
            return "ok"
    except ssl.SSLCertVerificationError as exc:
        return exc.verify_message


def test_python_ssl_tells_a_wrong_ca_from_a_wrong_host(secure_kafka: SecureKafka) -> None:
    """What ``check`` can use to name the TLS problem: the stdlib handshake reports OpenSSL's
    verification result, which librdkafka does not."""
    ca, wrong_ca = str(secure_kafka.ca), str(secure_kafka.wrong_ca)
    assert _verify(secure_kafka.bootstrap_servers, ca) == "ok"
    assert (
        _verify(secure_kafka.bootstrap_servers, wrong_ca)
        == "self-signed certificate in certificate chain"
    )
    assert _verify(secure_kafka.wrong_host_bootstrap_servers, ca).startswith("IP address mismatch")


def test_passwords_never_appear_in_librdkafka_logs(secure_kafka: SecureKafka) -> None:
    """Even with security, broker and config debugging on, and on a failed login."""
    password = secure_kafka.users["bridge"]
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger(f"librdkafka-secret-test-{uuid.uuid4().hex}")
    logger.propagate = False
    logger.addHandler(Collect())
    logger.setLevel(logging.DEBUG)
    debug = {"debug": "security,broker,conf,protocol", "logger": logger}
    good = AdminClient({**secure_kafka.conf("bridge"), **debug})
    good.list_topics(timeout=10)
    good.poll(0)
    bad = secure_kafka.conf("bridge", password + "x")
    errors: list[KafkaError] = []
    wrong = AdminClient({**bad, **debug, "error_cb": errors.append})
    deadline = time.monotonic() + 20
    while not errors and time.monotonic() < deadline:
        wrong.poll(0.1)
    assert errors
    assert lines
    assert not [line for line in lines if password in line]
    assert not [str(e) for e in errors if password in str(e)]


def test_the_test_beds_probe_logs_in_and_checks_the_certificate(
    secure_kafka: SecureKafka,
) -> None:
    """scripts/lib/kafka_wire.py, the readiness probe of scripts/kafka-local (stdlib only):
    its SCRAM-SHA-512 login and TLS verification against the real broker, each refusal a
    probe that fails rather than one that passes."""
    from scripts.lib.kafka_wire import Login, metadata, probe

    admin = secure_kafka.super_user
    good = Login(str(secure_kafka.ca), admin, secure_kafka.users[admin])
    assert probe(secure_kafka.bootstrap_servers, good)
    assert metadata(secure_kafka.bootstrap_servers, login=good).brokers == [1]
    assert Login.from_client_json(str(secure_kafka.client_config)) == good
    wrong_password = Login(good.ca_file, admin, good.password + "x")
    with pytest.raises(OSError, match="SaslAuthenticate refused"):
        metadata(secure_kafka.bootstrap_servers, login=wrong_password)
    assert not probe(secure_kafka.bootstrap_servers, wrong_password)
    assert not probe(secure_kafka.wrong_host_bootstrap_servers, good)
    assert not probe(
        secure_kafka.bootstrap_servers, Login(str(secure_kafka.wrong_ca), admin, good.password)
    )
