"""``python -m bench.worker_rss``: the resident memory of one conveyor worker process on Redis
with 8 threads (issue 15: at most 35 MB), after a run of each task body of ``bench.like``
(a no-op, and one pipelined round trip to a Redis of its own with redis-py).

The worker is ``bench.like``'s: ``python -m bench.worker``, started as ``conveyor worker``
starts one (``bench/systems/conveyor.py``); its VmRSS is read once the last job is done.
Medians of the repetitions, with min–max, in MiB.

    python -m bench.worker_rss [--jobs 20000] [--reps 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from bench import bodies, like
from bench.procs import Workers
from bench.redis_server import RedisServer


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worker_rss", description=__doc__)
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per run")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions")
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        queue_server = stack.enter_context(RedisServer())
        body_server = stack.enter_context(RedisServer())
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="conveyor-rss-")))
        targets = like.Targets(like.chosen(["conveyor/redis"], [like.LIKE]))
        targets.serve(queue_server.url, "")
        target = targets.by_name["conveyor/redis"]
        seen: dict[str, list[float]] = {name: [] for name in bodies.BODIES}
        for rep in range(1, args.reps + 1):
            for name, rss in seen.items():

                def read(workers: Workers, rss: list[float] = rss) -> None:
                    rss.append(workers.procs[0].rss_mb())

                like.throughput(target, args.jobs, (name, body_server.url), workdir, on_done=read)
                print(f"rep {rep} {name:9} worker RSS {rss[-1]:.2f} MiB", flush=True)
    for name, rss in seen.items():
        print(
            f"{name:9} worker RSS {statistics.median(rss):.2f} MiB "
            f"({min(rss):.2f}–{max(rss):.2f}), {args.jobs:,} jobs, 1 process, "
            f"{like.THREADS} threads, Redis"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
