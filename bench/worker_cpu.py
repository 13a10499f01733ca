"""``python -m bench.worker_cpu``: where a like-for-like job's time goes, per process.

On a machine of two cores the worker process is the bottleneck once the task body does I/O:
its CPU time per job is about its wall time per job. This reads, for one system of
``bench.like`` (its worker: 1 process, 8 threads) and for the yardstick (the same body on a
bare ``ThreadPoolExecutor(8)`` in this process), the CPU time per job in user and system
mode, and the context switches per job (voluntary: a thread went to sleep on a lock, a queue
or a socket; involuntary: it was preempted), summed over the process's threads. It also reads
the CPU time of the queue's redis-server and the body's. Thread handoffs are what this
machine charges most for (a wake-up of a sleeping thread costs tens of microseconds of
system time), so the context switches per job are the figure to watch beside the CPU.

    python -m bench.worker_cpu [--target conveyor/redis] [--body roundtrip] [--jobs 20000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from bench import bodies, like
from bench.procs import TICK, Body, Workers, stat_fields
from bench.redis_server import RedisServer


@dataclass(frozen=True)
class Usage:
    """A process's CPU seconds (user, system) and context switches (voluntary, not)."""

    user: float
    system: float
    voluntary: int
    involuntary: int

    def __sub__(self, other: Usage) -> Usage:
        return Usage(
            self.user - other.user,
            self.system - other.system,
            self.voluntary - other.voluntary,
            self.involuntary - other.involuntary,
        )

    def per_job(self, n: int) -> str:
        return (
            f"user {1e6 * self.user / n:7.1f} µs  sys {1e6 * self.system / n:7.1f} µs  "
            f"switches {self.voluntary / n:5.2f} + {self.involuntary / n:5.2f} forced"
        )


def usage(pid: int) -> Usage:
    """Of the whole process: CPU from /proc/<pid>/stat, switches summed over its threads."""
    fields = stat_fields(pid)
    voluntary = involuntary = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        voluntary += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        involuntary += int(line.split()[1])
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
    return Usage(int(fields[11]) / TICK, int(fields[12]) / TICK, voluntary, involuntary)


def yardstick(n: int, body: Body) -> tuple[float, Usage]:
    """The body on a bare ThreadPoolExecutor(8) in this process: jobs/s and usage."""
    bodies.configure(*body)
    try:
        with ThreadPoolExecutor(like.THREADS) as pool:
            list(pool.map(lambda _: bodies.work(), range(200)))  # warm the connections
            before, start = usage(os.getpid()), time.perf_counter()
            for future in [pool.submit(bodies.work) for _ in range(n)]:
                future.result()
            elapsed, after = time.perf_counter() - start, usage(os.getpid())
    finally:
        bodies.configure(None, None)
    return n / elapsed, after - before


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worker_cpu", description=__doc__)
    parser.add_argument("--target", default="conveyor/redis", help="a bench.like target")
    parser.add_argument("--body", default="roundtrip", choices=bodies.BODIES)
    parser.add_argument("--jobs", type=int, default=20_000)
    args = parser.parse_args(argv)
    rows = like.chosen([args.target], [like.LIKE])
    if not rows:
        raise SystemExit(f"no like-for-like target named {args.target!r}")
    with ExitStack() as stack:
        queue_server = stack.enter_context(RedisServer())
        body_server = stack.enter_context(RedisServer())
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="conveyor-cpu-")))
        targets = like.Targets(rows[:1])
        targets.serve(queue_server.url, "")
        target = targets.by_name[rows[0].target]
        body: Body = (args.body, body_server.url)
        rate, spent = yardstick(args.jobs, body)
        print(f"{'yardstick':24} {rate:8,.0f} jobs/s   process {spent.per_job(args.jobs)}")
        pids = {"queue server": queue_server.pid, "body server": body_server.pid}
        marks: dict[str, dict[str, Usage]] = {}

        def go(workers: Workers) -> None:
            pids["worker"] = workers.procs[0].pid
            marks["before"] = {name: usage(pid) for name, pid in pids.items()}

        def done(workers: Workers) -> None:
            marks["after"] = {name: usage(pid) for name, pid in pids.items()}

        rate = like.throughput(target, args.jobs, body, workdir, on_go=go, on_done=done)
        print(f"{target.name:24} {rate:8,.0f} jobs/s")
        for name in ("worker", "queue server", "body server"):
            if target.needs_redis or name != "queue server":
                spent = marks["after"][name] - marks["before"][name]
                print(f"  {name:22} {spent.per_job(args.jobs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
