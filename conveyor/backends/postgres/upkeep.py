"""Upkeep of leases and the store on PostgreSQL: heartbeats (leases and the worker registry),
recovering lapsed leases, and the periodic sweep. A mixin of ``PostgresBackend``, apart from
the claim path."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from conveyor.backends.base import (
    HeartbeatResult,
    RecoveredJob,
    SweepResult,
    WorkerInfo,
    in_stall,
    worker_lost_error,
)
from conveyor.backends.bookkeeping import STALL_GRACE_LEASES, STALL_SHARE
from conveyor.backends.postgres import limits
from conveyor.backends.postgres.flows import Flows
from conveyor.backends.postgres.rows import worker_params
from conveyor.backends.postgres.store import Database
from conveyor.job import State

#: workers not seen for this long are dropped from the registry by sweep
STALE_WORKER_SECONDS = 3600.0
#: a crash count no job reaches: in a stall no job fails as poison
NEVER = 2**31 - 1
#: the WorkerLost message with the count left to the statement
_LOST_MESSAGE = worker_lost_error(0)["message"].replace(" 0 times", " {crashes} times")

Conn = psycopg.Connection[Any]


class Upkeep:
    _db: Database
    _sql: Mapping[str, str]
    _flows: Flows

    def _test_time(self) -> float | None:
        raise NotImplementedError

    def _sweep_feed(self, conn: Conn) -> None:
        raise NotImplementedError

    def heartbeat(
        self,
        worker: WorkerInfo,
        leases: Sequence[tuple[str, int]],
        *,
        lease_seconds: float,
        now: float,
    ) -> HeartbeatResult:
        worker.last_seen = now
        ids = [job_id for job_id, _ in leases]
        tokens = [token for _, token in leases]
        beat_params = {
            **self._clock_params(),
            "quiet_seconds": STALL_SHARE * lease_seconds,
            "grace_seconds": STALL_GRACE_LEASES * lease_seconds,
        }

        def write(conn: Conn) -> list[tuple[Any, ...]]:
            # The store-wide record first, in a statement of its own (see "beat"); then the
            # leases, from the store's time it read.
            row = conn.execute(self._sql["beat"], beat_params).fetchone()
            t = float(row[0])  # type: ignore[index]
            params = {"ids": ids, "tokens": tokens, "lease_expires_at": t + lease_seconds}
            with conn.pipeline():  # one round trip
                extended = conn.execute(self._sql["extend_leases"], params)
                conn.execute(self._sql["put_worker"], worker_params(worker))
            return extended.fetchall()

        rows = self._db.run(write)
        kept = {(job_id, token) for job_id, token, _ in rows}
        lost = {(job_id, token) for job_id, token in leases if (job_id, token) not in kept}
        cancel = {(job_id, token) for job_id, token, requested in rows if requested}
        return HeartbeatResult(frozenset(lost), frozenset(cancel))

    def recover(self, *, now: float, max_crashes: int) -> list[RecoveredJob]:
        def write(conn: Conn) -> list[tuple[Any, ...]]:
            with conn.transaction():
                with conn.pipeline():
                    beats = conn.execute(self._sql["beats"])
                    clock = conn.execute(self._sql["store_time"], self._clock_params())
                quiet_after, stall_until = beats.fetchone() or (None, None)
                t = float(clock.fetchone()[0])  # type: ignore[index]
                stalled = in_stall(quiet_after, stall_until, t)
                params = {
                    "now": now,
                    "cutoff": t,
                    "crash": 0 if stalled else 1,
                    "max_crashes": NEVER if stalled else max_crashes,
                    "lost_message": _LOST_MESSAGE,
                }
                rows = conn.execute(self._sql["recover"], params).fetchall()
                ended = [job_id for job_id, state in rows if State(state).is_final]
                self._flows.finished(conn, ended, now=now)
                return rows

        rows = self._db.run(write)
        return [RecoveredJob(job_id, State(state)) for job_id, state in rows]

    def _clock_params(self) -> dict[str, Any]:
        return {"store_time": self._test_time()}

    def sweep(self, *, now: float) -> SweepResult:
        # Purge first: a job that expires in this sweep is kept at least until the next.
        params = {"now": now}

        def write(conn: Conn) -> SweepResult:
            with conn.transaction():
                self._flows.purging(conn, now=now)
                purged = conn.execute(self._sql["sweep_purge"], params).rowcount
                expiring = self._flows.expiring(conn, now=now)
                expired = conn.execute(self._sql["sweep_expire"], params).rowcount
                self._flows.finished(conn, expiring, now=now)
                row = conn.execute(self._sql["sweep_promote"], params).fetchone()
                before = {"before": now - STALE_WORKER_SECONDS}
                conn.execute(self._sql["sweep_workers"], before)
                limits.prune(conn, self._sql, self._test_time() or time.time())
                self._sweep_feed(conn)
            return SweepResult(int(row[0]) if row else 0, expired, purged)

        return self._db.run(write)
