"""How long a progress update takes to reach an async reader of the event feed (what an SSE
stream of the web app awaits): ``app.aread_events`` woken by the shared follower thread.

    python -m bench.feed_latency sqlite|redis://HOST:PORT/0 [UPDATES]

A worker thread runs one job that reports progress UPDATES times, 20 ms apart, each stamped
with time.time(); the reader prints the delay percentiles of the progress events it got.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import sys
import tempfile
import time
import uuid

import conveyor


async def follow(app: conveyor.App, job_id: str, updates: int) -> list[float]:
    delays: list[float] = []
    _, position = await app.aread_events()
    while len(delays) < updates:
        events, position = await app.aread_events(position, job_id=job_id, timeout=5.0)
        now = time.time()
        delays += [now - e.progress.data["t"] for e in events if e.progress is not None]
    return delays


def main() -> None:
    logging.disable(logging.WARNING)
    url = sys.argv[1]
    updates = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    if url == "sqlite":
        url = f"sqlite:///{tempfile.mkdtemp()}/latency.db"
    app = conveyor.App(url, namespace=f"lat{uuid.uuid4().hex[:8]}")

    @app.task(name="steps")
    def steps(n: int) -> None:
        for i in range(n):
            time.sleep(0.02)
            conveyor.progress(100 * (i + 1) / n, t=time.time())

    async def run() -> list[float]:
        job = steps.delay(updates)
        reader = asyncio.create_task(follow(app, job.id, updates))
        await asyncio.sleep(0.2)  # the follower is up before the job starts
        with app.worker(concurrency=1, schedule=False):
            return await asyncio.wait_for(reader, 60 + updates * 0.1)

    delays = sorted(asyncio.run(run()))
    app.close()
    ms = [d * 1000 for d in delays]
    print(
        f"{url.split(':')[0]}: {len(ms)} progress events, delay p50 {statistics.median(ms):.1f} "
        f"ms, p99 {ms[int(len(ms) * 0.99) - 1]:.1f} ms, max {ms[-1]:.1f} ms"
    )


if __name__ == "__main__":
    main()
