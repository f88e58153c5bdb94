from __future__ import annotations

import json
import threading
import time
from uuid import UUID

import pytest

from bridge.avro.encoder import Encoder
from bridge.avro.schemas import latest
from bridge.enrich import Enriched
from bridge.errors import KafkaRetriableError
from bridge.ops.metrics import Metrics
from bridge.pipeline import Pipeline
from tests.support import sample
from tests.unit.fake_api import FakeApi, scan_doc
from tests.unit.pipeline_support import ListSink, build, decode, now_ms
from tests.unit.scan_docs import with_scan_attrs


class PoisoningEncoder(Encoder):
    """The real encoder, handed a scanValue no UTF-8 writer takes for the given scan ids (a
    lone surrogate: the JSON decoder never makes one, so it is put in here)."""

    def __init__(self, poisoned: set[str]) -> None:
        super().__init__(latest(), "src")
        self.poisoned = poisoned

    def encode(self, items: list[Enriched]) -> list[bytes | Exception]:
        return super().encode(
            [self._poison(i) if i.scan.resource.id in self.poisoned else i for i in items]
        )

    @staticmethod
    def _poison(item: Enriched) -> Enriched:
        return with_scan_attrs(item, scan_value="\udfff")


def test_backlog_across_many_pages_is_published_once_in_id_order() -> None:
    now = now_ms()
    api, sink, metrics = FakeApi(), ListSink(), Metrics()
    made = sorted(api.add(now - 5_000 + i * 10) for i in range(95))
    p = build(api, sink, metrics)
    stats = p.cycle(threading.Event())
    assert stats.pages == 10
    assert not stats.busy  # read to the end: nothing left for now
    assert sink.scan_ids() == made
    # A later cycle checks the overlap and the lookback by their counts (which match), reads
    # the empty new slice, and publishes nothing again: three requests in all.
    p.reader.sweep_now()
    before = len(api.requests)
    p.cycle(threading.Event())
    assert sink.scan_ids() == made
    assert len(api.requests) - before == 3
    assert sample(metrics, "passentry_bridge_scans_published_total", topic="scans") == 95


def test_pages_shifting_under_new_arrivals_lose_nothing() -> None:
    now = now_ms()
    api, sink, metrics = FakeApi(), ListSink(), Metrics()
    made = [api.add(now - 50_000 + i) for i in range(40)]

    def live(a: FakeApi) -> None:
        made.append(a.add(0))  # a new scan lands before every request, at the front

    api.on_request = live
    p = build(api, sink, metrics, concurrency=1)
    for _ in range(4):
        p.cycle(threading.Event())
    api.on_request = None
    # A slice ends "now", exclusive: the newest scan is in it once the clock has left its ms.
    newest_ms = max(created for created, _ in api.scans)
    while now_ms() <= newest_ms:
        pass  # a millisecond or so
    p.cycle(threading.Event())
    assert sorted(sink.scan_ids()) == sorted(made)
    assert len(sink.scan_ids()) == len(set(sink.scan_ids()))


def test_ignores_per_page_when_the_server_caps_pages_and_works_without_meta() -> None:
    now = now_ms()
    for api in (FakeApi(max_page=4), FakeApi(max_page=7, with_meta=False)):
        sink = ListSink()
        made = sorted(api.add(now - 10_000 + i) for i in range(30))
        build(api, sink, Metrics(), per_page=50).cycle(threading.Event())
        assert sink.scan_ids() == made


def test_late_visibility_inside_the_lookback_publishes_once() -> None:
    now = now_ms()
    api, sink, metrics = FakeApi(), ListSink(), Metrics()
    first = api.add(now - 5_000)
    p = build(api, sink, metrics)
    p.cycle(threading.Event())
    # Minted 12 s before the poll's overlap starts, visible only now: inside the lookback.
    near = api.add(int(time.time() * 1000) - 4_000)  # inside the overlap: the next poll
    hidden = api.add(now - 20_000)
    p.cycle(threading.Event())
    assert sink.scan_ids() == [first, near]
    requests = len(api.requests)
    p.reader.sweep_now()  # the sweep compares counts, finds one more, and reads the range
    p.cycle(threading.Event())
    assert sink.scan_ids() == [first, near, hidden]
    # A quiet cycle costs a count for the overlap, the new slice, a count for the sweep.
    p.reader.sweep_now()
    before = len(api.requests)
    p.cycle(threading.Event())
    assert sink.scan_ids() == [first, near, hidden]
    assert len(api.requests) - before == 3
    assert requests < before


