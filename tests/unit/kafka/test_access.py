"""KafkaAccess (refusals past a grace, named by setting), the de-duplicated librdkafka log,
the ACL messages, and the runner stopping on a refusal rather than retrying it for ever.

What librdkafka really reports is pinned against the secure broker in
tests/integration/secure/; here the texts it reports are replayed on a fake clock.
"""

from __future__ import annotations

import logging
import threading

import pytest
from confluent_kafka import KafkaError

from bridge.config import KafkaSettings, Secret
from bridge.errors import (
    KafkaAuthenticationError,
    KafkaAuthorizationError,
    KafkaRetriableError,
    KafkaTlsError,
)
from bridge.kafka.access import KafkaAccess, librdkafka_logger, refusal_kind
from bridge.kafka.acl import AclGrant, denied, principal, transactional_id_grant
from bridge.kafka.tls import TlsVerdict
from bridge.ops.health import Health
from bridge.ops.logs import Repeats
from bridge.ops.metrics import Metrics
from bridge.pipeline import CycleStats, Restored
from bridge.runner import EXIT_FATAL, Pace, RunOptions, SourceRunner

PASSWORD = "s3cret-Pa55"
REFUSED = (
    "sasl_ssl://10.0.0.5:9096/bootstrap: SASL authentication error: Authentication failed"
    " during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512"
    " (after {ms}ms in state AUTH_REQ)"
)
UNVERIFIED = (
    "ssl://kafka-1.example.com:9093/1: SSL handshake failed: error:0A000086:SSL routines::"
    "certificate verify failed: broker certificate could not be verified (after 4ms in state"
    " SSL_HANDSHAKE)"
)


def settings(**extra: object) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers="10.0.0.5:9096",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="bridge",
        sasl_password=Secret(PASSWORD),
        **extra,  # type: ignore[arg-type]
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_refused_login_is_a_failure_only_past_the_grace() -> None:
    clock = Clock()
    access = KafkaAccess(settings(), clock=clock)
    for second in range(12):
        clock.now = 1000.0 + second
        access.report(KafkaError(KafkaError._AUTHENTICATION, REFUSED.format(ms=300 + second)))
        if second < 10:
            assert access.failure() is None  # a new SCRAM user may be valid in a moment
    refused = access.failure()
    assert isinstance(refused, KafkaAuthenticationError)
    assert str(refused) == (
        "Kafka refused the SASL credentials (SCRAM-SHA-512) for user bridge: check"
        " KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
    )
    assert PASSWORD not in str(refused)


def test_a_success_or_silence_ends_the_streak() -> None:
    clock = Clock()
    access = KafkaAccess(settings(), clock=clock)
    for second in (0, 5, 11):
        clock.now = 1000.0 + second
        access.report(KafkaError(KafkaError._AUTHENTICATION, REFUSED.format(ms=1)))
    assert access.failure() is not None
    access.succeeded()
    assert access.failure() is None
    for second in (20, 32):
        clock.now = 1000.0 + second
        access.report(KafkaError(KafkaError._AUTHENTICATION, REFUSED.format(ms=1)))
    assert access.failure() is not None
    clock.now += 31  # no refusal for longer than librdkafka's reconnect backoff
    assert access.failure() is None


