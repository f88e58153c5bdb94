"""The Python example (examples/python/print_scans.py, on ``bridge.consumer``) against topics
the bridge filled from the simulator: both encodings, each scan printed once."""

from __future__ import annotations

from tests.integration.consumers.consumer_support import (
    Filled,
    assert_prints_the_truth,
    python_command,
    run_consumer,
)


def test_python_consumer_prints_every_scan_once_from_single_object_records(
    single_object_topic: Filled,
) -> None:
    run = run_consumer(python_command(single_object_topic))
    assert_prints_the_truth(run, single_object_topic, "python")


def test_python_consumer_prints_every_scan_once_from_registry_records(
    registry_topic: Filled,
) -> None:
    run = run_consumer(python_command(registry_topic))
    assert_prints_the_truth(run, registry_topic, "python")


def test_python_consumer_without_the_registry_stops_at_the_first_record_naming_it(
    registry_topic: Filled,
) -> None:
    command = python_command(registry_topic)
    at = command.index("--registry-url")
    del command[at : at + 2]
    run = run_consumer(command)
    assert run.returncode != 0
    assert run.lines == []
    assert "Traceback" not in run.stderr  # one line that says why
    assert "registry wire format (schema id" in run.stderr
    assert "registry_url" in run.stderr
