"""The exactly-once fault suite with webhooks flowing: the bridge is SIGKILLed at random
moments while PassEntry pushes every live scan, and what the inbox accepted is published
exactly once all the same."""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path

import pytest

from passentry_simulator.app import SimulatorConfig
from passentry_simulator.server import SimulatorServer
from passentry_simulator.store import WorldConfig
from passentry_simulator.webhooks import WebhookConfig
from tests.integration.eos_harness import (
    BridgeProcess,
    Topics,
    Traffic,
    bridge_env,
    free_port,
    pause_for_fault,
    verify_exactly_once,
)
from tests.integration.harness import drain

SECRET = "whsec-eos-0123456789abcdef0123456789abc"


def test_sigkill_while_webhooks_flow_loses_nothing_the_inbox_accepted(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    seed = int(os.environ.get("EOS_SEED", 808))
    rng = random.Random(seed)
    topics = Topics.fresh()
    port = free_port()
    inbox = f"{topics.source}-inbox"
    hooks = WebhookConfig(
        url=f"http://127.0.0.1:{port}/webhooks/passentry/{topics.source}",
        secret=SECRET,
        retry_base_s=0.2,
        retry_cap_s=2.0,
        max_attempts=30,
    )
    world = WorldConfig(readers=10, passes=200, seed=seed, backlog=200, backlog_span_s=600)
    with SimulatorServer(SimulatorConfig(world=world, rate_limit=None, webhooks=hooks)) as sim:
        env = bridge_env(
            sim.url,
            kafka_bootstrap,
            topics,
            PASSENTRY_WEBHOOK_SECRET=SECRET,
            BRIDGE_WEBHOOK_PORT=str(port),
            BRIDGE_WEBHOOK_TOPIC=inbox,
            BRIDGE_HTTP_HOST="127.0.0.1",
            PASSENTRY_POLL_INTERVAL_BACKSTOP_S="2",
            PASSENTRY_WEBHOOK_SETTLE_S="0.5",
            # Transactions held open a little: kills land inside them often.
            BRIDGE_DEBUG_TXN_HOLD_S="0.05",
        )
        with Traffic(sim, rate=40):
            for n in range(8):
                bridge = BridgeProcess(env, tmp_path, f"bridge-{n}").start()
                # A kill at a random moment of the bridge's life, measured from its start.
                pause_for_fault(rng.uniform(1.0, 4.0))
                bridge.send(signal.SIGKILL)
                assert bridge.wait(10) == -signal.SIGKILL
            final = BridgeProcess(env, tmp_path, "bridge-final").start()
            # Traffic goes on until the final bridge has taken webhooks itself.
            final.wait_metric("passentry_bridge_webhook_requests_total", 1, 60, outcome="accepted")
        try:
            records = verify_exactly_once(kafka_bootstrap, topics, sim, seed, in_order=False)
            # The inbox accepted events while bridges were being killed, and every scan it
            # holds is on the topic once.
            accepted = drain(kafka_bootstrap, inbox, idle_s=2)
            assert accepted
            published = {r.headers["scan-id"] for r in records}
            sent = sim.sim.webhooks.outcomes()
            delivered = {i.encode() for ids in sent.values() for i in ids["delivered"]}
            assert delivered
            assert delivered <= published
        finally:
            final.send(signal.SIGTERM)
            assert final.wait(15) == 0


pytestmark = pytest.mark.timeout(600)
