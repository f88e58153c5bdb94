"""Helpers of the consumer tests: fill a topic with the bridge from the simulator, take the
simulator's ground truth from its ``/_sim/scans`` admin route, build and run the example
consumers in examples/, and compare what they print with the truth."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from bridge.config import RegistrySettings
from bridge.service import RunOptions, Service
from passentry_simulator.app import SimulatorConfig
from passentry_simulator.faults import Faults
from passentry_simulator.server import SimulatorServer
from passentry_simulator.store import WorldConfig
from tests.integration.harness import Record, bridge_config, drain

ROOT = Path(__file__).resolve().parents[3]
BUILD = ROOT / "scripts" / "build-examples"
PYTHON_EXAMPLE = ROOT / "examples" / "python" / "print_scans.py"
SCHEMAS = ROOT / "schemas" / "passentry_scan"
EVOLUTION = ROOT / "tests" / "fixtures" / "evolution"
V2_SCHEMA = EVOLUTION / "passentry_scan" / "v2.avsc"
IN_CI = os.environ.get("CI") == "true"
# Cold, Maven fetches its plugins and the jars from Maven Central; the CI run starts the
# builds early in the background and this only waits for them.
BUILD_TIMEOUT_S = 1800
RUN_TIMEOUT_S = 240


@dataclass(frozen=True)
class Truth:
    """What the simulator created for one scan, as each consumer must print it."""

    scan_id: str
    created_at: str
    reader_id: str
    status: str
    scan_type: str
    validation_type: str
    pass_id: str | None
    reader_name: str | None


@dataclass(frozen=True)
class Filled:
    """A topic the bridge filled: every scan once per source (so each scan id twice)."""

    topic: str
    dlq: str
    truth: dict[str, Truth]
    records: list[Record]
    sources: tuple[str, ...]
    registry_url: str | None


def rfc3339(ms: int) -> str:
    at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ground_truth(sim_url: str) -> dict[str, Truth]:
    """The simulator's own list of every scan it created (``GET /_sim/scans``), less the
    ones whose id is not a UUIDv7 (the bridge dead-letters those)."""
    rows = httpx.get(f"{sim_url}/_sim/scans", timeout=30).json()
    out = {}
    for row in rows:
        if row["createdAtMs"] is None:
            continue
        attrs = row["resource"]["attributes"]
        out[row["id"]] = Truth(
            scan_id=row["id"],
            created_at=rfc3339(row["createdAtMs"]),
            reader_id=row["readerId"],
            status=attrs["status"],
            scan_type=attrs["scanType"],
            validation_type=attrs["validationType"],
            pass_id=row["passId"],
            reader_name=row["reader"]["attributes"]["name"],
        )
    return out


def create_topic(admin: AdminClient, partitions: int) -> str:
    name = f"test-consumers-{uuid.uuid4()}"
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1)],
        operation_timeout=30,
        request_timeout=30,
    )
    futures[name].result(timeout=60)
    deadline = time.monotonic() + 30
    while True:
        meta = admin.list_topics(name, timeout=10).topics.get(name)
        if (
            meta is not None
            and meta.error is None
            and len(meta.partitions) == partitions
            and all(p.leader >= 0 for p in meta.partitions.values())
        ):
            return name
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {name} has no leaders")
        time.sleep(0.05)


def fill(
    admin: AdminClient, bootstrap: str, *, backlog: int, registry_url: str | None = None
) -> Filled:
    """Two bridge sources read the same simulated PassEntry account into one topic, as two
    deployments with overlapping filters would: each scan is published once per source.
    A few scans get ids that are not UUIDv7, so the DLQ has dead letters too."""
    topic, dlq = create_topic(admin, 3), create_topic(admin, 1)
    faults = Faults(bad_id_rate=0.05)
    import random

    faults.rng = random.Random(7)
    sources = (f"consumers-a-{uuid.uuid4().hex[:6]}", f"consumers-b-{uuid.uuid4().hex[:6]}")
    world = WorldConfig(readers=6, passes=80, seed=23, backlog=backlog)
    with SimulatorServer(SimulatorConfig(world=world), faults) as sim:
        for source in sources:
            config = bridge_config(
                sim.url,
                sim.token,
                bootstrap,
                scans_topic=topic,
                dlq_topic=dlq,
                bridge={"source_id": source},
            )
            if registry_url is not None:
                config = dataclasses.replace(
                    config, schema_registry=RegistrySettings(url=registry_url)
                )
            service = Service(config, RunOptions(once=True, since_ms=0, serve_http=False))
            assert service.run() == 0, f"the bridge (source {source}) failed"
        truth = ground_truth(sim.url)
    assert len(truth) < backlog, "the seed should give some ids that are not UUIDv7"
    records = drain(bootstrap, topic, until=lambda rs: len(rs) >= 2 * len(truth))
    return Filled(topic, dlq, truth, records, sources, registry_url)


def need(tool: str) -> str:
    """The tool's path; without it the test is skipped, except under CI=true, where a
    missing toolchain is a failure (CI must run every consumer)."""
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} is not installed: the example consumer cannot be built here"
        if IN_CI:
            pytest.fail(f"{message} (CI=true: CI must build and run every consumer)")
        pytest.skip(message)
    return path


def build(target: str) -> Path:
    """``scripts/build-examples TARGET``: its artifact (built now, or already)."""
    for tool in ("go",) if target == "go" else ("mvn", "java"):
        need(tool)
    proc = subprocess.run(
        [str(BUILD), target],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"scripts/build-examples {target} failed (exit {proc.returncode}):\n"
            + proc.stderr[-4000:],
            pytrace=False,
        )
    return Path(proc.stdout.strip().splitlines()[-1])


@dataclass(frozen=True)
class Run:
    lines: list[dict[str, Any]]
    stderr: str
    returncode: int


def run_consumer(command: list[str]) -> Run:
    proc = subprocess.run(
        command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False, cwd=ROOT
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return Run(lines, proc.stderr, proc.returncode)


def python_command(
    filled: Filled, *extra: str, topic: str | None = None, max_records: int | None = None
) -> list[str]:
    command = [sys.executable, str(PYTHON_EXAMPLE), *_common(filled, topic, max_records)]
    if filled.registry_url is not None:
        command += ["--registry-url", filled.registry_url]
    return [*command, *extra]


def java_command(
    jar: Path, filled: Filled, *extra: str, topic: str | None = None, max_records: int | None = None
) -> list[str]:
    command = [need("java"), "-jar", str(jar), *_common(filled, topic, max_records)]
    if filled.registry_url is not None:
        command += ["--registry-url", filled.registry_url]
    return [*command, *extra]


def go_command(binary: Path, filled: Filled, bootstrap: str) -> list[str]:
    command = [
        str(binary),
        "--bootstrap",
        bootstrap,
        "--topic",
        filled.topic,
        "--group",
        f"example-{uuid.uuid4().hex[:8]}",
        "--schemas",
        str(SCHEMAS),
        "--max-records",
        str(len(filled.records)),
        "--timeout",
        "60s",
    ]
    if filled.registry_url is not None:
        command += ["--registry-url", filled.registry_url]
    return command


BOOTSTRAP: dict[str, str] = {}


def _common(filled: Filled, topic: str | None, max_records: int | None) -> list[str]:
    return [
        "--bootstrap",
        BOOTSTRAP["servers"],
        "--topic",
        topic or filled.topic,
        "--group",
        f"example-{uuid.uuid4().hex[:8]}",
        "--max-records",
        str(max_records if max_records is not None else len(filled.records)),
        "--timeout-s",
        "60",
    ]


def assert_prints_the_truth(run: Run, filled: Filled, language: str) -> None:
    """Every scan the simulator made, printed once, with the values it made; nothing else."""
    assert run.returncode == 0, f"{language} consumer exit {run.returncode}:\n{run.stderr[-3000:]}"
    ids = [line["scanId"] for line in run.lines]
    assert len(ids) == len(set(ids)), f"{language}: a scan printed twice"
    assert set(ids) == set(filled.truth), f"{language}: not the simulator's scans"
    for line in run.lines:
        truth = filled.truth[line["scanId"]]
        got = (
            line["createdAt"],
            line["readerId"],
            line["status"],
            line["scanType"],
            line["validationType"],
            line["passId"],
            line["readerName"],
        )
        want = (
            truth.created_at,
            truth.reader_id,
            truth.status,
            truth.scan_type,
            truth.validation_type,
            truth.pass_id,
            truth.reader_name,
        )
        assert got == want, f"{language}: {line['scanId']}"
        assert line["sourceId"] in filled.sources
    # Every record was read, and every second copy of a scan was dropped as a repeat.
    summary = f"read {len(filled.records)} records, printed {len(filled.truth)} scans"
    assert summary in run.stderr, run.stderr[-2000:]
    assert f"skipped {len(filled.records) - len(filled.truth)} repeats" in run.stderr
