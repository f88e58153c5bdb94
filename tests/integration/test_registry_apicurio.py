"""Registry mode against a REAL Confluent-compatible registry (Apicurio, scripts/registry-local).

1. auto_register / pinned / latest x topic / record / topic_record: every value is framed
   ``00`` + the id the registry has for the subject the bridge used, and the Apache ``avro``
   package, fetching the writer schema by that id from the registry, decodes every record to
   the values the simulator served.
2. pinned / latest with a different schema registered under the subject: start-up refuses
   (exit 1, readiness names the mismatch) and nothing is published.
3. The registry going away mid-run (a separate registry instance behind a small TCP proxy, so
   the bridge keeps one URL across a restart): nothing is lost, and once the restarted
   (empty, in-memory) registry answers, every record carries an id it has for the schema.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from bridge.avro.registry import canonical
from bridge.avro.schemas import latest
from bridge.config import Config, RegistrySettings
from bridge.service import RunOptions, Service
from passentry_simulator.app import SimulatorConfig
from passentry_simulator.server import SimulatorServer
from passentry_simulator.store import Scan, WorldConfig
from scripts.lib.registry_local import Registry
from tests.integration.harness import (
    Record,
    RunningBridge,
    avro_decode,
    bridge_config,
    drain,
    wait_for,
    wait_for_cycles,
)
from tests.integration.registry_fixtures import (
    schema_registry_url,  # noqa: F401
)

BACKLOG = 30
RECORD_SUBJECT = latest().full_name


# --- helpers ---------------------------------------------------------------------------------


def with_registry(config: Config, **settings: Any) -> Config:
    return dataclasses.replace(config, schema_registry=RegistrySettings(**settings))


def subject_for(strategy: str, topic: str) -> str:
    if strategy == "record":
        return RECORD_SUBJECT
    if strategy == "topic_record":
        return f"{topic}-{RECORD_SUBJECT}"
    return f"{topic}-value"


def schema_id(record: Record) -> int:
    assert record.value[:1] == b"\x00", record.value[:8]
    return int.from_bytes(record.value[1:5], "big")


def check_decodes(client: SchemaRegistryClient, records: list[Record], source: dict[str, Scan]):
    """The avro package, with the writer schema fetched by id, gives the source's values."""
    texts: dict[int, str] = {}
    seen = []
    for record in records:
        sid = schema_id(record)
        if sid not in texts:
            texts[sid] = client.get_schema(sid).schema_str
        value = avro_decode(texts[sid], record.value[5:])
        scan = source[str(value["scanId"])]
        attrs = json.loads(scan.json)["attributes"]
        rel = json.loads(scan.json)["relationships"]
        assert value["readerId"] == rel["reader"]["data"]["id"]
        assert value["status"] == attrs["status"]
        assert value["scanType"] == attrs["scanType"]
        assert record.key == value["readerId"].encode()
        seen.append(str(value["scanId"]))
    return seen


def different_schema() -> str:
    """The local schema plus one optional field: compatible, but not the same schema."""
    definition = json.loads(latest().text)
    definition["fields"].append({"name": "extraField", "type": ["null", "string"], "default": None})
    return json.dumps(definition)


@pytest.fixture
def registry(schema_registry_url: str) -> Iterator[SchemaRegistryClient]:  # noqa: F811
    client = SchemaRegistryClient({"url": schema_registry_url})
    yield client
    client.close()


# --- 1 + 4: every mode with every subject naming strategy ------------------------------------


