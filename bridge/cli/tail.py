"""``passentry-bridge tail``: consume a topic (read_committed), decode its Avro values, and
print them for people: JSON lines (the default) or one compact line per scan."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import click
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, TopicPartition

from bridge.avro.decoder import RecordDecoder
from bridge.cli._common import config_option, load
from bridge.errors import BridgeError

__all__ = ["pretty", "tail", "tail_lines", "to_json"]

Format = Literal["json", "pretty"]


@click.command()
@config_option
@click.option("--topic", help="Topic to read (default: BRIDGE_SCANS_TOPIC).")
@click.option("--from-beginning", is_flag=True, help="Start at the earliest offset.")
@click.option("--reader", help="Only records of this reader id (the key).")
@click.option("--max", "max_records", type=click.IntRange(min=1), help="Stop after N records.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "pretty"]),
    default="json",
    show_default=True,
    help="json: one JSON object per line; pretty: one short line per scan.",
)
def tail(
    config_path: Path | None,
    topic: str | None,
    from_beginning: bool,
    reader: str | None,
    max_records: int | None,
    fmt: Format,
) -> None:
    """Consume the topic (read_committed), decode Avro, print a line per record."""
    config = load(config_path)
    registry = None
    if config.schema_registry.enabled:
        from bridge.avro.registry import make_client

        try:
            registry = make_client(config.schema_registry)
        except BridgeError as exc:
            raise click.UsageError(str(exc)) from None
    try:
        for line in tail_lines(
            config.kafka.librdkafka(),
            topic or config.bridge.scans_topic,
            decoder=RecordDecoder(registry),
            fmt=fmt,
            from_beginning=from_beginning,
            reader=reader,
            max_records=max_records,
            should_stop=lambda: False,
        ):
            click.echo(line)
    except KeyboardInterrupt:
        pass


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(type(value).__name__)


def to_json(record: dict[str, Any]) -> str:
    return json.dumps(record, default=_json_default, ensure_ascii=False)


def pretty(record: dict[str, Any]) -> str:
    """``<created> <reader> <scanType> <status> pass=<id> scan=<id> [detail]``, aligned."""
    created = record.get("createdAt")
    when = _json_default(created) if isinstance(created, datetime) else str(created)
    line = (
        f"{when:<24} {record.get('readerId', '?'):<20} {record.get('scanType', '?'):<8}"
        f" {record.get('status', '?'):<10} pass={record.get('passId') or '-'}"
        f" scan={record.get('scanId')}"
    )
    detail = record.get("statusDetail")
    return f"{line}  {detail}" if detail else line


def _partitions(
    consumer: Consumer, topic: str, should_stop: Callable[[], bool], give_up_s: float | None
) -> list[int]:
    """The topic's partitions once it exists. Started beside a bridge that is about to create
    the topic (``make demo`` does), tail would otherwise assign nothing and print nothing."""
    waited = 0.0
    while not should_stop():
        found = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if found is not None and found.error is None and found.partitions:
            return list(found.partitions)
        if waited == 0.0:
            click.echo(f"tail: waiting for topic {topic} to exist", err=True)
        if give_up_s is not None and waited >= give_up_s:
            break
        time.sleep(0.5)
        waited += 0.5
    return []


def tail_lines(
    client_conf: dict[str, Any],
    topic: str,
    *,
    decoder: RecordDecoder,
    fmt: Format = "json",
    from_beginning: bool,
    reader: str | None,
    max_records: int | None,
    should_stop: Callable[[], bool],
    idle_exit_s: float | None = None,
) -> Iterator[str]:
    """Yield one line per record (read_committed), filtered by reader id."""
    consumer = Consumer(
        {
            **client_conf,
            "group.id": f"passentry-bridge-tail-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest" if from_beginning else "latest",
        }
    )
    render = pretty if fmt == "pretty" else to_json
    count = 0
    idle = 0.0
    try:
        parts = _partitions(consumer, topic, should_stop, idle_exit_s)
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
                raise click.ClickException(f"consume error: {err}")
            key = msg.key()
            if reader is not None and (key or b"").decode(errors="replace") != reader:
                continue
            try:
                line = render(decoder.decode(msg.value() or b""))
            except (ValueError, EOFError) as exc:
                line = json.dumps(
                    {"undecodable": str(exc), "partition": msg.partition(), "offset": msg.offset()}
                )
            count += 1
            yield line
    finally:
        consumer.close()
