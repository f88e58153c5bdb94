"""Helpers of the chart tests: reaching what lives in the cluster's network namespace, the
simulator and its traffic, Helm, and watching pods.

In netns mode Kafka, the simulator and the pods have addresses that exist only inside the
namespace. The test process stays outside it and goes through:

- ``NetnsAgent``: tests/k8s/netns_agent.py, started inside the namespace, for HTTP requests
  (the simulator, a pod's /metrics) and read_committed consumers (``Watch``);
- ``Cluster.in_net``: kubectl, helm, the simulator and Kafka run inside it.

Times are ``time.monotonic()`` throughout: the agent reports arrivals on the same clock.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from tests.k8s.k8s_support import ROOT, Cluster

AGENT = Path(__file__).resolve().parent / "netns_agent.py"
HELM = ROOT / ".local" / "bin" / "helm"
CHART = ROOT / "helm" / "passentry-bridge"


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll ``check`` until it returns something truthy, which is returned."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# --- inside the namespace -----------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    scan_id: str | None
    source_id: str | None
    t: float


class Watch:
    """A read_committed consumer of one topic, from its beginning, run by the agent."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._cond = threading.Condition()
        self._records: list[Record] = []
        self._eof: dict[int, int] = {}  # partition -> offset at its latest end
        self.errors: list[str] = []

    def _add(self, event: dict[str, Any]) -> None:
        with self._cond:
            if event["event"] == "record":
                fields = {k: event[k] for k in ("partition", "offset", "scan_id", "source_id")}
                self._records.append(Record(self.topic, t=event["t"], **fields))
            elif event["event"] == "eof":
                self._eof[event["partition"]] = event["offset"]
            else:
                self.errors.append(event.get("error", str(event)))
            self._cond.notify_all()

    @property
    def records(self) -> list[Record]:
        with self._cond:
            return list(self._records)

    def ids(self) -> list[str]:
        return [r.scan_id for r in self.records if r.scan_id is not None]

    def wait(self, check: Callable[[list[Record]], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not check(self._records):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{self.topic}: timed out after {timeout:.0f}s waiting for {what}"
                        f" ({len(self._records)} records; errors {self.errors[-3:]})"
                    )
                self._cond.wait(min(left, 1.0))

    def wait_for_ids(self, expected: set[str], timeout: float) -> None:
        self.wait(
            lambda records: expected <= {r.scan_id for r in records},
            timeout,
            f"all {len(expected)} scans",
        )

    def wait_caught_up(self, ends: dict[int, int], timeout: float) -> None:
        """Until every partition was read to ``ends`` (end offsets asked for after the last
        writer stopped): then every committed record is in ``records``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while any(self._eof.get(p, -1) < end for p, end in ends.items()):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{self.topic}: not read to {ends} in {timeout:.0f}s (at {self._eof})"
                    )
                self._cond.wait(min(left, 1.0))


class NetnsAgent:
    """tests/k8s/netns_agent.py running inside the cluster's namespace, and its client."""

    def __init__(self, cluster: Cluster, log: Path) -> None:
        self._log = log.open("w")
        self._proc = subprocess.Popen(
            cluster.in_net(str(ROOT / ".venv" / "bin" / "python"), str(AGENT)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            bufsize=1,
        )
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._pending: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._watches: dict[str, Watch] = {}
        self._reader = threading.Thread(target=self._read, name="netns-agent", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        stdout = self._proc.stdout
        assert stdout is not None
        for line in stdout:
            message = json.loads(line)
            if "event" in message:
                watch = self._watches.get(message.get("topic", ""))
                if watch is not None:
                    watch._add(message)
                continue
            with self._lock:
                waiting = self._pending.pop(message["id"], None)
            if waiting is not None:
                waiting.put(message)

    def request(self, op: str, timeout: float = 60, **fields: Any) -> dict[str, Any]:
        assert self._proc.poll() is None, f"the netns agent exited ({self._proc.returncode})"
        n = next(self._ids)
        answer: queue.Queue[dict[str, Any]] = queue.Queue()
        with self._lock:
            self._pending[n] = answer
            stdin = self._proc.stdin
            assert stdin is not None
            stdin.write(json.dumps({"id": n, "op": op, **fields}) + "\n")
            stdin.flush()
        try:
            return answer.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the netns agent did not answer {op} in {timeout}s") from None

    def http(
        self, url: str, method: str = "GET", body: str | None = None, timeout: float = 5
    ) -> tuple[int | None, str]:
        """(status, body), or (None, the error) when nothing answered."""
        got = self.request("http", url=url, method=method, body=body, timeout=timeout)
        if "error" in got:
            return None, got["error"]
        return got["status"], got["body"]

    def get_json(self, url: str) -> Any:
        status, body = self.http(url, timeout=30)
        assert status == 200, f"GET {url}: {status} {body[:500]}"
        return json.loads(body)

    def watch(self, bootstrap: str, topic: str) -> Watch:
        watch = self._watches[topic] = Watch(topic)
        self.request("watch", bootstrap=bootstrap, topic=topic)
        return watch

    def end_offsets(self, bootstrap: str, topic: str) -> dict[int, int]:
        got = self.request("ends", bootstrap=bootstrap, topic=topic)
        assert "error" not in got, got["error"]
        return {int(p): end for p, end in got["ends"].items()}

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._reader.join(timeout=30)
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._log.close()


def metric(text: str, name: str, **labels: str) -> float | None:
    """A sample's value in Prometheus text format (None if the series is absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        series, value = line.rsplit(" ", 1)
        got_name, _, rest = series.partition("{")
        if got_name != name:
            continue
        got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if got == want:
            return float(value)
    return None


# --- the simulator and its traffic ---------------------------------------------------------------


class Simulator:
    """``passentry-bridge simulate`` inside the namespace, at the node IP (no backlog: the
    tests make every scan themselves, so each one is known)."""

    TOKEN = "sim-token"

    def __init__(self, cluster: Cluster, agent: NetnsAgent, log: Path) -> None:
        assert cluster.node_ip is not None
        self._agent = agent
        self._log = log.open("w")
        self._proc = subprocess.Popen(
            cluster.in_net(
                str(ROOT / ".venv" / "bin" / "passentry-bridge"),
                "simulate",
                "--host",
                cluster.node_ip,
                "--port",
                "0",
                "--seed",
                "16",
                "--readers",
                "4",
                "--passes",
                "50",
            ),
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        stdout = self._proc.stdout
        assert stdout is not None
        self.url = stdout.readline().strip()
        assert self.url.startswith("http://"), f"the simulator did not start (log: {log})"

    def generate(self, n: int = 1) -> list[str]:
        status, body = self._agent.http(f"{self.url}/_sim/scans/generate?n={n}", method="POST")
        assert status == 200, f"generate: {status} {body}"
        ids: list[str] = json.loads(body)["ids"]
        return ids

    def scan_ids(self) -> set[str]:
        return {row["id"] for row in self._agent.get_json(f"{self.url}/_sim/scans")}

    def stop(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._log.close()


class Traffic:
    """Live scans at ``rate`` per second, made through the simulator's admin route, for as
    long as the ``with`` block lasts."""

    def __init__(self, sim: Simulator, rate: float = 10) -> None:
        self._sim = sim
        self._interval = 1 / rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)
        self.made = 0
        self.failure: BaseException | None = None

    def _run(self) -> None:
        try:
            next_at = time.monotonic()
            while not self._stop.is_set():
                self._sim.generate(1)
                self.made += 1
                next_at += self._interval
                self._stop.wait(max(0.0, next_at - time.monotonic()))
        except BaseException as exc:  # surfaced by __exit__
            self.failure = exc

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        if self.failure is not None:
            raise AssertionError(f"the traffic generator failed: {self.failure}")


# --- Helm and pods --------------------------------------------------------------------------------


@dataclass
class Release:
    """One ``helm install`` of the chart into ``namespace``, run inside the namespace."""

    cluster: Cluster
    namespace: str
    name: str
    values_file: Path
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def fullname(self) -> str:
        return f"{self.name}-passentry-bridge"

    @property
    def selector(self) -> str:
        return f"app.kubernetes.io/name=passentry-bridge,app.kubernetes.io/instance={self.name}"

    def helm(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        proc = helm(self.cluster, *args, "-n", self.namespace, timeout=timeout)
        if proc.returncode != 0:
            raise AssertionError(
                f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}"
            )
        return proc

    def _write(self, values: dict[str, Any]) -> None:
        self.values = values
        self.values_file.write_text(json.dumps(values, indent=2))

    def install(self, values: dict[str, Any], *extra: str) -> subprocess.CompletedProcess[str]:
        self._write(values)
        return self.helm("install", self.name, str(CHART), "-f", str(self.values_file), *extra)

    def upgrade(self, values: dict[str, Any], *extra: str) -> subprocess.CompletedProcess[str]:
        self._write(values)
        return self.helm("upgrade", self.name, str(CHART), "-f", str(self.values_file), *extra)

    def pods(self) -> list[dict[str, Any]]:
        out = self.cluster.kubectl(
            "get", "pods", "-n", self.namespace, "-l", self.selector, "-o", "json"
        )  # fmt: skip
        items: list[dict[str, Any]] = json.loads(out)["items"]
        return items

    def ready_pods(self) -> list[dict[str, Any]]:
        """Pods that are Ready and not being deleted."""
        return [p for p in self.pods() if "deletionTimestamp" not in p["metadata"] and pod_ready(p)]

    def wait_rolled_out(self, timeout: float = 180) -> None:
        self.cluster.kubectl(
            "rollout", "status", f"deployment/{self.fullname}", "-n", self.namespace,
            f"--timeout={int(timeout)}s", timeout=timeout + 30,
        )  # fmt: skip


def helm(cluster: Cluster, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    return subprocess.run(
        cluster.in_net(str(HELM), *args),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def pod_ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def k8s_time(stamp: str) -> float:
    """An API timestamp (RFC 3339, whole seconds) as Unix time."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


class PodWatch:
    """``kubectl get pods --watch``: every version of the release's pods the API server
    announces, the last one before a pod is deleted included (its containers' final
    state)."""

    def __init__(self, release: Release) -> None:
        cluster = release.cluster
        self._proc = subprocess.Popen(
            cluster.in_net(
                str(cluster.kubectl_path), "--kubeconfig", str(cluster.kubeconfig),
                "get", "pods", "-n", release.namespace, "-l", release.selector,
                "--watch", "--output-watch-events", "-o", "json",
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read, name="pod-watch", daemon=True)
        self._cond = threading.Condition()
        self.last: dict[str, dict[str, Any]] = {}  # pod name -> its latest version
        self.deleted: dict[str, float] = {}  # pod name -> when its DELETED event came
        # pod name -> its first version with a deletionTimestamp (the later ones, down to the
        # kubelet's final delete, show a shorter deletionGracePeriodSeconds)
        self.deleting: dict[str, dict[str, Any]] = {}
        self._reader.start()

    def _read(self) -> None:
        stdout: IO[str] | None = self._proc.stdout
        assert stdout is not None
        decoder = json.JSONDecoder()
        buf = ""
        for line in stdout:
            buf += line
            while True:
                stripped = buf.lstrip()
                if not stripped:
                    buf = ""
                    break
                try:
                    event, end = decoder.raw_decode(stripped)
                except json.JSONDecodeError:
                    break
                buf = stripped[end:]
                pod = event["object"]
                name = pod["metadata"]["name"]
                with self._cond:
                    if event["type"] == "DELETED":
                        self.deleted[name] = time.monotonic()
                    if "deletionTimestamp" in pod["metadata"]:
                        self.deleting.setdefault(name, pod)
                    self.last[name] = pod
                    self._cond.notify_all()

    def wait_deleted(self, name: str, timeout: float) -> dict[str, Any]:
        """The pod's last version, once the API server deleted it (``deleting[name]`` is
        then the version that asked for the deletion)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while name not in self.deleted:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"pod {name} not deleted after {timeout:.0f}s")
                self._cond.wait(min(left, 1.0))
            return self.last[name]

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(timeout=30)
        self._reader.join(timeout=30)
        if self._proc.stdout is not None:
            self._proc.stdout.close()


class LogFollower:
    """``kubectl logs -f`` of one pod's bridge container, to its end. Start it, then
    ``wait_streaming()`` before stopping the pod: a stream that connects only after the pod
    is gone gets nothing."""

    def __init__(self, cluster: Cluster, namespace: str, pod: str) -> None:
        self._proc = subprocess.Popen(
            cluster.in_net(
                str(cluster.kubectl_path), "--kubeconfig", str(cluster.kubeconfig),
                "logs", "-f", "-n", namespace, pod, "-c", "bridge",
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        self._lines: list[str] = []
        self._first = threading.Event()
        self._reader = threading.Thread(target=self._read, name=f"logs-{pod}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        stdout = self._proc.stdout
        assert stdout is not None
        for line in stdout:
            self._lines.append(line)
            self._first.set()
        self._first.set()

    def wait_streaming(self, timeout: float = 60) -> None:
        assert self._first.wait(timeout), "kubectl logs -f printed nothing"
        assert self._proc.poll() is None, "".join(self._lines[-5:])

    def wait(self, timeout: float) -> list[dict[str, Any]]:
        """The log lines (JSON) once the container ended."""
        self._proc.wait(timeout=timeout)
        self._reader.join(timeout=30)
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        return [json.loads(line) for line in self._lines if line.startswith("{")]


def terminated_state(pod: dict[str, Any], container: str = "bridge") -> dict[str, Any]:
    for status in pod["status"].get("containerStatuses") or []:
        if status["name"] == container:
            state: dict[str, Any] = status.get("state", {}).get("terminated") or {}
            return state
    return {}


def container_pid(cluster: Cluster, pod: dict[str, Any], container: str = "bridge") -> int:
    """The host pid of a running container's main process (from containerd)."""
    (status,) = (s for s in pod["status"]["containerStatuses"] if s["name"] == container)
    container_id = status["containerID"].removeprefix("containerd://")
    out = subprocess.run(
        [str(ROOT / "scripts" / "k8s-local"), "exec", "ctr", "task", "ls"],
        env=cluster.env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    for line in out.splitlines()[1:]:
        task, pid, state = line.split()[:3]
        if task == container_id and state == "RUNNING":
            return int(pid)
    raise AssertionError(f"no running task {container_id} in containerd:\n{out}")


def sigkill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def exactly_once(ids: list[str], expected: set[str]) -> None:
    doubled = sorted(i for i, n in Counter(ids).items() if n > 1)
    assert not doubled, f"{len(doubled)} scans published more than once, e.g. {doubled[:5]}"
    missing = expected - set(ids)
    assert not missing, f"{len(missing)} scans never published, e.g. {sorted(missing)[:5]}"
    extra = set(ids) - expected
    assert not extra, f"{len(extra)} records of scans the simulator never made: {sorted(extra)[:5]}"


def bridge_values(
    tag: str, kafka: str, sim: Simulator, *, replicas: int, **bridge: Any
) -> dict[str, Any]:
    """The chart's values for the test cluster: the local image (never pulled), the
    simulator as PassEntry, the namespace's Kafka, and topics and a group of the test's own.
    Everything else is the chart's default."""
    return {
        "image": {"repository": "localhost/passentry-bridge", "pullPolicy": "Never"},
        "replicaCount": replicas,
        "passentry": {
            "apiUrl": sim.url,
            "apiToken": Simulator.TOKEN,
            "pollIntervalMinSeconds": 0.2,
            "pollIntervalMaxSeconds": 1,
        },
        "kafka": {"bootstrapServers": kafka},
        "bridge": {
            "sourceId": tag,
            "scansTopic": f"{tag}.scans",
            "dlqTopic": f"{tag}.scans.dlq",
            "stateTopic": f"{tag}.state",
            "groupId": tag,
            "coordinationTopic": f"{tag}.coordination",
            "topicPartitions": 3,
            **bridge,
        },
    }
