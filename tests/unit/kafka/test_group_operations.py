"""``group_operations`` asks again while a group's coordinator is loading or moving (a young
cluster, or one that just lost a broker), and reports any other answer at once."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from bridge.kafka.permissions import group_operations


class Described:
    def __init__(self, operations: list[Any]) -> None:
        self.authorized_operations = operations


class Op:
    def __init__(self, name: str) -> None:
        self.name = name


class FakeAdmin:
    """Answers each group with the next of its scripted answers (the last one repeats)."""

    def __init__(self, answers: dict[str, list[KafkaError | list[str]]]) -> None:
        self.answers = answers
        self.asked: list[list[str]] = []

    def describe_consumer_groups(self, names: list[str], **kwargs: Any) -> dict[str, Future[Any]]:
        self.asked.append(list(names))
        out: dict[str, Future[Any]] = {}
        for name in names:
            script = self.answers[name]
            answer = script.pop(0) if len(script) > 1 else script[0]
            future: Future[Any] = Future()
            if isinstance(answer, KafkaError):
                future.set_exception(KafkaException(answer))
            else:
                future.set_result(Described([Op(op) for op in answer]))
            out[name] = future
        return out


def test_a_moving_coordinator_is_asked_again_and_other_errors_are_not() -> None:
    admin = FakeAdmin(
        {
            "bridge": [
                KafkaError(KafkaError.COORDINATOR_NOT_AVAILABLE),
                KafkaError(KafkaError.NOT_COORDINATOR),
                ["READ", "DESCRIBE"],
            ],
            "denied": [KafkaError(KafkaError.GROUP_AUTHORIZATION_FAILED)],
        }
    )
    found = group_operations(admin, ["bridge", "denied"], timeout_s=10)  # type: ignore[arg-type]
    assert found["bridge"] == frozenset({"Read", "Describe"})
    denied = found["denied"]
    assert isinstance(denied, KafkaError)
    assert denied.code() == KafkaError.GROUP_AUTHORIZATION_FAILED
    assert admin.asked == [["bridge", "denied"], ["bridge"], ["bridge"]]


def test_a_coordinator_that_never_settles_is_reported_after_the_timeout() -> None:
    admin = FakeAdmin({"bridge": [KafkaError(KafkaError.COORDINATOR_LOAD_IN_PROGRESS)]})
    found = group_operations(admin, ["bridge"], timeout_s=1.2)  # type: ignore[arg-type]
    err = found["bridge"]
    assert isinstance(err, KafkaError)
    assert err.code() == KafkaError.COORDINATOR_LOAD_IN_PROGRESS
    assert 2 <= len(admin.asked) <= 4
