"""The fetcher's own connection for its claims, kept out of the pool.

An idle worker's pickup is the listener's wake-up, then one claim: its round trip is most of
the pickup. On a pooled connection the claim statement was planned afresh on every call
(about half of its server time): PostgreSQL's generic plan for it guesses ``LIMIT n`` as a
tenth of the queued jobs, so its estimate always loses to the custom plan's, although both
plans have the same shape (the ordered index range scans of ``queries.sql``'s claim, one
primary-key probe per picked id; checked with EXPLAIN on 200,000 jobs). This connection
runs only the claim, so it can keep the generic plan (``plan_cache_mode``), prepared at the
first call, and it saves the pool's checkout and return.

Behind PgBouncer in transaction mode (``prepared=off``) it sets nothing: a session setting
would leak into other clients' server connection, and nothing is prepared there anyway.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg

from conveyor.backends.postgres.store import BoundedConnection, Database, NoReply, is_disconnect
from conveyor.errors import BackendUnavailable

T = TypeVar("T")


class HeldConnection:
    """One connection for one kind of statement, used by one thread at a time: a caller that
    finds it busy (another thread claiming) takes a pooled connection, as one does after the
    held connection was lost (the pool's retries then apply)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._conn: BoundedConnection | None = None
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def run(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        if self._pid != os.getpid():  # a forked child: the parent's socket is not ours
            self._pid, self._conn, self._lock = os.getpid(), None, threading.Lock()
        if not self._lock.acquire(blocking=False):
            return self._db.run(fn)
        try:
            conn = self._conn
            if conn is None or conn.closed:
                conn = self._conn = self._connect()
                if conn is None:  # refused at once (a restart): the pool's retries wait it out
                    return self._db.run(fn)
            try:
                return fn(conn)
            except (psycopg.OperationalError, psycopg.errors.IdleInTransactionSessionTimeout) as e:
                if not is_disconnect(e, conn):
                    raise
                self._drop()
                if isinstance(e, NoReply):  # the bound is spent: no second wait as long
                    raise BackendUnavailable(str(e)) from e
                return self._db.run(fn)
        finally:
            self._lock.release()

    def _connect(self) -> BoundedConnection | None:
        prepared = self._db.options.prepared
        started = time.monotonic()
        try:
            conn = self._db.connect(prepare_threshold=0 if prepared else None)
            if prepared:
                conn.execute("SET plan_cache_mode = force_generic_plan")
        except psycopg.OperationalError as exc:
            if time.monotonic() - started < 1.0:
                return None
            # a frozen or cut-off server: a wait as long as the bound allows is spent
            raise BackendUnavailable(f"PostgreSQL did not answer ({exc})") from exc
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def reset(self) -> None:
        """Connect again at the next call (with the database's new options). A claim in
        flight is waited for only briefly (closing a backend must not wait out a frozen
        server): past that its connection is only forgotten, and closed when collected."""
        if self._pid != os.getpid():  # a forked child: the parent's socket is not ours
            self._conn = None
            return
        if not self._lock.acquire(timeout=5.0):
            self._conn = None
            return
        try:
            self._drop()
        finally:
            self._lock.release()
