"""The push path through the pipeline: inbox events published once, in the same records a
poll gives, in transactions that carry the inbox position."""

from __future__ import annotations

import json
import threading
from concurrent.futures import Future
from typing import Any

import pytest

from bridge.errors import KafkaRetriableError
from bridge.kafka.checkpoint import InboxPosition
from bridge.ops.metrics import Metrics
from bridge.webhook.inbox import InboxBatch, InboxEvent
from tests.support import sample
from tests.unit.fake_api import FakeApi, pass_doc, scan_doc
from tests.unit.pipeline_support import ListSink, build, now_ms


def webhook(scan: dict[str, Any]) -> bytes:
    """A passScanned event for ``scan`` as PassEntry pushes it: the reader only by name."""
    rel = scan["relationships"]
    reader = rel["reader"]["data"]["id"]
    included = [scan]
    if rel["pass"]["data"]:
        included.append(pass_doc(rel["pass"]["data"]["id"]))
    included.append(
        {"id": reader, "type": "reader", "attributes": {"name": "x", "readerType": "y"}}
    )
    return json.dumps(
        {
            "data": {
                "id": f"evt-{scan['id']}",
                "type": "webhook",
                "attributes": {"timeStamp": "2025-01-13T13:00:00Z", "webhookType": "passScanned"},
            },
            "included": included,
        }
    ).encode()


def batch(*bodies: bytes, offset: int = 0) -> InboxBatch:
    events = [InboxEvent(body, 0) for body in bodies]
    end = offset + len(bodies)
    return InboxBatch(events, InboxPosition(0, end))


def doc_of(api: FakeApi, scan_id: str) -> dict[str, Any]:
    return next(d for _, d in api.scans if d["id"] == scan_id)


def test_a_pushed_scan_is_the_same_record_a_poll_gives() -> None:
    now = now_ms()
    api = FakeApi()
    api.include_readers = True
    api.add(now - 5_000, reader="gate-7")
    pushed_id = api.add(now - 1_000, reader="gate-7")
    pushed_doc = doc_of(api, pushed_id)

    polled = ListSink()
    build(api, polled, Metrics()).cycle(threading.Event())
    by_poll = {dict(r.headers)["scan-id"]: r for r in polled.records}[pushed_id]

    # Another source learns gate-7 from a poll that ends before the pushed scan exists.
    pushed, metrics = ListSink(), Metrics()
    p = build(api, pushed, metrics)
    p.cycle(threading.Event(), until_ms=now - 2_000)
    stats = p.publish_pushed(batch(webhook(pushed_doc)))
    assert stats.published == 1
    (by_push,) = [r for r in pushed.records if dict(r.headers)["scan-id"] == pushed_id]
    assert by_push.value == by_poll.value
    assert by_push.key == by_poll.key == b"gate-7"
    assert by_push.created_ms == by_poll.created_ms
    assert by_push.headers == by_poll.headers
    assert sample(metrics, "passentry_bridge_webhook_events_total", outcome="published") == 1
    assert sample(metrics, "passentry_bridge_end_to_end_latency_seconds_count", path="webhook") == 1


def test_the_push_transaction_carries_the_inbox_position_and_the_checkpoint() -> None:
    now = now_ms()
    api = FakeApi()
    api.include_readers = True
    api.add(now - 5_000)
    sink = ListSink()
    p = build(api, sink, Metrics())
    p.cycle(threading.Event())
    assert sink.checkpoints[-1]["inbox"] is None  # no event read yet
    new = api.add(now - 100)
    p.publish_pushed(batch(webhook(doc_of(api, new)), offset=41))
    assert sink.checkpoints[-1]["watermark"] == new
    assert sink.checkpoints[-1]["inbox"] == {"partition": 0, "offset": 42}
    assert p.inbox == InboxPosition(0, 42)
    # A batch of nothing new still moves the position on, in a transaction of its own.
    p.publish_pushed(batch(webhook(doc_of(api, new)), offset=42))
    assert sink.checkpoints[-1]["inbox"] == {"partition": 0, "offset": 43}
    # A poll's transaction carries it on unchanged.
    api.add(now - 50)
    p.cycle(threading.Event())
    assert sink.checkpoints[-1]["inbox"] == {"partition": 0, "offset": 43}


def test_a_failed_push_transaction_leaves_the_position_where_it_was() -> None:
    now = now_ms()
    api = FakeApi()
    api.include_readers = True
    api.add(now - 5_000)
    sink = ListSink()
    p = build(api, sink, Metrics())
    p.cycle(threading.Event())
    p.publish_pushed(batch(webhook(doc_of(api, api.add(now - 100))), offset=9))
    sink.fail_next = True
    with pytest.raises(KafkaRetriableError):
        p.publish_pushed(batch(webhook(doc_of(api, api.add(now - 90))), offset=10))
    assert p.inbox == InboxPosition(0, 10)


