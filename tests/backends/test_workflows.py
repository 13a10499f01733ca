"""Workflows in the backend contract (base.py ``enqueue_workflow``): the graph lives in the
store and each successor is decided in the operation that finishes its input. Checked on
every backend alike, by hand, with the clock passed in."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from conveyor.backends import open_backend
from conveyor.backends.base import Backend
from conveyor.canvas import Failure, chain, chord, group
from conveyor.job import Claim, ErrorInfo, Outcome, State
from tests.backends.helpers import NOW, StoreClock, recover_at, stored
from tests.backends.workflow_helpers import (
    arguments,
    claim_all,
    s,
    states,
    store_workflow,
    succeed,
)

BOOM = ErrorInfo("ValueError", "boom", None)


@pytest.fixture
def backend(backend_url: str, namespace: str) -> Iterator[Backend]:
    """Every backend, its lease stamps read from a clock the test moves (as in
    test_conformance.py)."""
    b = open_backend(backend_url, namespace=namespace, clock=StoreClock())
    try:
        yield b
    finally:
        b.close()


def test_only_the_first_step_of_a_chain_is_ready(backend: Backend) -> None:
    records = store_workflow(backend, chain(s("a", 1, 2), s("b", 10), s("c", 3)))
    assert list(claim_all(backend)) == ["a"]
    assert states(backend, records) == {
        "a": State.RUNNING,
        "b": State.SCHEDULED,
        "c": State.SCHEDULED,
    }
    backend.sweep(now=NOW + 10 * 365 * 86400.0)  # years later: still held, nothing promoted
    assert stored(backend, records[1].id).state is State.SCHEDULED


def test_each_result_becomes_the_first_argument_of_the_next_step(backend: Backend) -> None:
    store_workflow(backend, chain(s("a", 1, 2), s("b", 10), s("c", 3)))
    succeed(backend, claim_all(backend)["a"], 3)
    b = claim_all(backend)["b"]
    assert arguments(b.record) == [3, 10]
    succeed(backend, b, 13)
    c = claim_all(backend)["c"]
    assert arguments(c.record) == [13, 3]
    succeed(backend, c, 39)
    assert json.loads(stored(backend, c.record.id).result or b"") == 39


def test_chord_callback_waits_for_every_member_and_gets_results_in_order(
    backend: Backend,
) -> None:
    records = store_workflow(backend, chord([s("m0"), s("m1"), s("m2")], s("cb", "x")))
    members = claim_all(backend)
    assert sorted(members) == ["m0", "m1", "m2"]
    for name in ("m2", "m0"):  # out of order
        succeed(backend, members[name], name.upper())
        assert stored(backend, records[3].id).state is State.SCHEDULED
    succeed(backend, members["m1"], "M1")
    cb = claim_all(backend)["cb"]
    assert arguments(cb.record) == [["M0", "M1", "M2"], "x"]


def test_two_last_members_finished_in_one_batch_queue_the_callback_once(
    backend: Backend,
) -> None:
    store_workflow(backend, chord([s("m0"), s("m1")], s("cb")))
    members = claim_all(backend)
    items = [
        (c.record.id, c.token, Outcome.succeeded(json.dumps(i).encode()))
        for i, c in enumerate(members.values())
    ]
    assert backend.finish_many(items, now=NOW) == [True, True]
    again = backend.finish_many(items, now=NOW)  # fenced: nothing decided twice
    assert again == [False, False]
    claims = backend.claim("w1", ["default"], 10, lease_seconds=30.0, now=NOW)
    assert [c.record.task for c in claims] == ["cb"]
    assert arguments(claims[0].record) == [[0, 1]]


def test_finish_and_claim_takes_the_successor_it_just_queued(backend: Backend) -> None:
    store_workflow(backend, chain(s("a"), s("b")))
    a = claim_all(backend)["a"]
    done, claims = backend.finish_and_claim(
        [(a.record.id, a.token, Outcome.succeeded(b"1"))],
        "w1",
        ["default"],
        5,
        lease_seconds=30.0,
        now=NOW,
    )
    assert done == [True]
    assert [c.record.task for c in claims] == ["b"]
    assert arguments(claims[0].record) == [1]


def test_a_failed_chord_member_fails_the_callback_naming_the_member(backend: Backend) -> None:
    records = store_workflow(backend, chord([s("m0"), s("m1")], s("cb")))
    members = claim_all(backend)
    bad = members["m1"]
    assert backend.finish(bad.record.id, bad.token, Outcome.failed(BOOM), now=NOW)
    cb = stored(backend, records[2].id)
    assert cb.state is State.FAILED
    assert cb.error is not None and bad.record.id in cb.error.message
    assert cb.error.type == "ValueError"
    succeed(backend, members["m0"], 1)  # the other member still finishes; nothing changes
    assert stored(backend, records[2].id).state is State.FAILED
    assert claim_all(backend) == {}


def test_allow_failures_puts_a_failure_in_the_members_slot(backend: Backend) -> None:
    store_workflow(backend, chord([s("m0"), s("m1"), s("m2")], s("cb"), allow_failures=True))
    members = claim_all(backend)
    succeed(backend, members["m0"], "ok")
    bad = members["m1"]
    assert backend.finish(bad.record.id, bad.token, Outcome.failed(BOOM), now=NOW)
    assert backend.cancel(members["m2"].record.id, now=NOW)  # cancellation requested...
    m2 = members["m2"]
    assert backend.finish(m2.record.id, m2.token, Outcome.cancelled(), now=NOW)  # ...and done
    [results] = arguments(claim_all(backend)["cb"].record)
    assert results[0] == "ok"
    assert results[1] == Failure("ValueError", "boom", bad.record.id)
    assert isinstance(results[2], Failure) and results[2].error_type == "JobCancelled"


def test_a_failed_step_stops_the_chain_and_cancels_the_rest(backend: Backend) -> None:
    records = store_workflow(
        backend,
        chain(s("a"), s("b"), chord([s("m0"), s("m1")], s("cb"), allow_failures=True), s("z")),
    )
    succeed(backend, claim_all(backend)["a"], 1)
    b = claim_all(backend)["b"]
    assert backend.finish(b.record.id, b.token, Outcome.failed(BOOM), now=NOW)
    after = states(backend, records)
    assert after.pop("a") is State.SUCCEEDED
    assert after.pop("b") is State.FAILED
    assert set(after.values()) == {State.CANCELLED}  # allow_failures does not run it either
    z = stored(backend, records[-1].id)
    assert z.error is not None and b.record.id in z.error.message
    assert claim_all(backend) == {}


def test_a_failed_chain_inside_a_chord_member_is_that_members_failure(backend: Backend) -> None:
    records = store_workflow(
        backend,
        chord([chain(s("x"), s("y")), s("m1")], s("cb"), allow_failures=True),
    )
    first = claim_all(backend)
    x = first["x"]
    assert backend.finish(x.record.id, x.token, Outcome.failed(BOOM), now=NOW)
    assert stored(backend, records[1].id).state is State.CANCELLED  # y
    succeed(backend, first["m1"], 2)
    [results] = arguments(claim_all(backend)["cb"].record)
    assert results == [Failure("ValueError", "boom", x.record.id), 2]


def test_a_group_step_in_a_chain_feeds_each_member_and_gathers_for_the_next(
    backend: Backend,
) -> None:
    store_workflow(backend, chain(s("a"), group(s("g0", 1), s("g1", 2)), s("total")))
    succeed(backend, claim_all(backend)["a"], 10)
    members = claim_all(backend)
    assert arguments(members["g0"].record) == [10, 1]
    assert arguments(members["g1"].record) == [10, 2]
    succeed(backend, members["g1"], 12)
    succeed(backend, members["g0"], 11)
    assert arguments(claim_all(backend)["total"].record) == [[11, 12]]


def test_nested_groups_give_nested_lists(backend: Backend) -> None:
    store_workflow(backend, chord([s("m0"), group(s("n0"), s("n1"))], s("cb")))
    for name, claim in claim_all(backend).items():
        succeed(backend, claim, name)
    assert arguments(claim_all(backend)["cb"].record) == [["m0", ["n0", "n1"]]]


def test_cancelling_a_queued_member_fails_the_callback(backend: Backend) -> None:
    records = store_workflow(backend, chord([s("m0"), s("m1")], s("cb")))
    assert backend.cancel(records[0].id, now=NOW)
    cb = stored(backend, records[2].id)
    assert cb.state is State.FAILED
    assert cb.error is not None and cb.error.type == "JobCancelled"


def test_cancelling_a_held_step_cancels_what_follows_it(backend: Backend) -> None:
    records = store_workflow(backend, chain(s("a"), s("b"), s("c")))
    assert backend.cancel(records[1].id, now=NOW)
    assert states(backend, records) == {
        "a": State.QUEUED,
        "b": State.CANCELLED,
        "c": State.CANCELLED,
    }
    succeed(backend, claim_all(backend)["a"], 1)  # the first step still runs, alone
    assert claim_all(backend) == {}


def test_a_member_that_expires_counts_as_failed(backend: Backend) -> None:
    records = store_workflow(
        backend, chord([s("m0"), s("m1")], s("cb"), allow_failures=True), expires={"m0": NOW + 5}
    )
    succeed(backend, _only(backend, "m1"), 1)
    assert backend.sweep(now=NOW + 10).expired == 1
    assert stored(backend, records[0].id).state is State.EXPIRED
    [results] = arguments(claim_all(backend, now=NOW + 10)["cb"].record)
    assert results == [Failure("JobExpired", "the job was expired", records[0].id), 1]


def _only(backend: Backend, task: str) -> Claim:
    """Claim every ready job, hand back all but ``task``'s."""
    claims = claim_all(backend)
    for name, claim in claims.items():
        if name != task:
            backend.release(claim.record.id, claim.token, started=False, now=NOW)
    return claims[task]


