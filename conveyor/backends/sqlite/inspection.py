"""The SQLite backend's reading and administrative side: jobs by id, listing and counting,
cancelling, retrying, purging a queue, the worker registry, the change feed and counters. A mixin of
``SQLiteBackend``, kept apart from the claim / finish path that workers hammer."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from conveyor.backends.base import WorkerInfo
from conveyor.backends.sqlite import feed
from conveyor.backends.sqlite.connections import Connections
from conveyor.backends.sqlite.flows import Flows
from conveyor.backends.sqlite.rows import from_row, worker_from_row, worker_row
from conveyor.backends.sqlite.wakeups import Wakeups
from conveyor.inspection import Event, StoreStats, task_stats_from_counters
from conveyor.job import JobRecord, State

#: above every job id, so that the first page of list_jobs is a range scan too
_TOP_CURSOR = "\U0010ffff"
#: the states with an index of their own for listing (schema.sql: {ns}_jobs_in_state)
_LISTED = frozenset({State.SCHEDULED, State.FAILED, State.CANCELLED, State.EXPIRED})
#: up to this many queued jobs, a listing of them sorts the claim index's entries; beyond,
#: queued jobs are dense enough among the newest that walking the table finds them at once
_FEW_QUEUED = 10_000
#: how many events sweep keeps
EVENTS_KEPT = 100_000


class Inspection:
    _db: Connections
    _sql: Mapping[str, str]
    _wake: Wakeups
    _flows: Flows

    def _notify(self, *, ready: bool) -> None:
        raise NotImplementedError

    def get(self, job_id: str) -> JobRecord | None:
        row = self._db.get().execute(self._sql["by_id"], (job_id,)).fetchone()
        return None if row is None else from_row(row)

    def list_jobs(
        self,
        *,
        state: State | None = None,
        task: str | None = None,
        queue: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> list[JobRecord]:
        params = {
            "state": None if state is None else state.value,
            "task": task,
            "queue": queue,
            "limit": limit,
            "cursor": _TOP_CURSOR if cursor is None else cursor,
        }
        conn = self._db.get()
        if state in _LISTED:
            query = "list_by_state"
        elif state is State.RUNNING:
            query = "list_running"
        elif (
            state is State.QUEUED
            and conn.execute(self._sql["count_queued"], {"upto": _FEW_QUEUED + 1}).fetchone()[0]
            <= _FEW_QUEUED
        ):
            query = "list_queued"
        elif task is not None:
            query = "list_by_task"
        elif queue is not None:
            query = "list_by_queue"
        else:
            query = "list_jobs"
        rows = conn.execute(self._sql[query], params).fetchall()
        return [from_row(row) for row in rows]

    def queue_counts(self) -> dict[str, dict[State, int]]:
        counts: dict[str, dict[State, int]] = {}
        totals: dict[str, int] = {}
        for queue, state, n in self._db.get().execute(self._sql["queue_counts"]):
            if state == "all":
                totals[queue] = n
            elif n:
                counts.setdefault(queue, {})[State(state)] = n
        for queue, total in totals.items():
            succeeded = total - sum(counts.get(queue, {}).values())
            if succeeded > 0:
                counts.setdefault(queue, {})[State.SUCCEEDED] = succeeded
        return counts

    def cancel(self, job_id: str, *, now: float) -> bool:
        params = {"id": job_id, "now": now}
        with self._db.write() as conn:
            done = conn.execute(self._sql["cancel_running"], params).rowcount == 1
            ended = conn.execute(self._sql["cancel_waiting"], params).rowcount == 1
            if ended:
                feed.write(conn, self._sql, [job_id])
            flowed = ended and self._flows.finished(conn, [job_id], now=now)
            done = done or ended
        if done:
            self._notify(ready=flowed)
        return done

    def retry(self, job_id: str, *, now: float) -> bool:
        with self._db.write() as conn:
            done = conn.execute(self._sql["retry"], {"id": job_id, "now": now}).rowcount == 1
            if done:
                feed.write(conn, self._sql, [job_id])
        if done:
            self._notify(ready=True)
        return done

    def purge_queue(self, queue: str) -> int:
        with self._db.write() as conn:
            purged: int = conn.execute(self._sql["purge_queue"], {"queue": queue}).rowcount
        if purged:
            self._wake.changed.notify()
        return purged

    # -- workers ---------------------------------------------------------------------------

    def register_worker(self, worker: WorkerInfo) -> None:
        with self._db.write() as conn:
            conn.execute(self._sql["put_worker"], worker_row(worker))

    def unregister_worker(self, worker_id: str) -> None:
        with self._db.write() as conn:
            conn.execute(self._sql["delete_worker"], (worker_id,))

    def list_workers(self) -> list[WorkerInfo]:
        return [worker_from_row(r) for r in self._db.get().execute(self._sql["workers"])]

    # -- the change feed and the counters --------------------------------------------------

    def read_events(self, after: int, *, limit: int = 1000, timeout: float = 0.0) -> list[Event]:
        deadline = time.monotonic() + timeout
        # one row more than events wanted: the first row may hold only events already seen
        params = {**feed.position(after), "limit": limit + 1}
        while True:
            # The snapshot comes before the read: a commit in between still wakes the wait.
            since = self._wake.snapshot(self._wake.changed)
            rows = self._db.get().execute(self._sql["events_after"], params).fetchall()
            events = feed.expand(rows, after, limit)
            if events:
                return events
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            self._wake.wait(self._wake.changed, remaining, since)

    def last_event_id(self) -> int:
        row = self._db.get().execute(self._sql["last_event_id"]).fetchone()
        return 0 if row is None else int(row[0])

    def job_stats(self, *, now: float) -> StoreStats:
        conn = self._db.get()
        tasks = task_stats_from_counters(conn.execute(self._sql["counters"]))
        return StoreStats(tasks, self._oldest_queued(conn))

    def _oldest_queued(self, conn: Any) -> dict[str, float]:
        """The ready time of each queue's oldest queued job: the claim index is ordered by
        priority first, so it is the oldest of the first entries of each priority, found by
        skip scans (a few index searches per queue, whatever the queue holds)."""
        out: dict[str, float] = dict(conn.execute(self._sql["oldest_held"]).fetchall())
        queue = ""
        while True:
            queue = conn.execute(self._sql["next_queued_queue"], {"after": queue}).fetchone()[0]
            if queue is None:
                return out
            below = 1 << 62
            while True:
                params = {"queue": queue, "below": below}
                priority = conn.execute(self._sql["next_priority"], params).fetchone()[0]
                if priority is None:
                    break
                params = {"queue": queue, "priority": priority}
                ready_at = conn.execute(self._sql["oldest_ready"], params).fetchone()[0]
                if ready_at is not None and ready_at < out.get(queue, float("inf")):
                    out[queue] = ready_at
                below = priority