def test_both_paths_and_redeliveries_give_one_record_per_scan() -> None:
    now = now_ms()
    api = FakeApi()
    api.include_readers = True
    api.add(now - 5_000)
    sink, metrics = ListSink(), Metrics()
    p = build(api, sink, metrics)
    p.cycle(threading.Event())
    a, b = api.add(now - 300), api.add(now - 200)
    body_a, body_b = webhook(doc_of(api, a)), webhook(doc_of(api, b))
    # a twice in one batch (PassEntry redelivered it), then b, then a poll that sees both.
    p.publish_pushed(batch(body_a, body_a))
    p.publish_pushed(batch(body_b, body_a))
    p.cycle(threading.Event())
    ids = sink.scan_ids()
    assert sorted(ids) == sorted({*ids})
    assert a in ids
    assert b in ids
    assert sample(metrics, "passentry_bridge_webhook_events_total", outcome="duplicate") == 2


def test_a_scan_polled_first_is_a_duplicate_when_its_webhook_comes() -> None:
    now = now_ms()
    api = FakeApi()
    api.include_readers = True
    first = api.add(now - 1_000)
    sink, metrics = ListSink(), Metrics()
    p = build(api, sink, metrics)
    p.cycle(threading.Event())
    stats = p.publish_pushed(batch(webhook(doc_of(api, first))))
    assert (stats.published, stats.duplicates) == (0, 1)
    assert sink.scan_ids() == [first]


def test_a_reader_never_seen_in_full_is_read_with_its_scan() -> None:
    """A webhook names its reader only by name and type. Where no poll showed the reader
    lately, ``GET /api/v1/scans/{id}`` gives it in full: one request, the record a poll
    gives, and the reader remembered for the next scans."""
    now = now_ms()
    api = FakeApi()
    api.include_readers = True
    first = api.add(now - 1_000, reader="new-gate")
    polled = ListSink()
    build(api, polled, Metrics()).cycle(threading.Event())
    by_poll = {dict(r.headers)["scan-id"]: r for r in polled.records}[first]

    sink, metrics = ListSink(), Metrics()
    p = build(api, sink, metrics)
    p.cycle(threading.Event(), until_ms=now - 2_000)  # reads nothing: the reader is unseen
    api.requests.clear()
    stats = p.publish_pushed(batch(webhook(doc_of(api, first))))
    assert (stats.published, stats.deferred) == (1, 0)
    assert [r.url.path for r in api.requests] == [f"/api/v1/scans/{first}"]
    (by_push,) = sink.records
    assert (by_push.value, by_push.key, by_push.headers) == (
        by_poll.value, by_poll.key, by_poll.headers
    )  # fmt: skip
    assert sample(metrics, "passentry_bridge_enrichment_misses_total", kind="reader_fetched") == 1
    # The next scans of that reader, two in one batch, need no request.
    api.requests.clear()
    more = [api.add(now - 500, reader="new-gate"), api.add(now - 400, reader="new-gate")]
    stats = p.publish_pushed(batch(*(webhook(doc_of(api, m)) for m in more)))
    assert (stats.published, stats.deferred) == (2, 0)
    assert api.requests == []


@pytest.mark.parametrize("polled_until_s", [None, 120], ids=["not-yet", "far-behind"])
def test_before_polling_caught_up_an_unseen_readers_scan_waits_for_the_poll(
    polled_until_s: int | None,
) -> None:
    """At a start (the backlog's poll in flight), or with polling far behind, older scans of
    the partition may still be unpublished: the webhook's scan would come before them. It
    is left to the poll, without a request, and counted as deferred."""
    now = now_ms()
    api = FakeApi()
    api.include_readers = True
    sink, metrics = ListSink(), Metrics()
    p = build(api, sink, metrics)
    if polled_until_s is not None:  # read up to two lookbacks (of 60 s) ago
        p.cycle(threading.Event(), until_ms=now - polled_until_s * 1000)
    scan_id = api.add(now - 500, reader="new-gate")
    api.requests.clear()
    stats = p.publish_pushed(batch(webhook(doc_of(api, scan_id))))
    assert (stats.published, stats.deferred) == (0, 1)
    assert api.requests == []
    assert sink.scan_ids() == []
    deferred = "passentry_bridge_webhook_deferred_total"
    assert sample(metrics, deferred, reason="unknown_reader") == 1


def _polled_nothing() -> tuple[FakeApi, ListSink, Metrics, Any]:
    """A source whose poll found nothing yet: no reader known."""
    api = FakeApi()
    api.include_readers = True
    sink, metrics = ListSink(), Metrics()
    p = build(api, sink, metrics)
    p.cycle(threading.Event())
    return api, sink, metrics, p


def test_a_reader_the_api_cannot_give_yet_is_left_to_polling() -> None:
    """The scan not visible through ``GET /api/v1/scans/{id}`` yet: the scan waits for the
    poll, as do its reader's other scans in the same batch (asked once)."""
    now = now_ms()
    api, sink, metrics, p = _polled_nothing()
    scans = [api.add(now - 500, reader="new-gate"), api.add(now - 400, reader="new-gate")]
    api.hidden_scans.update(scans)
    api.requests.clear()
    stats = p.publish_pushed(batch(*(webhook(doc_of(api, s)) for s in scans)))
    assert (stats.published, stats.deferred) == (0, 2)
    assert len(api.requests) == 1
    assert sample(metrics, "passentry_bridge_webhook_deferred_total", reason="unknown_reader") == 2
    assert sink.scan_ids() == []
    # The poll publishes them, with the full reader.
    p.cycle(threading.Event())
    assert sink.scan_ids() == scans


