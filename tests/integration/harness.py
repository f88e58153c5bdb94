"""Helpers for end-to-end tests: build a bridge config, run it, drain topics, compare what
was published with what the simulator served."""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import avro.io
import avro.schema
import fastavro
from confluent_kafka import (
    Consumer,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from bridge.avro.schemas import latest
from bridge.config import Config, load_config
from bridge.ops.metrics import Metrics
from bridge.service import RunOptions, Service
from passentry_simulator.store import Scan
from tests.support import sample


def bridge_config(
    api_url: str,
    token: str,
    bootstrap: str,
    *,
    scans_topic: str,
    dlq_topic: str,
    passentry: dict[str, Any] | None = None,
    bridge: dict[str, Any] | None = None,
    kafka: dict[str, Any] | None = None,
) -> Config:
    return load_config(
        None,
        passentry={
            "api_url": api_url,
            "api_token": token,
            "poll_interval_min_s": 0.2,
            "poll_interval_max_s": 1.0,
            **(passentry or {}),
        },
        kafka={"bootstrap_servers": bootstrap, "linger_ms": 5, **(kafka or {})},
        bridge={
            "scans_topic": scans_topic,
            "dlq_topic": dlq_topic,
            "http_port": 0,
            "source_id": f"test-{uuid.uuid4().hex[:8]}",
            "topic_partitions": 3,
            # A group of its own: members of other tests never take this test's sources.
            "group_id": f"test-{uuid.uuid4().hex[:8]}",
            **(bridge or {}),
        },
    )


class RunningBridge:
    """A Service on a background thread (no signal handlers: those belong to main)."""

    def __init__(self, config: Config, options: RunOptions) -> None:
        self.service = Service(config, options)
        self.exit_code: int | None = None
        self._thread = threading.Thread(target=self._run, name="bridge", daemon=True)

    def _run(self) -> None:
        self.exit_code = self.service.run()

    def __enter__(self) -> RunningBridge:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, timeout: float = 30) -> int | None:
        self.service.stop.set()
        self._thread.join(timeout)
        return self.exit_code

    def join(self, timeout: float) -> int | None:
        self._thread.join(timeout)
        return self.exit_code


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]
    timestamp_ms: int

    def decoded(self) -> dict[str, Any]:
        assert self.value[:2] == b"\xc3\x01"
        out: dict[str, Any] = fastavro.schemaless_reader(
            io.BytesIO(self.value[10:]), latest().parsed
        )  # type: ignore[assignment]
        return out


def drain(
    bootstrap: str,
    topic: str,
    *,
    until: Callable[[list[Record]], bool] | None = None,
    timeout_s: float = 60.0,
    idle_s: float = 2.0,
) -> list[Record]:
    """Read a topic from the start with read_committed until ``until(records)`` holds
    (or, without it, until the topic is quiet for ``idle_s`` at its end)."""
    consumer = _committed_reader(bootstrap)
    records: list[Record] = []
    try:
        deadline = time.monotonic() + timeout_s
        parts = _partitions(consumer, topic, deadline)
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        quiet_since = time.monotonic()
        at_end: set[int] = set()
        while time.monotonic() < deadline:
            if until is not None and until(records):
                return records
            msg = consumer.poll(0.2)
            if msg is None:
                if (
                    until is None
                    and len(at_end) == len(parts)
                    and time.monotonic() - quiet_since > idle_s
                ):
                    return records
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition())
                    continue
                raise RuntimeError(str(err))
            at_end.discard(msg.partition())
            quiet_since = time.monotonic()
            records.append(_record(msg))
        if until is not None and not until(records):
            raise AssertionError(
                f"gave up after {timeout_s}s with {len(records)} records;"
                f" {_how_far(bootstrap, topic, parts)}"
            )
        return records
    finally:
        consumer.close()


def read_to_now(bootstrap: str, topic: str, timeout_s: float = 30.0) -> list[Record]:
    """Read a topic with read_committed to where each partition's committed records end at
    the call (some committed meanwhile may come too): for a topic written all along, whose
    drain would wait for a quiet spell that never comes."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    consumer = _committed_reader(bootstrap)
    try:
        deadline = time.monotonic() + timeout_s
        parts = [TopicPartition(topic, p) for p in _partitions(consumer, topic, deadline)]
        ends = _stable_ends(admin, parts, deadline)
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        left = {p for p, end in ends.items() if end > 0}
        records: list[Record] = []
        while left:
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: not read to its end in {timeout_s}s")
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            err = msg.error()
            if err is None:
                records.append(_record(msg))
            elif err.code() != KafkaError._PARTITION_EOF:
                if err.fatal():
                    raise RuntimeError(str(err))
                continue  # librdkafka recovers from the others itself (a broker just back)
            p = msg.partition()
            if p in left and consumer.position([TopicPartition(topic, p)])[0].offset >= ends[p]:
                left.discard(p)
        return records
    finally:
        consumer.close()


def _stable_ends(
    admin: AdminClient, parts: list[TopicPartition], deadline: float
) -> dict[int, int]:
    """Each partition's last stable offset; asked again while a broker just back answers
    with a transient error (a leader epoch it does not know yet, say)."""
    while True:
        try:
            return partition_ends(admin, parts, IsolationLevel.READ_COMMITTED)
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def partition_ends(
    admin: AdminClient, parts: list[TopicPartition], level: IsolationLevel
) -> dict[int, int]:
    """Where each partition ends for a reader at ``level``: its last stable offset
    (read_committed) or its high watermark (read_uncommitted)."""
    asked = admin.list_offsets({tp: OffsetSpec.latest() for tp in parts}, isolation_level=level)
    return {tp.partition: f.result().offset for tp, f in asked.items()}


def _committed_reader(bootstrap: str) -> Consumer:
    """A consumer of its own group that reads committed records and reports each
    partition's end."""
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"verify-{uuid.uuid4()}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
        }
    )


