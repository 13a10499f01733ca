"""Shared builders for the backend tests: records, workers, and a claim of exactly one job."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from conveyor.backends import open_backend
from conveyor.backends.base import Backend, RecoveredJob, WorkerInfo
from conveyor.job import Claim, IdGenerator, JobRecord, State

#: the tests' clock: every operation gets ``now`` explicitly, counted from here
NOW = 1_700_000_000.0
LEASE = 30.0
PAYLOAD = b"[[],{}]"

_ids = IdGenerator()


class StoreClock:
    """The store's clock in the conformance suite: the time that stamps leases and that
    ``recover`` compares them with (see base.py), moved by the test."""

    def __init__(self, t: float = NOW) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def clocked_backend(backend_url: str, namespace: str) -> Iterator[Backend]:
    """A backend whose store clock is a ``StoreClock`` (for ``pytest.fixture``)."""
    b = open_backend(backend_url, namespace=namespace, clock=StoreClock())
    try:
        yield b
    finally:
        b.close()


def set_store_time(backend: Backend, t: float) -> None:
    clock = backend.clock
    assert isinstance(clock, StoreClock), "the backend was not opened with a StoreClock"
    clock.t = t


def recover_at(backend: Backend, t: float, *, max_crashes: int) -> list[RecoveredJob]:
    """``recover`` when the store's clock and the caller's both read ``t``."""
    set_store_time(backend, t)
    return backend.recover(now=t, max_crashes=max_crashes)


def new_id() -> str:
    """A fresh job id; later calls sort after earlier ones, as real ids do."""
    return _ids()


def make_record(
    *,
    task: str = "tests.add",
    queue: str = "default",
    priority: int = 0,
    state: State = State.QUEUED,
    at: float = NOW,
    ready_at: float | None = None,
    **fields: Any,
) -> JobRecord:
    """A new job as an app would enqueue it, created at ``at``."""
    if ready_at is not None and ready_at > at and state is State.QUEUED:
        state = State.SCHEDULED
    return JobRecord(
        id=fields.pop("id", None) or new_id(),
        task=task,
        payload=fields.pop("payload", PAYLOAD),
        queue=queue,
        priority=priority,
        state=state,
        created_at=at,
        ready_at=at if ready_at is None else ready_at,
        **fields,
    )


def make_worker(worker_id: str = "w1", *, queues: list[str] | None = None) -> WorkerInfo:
    return WorkerInfo(
        id=worker_id,
        host="testhost",
        pid=os.getpid(),
        queues=queues or ["default"],
        concurrency=4,
        pool="thread",
        started_at=NOW,
        last_seen=NOW,
    )


def enqueue_one(backend: Backend, **fields: Any) -> JobRecord:
    [stored] = backend.enqueue([make_record(**fields)])
    return stored


def claim_one(
    backend: Backend,
    *,
    queues: tuple[str, ...] = ("default",),
    worker: str = "w1",
    now: float = NOW,
    lease: float = LEASE,
) -> Claim:
    """Claim exactly one job (the test fails if none or several come back), at ``now`` by
    the store's clock too when the backend has a StoreClock."""
    if isinstance(backend.clock, StoreClock):
        backend.clock.t = now
    claims = backend.claim(worker, list(queues), 1, lease_seconds=lease, now=now)
    assert len(claims) == 1, claims
    return claims[0]


def running(backend: Backend, *, now: float = NOW, **fields: Any) -> Claim:
    """Enqueue one job and claim it: a job running under a lease."""
    record = enqueue_one(backend, at=now, **fields)
    claim = claim_one(backend, queues=(record.queue,), now=now)
    assert claim.record.id == record.id
    return claim


def stored(backend: Backend, job_id: str) -> JobRecord:
    record = backend.get(job_id)
    assert record is not None, f"job {job_id} is not stored"
    return record
