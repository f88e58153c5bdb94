"""Drop repeats of a scan id, remembering a bounded window of ids by their creation time.

The bridge publishes each scan once per source under ``read_committed``. A consumer still
sees a scan id again when:

- two bridge sources have overlapping PassEntry filters: each publishes the scan once,
  with its own ``source-id`` / ``ce_source``, usually moments apart;
- the consumer itself reads records again: it crashed or lost its partitions after
  handling records and before their offsets were committed (at-least-once on its side);
- an operator ran ``passentry-bridge state reset``, which republishes a range by design.

The first two repeat an id soon after its first copy. The window covers them: it keeps the
ids created within ``window`` of the newest scan seen (a UUIDv7 says when it was created),
so memory is bounded by the scans of one window, never by the topic's history. An id older
than the window cannot be told apart from a new one and is let through, counted in
``forgotten``: a reset that republishes older scans needs a durable check (a unique key on
``scanId`` in the consumer's database), which is the only complete dedupe.
"""

from __future__ import annotations

import heapq
import uuid
from datetime import timedelta

from bridge.uuid7 import int_millis

__all__ = ["ScanDeduper"]


class ScanDeduper:
    """``first_time(scan_id)`` is True once per scan id within the window.

    >>> d = ScanDeduper(timedelta(minutes=10))
    >>> d.first_time("0194d6a9-95b5-7556-896c-693a6ef61c4d")
    True
    >>> d.first_time("0194d6a9-95b5-7556-896c-693a6ef61c4d")
    False
    """

    def __init__(self, window: timedelta = timedelta(hours=1)) -> None:
        if window <= timedelta(0):
            raise ValueError("window must be positive")
        self._window_ms = int(window.total_seconds() * 1000)
        self._seen: set[str] = set()
        self._by_time: list[tuple[int, str]] = []
        self._newest_ms = 0
        self.repeats = 0
        self.forgotten = 0

    def first_time(self, scan_id: str) -> bool:
        """True for an id not seen within the window (remember it), False for a repeat.
        Raises ValueError for an id that is not a UUIDv7 (the bridge publishes no such
        scan: it dead-letters them)."""
        created_ms = _uuid7_ms(scan_id)
        key = scan_id.lower()
        if key in self._seen:
            self.repeats += 1
            return False
        if created_ms < self._newest_ms - self._window_ms:
            self.forgotten += 1
            return True
        self._seen.add(key)
        heapq.heappush(self._by_time, (created_ms, key))
        if created_ms > self._newest_ms:
            self._newest_ms = created_ms
            self._prune()
        return True

    def __len__(self) -> int:
        return len(self._seen)

    def _prune(self) -> None:
        horizon = self._newest_ms - self._window_ms
        while self._by_time and self._by_time[0][0] < horizon:
            _, old = heapq.heappop(self._by_time)
            self._seen.discard(old)


def _uuid7_ms(scan_id: str) -> int:
    try:
        value = uuid.UUID(scan_id)
    except ValueError:
        raise ValueError(f"scan id {scan_id[:64]!r} is not a UUID") from None
    if value.version != 7:
        raise ValueError(f"scan id {scan_id} is not a UUIDv7")
    return int_millis(value.int)
