"""The runner's retry and give-up loop, on a scripted source, a fake clock and a stop event
whose waits return at once (moving the clock on by what they would have waited). The
source waits between polls on that event too, in slices of at most a second."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from bridge.errors import (
    ApiAuthError,
    ApiUnavailableError,
    CommitOutcomeUnknownError,
    DeliveryFailedError,
    KafkaFatalError,
    KafkaRetriableError,
    ProducerSpentError,
    RegistryUnavailableError,
    ShutdownRequested,
    TopicMissingError,
    TransactionAbortedError,
)
from bridge.ops.health import Health
from bridge.ops.metrics import Metrics
from bridge.pipeline import CycleStats, Restored
from bridge.runner import EXIT_FATAL, EXIT_GAVE_UP, EXIT_OK, Pace, RunOptions, SourceRunner
from tests.support import FakeClock, sample

PACE = Pace(interval_min_s=1, interval_max_s=8, retry_deadline_s=10)


class Longest(random.Random):
    """Jitter that always draws the longest wait it may: the backoff then grows from 1.5
    times the minimum by threes (1.5, 4.5, 8 s capped), and the waits are known."""

    def uniform(self, a: float, b: float) -> float:
        return b


# A step of the script: what one call returns or raises; a callable gets the stop event.
Step = CycleStats | BaseException | Callable[[threading.Event], CycleStats]


def api_down() -> ApiUnavailableError:
    return ApiUnavailableError("GET /api/v1/scans answered 503", reason="server_error")


def found(n: int = 3, *, busy: bool = False) -> CycleStats:
    return CycleStats(pages=1, fetched=n, published=n, busy=busy)


def then_stop(stats: CycleStats) -> Callable[[threading.Event], CycleStats]:
    """A cycle during which shutdown is requested (SIGTERM), and which completes."""

    def step(stop: threading.Event) -> CycleStats:
        stop.set()
        return stats

    return step


class InstantStop(threading.Event):
    """The stop event: waits return at once, moving the clock on by their timeout unless
    the event is set. ``on_wait`` runs first: a signal can arrive during a backoff."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.waits: list[float] = []
        self.on_wait: Callable[[], None] | None = None

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None, "the runner never waits without a bound"
        self.waits.append(timeout)
        if self.on_wait is not None:
            self.on_wait()
        if not self.is_set():
            self.clock.advance(timeout)
        return self.is_set()


class ScriptedSource:
    """A Runnable that follows a script, and keeps the rule the runner must respect: after
    a commit with an unknown outcome, no cycle runs until the producer was recreated and
    the source prepared (restored from its checkpoint) again."""

    def __init__(
        self,
        *cycles: Step,
        prepares: tuple[BaseException | None, ...] = (),  # None: that prepare succeeds
        recreates: tuple[BaseException, ...] = (),
        waits: tuple[BaseException | None, ...] = (),  # what the webhook pump raises
    ) -> None:
        self.cycles = list(cycles)
        self.prepares = list(prepares)
        self.recreates = list(recreates)
        self.waits = list(waits)
        self.waited: list[float] = []  # the pauses between polls
        self.pushing = False  # no webhooks
        self.journal: list[str] = []
        self.unsettled = False  # a commit's outcome is unknown
        self.recreated = False

    def prepare(self) -> Restored:
        self.journal.append("prepare")
        failure = self.prepares.pop(0) if self.prepares else None
        if failure is not None:
            raise failure
        if self.unsettled and self.recreated:
            self.unsettled = self.recreated = False
        return Restored(fresh=True, start_ms=0, watermark=None, rebuild=None)

    def cycle(self, stop: threading.Event) -> CycleStats:
        self.journal.append("cycle")
        if self.unsettled:
            raise AssertionError("a cycle ran before the unknown commit was settled")
        if not self.cycles:
            raise AssertionError("the runner went on past the end of the script")
        step = self.cycles.pop(0)
        if isinstance(step, ProducerSpentError):
            self.unsettled = True
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, CycleStats):
            return step
        return step(stop)

    def wait(self, seconds: float, stop: threading.Event) -> None:
        self.waited.append(seconds)
        failure = self.waits.pop(0) if self.waits else None
        if failure is not None:
            self.journal.append("wait")
            if isinstance(failure, ProducerSpentError):
                self.unsettled = True
            raise failure
        stop.wait(seconds)

    def recreate_producer(self) -> None:
        self.journal.append("recreate")
        self.recreated = True  # the new producer exists even if its init then fails
        if self.recreates:
            raise self.recreates.pop(0)


