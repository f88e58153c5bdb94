"""The names the bridge's spans use, from OpenTelemetry's semantic conventions, pinned.

Messaging spans follow the messaging conventions (and their Kafka page) of semantic
conventions ``VERSION``; the webhook's server span and a polled page's client span follow
the HTTP conventions of the same version. The names are written out here rather than taken
from ``opentelemetry-semantic-conventions``, whose messaging names are still "incubating"
and move between its releases: a package upgrade must not rename the bridge's attributes.
Our own attributes are under ``passentry.``.
"""

from __future__ import annotations

from typing import Final

VERSION: Final = "1.44.0"
SCHEMA_URL: Final = f"https://opentelemetry.io/schemas/{VERSION}"

MESSAGING_SYSTEM: Final = "messaging.system"
MESSAGING_OPERATION_TYPE: Final = "messaging.operation.type"
MESSAGING_OPERATION_NAME: Final = "messaging.operation.name"
MESSAGING_DESTINATION_NAME: Final = "messaging.destination.name"
MESSAGING_DESTINATION_PARTITION_ID: Final = "messaging.destination.partition.id"
MESSAGING_KAFKA_MESSAGE_KEY: Final = "messaging.kafka.message.key"
MESSAGING_KAFKA_OFFSET: Final = "messaging.kafka.offset"
MESSAGING_MESSAGE_BODY_SIZE: Final = "messaging.message.body.size"
MESSAGING_BATCH_MESSAGE_COUNT: Final = "messaging.batch.message_count"
ERROR_TYPE: Final = "error.type"

HTTP_REQUEST_METHOD: Final = "http.request.method"
HTTP_ROUTE: Final = "http.route"
HTTP_RESPONSE_STATUS_CODE: Final = "http.response.status_code"
HTTP_REQUEST_RESEND_COUNT: Final = "http.request.resend_count"
URL_FULL: Final = "url.full"
URL_PATH: Final = "url.path"
URL_SCHEME: Final = "url.scheme"
URL_TEMPLATE: Final = "url.template"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
CLIENT_ADDRESS: Final = "client.address"
USER_AGENT_ORIGINAL: Final = "user_agent.original"

KAFKA: Final = "kafka"
CREATE: Final = "create"
SEND: Final = "send"

# Ours.
SCAN_ID: Final = "passentry.scan.id"
SOURCE_ID: Final = "passentry.source.id"
DLQ_REASON: Final = "passentry.dlq.reason"
WEBHOOK_OUTCOME: Final = "passentry.webhook.outcome"
PAGE_SCANS: Final = "passentry.page.scans"

# The route the receiver serves, as the HTTP conventions want it (a template, not the path).
WEBHOOK_ROUTE: Final = "/webhooks/passentry/{sourceId}"
SCANS_URL_TEMPLATE: Final = "/api/v1/scans"
