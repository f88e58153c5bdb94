"""The dedup window: which scan ids are new, by UUIDv7 watermark plus a lookback set.

The watermark W is the largest id published. Every poll asks PassEntry for scans created
after the cursor, ``time(W) - lookback``, because ids minted on different API nodes are
ordered only by each node's clock and a scan may become visible after its id was minted.
Inside that overlap the set of ids already published decides what is new.

A scan older than the cursor that is not in the set became visible more than a lookback
after newer scans were published: it is :attr:`Verdict.LATE`. The pipeline dead-letters it
with that reason rather than publishing it out of order or dropping it. To see such scans
at all (the API filters them out of normal polls), a periodic sweep reads the range
``[cursor - sweep, cursor)``; the set keeps that range too, plus a margin for PassEntry's
fuzzy ``createdAfter`` boundary. Older ids are pruned, so memory follows the window (about
lookback + sweep of traffic), never the history.
"""

from __future__ import annotations

import bisect
import enum
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol, TypeVar

from bridge.uuid7 import int_millis, millis_floor

__all__ = ["DedupWindow", "RejectMemory", "Verdict"]

T = TypeVar("T")

# PassEntry documents neither the precision nor the inclusiveness of createdAfter.
BOUNDARY_MARGIN_MS = 60_000


class Verdict(enum.Enum):
    NEW = "new"
    DUPLICATE = "duplicate"
    LATE = "late"


class DedupWindow:
    def __init__(self, lookback_ms: int, watermark: int = 0, sweep_ms: int | None = None) -> None:
        self.lookback_ms = lookback_ms
        self.sweep_ms = lookback_ms if sweep_ms is None else sweep_ms
        self._watermark = watermark
        # How far polling has read completely (Unix ms). Webhooks can publish scans newer
        # than that: the cursor must not run ahead of what polling has covered, or scans
        # polling has yet to read would look late.
        self.read_until_ms: int | None = None
        self._ids: set[int] = set()
        # The same ids, sorted: for pruning and for counting the ids in a time range.
        self._sorted: list[int] = []

    def reset(self, watermark: int = 0) -> None:
        """Forget every id and start from ``watermark`` (a restored checkpoint's)."""
        self._watermark = watermark
        self.read_until_ms = None
        self._ids.clear()
        self._sorted.clear()

    @property
    def watermark(self) -> int:
        """The largest id published, as an int (0 when nothing was published yet)."""
        return self._watermark

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, id_int: int) -> bool:
        return id_int in self._ids

    def cursor_ms(self) -> int | None:
        """Where the lookback starts, in Unix ms: one lookback behind the newest id published,
        or behind ``read_until_ms`` if polling has read less far. None before any scan."""
        if self._watermark == 0:
            return None
        reference = int_millis(self._watermark)
        if self.read_until_ms is not None:
            reference = min(reference, self.read_until_ms)
        return max(0, reference - self.lookback_ms)

    def retention_ms(self) -> int | None:
        """Ids created before this time are pruned; None while the window is empty."""
        cursor = self.cursor_ms()
        return None if cursor is None else max(0, cursor - self.sweep_ms - BOUNDARY_MARGIN_MS)

    def classify(self, id_int: int) -> Verdict:
        if id_int in self._ids:
            return Verdict.DUPLICATE
        cursor = self.cursor_ms()
        if cursor is not None and int_millis(id_int) < cursor:
            return Verdict.LATE
        return Verdict.NEW

    def sort_out(self, items: Mapping[int, T]) -> tuple[list[T], list[T], int]:
        """``items`` by id, each judged as :meth:`classify` judges it: the new ones in id
        order, the late ones, and how many are duplicates."""
        known, cursor = self._ids, self.cursor_ms()
        new: list[int] = []
        late: list[T] = []
        duplicates = 0
        for id_int, item in items.items():
            if id_int in known:
                duplicates += 1
            elif cursor is not None and int_millis(id_int) < cursor:
                late.append(item)
            else:
                new.append(id_int)
        new.sort()
        return [items[id_int] for id_int in new], late, duplicates

    def add(self, id_int: int) -> None:
        """Record a published (or dead-lettered) id and move the watermark."""
        if id_int in self._ids:
            return
        self._ids.add(id_int)
        # Ids arrive mostly in order, so this is nearly always an append.
        if not self._sorted or id_int > self._sorted[-1]:
            self._sorted.append(id_int)
        else:
            bisect.insort(self._sorted, id_int)
        if id_int > self._watermark:
            self._watermark = id_int

    def add_all(self, ids: Iterable[int]) -> None:
        fresh = sorted({id_int for id_int in ids if id_int not in self._ids})
        if fresh:
            self._ids.update(fresh)
            if not self._sorted or fresh[0] > self._sorted[-1]:
                self._sorted += fresh  # a chunk of new scans: the usual case
            else:
                for id_int in fresh:
                    bisect.insort(self._sorted, id_int)
            self._watermark = max(self._watermark, fresh[-1])
        self.prune()

    def prune(self) -> int:
        """Forget ids older than the retention; return how many were dropped."""
        retention = self.retention_ms()
        if retention is None:
            return 0
        cut = bisect.bisect_left(self._sorted, millis_floor(retention))
        if cut:
            self._ids.difference_update(self._sorted[:cut])
            del self._sorted[:cut]
        return cut

    def count_between(self, after_ms: int, before_ms: int) -> int:
        """How many known ids were created strictly after ``after_ms`` and before
        ``before_ms``: PassEntry's createdAfter/createdBefore, counted on our side."""
        lo = bisect.bisect_left(self._sorted, millis_floor(after_ms + 1))
        hi = bisect.bisect_left(self._sorted, millis_floor(before_ms))
        return max(0, hi - lo)

    def snapshot(self) -> tuple[int, list[int]]:
        """Watermark and ids, for rebuilding an identical window after a restart."""
        return self._watermark, sorted(self._ids)


class _Rejectable(Protocol):
    @property
    def scan_id(self) -> str | None: ...
    @property
    def raw(self) -> bytes: ...


class RejectMemory:
    """Remembers dead-lettered scans for a while, so one bad scan is one dead letter.

    A scan whose id is not a UUIDv7 has no creation time we can read, so it cannot join the
    window; but PassEntry keeps returning it while it lies inside ``createdAfter``. This
    memory, keyed by the raw bytes' digest, lasts longer than that.
    """

    def __init__(
        self, ttl_s: float, max_items: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl_s
        self._max = max_items
        self._clock = clock
        self._seen: OrderedDict[bytes, float] = OrderedDict()

    def first_time(self, item: _Rejectable) -> bool:
        now = self._clock()
        while self._seen:
            oldest, at = next(iter(self._seen.items()))
            if now - at <= self._ttl and len(self._seen) <= self._max:
                break
            del self._seen[oldest]
        key = hashlib.blake2b(item.raw, digest_size=16).digest()
        if key in self._seen:
            return False
        self._seen[key] = now
        return True

    def clear(self) -> None:
        self._seen.clear()

    def remember(self, key: bytes) -> None:
        """Restore a digest read back from the dead-letter topic after a restart."""
        self._seen[key] = self._clock()
