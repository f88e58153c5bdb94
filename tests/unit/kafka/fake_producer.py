"""A stand-in for ``confluent_kafka.Producer`` in transactional mode, for Publisher tests.

It keeps what a read_committed consumer would see (``visible``) apart from what was
produced and aborted, serves delivery reports from ``poll``, ``flush`` and
``commit_transaction`` (which flushes, as librdkafka's does, and fails with an abortable
error after a failed delivery), refuses calls made in the wrong transaction state, and
raises scripted ``KafkaException``s, each wrapping a real ``KafkaError``. A scripted
failure can take a while first, at most the call's timeout, on the test's clock: librdkafka
blocks until its timeout when the broker does not answer.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from tests.support import FakeClock

__all__ = ["WHOLE_TIMEOUT", "FakeMessage", "FakeProducer", "Produced", "error"]


def error(
    code: int,
    *,
    fatal: bool = False,
    retriable: bool = False,
    txn_requires_abort: bool = False,
) -> KafkaException:
    """A KafkaException as librdkafka raises it, around a real KafkaError."""
    reason = f"{KafkaError(code).name()} (fake)"
    return KafkaException(
        KafkaError(
            code, reason, fatal=fatal, retriable=retriable, txn_requires_abort=txn_requires_abort
        )
    )


@dataclass(frozen=True)
class Produced:
    topic: str
    value: bytes
    key: bytes | None
    headers: list[tuple[str, Any]]
    timestamp: int


class FakeMessage:
    def __init__(self, record: Produced, offset: int = 0) -> None:
        self._record = record
        self._offset = offset

    def topic(self) -> str:
        return self._record.topic

    def value(self) -> bytes:
        return self._record.value

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset


# ``takes``: the whole timeout the call was given.
WHOLE_TIMEOUT = math.inf


@dataclass
class _Failure:
    exc: BaseException
    takes: float


class FakeProducer:
    def __init__(self, conf: dict[str, Any], clock: FakeClock) -> None:
        self.conf = conf
        self._on_delivery = conf["on_delivery"]
        # As confluent-kafka's: with delivery.report.only.error, only failures are reported.
        self._errors_only = conf.get("delivery.report.only.error", False)
        self._clock = clock
        self._failures: dict[str, list[_Failure]] = defaultdict(list)
        self._spared: dict[str, int] = defaultdict(int)
        self.calls: list[str] = []
        self.initialized = False
        self.in_transaction = False
        self._open: list[Produced] = []  # produced in the open transaction
        self._undelivered: list[Produced] = []
        self.visible: list[Produced] = []  # committed: what read_committed consumers see
        self.aborted: list[Produced] = []
        self.commit_timeouts: list[float] = []
        # Topic -> the error its deliveries fail with.
        self.delivery_errors: dict[str, KafkaError] = {}
        # produce() raises BufferError this many times (the local queue is full) until a
        # poll serves delivery reports.
        self.queue_full_for = 0
        # A record's own delivery callback (produce's on_delivery), and its offset: records
        # are numbered per topic as produced, in partition 0.
        self._callbacks: dict[int, Any] = {}
        self._offsets: dict[int, int] = {}
        self._next_offset: dict[str, int] = defaultdict(int)

    def fail(self, call: str, *excs: BaseException, takes: float = 0.0, after: int = 0) -> None:
        """After ``after`` more calls of ``call`` succeed, the next ones raise ``excs``, one
        each, in order, each after ``takes`` seconds (at most the call's timeout)."""
        self._spared[call] = after
        self._failures[call] += [_Failure(exc, takes) for exc in excs]

    def _enter(self, call: str, timeout: float | None = None) -> None:
        self.calls.append(call)
        scripted = self._failures[call]
        if not scripted:
            return
        if self._spared[call]:
            self._spared[call] -= 1
            return
        failure = scripted.pop(0)
        self._clock.advance(min(failure.takes, math.inf if timeout is None else timeout))
        raise failure.exc

    def init_transactions(self, timeout: float) -> None:
        self._enter("init_transactions", timeout)
        self.initialized = True

    def begin_transaction(self) -> None:
        self._enter("begin_transaction")
        if not self.initialized or self.in_transaction:
            raise error(KafkaError._STATE)
        self.in_transaction = True

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        *,
        headers: list[tuple[str, Any]] | None = None,
        timestamp: int = 0,
        on_delivery: Any = None,
    ) -> None:
        if self.queue_full_for:
            self.calls.append("produce:queue-full")
            raise BufferError("Local: Queue full")
        self._enter("produce")
        if not self.in_transaction:
            raise error(KafkaError._STATE)
        record = Produced(topic, value, key, list(headers or []), timestamp)
        self._open.append(record)
        self._undelivered.append(record)
        self._offsets[id(record)] = self._next_offset[topic]
        self._next_offset[topic] += 1
        if on_delivery is not None:
            self._callbacks[id(record)] = on_delivery

    def poll(self, timeout: float = 0) -> int:
        """Serves delivery reports; with none to serve it blocks for its timeout."""
        self.calls.append("poll")
        self.queue_full_for = max(0, self.queue_full_for - 1)
        served = self._deliver()
        if not served:
            self._clock.advance(timeout)
        return served

    def flush(self, timeout: float = 0) -> int:
        self.calls.append("flush")
        self._deliver()
        return len(self._undelivered)

    def __len__(self) -> int:
        return len(self._undelivered)

    def commit_transaction(self, timeout: float) -> None:
        self.commit_timeouts.append(timeout)
        self._deliver()
        self._enter("commit_transaction", timeout)
        if not self.in_transaction:
            raise error(KafkaError._STATE)
        failed = [r for r in self._open if r.topic in self.delivery_errors]
        if failed:  # librdkafka: a failed delivery makes the commit fail, abortable
            raise error(self.delivery_errors[failed[0].topic].code(), txn_requires_abort=True)
        self.visible += self._open
        self._open = []
        self.in_transaction = False

    def abort_transaction(self, timeout: float) -> None:
        self._enter("abort_transaction", timeout)
        if not self.in_transaction:
            raise error(KafkaError._STATE)
        self.aborted += self._open
        self._open, self._undelivered = [], []
        self.in_transaction = False

    def _deliver(self) -> int:
        served, self._undelivered = self._undelivered, []
        for record in served:
            err = self.delivery_errors.get(record.topic)
            offset = self._offsets.pop(id(record), 0)
            report = self._callbacks.pop(id(record), self._on_delivery)
            if err is None and self._errors_only:
                continue
            report(err, FakeMessage(record, offset))
        return len(served)