@dataclass
class Run:
    source: ScriptedSource
    once: bool = False
    clock: FakeClock = field(default_factory=FakeClock)
    metrics: Metrics = field(default_factory=Metrics)
    health: Health = field(default_factory=lambda: Health(max_poll_age_s=3600))
    completed: list[CycleStats] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.stop = InstantStop(self.clock)
        self.runner = SourceRunner(
            self.source,
            source_id="src",
            options=RunOptions(once=self.once, serve_http=False, on_cycle=self.completed.append),
            pace=PACE,
            health=self.health,
            metrics=self.metrics,
            stop=self.stop,
            clock=self.clock,
            rng=Longest(),
        )

    def __call__(self) -> int:
        return self.runner.run()

    def cycles(self, outcome: str) -> float:
        return sample(self.metrics, "passentry_bridge_poll_cycles_total", outcome=outcome)


def test_retriable_failures_back_off_growing_to_the_max_then_the_pace_recovers() -> None:
    run = Run(ScriptedSource(*[api_down() for _ in range(5)], found(), then_stop(found())))
    assert run() == EXIT_OK
    # 1.5, 4.5 s, then the 8 s maximum; after a cycle that found scans, the 1 s minimum.
    assert run.stop.waits == [1.5, 4.5, 8, 8, 8, 1]
    assert run.source.waited == [1]  # the pause between polls; the backoffs are the runner's
    assert run.cycles("api_error") == 5
    assert run.cycles("ok") == 2
    assert run.source.journal == ["prepare"] + ["cycle"] * 7  # restored once: nothing is lost


def test_each_failure_is_counted_by_kind_and_readiness_says_what_is_down() -> None:
    run = Run(
        ScriptedSource(
            api_down(),
            KafkaRetriableError("broker unreachable"),
            RegistryUnavailableError("registry answered 503"),
            TransactionAbortedError("commit_transaction: aborted"),
            then_stop(found()),
        )
    )
    seen: list[tuple[str, ...]] = []
    run.stop.on_wait = lambda: seen.append(run.health.readiness().reasons)
    assert not run.health.readiness().ok  # before the first poll
    assert run() == EXIT_OK
    assert seen[:4] == [
        ("no successful poll yet",),
        ("Kafka not reachable", "no successful poll yet"),
        ("schema registry not reachable", "no successful poll yet"),
        ("Kafka not reachable", "no successful poll yet"),
    ]
    assert run.health.readiness().ok  # Kafka and the registry are back, a poll succeeded
    counts = {o: run.cycles(o) for o in ("ok", "api_error", "kafka_error", "registry_error")}
    assert counts == {"ok": 1, "api_error": 1, "kafka_error": 2, "registry_error": 1}
    assert run.cycles("fatal") == 0
    last_poll = "passentry_bridge_last_successful_poll_timestamp_seconds"
    assert sample(run.metrics, last_poll, source_id="src") > 0


def test_once_ends_with_0_at_the_first_cycle_that_is_not_busy() -> None:
    source = ScriptedSource(
        found(1000, busy=True), found(1000, busy=True), found(7), AssertionError("ran on")
    )
    run = Run(source, once=True)
    assert run() == EXIT_OK
    assert [s.published for s in run.completed] == [1000, 1000, 7]
    assert run.stop.waits == []  # a busy cycle is followed at once by the next
    assert run.cycles("ok") == 3


