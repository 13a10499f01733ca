"""End-to-end throughput of the process pool on SQLite, and the memory of its children.

    .venv/bin/python bench/process_pool.py [--jobs 20000] [--children 2] [--db PATH]

Enqueues ``--jobs`` no-op jobs (one ``enqueue_many``), starts one worker with a process pool
of ``--children`` children on ``sqlite:///...?synchronous=normal``, and times from the moment
the children are ready until the last job is finished in the database. Prints jobs/s and the
RSS of each child after its last job. ``--pool thread`` runs the same jobs in a thread pool,
for comparison. ``BENCH_URL`` overrides the database.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace
from typing import Any

import conveyor
from conveyor.worker.execute import JobExecutor
from conveyor.worker.pools.base import Pool
from conveyor.worker.worker import Worker, WorkerSettings, default_pool

# The children import this module and find ``app`` in it; they never open its backend.
DEFAULT_DB = os.path.join(tempfile.gettempdir(), f"conveyor-bench-{os.getpid()}.db")
app = conveyor.App(os.environ.setdefault("BENCH_URL", f"sqlite:///{DEFAULT_DB}?synchronous=normal"))


@app.task(name="bench.noop")
def noop() -> None:
    return None


def make_worker(pool: str, children: int, prefetch: int) -> Worker:
    if not prefetch:
        return app.worker(concurrency=children, pool=pool, schedule=False)
    # The worker claims up to its concurrency; a larger one over a pool of ``children``
    # keeps the next jobs waiting in the pool while the children run.
    settings = WorkerSettings(concurrency=children + prefetch, pool=pool, schedule=False)

    def pool_factory(settings: WorkerSettings, executor: JobExecutor, complete: Any) -> Pool:
        return default_pool(replace(settings, concurrency=children), executor, complete)

    return Worker(app.backend, app.registry, app.serializer, settings, pool_factory=pool_factory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--children", type=int, default=2)
    parser.add_argument("--pool", default="process", choices=["process", "thread", "async"])
    parser.add_argument(
        "--prefetch",
        type=int,
        default=0,
        help="claim up to this many jobs beyond the children (an experiment: the worker has "
        "no such setting yet)",
    )
    args = parser.parse_args()
    try:
        started = time.perf_counter()
        app.enqueue_many(noop.s() for _ in range(args.jobs))
        enqueued = time.perf_counter() - started
        worker = make_worker(args.pool, args.children, args.prefetch)
        worker.start()
        started = time.perf_counter()
        while worker.processed < args.jobs:
            time.sleep(0.005)
        elapsed = time.perf_counter() - started
        children: list[tuple[int, int]] = getattr(worker.pool, "children", list)()
        worker.stop()
        app.close()
    finally:
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(DEFAULT_DB + suffix):
                os.unlink(DEFAULT_DB + suffix)
    print(f"enqueue_many: {args.jobs / enqueued:,.0f} jobs/s")
    print(
        f"{args.pool} pool of {args.children}, prefetch {args.prefetch}, SQLite "
        f"synchronous=normal: {args.jobs} no-op jobs in {elapsed:.2f} s = "
        f"{args.jobs / elapsed:,.0f} jobs/s"
    )
    for pid, rss in children:
        print(f"child {pid}: RSS {rss / 2**20:.1f} MB")


if __name__ == "__main__":
    main()
