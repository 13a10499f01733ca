"""The backend contract (conveyor/backends/base.py), checked on every backend alike.

Time is moved by passing ``now`` and, for what the store stamps itself (leases), by moving
the backend's ``StoreClock``; only the wait tests sleep, and only with generous bounds.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest

from conveyor.backends.base import Backend, DueResult, RecoveredJob, SweepResult
from conveyor.job import ErrorInfo, Outcome, Progress, State
from tests.backends.helpers import (
    LEASE,
    NOW,
    claim_one,
    clocked_backend,
    enqueue_one,
    make_record,
    make_worker,
    recover_at,
    running,
    set_store_time,
    stored,
)

BOOM = ErrorInfo("ValueError", "boom", "Traceback ...")


#: every backend, its lease stamps read from a clock the test moves
backend = pytest.fixture(name="backend")(clocked_backend)


# -- enqueue ---------------------------------------------------------------------------------


def test_enqueue_stores_every_record_and_returns_them_in_order(backend: Backend) -> None:
    records = [make_record(task=f"t{i}") for i in range(5)]
    returned = backend.enqueue(records)
    assert [r.id for r in returned] == [r.id for r in records]
    assert [stored(backend, r.id).task for r in records] == [f"t{i}" for i in range(5)]


def test_enqueue_of_nothing_returns_nothing(backend: Backend) -> None:
    assert backend.enqueue([]) == []


def test_a_stored_record_reads_back_field_for_field(backend: Backend) -> None:
    record = make_record(
        queue="q",
        priority=7,
        key="k",
        unique_key="u",
        expires_at=NOW + 60,
        result_ttl=10.0,
        error=ErrorInfo("E", "earlier", None),
        progress=Progress(5.0, "step", {"n": 1}),
        meta={"chain": ["a", "b"], "n": 2},
        payload=b"\x00\xffbytes",
    )
    backend.enqueue([record])
    assert stored(backend, record.id) == record


def test_a_claimed_record_is_the_stored_record_field_for_field(backend: Backend) -> None:
    fields = {"queue": "q", "key": "k", "unique_key": "u", "result_ttl": 10.0}
    full = make_record(
        **fields,
        priority=-3,
        at=NOW - 10,
        ready_at=NOW - 5,
        expires_at=NOW + 60,
        error=ErrorInfo("E", "earlier", None),
        progress=Progress(5.0, "step", {"n": 1}),
        meta={"chain": ["a", "b"], "n": 2},
        payload=b"\x00\xffbytes",
        failures=2,
        crashes=1,
    )
    plain = make_record(queue="q", at=NOW - 1, payload=b"")
    backend.enqueue([full, plain])
    claims = backend.claim("w1", ["q"], 2, lease_seconds=LEASE, now=NOW)
    assert [c.record.id for c in claims] == [plain.id, full.id]
    for claim in claims:
        assert claim.record == stored(backend, claim.record.id)


def test_get_of_an_unknown_job_returns_none(backend: Backend) -> None:
    assert backend.get("nope") is None


def test_key_returns_the_existing_job_until_purged(backend: Backend) -> None:
    first = enqueue_one(backend, key="once", task="first")
    again = enqueue_one(backend, key="once", task="second")
    assert (again.id, again.task) == (first.id, "first")
    claim = claim_one(backend)
    assert backend.finish(first.id, claim.token, Outcome.succeeded(b"1"), now=NOW)
    assert enqueue_one(backend, key="once").id == first.id  # final, but not purged yet
    backend.sweep(now=NOW + 86400.0 + 1)
    assert backend.get(first.id) is None
    assert enqueue_one(backend, key="once").id != first.id


def test_unique_key_returns_the_active_job(backend: Backend) -> None:
    first = enqueue_one(backend, unique_key="add(1,2)")
    assert enqueue_one(backend, unique_key="add(1,2)").id == first.id
    claim_one(backend)
    assert enqueue_one(backend, unique_key="add(1,2)").id == first.id  # running holds it too


def test_unique_key_frees_when_job_finishes(backend: Backend) -> None:
    claim = running(backend, unique_key="u")
    assert backend.finish(claim.record.id, claim.token, Outcome.succeeded(b"3"), now=NOW)
    second = enqueue_one(backend, unique_key="u")
    assert second.id != claim.record.id
    assert stored(backend, second.id).state is State.QUEUED


def test_unique_key_frees_when_job_is_cancelled(backend: Backend) -> None:
    first = enqueue_one(backend, unique_key="u")
    assert backend.cancel(first.id, now=NOW)
    assert enqueue_one(backend, unique_key="u").id != first.id


def test_batch_dedupe_within_one_enqueue_first_wins(backend: Backend) -> None:
    batch = [
        make_record(key="k", task="a"),
        make_record(unique_key="u", task="b"),
        make_record(key="k", task="c"),
        make_record(unique_key="u", task="d"),
        make_record(task="e"),
    ]
    out = backend.enqueue(batch)
    assert [r.task for r in out] == ["a", "b", "a", "b", "e"]
    assert out[2].id == batch[0].id and out[3].id == batch[1].id
    assert backend.get(batch[2].id) is None and backend.get(batch[3].id) is None


def test_key_is_checked_before_unique_key(backend: Backend) -> None:
    by_key = enqueue_one(backend, key="k", task="keyed")
    by_unique = enqueue_one(backend, unique_key="u", task="unique")
    assert enqueue_one(backend, key="k", unique_key="u").id == by_key.id
    assert enqueue_one(backend, key="other", unique_key="u").id == by_unique.id


# -- claim -----------------------------------------------------------------------------------


def test_claim_moves_a_job_to_running_under_a_lease(backend: Backend) -> None:
    record = enqueue_one(backend)
    claim = claim_one(backend, worker="w9", now=NOW + 5)
    job = stored(backend, record.id)
    assert claim.record.id == record.id and claim.token == job.token == claim.record.token
    assert job.state is State.RUNNING and job.attempts == 1 and job.worker == "w9"
    assert job.started_at == NOW + 5 and job.lease_expires_at == NOW + 5 + LEASE
    assert claim.record.state is State.RUNNING and claim.record.attempts == 1


def test_claim_orders_by_priority_then_fifo_across_queues(backend: Backend) -> None:
    low_old = enqueue_one(backend, queue="a", priority=0, at=NOW - 30)
    high_b = enqueue_one(backend, queue="b", priority=5, at=NOW - 10)
    high_a = enqueue_one(backend, queue="a", priority=5, at=NOW - 20)
    low_new = enqueue_one(backend, queue="b", priority=0, at=NOW - 5)
    due = enqueue_one(backend, queue="b", priority=5, at=NOW - 40, ready_at=NOW - 15)
    claims = backend.claim("w", ["a", "b"], 10, lease_seconds=LEASE, now=NOW)
    expected = [high_a, due, high_b, low_old, low_new]
    assert [c.record.id for c in claims] == [r.id for r in expected]


def test_claim_breaks_ties_by_id(backend: Backend) -> None:
    first, second = enqueue_one(backend), enqueue_one(backend)
    claims = backend.claim("w", ["default"], 2, lease_seconds=LEASE, now=NOW)
    assert [c.record.id for c in claims] == [first.id, second.id]


def test_claim_takes_only_the_given_queues(backend: Backend) -> None:
    enqueue_one(backend, queue="other", priority=9)
    mine = enqueue_one(backend, queue="mine")
    claims = backend.claim("w", ["mine", "absent"], 5, lease_seconds=LEASE, now=NOW)
    assert [c.record.id for c in claims] == [mine.id]


def test_claim_takes_at_most_limit_jobs(backend: Backend) -> None:
    backend.enqueue([make_record() for _ in range(5)])
    assert len(backend.claim("w", ["default"], 3, lease_seconds=LEASE, now=NOW)) == 3
    assert len(backend.claim("w", ["default"], 3, lease_seconds=LEASE, now=NOW)) == 2
    assert backend.claim("w", ["default"], 3, lease_seconds=LEASE, now=NOW) == []


def test_claim_of_an_empty_queue_returns_nothing(backend: Backend) -> None:
    assert backend.claim("w", ["default"], 5, lease_seconds=LEASE, now=NOW) == []


def test_scheduled_job_is_not_claimed_before_its_time(backend: Backend) -> None:
    record = enqueue_one(backend, ready_at=NOW + 60)
    assert record.state is State.SCHEDULED
    assert backend.claim("w", ["default"], 5, lease_seconds=LEASE, now=NOW + 59) == []
    assert claim_one(backend, now=NOW + 60).record.id == record.id


def test_job_past_its_expiry_is_not_claimed(backend: Backend) -> None:
    enqueue_one(backend, expires_at=NOW + 10)
    assert backend.claim("w", ["default"], 5, lease_seconds=LEASE, now=NOW + 11) == []


def test_every_claim_gets_a_token_no_earlier_claim_had(backend: Backend) -> None:
    claim = running(backend)
    job_id, tokens = claim.record.id, {claim.token}
    assert backend.release(job_id, claim.token, started=True, now=NOW)
    claim = claim_one(backend)
    tokens.add(claim.token)
    assert recover_at(backend, NOW + LEASE + 1, max_crashes=10)
    claim = claim_one(backend, now=NOW + LEASE + 2)
    tokens.add(claim.token)
    assert backend.finish(job_id, claim.token, Outcome.failed(BOOM), now=NOW + LEASE + 3)
    assert backend.retry(job_id, now=NOW + LEASE + 4)
    tokens.add(claim_one(backend, now=NOW + LEASE + 5).token)
    assert len(tokens) == 4


def test_concurrent_claims_never_return_the_same_job(backend: Backend) -> None:
    backend.enqueue([make_record() for _ in range(200)])
    claimed: list[str] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        while claims := backend.claim(name, ["default"], 3, lease_seconds=LEASE, now=NOW):
            with lock:
                claimed.extend(c.record.id for c in claims)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(claimed) == 200 and len(set(claimed)) == 200


# -- heartbeat, progress ---------------------------------------------------------------------


def test_heartbeat_extends_current_leases(backend: Backend) -> None:
    claim = running(backend)
    set_store_time(backend, NOW + 20)
    result = backend.heartbeat(
        make_worker(), [(claim.record.id, claim.token)], lease_seconds=LEASE, now=NOW + 20
    )
    assert not result.lost and not result.cancel_requested
    assert stored(backend, claim.record.id).lease_expires_at == NOW + 20 + LEASE
    assert recover_at(backend, NOW + LEASE + 1, max_crashes=3) == []


def test_heartbeat_reports_lost_leases(backend: Backend) -> None:
    kept, stale, finished = running(backend), running(backend), running(backend)
    assert backend.release(stale.record.id, stale.token, started=True, now=NOW)
    taken_over = claim_one(backend)
    assert taken_over.record.id == stale.record.id
    assert backend.finish(finished.record.id, finished.token, Outcome.succeeded(b"1"), now=NOW)
    leases = [(c.record.id, c.token) for c in (kept, stale, finished)] + [("gone", 1)]
    result = backend.heartbeat(make_worker(), leases, lease_seconds=LEASE, now=NOW + 1)
    assert result.lost == {
        (stale.record.id, stale.token),
        (finished.record.id, finished.token),
        ("gone", 1),
    }
    assert stored(backend, stale.record.id).lease_expires_at == NOW + LEASE  # not extended


def test_heartbeat_tells_an_old_claim_from_a_new_claim_of_the_same_job(backend: Backend) -> None:
    old = running(backend)
    recover_at(backend, NOW + LEASE + 1, max_crashes=3)
    new = claim_one(backend, now=NOW + LEASE + 1)
    assert new.record.id == old.record.id
    leases = [(old.record.id, old.token), (new.record.id, new.token)]
    backend.cancel(new.record.id, now=NOW)
    result = backend.heartbeat(make_worker(), leases, lease_seconds=LEASE, now=NOW)
    assert result.lost == {(old.record.id, old.token)}
    assert result.cancel_requested == {(new.record.id, new.token)}


def test_heartbeat_records_the_worker(backend: Backend) -> None:
    worker = make_worker("w7")
    worker.running = ["a", "b"]
    worker.processed = 12
    backend.heartbeat(worker, [], lease_seconds=LEASE, now=NOW + 42)
    [listed] = backend.list_workers()
    assert (listed.id, listed.last_seen, listed.running, listed.processed) == (
        "w7",
        NOW + 42,
        ["a", "b"],
        12,
    )


def test_cancel_running_job_sets_cancel_requested_and_heartbeat_reports_it(
    backend: Backend,
) -> None:
    claim, other = running(backend), running(backend)
    assert backend.cancel(claim.record.id, now=NOW)
    job = stored(backend, claim.record.id)
    assert job.state is State.RUNNING and job.cancel_requested
    leases = [(claim.record.id, claim.token), (other.record.id, other.token)]
    result = backend.heartbeat(make_worker(), leases, lease_seconds=LEASE, now=NOW + 1)
    assert result.cancel_requested == {(claim.record.id, claim.token)} and not result.lost
    assert backend.finish(claim.record.id, claim.token, Outcome.cancelled(), now=NOW + 2)
    job = stored(backend, claim.record.id)
    assert job.state is State.CANCELLED and not job.cancel_requested


def test_progress_is_fenced_by_token(backend: Backend) -> None:
    claim = running(backend)
    assert backend.set_progress(claim.record.id, claim.token, Progress(40.0, "half", {"s": 2}))
    assert stored(backend, claim.record.id).progress == Progress(40.0, "half", {"s": 2})
    assert not backend.set_progress(claim.record.id, claim.token + 1, Progress(99.0))
    assert not backend.set_progress("unknown", 1, Progress(1.0))
    assert stored(backend, claim.record.id).progress == Progress(40.0, "half", {"s": 2})


# -- finish ----------------------------------------------------------------------------------


def test_finish_success_stores_the_result_and_when_to_purge(backend: Backend) -> None:
    claim = running(backend, result_ttl=100.0)
    assert backend.finish(claim.record.id, claim.token, Outcome.succeeded(b"5"), now=NOW + 3)
    job = stored(backend, claim.record.id)
    assert (job.state, job.result, job.finished_at, job.purge_at) == (
        State.SUCCEEDED,
        b"5",
        NOW + 3,
        NOW + 103,
    )
    assert job.lease_expires_at is None


def test_a_finished_job_keeps_the_worker_that_ran_it(backend: Backend) -> None:
    ok, bad, many = running(backend), running(backend), running(backend)
    assert backend.finish(ok.record.id, ok.token, Outcome.succeeded(b"5"), now=NOW)
    assert backend.finish(bad.record.id, bad.token, Outcome.failed(BOOM), now=NOW)
    assert backend.finish_many([(many.record.id, many.token, Outcome.cancelled())], now=NOW)
    for claim in (ok, bad, many):
        assert stored(backend, claim.record.id).worker == "w1"


def test_finish_failure_stores_the_error(backend: Backend) -> None:
    claim = running(backend)
    assert backend.finish(claim.record.id, claim.token, Outcome.failed(BOOM), now=NOW)
    job = stored(backend, claim.record.id)
    assert job.state is State.FAILED and job.error == BOOM and job.result is None


def test_finish_with_stale_token_is_refused(backend: Backend) -> None:
    claim = running(backend)
    assert not backend.finish(claim.record.id, claim.token + 1, Outcome.failed(BOOM), now=NOW)
    assert stored(backend, claim.record.id).state is State.RUNNING
    assert backend.finish(claim.record.id, claim.token, Outcome.succeeded(b"1"), now=NOW)
    assert not backend.finish(claim.record.id, claim.token, Outcome.failed(BOOM), now=NOW)
    assert stored(backend, claim.record.id).state is State.SUCCEEDED


def test_finish_of_a_job_that_is_not_running_is_refused(backend: Backend) -> None:
    record = enqueue_one(backend)
    assert not backend.finish(record.id, record.token, Outcome.succeeded(b"1"), now=NOW)
    assert not backend.finish("unknown", 1, Outcome.succeeded(b"1"), now=NOW)
    assert stored(backend, record.id).state is State.QUEUED


def test_finish_with_a_retry_schedules_the_job_and_counts_a_failure(backend: Backend) -> None:
    claim = running(backend)
    outcome = Outcome.retry(NOW + 10, BOOM, now=NOW)
    assert backend.finish(claim.record.id, claim.token, outcome, now=NOW)
    job = stored(backend, claim.record.id)
    assert (job.state, job.ready_at, job.error, job.failures, job.attempts) == (
        State.SCHEDULED,
        NOW + 10,
        BOOM,
        1,
        1,
    )
    assert job.worker is None and job.lease_expires_at is None and job.finished_at is None
    assert backend.claim("w", ["default"], 1, lease_seconds=LEASE, now=NOW + 9) == []
    again = claim_one(backend, now=NOW + 10)
    assert again.token != claim.token and again.record.attempts == 2


def test_finish_with_an_immediate_retry_requeues_the_job(backend: Backend) -> None:
    claim = running(backend)
    assert backend.finish(claim.record.id, claim.token, Outcome.retry(NOW, BOOM, now=NOW), now=NOW)
    assert stored(backend, claim.record.id).state is State.QUEUED


def test_a_success_after_a_failed_attempt_clears_its_error(backend: Backend) -> None:
    claim = running(backend, result_ttl=100.0)
    assert backend.finish(claim.record.id, claim.token, Outcome.retry(NOW, BOOM, now=NOW), now=NOW)
    again = claim_one(backend, now=NOW + 1)
    assert (again.record.attempts, again.record.failures, again.record.error) == (2, 1, BOOM)
    assert backend.finish(again.record.id, again.token, Outcome.succeeded(b"5"), now=NOW + 3)
    job = stored(backend, claim.record.id)
    assert (job.state, job.result, job.error, job.purge_at) == (
        State.SUCCEEDED,
        b"5",
        None,
        NOW + 103,
    )


def test_a_retry_that_does_not_count_keeps_failures(backend: Backend) -> None:
    claim = running(backend)
    outcome = Outcome(State.QUEUED, error=BOOM, ready_at=NOW, counts_failure=False)
    assert backend.finish(claim.record.id, claim.token, outcome, now=NOW)
    assert stored(backend, claim.record.id).failures == 0


def test_finish_many_finishes_each_and_fences_each(backend: Backend) -> None:
    a, b, c = running(backend), running(backend), running(backend)
    results = backend.finish_many(
        [
            (a.record.id, a.token, Outcome.succeeded(b"a")),
            (b.record.id, b.token + 1, Outcome.succeeded(b"b")),
            (c.record.id, c.token, Outcome.retry(NOW + 5, BOOM, now=NOW)),
        ],
        now=NOW,
    )
    assert results == [True, False, True]
    states = [stored(backend, x.record.id).state for x in (a, b, c)]
    assert states == [State.SUCCEEDED, State.RUNNING, State.SCHEDULED]


def test_finish_many_of_final_outcomes_refuses_only_the_fenced_one(backend: Backend) -> None:
    a, b, c = running(backend), running(backend), running(backend)
    results = backend.finish_many(
        [
            (a.record.id, a.token, Outcome.succeeded(b"a")),
            (b.record.id, b.token + 1, Outcome.succeeded(b"b")),
            (c.record.id, c.token, Outcome.failed(BOOM)),
        ],
        now=NOW,
    )
    assert results == [True, False, True]
    states = [stored(backend, x.record.id).state for x in (a, b, c)]
    assert states == [State.SUCCEEDED, State.RUNNING, State.FAILED]
    assert stored(backend, a.record.id).result == b"a"


def test_finish_and_claim_writes_the_outcomes_then_claims_the_next_jobs(
    backend: Backend,
) -> None:
    done, stale = running(backend), running(backend)
    waiting = [enqueue_one(backend, priority=p) for p in (1, 9)]
    accepted, claims = backend.finish_and_claim(
        [
            (done.record.id, done.token, Outcome.succeeded(b"1")),
            (stale.record.id, stale.token + 1, Outcome.succeeded(b"2")),
        ],
        "w2",
        ["default"],
        5,
        lease_seconds=LEASE,
        now=NOW,
    )
    assert accepted == [True, False]
    assert stored(backend, done.record.id).state is State.SUCCEEDED
    assert stored(backend, stale.record.id).state is State.RUNNING
    assert [c.record.id for c in claims] == [waiting[1].id, waiting[0].id]
    assert all(c.record.worker == "w2" and c.record.state is State.RUNNING for c in claims)
    assert backend.finish_and_claim([], "w2", ["default"], 5, lease_seconds=LEASE, now=NOW) == (
        [],
        [],
    )


# -- release ---------------------------------------------------------------------------------


def test_release_started_returns_the_job_to_queued_and_keeps_the_attempt(
    backend: Backend,
) -> None:
    claim = running(backend)
    assert backend.release(claim.record.id, claim.token, started=True, now=NOW)
    job = stored(backend, claim.record.id)
    assert (job.state, job.attempts, job.worker, job.lease_expires_at) == (
        State.QUEUED,
        1,
        None,
        None,
    )


def test_release_unstarted_takes_back_the_attempt(backend: Backend) -> None:
    claim = running(backend)
    assert backend.release(claim.record.id, claim.token, started=False, now=NOW)
    assert stored(backend, claim.record.id).attempts == 0
    assert claim_one(backend).record.attempts == 1


def test_release_of_a_job_whose_cancellation_was_requested_cancels_it(backend: Backend) -> None:
    claim = running(backend)
    assert backend.cancel(claim.record.id, now=NOW)
    assert backend.release(claim.record.id, claim.token, started=True, now=NOW + 1)
    job = stored(backend, claim.record.id)
    assert job.state is State.CANCELLED and job.finished_at == NOW + 1
    assert job.purge_at is not None and not job.cancel_requested


def test_release_with_a_stale_token_is_refused(backend: Backend) -> None:
    claim = running(backend)
    assert not backend.release(claim.record.id, claim.token + 1, started=True, now=NOW)
    assert backend.release(claim.record.id, claim.token, started=True, now=NOW)
    assert not backend.release(claim.record.id, claim.token, started=True, now=NOW)
    assert not backend.finish(claim.record.id, claim.token, Outcome.succeeded(b"1"), now=NOW)


# -- recover ---------------------------------------------------------------------------------


def test_expired_lease_returns_job_to_queued_and_counts_a_crash(backend: Backend) -> None:
    claim = running(backend)
    later = NOW + LEASE + 1
    assert recover_at(backend, later, max_crashes=3) == [
        RecoveredJob(claim.record.id, State.QUEUED)
    ]
    job = stored(backend, claim.record.id)
    assert (job.state, job.crashes, job.failures, job.attempts, job.ready_at) == (
        State.QUEUED,
        1,
        0,
        1,
        later,
    )
    assert job.worker is None and job.lease_expires_at is None


def test_recover_leaves_live_leases_alone(backend: Backend) -> None:
    claim = running(backend)
    assert recover_at(backend, NOW + LEASE, max_crashes=3) == []  # due at, not past
    assert stored(backend, claim.record.id).state is State.RUNNING


def test_recovered_job_cannot_be_finished_by_its_old_worker(backend: Backend) -> None:
    claim = running(backend)
    recover_at(backend, NOW + LEASE + 1, max_crashes=3)
    assert not backend.finish(claim.record.id, claim.token, Outcome.succeeded(b"1"), now=NOW)
    again = claim_one(backend, now=NOW + LEASE + 2)
    assert not backend.finish(claim.record.id, claim.token, Outcome.succeeded(b"1"), now=NOW)
    assert backend.finish(claim.record.id, again.token, Outcome.succeeded(b"2"), now=NOW)
    assert stored(backend, claim.record.id).result == b"2"


def test_recover_fails_a_job_after_max_crashes(backend: Backend) -> None:
    job_id, now = running(backend).record.id, NOW
    for crash in (1, 2):
        now += LEASE + 1
        assert recover_at(backend, now, max_crashes=3) == [RecoveredJob(job_id, State.QUEUED)]
        assert stored(backend, job_id).crashes == crash
        claim_one(backend, now=now)
    now += LEASE + 1
    assert recover_at(backend, now, max_crashes=3) == [RecoveredJob(job_id, State.FAILED)]
    job = stored(backend, job_id)
    assert (job.state, job.crashes, job.attempts, job.finished_at) == (State.FAILED, 3, 3, now)
    assert job.error is not None and job.error.type == "WorkerLost" and "3" in job.error.message
    assert job.purge_at is not None


def test_recover_cancels_a_job_whose_cancellation_was_requested(backend: Backend) -> None:
    claim = running(backend)
    backend.cancel(claim.record.id, now=NOW)
    assert recover_at(backend, NOW + LEASE + 1, max_crashes=3) == [
        RecoveredJob(claim.record.id, State.CANCELLED)
    ]
    assert stored(backend, claim.record.id).state is State.CANCELLED


# -- leases: the store's clock, stalls ------------------------------------------------------


def test_claim_stamps_the_lease_by_the_store_clock_when_it_commits(backend: Backend) -> None:
    record = enqueue_one(backend)
    set_store_time(backend, NOW + 100)  # the claim waited 100 s for the store
    [claim] = backend.claim("w", ["default"], 1, lease_seconds=LEASE, now=NOW)
    job = stored(backend, record.id)
    assert job.started_at == claim.record.started_at == NOW + 100
    assert job.lease_expires_at == claim.record.lease_expires_at == NOW + 100 + LEASE


def test_finish_and_claim_stamps_the_lease_by_the_store_clock(backend: Backend) -> None:
    done = running(backend)
    record = enqueue_one(backend)
    set_store_time(backend, NOW + 7)
    _, [claim] = backend.finish_and_claim(
        [(done.record.id, done.token, Outcome.succeeded(b"1"))],
        "w",
        ["default"],
        1,
        lease_seconds=LEASE,
        now=NOW,
    )
    assert claim.record.id == record.id
    assert stored(backend, record.id).lease_expires_at == NOW + 7 + LEASE
    assert claim.record.started_at == NOW + 7


def test_heartbeat_renews_by_the_store_clock(backend: Backend) -> None:
    claim = running(backend)
    set_store_time(backend, NOW + 9)
    leases = [(claim.record.id, claim.token)]
    backend.heartbeat(make_worker(), leases, lease_seconds=LEASE, now=NOW)
    assert stored(backend, claim.record.id).lease_expires_at == NOW + 9 + LEASE


def test_recover_compares_leases_with_the_store_clock_not_the_callers(backend: Backend) -> None:
    claim = running(backend)
    set_store_time(backend, NOW + 1)  # a caller whose clock runs 100 s ahead
    assert backend.recover(now=NOW + LEASE + 100, max_crashes=3) == []
    assert stored(backend, claim.record.id).state is State.RUNNING


def test_a_lease_that_ran_out_while_workers_beat_counts_a_crash(backend: Backend) -> None:
    claim = running(backend)
    for t in (NOW, NOW + 10, NOW + 20, NOW + 30):
        set_store_time(backend, t)
        backend.heartbeat(make_worker("other"), [], lease_seconds=LEASE, now=t)
    assert recover_at(backend, NOW + LEASE + 1, max_crashes=3) == [
        RecoveredJob(claim.record.id, State.QUEUED)
    ]
    assert stored(backend, claim.record.id).crashes == 1


def test_leases_that_ran_out_in_a_stall_count_no_crash(backend: Backend) -> None:
    backend.heartbeat(make_worker(), [], lease_seconds=LEASE, now=NOW)
    claim = running(backend)
    # Nobody's heartbeat got through for longer than half a lease: a stall for everyone.
    assert recover_at(backend, NOW + LEASE + 1, max_crashes=1) == [
        RecoveredJob(claim.record.id, State.QUEUED)
    ]
    job = stored(backend, claim.record.id)
    assert (job.state, job.crashes) == (State.QUEUED, 0)


def test_recover_counts_no_crash_just_after_a_stall(backend: Backend) -> None:
    backend.heartbeat(make_worker(), [], lease_seconds=LEASE, now=NOW)
    set_store_time(backend, NOW + LEASE)  # the first heartbeat after a gap of one lease
    backend.heartbeat(make_worker(), [], lease_seconds=LEASE, now=NOW)
    claim = running(backend, now=NOW + LEASE)
    for t in (NOW + LEASE + 10, NOW + LEASE + 20, NOW + LEASE + 30):
        set_store_time(backend, t)  # workers beat again, as usual
        backend.heartbeat(make_worker("other"), [], lease_seconds=LEASE, now=t)
    # Within the grace after the stall: the lease ran out because of it, not a lost worker.
    assert recover_at(backend, NOW + 2 * LEASE + 1, max_crashes=1) == [
        RecoveredJob(claim.record.id, State.QUEUED)
    ]
    assert stored(backend, claim.record.id).crashes == 0


# -- sweep -----------------------------------------------------------------------------------


def test_sweep_promotes_scheduled_jobs_whose_time_came(backend: Backend) -> None:
    soon = enqueue_one(backend, ready_at=NOW + 10)
    later = enqueue_one(backend, ready_at=NOW + 100)
    assert backend.sweep(now=NOW + 10) == SweepResult(promoted=1)
    assert stored(backend, soon.id).state is State.QUEUED
    assert stored(backend, later.id).state is State.SCHEDULED


def test_sweep_expires_and_purges(backend: Backend) -> None:
    done = running(backend, result_ttl=20.0)
    stale = enqueue_one(backend, expires_at=NOW + 10, result_ttl=50.0)
    fresh = enqueue_one(backend, expires_at=NOW + 1000)
    backend.finish(done.record.id, done.token, Outcome.succeeded(b"1"), now=NOW)
    assert backend.sweep(now=NOW + 10) == SweepResult(expired=1)
    job = stored(backend, stale.id)
    assert (job.state, job.finished_at, job.purge_at) == (State.EXPIRED, NOW + 10, NOW + 60)
    assert backend.sweep(now=NOW + 20) == SweepResult(purged=1)
    assert backend.get(done.record.id) is None
    assert backend.sweep(now=NOW + 60) == SweepResult(purged=1)
    assert backend.get(stale.id) is None
    assert stored(backend, fresh.id).state is State.QUEUED


def test_sweep_does_not_expire_a_running_job(backend: Backend) -> None:
    claim = running(backend, expires_at=NOW + 10)
    assert backend.sweep(now=NOW + 20) == SweepResult()
    assert stored(backend, claim.record.id).state is State.RUNNING


def test_sweep_drops_workers_not_seen_for_an_hour(backend: Backend) -> None:
    backend.register_worker(make_worker("old"))
    backend.heartbeat(make_worker("alive"), [], lease_seconds=LEASE, now=NOW + 3000)
    backend.sweep(now=NOW + 3601)
    assert [w.id for w in backend.list_workers()] == ["alive"]


# -- the user's side -------------------------------------------------------------------------


def test_list_jobs_is_newest_first_and_pages_by_cursor(backend: Backend) -> None:
    ids = [r.id for r in backend.enqueue([make_record() for _ in range(7)])]
    newest_first = sorted(ids, reverse=True)
    first = backend.list_jobs(limit=3)
    second = backend.list_jobs(limit=3, cursor=first[-1].id)
    third = backend.list_jobs(limit=3, cursor=second[-1].id)
    assert [r.id for r in first + second + third] == newest_first
    assert backend.list_jobs(limit=3, cursor=third[-1].id) == []


def test_list_jobs_filters_by_state_task_and_queue(backend: Backend) -> None:
    a = enqueue_one(backend, task="a", queue="q1")
    b = enqueue_one(backend, task="b", queue="q2")
    c = enqueue_one(backend, task="a", queue="q2", ready_at=NOW + 60)
    assert [r.id for r in backend.list_jobs(task="a")] == [c.id, a.id]
    assert [r.id for r in backend.list_jobs(queue="q2")] == [c.id, b.id]
    assert [r.id for r in backend.list_jobs(state=State.SCHEDULED)] == [c.id]
    assert [r.id for r in backend.list_jobs(state=State.QUEUED, task="a", queue="q1")] == [a.id]
    assert backend.list_jobs(state=State.FAILED) == []


def test_queue_counts_groups_by_queue_and_state(backend: Backend) -> None:
    assert backend.queue_counts() == {}
    backend.enqueue([make_record(queue="a") for _ in range(3)])
    enqueue_one(backend, queue="b", ready_at=NOW + 60)
    claim_one(backend, queues=("a",))
    assert backend.queue_counts() == {
        "a": {State.QUEUED: 2, State.RUNNING: 1},
        "b": {State.SCHEDULED: 1},
    }


def test_cancel_of_a_waiting_job_is_final_at_once(backend: Backend) -> None:
    queued, scheduled = enqueue_one(backend), enqueue_one(backend, ready_at=NOW + 60)
    for record in (queued, scheduled):
        assert backend.cancel(record.id, now=NOW + 1)
        job = stored(backend, record.id)
        assert (job.state, job.finished_at, job.purge_at) == (
            State.CANCELLED,
            NOW + 1,
            NOW + 1 + job.result_ttl,
        )
    assert backend.claim("w", ["default"], 5, lease_seconds=LEASE, now=NOW + 100) == []


def test_cancel_of_a_final_or_unknown_job_returns_false(backend: Backend) -> None:
    claim = running(backend)
    backend.finish(claim.record.id, claim.token, Outcome.succeeded(b"1"), now=NOW)
    assert not backend.cancel(claim.record.id, now=NOW)
    assert not backend.cancel("unknown", now=NOW)
    assert stored(backend, claim.record.id).state is State.SUCCEEDED


def test_retry_sends_a_failed_job_back_to_queued_with_a_fresh_budget(backend: Backend) -> None:
    claim = running(backend)
    backend.finish(claim.record.id, claim.token, Outcome.retry(NOW, BOOM, now=NOW), now=NOW)
    claim = claim_one(backend)
    backend.finish(claim.record.id, claim.token, Outcome.failed(BOOM), now=NOW + 1)
    assert backend.retry(claim.record.id, now=NOW + 5)
    job = stored(backend, claim.record.id)
    assert (job.state, job.ready_at, job.failures, job.crashes, job.attempts) == (
        State.QUEUED,
        NOW + 5,
        0,
        0,
        2,
    )
    assert job.error is None and job.result is None and job.finished_at is None
    assert job.purge_at is None and not job.cancel_requested
    assert claim_one(backend, now=NOW + 5).record.attempts == 3


def test_retry_brings_back_cancelled_and_expired_jobs(backend: Backend) -> None:
    cancelled = enqueue_one(backend)
    backend.cancel(cancelled.id, now=NOW)
    expired = enqueue_one(backend, expires_at=NOW + 1)
    backend.sweep(now=NOW + 2)
    for record in (cancelled, expired):
        assert backend.retry(record.id, now=NOW + 3)
        assert stored(backend, record.id).state is State.QUEUED
    claims = backend.claim("w", ["default"], 5, lease_seconds=LEASE, now=NOW + 3)
    assert {c.record.id for c in claims} == {cancelled.id, expired.id}


def test_retry_refuses_jobs_that_are_not_failed_cancelled_or_expired(backend: Backend) -> None:
    claim, done = running(backend), running(backend)
    queued = enqueue_one(backend)
    backend.finish(done.record.id, done.token, Outcome.succeeded(b"1"), now=NOW)
    for job_id in (queued.id, claim.record.id, done.record.id, "unknown"):
        assert not backend.retry(job_id, now=NOW)
    assert stored(backend, done.record.id).state is State.SUCCEEDED


def test_retry_refuses_to_make_a_twin_of_an_active_unique_job(backend: Backend) -> None:
    first = enqueue_one(backend, unique_key="u")
    backend.cancel(first.id, now=NOW)
    second = enqueue_one(backend, unique_key="u")
    assert not backend.retry(first.id, now=NOW)
    assert stored(backend, first.id).state is State.CANCELLED
    backend.cancel(second.id, now=NOW)
    assert backend.retry(first.id, now=NOW)


def test_purge_queue_deletes_only_the_waiting_jobs_of_that_queue(backend: Backend) -> None:
    backend.enqueue([make_record(queue="q") for _ in range(3)])
    scheduled = enqueue_one(backend, queue="q", ready_at=NOW + 60)
    claim = claim_one(backend, queues=("q",))
    other = enqueue_one(backend, queue="other")
    assert backend.purge_queue("q") == 3
    assert backend.get(scheduled.id) is None
    assert stored(backend, claim.record.id).state is State.RUNNING
    assert stored(backend, other.id).state is State.QUEUED
    assert backend.purge_queue("q") == 0


# -- workers ---------------------------------------------------------------------------------


def test_register_list_and_unregister_workers(backend: Backend) -> None:
    one, two = make_worker("one", queues=["a", "b"]), make_worker("two")
    backend.register_worker(one)
    backend.register_worker(two)
    assert sorted(w.id for w in backend.list_workers()) == ["one", "two"]
    [listed] = [w for w in backend.list_workers() if w.id == "one"]
    assert listed == one
    backend.unregister_worker("one")
    backend.unregister_worker("never registered")
    assert [w.id for w in backend.list_workers()] == ["two"]


def test_register_replaces_a_worker_of_the_same_id(backend: Backend) -> None:
    backend.register_worker(make_worker("w"))
    replacement = make_worker("w", queues=["x"])
    replacement.concurrency = 16
    backend.register_worker(replacement)
    assert backend.list_workers() == [replacement]


# -- periodic jobs ---------------------------------------------------------------------------


def test_record_due_enqueues_once_per_due_time(backend: Backend) -> None:
    first = make_record(task="tick")
    assert backend.record_due("tick", NOW, first, skip_if_active=False, now=NOW) is (
        DueResult.ENQUEUED
    )
    twin = make_record(task="tick")
    assert backend.record_due("tick", NOW, twin, skip_if_active=False, now=NOW) is (
        DueResult.DUPLICATE
    )
    assert backend.get(twin.id) is None
    assert stored(backend, first.id).state is State.QUEUED
    later = make_record(task="tick")
    assert backend.record_due("tick", NOW + 60, later, skip_if_active=False, now=NOW + 60) is (
        DueResult.ENQUEUED
    )
    assert stored(backend, later.id).task == "tick"


def test_record_due_refuses_an_earlier_due_time(backend: Backend) -> None:
    backend.record_due("tick", NOW, make_record(), skip_if_active=False, now=NOW)
    earlier = make_record()
    assert backend.record_due("tick", NOW - 60, earlier, skip_if_active=False, now=NOW) is (
        DueResult.DUPLICATE
    )
    assert backend.get(earlier.id) is None


def test_record_due_skips_while_previous_active(backend: Backend) -> None:
    first = make_record()
    backend.record_due("tick", NOW, first, skip_if_active=True, now=NOW)
    claim = claim_one(backend)
    skipped = make_record()
    assert backend.record_due("tick", NOW + 60, skipped, skip_if_active=True, now=NOW + 60) is (
        DueResult.SKIPPED
    )
    assert backend.get(skipped.id) is None
    again = make_record()
    assert backend.record_due("tick", NOW + 60, again, skip_if_active=True, now=NOW + 61) is (
        DueResult.DUPLICATE
    )  # the skipped due time was recorded all the same
    backend.finish(first.id, claim.token, Outcome.succeeded(b"1"), now=NOW + 90)
    after = make_record()
    assert backend.record_due("tick", NOW + 120, after, skip_if_active=True, now=NOW + 120) is (
        DueResult.ENQUEUED
    )


def test_record_due_enqueues_beside_an_active_job_when_overlap_is_allowed(
    backend: Backend,
) -> None:
    backend.record_due("tick", NOW, make_record(), skip_if_active=False, now=NOW)
    second = make_record()
    assert backend.record_due("tick", NOW + 60, second, skip_if_active=False, now=NOW) is (
        DueResult.ENQUEUED
    )
    assert len(backend.list_jobs()) == 2


def test_schedules_report_what_was_recorded(backend: Backend) -> None:
    assert backend.schedules() == []
    first = make_record()
    backend.record_due("a", NOW, first, skip_if_active=True, now=NOW + 1)
    backend.record_due("a", NOW + 60, make_record(), skip_if_active=True, now=NOW + 61)
    [state] = backend.schedules()
    assert (state.name, state.last_due, state.last_job_id, state.last_enqueued_at) == (
        "a",
        NOW + 60,
        first.id,
        NOW + 1,
    )


def test_concurrent_record_due_enqueues_exactly_once(backend: Backend) -> None:
    results: list[DueResult] = []

    def schedule() -> None:
        result = backend.record_due("tick", NOW, make_record(), skip_if_active=False, now=NOW)
        results.append(result)

    threads = [threading.Thread(target=schedule) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert Counter(results) == {DueResult.ENQUEUED: 1, DueResult.DUPLICATE: 7}
    assert len(backend.list_jobs()) == 1


# -- waiting ---------------------------------------------------------------------------------


def _keep_doing(
    action: Callable[[], object], until: threading.Thread, *, every: float = 0.05
) -> None:
    """Repeat ``action`` until the thread ends (at most 20 s), so that a waiter that starts
    waiting late still sees one; then check that it did end."""
    deadline = time.monotonic() + 20
    while until.is_alive() and time.monotonic() < deadline:
        action()
        until.join(every)
    assert not until.is_alive(), "the waiter was not woken"


def test_wait_for_jobs_wakes_on_enqueue(backend: Backend) -> None:
    assert backend.claim("w", ["default"], 1, lease_seconds=LEASE, now=NOW) == []
    waiter = threading.Thread(target=backend.wait_for_jobs, args=(["default"], 60.0))
    waiter.start()
    _keep_doing(lambda: enqueue_one(backend), waiter)


def test_wait_for_jobs_returns_when_the_timeout_passes(backend: Backend) -> None:
    started = time.monotonic()
    backend.wait_for_jobs(["default"], 0.05)
    assert time.monotonic() - started < 10


def test_wait_for_change_wakes_on_progress(backend: Backend) -> None:
    claim = running(backend)
    waiter = threading.Thread(target=backend.wait_for_change, args=(claim.record.id, 60.0))
    waiter.start()
    _keep_doing(lambda: backend.set_progress(claim.record.id, claim.token, Progress(1.0)), waiter)


def test_wait_final_returns_when_finished(backend: Backend) -> None:
    claim = running(backend)
    finisher = threading.Timer(
        0.1,
        backend.finish,
        args=(claim.record.id, claim.token, Outcome.succeeded(b"7")),
        kwargs={"now": NOW},
    )
    finisher.start()
    try:
        record = backend.wait_final(claim.record.id, 30.0)
    finally:
        finisher.join()
    assert record is not None and record.state is State.SUCCEEDED and record.result == b"7"


def test_wait_final_times_out_with_the_latest_record(backend: Backend) -> None:
    record = enqueue_one(backend)
    latest = backend.wait_final(record.id, 0.05)
    assert latest is not None and latest.state is State.QUEUED


def test_wait_final_of_an_unknown_job_returns_none(backend: Backend) -> None:
    assert backend.wait_final("unknown", 1.0) is None


def test_ping_answers(backend: Backend) -> None:
    assert backend.ping()
