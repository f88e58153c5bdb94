"""The audit against the real broker: scans hidden from a running bridge (visible later than
lookback + late sweep) are found exactly; --repair publishes each once, also when a repair is
killed halfway and run again, while the live bridge keeps publishing live traffic; a second
audit is clean; and the result reaches a real Pushgateway."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_END, Consumer, TopicPartition

from bridge.service import RunOptions
from passentry_simulator.app import SimulatorConfig
from passentry_simulator.faults import Faults
from passentry_simulator.server import SimulatorServer
from passentry_simulator.store import WorldConfig
from tests.integration.eos_harness import Topics, Traffic, bridge_env
from tests.integration.harness import RunningBridge, bridge_config, drain, wait_for
from tests.support import free_port, sample

BRIDGE = str(Path(sys.executable).with_name("passentry-bridge"))
LOOKBACK_S, LATE_SWEEP_S, MARGIN_S = 2, 2, 2
# Far beyond lookback + late sweep (+ the sweep's own pace): the live bridge never sees them.
LATE_S = 12
PHASE_S = 10
TRAFFIC_RATE = 20  # live scans per second


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def _audit(env: dict[str, str], *args: str, timeout: float = 180) -> tuple[int, dict]:  # type: ignore[type-arg]
    proc = subprocess.run(
        [BRIDGE, "audit", "--json", "--budget", "3", *args],
        env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    assert proc.returncode in (0, 4), f"audit exited {proc.returncode}\n{proc.stderr[-3000:]}"
    return proc.returncode, json.loads(proc.stdout)


def _ids(report: dict, key: str) -> list[str]:  # type: ignore[type-arg]
    return sorted(i for b in report["buckets"] for i in b[key])


def _repaired(bootstrap: str, topic: str) -> list[str]:
    records = drain(bootstrap, topic, idle_s=1.5)
    return [r.headers["scan-id"].decode() for r in records if "repaired-by" in r.headers]


class _Watcher:
    """A read_committed consumer at the end of a topic, counting repaired records as their
    transactions commit."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": f"watch-{uuid.uuid4()}",
            "isolation.level": "read_committed", "enable.auto.commit": False,
        })  # fmt: skip
        parts = self._consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self._consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in parts])
        self._seen = 0

    def repaired(self) -> int:
        for msg in self._consumer.consume(500, timeout=0.1):
            if msg.error() is None and "repaired-by" in dict(msg.headers() or []):
                self._seen += 1
        return self._seen

    def __enter__(self) -> _Watcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self._consumer.close()


