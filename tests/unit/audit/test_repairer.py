"""The Repairer on fakes for its Kafka parts (topics, producer): what each transaction of a
repair or backfill holds, which transactional id it writes under, and what it counts. (Its
fencing and read-back run against a real broker in tests/integration/test_one_writer.py.)"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest

from bridge.audit.repair import Repairer, Writer, repair_transactional_id
from bridge.config import load_config
from bridge.kafka.checkpoint import RepairProgress, repair_key
from bridge.kafka.producer import transactional_id
from bridge.kafka.records import OutRecord
from bridge.passentry.pages import Listed, ListedReject, decode_page
from bridge.wiring import Wiring
from tests.unit.scan_docs import Generator

SOURCE = "gate-7"


@dataclass
class FakeTopics:
    ensured: list[str] = field(default_factory=list)

    def ensure(self, topics: list[str], **_: Any) -> None:
        self.ensured += [t for t in topics if t not in self.ensured]


@dataclass
class FakePublisher:
    """Commits at once: what read_committed consumers would see, per transaction."""

    transactional_id: str
    sent: list[tuple[list[OutRecord], OutRecord]] = field(default_factory=list)

    def send(
        self, records: list[OutRecord], checkpoint: OutRecord, timeout_s: float
    ) -> dict[str, int]:
        self.sent.append((records, checkpoint))
        return dict(Counter(r.topic for r in records))


class FakeWiring:
    """A source's real wiring, but for the topic manager and the producer."""

    def __init__(self, real: Wiring) -> None:
        self._real = real
        self.fake_topics = FakeTopics()
        self.fake_publisher: FakePublisher | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def topics(self) -> FakeTopics:
        return self.fake_topics

    def publisher(self, txn_id: str) -> FakePublisher:
        self.fake_publisher = FakePublisher(txn_id)
        return self.fake_publisher

    @property
    def sent(self) -> list[tuple[list[OutRecord], OutRecord]]:
        assert self.fake_publisher is not None
        return self.fake_publisher.sent


class NoClient:
    def get_pass(self, pass_id: str) -> None:
        return None

    def look_up_scan(self, scan_id: str) -> None:
        return None


@pytest.fixture
def wiring(monkeypatch: pytest.MonkeyPatch) -> FakeWiring:
    monkeypatch.setenv("PASSENTRY_API_TOKEN", "t0ken")
    monkeypatch.setenv("BRIDGE_SOURCE_ID", SOURCE)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    return FakeWiring(Wiring.of(load_config(), SOURCE))


def listed(n: int, seed: int = 3) -> tuple[list[Listed], list[ListedReject]]:
    """``n`` scans, and one more whose id is not a UUIDv7 (a dead letter)."""
    gen = Generator(seed)
    passes, readers = gen.world()
    page_doc = gen.page(n, passes, readers)
    page_doc["data"].append({**page_doc["data"][0], "id": "not-a-uuid"})
    page = decode_page(json.dumps(page_doc).encode())
    url = "https://api.test/api/v1/scans?page=1"
    scans = sorted((Listed(s, page, url) for s in page.scans), key=lambda x: x.scan.id_int)
    return scans, [ListedReject(r, url) for r in page.rejected]


def repairer(wiring: FakeWiring, writer: Writer, chunk: int) -> Repairer:
    return Repairer(wiring, NoClient(), writer=writer, since_ms=1, until_ms=2,  # type: ignore[arg-type]
                    command="backfill", chunk=chunk)  # fmt: skip


def test_full_chunks_commit_as_they_come_and_flush_commits_the_rest(wiring: FakeWiring) -> None:
    scans, rejects = listed(7)
    assert (len(scans), len(rejects)) == (7, 1)
    rep = repairer(wiring, Writer.BEHIND_LIVE, chunk=3)
    rep.add(scans[:5], [])
    assert [len(records) for records, _ in wiring.sent] == [3]
    rep.add(scans[5:], rejects)
    rep.flush()
    sizes = [len(records) for records, _ in wiring.sent]
    assert sum(sizes) == len(scans) + len(rejects)
    assert rep.totals.published == len(scans)
    assert rep.totals.dead_letters == len(rejects)
    # In id order, each once, across the transactions.
    dlq = wiring.config.bridge.dlq_topic
    keys = [r.created_ms for records, _ in wiring.sent for r in records if r.topic != dlq]
    assert keys == sorted(keys)


def test_every_record_says_which_run_wrote_it(wiring: FakeWiring) -> None:
    scans, rejects = listed(4)
    rep = repairer(wiring, Writer.BEHIND_LIVE, chunk=10)
    rep.add(scans, rejects)
    rep.flush()
    ((records, _),) = wiring.sent
    for record in records:
        tags = [v for k, v in record.headers if k == "repaired-by"]
        assert len(tags) == 1
        assert "backfill" in str(tags[0])
        assert rep.run_id in str(tags[0])


def test_each_transaction_carries_the_runs_progress_under_the_repair_key(
    wiring: FakeWiring,
) -> None:
    scans, _ = listed(5)
    rep = repairer(wiring, Writer.BEHIND_LIVE, chunk=2)
    rep.add(scans, [])
    rep.flush()
    markers = [marker for _, marker in wiring.sent]
    progress = [msgspec.json.decode(m.value, type=RepairProgress) for m in markers]
    assert {m.key for m in markers} == {repair_key(SOURCE).encode()}
    assert {m.topic for m in markers} == {wiring.config.bridge.state_topic}
    assert [p.published for p in progress] == [2, 4, 5]
    assert {p.run_id for p in progress} == {rep.run_id}
    assert progress[-1].topics == sorted(rep.topics)


def test_behind_a_live_bridge_it_writes_under_its_own_id_and_as_the_source_under_the_sources(
    wiring: FakeWiring,
) -> None:
    repairer(wiring, Writer.BEHIND_LIVE, chunk=1)
    assert wiring.fake_publisher is not None
    assert wiring.fake_publisher.transactional_id == repair_transactional_id(SOURCE)
    repairer(wiring, Writer.AS_SOURCE, chunk=1)
    assert wiring.fake_publisher.transactional_id == transactional_id(SOURCE)


def test_nothing_to_write_commits_nothing(wiring: FakeWiring) -> None:
    rep = repairer(wiring, Writer.BEHIND_LIVE, chunk=2)
    rep.flush()
    assert wiring.sent == []
