"""The transactional Publisher against a fake confluent_kafka.Producer: what becomes visible
to read_committed consumers, and which error the caller gets, on each of librdkafka's error
classes (retriable, abortable, fenced, fatal) and in each call of a transaction."""

from __future__ import annotations

import json

import pytest
from confluent_kafka import KafkaError

from bridge.errors import (
    CommitOutcomeUnknownError,
    DeliveryFailedError,
    KafkaFatalError,
    KafkaRetriableError,
    TransactionAbortedError,
)
from bridge.kafka.producer import Publisher
from bridge.kafka.records import OutRecord
from bridge.ops.metrics import Metrics
from tests.support import FakeClock, sample
from tests.unit.kafka.fake_producer import WHOLE_TIMEOUT, FakeProducer, Produced, error

COMMIT_TIMEOUT_S = 20.0
CALL_TIMEOUT_S = 30.0

TIMED_OUT = KafkaError._TIMED_OUT
# An abortable error that is not about deliveries (a coordinator's answer to EndTxn, say).
ABORTABLE = KafkaError.UNKNOWN


class Bench:
    """A Publisher on fake producers (one per create or recreate) and a fake clock."""

    def __init__(
        self,
        *,
        every_delivery: bool = False,
        call_timeout_s: float = CALL_TIMEOUT_S,
    ) -> None:
        self.clock = FakeClock()
        self.metrics = Metrics()
        self.producers: list[FakeProducer] = []
        self.publisher = Publisher(
            {"transactional.id": "passentry-bridge.t"},
            self.metrics,
            call_timeout_s=call_timeout_s,
            every_delivery=every_delivery,
            producer_factory=self._make,
            clock=self.clock,
        )

    def _make(self, conf: dict[str, object]) -> FakeProducer:
        producer = FakeProducer(conf, self.clock)
        self.producers.append(producer)
        return producer

    @property
    def producer(self) -> FakeProducer:
        return self.producers[-1]

    def send(self, records: list[OutRecord], n: int = 1) -> dict[str, int]:
        return self.publisher.send(records, checkpoint(n), COMMIT_TIMEOUT_S)

    def transactions(self, outcome: str) -> float:
        return sample(self.metrics, "passentry_bridge_transactions_total", outcome=outcome)

    def producer_errors(self, kind: str) -> float:
        return sample(self.metrics, "passentry_bridge_producer_errors_total", kind=kind)


@pytest.fixture
def bench() -> Bench:
    b = Bench()
    b.publisher.init()
    return b


def scan(n: int, topic: str = "scans") -> OutRecord:
    return OutRecord(topic, f"gate-{n % 3}".encode(), b"avro-%d" % n, [("scan-id", str(n))], n + 1)


def dead_letter(n: int) -> OutRecord:
    return OutRecord("dlq", None, b"{}", [("dlq-reason", "invalid_id")], dlq_reason="invalid_id")


def checkpoint(n: int = 1) -> OutRecord:
    return OutRecord("state", b"src", json.dumps({"n": n}).encode(), [])


def values(records: list[Produced]) -> list[bytes]:
    return [r.value for r in records]


def test_a_send_commits_records_and_checkpoint_together_and_counts_acks_per_topic(
    bench: Bench,
) -> None:
    records = [scan(n) for n in range(150)] + [scan(7, "scans.other"), dead_letter(1)]
    acked = bench.send(records)
    assert acked == {"scans": 150, "scans.other": 1, "dlq": 1}  # the checkpoint is not counted
    visible = bench.producer.visible
    assert values(visible) == [*(r.value for r in records), checkpoint().value]
    # Stamped by the producer when published (0 here: the client's clock), never the
    # scan's creation time, which time-based retention would count from.
    assert [(r.topic, r.key, r.timestamp) for r in visible[:2]] == [
        ("scans", b"gate-0", 0),
        ("scans", b"gate-1", 0),
    ]
    assert visible[0].headers == [("scan-id", "0")]
    assert visible[-1].topic == "state"
    assert bench.producer.aborted == []
    assert bench.transactions("committed") == 1
    # The next transaction starts clean.
    assert bench.send([scan(1000)], 2) == {"scans": 1}
    assert bench.transactions("committed") == 2


def test_successful_deliveries_are_not_reported_unless_asked() -> None:
    # A committed transaction proves its records delivered: no callback per record.
    assert Bench().producer.conf["delivery.report.only.error"] is True
    assert Bench(every_delivery=True).producer.conf["delivery.report.only.error"] is False


