from __future__ import annotations

import random
from dataclasses import dataclass

from bridge.dedup import BOUNDARY_MARGIN_MS, DedupWindow, RejectMemory, Verdict
from bridge.uuid7 import UUIDv7Minter

T0 = 1_700_000_000_000
LOOKBACK = 60_000


def ids_at(*offsets_ms: int) -> list[int]:
    # A fresh minter per id: one minter never goes back in time, by design.
    return [UUIDv7Minter().mint(at_ms=T0 + off).int for off in offsets_ms]


def test_new_then_duplicate() -> None:
    w = DedupWindow(LOOKBACK)
    (a,) = ids_at(0)
    assert w.classify(a) is Verdict.NEW
    w.add_all([a])
    assert w.classify(a) is Verdict.DUPLICATE
    assert w.watermark == a


def test_cursor_is_watermark_time_minus_lookback() -> None:
    w = DedupWindow(LOOKBACK)
    assert w.cursor_ms() is None
    w.add_all(ids_at(0, 5000))
    assert w.cursor_ms() == T0 + 5000 - LOOKBACK


def test_out_of_order_arrival_inside_the_overlap_is_new_once() -> None:
    w = DedupWindow(LOOKBACK)
    late, early = ids_at(10_000, 2_000)
    w.add_all([late])
    # An id minted earlier by a node with a slower clock, seen after the watermark moved.
    assert w.classify(early) is Verdict.NEW
    w.add_all([early])
    assert w.classify(early) is Verdict.DUPLICATE
    assert w.watermark == late


def test_pruning_bounds_the_window_and_old_ids_become_late() -> None:
    w = DedupWindow(LOOKBACK)
    minter = UUIDv7Minter()
    first = minter.mint(at_ms=T0).int
    w.add_all([first])
    for second in range(1, 3600):
        w.add_all([minter.mint(at_ms=T0 + second * 1000).int])
    # One id per second over an hour; only lookback + sweep + margin worth stays.
    assert len(w) <= (2 * LOOKBACK + BOUNDARY_MARGIN_MS) // 1000 + 2
    assert first not in w
    assert w.classify(first) is Verdict.LATE
    (too_old,) = ids_at(3599_000 - 2 * LOOKBACK - BOUNDARY_MARGIN_MS - 1000)
    assert w.classify(too_old) is Verdict.LATE


def test_ids_before_the_cursor_are_duplicates_if_known_else_late() -> None:
    w = DedupWindow(LOOKBACK)
    edge, unseen = ids_at(0, 10)
    (top,) = ids_at(LOOKBACK + 1000)  # the cursor is now 1 s after `edge`
    w.add_all([edge, top])
    # PassEntry's createdAfter may be inclusive or coarse: `edge` can come back, and must
    # still be recognised as a duplicate.
    assert w.classify(edge) is Verdict.DUPLICATE
    # A scan older than the cursor never seen before became visible too late.
    assert w.classify(unseen) is Verdict.LATE


def test_snapshot_rebuilds_an_identical_window() -> None:
    w = DedupWindow(LOOKBACK)
    w.add_all(ids_at(0, 1, 2))
    watermark, ids = w.snapshot()
    again = DedupWindow(LOOKBACK, watermark)
    again.add_all(ids)
    assert again.snapshot() == (watermark, ids)


@dataclass
class Bad:
    scan_id: str | None
    raw: bytes


def test_reject_memory_dead_letters_a_bad_scan_once_per_ttl() -> None:
    now = [0.0]
    memory = RejectMemory(ttl_s=10, clock=lambda: now[0])
    bad = Bad("not-a-uuid", b'{"id":"not-a-uuid"}')
    assert memory.first_time(bad)
    assert not memory.first_time(bad)
    assert memory.first_time(Bad("other", b'{"id":"other"}'))
    now[0] = 11.0
    assert memory.first_time(bad)


def test_sorting_out_a_slice_judges_each_id_as_classify_does() -> None:
    rng = random.Random(3)
    minter = UUIDv7Minter(rng=rng)
    base = 1_700_000_000_000
    ids = [minter.mint(at_ms=base + rng.randrange(0, 600_000)).int for _ in range(400)]
    w = DedupWindow(lookback_ms=60_000)
    w.add_all(ids[:150])  # published already: the newest is the watermark
    items = {i: f"item-{i}" for i in reversed(ids)}  # a slice lists newest first
    new, late, duplicates = w.sort_out(items)
    verdicts = {i: w.classify(i) for i in items}
    assert new == [items[i] for i in sorted(i for i, v in verdicts.items() if v is Verdict.NEW)]
    assert late == [items[i] for i in items if verdicts[i] is Verdict.LATE]
    assert duplicates == sum(1 for v in verdicts.values() if v is Verdict.DUPLICATE)
    assert new
    assert late
    assert duplicates


def test_adding_ids_out_of_order_and_twice_keeps_the_window_sorted() -> None:
    w = DedupWindow(lookback_ms=10**12)
    minter = UUIDv7Minter(rng=random.Random(5))
    ids = [minter.mint(at_ms=1_700_000_000_000 + n).int for n in range(100)]
    w.add_all(ids[50:])
    w.add_all([*ids[:50], ids[60], ids[10]])  # older ids, and ids known already
    assert w.snapshot() == (ids[-1], ids)
    assert len(w) == 100
    assert w.count_between(1_700_000_000_000 + 9, 1_700_000_000_000 + 20) == 10
