"""The simulator's data: readers, passes, a skewed traffic generator, and the scan store.

Every resource is rendered to JSON bytes once, when it is created, so that serving a page
is a byte join rather than a serialisation (that is what lets one core serve tens of
thousands of scans per second).

Visible scans sit in a list sorted by ``key = (minted UUIDv7 as int, id)``. For a healthy
scan that is simply its id order. A scan given a bad id (fault) keeps the key of the UUIDv7
it would have had, so it still sorts and filters by its creation time, as a server that
stores ``created_at`` beside a non-time-ordered id would. Scans hit by the late-visibility
fault wait in a heap until due and are moved across when a request looks.

Listeners (``Store.listeners``) hear of every scan as it is created, before it is visible:
that is where the webhook sender picks up live scans. The backlog is minted before anyone
can listen, so it is never announced.
"""

from __future__ import annotations

import bisect
import heapq
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from bridge.uuid7 import UUIDv7Minter, min_for_millis, uuid7_millis
from passentry_simulator.faults import Faults

__all__ = ["Pass", "QueryResult", "Reader", "Scan", "ScanQuery", "ScanSpec", "Store", "World"]
__all__ += ["ScanListener", "WorldConfig", "iso", "random_uuid4"]

_ENTITY_COUNT = 3
_TEMPLATES = (  # (name, passType, is an event ticket)
    ("Season Ticket 2025", "eventTicket", True),
    ("Match Day Ticket", "eventTicket", True),
    ("Staff Badge", "generic", False),
    ("Loyalty Card", "storeCard", False),
)
_GROUP_TAGS = ("general", "vip", "staff", "press")
_PASS_STATUSES = (("active", 0.85), ("issued", 0.07), ("removed", 0.05), ("deactivated", 0.03))
_NAMES = ("Ada", "Ben", "Chloe", "Dev", "Eva", "Femi", "Gus", "Hana", "Ivan", "Jo")
_EXTERNAL_FAILURES = ("Ticket already used", "Outside opening hours", "Unknown ticket")
NOT_ACTIVE = "Pass is not active"
INTERNAL, EXTERNAL = "internalValidation", "externalValidation"


def iso(ms: int) -> str:
    """ISO 8601 UTC with second resolution, as in PassEntry's examples."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms // 1000))


def random_uuid4(rng: random.Random) -> str:
    """A version-4 UUID drawn from ``rng``, so a seeded run repeats it."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


@dataclass(frozen=True, slots=True)
class WorldConfig:
    readers: int = 20
    passes: int = 1000
    seed: int | None = None
    backlog: int = 0
    backlog_span_s: float = 3600.0
    # End of the backlog's time range (Unix ms). Fixing it with the seed makes the backlog
    # ids identical across runs; by default the backlog ends "now".
    anchor_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Reader:
    id: str
    entity_id: str
    json: bytes
    # In a webhook's ``included`` a reader carries only its name and readerType.
    brief_json: bytes


@dataclass(frozen=True, slots=True)
class Pass:
    id: str
    ext_id: str
    status: str
    template_name: str
    event_id: str | None
    group_tag: str
    nfc_value: str
    json: bytes

    def scan_value(self, scan_type: str) -> str:
        """What a reader reads off this pass: the NFC message, or the barcode (its extId)."""
        return self.nfc_value if scan_type == "nfc" else self.ext_id


@dataclass(frozen=True, slots=True)
class ScanSpec:
    """What happened at the gate, before the API gave the scan an id."""

    reader: Reader
    pass_: Pass | None
    scan_type: str
    scan_value: str
    validation_type: str
    status: str
    status_detail: str | None
    scanned_at_ms: int


@dataclass(frozen=True, slots=True)
class Scan:
    id: str
    key: tuple[int, str]
    created_ms: int | None  # from the id; None when the id is not a UUIDv7
    visible_at_ms: int
    spec: ScanSpec
    json: bytes
    # The JSON of the pass (if any) and the reader, in ``included`` order. Bytes objects
    # cache their hash, so a page dedups these with one C-level dict.fromkeys.
    refs: tuple[bytes, ...]


