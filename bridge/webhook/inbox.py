"""The inbox topic: where an accepted webhook is made durable before PassEntry gets its 200.

Any replica may accept a webhook for any source: it writes the raw body to the inbox with
an idempotent producer (``acks=all``), keyed by source id, into the partition the source id
hashes to. The replica that owns the source reads that partition with read_committed, and
the position it read up to rides in the source's checkpoint, in the same Kafka transaction
as the records the events became, so an event is published exactly once whoever accepted it
and whenever the owner crashes. (Not ``send_offsets_to_transaction``: after a broker fault
that call often hung in librdkafka, issues 5456 and 5511, holding the source for seconds,
and it made the inbox group's coordinator one more broker every transaction needed.) The
inbox's partition count must not change once events flow: a source's events would then land
in another partition than its owner reads.

An event's record carries the webhook request's trace context (``traceparent``,
``tracestate``): the records its scans become continue that trace.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    OFFSET_STORED,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from bridge.errors import ConfigError, InboxNotReadyError, KafkaRetriableError
from bridge.kafka.acl import INBOX_GROUPS, reading_error
from bridge.kafka.checkpoint import InboxPosition
from bridge.kafka.routing import stable_partition
from bridge.ops.health import Probe
from bridge.tracecontext import TraceHeaders

__all__ = ["InboxBatch", "InboxEvent", "InboxReader", "InboxWriter"]

log = logging.getLogger(__name__)

RECEIVED_AT = "received-at-ms"
# Until it knows the inbox's partition count, the writer's thread asks this often; after
# this long without an answer it says so once, as a warning.
_LEARN_EVERY_S = 0.5
_LEARN_WARN_AFTER_S = 30.0


class InboxWriter:
    """Writes accepted events; ``write`` calls ``done`` from the producer's poll thread,
    which also learns the inbox's partition count."""

    def __init__(self, client_conf: dict[str, Any], topic: str) -> None:
        self.topic = topic
        self._producer = Producer(
            {
                **client_conf,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 2,
                # PassEntry waits for our answer: a write that cannot finish soon is a 503
                # (PassEntry retries), not a request held open for minutes.
                "message.timeout.ms": 10_000,
                # It asks about the inbox from the start, maybe before the bridge has made
                # it: a broker that creates the topics clients ask about would make it with
                # its own partitions and settings.
                "allow.auto.create.topics": False,
            }
        )
        self._partitions: int | None = None
        self._unready = "not asked yet"
        # Set by a write that found the count unknown: the writer's thread asks at once.
        self._ask_now = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="inbox-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout_s: float) -> int:
        self._stop.set()
        left: int = self._producer.flush(timeout_s)
        return left

    def readiness(self) -> Probe:
        """Ready once events can be written: the partition count is known."""
        if self._partitions is None:
            return Probe(False, (self._not_ready(),))
        return Probe(True, ())

    def partitions(self) -> int:
        """The inbox's partition count. Raises InboxNotReadyError until this writer's thread
        has learnt it, and has it ask at once: the caller is the receiver's event loop, which
        a metadata request would stall for every connection (for seconds, while Kafka does
        not answer). PassEntry's retry finds the answer."""
        if self._partitions is None:
            self._ask_now.set()
            raise InboxNotReadyError(self._not_ready())
        return self._partitions

    def _not_ready(self) -> str:
        return f"the webhook inbox {self.topic} is not ready: {self._unready}"

    def write(
        self,
        source_id: str,
        body: bytes,
        done: Callable[[KafkaError | None], None],
        trace: TraceHeaders | None = None,
    ) -> None:
        """Produce one event, with the request's trace context if any; ``done(None)`` once
        the broker has it, ``done(error)`` if not. Raises KafkaRetriableError when it cannot
        even be queued."""
        partition = stable_partition(source_id, self.partitions())
        headers: list[tuple[str, str | bytes | None]] = [
            (RECEIVED_AT, str(int(time.time() * 1000)))
        ]
        if trace is not None:
            headers += trace.kafka_headers()

        def delivered(err: KafkaError | None, msg: Message) -> None:
            done(err)

        try:
            self._producer.produce(
                self.topic,
                body,
                source_id.encode(),
                partition=partition,
                headers=headers,
                on_delivery=delivered,
            )
        except (BufferError, KafkaException) as exc:
            raise KafkaRetriableError(f"cannot queue a webhook event: {exc}") from exc

    def _serve(self) -> None:
        started = time.monotonic()
        asked = started - _LEARN_EVERY_S
        warned = False
        while not self._stop.is_set():
            if self._partitions is None and (
                self._ask_now.is_set() or time.monotonic() - asked >= _LEARN_EVERY_S
            ):
                self._ask_now.clear()
                asked = time.monotonic()
                self._learn()
                if self._partitions is not None and warned:
                    log.info("webhook inbox ready", extra={"topic": self.topic})
                elif (
                    self._partitions is None
                    and not warned
                    and (asked - started >= _LEARN_WARN_AFTER_S)
                ):
                    warned = True
                    log.warning(
                        "webhook inbox not ready: webhooks are answered 503 until it is",
                        extra={"topic": self.topic, "error": self._unready},
                    )
            self._producer.poll(0.05)

    def _learn(self) -> None:
        """The partition count, once the topic exists; else why not, for the 503s' log."""
        try:
            metadata = self._producer.list_topics(self.topic, timeout=5)
        except KafkaException as exc:
            self._unready = f"cannot describe it: {exc.args[0].str()}"
            return
        found = metadata.topics.get(self.topic)
        if found is not None and found.error is None and found.partitions:
            self._partitions = len(found.partitions)
        elif found is not None and found.error is not None:
            self._unready = found.error.str()
        else:
            self._unready = "the topic does not exist yet"


