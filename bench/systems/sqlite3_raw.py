"""The yardstick: what SQLite itself costs, with conveyor's jobs schema and row shape and no
conveyor code. ``enqueue_one`` is one ``BEGIN IMMEDIATE; INSERT; COMMIT``, the floor under
``delay()``; ``enqueue_bulk`` one transaction of ``executemany`` per batch, the floor under
``enqueue_many``. It runs no jobs. ``yardstick`` adds the insert+delete cycle: per job one
transaction that inserts its row and one that deletes it (the floor under enqueue + finish,
two commits per job)."""

from __future__ import annotations

import itertools
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.core import Target, Unsupported
from conveyor.backends.sqlite.rows import COLUMNS, PLACEHOLDERS
from conveyor.backends.sqlite.store import schema_sql

NAMESPACE = "conveyor"


class RawSQLite(Target):
    system = "sqlite3"
    runs_jobs = False

    def __init__(self, synchronous: str) -> None:
        self.synchronous = synchronous
        self.store = f"raw-{synchronous}"
        self.config = f"sqlite3, WAL, synchronous {synchronous.upper()}, conveyor's schema"
        self._conn: sqlite3.Connection | None = None
        self._ids: Iterator[int] = itertools.count()
        self._insert = f"INSERT INTO {NAMESPACE}_jobs ({COLUMNS}) VALUES ({PLACEHOLDERS})"

    @property
    def version(self) -> str:
        return sqlite3.sqlite_version

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("call fresh() first")
        return self._conn

    def fresh(self, workdir: Path) -> None:
        self.close()
        path = workdir / f"{self.store}-{os.urandom(4).hex()}.db"
        conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
        conn.executescript(schema_sql(NAMESPACE))
        self._conn = conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _row(self) -> tuple[Any, ...]:
        now = time.time()
        job_id = f"{time.time_ns():020d}{next(self._ids):012d}"
        return (job_id, "bench.noop", b"[[],{}]", "default", 0, "queued", None, None, 0, 0, 0,
                now, now, None, None, None, None, 86400.0, None, None, None, None, 0, None, 0,
                "{}")  # fmt: skip

    def enqueue_one(self) -> None:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(self._insert, self._row())
        conn.execute("COMMIT")

    def enqueue_bulk(self, n: int, batch: int) -> None:
        conn = self.conn
        for start in range(0, n, batch):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(self._insert, (self._row() for _ in range(min(batch, n - start))))
            conn.execute("COMMIT")

    def yardstick(self, workdir: Path, scale: float) -> dict[str, float]:
        n = max(100, int(10_000 * scale))
        self.fresh(workdir)
        conn = self.conn
        delete = f"DELETE FROM {NAMESPACE}_jobs WHERE id = ?"
        try:
            start = time.perf_counter()
            for _ in range(n):
                row = self._row()
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(self._insert, row)
                conn.execute("COMMIT")
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(delete, (row[0],))
                conn.execute("COMMIT")
            elapsed = time.perf_counter() - start
        finally:
            self.close()
        return {"cycle_per_s": n / elapsed}

    def pending(self) -> int:
        raise Unsupported("the yardstick runs no jobs")

    def enqueue_stamp(self) -> object:
        raise Unsupported("the yardstick runs no jobs")

    def stamp_results(self, handles: list[object], timeout: float) -> list[float]:
        raise Unsupported("the yardstick runs no jobs")

    def worker_spec(self) -> dict[str, Any]:
        raise Unsupported("the yardstick runs no jobs")


def targets() -> list[Target]:
    return [RawSQLite("full"), RawSQLite("normal")]


def prepare_worker(spec: dict[str, Any], concurrency: int) -> Callable[[], None]:
    raise Unsupported("the yardstick runs no jobs")
