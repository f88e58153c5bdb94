"""Dead letters read back and grouped by scan: the latest says the reason now, the first
what went wrong first, whatever order the partitions are read in."""

from __future__ import annotations

from collections.abc import Iterator

from bridge.dlq.letters import DeadLetter, DeadLetterReader, _letter, letter_id
from bridge.ops.progress import ProgressFactory

SCAN = "01a244f8-9d77-73f4-8a50-e34abb6797a5"


class FakeMessage:
    def __init__(self, headers: list[tuple[str, bytes]], value: bytes, at_ms: int) -> None:
        self._headers, self._value, self._at = headers, value, at_ms

    def headers(self) -> list[tuple[str, bytes]]:
        return self._headers

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes:
        return b"gate-1"

    def timestamp(self) -> tuple[int, int]:
        return (1, self._at)

    def partition(self) -> int:
        return 2

    def offset(self) -> int:
        return 17


def letter(reason: str, at_ms: int, scan_id: str | None = SCAN, raw: bytes = b"{}") -> DeadLetter:
    return DeadLetter(0, at_ms, at_ms, reason, f"{reason} detail", scan_id, "url", None,
                      None, raw, letter_id(scan_id, raw))  # fmt: skip


class Reader(DeadLetterReader):
    """What the topic holds, without Kafka."""

    def __init__(self, letters: list[DeadLetter]) -> None:
        super().__init__({}, "dlq", 5)
        self._letters = letters

    def read(
        self, source_id: str, since_ms: int | None, until_ms: int | None,
        progress: ProgressFactory | None = None,
    ) -> Iterator[DeadLetter]:  # fmt: skip
        return iter(self._letters)


def test_a_record_of_the_source_becomes_a_dead_letter_and_others_are_skipped() -> None:
    headers = [
        ("dlq-reason", b"late_scan"),
        ("dlq-detail", b"too late"),
        ("source-id", b"s1"),
        ("source-url", b"https://x/scans?page=1"),
        ("scan-id", SCAN.encode()),
        ("repaired-by", b"passentry-bridge dlq replay"),
    ]
    found = _letter(FakeMessage(headers, b'{"id": 1}', 1234), b"s1")
    assert found == DeadLetter(2, 17, 1234, "late_scan", "too late", SCAN,
                               "https://x/scans?page=1", b"gate-1",
                               "passentry-bridge dlq replay", b'{"id": 1}', SCAN)  # fmt: skip
    assert found.created_ms == int(SCAN[:8] + SCAN[9:13], 16)
    assert _letter(FakeMessage(headers, b"{}", 1), b"other-source") is None


def test_a_payload_without_an_id_is_known_by_its_digest() -> None:
    assert letter_id(None, b"abc").startswith("sha256:ba7816bf8f01cfea414140de5dae2223")
    assert letter("invalid_id", 1, scan_id="scan-12").created_ms is None


def test_dead_letters_of_one_scan_are_one_history_ordered_by_time_not_read_order() -> None:
    other = "01a244f8-a1cf-72ca-9d1d-066b43df023e"
    read = [
        letter("invalid_scan", 300, raw=b"{1}"),  # a replay's, read first (another partition)
        letter("late_scan", 100, raw=b"{1}"),
        letter("late_scan", 200, scan_id=other),
    ]
    found = Reader(read).histories("s1", keep_payload=True)
    assert list(found) == [SCAN, other]
    history = found[SCAN]
    assert (history.first.reason, history.reason, history.count) == ("late_scan", "invalid_scan", 2)
    assert history.latest.raw == b"{1}"  # the latest keeps its payload, to be judged
    assert history.first.raw == b""
    assert history.letters == []


def test_payloads_are_dropped_unless_asked_for_and_show_keeps_every_letter() -> None:
    read = [letter("late_scan", 100, raw=b"{1}"), letter("invalid_scan", 300, raw=b"{1}")]
    listed = Reader(read).histories("s1")
    assert listed[SCAN].latest.raw == b""
    shown = Reader(list(reversed(read))).histories("s1", only_id=SCAN)
    assert [x.reason for x in shown[SCAN].letters] == ["late_scan", "invalid_scan"]
    assert shown[SCAN].latest.raw == b"{1}"
    assert Reader(read).histories("s1", only_id="nope") == {}
