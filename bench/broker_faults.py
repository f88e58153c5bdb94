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
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

from bench._procs import REPO
from bench._runs import Context
from bench.scenarios import Sizes, say
from tests.cluster.deployment import Deployment, deploy, simulator
from tests.kafka_cluster import NODES, KafkaCluster

__all__ = ["KINDS", "PROTOCOLS", "TARGETS_S", "broker_faults", "markdown"]

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
                    stall, note = _kill(dep, cluster, kind)
                    values[kind].append(stall)
                    notes[kind].append(note)
                    say(f"broker_faults {protocol} {kind} {n}: {stall:.2f} s ({note})")
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


def _kill(dep: Deployment, cluster: KafkaCluster, kind: str) -> tuple[float, str]:
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
    struck = time.time()
    cluster.kill(node)
    dep.wait_past_fault(struck, timeout_s=180)
    assert dep.watcher is not None
    stall = dep.watcher.stall(dep.source_ids, struck, time.time())
    cluster.start(node)
    return stall, note


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
    return lines
