"""The worker's slot bookkeeping: how much it claims ahead, and when it wakes the fetcher."""

from __future__ import annotations

import threading

from conveyor.job import Claim, JobRecord
from conveyor.worker.execute import JobRun
from conveyor.worker.slots import AHEAD_PER_SLOT, PREFETCH_BELOW_SECONDS, Slots


def make_runs(n: int, start: int = 0) -> list[JobRun]:
    return [
        JobRun(Claim(JobRecord(f"j{i}", "t", b"[[],{}]"), 1), None, (), {}, None, 0.0)
        for i in range(start, start + n)
    ]


def short_slots(concurrency: int) -> Slots:
    slots = Slots(concurrency)
    slots.run_seconds = PREFETCH_BELOW_SECONDS / 10  # runs are short: claim ahead
    return slots


def test_long_runs_claim_only_the_free_slots() -> None:
    slots = Slots(4)
    assert slots.prefetch() == 0
    assert slots.reserve() == 4
    assert slots.reserve() == 0


def test_short_runs_claim_ahead_of_the_slots() -> None:
    slots = short_slots(4)
    ahead = AHEAD_PER_SLOT * 4
    assert slots.prefetch() == ahead > 0
    assert slots.reserve() == 4 + ahead  # the 4 slots and those ahead
    assert slots.reserve() == 0
    slots.unreserve(4 + ahead)
    slots.admit(make_runs(4 + ahead))
    assert slots.reserve() == 0  # the pool holds all it may


def test_runs_awaiting_their_write_bound_the_claims_too() -> None:
    slots = short_slots(4)
    held = 4 + AHEAD_PER_SLOT * 4
    runs = make_runs(held)
    slots.admit(runs)
    for run in runs:
        slots.ended(run, wake=False)  # over; the outcomes are not written yet
    # Up to twice the slots await their write beyond what the pool may hold.
    assert slots.reserve() == 8
    slots.unreserve(8)
    slots.forget(*runs)
    assert slots.reserve() == held


def waiting_fetcher(slots: Slots) -> tuple[threading.Thread, threading.Event]:
    """A thread asleep on the slots' condition, as the fetcher waits for room; the event is
    set once it wakes (at most 1 s later, at its own timeout)."""
    woke, ready = threading.Event(), threading.Event()

    def wait() -> None:
        with slots.cond:
            ready.set()
            slots._wait(1.0)
        woke.set()

    thread = threading.Thread(target=wait)
    thread.start()
    assert ready.wait(5)
    return thread, woke


def test_a_write_that_leaves_the_pool_jobs_does_not_wake_the_fetcher() -> None:
    slots = short_slots(2)
    running, finished = make_runs(4), make_runs(2, start=4)
    slots.admit(running + finished)
    for run in finished:
        slots.ended(run, wake=False)
    thread, woke = waiting_fetcher(slots)
    with slots.cond:  # taken once the waiter sleeps on the condition
        slots.forget(*finished)  # 4 runs still held for 2 slots: the finisher claims next
    assert not woke.wait(0.3)
    thread.join(5)


def test_the_fetcher_wakes_when_the_pool_runs_short_or_nothing_is_held() -> None:
    for held, forget in ((3, 2), (2, 2)):  # 1 left for 2 slots; nothing left
        slots = short_slots(2)
        runs = make_runs(held)
        slots.admit(runs)
        thread, woke = waiting_fetcher(slots)
        with slots.cond:
            slots.forget(*runs[:forget])
        assert woke.wait(0.3), (held, forget)
        thread.join(5)


def test_a_failed_claim_wakes_the_fetcher_when_the_pool_runs_short() -> None:
    slots = short_slots(2)
    free = slots.reserve()
    thread, woke = waiting_fetcher(slots)
    with slots.cond:
        slots.unreserve(free)  # the claim failed: nothing is held, nothing under way
    assert woke.wait(0.3)
    thread.join(5)
