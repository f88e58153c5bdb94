"""UUIDv7 (RFC 9562): parse, mint, and read the creation time out of the id.

A UUIDv7 keeps a big-endian 48-bit Unix timestamp in milliseconds in its first six bytes,
so ids sort by creation time and the id itself says when the scan was created. The bridge
uses that time, never the reader device's ``scannedAt`` clock, for its cursor.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from datetime import UTC, datetime

from bridge._uuid7 import parse_int as _parse_int
from bridge.errors import InvalidUUIDv7Error

__all__ = [
    "UUIDv7Minter",
    "int_millis",
    "max_for_millis",
    "millis_floor",
    "min_for_millis",
    "parse_uuid7",
    "parse_uuid7_int",
    "uuid7_datetime",
    "uuid7_millis",
]

# A UUIDv7's top 48 bits are its creation time in Unix milliseconds.
_MILLIS_SHIFT = 80
_VERSION_SHIFT = 76
_VARIANT_SHIFT = 62


def parse_uuid7(text: str) -> uuid.UUID:
    """Parse ``text`` as a canonical UUIDv7 or raise :class:`InvalidUUIDv7Error`.

    Only the canonical 36-character hyphenated form is accepted: the API documents that
    form, and accepting braces or URNs would let two spellings of one id dodge the dedup.
    """
    if len(text) != 36 or text[8] != "-" or text[13] != "-" or text[18] != "-" or text[23] != "-":
        raise InvalidUUIDv7Error(f"not a canonical UUID: {text[:64]!r}")
    try:
        value = uuid.UUID(text)
    except ValueError as exc:
        raise InvalidUUIDv7Error(f"not a UUID: {text[:64]!r}") from exc
    if value.version != 7:
        raise InvalidUUIDv7Error(f"UUID version {value.version}, expected 7: {text}")
    if value.variant != uuid.RFC_4122:
        raise InvalidUUIDv7Error(f"UUID variant is not RFC 9562: {text}")
    return value


def parse_uuid7_int(text: str) -> int:
    """:func:`parse_uuid7` as an int, for the hot path: one native call
    (``bridge/_uuid7.c``) instead of a ``uuid.UUID``. Same rules; errors come from
    :func:`parse_uuid7`."""
    value = _parse_int(text)
    if value is None:
        return parse_uuid7(text).int  # raises with the precise reason
    return value


def int_millis(id_int: int) -> int:
    """Creation time, in Unix milliseconds, of a UUIDv7 held as an int: its top 48 bits."""
    return id_int >> _MILLIS_SHIFT


def millis_floor(millis: int) -> int:
    """An int below every UUIDv7 of this millisecond and above every earlier one: a bound
    for bisecting sorted ids by time."""
    return millis << _MILLIS_SHIFT


def uuid7_millis(value: uuid.UUID) -> int:
    """Creation time of a UUIDv7 in Unix milliseconds."""
    return value.int >> _MILLIS_SHIFT


def uuid7_datetime(value: uuid.UUID) -> datetime:
    """Creation time of a UUIDv7 as an aware UTC datetime."""
    return datetime.fromtimestamp(uuid7_millis(value) / 1000, tz=UTC)


def min_for_millis(millis: int) -> uuid.UUID:
    """The smallest UUIDv7 value with this timestamp: a lower bound for range checks."""
    return uuid.UUID(int=(millis << _MILLIS_SHIFT) | (7 << _VERSION_SHIFT) | (2 << _VARIANT_SHIFT))


def max_for_millis(millis: int) -> uuid.UUID:
    """The largest UUIDv7 value with this timestamp."""
    rand_a = (1 << 12) - 1
    rand_b = (1 << 62) - 1
    return uuid.UUID(
        int=(millis << _MILLIS_SHIFT)
        | (7 << _VERSION_SHIFT)
        | (rand_a << 64)
        | (2 << _VARIANT_SHIFT)
        | rand_b
    )


class UUIDv7Minter:
    """Mints UUIDv7 ids that are monotonic per minter, even within one millisecond.

    ``clock_skew_ms`` shifts this minter's clock, to simulate an API node whose clock is
    off. Monotonicity follows RFC 9562 method 1: a 12-bit counter in ``rand_a`` seeded
    randomly each new millisecond, and the timestamp borrowed forward on overflow.
    """

    def __init__(self, clock_skew_ms: int = 0, rng: random.Random | None = None) -> None:
        # A seeded rng makes a simulator run replayable; os.urandom otherwise.
        self._rng = rng
        self._skew = clock_skew_ms
        self._lock = threading.Lock()
        self._last_ms = -1
        self._counter = 0

    def mint(self, at_ms: int | None = None) -> uuid.UUID:
        now = (time.time_ns() // 1_000_000 if at_ms is None else at_ms) + self._skew
        with self._lock:
            if now > self._last_ms:
                self._last_ms = now
                self._counter = self._bits(10)
            else:
                self._counter += 1
                if self._counter > 0xFFF:
                    self._last_ms += 1
                    self._counter = 0
            ms, counter = self._last_ms, self._counter
            rand_b = self._bits(62)
        return uuid.UUID(
            int=(ms << _MILLIS_SHIFT)
            | (7 << _VERSION_SHIFT)
            | (counter << 64)
            | (2 << _VARIANT_SHIFT)
            | rand_b
        )

    def _bits(self, n: int) -> int:
        if self._rng is not None:
            return self._rng.getrandbits(n)
        return int.from_bytes(os.urandom((n + 7) // 8), "big") & ((1 << n) - 1)
