"""What ``dlq list``, ``dlq show`` and ``dlq replay`` print: a table for people, JSON for
machines (``--json``)."""

from __future__ import annotations

import enum
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec

from bridge.audit.horizon import LiveHorizon
from bridge.audit.repair import Writer
from bridge.audit.report import iso, writer_line
from bridge.dlq.letters import DeadLetter, History

__all__ = [
    "ListReport",
    "Outcome",
    "ReplayItem",
    "ReplayReport",
    "ShowReport",
]

_NO_HORIZON = LiveHorizon(None, None, "not read")


class Outcome(enum.Enum):
    """What a replay did with one dead-lettered scan."""

    # Passes today: published now.
    PUBLISHED = "published"
    # Passes today, and the scans topic holds it already (an earlier replay, a repair, or
    # the live bridge published it): nothing to do.
    ALREADY_PUBLISHED = "already_published"
    # Passes today, but is newer than the live bridge's horizon: left for a later replay.
    AHEAD_OF_HORIZON = "ahead_of_horizon"
    # Fails today, for the same reason: it stays.
    STILL_FAILING = "still_failing"
    # Fails today, for another reason: it stays, and a dead letter says the new reason.
    NEW_REASON = "new_reason"


@dataclass(frozen=True, slots=True)
class ReplayItem:
    id: str
    # Its reason before the replay.
    reason: str
    outcome: Outcome
    new_reason: str | None = None
    detail: str | None = None


def _when(ms: int | None, default: str) -> str:
    return default if ms is None else iso(ms)


def _table(rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]

    def line(row: list[str]) -> str:
        cells = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths, strict=True))]  # fmt: skip
        return "  ".join(cells).rstrip()

    return [line(rows[0]), line(["-" * w for w in widths]), *(line(r) for r in rows[1:])]


@dataclass(slots=True)
class ReplayReport:
    source_id: str
    topic: str
    since_ms: int | None
    until_ms: int | None
    reasons: list[str]
    dry_run: bool = False
    writer: Writer | None = None
    owner: str | None = None
    owners_unknown: str | None = None
    horizon: LiveHorizon = _NO_HORIZON
    # Behind a live bridge: scans created before this may be published (None: no limit).
    publish_before_ms: int | None = None
    items: list[ReplayItem] = field(default_factory=list)
    published: int = 0
    dead_letters_written: int = 0
    # Published without a pass and reader from PassEntry: it no longer lists the scan.
    not_in_passentry: int = 0
    letters_read: int = 0
    kafka_records: int = 0
    requests: int = 0
    seconds: float = 0.0

    def add(self, item: ReplayItem) -> None:
        self.items.append(item)

    def counts(self) -> dict[str, dict[str, int]]:
        """Per reason (before the replay), how many ids had each outcome."""
        out: dict[str, dict[str, int]] = {}
        for item in self.items:
            per = out.setdefault(item.reason, {o.value: 0 for o in Outcome})
            per[item.outcome.value] += 1
        return dict(sorted(out.items()))

    def outcomes(self) -> Counter[Outcome]:
        return Counter(item.outcome for item in self.items)

    def to_json(self) -> dict[str, Any]:
        totals = self.outcomes()
        return {
            "sourceId": self.source_id,
            "topic": self.topic,
            "since": _when(self.since_ms, "start"),
            "until": _when(self.until_ms, "now"),
            "reasons": self.reasons,
            "dryRun": self.dry_run,
            "writer": None if self.writer is None else self.writer.name.lower(),
            "liveOwner": self.owner,
            "liveHorizon": None if self.horizon.ms is None else iso(self.horizon.ms),
            "publishedBefore": _when(self.publish_before_ms, "") or None,
            "totals": {o.value: totals.get(o, 0) for o in Outcome},
            "byReason": self.counts(),
            "published": self.published,
            "deadLettersWritten": self.dead_letters_written,
            "notInPassEntry": self.not_in_passentry,
            "cost": {
                "deadLettersRead": self.letters_read,
                "kafkaRecordsRead": self.kafka_records,
                "apiRequests": self.requests,
                "seconds": round(self.seconds, 3),
            },
            "items": [_item_json(i) for i in self.items],
        }

    def json_text(self) -> str:
        return json.dumps(self.to_json(), indent=2)

    def table(self) -> str:
        names = [o.value.replace("_", " ") for o in Outcome]
        rows = [["reason", *names]]
        for reason, per in self.counts().items():
            rows.append([reason, *(str(per[o.value]) for o in Outcome)])
        totals = self.outcomes()
        rows.append(["total", *(str(totals.get(o, 0)) for o in Outcome)])
        out = _table(rows, set(range(1, len(rows[0])))) if self.items else []
        out.append("")
        out += self.summary()
        return "\n".join(out)

    def summary(self) -> list[str]:
        verb = "would be" if self.dry_run else "were"
        out = [
            f"source {self.source_id}: dead letters in {self.topic} from"
            f" {_when(self.since_ms, 'the start')} to {_when(self.until_ms, 'now')}"
            + (f" with reason {', '.join(self.reasons)}" if self.reasons else "")
            + f": {len(self.items)} scans ({self.letters_read} dead letters read),"
            f" {self.requests} API requests, {self.kafka_records} Kafka records read,"
            f" {self.seconds:.1f}s"
        ]
        if self.writer is not None:
            writes = "would write" if self.dry_run else "written"
            out.append(writer_line(writes, self.writer, self.owner, self.owners_unknown))
        ahead = self.outcomes().get(Outcome.AHEAD_OF_HORIZON, 0)
        if ahead:
            if self.horizon.ms is None:
                out.append(f"{ahead} left: the live bridge has no horizon yet ({self.horizon.why})")
            else:
                out.append(
                    f"{ahead} left: created after the live horizon {iso(self.horizon.ms)}"
                    f" ({self.horizon.why}); replay again later"
                )
        published = self.outcomes().get(Outcome.PUBLISHED, 0)
        if self.dry_run:
            out.append(f"dry run: {published} scans {verb} published; nothing was written")
        else:
            out.append(
                f"{self.published} scans published, {self.dead_letters_written} dead letters"
                " written (a new reason)"
            )
        if self.not_in_passentry:
            out.append(
                f"{self.not_in_passentry} scans PassEntry no longer lists: published without"
                " their reader (their pass fetched by id)"
            )
        return out


