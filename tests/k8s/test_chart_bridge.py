"""The chart with the real image on the local node, one replica: ready under Pod Security
``restricted``, exactly once, ``helm test``, a rolling upgrade and pod deletions.

Everything goes through the chart as a user would (``helm install``/``upgrade``/``test``,
``kubectl delete``), with the values a user of this cluster needs: the local image with
``pullPolicy: Never``, and the simulator and Kafka inside the cluster's network namespace
(see ``bridge_values``). Scans are made by the test through the simulator, so each one is
known; a read_committed consumer (the ``agent``'s watch) must see each exactly once.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.k8s.chart_support import (
    LogFollower,
    NetnsAgent,
    PodWatch,
    Release,
    Simulator,
    Traffic,
    Watch,
    bridge_values,
    exactly_once,
    helm,
    k8s_time,
    pod_ready,
    terminated_state,
    wait_until,
)
from tests.k8s.k8s_support import Cluster

READY_TIMEOUT = 180
ARRIVAL_TIMEOUT = 120


@pytest.fixture
def tag() -> str:
    return f"k8s-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def release(k8s: Cluster, restricted_namespace: str, tmp_path: Path) -> Release:
    return Release(k8s, restricted_namespace, "scans", tmp_path / "values.json")


def wait_ready(release: Release, n: int) -> list[dict[str, Any]]:
    """Until the release has exactly ``n`` pods and each is Ready, as the kubelet's
    readiness probe (/readyz) says (polling the API server)."""

    def ready() -> list[dict[str, Any]] | None:
        pods = release.pods()
        return pods if len(pods) == n and all(map(pod_ready, pods)) else None

    found: list[dict[str, Any]] = wait_until(ready, READY_TIMEOUT, f"{n} ready pods", 0.5)
    return found


def finish(release: Release, agent: NetnsAgent, kafka: str, sim: Simulator, watch: Watch) -> None:
    """Stop the bridge (``helm uninstall --wait``), read the topic to its end, and check
    that every scan the simulator made is there exactly once and the DLQ stayed empty."""
    expected = sim.scan_ids()
    watch.wait_for_ids(expected, ARRIVAL_TIMEOUT)
    release.helm("uninstall", release.name, "--wait", "--timeout", "120s")
    watch.wait_caught_up(agent.end_offsets(kafka, watch.topic), 60)
    exactly_once(watch.ids(), expected)
    dlq = release.values["bridge"]["dlqTopic"]
    dead_letters = agent.end_offsets(kafka, dlq)
    assert not any(dead_letters.values()), f"dead letters: {dead_letters}"


def test_ready_under_restricted_and_every_scan_exactly_once(
    k8s: Cluster,
    release: Release,
    bridge_image: str,
    netns_kafka: str,
    agent: NetnsAgent,
    simulator: Simulator,
    tag: str,
) -> None:
    namespace = release.namespace
    labels = k8s.kubectl("get", "namespace", namespace, "-o", "jsonpath={.metadata.labels}")
    assert '"pod-security.kubernetes.io/enforce":"restricted"' in labels
    before = set(simulator.generate(20))  # made before the install, within the lookback
    installed = release.install(bridge_values(tag, netns_kafka, simulator, replicas=1))
    # no Pod Security warning for the Deployment's pod template (the namespace warns too)
    assert "PodSecurity" not in installed.stderr, installed.stderr
    assert "would violate" not in installed.stderr, installed.stderr

    (pod,) = wait_ready(release, 1)
    (container,) = pod["spec"]["containers"]
    assert container["image"] == bridge_image
    assert container["imagePullPolicy"] == "Never"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    (status,) = pod["status"]["containerStatuses"]
    assert status["ready"] is True
    assert status["restartCount"] == 0

    watch = agent.watch(netns_kafka, f"{tag}.scans")
    watch.wait_for_ids(before, ARRIVAL_TIMEOUT)
    live = set()
    for _ in range(5):
        live |= set(simulator.generate(10))
        watch.wait_for_ids(live, ARRIVAL_TIMEOUT)

    # helm test: the chart's test pod finds the release ready
    tested = release.helm("test", release.name, "--logs", "--timeout", "180s")
    assert "Phase:          Succeeded" in tested.stdout, tested.stdout
    owner = re.escape(f"{tag}: stable, 1 member(s); {tag} on {pod['status']['podIP']}")
    assert re.search(rf"^ok\s+running\s+{owner}$", tested.stdout, re.M), tested.stdout

    finish(release, agent, netns_kafka, simulator, watch)


def test_helm_test_fails_when_no_replica_runs(
    release: Release,
    bridge_image: str,
    netns_kafka: str,
    agent: NetnsAgent,
    simulator: Simulator,
    tag: str,
) -> None:
    """The test hook answers the question it is asked: with the Deployment scaled to zero,
    the group has no member owning the source and ``helm test`` fails, saying so."""
    release.install(bridge_values(tag, netns_kafka, simulator, replicas=1))
    wait_ready(release, 1)
    release.cluster.kubectl(
        "scale", "-n", release.namespace, f"deployment/{release.fullname}", "--replicas=0"
    )
    wait_until(lambda: not release.pods(), READY_TIMEOUT, "the pod to be gone")
    proc = helm(release.cluster, "test", release.name, "-n", release.namespace, "--logs",
                "--timeout", "180s")  # fmt: skip
    assert proc.returncode != 0, proc.stdout
    row = re.escape(f"{tag}: empty, 0 member(s); no owner for {tag}")
    assert re.search(rf"^FAIL\s+running\s+{row}$", proc.stdout, re.M), proc.stdout + proc.stderr


def test_upgrade_rolls_the_pod_and_the_old_one_exits_0_within_its_grace(
    release: Release,
    bridge_image: str,
    netns_kafka: str,
    agent: NetnsAgent,
    simulator: Simulator,
    tag: str,
) -> None:
    values = bridge_values(tag, netns_kafka, simulator, replicas=1)
    release.install(values)
    (old,) = wait_ready(release, 1)
    watch = agent.watch(netns_kafka, f"{tag}.scans")
    watch.wait_for_ids(set(simulator.generate(5)), ARRIVAL_TIMEOUT)
    pods = PodWatch(release)
    old_logs = LogFollower(release.cluster, release.namespace, old["metadata"]["name"])
    old_logs.wait_streaming()
    try:
        with Traffic(simulator):
            # a setting changes: the ConfigMap's checksum in the pod template rolls the pod
            values["bridge"]["readyMaxPollAgeSeconds"] = 90
            release.upgrade(values)
            release.wait_rolled_out()
            pods.wait_deleted(old["metadata"]["name"], 120)
            (new,) = wait_ready(release, 1)
            assert new["metadata"]["name"] != old["metadata"]["name"]
            # the new pod has the new setting
            env = release.cluster.kubectl(
                "exec", "-n", release.namespace, new["metadata"]["name"], "--",
                "python", "-c", "import os; print(os.environ['BRIDGE_READY_MAX_POLL_AGE_S'])",
            )  # fmt: skip
            assert env.strip() == "90"
            # and carries on: scans made after the old one went are published
            watch.wait_for_ids(set(simulator.generate(5)), ARRIVAL_TIMEOUT)
    finally:
        pods.stop()
    took = assert_clean_exit(pods, old["metadata"]["name"], old_logs.wait(60), values)
    print(f"the old pod exited 0 {took:.0f}s after its deletion")
    finish(release, agent, netns_kafka, simulator, watch)


def assert_clean_exit(
    pods: PodWatch, name: str, logs: list[dict[str, Any]], values: dict[str, Any]
) -> float:
    """The pod's bridge container ended by SIGTERM: exit 0, within the bridge's own grace
    (so well within the pod's terminationGracePeriodSeconds), after leaving the group and
    without hitting the grace period's last resort. Returns how long it took (s, +-1)."""
    pod = pods.last[name]
    state = terminated_state(pod)
    assert state, f"no terminated state in the pod's last version: {pod['status']}"
    assert state["exitCode"] == 0, state
    assert state.get("reason") == "Completed", state
    meta = pods.deleting[name]["metadata"]
    grace = meta["deletionGracePeriodSeconds"]
    assert grace == pod["spec"]["terminationGracePeriodSeconds"]
    assert grace == values["bridge"].get("shutdownGraceSeconds", 25) + 10
    asked = k8s_time(meta["deletionTimestamp"]) - grace
    took = k8s_time(state["finishedAt"]) - asked
    assert took <= values["bridge"].get("shutdownGraceSeconds", 25), f"took {took}s"
    messages = [line.get("msg") for line in logs]
    assert {"msg": "stopping", "signal": "SIGTERM"}.items() <= next(
        line for line in logs if line.get("msg") == "stopping"
    ).items(), messages[-10:]
    assert "leaving the consumer group" in messages, messages[-10:]
    assert not any("grace period over" in str(m) for m in messages), messages[-10:]
    return took


def test_deleted_pods_are_replaced_and_carry_on_from_the_checkpoint(
    release: Release,
    bridge_image: str,
    netns_kafka: str,
    agent: NetnsAgent,
    simulator: Simulator,
    tag: str,
) -> None:
    values = bridge_values(tag, netns_kafka, simulator, replicas=1)
    release.install(values)
    (pod,) = wait_ready(release, 1)
    watch = agent.watch(netns_kafka, f"{tag}.scans")
    watch.wait_for_ids(set(simulator.generate(5)), ARRIVAL_TIMEOUT)
    pods = PodWatch(release)
    try:
        with Traffic(simulator):
            for how in (["--wait=false"], ["--force", "--grace-period=0"]):
                name = pod["metadata"]["name"]
                graceful = how == ["--wait=false"]
                if graceful:
                    logs = LogFollower(release.cluster, release.namespace, name)
                    logs.wait_streaming()
                release.cluster.kubectl("delete", "pod", "-n", release.namespace, name, *how)
                pods.wait_deleted(name, 120)
                if graceful:
                    assert_clean_exit(pods, name, logs.wait(60), values)
                (pod,) = wait_ready(release, 1)
                assert pod["metadata"]["name"] != name
                # the replacement restored the checkpoint the old one committed
                wait_until(
                    lambda p=pod: (
                        "resumed from checkpoint"
                        in release.cluster.kubectl(
                            "logs", "-n", release.namespace, p["metadata"]["name"]
                        )
                    ),
                    ARRIVAL_TIMEOUT,
                    "the replacement to resume from the checkpoint",
                )
                watch.wait_for_ids(set(simulator.generate(5)), ARRIVAL_TIMEOUT)
    finally:
        pods.stop()
    finish(release, agent, netns_kafka, simulator, watch)
