"""Out-of-process pieces for the exactly-once fault suite: the bridge as a child process,
live traffic into the in-process simulator, a dedicated broker, and the verifier.

The suite waits on conditions: a bridge process is up (its /healthz answers), has
committed, has caught up with live traffic (its watermark), a checkpoint was committed to
the state topic. The only plain sleeps are fault-injection timing, in ``pause_for_fault``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
from confluent_kafka import IsolationLevel, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families

from passentry_simulator.server import SimulatorServer
from scripts.lib.kafka_local import Broker
from tests.integration.harness import Record, drain, partition_ends, wait_for
from tests.support import free_port

BRIDGE = str(Path(sys.executable).with_name("passentry-bridge"))
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Topics:
    scans: str
    dlq: str
    state: str
    source: str

    @classmethod
    def fresh(cls) -> Topics:
        tag = uuid.uuid4().hex[:10]
        return cls(f"eos-{tag}-scans", f"eos-{tag}-dlq", f"eos-{tag}-state", f"eos-{tag}")


# Every bridge process and supervisor started, so that a test failing half way leaves
# nothing running (tests/integration/conftest.py calls stop_everything after each test).
_started: list[BridgeProcess | Supervisor] = []


def stop_everything() -> None:
    """Stop the supervisors first (or they start new bridges), then kill what still runs."""
    started = list(_started)
    _started.clear()
    for item in started:
        if isinstance(item, Supervisor):
            with contextlib.suppress(subprocess.TimeoutExpired):  # killed below
                item.stop()
    for item in started:
        if isinstance(item, BridgeProcess):
            item.kill()


def pause_for_fault(seconds: float) -> None:
    """Fault-injection timing, not a wait for anything: the (seeded, random) moment before
    the next fault strikes, or how long one lasts, such as a broker frozen past the
    transaction timeout. Callers measure it from a real condition where that matters."""
    time.sleep(seconds)


class BridgeProcess:
    """``passentry-bridge run`` as a child process with its own log file and status port."""

    def __init__(self, env: dict[str, str], log_dir: Path, name: str) -> None:
        self.port = int(env.get("BRIDGE_HTTP_PORT", "0")) or free_port()
        self.env = {**env, "BRIDGE_HTTP_PORT": str(self.port)}
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, since: str = "2000-01-01T00:00:00Z", *args: str) -> BridgeProcess:
        _started.append(self)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen(
            [BRIDGE, "run", "--since", since, *args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            start_new_session=True,
        )
        return self

    def send(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float | None) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        finally:
            if self._log is not None and self.proc.poll() is not None:
                self._log.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self._log is not None:
            self._log.close()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metric(self, name: str, **labels: str) -> float | None:
        """The largest sample of ``name`` on the process's /metrics whose labels include
        ``labels`` (over its sources, say), 0 while there is none; None while nothing
        answers on its port."""
        try:
            text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return None
        wanted = labels.items()
        found = [
            float(sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and wanted <= sample.labels.items()
        ]
        return max(found, default=0.0)

    def wait_up(self, timeout_s: float = 60) -> None:
        """Until the process serves its status port: imports done, topics and restore next."""
        self._wait(lambda: self.metric("passentry_bridge_ready") is not None, timeout_s, "up")

    def wait_metric(self, name: str, at_least: float, timeout_s: float, **labels: str) -> None:
        """Until a sample of the process's /metrics reaches ``at_least``."""
        self._wait(
            lambda: (self.metric(name, **labels) or 0) >= at_least,
            timeout_s,
            f"{name}{labels or ''} >= {at_least}",
        )

    def wait_committed(self, n: int = 1, timeout_s: float = 60) -> None:
        """Until this process has committed ``n`` transactions."""
        self.wait_metric("passentry_bridge_transactions_total", n, timeout_s, outcome="committed")

    def wait_caught_up(self, timeout_s: float = 120) -> None:
        """Until this process has published a scan created after the call (a second's margin
        for simulator nodes with fast clocks): it caught up with the live traffic, which
        must keep running meanwhile."""
        since = time.time() + 1.0
        name = "passentry_bridge_watermark_timestamp_seconds"
        self._wait(
            lambda: (self.metric(name) or 0) >= since,
            timeout_s,
            "its watermark to pass the live traffic",
        )

    def _wait(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        def done() -> bool:
            if not self.running():
                code = None if self.proc is None else self.proc.poll()
                raise AssertionError(
                    f"{self.log_path.stem} exited ({code}) before {what}:\n"
                    f"{self.log_text()[-2000:]}"
                )
            return condition()

        wait_for(done, timeout_s, f"{self.log_path.stem}: {what}")


class Supervisor:
    """Restarts the bridge whenever it exits, as an orchestrator would; records exit codes."""

    # The orchestrator's restart back-off (much shorter than Kubernetes' own): part of the
    # scenario, not a wait for anything.
    restart_backoff_s = 1.0

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self._env, self._dir = env, log_dir
        self.exits: list[int] = []
        self._stop = threading.Event()
        self._current: BridgeProcess | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Supervisor:
        _started.append(self)
        self._thread.start()
        return self

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            self._current = BridgeProcess(self._env, self._dir, f"bridge-{n}").start()
            code = self._current.wait(None)  # closes the process's log file too
            if self._stop.is_set():
                return
            self.exits.append(code)
            n += 1
            self._stop.wait(self.restart_backoff_s)

    def stop(self) -> None:
        self._stop.set()
        if self._current is not None and self._current.running():
            self._current.send(signal.SIGTERM)
            self._current.wait(20)
        self._thread.join(30)


def bridge_env(api_url: str, bootstrap: str, topics: Topics, **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PASSENTRY_", "BRIDGE_", "KAFKA_"))
    }
    env.update(
        PASSENTRY_API_URL=api_url,
        PASSENTRY_API_TOKEN="sim-token",
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        BRIDGE_SCANS_TOPIC=topics.scans,
        BRIDGE_DLQ_TOPIC=topics.dlq,
        BRIDGE_STATE_TOPIC=topics.state,
        BRIDGE_SOURCE_ID=topics.source,
        # No consumer group: these scenarios start instances of one source beside each
        # other on purpose, and prove that Kafka's fencing alone keeps it exactly once.
        BRIDGE_GROUP_ID="",
        BRIDGE_HTTP_PORT="0",
        BRIDGE_TOPIC_PARTITIONS="3",
        PASSENTRY_POLL_INTERVAL_MIN_S="0.2",
        PASSENTRY_POLL_INTERVAL_MAX_S="0.5",
        PASSENTRY_LOOKBACK_S="30",
        BRIDGE_SHUTDOWN_GRACE_S="5",
        KAFKA_LINGER_MS="5",
        BRIDGE_LOG_FORMAT="json",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class Traffic:
    """Live scans into the simulator at ``rate`` per second until stopped."""

    def __init__(self, sim: SimulatorServer, rate: float) -> None:
        self._sim, self._rate = sim, rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        started, made = time.monotonic(), 0
        while not self._stop.wait(0.05):
            due = int((time.monotonic() - started) * self._rate) - made
            if due > 0:
                self._sim.store.generate(due)
                made += due


def open_transaction(bootstrap: str, topic: str) -> bool:
    """True while some partition's last stable offset lags its high watermark: a
    transaction is open on it."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    md = admin.list_topics(topic, timeout=10)
    parts = [TopicPartition(topic, p) for p in md.topics[topic].partitions]
    committed = partition_ends(admin, parts, IsolationLevel.READ_COMMITTED)
    uncommitted = partition_ends(admin, parts, IsolationLevel.READ_UNCOMMITTED)
    return any(committed[p] < uncommitted[p] for p in committed)


def committed_checkpoints(bootstrap: str, state_topic: str) -> int | None:
    """Checkpoint records committed to the state topic so far, one per transaction; None
    while the broker does not answer."""
    try:
        return len(drain(bootstrap, state_topic, idle_s=0.5, timeout_s=10))
    except Exception:
        return None


def wait_for_checkpoint(bootstrap: str, state_topic: str, after: int, timeout_s: float) -> int:
    """Until a checkpoint beyond the first ``after`` is committed: some bridge committed a
    transaction. Returns the count seen."""
    seen: list[int] = []

    def committed() -> bool:
        count = committed_checkpoints(bootstrap, state_topic)
        if count is not None and count > after:
            seen.append(count)
        return bool(seen)

    wait_for(committed, timeout_s, f"a checkpoint after the first {after}")
    return seen[0]


def wait_for_next_checkpoint(bootstrap: str, state_topic: str, timeout_s: float) -> int:
    """Until one more checkpoint is committed than the broker shows now (waiting for it
    to answer first, after a restart or a freeze)."""
    counts: list[int] = []

    def answered() -> bool:
        count = committed_checkpoints(bootstrap, state_topic)
        if count is not None:
            counts.append(count)
        return bool(counts)

    wait_for(answered, timeout_s, "the broker to answer")
    return wait_for_checkpoint(bootstrap, state_topic, counts[0], timeout_s)


def verify_exactly_once(
    bootstrap: str,
    topics: Topics,
    sim: SimulatorServer,
    seed: int,
    timeout_s: float = 120,
    *,
    in_order: bool = True,
) -> list[Record]:
    """Every scan the simulator created appears exactly once, in id order per partition;
    every scan with an invalid id is in the DLQ exactly once.

    Id order is checked over the scans that became visible when their id was minted. A
    scan made visible late, or minted by a node whose clock is off, can only be published
    when it shows up, after newer ones: the consumer contract in the README says so. So can
    a scan whose webhook PassEntry delivered after a newer one's (``in_order=False``).
    """
    wait_for(lambda: sim.store.counts()[1] == 0, 60, "late scans to become visible")
    created = sim.store.all_scans()
    good = {s.id for s in created if s.created_ms is not None}
    on_time = {
        s.id for s in created if s.created_ms is not None and s.visible_at_ms == s.created_ms
    }
    bad = {s.id for s in created if s.created_ms is None}
    drain(
        bootstrap,
        topics.scans,
        timeout_s=timeout_s,
        until=lambda rs: len({r.headers["scan-id"] for r in rs}) >= len(good),
    )
    records = drain(bootstrap, topics.scans, idle_s=3)
    ids = [r.headers["scan-id"].decode() for r in records]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    assert not dupes, f"seed {seed}: {len(dupes)} scan ids published twice, e.g. {dupes[:3]}"
    missing = good - set(ids)
    assert not missing, (
        f"seed {seed}: {len(missing)} scans never published, e.g. {sorted(missing)[:3]}"
    )
    assert set(ids) == good, f"seed {seed}: unexpected ids on the topic"
    by_partition: dict[int, list[str]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        scan_id = r.headers["scan-id"].decode()
        if scan_id in on_time:
            by_partition[r.partition].append(scan_id)
    for p, ids_in_partition in by_partition.items():
        if in_order:
            assert ids_in_partition == sorted(ids_in_partition), (
                f"seed {seed}: partition {p} not in id order"
            )
    if bad:
        dead = drain(bootstrap, topics.dlq, idle_s=2)
        dead_ids = [
            r.headers["scan-id"].decode()
            for r in dead
            if r.headers.get("dlq-reason") == b"invalid_id"
        ]
        assert sorted(dead_ids) == sorted(bad), f"seed {seed}: DLQ is not exactly the bad ids"
    assert sum(map(len, by_partition.values())) >= len(on_time)
    return records


class LocalBroker:
    """A broker of this test's own (its own KAFKA_LOCAL_DIR), so killing it disturbs no other
    test: scripts/kafka-local's code, called in-process."""

    def __init__(self, directory: Path) -> None:
        self.broker = Broker({**os.environ, "KAFKA_LOCAL_DIR": str(directory)})
        self.bootstrap = ""

    def start(self) -> str:
        self.bootstrap = self.broker.start()
        return self.bootstrap

    def restart(self) -> None:
        assert self.broker.restart() == self.bootstrap

    def signal(self, sig: int) -> None:
        pid = self.broker.pid()
        assert pid is not None, "the test's broker is not running"
        os.kill(pid, sig)

    def stop(self) -> None:
        self.broker.stop()


__all__ = [
    "BridgeProcess",
    "LocalBroker",
    "Supervisor",
    "Topics",
    "Traffic",
    "bridge_env",
    "committed_checkpoints",
    "open_transaction",
    "pause_for_fault",
    "signal",
    "stop_everything",
    "verify_exactly_once",
    "wait_for_checkpoint",
    "wait_for_next_checkpoint",
]
