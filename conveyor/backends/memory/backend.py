"""The memory backend's store and its claim / finish path: the jobs' dicts and indexes under the
one lock, and what the worker's side, workflows and periodic jobs do to them. The reading side,
limits and the workflow steps are mixins and helpers beside it, as in ``sqlite/``."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace

from conveyor.backends.base import (
    Backend,
    DueResult,
    HeartbeatResult,
    RecoveredJob,
    ScheduleState,
    Signal,
    SweepResult,
    WorkerInfo,
    apply_outcome,
    in_stall,
    note_heartbeat,
    worker_lost_error,
)
from conveyor.backends.flow import advance
from conveyor.backends.memory.flows import Flows
from conveyor.backends.memory.inspection import Inspection
from conveyor.backends.memory.limits import Limits
from conveyor.inspection import Event, TaskStats
from conveyor.job import (
    ACTIVE_STATES,
    WAITING_STATES,
    Claim,
    ErrorInfo,
    JobRecord,
    Outcome,
    Progress,
    State,
)
from conveyor.limits import LimitRef, LimitSpec, refs_of

#: workers not seen for this long are dropped from the registry by sweep
STALE_WORKER_SECONDS = 3600.0
#: the events kept for readers that resume (a ring: the oldest go first)
EVENTS_KEPT = 10_000


class MemoryBackend(Inspection, Limits, Backend):
    scheme = "memory"

    def __init__(
        self,
        url: str = "memory://",
        *,
        namespace: str = "conveyor",
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(url, namespace=namespace, clock=clock)
        self._store_time = clock or time.time  # read under the lock: the lease stamps
        self._lock = threading.RLock()
        self._jobs: dict[str, JobRecord] = {}
        self._keys: dict[str, str] = {}
        self._unique: dict[str, str] = {}
        self._workers: dict[str, WorkerInfo] = {}
        self._schedules: dict[str, ScheduleState] = {}
        self._tokens = 0
        self._signal = Signal()
        self._events: deque[Event] = deque(maxlen=EVENTS_KEPT)
        self._event_id = 0
        self._stats: dict[str, TaskStats] = {}
        self._flows = Flows(self)
        self._quiet_after: float | None = None  # the store-wide heartbeat record
        self._stall_until: float | None = None
        self._limit_specs: dict[str, LimitSpec] = {}
        # per ref: the jobs holding a slot (id -> token) and the times of recent claims
        self._slots: dict[LimitRef, dict[str, int]] = {}
        self._starts: dict[LimitRef, deque[float]] = {}

    # -- helpers ---------------------------------------------------------------------------

    def _next_token(self) -> int:
        self._tokens += 1
        return self._tokens

    def _existing(self, record: JobRecord) -> JobRecord | None:
        if record.key is not None and record.key in self._keys:
            return self._jobs[self._keys[record.key]]
        if record.unique_key is not None and record.unique_key in self._unique:
            return self._jobs[self._unique[record.unique_key]]
        return None

    def _store(self, record: JobRecord) -> JobRecord:
        stored = record.copy()
        self._jobs[stored.id] = stored
        if stored.key is not None:
            self._keys[stored.key] = stored.id
        if stored.unique_key is not None and stored.state in ACTIVE_STATES:
            self._unique[stored.unique_key] = stored.id
        return stored

    def _left_active(self, record: JobRecord, *, now: float | None = None) -> None:
        """Called when a job leaves scheduled/queued/running: its unique key frees, and a
        workflow job's successors are decided (``now`` given: it became final)."""
        if record.unique_key is not None and self._unique.get(record.unique_key) == record.id:
            del self._unique[record.unique_key]
        if now is not None and "flow" in record.meta:
            advance(self._flows, record.id, record.state, record.result, record.error, now=now)

    def _delete(self, record: JobRecord) -> None:
        self._left_active(record)
        self._flows.forget(record)
        if record.key is not None and self._keys.get(record.key) == record.id:
            del self._keys[record.key]
        del self._jobs[record.id]

    def _current(self, job_id: str, token: int) -> JobRecord | None:
        record = self._jobs.get(job_id)
        if record is None or record.state is not State.RUNNING or record.token != token:
            return None
        return record

    # -- enqueue ---------------------------------------------------------------------------

    def enqueue(self, records: Sequence[JobRecord]) -> list[JobRecord]:
        with self._lock:
            out = []
            for record in records:
                existing = self._existing(record)
                if existing is None:
                    existing = self._store(record)
                    self._emit(existing)
                out.append(existing.copy())
        self._signal.notify()
        return out

    def enqueue_workflow(
        self, workflow_id: str, records: Sequence[JobRecord], outputs: Collection[str]
    ) -> None:
        with self._lock:
            for record in records:
                self._emit(self._store(record))
            self._flows.add(workflow_id, records, outputs)
        self._signal.notify()

    def get_workflow(self, workflow_id: str) -> list[tuple[str, str, bool, State | None]] | None:
        with self._lock:
            rows = self._flows.workflows.get(workflow_id)
            if rows is None:
                return None
            return [
                (job_id, task, output, r.state if (r := self._jobs.get(job_id)) else None)
                for job_id, task, output in rows
            ]

    # -- the worker's side -----------------------------------------------------------------

    def claim(
        self,
        worker_id: str,
        queues: Sequence[str],
        limit: int,
        *,
        lease_seconds: float,
        now: float,
    ) -> list[Claim]:
        wanted = set(queues)
        with self._lock:
            ready = [
                r
                for r in self._jobs.values()
                if r.queue in wanted
                and r.state in WAITING_STATES
                and r.ready_at <= now
                and (r.expires_at is None or r.expires_at > now)
            ]
            ready.sort(key=lambda r: (-r.priority, r.ready_at, r.id))
            claims: list[Claim] = []
            t = self._store_time()
            for record in ready:
                if len(claims) >= limit:
                    break
                refs = refs_of(record.meta)
                if refs and not self._admit(refs, t):
                    continue  # held back: stays queued, untouched
                record.state = State.RUNNING
                record.attempts += 1
                record.token = self._next_token()
                record.worker = worker_id
                record.started_at = t
                record.lease_expires_at = t + lease_seconds
                for ref in refs:
                    self._slots.setdefault(ref, {})[record.id] = record.token
                    spec = self._limit_specs.get(ref[0])
                    if spec is not None and spec.rate is not None:  # starts count for rates
                        self._starts.setdefault(ref, deque()).append(t)
                self._emit(record)
                claims.append(Claim(record.copy(), record.token))
            return claims

    def heartbeat(
        self,
        worker: WorkerInfo,
        leases: Sequence[tuple[str, int]],
        *,
        lease_seconds: float,
        now: float,
    ) -> HeartbeatResult:
        lost, cancel = set(), set()
        with self._lock:
            t = self._store_time()
            self._quiet_after, self._stall_until = note_heartbeat(
                self._quiet_after, self._stall_until, t, lease_seconds
            )
            for job_id, token in leases:
                record = self._current(job_id, token)
                if record is None:
                    lost.add((job_id, token))
                    continue
                record.lease_expires_at = t + lease_seconds
                if record.cancel_requested:
                    cancel.add((job_id, token))
            worker.last_seen = now
            self._workers[worker.id] = replace(worker, running=list(worker.running))
        return HeartbeatResult(frozenset(lost), frozenset(cancel))

    def set_progress(self, job_id: str, token: int, progress: Progress) -> bool:
        with self._lock:
            record = self._current(job_id, token)
            if record is None:
                return False
            record.progress = progress
            self._emit(record, progress)
        self._signal.notify()
        return True

    def finish(self, job_id: str, token: int, outcome: Outcome, *, now: float) -> bool:
        with self._lock:
            record = self._current(job_id, token)
            if record is None:
                return False
            self._count_finish(record, outcome, now)
            apply_outcome(record, outcome, now=now)
            if outcome.state.is_final:
                self._left_active(record, now=now)
            self._emit(record)
        self._signal.notify()
        return True

    def release(self, job_id: str, token: int, *, started: bool, now: float) -> bool:
        with self._lock:
            record = self._current(job_id, token)
            if record is None:
                return False
            record.worker = None
            record.lease_expires_at = None
            record.token = self._next_token()  # the released claim's token is spent
            if not started:
                record.attempts -= 1
            if record.cancel_requested:
                apply_outcome(record, Outcome.cancelled(), now=now)
                self._left_active(record, now=now)
            else:
                record.state = State.QUEUED
            self._emit(record)
        self._signal.notify()
        return True

    def recover(self, *, now: float, max_crashes: int) -> list[RecoveredJob]:
        out = []
        with self._lock:
            t = self._store_time()
            stalled = in_stall(self._quiet_after, self._stall_until, t)
            for record in self._jobs.values():
                if record.state is not State.RUNNING or record.lease_expires_at is None:
                    continue
                if record.lease_expires_at >= t:
                    continue
                if not stalled:
                    record.crashes += 1
                record.token = self._next_token()
                record.worker = None
                record.lease_expires_at = None
                if record.cancel_requested:
                    apply_outcome(record, Outcome.cancelled(), now=now)
                    self._left_active(record, now=now)
                elif not stalled and record.crashes >= max_crashes:
                    error = ErrorInfo.from_json(worker_lost_error(record.crashes))
                    self._count_finish(record, Outcome.failed(error), now)
                    apply_outcome(record, Outcome.failed(error), now=now)
                    self._left_active(record, now=now)
                else:
                    record.state = State.QUEUED
                    record.ready_at = now
                self._emit(record)
                out.append(RecoveredJob(record.id, record.state))
        if out:
            self._signal.notify()
        return out

    def sweep(self, *, now: float) -> SweepResult:
        promoted = expired = purged = 0
        with self._lock:
            for record in list(self._jobs.values()):
                if (
                    record.state in WAITING_STATES
                    and record.expires_at is not None
                    and record.expires_at <= now
                ):
                    apply_outcome(record, Outcome(State.EXPIRED), now=now)
                    self._left_active(record, now=now)
                    self._emit(record)
                    expired += 1
                    continue
                if record.state is State.SCHEDULED and record.ready_at <= now:
                    record.state = State.QUEUED
                    self._emit(record)
                    promoted += 1
                elif record.purge_at is not None and record.purge_at <= now:
                    self._delete(record)
                    purged += 1
            for worker_id, worker in list(self._workers.items()):
                if worker.last_seen < now - STALE_WORKER_SECONDS:
                    del self._workers[worker_id]
        if promoted or expired or purged:
            self._signal.notify()
        return SweepResult(promoted, expired, purged)

    # -- periodic jobs ---------------------------------------------------------------------

    def record_due(
        self, name: str, due: float, record: JobRecord, *, skip_if_active: bool, now: float
    ) -> DueResult:
        with self._lock:
            state = self._schedules.setdefault(name, ScheduleState(name))
            if state.last_due is not None and due <= state.last_due:
                return DueResult.DUPLICATE
            state.last_due = due
            if skip_if_active and state.last_job_id is not None:
                previous = self._jobs.get(state.last_job_id)
                if previous is not None and previous.state in ACTIVE_STATES:
                    return DueResult.SKIPPED
            stored = self._existing(record)
            if stored is None:
                stored = self._store(record)
                self._emit(stored)
            state.last_job_id = stored.id
            state.last_enqueued_at = now
        self._signal.notify()
        return DueResult.ENQUEUED

    def schedules(self) -> list[ScheduleState]:
        with self._lock:
            return [replace(s) for s in self._schedules.values()]

    # -- waiting ---------------------------------------------------------------------------

    def wait_for_jobs(self, queues: Sequence[str], timeout: float) -> None:
        self._signal.wait(timeout)

    def wait_for_change(self, job_id: str, timeout: float) -> None:
        self._signal.wait(timeout)

    def wait_final(self, job_id: str, timeout: float | None) -> JobRecord | None:
        # Read the generation before the record, so a finish in between still wakes us.
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            since = self._signal.generation
            record = self.get(job_id)
            if record is None or record.state.is_final:
                return record
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return record
            self._signal.wait(1.0 if remaining is None else min(remaining, 1.0), since)
