"""Failover and many sources per deployment, on Kafka's consumer-group protocol: replicas
share six sources, owners are killed, stopped, frozen and scaled away while traffic flows,
and every scan of every source is on the topic exactly once, in id order per partition."""

from __future__ import annotations

import json
import random
import re
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from passentry_simulator.app import SimulatorConfig
from passentry_simulator.server import SimulatorServer
from passentry_simulator.store import WorldConfig
from tests.integration.eos_harness import (
    BridgeProcess,
    LocalBroker,
    Topics,
    Traffic,
    bridge_env,
    free_port,
    pause_for_fault,
)
from tests.integration.harness import Record, drain, read_to_now, wait_for

SOURCES = 6
_ACTIVE = re.compile(r'^passentry_bridge_source_active\{source_id="([^"]+)"\} 1\.0$', re.M)


@dataclass
class Deployment:
    """Replicas of one bridge deployment: the same config, each its own metrics port."""

    env: dict[str, str]
    config: Path
    log_dir: Path
    sources: list[str]
    replicas: dict[str, tuple[BridgeProcess, int]]

    def start(self, name: str) -> BridgeProcess:
        port = free_port()
        env = {**self.env, "BRIDGE_HTTP_PORT": str(port)}
        process = BridgeProcess(env, self.log_dir, name).start(
            "2000-01-01T00:00:00Z", "--config", str(self.config)
        )
        self.replicas[name] = (process, port)
        return process

    def owned(self, name: str) -> set[str]:
        process, port = self.replicas[name]
        if not process.running():
            return set()
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return set()
        return set(_ACTIVE.findall(text))

    def owners(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = defaultdict(list)
        for name in self.replicas:
            for source in self.owned(name):
                found[source].append(name)
        return found

    def all_owned_once(self) -> bool:
        owners = self.owners()
        return all(len(owners.get(s, [])) == 1 for s in self.sources)

    def spread(self) -> bool:
        """Every source owned once, and every running replica owns some."""
        running = [n for n, (p, _) in self.replicas.items() if p.running()]
        return self.all_owned_once() and all(self.owned(n) for n in running)

    def warnings(self) -> str:
        """Each replica's warnings and errors, for a failure's message."""
        out = []
        for name, (process, _) in self.replicas.items():
            lines = [
                line for line in process.log_text().splitlines()
                if '"level": "warning"' in line or '"level": "error"' in line
            ]  # fmt: skip
            out.append(f"--- {name}: {len(lines)} warnings and errors, the last 40:")
            out.extend(line[:400] for line in lines[-40:])
        return "\n".join(out)

    def stop_all(self) -> None:
        for process, _ in self.replicas.values():
            if process.running():
                process.send(signal.SIGTERM)
        for process, _ in self.replicas.values():
            if process.proc is not None:
                process.wait(30)


def deployment(
    sim: SimulatorServer, bootstrap: str, tmp_path: Path, topics: Topics, **extra: str
) -> Deployment:
    readers = [r.id for r in sim.store.world.readers][:SOURCES]
    sources = [f"{topics.source}-{n}" for n in range(SOURCES)]
    config = tmp_path / "bridge.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "sources": [
                    {"id": source, "filters": {"reader_id": reader}}
                    for source, reader in zip(sources, readers, strict=True)
                ]
            }
        )
    )
    env = bridge_env(
        sim.url,
        bootstrap,
        topics,
        BRIDGE_GROUP_ID=f"{topics.source}-group",
        BRIDGE_COORDINATION_TOPIC=f"{topics.source}-coordination",
        BRIDGE_GROUP_SESSION_TIMEOUT_MS="6000",
        **extra,
    )
    del env["BRIDGE_SOURCE_ID"]  # the sources come from the file
    return Deployment(env, config, tmp_path, sources, {})


def timed_takeover(
    record_property: Callable[[str, object], None], what: str, condition: Callable[[], bool],
    timeout_s: float,
) -> None:  # fmt: skip
    """Wait for a takeover, and record how long it took (``scripts/soak`` reports the
    slowest of its runs from the junit XML)."""
    started = time.monotonic()
    wait_for(condition, timeout_s, what)
    record_property(f"takeover_s {what}", round(time.monotonic() - started, 2))


def committed_sources(bootstrap: str, topics: Topics) -> set[str]:
    """Sources with a checkpoint on the state topic: each has committed a transaction."""
    return set(checkpoints_by_source(bootstrap, topics))


