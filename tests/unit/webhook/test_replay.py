from __future__ import annotations

from bridge.webhook.replay import ReplayCache


def test_an_event_is_remembered_until_it_expires_per_source() -> None:
    cache = ReplayCache(100)
    cache.add("gates", "e1", expires=1300.0)
    assert cache.seen("gates", "e1", now=1000.0)
    assert not cache.seen("doors", "e1", now=1000.0)
    assert not cache.seen("gates", "e2", now=1000.0)
    assert not cache.seen("gates", "e1", now=1300.0)
    assert len(cache) == 0


def test_the_oldest_go_first_beyond_the_capacity() -> None:
    cache = ReplayCache(3)
    for n in range(5):
        cache.add("gates", f"e{n}", expires=2000.0 + n)
    assert len(cache) == 3
    assert [cache.seen("gates", f"e{n}", now=1000.0) for n in range(5)] == [
        False, False, True, True, True
    ]  # fmt: skip


def test_a_zero_capacity_remembers_nothing() -> None:
    cache = ReplayCache(0)
    cache.add("gates", "e1", expires=2000.0)
    assert not cache.seen("gates", "e1", now=1000.0)