def test_delivered_is_told_where_each_record_landed_and_acks_are_still_counted() -> None:
    bench = Bench(every_delivery=True)
    bench.publisher.init()
    landed: dict[int, tuple[int, int]] = {}
    records = [scan(n) for n in range(3)] + [dead_letter(1)]
    acked = bench.publisher.send(
        records, checkpoint(), COMMIT_TIMEOUT_S,
        delivered=lambda index, partition, offset: landed.update({index: (partition, offset)}),
    )  # fmt: skip
    assert acked == {"scans": 3, "dlq": 1}
    # Offsets per topic, in the order produced; the checkpoint is index len(records).
    assert {i: landed[i] for i in range(4)} == {0: (0, 0), 1: (0, 1), 2: (0, 2), 3: (0, 0)}


def test_a_retriable_commit_error_is_retried_within_the_deadline(bench: Bench) -> None:
    # The first commit hangs for most of the deadline, then times out.
    bench.producer.fail("commit_transaction", error(TIMED_OUT, retriable=True), takes=19.5)
    assert bench.send([scan(1), scan(2)]) == {"scans": 2}
    assert values(bench.producer.visible) == [b"avro-1", b"avro-2", checkpoint().value]
    # The second attempt only gets what is left of the deadline (but at least a second).
    assert bench.producer.commit_timeouts == [COMMIT_TIMEOUT_S, 1.0]
    assert bench.transactions("committed") == 1
    assert bench.transactions("aborted") == 0


def test_a_commit_failing_past_its_deadline_has_an_unknown_outcome(bench: Bench) -> None:
    started = bench.clock()
    bench.producer.fail(
        "commit_transaction",
        error(TIMED_OUT, retriable=True),
        error(KafkaError._TRANSPORT, retriable=True),
        *[error(TIMED_OUT, retriable=True)] * 10,
        takes=7.0,
    )
    with pytest.raises(CommitOutcomeUnknownError, match="did not complete in 20s"):
        bench.send([scan(1)])
    # Retried with what was left of the deadline until it had passed, then given up.
    assert bench.producer.commit_timeouts == [COMMIT_TIMEOUT_S, 13.0, 6.0]
    assert bench.clock() - started == COMMIT_TIMEOUT_S
    # Neither committed nor aborted by us: whether it landed is for a new producer to settle.
    assert bench.producer.visible == []
    assert bench.producer.aborted == []
    assert "abort_transaction" not in bench.producer.calls
    assert bench.transactions("committed") == 0
    bench.publisher.recreate()
    assert len(bench.producers) == 2
    # The restore that follows inits the new producer, which settles the old transaction.
    bench.publisher.init()
    assert len(bench.producers) == 2
    assert bench.producer.initialized
    assert bench.send([scan(2)], 2) == {"scans": 1}
    assert values(bench.producer.visible) == [b"avro-2", checkpoint(2).value]


@pytest.mark.parametrize(
    ("where", "after", "aborted"),
    [
        ("commit_transaction", 0, [b"avro-1", b"avro-2", checkpoint().value]),
        ("produce", 1, [b"avro-1"]),  # the second record's produce fails
    ],
)
def test_an_abortable_error_aborts_and_nothing_becomes_visible(
    bench: Bench, where: str, after: int, aborted: list[bytes]
) -> None:
    bench.producer.fail(where, error(ABORTABLE, txn_requires_abort=True), after=after)
    with pytest.raises(TransactionAbortedError, match="transaction aborted"):
        bench.send([scan(1), scan(2)])
    assert bench.producer.visible == []
    assert values(bench.producer.aborted) == aborted
    assert bench.transactions("aborted") == 1
    assert bench.transactions("committed") == 0
    assert bench.producer_errors("abortable") == 1
    # Rewound by the caller, the chunk is sent again in a new transaction.
    assert bench.send([scan(1), scan(2)]) == {"scans": 2}
    assert values(bench.producer.visible) == [b"avro-1", b"avro-2", checkpoint().value]


def test_a_failed_delivery_makes_the_commit_abort(bench: Bench) -> None:
    bench.producer.delivery_errors["dlq"] = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "big")
    with pytest.raises(TransactionAbortedError):
        bench.send([scan(1), dead_letter(2)])
    assert bench.producer.visible == []
    assert bench.transactions("aborted") == 1
    assert bench.producer_errors("abortable") == 2  # the delivery report, and the commit


@pytest.mark.parametrize(
    "code",
    [KafkaError._MSG_TIMED_OUT, KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER],
    ids=["_MSG_TIMED_OUT", "OUT_OF_ORDER_SEQUENCE_NUMBER"],
)
def test_records_that_timed_out_or_fell_out_of_sequence_leave_the_abort_to_a_new_producer(
    bench: Bench, code: int
) -> None:
    # A broker restarted under the transaction: its abort would wait out the records still
    # in flight, and the next transaction on this producer failed out of sequence again.
    bench.producer.delivery_errors["scans"] = KafkaError(code, "a broker went away")
    with pytest.raises(DeliveryFailedError, match="left to a new producer to abort"):
        bench.send([scan(1), scan(2)])
    spent = bench.producer
    assert "abort_transaction" not in spent.calls
    assert spent.visible == []
    assert bench.transactions("aborted") == 1  # by the next producer's init
    # The caller recreates the producer; its init settles the transaction left open.
    bench.publisher.recreate()
    bench.publisher.init()
    assert bench.producer is not spent
    assert bench.send([scan(1), scan(2)]) == {"scans": 2}
    assert values(bench.producer.visible) == [b"avro-1", b"avro-2", checkpoint().value]


