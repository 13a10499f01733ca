"""The inspection side of the contract, on every backend: paged listing with filters, the
event feed (every change, in order, resumable, waitable) and the counters /metrics reads."""

from __future__ import annotations

import threading
import time

import pytest

from conveyor.backends.base import Backend
from conveyor.inspection import Event
from conveyor.job import ErrorInfo, Outcome, Progress, State
from tests.backends.helpers import (
    LEASE,
    NOW,
    claim_one,
    clocked_backend,
    enqueue_one,
    make_record,
    recover_at,
    running,
)

BOOM = ErrorInfo("ValueError", "boom", "Traceback ...")


#: every backend, its lease stamps read from a clock the test moves
backend = pytest.fixture(name="backend")(clocked_backend)


# -- listing ---------------------------------------------------------------------------------


def _ids(records: list) -> list[str]:  # type: ignore[type-arg]
    return [r.id for r in records]


def _page_all(backend: Backend, size: int, **filters: object) -> list[str]:
    out: list[str] = []
    cursor = None
    while True:
        page = backend.list_jobs(limit=size, cursor=cursor, **filters)  # type: ignore[arg-type]
        out += _ids(page)
        if len(page) < size:
            return out
        cursor = page[-1].id


def test_paging_with_each_filter_walks_every_match_newest_first(backend: Backend) -> None:
    records = [
        make_record(task=f"t{i % 3}", queue=f"q{i % 2}", ready_at=NOW + (60 if i % 5 == 0 else 0))
        for i in range(30)
    ]
    backend.enqueue(records)
    newest = sorted(records, key=lambda r: r.id, reverse=True)

    def expect(**f: object) -> list[str]:
        return [
            r.id
            for r in newest
            if all(getattr(r, k) == (v.value if isinstance(v, State) else v) for k, v in f.items())
        ]

    for filters in (
        {},
        {"task": "t1"},
        {"queue": "q0"},
        {"state": State.SCHEDULED},
        {"state": State.QUEUED},
        {"state": State.QUEUED, "task": "t2", "queue": "q1"},
        {"task": "t0", "queue": "q0"},
        {"state": State.SCHEDULED, "queue": "q1"},
    ):
        want = expect(**filters)
        assert want  # every filter matches something here
        for size in (1, 4, 50):
            assert _page_all(backend, size, **filters) == want, (filters, size)


def test_paging_lists_running_and_final_states(backend: Backend) -> None:
    ids = _ids(backend.enqueue([make_record(task=f"t{i}") for i in range(6)]))
    claims = backend.claim("w1", ["default"], 6, lease_seconds=LEASE, now=NOW)
    by_id = {c.record.id: c for c in claims}
    backend.finish(ids[0], by_id[ids[0]].token, Outcome.succeeded(b"1"), now=NOW)
    backend.finish(ids[1], by_id[ids[1]].token, Outcome.failed(BOOM), now=NOW)
    backend.finish(ids[2], by_id[ids[2]].token, Outcome.cancelled(), now=NOW)
    assert _ids(backend.list_jobs(state=State.SUCCEEDED)) == [ids[0]]
    assert _ids(backend.list_jobs(state=State.FAILED)) == [ids[1]]
    assert _ids(backend.list_jobs(state=State.CANCELLED)) == [ids[2]]
    assert _page_all(backend, 2, state=State.RUNNING) == ids[:2:-1]
    assert _ids(backend.list_jobs(state=State.RUNNING, task="t4")) == [ids[4]]


def test_a_cursor_is_a_position_new_jobs_do_not_shift_the_next_page(backend: Backend) -> None:
    ids = _ids(backend.enqueue([make_record() for _ in range(6)]))
    first = backend.list_jobs(limit=3)
    assert _ids(first) == ids[:2:-1]
    backend.enqueue([make_record() for _ in range(4)])  # newer than every listed job
    second = backend.list_jobs(limit=3, cursor=first[-1].id)
    assert _ids(second) == ids[2::-1]


def test_a_cursor_of_a_purged_job_still_marks_its_position(backend: Backend) -> None:
    ids = _ids(backend.enqueue([make_record() for _ in range(5)]))
    assert backend.purge_queue("default") == 5
    kept = _ids(backend.enqueue([make_record() for _ in range(2)]))
    assert _ids(backend.list_jobs(cursor=ids[2])) == []
    assert _ids(backend.list_jobs(cursor=kept[1])) == [kept[0]]


# -- events ----------------------------------------------------------------------------------


def _kinds(events: list[Event]) -> list[tuple[str, str]]:
    return [(e.job_id, e.state.value) for e in events]


def test_every_change_of_a_job_is_an_event_in_order(backend: Backend) -> None:
    start = backend.last_event_id()
    claim = running(backend, task="tests.traced")
    job_id = claim.record.id
    assert backend.set_progress(job_id, claim.token, Progress(50.0, "half", {"step": 2}))
    assert backend.finish(job_id, claim.token, Outcome.succeeded(b"1"), now=NOW + 1)
    events = backend.read_events(start)
    assert _kinds(events) == [
        (job_id, "queued"),
        (job_id, "running"),
        (job_id, "running"),
        (job_id, "succeeded"),
    ]
    assert all(e.task == "tests.traced" for e in events)
    assert events[2].progress == Progress(50.0, "half", {"step": 2})
    ids = [e.id for e in events]
    assert ids == sorted(set(ids)) and ids[0] > start
    assert backend.last_event_id() == ids[-1]
    assert all(abs(e.at.timestamp() - time.time()) < 60 for e in events)  # the store's clock