@pytest.mark.parametrize("strategy", ["topic", "record", "topic_record"])
@pytest.mark.parametrize("mode", ["auto_register", "pinned", "latest"])
def test_modes_and_strategies_against_apicurio(
    schema_registry_url: str,  # noqa: F811
    registry: SchemaRegistryClient,
    kafka_bootstrap: str,
    new_topic: Any,
    mode: str,
    strategy: str,
) -> None:
    client = registry
    scans, dlq = new_topic(partitions=3), new_topic(partitions=1)
    subject = subject_for(strategy, scans)
    settings: dict[str, Any] = {
        "url": schema_registry_url,
        "mode": mode,
        "subject_name_strategy": strategy,
    }
    if mode != "auto_register":
        registered_id = client.register_schema(subject, Schema(latest().text, "AVRO"))
        found = client.lookup_schema(subject, Schema(latest().text, "AVRO"))
        assert found.schema_id == registered_id
        if mode == "pinned":
            settings["version"] = found.version
    with SimulatorServer(SimulatorConfig(world=WorldConfig(seed=11, backlog=BACKLOG))) as sim:
        config = bridge_config(
            sim.url, sim.token, kafka_bootstrap, scans_topic=scans, dlq_topic=dlq
        )
        service = Service(
            with_registry(config, **settings), RunOptions(once=True, since_ms=0, serve_http=False)
        )
        assert service.run() == 0
        source = {s.id: s for s in sim.store.all_scans()}
    records = drain(kafka_bootstrap, scans, until=lambda rs: len(rs) >= len(source))
    assert len(records) == len(source) == BACKLOG
    assert drain(kafka_bootstrap, dlq) == []

    ids = {schema_id(r) for r in records}
    assert len(ids) == 1, ids
    (used,) = ids
    assert subject in client.get_subjects()
    subject_ids = {client.get_version(subject, v).schema_id for v in client.get_versions(subject)}
    assert used in subject_ids, (subject, used, subject_ids)
    if mode == "pinned":
        assert used == client.get_version(subject, settings["version"]).schema_id
    if mode == "latest":
        assert used == client.get_latest_version(subject).schema_id
    if mode != "auto_register":
        assert used == registered_id
    assert canonical(client.get_schema(used).schema_str) == latest().canonical
    for record in records:
        assert record.headers["content-type"] == b"application/vnd.confluent.avro"
        assert record.headers["schema-version"] == str(latest().version).encode()
    seen = check_decodes(client, records, source)
    assert sorted(seen) == sorted(source)


# --- 2: a different registered schema is refused at start-up ---------------------------------


@pytest.mark.parametrize("strategy", ["topic", "topic_record"])
@pytest.mark.parametrize("mode", ["pinned", "latest"])
def test_a_different_registered_schema_is_refused_at_startup(
    schema_registry_url: str,  # noqa: F811
    registry: SchemaRegistryClient,
    kafka_bootstrap: str,
    new_topic: Any,
    mode: str,
    strategy: str,
) -> None:
    client = registry
    scans, dlq = new_topic(partitions=3), new_topic(partitions=1)
    subject = subject_for(strategy, scans)
    other_id = client.register_schema(subject, Schema(different_schema(), "AVRO"))
    version = client.lookup_schema(subject, Schema(different_schema(), "AVRO")).version
    settings: dict[str, Any] = {
        "url": schema_registry_url,
        "mode": mode,
        "subject_name_strategy": strategy,
    }
    if mode == "pinned":
        settings["version"] = version
    with SimulatorServer(SimulatorConfig(world=WorldConfig(seed=5, backlog=BACKLOG))) as sim:
        config = bridge_config(
            sim.url, sim.token, kafka_bootstrap, scans_topic=scans, dlq_topic=dlq
        )
        service = Service(
            with_registry(config, **settings), RunOptions(once=True, since_ms=0, serve_http=False)
        )
        assert service.run() == 1
        verdict = service.health.readiness()
    assert not verdict.ok
    reason = " | ".join(verdict.reasons)
    assert "differs from local" in reason, reason
    assert repr(subject) in reason, reason
    assert f"id {other_id}" in reason, reason
    assert "extraField" in reason, reason  # the field diff names the extra field
    assert drain(kafka_bootstrap, scans) == []
    assert drain(kafka_bootstrap, dlq) == []


# --- 3: the registry going away mid-run ------------------------------------------------------


