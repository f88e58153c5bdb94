"""A flood of refusals is a few log lines with counts, and every refusal is counted."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bridge.webhook.refusals import RefusalLog


def test_a_flood_is_one_line_then_one_count_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    async def flood() -> None:
        refusals = RefusalLog(interval_s=0.2)
        for n in range(1000):
            refusals.refused("gates", f"10.0.0.{n % 250}")
        await asyncio.sleep(0.5)  # two intervals pass: the count, then a quiet one
        refusals.refused("gates", "10.0.0.1")
        refusals.close()

    with caplog.at_level(logging.WARNING):
        asyncio.run(flood())
    lines = [r for r in caplog.records if r.name == "bridge.webhook.receiver"]
    assert [r.__dict__["refused"] for r in lines] == [1, 999, 1]
    assert "999 with a bad or missing signature in the last 0.2s" in lines[1].getMessage()
    assert lines[1].__dict__["remote"] == "10.0.0.249"
