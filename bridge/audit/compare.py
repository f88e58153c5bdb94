"""One bucket, PassEntry against Kafka: count first, and look closer only where they differ.

The words the report uses:

- **missing**: PassEntry lists the scan; it is in neither the main topics nor the DLQ;
- **duplicated**: records in the main topics beyond one per scan id (a scan published twice);
- **unknown**: ids in the main topics that PassEntry does not list (deleted since, or the
  source's filters changed);
- **dead-lettered**: in the DLQ, not in the main topics (``late_scan``: the live bridge saw
  it after its lookback and did not publish it; other reasons: the scan cannot be published).

If PassEntry's ``totalCount`` equals the distinct ids Kafka holds for the bucket (main topics
plus dead letters) and no id is there twice, the bucket is complete, for one request.
Otherwise the census halves the range where the counts differ and lists the small ranges
(or, where Kafka holds nothing, the whole range in bounded slices), and those listings name
every missing and unknown id. Counting cannot see a missing scan and an unknown one that
cancel out in the same range; the listing would, but it is not read when the counts agree.

For a repair or a backfill, scans created before ``publish_before_ms`` may be published:
the missing ones, and ``late_scan`` dead letters (the live bridge did not publish them),
which count as absent so that the census lists them with their page's pass and reader. They
are handed to the sink slice by slice, in id order, as they are found.
"""

from __future__ import annotations

import bisect
import hashlib
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from bridge.audit.buckets import Bucket
from bridge.audit.census import Census, differences
from bridge.audit.inventory import Inventory
from bridge.passentry.pages import Listed, ListedReject
from bridge.uuid7 import int_millis, millis_floor

__all__ = ["BucketResult", "Ids", "RepairSink", "compare_bucket"]


def id_text(id_int: int) -> str:
    return str(uuid.UUID(int=id_int))


@dataclass(slots=True)
class Ids:
    """Ids of one kind in a bucket: always counted, listed when the caller keeps them (an
    audit's report names them; a backfill of a large range only counts)."""

    keep: bool = True
    count: int = 0
    listed: list[str] = field(default_factory=list)

    def add(self, text: str, times: int = 1) -> None:
        self.count += times
        if self.keep:
            self.listed.append(text)


@dataclass(slots=True)
class BucketResult:
    bucket: Bucket
    passentry: int | None
    kafka: int
    missing: Ids
    # ``count`` is the records beyond one per id; ``listed`` names each such id once.
    duplicated: Ids
    unknown: Ids
    dead_lettered: Ids
    # Newer than what may be published (the live bridge's horizon): not repaired.
    live: bool = False
    # Scans and dead letters handed to a repair or a backfill for this bucket.
    published: int = 0

    @property
    def status(self) -> str:
        for name, ids in (("missing", self.missing), ("duplicated", self.duplicated),
                          ("unknown", self.unknown)):  # fmt: skip
            if ids.count:
                return name
        return "complete"


class RepairSink(Protocol):
    """Where the scans to publish go, in id order, as they are found."""

    def add(self, scans: list[Listed], rejects: list[ListedReject]) -> None: ...


def compare_bucket(
    inv: Inventory, index: int, total: int | None, census: Census, stop: threading.Event,
    *, publish_before_ms: int | None, sink: RepairSink | None = None, keep_ids: bool = True,
    progress: Callable[[int], None] | None = None,
) -> BucketResult:  # fmt: skip
    """Compare bucket ``index``; hand what may be published to ``sink`` (when repairing).
    ``progress`` is told how many of PassEntry's scans each step accounted for."""
    bucket = inv.buckets[index]
    dead = inv.dead[index].reasons
    duplicates = inv.duplicates[index]
    differ = total != inv.distinct[index] or bool(duplicates)
    main: set[int] = inv.main_ids(index) if dead or differ else set()
    dead_only = {i: reason for i, reason in dead.items() if i not in main}
    safe_ms = publish_before_ms if publish_before_ms is not None else bucket.start_ms - 1
    # Publishable dead letters the repair will take: count them as absent, so they are listed.
    absent = {
        i for i, reason in dead_only.items()
        if sink is not None and reason == "late_scan" and int_millis(i) < safe_ms
    }  # fmt: skip
    result = BucketResult(
        bucket, total, inv.distinct[index],
        Ids(keep_ids), Ids(keep_ids), Ids(keep_ids), Ids(keep_ids),
        live=publish_before_ms is None or bucket.end_ms > publish_before_ms,
    )  # fmt: skip
    for text, times in sorted(duplicates.items()):
        result.duplicated.add(text, times)
    for i in sorted(dead_only):
        result.dead_lettered.add(id_text(i))
    if total is not None and total == inv.distinct[index] + len(dead_only) - len(absent):
        if progress is not None:
            progress(total)
        return result
    have = sorted((main | set(dead_only)) - absent)

    def known(lo: int, hi: int) -> int:
        upto = bisect.bisect_left(have, millis_floor(hi))
        return upto - bisect.bisect_left(have, millis_floor(lo))

    accounted = 0
    for leaf in differences(census, bucket.start_ms, bucket.end_ms, total, known, stop):
        listed: set[int] = set()
        for found in census.listing(leaf.start_ms, leaf.end_ms, stop):
            scans: list[Listed] = []
            for i, item in sorted(found.scans.items()):
                if not leaf.start_ms <= int_millis(i) < leaf.end_ms or i in listed:
                    continue
                listed.add(i)
                if i in main:
                    continue
                if i not in dead_only:
                    result.missing.add(id_text(i))
                if (i not in dead_only or i in absent) and int_millis(i) < safe_ms:
                    scans.append(item)
            rejects = [r for r in found.rejected.values() if _missing_reject(r, inv)]
            for reject in rejects:
                result.missing.add(reject.rejected.scan_id or "(no id)")
            if result.live:
                rejects = []  # an invalid scan has no time: only whole buckets are safe
            if sink is not None and (scans or rejects):
                sink.add(scans, rejects)
                result.published += len(scans) + len(rejects)
            if progress is not None:
                progress(len(found.scans) + len(found.rejected))
            accounted += len(found.scans) + len(found.rejected)
        lo = bisect.bisect_left(have, millis_floor(leaf.start_ms))
        hi = bisect.bisect_left(have, millis_floor(leaf.end_ms))
        for i in have[lo:hi]:
            if i in main and i not in listed:
                result.unknown.add(id_text(i))
    if progress is not None and total is not None and total > accounted:
        progress(total - accounted)  # the ranges whose counts agreed
    return result


def _missing_reject(reject: ListedReject, inv: Inventory) -> bool:
    """A scan PassEntry lists that cannot be published (a bad id, say), and whose dead
    letter is not in Kafka: matched by content, as the live bridge remembers them."""
    digest = hashlib.blake2b(reject.rejected.raw, digest_size=16).digest()
    return digest not in inv.reject_digests