def test_scan_visible_only_after_the_lookback_is_found_by_the_sweep_and_dead_lettered() -> None:
    now = now_ms()
    api, sink, metrics = FakeApi(), ListSink(), Metrics()
    api.add(now - 1_000)
    p = build(api, sink, metrics, lookback_ms=10_000)
    p.cycle(threading.Event())
    # Minted 19 s before the newest scan, visible only now: normal polls (createdAfter =
    # watermark - 10 s) never ask for it; the sweep over the 10 s behind that does.
    old = api.add(now - 20_000)
    p.cycle(threading.Event())
    assert [r for r in sink.records if r.topic == "dlq"] == []
    p.reader.sweep_now()  # the sweep is due (every lookback / 2)
    p.cycle(threading.Event())
    dlq = [r for r in sink.records if r.topic == "dlq"]
    assert [dict(r.headers)["scan-id"] for r in dlq] == [old]  # type: ignore[misc]
    assert dict(dlq[0].headers)["dlq-reason"] == "late_scan"  # type: ignore[misc]
    assert sample(metrics, "passentry_bridge_late_scans_total") == 1
    assert old not in sink.scan_ids()
    # Dead-lettered once: the next sweep knows it.
    p.reader.sweep_now()
    p.cycle(threading.Event())
    assert len([r for r in sink.records if r.topic == "dlq"]) == 1


def test_failed_delivery_keeps_the_cursor_and_the_next_cycle_republishes() -> None:
    now = now_ms()
    api, sink, metrics = FakeApi(), ListSink(), Metrics()
    made = sorted(api.add(now - 3_000 + i) for i in range(5))
    p = build(api, sink, metrics)
    sink.fail_next = True
    with pytest.raises(KafkaRetriableError, match="broker went away"):
        p.cycle(threading.Event())
    assert p.window.watermark == 0
    p.cycle(threading.Event())
    assert sink.scan_ids() == made


def test_enrichment_fetches_missing_pass_and_keeps_reader_id() -> None:
    now = now_ms()
    api, sink, metrics = FakeApi(), ListSink(), Metrics()
    api.include_passes = False
    a = api.add(now - 2_000, reader="gate-9", pass_id="p-77")
    b = api.add(now - 1_000, reader="gate-9", pass_id="p-77")
    c = api.add(now - 500, reader="gate-9", pass_id=None)
    build(api, sink, metrics).cycle(threading.Event())
    values = [decode(r.value) for r in sink.records]
    assert [str(v["scanId"]) for v in values] == [a, b, c]
    assert values[0]["pass"]["status"] == "fetched"
    assert values[2]["pass"] is None
    assert values[2]["passId"] is None
    assert all(v["reader"] is None and v["readerId"] == "gate-9" for v in values)
    # Fetched once through the cache, counted for each scan that missed it.
    assert sum("/passes/" in r.url.path for r in api.requests) == 1
    assert sample(metrics, "passentry_bridge_enrichment_misses_total", kind="pass_fetched") == 2
    assert sample(metrics, "passentry_bridge_enrichment_misses_total", kind="reader") == 3


def test_records_are_keyed_by_reader_carry_the_id_time_and_are_routed() -> None:
    now = now_ms()
    api, sink, metrics = FakeApi(), ListSink(), Metrics()
    sid = api.add(now - 1_234, reader="south-gate-1")
    build(api, sink, metrics, template="scans.{status}.{scan_type}").cycle(threading.Event())
    (rec,) = sink.records
    assert rec.topic == "scans.successful.nfc"
    assert rec.key == b"south-gate-1"
    assert rec.created_ms == now - 1_234
    headers = dict(rec.headers)
    assert headers["scan-id"] == sid
    assert headers["scan-created-ms"] == str(now - 1_234)
    assert headers["schema-version"] == "1"
    assert headers["content-type"] == "application/avro; encoding=single-object"
    assert rec.value[:2] == b"\xc3\x01"
    assert rec.value[2:10] == latest().fingerprint