def test_other_errors_are_no_refusal() -> None:
    clock = Clock()
    access = KafkaAccess(settings(), clock=clock)
    for second in range(0, 40, 2):
        clock.now = 1000.0 + second
        access.report(KafkaError(KafkaError._TRANSPORT, "10.0.0.5:9096/1: Disconnected"))
        access.report(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
    assert access.failure() is None


def test_a_mechanism_the_broker_does_not_offer() -> None:
    access = KafkaAccess(settings(), grace_s=0)
    access.report(
        KafkaError(
            KafkaError._AUTHENTICATION,
            "sasl_ssl://10.0.0.5:9096/bootstrap: SASL SCRAM-SHA-512 mechanism handshake failed:"
            " Broker: Unsupported SASL mechanism: broker's supported mechanisms: PLAIN (after"
            " 300ms in state AUTH_HANDSHAKE)",
        )
    )
    assert str(access.failure()) == (
        "the Kafka brokers do not offer SASL mechanism SCRAM-SHA-512 (they offer PLAIN):"
        " check KAFKA_SASL_MECHANISM"
    )


def test_sasl_against_a_listener_without_sasl_blames_the_protocol() -> None:
    """A PLAINTEXT listener answers the SASL handshake with no mechanism at all (the text
    is librdkafka's, from a SASL_PLAINTEXT client against scripts/kafka-local)."""
    access = KafkaAccess(settings(), grace_s=0)
    access.report(
        KafkaError(
            KafkaError._AUTHENTICATION,
            "sasl_plaintext://127.0.0.1:39677/bootstrap: SASL SCRAM-SHA-512 mechanism"
            " handshake failed: Broker: Request not valid in current SASL state:"
            " broker's supported mechanisms:  (after 1ms in state AUTH_HANDSHAKE)",
        )
    )
    message = str(access.failure())
    assert "check KAFKA_SECURITY_PROTOCOL" in message
    assert "KAFKA_SASL_MECHANISM" not in message


def test_a_certificate_failure_is_diagnosed_at_the_broker_librdkafka_names() -> None:
    asked: list[str] = []

    def verdict(address: str, s: KafkaSettings) -> TlsVerdict:
        asked.append(address)
        return TlsVerdict(address, False, f"the certificate of {address} does not name it")

    access = KafkaAccess(settings(), grace_s=0, verdict=verdict)
    access.report(KafkaError(KafkaError._SSL, UNVERIFIED))
    refused = access.failure()
    assert isinstance(refused, KafkaTlsError)
    assert str(refused) == (
        "Kafka TLS: the certificate of kafka-1.example.com:9093 does not name it"
    )
    assert access.failure() is refused  # diagnosed once per streak
    assert asked == ["kafka-1.example.com:9093"]


def test_a_certificate_failure_reported_as_a_transport_error_is_still_tls() -> None:
    """The text is one CI's secure suite saw: librdkafka said _TRANSPORT for a failed
    verification; a plain disconnect with the same code stays no refusal, even mid-handshake."""
    seen = KafkaError(
        KafkaError._TRANSPORT,
        "sasl_ssl://127.0.0.1:47445/bootstrap: error:0A000086:SSL routines::certificate verify"
        " failed (after 2ms in state SSL_HANDSHAKE)",
    )
    assert refusal_kind(seen) == "tls"
    for other in (
        "127.0.0.1:9092/1: Disconnected",
        "ssl://127.0.0.1:9092/bootstrap: Disconnected (after 3ms in state SSL_HANDSHAKE)",
    ):
        assert refusal_kind(KafkaError(KafkaError._TRANSPORT, other)) is None
    access = KafkaAccess(
        settings(), grace_s=0, verdict=lambda a, s: TlsVerdict(a, False, f"{a} is not trusted")
    )
    access.report(seen)
    assert str(access.failure()) == "Kafka TLS: 127.0.0.1:47445 is not trusted"


def test_when_python_verifies_what_librdkafka_did_not_its_words_are_kept() -> None:
    access = KafkaAccess(
        settings(), grace_s=0, verdict=lambda a, s: TlsVerdict(a, True, "verified")
    )
    access.report(KafkaError(KafkaError._SSL, UNVERIFIED))
    message = str(access.failure())
    assert "librdkafka could not verify kafka-1.example.com:9093" in message
    assert "(after" not in message
    assert "check KAFKA_SSL_CA_LOCATION and KAFKA_PROPERTIES" in message


def test_errors_are_logged_once_per_distinct_text(caplog: pytest.LogCaptureFixture) -> None:
    access = KafkaAccess(settings())
    with caplog.at_level(logging.WARNING, logger="bridge.kafka.access"):
        for ms in range(20):
            access.report(KafkaError(KafkaError._AUTHENTICATION, REFUSED.format(ms=ms)))
        access.report(KafkaError(KafkaError._TRANSPORT, "10.0.0.5:9096/1: Disconnected"))
    assert [getattr(r, "code", None) for r in caplog.records] == ["_AUTHENTICATION", "_TRANSPORT"]


def test_repeats_come_back_after_the_interval_with_their_count() -> None:
    repeats = Repeats(interval_s=60)
    assert repeats.admit(("a",), now=0) == 0
    for t in range(1, 10):
        assert repeats.admit(("a",), now=t) is None
    assert repeats.admit(("b",), now=10) == 0
    assert repeats.admit(("a",), now=61) == 9
    assert repeats.admit(("a",), now=62) is None


def test_librdkafka_lines_differing_only_in_timing_and_client_are_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = librdkafka_logger()
    assert librdkafka_logger() is logger
    assert len(logger.filters) == 1  # installed once
    text = "[thrd:sasl_ssl://h:1/bootstrap]: sasl_ssl://h:1/bootstrap: refused (after {}ms)"
    with caplog.at_level(logging.ERROR, logger="librdkafka"):
        for n in range(10):
            logger.log(logging.ERROR, "%s [%s] %s", "FAIL", f"rdkafka#producer-{n}", text.format(n))
        logger.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#producer-1", "other")
    assert len([r for r in caplog.records if r.name == "librdkafka"]) == 2


# --- ACL messages ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "txn_id",
    [
        "passentry-bridge.eu.events",
        "passentry-bridge.eu.events.repair",
        "passentry-bridge.eu.events.check",
    ],
)
def test_derived_transactional_ids_are_granted_by_the_source_prefix(txn_id: str) -> None:
    grant = transactional_id_grant(txn_id)
    assert str(grant) == (
        "Write and Describe on --transactional-id passentry-bridge.eu.events"
        " --resource-pattern-type prefixed"
    )


