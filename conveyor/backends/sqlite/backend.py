"""``sqlite:///path.db``: one file, several processes on one machine, no server.

Every operation is one statement or one ``BEGIN IMMEDIATE`` transaction, so SQLite's write
lock makes it atomic across threads and processes alike. The SQL lives in ``schema.sql`` and
``queries.sql`` beside this module. Idle waiters wake on an in-process signal, or within a
couple of milliseconds when another process commits (``store.Wakeups``).
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

from conveyor.backends.base import (
    Backend,
    DueResult,
    HeartbeatResult,
    RecoveredJob,
    ScheduleState,
    SweepResult,
    WorkerInfo,
    in_stall,
    note_heartbeat,
    worker_lost_error,
)
from conveyor.backends.sqlite import feed
from conveyor.backends.sqlite import limits as limits_sql
from conveyor.backends.sqlite.flows import Flows
from conveyor.backends.sqlite.inspection import EVENTS_KEPT, Inspection
from conveyor.backends.sqlite.ledger import Ledger
from conveyor.backends.sqlite.rows import (
    dumps,
    error_json,
    from_row,
    progress_json,
    schedule_from_row,
    to_row,
    worker_row,
)
from conveyor.backends.sqlite.store import (
    Connections,
    Wakeups,
    check_namespace,
    initialise,
    parse_url,
    queries,
)
from conveyor.errors import ConfigurationError
from conveyor.job import ACTIVE_STATES, Claim, JobRecord, Outcome, Progress, State
from conveyor.limits import LimitInfo, LimitSpec

#: workers not seen for this long are dropped from the registry by sweep
STALE_WORKER_SECONDS = 3600.0


class SQLiteBackend(Inspection, Backend):
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
        sent: workers notice the commit itself (``store.Wakeups`` watches data_version)."""
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

    def _flows_after(
        self,
        conn: sqlite3.Connection,
        items: Sequence[tuple[str, int, Outcome]],
        done: Sequence[bool],
        *,
        now: float,
    ) -> bool:
        """Decide the successors of the workflow jobs that this batch made final."""
        ended = [
            job_id
            for ok, (job_id, _, outcome) in zip(done, items, strict=True)
            if ok and outcome.state.is_final
        ]
        return bool(ended) and self._flows.finished(conn, ended, now=now)

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
        # Taken before reading, so that wait_for_jobs after an empty claim wakes for any
        # commit that the read could have missed.
        self._local.since = self._wake.snapshot(self._wake.ready)
        if limit <= 0 or not queues:
            return []
        # After an empty claim, look without the write lock first: idle workers polling an
        # empty queue then never queue up behind writers. A busy worker goes straight in.
        if getattr(self._local, "idle", False):
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
    ) -> list[Claim]:
        """The claim itself, inside the caller's write transaction."""
        t = self._store_time()  # under the write lock: once per transaction
        gate = limits_sql.Gate(conn, self._sql, t, lease_seconds)  # limits count by it too
        gate.unpark_due()
        rows = self._ready(conn, queues, limit, now)
        if any('"limits"' in row[3] for row in rows):
            ids = limits_sql.admit(gate, rows, limit, lambda n: self._ready(conn, queues, n, now))
        else:
            ids = [row[0] for row in rows]
        # A claim that parked a batch of held jobs without filling up: more may be ready
        # behind them, so the worker must not go to sleep (the signal wakes it at once).
        self._local.idle = not ids and not gate.parked
        if gate.parked and len(ids) < limit:
            self._wake.ready.notify()
        if not ids:
            return []
        params = {
            "ids": dumps(ids),
            "worker": worker_id,
            "started_at": t,
            "lease_expires_at": t + lease_seconds,
        }
        rows = conn.execute(self._sql["claim"], params).fetchall()
        order = {job_id: i for i, job_id in enumerate(ids)}
        records = sorted(map(from_row, rows), key=lambda r: order[r.id])
        self._ledger.claimed(conn, records)
        if gate.taken:
            gate.record({r.id: r.token for r in records})
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
        # One write transaction instead of two: half the commits (and the gate) per batch.
        self._local.since = self._wake.snapshot(self._wake.ready)
        with self._db.write() as conn:
            done = self._finish_batch(conn, items, now=now) if items else []
            self._ledger.finished(conn, _ok(items, done), now=now)
            flowed = bool(items) and self._flows_after(conn, items, done, now=now)
            woken = self._release_slots(conn, items, done)
            claims = (
                self._claim(conn, worker_id, queues, limit, lease_seconds, now)
                if limit > 0 and queues
                else []
            )
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
        """The jobs to claim, best first (id, priority, ready_at, meta): the top of each
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

    def set_progress(self, job_id: str, token: int, progress: Progress) -> bool:
        params = {"id": job_id, "token": token, "progress": progress_json(progress)}
        with self._db.write() as conn:
            done = conn.execute(self._sql["set_progress"], params).rowcount == 1
        if done:
            self._wake.changed.notify()
        return done

    def finish(self, job_id: str, token: int, outcome: Outcome, *, now: float) -> bool:
        return self.finish_many([(job_id, token, outcome)], now=now)[0]

    def finish_many(self, items: Sequence[tuple[str, int, Outcome]], *, now: float) -> list[bool]:
        with self._db.write() as conn:
            done = self._finish_batch(conn, items, now=now)
            self._ledger.finished(conn, _ok(items, done), now=now)
            flowed = self._flows_after(conn, items, done, now=now)
            woken = self._release_slots(conn, items, done)
        if any(done):
            self._notify_finished(items, done, flowed=flowed or woken)
        return done

    def _notify_finished(
        self, items: Sequence[tuple[str, int, Outcome]], done: Sequence[bool], *, flowed: bool
    ) -> None:
        """Wake those waiting on jobs; wake idle workers too when a retry made a job ready,
        a workflow step may have been queued, or a finish freed a limit that held jobs back
        (``flowed``)."""
        retried = any(
            ok and not o.state.is_final for ok, (_, _, o) in zip(done, items, strict=True)
        )
        self._notify(ready=retried or flowed)

    def _release_slots(
        self,
        conn: sqlite3.Connection,
        items: Sequence[tuple[str, int, Outcome]],
        done: Sequence[bool],
    ) -> bool:
        """The limit slots of the claims that just ended free at once."""
        ended = [job_id for ok, (job_id, _, _) in zip(done, items, strict=True) if ok]
        return bool(ended) and limits_sql.release(conn, self._sql, ended)

    def _finish_batch(
        self, conn: sqlite3.Connection, items: Sequence[tuple[str, int, Outcome]], *, now: float
    ) -> list[bool]:
        """Final outcomes in one executemany (the common case: a batch of successes); when
        one of them is fenced out, the batch is undone and each is tried on its own, so the
        caller learns exactly which were refused."""
        final = [item for item in items if item[2].state.is_final]
        if len(final) < 2 or len(final) != len(items):
            return [self._finish(conn, *item, now=now) for item in items]
        rows = [
            {
                "id": job_id,
                "token": token,
                "state": outcome.state.value,
                "error": error_json(outcome.error),
                "result": outcome.result,
                "now": now,
            }
            for job_id, token, outcome in final
        ]
        conn.execute("SAVEPOINT finish_batch")
        if conn.executemany(self._sql["finish_final"], rows).rowcount == len(rows):
            conn.execute("RELEASE finish_batch")
            return [True] * len(rows)
        conn.execute("ROLLBACK TO finish_batch")
        conn.execute("RELEASE finish_batch")
        return [self._finish(conn, *item, now=now) for item in items]

    def _finish(
        self, conn: sqlite3.Connection, job_id: str, token: int, outcome: Outcome, *, now: float
    ) -> bool:
        params: dict[str, Any] = {
            "id": job_id,
            "token": token,
            "state": outcome.state.value,
            "error": error_json(outcome.error),
        }
        if outcome.state.is_final:
            params.update(result=outcome.result, now=now)
            return conn.execute(self._sql["finish_final"], params).rowcount == 1
        params["ready_at"] = now if outcome.ready_at is None else outcome.ready_at
        params["failure"] = int(outcome.counts_failure)
        return conn.execute(self._sql["finish_retry"], params).rowcount == 1

    def release(self, job_id: str, token: int, *, started: bool, now: float) -> bool:
        params = {"id": job_id, "token": token, "now": now, "take_back": int(not started)}
        with self._db.write() as conn:
            done = conn.execute(self._sql["release"], params).rowcount == 1
            if done:
                feed.write(conn, self._sql, [job_id])
                self._flows.finished(conn, [job_id], now=now)
                limits_sql.release(conn, self._sql, [job_id])
        if done:
            self._notify(ready=True)
        return done

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

    # -- cluster-wide limits ----------------------------------------------------------------

    def set_limit(self, spec: LimitSpec, *, now: float) -> None:
        with self._db.write() as conn:
            limits_sql.set_limit(conn, self._sql, spec)
        self._notify(ready=True)

    def limits(self, *, now: float) -> list[LimitInfo]:
        with self._db.write() as conn:  # reading prunes what no longer counts
            return limits_sql.limits(limits_sql.Gate(conn, self._sql, now, 0.0))

    # -- periodic jobs ---------------------------------------------------------------------

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


def _ok(
    items: Sequence[tuple[str, int, Outcome]], done: Sequence[bool]
) -> list[tuple[str, int, Outcome]]:
    """The items that were done."""
    return [item for item, ok in zip(items, done, strict=True) if ok]


__all__ = ["SQLiteBackend"]