def checkpoints_by_source(bootstrap: str, topics: Topics) -> Counter[str]:
    """Checkpoints committed so far by each source: one a transaction."""
    return Counter((r.key or b"").decode() for r in read_to_now(bootstrap, topics.state))


def simulator(seed: int) -> SimulatorServer:
    world = WorldConfig(readers=SOURCES, passes=120, seed=seed, backlog=300, backlog_span_s=600)
    return SimulatorServer(SimulatorConfig(world=world, rate_limit=None))


def verify_every_source_exactly_once(
    bootstrap: str, topics: Topics, sim: SimulatorServer, dep: Deployment
) -> None:
    reader_of = {s: r.id for s, r in zip(dep.sources, sim.store.world.readers, strict=False)}
    created = sim.store.all_scans()
    expected = {
        (source, scan.id)
        for source, reader in reader_of.items()
        for scan in created
        if scan.spec.reader.id == reader
    }

    def key(r: Record) -> tuple[str, str]:
        return r.headers["source-id"].decode(), r.headers["scan-id"].decode()

    seen: set[tuple[str, str]] = set()
    counted = [0]

    def all_there(rs: list[Record]) -> bool:
        seen.update(key(r) for r in rs[counted[0] :])
        counted[0] = len(rs)
        return seen >= expected

    try:
        drain(bootstrap, topics.scans, timeout_s=120, until=all_there)
    except AssertionError as exc:
        missing = Counter(source for source, _ in expected - seen)
        letters = drain(bootstrap, topics.dlq, idle_s=1, timeout_s=20)
        explained = (
            f"{exc}\nmissing by source: {dict(missing)}; {len(letters)} dead letters"
            f"\n{dep.warnings()}"
        )
        raise AssertionError(explained) from None
    records = drain(bootstrap, topics.scans, idle_s=3)
    keys = [key(r) for r in records]
    twice = [k for k, n in Counter(keys).items() if n > 1]
    assert not twice, f"published twice: {twice[:3]}"
    assert set(keys) == expected
    in_partition: dict[tuple[int, str], list[str]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        in_partition[(r.partition, r.headers["source-id"].decode())].append(
            r.headers["scan-id"].decode()
        )
    for where, ids in in_partition.items():
        assert ids == sorted(ids), f"{where}: not in id order"


def test_owners_killed_and_stopped_at_random_lose_and_double_nothing(
    kafka_bootstrap: str, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    rng = random.Random(909)
    topics = Topics.fresh()
    with simulator(909) as sim:
        dep = deployment(sim, kafka_bootstrap, tmp_path, topics)
        for n in range(3):
            dep.start(f"replica-{n}")
        try:
            with Traffic(sim, rate=30):
                wait_for(dep.all_owned_once, 90, "every source to have one owner")
                for round_ in range(6):
                    name = rng.choice([n for n in dep.replicas if dep.owned(n)])
                    process, _ = dep.replicas[name]
                    how = rng.choice([signal.SIGKILL, signal.SIGTERM])
                    process.send(how)
                    expected = 0 if how == signal.SIGTERM else -signal.SIGKILL
                    assert process.wait(30) == expected, process.log_text()[-2000:]
                    # The others take its sources over; then it comes back, as a pod would.
                    timed_takeover(
                        record_property, f"round {round_} ({signal.Signals(how).name})",
                        dep.all_owned_once, 60,
                    )  # fmt: skip
                    dep.start(f"{name}-r{round_}")
                    del dep.replicas[name]
                wait_for(dep.all_owned_once, 60, "every source owned once at the end")
            verify_every_source_exactly_once(kafka_bootstrap, topics, sim, dep)
        finally:
            dep.stop_all()


def test_a_frozen_owner_is_fenced_and_does_not_write(
    kafka_bootstrap: str, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    topics = Topics.fresh()
    with simulator(919) as sim:
        # Transactions held open a while: the freeze lands inside one.
        dep = deployment(sim, kafka_bootstrap, tmp_path, topics, BRIDGE_DEBUG_TXN_HOLD_S="0.2")
        frozen = dep.start("frozen")
        wait_for(lambda: len(dep.owned("frozen")) == SOURCES, 90, "the first replica to own all")
        dep.start("survivor")
        try:
            with Traffic(sim, rate=30):
                wait_for(dep.spread, 60, "the sources spread over both")
                held = dep.owned("frozen")
                assert 0 < len(held) < SOURCES
                # Freeze it while it is at work: it has committed for its sources, and has
                # more in hand.
                wait_for(
                    lambda: held <= committed_sources(kafka_bootstrap, topics),
                    60,
                    "the frozen replica's commits",
                )
                frozen.send(signal.SIGSTOP)
                # Past the 6 s session timeout the group drops it: the survivor takes over,
                # and its init_transactions fences the frozen producers.
                timed_takeover(
                    record_property, "from a frozen owner",
                    lambda: len(dep.owned("survivor")) == SOURCES, 60,
                )  # fmt: skip
                frozen.send(signal.SIGCONT)
                wait_for(
                    lambda: "lost" in frozen.log_text() or "fenced" in frozen.log_text(),
                    60,
                    "the frozen replica to learn it was dropped",
                )
                wait_for(dep.all_owned_once, 60, "one owner per source after the thaw")
            verify_every_source_exactly_once(kafka_bootstrap, topics, sim, dep)
        finally:
            dep.stop_all()


def test_scale_one_three_one_with_a_broker_restart(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    topics = Topics.fresh()
    broker = LocalBroker(tmp_path / "kafka")
    bootstrap = broker.start()
    try:
        with simulator(929) as sim:
            dep = deployment(sim, bootstrap, tmp_path, topics)
            dep.start("replica-0")
            try:
                with Traffic(sim, rate=30):
                    wait_for(lambda: len(dep.owned("replica-0")) == SOURCES, 90, "one owns all")
                    dep.start("replica-1")
                    dep.start("replica-2")
                    wait_for(dep.spread, 90, "the sources spread over three replicas")
                    broker.signal(signal.SIGKILL)
                    broker.restart()
                    timed_takeover(
                        record_property, "after a broker restart", dep.all_owned_once, 120
                    )
                    for name in ("replica-1", "replica-2"):
                        process, _ = dep.replicas[name]
                        process.send(signal.SIGTERM)
                        assert process.wait(30) == 0
                    timed_takeover(
                        record_property, "scaled back to one",
                        lambda: len(dep.owned("replica-0")) == SOURCES, 60,
                    )  # fmt: skip
                verify_every_source_exactly_once(bootstrap, topics, sim, dep)
            finally:
                dep.stop_all()
    finally:
        broker.stop()


def test_a_broker_restart_costs_a_source_at_most_one_failed_commit(tmp_path: Path) -> None:
    """Records in flight when the broker dies time out and fail the commit in hand; the
    source goes on with a new producer. On the same producer, the next transaction failed
    again, out of sequence, one more delivery timeout later."""
    topics = Topics.fresh()
    broker = LocalBroker(tmp_path / "kafka")
    bootstrap = broker.start()
    try:
        with simulator(939) as sim:
            dep = deployment(
                sim, bootstrap, tmp_path, topics,
                KAFKA_MESSAGE_TIMEOUT_MS="8000", KAFKA_TRANSACTION_TIMEOUT_MS="10000",
            )  # fmt: skip
            dep.env["BRIDGE_GROUP_ID"] = ""  # one process runs every source
            bridge = dep.start("bridge")
            try:
                with Traffic(sim, rate=30):
                    wait_for(
                        lambda: committed_sources(bootstrap, topics) >= set(dep.sources), 90,
                        "every source to commit",
                    )  # fmt: skip
                    broker.signal(signal.SIGKILL)
                    pause_for_fault(1.0)
                    broker.restart()
                    before = checkpoints_by_source(bootstrap, topics)
                    wait_for(
                        lambda: all(
                            n >= before[s] + 2
                            for s, n in checkpoints_by_source(bootstrap, topics).items()
                        ),
                        120,
                        "every source to commit twice after the restart",
                    )  # fmt: skip
                verify_every_source_exactly_once(bootstrap, topics, sim, dep)
            finally:
                dep.stop_all()
            failed = Counter(
                line["source_id"] for line in map(json.loads, bridge.log_text().splitlines())
                if line["msg"].startswith("poll cycle failed")
                and line["error"].startswith("commit_transaction")
            )  # fmt: skip
            assert failed, "no commit failed: the restart hit no transaction"
            assert max(failed.values()) == 1, f"failed commits by source: {dict(failed)}"
    finally:
        broker.stop()


pytestmark = pytest.mark.timeout(600)