def test_an_api_that_cannot_answer_leaves_the_scan_to_polling() -> None:
    now = now_ms()
    api, sink, metrics, p = _polled_nothing()
    scan_id = api.add(now - 500, reader="new-gate")
    api.scan_outages = 1_000
    api.requests.clear()
    stats = p.publish_pushed(batch(webhook(doc_of(api, scan_id))))
    assert (stats.published, stats.deferred) == (0, 1)
    assert len(api.requests) == 1  # one try, no retries
    assert sink.scan_ids() == []
    # For a while after a failure, no batch asks again.
    other = api.add(now - 400, reader="other-gate")
    api.scan_outages = 0
    stats = p.publish_pushed(batch(webhook(doc_of(api, other))))
    assert (stats.published, stats.deferred) == (0, 1)
    assert len(api.requests) == 1
    assert sample(metrics, "passentry_bridge_webhook_deferred_total", reason="unknown_reader") == 2
    p.cycle(threading.Event())
    assert sink.scan_ids() == [scan_id, other]


def test_a_batch_reads_at_most_a_few_readers() -> None:
    """A batch of many readers none of them seen (the first webhooks after a start): a few
    are read, the rest wait for the poll, so that the batch is not held up for long."""
    now = now_ms()
    api, sink, metrics, p = _polled_nothing()
    scans = [api.add(now - 500 + i, reader=f"gate-{i}") for i in range(12)]
    api.requests.clear()
    stats = p.publish_pushed(batch(*(webhook(doc_of(api, s)) for s in scans)))
    asked = len(api.requests)
    assert 0 < asked < len(scans)
    assert (stats.published, stats.deferred) == (asked, len(scans) - asked)
    assert (
        sample(metrics, "passentry_bridge_enrichment_misses_total", kind="reader_fetched") == asked
    )
    p.cycle(threading.Event())
    assert sorted(sink.scan_ids()) == sorted(scans)


def test_a_pushed_scan_older_than_the_window_is_left_to_the_sweep() -> None:
    now = now_ms()
    api = FakeApi()
    api.include_readers = True
    api.add(now - 1_000)
    sink, metrics = ListSink(), Metrics()
    p = build(api, sink, metrics, lookback_ms=10_000)
    p.cycle(threading.Event())
    old = scan_doc(str(api.minter.mint(at_ms=now - 60_000)))
    stats = p.publish_pushed(batch(webhook(old)))
    assert stats.deferred == 1
    assert sample(metrics, "passentry_bridge_webhook_deferred_total", reason="late") == 1


def test_while_webhooks_flow_a_poll_checks_new_time_by_count_in_one_request() -> None:
    now = now_ms()
    api = FakeApi()
    api.include_readers = True
    for i in range(50):
        api.add(now - 20_000 + i * 10)
    sink = ListSink()
    p = build(api, sink, Metrics(), overlap_ms=0)
    p.cycle(threading.Event(), until_ms=now - 9_000)
    pushed = [api.add(now - 8_000 + i * 100) for i in range(30)]
    p.publish_pushed(batch(*(webhook(doc_of(api, s)) for s in pushed)))
    before = len(api.requests)
    stats = p.cycle(threading.Event(), settle_ms=1_000)
    # One count request for the new time; nothing to read or publish.
    assert len(api.requests) - before == 1
    assert stats.published == 0
    # A lost webhook makes the counts differ: that range is read and the scan published.
    lost = api.add(now - 500)
    stats = p.cycle(threading.Event(), settle_ms=0)
    assert stats.published == 1
    assert sink.scan_ids()[-1] == lost


def test_a_webhook_published_while_a_poll_waits_is_not_published_again_by_that_poll() -> None:
    now = now_ms()
    api = FakeApi()
    api.include_readers = True
    api.add(now - 5_000)
    sink, metrics = ListSink(), Metrics()
    p = build(api, sink, metrics)
    p.cycle(threading.Event(), until_ms=now - 2_000)
    raced = api.add(now - 300)  # in the next slice
    waits = 0

    def serve_inbox_meanwhile(future: Future[Any]) -> Any:
        # The source's pump does this: while the poll's request is in flight, the webhook
        # of a scan that request will also return is published.
        nonlocal waits
        waits += 1
        if waits == 1:
            p.publish_pushed(batch(webhook(doc_of(api, raced))))
        return future.result()

    p.reader.wait = serve_inbox_meanwhile
    stats = p.cycle(threading.Event(), until_ms=now)
    assert waits > 1
    assert (stats.fetched, stats.duplicates, stats.published) == (1, 1, 0)
    assert sink.scan_ids().count(raced) == 1
