"""The CloudEvents attributes of the bridge's records (Kafka protocol binding, binary mode).

The value stays the Avro body; the event's attributes travel as ``ce_``-prefixed headers,
and ``content-type`` is the event's ``datacontenttype``. A router or a CloudEvents SDK can
then tell what a record is without decoding it:

- ``ce_id``: the scan id (a dead letter's: its reason and the scan id, see below);
- ``ce_source``: ``urn:passentry-bridge:source:<BRIDGE_SOURCE_ID>``, the source that read
  the scan; two sources with overlapping filters publish one scan under two sources, so
  ``ce_source`` + ``ce_id`` stays unique as the specification requires;
- ``ce_type``: ``com.passentry.scan.v<major>``, the schema's major version: the ``v<N>`` its
  namespace ends with (``com.passentry.bridge.v1``). A compatible new version keeps the
  namespace and so the type; only a breaking change, a new namespace, makes a new type;
- ``ce_time``: the scan's creation time from its UUIDv7 id (RFC 3339, UTC, milliseconds),
  left out for an id past the year 9999, which RFC 3339 cannot write (a UUIDv7 can name
  times up to the year 10889);
- ``ce_dataschema``: the registry's URL of the writer schema, or, in single-object mode,
  ``urn:avro:crc-64-avro:<fingerprint>`` (the same 8 bytes as the value's header, in hex).
"""

from __future__ import annotations

import hashlib
import re
import time

__all__ = [
    "DEAD_LETTER_TYPE",
    "RFC3339_END_MS",
    "SPEC_VERSION",
    "TimeFormatter",
    "dead_letter_id",
    "fingerprint_uri",
    "registry_schema_url",
    "scan_type",
    "source_uri",
]

SPEC_VERSION = "1.0"
SOURCE_PREFIX = "urn:passentry-bridge:source:"
FINGERPRINT_PREFIX = "urn:avro:crc-64-avro:"
DEAD_LETTER_TYPE = "com.passentry.scan.deadletter.v1"
# 10000-01-01T00:00:00Z: RFC 3339 has four-digit years.
RFC3339_END_MS = 253_402_300_800_000


def source_uri(source_id: str) -> str:
    return SOURCE_PREFIX + source_id


_MAJOR = re.compile(r"\.v(\d+)\.[^.]+$")


def scan_type(full_name: str) -> str:
    """The event type of a schema by its full name (``com.passentry.bridge.v1.ScanEvent``):
    its namespace's major version, or 1 for a namespace without one."""
    match = _MAJOR.search(full_name)
    return f"com.passentry.scan.v{match.group(1) if match else 1}"


def fingerprint_uri(fingerprint: bytes) -> str:
    return FINGERPRINT_PREFIX + fingerprint.hex()


def registry_schema_url(registry_url: str, schema_id: int) -> str:
    """Where the registry serves the writer schema (the Confluent API's ``/schemas/ids/``,
    which Apicurio's compatibility API serves too); the first URL of a comma-separated list."""
    base = registry_url.split(",", 1)[0].strip().rstrip("/")
    return f"{base}/schemas/ids/{schema_id}"


def dead_letter_id(reason: str, scan_id: str | None, raw: bytes) -> str:
    """A dead letter's ``ce_id``: its reason plus the scan id, or a digest of the raw scan
    when it has none. A late scan may also have been published, so the scan id alone would
    name two different events of one source."""
    if scan_id:
        return f"{reason}:{scan_id}"
    return f"{reason}:sha256:{hashlib.sha256(raw).hexdigest()[:32]}"


# The pieces of a time after its date: "00:00:" .. "23:59:" by minute of the day, "00" ..
# "59", and ".000Z" .. ".999Z".
_HOURS_MINUTES = [f"{m // 60:02d}:{m % 60:02d}:" for m in range(1440)]
_SECONDS = [f"{n:02d}" for n in range(60)]
_MILLIS = [f".{n:03d}Z" for n in range(1000)]


class TimeFormatter:
    """Unix milliseconds (0 to ``RFC3339_END_MS``, not included) as RFC 3339
    (``2025-01-13T13:00:00.123Z``). Scans come in creation order, so consecutive times
    mostly share their day: ``strftime`` runs once per day of scans and the rest of the time
    is joined from tables (0.4 us a record for a backfill that has a scan a minute, where a
    ``strftime`` per second of scans took 1.5)."""

    __slots__ = ("_date", "_day", "_minute", "_prefix")

    def __init__(self) -> None:
        self._day = -1
        self._date = ""
        self._minute = -1
        self._prefix = ""

    def __call__(self, ms: int) -> str:
        minute, rest = divmod(ms, 60_000)
        if minute != self._minute:
            day, minute_of_day = divmod(minute, 1440)
            if day != self._day:
                self._date = time.strftime("%Y-%m-%dT", time.gmtime(day * 86_400))
                self._day = day
            self._prefix = self._date + _HOURS_MINUTES[minute_of_day]
            self._minute = minute
        second, millis = divmod(rest, 1000)
        return self._prefix + _SECONDS[second] + _MILLIS[millis]
