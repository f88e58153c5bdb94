"""The inbox pump serves a source's webhooks on the source's own thread: between polls, and
while a poll's request is in flight; a batch whose transaction fails is read again from the
committed position, and the failure is the source loop's to handle."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

import pytest

from bridge.errors import KafkaFatalError, TransactionAbortedError
from bridge.kafka.checkpoint import InboxPosition
from bridge.webhook.inbox import InboxBatch, InboxEvent
from bridge.webhook.pump import InboxPump
from tests.support import FakeClock


class ScriptedInbox:
    """An inbox whose events are a list; ``take`` moves the clock on by its wait when the
    list is empty, as a consumer poll would wait."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.events: list[bytes] = []
        self.position = 0
        # The pipeline's committed position, where a reopened reader starts.
        self.committed_at = 0
        self.reopened = 0
        self.is_open = True
        self.on_take: list[Any] = []

    def take(self, wait_s: float, gather_s: float) -> InboxBatch | None:
        for hook in self.on_take:
            hook()
        if self.position >= len(self.events):
            self.clock.advance(wait_s)
            return None
        taken = self.events[self.position :]
        self.position = len(self.events)
        return InboxBatch([InboxEvent(body, 0) for body in taken], InboxPosition(0, self.position))

    def lag(self) -> int:
        return len(self.events) - self.position

    def reopen(self) -> None:
        self.reopened += 1
        self.position = self.committed_at


def pump_for(inbox: ScriptedInbox, published: list[bytes], fail: list[BaseException]) -> InboxPump:
    def publish(batch: InboxBatch) -> int:
        if fail:
            raise fail.pop(0)
        published.extend(e.body for e in batch.events)
        # As the pipeline does: the committed transaction carried the batch's position,
        # which is where the reader restarts from now on.
        inbox.committed_at = batch.next.offset
        return len(batch.events)

    return InboxPump(
        inbox,  # type: ignore[arg-type]
        publish,
        gather_s=0.02,
        on_lag=lambda lag: None,
        clock=inbox.clock,
    )


def test_between_polls_events_are_published_until_the_poll_is_due() -> None:
    clock = FakeClock()
    inbox = ScriptedInbox(clock)
    published: list[bytes] = []
    pump = pump_for(inbox, published, [])
    inbox.events += [b"a", b"b"]
    pump.serve_for(3.0, threading.Event())
    assert published == [b"a", b"b"]
    assert clock.now >= 1_003.0
    assert pump.last_events_at == 1_000.0


def test_while_a_request_is_in_flight_its_wait_publishes_webhooks() -> None:
    clock = FakeClock()
    inbox = ScriptedInbox(clock)
    published: list[bytes] = []
    pump = pump_for(inbox, published, [])
    answer: Future[str] = Future()
    looks = 0

    def arrive() -> None:
        # An event comes in while PassEntry is slow to answer; it answers two looks later.
        nonlocal looks
        looks += 1
        if looks == 1:
            inbox.events.append(b"pushed")
        if looks == 3:
            answer.set_result("page")

    inbox.on_take.append(arrive)
    assert pump.wait(answer) == "page"
    assert published == [b"pushed"]


def test_a_finished_request_is_returned_without_looking_at_the_inbox() -> None:
    inbox = ScriptedInbox(FakeClock())
    pump = pump_for(inbox, [], [])
    done: Future[int] = Future()
    done.set_result(7)
    inbox.on_take.append(lambda: pytest.fail("the inbox was looked at"))
    assert pump.wait(done) == 7


def test_a_failed_batch_is_read_again_from_the_committed_position() -> None:
    clock = FakeClock()
    inbox = ScriptedInbox(clock)
    published: list[bytes] = []
    pump = pump_for(inbox, published, [TransactionAbortedError("aborted")])
    inbox.events += [b"a", b"b"]
    with pytest.raises(TransactionAbortedError):
        pump.serve_for(1.0, threading.Event())
    assert inbox.reopened == 1
    assert published == []
    pump.serve_for(1.0, threading.Event())
    assert published == [b"a", b"b"]
    assert inbox.committed_at == 2  # the committed batch moved the restart point on
    assert inbox.reopened == 1  # and the pump did not throw away what the consumer holds


def test_a_fatal_failure_reaches_the_source_loop_and_loses_nothing() -> None:
    inbox = ScriptedInbox(FakeClock())
    published: list[bytes] = []
    pump = pump_for(inbox, published, [KafkaFatalError("fenced")])
    inbox.events.append(b"a")
    pending: Future[str] = Future()
    with pytest.raises(KafkaFatalError):
        pump.wait(pending)
    assert inbox.position == inbox.committed_at == 0


def test_an_inbox_not_yet_open_is_not_polled() -> None:
    clock = FakeClock()
    inbox = ScriptedInbox(clock)
    inbox.is_open = False
    inbox.on_take.append(lambda: pytest.fail("the inbox was looked at"))
    pump = pump_for(inbox, [], [])
    stop = threading.Event()
    stop.set()
    pump.serve_for(5.0, stop)
    done: Future[int] = Future()
    done.set_result(1)
    assert pump.wait(done) == 1