def test_invalid_id_is_dead_lettered_once_with_its_json() -> None:
    now = now_ms()
    api, sink, metrics = FakeApi(), ListSink(), Metrics()
    api.add_raw(now - 1_000, scan_doc("6f9619ff-8b86-4011-b42d-00cf4fc964ff", reader="g"))
    good = api.add(now - 900)
    p = build(api, sink, metrics)
    p.cycle(threading.Event())
    p.cycle(threading.Event())
    dlq = [r for r in sink.records if r.topic == "dlq"]
    assert len(dlq) == 1
    h = dict(dlq[0].headers)
    assert h["dlq-reason"] == "invalid_id"
    assert h["scan-id"] == "6f9619ff-8b86-4011-b42d-00cf4fc964ff"
    assert b'"6f9619ff-8b86-4011-b42d-00cf4fc964ff"' in dlq[0].value
    assert dlq[0].key == b"g"
    assert sink.scan_ids() == [good]
    assert sample(metrics, "passentry_bridge_dlq_records_total", reason="invalid_id") == 1


def test_a_scan_that_cannot_be_encoded_is_dead_lettered_once_and_the_rest_published() -> None:
    now = now_ms()
    api, sink, metrics = FakeApi(), ListSink(), Metrics()
    made = sorted(api.add(now - 3_000 + i, reader="gate-4") for i in range(5))
    p = build(api, sink, metrics, encoder=PoisoningEncoder({made[2]}))
    p.cycle(threading.Event())
    p.reader.sweep_now()
    p.cycle(threading.Event())  # the overlap and the sweep see it again: not sent again
    assert sink.scan_ids() == [m for m in made if m != made[2]]
    dlq = [r for r in sink.records if r.topic == "dlq"]
    assert len(dlq) == 1
    headers = dict(dlq[0].headers)
    assert headers["dlq-reason"] == "encode_error"
    assert headers["scan-id"] == made[2]
    assert str(headers["dlq-detail"]).startswith("UnicodeEncodeError")
    assert json.loads(dlq[0].value)["id"] == made[2]
    assert dlq[0].key == b"gate-4"
    assert sample(metrics, "passentry_bridge_dlq_records_total", reason="encode_error") == 1
    assert sample(metrics, "passentry_bridge_scans_published_total", topic="scans") == 4
    # Committed with the others: the cursor moved past it.
    assert p.window.watermark == UUID(made[-1]).int


def test_stop_between_pages_abandons_the_cycle_without_moving_the_cursor() -> None:
    now = now_ms()
    api, sink, metrics = FakeApi(), ListSink(), Metrics()
    for i in range(50):
        api.add(now - 10_000 + i)
    stop = threading.Event()
    api.on_request = lambda a: stop.set() if len(a.requests) == 2 else None
    p = build(api, sink, metrics, concurrency=1)
    p.cycle(stop)
    assert sink.records == []
    assert p.window.watermark == 0


def test_a_scan_inserted_mid_walk_is_not_lost_to_shifting_pages() -> None:
    now = now_ms()
    # A late-visible scan appears in the middle of the list while the slice is walked: every
    # older scan shifts one place, and one of them slips into a page already fetched. The
    # completeness check (distinct ids vs totalCount) catches it and walks again.
    api, sink, metrics = FakeApi(), ListSink(), Metrics()
    made = [api.add(now - 60_000 + i * 100) for i in range(45)]

    def insert_late(a: FakeApi) -> None:
        if len(a.requests) == 3:
            made.append(a.add(now - 1_000))  # newer than all: at the front of the list

    api.on_request = insert_late
    stats = build(api, sink, metrics, concurrency=1).cycle(threading.Event())
    assert stats.walks == 2
    assert sink.scan_ids() == sorted(made)


