"""Periodic jobs on PostgreSQL: recording each due time once across processes, under the
schedule row's lock. A mixin of ``PostgresBackend``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from conveyor.backends.base import DueResult
from conveyor.backends.postgres.store import Database
from conveyor.job import ACTIVE_STATES, JobRecord, State

Conn = psycopg.Connection[Any]


class Periodic:
    _db: Database
    _sql: Mapping[str, str]

    def _store(self, conn: Conn, records: Sequence[JobRecord]) -> list[JobRecord]:
        raise NotImplementedError

    def record_due(
        self, name: str, due: float, record: JobRecord, *, skip_if_active: bool, now: float
    ) -> DueResult:
        def write(conn: Conn) -> DueResult:
            with conn.transaction():
                cur = conn.cursor()
                cur.execute(self._sql["schedule_row"], {"name": name})
                row = cur.execute(self._sql["schedule_lock"], {"name": name}).fetchone()
                last_due, last_job_id = (None, None) if row is None else row
                if last_due is not None and due <= last_due:
                    return DueResult.DUPLICATE
                if skip_if_active and last_job_id is not None:
                    previous = cur.execute(self._sql["state_of"], {"id": last_job_id}).fetchone()
                    if previous is not None and State(previous[0]) in ACTIVE_STATES:
                        cur.execute(self._sql["record_skipped"], {"name": name, "due": due})
                        return DueResult.SKIPPED
                [stored] = self._store(conn, [record])
                params = {"name": name, "due": due, "job_id": stored.id, "now": now}
                cur.execute(self._sql["record_enqueued"], params)
                return DueResult.ENQUEUED

        return self._db.run(write)
