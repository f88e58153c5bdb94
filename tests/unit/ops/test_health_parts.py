"""The process is ready only while the parts it needs besides its sources are."""

from __future__ import annotations

import pytest

from bridge.ops.health import Health, MemberHealth, Probe, ProcessHealth

_WHY = "the webhook inbox passentry.bridge.webhooks is not ready: the topic does not exist yet"


class _Part:
    def __init__(self) -> None:
        self.probe = Probe(False, (_WHY,))

    def readiness(self) -> Probe:
        return self.probe


@pytest.mark.parametrize("grouped", [False, True])
def test_a_part_not_ready_makes_the_process_unready_and_says_why(grouped: bool) -> None:
    member = MemberHealth() if grouped else None
    if member is not None:
        member.joined(True)
    health = ProcessHealth(member)
    source = Health(max_poll_age_s=60)
    source.poll_succeeded()
    source.kafka(reachable=True)
    health.add("gates", source)
    assert health.readiness() == Probe(True, ())
    part = _Part()
    health.needs("webhooks", part.readiness)
    assert health.readiness() == Probe(False, (f"webhooks: {_WHY}",))
    part.probe = Probe(True, ())
    assert health.readiness() == Probe(True, ())