def _record(msg: Message) -> Record:
    return Record(
        msg.topic(),
        msg.partition(),
        msg.offset(),
        msg.key(),
        msg.value() or b"",
        dict(msg.headers() or []),  # type: ignore[arg-type]
        msg.timestamp()[1],
    )


def _how_far(bootstrap: str, topic: str, parts: list[int]) -> str:
    """Each partition's last stable offset against its end: a partition whose records stop
    short of its end has a transaction open there, which read_committed cannot pass."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    tps = [TopicPartition(topic, p) for p in parts]
    try:
        stable = partition_ends(admin, tps, IsolationLevel.READ_COMMITTED)
        end = partition_ends(admin, tps, IsolationLevel.READ_UNCOMMITTED)
    except KafkaException as exc:
        return f"the partitions' ends unknown: {exc}"
    return ", ".join(f"partition {p} stable to {stable[p]} of {end[p]}" for p in parts)


def _partitions(consumer: Consumer, topic: str, deadline: float) -> list[int]:
    """The topic's partitions, once it exists: the bridge may not have created it yet."""
    while True:
        found = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if found is not None and found.error is None and found.partitions:
            return sorted(found.partitions)
        if time.monotonic() > deadline:
            raise AssertionError(f"topic {topic} did not appear")
        time.sleep(0.2)


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.1)


def wait_for_cycles(
    metrics: Metrics, n: int, *, outcome: str = "ok", timeout_s: float = 60
) -> None:
    """Until ``n`` more poll cycles with ``outcome`` (ok, registry_error, ...) have finished
    than when called: a bridge that went on polling had its chance to do something wrong."""
    name = "passentry_bridge_poll_cycles_total"
    target = sample(metrics, name, outcome=outcome) + n
    wait_for(
        lambda: sample(metrics, name, outcome=outcome) >= target,
        timeout_s,
        f"{n} more poll cycles with outcome {outcome}",
    )


def avro_decode(writer_schema_text: str, body: bytes) -> dict[str, Any]:
    """Decode ``body`` with the Apache ``avro`` package: an implementation the bridge does
    not use, so agreement with it is not agreement with ourselves."""
    schema = avro.schema.parse(writer_schema_text)
    stream = io.BytesIO(body)
    value: dict[str, Any] = avro.io.DatumReader(schema, schema).read(avro.io.BinaryDecoder(stream))
    assert stream.tell() == len(body), "bytes left over after the record"
    return value


def iso_ms(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def parse_iso(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


def assert_matches_source(record: Record, scan: Scan) -> None:
    """The decoded event equals what the simulator served for that scan."""
    value = record.decoded()
    doc = json.loads(scan.json)
    attrs = doc["attributes"]
    rel = doc["relationships"]
    assert str(value["scanId"]) == scan.id
    assert value["createdAt"] == iso_ms(scan.created_ms)
    assert value["scannedAt"] == parse_iso(attrs["scannedAt"])
    for field in ("scanType", "scanValue", "validationType", "status", "statusDetail"):
        assert value[field] == attrs[field], field
    assert value["readerId"] == rel["reader"]["data"]["id"]
    assert record.key == value["readerId"].encode()
    # Stamped when published (at or after the scan was created); the creation time rides in
    # a header and the value.
    assert record.timestamp_ms >= scan.created_ms
    assert record.headers["scan-created-ms"] == str(scan.created_ms).encode()
    assert record.headers["scan-id"] == scan.id.encode()
    pass_rel = rel["pass"]["data"]
    assert value["passId"] == (pass_rel["id"] if pass_rel else None)
    included = {(d["type"], d["id"]): d for d in map(json.loads, scan.refs)}
    if pass_rel is None:
        assert value["pass"] is None
    else:
        src = included[("pass", pass_rel["id"])]["attributes"]
        got = value["pass"]
        assert got["id"] == pass_rel["id"]
        for field in ("extId", "passType", "status", "passTemplateName", "downloadUrl", "nfc"):
            assert got[field] == src.get(field), field
        assert got["createdAt"] == parse_iso(src.get("createdAt"))
        assert got["passContent"] == {
            k: v if isinstance(v, str) else json.dumps(v)
            for k, v in (src.get("passContent") or {}).items()
        }
    reader_src = included[("reader", value["readerId"])]["attributes"]
    got_reader = value["reader"]
    for field in ("name", "readerType", "loggedIn", "qrEnabled", "scanEnabled"):
        assert got_reader[field] == reader_src[field], field
    assert got_reader["lastSeenAt"] == parse_iso(reader_src["lastSeenAt"])
