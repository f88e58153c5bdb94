"""``broker_faults``: what a broker fault costs the stream, on the production-shaped cluster.

The three-node cluster of ``scripts/kafka-cluster`` (RF 3, min.insync.replicas 2, the
transaction log too), started in ``.local/bench-cluster`` and stopped at the end if the
bench started it. On it, the deployment of the cluster fault tests (tests/cluster): two
bridge replicas sharing three sources through the consumer group, 30 scans/s of live
traffic pushed by webhooks, polling as the backstop. A read_committed consumer notes when
each source's records arrive. Per fault:

- ``sigkill_txn_coordinator``, ``sigkill_group_coordinator``, ``sigkill_partition_leader``:
  SIGKILL of the node that is the transaction coordinator of a source, the group's
  coordinator, or the leader of most scans partitions. The stall is, for the source that
  waited longest, the gap between its last record before the kill and its first after.
  The node comes back and the cluster is whole again before the next fault.
- ``rolling_restart_step``: each node in turn SIGTERMed (a controlled shutdown) and started
  again, the next only once every partition is in sync again; the stall of each step, as
  above.
- ``below_min_insync_recovery``: two nodes SIGKILLed together, back ten seconds later; the
  time from the moment both are live brokers again (``kafka-cluster start`` returned) until
  every source had a record again. (``..._from_start_s``: from the start command.)

Each is run ``rounds`` times (a rolling restart gives three steps), for each consumer group
protocol: ``classic`` (cooperative-sticky) and ``consumer`` (KIP-848). Each round also notes
what else the struck node was doing (controller, coordinator, leader): a node that is also
the active controller takes a few seconds longer to be declared dead.

A SIGKILL's stall is the brokers' failover followed by the clients' recovery. To tell them
apart, each kill also times ``failover_s``: from the kill until the cluster's metadata (asked
of the live nodes every 0.2 s) no longer lists the node as a live broker nor as the leader of
any partition, the internal topics' included (so no coordinator is left on it); and
``after_failover_s``: from that moment until every source had a record again.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from bench._procs import REPO
from bench._runs import Context
from bench.scenarios import Sizes, say
from scripts.lib.kafka_wire import Metadata, metadata
from tests.cluster.deployment import Deployment, deploy, simulator
from tests.kafka_cluster import NODES, KafkaCluster

__all__ = ["KINDS", "PROTOCOLS", "TARGETS_S", "FailoverWatch", "broker_faults", "markdown"]

RATE = 30.0
OUTAGE_S = 10.0
PROTOCOLS = ("classic", "consumer")
KINDS = (
    "sigkill_txn_coordinator",
    "sigkill_group_coordinator",
    "sigkill_partition_leader",
    "rolling_restart_step",
    "below_min_insync_recovery",
)


def broker_faults(ctx: Context, sizes: Sizes) -> dict[str, Any]:
    rounds = sizes.broker_fault_rounds
    protocols = (ctx.group_protocol,) if ctx.group_protocol else PROTOCOLS
    cluster = KafkaCluster(REPO / ".local" / "bench-cluster")
    say(f"broker_faults: 3-node cluster, {RATE:.0f} scans/s, {rounds} rounds of each fault")
    cluster.up()
    results: dict[str, Any] = {"rate_per_s": RATE, "rounds": rounds}
    try:
        for protocol in protocols:
            results[protocol] = _measure(ctx, cluster, protocol, rounds)
    finally:
        cluster.down()
    return results


def _measure(ctx: Context, cluster: KafkaCluster, protocol: str, rounds: int) -> dict[str, Any]:
    values: dict[str, list[float]] = {kind: [] for kind in KINDS}
    notes: dict[str, list[str]] = {kind: [] for kind in KINDS}
    # SIGKILLs: (brokers' failover, every source again after it), seconds.
    splits: dict[str, list[tuple[float, float]]] = {kind: [] for kind in KINDS[:3]}
    from_start: list[float] = []
    log_dir = ctx.log_dir / f"broker_faults-{protocol}"
    log_dir.mkdir(parents=True, exist_ok=True)
    with simulator(seed=17) as sim:
        dep = deploy(sim, cluster.bootstrap, log_dir, rate=RATE, BRIDGE_GROUP_PROTOCOL=protocol)
        dep.start()
        try:
            dep.wait_flowing()
            for n in range(rounds):
                for kind in KINDS[:3]:
                    stall, split, note = _kill(dep, cluster, kind)
                    values[kind].append(stall)
                    notes[kind].append(note)
                    splits[kind].append(split)
                    say(
                        f"broker_faults {protocol} {kind} {n}: {stall:.2f} s (brokers' failover"
                        f" {split[0]:.2f} s, every source again {split[1]:.2f} s after it; {note})"
                    )
                back, started = _below_min_insync(dep, cluster, NODES[n % 3], NODES[(n + 1) % 3])
                values[KINDS[4]].append(back)
                from_start.append(started)
                say(f"broker_faults {protocol} below min.insync {n}: {back:.2f} s after both up")
            for _ in range(math.ceil(rounds / 3)):  # three steps each
                for node in NODES:
                    stall, note = _rolling_step(dep, cluster, node)
                    values[KINDS[3]].append(stall)
                    notes[KINDS[3]].append(note)
                    say(f"broker_faults {protocol} rolling restart of node {node}: {stall:.2f} s")
        finally:
            dep.stop()
    out: dict[str, Any] = {}
    for kind, found in values.items():
        out[kind] = {
            "median_s": round(statistics.median(found), 2),
            "max_s": round(max(found), 2),
            "values_s": [round(v, 2) for v in found],
            "struck": notes[kind],
        }
    for kind, found_splits in splits.items():
        out[kind]["failover_s"] = [round(f, 2) for f, _ in found_splits]
        out[kind]["after_failover_s"] = [round(a, 2) for _, a in found_splits]
    out[KINDS[4]]["from_start_s"] = [round(v, 2) for v in from_start]
    return out


def _roles_of(dep: Deployment, cluster: KafkaCluster, node: int) -> str:
    roles = cluster.roles(txn_ids=dep.txn_ids, groups=[dep.group], topics=[dep.topics.scans])
    held = roles.of_node(node, dep.txn_ids, dep.group, [dep.topics.scans])
    return f"node {node}: " + (", ".join(held) or "nothing")


def _settled(dep: Deployment, cluster: KafkaCluster) -> None:
    """The cluster whole, and every source publishing twice over since: steady again."""
    cluster.heal()
    dep.wait_progress(time.time())
    dep.wait_progress(time.time())


def _kill(
    dep: Deployment, cluster: KafkaCluster, kind: str
) -> tuple[float, tuple[float, float], str]:
    _settled(dep, cluster)
    roles = cluster.roles(txn_ids=dep.txn_ids, groups=[dep.group], topics=[dep.topics.scans])
    if kind == "sigkill_txn_coordinator":
        node = roles.transaction_coordinators[dep.txn_ids[0]]
    elif kind == "sigkill_group_coordinator":
        node = roles.group_coordinators[dep.group]
    else:
        node = roles.busiest_leader(dep.topics.scans)
    if node is None:
        raise RuntimeError(f"{kind}: no such node now: {roles}")
    note = _roles_of(dep, cluster, node)
    addresses = [a for i, a in zip(NODES, cluster.bootstrap.split(","), strict=True) if i != node]
    watch = FailoverWatch(node, addresses)
    struck = time.time()
    cluster.kill(node)
    watch.start()
    dep.wait_past_fault(struck, timeout_s=180)
    assert dep.watcher is not None
    over = watch.result(timeout_s=180)
    # A source the node served nothing for may have published past the kill already: wait
    # for every source's first record after the failover too.
    dep.wait_progress(over)
    stall = dep.watcher.stall(dep.source_ids, struck, time.time())
    after = dep.watcher.first_after(dep.source_ids, over)
    cluster.start(node)
    return stall, (over - struck, after), note


class FailoverWatch:
    """When the cluster has failed a killed node over: the first moment the metadata of a
    live node lists it neither as a live broker nor as the leader of any partition."""

    def __init__(
        self, node: int, live: list[str], ask: Callable[[str], Metadata] | None = None,
        interval_s: float = 0.2,
    ) -> None:  # fmt: skip
        self._node = node
        self._live = live
        self._ask = ask or (lambda address: metadata(address, None, timeout_s=1.0))
        self._interval_s = interval_s
        self._moment: float | None = None
        self._thread = threading.Thread(target=self._run, name="failover-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while True:
            for address in self._live:
                try:
                    meta = self._ask(address)
                except OSError:
                    continue
                led = any(
                    part.leader == self._node
                    for parts in meta.topics.values()
                    for part in parts.values()
                )
                if self._node not in meta.brokers and not led:
                    self._moment = time.time()
                    return
                break
            time.sleep(self._interval_s)

    def result(self, timeout_s: float) -> float:
        self._thread.join(timeout_s)
        if self._moment is None:
            raise TimeoutError(f"node {self._node} still in the metadata after {timeout_s:.0f}s")
        return self._moment


def _rolling_step(dep: Deployment, cluster: KafkaCluster, node: int) -> tuple[float, str]:
    _settled(dep, cluster)
    note = _roles_of(dep, cluster, node)
    step = time.time()
    cluster.restart(node)
    cluster.wait_healthy()
    dep.wait_progress(time.time(), timeout_s=180)
    assert dep.watcher is not None
    return dep.watcher.stall(dep.source_ids, step, time.time()), note


def _below_min_insync(
    dep: Deployment, cluster: KafkaCluster, first: int, second: int
) -> tuple[float, float]:
    _settled(dep, cluster)
    cluster.kill(first, second)
    time.sleep(OUTAGE_S)  # the outage's length: part of the scenario, not a wait
    starting = time.time()
    cluster.start(first, second)
    back = time.time()
    dep.wait_progress(back, timeout_s=180)
    assert dep.watcher is not None
    return dep.watcher.first_after(dep.source_ids, back), dep.watcher.first_after(
        dep.source_ids, starting
    )


TARGETS_S = {
    "sigkill_txn_coordinator": 15.0,
    "sigkill_group_coordinator": 15.0,
    "sigkill_partition_leader": 15.0,
    "rolling_restart_step": 5.0,
    "below_min_insync_recovery": 10.0,
}


def markdown(found: dict[str, Any]) -> list[str]:
    """The table: each fault's median and max per group protocol, against its target."""
    protocols = [p for p in PROTOCOLS if p in found]
    lines = [
        f"Broker faults, 3-node cluster, {found['rate_per_s']:.0f} scans/s,"
        f" {found['rounds']} rounds (stall in seconds; median / max):",
        "",
        "| fault | " + " | ".join(protocols) + " | target (max) |",
        "|---|" + "---|" * len(protocols) + "---|",
    ]
    for kind in KINDS:
        cells = [
            f"{found[p][kind]['median_s']} / {found[p][kind]['max_s']}"
            f" (n={len(found[p][kind]['values_s'])})"
            for p in protocols
        ]
        lines.append(f"| {kind} | " + " | ".join(cells) + f" | {TARGETS_S[kind]} |")
    lines += [
        "",
        "SIGKILLs split: the brokers' failover (the node gone from the metadata), then every"
        " source publishing again (seconds; median / max):",
        "",
        "| fault | "
        + " | ".join(f"{p}: failover | {p}: sources after it" for p in protocols)
        + " |",
        "|---|" + "---|---|" * len(protocols),
    ]
    for kind in KINDS[:3]:
        cells = [
            f"{_median_max(found[p][kind].get('failover_s'))}"
            f" | {_median_max(found[p][kind].get('after_failover_s'))}"
            for p in protocols
        ]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return lines


def _median_max(values: list[float] | None) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.2f} / {max(values):.2f}"
