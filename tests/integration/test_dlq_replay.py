"""``dlq list``, ``show`` and ``replay`` on the real broker, beside a live bridge.

The simulator's faults make the dead letters: scans visible 4 s after they were created
(``late_scan``: the bridge runs with a 1 s lookback) and ids that are not UUIDv7
(``invalid_id``); two more, which today's code rejects for another reason, are planted.
Then the configuration changes as the README says to: the lookback is raised above the
delay and the live bridge restarted, so late scans are published live from then on. The
replay judges the dead letters again: the late ones now pass and are published behind the
live horizon, the invalid ids still fail and stay, the planted ones get their new reason.
It is killed after its first transaction committed (a second held open), ``audit --repair``
runs over the first half of the range meanwhile, then the replay runs again, and once more.
The live bridge runs throughout with the faults on. The read_committed check: every scan
at most once in the scans topic, every replayable one exactly once, no invalid id; a dead
letter with the new reason for each planted one, written once.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from collections import Counter
from typing import Any

import pytest
from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition

from bridge.service import RunOptions
from bridge.uuid7 import UUIDv7Minter
from passentry_simulator.app import SimulatorConfig
from passentry_simulator.faults import Faults
from passentry_simulator.server import SimulatorServer
from passentry_simulator.store import WorldConfig
from tests.integration.eos_harness import BRIDGE, Topics, Traffic, bridge_env
from tests.integration.harness import RunningBridge, bridge_config, drain, wait_for
from tests.support import sample

LATE_S = 4  # how long after creation the late fault makes a scan visible
LOOKBACK_S, FIXED_LOOKBACK_S, LATE_SWEEP_S, MARGIN_S = 1, 6, 8, 2
TRAFFIC_RATE = 20


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def _created(scan_id: str) -> int:
    return int(scan_id[:8] + scan_id[9:13], 16)


def _cli(env: dict[str, str], *args: str, timeout: float = 240) -> dict[str, Any]:
    proc = subprocess.run(
        [BRIDGE, *args, "--json"], env=env, capture_output=True, text=True, timeout=timeout,
        check=False,
    )  # fmt: skip
    assert proc.returncode in (0, 4), f"{args} exited {proc.returncode}\n{proc.stderr[-3000:]}"
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def _plant(bootstrap: str, topic: str, source: str, created_ms: int) -> dict[str, str]:
    """Two late_scan dead letters that today's code rejects for another reason, as an older
    bridge or a stricter schema might have left them: one does not decode (invalid_scan), one
    cannot be encoded (its scannedAt is year 1 at +14:00, before Avro's range). Their ids,
    by the reason they should get."""
    minter = UUIDv7Minter()
    undecodable, unencodable = str(minter.mint(created_ms)), str(minter.mint(created_ms + 1))
    payloads = {
        undecodable: {"id": undecodable, "type": "scan", "attributes": {"scanType": "nfc"}},
        unencodable: {
            "id": unencodable, "type": "scan",
            "attributes": {"scanType": "nfc", "validationType": "internalValidation",
                           "status": "successful", "scannedAt": "0001-01-01T00:00:00+14:00"},
            "relationships": {"pass": {"data": None},
                              "reader": {"data": {"id": "gate-9", "type": "reader"}}},
        },
    }  # fmt: skip
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for scan_id, payload in payloads.items():
        producer.produce(
            topic, json.dumps(payload).encode(), b"gate-9",
            headers=[("dlq-reason", "late_scan"), ("dlq-detail", "planted by the test"),
                     ("source-id", source), ("source-url", "test:planted"),
                     ("scan-id", scan_id)],
        )  # fmt: skip
    assert producer.flush(30) == 0
    return {"invalid_scan": undecodable, "encode_error": unencodable}


class _Watcher:
    """Counts records with a repaired-by header as their transactions commit."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": f"watch-{uuid.uuid4()}",
            "isolation.level": "read_committed", "enable.auto.commit": False,
        })  # fmt: skip
        parts = self._consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self._consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in parts])
        self.seen = 0

    def replayed(self) -> int:
        for msg in self._consumer.consume(500, timeout=0.1):
            if msg.error() is None and "repaired-by" in dict(msg.headers() or []):
                self.seen += 1
        return self.seen

    def close(self) -> None:
        self._consumer.close()


