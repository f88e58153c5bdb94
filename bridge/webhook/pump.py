"""Take a source's inbox events on a thread of its own, so that a poll cycle (its count
requests, a slice read) never holds a webhook back: the pipeline's commit lock keeps the two
paths' transactions apart, and their dedup window shared.

A retriable failure (the broker away, a transaction aborted) rewinds the batch and tries
again with backoff. A fatal one (fenced), or a commit whose outcome is unknown, stops the
pump and is raised in the source's own loop, which knows how to handle it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from bridge.errors import CommitOutcomeUnknownError, RetriableError
from bridge.webhook.inbox import InboxBatch, InboxReader

__all__ = ["InboxPump"]

log = logging.getLogger(__name__)

_BACKOFF_MAX_S = 5.0


class InboxPump:
    def __init__(
        self,
        reader: InboxReader,
        publish: Callable[[InboxBatch, Any], int],
        *,
        gather_s: float,
        on_lag: Callable[[int], None],
        on_events: Callable[[], None],
    ) -> None:
        """``publish(batch, group_metadata)`` commits a batch and returns its event count."""
        self._reader = reader
        self._publish = publish
        self._gather_s = gather_s
        self._on_lag = on_lag
        self._on_events = on_events
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    def start(self) -> None:
        self._stop.clear()
        self._failure = None
        self._thread = threading.Thread(
            target=self._run, name=f"inbox-{self._reader.source_id}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop after the batch in hand (its transaction commits or aborts first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def raise_if_failed(self) -> None:
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self._pump_once()
                backoff = 0.5
            except CommitOutcomeUnknownError as exc:
                self._failure = exc
                return
            except RetriableError as exc:
                log.warning(
                    "webhook inbox: nothing of the batch was published; trying again",
                    extra={"source_id": self._reader.source_id, "error": str(exc)},
                )
                self._stop.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
            except BaseException as exc:  # fatal, or a bug: the source's loop raises it
                self._failure = exc
                return

    def _pump_once(self) -> None:
        batch = self._reader.take(0.2, self._gather_s)
        self._on_lag(self._reader.lag())
        if batch is None:
            return
        try:
            events = self._publish(batch, self._reader.group_metadata())
        except RetriableError:
            # Nothing of the batch is visible: read it again.
            self._reader.rewind(batch)
            raise
        if events:
            self._on_events()
