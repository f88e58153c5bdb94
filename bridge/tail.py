"""Consume a topic, decode its Avro values, and print them as JSON lines, for humans."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, TopicPartition
from fastavro import schemaless_reader

from bridge.schema import SCAN_SCHEMA_NAME, load, versions

__all__ = ["Decoder", "tail"]


class Decoder:
    """Decodes single-object-encoded values against every schema version we know."""

    def __init__(self) -> None:
        self._by_fingerprint = {
            s.fingerprint: s for s in (load(SCAN_SCHEMA_NAME, v) for v in versions())
        }

    def decode(self, value: bytes) -> dict[str, Any]:
        if value[:2] != b"\xc3\x01" or len(value) < 10:
            raise ValueError("not Avro single-object encoding (no C3 01 marker)")
        schema = self._by_fingerprint.get(value[2:10])
        if schema is None:
            raise ValueError(f"unknown schema fingerprint {value[2:10].hex()}")
        record: dict[str, Any] = schemaless_reader(io.BytesIO(value[10:]), schema.parsed)  # type: ignore[assignment]
        return record


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(type(value).__name__)


def to_json(record: dict[str, Any]) -> str:
    return json.dumps(record, default=_json_default, ensure_ascii=False)


def tail(
    client_conf: dict[str, Any],
    topic: str,
    *,
    from_beginning: bool,
    reader: str | None,
    max_records: int | None,
    should_stop: Callable[[], bool],
    idle_exit_s: float | None = None,
) -> Iterator[str]:
    """Yield one JSON line per record (read_committed), filtered by reader id."""
    consumer = Consumer(
        {
            **client_conf,
            "group.id": f"passentry-bridge-tail-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest" if from_beginning else "latest",
        }
    )
    decoder = Decoder()
    count = 0
    idle = 0.0
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        parts = metadata.topics[topic].partitions if topic in metadata.topics else {}
        start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        consumer.assign([TopicPartition(topic, p, start) for p in parts])
        while not should_stop() and (max_records is None or count < max_records):
            msg = consumer.poll(0.5)
            if msg is None:
                idle += 0.5
                if idle_exit_s is not None and idle >= idle_exit_s:
                    return
                continue
            idle = 0.0
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                raise RuntimeError(f"consume error: {err}")
            key = msg.key()
            if reader is not None and (key or b"").decode(errors="replace") != reader:
                continue
            value = msg.value() or b""
            try:
                line = to_json(decoder.decode(value))
            except (ValueError, EOFError) as exc:
                line = json.dumps(
                    {"undecodable": str(exc), "partition": msg.partition(), "offset": msg.offset()}
                )
            count += 1
            yield line
    finally:
        consumer.close()