@pytest.mark.timeout(600)
def test_replay_publishes_what_now_passes_exactly_once_beside_the_live_bridge(
    kafka_bootstrap: str,
) -> None:
    faults = Faults(late_rate=0.08, late_s=LATE_S, bad_id_rate=0.05)
    faults.rng.seed(25)
    topics = Topics.fresh()
    with SimulatorServer(SimulatorConfig(world=WorldConfig(seed=25)), faults) as sim:
        passentry: dict[str, Any] = {
            "lookback_s": LOOKBACK_S, "late_sweep_s": LATE_SWEEP_S, "sweep_interval_s": 0.5,
            "request_budget": 5,
        }  # fmt: skip
        config = bridge_config(
            sim.url, sim.token, kafka_bootstrap, scans_topic=topics.scans, dlq_topic=topics.dlq,
            passentry=passentry,
            bridge={"state_topic": topics.state, "source_id": topics.source},
        )  # fmt: skip
        group = config.bridge.group_id
        since_ms = int(time.time() * 1000) // 1000 * 1000 - 1000
        traffic = Traffic(sim, rate=TRAFFIC_RATE)
        with traffic:
            # 1. Dead letters of both kinds, from the live bridge with a lookback too short.
            with RunningBridge(config, RunOptions(since_ms=since_ms, serve_http=False)) as live:
                dlq = "passentry_bridge_dlq_records_total"
                wait_for(
                    lambda: sample(live.service.metrics, dlq, reason="late_scan") >= 8
                    and sample(live.service.metrics, dlq, reason="invalid_id") >= 3,
                    120, "late_scan and invalid_id dead letters",
                )  # fmt: skip
            assert live.exit_code == 0
            dead = drain(kafka_bootstrap, topics.dlq, idle_s=1.5)
            reasons = {r.headers["scan-id"].decode(): r.headers["dlq-reason"].decode()
                       for r in dead}  # fmt: skip
            late = sorted(i for i, reason in reasons.items() if reason == "late_scan")
            invalid = sorted(i for i, reason in reasons.items() if reason == "invalid_id")
            assert set(reasons.values()) == {"late_scan", "invalid_id"}
            planted = _plant(kafka_bootstrap, topics.dlq, topics.source, since_ms - 60_000)

            # 2. The configuration change: a lookback above the delay; the bridge restarts.
            fixed = bridge_config(
                sim.url, sim.token, kafka_bootstrap, scans_topic=topics.scans,
                dlq_topic=topics.dlq, passentry={**passentry, "lookback_s": FIXED_LOOKBACK_S},
                bridge={"state_topic": topics.state, "source_id": topics.source,
                        "group_id": group},
            )  # fmt: skip
            env = bridge_env(
                sim.url, kafka_bootstrap, topics, BRIDGE_GROUP_ID=group,
                PASSENTRY_LOOKBACK_S=str(FIXED_LOOKBACK_S),
                PASSENTRY_LATE_SWEEP_S=str(LATE_SWEEP_S),
            )  # fmt: skip
            with RunningBridge(fixed, RunOptions(serve_http=False)) as live:
                # Behind the live horizon: every dead letter made before the change.
                lag_s = FIXED_LOOKBACK_S + LATE_SWEEP_S + MARGIN_S + 2
                newest = max(_created(i) for i in late) / 1000
                watermark = "passentry_bridge_watermark_timestamp_seconds"
                wait_for(
                    lambda: sample(live.service.metrics, watermark, source_id=topics.source)
                    > newest + lag_s,
                    120, "the live horizon to pass the dead letters",
                )  # fmt: skip

                listed = _cli(env, "dlq", "list", "--limit", "0")
                assert listed["counts"]["late_scan"]["scans"] == len(late) + len(planted)
                assert listed["counts"]["invalid_id"]["scans"] >= len(invalid)
                shown = _cli(env, "dlq", "show", late[0])
                assert shown["reason"] == shown["firstReason"] == "late_scan"
                assert shown["payload"]["id"] == late[0]
                dry = _cli(env, "dlq", "replay", "--dry-run", "--live-margin", f"{MARGIN_S}s")
                assert dry["totals"]["published"] == len(late)
                assert dry["totals"]["new_reason"] == len(planted)
                assert dry["byReason"]["invalid_id"]["still_failing"] >= len(invalid)
                assert dry["deadLettersWritten"] == 0

                # 3. A replay killed after its first transaction (2 scans), a second held open.
                margin = ["--live-margin", f"{MARGIN_S}s", "--budget", "9"]
                watcher = _Watcher(kafka_bootstrap, topics.scans)
                killed = subprocess.Popen(
                    [BRIDGE, "dlq", "replay", "--batch", "2", *margin],
                    env={**env, "BRIDGE_DEBUG_TXN_HOLD_S": "3"},
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                try:
                    wait_for(lambda: watcher.replayed() >= 2, 120,
                             "the killed replay's first transaction")  # fmt: skip
                finally:
                    killed.send_signal(signal.SIGKILL)
                    killed.wait(10)
                    watcher.close()
                first_run = _replayed(kafka_bootstrap, topics.scans)
                assert 2 <= len(first_run) < len(late)
                assert set(first_run) <= set(late)

                # 4. audit --repair over the first half of the late scans meanwhile: it
                # publishes the late_scan dead letters there that are still unpublished.
                bound = _created(late[len(late) // 2]) + 1
                half = [i for i in late if _created(i) < bound]
                audit = subprocess.run(
                    [BRIDGE, "audit", "--json", "--repair", "--since", _iso(since_ms),
                     "--until", _iso(bound), "--bucket", "4s", *margin],
                    env=env, capture_output=True, text=True, timeout=240, check=False,
                )  # fmt: skip
                assert audit.returncode in (0, 4), audit.stderr[-3000:]
                by_audit = len(set(half) - set(first_run))
                assert json.loads(audit.stdout)["totals"]["repaired"] == by_audit

                # 5. The replay again: only what neither published; then once more: nothing.
                again = _cli(env, "dlq", "replay", *margin)
                assert again["published"] == len(late) - len(first_run) - by_audit
                assert again["totals"]["already_published"] == len(first_run) + by_audit
                assert again["totals"]["still_failing"] >= len(invalid)
                # The killed run's first transaction carried the new reasons already.
                assert again["deadLettersWritten"] == 0
                assert again["totals"]["new_reason"] == 0
                last = _cli(env, "dlq", "replay", *margin)
                assert last["published"] == last["deadLettersWritten"] == 0
                assert last["totals"]["already_published"] == len(late)
                for reason, scan_id in planted.items():
                    shown = _cli(env, "dlq", "show", scan_id)
                    assert (shown["firstReason"], shown["reason"]) == ("late_scan", reason)
                    assert shown["firstError"] == "planted by the test"
                    assert [h["writtenBy"] is not None for h in shown["history"]] == [False, True]
            assert live.exit_code == 0

        # 6. read_committed: each scan at most once, each replayable one exactly once.
        records = drain(kafka_bootstrap, topics.scans, idle_s=2)
        counts = Counter(r.headers["scan-id"].decode() for r in records)
        assert [i for i, n in counts.items() if n > 1] == []
        assert all(counts[i] == 1 for i in late)
        assert not set(invalid) & set(counts)
        assert not set(planted.values()) & set(counts)
        assert sorted(_replayed(kafka_bootstrap, topics.scans)) == late
        # A replay wrote one dead letter for each reason that changed, and no other.
        dead_after = drain(kafka_bootstrap, topics.dlq, idle_s=1.5)
        rewritten = {r.headers["scan-id"].decode(): r.headers["dlq-reason"].decode()
                     for r in dead_after if "repaired-by" in r.headers}  # fmt: skip
        assert len([r for r in dead_after if "repaired-by" in r.headers]) == len(planted)
        assert rewritten == {scan_id: reason for reason, scan_id in planted.items()}


def _replayed(bootstrap: str, topic: str) -> list[str]:
    records = drain(bootstrap, topic, idle_s=1.5)
    return [r.headers["scan-id"].decode() for r in records if "repaired-by" in r.headers]