@pytest.mark.parametrize(
    "code",
    [KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, KafkaError._INCONSISTENT],
    ids=["OUT_OF_ORDER_SEQUENCE_NUMBER", "_INCONSISTENT"],
)
def test_a_commit_failed_by_records_whose_errors_are_unknown_is_left_to_a_new_producer(
    bench: Bench, code: int
) -> None:
    # Records produced natively report no failure one by one: librdkafka's commit says only
    # that some failed delivery (_INCONSISTENT).
    bench.producer.fail("commit_transaction", error(code, txn_requires_abort=True))
    with pytest.raises(DeliveryFailedError):
        bench.send([scan(1)])
    assert "abort_transaction" not in bench.producer.calls
    assert bench.producer_errors("abortable") == 1


def test_records_refused_for_another_reason_are_aborted_on_the_same_producer(
    bench: Bench,
) -> None:
    bench.producer.delivery_errors["scans"] = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "big")
    bench.producer.fail(
        "commit_transaction", error(KafkaError._INCONSISTENT, txn_requires_abort=True)
    )
    with pytest.raises(TransactionAbortedError):
        bench.send([scan(1)])
    assert values(bench.producer.aborted) == [b"avro-1", checkpoint().value]


def test_a_latched_delivery_error_turns_an_unclassified_commit_error_into_an_abort(
    bench: Bench,
) -> None:
    # A commit error that is neither retriable nor abortable has an unknown outcome...
    bench.producer.fail("commit_transaction", error(KafkaError.INVALID_TXN_STATE))
    with pytest.raises(CommitOutcomeUnknownError):
        bench.send([scan(1)])
    assert bench.producer.aborted == []
    # ...unless a delivery already failed: then the transaction cannot have committed whole.
    bench.publisher.recreate()
    bench.publisher.init()
    bench.producer.delivery_errors["scans"] = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "big")
    bench.producer.fail("commit_transaction", error(KafkaError.INVALID_TXN_STATE))
    with pytest.raises(TransactionAbortedError):
        bench.send([scan(2)], 2)
    assert values(bench.producer.aborted) == [b"avro-2", checkpoint(2).value]
    assert bench.producer.visible == []


@pytest.mark.parametrize(
    "code",
    [KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH],
    ids=["_FENCED", "PRODUCER_FENCED", "INVALID_PRODUCER_EPOCH"],
)
@pytest.mark.parametrize("where", ["commit_transaction", "produce", "begin_transaction"])
def test_fenced_by_another_instance_is_fatal_and_names_the_setting(
    bench: Bench, code: int, where: str
) -> None:
    # Not flagged fatal: the code alone says another instance took over.
    bench.producer.fail(where, error(code))
    with pytest.raises(KafkaFatalError, match=r"fenced.*BRIDGE_SOURCE_ID"):
        bench.send([scan(1)])
    assert bench.producer.visible == []
    assert bench.producer_errors("fatal") == 1
    assert bench.transactions("aborted") == 0


@pytest.mark.parametrize("where", ["commit_transaction", "produce", "begin_transaction"])
def test_a_fatal_producer_error_is_fatal(bench: Bench, where: str) -> None:
    bench.producer.fail(where, error(KafkaError._FATAL, fatal=True))
    with pytest.raises(KafkaFatalError, match="fatal Kafka producer error"):
        bench.send([scan(1)])
    assert bench.producer.visible == []
    assert bench.producer_errors("fatal") == 1


def test_fenced_at_init_is_fatal() -> None:
    bench = Bench()
    bench.producer.fail("init_transactions", error(KafkaError.PRODUCER_FENCED, fatal=True))
    with pytest.raises(KafkaFatalError, match="init_transactions: fenced"):
        bench.publisher.init()


def test_init_retries_a_retriable_error_then_gives_up_after_the_call_timeout() -> None:
    bench = Bench()
    bench.producer.fail("init_transactions", *[error(TIMED_OUT, retriable=True)] * 2)
    bench.publisher.init()
    assert bench.producer.initialized
    # Between attempts it polls for half a second (serving error_cb meanwhile).
    assert bench.producer.calls == ["init_transactions", "poll"] * 2 + ["init_transactions"]
    assert bench.clock() - 1_000 == 1.0
    assert bench.producer_errors("retriable") == 2

    slow = Bench()
    slow.producer.fail("init_transactions", *[error(TIMED_OUT, retriable=True)] * 10, takes=10)
    with pytest.raises(KafkaRetriableError, match="init_transactions"):
        slow.publisher.init()
    assert not slow.producer.initialized
    # Attempts at 0 s, 10.5 s and 21 s, each taking 10 s: the third ends past the 30 s.
    assert slow.producer.calls.count("init_transactions") == 3
    assert slow.clock() - 1_000 == 31.0


