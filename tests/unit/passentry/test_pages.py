from __future__ import annotations

import json
from typing import Any

import pytest

from bridge.errors import MalformedPageError
from bridge.passentry.pages import IncludedMemo, decode_page


def test_example_page_decodes_to_three_scans_with_pass_and_reader(
    example_page_bytes: bytes,
) -> None:
    page = decode_page(example_page_bytes)
    assert [s.resource.id for s in page.scans] == [
        "0194d6a9-95b7-72dc-87fc-ecaed8c0b520",
        "0194d6a9-95b6-73b5-8904-7137e5250cb0",
        "0194d6a9-95b5-7556-896c-693a6ef61c4d",
    ]
    assert page.rejected == []
    assert set(page.passes) == {"7882e98b-0eba-4625-9223-5221eb8dad7f"}
    assert set(page.readers) == {"south-gate-1"}
    assert page.meta is not None
    assert page.meta.total_pages == 1
    assert page.links is not None
    assert page.links.next is None


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<html><body>502 Bad Gateway</body></html>",
        b'{"data": [{"id": "x"',  # truncated
        b'{"errors": ["Too Many Requests"]}',  # no data
        b'{"data": {"id": "not a list"}}',
        b"[]",
    ],
)
def test_a_page_that_is_not_a_page_raises_malformed(body: bytes) -> None:
    with pytest.raises(MalformedPageError):
        decode_page(body)


def test_one_bad_scan_is_rejected_and_the_rest_of_the_page_survives(
    example_page: dict[str, Any],
) -> None:
    doc = example_page
    doc["data"][0]["id"] = "5b8c7c2e-4d43-4f0e-9a43-2d2f6a3e1b7a"  # a UUIDv4
    del doc["data"][1]["attributes"]["status"]
    doc["data"].append(
        {
            "id": "0194d6a9-95b4-7556-896c-693a6ef61c4d",
            "type": "scan",
            "attributes": {"scanType": "nfc", "validationType": "x", "status": "y"},
            "relationships": {"reader": {"data": None}},
        }
    )
    page = decode_page(json.dumps(doc).encode())
    assert [s.resource.id for s in page.scans] == ["0194d6a9-95b5-7556-896c-693a6ef61c4d"]
    reasons = {r.reason: r for r in page.rejected}
    assert set(reasons) == {"invalid_id", "invalid_scan", "missing_reader_id"}
    assert reasons["invalid_id"].scan_id == "5b8c7c2e-4d43-4f0e-9a43-2d2f6a3e1b7a"
    assert reasons["invalid_id"].reader_id == "south-gate-1"
    assert reasons["invalid_scan"].scan_id == "0194d6a9-95b6-73b5-8904-7137e5250cb0"
    # The dead letter carries the scan's own JSON, byte for byte.
    assert json.loads(reasons["invalid_id"].raw)["id"] == "5b8c7c2e-4d43-4f0e-9a43-2d2f6a3e1b7a"


def test_scan_without_pass_is_valid_and_unknown_fields_are_ignored(
    example_page: dict[str, Any],
) -> None:
    doc = example_page
    doc["data"][0]["relationships"]["pass"] = {"data": None}
    doc["data"][0]["attributes"]["brandNewField"] = {"x": 1}
    doc["included"].append({"id": "e1", "type": "event", "attributes": {}})
    doc["included"].append({"id": 5, "type": "pass"})  # undecodable included item
    page = decode_page(json.dumps(doc).encode())
    assert len(page.scans) == 3
    assert page.scans[0].resource.pass_id is None
    # The undecodable pass is left out (enrichment fetches it); the event is ignored.
    assert "5" not in page.passes
    assert set(page.passes) == {
        i["id"] for i in example_page["included"] if i["type"] == "pass"
    } - {5}


def test_included_items_are_decoded_once_per_distinct_json_within_a_bound(
    example_page: dict[str, Any],
) -> None:
    memo = IncludedMemo(size=3)
    body = json.dumps(example_page).encode()
    first, second = decode_page(body, memo), decode_page(body, memo)
    assert first.passes == decode_page(body).passes
    assert first.readers == decode_page(body).readers
    # The same bytes: the same objects, which the encoder's cache knows by identity.
    for pass_id, found in first.passes.items():
        assert second.passes[pass_id] is found
    # A pass that changed state is other bytes: decoded anew.
    example_page["included"][0]["attributes"]["status"] = "removed"
    changed = decode_page(json.dumps(example_page).encode(), memo)
    pass_id = example_page["included"][0]["id"]
    assert changed.passes[pass_id] is not first.passes[pass_id]
    assert changed.passes[pass_id].attributes.status == "removed"
    assert len(memo) <= 3


def test_a_page_with_more_included_items_than_the_memo_holds_keeps_every_one() -> None:
    readers = [
        {"type": "reader", "id": f"gate-{n}", "attributes": {"name": f"G{n}"}} for n in range(5)
    ]
    body = json.dumps({"data": [], "included": readers}).encode()
    memo = IncludedMemo(size=2)
    page = decode_page(body, memo)
    assert sorted(page.readers) == [f"gate-{n}" for n in range(5)]
    assert page.readers == decode_page(body).readers
    # The oldest went first: the last two are the ones remembered.
    assert len(memo) == 2
    last = decode_page(json.dumps({"data": [], "included": readers[4:]}).encode(), memo)
    assert last.readers["gate-4"] is page.readers["gate-4"]
    first = decode_page(json.dumps({"data": [], "included": readers[:1]}).encode(), memo)
    assert first.readers["gate-0"] is not page.readers["gate-0"]
    assert first.readers["gate-0"] == page.readers["gate-0"]


def test_a_memo_resized_down_drops_its_oldest_items_and_up_holds_more() -> None:
    readers = [
        {"type": "reader", "id": f"gate-{n}", "attributes": {"name": f"G{n}"}} for n in range(4)
    ]
    memo = IncludedMemo(size=4)
    first = decode_page(json.dumps({"data": [], "included": readers}).encode(), memo)
    assert len(memo) == 4
    memo.resize(-3)
    assert (memo.bound, len(memo)) == (1, 1)
    # The newest stayed: decoding it again gives the same object; an older one is new.
    newest = decode_page(json.dumps({"data": [], "included": readers[3:]}).encode(), memo)
    assert newest.readers["gate-3"] is first.readers["gate-3"]
    oldest = decode_page(json.dumps({"data": [], "included": readers[:1]}).encode(), memo)
    assert oldest.readers["gate-0"] is not first.readers["gate-0"]
    memo.resize(2)
    decode_page(json.dumps({"data": [], "included": readers}).encode(), memo)
    assert (memo.bound, len(memo)) == (3, 3)
    memo.resize(-10)
    assert (memo.bound, len(memo)) == (0, 0)
