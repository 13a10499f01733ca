"""The scheduler loop against real backends, with a clock the test moves: each due time is
enqueued once however many schedulers tick, overlap and misfire rules hold end to end, and
``run()`` stops when asked."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

import pytest

from conveyor.backends import Backend
from conveyor.job import IdGenerator, JobRecord, Outcome, State
from conveyor.schedule import Every, PeriodicSpec
from conveyor.worker.scheduler import Scheduler

MINUTE = 60.0
T0 = 1_714_564_800.0  # 2024-05-01 12:00 UTC, a due time of every minute-multiple schedule
TASK = "tasks.tick"


class Clock:
    """A clock the test moves by hand; schedulers read it, nobody sleeps."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


RecordMaker = Callable[[PeriodicSpec, float], JobRecord]


def record_maker(clock: Clock) -> RecordMaker:
    new_id = IdGenerator()

    def make_record(spec: PeriodicSpec, due: float) -> JobRecord:
        now = clock()
        return JobRecord(
            id=new_id(),
            task=spec.task_name,
            payload=b"[[],{}]",
            created_at=now,
            ready_at=now,
            meta={"periodic": spec.task_name, "due": due},
        )

    return make_record


def schedulers(
    backend: Backend, clock: Clock, specs: Sequence[PeriodicSpec], count: int = 1
) -> list[Scheduler]:
    return [Scheduler(backend, specs, record_maker(clock), clock=clock) for _ in range(count)]


def jobs_of(backend: Backend, task: str = TASK) -> list[JobRecord]:
    return sorted(backend.list_jobs(task=task, limit=10_000), key=lambda r: r.meta["due"])


def dues_of(backend: Backend, task: str = TASK) -> list[float]:
    return [record.meta["due"] for record in jobs_of(backend, task)]


def run_job(backend: Backend, clock: Clock) -> None:
    """Play a worker: claim the queued job and finish it."""
    (claim,) = backend.claim("w1", ["default"], 1, lease_seconds=30, now=clock())
    assert backend.finish(claim.record.id, claim.token, Outcome.succeeded(b"null"), now=clock())


def test_three_schedulers_on_one_backend_enqueue_one_job_per_due_time(backend: Backend) -> None:
    clock = Clock(T0 + 10)
    trio = schedulers(backend, clock, [PeriodicSpec(TASK, Every(MINUTE))], count=3)
    for _ in range(100):  # ten minutes in steps of 6 s, each scheduler ticking each step
        for scheduler in trio:
            scheduler.tick()
        clock.advance(6)
    assert dues_of(backend) == [T0 + MINUTE * n for n in range(1, 11)]


def test_schedulers_ticking_at_once_in_threads_enqueue_one_job_per_due_time(
    backend: Backend,
) -> None:
    clock = Clock(T0 + 0.5)
    specs = [PeriodicSpec(TASK, Every(1)), PeriodicSpec("tasks.slow", Every(5))]
    trio = schedulers(backend, clock, specs, count=3)
    rounds = 41  # the first round, at T0+0.5, is each scheduler's start
    barrier = threading.Barrier(len(trio) + 1, timeout=30)

    def tick_each_round(scheduler: Scheduler) -> None:
        for _ in range(rounds):
            barrier.wait()  # all tick the same clock reading, racing for record_due
            scheduler.tick()
            barrier.wait()

    threads = [threading.Thread(target=tick_each_round, args=(s,)) for s in trio]
    for thread in threads:
        thread.start()
    for n in range(rounds):
        clock.now = T0 + 0.5 + n
        barrier.wait()
        barrier.wait()
    for thread in threads:
        thread.join(timeout=30)
    assert dues_of(backend) == [T0 + n for n in range(1, rounds)]
    assert dues_of(backend, "tasks.slow") == [T0 + n for n in range(5, rounds, 5)]


def test_tick_returns_the_next_due_time_across_tasks(backend: Backend) -> None:
    clock = Clock(T0 + 10)
    specs = [PeriodicSpec(TASK, Every(MINUTE)), PeriodicSpec("tasks.often", Every(15))]
    (scheduler,) = schedulers(backend, clock, specs)
    assert scheduler.tick() == T0 + 15


