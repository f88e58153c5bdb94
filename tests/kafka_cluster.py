"""The three-node cluster of ``scripts/kafka-cluster`` from Python: for the cluster fault tests
(tests/cluster) and the ``broker_faults`` benchmark (bench/broker_faults.py).

Each method is one command of the script; every one of them returns only once what it did
has happened (a killed node is gone, a started one is a live broker again), so callers wait
on conditions, never on time.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "kafka-cluster"
NODES = (1, 2, 3)


@dataclass(frozen=True)
class Roles:
    """Who does what in the cluster now, as ``scripts/kafka-cluster roles`` says."""

    brokers: list[int]
    controller: int | None
    # transactional id / group id -> the node of its coordinator (None: not known yet)
    transaction_coordinators: dict[str, int | None]
    group_coordinators: dict[str, int | None]
    # topic -> partition -> leader
    leaders: dict[str, dict[int, int]]
    # transactional id / group id -> the node a FindCoordinator request names
    asked: dict[str, int | None]

    @classmethod
    def parse(cls, found: dict[str, Any]) -> Roles:
        return cls(
            brokers=found["brokers"],
            controller=found["controller"],
            transaction_coordinators={
                c["key"]: c["node"] for c in found["transaction_coordinators"]
            },
            group_coordinators={c["key"]: c["node"] for c in found["group_coordinators"]},
            leaders={
                topic: {int(p): part["leader"] for p, part in parts.items()}
                for topic, parts in found["topics"].items()
            },
            asked={
                c["key"]: c["asked"]
                for c in found["transaction_coordinators"] + found["group_coordinators"]
            },
        )

    def busiest_leader(self, topic: str) -> int:
        """The node leading most of the topic's partitions."""
        return Counter(self.leaders[topic].values()).most_common(1)[0][0]

    def of_node(self, node: int, txn_ids: list[str], group: str, topics: list[str]) -> list[str]:
        """What ``node`` does, in words, for a report."""
        held = []
        if self.controller == node:
            held.append("controller")
        if self.group_coordinators.get(group) == node:
            held.append("group coordinator")
        coordinated = [t for t in txn_ids if self.transaction_coordinators.get(t) == node]
        if coordinated:
            held.append(f"txn coordinator of {len(coordinated)}/{len(txn_ids)} sources")
        for topic in topics:
            led = [p for p, leader in self.leaders.get(topic, {}).items() if leader == node]
            if led:
                held.append(f"leader of {len(led)}/{len(self.leaders[topic])} of {topic}")
        return held


class KafkaCluster:
    """``scripts/kafka-cluster`` on one cluster dir (``KAFKA_CLUSTER_DIR``)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.env = {**os.environ, "KAFKA_CLUSTER_DIR": str(directory)}
        self.bootstrap = ""

    def _run(self, *args: str, timeout: float = 300) -> str:
        done = subprocess.run(
            [str(SCRIPT), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"kafka-cluster {' '.join(args)} failed:\n{done.stderr[-3000:]}")
        return done.stdout

    def up(self) -> str:
        self.bootstrap = self._run("up", timeout=600).strip().splitlines()[-1]
        return self.bootstrap

    def down(self) -> None:
        self._run("down", timeout=180)

    def kill(self, *nodes: int) -> None:
        self._run("kill", *map(str, nodes))

    def term(self, *nodes: int) -> None:
        self._run("term", *map(str, nodes))

    def freeze(self, *nodes: int) -> None:
        self._run("freeze", *map(str, nodes))

    def thaw(self, *nodes: int) -> None:
        self._run("thaw", *map(str, nodes))

    def start(self, *nodes: int) -> None:
        self._run("start", *map(str, nodes))

    def restart(self, *nodes: int) -> None:
        self._run("restart", *map(str, nodes))

    def wait_healthy(self, timeout_s: float = 180) -> None:
        self._run("wait-healthy", "--timeout", str(timeout_s), timeout=timeout_s + 30)

    def states(self) -> dict[int, str]:
        """Each node's process: ``running``, ``frozen`` or ``stopped``."""
        found = json.loads(self._run("roles"))
        return {int(n): state for n, state in found["nodes"].items()}

    def heal(self, timeout_s: float = 180) -> None:
        """All three nodes running and every partition fully in sync again, whatever a test
        left behind."""
        states = self.states()
        frozen = [n for n, s in states.items() if s == "frozen"]
        if frozen:
            self.thaw(*frozen)
        stopped = [n for n, s in states.items() if s == "stopped"]
        if stopped:
            self.start(*stopped)
        self.wait_healthy(timeout_s)

    def roles(
        self, *, txn_ids: Sequence[str] = (), groups: Sequence[str] = (),
        topics: Sequence[str] = (),
    ) -> Roles:  # fmt: skip
        args = [f"--transactional-id={t}" for t in txn_ids]
        args += [f"--group={g}" for g in groups]
        args += [f"--topic={t}" for t in topics]
        return Roles.parse(json.loads(self._run("roles", *args)))


__all__ = ["NODES", "KafkaCluster", "Roles"]
