"""The Auditor's order of work on fakes: PassEntry's counts from a fake API, Kafka's records
from a fake read of the topics, and the verdict per bucket (missing, doubled, complete).
Repairs and the real broker are tests/integration/test_audit.py's."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bridge.audit import auditor as auditor_module
from bridge.audit.auditor import Auditor, AuditRequest
from bridge.audit.inventory import InventoryReader
from bridge.audit.report import EXIT_COMPLETE, EXIT_DUPLICATED, EXIT_GAPS, EXIT_GAPS_AND_DUPLICATED
from bridge.config import load_config
from bridge.kafka.readback import ReadPlan
from bridge.wiring import Wiring
from tests.unit.fake_api import FakeApi

SOURCE = "gate-7"
HOUR_MS = 3_600_000
SINCE_MS = 1_765_000_000_000 // HOUR_MS * HOUR_MS


class Record:
    """A scan record as the inventory reads it: topic, headers."""

    def __init__(self, topic: str, scan_id: str, source: str = SOURCE) -> None:
        self._topic = topic
        self._headers = [("source-id", source.encode()), ("scan-id", scan_id.encode())]

    def topic(self) -> str:
        return self._topic

    def headers(self) -> list[tuple[str, bytes]]:
        return self._headers

    def value(self) -> bytes:
        return b""


class NoCheckpoint:
    def read(self, timeout_s: float, *, topic_may_be_missing: bool = False) -> None:
        return None


@pytest.fixture
def audit(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``audit(api, records)``: the report of an audit of two hours with these."""
    monkeypatch.setenv("PASSENTRY_API_URL", "https://api.test")
    monkeypatch.setenv("PASSENTRY_API_TOKEN", "t0ken")
    monkeypatch.setenv("BRIDGE_SOURCE_ID", SOURCE)
    monkeypatch.setenv("BRIDGE_SCANS_TOPIC", "scans")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setattr(auditor_module, "repaired_topics", lambda *args: [])
    made: list[Auditor] = []

    def run(api: FakeApi, records: list[Record]) -> Any:
        monkeypatch.setattr(InventoryReader, "_plan", lambda self, since: ReadPlan([], {}))
        monkeypatch.setattr(InventoryReader, "_read", lambda self, plan, advance: iter(records))
        config = load_config()
        client = Wiring.of(config, SOURCE).api_client(
            transport=api.transport(), sleep=lambda s: None
        )
        request = AuditRequest(SOURCE, SINCE_MS, SINCE_MS + 2 * HOUR_MS, HOUR_MS)
        auditor = Auditor(config, request, client=client)
        auditor._checkpoints = NoCheckpoint()  # type: ignore[assignment]
        made.append(auditor)
        return auditor.run()

    yield run
    for auditor in made:
        auditor.close()


def scans(api: FakeApi, *offsets_ms: int) -> list[str]:
    return [api.add(SINCE_MS + offset) for offset in offsets_ms]


def test_every_scan_once_is_complete(audit: Any) -> None:
    api = FakeApi()
    ids = scans(api, 1_000, 2_000, HOUR_MS + 5)
    report = audit(api, [Record("scans", i) for i in ids])
    assert [b.status for b in report.buckets] == ["complete", "complete"]
    assert [b.passentry for b in report.buckets] == [2, 1]
    assert report.exit_code() == EXIT_COMPLETE


def test_a_scan_kafka_lacks_is_missing_in_its_bucket(audit: Any) -> None:
    api = FakeApi()
    ids = scans(api, 1_000, 2_000, HOUR_MS + 5)
    report = audit(api, [Record("scans", i) for i in ids[:2]])
    assert [b.status for b in report.buckets] == ["complete", "missing"]
    assert report.buckets[1].missing.listed == [ids[2]]
    assert report.exit_code() == EXIT_GAPS


def test_a_scan_there_twice_is_doubled_though_the_counts_agree_on_distinct_ids(
    audit: Any,
) -> None:
    api = FakeApi()
    ids = scans(api, 1_000, 2_000)
    report = audit(api, [Record("scans", i) for i in (*ids, ids[0])])
    first = report.buckets[0]
    assert first.status == "duplicated"
    assert first.duplicated.count == 1
    assert report.exit_code() == EXIT_DUPLICATED


def test_missing_and_doubled_together(audit: Any) -> None:
    api = FakeApi()
    ids = scans(api, 1_000, 2_000, HOUR_MS + 5)
    report = audit(api, [Record("scans", i) for i in (ids[0], ids[0], ids[2])])
    assert report.exit_code() == EXIT_GAPS_AND_DUPLICATED


def test_another_sources_records_do_not_count(audit: Any) -> None:
    api = FakeApi()
    ids = scans(api, 1_000)
    report = audit(api, [Record("scans", ids[0], source="other")])
    assert report.buckets[0].status == "missing"