def _make_reader(rng: random.Random, n: int, entity_id: str, at_ms: int) -> Reader:
    rid = f"gate-{n:03d}"
    attrs = {
        "name": f"Gate {n:03d}",
        "readerType": "VtapReader" if rng.random() < 0.3 else "PassentryReader",
        "loggedIn": rng.random() < 0.8,
        "qrEnabled": rng.random() < 0.6,
        "mifareClassicNfcEnabled": rng.random() < 0.2,
        "scanEnabled": True,
        "redeemEnabled": rng.random() < 0.3,
        "addPointsEnabled": rng.random() < 0.2,
        "ndefTagScanningEnabled": rng.random() < 0.2,
        "lastSeenAt": iso(at_ms - rng.randrange(86_400_000)),
    }
    body = {"id": rid, "type": "reader", "attributes": attrs}
    brief_attrs = {"name": attrs["name"], "readerType": attrs["readerType"]}
    brief = {"id": rid, "type": "reader", "attributes": brief_attrs}
    return Reader(rid, entity_id, msgspec.json.encode(body), msgspec.json.encode(brief))


def _make_pass(
    rng: random.Random, templates: list[tuple[str, str, str, str | None]], at_ms: int
) -> Pass:
    pid = random_uuid4(rng)
    ext_id = f"{rng.getrandbits(80):020x}"
    name, template_uuid, pass_type, event_id = rng.choice(templates)
    status = rng.choices([s for s, _ in _PASS_STATUSES], [w for _, w in _PASS_STATUSES])[0]
    created = at_ms - rng.randrange(30 * 86_400_000)
    added = None if status == "issued" else created + rng.randrange(86_400_000)
    nfc = None if rng.random() < 0.3 else f"pe:{ext_id}"
    barcode_kind = rng.random()
    barcode: dict[str, object] | None = None
    if barcode_kind < 0.6:
        barcode = {"enabled": True, "type": "qr", "source": "extId", "value": ext_id}
        barcode["displayText"] = True
    elif barcode_kind < 0.8:
        barcode = {}
    attrs = {
        "downloadUrl": f"https://www.example.com?pass={pid}",
        "passType": pass_type,
        "deviceType": None if added is None else rng.choice(("android", "iphone")),
        "createdAt": iso(created),
        "status": status,
        "extId": ext_id,
        "passTemplateUuid": template_uuid,
        "passTemplateName": name,
        "nfc": nfc,
        "barcode": barcode,
        "passContent": {"fullName": f"{rng.choice(_NAMES)} {rng.choice(_NAMES)}son"},
        "addedAt": None if added is None else iso(added),
        "removedAt": iso(at_ms - 3_600_000) if status == "removed" else None,
        "deactivatedAt": iso(at_ms - 3_600_000) if status == "deactivated" else None,
    }
    body = msgspec.json.encode({"id": pid, "type": "pass", "attributes": attrs})
    group_tag = rng.choice(_GROUP_TAGS)
    return Pass(pid, ext_id, status, name, event_id, group_tag, nfc or pid, body)


class World:
    """Readers and passes, and the skewed choice of who scans where."""

    def __init__(self, config: WorldConfig, rng: random.Random, now_ms: int) -> None:
        entities = [random_uuid4(rng) for _ in range(_ENTITY_COUNT)]
        templates = [
            (name, f"{rng.getrandbits(96):024x}", kind, random_uuid4(rng) if is_event else None)
            for name, kind, is_event in _TEMPLATES
        ]
        self.readers = [
            _make_reader(rng, i + 1, entities[i % _ENTITY_COUNT], now_ms)
            for i in range(config.readers)
        ]
        self.passes = [_make_pass(rng, templates, now_ms) for _ in range(config.passes)]
        self.readers_by_id = {r.id: r for r in self.readers}
        self.passes_by_key = {p.id: p for p in self.passes} | {p.ext_id: p for p in self.passes}
        # Zipf-like weights: gate 1 is the main entrance, a few passes are regulars.
        self._reader_cum = _cumulative(len(self.readers), 1.1)
        self._pass_cum = _cumulative(len(self.passes), 0.8)

    def internal_spec(
        self, reader: Reader, pass_: Pass, scan_type: str, scanned_at_ms: int
    ) -> ScanSpec:
        """A scan PassEntry validates itself: it succeeds exactly when the pass is active."""
        ok = pass_.status == "active"
        detail = None if ok else NOT_ACTIVE
        value = pass_.scan_value(scan_type)
        return ScanSpec(
            reader, pass_, scan_type, value, INTERNAL, _status(ok), detail, scanned_at_ms
        )

    def random_spec(self, rng: random.Random, at_ms: int) -> ScanSpec:
        reader = rng.choices(self.readers, cum_weights=self._reader_cum)[0]
        regular = rng.choices(self.passes, cum_weights=self._pass_cum)[0]
        scan_type = "nfc" if rng.random() < 0.6 else "barcode"
        # The reader device's clock runs a little behind the API's.
        scanned_at_ms = at_ms - rng.randrange(2000)
        if rng.random() >= 0.15:
            return self.internal_spec(reader, regular, scan_type, scanned_at_ms)
        # Third-party validation, logged afterwards; some are logged without a pass.
        ok = rng.random() < 0.9
        detail = None if ok else rng.choice(_EXTERNAL_FAILURES)
        pass_ = None if rng.random() < 0.3 else regular
        value = f"ext:{rng.getrandbits(48):012x}" if pass_ is None else pass_.scan_value(scan_type)
        return ScanSpec(
            reader, pass_, scan_type, value, EXTERNAL, _status(ok), detail, scanned_at_ms
        )


