"""An audit's outcome: a table for people, JSON for machines, and the exit code.

Exit codes: 0 complete (no scan missing in any bucket), 4 scans missing, 2 bad usage or
configuration, 1 the audit could not run (API or Kafka unreachable after retries).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bridge.audit.compare import BucketResult
from bridge.audit.horizon import LiveHorizon

__all__ = ["EXIT_COMPLETE", "EXIT_FAILED", "EXIT_GAPS", "EXIT_USAGE", "AuditReport"]

EXIT_COMPLETE = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_GAPS = 4

# Ids listed under the table; the JSON has them all.
_IDS_SHOWN = 20


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class AuditReport:
    source_id: str
    since_ms: int
    until_ms: int
    bucket_ms: int
    horizon: LiveHorizon
    buckets: list[BucketResult] = field(default_factory=list)
    requests: int = 0
    kafka_records: int = 0
    seconds: float = 0.0
    repair: bool = False
    published: int = 0
    dead_letters_written: int = 0

    @property
    def missing(self) -> int:
        return sum(len(b.missing) for b in self.buckets)

    @property
    def extra(self) -> int:
        return sum(len(b.extra) for b in self.buckets)

    @property
    def dead_lettered(self) -> int:
        return sum(len(b.dead_lettered) for b in self.buckets)

    @property
    def complete(self) -> bool:
        return self.missing == 0

    def exit_code(self) -> int:
        return EXIT_COMPLETE if self.complete else EXIT_GAPS

    def to_json(self) -> dict[str, Any]:
        return {
            "sourceId": self.source_id,
            "since": _iso(self.since_ms),
            "until": _iso(self.until_ms),
            "bucketSeconds": self.bucket_ms // 1000,
            "complete": self.complete,
            "liveHorizon": None if self.horizon.ms is None else _iso(self.horizon.ms),
            "totals": {
                "passentry": sum(b.passentry or 0 for b in self.buckets),
                "kafka": sum(b.kafka for b in self.buckets),
                "missing": self.missing,
                "extra": self.extra,
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
                    "start": _iso(b.bucket.start_ms),
                    "end": _iso(b.bucket.end_ms),
                    "passentry": b.passentry,
                    "kafka": b.kafka,
                    "missing": len(b.missing),
                    "extra": len(b.extra),
                    "deadLettered": len(b.dead_lettered),
                    "repaired": b.repaired,
                    "status": b.status,
                    "live": b.live,
                    "missingIds": b.missing,
                    "extraIds": b.extra,
                    "deadLetteredIds": b.dead_lettered,
                }
                for b in self.buckets
            ],
        }

    def json_text(self) -> str:
        return json.dumps(self.to_json(), indent=2)

    def table(self) -> str:
        head = ["bucket", "PassEntry", "Kafka", "missing", "extra", "dead-lettered"]
        if self.repair:
            head.append("repaired")
        head.append("status")
        rows = [head]
        for b in self.buckets:
            row = [
                _iso(b.bucket.start_ms).replace("T", " ").removesuffix("Z"),
                "?" if b.passentry is None else str(b.passentry),
                str(b.kafka),
                str(len(b.missing)),
                str(len(b.extra)),
                str(len(b.dead_lettered)),
            ]
            if self.repair:
                row.append(str(b.repaired))
            row.append(b.status + (" (live)" if b.live else ""))
            rows.append(row)
        total = ["total", str(sum(b.passentry or 0 for b in self.buckets)),
                 str(sum(b.kafka for b in self.buckets)), str(self.missing), str(self.extra),
                 str(self.dead_lettered)]  # fmt: skip
        if self.repair:
            total.append(str(self.published))
        total.append("complete" if self.complete else "GAPS")
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
        out.append(
            f"source {self.source_id}: {_iso(self.since_ms)} .. {_iso(self.until_ms)},"
            f" {self.requests} API requests, {self.kafka_records} Kafka records read,"
            f" {self.seconds:.1f}s"
        )
        if self.horizon.ms is not None:
            out.append(
                f"live horizon {_iso(self.horizon.ms)}: buckets after it are (live), not repaired"
            )
        else:
            out.append(f"live horizon: none ({self.horizon.why})")
        for label, ids in (
            ("missing", [i for b in self.buckets for i in b.missing]),
            ("extra", [i for b in self.buckets for i in b.extra]),
        ):
            if ids:
                shown = ", ".join(ids[:_IDS_SHOWN])
                more = f" and {len(ids) - _IDS_SHOWN} more (--json lists all)" if len(
                    ids) > _IDS_SHOWN else ""  # fmt: skip
                out.append(f"{label}: {shown}{more}")
        if self.repair:
            out.append(
                f"repair: {self.published} scans published,"
                f" {self.dead_letters_written} dead letters written; checked again after"
            )
        return "\n".join(out)
