"""What formatting a KRaft node's storage needs from us: a cluster id the storage tool takes.

Standard library only, shared by scripts/kafka-local, scripts/kafka-cluster and the tests'
containers (tests/kafka_broker.py).

    python3 scripts/lib/kafka_storage.py cluster-id
"""

from __future__ import annotations

import base64
import sys
import uuid

__all__ = ["cluster_id"]


def cluster_id() -> str:
    """16 random bytes as URL-safe base64, drawn again when the text begins with "-": the
    storage tool's argument parser would take it for an option (1 draw in 64)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


if __name__ == "__main__":
    if sys.argv[1:] != ["cluster-id"]:
        sys.exit(__doc__)
    print(cluster_id())
