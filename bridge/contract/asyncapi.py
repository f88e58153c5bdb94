"""The AsyncAPI 3.0 document of the topics a configuration writes, with the Kafka bindings.

Built from the configuration (topics, partitions, brokers, security, registry) and the
released Avro schema, never kept by hand: ``passentry-bridge schema asyncapi`` prints it,
and ``schemas/asyncapi.yaml`` is what it prints for the default configuration (a test keeps
the two equal). It describes the bridge as the application, so its operations are
``send``; a consumer team generates the receiving side from the same channels and messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from bridge import __version__, cloudevents
from bridge.avro.registry import CONTENT_TYPE as REGISTRY_CONTENT_TYPE
from bridge.avro.schemas import VersionedSchema
from bridge.config import Config, KafkaSettings, RegistrySettings

__all__ = ["BINDING_VERSION", "asyncapi_document", "asyncapi_yaml", "consumer_topics"]

BINDING_VERSION = "0.5.0"
SINGLE_OBJECT_CONTENT_TYPE = "application/avro; encoding=single-object"
AVRO_FORMAT = "application/vnd.apache.avro+json;version=1.9.0"
# The values PassEntry documents for the two fields a topic template may use. Another value
# makes another topic (the template's placeholder filled with it), which no document lists.
_STATUSES = ("successful", "failed")
_SCAN_TYPES = ("nfc", "barcode")

_GUARANTEE = (
    "Exactly once for consumers reading with isolation.level=read_committed: every scan the"
    " bridge's source reads from PassEntry is one record, written in a Kafka transaction"
    " with the source's checkpoint. A read_uncommitted consumer can see records of aborted"
    " transactions. A scan id appears twice only when two sources with overlapping filters"
    " both read it (different ce_source and source-id), or after an operator's"
    " `state reset` republished a range: dedupe by scanId where that matters."
)
_ORDERING = (
    "Key: the reader id, plain UTF-8 (no registry framing), partitioned with Java's murmur2,"
    " so all scans of a reader are in one partition, in scan-id (creation) order. A scan"
    " PassEntry makes visible after newer scans of the same partition were published is"
    " published when it arrives. Order across partitions is not defined."
)


@dataclass(frozen=True, slots=True)
class ConsumerTopic:
    """A topic the bridge writes that consumers read: scans, or dead letters."""

    name: str
    dead_letters: bool


def consumer_topics(config: Config) -> list[ConsumerTopic]:
    """The scans topics (every routed topic of a template, for the documented values) and
    the dead-letter topic, in a stable order."""
    names: dict[str, None] = {}
    for source in config.sources:
        if source.topic_template is None:
            names[source.scans_topic] = None
            continue
        for status in _STATUSES:
            for scan_type in _SCAN_TYPES:
                names[source.topic_template.format(status=status, scan_type=scan_type)] = None
    topics = [ConsumerTopic(name, dead_letters=False) for name in names]
    return [*topics, ConsumerTopic(config.bridge.dlq_topic, dead_letters=True)]


def asyncapi_yaml(config: Config, schema: VersionedSchema) -> str:
    return yaml.safe_dump(
        asyncapi_document(config, schema), sort_keys=False, allow_unicode=True, width=100
    )


def asyncapi_document(config: Config, schema: VersionedSchema) -> dict[str, Any]:
    topics = consumer_topics(config)
    ids = _channel_ids(topics)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic in topics:
        channel_id = ids[topic.name]
        message = "deadLetter" if topic.dead_letters else "scanEvent"
        channels[channel_id] = {
            "address": topic.name,
            "title": topic.name,
            "description": (
                "Scans PassEntry could not give as events, with the reason attached."
                if topic.dead_letters
                else "One record per PassEntry scan, enriched with its pass and reader."
            ),
            "messages": {message: {"$ref": f"#/components/messages/{_upper(message)}"}},
            "bindings": {"kafka": _channel_binding(config, topic)},
        }
        operations[f"send_{channel_id}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": f"The bridge publishes to {topic.name} in Kafka transactions.",
            "description": _GUARANTEE if not topic.dead_letters else _DLQ_GUARANTEE,
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/{message}"}],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "PassEntry scans (passentry-bridge)",
            "version": __version__,
            "description": _info_description(config, schema),
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": _content_type(config.schema_registry),
        "servers": {"kafka": _server(config.kafka, config.schema_registry)},
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": {
                "ScanEvent": _scan_message(config, schema),
                "DeadLetter": _dead_letter_message(),
            },
            "schemas": {
                "ScanEventHeaders": _scan_headers(config.schema_registry, schema),
                "DeadLetterHeaders": _dead_letter_headers(),
            },
            **_security_schemes(config.kafka),
        },
    }


_DLQ_GUARANTEE = (
    "Written in the same Kafka transactions as the scans: read with"
    " isolation.level=read_committed. A scan is dead-lettered when it cannot be published"
    " (dlq-reason: invalid_scan, invalid_id, missing_reader_id, encode_error, late_scan)."
)


def _info_description(config: Config, schema: VersionedSchema) -> str:
    encoding = (
        "the Confluent schema-registry wire format (00, a 4-byte big-endian schema id, the"
        " Avro body)"
        if config.schema_registry.enabled
        else "Avro single-object encoding (C3 01, the 8-byte CRC-64-AVRO fingerprint of the"
        f" writer schema, little-endian: {schema.fingerprint.hex()} for v{schema.version},"
        " then the Avro body)"
    )
    return "\n\n".join(
        [
            "PassEntry pass scans, published to Kafka by passentry-bridge.",
            _GUARANTEE,
            _ORDERING,
            f"Value: {schema.full_name} (schemas/{schema.name}/v{schema.version}.avsc) in"
            f" {encoding}.",
            "Headers: the CloudEvents Kafka protocol binding in binary mode (ce_specversion,"
            " ce_id, ce_source, ce_type, ce_time, ce_dataschema, and content-type as the"
            " datacontenttype), beside the bridge's own (scan-id, scan-created-ms, source-id,"
            " schema-version). ce_time, scan-created-ms and the value's createdAt are the"
            " scan's creation time; the Kafka timestamp is when the bridge published the"
            " record, so time-based retention counts from there.",
        ]
    )


def _content_type(registry: RegistrySettings) -> str:
    return REGISTRY_CONTENT_TYPE if registry.enabled else SINGLE_OBJECT_CONTENT_TYPE


def _server(kafka: KafkaSettings, registry: RegistrySettings) -> dict[str, Any]:
    hosts = kafka.bootstrap_servers.split(",")
    secure = kafka.security_protocol in ("SSL", "SASL_SSL")
    server: dict[str, Any] = {
        "host": hosts[0],
        "protocol": "kafka-secure" if secure else "kafka",
        "description": f"Bootstrap servers: {', '.join(hosts)} ({kafka.security_protocol}).",
    }
    schemes = _scheme_names(kafka)
    if schemes:
        server["security"] = [{"$ref": f"#/components/securitySchemes/{n}"} for n in schemes]
    binding: dict[str, Any] = {"bindingVersion": BINDING_VERSION}
    if registry.url is not None:
        binding["schemaRegistryUrl"] = registry.url.split(",", 1)[0].strip()
        binding["schemaRegistryVendor"] = "confluent"
    server["bindings"] = {"kafka": binding}
    return server


_SASL_SCHEMES = {"PLAIN": "plain", "SCRAM-SHA-256": "scramSha256", "SCRAM-SHA-512": "scramSha512"}


def _scheme_names(kafka: KafkaSettings) -> list[str]:
    names = []
    if kafka.sasl_mechanism is not None:
        names.append("sasl")
    if kafka.ssl_certificate_location is not None:
        names.append("clientCertificate")
    return names


def _security_schemes(kafka: KafkaSettings) -> dict[str, Any]:
    schemes: dict[str, Any] = {}
    if kafka.sasl_mechanism is not None:
        schemes["sasl"] = {
            "type": _SASL_SCHEMES[kafka.sasl_mechanism],
            "description": f"SASL {kafka.sasl_mechanism}; consumers need Read on the topics.",
        }
    if kafka.ssl_certificate_location is not None:
        schemes["clientCertificate"] = {"type": "X509", "description": "Mutual TLS."}
    return {"securitySchemes": schemes} if schemes else {}


def _channel_binding(config: Config, topic: ConsumerTopic) -> dict[str, Any]:
    binding: dict[str, Any] = {"topic": topic.name}
    if config.bridge.create_topics:
        # What the bridge creates a missing topic with; an existing topic keeps its own.
        binding["partitions"] = config.bridge.topic_partitions
        if config.bridge.topic_replication_factor > 0:
            binding["replicas"] = config.bridge.topic_replication_factor
    binding["bindingVersion"] = BINDING_VERSION
    return binding


def _scan_message(config: Config, schema: VersionedSchema) -> dict[str, Any]:
    registry = config.schema_registry
    kafka: dict[str, Any] = {
        "key": {"type": "string", "description": "The reader id (readerId), plain UTF-8."},
    }
    if registry.enabled:
        kafka["schemaIdLocation"] = "payload"
        kafka["schemaIdPayloadEncoding"] = "confluent"
        kafka["schemaLookupStrategy"] = _LOOKUP[registry.subject_name_strategy]
    else:
        kafka["schemaIdLocation"] = "payload"
        kafka["schemaIdPayloadEncoding"] = "apache"
    kafka["bindingVersion"] = BINDING_VERSION
    return {
        "name": "ScanEvent",
        "title": "A PassEntry scan",
        "summary": "One pass scan, enriched with its pass and reader.",
        "contentType": _content_type(registry),
        "headers": {"$ref": "#/components/schemas/ScanEventHeaders"},
        "payload": {"schemaFormat": AVRO_FORMAT, "schema": schema.definition},
        "correlationId": {
            "description": "The scan id: the same in ce_id, scan-id and the value's scanId.",
            "location": "$message.header#/ce_id",
        },
        "bindings": {"kafka": kafka},
    }


_LOOKUP = {
    "topic": "TopicIdStrategy",
    "record": "RecordIdStrategy",
    "topic_record": "TopicRecordIdStrategy",
}


def _dead_letter_message() -> dict[str, Any]:
    return {
        "name": "DeadLetter",
        "title": "A scan that could not be published",
        "summary": "The scan exactly as PassEntry sent it, with the reason in headers.",
        "contentType": "application/json",
        "headers": {"$ref": "#/components/schemas/DeadLetterHeaders"},
        "payload": {
            "type": "object",
            "description": "The scan's JSON:API resource as PassEntry returned it (not Avro).",
        },
        "bindings": {
            "kafka": {
                "key": {
                    "type": "string",
                    "description": "The reader id when known; no key otherwise.",
                },
                "bindingVersion": BINDING_VERSION,
            }
        },
    }


def _string(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


def _cloudevents_headers(event_type: str, dataschema: dict[str, Any] | None) -> dict[str, Any]:
    out = {
        "ce_specversion": _string("CloudEvents specification version.", const="1.0"),
        "ce_id": _string("The event id; see each message."),
        "ce_source": _string(
            "The bridge source that read the scan (BRIDGE_SOURCE_ID).",
            pattern="^" + re.escape(cloudevents.SOURCE_PREFIX) + "[A-Za-z0-9._-]{1,100}$",
        ),
        "ce_type": _string("The event type.", const=event_type),
        "ce_time": _string(
            "The scan's creation time from its UUIDv7 id, RFC 3339, UTC, milliseconds.",
            format="date-time",
        ),
    }
    if dataschema is not None:
        out["ce_dataschema"] = dataschema
    return out


def _scan_headers(registry: RegistrySettings, schema: VersionedSchema) -> dict[str, Any]:
    if registry.url is not None:
        dataschema = _string(
            "The writer schema in the registry: <registry URL>/schemas/ids/<id>, the same id"
            " as in the value's prefix.",
            format="uri",
        )
    else:
        dataschema = _string(
            "The writer schema's CRC-64-AVRO fingerprint, as in the value's prefix.",
            const=cloudevents.fingerprint_uri(schema.fingerprint),
        )
    properties = {
        **_cloudevents_headers(cloudevents.scan_type(schema.full_name), dataschema),
        "content-type": _string(
            "The CloudEvents datacontenttype: the value's encoding.",
            const=_content_type(registry),
        ),
        "scan-id": _string("The scan id (a UUIDv7), as ce_id and scanId.", format="uuid"),
        "scan-created-ms": _string(
            "The scan's creation time from its UUIDv7 id, Unix milliseconds in decimal: the"
            " same instant as ce_time and the value's createdAt."
        ),
        "source-id": _string("The bridge source that published the record."),
        "repaired-by": _string(
            "Only on records a backfill, an audit's repair or a dlq replay published: the"
            " command and its run."
        ),
        "schema-version": _string(
            "The version of schemas/passentry_scan the value was written with.",
            const=str(schema.version),
        ),
        **_trace_headers(),
    }
    properties["ce_id"] = _string("The scan id, as scan-id and the value's scanId.")
    optional = {"ce_time", "repaired-by", "traceparent", "tracestate"}
    return {
        "type": "object",
        "description": "Every scan record has all of these but repaired-by and the trace"
        " context (ce_time: unless the id's time is past the year 9999, which RFC 3339 cannot"
        " write).",
        "required": [name for name in properties if name not in optional],
        "properties": properties,
    }


def _trace_headers() -> dict[str, Any]:
    return {
        "traceparent": _string(
            "W3C Trace Context of the record's create span, when the bridge traces"
            " (README: Traces): continue it to follow the scan.",
            pattern="^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
        ),
        "tracestate": _string("W3C tracestate, with traceparent, when the trace has one."),
    }


def _dead_letter_headers() -> dict[str, Any]:
    properties = {
        **_cloudevents_headers(cloudevents.DEAD_LETTER_TYPE, None),
        "content-type": _string("The value is JSON.", const="application/json"),
        "dlq-reason": _string(
            "Why the scan was not published. Known values: invalid_scan, invalid_id,"
            " missing_reader_id, encode_error, late_scan (README: what the bridge does with"
            " bad input)."
        ),
        "dlq-detail": _string("The reason in words (at most 500 characters)."),
        "scan-id": _string("The scan id, when the scan had one."),
        "source-id": _string("The bridge source that read the scan."),
        "source-url": _string("The PassEntry request the scan came from."),
        "bridge-version": _string("The version of the bridge that wrote the record."),
        "repaired-by": _string(
            "Only on dead letters a repair or a dlq replay wrote (a replay: the scan's new"
            " reason): the command and its run."
        ),
        **_trace_headers(),
    }
    properties["ce_id"] = _string(
        "<dlq-reason>:<scan id>, or <dlq-reason>:sha256:<digest> for a scan without an id."
    )
    properties["ce_time"] = _string(
        "The scan's creation time, when its id is a UUIDv7.", format="date-time"
    )
    optional = {"scan-id", "ce_time", "repaired-by", "traceparent", "tracestate"}
    return {
        "type": "object",
        "required": [name for name in properties if name not in optional],
        "properties": properties,
    }


def _channel_ids(topics: list[ConsumerTopic]) -> dict[str, str]:
    """A channel key for each topic: AsyncAPI keys allow letters, digits, ``_`` and ``-``."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for topic in topics:
        base = re.sub(r"[^A-Za-z0-9_-]", "_", topic.name)
        key, n = base, 2
        while key in used:
            key, n = f"{base}_{n}", n + 1
        used.add(key)
        out[topic.name] = key
    return out


def _upper(name: str) -> str:
    return name[0].upper() + name[1:]
