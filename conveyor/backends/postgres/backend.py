"""``postgresql://``: the queue inside a database teams already run.

Every operation is one statement or one transaction; the SQL lives in ``schema.sql`` and
``queries.sql`` beside this module. Claims lock their rows with ``FOR UPDATE SKIP LOCKED``,
so concurrent workers pass by each other's jobs instead of waiting. Writes that make jobs
ready or change them send a notification in the same transaction, delivered on commit, which
wakes idle workers and those waiting for a result (``listener.py``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from conveyor.backends.base import (
    Backend,
    DueResult,
    HeartbeatResult,
    RecoveredJob,
    SweepResult,
    WorkerInfo,
    in_stall,
    note_heartbeat,
    worker_lost_error,
)
from conveyor.backends.postgres import limits
from conveyor.backends.postgres.admin import Admin
from conveyor.backends.postgres.flows import Flows
from conveyor.backends.postgres.inspection import Inspection
from conveyor.backends.postgres.listener import Listener
from conveyor.backends.postgres.rows import (
    error_json,
    from_row,
    progress_json,
    to_columns,
    to_params,
    worker_params,
)
from conveyor.backends.postgres.schema import initialise, migrate
from conveyor.backends.postgres.store import (
    RETRY_SECONDS,
    Database,
    channel,
    check_namespace,
    queries,
    safe_url,
)
from conveyor.job import ACTIVE_STATES, Claim, JobRecord, Outcome, Progress, State
from conveyor.limits import LimitInfo, LimitSpec

#: workers not seen for this long are dropped from the registry by sweep
STALE_WORKER_SECONDS = 3600.0
#: how often result() looks again with no notification (a safety net), and without LISTEN
POLL_SECONDS = 5.0
POLL_SECONDS_UNLISTENED = 0.2
#: a crash count no job reaches: in a stall no job fails as poison
NEVER = 2**31 - 1
#: the WorkerLost message with the count left to the statement
_LOST_MESSAGE = worker_lost_error(0)["message"].replace(" 0 times", " {crashes} times")

Conn = psycopg.Connection[Any]


class PostgresBackend(Inspection, Admin, Backend):
    scheme = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "conveyor",
        clock: Callable[[], float] | None = None,
        retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        super().__init__(url, namespace=check_namespace(namespace), clock=clock)
        self._db = Database(url, retry_seconds=retry_seconds)
        self._sql = queries(self.namespace)
        self._flows = Flows(self._sql)
        initialise(self._db, self.namespace, safe_url(url))
        self._listener = Listener(self._db, channel(self.namespace))
        self._local = threading.local()  # per thread: the wake-up snapshot of the last claim

    @classmethod
    def migrate_store(cls, url: str, *, namespace: str = "conveyor") -> tuple[int, int] | None:
        db = Database(url)
        try:
            return migrate(db, check_namespace(namespace), safe_url(url))
        finally:
            db.close()

    # -- enqueue ---------------------------------------------------------------------------

    def enqueue(self, records: Sequence[JobRecord]) -> list[JobRecord]:
        if not records:
            return []
        if len(records) == 1 and records[0].key is None and records[0].unique_key is None:
            # The common delay(): insert and notify in one statement, its own transaction.
            params = to_params(records[0])
            self._db.run(lambda c: c.execute(self._sql["insert_and_notify"], params))
            return list(records)

        def write(conn: Conn) -> list[JobRecord]:
            with conn.transaction():
                return self._store(conn, records)

        return self._db.run(write)

    def enqueue_with(self, connection: Any, records: Sequence[JobRecord]) -> list[JobRecord]:
        """In the caller's psycopg connection and transaction: the jobs and their wake-up
        notification are committed with the caller's rows, or rolled back with them."""
        if not isinstance(connection, psycopg.Connection):
            raise TypeError(
                f"connection= on postgresql:// takes a psycopg connection, not "
                f"{type(connection).__name__}"
            )
        if not records:
            return []
        idle = connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        if connection.autocommit and idle and len(records) > 1:
            with connection.transaction():  # an autocommit connection: one batch, atomic
                return self._store(connection, records)
        return self._store(connection, records)

    def _store(self, conn: Conn, records: Sequence[JobRecord]) -> list[JobRecord]:
        """Insert the records and notify their queues, inside the caller's transaction."""
        cur = conn.cursor(row_factory=tuple_row)
        if all(r.key is None and r.unique_key is None for r in records):
            cur.execute(self._sql["insert_many"], to_columns(records))
            out = list(records)
        else:
            out = [self._insert(cur, r) for r in records]
        queues = sorted({r.queue for r in out if r.state is State.QUEUED})
        if queues:
            cur.execute(self._sql["notify_ready"], {"queues": queues})
        return out

    def _insert(self, cur: psycopg.Cursor[Any], record: JobRecord) -> JobRecord:
        """Store one record, or return the stored job holding its key or unique key. Inside
        the caller's transaction, so the lookup sees a holder inserted earlier in the batch."""
        if cur.execute(self._sql["insert_or_skip"], to_params(record)).fetchone() is not None:
            return record
        lookups = (("by_key", record.key), ("by_unique_key", record.unique_key))
        for query, value in lookups:
            if value is not None:
                row = cur.execute(self._sql[query], {"value": value}).fetchone()
                if row is not None:
                    return from_row(row)
        by_id = cur.execute(self._sql["by_id"], {"id": record.id}).fetchone()
        if by_id is not None:  # stored by an earlier try whose reply was lost
            return from_row(by_id)
        raise psycopg.errors.UniqueViolation(f"job {record.id!r} was refused by a unique index")

    def enqueue_workflow(
        self, workflow_id: str, records: Sequence[JobRecord], outputs: Collection[str]
    ) -> None:
        def write(conn: Conn) -> None:
            with conn.transaction():
                self._store(conn, records)
                self._flows.store(conn, workflow_id, records, outputs)

        self._db.run(write)

    def get_workflow(self, workflow_id: str) -> list[tuple[str, str, bool, State | None]] | None:
        return self._db.run(lambda c: self._flows.rows(c, workflow_id))

    # -- the worker's side -----------------------------------------------------------------

    def claim(
        self,
        worker_id: str,
        queues: Sequence[str],
        limit: int,
        *,
        lease_seconds: float,
        now: float,
    ) -> list[Claim]:
        # Listening and the snapshot come before the read, so wait_for_jobs after an empty
        # claim wakes for any commit that the read could have missed.
        self._listener.ensure()
        self._local.since = self._listener.ready.snapshot(list(queues))
        if limit <= 0 or not queues:
            return []
        params = self._claim_params(worker_id, queues, limit, lease_seconds, now)
        rows = self._db.run(lambda c: c.execute(self._sql["claim"], params).fetchall())
        if rows and rows[0][0]:  # limits are stored: every claim checks them
            return self._claims(self._claim_limited(params))
        return self._claims([row[1:] for row in rows if row[1] is not None])

    def _claim_limited(self, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """The claim through limits.py, in a transaction of its own (tried again when two
        claims deadlocked on their refs' locks)."""
        if params["limit"] <= 0:
            return []

        def write(conn: Conn) -> list[tuple[Any, ...]]:
            for attempt in range(5):
                try:
                    with conn.transaction():
                        row = conn.execute(self._sql["store_time"], params).fetchone()
                        t = float(row[0]) if row else 0.0
                        return limits.claim(conn, self._sql, self.namespace, params, t)
                except psycopg.errors.DeadlockDetected:
                    if attempt == 4:
                        raise
            raise AssertionError("unreachable")

        return self._db.run(write)

    def _claim_params(
        self, worker_id: str, queues: Sequence[str], limit: int, lease_seconds: float, now: float
    ) -> dict[str, Any]:
        return {
            "queues": list(dict.fromkeys(queues)),
            "limit": limit,
            "worker": worker_id,
            "now": now,
            "lease_seconds": lease_seconds,
            "store_time": self._test_time(),
        }

    def _test_time(self) -> float | None:
        """The test clock's time, passed to the statements; None: they read the server's."""
        return None if self.clock is None else self.clock()

    @staticmethod
    def _claims(rows: list[tuple[Any, ...]]) -> list[Claim]:
        records = sorted(map(from_row, rows), key=lambda r: (-r.priority, r.ready_at, r.id))
        return [Claim(r, r.token) for r in records]

    def finish_and_claim(
        self,
        items: Sequence[tuple[str, int, Outcome]],
        worker_id: str,
        queues: Sequence[str],
        limit: int,
        *,
        lease_seconds: float,
        now: float,
    ) -> tuple[list[bool], list[Claim]]:
        # One statement: one round trip and one commit per batch.
        claiming = limit > 0 and bool(queues)
        if claiming:
            self._listener.ensure()
            self._local.since = self._listener.ready.snapshot(list(queues))
        if not items and not claiming:
            return [], []
        params = self._claim_params(worker_id, queues, limit if claiming else 0, lease_seconds, now)
        params.update(self._finish_params(items, now, flows=False))
        rows = self._db.run(lambda c: c.execute(self._sql["finish_and_claim"], params).fetchall())
        written = set(rows[0][0] or ()) if rows else set()
        deferred = set(rows[0][1] or ()) if rows else set()
        limited = bool(rows and rows[0][2])
        claimed = [row[3:] for row in rows if row[3] is not None]
        if deferred:
            # Their successors may be ready now: the rest of the claim comes after them.
            params["limit"] = limit - len(claimed) if claiming else 0
            ended, more = self._finish_workflow_jobs(
                [i for i in items if i[0] in deferred], now, claim=params
            )
            written |= ended
            claimed += more
        if limited and claiming:
            claimed += self._claim_limited({**params, "limit": limit - len(claimed)})
        return [job_id in written for job_id, _, _ in items], self._claims(claimed)

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

        def write(conn: Conn) -> list[tuple[Any, ...]]:
            with conn.transaction():
                # The record's lock first, then the clock: t is read once the lock is held.
                with conn.pipeline():
                    beats = conn.execute(self._sql["beats_lock"])
                    clock = conn.execute(self._sql["store_time"], self._clock_params())
                quiet_after, stall_until = beats.fetchone() or (None, None)
                t = float(clock.fetchone()[0])  # type: ignore[index]
                quiet, stall = note_heartbeat(quiet_after, stall_until, t, lease_seconds)
                params = {"ids": ids, "tokens": tokens, "lease_expires_at": t + lease_seconds}
                with conn.pipeline():
                    conn.execute(
                        self._sql["beats_put"], {"quiet_after": quiet, "stall_until": stall}
                    )
                    extended = conn.execute(self._sql["extend_leases"], params)
                    conn.execute(self._sql["put_worker"], worker_params(worker))
            return extended.fetchall()

        rows = self._db.run(write)
        kept = {(job_id, token) for job_id, token, _ in rows}
        lost = {(job_id, token) for job_id, token in leases if (job_id, token) not in kept}
        cancel = {(job_id, token) for job_id, token, requested in rows if requested}
        return HeartbeatResult(frozenset(lost), frozenset(cancel))

    def set_progress(self, job_id: str, token: int, progress: Progress) -> bool:
        params = {"id": job_id, "token": token, "progress": progress_json(progress)}
        rows = self._db.run(lambda c: c.execute(self._sql["set_progress"], params).fetchall())
        return bool(rows)

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

    # -- periodic jobs ---------------------------------------------------------------------

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

    # -- cluster-wide limits ----------------------------------------------------------------

    def set_limit(self, spec: LimitSpec, *, now: float) -> None:
        self._db.run(lambda c: limits.set_limit(c, self._sql, spec))

    def limits(self, *, now: float) -> list[LimitInfo]:
        return self._db.run(lambda c: limits.limits(c, self._sql, now))

    # -- waiting ---------------------------------------------------------------------------

    def wait_for_jobs(self, queues: Sequence[str], timeout: float) -> None:
        since = getattr(self._local, "since", None)
        self._local.since = None
        self._listener.ensure()
        keys = list(queues)
        if since is None:
            since = self._listener.ready.snapshot(keys)
        self._listener.ready.wait(keys, since, timeout)

    def wait_for_change(self, job_id: str, timeout: float) -> None:
        self._listener.ensure()
        since = self._listener.changed.watch([job_id])
        try:
            self._listener.changed.wait([job_id], since, timeout)
        finally:
            self._listener.changed.unwatch([job_id])

    def wait_final(self, job_id: str, timeout: float | None) -> JobRecord | None:
        # Watched before each read, so no change between read and wait is lost.
        self._listener.ensure()
        board, keys = self._listener.changed, [job_id]
        deadline = None if timeout is None else time.monotonic() + timeout
        since = board.watch(keys)
        try:
            while True:
                record = self.get(job_id)
                if record is None or record.state.is_final:
                    return record
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return record
                # a slow poll as the safety net under the notifications; a quick one without
                poll = POLL_SECONDS if self._listener.enabled else POLL_SECONDS_UNLISTENED
                board.wait(keys, since, poll if remaining is None else min(remaining, poll))
                since = board.snapshot(keys)
        finally:
            board.unwatch(keys)

    def set_call_timeout(self, seconds: float) -> None:
        self._db.set_call_timeout(seconds)

    def ping(self) -> bool:
        return self._db.try_once(lambda c: c.execute(self._sql["ping"]))

    def close(self) -> None:
        self._listener.stop()
        self._db.close()


__all__ = ["PostgresBackend"]
