"""Real records from the broker, read with the official CloudEvents Python SDK's Kafka
binding (binary mode): every attribute of every scan record and dead letter, in both
encodings, and the headers the AsyncAPI document promises."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary
from cloudevents.core.formats.json import JSONFormat

from bridge.avro.registry import canonical
from bridge.avro.schemas import latest
from bridge.config import load_config
from bridge.consumer import ScanDecoder
from bridge.contract.asyncapi import asyncapi_document
from tests.integration.consumers.consumer_support import BOOTSTRAP, Filled
from tests.integration.harness import Record, drain


def event(record: Record) -> BaseCloudEvent:
    return from_binary(KafkaMessage(record.headers, record.key, record.value), JSONFormat())


def check_scan_events(filled: Filled, decoder: ScanDecoder) -> list[str]:
    dataschemas = []
    for record in filled.records:
        ev = event(record)
        scan = decoder.decode(record.value)
        source_id = record.headers["source-id"].decode()
        assert ev.get_specversion() == "1.0"
        assert ev.get_id() == scan.scan_id == record.headers["scan-id"].decode()
        assert ev.get_source() == f"urn:passentry-bridge:source:{source_id}"
        assert source_id in filled.sources
        assert ev.get_type() == "com.passentry.scan.v1"
        assert ev.get_time() == scan.created_at
        assert ev.get_time() == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(
            milliseconds=int(scan.scan_id.replace("-", "")[:12], 16)
        )
        assert ev.get_datacontenttype() == record.headers["content-type"].decode()
        assert ev.get_extension("partitionkey") == scan.reader_id
        assert ev.get_data() == record.value  # binary mode: the value is the data, as is
        dataschemas.append(ev.get_dataschema())
    # ce_source + ce_id is unique, although each scan id is on the topic twice.
    pairs = {(event(r).get_source(), event(r).get_id()) for r in filled.records}
    assert len(pairs) == len(filled.records) == 2 * len(filled.truth)
    return dataschemas


def test_single_object_records_are_cloudevents_with_the_fingerprint_as_dataschema(
    single_object_topic: Filled,
) -> None:
    dataschemas = check_scan_events(single_object_topic, ScanDecoder())
    schema = latest()
    assert set(dataschemas) == {f"urn:avro:crc-64-avro:{schema.fingerprint.hex()}"}
    assert all(
        r.headers["content-type"] == b"application/avro; encoding=single-object"
        for r in single_object_topic.records
    )
    # ... and the fingerprint in the URI is the one in the value's prefix.
    assert all(r.value[2:10] == schema.fingerprint for r in single_object_topic.records)


def test_registry_records_are_cloudevents_whose_dataschema_url_serves_the_writer_schema(
    registry_topic: Filled,
) -> None:
    assert registry_topic.registry_url is not None
    with ScanDecoder(registry_url=registry_topic.registry_url) as decoder:
        dataschemas = check_scan_events(registry_topic, decoder)
    for url, record in zip(dataschemas, registry_topic.records, strict=True):
        schema_id = int.from_bytes(record.value[1:5], "big")
        assert url == f"{registry_topic.registry_url}/schemas/ids/{schema_id}"
    for url in set(dataschemas):
        served = httpx.get(url, timeout=30)
        assert served.status_code == 200, url
        assert canonical(served.json()["schema"]) == latest().canonical


def test_dead_letters_are_cloudevents_of_their_own_type(single_object_topic: Filled) -> None:
    dead = drain(BOOTSTRAP["servers"], single_object_topic.dlq)
    assert dead, "the simulator's invalid ids should give dead letters"
    for record in dead:
        ev = event(record)
        reason = record.headers["dlq-reason"].decode()
        assert reason == "invalid_id"
        assert ev.get_type() == "com.passentry.scan.deadletter.v1"
        assert ev.get_id() == f"invalid_id:{record.headers['scan-id'].decode()}"
        assert ev.get_source().removeprefix("urn:passentry-bridge:source:") in (
            single_object_topic.sources
        )
        assert ev.get_datacontenttype() == "application/json"
        assert ev.get_time() is not None  # the SDK stamps one when the header is absent...
        assert "ce_time" not in record.headers  # ...the bridge sends none: no creation time
        assert ev.get_dataschema() is None
        assert isinstance(ev.get_data(), dict)  # JSON, decoded by the SDK's JSON format
        assert ev.get_data()["id"] == record.headers["scan-id"].decode()


def test_real_records_carry_exactly_the_headers_the_asyncapi_document_lists(
    single_object_topic: Filled, registry_topic: Filled
) -> None:
    doc = asyncapi_document(load_config(), latest())
    for filled, name in (
        (single_object_topic, "ScanEventHeaders"),
        (registry_topic, "ScanEventHeaders"),
    ):
        documented = doc["components"]["schemas"][name]
        for record in filled.records:
            assert set(record.headers) <= set(documented["properties"]), json.dumps(
                sorted(set(record.headers) - set(documented["properties"]))
            )
            assert set(documented["required"]) <= set(record.headers)
    documented = doc["components"]["schemas"]["DeadLetterHeaders"]
    for record in drain(BOOTSTRAP["servers"], single_object_topic.dlq):
        assert set(record.headers) <= set(documented["properties"])
        assert set(documented["required"]) <= set(record.headers)
