"""Webhook events accepted recently, so that a redelivery is answered without a second
inbox record.

PassEntry may deliver an event more than once, and anyone who captured a signed request
can send it again for as long as its timestamp passes the age check. Each accepted event is
remembered by source and ``data.id`` until that check would refuse it anyway (its timestamp
plus the source's maximum age), in memory only: a restart forgets, and a forgotten event
written twice is still published once, because the owner deduplicates by scan id. At most
``capacity`` events are remembered; beyond that the oldest go first. Each costs about 180
bytes (a 16-byte digest of the key and its expiry).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

__all__ = ["ReplayCache"]


class ReplayCache:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._expiry: OrderedDict[bytes, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._expiry)

    def seen(self, source_id: str, event_id: str, now: float) -> bool:
        """Whether the event was accepted and is still within its window at ``now``."""
        self._expire(now)
        expires = self._expiry.get(_key(source_id, event_id))
        return expires is not None and expires > now

    def add(self, source_id: str, event_id: str, expires: float) -> None:
        """Remember an accepted event until ``expires`` (Unix seconds)."""
        if self.capacity <= 0:
            return
        key = _key(source_id, event_id)
        self._expiry[key] = expires
        self._expiry.move_to_end(key)
        while len(self._expiry) > self.capacity:
            self._expiry.popitem(last=False)

    def _expire(self, now: float) -> None:
        # Events arrive roughly in timestamp order, so expired ones gather at the front;
        # one that expires later than its neighbours only delays their removal.
        while self._expiry:
            key, expires = next(iter(self._expiry.items()))
            if expires > now:
                return
            del self._expiry[key]


def _key(source_id: str, event_id: str) -> bytes:
    return hashlib.blake2b(f"{source_id}\0{event_id}".encode(), digest_size=16).digest()