def test_a_backlog_bigger_than_one_cycle_is_sliced_and_stays_in_order() -> None:
    now = now_ms()
    api, sink, metrics = FakeApi(), ListSink(), Metrics()
    made = sorted(api.add(now - 3_000_000 + i * 7_000) for i in range(350))
    p = build(api, sink, metrics, max_cycle_scans=100)
    cycles = 0
    while True:
        cycles += 1
        stats = p.cycle(threading.Event())
        assert stats.fetched <= 100 + 10  # a slice holds about max_cycle_scans at most
        if not stats.busy:
            break
        assert cycles < 20
    assert cycles >= 4
    assert sink.scan_ids() == made


def test_a_start_long_before_the_data_and_a_dense_window_still_make_progress() -> None:
    now = now_ms()
    # --since two days back, data only in the last minutes, denser than one cycle holds:
    # slices must keep moving forward (no livelock on empty or already-published slices),
    # and once caught up a cycle is not busy, so `run --once` ends.
    api, sink, metrics = FakeApi(), ListSink(), Metrics()
    made = sorted(api.add(now - 200_000 + i * 500) for i in range(390))
    p = build(
        api, sink, metrics, max_cycle_scans=100, lookback_ms=300_000, start_ms=now - 2 * 86_400_000
    )
    cycles = 0
    while p.cycle(threading.Event()).busy:
        cycles += 1
        assert cycles < 60, "the slices stopped moving"
    assert sink.scan_ids() == made
    again = p.cycle(threading.Event())
    assert not again.busy
    assert again.published == 0


def _wait_for_ahead(p: Pipeline) -> None:
    ahead = p.reader._ahead
    assert ahead is not None
    ahead.future.result(timeout=10)


def test_a_slice_cut_short_reads_the_next_one_while_it_publishes() -> None:
    now = now_ms()
    api, sink, metrics = FakeApi(), ListSink(), Metrics()
    made = sorted(api.add(now - 3_500_000 + i * 11_000) for i in range(300))
    p = build(api, sink, metrics, max_cycle_scans=100, overlap_ms=0)
    stats = p.cycle(threading.Event())
    assert stats.busy
    assert 0 < len(sink.scan_ids()) <= 100
    _wait_for_ahead(p)
    # The next slice was read during this cycle, after the slice's own pages.
    createds = [r.url.params["createdAfter"] for r in api.requests]
    assert createds[-1] > createds[0]
    cycles = 1
    while p.cycle(threading.Event()).busy:
        cycles += 1
    assert cycles >= 3
    assert sink.scan_ids() == made  # once each, in id order across cycles


def test_a_slice_read_ahead_is_dropped_when_the_cycle_before_it_fails() -> None:
    now = now_ms()
    api, sink, metrics = FakeApi(), ListSink(), Metrics()
    made = sorted(api.add(now - 3_500_000 + i * 11_000) for i in range(300))
    p = build(api, sink, metrics, max_cycle_scans=100, overlap_ms=0)
    p.cycle(threading.Event())
    assert len(sink.scan_ids()) > 0
    _wait_for_ahead(p)
    sink.fail_next = True
    with pytest.raises(KafkaRetriableError):
        p.cycle(threading.Event())
    # The failed cycle's own read-ahead is gone: the cursor did not move past its slice.
    assert p.reader._ahead is None
    while p.cycle(threading.Event()).busy:
        pass
    assert sink.scan_ids() == made


def test_a_reconcile_split_keeps_the_scan_created_in_the_split_millisecond() -> None:
    from bridge.passentry.slices import ReadStats

    api = FakeApi()
    lo, hi = 1_700_000_000_000, 1_700_000_060_000
    mid = (lo + (hi - lo) // 2) // 1000 * 1000  # where the range is halved
    made = {t: api.add(t) for t in range(lo + 500, hi, 1000)}
    at_mid = api.add(mid)
    p = build(api, ListSink(), Metrics())
    times = sorted([*made, mid])

    def known(after: int, before: int) -> int:
        # Every scan is known but the one created exactly at the split.
        return sum(1 for t in times if after < t < before and t != mid)

    found = p.reader.confirm(lo, hi, known, ReadStats(), threading.Event())
    assert found is not None
    ids = {item.scan.resource.id for part in found for item in part.scans.values()}
    assert at_mid in ids
