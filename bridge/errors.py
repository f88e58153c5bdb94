"""Every error the bridge raises, branched by what the caller should do about it.

::

    BridgeError
    ├── ConfigError                   refuse to start; the message names the setting
    ├── RetriableError                try again later (with backoff); nothing is lost
    │   ├── ApiUnavailableError       timeout, connection error, 408, 429, 5xx
    │   ├── MalformedPageError        a page that is not the JSON:API document we expect
    │   ├── RegistryUnavailableError  the schema registry did not answer usefully
    │   └── KafkaRetriableError       a Kafka call that may succeed if repeated
    │       ├── TransactionAbortedError    aborted; nothing visible: rewind, try again
    │       └── ProducerSpentError         recreate the producer, re-read the checkpoint
    │           ├── CommitOutcomeUnknownError  a commit that did not answer in time
    │           └── DeliveryFailedError        records timed out or fell out of sequence
    ├── FatalError                    stop and exit non-zero so the orchestrator restarts us
    │   ├── ApiAuthError              401/403: the token is wrong or lacks rights
    │   ├── ApiRequestError           any other 4xx: we sent something PassEntry refuses
    │   ├── KafkaFatalError           fenced, or a fatal producer error
    │   ├── KafkaAccessError          Kafka will not let the bridge in; the message says what to fix
    │   │   ├── KafkaAuthenticationError  the SASL credentials were refused
    │   │   ├── KafkaTlsError             the broker's certificate could not be verified
    │   │   └── KafkaAuthorizationError   an ACL is missing: names the resource and the grant
    │   ├── TopicMissingError         a topic is missing and creating topics is switched off
    │   ├── ListenError               a port to listen on is taken or not allowed: names the setting
    │   ├── RegistryAuthError         401/403 from the schema registry
    │   ├── RegistryRequestError      another 4xx from the registry
    │   └── SchemaMismatchError       the registered schema is not the bridge's own
    ├── InvalidUUIDv7Error            a scan id that is not a UUIDv7: dead-letter the scan
    └── InvalidWebhookError           a webhook body that is not an event we know: answer 400

``ShutdownRequested`` is not an error: it leaves a backoff sleep when the bridge is told to
stop, so a retry loop never delays a shutdown.
"""

from __future__ import annotations

import errno
from typing import ClassVar

__all__ = [
    "ApiAuthError",
    "ApiRequestError",
    "ApiUnavailableError",
    "BridgeError",
    "CommitOutcomeUnknownError",
    "ConfigError",
    "DeliveryFailedError",
    "FatalError",
    "InvalidUUIDv7Error",
    "InvalidWebhookError",
    "KafkaAccessError",
    "KafkaAuthenticationError",
    "KafkaAuthorizationError",
    "KafkaFatalError",
    "KafkaRetriableError",
    "KafkaTlsError",
    "ListenError",
    "MalformedPageError",
    "ProducerSpentError",
    "RegistryAuthError",
    "RegistryRequestError",
    "RegistryUnavailableError",
    "RetriableError",
    "SchemaMismatchError",
    "ShutdownRequested",
    "TopicMissingError",
    "TransactionAbortedError",
]


class BridgeError(Exception):
    """Root of every error the bridge raises on purpose."""


class ConfigError(BridgeError):
    """A setting is missing or invalid. The message names it; the token never appears."""


class RetriableError(BridgeError):
    """A transient failure: the same call may succeed later."""

    # What a poll cycle that failed on it counts as (poll_cycles_total{outcome}).
    cycle_outcome: ClassVar[str] = "api_error"
    # Why a PassEntry request was retried (api_retries_total{reason}).
    retry_reason: str = "other"


