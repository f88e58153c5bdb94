from __future__ import annotations

import pytest

from bridge.errors import (
    ApiUnavailableError,
    CommitOutcomeUnknownError,
    InvalidUUIDv7Error,
    MalformedPageError,
    RegistryUnavailableError,
    RetriableError,
    TransactionAbortedError,
)


@pytest.mark.parametrize(
    ("error", "outcome", "retry_reason"),
    [
        (ApiUnavailableError("502", reason="server_error"), "api_error", "server_error"),
        (MalformedPageError("truncated"), "api_error", "malformed"),
        (RegistryUnavailableError("503"), "registry_error", "other"),
        (TransactionAbortedError("aborted"), "kafka_error", "other"),
        (CommitOutcomeUnknownError("no answer"), "kafka_error", "other"),
    ],
)
def test_a_retriable_error_carries_its_metric_labels(
    error: RetriableError, outcome: str, retry_reason: str
) -> None:
    assert error.cycle_outcome == outcome
    assert error.retry_reason == retry_reason


def test_an_invalid_id_carries_its_dead_letter_reason() -> None:
    assert InvalidUUIDv7Error("not a UUIDv7").dlq_reason == "invalid_id"
