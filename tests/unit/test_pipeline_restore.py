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

    @contextmanager
    def sharing_lookups(self) -> Iterator[None]:
        yield

    def read_state(self, *args: Any, **kwargs: Any) -> SourceState:
        checkpoint = make_checkpoint("src", self.watermark, ["scans"], inbox=self.inbox)
        return SourceState(checkpoint, [])

    def rebuild(
        self, window: DedupWindow, rejects: RejectMemory, topics: list[str], dlq: str, **_: Any
    ) -> WindowRebuild:
        self.rebuilds += 1
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