class Proxy:
    """A TCP forwarder on a fixed loopback port, so the bridge keeps its registry URL while
    the registry behind it is stopped and a new instance (on a new port) takes over."""

    def __init__(self) -> None:
        self._listen = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listen.getsockname()[1]
        self._upstream: int | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def point(self, port: int | None) -> None:
        with self._lock:
            self._upstream = port
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.close()

    def close(self) -> None:
        self._closed = True
        self.point(None)
        with contextlib.suppress(OSError):
            self._listen.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listen.accept()
            except OSError:
                return
            port = self._upstream
            try:
                if port is None:
                    raise OSError("no upstream")
                upstream = socket.create_connection(("127.0.0.1", port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()


class Instance:
    """A registry of its own (REGISTRY_LOCAL_DIR), not the session's shared one."""

    def __init__(self, env: dict[str, str], directory: Path) -> None:
        own = {**env, "REGISTRY_LOCAL_DIR": str(directory)}
        own.pop("SCHEMA_REGISTRY_TEST_URL", None)
        self.registry = Registry(own)

    def start(self) -> str:
        return self.registry.start()

    def stop(self) -> None:
        self.registry.stop()


def _port(url: str) -> int:
    return int(url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])


def _drain_when_created(bootstrap: str, topic: str, n: int, bridge: RunningBridge) -> list[Record]:
    """drain() reads the partitions a topic has when it starts: wait for the bridge to
    create a routed topic first."""
    admin = AdminClient({"bootstrap.servers": bootstrap})

    def created() -> bool:
        meta = admin.list_topics(topic, timeout=5).topics.get(topic)
        return meta is not None and meta.error is None and len(meta.partitions) == 3

    deadline = time.monotonic() + 90
    while not created():
        if time.monotonic() > deadline:
            verdict = bridge.service.health.readiness()
            raise AssertionError(f"{topic} not created; exit {bridge.exit_code}, {verdict}")
        time.sleep(0.2)
    return drain(bootstrap, topic, until=lambda rs: len(rs) >= n, timeout_s=90)


def _add(sim: SimulatorServer, n: int, status: str) -> list[Scan]:
    store = sim.store
    now = time.time_ns() // 1_000_000
    out = []
    for _ in range(n):
        spec = store.world.random_spec(store.rng, now)
        out.append(store.add(dataclasses.replace(spec, status=status)))
    return out


@dataclasses.dataclass
class OutageRun:
    prefix: str
    records: dict[str, list[Record]]
    dlq: list[Record]
    source: dict[str, Scan]
    readiness_during_outage: tuple[str, ...]
    published_during_outage: int
    cached_id: int  # the id registry A gave the "successful" subject, cached by the bridge
    new_client: SchemaRegistryClient  # registry B, after the restart
    decoy_id: int
    exit_code: int | None


@pytest.fixture(scope="module")
def outage_run(
    kafka_bootstrap: str, session_environ: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OutageRun]:
    instance = Instance(session_environ, tmp_path_factory.mktemp("registry") / "instance")
    proxy = Proxy()
    prefix = f"regout-{uuid.uuid4().hex[:8]}"
    ok_topic, failed_topic, dlq = f"{prefix}.successful", f"{prefix}.failed", f"{prefix}-dlq"
    clients: list[SchemaRegistryClient] = []
    try:
        url_a = instance.start()
        proxy.point(_port(url_a))
        proxied = f"http://127.0.0.1:{proxy.port}/apis/ccompat/v7"
        client_a = SchemaRegistryClient({"url": url_a})
        clients.append(client_a)
        with SimulatorServer(SimulatorConfig(world=WorldConfig(seed=23, backlog=0))) as sim:
            config = bridge_config(
                sim.url, sim.token, kafka_bootstrap,
                scans_topic=f"{prefix}-unused", dlq_topic=dlq,
                bridge={"topic_template": prefix + ".{status}"},
            )  # fmt: skip
            config = with_registry(
                config, url=proxied, mode="auto_register", timeout_s=2, max_retries=0
            )
            with RunningBridge(config, RunOptions(since_ms=0, serve_http=False)) as bridge:
                # Phase 1, registry A up: the "successful" subject is registered and cached.
                _add(sim, 15, "successful")
                _drain_when_created(kafka_bootstrap, ok_topic, 15, bridge)
                cached_id = client_a.get_latest_version(f"{ok_topic}-value").schema_id
                # Phase 2, registry gone: "failed" scans need a subject nobody resolved yet.
                proxy.point(None)
                instance.stop()
                _add(sim, 10, "successful")
                _add(sim, 10, "failed")
                wait_for(
                    lambda: (
                        "schema registry not reachable"
                        in " ".join(bridge.service.health.readiness().reasons)
                    ),
                    30,
                    "readiness to report the registry",
                )
                readiness = bridge.service.health.readiness().reasons
                # Two more cycles fail on the registry: they must publish nothing.
                wait_for_cycles(bridge.service.metrics, 2, outcome="registry_error")
                published_during = len(drain(kafka_bootstrap, ok_topic)) - 15
                # Phase 3: a new, empty registry (in-memory storage); another client registers
                # first, then the bridge's URL reaches it.
                url_b = instance.start()
                client_b = SchemaRegistryClient({"url": url_b})
                clients.append(client_b)
                decoy = {
                    "type": "record",
                    "name": "Decoy",
                    "namespace": "test.other",
                    "fields": [{"name": "n", "type": "long"}],
                }
                decoy_id = client_b.register_schema(
                    f"{prefix}-decoy-value", Schema(json.dumps(decoy), "AVRO")
                )
                proxy.point(_port(url_b))
                _add(sim, 5, "successful")
                _add(sim, 5, "failed")
                total = 45
                records = {
                    ok_topic: _drain_when_created(kafka_bootstrap, ok_topic, 30, bridge),
                    failed_topic: _drain_when_created(kafka_bootstrap, failed_topic, 15, bridge),
                }
                # More cycles after everything arrived: any duplicate would be published now.
                wait_for_cycles(bridge.service.metrics, 2)
                source = {s.id: s for s in sim.store.all_scans()}
                assert len(source) == total
                exit_code = bridge.stop()
        # Read again after the bridge stopped: any duplicate would show now.
        records = {topic: drain(kafka_bootstrap, topic) for topic in records}
        yield OutageRun(
            prefix=prefix,
            records=records,
            dlq=drain(kafka_bootstrap, dlq),
            source=source,
            readiness_during_outage=readiness,
            published_during_outage=published_during,
            cached_id=cached_id,
            new_client=client_b,
            decoy_id=decoy_id,
            exit_code=exit_code,
        )
    finally:
        for c in clients:
            c.close()
        proxy.close()
        with contextlib.suppress(Exception):
            instance.stop()


def test_registry_outage_mid_run_loses_nothing(outage_run: OutageRun) -> None:
    run = outage_run
    assert run.exit_code == 0
    assert "schema registry not reachable" in " ".join(run.readiness_during_outage)
    # The cycle that needed the unreachable registry published nothing (it is retried whole).
    assert run.published_during_outage == 0
    ids = [
        str(avro_decode(latest().text, r.value[5:])["scanId"])
        for records in run.records.values()
        for r in records
    ]
    assert sorted(ids) == sorted(run.source), "every scan exactly once"
    assert len(ids) == len(set(ids)) == 45
    assert run.dlq == []
    for topic, records in run.records.items():
        status = topic.rsplit(".", 1)[1]
        for r in records:
            assert avro_decode(latest().text, r.value[5:])["status"] == status
    # The subject first needed during the outage was registered in the new registry, and
    # its records carry that registry's id for it.
    client = run.new_client
    failed_subject = f"{run.prefix}.failed-value"
    failed_id = client.get_latest_version(failed_subject).schema_id
    assert {schema_id(r) for r in run.records[f"{run.prefix}.failed"]} == {failed_id}
    assert canonical(client.get_schema(failed_id).schema_str) == latest().canonical
    check_decodes(client, run.records[f"{run.prefix}.failed"], run.source)


def test_cached_schema_ids_stay_valid_after_a_registry_restart(outage_run: OutageRun) -> None:
    run = outage_run
    client = run.new_client
    ok = run.records[f"{run.prefix}.successful"]
    assert len(ok) == 30
    # The topic has several partitions: order by scan id (UUIDv7, so by creation) to find
    # the 15 created after phase 1, all published once the restarted registry answered.
    after = sorted(ok, key=lambda r: r.headers["scan-id"])[15:]
    problems = []
    for sid in sorted({schema_id(r) for r in after}):
        try:
            text = client.get_schema(sid).schema_str
        except Exception as exc:
            problems.append(f"id {sid}: not in the restarted registry ({exc})")
            continue
        if canonical(text) != latest().canonical:
            problems.append(
                f"id {sid} names another schema in the restarted registry:"
                f" {json.loads(text).get('name')} (decoy id {run.decoy_id},"
                f" cached id {run.cached_id})"
            )
    assert not problems, "; ".join(problems)
