"""Workflows on SQLite: the storage steps of ``backends/flow.py`` as the named ``flow_*``
statements of queries.sql, run inside the caller's write transaction, so a step's successor
is decided in the same commit as the step's own finish."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from conveyor.backends.flow import advance, pack_inputs
from conveyor.backends.sqlite import feed
from conveyor.backends.sqlite.rows import dumps, error_json
from conveyor.canvas import HOLD
from conveyor.job import ErrorInfo, JobRecord, State


class _Steps:
    """``flow.FlowStore`` on one connection inside its write transaction."""

    def __init__(self, conn: sqlite3.Connection, sql: Mapping[str, str]) -> None:
        self._conn = conn
        self._sql = sql

    def flow_of(self, job_id: str) -> tuple[State, float, dict[str, Any]] | None:
        row = self._conn.execute(self._sql["flow_step"], {"id": job_id}).fetchone()
        if row is None:
            return None
        return State(row[0]), row[1], json.loads(row[2]) if row[2] else {}

    def put_input(self, job_id: str, slot: int, value: bytes) -> bool:
        params = {"id": job_id, "slot": slot, "value": value, "hold": HOLD}
        if self._conn.execute(self._sql["flow_put_input"], params).rowcount != 1:
            return False
        return bool(self._conn.execute(self._sql["flow_count_input"], params).fetchone()[0])

    def take_inputs(self, job_id: str) -> list[bytes]:
        rows = self._conn.execute(self._sql["flow_inputs"], {"id": job_id}).fetchall()
        return [bytes(r[0]) for r in rows]

    def _drop(self, job_id: str) -> None:
        self._conn.execute(self._sql["flow_drop_inputs"], {"id": job_id})
        self._conn.execute(self._sql["flow_drop_filled"], {"id": job_id})

    def promote(self, job_id: str, slots: list[bytes], *, now: float) -> None:
        payload = self._conn.execute(self._sql["flow_payload"], {"id": job_id}).fetchone()[0]
        params = {"id": job_id, "now": now, "payload": pack_inputs(bytes(payload), slots)}
        if self._conn.execute(self._sql["flow_promote"], params).rowcount:
            feed.write(self._conn, self._sql, [job_id])
        self._drop(job_id)

    def end(self, job_id: str, state: State, error: ErrorInfo, *, now: float) -> None:
        params = {"id": job_id, "state": state.value, "error": error_json(error), "now": now}
        if self._conn.execute(self._sql["flow_end"], params).rowcount:
            feed.write(self._conn, self._sql, [job_id])
        self._drop(job_id)


class Flows:
    """The workflow side of the SQLite backend; every method runs in the caller's
    transaction."""

    def __init__(self, sql: Mapping[str, str]) -> None:
        self._sql = sql

    def store(
        self,
        conn: sqlite3.Connection,
        workflow_id: str,
        records: Sequence[JobRecord],
        outputs: Collection[str],
    ) -> None:
        jobs = dumps([[r.id, r.task, r.id in outputs] for r in records])
        conn.execute(self._sql["flow_insert_workflow"], (workflow_id, jobs, len(records)))
        held = [
            (r.id, r.meta["flow"]["in"]["n"]) for r in records if "in" in r.meta.get("flow", {})
        ]
        conn.executemany(self._sql["flow_expect"], held)

    def rows(
        self, conn: sqlite3.Connection, workflow_id: str
    ) -> list[tuple[str, str, bool, State | None]] | None:
        rows = conn.execute(self._sql["flow_workflow"], {"id": workflow_id}).fetchall()
        if not rows:
            found = conn.execute(self._sql["flow_exists"], {"id": workflow_id}).fetchone()
            return None if found is None else []
        return [
            (job_id, task, bool(output), None if state is None else State(state))
            for job_id, task, output, state in rows
        ]

    def finished(self, conn: sqlite3.Connection, ids: Sequence[str], *, now: float) -> bool:
        """Decide the successors of the workflow jobs among ``ids`` that are final now.
        True when some job was queued or changed by it."""
        rows = conn.execute(self._sql["flow_finished"], {"ids": dumps(list(ids))}).fetchall()
        steps = _Steps(conn, self._sql)
        for job_id, state, result, error, flow in rows:
            err = None if error is None else ErrorInfo.from_json(json.loads(error))
            data = None if result is None else bytes(result)
            advance(steps, job_id, State(state), data, err, now=now, flow=json.loads(flow))
        return bool(rows)

    def expiring(self, conn: sqlite3.Connection, *, now: float) -> list[str]:
        """The workflow jobs that the sweep about to run will expire."""
        return [r[0] for r in conn.execute(self._sql["flow_expiring"], {"now": now})]

    def purging(self, conn: sqlite3.Connection, *, now: float) -> None:
        """Before the sweep purges: count the purged jobs off their workflows, and forget
        the workflows left with none."""
        counts = conn.execute(self._sql["flow_purging"], {"now": now}).fetchall()
        for workflow_id, n in counts:
            conn.execute(self._sql["flow_purged"], {"id": workflow_id, "n": n})
        if counts:
            conn.execute(self._sql["flow_forget"])
