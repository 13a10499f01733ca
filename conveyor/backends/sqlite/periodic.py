"""Periodic jobs: recording each due time once across processes, and the schedules' state. A
mixin of ``SQLiteBackend``."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping

from conveyor.backends.base import DueResult, ScheduleState
from conveyor.backends.sqlite.connections import Connections
from conveyor.backends.sqlite.rows import schedule_from_row
from conveyor.job import ACTIVE_STATES, JobRecord, State


class Periodic:
    _db: Connections
    _sql: Mapping[str, str]

    def _notify(self, *, ready: bool) -> None:
        raise NotImplementedError

    def _insert(self, conn: sqlite3.Connection, record: JobRecord) -> JobRecord:
        raise NotImplementedError

    def record_due(
        self, name: str, due: float, record: JobRecord, *, skip_if_active: bool, now: float
    ) -> DueResult:
        with self._db.write() as conn:
            row = conn.execute(self._sql["schedule"], (name,)).fetchone()
            last_due, last_job_id = (None, None) if row is None else row
            if last_due is not None and due <= last_due:
                return DueResult.DUPLICATE
            if skip_if_active and last_job_id is not None:
                previous = conn.execute(self._sql["state_of"], (last_job_id,)).fetchone()
                if previous is not None and State(previous[0]) in ACTIVE_STATES:
                    conn.execute(self._sql["record_skipped"], {"name": name, "due": due})
                    return DueResult.SKIPPED
            stored = self._insert(conn, record)
            params = {"name": name, "due": due, "job_id": stored.id, "now": now}
            conn.execute(self._sql["record_enqueued"], params)
        self._notify(ready=True)
        return DueResult.ENQUEUED

    def schedules(self) -> list[ScheduleState]:
        return [schedule_from_row(r) for r in self._db.get().execute(self._sql["schedules"])]