def test_once_gives_up_with_2_after_a_retry_deadline_of_failures() -> None:
    run = Run(ScriptedSource(*[api_down() for _ in range(20)]), once=True)
    assert run() == EXIT_GAVE_UP
    # Failures at 0, 1.5, 6 s keep trying (6 s is short of the 10 s deadline); the one at
    # 14 s gives up.
    assert run.stop.waits == [1.5, 4.5, 8]
    assert run.cycles("api_error") == 4
    assert run.completed == []


def test_once_counts_the_give_up_time_from_the_last_cycle_that_completed() -> None:
    source = ScriptedSource(
        *[api_down() for _ in range(3)],
        found(100, busy=True),  # completes at 14 s: the failures start counting again
        *[api_down() for _ in range(20)],
    )
    run = Run(source, once=True)
    assert run() == EXIT_GAVE_UP
    assert run.source.journal.count("cycle") == 3 + 1 + 4
    assert run.clock() - 1_000 == 14 + 14


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (ApiAuthError("PassEntry refused the API token; check PASSENTRY_API_TOKEN"), "TOKEN"),
        (KafkaFatalError("fenced: another bridge instance took over"), "fenced"),
    ],
)
def test_a_fatal_error_exits_1_with_readiness_false_and_the_reason(
    error: Exception, reason: str
) -> None:
    run = Run(ScriptedSource(found(), error, AssertionError("ran on")))
    assert run() == EXIT_FATAL
    verdict = run.health.readiness()
    assert not verdict.ok
    assert str(error) in verdict.reasons
    assert reason in " ".join(verdict.reasons)
    assert run.cycles("fatal") == 1
    assert run.cycles("ok") == 1
    assert run.stop.waits == [1]  # only the pause after the good cycle: no retry


def test_a_fatal_error_while_preparing_exits_1() -> None:
    missing = TopicMissingError("topic passentry.scans is missing; BRIDGE_CREATE_TOPICS=false")
    run = Run(ScriptedSource(prepares=(missing,)))
    assert run() == EXIT_FATAL
    assert "BRIDGE_CREATE_TOPICS" in " ".join(run.health.readiness().reasons)
    assert run.source.journal == ["prepare"]


@pytest.mark.parametrize(
    "spent",
    [
        CommitOutcomeUnknownError("commit_transaction did not complete in 125s"),
        DeliveryFailedError("commit_transaction: OUT_OF_ORDER_SEQUENCE_NUMBER"),
    ],
    ids=["unknown-outcome", "delivery-failed"],
)
def test_a_spent_producer_is_recreated_and_the_checkpoint_restored_first(
    spent: ProducerSpentError,
) -> None:
    source = ScriptedSource(found(), spent, found(5), then_stop(found(1)))
    run = Run(source)
    assert run() == EXIT_OK
    assert source.journal == [
        "prepare",
        "cycle",
        "cycle",
        "recreate",
        "prepare",  # the checkpoint read back says where the failed commit left us
        "cycle",
        "cycle",
    ]
    assert run.cycles("kafka_error") == 1
    assert run.cycles("ok") == 3


def test_a_producer_that_cannot_be_recreated_yet_is_settled_by_a_later_prepare() -> None:
    away = KafkaRetriableError("init_transactions: timed out")
    source = ScriptedSource(
        CommitOutcomeUnknownError("commit_transaction did not complete in 125s"),
        then_stop(found()),
        recreates=(away,),
        prepares=(None, away),
    )
    run = Run(source)
    assert run() == EXIT_OK
    assert source.journal == [
        "prepare",
        "cycle",  # the commit's outcome is unknown
        "recreate",  # the new producer's init fails: the broker is still away
        "prepare",  # fails the same way, and is retried after a backoff
        "prepare",
        "cycle",
    ]
    assert run.cycles("kafka_error") == 2
    # Kafka failures are tried again after the minimum interval, not a doubling backoff.
    assert run.stop.waits == [1, 1]