def test_overlap_false_skips_due_times_while_the_previous_job_is_queued(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="conveyor.scheduler")
    clock = Clock(T0 + 10)
    (scheduler,) = schedulers(backend, clock, [PeriodicSpec(TASK, Every(MINUTE), overlap=False)])
    scheduler.tick()
    clock.advance(MINUTE)
    scheduler.tick()  # enqueues T0+60
    clock.advance(MINUTE)
    scheduler.tick()  # T0+120: the job of T0+60 still waits in the queue
    assert dues_of(backend) == [T0 + MINUTE]
    assert "overlap=False" in caplog.text

    run_job(backend, clock)
    clock.advance(MINUTE)
    scheduler.tick()  # T0+180: the previous run finished, so this one is enqueued
    assert dues_of(backend) == [T0 + MINUTE, T0 + 3 * MINUTE]


def test_overlap_true_enqueues_while_the_previous_job_is_queued(backend: Backend) -> None:
    clock = Clock(T0 + 10)
    (scheduler,) = schedulers(backend, clock, [PeriodicSpec(TASK, Every(MINUTE))])
    for _ in range(3):
        scheduler.tick()
        clock.advance(MINUTE)
    assert [r.state for r in jobs_of(backend)] == [State.QUEUED, State.QUEUED]


def test_a_new_periodic_task_first_runs_at_its_first_due_time_after_start(
    backend: Backend,
) -> None:
    clock = Clock(T0 + 10)
    (scheduler,) = schedulers(backend, clock, [PeriodicSpec(TASK, Every(MINUTE))])
    assert scheduler.tick() == T0 + MINUTE
    assert dues_of(backend) == []
    clock.advance(MINUTE)
    scheduler.tick()
    assert dues_of(backend) == [T0 + MINUTE]


def test_after_downtime_the_latest_missed_due_time_runs_once_within_the_default_grace(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="conveyor.scheduler")
    clock = Clock(T0 - 10)
    spec = PeriodicSpec(TASK, Every(MINUTE))
    (before,) = schedulers(backend, clock, [spec])
    before.tick()
    clock.advance(10)
    before.tick()  # enqueues T0, then everything stops for a little over five minutes
    clock.advance(5 * MINUTE + 20)
    (after,) = schedulers(backend, clock, [spec])
    after.tick()
    after.tick()
    assert dues_of(backend) == [T0, T0 + 5 * MINUTE]
    assert "missed while nothing ran" in caplog.text


def test_after_downtime_a_due_time_beyond_its_grace_is_skipped_and_logged_once(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="conveyor.scheduler")
    clock = Clock(T0)
    spec = PeriodicSpec(TASK, Every(MINUTE), misfire_grace=15)
    backend.record_due(TASK, T0, record_maker(clock)(spec, T0), skip_if_active=False, now=T0)
    clock.advance(3 * MINUTE + 30)  # T0+180 is 30 s late, past its 15 s grace
    (scheduler,) = schedulers(backend, clock, [spec])
    assert scheduler.tick() == T0 + 4 * MINUTE
    scheduler.tick()
    assert dues_of(backend) == [T0]
    misfires = [r for r in caplog.records if "misfire_grace" in r.getMessage()]
    assert len(misfires) == 1 and misfires[0].levelno == logging.INFO
    clock.now = T0 + 4 * MINUTE + 5
    scheduler.tick()  # T0+240 comes on time and runs
    assert dues_of(backend) == [T0, T0 + 4 * MINUTE]


def test_run_in_a_thread_enqueues_due_jobs_and_stops_when_the_event_is_set(
    backend: Backend,
) -> None:
    clock = Clock(T0 + 10)
    (scheduler,) = schedulers(backend, clock, [PeriodicSpec(TASK, Every(MINUTE))])
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run, args=(stop,))
    thread.start()
    try:
        clock.advance(MINUTE)  # seen within a second: the loop never waits longer
        assert wait_until(lambda: dues_of(backend) == [T0 + MINUTE])
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_run_survives_an_error_in_a_tick_and_tries_again(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(T0 + 10)
    make_record = record_maker(clock)
    calls = 0

    def failing_once(spec: PeriodicSpec, due: float) -> JobRecord:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("the first record cannot be built")
        return make_record(spec, due)

    spec = PeriodicSpec(TASK, Every(MINUTE))
    scheduler = Scheduler(backend, [spec], failing_once, clock=clock)
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run, args=(stop,))
    with caplog.at_level(logging.ERROR, logger="conveyor.scheduler"):
        thread.start()
        try:
            clock.advance(MINUTE)
            assert wait_until(lambda: dues_of(backend) == [T0 + MINUTE])
        finally:
            stop.set()
            thread.join(timeout=10)
    assert "scheduler tick failed" in caplog.text


def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()
