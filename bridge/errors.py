"""Every error the bridge raises, branched by what the caller should do about it.

::

    BridgeError
    ├── ConfigError              refuse to start; the message names the setting
    ├── RetriableError           try again later (with backoff); nothing is lost
    │   ├── ApiUnavailableError  timeout, connection error, 408, 429, 5xx
    │   ├── MalformedPageError   a page that is not the JSON:API document we expect
    │   └── KafkaRetriableError  a Kafka call that librdkafka says may succeed if repeated
    ├── FatalError               stop and exit non-zero so the orchestrator restarts us
    │   ├── ApiAuthError         401/403: the token is wrong or lacks rights
    │   ├── ApiRequestError      any other 4xx: we sent something PassEntry refuses
    │   ├── KafkaFatalError      fenced, or a fatal producer error
    │   └── TopicMissingError    a topic is missing and creating topics is switched off
    └── PoisonRecordError        this one record cannot be processed: dead-letter it
"""

from __future__ import annotations

__all__ = [
    "ApiAuthError",
    "ApiRequestError",
    "ApiUnavailableError",
    "BridgeError",
    "ConfigError",
    "FatalError",
    "KafkaFatalError",
    "KafkaRetriableError",
    "MalformedPageError",
    "PoisonRecordError",
    "RetriableError",
    "TopicMissingError",
]


class BridgeError(Exception):
    """Root of every error the bridge raises on purpose."""


class ConfigError(BridgeError):
    """A setting is missing or invalid. The message names it; the token never appears."""


class RetriableError(BridgeError):
    """A transient failure: the same call may succeed later."""


class ApiUnavailableError(RetriableError):
    """PassEntry did not answer usefully: transport error, 408, 429 or 5xx."""

    def __init__(self, message: str, *, reason: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        # One of: timeout, connection, rate_limited, server_error (a metric label).
        self.reason = reason
        self.retry_after = retry_after


class MalformedPageError(RetriableError):
    """The answer was 2xx but not a decodable page (truncated body, HTML, bad JSON)."""


class KafkaRetriableError(RetriableError):
    """librdkafka flagged the error retriable, or the broker could not be reached in time."""


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


class TopicMissingError(FatalError):
    """A topic the bridge writes to does not exist and topic creation is disabled."""


class PoisonRecordError(BridgeError):
    """One record cannot be processed. ``reason`` is a short fixed label for metrics."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
