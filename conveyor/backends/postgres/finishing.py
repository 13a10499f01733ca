"""Ending claims on PostgreSQL (finish, finish_many, release): the fenced batch update and the
workflow steps a final outcome sets off. A mixin of ``PostgresBackend``, shared with its
``finish_and_claim``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from conveyor.backends.postgres.flows import Flows
from conveyor.backends.postgres.rows import error_json
from conveyor.backends.postgres.store import Database
from conveyor.job import Outcome

Conn = psycopg.Connection[Any]


class Finishing:
    _db: Database
    _sql: Mapping[str, str]
    _flows: Flows

    def finish(self, job_id: str, token: int, outcome: Outcome, *, now: float) -> bool:
        return self.finish_many([(job_id, token, outcome)], now=now)[0]

    def finish_many(self, items: Sequence[tuple[str, int, Outcome]], *, now: float) -> list[bool]:
        if not items:
            return []

        params = self._finish_params(items, now, flows=False)
        rows = self._db.run(lambda c: c.execute(self._sql["finish"], params).fetchall())
        written = {job_id for job_id, deferred in rows if not deferred}
        deferred = {job_id for job_id, later in rows if later}
        if deferred:
            ended, _ = self._finish_workflow_jobs([i for i in items if i[0] in deferred], now)
            written |= ended
        return [job_id in written for job_id, _, _ in items]

    def _finish_workflow_jobs(
        self,
        items: Sequence[tuple[str, int, Outcome]],
        now: float,
        *,
        claim: dict[str, Any] | None = None,
    ) -> tuple[set[str], list[tuple[Any, ...]]]:
        """Final outcomes of workflow jobs, their successors decided, and (``claim``: the
        claim's parameters) the next jobs claimed, in one transaction; tried again when it
        deadlocked with another finishing member of the same graph."""
        params = self._finish_params(items, now, flows=True)

        def write(conn: Conn) -> tuple[set[str], list[tuple[Any, ...]]]:
            for attempt in range(5):
                try:
                    with conn.transaction():
                        rows = conn.execute(self._sql["finish"], params).fetchall()
                        written = {job_id for job_id, _ in rows}
                        self._flows.finished(conn, sorted(written), now=now)
                        claimed: list[tuple[Any, ...]] = []
                        if claim is not None and claim["limit"] > 0:
                            rows = conn.execute(self._sql["claim"], claim).fetchall()
                            claimed = [row[1:] for row in rows if row[1] is not None]
                        return written, claimed
                except psycopg.errors.DeadlockDetected:
                    if attempt == 4:
                        raise
            raise AssertionError("unreachable")

        return self._db.run(write)

    @staticmethod
    def _finish_params(
        items: Sequence[tuple[str, int, Outcome]], now: float, *, flows: bool
    ) -> dict[str, Any]:
        outcomes = [outcome for _, _, outcome in items]
        return {
            "flows": flows,
            "now": now,
            "ids": [job_id for job_id, _, _ in items],
            "tokens": [token for _, token, _ in items],
            "states": [o.state.value for o in outcomes],
            "finals": [o.state.is_final for o in outcomes],
            "results": [o.result for o in outcomes],
            "errors": [error_json(o.error) for o in outcomes],
            "ready_ats": [
                None if o.state.is_final else (now if o.ready_at is None else o.ready_at)
                for o in outcomes
            ],
            "failures": [int(not o.state.is_final and o.counts_failure) for o in outcomes],
        }

    def release(self, job_id: str, token: int, *, started: bool, now: float) -> bool:
        params = {"id": job_id, "token": token, "now": now, "take_back": int(not started)}

        def write(conn: Conn) -> bool:
            with conn.transaction():
                done = bool(conn.execute(self._sql["release"], params).fetchall())
                if done:  # cancelled on its way back: a workflow job's successors follow
                    self._flows.finished(conn, [job_id], now=now)
                return done

        return self._db.run(write)
