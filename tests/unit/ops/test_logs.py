"""Log lines say which source they are about: every line logged on a source's thread, or on
a pool thread it started, carries its ``source_id``."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from bridge.ops.logs import carry_source, setup_logging, working_for

log = logging.getLogger("bridge.test")


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """Logging as the bridge sets it up (JSON lines), into a buffer, for the test only."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    setup_logging("json", "INFO")
    out = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(out)
    try:
        yield out
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def logged(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_logged_while_working_for_a_source_carries_it(stream: io.StringIO) -> None:
    log.warning("before")
    with working_for("gate-east"):
        log.warning("poll cycle failed")
        with working_for("gate-west"):
            log.warning("nested")
        log.warning("after the nested one")
    log.warning("after")
    got = {str(line["msg"]): line.get("source_id") for line in logged(stream)}
    assert got == {
        "before": None,
        "poll cycle failed": "gate-east",
        "nested": "gate-west",
        "after the nested one": "gate-east",
        "after": None,
    }


def test_a_source_named_by_the_line_itself_wins(stream: io.StringIO) -> None:
    with working_for("gate-east"):
        log.info("stopped source", extra={"source_id": "gate-west"})
    assert [line["source_id"] for line in logged(stream)] == ["gate-west"]


def test_pool_threads_started_by_a_source_work_for_it(stream: io.StringIO) -> None:
    with working_for("gate-east"):
        pool = ThreadPoolExecutor(2, initializer=carry_source())
    plain = ThreadPoolExecutor(1)
    try:
        pool.submit(log.warning, "request failed, retrying").result()
        plain.submit(log.warning, "elsewhere").result()
    finally:
        pool.shutdown()
        plain.shutdown()
    got = {str(line["msg"]): line.get("source_id") for line in logged(stream)}
    assert got == {"request failed, retrying": "gate-east", "elsewhere": None}
