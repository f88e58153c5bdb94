"""The fast path against the per-scan path: the same randomized, hostile pages through both,
and every record equal, byte for byte.

The fast path is ``decode_page`` (a page in one typed call) and ``ScanRecords.build``
(records straight from the page); the per-scan path is ``decode_by_item`` and
``ScanRecords.per_scan`` (enrich, encode and build, one object per scan at each step). Both
run inside the real ``Pipeline._publish`` over the same slices, with a window that makes some
scans duplicates and some late, so the dead letters of every kind are compared too. Then
both record lists go through the real ``Publisher`` into a fake producer, which records
what ``produce`` was given: topic, key, value, headers and timestamp, and the partition
follows from the key by Java's partitioner.

The pages hold what the scan generator makes (unicode, empty and long strings, times from
year 1 to 9999 with and without offsets, ids at the epoch and at the end of UUIDv7 time,
passes and readers left out of ``included``) and every hostile case the simulator and the
unit tests know: ids that are not UUIDv7, scans of another type or without a reader, a
missing or mistyped attribute, a time whose UTC date is out of range, included items of
another type, undecodable or listed twice, passes PassEntry answers 404 for, and, put in
after decoding, lone surrogates that no UTF-8 writer takes. A second test takes its pages
from the project's simulator itself, over HTTP, with its data faults on (ids that are not
UUIDv7, items left out of ``included``).
"""

from __future__ import annotations

import json
import random
import threading
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import msgspec
import pytest

from bridge.kafka.producer import Publisher
from bridge.kafka.records import OutRecord
from bridge.kafka.scan_records import ScanRecords
from bridge.ops.metrics import Metrics
from bridge.passentry import pages
from bridge.passentry.client import FetchedPage
from bridge.passentry.pages import DecodedPage, IncludedMemo, ValidScan
from bridge.passentry.slices import Slice
from bridge.pipeline import CycleStats, Pipeline
from passentry_simulator import Faults, SimulatorConfig, SimulatorServer, WorldConfig
from tests.support import FakeClock, java_partition, sample
from tests.unit.fake_api import FakeApi
from tests.unit.kafka.fake_producer import FakeProducer, Produced
from tests.unit.pipeline_support import ListSink, build
from tests.unit.scan_docs import Generator

LONE_SURROGATE = "x\udc80y"
ODD_PASS = "pass-created-before-year-1"
SURROGATE_PLACES = ("scan_value", "status_detail", "pass", "reader")
Decoder = Callable[[bytes], DecodedPage]


def _uuid7(rng: random.Random, ms: int) -> str:
    value = (ms << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64)
    return str(uuid.UUID(int=value | (0b10 << 62) | rng.getrandbits(62)))


