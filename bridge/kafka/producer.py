"""A thin transactional producer we own: one Kafka transaction per chunk, checkpoint inside.

The producer partitions keys with ``murmur2_random``, the same hash Java clients use, so
Java, Go and ksqlDB agree on where a reader's scans live. A transaction may also carry
consumer positions (the webhook inbox's), committed with the records they became.

librdkafka's error classes decide the reaction:

- retriable: repeat the same call (a commit may be retried until its deadline);
- abortable (``txn_requires_abort``): abort; the caller rewinds to the last checkpoint;
- fatal, or fenced by a newer instance with the same ``transactional.id``: stop for good;
- a commit that keeps failing past its deadline has an unknown outcome: the caller
  recreates the producer (``init_transactions`` settles it) and reads the checkpoint back;
- a commit failed by records that timed out or fell out of sequence (a broker restarted
  under the transaction) goes the same way, without an abort: the abort would wait out the
  records still in flight (up to ``message.timeout.ms``), and the next transaction on that
  producer failed out of sequence again, another delivery timeout later;
- refused by an ACL (the transactional id, Write on a topic, Read on the inbox group): a
  fatal :class:`KafkaAuthorizationError` that names the grant. A refused commit is aborted
  first, and an abort that then fails (librdkafka may make it fatal) does not hide why.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from operator import attrgetter
from typing import Any, NoReturn, Protocol, TypeVar

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient

from bridge.config import KafkaSettings
from bridge.errors import (
    CommitOutcomeUnknownError,
    ConfigError,
    DeliveryFailedError,
    KafkaAuthorizationError,
    KafkaFatalError,
    KafkaRetriableError,
    TransactionAbortedError,
)
from bridge.kafka import _produce
from bridge.kafka.acl import (
    denied,
    topics_grant,
    transactional_id_grant,
)
from bridge.kafka.permissions import admin_conf, topic_operations
from bridge.kafka.records import OutRecord
from bridge.ops.metrics import Metrics

__all__ = [
    "Delivered",
    "Publisher",
    "Sink",
    "fence",
    "producer_config",
    "transactional_id",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

_BUFFER_FULL_RETRIES = 100
_FENCED = {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}
# Delivery failures that leave the producer's idempotence state (its sequence numbers per
# partition) in doubt.
_OUT_OF_STEP = {
    KafkaError._MSG_TIMED_OUT,
    KafkaError._TIMED_OUT,
    KafkaError._TIMED_OUT_QUEUE,
    KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
    KafkaError.UNKNOWN_PRODUCER_ID,
    KafkaError.INVALID_PRODUCER_ID_MAPPING,
}


# Told where each record landed once the broker has it: (index in records, partition, offset).
Delivered = Callable[[int, int, int], None]
# A record's own delivery callback, as librdkafka calls it.
_Report = Callable[[KafkaError | None, Message], None]


class Sink(Protocol):
    """Where the pipeline's records go; ``Publisher`` in production, a list in unit tests."""

    def init(self) -> None: ...

    def send(
        self,
        records: list[OutRecord],
        checkpoint: OutRecord,
        timeout_s: float,
        *,
        delivered: Delivered | None = None,
    ) -> dict[str, int]: ...


_PREFIX = "passentry-bridge."
_topic = attrgetter("topic")


def transactional_id(source_id: str) -> str:
    """One per source: a second writer of the source fences the first."""
    return _PREFIX + source_id


def fence(client_conf: dict[str, Any], txn_id: str, timeout_s: float) -> bool:
    """Fence every producer of ``txn_id`` and abort its open transaction, without waiting
    for it: ``init_transactions`` under the same id from a fresh producer. For a writer
    stuck in a call on a broker that went away: the transaction it holds open would
    otherwise hold back every read_committed reader of its partitions (other sources'
    restores, consumers) until the transaction timeout. False when the broker could not be
    reached in time; the next owner's own ``init_transactions`` fences it then."""
    producer = new_producer(
        {**client_conf, "transactional.id": txn_id, "enable.idempotence": True, "acks": "all"}
    )
    try:
        producer.init_transactions(timeout_s)
        return True
    except KafkaException as exc:
        log.warning("cannot fence a stuck producer", extra={"transactional_id": txn_id,
                                                            "error": str(exc)})  # fmt: skip
        return False
    finally:
        with contextlib.suppress(KafkaException):
            producer.flush(0)


def new_producer(conf: dict[str, Any]) -> Producer:
    """A producer, or a ConfigError when librdkafka refuses the settings themselves."""
    try:
        return Producer(conf)
    except KafkaException as exc:
        raise ConfigError(f"Kafka client settings (KAFKA_*): {exc.args[0].str()}") from exc


