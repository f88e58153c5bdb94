"""What the dlq commands print: counts by reason and outcome, and the replay's notes."""

from __future__ import annotations

import json

from bridge.audit.horizon import LiveHorizon
from bridge.audit.repair import Writer
from bridge.dlq.letters import DeadLetter, History, letter_id
from bridge.dlq.metrics import replay_registry
from bridge.dlq.report import ListReport, Outcome, ReplayItem, ReplayReport, ShowReport

SCAN = "01a244f8-9d77-73f4-8a50-e34abb6797a5"


def letter(
    reason: str, at_ms: int, raw: bytes = b'{"id": "x"}', by: str | None = None
) -> DeadLetter:
    return DeadLetter(1, at_ms, at_ms, reason, f"{reason}: why", SCAN, "https://pe/scans", None,
                      by, raw, letter_id(SCAN, raw))  # fmt: skip


def replay_report(dry_run: bool = False) -> ReplayReport:
    report = ReplayReport("s1", "dlq", None, None, [], dry_run=dry_run,
                          writer=Writer.BEHIND_LIVE, owner="pod-a",
                          horizon=LiveHorizon(1_700_000_000_000, None, "the rule"))  # fmt: skip
    report.add(ReplayItem("a", "late_scan", Outcome.PUBLISHED))
    report.add(ReplayItem("b", "late_scan", Outcome.AHEAD_OF_HORIZON))
    report.add(ReplayItem("c", "invalid_id", Outcome.STILL_FAILING, detail="not a UUID"))
    report.add(ReplayItem("d", "late_scan", Outcome.NEW_REASON, "invalid_scan", "no status"))
    report.published, report.dead_letters_written = 1, 1
    return report


def test_the_replay_counts_each_reason_by_outcome() -> None:
    report = replay_report()
    assert report.counts() == {
        "invalid_id": {"published": 0, "already_published": 0, "ahead_of_horizon": 0,
                       "still_failing": 1, "new_reason": 0},
        "late_scan": {"published": 1, "already_published": 0, "ahead_of_horizon": 1,
                      "still_failing": 0, "new_reason": 1},
    }  # fmt: skip
    data = json.loads(report.json_text())
    assert data["totals"]["published"] == 1
    assert data["writer"] == "behind_live"
    assert data["items"][3] == {"id": "d", "reason": "late_scan", "outcome": "new_reason",
                                "newReason": "invalid_scan", "detail": "no status"}  # fmt: skip
    table = report.table()
    assert "late_scan           1                  0                 1" in table
    assert "1 left: created after the live horizon 2023-11-14T22:13:20Z" in table
    assert "1 scans published, 1 dead letters written" in table
    assert "written behind the live bridge (pod-a owns it)" in table


def test_a_dry_run_says_what_would_be_published_and_that_nothing_was_written() -> None:
    assert (
        "dry run: 1 scans would be published; nothing was written"
        in replay_report(dry_run=True).table()
    )


def test_the_list_counts_reasons_now_and_shows_the_newest_first() -> None:
    older = History(letter("late_scan", 100), letter("invalid_scan", 300), count=2)
    newer = History(letter("invalid_id", 500), letter("invalid_id", 500))
    report = ListReport("s1", "dlq", None, None, [], [older, newer], limit=1, letters_read=3)
    assert report.counts() == {"invalid_id": {"deadLetters": 1, "scans": 1},
                               "invalid_scan": {"deadLetters": 2, "scans": 1}}  # fmt: skip
    assert [h.reason for h in report.newest()] == ["invalid_id"]
    table = report.table()
    assert "1 more not shown (--limit 0 shows all)" in table
    data = report.to_json()
    assert data["deadLetters"][0]["reason"] == "invalid_id"


def test_show_gives_the_reason_now_the_first_error_and_the_payload() -> None:
    first, second = letter("late_scan", 100), letter("invalid_scan", 300, by="dlq replay run 1")
    history = History(first, second, count=2, letters=[first, second])
    report = ShowReport("s1", history)
    data = report.to_json()
    assert (data["reason"], data["firstReason"], data["firstError"]) == (
        "invalid_scan",
        "late_scan",
        "late_scan: why",
    )
    assert data["payload"] == {"id": "x"}
    assert [h["writtenBy"] for h in data["history"]] == [None, "dlq replay run 1"]
    text = report.text()
    assert "first error:  late_scan: late_scan: why" in text
    assert (
        ShowReport("s1", History(first, letter("x", 1, raw=b"\xff"))).to_json()["payload"]
        == "\ufffd"
    )


def test_the_replay_metrics_label_reasons_and_outcomes() -> None:
    registry = replay_registry(replay_report(), succeeded=True)
    value = registry.get_sample_value(
        "passentry_bridge_dlq_replay_scans", {"reason": "late_scan", "outcome": "published"}
    )
    assert value == 1
    assert registry.get_sample_value("passentry_bridge_dlq_replay_published_scans") == 1
    failed = replay_registry(None, succeeded=False)
    assert failed.get_sample_value("passentry_bridge_dlq_replay_last_failure_timestamp_seconds")
