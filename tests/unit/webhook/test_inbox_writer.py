"""InboxWriter learns the inbox's partition count on its own thread, never on the caller's
(the receiver's event loop), and answers "not ready" meanwhile."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from bridge.errors import InboxNotReadyError
from bridge.webhook import inbox
from bridge.webhook.inbox import InboxWriter


class _Topic:
    def __init__(self, partitions: int) -> None:
        self.error = None
        self.partitions = dict.fromkeys(range(partitions))


class _Metadata:
    def __init__(self, topics: dict[str, _Topic]) -> None:
        self.topics = topics


class ScriptedProducer:
    """Says the topic is missing until ``exists`` is set; notes which thread asked."""

    def __init__(self, conf: dict[str, Any]) -> None:
        self.exists = threading.Event()
        self.asked_on: list[str] = []

    def list_topics(self, topic: str, timeout: float) -> _Metadata:
        self.asked_on.append(threading.current_thread().name)
        return _Metadata({topic: _Topic(3)} if self.exists.is_set() else {})

    def poll(self, timeout: float) -> int:
        time.sleep(timeout)
        return 0

    def flush(self, timeout: float) -> int:
        return 0


@pytest.fixture
def writer(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(inbox, "Producer", ScriptedProducer)
    monkeypatch.setattr(inbox, "_LEARN_EVERY_S", 0.01)
    made = InboxWriter({}, "inbox")
    yield made
    made.close(1)


def _until(check: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "not within the deadline"
        time.sleep(0.01)


def test_not_ready_until_the_topic_exists_and_never_asks_on_the_callers_thread(
    writer: InboxWriter,
) -> None:
    producer: ScriptedProducer = writer._producer  # type: ignore[assignment]
    with pytest.raises(InboxNotReadyError, match="not asked yet"):
        writer.partitions()
    writer.start()
    _until(lambda: len(producer.asked_on) >= 2)
    with pytest.raises(InboxNotReadyError, match="inbox is not ready: the topic does not exist"):
        writer.partitions()
    producer.exists.set()
    _until(lambda: _ready(writer))
    assert writer.partitions() == 3
    asked = len(producer.asked_on)
    time.sleep(0.1)
    assert len(producer.asked_on) == asked, "asked again after it knew"
    assert set(producer.asked_on) == {"inbox-writer"}


def test_says_so_once_when_not_ready_for_long_then_when_ready(
    writer: InboxWriter, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(inbox, "_LEARN_WARN_AFTER_S", 0.05)
    producer: ScriptedProducer = writer._producer  # type: ignore[assignment]
    with caplog.at_level(logging.INFO, logger="bridge.webhook.inbox"):
        writer.start()
        _until(lambda: any(r.levelno == logging.WARNING for r in caplog.records))
        _until(lambda: len(producer.asked_on) >= 20)
        producer.exists.set()
        _until(lambda: any(r.message == "webhook inbox ready" for r in caplog.records))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].error == "the topic does not exist yet"  # type: ignore[attr-defined]


def _ready(writer: InboxWriter) -> bool:
    try:
        writer.partitions()
    except InboxNotReadyError:
        return False
    return True


def test_a_write_that_finds_it_unknown_has_the_writer_ask_at_once(
    writer: InboxWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inbox, "_LEARN_EVERY_S", 3600.0)
    producer: ScriptedProducer = writer._producer  # type: ignore[assignment]
    writer.start()
    _until(lambda: len(producer.asked_on) == 1)  # the first ask, at start
    producer.exists.set()
    time.sleep(0.2)
    assert not _ready(writer), "asked again before the hour or a write said so"
    _until(lambda: _ready(writer))  # the write in the line above did
    assert len(producer.asked_on) == 2