def hostile_scans(rng: random.Random, good: dict[str, Any], odd_pass: str) -> list[Any]:
    """Variations of the scan ``good`` that PassEntry, or a proxy in front of it, could
    send: each either a dead letter, a scan the fast path leaves to the per-scan path, or
    a valid scan spelt oddly."""

    def variant(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(json.dumps(good))
        doc["id"] = _uuid7(rng, rng.randrange(1_600_000_000_000, 1_900_000_000_000))
        change(doc)
        return doc

    def attrs(**values: Any) -> Callable[[dict[str, Any]], None]:
        return lambda doc: doc["attributes"].update(values)

    def drop(name: str) -> Callable[[dict[str, Any]], None]:
        return lambda doc: doc["attributes"].pop(name, None)

    def rels(value: Any) -> Callable[[dict[str, Any]], None]:
        return lambda doc: doc.update(relationships=value)

    def set_id(value: Any) -> Callable[[dict[str, Any]], None]:
        return lambda doc: doc.update(id=value)

    reader = {"data": {"id": "gate-404", "type": "reader"}}
    changes: list[Callable[[dict[str, Any]], None]] = [
        set_id(str(uuid.UUID(int=rng.getrandbits(128), version=4))),  # not a UUIDv7
        set_id(f"scan-{rng.getrandbits(64):016x}"),  # not a UUID
        set_id("{" + _uuid7(rng, 1_736_773_200_000) + "}"),  # not canonical
        set_id(_uuid7(rng, 1_736_773_200_000).upper()),  # valid, upper case
        # Valid, created in the last millisecond ce_time can write, and after it.
        set_id(_uuid7(rng, 253_402_300_799_999)),
        set_id(_uuid7(rng, 2**48 - 1)),
        set_id(12345),  # not a string
        lambda doc: doc.update(type="event"),
        rels({"reader": {"data": None}}),
        rels({"reader": {"data": {"id": "", "type": "reader"}}}),
        lambda doc: doc.pop("relationships"),
        drop("status"),
        attrs(status=5),
        attrs(scannedAt="yesterday"),
        attrs(scannedAt="0001-01-01T00:00:00+14:00"),  # its UTC date is before year 1
        attrs(scannedAt="9999-12-31T23:59:59.999999-14:00"),  # ... after year 9999
        # Valid times at the edges of the native writer's arithmetic: floored to the
        # millisecond before 1970, the first and last instants Avro readers take, another
        # offset, and no offset (read as UTC).
        attrs(scannedAt="1969-12-31T23:59:59.999500Z"),
        attrs(scannedAt="1900-02-28T12:00:00.000001Z"),
        attrs(scannedAt="0001-01-01T00:00:00Z"),
        attrs(scannedAt="9999-12-31T23:59:59.999999Z"),
        attrs(scannedAt="2028-02-29T12:00:00.123456+05:30"),
        attrs(scannedAt="2026-03-01T12:00:00"),
        attrs(scanValue="\u00fcn\u00efc\u00f8d\u00e9 \U0001f3ab", statusDetail="d" * 300),
        lambda doc: doc.update(attributes=None),
        attrs(brandNewField={"nested": [1, 2, {"x": None}]}),
        rels({"reader": reader}),  # a reader the page does not include
        rels({"reader": good["relationships"]["reader"], "pass": {"data": None}}),
    ]
    for pass_id in (
        "gone-pass",  # not included, and PassEntry answers 404
        "fetched-pass",  # not included: fetched
        odd_pass,  # included, with a time out of range
    ):
        pass_rel = {"data": {"id": pass_id, "type": "pass"}}
        changes.append(rels({"reader": good["relationships"]["reader"], "pass": pass_rel}))
    out: list[Any] = [variant(change) for change in changes]
    out += ["not an object", {"type": "scan"}, None]
    return out


def hostile_included(
    passes: dict[str, dict[str, Any]], readers: dict[str, dict[str, Any]]
) -> list[Any]:
    a_pass = next(iter(passes.values()))
    a_reader = next(iter(readers.values()))
    twice = json.loads(json.dumps(a_pass))
    twice["attributes"]["status"] = "listed-twice"
    out_of_range = json.loads(json.dumps(a_pass))
    out_of_range["id"] = ODD_PASS
    out_of_range["attributes"]["createdAt"] = "0001-01-01T00:00:00+14:00"
    bad_reader = json.loads(json.dumps(a_reader))
    bad_reader["attributes"]["loggedIn"] = "yes"  # not a bool: the reader is left out
    return [
        {"id": "e1", "type": "event", "attributes": {}},
        {"id": 5, "type": "pass"},
        {"type": "reader"},
        twice,
        out_of_range,
        bad_reader,
        "not an object",
    ]


def hostile_pages(seed: int, pages_n: int = 6) -> list[bytes]:
    gen = Generator(seed)
    rng = gen.rng
    passes, readers = gen.world()
    bodies = []
    for n in range(pages_n):
        page = gen.page(rng.randrange(40, 120), passes, readers)
        data: list[Any] = page["data"]
        # PassEntry's types and statuses are a few values, so routes repeat (and the
        # native record maker makes most records); the generator's odd texts stay in some.
        for doc in data:
            if rng.random() < 0.8:
                doc["attributes"]["status"] = rng.choice(["successful", "failed"])
                doc["attributes"]["scanType"] = rng.choice(["nfc", "barcode"])
        included: list[Any] = page["included"]
        if n % 3 != 2:  # every third page stays clean: one typed call decodes it
            for doc in hostile_scans(rng, data[0], ODD_PASS):
                data.insert(rng.randrange(len(data) + 1), doc)
            for doc in hostile_included(passes, readers):
                included.insert(rng.randrange(len(included) + 1), doc)
            # A scan of the previous page again: the walk met it twice.
            if bodies:
                data.append(json.loads(bodies[-1])["data"][-1])
        body = {"data": data, "included": included, "meta": {"totalCount": 10_000}}
        bodies.append(json.dumps(body, ensure_ascii=False).encode())
    return bodies


def poison(page: DecodedPage, rng: random.Random) -> None:
    """Put lone surrogates into some of the page's decoded scans, passes and readers (the
    JSON decoder never makes one). Seeded by the page, so both paths poison alike."""
    for n, scan in enumerate(page.scans):
        if rng.random() >= 0.08:
            continue
        place = rng.choice(SURROGATE_PLACES)
        resource = scan.resource
        if place in ("scan_value", "status_detail"):
            attrs = msgspec.structs.replace(resource.attributes, **{place: LONE_SURROGATE})
            page.scans[n] = msgspec.structs.replace(
                scan, resource=msgspec.structs.replace(resource, attributes=attrs)
            )
        elif place == "pass" and resource.pass_id in page.passes:
            found = page.passes[resource.pass_id]
            attrs = msgspec.structs.replace(found.attributes, pass_content={"k": LONE_SURROGATE})
            page.passes[found.id] = msgspec.structs.replace(found, attributes=attrs)
        elif place == "reader" and resource.reader_id in page.readers:
            found_reader = page.readers[resource.reader_id or ""]
            reader_attrs = msgspec.structs.replace(found_reader.attributes, name=LONE_SURROGATE)
            page.readers[found_reader.id] = msgspec.structs.replace(
                found_reader, attributes=reader_attrs
            )


class Run:
    """One path: a pipeline on a list sink, its window primed so that some scans are
    duplicates and some late."""

    def __init__(self, template: str | None) -> None:
        self.api = FakeApi()
        self.api.missing_passes.add("gone-pass")
        self.metrics = Metrics()
        self.sink = ListSink()
        self.pipeline: Pipeline = build(
            self.api, self.sink, self.metrics, lookback_ms=60_000, template=template
        )

    def publish(self, bodies: list[bytes], decode: Decoder, seed: int) -> list[OutRecord]:
        found = Slice()
        decoded = []
        for n, body in enumerate(bodies):
            page = decode(body)
            poison(page, random.Random(f"{seed}-{n}"))
            decoded.append(page)
            found.add(FetchedPage(page, f"https://api.test/api/v1/scans?page={n + 1}"))
        ids = sorted(found.scans)
        # The window: a watermark in the middle (what is older than a lookback behind it is
        # late), and a few ids already published (duplicates).
        window = self.pipeline.window
        window.reset(ids[len(ids) // 2])
        window.add_all(ids[len(ids) // 2 - 3 : len(ids) // 2 + 3])
        self.pipeline._publish(found, CycleStats(), threading.Event(), slice_end=None)
        return self.sink.records


def fields(record: OutRecord) -> tuple[Any, ...]:
    return (record.topic, record.key, record.value, record.headers, record.created_ms,
            record.dlq_reason)  # fmt: skip


def produced(records: list[OutRecord]) -> list[Produced]:
    """What ``produce`` is given for ``records`` by the real Publisher."""
    clock = FakeClock()
    made: list[FakeProducer] = []

    def factory(conf: dict[str, Any]) -> FakeProducer:
        made.append(FakeProducer(conf, clock))
        return made[-1]

    publisher = Publisher({"transactional.id": "passentry-bridge.src"}, Metrics(),
                          call_timeout_s=30, producer_factory=factory, clock=clock)  # fmt: skip
    publisher.init()
    publisher.send(records, OutRecord("state", b"src", b"{}", []), 20)
    return made[-1].visible[:-1]


@pytest.mark.parametrize("template", [None, "scans.{status}.{scan_type}"])
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_the_fast_path_writes_the_records_and_dead_letters_the_per_scan_path_writes(
    seed: int, template: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    bodies = hostile_pages(seed)
    memo = IncludedMemo()

    fast = Run(template)
    fallbacks: list[int] = []
    enrich = fast.pipeline._enricher.enrich
    monkeypatch.setattr(
        fast.pipeline._enricher,
        "enrich",
        lambda items: fallbacks.append(len(items)) or enrich(items),
    )
    by_item: list[bytes] = []
    monkeypatch.setattr(pages, "decode_by_item", lambda body, memo=None: (
        by_item.append(body) or DECODE_BY_ITEM(body, memo)))  # fmt: skip
    learned: list[bool] = []
    learn = ScanRecords._learn
    monkeypatch.setattr(ScanRecords, "_learn", lambda self, item, batch: (
        learned.append(learn(self, item, batch)) or learned[-1]))  # fmt: skip
    built: list[Any] = []
    build = ScanRecords.build
    monkeypatch.setattr(ScanRecords, "build", lambda self, items: (
        built.extend(items) or build(self, items)))  # fmt: skip
    fast_records = fast.publish(bodies, lambda body: pages.decode_page(body, memo), seed)
    monkeypatch.undo()

    slow = Run(template)
    monkeypatch.setattr(ScanRecords, "build", ScanRecords.per_scan)
    slow_records = slow.publish(bodies, DECODE_BY_ITEM, seed)

    # Both paths really ran: the clean pages in one typed call, the hostile ones item by
    # item; most scans straight from their page, the odd ones through the per-scan stages.
    assert len(by_item) == sum(1 for n in range(len(bodies)) if n % 3 != 2)
    # (The generator leaves a tenth of the passes and readers out of ``included``, and
    # poisons some, so many scans need the per-scan path; a third at least come straight
    # from their page.)
    assert 0 < sum(fallbacks) < len(built) * 2 / 3
    # The native record maker made most records at once. It declined the first scan of each
    # route, pass and reader, and the odd values: it made many of those once told what it
    # lacked, and the per-scan stages took the rest.
    assert sum(fallbacks) < len(learned) < len(built) * 4 / 5
    assert True in learned
    assert False in learned
    reasons = {r.dlq_reason for r in slow_records}
    assert {"invalid_id", "invalid_scan", "missing_reader_id", "late_scan"} <= reasons
    assert "encode_error" in reasons

    assert [fields(r) for r in fast_records] == [fields(r) for r in slow_records]
    # The checkpoints too, but for the time each was written.
    assert [{**c, "updatedAtMs": 0} for c in fast.sink.checkpoints] == [
        {**c, "updatedAtMs": 0} for c in slow.sink.checkpoints
    ]
    for name, labels in [
        ("passentry_bridge_enrichment_misses_total", {"kind": "reader"}),
        ("passentry_bridge_enrichment_misses_total", {"kind": "pass_fetched"}),
        ("passentry_bridge_enrichment_misses_total", {"kind": "pass_not_found"}),
        ("passentry_bridge_dlq_records_total", {"reason": "encode_error"}),
        ("passentry_bridge_scans_duplicate_total", {}),
        ("passentry_bridge_end_to_end_latency_seconds_count", {"path": "poll"}),
    ]:
        assert sample(fast.metrics, name, **labels) == sample(slow.metrics, name, **labels)
    assert sample(fast.metrics, "passentry_bridge_enrichment_misses_total", kind="reader") > 0

    on_the_wire = produced(fast_records)
    assert on_the_wire == produced(slow_records)
    assert all(p.timestamp == 0 for p in on_the_wire)  # stamped by the producer, both
    partitions = [java_partition(p.key, 6) if p.key is not None else None for p in on_the_wire]
    assert partitions == [
        java_partition(r.key, 6) if r.key is not None else None for r in slow_records
    ]


DECODE_BY_ITEM = pages.decode_by_item


def simulator_pages(seed: int) -> list[bytes]:
    """Pages as the project's simulator serves them, with its data faults on: ids that are
    not UUIDv7 and a pass or reader left out of a page's ``included``."""
    faults = Faults(bad_id_rate=0.05, missing_included_rate=0.5, rng=random.Random(seed))
    world = WorldConfig(readers=7, passes=60, seed=seed, backlog=500)
    bodies = []
    with SimulatorServer(SimulatorConfig(world=world, rate_limit=None), faults) as sim:
        auth = {"Authorization": f"Bearer {sim.token}"}
        with httpx.Client(base_url=sim.url, headers=auth, timeout=10) as http:
            for page in range(1, 6):
                params = {
                    "perPage": "100",
                    "page": str(page),
                    "createdAfter": "2000-01-01T00:00:00Z",
                }
                response = http.get("/api/v1/scans", params=params)
                response.raise_for_status()
                bodies.append(response.content)
    assert faults.fired["bad_id"] > 0
    assert faults.fired["missing_included"] > 0
    return bodies


@pytest.mark.parametrize("seed", [7, 8])
def test_the_simulators_faulty_pages_make_the_same_records_both_ways(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    bodies = simulator_pages(seed)
    memo = IncludedMemo()
    fast = Run(None)
    fallbacks: list[int] = []
    enrich = fast.pipeline._enricher.enrich
    monkeypatch.setattr(
        fast.pipeline._enricher,
        "enrich",
        lambda items: fallbacks.append(len(items)) or enrich(items),
    )
    fast_records = fast.publish(bodies, lambda body: pages.decode_page(body, memo), seed)
    monkeypatch.undo()
    monkeypatch.setattr(ScanRecords, "build", ScanRecords.per_scan)
    slow_records = Run(None).publish(bodies, DECODE_BY_ITEM, seed)

    assert {"invalid_id", "late_scan"} <= {r.dlq_reason for r in slow_records}
    # Some scans lost their pass or reader with the page's ``included``, or cannot be
    # encoded: the per-scan path made their records; the others came straight from their page.
    built = [r for r in slow_records if r.dlq_reason in (None, "encode_error")]
    assert 0 < sum(fallbacks) < len(built)
    assert [fields(r) for r in fast_records] == [fields(r) for r in slow_records]
    assert produced(fast_records) == produced(slow_records)


def test_a_clean_page_decodes_in_one_call_and_a_hostile_one_item_by_item_alike() -> None:
    memo = IncludedMemo()
    for seed in range(5, 25):
        for body in hostile_pages(seed, pages_n=3):
            fast, slow = pages.decode_page(body, memo), pages.decode_by_item(body)
            assert [_scan(s) for s in fast.scans] == [_scan(s) for s in slow.scans]
            assert fast.rejected == slow.rejected
            assert fast.passes == slow.passes
            assert fast.readers == slow.readers
            assert (fast.meta, fast.links) == (slow.meta, slow.links)


def _scan(scan: ValidScan) -> tuple[Any, ...]:
    return scan.id_int, scan.resource, scan.raw, scan.created_ms
