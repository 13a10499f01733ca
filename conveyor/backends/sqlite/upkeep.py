"""Upkeep of leases and the store: heartbeats (leases and the worker registry), recovering
lapsed leases, and the periodic sweep. A mixin of ``SQLiteBackend``, apart from the claim path."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from conveyor.backends.base import (
    HeartbeatResult,
    RecoveredJob,
    SweepResult,
    WorkerInfo,
    in_stall,
    note_heartbeat,
    worker_lost_error,
)
from conveyor.backends.sqlite import feed
from conveyor.backends.sqlite import limits as limits_sql
from conveyor.backends.sqlite.connections import Connections
from conveyor.backends.sqlite.flows import Flows
from conveyor.backends.sqlite.inspection import EVENTS_KEPT
from conveyor.backends.sqlite.ledger import Ledger
from conveyor.backends.sqlite.rows import dumps, worker_row
from conveyor.job import Outcome, State

#: workers not seen for this long are dropped from the registry by sweep
STALE_WORKER_SECONDS = 3600.0


class Upkeep:
    _db: Connections
    _sql: Mapping[str, str]
    _flows: Flows
    _ledger: Ledger
    _store_time: Callable[[], float]

    def _notify(self, *, ready: bool) -> None:
        raise NotImplementedError

    def heartbeat(
        self,
        worker: WorkerInfo,
        leases: Sequence[tuple[str, int]],
        *,
        lease_seconds: float,
        now: float,
    ) -> HeartbeatResult:
        lost, cancel = set(), set()
        worker.last_seen = now
        with self._db.write() as conn:
            t = self._store_time()
            quiet_after, stall_until = conn.execute(self._sql["beats"]).fetchone()
            quiet, stall = note_heartbeat(quiet_after, stall_until, t, lease_seconds)
            conn.execute(self._sql["put_beat"], {"name": "quiet_after", "at": quiet})
            if stall is not None and stall != stall_until:
                conn.execute(self._sql["put_beat"], {"name": "stall_until", "at": stall})
            lease_expires_at = t + lease_seconds
            for job_id, token in leases:
                params = {"id": job_id, "token": token, "lease_expires_at": lease_expires_at}
                row = conn.execute(self._sql["extend_lease"], params).fetchone()
                if row is None:
                    lost.add((job_id, token))
                elif row[0]:
                    cancel.add((job_id, token))
            conn.execute(self._sql["put_worker"], worker_row(worker))
        return HeartbeatResult(frozenset(lost), frozenset(cancel))

    def recover(self, *, now: float, max_crashes: int) -> list[RecoveredJob]:
        # A look without the write lock first: most of the time nothing ran out.
        look = {"cutoff": self._store_time()}
        if not self._db.get().execute(self._sql["lapsed"], look).fetchone():
            return []
        out = []
        with self._db.write() as conn:
            t = self._store_time()
            quiet_after, stall_until = conn.execute(self._sql["beats"]).fetchone()
            stalled = in_stall(quiet_after, stall_until, t)
            crash = 0 if stalled else 1
            for job_id, crashes, cancel_requested in conn.execute(
                self._sql["lapsed"], {"cutoff": t}
            ).fetchall():
                params: dict[str, Any] = {"id": job_id, "now": now, "crash": crash}
                if cancel_requested:
                    state, error = State.CANCELLED, None
                elif not stalled and crashes + 1 >= max_crashes:
                    state, error = State.FAILED, dumps(worker_lost_error(crashes + 1))
                else:
                    conn.execute(self._sql["recover_requeue"], params)
                    out.append(RecoveredJob(job_id, State.QUEUED))
                    continue
                params.update(state=state.value, error=error)
                conn.execute(self._sql["recover_final"], params)
                out.append(RecoveredJob(job_id, state))
            feed.write(conn, self._sql, [r.id for r in out])
            ended = [r.id for r in out if r.state.is_final]
            if ended:
                self._flows.finished(conn, ended, now=now)
                lost = [r.id for r in out if r.state is State.FAILED]
                self._ledger.count_ended(conn, [(i, 0, Outcome(State.FAILED)) for i in lost])
        if out:
            self._notify(ready=True)
        return out

    def sweep(self, *, now: float) -> SweepResult:
        # Purge first: a job that expires in this sweep is kept at least until the next.
        params = {"now": now}
        with self._db.write() as conn:
            self._flows.purging(conn, now=now)
            purged = conn.execute(self._sql["sweep_purge"], params).rowcount
            expiring = self._flows.expiring(conn, now=now)
            expired = [r[0] for r in conn.execute(self._sql["sweep_expire"], params)]
            feed.write(conn, self._sql, expired)
            if expiring:
                self._flows.finished(conn, expiring, now=now)
            promoted = [r[0] for r in conn.execute(self._sql["sweep_promote"], params)]
            feed.write(conn, self._sql, promoted)
            before = {"before": now - STALE_WORKER_SECONDS}
            conn.execute(self._sql["sweep_workers"], before)
            conn.execute(self._sql["sweep_events"], {"keep": EVENTS_KEPT})
            limits_sql.sweep(conn, self._sql, now)
        if promoted or expired or purged:
            self._notify(ready=bool(promoted))
        return SweepResult(len(promoted), len(expired), purged)