def _status(ok: bool) -> str:
    return "successful" if ok else "failed"


def _cumulative(n: int, exponent: float) -> list[float]:
    total, out = 0.0, []
    for rank in range(1, n + 1):
        total += 1.0 / rank**exponent
        out.append(total)
    return out


def _render(scan_id: str, spec: ScanSpec) -> bytes:
    pass_rel = None if spec.pass_ is None else {"id": spec.pass_.id, "type": "pass"}
    return msgspec.json.encode(
        {
            "id": scan_id,
            "type": "scan",
            "attributes": {
                "scanType": spec.scan_type,
                "scanValue": spec.scan_value,
                "validationType": spec.validation_type,
                "status": spec.status,
                "statusDetail": spec.status_detail,
                "scannedAt": iso(spec.scanned_at_ms),
            },
            "relationships": {
                "pass": {"data": pass_rel},
                "reader": {"data": {"id": spec.reader.id, "type": "reader"}},
            },
        }
    )


ScanListener = Callable[[Scan], None]


@dataclass(frozen=True, slots=True)
class ScanQuery:
    """Filters of ``GET /api/v1/scans``; creation times already turned into ms bounds."""

    entity: str | None = None
    reader_id: str | None = None
    pass_id: str | None = None
    validation_type: str | None = None
    scan_type: str | None = None
    status: str | None = None
    event_id: str | None = None
    pass_template_name: str | None = None
    group_tag: str | None = None
    min_ms: int | None = None  # inclusive
    end_ms: int | None = None  # exclusive

    @property
    def filtered(self) -> bool:
        """Whether any filter other than the creation-time range is set."""
        return any(getattr(self, name) is not None for name in _FILTER_FIELDS)

    def matches(self, s: ScanSpec) -> bool:
        p = s.pass_
        return (
            (self.entity is None or s.reader.entity_id == self.entity)
            and (self.reader_id is None or s.reader.id == self.reader_id)
            and (self.validation_type is None or s.validation_type == self.validation_type)
            and (self.scan_type is None or s.scan_type == self.scan_type)
            and (self.status is None or s.status == self.status)
            # The filters on pass fields never match a scan logged without a pass.
            and (self.pass_id is None or (p is not None and self.pass_id in (p.id, p.ext_id)))
            and (self.event_id is None or (p is not None and p.event_id == self.event_id))
            and (self.group_tag is None or (p is not None and p.group_tag == self.group_tag))
            and (
                self.pass_template_name is None
                or (p is not None and p.template_name == self.pass_template_name)
            )
        )


_FILTER_FIELDS = tuple(f for f in ScanQuery.__dataclass_fields__ if not f.endswith("_ms"))


@dataclass(frozen=True, slots=True)
class QueryResult:
    scans: list[Scan]  # newest first
    successful: int
    failed: int
    readers: int


