"""The generated world and traffic: skewed, mixed, and at the asked rate."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from passentry_simulator import SimulatorServer

Make = Callable[..., SimulatorServer]


def test_traffic_is_skewed_and_mixed(make_server: Make) -> None:
    server = make_server(backlog=3000, readers=10, passes=200)
    scans = server.store.all_scans()
    by_reader = Counter(s.spec.reader.id for s in scans)
    assert by_reader["gate-001"] > 3 * by_reader["gate-010"]
    assert {s.spec.status for s in scans} == {"successful", "failed"}
    assert {s.spec.scan_type for s in scans} == {"nfc", "barcode"}
    external = [s for s in scans if s.spec.validation_type == "externalValidation"]
    assert 0 < len(external) < len(scans) / 3
    assert any(s.spec.pass_ is None for s in external)
    assert all(s.spec.pass_ is not None for s in scans if s not in external)
    readers = server.store.world.readers
    assert len({r.entity_id for r in readers}) == 3
    statuses = Counter(p.status for p in server.store.world.passes)
    assert statuses.most_common(1)[0][0] == "active"


def test_live_rate_stops_after_duration(make_server: Make) -> None:
    server = make_server(rate=200.0, duration_s=0.3)
    assert server.sim.traffic_done.wait(5), "live traffic did not finish after 0.3 s"
    # 200/s for 0.3 s, and nothing after the generator stopped.
    assert server.store.counts()[0] == 60