@dataclass(frozen=True, slots=True)
class InboxEvent:
    body: bytes
    received_ms: int
    # The webhook request's trace context: its scans' records continue it.
    trace: TraceHeaders | None = None


@dataclass(frozen=True, slots=True)
class InboxBatch:
    """Events of one source taken from the inbox, and the position to commit with them."""

    events: list[InboxEvent]
    # Where the source's events continue once the batch is committed (other sources' events
    # in the partition, skipped, included).
    next: InboxPosition


class InboxReader:
    """The owner's read_committed view of its source's inbox partition."""

    def __init__(
        self,
        client_conf: dict[str, Any],
        topic: str,
        source_id: str,
        committed: Callable[[], InboxPosition | None],
    ) -> None:
        """``committed()``: where the source's events continue as its last committed
        transaction says (the pipeline's position, which every checkpoint carries). It is
        the one record of it: a consumer (re)starts there."""
        self._conf = client_conf
        self.topic = topic
        self.source_id = source_id
        self._key = source_id.encode()
        self._committed = committed
        self._consumer: Consumer | None = None
        self._partition: TopicPartition | None = None

    @property
    def group_id(self) -> str:
        return f"passentry-bridge.inbox.{self.source_id}"

    @property
    def is_open(self) -> bool:
        """Opened for a restored source (the consumer itself may be reopened lazily)."""
        return self._partition is not None

    def open(self, partitions: int) -> None:
        """(Re)start where the restored checkpoint says the source's events continue. A
        checkpoint without a position (written before positions rode in it) leaves the one
        older versions committed to the inbox group, which is used once.

        Raises ConfigError when the checkpoint's partition is not the source's any more: the
        inbox's partition count changed, and its events since are in another partition."""
        self.close()
        partition = stable_partition(self.source_id, partitions)
        committed = self._committed()
        if committed is not None and committed.partition != partition:
            raise ConfigError(
                f"{self.topic} has {partitions} partitions now: source {self.source_id}'s"
                f" webhook events go to partition {partition}, but its checkpoint says they"
                f" continue at offset {committed.offset} of partition {committed.partition}."
                " The inbox's partition count must not change once events flow (README,"
                ' "Webhooks: the push path"); set it back'
            )
        self._partition = TopicPartition(self.topic, partition)

    def reopen(self) -> None:
        """Forget what was taken since the last commit: the next :meth:`take` reads again
        from the position the last committed transaction carried."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def _assigned(self, partition: TopicPartition) -> Consumer:
        consumer = Consumer(
            {
                **self._conf,
                # Never joined or committed to: the group names where older versions kept
                # the position (OFFSET_STORED), and the reader in the broker's logs.
                "group.id": self.group_id,
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
                # Events should be published within tens of ms: don't let fetches idle.
                "fetch.wait.max.ms": 10,
            }
        )
        committed = self._committed()
        start = committed.offset if committed is not None else OFFSET_STORED
        try:
            consumer.assign([TopicPartition(partition.topic, partition.partition, start)])
        except KafkaException as exc:
            consumer.close()
            raise KafkaRetriableError(f"cannot read {self.topic}: {exc}") from exc
        return consumer

    def take(self, wait_s: float, gather_s: float) -> InboxBatch | None:
        """Wait up to ``wait_s`` for the first event, then gather for ``gather_s`` more.
        None when nothing arrived."""
        if self._partition is None:
            return None
        if self._consumer is None:
            self._consumer = self._assigned(self._partition)
        consumer = self._consumer
        # poll() returns at the first event; consume() would wait out its whole timeout.
        first = self._poll(consumer, wait_s)
        if first is None:
            return None
        messages = [first]
        deadline = time.monotonic() + gather_s
        while (left := deadline - time.monotonic()) > 0 and len(messages) < 5000:
            messages.extend(self._consume(consumer, left))
        events = [_event(m) for m in messages if m.key() == self._key]
        last = max((m.offset() or 0) for m in messages)
        return InboxBatch(events, InboxPosition(self._partition.partition, last + 1))

    def lag(self) -> int:
        """Events in the partition after our position, from the last fetch's high mark."""
        consumer, tp = self._consumer, self._partition
        if consumer is None or tp is None:
            return 0
        try:
            _, high = consumer.get_watermark_offsets(tp, cached=True)
            (position,) = consumer.position([tp])
        except KafkaException:
            return 0
        if high < 0 or position.offset < 0:
            return 0
        return max(0, high - position.offset)

    def close(self) -> None:
        self.reopen()
        self._partition = None

    def _poll(self, consumer: Consumer, timeout_s: float) -> Message | None:
        try:
            msg = consumer.poll(max(0.0, timeout_s))
        except KafkaException as exc:
            raise KafkaRetriableError(f"reading {self.topic}: {exc}") from exc
        if msg is None:
            return None
        err = msg.error()
        if err is None:
            return msg
        if err.code() == KafkaError._PARTITION_EOF:
            return None
        raise reading_error(self._conf, err, self.topic, INBOX_GROUPS)

    def _consume(self, consumer: Consumer, timeout_s: float) -> list[Message]:
        try:
            messages = consumer.consume(500, timeout=max(0.0, timeout_s))
        except KafkaException as exc:
            raise KafkaRetriableError(f"reading {self.topic}: {exc}") from exc
        good = []
        for msg in messages:
            err = msg.error()
            if err is None:
                good.append(msg)
            elif err.code() != KafkaError._PARTITION_EOF:
                raise reading_error(self._conf, err, self.topic, INBOX_GROUPS)
        return good


def _event(msg: Message) -> InboxEvent:
    raw = msg.headers() or []
    headers = list(raw.items()) if isinstance(raw, dict) else raw
    received = dict(headers).get(RECEIVED_AT)
    received_ms = int(received) if received else int(msg.timestamp()[1])
    return InboxEvent(msg.value() or b"", received_ms, TraceHeaders.from_kafka(headers))
