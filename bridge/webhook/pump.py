"""Publish a source's webhook inbox on the source's own thread, between polls and during them.

A source is one thread: it owns its pipeline, producer, dedup window and inbox consumer, so
the poll path and the push path never run at the same time and share their window without a
lock. Between polls the source loop serves the inbox (:meth:`InboxPump.serve_for`, the batch
window as the wait). While a poll waits for PassEntry, the slice reader's blocking waits go
through :meth:`InboxPump.wait`, which serves the inbox until the answer is in: a slow or
rate-limited API never holds a webhook back. The requests themselves run on the reader's
fetch threads, which touch nothing but the HTTP client.

Waits that run between classifying scans and committing them (a missing pass fetched while a
chunk is enriched) do not come here: an event served there could publish a scan the chunk in
hand already judged new.

A batch whose transaction fails is dropped from the consumer, which is reopened at the
position the last committed transaction carried in its checkpoint; the failure is raised in
the source loop, which handles it like a failed poll: retry with backoff,
restore after a commit of unknown outcome, or stop when fatal.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

from bridge.webhook.inbox import InboxBatch, InboxReader

__all__ = ["InboxPump"]

T = TypeVar("T")

# How long one look at the inbox may wait while a request is in flight: the longest a
# finished request waits for the source to notice it.
_DURING_REQUEST_S = 0.02


class InboxPump:
    def __init__(
        self,
        reader: InboxReader,
        publish: Callable[[InboxBatch], int],
        *,
        gather_s: float,
        on_lag: Callable[[int], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``publish(batch)`` commits a batch with its position and returns its event count."""
        self._reader = reader
        self._publish = publish
        self._gather_s = gather_s
        self._on_lag = on_lag
        self._clock = clock
        # When the last batch with events was published: polling is the backstop meanwhile.
        self.last_events_at = -math.inf

    def serve_for(self, seconds: float, stop: threading.Event) -> None:
        """Publish what arrives for ``seconds``, or until ``stop``."""
        deadline = self._clock() + seconds
        while not stop.is_set() and (left := deadline - self._clock()) > 0:
            if not self._reader.is_open:
                stop.wait(left)
                return
            self.serve(min(left, 0.5))

    def wait(self, future: Future[T]) -> T:
        """``future``'s result; inbox events are published while it is not done."""
        while not future.done() and self._reader.is_open:
            self.serve(_DURING_REQUEST_S)
        return future.result()

    def serve(self, wait_s: float) -> None:
        """Take one batch (waiting up to ``wait_s`` for its first event) and publish it."""
        batch = self._reader.take(wait_s, self._gather_s)
        self._on_lag(self._reader.lag())
        if batch is None:
            return
        try:
            events = self._publish(batch)
        except BaseException:
            # Nothing of the batch is visible: read it again from the committed position.
            self._reader.reopen()
            raise
        if events:
            self.last_events_at = self._clock()
