"""Exactly once for every writer of a source, on the real broker: backfills beside a live
bridge (overlapping, older and future-reaching ranges, killed mid-way and run again), a
first import then a fresh live start, an audit that finds duplicates a raw producer planted,
and commands that refuse to fence a live bridge."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Producer

from passentry_simulator.app import SimulatorConfig
from passentry_simulator.server import SimulatorServer
from passentry_simulator.store import WorldConfig
from passentry_simulator.webhooks import WebhookConfig
from tests.integration.eos_harness import BridgeProcess, Topics, Traffic, bridge_env
from tests.integration.harness import Record, drain, wait_for
from tests.support import free_port

BRIDGE = str(Path(sys.executable).with_name("passentry-bridge"))
SECRET = "whsec-one-writer-0123456789abcdef0123"
HOUR_MS = 3_600_000


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def _grouped(env: dict[str, str], topics: Topics) -> dict[str, str]:
    return {
        **env,
        "BRIDGE_GROUP_ID": f"{topics.source}-group",
        "BRIDGE_COORDINATION_TOPIC": f"{topics.source}-coordination",
        "BRIDGE_GROUP_SESSION_TIMEOUT_MS": "6000",
    }


def _command(
    env: dict[str, str], *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BRIDGE, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _backfill(env: dict[str, str], since_ms: int, until_ms: int, *extra: str) -> str:
    done = _command(env, "backfill", "--since", _iso(since_ms), "--until", _iso(until_ms), *extra)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


def _published(stderr: str) -> int:
    (line,) = [ln for ln in stderr.splitlines() if "scans published" in ln]
    return int(line.split("backfill: ")[1].split()[0])


def _kill_mid_way(env: dict[str, str], topics: Topics, since_ms: int, until_ms: int) -> None:
    """A backfill killed once its first transaction committed, inside a later one (each is
    held open a second: the run takes half a minute or more)."""
    slow = {**env, "BRIDGE_DEBUG_TXN_HOLD_S": "1.0"}
    proc = subprocess.Popen(
        [BRIDGE, "backfill", "--since", _iso(since_ms), "--until", _iso(until_ms),
         "--batch", "40"],
        env=slow, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for(
            lambda: any(
                (r.key or b"") == f"{topics.source}.repair".encode()
                for r in drain(env["KAFKA_BOOTSTRAP_SERVERS"], topics.state, idle_s=0.3)
            ),
            120,
            "the backfill's first transaction",
        )
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        assert proc.stderr is not None
        proc.stderr.close()


def _once_each(bootstrap: str, topic: str, expected: set[str]) -> list[Record]:
    """Every expected scan id on the topic (read_committed), and each exactly once."""
    drain(bootstrap, topic, timeout_s=180,
          until=lambda rs: {r.headers["scan-id"].decode() for r in rs} >= expected)  # fmt: skip
    records = drain(bootstrap, topic, idle_s=3)
    counts = Counter(r.headers["scan-id"].decode() for r in records)
    twice = sorted(i for i, n in counts.items() if n > 1)
    assert not twice, f"{len(twice)} scans published twice, e.g. {twice[:3]}"
    assert set(counts) == expected
    return records


def test_backfills_beside_a_live_bridge_double_nothing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    anchor = int(time.time() * 1000)
    topics = Topics.fresh()
    port = free_port()
    hooks = WebhookConfig(
        url=f"http://127.0.0.1:{port}/webhooks/passentry/{topics.source}", secret=SECRET,
        retry_base_s=0.2, retry_cap_s=2.0, max_attempts=30,
    )  # fmt: skip
    world = WorldConfig(readers=8, passes=100, seed=2020, backlog=3000,
                        backlog_span_s=2 * 3600, anchor_ms=anchor)  # fmt: skip
    with SimulatorServer(SimulatorConfig(world=world, rate_limit=None, webhooks=hooks)) as sim:
        env = _grouped(
            bridge_env(
                sim.url, kafka_bootstrap, topics, PASSENTRY_REQUEST_BUDGET="50",
                PASSENTRY_WEBHOOK_SECRET=SECRET, BRIDGE_WEBHOOK_PORT=str(port),
                BRIDGE_WEBHOOK_TOPIC=f"{topics.source}-inbox", BRIDGE_HTTP_HOST="127.0.0.1",
                PASSENTRY_POLL_INTERVAL_BACKSTOP_S="2", PASSENTRY_WEBHOOK_SETTLE_S="0.5",
            ),
            topics,
        )  # fmt: skip
        # The live bridge starts an hour back: the older hour of the backlog is history it
        # never reads, for the backfills to bring.
        live = BridgeProcess(env, tmp_path, "live").start(_iso(anchor - HOUR_MS))
        with Traffic(sim, rate=20):
            live.wait_caught_up(180)
            assert live.metric("passentry_bridge_source_active", source_id=topics.source) == 1

            # Overlapping what the live bridge published: nothing is missing there, and the
            # range is cut at its horizon.
            out = _backfill(env, anchor - HOUR_MS, int(time.time() * 1000))
            assert "range cut at the live horizon" in out, out
            assert "written behind the live bridge" in out, out
            assert _published(out) == 0, out
            assert "after they are published" in out, out

            # Older: the hour the live bridge never read, killed mid-way and run again.
            older = {s.id for s in sim.store.all_scans()
                     if anchor - 2 * HOUR_MS <= (s.created_ms or 0) < anchor - HOUR_MS}  # fmt: skip
            _kill_mid_way(env, topics, anchor - 2 * HOUR_MS, anchor - HOUR_MS)
            out = _backfill(env, anchor - 2 * HOUR_MS, anchor - HOUR_MS)
            first_run = len(older) - _published(out)
            assert 0 < first_run < len(older), out

            # Reaching into the future: cut at the horizon; nothing left to publish.
            out = _backfill(env, anchor - 2 * HOUR_MS, int(time.time() * 1000) + HOUR_MS)
            assert "range cut at the live horizon" in out, out
            assert _published(out) == 0, out

            # The live bridge kept publishing throughout, as the one owner.
            before = live.metric("passentry_bridge_scans_published_total") or 0
            wait_for(lambda: (live.metric("passentry_bridge_scans_published_total") or 0)
                     > before + 20, 60, "live traffic after the backfills")  # fmt: skip
        expected = {s.id for s in sim.store.all_scans()}
        records = _once_each(kafka_bootstrap, topics.scans, expected)
        assert "fenced" not in live.log_text()
        backfilled = [r for r in records if "repaired-by" in r.headers]
        assert {r.headers["scan-id"].decode() for r in backfilled} == older
        assert all(r.headers["source-id"] == topics.source.encode() for r in backfilled)
        assert all(b"backfill" in r.headers["repaired-by"] for r in backfilled)
        print(
            f"backfill over live: {len(expected)} scans in PassEntry, {len(records)} records"
            f" on the topic, {len(backfilled)} by backfill ({first_run} in the killed run),"
            f" {len(records) - len(backfilled)} by the live bridge"
        )
        live.send(signal.SIGTERM)
        assert live.wait(30) == 0


def test_a_first_import_then_a_fresh_live_start_publish_each_scan_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    anchor = int(time.time() * 1000)
    topics = Topics.fresh()
    world = WorldConfig(readers=6, passes=80, seed=2121, backlog=1200, backlog_span_s=3600,
                        anchor_ms=anchor)  # fmt: skip
    with SimulatorServer(SimulatorConfig(world=world, rate_limit=None)) as sim:
        env = _grouped(
            bridge_env(sim.url, kafka_bootstrap, topics, PASSENTRY_REQUEST_BUDGET="50"), topics
        )
        # No member runs the source and it has no checkpoint: the whole range, as the source.
        _kill_mid_way(env, topics, anchor - HOUR_MS, anchor + 1)
        out = _backfill(env, anchor - HOUR_MS, anchor + 1)
        assert "written as the source (no live member owns it)" in out, out
        assert "range cut" not in out, out
        assert 0 < _published(out) < 1200, out
        # A live bridge's first start, ten minutes into what was imported: what the import
        # published there is read back, not published again.
        live = BridgeProcess(env, tmp_path, "live").start(_iso(anchor - 600_000))
        with Traffic(sim, rate=20):
            live.wait_caught_up(120)
        expected = {s.id for s in sim.store.all_scans()}
        _once_each(kafka_bootstrap, topics.scans, expected)
        assert '"published_already"' in live.log_text()
        live.send(signal.SIGTERM)
        assert live.wait(30) == 0


def test_commands_refuse_to_fence_a_live_bridge_and_audit_finds_duplicates(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    anchor = int(time.time() * 1000)
    topics = Topics.fresh()
    world = WorldConfig(readers=6, passes=80, seed=2222, backlog=300, backlog_span_s=600,
                        anchor_ms=anchor)  # fmt: skip
    with SimulatorServer(SimulatorConfig(world=world, rate_limit=None)) as sim:
        env = _grouped(bridge_env(sim.url, kafka_bootstrap, topics), topics)
        live = BridgeProcess(env, tmp_path, "live").start(_iso(anchor - 700_000))
        with Traffic(sim, rate=10):
            live.wait_caught_up(120)
            committed = live.metric("passentry_bridge_transactions_total", outcome="committed")
            # A second writer is one command away, even with a wrong token: refused.
            wrong = {**env, "PASSENTRY_API_TOKEN": "not-the-token"}
            done = _command(wrong, "run", "--once", timeout=60)
            assert done.returncode == 3, done.stderr
            line = done.stderr.strip().splitlines()[-1]
            assert line.startswith(f"passentry-bridge: source {topics.source} is owned by a live")
            assert "passentry-bridge@" in line
            assert "--force" in line
            done = _command(env, "state", "reset", "--to", "now", "--yes", timeout=60)
            assert done.returncode == 3, done.stderr
            done = _command(env, "check", timeout=120)
            owner_rows = [r for r in done.stdout.splitlines() if r.split()[1:2] == ["owner"]]
            assert owner_rows, done.stdout
            assert "passentry-bridge@" in owner_rows[0], done.stdout
            # ... and the live bridge carries on, unfenced.
            wait_for(
                lambda: (live.metric("passentry_bridge_transactions_total", outcome="committed")
                         or 0) > (committed or 0) + 3, 60, "more live commits",
            )  # fmt: skip
        expected = {s.id for s in sim.store.all_scans()}
        records = _once_each(kafka_bootstrap, topics.scans, expected)
        assert "fenced" not in live.log_text()
        live.send(signal.SIGTERM)
        assert live.wait(30) == 0

        # A raw producer publishes three scans a second time (as a buggy writer would).
        old = sorted({r.headers["scan-id"].decode() for r in records
                      if _created(r.headers["scan-id"].decode()) < anchor - 120_000})  # fmt: skip
        planted = [old[3], old[50], old[100]]
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        for r in records:
            if r.headers["scan-id"].decode() in planted:
                producer.produce(r.topic, r.value, r.key, partition=r.partition,
                                 headers=list(r.headers.items()))  # fmt: skip
        assert producer.flush(30) == 0
        since, until = _iso(anchor - 700_000), _iso(int(time.time() * 1000) - 60_000)
        done = _command(env, "audit", "--since", since, "--until", until, "--bucket", "5m",
                        "--live-margin", "1s", "--json")  # fmt: skip
        assert done.returncode == 5, done.stderr[-2000:]
        report = json.loads(done.stdout)
        found = sorted(i for b in report["buckets"] for i in b["duplicatedIds"])
        assert found == planted
        assert report["totals"]["missing"] == 0
        assert report["totals"]["duplicated"] == 3


def _created(scan_id: str) -> int:
    return int(scan_id[:8] + scan_id[9:13], 16)


pytestmark = pytest.mark.timeout(900)
