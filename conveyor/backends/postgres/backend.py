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

from conveyor.backends.base import Backend
from conveyor.backends.postgres import limits
from conveyor.backends.postgres.admin import Admin
from conveyor.backends.postgres.finishing import Finishing
from conveyor.backends.postgres.flows import Flows
from conveyor.backends.postgres.held import HeldConnection
from conveyor.backends.postgres.inspection import Inspection
from conveyor.backends.postgres.listener import Listener
from conveyor.backends.postgres.periodic import Periodic
from conveyor.backends.postgres.rows import (
    from_row,
    progress_json,
    to_columns,
    to_params,
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
from conveyor.backends.postgres.upkeep import Upkeep
from conveyor.job import Claim, JobRecord, Outcome, Progress, State
from conveyor.limits import LimitInfo, LimitSpec

#: how often result() looks again with no notification (a safety net), and without LISTEN
POLL_SECONDS = 5.0
POLL_SECONDS_UNLISTENED = 0.2

Conn = psycopg.Connection[Any]


class PostgresBackend(Inspection, Admin, Finishing, Upkeep, Periodic, Backend):
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
        self._claimer = HeldConnection(self._db)  # the fetcher's claims: held.py says why
        self._local = threading.local()  # per thread: the wake-up snapshot of the last claim

    @classmethod
    def migrate_store(cls, url: str, *, namespace: str = "conveyor") -> tuple[int, int] | None:
        db = Database(url, wait_seconds=None)  # a step may build an index on a large table
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
        rows = self._claimer.run(lambda c: c.execute(self._sql["claim"], params).fetchall())
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
        # Prepared at its first run on a connection, not its sixth (psycopg's threshold): each
        # of the five before plans this long statement afresh (docs/postgres.md, "Planning").
        prepare = True if self._db.options.prepared else None
        sql = self._sql["finish_and_claim"]
        rows = self._db.run(lambda c: c.execute(sql, params, prepare=prepare).fetchall())
        # one row of the ids written and deferred (its job columns null), one per claimed job
        head = next(row for row in rows if row[3] is None)
        written, deferred, limited = set(head[0] or ()), set(head[1] or ()), bool(head[2])
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

    def set_progress(self, job_id: str, token: int, progress: Progress) -> bool:
        params = {"id": job_id, "token": token, "progress": progress_json(progress)}
        rows = self._db.run(lambda c: c.execute(self._sql["set_progress"], params).fetchall())
        return bool(rows)

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
        self._claimer.reset()

    def ping(self) -> bool:
        return self._db.try_once(lambda c: c.execute(self._sql["ping"]))

    def close(self) -> None:
        self._listener.stop()
        self._claimer.reset()
        self._db.close()


__all__ = ["PostgresBackend"]
