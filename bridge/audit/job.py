"""What a command that reads a source's history and may write it starts from (``audit``,
``backfill``, ``dlq replay``): the source's wiring, a PassEntry client within the request's
budget, the checkpoints, the stop flag, and the writer it chooses before it reads anything."""

from __future__ import annotations

import threading

from bridge.audit.repair import Repairer, WriterChoice, pick_writer
from bridge.config import Config
from bridge.kafka.access import KafkaAccess
from bridge.ops.metrics import Metrics
from bridge.ops.progress import Progress, ProgressFactory
from bridge.passentry.client import PassEntryClient
from bridge.wiring import Wiring

__all__ = ["SourceJob"]


class SourceJob:
    """The parts ``Auditor`` and ``Replayer`` share; each runs its own steps on them."""

    def __init__(
        self, config: Config, source_id: str, *, request_budget: float,
        metrics: Metrics | None, progress: ProgressFactory | None,
        stop: threading.Event | None, client: PassEntryClient | None,
        access: KafkaAccess | None,
    ) -> None:  # fmt: skip
        self._config = config
        self._spec = config.source(source_id)
        self.metrics = metrics if metrics is not None else Metrics()
        self._wiring = wiring = Wiring.of(config, source_id, metrics=self.metrics, access=access)
        self._progress = progress
        self._stop = stop if stop is not None else threading.Event()
        self._client = client or wiring.api_client(requests_per_s=request_budget)
        self._conf = wiring.kafka_conf()
        self._checkpoints = wiring.checkpoints()
        self._timeout_s = config.kafka.read_committed_timeout_s
        self._repairer: Repairer | None = None

    def close(self) -> None:
        if self._repairer is not None:
            self._repairer.close()
        self._client.close()

    def _choose_writer(self, *, force: bool) -> WriterChoice:
        """Who writes (README, "Audit"): asked of Kafka before anything is read."""
        return pick_writer(self._wiring, self._checkpoints, force=force, timeout_s=self._timeout_s)

    def _open_repairer(
        self, choice: WriterChoice, *, since_ms: int, until_ms: int, command: str, chunk: int
    ) -> Repairer:
        """The writer's ``init_transactions``: every earlier run of the source is fenced."""
        self._repairer = Repairer(
            self._wiring, self._client, writer=choice.writer, since_ms=since_ms,
            until_ms=until_ms, command=command, chunk=chunk,
        )  # fmt: skip
        self._repairer.open()
        return self._repairer

    def _bar(self, label: str, unit: str, total: int | None) -> Progress | None:
        return self._progress(label, unit, total) if self._progress is not None else None
