"""The SQLite backend's reading and administrative side: jobs by id, listing and counting,
cancelling, retrying, purging a queue, and the worker registry. A mixin of
``SQLiteBackend``, kept apart from the claim / finish path that workers hammer."""

from __future__ import annotations

from collections.abc import Mapping

from conveyor.backends.base import WorkerInfo
from conveyor.backends.sqlite.flows import Flows
from conveyor.backends.sqlite.rows import from_row, worker_from_row, worker_row
from conveyor.backends.sqlite.store import Connections, Wakeups
from conveyor.job import JobRecord, State

#: above every job id, so that the first page of list_jobs is a range scan too
_TOP_CURSOR = "\U0010ffff"


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
        rows = self._db.get().execute(self._sql["list_jobs"], params).fetchall()
        return [from_row(row) for row in rows]

    def queue_counts(self) -> dict[str, dict[State, int]]:
        counts: dict[str, dict[State, int]] = {}
        for queue, state, n in self._db.get().execute(self._sql["queue_counts"]):
            counts.setdefault(queue, {})[State(state)] = n
        return counts

    def cancel(self, job_id: str, *, now: float) -> bool:
        params = {"id": job_id, "now": now}
        with self._db.write() as conn:
            done = conn.execute(self._sql["cancel_running"], params).rowcount == 1
            ended = conn.execute(self._sql["cancel_waiting"], params).rowcount == 1
            flowed = ended and self._flows.finished(conn, [job_id], now=now)
            done = done or ended
        if done:
            self._notify(ready=flowed)
        return done

    def retry(self, job_id: str, *, now: float) -> bool:
        with self._db.write() as conn:
            done = conn.execute(self._sql["retry"], {"id": job_id, "now": now}).rowcount == 1
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