def test_aborting_that_fails_leaves_the_outcome_unknown(bench: Bench) -> None:
    bench.producer.fail("commit_transaction", error(ABORTABLE, txn_requires_abort=True))
    bench.producer.fail("abort_transaction", error(TIMED_OUT, retriable=True), takes=WHOLE_TIMEOUT)
    with pytest.raises(CommitOutcomeUnknownError, match="abort failed after commit_transaction"):
        bench.send([scan(1)])
    assert bench.transactions("aborted") == 0
    assert bench.transactions("committed") == 0
    assert bench.producer.visible == []


def test_aborting_that_finds_the_producer_fenced_is_fatal(bench: Bench) -> None:
    bench.producer.fail("commit_transaction", error(ABORTABLE, txn_requires_abort=True))
    bench.producer.fail("abort_transaction", error(KafkaError._FENCED, fatal=True))
    with pytest.raises(KafkaFatalError, match="abort_transaction: fenced"):
        bench.send([scan(1)])


def test_a_full_local_queue_is_retried_after_serving_delivery_reports(bench: Bench) -> None:
    bench.producer.queue_full_for = 3
    assert bench.send([scan(n) for n in range(5)]) == {"scans": 5}
    calls = bench.producer.calls
    first_produce = calls.index("produce")
    # Each refusal was followed by a poll that made room, then the same record again.
    assert (
        calls[:first_produce]
        == ["init_transactions", "begin_transaction"]
        + [
            "produce:queue-full",
            "poll",
        ]
        * 3
    )
    assert values(bench.producer.visible) == [b"avro-%d" % n for n in range(5)] + [
        checkpoint().value
    ]


def test_a_local_queue_that_stays_full_is_a_retriable_error(bench: Bench) -> None:
    bench.producer.queue_full_for = 10**9  # the broker is unreachable: nothing drains
    with pytest.raises(KafkaRetriableError, match="producer queue stayed full"):
        bench.send([scan(1)])
    assert bench.producer.calls.count("produce:queue-full") == 100
    assert bench.producer.visible == []


def test_after_the_queue_stayed_full_the_next_send_starts_a_new_transaction(bench: Bench) -> None:
    bench.producer.queue_full_for = 10**9
    with pytest.raises(KafkaRetriableError):
        bench.send([scan(1)])
    bench.producer.queue_full_for = 0
    assert bench.send([scan(1)], 2) == {"scans": 1}
    assert values(bench.producer.visible) == [b"avro-1", checkpoint(2).value]


def test_an_abort_that_fails_after_the_queue_stayed_full_is_settled_by_a_new_producer(
    bench: Bench,
) -> None:
    bench.producer.queue_full_for = 10**9
    bench.producer.fail("abort_transaction", error(KafkaError._TIMED_OUT, retriable=True))
    with pytest.raises(CommitOutcomeUnknownError, match="abort failed after producer queue"):
        bench.send([scan(1)])
    assert bench.transactions("aborted") == 0


def test_a_second_init_starts_over_with_a_fresh_producer(bench: Bench) -> None:
    """A restore that runs again after failing part way fences afresh."""
    first = bench.producer
    bench.publisher.init()
    assert len(bench.producers) == 2
    assert bench.producer is not first
    assert bench.producer.initialized
    assert bench.send([scan(1)]) == {"scans": 1}
    assert first.visible == []


@pytest.mark.parametrize("transaction_timeout_ms", [1_000, 30_000])
def test_the_hung_broker_timeouts_are_ones_librdkafka_takes(transaction_timeout_ms: int) -> None:
    """The client's socket timeout (a hung broker's cost) stays under the transaction's, as
    librdkafka requires, and a real producer is made from the result."""
    from confluent_kafka import Producer

    from bridge.config.models import KafkaSettings
    from bridge.kafka.producer import producer_config

    base = KafkaSettings().librdkafka()
    assert base["socket.timeout.ms"] == 30_000
    conf = producer_config(
        base,
        transactional_id="t",
        compression="lz4",
        linger_ms=5,
        message_timeout_ms=transaction_timeout_ms - 500,
        transaction_timeout_ms=transaction_timeout_ms,
    )
    assert conf["socket.timeout.ms"] == min(30_000, transaction_timeout_ms - 100)
    Producer(conf).flush(0)
