"""The Go example (examples/go: franz-go, hamba/avro), built (its unit tests first) and run
against topics the bridge filled from the simulator: both encodings, each scan printed once."""

from __future__ import annotations

import pytest

from tests.integration.consumers.consumer_support import (
    BOOTSTRAP,
    BUILD_TIMEOUT_S,
    Filled,
    assert_prints_the_truth,
    build,
    go_command,
    run_consumer,
)

# A cold build of the examples (Maven, Go) may be part of the first test.
pytestmark = pytest.mark.timeout(BUILD_TIMEOUT_S + 300)


def test_go_consumer_prints_every_scan_once_from_single_object_records(
    single_object_topic: Filled,
) -> None:
    run = run_consumer(go_command(build("go"), single_object_topic, BOOTSTRAP["servers"]))
    assert_prints_the_truth(run, single_object_topic, "go")


def test_go_consumer_prints_every_scan_once_from_registry_records(registry_topic: Filled) -> None:
    run = run_consumer(go_command(build("go"), registry_topic, BOOTSTRAP["servers"]))
    assert_prints_the_truth(run, registry_topic, "go")
