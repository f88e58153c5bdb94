"""Probes that ask the cluster what the bridge's principal may do, without side effects.

``describe_topics`` and ``describe_consumer_groups`` with ``include_authorized_operations``
list the operations the principal may perform on each resource; ``create_topics`` with
``validate_only`` says whether a missing topic may be created; a transactional id is tried
with ``init_transactions`` under an id of its own, so a running bridge is never fenced.
``passentry-bridge check`` reports these one by one; the producer uses the topic probe to
name the topic a commit was refused for.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer, TopicCollection
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

__all__ = [
    "Operations",
    "admin_conf",
    "create_allowed",
    "group_operations",
    "init_transactional_id",
    "topic_operations",
]

Operations = frozenset[str]
# A group coordinator still being set up (the first group on a young cluster) or moving (its
# broker went away): ask again.
_COORDINATOR_MOVING = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
    }
)

# Properties of a producer or consumer that an admin client has no use for (and would warn
# about, or, for a transactional id, act on).
_CLIENT_ONLY = {
    "transactional.id",
    "enable.idempotence",
    "acks",
    "partitioner",
    "compression.type",
    "linger.ms",
    "message.timeout.ms",
    "transaction.timeout.ms",
    "on_delivery",
    "group.id",
    "enable.auto.commit",
    "isolation.level",
    "auto.offset.reset",
    "enable.partition.eof",
    "fetch.wait.max.ms",
    "fetch.error.backoff.ms",
}


def admin_conf(conf: Mapping[str, Any]) -> dict[str, Any]:
    """The connection settings of ``conf`` (any client's), for an admin client.

    librdkafka's admin client is a producer underneath, and so by default asks a broker
    that creates the topics clients ask about (``auto.create.topics.enable``, Kafka's
    default) to make each topic it asks about by name: with the broker's partitions and
    settings, not the bridge's. An admin client only asks, so it never does that."""
    return {k: v for k, v in conf.items() if k not in _CLIENT_ONLY} | {
        "allow.auto.create.topics": False
    }


def _spelt(op: Any) -> str:
    """As kafka-acls.sh spells it: READ -> Read, DESCRIBE_CONFIGS -> DescribeConfigs."""
    return "".join(part.title() for part in op.name.split("_"))


def _error(exc: BaseException) -> KafkaError:
    if isinstance(exc, KafkaException) and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return KafkaError(KafkaError._FAIL, str(exc))


def topic_operations(
    admin: AdminClient, topics: Iterable[str], timeout_s: float
) -> dict[str, Operations | KafkaError]:
    """What the principal may do on each topic, or why the topic could not be described
    (UNKNOWN_TOPIC_OR_PART: missing; TOPIC_AUTHORIZATION_FAILED: missing, or not visible)."""
    names = sorted(set(topics))
    if not names:
        return {}
    futures = admin.describe_topics(
        TopicCollection(names),
        include_authorized_operations=True,
        request_timeout=timeout_s,
    )
    out: dict[str, Operations | KafkaError] = {}
    for name, future in futures.items():
        try:
            described = future.result(timeout=timeout_s)
            out[name] = frozenset(_spelt(op) for op in described.authorized_operations or ())
        except Exception as exc:  # a KafkaException, or a timeout of the future
            out[name] = _error(exc)
    return out


def group_operations(
    admin: AdminClient, groups: Iterable[str], timeout_s: float
) -> dict[str, Operations | KafkaError]:
    """What the principal may do on each consumer group (one that does not exist yet is
    described as empty, with the operations its ACLs allow). A group whose coordinator is
    loading or moving is asked again until ``timeout_s``: on a cluster that just lost a
    broker, or a new one, that is an answer to wait for, not one to report."""
    names = sorted(set(groups))
    out: dict[str, Operations | KafkaError] = {}
    deadline = time.monotonic() + timeout_s
    while names:
        futures = admin.describe_consumer_groups(
            names, include_authorized_operations=True, request_timeout=timeout_s
        )
        again = []
        for name, future in futures.items():
            try:
                described = future.result(timeout=timeout_s)
                out[name] = frozenset(_spelt(op) for op in described.authorized_operations or ())
            except Exception as exc:
                err = out[name] = _error(exc)
                if err.code() in _COORDINATOR_MOVING and time.monotonic() < deadline:
                    again.append(name)
        names = again
        if names:
            time.sleep(0.5)
    return out


def create_allowed(
    admin: AdminClient, topics: Iterable[str], partitions: int, timeout_s: float
) -> dict[str, KafkaError | None]:
    """Whether each topic may be created (``validate_only``: nothing is created). None: yes;
    TOPIC_ALREADY_EXISTS: it exists (though the principal may not see it)."""
    names = sorted(set(topics))
    if not names:
        return {}
    futures = admin.create_topics(
        [NewTopic(n, partitions, -1) for n in names],
        validate_only=True,
        request_timeout=timeout_s,
    )
    out: dict[str, KafkaError | None] = {}
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s)
            out[name] = None
        except Exception as exc:
            out[name] = _error(exc)
    return out


def init_transactional_id(
    conf: Mapping[str, Any], transactional_id: str, timeout_s: float
) -> KafkaError | None:
    """``init_transactions`` with ``transactional_id``: None if the principal may use it.
    It fences only a producer with that very id, so callers pass one of their own."""
    producer = Producer({**admin_conf(conf), "transactional.id": transactional_id})
    try:
        producer.init_transactions(timeout_s)
    except KafkaException as exc:
        return _error(exc)
    finally:
        with contextlib.suppress(KafkaException):  # a producer a fatal error left unusable
            producer.flush(0)
    return None
