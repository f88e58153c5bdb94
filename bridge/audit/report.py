"""An audit's outcome: a table for people, JSON for machines, and the exit code.

Exit codes: 0 complete (nothing missing, nothing twice), 4 scans missing, 5 scans published
more than once, 6 both, 2 bad usage or configuration, 1 the audit could not run (API or
Kafka unreachable after retries).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bridge.audit.compare import BucketResult, Ids
from bridge.audit.horizon import LiveHorizon
from bridge.audit.repair import Writer

__all__ = [
    "EXIT_COMPLETE",
    "EXIT_DUPLICATED",
    "EXIT_FAILED",
    "EXIT_GAPS",
    "EXIT_GAPS_AND_DUPLICATED",
    "EXIT_USAGE",
    "AuditReport",
    "iso",
    "writer_line",
]

EXIT_COMPLETE = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_GAPS = 4
EXIT_DUPLICATED = 5
EXIT_GAPS_AND_DUPLICATED = 6

# Ids listed under the table; the JSON has them all.
_IDS_SHOWN = 20
_NO_HORIZON = LiveHorizon(None, None, "not read")


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def writer_line(verb: str, writer: Writer, owner: str | None, owners_unknown: str | None) -> str:
    """How a repair, backfill or replay writes, and whom it found owning the source."""
    if owner:
        whose = f"{owner} owns it"
    elif owners_unknown:
        whose = f"owner unknown: {owners_unknown}"
    else:
        whose = "no live member owns it"
    return f"{verb} {writer.value} ({whose})"


@dataclass(slots=True)
class AuditReport:
    source_id: str
    since_ms: int
    until_ms: int
    bucket_ms: int
    horizon: LiveHorizon = _NO_HORIZON
    buckets: list[BucketResult] = field(default_factory=list)
    requests: int = 0
    kafka_records: int = 0
    seconds: float = 0.0
    repair: bool = False
    command: str = "audit"
    # Repair and backfill: who wrote, the live owner if any, and how far they might write.
    writer: Writer | None = None
    owner: str | None = None
    owners_unknown: str | None = None
    publish_before_ms: int | None = None
    published: int = 0
    dead_letters_written: int = 0

    def _total(self, kind: str) -> int:
        return sum(getattr(b, kind).count for b in self.buckets)

    @property
    def missing(self) -> int:
        return self._total("missing")

    @property
    def duplicated(self) -> int:
        return self._total("duplicated")

    @property
    def unknown(self) -> int:
        return self._total("unknown")

    @property
    def dead_lettered(self) -> int:
        return self._total("dead_lettered")

    @property
    def complete(self) -> bool:
        return self.missing == 0 and self.duplicated == 0

    def exit_code(self) -> int:
        if self.missing and self.duplicated:
            return EXIT_GAPS_AND_DUPLICATED
        if self.missing:
            return EXIT_GAPS
        if self.duplicated:
            return EXIT_DUPLICATED
        return EXIT_COMPLETE

    def cut_note(self) -> str | None:
        """Where a repair or backfill stopped short of ``--until``, and why."""
        if not self.repair:
            return None
        before = self.publish_before_ms
        if before is not None and before >= self.until_ms:
            return None
        who = f"a live bridge ({self.owner})" if self.owner else "a live bridge may"
        if before is None:
            return (
                f"nothing was published: {who} owns source {self.source_id} and has no"
                f" checkpoint yet ({self.horizon.why}); it publishes what it reads itself"
            )
        return (
            f"range cut at the live horizon {iso(before)}: newer scans are left to {who}"
            f" ({self.horizon.why})"
        )

    def to_json(self) -> dict[str, Any]:
        def ids(kind: Ids) -> list[str]:
            return kind.listed

        return {
            "sourceId": self.source_id,
            "since": iso(self.since_ms),
            "until": iso(self.until_ms),
            "bucketSeconds": self.bucket_ms // 1000,
            "complete": self.complete,
            "exitCode": self.exit_code(),
            "liveHorizon": None if self.horizon.ms is None else iso(self.horizon.ms),
            "writer": None if self.writer is None else self.writer.name.lower(),
            "liveOwner": self.owner,
            "publishedBefore": None
            if self.publish_before_ms is None
            else iso(min(self.publish_before_ms, self.until_ms)),
            "totals": {
                "passentry": sum(b.passentry or 0 for b in self.buckets),
                "kafka": sum(b.kafka for b in self.buckets),
                "missing": self.missing,
                "duplicated": self.duplicated,
                "unknown": self.unknown,
                "deadLettered": self.dead_lettered,
                "repaired": self.published,
                "repairDeadLetters": self.dead_letters_written,
            },
            "cost": {
                "apiRequests": self.requests,
                "kafkaRecordsRead": self.kafka_records,
                "seconds": round(self.seconds, 3),
            },
            "buckets": [
                {
                    "start": iso(b.bucket.start_ms),
                    "end": iso(b.bucket.end_ms),
                    "passentry": b.passentry,
                    "kafka": b.kafka,
                    "missing": b.missing.count,
                    "duplicated": b.duplicated.count,
                    "unknown": b.unknown.count,
                    "deadLettered": b.dead_lettered.count,
                    "repaired": b.published,
                    "status": b.status,
                    "live": b.live,
                    "missingIds": ids(b.missing),
                    "duplicatedIds": ids(b.duplicated),
                    "unknownIds": ids(b.unknown),
                    "deadLetteredIds": ids(b.dead_lettered),
                }
                for b in self.buckets
            ],
        }

    def json_text(self) -> str:
        return json.dumps(self.to_json(), indent=2)

    def table(self) -> str:
        head = ["bucket", "PassEntry", "Kafka", "missing", "duplicated", "unknown",
                "dead-lettered"]  # fmt: skip
        if self.repair:
            head.append("repaired")
        head.append("status")
        rows = [head]
        for b in self.buckets:
            row = [
                iso(b.bucket.start_ms).replace("T", " ").removesuffix("Z"),
                "?" if b.passentry is None else str(b.passentry),
                str(b.kafka),
                str(b.missing.count),
                str(b.duplicated.count),
                str(b.unknown.count),
                str(b.dead_lettered.count),
            ]
            if self.repair:
                row.append(str(b.published))
            row.append(b.status + (" (live)" if b.live else ""))
            rows.append(row)
        total = ["total", str(sum(b.passentry or 0 for b in self.buckets)),
                 str(sum(b.kafka for b in self.buckets)), str(self.missing),
                 str(self.duplicated), str(self.unknown), str(self.dead_lettered)]  # fmt: skip
        if self.repair:
            total.append(str(self.published))
        total.append(self._verdict())
        rows.append(total)
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]

        def line(row: list[str]) -> str:
            cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                     enumerate(zip(row, widths, strict=True))]  # fmt: skip
            return "  ".join(cells).rstrip()

        out = [line(rows[0]), line(["-" * w for w in widths])]
        out += [line(r) for r in rows[1:-1]]
        out += [line(["-" * w for w in widths]), line(rows[-1])]
        out.append("")
        out += self.summary()
        for label, kind in (("missing", "missing"), ("duplicated", "duplicated"),
                            ("unknown", "unknown")):  # fmt: skip
            listed = [i for b in self.buckets for i in getattr(b, kind).listed]
            if listed:
                shown = ", ".join(listed[:_IDS_SHOWN])
                more = f" and {len(listed) - _IDS_SHOWN} more (--json lists all)" if len(
                    listed) > _IDS_SHOWN else ""  # fmt: skip
                out.append(f"{label}: {shown}{more}")
        return "\n".join(out)

    def summary(self) -> list[str]:
        """The lines under the table (all a backfill prints)."""
        out = [
            f"source {self.source_id}: {iso(self.since_ms)} .. {iso(self.until_ms)},"
            f" {self.requests} API requests, {self.kafka_records} Kafka records read,"
            f" {self.seconds:.1f}s"
        ]
        if self.writer is not None:
            out.append(writer_line("written", self.writer, self.owner, self.owners_unknown))
        note = self.cut_note()
        if note is not None:
            out.append(note)
        elif self.writer is None:
            if self.horizon.ms is not None:
                out.append(
                    f"live horizon {iso(self.horizon.ms)}: buckets after it are (live), not"
                    " repaired"
                )
            else:
                out.append(f"live horizon: none ({self.horizon.why})")
        if self.repair:
            out.append(
                f"{self.published} scans published, {self.dead_letters_written} dead letters"
                " written" + ("; checked again after" if self.command == "audit" else "")
            )
        if self.duplicated:
            out.append(
                f"{self.duplicated} record(s) beyond one per scan id: consumers dedupe by"
                " scan id (README: For consumers)"
            )
        return out

    def _verdict(self) -> str:
        if self.missing and self.duplicated:
            return "GAPS+DUPLICATED"
        if self.missing:
            return "GAPS"
        if self.duplicated:
            return "DUPLICATED"
        return "complete"
