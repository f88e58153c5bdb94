"""One bucket, PassEntry against Kafka: count first, and look closer only where they differ.

The words the report uses:

- **missing**: PassEntry lists the scan; it is in neither the main topics nor the DLQ;
- **dead-lettered**: in the DLQ, not in the main topics (``late_scan``: the live bridge saw
  it after its lookback and did not publish it; other reasons: the scan cannot be published);
- **extra**: in the main topics but not listed by PassEntry, or there more than once.

If PassEntry's ``totalCount`` equals the distinct ids Kafka holds for the bucket (main topics
plus dead letters), the bucket is complete, for one request. Otherwise the census halves the
range where the counts differ and lists the small ranges, and those listings name every
missing and extra id. Counting cannot see a missing scan and an extra one that cancel out in
the same range; the listing would, but it is not read when the counts agree.

For a repair, ``late_scan`` dead letters old enough to be safe count as absent, so the
census lists them too and the repair publishes them with their page's pass and reader.
"""

from __future__ import annotations

import bisect
import hashlib
import threading
import uuid
from dataclasses import dataclass, field

from bridge.audit.buckets import Bucket
from bridge.audit.census import Census, differences
from bridge.audit.inventory import Inventory
from bridge.passentry.pages import Listed, ListedReject

__all__ = ["BucketResult", "Repairs", "compare_bucket"]


def id_text(id_int: int) -> str:
    return str(uuid.UUID(int=id_int))


@dataclass(slots=True)
class BucketResult:
    bucket: Bucket
    passentry: int | None
    kafka: int
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    dead_lettered: list[str] = field(default_factory=list)
    # Newer than the live horizon: the live bridge may still publish these; not repaired.
    live: bool = False
    repaired: int = 0

    @property
    def status(self) -> str:
        if self.missing:
            return "missing"
        if self.extra:
            return "extra"
        return "complete"


@dataclass(slots=True)
class Repairs:
    """What a repair would publish for one bucket."""

    scans: list[Listed] = field(default_factory=list)
    rejects: list[ListedReject] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.scans) + len(self.rejects)


@dataclass(slots=True)
class Compared:
    result: BucketResult
    repairs: Repairs


def compare_bucket(
    inv: Inventory, index: int, total: int | None, census: Census, stop: threading.Event,
    *, horizon_ms: int | None, repair: bool,
) -> Compared:  # fmt: skip
    bucket = inv.buckets[index]
    dead = inv.dead[index].reasons
    main: set[int] = inv.main_ids(index) if dead or total != inv.distinct[index] else set()
    dead_only = {i: reason for i, reason in dead.items() if i not in main}
    safe_ms = horizon_ms if horizon_ms is not None else bucket.start_ms - 1
    # Publishable dead letters the repair will take: count them as absent, so they are listed.
    absent = {
        i for i, reason in dead_only.items()
        if repair and reason == "late_scan" and (i >> 80) < safe_ms
    }  # fmt: skip
    result = BucketResult(
        bucket,
        total,
        inv.distinct[index],
        extra=list(inv.duplicates[index]),
        dead_lettered=sorted(id_text(i) for i in dead_only),
        live=horizon_ms is None or bucket.end_ms > horizon_ms,
    )
    repairs = Repairs()
    if total is not None and total == inv.distinct[index] + len(dead_only) - len(absent):
        return Compared(result, repairs)
    have = sorted((main | set(dead_only)) - absent)

    def known(lo: int, hi: int) -> int:
        return bisect.bisect_left(have, hi << 80) - bisect.bisect_left(have, lo << 80)

    for leaf in differences(census, bucket.start_ms, bucket.end_ms, total, known, stop):
        listed = {
            i: item for i, item in leaf.found.scans.items()
            if leaf.start_ms <= (i >> 80) < leaf.end_ms
        }  # fmt: skip
        for i, item in sorted(listed.items()):
            if i in main:
                continue
            if i not in dead_only:
                result.missing.append(id_text(i))
            if (i not in dead_only or i in absent) and (i >> 80) < safe_ms and repair:
                repairs.scans.append(item)
        lo, hi = (
            bisect.bisect_left(have, leaf.start_ms << 80),
            bisect.bisect_left(have, leaf.end_ms << 80),
        )
        result.extra += [id_text(i) for i in have[lo:hi] if i in main and i not in listed]
        for reject in leaf.found.rejected.values():
            digest = hashlib.blake2b(reject.rejected.raw, digest_size=16).digest()
            if digest in inv.reject_digests:
                continue
            result.missing.append(reject.rejected.scan_id or "(no id)")
            if repair and not result.live:
                repairs.rejects.append(reject)
    return Compared(result, repairs)
