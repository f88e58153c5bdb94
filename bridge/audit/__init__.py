"""``passentry-bridge audit`` and ``backfill``: does Kafka hold every scan PassEntry lists,
once? ``auditor`` orders the work: PassEntry's counts per bucket (``buckets``, ``census``),
what Kafka holds (``inventory``), the difference (``compare``), and, with ``--repair`` or as
a backfill, the missing scans published by the no-double rule (``horizon``, ``repair``).
``job`` holds what it shares with ``dlq replay``: the wiring, the client and the writer.
``report`` prints the result, ``metrics`` pushes it, ``record`` keeps it for ``status``.

Nothing here is imported by the running bridge."""