def test_a_member_lost_max_crashes_times_fails_the_callback(backend: Backend) -> None:
    records = store_workflow(backend, chord([s("m0")], s("cb")))
    claim_all(backend)
    [lost] = recover_at(backend, NOW + 60, max_crashes=1)
    assert lost.state is State.FAILED
    cb = stored(backend, records[1].id)
    assert cb.state is State.FAILED and cb.error is not None
    assert cb.error.type == "WorkerLost"


def test_a_recovered_member_runs_again_and_feeds_the_callback_once(backend: Backend) -> None:
    records = store_workflow(backend, chord([s("m0"), s("m1")], s("cb")))
    first = claim_all(backend)
    recover_at(backend, NOW + 60, max_crashes=3)  # both lost: back to queued
    stale = first["m0"]
    assert not backend.finish(stale.record.id, stale.token, Outcome.succeeded(b"9"), now=NOW)
    again = claim_all(backend, now=NOW + 61)
    succeed(backend, again["m0"], 0, now=NOW + 62)
    succeed(backend, again["m1"], 1, now=NOW + 62)
    assert arguments(claim_all(backend, now=NOW + 63)["cb"].record) == [[0, 1]]
    assert stored(backend, records[2].id).state is State.RUNNING


def test_a_released_member_with_cancellation_requested_stops_the_chain(
    backend: Backend,
) -> None:
    records = store_workflow(backend, chain(s("a"), s("b")))
    a = claim_all(backend)["a"]
    assert backend.cancel(a.record.id, now=NOW)
    assert backend.release(a.record.id, a.token, started=True, now=NOW)
    assert states(backend, records) == {"a": State.CANCELLED, "b": State.CANCELLED}


