"""What the event feed and the counters cost the hot path: end-to-end jobs/s, one process.

    python -m bench.feed_cost sqlite|redis://HOST:PORT/0 [N] [ROUNDS]

Enqueues N no-op jobs with enqueue_many, then drains them with an embedded thread-pool worker
(concurrency 8); prints both rates and the CPU time per drained job, best of ROUNDS (the
machine is shared). Run it with PYTHONPATH pointing at an older checkout of conveyor for the
"before" number: it uses only the public API.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
import uuid

import conveyor


def server_cpu(url: str) -> float:
    """CPU seconds the Redis server has used (0 for SQLite: it runs in this process)."""
    if not url.startswith("redis"):
        return 0.0
    import redis

    info = redis.Redis.from_url(url).info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def one_round(url: str, n: int) -> tuple[float, float, float, float]:
    if url == "sqlite":
        url = f"sqlite:///{tempfile.mkdtemp()}/feed.db"
    app = conveyor.App(url, namespace=f"feed{uuid.uuid4().hex[:8]}")

    @app.task(name="noop")
    def noop() -> None:
        return None

    try:
        server = server_cpu(url)
        began = time.perf_counter()
        jobs = app.enqueue_many(noop.s() for _ in range(n))
        enqueued = time.perf_counter() - began
        began, cpu = time.perf_counter(), time.process_time()
        with app.worker(concurrency=8, schedule=False):
            jobs[-1].result(timeout=600)
            while any(job.state is not conveyor.State.SUCCEEDED for job in jobs[-50:]):
                time.sleep(0.005)
        drained = time.perf_counter() - began
        cpu_us = (time.process_time() - cpu) / n * 1e6
        return n / enqueued, n / drained, cpu_us, (server_cpu(url) - server) / n * 1e6
    finally:
        app.close()


def main() -> None:
    logging.disable(logging.WARNING)  # the bench server persists nothing, on purpose
    url = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    results = [one_round(url, n) for _ in range(rounds)]
    enq = max(r[0] for r in results)
    run = max(r[1] for r in results)
    cpu = min(r[2] for r in results)
    server = min(r[3] for r in results)
    print(
        f"{conveyor.__file__}: {url.split(':')[0]} N={n}: enqueue_many {enq:,.0f} jobs/s, "
        f"drain {run:,.0f} jobs/s, CPU per job: {cpu:.0f} µs drain in this process, "
        f"{server:.1f} µs enqueue+drain in the Redis server (best of {rounds})"
    )


if __name__ == "__main__":
    main()
