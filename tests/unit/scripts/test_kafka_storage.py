"""scripts/lib/kafka_storage.py: the one cluster-id draw of every test bed."""

from __future__ import annotations

import base64
import subprocess
import sys
import uuid
from pathlib import Path
from unittest import mock

from scripts.lib.kafka_storage import cluster_id

ROOT = Path(__file__).resolve().parents[3]


def _text(u: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(u.bytes).decode().rstrip("=")


def test_cluster_ids_never_begin_with_a_dash() -> None:
    """One URL-safe base64 id in 64 begins with "-", which kafka-storage takes for an option
    ("expected one argument"): a fresh broker then fails to format, a flaky test bed."""
    dash = next(u for u in iter(uuid.uuid4, None) if _text(u).startswith("-"))
    plain = uuid.UUID(int=1)
    with mock.patch("uuid.uuid4", side_effect=[dash, plain]):
        assert cluster_id() == _text(plain)


def test_every_test_bed_draws_from_it() -> None:
    """kafka-local and kafka-cluster call this module; the containers' fixture imports it."""
    assert 'scripts/lib/kafka_storage.py" cluster-id' in (ROOT / "scripts/kafka-local").read_text()
    assert "from kafka_storage import cluster_id" in (ROOT / "scripts/kafka-cluster").read_text()
    assert (
        "from scripts.lib.kafka_storage import cluster_id"
        in (ROOT / "tests/kafka_broker.py").read_text()
    )
    drawn = subprocess.run(
        [sys.executable, str(ROOT / "scripts/lib/kafka_storage.py"), "cluster-id"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert len(base64.urlsafe_b64decode(drawn + "==")) == 16
    assert not drawn.startswith("-")
