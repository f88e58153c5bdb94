"""``passentry-bridge tail``: read a topic (read_committed) the way kcat does, decode its Avro
values (single-object, or the registry wire format), and print them for people: one short
line per scan, JSON lines, or an envelope with where each record sits and its headers."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import click

from bridge.avro.decoder import RecordDecoder
from bridge.cli._common import config_option, load, parse_time, pick_source
from bridge.kafka.access import KafkaAccess
from bridge.kafka.tailing import (
    StartAt,
    Tailed,
    TailError,
    TailSpec,
    TopicNotFoundError,
    tail_records,
)

__all__ = ["envelope", "pretty", "tail", "tail_lines", "to_json"]

Format = Literal["json", "pretty", "envelope"]


@click.command()
@config_option
@click.option(
    "--source",
    "source_id",
    help="Only this source's records (its topic, and its source-id header). Default: every"
    " record of the topic.",
)
@click.option("--topic", help="Topic to read. Default: the source's scans topic.")
@click.option(
    "--from",
    "start",
    default="latest",
    show_default=True,
    help="Where each partition starts: earliest, latest, an offset (42), offsets back from the"
    " end (-10, as kcat: each transaction's commit marker takes an offset, so the bridge's"
    " topics show fewer records), or a time (ISO 8601, 'today', or a duration ago: 15m, 2h).",
)
@click.option("--from-beginning", is_flag=True, help="The same as --from earliest.")
@click.option(
    "--partition",
    "partitions",
    type=click.IntRange(min=0),
    multiple=True,
    help="Only this partition (repeatable). Default: all.",
)
@click.option(
    "-e",
    "--exit-at-end",
    is_flag=True,
    help="Exit once every partition is read to its end (its last committed record).",
)
@click.option("--reader", help="Only records of this reader id (the key).")
@click.option("--max", "max_records", type=click.IntRange(min=1), help="Stop after N records.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["pretty", "json", "envelope"]),
    default="json",
    show_default=True,
    help="pretty: one short line per scan; json: the decoded record per line; envelope: topic,"
    " partition, offset, timestamp, key, headers and the decoded value per line.",
)
@click.option(
    "--wait-for-topic",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds a missing topic is waited for before tail gives up, listing the topics.",
)
def tail(
    config_path: Path | None, source_id: str | None, topic: str | None, start: str,
    from_beginning: bool, partitions: tuple[int, ...], exit_at_end: bool, reader: str | None,
    max_records: int | None, fmt: Format, wait_for_topic: float,
) -> None:  # fmt: skip
    """Consume a topic (read_committed), decode Avro, print a line per record.

    Exit 0 at --max, at the end with -e, or on Ctrl-C; 2 for a topic that does not exist; 1
    when Kafka cannot be read."""
    config = load(config_path)
    if source_id is not None:
        source_id = pick_source(config, source_id)
    default_topic = config.source(source_id).scans_topic if source_id else config.bridge.scans_topic
    if from_beginning:
        start = "earliest"
    try:
        start_at = StartAt.parse(start, _time)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--from") from None
    registry = None
    if config.schema_registry.enabled:
        from bridge.avro.registry import make_client

        registry = make_client(config.schema_registry)
    spec = TailSpec(
        topic or default_topic, start_at, tuple(partitions) or None, exit_at_end, reader,
        source_id, max_records, wait_for_topic,
    )  # fmt: skip
    access = KafkaAccess.for_command(config.kafka)
    # A long wait was asked for (a bridge about to create the topic): say what tail waits on.
    patient = wait_for_topic > _QUIET_WAIT_S
    try:
        for line in tail_lines(
            access.conf(), spec, RecordDecoder(registry), fmt,
            on_wait=(lambda text: click.echo(f"tail: {text}", err=True)) if patient else None,
        ):  # fmt: skip
            click.echo(line)
    except TopicNotFoundError as exc:
        hint = "" if topic else " (--topic, or BRIDGE_SCANS_TOPIC)"
        raise _NoTopic(f"{exc}{hint}") from None
    except TailError as exc:
        # A refused login or certificate looks like a broker that is down: say which.
        refused = access.failure()
        raise click.ClickException(str(refused or exc)) from None
    except KeyboardInterrupt:
        pass


# Up to this, a missing topic is waited for quietly: the error says it all.
_QUIET_WAIT_S = 10.0


class _NoTopic(click.ClickException):
    # A topic that does not exist is the user's input (a typo, another cluster).
    exit_code = 2


def _time(text: str) -> int:
    """An ISO 8601 time, 'now', 'today', 'yesterday', or a duration ago (``15m``)."""
    from bridge.audit.buckets import parse_duration_ms

    try:
        return parse_time(text, "--from")
    except click.BadParameter:
        pass
    try:
        ago = parse_duration_ms(text)
    except ValueError:
        raise ValueError(
            f"expected earliest, latest, an offset, -N, an ISO 8601 time or a duration such as"
            f" 15m, got {text!r}"
        ) from None
    return int(datetime.now(UTC).timestamp() * 1000) - ago


def tail_lines(
    client_conf: dict[str, Any],
    spec: TailSpec,
    decoder: RecordDecoder,
    fmt: Format = "json",
    *,
    should_stop: Callable[[], bool] = lambda: False,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[str]:
    """One printable line per record of ``spec``; ``on_wait`` hears that tail waits for
    the topic to exist."""
    render = _RENDER[fmt]
    for record in tail_records(
        client_conf, spec, should_stop=should_stop, on_wait=on_wait or (lambda text: None)
    ):
        try:
            decoded: dict[str, Any] | None = decoder.decode(record.value)
            problem = None
        except (ValueError, EOFError) as exc:
            decoded, problem = None, str(exc)
        yield render(record, decoded, problem)


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


def envelope(record: Tailed, decoded: dict[str, Any] | None, problem: str | None) -> str:
    """Where the record sits, its key and headers, and its value: decoded, or (a dead
    letter holds the scan's JSON) the text it holds, with why it is not Avro."""
    out: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": None
        if record.timestamp_ms is None
        else _json_default(datetime.fromtimestamp(record.timestamp_ms / 1000, tz=UTC)),
        "key": None if record.key is None else record.key.decode("utf-8", errors="replace"),
        "headers": {
            name: None if value is None else value.decode("utf-8", errors="replace")
            for name, value in record.headers
        },
        "value": decoded,
    }
    if problem is not None:
        out["value"] = _text(record.value)
        out["undecodable"] = problem
    return to_json(out)


def _text(value: bytes) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value.decode("utf-8", errors="replace")


def _as_json(record: Tailed, decoded: dict[str, Any] | None, problem: str | None) -> str:
    if decoded is None:
        return json.dumps(
            {"undecodable": problem, "partition": record.partition, "offset": record.offset}
        )
    return to_json(decoded)


def _as_pretty(record: Tailed, decoded: dict[str, Any] | None, problem: str | None) -> str:
    if decoded is None:
        reason = record.header("dlq-reason")
        what = f"dead letter ({reason})" if reason else f"undecodable ({problem})"
        return f"{record.partition}:{record.offset} {what}"
    return pretty(decoded)


_RENDER: dict[str, Callable[[Tailed, dict[str, Any] | None, str | None], str]] = {
    "json": _as_json,
    "pretty": _as_pretty,
    "envelope": envelope,
}
