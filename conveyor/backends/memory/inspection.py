"""The memory backend's reading and administrative side: jobs by id, listing and counting,
cancelling, retrying, purging a queue, the worker registry, the change feed and counters. A mixin of
``MemoryBackend``, as ``sqlite/inspection.py`` is of SQLite's, kept apart from the claim / finish
path so each reads on its own."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import replace

from conveyor.backends.base import Signal, WorkerInfo, apply_outcome
from conveyor.canvas import HOLD
from conveyor.inspection import Event, StoreStats, TaskStats, bucket_of, make_event
from conveyor.job import WAITING_STATES, JobRecord, Outcome, Progress, State


class Inspection:
    _lock: threading.RLock
    _jobs: dict[str, JobRecord]
    _unique: dict[str, str]
    _workers: dict[str, WorkerInfo]
    _signal: Signal
    _events: deque[Event]
    _event_id: int
    _stats: dict[str, TaskStats]

    def _left_active(self, record: JobRecord, *, now: float | None = None) -> None:
        raise NotImplementedError

    def _delete(self, record: JobRecord) -> None:
        raise NotImplementedError

    def _emit(self, record: JobRecord, progress: Progress | None = None) -> None:
        """Record an event of the job's change; called under the lock, after the change."""
        self._event_id += 1
        self._events.append(
            make_event(self._event_id, record.id, record.task, record.state, progress, time.time())
        )

    def _count_finish(self, record: JobRecord, outcome: Outcome, now: float) -> None:
        """The task's counters, for an attempt that just ended with ``outcome``."""
        stats = self._stats.setdefault(record.task, TaskStats(record.task))
        if not outcome.state.is_final:
            stats.retries += 1
            return
        if outcome.state not in (State.SUCCEEDED, State.FAILED):
            return
        if record.started_at is not None:
            upper = float(bucket_of(now - record.started_at))
            stats.runtime[upper] = stats.runtime.get(upper, 0) + 1
            stats.runtime_sum += now - record.started_at
        if outcome.state is State.SUCCEEDED:
            stats.succeeded += 1
        else:
            stats.failed += 1
            kind = outcome.error.type if outcome.error else "Error"
            stats.failures[kind] = stats.failures.get(kind, 0) + 1

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
                self._emit(record)
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
            self._emit(record)
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

    # -- events and counters ---------------------------------------------------------------

    def read_events(self, after: int, *, limit: int = 1000, timeout: float = 0.0) -> list[Event]:
        deadline = time.monotonic() + timeout
        while True:
            since = self._signal.generation
            with self._lock:
                found: list[Event] = []
                for event in reversed(self._events):
                    if event.id <= after:
                        break
                    found.append(event)
            if found:
                found.reverse()
                return found[:limit]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            self._signal.wait(remaining, since)

    def last_event_id(self) -> int:
        return self._event_id

    def job_stats(self, *, now: float) -> StoreStats:
        oldest: dict[str, float] = {}
        with self._lock:
            for r in self._jobs.values():
                if r.state is State.QUEUED and r.ready_at < oldest.get(r.queue, float("inf")):
                    oldest[r.queue] = r.ready_at
            tasks = {
                name: replace(t, runtime=dict(t.runtime), failures=dict(t.failures))
                for name, t in self._stats.items()
            }
        return StoreStats(tasks, oldest)

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
