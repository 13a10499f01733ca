"""Workflows on PostgreSQL: the storage steps of ``backends/flow.py`` as the named ``flow_*``
statements of queries.sql, run inside the transaction of the operation that made a workflow
job final, so a step's successors are decided in the same commit as the step's own end.

Members of one chord finishing at once in different transactions meet at the successor's
row (``flow_step`` locks it) and at its count of filled slots: one waits for the other's
commit, then sees its input, so exactly one of them queues the callback.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from conveyor.backends.flow import advance, pack_inputs
from conveyor.backends.postgres.rows import error_json
from conveyor.canvas import HOLD
from conveyor.job import ErrorInfo, JobRecord, State

Conn = psycopg.Connection[Any]


class _Steps:
    """``flow.FlowStore`` on one connection inside its transaction."""

    def __init__(self, conn: Conn, sql: Mapping[str, str]) -> None:
        self._conn = conn
        self._sql = sql

    def _run(self, name: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        cur = self._conn.execute(self._sql[name], params)
        return cur.fetchall() if cur.description is not None else []

    def flow_of(self, job_id: str) -> tuple[State, float, dict[str, Any]] | None:
        rows = self._run("flow_step", {"id": job_id})
        if not rows:
            return None
        state, ready_at, flow = rows[0]
        return State(state), ready_at, flow or {}

    def put_input(self, job_id: str, slot: int, value: bytes) -> bool:
        params = {"id": job_id, "slot": slot, "value": value, "hold": HOLD}
        if not self._run("flow_put_input", params):
            return False
        counted = self._run("flow_count_input", params)
        return bool(counted and counted[0][0])

    def take_inputs(self, job_id: str) -> list[bytes]:
        return [bytes(row[0]) for row in self._run("flow_inputs", {"id": job_id})]

    def promote(self, job_id: str, slots: list[bytes], *, now: float) -> None:
        [(payload,)] = self._run("flow_payload", {"id": job_id})
        packed = pack_inputs(bytes(payload), slots)
        self._run("flow_promote", {"id": job_id, "now": now, "payload": packed})
        self._run("flow_drop", {"id": job_id})

    def end(self, job_id: str, state: State, error: ErrorInfo, *, now: float) -> None:
        params = {"id": job_id, "state": state.value, "error": error_json(error), "now": now}
        self._run("flow_end", params)
        self._run("flow_drop", {"id": job_id})


class Flows:
    """The workflow side of the PostgreSQL backend; every method runs in the caller's
    transaction."""

    def __init__(self, sql: Mapping[str, str]) -> None:
        self._sql = sql

    def store(
        self, conn: Conn, workflow_id: str, records: Sequence[JobRecord], outputs: Collection[str]
    ) -> None:
        jobs = Jsonb([[r.id, r.task, r.id in outputs] for r in records])
        params = {"id": workflow_id, "jobs": jobs, "live": len(records)}
        conn.execute(self._sql["flow_insert_workflow"], params)
        held = [
            (r.id, r.meta["flow"]["in"]["n"]) for r in records if "in" in r.meta.get("flow", {})
        ]
        if held:
            expect = {"ids": [i for i, _ in held], "needs": [int(n) for _, n in held]}
            conn.execute(self._sql["flow_expect"], expect)

    def rows(
        self, conn: Conn, workflow_id: str
    ) -> list[tuple[str, str, bool, State | None]] | None:
        rows = conn.execute(self._sql["flow_workflow"], {"id": workflow_id}).fetchall()
        if not rows:
            found = conn.execute(self._sql["flow_exists"], {"id": workflow_id}).fetchone()
            return None if found is None else []
        return [
            (job_id, task, bool(output), None if state is None else State(state))
            for job_id, task, output, state in rows
        ]

    def finished(self, conn: Conn, ids: Sequence[str], *, now: float) -> bool:
        """Decide the successors of the workflow jobs among ``ids`` that are final now.
        True when there were some."""
        if not ids:
            return False
        rows = conn.execute(self._sql["flow_finished"], {"ids": list(ids)}).fetchall()
        steps = _Steps(conn, self._sql)
        for job_id, state, result, error, flow in rows:
            err = None if error is None else ErrorInfo.from_json(error)
            data = None if result is None else bytes(result)
            advance(steps, job_id, State(state), data, err, now=now, flow=flow)
        return bool(rows)

    def expiring(self, conn: Conn, *, now: float) -> list[str]:
        """The workflow jobs that the sweep about to run will expire."""
        return [r[0] for r in conn.execute(self._sql["flow_expiring"], {"now": now})]

    def purging(self, conn: Conn, *, now: float) -> None:
        """Before the sweep purges: count the purged jobs off their workflows, and forget
        the workflows left with none."""
        if conn.execute(self._sql["flow_purging"], {"now": now}).rowcount:
            conn.execute(self._sql["flow_forget"])