class Store:
    """All scans; thread-safe, because tests poke it from outside the server's loop."""

    def __init__(self, world: World, faults: Faults, rng: random.Random) -> None:
        self.world = world
        self.faults = faults
        self.rng = rng
        self._lock = threading.Lock()
        self._all: list[Scan] = []
        self._keys: list[tuple[int, str]] = []
        self._visible: list[Scan] = []
        self._by_id: dict[str, Scan] = {}
        self._pending: list[tuple[int, int, Scan]] = []
        self._version = 0
        self._cache: dict[ScanQuery, tuple[int, QueryResult]] = {}
        self._node_shape: tuple[int, int] = (0, 0)
        self._minters: list[UUIDv7Minter] = []
        # Called under the store's lock, in creation order, for every scan added from now
        # on: a listener must be quick and must not call back into the store.
        self.listeners: list[ScanListener] = []

    @classmethod
    def build(cls, config: WorldConfig, faults: Faults) -> Store:
        rng = random.Random(config.seed)
        now_ms = time.time_ns() // 1_000_000 if config.anchor_ms is None else config.anchor_ms
        store = cls(World(config, rng, now_ms), faults, rng)
        span_ms = int(config.backlog_span_s * 1000)
        # Sorted times: a minter borrows forward if asked for an earlier millisecond.
        for at_ms in sorted(now_ms - rng.randrange(max(span_ms, 1)) for _ in range(config.backlog)):
            store.add(store.world.random_spec(rng, at_ms), at_ms)
        return store

    def _minter(self) -> UUIDv7Minter:
        shape = (self.faults.nodes, self.faults.max_skew_ms)
        if shape != self._node_shape:
            skew = shape[1]
            self._minters = [
                UUIDv7Minter(
                    self.faults.rng.randint(-skew, skew) if skew else 0,
                    random.Random(self.rng.getrandbits(64)),
                )
                for _ in range(shape[0])
            ]
            self._node_shape = shape
        if len(self._minters) == 1:
            return self._minters[0]
        return self._minters[self.faults.rng.randrange(len(self._minters))]

    def add(self, spec: ScanSpec, at_ms: int | None = None) -> Scan:
        """Mint an id (applying data faults), render, and file the scan."""
        real_ms = time.time_ns() // 1_000_000 if at_ms is None else at_ms
        with self._lock:
            minted = self._minter().mint(at_ms)
            scan_id = str(minted)
            created_ms: int | None = uuid7_millis(minted)
            if self.faults.roll("bad_id", self.faults.bad_id_rate):
                rng = self.faults.rng
                if rng.random() < 0.5:
                    scan_id = random_uuid4(rng)
                else:
                    scan_id = f"scan-{rng.getrandbits(64):016x}"
                created_ms = None
            visible_at = real_ms
            if self.faults.roll("late", self.faults.late_rate):
                visible_at += int(self.faults.late_s * 1000)
            refs = (
                (spec.reader.json,) if spec.pass_ is None else (spec.pass_.json, spec.reader.json)
            )
            key = (minted.int, scan_id)
            scan = Scan(scan_id, key, created_ms, visible_at, spec, _render(scan_id, spec), refs)
            self._all.append(scan)
            if visible_at <= time.time_ns() // 1_000_000:
                self._show(scan)
            else:
                heapq.heappush(self._pending, (visible_at, len(self._all), scan))
            for listener in self.listeners:
                listener(scan)
        return scan

    def generate(self, n: int, at_ms: int | None = None) -> list[Scan]:
        stamp = time.time_ns() // 1_000_000 if at_ms is None else at_ms
        return [self.add(self.world.random_spec(self.rng, stamp), at_ms) for _ in range(n)]

    def _show(self, scan: Scan) -> None:
        if not self._keys or scan.key > self._keys[-1]:
            self._keys.append(scan.key)
            self._visible.append(scan)
        else:  # skewed nodes and late scans land behind newer ids
            at = bisect.bisect_left(self._keys, scan.key)
            self._keys.insert(at, scan.key)
            self._visible.insert(at, scan)
        self._by_id[scan.id] = scan
        self._version += 1

    def _promote(self) -> None:
        now_ms = time.time_ns() // 1_000_000
        while self._pending and self._pending[0][0] <= now_ms:
            self._show(heapq.heappop(self._pending)[2])

    def query(self, q: ScanQuery) -> QueryResult:
        with self._lock:
            self._promote()
            cached = self._cache.get(q)
            if cached is not None and cached[0] == self._version:
                return cached[1]
            lo, hi = self._index(q.min_ms, 0), self._index(q.end_ms, len(self._keys))
            window = self._visible[lo:hi] if hi > lo else []
            window.reverse()
            scans = [s for s in window if q.matches(s.spec)] if q.filtered else window
            ok = sum(1 for s in scans if s.spec.status == "successful")
            result = QueryResult(scans, ok, len(scans) - ok, len({s.spec.reader.id for s in scans}))
            if len(self._cache) >= 64:
                self._cache.clear()
            self._cache[q] = (self._version, result)
            return result

    def _index(self, ms: int | None, default: int) -> int:
        """Position of the first scan created at or after ``ms``."""
        if ms is None:
            return default
        return bisect.bisect_left(self._keys, (min_for_millis(ms).int, ""))

    def get(self, scan_id: str) -> Scan | None:
        with self._lock:
            self._promote()
            return self._by_id.get(scan_id)

    def all_scans(self) -> list[Scan]:
        """Every scan created so far, visible or not, in creation order."""
        with self._lock:
            return list(self._all)

    def counts(self) -> tuple[int, int]:
        """(total created, not yet visible)."""
        with self._lock:
            self._promote()
            return len(self._all), len(self._pending)
