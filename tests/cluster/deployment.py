"""A production-shaped deployment on the three-node cluster: two bridge replicas sharing three
sources (one per PassEntry entity) through the consumer group, live traffic, every scan
pushed by webhook (each source's subscription points at one replica or the other) with
polling as the backstop; and a read_committed watcher that notes when each source's records
arrive. For the cluster fault tests (tests/cluster), and meant for a benchmark as well.

Everything here waits on conditions. The watcher's arrival times are what a downstream
consumer sees, so a stall is measured where it hurts: from a source's last record before a
fault to its first after.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from bridge.kafka.producer import transactional_id
from passentry_simulator.app import SimulatorConfig
from passentry_simulator.server import SimulatorServer
from passentry_simulator.store import WorldConfig
from passentry_simulator.webhooks import WebhookConfig
from tests.integration.eos_harness import BridgeProcess, Topics, Traffic, bridge_env
from tests.integration.harness import Record, drain, wait_for
from tests.support import free_port

PARTITIONS = 6
_ACTIVE = re.compile(r'^passentry_bridge_source_active\{source_id="([^"]+)"\} 1\.0$', re.M)


def simulator(seed: int) -> SimulatorServer:
    """Three entities, two readers each, and a backlog to catch up on (live traffic comes
    from the deployment). Webhooks go out one at a time, so those delivered at the first
    attempt reach the inbox in creation order; a failed one is retried every second or two
    for ten minutes."""
    world = WorldConfig(readers=6, passes=120, seed=seed, backlog=150, backlog_span_s=600)
    hooks = WebhookConfig(
        concurrency=1, retry_base_s=0.2, retry_cap_s=2.0, max_attempts=1000, max_age_s=600
    )
    return SimulatorServer(SimulatorConfig(world=world, rate_limit=None, webhooks=hooks))


# How late a record committed just before a fault can still reach the watcher.
IN_FLIGHT_S = 2.0


class Watcher:
    """A read_committed consumer of the scans topic on a thread of its own: the arrival
    time of each record, per source."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.arrivals: dict[str, list[float]] = defaultdict(list)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"watch-{topic}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 50,
            }
        )
        self._consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)]
        )
        self._thread = threading.Thread(target=self._run, name="watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(500, 0.1):
                if msg.error() is None:
                    source = dict(msg.headers() or ()).get("source-id", b"").decode()
                    with self._lock:
                        self.arrivals[source].append(time.time())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()

    def _times(self, source: str) -> list[float]:
        with self._lock:
            return list(self.arrivals.get(source, ()))

    def progressed(self, sources: list[str], after: float) -> bool:
        """Every source has a record that arrived after ``after``."""
        return all(any(t > after for t in self._times(s)) for s in sources)

    def arrived_between(self, start: float, end: float) -> int:
        with self._lock:
            return sum(start < t < end for times in self.arrivals.values() for t in times)

    def stall(self, sources: list[str], start: float, end: float) -> float:
        """The longest a source went without a record around ``[start, end]``: for each
        source the largest gap between consecutive arrivals that reaches into the window
        (from its last record before ``start``), the largest over the sources."""
        worst = 0.0
        for source in sources:
            times = self._times(source)
            gaps = [b - a for a, b in itertools.pairwise(times) if b >= start and a <= end]
            worst = max(worst, *gaps, 0.0)
        return worst

    def first_after(self, sources: list[str], moment: float) -> float:
        """Seconds from ``moment`` until every source had a record again (the last of
        their first records after it)."""
        return max(min(t for t in self._times(s) if t > moment) - moment for s in sources)


@dataclass
class Deployment:
    sim: SimulatorServer
    bootstrap: str
    topics: Topics
    log_dir: Path
    # source id -> its entity
    sources: dict[str, str]
    group: str
    envs: list[dict[str, str]]
    rate: float
    replicas: dict[str, BridgeProcess] = field(default_factory=dict)
    watcher: Watcher | None = None
    traffic: Traffic | None = None

    @property
    def source_ids(self) -> list[str]:
        return list(self.sources)

    @property
    def txn_ids(self) -> list[str]:
        return [transactional_id(s) for s in self.sources]

    def start(self) -> None:
        for n, env in enumerate(self.envs):
            name = f"replica-{n}"
            self.replicas[name] = BridgeProcess(env, self.log_dir, name).start(
                "2000-01-01T00:00:00Z", "--config", str(self.log_dir / "bridge.yaml")
            )
        self.watcher = Watcher(self.bootstrap, self.topics.scans)
        self.traffic = Traffic(self.sim, self.rate).__enter__()

    def stop_traffic(self) -> None:
        """No more scans: what was made is what the check expects."""
        if self.traffic is not None:
            self.traffic.stop()
            self.traffic = None

    def owned(self, name: str) -> set[str]:
        process = self.replicas[name]
        if not process.running():
            return set()
        try:
            text = httpx.get(f"http://127.0.0.1:{process.port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return set()
        return set(_ACTIVE.findall(text))

    def owners(self) -> Counter[str]:
        return Counter(s for name in self.replicas for s in self.owned(name))

    def wait_flowing(self, timeout_s: float = 180) -> None:
        """Every source owned by one replica, and each publishing live scans."""
        wait_for(
            lambda: all(self.owners()[s] == 1 for s in self.sources),
            timeout_s,
            "every source to have one owner",
        )
        self.wait_progress(time.time(), timeout_s)

    def wait_progress(self, after: float, timeout_s: float = 180) -> None:
        """Until every source has published a record that arrived after ``after``."""
        assert self.watcher is not None
        watcher = self.watcher

        def progressed() -> bool:
            for name, process in self.replicas.items():
                if not process.running():
                    raise AssertionError(f"{name} exited:\n{process.log_text()[-3000:]}")
            return watcher.progressed(self.source_ids, after)

        try:
            wait_for(progressed, timeout_s, "every source to publish again")
        except AssertionError as exc:
            silent = [s for s in self.sources if not watcher.progressed([s], after)]
            raise AssertionError(
                f"{exc}: {silent} did not; owners {dict(self.owners())}\n{self.log_text()}"
                f"\n{self.stacks()}"
            ) from None

    def wait_past_fault(self, struck: float, timeout_s: float = 180) -> None:
        """Until every source has published again after a fault struck at ``struck``: a
        record that arrives within ``IN_FLIGHT_S`` of it may have been committed before it
        (the watcher's fetch, a loaded machine), and would end the wait before the stall
        the fault causes has even begun."""
        self.wait_progress(struck + IN_FLIGHT_S, timeout_s)

    def stacks(self) -> str:
        """Where each replica's threads are (py-spy, where it is installed): what a source
        that went silent is waiting for."""
        spy = Path(sys.executable).with_name("py-spy")
        if not spy.exists():
            return ""
        out = []
        for name, process in self.replicas.items():
            if process.proc is None or not process.running():
                continue
            dumped = subprocess.run(
                [str(spy), "dump", "--pid", str(process.proc.pid)],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            out.append(f"--- {name} threads\n{dumped.stdout}{dumped.stderr}")
        return "\n".join(out)

    def stop(self) -> dict[str, int | None]:
        """SIGTERM to every replica still running; each one's exit code (None: it had to
        be killed)."""
        self.stop_traffic()
        if self.watcher is not None:
            self.watcher.close()
            self.watcher = None
        running = [name for name, p in self.replicas.items() if p.running()]
        for name in running:
            self.replicas[name].send(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for name in running:
            process = self.replicas[name]
            codes[name] = None
            with contextlib.suppress(subprocess.TimeoutExpired):
                codes[name] = process.wait(30)
            process.kill()
        return codes

    def deferred(self) -> int:
        """Webhook scans the replicas left to the backstop poll, all reasons."""
        total = 0.0
        for process in self.replicas.values():
            text = httpx.get(f"http://127.0.0.1:{process.port}/metrics", timeout=5).text
            total += sum(
                sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
                if sample.name == "passentry_bridge_webhook_deferred_total"
            )
        return int(total)

    def log_text(self) -> str:
        return "\n".join(
            f"--- {name}\n{process.log_text()[-4000:]}" for name, process in self.replicas.items()
        )


def deploy(
    sim: SimulatorServer,
    bootstrap: str,
    log_dir: Path,
    *,
    rate: float,
    replicas: int = 2,
    **extra: str,
) -> Deployment:
    """Configure (not start) ``replicas`` bridges sharing one source per entity, and live
    traffic at ``rate`` scans a second once they start. Each source's
    webhook subscription points at one replica, in turn: any replica takes any source's
    webhooks and the owner reads them from the inbox."""
    topics = Topics.fresh()
    entities = list(dict.fromkeys(r.entity_id for r in sim.store.world.readers))
    sources = {f"{topics.source}-{n}": entity for n, entity in enumerate(entities)}
    ports = [free_port() for _ in range(replicas)]
    config: list[dict[str, object]] = []
    for n, (source, entity) in enumerate(sources.items()):
        secret = f"whsec-{source}-0123456789abcdef0123456789"
        url = f"http://127.0.0.1:{ports[n % replicas]}/webhooks/passentry/{source}"
        sim.sim.subscriptions.add(url, secret=secret, entity_id=entity)
        config.append({"id": source, "filters": {"entity": entity}, "webhook_secret": secret})
    (log_dir / "bridge.yaml").write_text(yaml.safe_dump({"sources": config}))
    # The scans topic exists before the bridges, for the watcher; replicated as the
    # cluster's defaults say (RF 3, min.insync.replicas 2), as the bridge would make it.
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topics.scans, PARTITIONS)])[topics.scans].result(60)
    group = f"{topics.source}-group"
    base = bridge_env(
        sim.url,
        bootstrap,
        topics,
        BRIDGE_GROUP_ID=group,
        BRIDGE_COORDINATION_TOPIC=f"{topics.source}-coordination",
        BRIDGE_WEBHOOK_TOPIC=f"{topics.source}-inbox",
        BRIDGE_TOPIC_PARTITIONS=str(PARTITIONS),
        BRIDGE_HTTP_HOST="127.0.0.1",
        # The defaults, as deployed, where they decide how long a fault costs: the poll's
        # pace and backoff, the linger; webhooks' backstop and settle are left unset too.
        PASSENTRY_POLL_INTERVAL_MIN_S="1",
        PASSENTRY_POLL_INTERVAL_MAX_S="30",
        KAFKA_LINGER_MS="20",
        BRIDGE_SHUTDOWN_GRACE_S="10",
        **extra,
    )
    del base["BRIDGE_SOURCE_ID"]  # the sources come from the file
    envs = [{**base, "BRIDGE_WEBHOOK_PORT": str(port)} for port in ports]
    return Deployment(sim, bootstrap, topics, log_dir, sources, group, envs, rate)


def verify_exactly_once_in_order(
    dep: Deployment, deferred: int, timeout_s: float = 240
) -> list[Record]:
    """Every scan of every source on the topic exactly once, read_committed; and in id order
    per partition and source, except where the README's consumer contract allows a scan
    after newer ones: its webhook failed its first attempt (delivered late), or the bridge
    deferred its webhook to the backstop poll (a reader not seen yet by a source just
    started). Which scans were deferred is not visible outside the bridge, only how many
    (``deferred``, from its metrics): there may be no more scans out of order than that."""
    created = dep.sim.store.all_scans()
    reader_entity = {r.id: r.entity_id for r in dep.sim.store.world.readers}
    source_of = {entity: source for source, entity in dep.sources.items()}
    expected = {(source_of[reader_entity[s.spec.reader.id]], s.id) for s in created}

    def key(r: Record) -> tuple[str, str]:
        return r.headers["source-id"].decode(), r.headers["scan-id"].decode()

    drain(
        dep.bootstrap,
        dep.topics.scans,
        timeout_s=timeout_s,
        until=lambda rs: {key(r) for r in rs} >= expected,
    )
    records = drain(dep.bootstrap, dep.topics.scans, idle_s=3)
    keys = [key(r) for r in records]
    twice = [k for k, n in Counter(keys).items() if n > 1]
    assert not twice, f"{len(twice)} scans published twice, e.g. {twice[:3]}"
    missing = expected - set(keys)
    assert not missing, f"{len(missing)} scans never published, e.g. {sorted(missing)[:3]}"
    assert set(keys) == expected, "records of scans the simulator never made"
    late = {
        scan_id
        for outcomes in dep.sim.sim.webhooks.outcomes().values()
        for scan_id in outcomes["retried"]
    }
    highest: dict[tuple[int, str], str] = {}
    unexplained = []
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        source, scan_id = key(r)
        at = (r.partition, source)
        if scan_id < highest.get(at, "") and scan_id not in late:
            unexplained.append(f"partition {r.partition}: {scan_id} after {highest[at]}")
        highest[at] = max(highest.get(at, ""), scan_id)
    assert len(unexplained) <= deferred, (
        f"{len(unexplained)} scans out of order whose webhook came at the first attempt, but"
        f" the bridges deferred only {deferred}: {unexplained[:3]}"
    )
    return records


__all__ = ["Deployment", "Watcher", "deploy", "simulator", "verify_exactly_once_in_order"]