def test_get_workflow_lists_the_jobs_in_order_with_their_states(backend: Backend) -> None:
    records = store_workflow(backend, chain(s("a"), group(s("g0"), s("g1"))))
    rows = backend.get_workflow(records[0].id)
    assert rows == [
        (records[0].id, "a", False, State.QUEUED),
        (records[1].id, "g0", False, State.SCHEDULED),
        (records[2].id, "g1", False, State.SCHEDULED),
    ]
    assert backend.get_workflow("nope") is None


def test_a_workflow_is_forgotten_once_all_its_jobs_are_purged(backend: Backend) -> None:
    records = store_workflow(backend, chain(s("a"), s("b")))
    succeed(backend, claim_all(backend)["a"], 1)
    backend.sweep(now=NOW + 86400.0 + 1)  # a is purged; b, queued, keeps the workflow
    assert backend.get_workflow(records[0].id) is not None
    b = claim_all(backend, now=NOW + 86400.0 + 2)["b"]
    succeed(backend, b, 2, now=NOW + 86400.0 + 2)
    backend.sweep(now=NOW + 2 * 86400.0 + 3)
    assert backend.get(records[1].id) is None
    assert backend.get_workflow(records[0].id) is None


def test_a_chord_of_a_thousand_members_queues_its_callback_once(backend: Backend) -> None:
    n = 1000
    records = store_workflow(backend, chord([s(f"m{i}") for i in range(n)], s("cb")))
    claims = backend.claim("w1", ["default"], n, lease_seconds=30.0, now=NOW)
    assert len(claims) == n
    by_id = {c.record.id: c for c in claims}
    items = [
        (r.id, by_id[r.id].token, Outcome.succeeded(json.dumps(i).encode()))
        for i, r in enumerate(records[:n])
    ]
    for start in range(0, n, 100):
        backend.finish_many(items[start : start + 100], now=NOW)
    [cb] = backend.claim("w1", ["default"], 5, lease_seconds=30.0, now=NOW)
    assert arguments(cb.record) == [list(range(n))]


def test_a_step_stopped_before_its_inputs_came_cannot_be_retried(backend: Backend) -> None:
    records = store_workflow(backend, chain(s("a"), s("b")))
    a = claim_all(backend)["a"]
    assert backend.finish(a.record.id, a.token, Outcome.failed(BOOM), now=NOW)
    assert not backend.retry(records[1].id, now=NOW)  # b never got its input
    assert backend.retry(a.record.id, now=NOW)  # a can run again...
    succeed(backend, claim_all(backend)["a"], 1)
    assert stored(backend, records[1].id).state is State.CANCELLED  # ...b stays stopped