class ApiUnavailableError(RetriableError):
    """PassEntry did not answer usefully: transport error, 408, 429 or 5xx."""

    def __init__(self, message: str, *, reason: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        # One of: timeout, connection, rate_limited, server_error (a metric label).
        self.retry_reason = reason
        self.retry_after = retry_after


class MalformedPageError(RetriableError):
    """The answer was 2xx but not a decodable page (truncated body, HTML, bad JSON)."""

    retry_reason = "malformed"


class RegistryUnavailableError(RetriableError):
    """The registry did not answer usefully (transport error, timeout, 408, 429, 5xx)."""

    cycle_outcome = "registry_error"


class KafkaRetriableError(RetriableError):
    """librdkafka flagged the error retriable, or the broker could not be reached in time."""

    cycle_outcome = "kafka_error"


class InboxNotReadyError(KafkaRetriableError):
    """The webhook inbox's partition count is not known yet (at start, before the topic
    exists or while Kafka does not answer): the receiver answers 503, and PassEntry retries."""


class TransactionAbortedError(KafkaRetriableError):
    """The transaction was aborted; nothing of it is visible. Rewind and try again."""


class ProducerSpentError(KafkaRetriableError):
    """The producer in hand cannot be trusted with another transaction: recreate it (its
    ``init_transactions`` settles what is open) and re-read the checkpoint."""


class CommitOutcomeUnknownError(ProducerSpentError):
    """A commit did not answer in time: recreate the producer and re-read the checkpoint."""


class DeliveryFailedError(ProducerSpentError):
    """Records of the transaction timed out or fell out of sequence (a broker went away,
    or came back): nothing of it is visible, and a new producer aborts it."""


class FatalError(BridgeError):
    """Continuing would be wrong or pointless: stop and exit non-zero."""


class ApiAuthError(FatalError):
    """401 or 403: the API token is missing, wrong, or not allowed to list scans."""


class ApiRequestError(FatalError):
    """A 4xx other than 401/403/408/429: PassEntry refuses the request itself."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class KafkaFatalError(FatalError):
    """The producer was fenced by a newer instance, or librdkafka raised a fatal error."""

    def __init__(self, message: str, *, fenced: bool = False) -> None:
        super().__init__(message)
        # Fenced: another producer with our transactional id started (a new owner, or an
        # operator's --force), or the broker aborted a transaction past its timeout.
        self.fenced = fenced


class KafkaAccessError(FatalError):
    """Kafka refuses the bridge: credentials, certificate or an ACL. Retrying cannot help
    until an operator changes a setting or a grant, which the message names."""


class KafkaAuthenticationError(KafkaAccessError):
    """The broker refused the SASL credentials (a wrong password and an unknown user look
    alike); it persisted past a short grace, since a new SCRAM user takes a moment."""


class KafkaTlsError(KafkaAccessError):
    """The broker's certificate could not be verified: not signed by the configured CA, or
    not naming the host the bridge connected to (the message says which)."""


class KafkaAuthorizationError(KafkaAccessError):
    """An ACL is missing. The message names the principal, the resource, the operation and
    the ``kafka-acls.sh`` grant that fixes it."""

    def __init__(self, message: str, *, resource: str, name: str, operations: tuple[str, ...]):
        super().__init__(message)
        # resource: topic, group or transactional-id; operations as kafka-acls.sh spells them.
        self.resource = resource
        self.name = name
        self.operations = operations


class TopicMissingError(FatalError):
    """A topic the bridge writes to does not exist and topic creation is disabled."""


class ListenError(FatalError):
    """A port the bridge is told to listen on cannot be had: in use, privileged, or an
    address this machine does not have. The message names the setting."""

    def __init__(self, setting: str, host: str, port: int, exc: OSError) -> None:
        reasons = {
            errno.EADDRINUSE: "the port is in use (by another bridge or program): stop it, or"
            f" set {setting} to a free port",
            errno.EACCES: f"permission denied (ports below 1024 need privileges): set {setting}"
            " to a port above 1023",
            errno.EADDRNOTAVAIL: "this machine has no such address",
        }
        reason = reasons.get(exc.errno or 0, exc.strerror or str(exc))
        super().__init__(f"{setting}: cannot listen on {host}:{port}: {reason}")


class RegistryAuthError(FatalError):
    """401/403 from the registry: the credentials are wrong or not allowed."""


class RegistryRequestError(FatalError):
    """Another 4xx: a subject or version that does not exist, or a schema it refuses."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class SchemaMismatchError(FatalError):
    """The registered schema the bridge would tag its records with is not its own."""


class InvalidUUIDv7Error(BridgeError, ValueError):
    """The text is not a UUID, or is a UUID of another version or variant."""

    # The dead letter of a scan with such an id (its dlq-reason header).
    dlq_reason: ClassVar[str] = "invalid_id"


class InvalidWebhookError(BridgeError):
    """The body is not JSON, or not the shape of a PassEntry webhook event."""


class ShutdownRequested(Exception):
    """Raised out of a backoff sleep when shutdown was requested."""
