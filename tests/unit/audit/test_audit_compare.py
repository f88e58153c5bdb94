"""Count first, bisect where counts differ: against an in-memory PassEntry (FakeApi)."""

from __future__ import annotations

import threading
import uuid

import pytest

from bridge.audit.buckets import Bucket, split_range
from bridge.audit.census import Census
from bridge.audit.compare import BucketResult, compare_bucket
from bridge.audit.inventory import DeadLetters, Inventory
from bridge.ops.metrics import Metrics
from bridge.passentry.client import PassEntryClient
from bridge.passentry.pages import Listed, ListedReject
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
        span = buckets[0].end_ms - buckets[0].start_ms
        inv.add((created - buckets[0].start_ms) // span, text.encode())
    for text, reason in (dead or {}).items():
        id_int = uuid.UUID(text).int
        index = ((id_int >> 80) - buckets[0].start_ms) // (buckets[0].end_ms - buckets[0].start_ms)
        inv.dead[index].reasons[id_int] = reason
    inv.settle()
    return inv


class Sink:
    """What a repair is handed, in the order it is handed."""

    def __init__(self) -> None:
        self.scans: list[Listed] = []
        self.rejects: list[ListedReject] = []

    def add(self, scans: list[Listed], rejects: list[ListedReject]) -> None:
        self.scans.extend(scans)
        self.rejects.extend(rejects)

    def ids(self) -> list[str]:
        return [str(uuid.UUID(int=s.scan.id_int)) for s in self.scans]


def compare(
    api: FakeApi, held: list[str], *, publish_before: int | None, repair: bool,
    dead: dict[str, str] | None = None, per_page: int = 10, keep_ids: bool = True,
) -> tuple[BucketResult, Sink]:  # fmt: skip
    c = census(api, per_page)
    buckets = split_range(T0, T0 + HOUR, HOUR)
    sink = Sink()
    result = compare_bucket(
        inventory(buckets, held, dead), 0, c.count(T0, T0 + HOUR), c, threading.Event(),
        publish_before_ms=publish_before, sink=sink if repair else None, keep_ids=keep_ids,
    )  # fmt: skip
    return result, sink


def spread(api: FakeApi, n: int, start: int = T0, span: int = HOUR) -> list[str]:
    return [api.add(start + 1 + i * (span - 2) // n) for i in range(n)]


def test_a_complete_bucket_costs_one_request() -> None:
    api = FakeApi()
    ids = spread(api, 500)
    result, sink = compare(api, ids, publish_before=T0 + 2 * HOUR, repair=True)
    assert (result.passentry, result.kafka) == (500, 500)
    assert result.missing.count == result.unknown.count == result.duplicated.count == 0
    assert result.dead_lettered.count == 0
    assert result.status == "complete"
    assert len(api.requests) == 1
    assert sink.scans == []


def test_missing_scans_are_found_exactly_by_halving() -> None:
    api = FakeApi()
    ids = spread(api, 2000)
    lost = sorted([ids[7], ids[1234], ids[1999]])
    held = [i for i in ids if i not in lost]
    result, sink = compare(api, held, publish_before=T0 + 2 * HOUR, repair=True, per_page=20)
    assert result.missing.listed == lost
    assert result.unknown.count == 0
    assert sink.ids() == lost
    assert result.published == 3
    # Halving reads a few small ranges, never the 100 pages of the whole hour.
    assert len(api.requests) < 60, len(api.requests)


def test_a_range_kafka_holds_nothing_of_is_listed_at_once_and_handed_over_in_order() -> None:
    api = FakeApi()
    ids = spread(api, 600)
    result, sink = compare(api, [], publish_before=T0 + 2 * HOUR, repair=True, keep_ids=False)
    assert result.missing.count == 600
    assert result.missing.listed == []  # counted, not kept
    assert sink.ids() == sorted(ids)
    # One count and the 60 pages: no halving down to small ranges first.
    assert len(api.requests) == 61, len(api.requests)


def test_duplicated_and_unknown_ids_are_reported_apart() -> None:
    api = FakeApi()
    ids = spread(api, 100)
    stranger = str(uuid.UUID(int=((T0 + 5000) << 80) | (7 << 76) | (2 << 62) | 12345))
    held = [*ids, stranger, ids[3], ids[3], ids[50]]
    result, _ = compare(api, held, publish_before=T0 + 2 * HOUR, repair=False)
    assert result.duplicated.listed == sorted([ids[3], ids[50]])
    assert result.duplicated.count == 3  # records beyond one per id
    assert result.unknown.listed == [stranger]
    assert result.missing.count == 0
    assert result.status == "duplicated"


def test_duplicates_are_seen_even_when_the_counts_agree() -> None:
    api = FakeApi()
    ids = spread(api, 100)
    result, _ = compare(api, [*ids, ids[0]], publish_before=None, repair=False)
    assert (result.passentry, result.kafka) == (100, 100)
    assert result.duplicated.listed == [ids[0]]
    assert result.status == "duplicated"


def test_dead_letters_are_not_missing_and_late_ones_are_repaired() -> None:
    api = FakeApi()
    ids = spread(api, 300)
    late, invalid = ids[10], ids[20]
    held = [i for i in ids if i not in (late, invalid)]
    dead = {late: "late_scan", invalid: "encode_error"}
    report, _ = compare(api, held, publish_before=T0 + 2 * HOUR, repair=False, dead=dead)
    assert report.missing.count == 0
    assert report.dead_lettered.listed == sorted([late, invalid])
    assert len(api.requests) == 1, "counts agree with the dead letters included"
    _, sink = compare(api, held, publish_before=T0 + 2 * HOUR, repair=True, dead=dead)
    assert sink.ids() == [late]


def test_nothing_newer_than_the_live_horizon_is_repaired() -> None:
    api = FakeApi()
    ids = spread(api, 200)
    old, new = ids[5], ids[195]
    horizon = (uuid.UUID(ids[100]).int >> 80) + 1
    held = [i for i in ids if i not in (old, new)]
    result, sink = compare(api, held, publish_before=horizon, repair=True)
    assert result.missing.listed == sorted([old, new])
    assert result.live
    assert sink.ids() == [old]


@pytest.mark.parametrize("edge", [0, HOUR // 2, HOUR - 1])
def test_scans_on_a_boundary_belong_to_exactly_one_range(edge: int) -> None:
    api = FakeApi()
    ids = spread(api, 400)
    on_edge = api.add(T0 + edge)
    result, _ = compare(api, ids, publish_before=None, repair=False)
    assert result.missing.listed == [on_edge]