def producer_config(
    client_conf: dict[str, Any],
    *,
    transactional_id: str,
    compression: str,
    linger_ms: int,
    message_timeout_ms: int,
    transaction_timeout_ms: int,
) -> dict[str, Any]:
    conf = dict(client_conf)
    conf.update(
        {
            "transactional.id": transactional_id,
            "enable.idempotence": True,
            "acks": "all",
            "partitioner": "murmur2_random",
            "compression.type": compression,
            "linger.ms": linger_ms,
            "message.timeout.ms": message_timeout_ms,
            "transaction.timeout.ms": transaction_timeout_ms,
        }
    )
    # librdkafka refuses a socket timeout within 100 ms of the transaction's.
    if "socket.timeout.ms" in conf:
        conf["socket.timeout.ms"] = min(
            int(conf["socket.timeout.ms"]), transaction_timeout_ms - 100
        )
    return conf


class Publisher:
    def __init__(
        self,
        conf: dict[str, Any],
        metrics: Metrics,
        *,
        call_timeout_s: float,
        hold_s: float = 0.0,
        every_delivery: bool = False,
        producer_factory: Callable[[dict[str, Any]], Producer] = new_producer,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``every_delivery``: librdkafka reports each record's delivery, for ``send``'s
        ``delivered`` (tracing); otherwise failures only."""
        # Delivery reports for failures only: a commit that succeeds proves every record of
        # its transaction was delivered (librdkafka fails the commit otherwise), so the
        # acknowledged counts are the transaction's, not one callback per record.
        self._conf = {
            **conf,
            "on_delivery": self._on_delivery,
            "delivery.report.only.error": not every_delivery,
        }
        # Seams for unit tests: a fake producer, and a clock its blocking calls move on.
        self._new_producer = producer_factory
        self._clock = clock
        self._metrics = metrics
        self._timeout = call_timeout_s
        self._errors: list[KafkaError] = []
        # Fault tests only (BRIDGE_DEBUG_TXN_HOLD_S): keep each transaction open a while.
        self._hold_s = hold_s
        self._use(self._new_producer(self._conf))
        self._initialised = False
        # The topics of the transaction in hand, to name the one an ACL refused.
        self._txn_topics: set[str] = set()

    @classmethod
    def for_settings(
        cls,
        client_conf: dict[str, Any],
        kafka: KafkaSettings,
        metrics: Metrics,
        *,
        transactional_id: str,
        hold_s: float = 0.0,
        every_delivery: bool = False,
    ) -> Publisher:
        """The producer of one transactional id, tuned by the ``KAFKA_*`` settings."""
        return cls(
            producer_config(
                client_conf,
                transactional_id=transactional_id,
                compression=kafka.compression_type,
                linger_ms=kafka.linger_ms,
                message_timeout_ms=kafka.message_timeout_ms,
                transaction_timeout_ms=kafka.transaction_timeout_ms,
            ),
            metrics,
            # A call may wait out a whole delivery timeout before librdkafka answers.
            call_timeout_s=max(30.0, kafka.message_timeout_ms / 1000),
            hold_s=hold_s,
            every_delivery=every_delivery,
        )

    def init(self) -> None:
        """``init_transactions``: fences older instances and settles their open transaction.

        A producer takes it once: a restore that runs again (after a failure part way) starts
        over with a fresh producer, which fences afresh.
        """
        if self._initialised:
            self._use(self._new_producer(self._conf))
        self._call(lambda: self._producer.init_transactions(self._timeout), "init_transactions")
        self._initialised = True

    def recreate(self) -> None:
        """A fresh producer with the same transactional.id, after a ProducerSpentError; the
        restore that follows calls :meth:`init`, which settles what the old one left open."""
        with contextlib.suppress(KafkaException):
            self._producer.flush(0)
        self._use(self._new_producer(self._conf))
        self._initialised = False

    def _use(self, producer: Producer) -> None:
        self._producer = producer
        # Records go to librdkafka straight from bridge/kafka/_produce.c where it can take
        # this producer (a real one, made with our error_cb); else through produce(). Those
        # records carry no delivery callback: a failed one fails the commit, which
        # _abort_or_raise counts and handles, rather than _on_delivery one by one.
        self._native = _produce.bind(producer, self._conf.get("error_cb"))

    def send(
        self,
        records: list[OutRecord],
        checkpoint: OutRecord,
        timeout_s: float,
        *,
        delivered: Delivered | None = None,
    ) -> dict[str, int]:
        """Produce ``records`` and ``checkpoint`` in one transaction and commit it;
        ``delivered`` (tracing) is told where each record landed.

        Returns acknowledged counts per topic (the checkpoint excluded). Raises
        TransactionAbortedError (nothing visible; rewind), ProducerSpentError (an unknown
        outcome, or records that failed delivery: recreate and re-read), or KafkaFatalError
        (fenced or fatal; stop).
        """
        self._errors.clear()
        counts = Counter(map(_topic, records))
        self._txn_topics = {*counts, checkpoint.topic}
        self._call(self._producer.begin_transaction, "begin_transaction")
        try:
            if delivered is None:
                self._produce_all([*records, checkpoint])
            else:
                self._produce_reporting([*records, checkpoint], delivered)
            self._metrics.producer_queue.set(len(self._producer))
            if self._hold_s:
                time.sleep(self._hold_s)
        except KafkaException as exc:
            self._abort_or_raise(exc, "produce")
        except KafkaRetriableError as exc:
            # The local queue stayed full. Left open, the transaction would make every
            # later begin_transaction fail until the broker timed it out.
            self._abort_after(str(exc), exc)
        self._commit(timeout_s)
        self._metrics.transactions.labels("committed").inc()
        self._metrics.producer_queue.set(len(self._producer))
        return dict(counts)

    def close(self, timeout_s: float) -> int:
        """Nothing is left outside a transaction at shutdown; abort one left open."""
        # No transaction open, or the broker is gone: then the broker aborts it on timeout.
        with contextlib.suppress(KafkaException):
            self._producer.abort_transaction(timeout_s)
        # Serve what is queued for the callbacks first: the length counts those too. A
        # producer left fatal (fenced) raises its error again here; it was reported already.
        with contextlib.suppress(KafkaException):
            self._producer.poll(0)
        return len(self._producer)

    def _produce_all(self, batch: list[OutRecord]) -> None:
        if self._native:
            self._produce_native(batch)
            return
        for start in range(0, len(batch), 100):
            for record in batch[start : start + 100]:
                self._produce_one(record)
            # Serve error reports now and then, not after every record.
            self._producer.poll(0)

    def _produce_native(self, batch: list[OutRecord]) -> None:
        """As ``_produce_all``. A record the native call does not take (the queue is full,
        or anything else about it is odd) goes through ``produce``, which raises as ever."""
        producer = self._producer
        done = 0
        while done < len(batch):
            done = _produce.produce(producer, batch, done)
            if done < len(batch):
                self._produce_one(batch[done])
                done += 1
            # Serve error reports, as ``_produce_all`` does now and then.
            producer.poll(0)

    def _produce_reporting(self, batch: list[OutRecord], delivered: Delivered) -> None:
        """As ``_produce_all``, each record with its own delivery callback (tracing)."""
        for n, record in enumerate(batch):
            self._produce_one(record, self._report(delivered, n))
            if n % 100 == 99:
                self._producer.poll(0)

    def _produce_one(self, record: OutRecord, report: _Report | None = None) -> None:
        """``produce`` one record, with its own delivery callback if ``report`` is given.
        A full local queue: serve delivery reports to make room, and try again, a bounded
        number of times."""
        for attempt in range(_BUFFER_FULL_RETRIES):
            if attempt:
                self._producer.poll(0.1 if attempt > 1 else 0)
            try:
                if report is None:
                    self._producer.produce(
                        record.topic, record.value, record.key, headers=record.headers
                    )
                else:
                    self._producer.produce(record.topic, record.value, record.key,
                                           headers=record.headers, on_delivery=report)  # fmt: skip
                return
            except BufferError:
                continue
        raise KafkaRetriableError("producer queue stayed full; is the broker reachable?")

    def _report(self, delivered: Delivered, index: int) -> _Report:
        """A record's own delivery callback, which librdkafka calls instead of the default:
        it notes an error as the default does, then says where the record landed."""

        def report(err: KafkaError | None, msg: Message) -> None:
            self._on_delivery(err, msg)
            if err is None:
                delivered(index, msg.partition() or 0, msg.offset() or 0)

        return report

    def _commit(self, timeout_s: float) -> None:
        deadline = self._clock() + timeout_s
        while True:
            try:
                self._producer.commit_transaction(max(1.0, deadline - self._clock()))
                return
            except KafkaException as exc:
                err = exc.args[0]
                if err.retriable() and not err.txn_requires_abort() and not err.fatal():
                    if self._clock() < deadline:
                        continue  # librdkafka allows repeating a commit that timed out
                    raise CommitOutcomeUnknownError(
                        f"commit_transaction did not complete in {timeout_s:.0f}s: {err}"
                    ) from exc
                self._abort_or_raise(exc, "commit_transaction")

    def _abort_or_raise(self, exc: KafkaException, where: str) -> NoReturn:
        err: KafkaError = exc.args[0]
        refused = self._refused(err)
        if refused is not None:
            self._metrics.producer_errors.labels("fatal").inc()
            # Abort so that nothing stays open; librdkafka may refuse even that (fatal
            # INVALID_TXN_STATE when no partition was added), which must not hide the cause.
            # The source stops either way, and its next start has a new producer.
            with contextlib.suppress(KafkaException):
                self._producer.abort_transaction(self._timeout)
                self._metrics.transactions.labels("aborted").inc()
            raise refused from exc
        self._raise_if_fatal(err, where)
        if where == "commit_transaction" and err.txn_requires_abort() and self._out_of_step(err):
            self._metrics.producer_errors.labels("abortable").inc()
            # Counted now: it ends aborted, by the new producer's init.
            self._metrics.transactions.labels("aborted").inc()
            raise DeliveryFailedError(f"{where}: {err}; left to a new producer to abort") from exc
        if err.txn_requires_abort() or err.retriable() or self._errors:
            self._metrics.producer_errors.labels("abortable").inc()
            self._abort_after(f"{where}: {err}", exc)
        raise CommitOutcomeUnknownError(f"{where}: {err}") from exc

    def _out_of_step(self, err: KafkaError) -> bool:
        """Whether the commit failed on records that timed out or fell out of sequence.

        Records produced natively carry no delivery callback, so their failures are not
        known one by one: a commit failed by undelivered records (``_INCONSISTENT``) whose
        errors are unknown is taken as one; a new producer costs only a restore."""
        if err.code() in _OUT_OF_STEP:
            return True
        if self._errors:
            return any(e.code() in _OUT_OF_STEP for e in self._errors)
        return err.code() == KafkaError._INCONSISTENT

    def _abort_after(self, what: str, cause: BaseException) -> NoReturn:
        try:
            self._producer.abort_transaction(self._timeout)
        except KafkaException as exc:
            self._raise_if_fatal(exc.args[0], "abort_transaction")
            # Still open as far as we know: a new producer's init settles it.
            raise CommitOutcomeUnknownError(f"abort failed after {what}: {exc}") from cause
        self._metrics.transactions.labels("aborted").inc()
        raise TransactionAbortedError(f"{what}; transaction aborted") from cause

    def _raise_if_fatal(self, err: KafkaError, where: str) -> None:
        refused = self._refused(err)
        if refused is not None:
            self._metrics.producer_errors.labels("fatal").inc()
            raise refused
        if err.code() in _FENCED:
            self._metrics.producer_errors.labels("fatal").inc()
            raise KafkaFatalError(
                f"{where}: fenced: another writer of this BRIDGE_SOURCE_ID (transactional.id)"
                f" started, or the broker aborted a transaction past its timeout ({err.str()})",
                fenced=True,
            )
        if err.fatal():
            self._metrics.producer_errors.labels("fatal").inc()
            raise KafkaFatalError(f"{where}: fatal Kafka producer error: {err.str()}")

    def _call(self, fn: Callable[[], T], where: str) -> T:
        """Run a transactional API call, repeating it while librdkafka says retriable."""
        deadline = self._clock() + self._timeout
        while True:
            try:
                return fn()
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                self._raise_if_fatal(err, where)
                if err.retriable() and self._clock() < deadline:
                    self._metrics.producer_errors.labels("retriable").inc()
                    # Serves error_cb meanwhile: a refused login shows only there. A fatal
                    # error raised here is raised again, and handled, by the next attempt.
                    with contextlib.suppress(KafkaException):
                        self._producer.poll(0.5)
                    continue
                raise KafkaRetriableError(f"{where}: {err.str()}") from exc

    def _refused(self, err: KafkaError) -> KafkaAuthorizationError | None:
        """The ACL behind ``err``, if an ACL refused the call."""
        conf, code = self._conf, err.code()
        txn_id = str(conf.get("transactional.id", ""))
        if code == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
            # Without Describe the coordinator lookup fails; with it but without Write, the
            # producer id is refused.
            missing = "Describe" if "coordinator" in err.str() else "Write"
            return denied(
                conf,
                f"use transactional id {txn_id}",
                transactional_id_grant(txn_id),
                err.name(),
                f"{missing} is missing",
            )
        if code == KafkaError.TOPIC_AUTHORIZATION_FAILED:
            topics = self._unwritable(sorted(self._txn_topics))
            return denied(
                conf,
                f"write to topic {', '.join(topics)}",
                topics_grant(topics, "Write", "Describe"),
                err.name(),
                "at commit; the transaction was aborted, nothing of it is visible",
            )
        return None

    def _unwritable(self, topics: list[str]) -> list[str]:
        """Which of the transaction's topics the principal may not write, as the cluster
        says; all of them when it cannot be asked."""
        try:
            admin = AdminClient(admin_conf(self._conf))
            found = topic_operations(admin, topics, min(self._timeout, 10.0))
        except KafkaException:
            return topics
        refused = [t for t in topics if not isinstance(ops := found.get(t), frozenset)
                   or "Write" not in ops]  # fmt: skip
        return refused or topics

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            kind = "fatal" if err.fatal() else "retriable" if err.retriable() else "abortable"
            self._metrics.producer_errors.labels(kind).inc()
            self._errors.append(err)
