"""Make sure the topics the bridge writes to exist, or refuse to start, by configuration.

A topic the principal may not describe is hidden from the metadata, so it looks missing: the
difference matters (grant an ACL, or create the topic), and a refused ``describe_topics`` or
``create_topics`` tells it. Either refusal is a :class:`KafkaAuthorizationError`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from bridge.errors import ConfigError, KafkaRetriableError, TopicMissingError
from bridge.kafka.acl import denied, topics_grant
from bridge.kafka.permissions import admin_conf, topic_operations

__all__ = ["TopicManager"]

log = logging.getLogger(__name__)

# What asking about a topic by name answers when the principal cannot see it: it does not
# exist, or no ACL lets this principal describe it. Either way a listing of the cluster's topics
# leaves it out; ``ensure`` then creates it, or says which of the two it is.
_UNSEEN = frozenset({KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.TOPIC_AUTHORIZATION_FAILED})


class TopicManager:
    def __init__(
        self,
        client_conf: dict[str, Any],
        *,
        create: bool,
        partitions: int,
        replication_factor: int,
        timeout_s: float = 15.0,
    ) -> None:
        self._conf = dict(client_conf)
        try:
            # admin_conf: asked about by name, a missing topic must not be made with the
            # broker's defaults instead of this manager's partitions, replicas and compaction.
            self._admin = AdminClient(admin_conf(self._conf))
        except KafkaException as exc:
            raise ConfigError(f"Kafka client settings (KAFKA_*): {exc.args[0].str()}") from exc
        self._create = create
        self._partitions = partitions
        self._replication = replication_factor
        self._timeout = timeout_s
        self._known: set[str] = set()

    def ensure(
        self, topics: list[str], *, compacted: bool = False, partitions: int | None = None
    ) -> None:
        """Create the missing ones, or raise TopicMissingError if creation is off."""
        wanted = [t for t in topics if t not in self._known]
        if not wanted:
            return
        missing = self._not_seen(wanted)
        if missing and not self._create:
            self._raise_if_hidden(missing)
            raise TopicMissingError(
                f"topic(s) {', '.join(missing)} do not exist and BRIDGE_CREATE_TOPICS is false;"
                " create them or set BRIDGE_CREATE_TOPICS=true"
            )
        if missing:
            self._create_topics(missing, compacted, partitions)
            # A reader right after this (a restore) would otherwise find no partition yet.
            for topic in missing:
                self.partition_count(topic)
        self._known.update(wanted)

    def partition_count(self, topic: str) -> int:
        """How many partitions ``topic`` has. A topic created a moment ago may take a few
        hundred ms to show in the metadata: wait for it, up to the timeout."""
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                metadata = self._admin.list_topics(topic, timeout=self._timeout)
            except KafkaException as exc:
                self._serve_callbacks()
                raise KafkaRetriableError(
                    f"cannot describe topic {topic}: {exc.args[0].str()}"
                ) from exc
            found = metadata.topics.get(topic)
            if found is not None and found.error is None and found.partitions:
                return len(found.partitions)
            if found is not None and found.error is not None:
                self._raise_if_refused(topic, found.error)
            if time.monotonic() > deadline:
                raise KafkaRetriableError(f"topic {topic} is not available")
            time.sleep(0.1)

    def _create_topics(self, names: list[str], compacted: bool, partitions: int | None) -> None:
        config = {"cleanup.policy": "compact"} if compacted else {}
        if partitions is None:
            partitions = 1 if compacted else self._partitions
        futures = self._admin.create_topics(
            [NewTopic(n, partitions, self._replication, config=config) for n in names],
            operation_timeout=self._timeout,
        )
        for name, future in futures.items():
            try:
                future.result(timeout=self._timeout)
                log.info("created topic", extra={"topic": name, "partitions": partitions})
            except KafkaException as exc:
                err = exc.args[0]
                if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    continue  # another instance won the race; fine
                if isinstance(err, KafkaError) and err.code() in (
                    KafkaError.TOPIC_AUTHORIZATION_FAILED,
                    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
                ):
                    raise denied(
                        self._conf,
                        f"create topic {name}",
                        topics_grant([name], "Create"),
                        err.name(),
                        "it is missing, or exists but is not visible to this principal; with"
                        " BRIDGE_CREATE_TOPICS=false create it and grant Write, Read and Describe",
                    ) from exc
                raise KafkaRetriableError(f"cannot create topic {name}: {err}") from exc

    def _not_seen(self, topics: list[str]) -> list[str]:
        """The topics the principal cannot see: missing, or hidden from it.

        Each is asked about by name (which ``admin_conf`` keeps from making it). Listing
        every topic of the cluster instead cost about 2 ms of CPU a call on a broker of 220
        topics, and more on a bigger cluster, twice for each source that starts or is taken
        over. Asked in one-second attempts, serving the client's callbacks between them, so
        that a refused login is reported to error_cb (and known) while the call is still
        trying, not only once it has timed out."""
        deadline = time.monotonic() + self._timeout
        not_seen = []
        for topic in topics:
            while True:
                try:
                    found = self._admin.list_topics(topic, timeout=1.0).topics.get(topic)
                    break
                except KafkaException as exc:
                    self._serve_callbacks()
                    if time.monotonic() >= deadline:
                        raise KafkaRetriableError(
                            f"cannot list Kafka topics: {exc.args[0].str()}"
                        ) from exc
            if found is None or (found.error is not None and found.error.code() in _UNSEEN):
                not_seen.append(topic)
        return not_seen

    def _serve_callbacks(self) -> None:
        """After a failed call: librdkafka queues what it reports about the connection (a
        refused login, a certificate it could not verify) for ``error_cb``, which runs only
        when the client is polled; without this the cause would never be seen."""
        with contextlib.suppress(KafkaException):
            self._admin.poll(0)

    def _raise_if_hidden(self, topics: list[str]) -> None:
        """A topic that only looks missing: it exists, but the principal may not see it."""
        try:
            found = topic_operations(self._admin, topics, self._timeout)
        except KafkaException:
            return  # no better answer than "missing"
        for topic in topics:
            err = found.get(topic)
            if isinstance(err, KafkaError):
                self._raise_if_refused(topic, err)

    def _raise_if_refused(self, topic: str, err: KafkaError) -> None:
        if err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
            raise denied(
                self._conf,
                f"describe topic {topic}",
                topics_grant([topic], "Describe"),
                err.name(),
                "the topic is hidden from this principal; see the README for all it needs there",
            )
