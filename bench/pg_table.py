"""``python -m bench.pg_table [--jobs N] [--backlog N]``: how big the jobs table grows on
PostgreSQL (numbers for docs/postgres.md), on the bench's own throwaway server.

1. Retained (``--retained N``, default a million): N finished jobs, as ``result_ttl`` keeps
   them (a day by default), written by one INSERT ... SELECT with the values a finished no-op
   job has: the table's size per job, indexes included.
2. Churn (``--churn N``): N jobs pass through a backlog of ``--backlog`` queued jobs, each
   claimed, finished and purged at once, with the table's settings from schema.sql and again
   with PostgreSQL's defaults (``ALTER TABLE ... RESET``): the size the table settles at while
   autovacuum runs. These jobs go through the backend's own statements (enqueue_many,
   finish_and_claim, sweep) in batches of 1,000, without worker processes: this measures the
   table, not the workers.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import psycopg

from bench.postgres_server import PostgresServer
from conveyor.backends.postgres import PostgresBackend
from conveyor.job import IdGenerator, JobRecord, Outcome

BATCH = 1000
RESET = (
    "fillfactor, autovacuum_vacuum_scale_factor, autovacuum_vacuum_insert_scale_factor, "
    "autovacuum_analyze_scale_factor, autovacuum_vacuum_cost_delay"
)


def records(ids: IdGenerator, n: int, *, result_ttl: float) -> list[JobRecord]:
    now = time.time()
    return [
        JobRecord(ids(), "bench.noop", b"[[],{}]", created_at=now, ready_at=now,
                  result_ttl=result_ttl)
        for _ in range(n)
    ]  # fmt: skip


def run_all(backend: PostgresBackend, limit: int) -> int:
    """Claim and finish every queued job, BATCH at a time; how many ran."""
    done: list[tuple[str, int, Outcome]] = []
    ran = 0
    while True:
        _, claims = backend.finish_and_claim(
            done, "bench", ["default"], min(BATCH, limit - ran), lease_seconds=60, now=time.time()
        )
        if not claims:
            return ran
        ran += len(claims)
        done = [(c.record.id, c.token, Outcome.succeeded(b"null")) for c in claims]


def sizes(url: str, ns: str) -> dict[str, Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pg_relation_size(c.oid), pg_indexes_size(c.oid),"
            " pg_total_relation_size(c.oid), c.reltuples::bigint, s.n_dead_tup, s.autovacuum_count"
            " FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid"
            " WHERE c.relname = %s",
            [f"{ns}_jobs"],
        ).fetchone()
    assert row is not None
    heap, indexes, total, live, dead, autovacuums = row
    return {"heap_mb": heap / 2**20, "indexes_mb": indexes / 2**20, "total_mb": total / 2**20,
            "live": live, "dead": dead, "autovacuums": autovacuums}  # fmt: skip


def show(label: str, jobs: int, found: dict[str, Any], started: float) -> None:
    print(
        f"{label:<28} {jobs:>9,} jobs  table {found['heap_mb']:8.1f} MB  indexes "
        f"{found['indexes_mb']:7.1f} MB  total {found['total_mb']:8.1f} MB  live "
        f"{found['live']:>9,}  dead {found['dead']:>9,}  autovacuums {found['autovacuums']}"
        f"  ({time.monotonic() - started:.0f} s)",
        flush=True,
    )


FINISHED = """
INSERT INTO retained_jobs
SELECT lpad(to_hex(n), 16, '0') || 'a0b1c2d3e4', 'bench.noop', '[[],{}]'::bytea, 'default', 0,
       'succeeded', NULL, NULL, 1, 0, 0, t, t, NULL, t + 0.001, t + 0.002, t + 86400.002,
       86400.0, 'null'::bytea, NULL, NULL, 'bench-worker-1', 1, NULL, false, '{}'::jsonb
FROM generate_series(1, %(n)s) AS n, LATERAL (SELECT 1795000000.0 + n / 1000.0 AS t) AS times
"""


def retained(url: str, n: int) -> None:
    PostgresBackend(url, namespace="retained").close()  # the table, as the backend makes it
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(FINISHED, {"n": n})
        conn.execute("VACUUM ANALYZE retained_jobs")
    found = sizes(url, "retained")
    show("retained, finished", n, found, started)
    print(f"  {found['total_mb'] * 2**20 / n:.0f} bytes per finished job, indexes included")


def churn(url: str, n: int, backlog: int, *, defaults: bool) -> None:
    ns = "churn_defaults" if defaults else "churn_conveyor"
    backend = PostgresBackend(url, namespace=ns)
    if defaults:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"ALTER TABLE {ns}_jobs RESET ({RESET})")
    ids, started, passed = IdGenerator(), time.monotonic(), 0
    label = "churn, PostgreSQL defaults" if defaults else "churn, conveyor's settings"
    for _ in range(0, backlog, BATCH):
        backend.enqueue(records(ids, BATCH, result_ttl=0.0))
    report_every = max(n // 10, BATCH)
    while passed < n:
        passed += run_all(backend, BATCH * 10)
        for _ in range(10):
            backend.enqueue(records(ids, BATCH, result_ttl=0.0))
        backend.sweep(now=time.time() + 1)
        if passed % report_every < BATCH * 10:
            show(label, passed, sizes(url, ns), started)
    backend.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pg_table", description=__doc__)
    parser.add_argument("--retained", type=int, default=1_000_000)
    parser.add_argument("--churn", type=int, default=200_000)
    parser.add_argument("--backlog", type=int, default=10_000)
    args = parser.parse_args(argv)
    with PostgresServer() as server:
        print(f"PostgreSQL {server.version} on {server.url} (fsync off)", flush=True)
        retained(server.url, args.retained)
        churn(server.url, args.churn, args.backlog, defaults=False)
        churn(server.url, args.churn, args.backlog, defaults=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
