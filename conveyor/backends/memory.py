"""``memory://``: one process, no persistence; the reference implementation of the contract.

One lock guards everything, so every operation is atomic. It is the store for users' own
tests and the model the other backends are checked against (the conformance suite).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from typing import Any

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
from conveyor.backends.flow import advance, is_held, pack_inputs
from conveyor.canvas import HOLD
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
from conveyor.limits import (
    LimitInfo,
    LimitRef,
    LimitSpec,
    LimitUse,
    free_permits,
    limit_info,
    refs_of,
)

#: workers not seen for this long are dropped from the registry by sweep
STALE_WORKER_SECONDS = 3600.0


class MemoryBackend(Backend):
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
        self._flows = _Flows(self)
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
                out.append((existing or self._store(record)).copy())
        self._signal.notify()
        return out

    def enqueue_workflow(
        self, workflow_id: str, records: Sequence[JobRecord], outputs: Collection[str]
    ) -> None:
        with self._lock:
            for record in records:
                self._store(record)
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
                claims.append(Claim(record.copy(), record.token))
            return claims

    # -- limits ----------------------------------------------------------------------------

    def _use(self, ref: LimitRef, spec: LimitSpec, now: float) -> tuple[int, int]:
        """Live slots and starts in the window of one ref, forgetting what no longer counts:
        a slot whose job is no longer running under its token or whose lease ran out, a start
        older than the window."""
        slots = self._slots.get(ref, {})
        for job_id, token in list(slots.items()):
            record = self._jobs.get(job_id)
            if (
                record is None
                or record.state is not State.RUNNING
                or record.token != token
                or record.lease_expires_at is None
                or record.lease_expires_at < now
            ):
                del slots[job_id]
        starts = self._starts.get(ref, deque())
        if spec.rate is not None:
            while starts and starts[0] <= now - spec.rate.per_seconds:
                starts.popleft()
        if not slots:
            self._slots.pop(ref, None)
        if not starts:
            self._starts.pop(ref, None)
        return len(slots), len(starts) if spec.rate is not None else 0

    def _admit(self, refs: Sequence[LimitRef], now: float) -> bool:
        for ref in refs:
            spec = self._limit_specs.get(ref[0])
            if spec is not None and free_permits(spec, *self._use(ref, spec, now)) <= 0:
                return False
        return True

    def set_limit(self, spec: LimitSpec, *, now: float) -> None:
        with self._lock:
            self._limit_specs[spec.name] = spec
        self._signal.notify()

    def limits(self, *, now: float) -> list[LimitInfo]:
        with self._lock:
            out = []
            for name, spec in sorted(self._limit_specs.items()):
                refs = {ref for ref in (*self._slots, *self._starts) if ref[0] == name}
                uses = [LimitUse(ref[1], *self._use(ref, spec, now)) for ref in refs]
                out.append(limit_info(spec, uses))
            return out

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
        self._signal.notify()
        return True

    def finish(self, job_id: str, token: int, outcome: Outcome, *, now: float) -> bool:
        with self._lock:
            record = self._current(job_id, token)
            if record is None:
                return False
            apply_outcome(record, outcome, now=now)
            if outcome.state.is_final:
                self._left_active(record, now=now)
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
                    apply_outcome(record, Outcome.failed(error), now=now)
                    self._left_active(record, now=now)
                else:
                    record.state = State.QUEUED
                    record.ready_at = now
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
                    expired += 1
                    continue
                if record.state is State.SCHEDULED and record.ready_at <= now:
                    record.state = State.QUEUED
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

    # -- the user's side -------------------------------------------------------------------

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            record = self._jobs.get(job_id)
            return None if record is None else record.copy()

    def list_jobs(
        self,
        *,
        state: State | None = None,
        task: str | None = None,
        queue: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> list[JobRecord]:
        with self._lock:
            rows = [
                r
                for r in self._jobs.values()
                if (state is None or r.state is state)
                and (task is None or r.task == task)
                and (queue is None or r.queue == queue)
                and (cursor is None or r.id < cursor)
            ]
            rows.sort(key=lambda r: r.id, reverse=True)
            return [r.copy() for r in rows[:limit]]

    def queue_counts(self) -> dict[str, dict[State, int]]:
        counts: dict[str, dict[State, int]] = {}
        with self._lock:
            for r in self._jobs.values():
                per_queue = counts.setdefault(r.queue, {})
                per_queue[r.state] = per_queue.get(r.state, 0) + 1
        return counts

    def cancel(self, job_id: str, *, now: float) -> bool:
        with self._lock:
            record = self._jobs.get(job_id)
            if record is None or record.state.is_final:
                return False
            if record.state is State.RUNNING:
                record.cancel_requested = True
            else:
                apply_outcome(record, Outcome.cancelled(), now=now)
                self._left_active(record, now=now)
        self._signal.notify()
        return True

    def retry(self, job_id: str, *, now: float) -> bool:
        with self._lock:
            record = self._jobs.get(job_id)
            if record is None or record.state not in (
                State.FAILED,
                State.CANCELLED,
                State.EXPIRED,
            ):
                return False
            if record.ready_at >= HOLD:
                return False  # a workflow step stopped before its inputs came
            if record.unique_key is not None:
                holder = self._unique.get(record.unique_key)
                if holder is not None and holder != record.id:
                    return False  # another job of equal arguments is active: no twin
                self._unique[record.unique_key] = record.id
            record.state = State.QUEUED
            record.ready_at = now
            record.expires_at = None
            record.failures = record.crashes = 0
            record.result = None
            record.error = None
            record.finished_at = record.purge_at = None
            record.cancel_requested = False
        self._signal.notify()
        return True

    def purge_queue(self, queue: str) -> int:
        with self._lock:
            doomed = [
                r for r in self._jobs.values() if r.queue == queue and r.state in WAITING_STATES
            ]
            for record in doomed:
                self._delete(record)
        return len(doomed)

    # -- workers ---------------------------------------------------------------------------

    def register_worker(self, worker: WorkerInfo) -> None:
        with self._lock:
            self._workers[worker.id] = replace(worker, running=list(worker.running))

    def unregister_worker(self, worker_id: str) -> None:
        with self._lock:
            self._workers.pop(worker_id, None)

    def list_workers(self) -> list[WorkerInfo]:
        with self._lock:
            return [replace(w, running=list(w.running)) for w in self._workers.values()]

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
            stored = self._existing(record) or self._store(record)
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


class _Flows:
    """The workflow graph's storage steps (``flow.FlowStore``) on the backend's dicts; the
    backend's lock is held by every caller."""

    def __init__(self, backend: MemoryBackend) -> None:
        self._jobs = backend._jobs
        self.workflows: dict[str, list[tuple[str, str, bool]]] = {}
        self._live: dict[str, int] = {}
        self._inputs: dict[str, dict[int, bytes]] = {}

    def add(self, workflow_id: str, records: Sequence[JobRecord], outputs: Collection[str]) -> None:
        self.workflows[workflow_id] = [(r.id, r.task, r.id in outputs) for r in records]
        self._live[workflow_id] = len(records)

    def forget(self, record: JobRecord) -> None:
        """A workflow job was purged: the workflow goes with its last job."""
        self._inputs.pop(record.id, None)
        workflow_id = record.meta.get("workflow")
        if workflow_id in self._live:
            self._live[workflow_id] -= 1
            if self._live[workflow_id] <= 0:
                del self._live[workflow_id], self.workflows[workflow_id]

    def flow_of(self, job_id: str) -> tuple[State, float, dict[str, Any]] | None:
        record = self._jobs.get(job_id)
        if record is None:
            return None
        return record.state, record.ready_at, record.meta.get("flow", {})

    def put_input(self, job_id: str, slot: int, value: bytes) -> bool:
        record = self._jobs.get(job_id)
        if record is None or not is_held(record.state, record.ready_at):
            return False
        slots = self._inputs.setdefault(job_id, {})
        if slot in slots:
            return False
        slots[slot] = value
        return len(slots) == int(record.meta["flow"]["in"]["n"])

    def take_inputs(self, job_id: str) -> list[bytes]:
        slots = self._inputs.pop(job_id, {})
        return [slots[i] for i in sorted(slots)]

    def promote(self, job_id: str, slots: list[bytes], *, now: float) -> None:
        record = self._jobs[job_id]
        record.payload = pack_inputs(record.payload, slots)
        record.state = State.QUEUED
        record.ready_at = now

    def end(self, job_id: str, state: State, error: ErrorInfo, *, now: float) -> None:
        self._inputs.pop(job_id, None)
        record = self._jobs[job_id]
        apply_outcome(record, Outcome(state, error=error), now=now)