def test_retry_cancel_expiry_and_recovery_are_events(backend: Backend) -> None:
    start = backend.last_event_id()
    failing = running(backend)
    backend.finish(failing.record.id, failing.token, Outcome.retry(NOW + 5, BOOM, now=NOW), now=NOW)
    waiting = enqueue_one(backend)
    backend.cancel(waiting.id, now=NOW)
    expiring = enqueue_one(backend, queue="later", expires_at=NOW + 1)
    backend.sweep(now=NOW + 2)
    lost = running(backend, queue="lost")
    recover_at(backend, NOW + LEASE + 1, max_crashes=3)
    kinds = _kinds(backend.read_events(start))
    assert (failing.record.id, "scheduled") in kinds
    assert (waiting.id, "cancelled") in kinds
    assert (expiring.id, "expired") in kinds
    assert kinds[-1] == (lost.record.id, "queued")
    assert kinds.count((lost.record.id, "running")) == 1
    backend.finish(failing.record.id, failing.token, Outcome.failed(BOOM), now=NOW)  # fenced
    failed = running(backend, queue="f")
    backend.finish(failed.record.id, failed.token, Outcome.failed(BOOM), now=NOW)
    before_retry = backend.last_event_id()
    assert backend.retry(failed.record.id, now=NOW)
    assert _kinds(backend.read_events(before_retry)) == [(failed.record.id, "queued")]


def test_events_resume_after_an_id_and_respect_the_limit(backend: Backend) -> None:
    start = backend.last_event_id()
    backend.enqueue([make_record() for _ in range(5)])
    events = backend.read_events(start)
    assert len(events) == 5
    assert backend.read_events(events[1].id) == events[2:]
    assert backend.read_events(start, limit=2) == events[:2]
    assert backend.read_events(events[-1].id) == []


def test_a_waiting_read_wakes_for_an_event_from_another_thread(backend: Backend) -> None:
    start = backend.last_event_id()
    timer = threading.Timer(0.2, lambda: enqueue_one(backend, task="late"))
    timer.start()
    try:
        began = time.monotonic()
        events = backend.read_events(start, timeout=10.0)
        assert [e.task for e in events] == ["late"]
        assert time.monotonic() - began < 8.0
    finally:
        timer.join()


def test_a_read_with_nothing_new_waits_only_its_timeout(backend: Backend) -> None:
    enqueue_one(backend)
    began = time.monotonic()
    assert backend.read_events(backend.last_event_id(), timeout=0.2) == []
    assert 0.1 < time.monotonic() - began < 5.0


# -- counters --------------------------------------------------------------------------------


def test_finishes_count_run_times_failures_and_retries_per_task(backend: Backend) -> None:
    fast = running(backend, task="t.fast", now=NOW)
    backend.finish(fast.record.id, fast.token, Outcome.succeeded(b"1"), now=NOW + 0.003)
    slow = running(backend, task="t.slow", now=NOW)
    backend.finish(slow.record.id, slow.token, Outcome.failed(BOOM), now=NOW + 7.0)
    retried = running(backend, task="t.slow", now=NOW)
    backend.finish(retried.record.id, retried.token, Outcome.retry(NOW, BOOM, now=NOW), now=NOW)
    again = claim_one(backend, now=NOW + 1)
    lost = ErrorInfo("KeyError", "k")
    backend.finish(again.record.id, again.token, Outcome.failed(lost), now=NOW + 1.2)
    backend.finish(again.record.id, again.token, Outcome.succeeded(b"1"), now=NOW + 2)  # fenced
    stats = backend.job_stats(now=NOW + 10).tasks
    assert stats["t.fast"].runtime == {0.005: 1}
    assert stats["t.fast"].succeeded == 1 and stats["t.fast"].failed == 0
    slow_stats = stats["t.slow"]
    assert slow_stats.runtime == {10.0: 1, 0.25: 1}
    assert abs(slow_stats.runtime_sum - 7.2) < 1e-6
    assert (slow_stats.succeeded, slow_stats.failed, slow_stats.retries) == (0, 2, 1)
    assert slow_stats.failures == {"ValueError": 1, "KeyError": 1}
    assert slow_stats.runtime_count == 2


def test_counters_outlive_the_purge_of_the_jobs(backend: Backend) -> None:
    claim = running(backend, task="t.gone")
    backend.finish(claim.record.id, claim.token, Outcome.succeeded(b"1"), now=NOW + 0.5)
    backend.sweep(now=NOW + 86400 * 2)
    assert backend.get(claim.record.id) is None
    assert backend.job_stats(now=NOW).tasks["t.gone"].succeeded == 1


def test_stats_know_the_oldest_queued_job_of_each_queue(backend: Backend) -> None:
    enqueue_one(backend, queue="a", at=NOW - 30, priority=5)
    enqueue_one(backend, queue="a", at=NOW - 50, priority=0)
    enqueue_one(backend, queue="a", at=NOW - 10, priority=9)
    enqueue_one(backend, queue="b", at=NOW - 5)
    enqueue_one(backend, queue="c", ready_at=NOW + 60)  # scheduled: not waiting to run yet
    oldest = backend.job_stats(now=NOW).oldest_ready_at
    assert oldest == {"a": NOW - 50, "b": NOW - 5}


def test_a_job_failed_for_losing_its_worker_counts_as_a_failure(backend: Backend) -> None:
    running(backend, task="t.lost")
    recover_at(backend, NOW + LEASE + 1, max_crashes=1)
    stats = backend.job_stats(now=NOW + LEASE + 1).tasks["t.lost"]
    assert (stats.failed, stats.failures, stats.runtime_count) == (1, {"WorkerLost": 1}, 1)
