"""docs/schema.md cannot drift from the schema: its field table is the generated one, it
names every field path, and its Python examples run."""

from __future__ import annotations

import io
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import fastavro

from bridge.avro.compat import walk_fields
from bridge.avro.framing import SingleObjectFramer
from bridge.avro.lock import bundled_schemas
from bridge.avro.schemas import VersionedSchema
from bridge.cli.schema import field_table

DOC = Path(__file__).resolve().parents[3] / "docs" / "schema.md"


def _text() -> str:
    return DOC.read_text(encoding="utf-8")


def test_the_field_table_is_the_generated_one(scan_schema: VersionedSchema) -> None:
    match = re.search(r"<!-- fields:begin -->\n(.*?)<!-- fields:end -->", _text(), re.S)
    assert match, "docs/schema.md lost its <!-- fields:begin/end --> markers"
    assert match.group(1) == field_table(scan_schema.definition), (
        "docs/schema.md's field table is stale: replace it with the output of"
        " `passentry-bridge schema show --fields`"
    )


def test_every_field_path_is_documented_with_its_doc(scan_schema: VersionedSchema) -> None:
    text = _text()
    paths = [path for path, _ in walk_fields(scan_schema.definition)]
    assert "pass.barcode.displayText" in paths  # nested records inside unions are walked
    for path, field in walk_fields(scan_schema.definition):
        assert f"| `{path}` |" in text, path
        assert field.get("doc"), f"{path} has no doc in the schema"


def test_the_documented_fingerprint_is_the_real_one(scan_schema: VersionedSchema) -> None:
    assert f"v1's is `{scan_schema.fingerprint.hex()}`" in _text()


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", _text(), re.S)


def test_the_python_examples_compile() -> None:
    blocks = _python_blocks()
    assert len(blocks) == 2
    for block in blocks:
        compile(block, str(DOC), "exec")


def test_the_single_object_example_decodes_a_bridge_value(scan_schema: VersionedSchema) -> None:
    example = next(b for b in _python_blocks() if "def decode" in b)
    namespace: dict = {"FOLDER": bundled_schemas() / "passentry_scan"}
    exec(example.replace('Path("schemas/passentry_scan")', "FOLDER"), namespace)
    record = {
        "scanId": uuid.UUID("0194d6a9-95b5-7556-896c-693a6ef61c4d"),
        "createdAt": datetime(2025, 1, 13, 13, 0, tzinfo=UTC),
        "scannedAt": None, "scanType": "nfc", "scanValue": None,
        "validationType": "internalValidation", "status": "successful", "statusDetail": None,
        "readerId": "gate-1", "passId": None, "sourceId": "s", "pass": None, "reader": None,
    }  # fmt: skip
    body = io.BytesIO()
    fastavro.schemaless_writer(body, scan_schema.parsed, record)
    value = SingleObjectFramer(scan_schema).framing("any").prefix + body.getvalue()
    decoded = namespace["decode"](value)
    assert decoded["readerId"] == "gate-1"
    assert str(decoded["scanId"]) == "0194d6a9-95b5-7556-896c-693a6ef61c4d"