def test_denied_names_principal_resource_and_grant() -> None:
    conf = {"sasl.username": "bridge", "sasl.password": PASSWORD}
    grant = AclGrant("topic", ("a", "b"), ("Read",))
    refused = denied(conf, "read topic a", grant, "TOPIC_AUTHORIZATION_FAILED")
    assert isinstance(refused, KafkaAuthorizationError)
    assert str(refused) == (
        "User:bridge may not read topic a (TOPIC_AUTHORIZATION_FAILED): grant it Read on"
        " --topic a --topic b (see the README: Kafka with SASL_SSL, TLS verification and ACLs)"
    )
    assert (refused.resource, refused.name, refused.operations) == ("topic", "a,b", ("Read",))


def test_principal_without_sasl() -> None:
    assert principal({"ssl.certificate.location": "/c.pem"}).endswith(
        "KAFKA_SSL_CERTIFICATE_LOCATION"
    )
    assert principal({}) == "User:ANONYMOUS"


# --- the runner ---------------------------------------------------------------------------


class Unreachable:
    """A source whose every Kafka call times out, as librdkafka's do when refused."""

    pushing = False

    def __init__(self) -> None:
        self.prepared = 0

    def prepare(self) -> Restored:
        self.prepared += 1
        raise KafkaRetriableError("cannot list Kafka topics: Local: Broker transport failure")

    def cycle(self, stop: threading.Event, *, until_ms: int | None) -> CycleStats:
        raise AssertionError("never restored")

    def recreate_producer(self) -> None:
        pass

    def wait(self, seconds: float, stop: threading.Event) -> None:
        stop.wait(seconds)


def test_the_runner_stops_on_a_refusal_it_would_otherwise_retry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    access = KafkaAccess(settings(), grace_s=0)
    source = Unreachable()
    health = Health(max_poll_age_s=60)
    runner = SourceRunner(
        source,
        source_id="s",
        options=RunOptions(),
        pace=Pace(0.01, 0.02, 5.0),
        health=health,
        metrics=Metrics(),
        stop=threading.Event(),
        kafka=access,
    )
    access.report(KafkaError(KafkaError._AUTHENTICATION, REFUSED.format(ms=1)))
    with caplog.at_level(logging.ERROR, logger="bridge.runner"):
        assert runner.run() == EXIT_FATAL
    assert source.prepared == 1
    message = "Kafka refused the SASL credentials (SCRAM-SHA-512) for user bridge"
    assert any(message in reason for reason in health.readiness().reasons)
    said = [r.getMessage() for r in caplog.records if r.name == "bridge.runner"]
    assert said == ["stopping on a fatal error"]


def test_a_commands_clients_report_refusals_at_once() -> None:
    """What every client the bridge makes is given: the settings, this collector as its
    ``error_cb`` and the de-duplicating logger; a command's diagnoses the first refusal."""
    settings = KafkaSettings(bootstrap_servers="kafka-1:9092,kafka-2:9092")
    access = KafkaAccess.for_command(settings)
    conf = access.conf()
    assert conf["bootstrap.servers"] == "kafka-1:9092,kafka-2:9092"
    assert conf["error_cb"] == access.report
    assert conf["logger"] is librdkafka_logger()
    access.report(KafkaError(KafkaError._AUTHENTICATION, REFUSED.format(ms=3)))
    assert isinstance(access.failure(), KafkaAuthenticationError)


def test_no_client_is_made_without_the_access() -> None:
    """The librdkafka properties come from ``KafkaAccess.conf`` alone (``check`` reads the
    principal from them too, and makes no client of that): a client made from
    ``KafkaSettings.librdkafka()`` directly would hide a refused login behind timeouts."""
    from pathlib import Path

    import bridge

    allowed = {
        ("kafka/access.py", "self._settings.librdkafka()"),
        ("checks/kafka.py", "principal(k.librdkafka())"),
    }
    root = Path(bridge.__file__).parent
    found = {
        (str(path.relative_to(root)), line.strip())
        for path in root.rglob("*.py")
        for line in path.read_text().splitlines()
        if ".librdkafka()" in line and "def librdkafka" not in line
    }
    strays = {
        (where, line) for where, line in found
        if not any(where == a and text in line for a, text in allowed)
    }  # fmt: skip
    assert not strays
    assert found  # the search looks where the code is
