"""Fixtures for tests that need a real single-node Kubernetes cluster (``scripts/k8s-local``).

Part of ``make test``; ``make test-k8s`` runs only these. The first run on a machine builds
Kubernetes from source (8 minutes or more on 2 cores); .ci/run starts that build in the
background at its very beginning (``scripts/k8s-local prepare``), and ``up`` waits for it.

``k8s`` (session): a ``Cluster``. It runs ``scripts/k8s-local up``, which waits until the node is
Ready, and ``down`` at session end if this session started the cluster (a cluster that was
already running is reused and left running). By default the cluster runs in the network
namespace ``K8S_LOCAL_NETNS`` (default ``passentry-k8s``), so pods get their own IPs;
``K8S_TEST_NETWORK=host`` uses the host mode instead (hostNetwork pods only).
When a prerequisite is missing (not root, no go/gcc/openssl/apt-get, no reachable Go module
proxy or Debian mirror: ``up`` exits 3) the tests are skipped, except under ``CI=true``, where
they fail. Any other failure of ``up`` is tried once more (the first is reported), then
fails them.

``k8s_namespace`` (function): a fresh namespace, deleted afterwards.
``restricted_namespace`` (function): the same, enforcing Pod Security ``restricted``.
``probe_binary`` (session): tests/k8s/probe built as a static binary (a tiny HTTP server).

The chart's tests (netns mode only: pods need their own network):
``bridge_image`` (session): the image of this checkout (``scripts/image build``, as ``make
image``), saved as an archive (``scripts/image archive``) and imported into the node's
containerd as ``localhost/passentry-bridge:<version>``, for ``pullPolicy: Never``.
``netns_kafka`` (session): a broker of ``scripts/kafka-local`` started inside the namespace
(``scripts/k8s-local exec``) in its own instance dir, listening on the node IP
(``KAFKA_LOCAL_HOST``); its bootstrap address.
``agent`` (session): a ``NetnsAgent`` (tests/k8s/netns_agent.py inside the namespace): the
test process's HTTP client and read_committed consumers there.
``simulator`` (function): ``passentry-bridge simulate`` inside the namespace at the node IP.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.k8s.chart_support import NetnsAgent, Simulator
from tests.k8s.k8s_support import K8S_LOCAL, ROOT, Cluster

PROBE_SRC = Path(__file__).resolve().parent / "probe"
DEFAULT_NETNS = "passentry-k8s"
UP_TIMEOUT = 1800  # a cold `up` compiles Kubernetes
MISSING_PREREQUISITE = 3  # scripts/k8s-local's exit status for "cannot run here"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.k8s)
            # the first test's setup may build the cluster from source
            item.add_marker(pytest.mark.timeout(UP_TIMEOUT + 300))


def _need_or_skip(reason: str, env: dict[str, str]) -> None:
    if env.get("CI", "").lower() == "true":
        pytest.fail(f"k8s tests cannot run under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def _up(env: dict[str, str], netns: str | None) -> subprocess.CompletedProcess[str]:
    """``scripts/k8s-local up``; on timeout it gets SIGTERM, so that it stops what it started."""
    args = [str(K8S_LOCAL), "up", *(["--netns", netns] if netns else [])]
    with subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            out, err = proc.communicate(timeout=UP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.terminate()
            out, err = proc.communicate(timeout=300)
            pytest.fail(f"scripts/k8s-local up took over {UP_TIMEOUT}s:\n{err}", pytrace=False)
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


@pytest.fixture(scope="session")
def k8s(request: pytest.FixtureRequest, session_environ: dict[str, str]) -> Iterator[Cluster]:
    env = dict(session_environ)
    host_mode = env.get("K8S_TEST_NETWORK", "netns") == "host"
    netns = None if host_mode else (env.get("K8S_LOCAL_NETNS") or DEFAULT_NETNS)
    env.pop("K8S_LOCAL_NETNS", None)

    def run(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(K8S_LOCAL), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    if os.geteuid() != 0:
        _need_or_skip("scripts/k8s-local needs root", env)
    already_running = run("status", timeout=60).returncode == 0
    up = _up(env, netns)
    if up.returncode not in (0, MISSING_PREREQUISITE):
        # A failed `up` leaves nothing running; one more try, saying why, so that a daemon
        # slow to start on a loaded machine does not fail every test here.
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"scripts/k8s-local up failed (exit {up.returncode}), trying once more:\n"
                f"{up.stderr}"
            )
        up = _up(env, netns)
    if up.returncode == MISSING_PREREQUISITE:
        _need_or_skip(f"scripts/k8s-local up: {up.stderr.strip().splitlines()[-1]}", env)
    lines = up.stdout.strip().splitlines()
    if up.returncode != 0 or not lines:
        pytest.fail(
            f"scripts/k8s-local up failed (exit {up.returncode}):\n{up.stderr}", pytrace=False
        )
    exports = dict(
        line.removeprefix("export ").split("=", 1)
        for line in run("env", timeout=30).stdout.splitlines()
        if line.startswith("export ")
    )
    cluster = Cluster(
        kubeconfig=Path(lines[-1]),
        kubectl_path=Path(exports["K8S_LOCAL_KUBECTL"]),
        netns=exports.get("K8S_LOCAL_NETNS") or None,
        node_ip=exports.get("K8S_LOCAL_NODE_IP") or None,
        pod_cidr=exports.get("K8S_LOCAL_POD_CIDR") or None,
        env=env,
    )
    try:
        yield cluster
    finally:
        if not already_running:
            down = run("down", timeout=300)
            if down.returncode != 0:
                pytest.fail(f"scripts/k8s-local down failed:\n{down.stderr}", pytrace=False)


def _namespace(k8s: Cluster, labels: dict[str, str]) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    k8s.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": labels},
        }
    )
    # the namespace's default service account comes from the controller-manager
    deadline = time.monotonic() + 60
    while subprocess.run(
        k8s.in_net(
            str(k8s.kubectl_path),
            "--kubeconfig",
            str(k8s.kubeconfig),
            "get",
            "sa",
            "default",
            "-n",
            name,
        ),
        capture_output=True,
        check=False,
    ).returncode:
        assert time.monotonic() < deadline, f"no default service account in {name} after 60s"
        time.sleep(0.2)
    yield name
    k8s.kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture
def k8s_namespace(k8s: Cluster) -> Iterator[str]:
    yield from _namespace(k8s, {})


RESTRICTED = {
    f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")
}


@pytest.fixture
def restricted_namespace(k8s: Cluster) -> Iterator[str]:
    yield from _namespace(k8s, RESTRICTED)


@pytest.fixture(scope="session")
def probe_binary(tmp_path_factory: pytest.TempPathFactory, session_environ: dict[str, str]) -> Path:
    go = shutil.which("go")
    if go is None:
        _need_or_skip("go is needed to build the probe image", session_environ)
    out = tmp_path_factory.mktemp("probe") / "probe"
    env = {**session_environ, "CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false"}
    subprocess.run(
        [str(go), "build", "-trimpath", "-ldflags=-s -w", "-o", str(out), "main.go"],
        cwd=PROBE_SRC,
        env=env,
        check=True,
        timeout=600,
    )
    return out


def _netns_only(k8s: Cluster) -> str:
    if k8s.netns is None or k8s.node_ip is None:
        pytest.skip("the chart's tests need pod networking: the netns mode (K8S_TEST_NETWORK=host)")
    return k8s.node_ip


def _chart_version() -> str:
    chart = (ROOT / "helm" / "passentry-bridge" / "Chart.yaml").read_text(encoding="utf-8")
    (line,) = (x for x in chart.splitlines() if x.startswith("appVersion:"))
    return line.split(":", 1)[1].strip().strip('"')


@pytest.fixture(scope="session")
def bridge_image(k8s: Cluster, session_environ: dict[str, str]) -> str:
    _netns_only(k8s)
    script = ROOT / "scripts" / "image"
    for step in ("build", "archive"):
        proc = subprocess.run(
            [str(script), step], env=session_environ, capture_output=True, text=True,
            timeout=900, check=False,
        )  # fmt: skip
        if proc.returncode == MISSING_PREREQUISITE:
            _need_or_skip(f"scripts/image {step}: no container tool here", session_environ)
        if proc.returncode != 0:
            pytest.fail(f"scripts/image {step} failed:\n{proc.stderr[-5000:]}", pytrace=False)
    archive = Path(proc.stdout.strip().splitlines()[-1])
    ref = k8s.load_image(archive)
    # the chart's default tag (its appVersion) names this image
    assert ref == f"localhost/passentry-bridge:{_chart_version()}"
    return ref


@pytest.fixture(scope="session")
def netns_kafka(k8s: Cluster) -> Iterator[str]:
    node_ip = _netns_only(k8s)
    env = {
        **k8s.env,
        "KAFKA_LOCAL_DIR": str(ROOT / ".local" / "k8s-kafka"),
        "KAFKA_LOCAL_HOST": node_ip,
    }
    kafka_local = str(ROOT / "scripts" / "kafka-local")

    def run(cmd: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(K8S_LOCAL), "exec", kafka_local, cmd],
            env=env, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    started = run("start", 600)
    lines = started.stdout.strip().splitlines()
    if started.returncode != 0 or not lines:
        pytest.fail(
            f"kafka-local start in the namespace failed ({started.returncode}):\n{started.stderr}",
            pytrace=False,
        )
    assert lines[-1].startswith(f"{node_ip}:"), lines[-1]
    try:
        yield lines[-1]
    finally:
        run("stop", 90)


@pytest.fixture(scope="session")
def agent(k8s: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsAgent]:
    _netns_only(k8s)
    found = NetnsAgent(k8s, tmp_path_factory.mktemp("agent") / "agent.log")
    try:
        yield found
    finally:
        found.close()


@pytest.fixture
def simulator(k8s: Cluster, agent: NetnsAgent, tmp_path: Path) -> Iterator[Simulator]:
    _netns_only(k8s)
    sim = Simulator(k8s, agent, tmp_path / "simulator.log")
    try:
        yield sim
    finally:
        sim.stop()
