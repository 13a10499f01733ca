"""``sqlite:///path.db``: one file, several processes on one machine, no server.

Every operation is one statement or one ``BEGIN IMMEDIATE`` transaction, so SQLite's write
lock makes it atomic across threads and processes alike. The SQL lives in ``schema.sql`` and
``queries.sql`` beside this module. Idle waiters wake on an in-process signal, or within a
couple of milliseconds when another process commits (``wakeups.Wakeups``).
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

from conveyor.backends.base import Backend
from conveyor.backends.sqlite import feed
from conveyor.backends.sqlite import limits as limits_sql
from conveyor.backends.sqlite.connections import Connections
from conveyor.backends.sqlite.finishing import Finishing, done_items
from conveyor.backends.sqlite.flows import Flows
from conveyor.backends.sqlite.inspection import Inspection
from conveyor.backends.sqlite.ledger import Change, Ledger
from conveyor.backends.sqlite.periodic import Periodic
from conveyor.backends.sqlite.rows import (
    RARE_FLAG,
    dumps,
    from_ready,
    from_row,
    progress_json,
    to_row,
)
from conveyor.backends.sqlite.store import (
    check_namespace,
    initialise,
    numbered,
    parse_url,
    queries,
)
from conveyor.backends.sqlite.upkeep import Upkeep
from conveyor.backends.sqlite.wakeups import Wakeups
from conveyor.errors import ConfigurationError
from conveyor.job import Claim, JobRecord, Outcome, Progress, State
from conveyor.limits import LimitInfo, LimitSpec

#: a wake-up snapshot that no wait outlasts: wait_for_jobs returns at once
_AT_ONCE = (-1, -1)
#: jobs marked claimed per statement at most (SQLite allows 32,766 placeholders)
CLAIM_CHUNK = 500
#: ready_first's flags beside rows.RARE_FLAG: a scheduled job of the queue is due, and a ref
#: with parked jobs is due back
_SCHEDULED_DUE = 2
_WAKE_DUE = 4


class SQLiteBackend(Finishing, Upkeep, Periodic, Inspection, Backend):
    scheme = "sqlite"

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "conveyor",
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(url, namespace=check_namespace(namespace), clock=clock)
        # Read only once the write lock is held: a lease starts when it is granted, however
        # long the claim waited for the gate or for BEGIN IMMEDIATE.
        self._store_time = clock or time.time
        self.options = parse_url(url)
        initialise(self.options, namespace)
        self._sql = queries(namespace)
        self._flows = Flows(self._sql)
        self._ledger = Ledger(self._sql)
        self._db = Connections(self.options)
        self._wake = Wakeups(self._db)
        self._local = threading.local()  # per thread: the snapshot taken by the last claim

    def _notify(self, *, ready: bool) -> None:
        if ready:
            self._wake.ready.notify()
        self._wake.changed.notify()

    # -- enqueue ---------------------------------------------------------------------------

    def enqueue(self, records: Sequence[JobRecord]) -> list[JobRecord]:
        if not records:
            return []
        if len(records) == 1 and records[0].key is None and records[0].unique_key is None:
            # The common delay(): one INSERT is atomic by itself; skip BEGIN and COMMIT.
            with self._db.autocommit() as conn:
                conn.execute(self._sql["insert"], to_row(records[0]))
            self._notify(ready=True)
            return list(records)
        with self._db.write() as conn:
            if all(r.key is None and r.unique_key is None for r in records):
                conn.executemany(self._sql["insert"], map(to_row, records))
                out = list(records)
            else:
                out = [self._insert(conn, r) for r in records]
        self._notify(ready=True)
        return out

    def enqueue_with(self, connection: Any, records: Sequence[JobRecord]) -> list[JobRecord]:
        """In the caller's sqlite3 connection to this file and its transaction. No signal is
        sent: workers notice the commit itself (``wakeups.Wakeups`` watches data_version)."""
        if not isinstance(connection, sqlite3.Connection):
            raise TypeError(
                f"connection= on sqlite:// takes a sqlite3 connection, not "
                f"{type(connection).__name__}"
            )
        files = {row[1]: row[2] for row in connection.execute("PRAGMA database_list")}
        if os.path.realpath(files.get("main") or "") != os.path.realpath(self.options.path):
            raise ConfigurationError(
                f"connection= is open on {files.get('main')!r}, not on the app's database "
                f"{self.options.path!r}"
            )
        if not connection.in_transaction and connection.isolation_level is None:
            connection.execute("BEGIN IMMEDIATE")  # autocommit: the batch still commits whole
            try:
                out = [self._insert(connection, r) for r in records]
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
            return out
        return [self._insert(connection, r) for r in records]

    def _insert(self, conn: sqlite3.Connection, record: JobRecord) -> JobRecord:
        """Store one record, or return the stored job holding its key or unique key.

        Runs inside the caller's write transaction, so the lookup after a refused insert sees
        exactly the row that refused it, including one inserted earlier in the same batch."""
        if record.key is None and record.unique_key is None:
            conn.execute(self._sql["insert"], to_row(record))
            return record
        if conn.execute(self._sql["insert_or_skip"], to_row(record)).rowcount == 1:
            return record
        lookups = (("by_key", record.key), ("by_unique_key", record.unique_key))
        for query, value in lookups:
            if value is not None:
                row = conn.execute(self._sql[query], (value,)).fetchone()
                if row is not None:
                    return from_row(row)
        raise sqlite3.IntegrityError(f"job id {record.id!r} is already stored")

    def enqueue_workflow(
        self, workflow_id: str, records: Sequence[JobRecord], outputs: Collection[str]
    ) -> None:
        with self._db.write() as conn:
            conn.executemany(self._sql["insert"], map(to_row, records))
            self._flows.store(conn, workflow_id, records, outputs)
        self._notify(ready=True)

    def get_workflow(self, workflow_id: str) -> list[tuple[str, str, bool, State | None]] | None:
        return self._flows.rows(self._db.get(), workflow_id)

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
        if limit <= 0 or not queues:
            self._local.since = _AT_ONCE
            return []
        # After an empty claim, look without the write lock first: idle workers polling an
        # empty queue then never queue up behind writers. A busy worker goes straight in.
        if getattr(self._local, "idle", False):
            # Taken before reading, so that wait_for_jobs after an empty claim wakes for
            # any commit that the read could have missed.
            self._local.since = self._wake.snapshot(self._wake.ready)
            conn = self._db.get()
            if not self._ready(conn, queues, limit, now) and not self._wake_due(conn, now):
                return []
        with self._db.write() as conn:
            claims = self._claim(conn, worker_id, queues, limit, lease_seconds, now)
        if claims:
            self._wake.changed.notify()
        return claims

    def _claim(
        self,
        conn: sqlite3.Connection,
        worker_id: str,
        queues: Sequence[str],
        limit: int,
        lease_seconds: float,
        now: float,
        finished: Sequence[Change] = (),
    ) -> list[Claim]:
        """The claim itself, inside the caller's write transaction; its feed row holds the
        changes ``finished`` just before it in the transaction too."""
        t = self._store_time()  # under the write lock: once per transaction
        gate = limits_sql.Gate(conn, self._sql, t, lease_seconds)  # limits count by it too
        rows, due = self._look(conn, queues, limit, now, t)
        if due:  # parked jobs come back first, then the ready index is read again
            gate.unpark_due()
            rows = self._ready(conn, queues, limit, now)
        # For wait_for_jobs after a short claim: taken under the write lock, so no other
        # process can have committed since the read. After a full one, a wait ends at once
        # (more may be ready), and the busy path reads no data_version at all.
        self._local.since = self._wake.snapshot(self._wake.ready) if len(rows) < limit else _AT_ONCE
        if any('"limits"' in row[3] for row in rows):
            rows = limits_sql.admit(gate, rows, limit, lambda n: self._ready(conn, queues, n, now))
        # A claim that parked a batch of held jobs without filling up: more may be ready
        # behind them, so the worker must not go to sleep (the signal wakes it at once).
        self._local.idle = not rows and not gate.parked
        if gate.parked and len(rows) < limit:
            self._wake.ready.notify()
        if not rows:
            feed.put(conn, self._sql, finished)
            return []
        expires = t + lease_seconds
        self._update_claimed(conn, [row[0] for row in rows], (worker_id, t, expires))
        records = [
            self._claimed(conn, row[0])
            if row[4] & RARE_FLAG
            else from_ready(row, worker_id, t, expires)
            for row in rows
        ]
        self._ledger.claimed(conn, records, finished)
        if gate.taken:
            gate.record({r.id: r.token for r in records})
        return [Claim(r, r.token) for r in records]

    def _update_claimed(
        self, conn: sqlite3.Connection, ids: list[str], claim: tuple[str, float, float]
    ) -> None:
        """Mark the jobs ``ids`` claimed (worker, started_at, lease_expires_at): a statement
        for two jobs (the temporary table of a list of two costs more than a second
        statement), else one per CLAIM_CHUNK."""
        if len(ids) == 2:
            done = conn.executemany(self._claim_sql(1), [(*claim, i) for i in ids]).rowcount
        else:
            done = 0
            for start in range(0, len(ids), CLAIM_CHUNK):
                chunk = ids[start : start + CLAIM_CHUNK]
                done += conn.execute(self._claim_sql(len(chunk)), (*claim, *chunk)).rowcount
        if done != len(ids):  # read in this transaction: nothing else can have moved them
            raise RuntimeError(f"claimed {done} of the {len(ids)} jobs just read")

    def _claim_sql(self, n: int) -> str:
        """The claim statement for ``n`` jobs (queries.sql claim)."""
        return numbered(self._sql["claim"], "{ids}", n, 1, 4)

    def _claimed(self, conn: sqlite3.Connection, job_id: str) -> JobRecord:
        """The record of a job just claimed whose ready row did not hold it all (rows.RARE)."""
        return from_row(conn.execute(self._sql["by_id"], (job_id,)).fetchone())

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
        # One write transaction instead of two: half the commits (and the gate) per batch.
        self._local.since = _AT_ONCE  # unless the claim below comes back short
        with self._db.write() as conn:
            done = self._finish_batch(conn, items, now=now) if items else []
            changes = self._ledger.finished(conn, done_items(items, done), now=now)
            plain = self._ledger.plain  # no workflow step, no limit slot in this batch
            flowed = bool(items) and not plain and self._flows_after(conn, items, done, now=now)
            woken = not plain and self._release_slots(conn, items, done)
            if limit > 0 and queues:  # one feed row for the finishes and the claims
                claims = self._claim(conn, worker_id, queues, limit, lease_seconds, now, changes)
            else:
                claims = []
                feed.put(conn, self._sql, changes)
        if any(done):
            self._notify_finished(items, done, flowed=flowed or woken)
        elif claims:
            self._wake.changed.notify()
        return done, claims

    def _ready(
        self,
        conn: sqlite3.Connection,
        queues: Sequence[str],
        limit: int,
        now: float,
    ) -> list[limits_sql.Row]:
        """The jobs to claim, best first (id, priority, ready_at, meta, 0): the top of each
        queue's index, merged here, plus scheduled jobs whose time has come (a short range
        of their own index)."""
        params: dict[str, Any] = {"now": now, "limit": limit}
        rows: list[limits_sql.Row] = []
        for queue in dict.fromkeys(queues):
            params["queue"] = queue
            rows += conn.execute(self._sql["ready_queued"], params).fetchall()
        del params["queue"]
        params["queues"] = dumps(list(queues))
        rows += conn.execute(self._sql["ready_scheduled"], params).fetchall()
        rows.sort(key=lambda r: (-r[1], r[2], r[0]))
        return rows[:limit]

    def _look(
        self,
        conn: sqlite3.Connection,
        queues: Sequence[str],
        limit: int,
        now: float,
        t: float,
    ) -> tuple[list[limits_sql.Row], bool]:
        """A claim's first look: what ``_ready`` finds, and whether parked jobs are due
        back (a limit's wake time passed by the store's time ``t``): one statement for a
        worker on one queue that finds a job ready (ready_first), and a second when a
        scheduled job's time came."""
        if len(queues) == 1 or len(set(queues)) == 1:
            params = {"queue": queues[0], "now": now, "t": t, "limit": limit}
            rows: list[limits_sql.Row] = conn.execute(self._sql["ready_first"], params).fetchall()
            if rows:
                flags = rows[0][4]  # ready_first's flags are the same in every row
                if flags & _SCHEDULED_DUE:  # read them, merge them in
                    scheduled = {"now": now, "limit": limit, "queues": dumps([queues[0]])}
                    rows += conn.execute(self._sql["ready_scheduled"], scheduled).fetchall()
                    rows.sort(key=lambda r: (-r[1], r[2], r[0]))
                    del rows[limit:]
                return rows, bool(flags & _WAKE_DUE)
        # several queues, or none of the queue's jobs is ready
        gate_due = conn.execute(self._sql["limits_due"], {"now": t, "limit": 1}).fetchone()
        return self._ready(conn, queues, limit, now), gate_due is not None

    def _wake_due(self, conn: sqlite3.Connection, now: float) -> bool:
        """Whether held jobs may come back now (a limit's wake time passed). The earliest
        wake time is kept per thread until another commit (data_version), so an idle worker
        polling a store without limits reads nothing more than before limits existed."""
        version = self._local.since[1]
        cached: tuple[int, float] | None = getattr(self._local, "next_wake", None)
        if cached is None or cached[0] != version:
            (first,) = conn.execute(self._sql["limits_next"]).fetchone()
            cached = self._local.next_wake = (version, math.inf if first is None else first)
        return now >= cached[1]

    def set_progress(self, job_id: str, token: int, progress: Progress) -> bool:
        params = {"id": job_id, "token": token, "progress": progress_json(progress)}
        with self._db.write() as conn:
            done = conn.execute(self._sql["set_progress"], params).rowcount == 1
        if done:
            self._wake.changed.notify()
        return done

    # -- cluster-wide limits ----------------------------------------------------------------

    def set_limit(self, spec: LimitSpec, *, now: float) -> None:
        with self._db.write() as conn:
            limits_sql.set_limit(conn, self._sql, spec)
        self._notify(ready=True)

    def limits(self, *, now: float) -> list[LimitInfo]:
        with self._db.write() as conn:  # reading prunes what no longer counts
            return limits_sql.limits(limits_sql.Gate(conn, self._sql, now, 0.0))

    # -- waiting ---------------------------------------------------------------------------

    def wait_for_jobs(self, queues: Sequence[str], timeout: float) -> None:
        since = getattr(self._local, "since", None)
        self._local.since = None
        self._wake.wait(self._wake.ready, timeout, since)

    def wait_for_change(self, job_id: str, timeout: float) -> None:
        self._wake.wait(self._wake.changed, timeout, None)

    def wait_final(self, job_id: str, timeout: float | None) -> JobRecord | None:
        # The snapshot is taken before each read, so no change between read and wait is lost.
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            since = self._wake.snapshot(self._wake.changed)
            record = self.get(job_id)
            if record is None or record.state.is_final:
                return record
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return record
            self._wake.wait(self._wake.changed, 60.0 if remaining is None else remaining, since)

    def ping(self) -> bool:
        try:
            self._db.get().execute(self._sql["ping"]).fetchone()
        except sqlite3.Error:
            return False
        return True

    def close(self) -> None:
        self._db.close()


__all__ = ["SQLiteBackend"]
