"""Fixtures for the Avro tests: schemas that differ from the bridge's in one top-level
field, built from it so they follow its later versions."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import fastavro
import pytest

from bridge.avro.schemas import VersionedSchema


def versioned(definition: dict[str, Any], version: int = 99) -> VersionedSchema:
    """A VersionedSchema for a definition that is not one of the bundled files."""
    parsed = fastavro.parse_schema(copy.deepcopy(definition))
    canonical = fastavro.schema.to_parsing_canonical_form(parsed)
    return VersionedSchema(
        "passentry_scan", version, json.dumps(definition), definition, parsed, canonical, b"\0" * 8
    )


@pytest.fixture
def changed_schema(
    scan_schema: VersionedSchema,
) -> Callable[[Callable[[list[dict[str, Any]]], None]], VersionedSchema]:
    """Factory: the bridge's schema with its top-level ``fields`` list changed in place by
    the given function (a field's type swapped, a field renamed, moved or dropped)."""

    def make(change: Callable[[list[dict[str, Any]]], None]) -> VersionedSchema:
        definition = copy.deepcopy(scan_schema.definition)
        change(definition["fields"])
        return versioned(definition)

    return make
