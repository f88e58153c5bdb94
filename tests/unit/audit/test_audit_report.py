"""Buckets, the live horizon, the report's table, JSON and exit code, and progress lines."""

from __future__ import annotations

import logging
import uuid

import pytest

from bridge.audit.buckets import Bucket, parse_duration_ms, split_range
from bridge.audit.compare import BucketResult, Ids
from bridge.audit.horizon import live_horizon
from bridge.audit.report import (
    EXIT_COMPLETE,
    EXIT_DUPLICATED,
    EXIT_GAPS,
    EXIT_GAPS_AND_DUPLICATED,
    AuditReport,
)
from bridge.kafka.checkpoint import make_checkpoint
from bridge.ops.progress import LogProgress

H = 3_600_000


@pytest.mark.parametrize(
    ("text", "ms"),
    [("90s", 90_000), ("15m", 900_000), ("1h", H), ("1d", 24 * H), ("1h30m", 5_400_000)],
)
def test_durations(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["", "1", "h", "1w", "500ms", "-1h", "0s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration_ms(text)


def test_buckets_cover_the_range_and_the_last_is_cut() -> None:
    assert split_range(0, 2 * H + 5, H) == [
        Bucket(0, H),
        Bucket(H, 2 * H),
        Bucket(2 * H, 2 * H + 5),
    ]
    with pytest.raises(ValueError):
        split_range(5, 5, H)


def test_live_horizon() -> None:
    assert live_horizon(None, lookback_ms=1, late_sweep_ms=1, margin_ms=1).ms is None
    w = uuid.UUID(int=(10 * H << 80) | (7 << 76) | (2 << 62))
    cp = make_checkpoint("s", w.int, [])
    horizon = live_horizon(cp, lookback_ms=300_000, late_sweep_ms=300_000, margin_ms=60_000)
    assert horizon.ms == 10 * H - 660_000
    # Webhooks published newer scans than polling has read: the cursor follows polling.
    pushed_ahead = make_checkpoint("s", w.int, [], polled_until_ms=9 * H)
    horizon = live_horizon(
        pushed_ahead, lookback_ms=300_000, late_sweep_ms=300_000, margin_ms=60_000
    )
    assert horizon.ms == 9 * H - 660_000
    reset = make_checkpoint("s", 0, [], since_ms=5 * H)
    assert (
        live_horizon(reset, lookback_ms=1, late_sweep_ms=1, margin_ms=60_000).ms == 5 * H - 60_000
    )


def _ids(*listed: str, times: int = 1) -> Ids:
    ids = Ids()
    for text in listed:
        ids.add(text, times)
    return ids


def _bucket(bucket: Bucket, passentry: int, kafka: int, **kinds: Ids) -> BucketResult:
    empty = {k: Ids() for k in ("missing", "duplicated", "unknown", "dead_lettered")}
    return BucketResult(bucket, passentry, kafka, **{**empty, **kinds})


def _report() -> AuditReport:
    cp = make_checkpoint("s", (3 * H) << 80 | (7 << 76) | (2 << 62), [])
    r = AuditReport("src", 0, 2 * H, H, live_horizon(cp, lookback_ms=0, late_sweep_ms=0,
                                                     margin_ms=0), requests=5)  # fmt: skip
    r.buckets = [
        _bucket(Bucket(0, H), 10, 10),
        _bucket(
            Bucket(H, 2 * H),
            12,
            9,
            missing=_ids("a", "b"),
            unknown=_ids("c"),
            dead_lettered=_ids("d"),
        ),
    ]
    return r


def test_table_and_exit_codes() -> None:
    r = _report()
    lines = r.table().splitlines()
    assert lines[0].split() == [
        "bucket",
        "PassEntry",
        "Kafka",
        "missing",
        "duplicated",
        "unknown",
        "dead-lettered",
        "status",
    ]
    assert lines[2].split()[-5:] == ["0", "0", "0", "0", "complete"]
    assert lines[3].split()[2:] == ["12", "9", "2", "0", "1", "1", "missing"]
    assert lines[5].split() == ["total", "22", "19", "2", "0", "1", "1", "GAPS"]
    assert "missing: a, b" in r.table()
    assert r.exit_code() == EXIT_GAPS
    r.buckets[0].duplicated = _ids("e", times=2)
    assert r.exit_code() == EXIT_GAPS_AND_DUPLICATED
    assert "duplicated: e" in r.table()
    r.buckets[1].missing = Ids()
    assert r.exit_code() == EXIT_DUPLICATED
    assert r.buckets[0].status == "duplicated"
    r.buckets[0].duplicated = Ids()
    assert r.exit_code() == EXIT_COMPLETE
    assert r.buckets[1].status == "unknown"  # an unknown id alone does not fail the audit


def test_json() -> None:
    r = _report()
    r.buckets[0].duplicated = _ids("e", times=2)
    doc = r.to_json()
    assert doc["complete"] is False
    assert doc["exitCode"] == EXIT_GAPS_AND_DUPLICATED
    assert doc["totals"] == {"passentry": 22, "kafka": 19, "missing": 2, "duplicated": 2,
                             "unknown": 1, "deadLettered": 1, "repaired": 0,
                             "repairDeadLetters": 0}  # fmt: skip
    assert doc["buckets"][1]["missingIds"] == ["a", "b"]
    assert doc["buckets"][0]["duplicatedIds"] == ["e"]
    assert doc["buckets"][0]["start"] == "1970-01-01T00:00:00Z"
    assert doc["cost"]["apiRequests"] == 5


def test_log_progress_reports_rate_and_eta(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    p = LogProgress("kafka", "records", 1000, every_s=10, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="bridge.progress"):
        now[0] = 5.0
        p.advance(100)
        assert not caplog.records, "no line before every_s has passed"
        now[0] = 10.0
        p.advance(100)
        p.close()
    first, last = caplog.records
    assert (first.done, first.total, first.rate_per_s, first.eta_s) == (200, 1000, 20.0, 40.0)  # type: ignore[attr-defined]
    assert last.getMessage() == "kafka done"


def test_a_terminal_gets_a_bar_with_total_rate_and_eta() -> None:
    import io

    from bridge.ops.progress import progress_factory

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    bar = progress_factory(screen)("backfill", "scans", 1000)
    bar.advance(400)
    bar.advance(600)
    bar.close()
    last = screen.getvalue().rstrip("\n").split("\r")[-1]
    assert last.startswith("backfill: 100%")
    assert "1000/1000" in last
    assert "scans/s" in last


def test_a_finished_bar_counts_whole_units_and_reaches_its_total() -> None:
    """The Kafka read's total counts offsets (transaction markers too), its count records:
    a finished read still ends at 100 %, and small counts are whole numbers."""
    import io

    from bridge.ops.progress import progress_factory

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    buckets = progress_factory(screen)("passentry", "buckets", 11)
    buckets.advance(2)
    buckets.close()
    assert "| 2/11 [" in screen.getvalue()
    assert "2.00" not in screen.getvalue()
    screen = Terminal()
    records = progress_factory(screen)("kafka", "records", 1812)
    records.advance(1664)
    records.finish()
    records.close()
    last = screen.getvalue().rstrip("\n").split("\r")[-1]
    assert last.startswith("kafka: 100%"), last
    assert "1812/1812" in last


def test_a_finished_log_progress_reports_its_total() -> None:
    p = LogProgress("kafka", "records", 1812, every_s=10, clock=lambda: 0.0)
    p.advance(1664)
    p.finish()
    assert (p.done, p.total) == (1812, 1812)


def test_who_writes_a_repair_or_backfill() -> None:
    from bridge.audit.repair import Writer, choose_writer
    from bridge.kafka.owners import Owner, Owners

    live = Owners(True, {"s": Owner("passentry-bridge@pod-a", "10.0.0.7", "m-1")}, "g")
    idle = Owners(True, {"s": None}, "g")
    unknown = Owners(False, {}, "", why="no consumer group (BRIDGE_GROUP_ID is empty)")
    assert choose_writer(live, "s", force=False, has_checkpoint=True) is Writer.BEHIND_LIVE
    assert choose_writer(live, "s", force=True, has_checkpoint=True) is Writer.AS_SOURCE
    assert choose_writer(idle, "s", force=False, has_checkpoint=True) is Writer.AS_SOURCE
    # No group to ask: a source that has published may be running; one that has not, not.
    assert choose_writer(unknown, "s", force=False, has_checkpoint=True) is Writer.BEHIND_LIVE
    assert choose_writer(unknown, "s", force=False, has_checkpoint=False) is Writer.AS_SOURCE


def test_a_cut_range_says_where_and_why() -> None:
    from bridge.audit.repair import Writer

    r = _report()
    r.repair, r.command, r.writer = True, "backfill", Writer.BEHIND_LIVE
    r.owner = "passentry-bridge@pod-a at 10.0.0.7 (member m-1)"
    r.publish_before_ms = H + 30 * 60_000
    note = r.cut_note()
    assert note is not None
    assert note.startswith("range cut at the live horizon 1970-01-01T01:30:00Z")
    assert "pod-a" in note
    r.publish_before_ms = r.until_ms
    assert r.cut_note() is None
    r.publish_before_ms = None
    assert (r.cut_note() or "").startswith("nothing was published")
