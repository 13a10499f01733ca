"""Cluster-wide limits in the backend contract (``claim`` with ``meta["limits"]``,
``set_limit``, ``limits``), checked on every backend alike. Time moves by ``now``."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.backends.base import Backend
from conveyor.job import JobRecord, Outcome, State
from conveyor.limits import make_limit
from tests.backends.helpers import (
    LEASE,
    NOW,
    clocked_backend,
    enqueue_one,
    make_record,
    recover_at,
    set_store_time,
    stored,
)

#: every backend, its store clock (which limits count by, as leases do) moved by the tests
backend = pytest.fixture(name="backend")(clocked_backend)


def limited(backend: Backend, *refs: tuple[str, str], **fields: Any) -> JobRecord:
    return enqueue_one(backend, meta={"limits": [list(r) for r in refs]}, **fields)


def claim_ids(backend: Backend, n: int = 10, *, now: float = NOW, **kw: Any) -> list[str]:
    set_store_time(backend, now)
    claims = backend.claim("w1", kw.pop("queues", ["default"]), n, lease_seconds=LEASE, now=now)
    return [c.record.id for c in claims]


def succeed(backend: Backend, job_id: str, *, now: float = NOW) -> None:
    record = stored(backend, job_id)
    assert backend.finish(job_id, record.token, Outcome.succeeded(b"1"), now=now)


def test_concurrency_holds_back_a_job_which_stays_queued_without_an_attempt(
    backend: Backend,
) -> None:
    backend.set_limit(make_limit("api", concurrency=1), now=NOW)
    first, second = limited(backend, ("api", "")), limited(backend, ("api", ""))
    assert claim_ids(backend) == [first.id]
    assert claim_ids(backend) == []
    held = stored(backend, second.id)
    assert (held.state, held.attempts, held.failures, held.token) == (State.QUEUED, 0, 0, 0)
    succeed(backend, first.id)
    assert claim_ids(backend) == [second.id]


def test_a_held_job_never_blocks_other_tasks_of_the_same_queue(backend: Backend) -> None:
    backend.set_limit(make_limit("api", concurrency=1), now=NOW)
    a1, _a2, _a3 = (limited(backend, ("api", "")) for _ in range(3))
    free = enqueue_one(backend)
    assert claim_ids(backend, 2) == [a1.id, free.id]


def test_limits_apply_per_key(backend: Backend) -> None:
    backend.set_limit(make_limit("api", concurrency=1), now=NOW)
    u1 = [limited(backend, ("api", "user:1")) for _ in range(3)]
    u2 = limited(backend, ("api", "user:2"))
    assert claim_ids(backend) == [u1[0].id, u2.id]
    succeed(backend, u2.id)
    assert claim_ids(backend) == []
    succeed(backend, u1[0].id)
    assert claim_ids(backend) == [u1[1].id]


def test_concurrency_counts_every_claim_of_one_call(backend: Backend) -> None:
    backend.set_limit(make_limit("api", concurrency=2), now=NOW)
    jobs = [limited(backend, ("api", "")) for _ in range(5)]
    assert claim_ids(backend) == [jobs[0].id, jobs[1].id]


def test_a_slot_frees_when_its_lease_runs_out_even_before_recover(backend: Backend) -> None:
    backend.set_limit(make_limit("api", concurrency=1), now=NOW)
    first, second = limited(backend, ("api", "")), limited(backend, ("api", ""))
    assert claim_ids(backend) == [first.id]
    assert claim_ids(backend, now=NOW + LEASE - 1) == []
    assert claim_ids(backend, now=NOW + LEASE + 1) == [second.id]


def test_a_heartbeat_keeps_the_slot_past_the_first_lease(backend: Backend) -> None:
    from tests.backends.helpers import make_worker

    backend.set_limit(make_limit("api", concurrency=1), now=NOW)
    first, _second = limited(backend, ("api", "")), limited(backend, ("api", ""))
    assert claim_ids(backend) == [first.id]
    token = stored(backend, first.id).token
    later = NOW + LEASE - 1
    set_store_time(backend, later)
    assert not backend.heartbeat(
        make_worker(), [(first.id, token)], lease_seconds=LEASE, now=later
    ).lost
    assert claim_ids(backend, now=NOW + LEASE + 1) == []


def test_a_recovered_job_gives_its_slot_back(backend: Backend) -> None:
    backend.set_limit(make_limit("api", concurrency=1), now=NOW)
    first, second = limited(backend, ("api", "")), limited(backend, ("api", ""))
    assert claim_ids(backend) == [first.id]
    later = NOW + LEASE + 1
    recover_at(backend, later, max_crashes=3)
    # either job may run now, but only one of them
    assert claim_ids(backend, now=later) in ([first.id], [second.id])
    assert claim_ids(backend, now=later) == []


def test_a_retry_frees_the_slot(backend: Backend) -> None:
    from conveyor.job import ErrorInfo

    backend.set_limit(make_limit("api", concurrency=1), now=NOW)
    first, second = limited(backend, ("api", "")), limited(backend, ("api", ""))
    assert claim_ids(backend) == [first.id]
    token = stored(backend, first.id).token
    retry = Outcome.retry(NOW + 100, ErrorInfo("E", "later"), now=NOW)
    assert backend.finish(first.id, token, retry, now=NOW)
    assert claim_ids(backend) == [second.id]


def test_rate_admits_count_claims_per_sliding_window(backend: Backend) -> None:
    backend.set_limit(make_limit("api", rate="2/m"), now=NOW)
    jobs = [limited(backend, ("api", "")) for _ in range(5)]
    assert claim_ids(backend) == [jobs[0].id, jobs[1].id]
    for j in jobs[:2]:
        succeed(backend, j.id)
    assert claim_ids(backend, now=NOW + 30) == []
    assert claim_ids(backend, now=NOW + 59) == []
    assert claim_ids(backend, now=NOW + 60.5) == [jobs[2].id, jobs[3].id]
    assert claim_ids(backend, now=NOW + 61) == []
    assert claim_ids(backend, now=NOW + 121) == [jobs[4].id]


def test_a_job_counts_against_all_its_limits(backend: Backend) -> None:
    backend.set_limit(make_limit("task:t", concurrency=5), now=NOW)
    backend.set_limit(make_limit("shared", concurrency=1), now=NOW)
    a = limited(backend, ("task:t", ""), ("shared", ""))
    b = limited(backend, ("task:t", ""), ("shared", ""))
    other = limited(backend, ("shared", ""))
    assert claim_ids(backend) == [a.id]
    succeed(backend, a.id)
    assert claim_ids(backend) == [b.id]
    succeed(backend, b.id)
    assert claim_ids(backend) == [other.id]


def test_a_limit_that_was_never_stored_limits_nothing(backend: Backend) -> None:
    jobs = [limited(backend, ("nowhere", "")) for _ in range(3)]
    assert claim_ids(backend) == [j.id for j in jobs]


def test_set_limit_changes_the_numbers_for_the_next_claim(backend: Backend) -> None:
    backend.set_limit(make_limit("api", concurrency=1), now=NOW)
    jobs = [limited(backend, ("api", "")) for _ in range(4)]
    assert claim_ids(backend) == [jobs[0].id]
    assert claim_ids(backend) == []
    backend.set_limit(make_limit("api", concurrency=3), now=NOW)
    assert claim_ids(backend) == [jobs[1].id, jobs[2].id]
    backend.set_limit(make_limit("api", rate="10/s"), now=NOW)  # no concurrency any more
    assert claim_ids(backend) == [jobs[3].id]


def test_held_jobs_come_back_in_priority_then_fifo_order(backend: Backend) -> None:
    backend.set_limit(make_limit("api", concurrency=1), now=NOW)
    first = limited(backend, ("api", ""))
    low = limited(backend, ("api", ""), priority=0)
    high = limited(backend, ("api", ""), priority=5)
    later = limited(backend, ("api", ""), priority=5)
    assert claim_ids(backend) == [high.id]
    assert claim_ids(backend) == []
    order = []
    for _ in range(3):
        last = stored(backend, order[-1] if order else high.id)
        succeed(backend, last.id)
        order += claim_ids(backend)
    assert order == [later.id, first.id, low.id]


def test_a_deep_backlog_behind_a_saturated_limit_stays_claimable_in_order(
    backend: Backend,
) -> None:
    backend.set_limit(make_limit("api", concurrency=1), now=NOW)
    backend.enqueue([make_record(meta={"limits": [["api", ""]]}) for _ in range(300)])
    free = [enqueue_one(backend) for _ in range(3)]
    first = claim_ids(backend, 2)
    assert len(first) == 2 and first[1] == free[0].id
    assert claim_ids(backend, 5) == [free[1].id, free[2].id]
    for _ in range(3):
        assert claim_ids(backend, 5) == []
    succeed(backend, first[0])
    nxt = claim_ids(backend, 5)
    assert len(nxt) == 1
    assert stored(backend, nxt[0]).created_at == NOW


def test_held_jobs_can_be_cancelled_expired_and_purged(backend: Backend) -> None:
    backend.set_limit(make_limit("api", concurrency=1), now=NOW)
    running = limited(backend, ("api", ""))
    cancelled = limited(backend, ("api", ""))
    expiring = limited(backend, ("api", ""), expires_at=NOW + 10)
    kept = limited(backend, ("api", ""))
    assert claim_ids(backend) == [running.id]
    assert claim_ids(backend) == []  # the rest are held now
    assert backend.cancel(cancelled.id, now=NOW)
    assert backend.sweep(now=NOW + 11).expired == 1
    assert stored(backend, expiring.id).state is State.EXPIRED
    counts = backend.queue_counts()["default"]
    assert counts[State.QUEUED] == 1
    assert [r.id for r in backend.list_jobs(state=State.QUEUED)] == [kept.id]
    succeed(backend, running.id, now=NOW + 11)
    assert claim_ids(backend, now=NOW + 12) == [kept.id]
    assert backend.retry(cancelled.id, now=NOW + 12)
    assert backend.purge_queue("default") == 1
    assert backend.get(cancelled.id) is None


def test_purge_queue_removes_held_jobs(backend: Backend) -> None:
    backend.set_limit(make_limit("api", concurrency=1), now=NOW)
    jobs = [limited(backend, ("api", "")) for _ in range(3)]
    assert claim_ids(backend) == [jobs[0].id]
    assert claim_ids(backend) == []
    assert backend.purge_queue("default") == 2
    assert backend.get(jobs[1].id) is None and backend.get(jobs[2].id) is None


def test_limits_lists_each_limit_with_its_use_per_key(backend: Backend) -> None:
    backend.set_limit(make_limit("api", rate="5/m", concurrency=2), now=NOW)
    backend.set_limit(make_limit("idle", concurrency=1), now=NOW)
    a = limited(backend, ("api", "u1"))
    limited(backend, ("api", "u1"))
    limited(backend, ("api", "u2"))
    assert len(claim_ids(backend)) == 3
    succeed(backend, a.id)
    infos = {i.name: i for i in backend.limits(now=NOW + 1)}
    assert set(infos) == {"api", "idle"}
    api = infos["api"]
    assert (api.rate, api.concurrency, api.running, api.started) == ("5/m", 2, 2, 3)
    assert {(u.key, u.running, u.started) for u in api.keys} == {("u1", 1, 2), ("u2", 1, 1)}
    assert infos["idle"].keys == ()
    later = {i.name: i for i in backend.limits(now=NOW + LEASE + 61)}
    assert later["api"].keys == ()


def test_a_job_of_another_queue_is_not_held_by_this_queues_limit(backend: Backend) -> None:
    backend.set_limit(make_limit("api", concurrency=1), now=NOW)
    a = limited(backend, ("api", ""), queue="a")
    b = limited(backend, ("api", ""), queue="b")
    assert claim_ids(backend, queues=["a"]) == [a.id]
    assert claim_ids(backend, queues=["b"]) == []
    succeed(backend, a.id)
    assert claim_ids(backend, queues=["b"]) == [b.id]


def test_a_held_scheduled_job_runs_when_the_limit_frees(backend: Backend) -> None:
    backend.set_limit(make_limit("api", concurrency=1), now=NOW)
    first = limited(backend, ("api", ""))
    later = limited(backend, ("api", ""), ready_at=NOW + 5)
    assert claim_ids(backend) == [first.id]
    assert claim_ids(backend, now=NOW + 6) == []  # its time came, but the slot is taken
    backend.sweep(now=NOW + 7)
    assert claim_ids(backend, now=NOW + 7) == []
    succeed(backend, first.id, now=NOW + 8)
    assert claim_ids(backend, now=NOW + 8) == [later.id]
