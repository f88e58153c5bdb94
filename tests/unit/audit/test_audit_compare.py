"""Count first, bisect where counts differ: against an in-memory PassEntry (FakeApi)."""

from __future__ import annotations

import threading
import uuid

import pytest

from bridge.audit.buckets import Bucket, split_range
from bridge.audit.census import Census
from bridge.audit.compare import compare_bucket
from bridge.audit.inventory import DeadLetters, Inventory
from bridge.ops.metrics import Metrics
from bridge.passentry.client import PassEntryClient
from bridge.passentry.ratelimit import RequestBudget
from bridge.passentry.slices import SlicePlan
from tests.unit.fake_api import FakeApi

HOUR = 3_600_000
T0 = 1_780_000_000_000 // HOUR * HOUR  # an hour boundary


def census(api: FakeApi, per_page: int = 10) -> Census:
    client = PassEntryClient(
        "https://api.example.test", "t", metrics=Metrics(), budget=RequestBudget(10_000),
        transport=api.transport(),
    )  # fmt: skip
    plan = SlicePlan(filters={}, per_page=per_page, concurrency=2, max_scans=10_000,
                     overlap_ms=0, sweep_interval_s=30)  # fmt: skip
    return Census(client, plan)


def inventory(
    buckets: list[Bucket], ids: list[str], dead: dict[str, str] | None = None
) -> Inventory:
    """What Kafka would hold: ``ids`` in the main topics, ``dead`` (id -> reason) in the DLQ."""
    inv = Inventory(
        buckets, [bytearray() for _ in buckets], [DeadLetters() for _ in buckets], set()
    )
    for text in ids:
        created = uuid.UUID(text).int >> 80
        inv.main[(created - buckets[0].start_ms) // (buckets[0].end_ms - buckets[0].start_ms)] += (
            text.encode()
        )
    for text, reason in (dead or {}).items():
        id_int = uuid.UUID(text).int
        index = ((id_int >> 80) - buckets[0].start_ms) // (buckets[0].end_ms - buckets[0].start_ms)
        inv.dead[index].reasons[id_int] = reason
    inv.settle()
    return inv


def spread(api: FakeApi, n: int, start: int = T0, span: int = HOUR) -> list[str]:
    return [api.add(start + 1 + i * (span - 2) // n) for i in range(n)]


def test_a_complete_bucket_costs_one_request() -> None:
    api = FakeApi()
    ids = spread(api, 500)
    c = census(api)
    buckets = split_range(T0, T0 + HOUR, HOUR)
    total = c.count(T0, T0 + HOUR)
    out = compare_bucket(inventory(buckets, ids), 0, total, c, threading.Event(),
                         horizon_ms=T0 + 2 * HOUR, repair=True)  # fmt: skip
    assert (out.result.passentry, out.result.kafka) == (500, 500)
    assert out.result.missing == out.result.extra == out.result.dead_lettered == []
    assert out.result.status == "complete"
    assert len(api.requests) == 1
    assert len(out.repairs) == 0


def test_missing_scans_are_found_exactly_by_halving() -> None:
    api = FakeApi()
    ids = spread(api, 2000)
    lost = sorted([ids[7], ids[1234], ids[1999]])
    c = census(api, per_page=20)
    buckets = split_range(T0, T0 + HOUR, HOUR)
    held = [i for i in ids if i not in lost]
    out = compare_bucket(inventory(buckets, held), 0, c.count(T0, T0 + HOUR), c,
                         threading.Event(), horizon_ms=T0 + 2 * HOUR, repair=True)  # fmt: skip
    assert out.result.missing == lost
    assert out.result.extra == []
    assert sorted(str(uuid.UUID(int=s.scan.id_int)) for s in out.repairs.scans) == lost
    # Halving reads a few small ranges, never the 100 pages of the whole hour.
    assert len(api.requests) < 60, len(api.requests)


def test_extra_and_duplicated_ids_are_reported() -> None:
    api = FakeApi()
    ids = spread(api, 100)
    stranger = str(uuid.UUID(int=((T0 + 5000) << 80) | (7 << 76) | (2 << 62) | 12345))
    c = census(api)
    buckets = split_range(T0, T0 + HOUR, HOUR)
    out = compare_bucket(inventory(buckets, [*ids, stranger, ids[3]]), 0,
                         c.count(T0, T0 + HOUR), c, threading.Event(),
                         horizon_ms=T0 + 2 * HOUR, repair=False)  # fmt: skip
    assert sorted(out.result.extra) == sorted([ids[3], stranger])
    assert out.result.missing == []
    assert out.result.status == "extra"


def test_dead_letters_are_not_missing_and_late_ones_are_repaired() -> None:
    api = FakeApi()
    ids = spread(api, 300)
    late, invalid = ids[10], ids[20]
    held = [i for i in ids if i not in (late, invalid)]
    dead = {late: "late_scan", invalid: "encode_error"}
    buckets = split_range(T0, T0 + HOUR, HOUR)
    c = census(api)
    report = compare_bucket(inventory(buckets, held, dead), 0, c.count(T0, T0 + HOUR), c,
                            threading.Event(), horizon_ms=T0 + 2 * HOUR, repair=False)  # fmt: skip
    assert report.result.missing == []
    assert report.result.dead_lettered == sorted([late, invalid])
    assert len(api.requests) == 1, "counts agree with the dead letters included"
    fix = compare_bucket(inventory(buckets, held, dead), 0, c.count(T0, T0 + HOUR), c,
                         threading.Event(), horizon_ms=T0 + 2 * HOUR, repair=True)  # fmt: skip
    assert [str(uuid.UUID(int=s.scan.id_int)) for s in fix.repairs.scans] == [late]


def test_nothing_newer_than_the_live_horizon_is_repaired() -> None:
    api = FakeApi()
    ids = spread(api, 200)
    old, new = ids[5], ids[195]
    horizon = (uuid.UUID(ids[100]).int >> 80) + 1
    buckets = split_range(T0, T0 + HOUR, HOUR)
    c = census(api)
    held = [i for i in ids if i not in (old, new)]
    out = compare_bucket(inventory(buckets, held), 0, c.count(T0, T0 + HOUR), c,
                         threading.Event(), horizon_ms=horizon, repair=True)  # fmt: skip
    assert out.result.missing == sorted([old, new])
    assert out.result.live
    assert [str(uuid.UUID(int=s.scan.id_int)) for s in out.repairs.scans] == [old]


@pytest.mark.parametrize("edge", [0, HOUR // 2, HOUR - 1])
def test_scans_on_a_boundary_belong_to_exactly_one_range(edge: int) -> None:
    api = FakeApi()
    ids = spread(api, 400)
    on_edge = api.add(T0 + edge)
    buckets = split_range(T0, T0 + HOUR, HOUR)
    c = census(api, per_page=10)
    out = compare_bucket(inventory(buckets, ids), 0, c.count(T0, T0 + HOUR), c,
                         threading.Event(), horizon_ms=None, repair=False)  # fmt: skip
    assert out.result.missing == [on_edge]