@dataclass(frozen=True, slots=True)
class ListReport:
    source_id: str
    topic: str
    since_ms: int | None
    until_ms: int | None
    reasons: list[str]
    histories: list[History]
    limit: int
    letters_read: int

    def counts(self) -> dict[str, dict[str, int]]:
        """Per reason now: dead letters and distinct scans."""
        out: dict[str, dict[str, int]] = {}
        for h in self.histories:
            per = out.setdefault(h.reason, {"deadLetters": 0, "scans": 0})
            per["deadLetters"] += h.count
            per["scans"] += 1
        return dict(sorted(out.items()))

    def newest(self) -> list[History]:
        ordered = sorted(self.histories, key=lambda h: h.latest.at_ms, reverse=True)
        return ordered if self.limit <= 0 else ordered[: self.limit]

    def to_json(self) -> dict[str, Any]:
        return {
            "sourceId": self.source_id,
            "topic": self.topic,
            "since": _when(self.since_ms, "start"),
            "until": _when(self.until_ms, "now"),
            "reasons": self.reasons,
            "counts": self.counts(),
            "deadLetters": [_history_json(h) for h in self.newest()],
        }

    def json_text(self) -> str:
        return json.dumps(self.to_json(), indent=2)

    def table(self) -> str:
        counts = self.counts()
        rows = [["reason", "dead letters", "scans"]]
        rows += [[r, str(c["deadLetters"]), str(c["scans"])] for r, c in counts.items()]
        rows.append(["total", str(sum(c["deadLetters"] for c in counts.values())),
                     str(len(self.histories))])  # fmt: skip
        out = _table(rows, {1, 2})
        shown = self.newest()
        if shown:
            out.append("")
            rows = [["dead-lettered", "reason", "id", "letters", "detail"]]
            rows += [
                [iso(h.latest.at_ms), h.reason, h.id, str(h.count), h.latest.detail[:80]]
                for h in shown
            ]
            out += _table(rows, {3})
        out.append("")
        more = len(self.histories) - len(shown)
        out.append(
            f"source {self.source_id}: {len(self.histories)} scans in {self.topic} from"
            f" {_when(self.since_ms, 'the start')} to {_when(self.until_ms, 'now')}"
            + (f" with reason {', '.join(self.reasons)}" if self.reasons else "")
            + f" ({self.letters_read} dead letters read)"
            + (f"; {more} more not shown (--limit 0 shows all)" if more > 0 else "")
        )
        return "\n".join(out)


@dataclass(frozen=True, slots=True)
class ShowReport:
    source_id: str
    history: History

    def to_json(self) -> dict[str, Any]:
        h = self.history
        return {
            **_history_json(h),
            "sourceId": self.source_id,
            "firstError": h.first.detail,
            "history": [_letter_json(letter) for letter in h.letters],
            "payload": _payload(h.latest.raw),
        }

    def json_text(self) -> str:
        return json.dumps(self.to_json(), indent=2)

    def text(self) -> str:
        h = self.history
        first, now = h.first, h.latest
        out = [
            f"dead letter {h.id} (source {self.source_id})",
            f"reason:       {now.reason} (since {iso(now.at_ms)}"
            + (f", by {now.written_by})" if now.written_by else ")"),
            f"first error:  {first.reason}: {first.detail} ({iso(first.at_ms)})",
            f"scan id:      {now.scan_id or '(none)'}",
            f"source url:   {now.source_url}",
            "history:",
        ]
        for letter in h.letters:
            by = f"  [{letter.written_by}]" if letter.written_by else ""
            out.append(
                f"  {iso(letter.at_ms)}  {letter.reason}  partition {letter.partition} offset"
                f" {letter.offset}: {letter.detail}{by}"
            )
        payload = _payload(now.raw)
        out.append("payload:")
        out.append(json.dumps(payload, indent=2) if not isinstance(payload, str) else payload)
        return "\n".join(out)


def _item_json(item: ReplayItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "reason": item.reason,
        "outcome": item.outcome.value,
        "newReason": item.new_reason,
        "detail": item.detail,
    }


def _history_json(h: History) -> dict[str, Any]:
    return {
        "id": h.id,
        "scanId": h.latest.scan_id,
        "reason": h.reason,
        "detail": h.latest.detail,
        "deadLetteredAt": iso(h.latest.at_ms),
        "firstReason": h.first.reason,
        "firstDeadLetteredAt": iso(h.first.at_ms),
        "deadLetters": h.count,
    }


def _letter_json(letter: DeadLetter) -> dict[str, Any]:
    return {
        "reason": letter.reason,
        "detail": letter.detail,
        "deadLetteredAt": iso(letter.at_ms),
        "partition": letter.partition,
        "offset": letter.offset,
        "writtenBy": letter.written_by,
    }


def _payload(raw: bytes) -> Any:
    """The scan's JSON as a value, or its text when it is not JSON."""
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return raw.decode(errors="replace")
