"""The push path against the real broker and the simulator's signed webhooks: every scan
exactly once whichever path brings it, with drops, duplicates, reordering and forgeries."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest

from bridge.runner import RunOptions
from passentry_simulator.app import SimulatorConfig
from passentry_simulator.faults import Faults
from passentry_simulator.server import SimulatorServer
from passentry_simulator.store import WorldConfig
from passentry_simulator.webhooks import WebhookConfig, sign
from tests.integration.harness import (
    RunningBridge,
    assert_matches_source,
    bridge_config,
    drain,
    wait_for,
    wait_for_cycles,
)
from tests.support import free_port, sample

SECRET = "whsec-integration-0123456789abcdef0123"


def webhook_simulator(
    port: int, source: str, *, seed: int, backlog: int, faults: Faults | None = None
) -> SimulatorServer:
    hooks = WebhookConfig(
        url=f"http://127.0.0.1:{port}/webhooks/passentry/{source}",
        secret=SECRET,
        retry_base_s=0.2,
    )
    world = WorldConfig(readers=6, passes=60, seed=seed, backlog=backlog, backlog_span_s=120)
    if faults is not None:
        faults.rng = random.Random(seed)
    return SimulatorServer(SimulatorConfig(world=world, webhooks=hooks), faults)


def generate(sim: SimulatorServer, count: int, rate: float) -> set[str]:
    """``count`` live scans, ``rate`` per second; their ids."""
    made: set[str] = set()
    for _ in range(count):
        made.update(s.id for s in sim.store.generate(1))
        time.sleep(1 / rate)
    return made


def config_for(
    sim: SimulatorServer, bootstrap: str, source: str, port: int, *, webhooks: bool,
    **passentry: Any,
) -> Any:  # fmt: skip
    tag = uuid.uuid4().hex[:8]
    settings: dict[str, Any] = dict(passentry)
    if webhooks:
        settings.update(webhook_secret=SECRET)
    return bridge_config(
        sim.url,
        sim.token,
        bootstrap,
        scans_topic=f"wh-{tag}-scans",
        dlq_topic=f"wh-{tag}-dlq",
        passentry=settings,
        bridge={
            "source_id": source,
            "webhook_port": port,
            "http_host": "127.0.0.1",
            "webhook_topic": f"wh-{tag}-inbox",
        },
    )


def exactly_once(bootstrap: str, topic: str, expected: set[str]) -> list[str]:
    records = drain(
        bootstrap,
        topic,
        timeout_s=90,
        until=lambda rs: {r.headers["scan-id"].decode() for r in rs} >= expected,
    )
    records = drain(bootstrap, topic, idle_s=2)
    ids = [r.headers["scan-id"].decode() for r in records]
    twice = [i for i, n in Counter(ids).items() if n > 1]
    assert not twice, f"{len(twice)} scans published twice, e.g. {twice[:3]}"
    assert set(ids) == expected
    return ids


@pytest.mark.parametrize("mode", ["webhook_only", "poll_only", "both_paths"])
def test_every_scan_exactly_once_by_either_path(kafka_bootstrap: str, mode: str) -> None:
    port, source = free_port(), f"wh-{mode}-{uuid.uuid4().hex[:6]}"
    faults = None
    if mode == "both_paths":
        faults = Faults(
            webhook_drop_rate=0.2,
            webhook_duplicate_rate=0.2,
            webhook_delay_ms=300,
            webhook_bad_signature_rate=0.1,
        )
    with webhook_simulator(port, source, seed=11, backlog=80, faults=faults) as sim:
        if mode == "webhook_only":
            # One poll at start (the backlog, and every reader in full), then none for the
            # length of the test: the live scans can only come by webhook.
            pace = {"poll_interval_min_s": 60, "poll_interval_max_s": 60}
        else:
            pace = {"poll_interval_backstop_s": 1.0, "webhook_settle_s": 0.5}
        config = config_for(
            sim, kafka_bootstrap, source, port, webhooks=mode != "poll_only", **pace
        )
        scans_topic = config.bridge.scans_topic
        with RunningBridge(config, RunOptions(since_ms=0)) as bridge:
            backlog = {s.id for s in sim.store.all_scans()}
            exactly_once(kafka_bootstrap, scans_topic, backlog)
            live = generate(sim, 60, rate=30)
            ids = exactly_once(kafka_bootstrap, scans_topic, backlog | live)
            metrics = bridge.service.metrics
            fired = dict(sim.faults.fired)
        assert bridge.exit_code == 0
    assert len(ids) == 140
    by_webhook = sample(metrics, "passentry_bridge_webhook_events_total", outcome="published")
    by_poll = sample(metrics, "passentry_bridge_end_to_end_latency_seconds_count", path="poll")
    if mode == "webhook_only":
        assert by_webhook == len(live)
        assert by_poll == len(backlog)
    elif mode == "poll_only":
        assert by_webhook == 0
        assert by_poll == len(backlog) + len(live)
    else:
        # Dropped webhooks are published by the backstop poll; duplicates and forgeries
        # were refused or deduplicated; the rest came by webhook.
        assert fired.get("webhook_drop", 0) > 0
        assert by_webhook + by_poll == len(backlog) + len(live)
        assert by_poll > len(backlog)
        assert by_webhook > 0
        requests = "passentry_bridge_webhook_requests_total"
        unauthorized = sample(metrics, requests, outcome="unauthorized")
        assert unauthorized == fired.get("webhook_bad_signature", 0) > 0
        # A duplicate delivery is mostly answered by the receiver's replay cache, without a
        # second inbox record; one that got in anyway is dropped by the owner's dedup.
        replayed = sample(metrics, requests, outcome="replayed")
        dupes = sample(metrics, "passentry_bridge_webhook_events_total", outcome="duplicate")
        assert replayed > 0
        assert replayed + dupes >= fired.get("webhook_duplicate", 0) > 0


def test_a_reader_no_poll_showed_is_read_with_one_of_its_scans(kafka_bootstrap: str) -> None:
    """No backlog and no poll during the test: no page ever showed the live scans' readers,
    and a webhook names a reader only by name and type. Each reader is read in full with
    one of its scans (``GET /api/v1/scans/{id}``), and every scan is published by webhook,
    as a poll would have given it."""
    port, source = free_port(), f"wh-unseen-{uuid.uuid4().hex[:6]}"
    with webhook_simulator(port, source, seed=13, backlog=0) as sim:
        pace = {"poll_interval_min_s": 60, "poll_interval_max_s": 60}
        config = config_for(sim, kafka_bootstrap, source, port, webhooks=True, **pace)
        with RunningBridge(config, RunOptions(since_ms=0)) as bridge:
            # The start's poll has read the empty backlog; the next is a minute away.
            wait_for_cycles(bridge.service.metrics, 1)
            # Slowly while the readers are new (a batch asks for four at most), then fast.
            live = generate(sim, 12, rate=4) | generate(sim, 48, rate=30)
            exactly_once(kafka_bootstrap, config.bridge.scans_topic, live)
            metrics = bridge.service.metrics
            requests = dict(sim.sim.stats.requests)
        assert bridge.exit_code == 0
    readers = {s.spec.reader.id for s in sim.store.all_scans()}
    assert sample(metrics, "passentry_bridge_webhook_events_total", outcome="published") == 60
    assert not sample(metrics, "passentry_bridge_webhook_deferred_total", reason="unknown_reader")
    fetched = "passentry_bridge_enrichment_misses_total"
    assert sample(metrics, fetched, kind="reader_fetched") == len(readers)
    assert requests.get("GET /api/v1/scans/{id}") == len(readers)
    by_id = {s.id: s for s in sim.store.all_scans()}
    for record in drain(kafka_bootstrap, config.bridge.scans_topic):
        assert_matches_source(record, by_id[record.headers["scan-id"].decode()])


def test_an_accepted_event_is_in_the_inbox_before_the_200(kafka_bootstrap: str) -> None:
    port, source = free_port(), f"wh-inbox-{uuid.uuid4().hex[:6]}"
    # A simulator that sends no webhooks of its own: the test posts the only event.
    with SimulatorServer(SimulatorConfig(world=WorldConfig(backlog=0))) as sim:
        config = config_for(sim, kafka_bootstrap, source, port, webhooks=True)
        with RunningBridge(config, RunOptions(since_ms=0)) as bridge:
            wait_for(lambda: bridge.service.health.readiness().ok, 60, "the bridge to be ready")
            body = _event_body(sim)
            url = f"http://127.0.0.1:{port}/webhooks/passentry/{source}"
            signed = {"X-Webhook-Signature": sign(body, SECRET)}
            answer = httpx.post(url, content=body, headers=signed, timeout=30)
            assert answer.status_code == 200
            # Read with read_committed right after the 200: the event is already there.
            (event,) = drain(kafka_bootstrap, config.bridge.webhook_topic, idle_s=1)
            assert event.value == body
            assert event.key == source.encode()
            forged = httpx.post(url, content=body, headers={"X-Webhook-Signature": "0" * 64})
            assert forged.status_code == 401
            assert len(drain(kafka_bootstrap, config.bridge.webhook_topic, idle_s=1)) == 1


def test_kafka_out_of_reach_is_503_so_passentry_retries() -> None:
    from bridge.ops.metrics import Metrics
    from bridge.webhook.inbox import InboxWriter
    from bridge.webhook.keys import SigningKeys
    from bridge.webhook.receiver import (
        MAX_BODY_BYTES,
        ReceiverSettings,
        WebhookReceiver,
        WebhookSource,
    )
    from bridge.webhook.server import ServerLimits

    limits = ServerLimits(64, 10.0, 10.0, 75.0, MAX_BODY_BYTES)
    receiver = WebhookReceiver(
        ReceiverSettings("127.0.0.1", 0, 8, limits, 1000),
        {"gates": WebhookSource(SigningKeys("gates", lambda: [SECRET]), 300, 60)},
        InboxWriter({"bootstrap.servers": "127.0.0.1:1"}, "inbox"),
        Metrics(),
    )
    receiver.start()
    try:
        with SimulatorServer(SimulatorConfig(world=WorldConfig(backlog=0))) as sim:
            body = _event_body(sim)
        answer = httpx.post(
            f"http://127.0.0.1:{receiver.port}/webhooks/passentry/gates",
            content=body,
            headers={"X-Webhook-Signature": sign(body, SECRET)},
            timeout=30,
        )
        assert answer.status_code == 503
    finally:
        receiver.stop()


def test_the_inbox_writer_learns_a_topic_made_after_it_started(kafka_bootstrap: str) -> None:
    """At start the receiver may take webhooks before the inbox exists: the writer answers
    "not ready" (a 503) at once, and learns the partition count on its own thread when the
    topic appears."""
    from confluent_kafka.admin import AdminClient, NewTopic

    from bridge.errors import InboxNotReadyError
    from bridge.webhook.inbox import InboxWriter

    topic = f"wh-inbox-late-{uuid.uuid4().hex[:6]}"
    writer = InboxWriter({"bootstrap.servers": kafka_bootstrap}, topic)
    writer.start()
    try:
        with pytest.raises(InboxNotReadyError, match=topic):
            writer.partitions()
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        for future in admin.create_topics([NewTopic(topic, 4, 1)]).values():
            future.result(30)

        def learnt() -> bool:
            try:
                return writer.partitions() == 4
            except InboxNotReadyError:
                return False

        wait_for(learnt, 30, f"the writer to learn {topic}'s partitions")
        delivered: list[object] = []
        writer.write("gates", b"{}", delivered.append)
        wait_for(lambda: delivered == [None], 30, "the event's delivery")
    finally:
        writer.close(5)


def test_a_flood_of_forged_requests_does_not_stop_the_stream(kafka_bootstrap: str) -> None:
    port, source = free_port(), f"wh-flood-{uuid.uuid4().hex[:6]}"
    with webhook_simulator(port, source, seed=5, backlog=40) as sim:
        config = config_for(
            sim, kafka_bootstrap, source, port, webhooks=True,
            poll_interval_backstop_s=1.0, webhook_settle_s=0.5,
        )  # fmt: skip
        with RunningBridge(config, RunOptions(since_ms=0)) as bridge:
            backlog = {s.id for s in sim.store.all_scans()}
            exactly_once(kafka_bootstrap, config.bridge.scans_topic, backlog)
            stop = threading.Event()
            answers: Counter[int] = Counter()

            def flood() -> None:
                url = f"http://127.0.0.1:{port}/webhooks/passentry/{source}"
                body = b'{"data": ' + b"x" * 2000 + b"}"
                forged = {"X-Webhook-Signature": "f" * 64}
                with httpx.Client(timeout=10) as client:
                    while not stop.is_set():
                        answers[client.post(url, content=body, headers=forged).status_code] += 1

            flooders = [threading.Thread(target=flood) for _ in range(4)]
            for t in flooders:
                t.start()
            try:
                live = generate(sim, 60, rate=30)
                exactly_once(kafka_bootstrap, config.bridge.scans_topic, backlog | live)
            finally:
                stop.set()
                for t in flooders:
                    t.join(30)
            assert bridge.service.health.readiness().ok
            metrics = bridge.service.metrics
    assert set(answers) <= {401, 503}
    assert answers[401] > 200
    assert sample(metrics, "passentry_bridge_webhook_events_total", outcome="published") > 0


def _event_body(sim: SimulatorServer) -> bytes:
    from passentry_simulator.webhooks import render_event

    (scan,) = sim.store.generate(1)
    return render_event(str(uuid.uuid4()), scan.created_ms or 0, scan)