def test_a_stop_during_a_backoff_ends_the_loop_with_0() -> None:
    run = Run(ScriptedSource(api_down(), AssertionError("ran on")))
    run.stop.on_wait = run.stop.set  # SIGTERM arrives while it waits to retry
    assert run() == EXIT_OK
    assert run.source.journal == ["prepare", "cycle"]
    assert run.stop.waits == [1.5]


def test_a_stop_that_interrupts_a_cycle_ends_the_loop_with_0_and_counts_nothing() -> None:
    def interrupted(stop: threading.Event) -> CycleStats:
        stop.set()
        raise ShutdownRequested

    run = Run(ScriptedSource(interrupted, AssertionError("ran on")))
    assert run() == EXIT_OK
    assert run.source.journal == ["prepare", "cycle"]
    for outcome in ("ok", "api_error", "kafka_error", "registry_error", "fatal"):
        assert run.cycles(outcome) == 0


def test_a_failure_between_polls_is_handled_like_a_cycles() -> None:
    """Webhooks are published while the source waits for the next poll; an unknown commit
    there recreates the producer and restores too, and a fenced producer stops the bridge."""
    source = ScriptedSource(
        found(),
        found(),
        AssertionError("ran on"),
        waits=(
            CommitOutcomeUnknownError("commit_transaction did not complete"),
            KafkaFatalError("fenced: another bridge instance took over"),
        ),
    )
    run = Run(source)
    assert run() == EXIT_FATAL
    assert source.journal == [
        "prepare",
        "cycle",
        "wait",  # unknown outcome
        "recreate",
        "prepare",
        "cycle",
        "wait",  # fenced
    ]
    assert run.cycles("kafka_error") == 1
    assert run.cycles("fatal") == 1
    assert not run.health.readiness().ok


def test_idle_polls_slow_down_and_the_wait_between_them_is_sliced() -> None:
    """Nothing found: 2, 4, then 8 s between polls, waited a second at a time so the
    loop's heartbeat (liveness) goes on while it waits."""
    idle = CycleStats(pages=1)
    run = Run(ScriptedSource(idle, idle, idle, then_stop(idle)))
    assert run() == EXIT_OK
    assert run.source.waited == [1.0] * (2 + 4 + 8)
    assert run.cycles("ok") == 4


def test_cycles_log_at_debug_and_a_summary_at_info_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # 70 cycles a second apart (the pace after finding scans): one summary after a minute,
    # then the last ten cycles wait for the next one.
    cycles: list[Step] = [found(n) for n in range(1, 70)]
    cycles.append(then_stop(found(70)))
    run = Run(ScriptedSource(*cycles))
    caplog.set_level("DEBUG", logger="bridge.runner")
    assert run() == EXIT_OK
    records = [r for r in caplog.records if r.name == "bridge.runner"]
    assert [r.getMessage() for r in records if r.levelname == "DEBUG"] == ["cycle"] * 70
    summaries = [r for r in records if r.levelname == "INFO" and r.getMessage() == "summary"]
    assert len(summaries) == 1
    summary = summaries[0].__dict__
    assert summary["source_id"] == "src"
    assert summary["cycles"] == 61  # the first cycle, then one a second for a minute
    assert summary["published"] == sum(range(1, 62))
    assert summary["pages"] == 61
    assert summary["seconds"] == 60.0


def test_a_minute_with_nothing_published_logs_no_summary(
    caplog: pytest.LogCaptureFixture,
) -> None:
    quiet = [CycleStats(pages=1) for _ in range(20)]
    run = Run(ScriptedSource(*quiet, then_stop(CycleStats(pages=1))))
    caplog.set_level("DEBUG", logger="bridge.runner")
    assert run() == EXIT_OK
    assert run.clock() > 60  # idle cycles back off to the 8 s maximum: well past a minute
    messages = [r.getMessage() for r in caplog.records if r.name == "bridge.runner"]
    assert messages == ["no checkpoint: starting fresh"]
