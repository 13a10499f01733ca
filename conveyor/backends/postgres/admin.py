"""The PostgreSQL backend's reading and administrative side: jobs by id, listing and
counting, cancelling, retrying, purging a queue, the worker registry and the schedules. A
mixin of ``PostgresBackend``, kept apart from the claim / finish path that workers hammer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg

from conveyor.backends.base import ScheduleState, WorkerInfo
from conveyor.backends.postgres.flows import Flows
from conveyor.backends.postgres.rows import (
    from_row,
    schedule_from_row,
    worker_from_row,
    worker_params,
)
from conveyor.backends.postgres.store import Database
from conveyor.job import JobRecord, State

#: above every job id (ids sort in "C" collation), so that a first page is a range scan too
_TOP_CURSOR = "\U0010ffff"
#: the states with a listing index of their own (layout_2.sql: {ns}_jobs_by_state)
_LISTED = frozenset({State.SCHEDULED, State.FAILED, State.CANCELLED, State.EXPIRED})


class Admin:
    _db: Database
    _sql: Mapping[str, str]
    _flows: Flows

    def get(self, job_id: str) -> JobRecord | None:
        row = self._db.run(lambda c: c.execute(self._sql["by_id"], {"id": job_id}).fetchone())
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
        if state in _LISTED:
            query = "list_by_state"
        elif state is State.RUNNING:
            query = "list_running"
        elif task is not None:
            query = "list_by_task"
        elif queue is not None:
            query = "list_by_queue"
        else:
            query = "list_jobs"
        rows = self._db.run(lambda c: c.execute(self._sql[query], params).fetchall())
        return [from_row(row) for row in rows]

    def queue_counts(self) -> dict[str, dict[State, int]]:
        counts: dict[str, dict[State, int]] = {}
        rows = self._db.run(lambda c: c.execute(self._sql["queue_counts"]).fetchall())
        for queue, state, n in rows:
            counts.setdefault(queue, {})[State(state)] = n
        return counts

    def cancel(self, job_id: str, *, now: float) -> bool:
        params = {"id": job_id, "now": now}

        def write(conn: psycopg.Connection[Any]) -> bool:
            with conn.transaction():
                done = bool(conn.execute(self._sql["cancel"], params).fetchall())
                if done:  # a waiting workflow job is final now: its successors follow
                    self._flows.finished(conn, [job_id], now=now)
                return done

        return self._db.run(write)

    def retry(self, job_id: str, *, now: float) -> bool:
        params = {"id": job_id, "now": now}
        try:
            rows = self._db.run(lambda c: c.execute(self._sql["retry"], params).fetchall())
        except psycopg.errors.UniqueViolation:
            return False  # another active job holds the same unique key
        return bool(rows)

    def purge_queue(self, queue: str) -> int:
        params = {"queue": queue}
        return self._db.run(lambda c: c.execute(self._sql["purge_queue"], params).rowcount)

    # -- workers ---------------------------------------------------------------------------

    def register_worker(self, worker: WorkerInfo) -> None:
        self._db.run(lambda c: c.execute(self._sql["put_worker"], worker_params(worker)))

    def unregister_worker(self, worker_id: str) -> None:
        self._db.run(lambda c: c.execute(self._sql["delete_worker"], {"id": worker_id}))

    def list_workers(self) -> list[WorkerInfo]:
        rows = self._db.run(lambda c: c.execute(self._sql["workers"]).fetchall())
        return [worker_from_row(r) for r in rows]

    def schedules(self) -> list[ScheduleState]:
        rows = self._db.run(lambda c: c.execute(self._sql["schedules"]).fetchall())
        return [schedule_from_row(r) for r in rows]