@pytest.fixture
def pushgateway() -> Iterator[str]:
    binary = shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("prometheus-pushgateway is not installed; run scripts/install-deploy-tools")
        pytest.skip("prometheus-pushgateway is not installed (scripts/install-deploy-tools)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            with urllib.request.urlopen(url + "/-/ready", timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    try:
        wait_for(up, 30, "the Pushgateway to answer")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_audit_finds_hidden_scans_and_repair_publishes_each_once(
    kafka_bootstrap: str, pushgateway: str, tmp_path: Path
) -> None:
    faults = Faults(late_rate=0.06, late_s=LATE_S)
    faults.rng.seed(11)
    topics = Topics.fresh()
    sim_config = SimulatorConfig(world=WorldConfig(seed=5))
    with SimulatorServer(sim_config, faults) as sim:
        config = bridge_config(
            sim.url, sim.token, kafka_bootstrap,
            scans_topic=topics.scans, dlq_topic=topics.dlq,
            passentry={"lookback_s": LOOKBACK_S, "late_sweep_s": LATE_SWEEP_S,
                       "sweep_interval_s": 0.5, "request_budget": 5},
            bridge={"state_topic": topics.state, "source_id": topics.source},
        )  # fmt: skip
        started_ms = int(time.time() * 1000)
        since_ms = started_ms // 1000 * 1000
        live = RunningBridge(config, RunOptions(since_ms=since_ms - 1000, serve_http=False))
        traffic = Traffic(sim, rate=TRAFFIC_RATE)
        with live, traffic:
            # Phase 1: some scans become visible only LATE_S after they were created; it
            # lasts PHASE_S of traffic (there is no backlog).
            wait_for(
                lambda: sim.store.counts()[0] >= TRAFFIC_RATE * PHASE_S,
                60,
                f"{PHASE_S} s of traffic",
            )
            faults.late_rate = 0.0
            until_ms = math.ceil(time.time()) * 1000
            hidden = sorted(
                s.id for s in sim.store.all_scans()
                if since_ms <= (s.created_ms or 0) < until_ms and s.visible_at_ms > s.created_ms
            )  # fmt: skip
            assert len(hidden) >= 3, "the late fault should have hidden a few scans"
            wait_for(lambda: sim.store.counts()[1] == 0, 60, "hidden scans to become visible")
            # The repair stays behind the live bridge's horizon: wait until it passed the range.
            horizon_lag_s = LOOKBACK_S + LATE_SWEEP_S + MARGIN_S + 2
            watermark = "passentry_bridge_watermark_timestamp_seconds"
            wait_for(
                lambda: sample(live.service.metrics, watermark, source_id=topics.source)
                > until_ms / 1000 + horizon_lag_s,
                60, "the live bridge's horizon to pass the range",
            )  # fmt: skip
            env = bridge_env(
                sim.url, kafka_bootstrap, topics,
                PASSENTRY_LOOKBACK_S=str(LOOKBACK_S), PASSENTRY_LATE_SWEEP_S=str(LATE_SWEEP_S),
            )  # fmt: skip
            window = ["--since", _iso(since_ms), "--until", _iso(until_ms), "--bucket", "4s"]

            # 1. The audit finds exactly the hidden scans.
            code, first = _audit(env, *window)
            assert code == 4
            assert _ids(first, "missingIds") == hidden
            assert first["totals"]["duplicated"] == first["totals"]["unknown"] == 0
            assert first["totals"]["passentry"] == first["totals"]["kafka"] + len(hidden)

            # 2. A repair killed after its first transaction committed, one more held open.
            margin = ["--live-margin", f"{MARGIN_S}s"]
            held = {**env, "BRIDGE_DEBUG_TXN_HOLD_S": "3"}
            with _Watcher(kafka_bootstrap, topics.scans) as watcher:
                killed = subprocess.Popen(
                    [BRIDGE, "audit", *window, "--repair", "--repair-batch", "2", *margin],
                    env=held, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                try:
                    wait_for(lambda: watcher.repaired() >= 2, 90,
                             "the first repair transaction to commit")  # fmt: skip
                finally:
                    killed.send_signal(signal.SIGKILL)
                    killed.wait(10)
            before_rerun = _repaired(kafka_bootstrap, topics.scans)
            assert 2 <= len(before_rerun) < len(hidden)

            # 3. Run again: it fences the killed run (aborting its open transaction) and
            # publishes only what is still missing, while the live bridge keeps going.
            code, repaired = _audit(env, *window, "--repair", *margin)
            assert code == 0, repaired
            assert repaired["totals"]["repaired"] == len(hidden) - len(before_rerun)
            assert repaired["totals"]["missing"] == 0

            # 4. A second audit is clean, and a second repair adds nothing.
            code, clean = _audit(env, *window, "--pushgateway", pushgateway)
            assert code == 0
            assert clean["totals"]["missing"] == clean["totals"]["duplicated"] == 0
            assert clean["totals"]["unknown"] == 0
            code, again = _audit(env, *window, "--repair", *margin)
            assert code == 0
            assert again["totals"]["repaired"] == 0

            # Every scan the simulator made reaches the main topic: the live bridge's and the
            # repairs' together.
            traffic.stop()
            good = {s.id for s in sim.store.all_scans() if s.created_ms is not None}
            drain(
                kafka_bootstrap,
                topics.scans,
                timeout_s=120,
                until=lambda rs: len({r.headers["scan-id"] for r in rs}) >= len(good),
            )
        assert live.exit_code == 0
        # ... exactly once.
        records = drain(kafka_bootstrap, topics.scans, idle_s=2)
        counts = Counter(r.headers["scan-id"].decode() for r in records)
        assert {i for i, n in counts.items() if n > 1} == set()
        assert set(counts) == good
        assert sorted(_repaired(kafka_bootstrap, topics.scans)) == hidden
        tagged = [r for r in records if "repaired-by" in r.headers]
        assert all(r.headers["source-id"] == topics.source.encode() for r in tagged)
        assert all(
            int(r.headers["scan-created-ms"])
            == int(r.headers["scan-id"][:8] + r.headers["scan-id"][9:13], 16)
            <= r.timestamp_ms
            for r in tagged
        )

    # The clean audit's result on the Pushgateway.
    with urllib.request.urlopen(pushgateway + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    lines = [line for line in text.splitlines() if line.startswith("passentry_bridge_audit_")]
    assert any(
        line.startswith("passentry_bridge_audit_missing_scans{")
        and f'source_id="{topics.source}"' in line and line.endswith(" 0")
        for line in lines
    ), lines  # fmt: skip
    assert any(line.startswith("passentry_bridge_audit_last_success_timestamp_seconds{")
               for line in lines)  # fmt: skip


def test_audit_exits_1_when_passentry_cannot_be_reached(kafka_bootstrap: str) -> None:
    env = bridge_env(
        f"http://127.0.0.1:{free_port()}", kafka_bootstrap, Topics.fresh(),
        PASSENTRY_RETRY_DEADLINE_S="1", PASSENTRY_TIMEOUT_S="1",
    )  # fmt: skip
    proc = subprocess.run(
        [BRIDGE, "audit", "--since", "yesterday", "--until", "today"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "audit could not run" in proc.stderr
