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

import conveyor

# The children import this module and find ``app`` in it; they never open its backend.
DEFAULT_DB = os.path.join(tempfile.gettempdir(), f"conveyor-bench-{os.getpid()}.db")
app = conveyor.App(os.environ.setdefault("BENCH_URL", f"sqlite:///{DEFAULT_DB}?synchronous=normal"))


@app.task(name="bench.noop")
def noop() -> None:
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--children", type=int, default=2)
    parser.add_argument("--pool", default="process", choices=["process", "thread", "async"])
    args = parser.parse_args()
    try:
        started = time.perf_counter()
        app.enqueue_many(noop.s() for _ in range(args.jobs))
        enqueued = time.perf_counter() - started
        worker = app.worker(concurrency=args.children, pool=args.pool, schedule=False)
        worker.start()
        started = time.perf_counter()
        while worker.processed < args.jobs:
            time.sleep(0.005)
        elapsed = time.perf_counter() - started
        children = getattr(worker.pool, "children", list)()
        worker.stop()
        app.close()
    finally:
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(DEFAULT_DB + suffix):
                os.unlink(DEFAULT_DB + suffix)
    print(f"enqueue_many: {args.jobs / enqueued:,.0f} jobs/s")
    print(
        f"{args.pool} pool of {args.children}, SQLite synchronous=normal: "
        f"{args.jobs} no-op jobs in {elapsed:.2f} s = {args.jobs / elapsed:,.0f} jobs/s"
    )
    for pid, rss in children:
        print(f"child {pid}: RSS {rss / 2**20:.1f} MB")


if __name__ == "__main__":
    main()
