"""Broker faults on the three-node cluster (RF 3, min.insync.replicas 2 everywhere, the
transaction log included), under live traffic pushed by webhooks with polling as the
backstop, two bridge replicas sharing three sources through the consumer group.

Each test strikes one kind of fault: a SIGKILL of the node that is the transaction
coordinator, the group coordinator or the busiest partition leader; a rolling restart
(each node SIGTERMed, a controlled shutdown, then started, one after another); two nodes
down at once, below min.insync.replicas, so that the stream must stall and then resume; a
node frozen (SIGSTOP) past the group session and the transaction timeout. Then every scan
of every source is on the topic exactly once, read_committed, in id order as the consumer
contract defines it. How long each source stalled is recorded (``record_property``) for
the report; the tests assert exactly once, not the availability targets.

The bridges run the default consumer group protocol; ``TEST_GROUP_PROTOCOL=consumer`` runs
them under Kafka 4's (KIP-848) instead (``make test-cluster`` passes the environment on).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cluster.deployment import Deployment, deploy, simulator, verify_exactly_once_in_order
from tests.integration.eos_harness import pause_for_fault
from tests.integration.harness import wait_for
from tests.kafka_cluster import NODES, KafkaCluster

RATE = 30.0
# Past the bridge's group session (10 s) and transaction timeout (30 s), the defaults.
FROZEN_S = 40.0
# How long two nodes stay down: long enough that every source has a transaction in hand
# that cannot commit.
OUTAGE_S = 15.0

Record = Callable[[str, object], None]


@pytest.fixture
def running(
    cluster: KafkaCluster, tmp_path: Path, request: pytest.FixtureRequest,
    session_environ: dict[str, str],
) -> Iterator[Deployment]:  # fmt: skip
    """Two replicas at work on the cluster: every source owned and publishing."""
    seed = sum(map(ord, request.node.name)) % 1000
    with simulator(seed) as sim:
        protocol = session_environ.get("TEST_GROUP_PROTOCOL")
        extra = {"BRIDGE_GROUP_PROTOCOL": protocol} if protocol else {}
        dep = deploy(sim, cluster.bootstrap, tmp_path, rate=RATE, **extra)
        dep.start()
        try:
            dep.wait_flowing()
            yield dep
        finally:
            dep.stop()


def _finish(dep: Deployment, cluster: KafkaCluster) -> None:
    """Every node back, every source publishing, then the traffic ends and the verdict."""
    cluster.heal()
    dep.wait_progress(time.time())
    dep.stop_traffic()
    records = verify_exactly_once_in_order(dep, dep.deferred())
    assert records
    # Neither replica ever gave up; each stops cleanly.
    codes = dep.stop()
    assert codes == dict.fromkeys(dep.replicas, 0), f"{codes}\n{dep.log_text()}"


def _victim(dep: Deployment, cluster: KafkaCluster, role: str) -> int:
    roles = cluster.roles(txn_ids=dep.txn_ids, groups=[dep.group], topics=[dep.topics.scans])
    if role == "transaction_coordinator":
        node = roles.transaction_coordinators[dep.txn_ids[0]]
    elif role == "group_coordinator":
        node = roles.group_coordinators[dep.group]
    else:
        node = roles.busiest_leader(dep.topics.scans)
    assert node in NODES, f"no {role} found: {roles}"
    return node


@pytest.mark.parametrize(
    "role", ["transaction_coordinator", "group_coordinator", "partition_leader"]
)
def test_sigkill_of_a_role_loses_and_doubles_nothing(
    role: str, running: Deployment, cluster: KafkaCluster, record_property: Record
) -> None:
    dep = running
    node = _victim(dep, cluster, role)
    struck = time.time()
    cluster.kill(node)
    dep.wait_past_fault(struck, timeout_s=120)
    assert dep.watcher is not None
    record_property("stall_s", round(dep.watcher.stall(dep.source_ids, struck, time.time()), 2))
    _finish(dep, cluster)


def test_a_rolling_restart_loses_and_doubles_nothing(
    running: Deployment, cluster: KafkaCluster, record_property: Record
) -> None:
    dep = running
    assert dep.watcher is not None
    for node in NODES:
        step = time.time()
        cluster.restart(node)  # SIGTERM (a controlled shutdown), then up again
        cluster.wait_healthy()  # an operator waits for the replicas to catch up
        dep.wait_progress(time.time(), timeout_s=120)
        stall = dep.watcher.stall(dep.source_ids, step, time.time())
        record_property(f"stall_s node {node}", round(stall, 2))
    _finish(dep, cluster)


def test_two_nodes_down_stall_the_stream_until_one_is_back(
    running: Deployment, cluster: KafkaCluster, record_property: Record
) -> None:
    dep = running
    assert dep.watcher is not None
    roles = cluster.roles(groups=[dep.group])
    # The group's coordinator among them: the group, too, must come back.
    first = roles.group_coordinators[dep.group]
    assert first in NODES
    down = [first, next(n for n in NODES if n != first)]
    cluster.kill(*down)
    # From when the kill returned, not from when it was asked for: the kill's own start-up
    # took over a second on a busy CI machine, and the records committed meanwhile came in
    # after a window opened before it.
    gone = time.time()
    pause_for_fault(OUTAGE_S)
    # With one replica of three there is no quorum to shrink the ISRs, and a write needs
    # two in-sync replicas anyway: nothing commits. (A second for what was on its way.)
    assert dep.watcher.arrived_between(gone + 1.0, time.time()) == 0
    cluster.start(*down)  # returns once both are live brokers again
    back = time.time()
    dep.wait_progress(back, timeout_s=120)
    record_property("recovery_s", round(dep.watcher.first_after(dep.source_ids, back), 2))
    _finish(dep, cluster)


def test_a_node_frozen_past_the_session_and_transaction_timeouts(
    running: Deployment, cluster: KafkaCluster, record_property: Record
) -> None:
    dep = running
    assert dep.watcher is not None
    # The transaction coordinator of a source: its transactions outlive their timeout on a
    # node that answers nothing, while the others move on without it.
    node = _victim(dep, cluster, "transaction_coordinator")
    struck = time.time()
    cluster.freeze(node)
    # The others declare it dead and take its partitions; the sources go on without it.
    dep.wait_past_fault(struck, timeout_s=120)
    record_property("stall_s", round(dep.watcher.stall(dep.source_ids, struck, time.time()), 2))
    pause_for_fault(max(0.0, FROZEN_S - (time.time() - struck)))
    cluster.thaw(node)
    # The thawed node learns it was fenced, rejoins and catches up.
    wait_for(lambda: cluster.states()[node] == "running", 30, "the node to run again")
    _finish(dep, cluster)


pytestmark = pytest.mark.timeout(900)
