"""A restore must find the checkpoint's own last scan in what it read back: a broker that has
just restarted can answer for a moment that no record is newer than the window's start, and
an empty window would publish the whole lookback again."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from bridge import pipeline as pipeline_module
from bridge.dedup import DedupWindow, RejectMemory
from bridge.errors import KafkaRetriableError
from bridge.kafka.checkpoint import InboxPosition, SourceState, WindowRebuild, make_checkpoint
from bridge.ops.metrics import Metrics
from bridge.uuid7 import UUIDv7Minter
from tests.unit.fake_api import FakeApi
from tests.unit.pipeline_support import ListSink, build, now_ms


class Store:
    """The state topic and the output topics as the restore reads them back; ``ready``:
    whether the broker answers with what it holds (the checkpoint's last scan included)."""

    def __init__(self, watermark: int) -> None:
        self.watermark = watermark
        self.ready = False
        self.rebuilds = 0
        self.inbox: InboxPosition | None = None
        # What the state topic holds besides: no checkpoint (a first start), and a repair's
        # or backfill's progress record with the topics it wrote to.
        self.first_start = False
        self.repaired: list[str] | None = None
        self.read_back: list[str] = []

    @contextmanager
    def sharing_lookups(self) -> Iterator[None]:
        yield

    def read_state(self, *args: Any, **kwargs: Any) -> SourceState:
        checkpoint = None
        if not self.first_start:
            checkpoint = make_checkpoint("src", self.watermark, ["scans"], inbox=self.inbox)
        repaired = self.repaired is not None
        return SourceState(checkpoint, self.repaired or [], repaired=repaired)

    def rebuild(
        self, window: DedupWindow, rejects: RejectMemory, topics: list[str], dlq: str, **_: Any
    ) -> WindowRebuild:
        self.rebuilds += 1
        self.read_back = sorted(set(topics))
        if self.ready:
            window.add_all([self.watermark])
        return WindowRebuild(records=1 if self.ready else 0, topics=sorted(set(topics)))


@pytest.fixture
def restoring(metrics: Metrics) -> tuple[Any, Store]:
    pipeline = build(FakeApi(), ListSink(), metrics)
    store = Store(UUIDv7Minter().mint(at_ms=now_ms() - 1_000).int)
    pipeline._checkpoints = store  # type: ignore[assignment]
    return pipeline, store


def test_a_window_without_the_checkpoints_last_scan_is_read_again(
    restoring: tuple[Any, Store],
) -> None:
    pipeline, store = restoring
    with pytest.raises(KafkaRetriableError, match="lacks the checkpoint's own last scan"):
        pipeline.restore()
    store.ready = True  # the broker has its logs loaded now
    restored = pipeline.restore()
    assert restored.watermark == str(uuid.UUID(int=store.watermark))
    assert store.watermark in pipeline.window


def test_a_last_scan_gone_for_good_is_given_up_on_after_the_grace(
    restoring: tuple[Any, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deleted by the topic's retention after a long stop, say: the source goes on."""
    pipeline, store = restoring
    with pytest.raises(KafkaRetriableError):
        pipeline.restore()
    monkeypatch.setattr(pipeline_module, "_WATERMARK_GRACE_S", 0.0)
    pipeline.restore()
    assert store.rebuilds == 2
    assert store.watermark not in pipeline.window


def test_the_inbox_position_comes_from_the_checkpoint(restoring: tuple[Any, Store]) -> None:
    """Where the source's webhook events continue rides in its checkpoint; a checkpoint of
    an older version has none (the inbox group's committed position is then used)."""
    pipeline, store = restoring
    store.ready = True
    pipeline.restore()
    assert pipeline.inbox is None
    store.inbox = InboxPosition(2, 418)
    pipeline.restore()
    assert pipeline.inbox == InboxPosition(2, 418)


def test_a_source_that_never_committed_reads_nothing_back(restoring: tuple[Any, Store]) -> None:
    """No checkpoint and no repair's progress: no topic can hold a record of this source, so
    the output topics (which other sources may share, with all they published) are not
    read."""
    pipeline, store = restoring
    store.first_start = True
    restored = pipeline.restore()
    assert restored.fresh
    assert restored.rebuild is None
    assert store.rebuilds == 0
    assert len(pipeline.window) == 0


@pytest.mark.parametrize("topics", [[], ["scans.routed"]])
def test_a_first_start_after_a_backfill_reads_back_what_it_wrote(
    restoring: tuple[Any, Store], topics: list[str]
) -> None:
    """A backfill or repair committed for this source before its first live start: what it
    published is read back (from the topics its progress names, and the fixed ones), even
    from a progress record that names none."""
    pipeline, store = restoring
    store.first_start, store.ready, store.repaired = True, True, topics
    restored = pipeline.restore()
    assert restored.fresh
    assert restored.rebuild is not None
    assert store.rebuilds == 1
    assert set(topics) <= set(store.read_back)
    assert store.watermark in pipeline.window
