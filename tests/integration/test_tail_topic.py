"""``tail`` started before its topic exists, as ``make demo`` starts it beside a bridge that
is about to create the topic: once the topic is made and written, tail prints the records.
Before, it assigned no partition and printed nothing, ever."""

from __future__ import annotations

import sys
import threading
import uuid

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from bridge.avro.decoder import RecordDecoder
from bridge.cli.tail import tail_lines
from bridge.kafka.tailing import StartAt, TailSpec
from tests.integration.harness import wait_for


def test_tail_waits_for_a_topic_made_after_it_started(
    kafka_bootstrap: str, kafka_admin: AdminClient, capsys: pytest.CaptureFixture[str]
) -> None:
    topic = f"test-tail-{uuid.uuid4()}"
    stop = threading.Event()
    lines: list[str] = []

    def run() -> None:
        spec = TailSpec(topic, StartAt("earliest"), max_records=2, wait_for_topic_s=120)
        for line in tail_lines(
            {"bootstrap.servers": kafka_bootstrap},
            spec,
            RecordDecoder(),
            should_stop=stop.is_set,
            on_wait=lambda text: print(text, file=sys.stderr),
        ):
            lines.append(line)

    reader = threading.Thread(target=run, name="tail")
    reader.start()
    try:
        # tail has looked for the topic, and found none, before the topic is made
        said: list[str] = []
        wait_for(
            lambda: said.append(capsys.readouterr().err) or "waiting for topic" in "".join(said),
            30,
            "tail to say it waits for the topic",
        )
        futures = kafka_admin.create_topics([NewTopic(topic, num_partitions=2)])
        futures[topic].result(timeout=60)
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        for n in range(2):
            producer.produce(topic, value=b"not avro", key=b"gate-1", partition=n)
        assert producer.flush(30) == 0
        wait_for(lambda: len(lines) == 2, 60, "tail to print both records")
        assert all("undecodable" in line for line in lines)
    finally:
        stop.set()
        reader.join(30)
        kafka_admin.delete_topics([topic])
