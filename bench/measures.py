"""Each measurement, written once for every target. A measurement starts from a fresh store
and returns named numbers; the runner repeats and summarises them."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.core import Target, Unsupported
from bench.procs import Workers

#: how often the end of a throughput run is looked for (bounds its error: 50 ms in ~4 s)
POLL_SECONDS = 0.05
#: how often the first job taken is looked for (the start of the clock)
FIRST_POLL_SECONDS = 0.001
#: a run that has not finished by then is broken, not slow
RUN_TIMEOUT_SECONDS = 600.0


@dataclass(frozen=True, slots=True)
class Sizes:
    repetitions: int = 3
    delay_jobs: int = 10_000
    bulk_jobs: int = 20_000
    bulk_batch: int = 1000
    throughput_jobs: int = 20_000
    processes: tuple[int, ...] = (1, 2)
    concurrencies: tuple[int, ...] | None = None  # None: the target's own choices
    pickup_jobs: int = 150
    pickup_spacing_seconds: float = 0.02
    idle_seconds: float = 0.5  # after go, before the first pickup job: the worker is idle
    yardstick_scale: float = 1.0


FULL = Sizes()
QUICK = Sizes(
    repetitions=1,
    delay_jobs=300,
    bulk_jobs=3000,
    throughput_jobs=600,
    concurrencies=(8,),
    pickup_jobs=15,
    pickup_spacing_seconds=0.01,
    idle_seconds=0.2,
    yardstick_scale=0.02,
)


@dataclass(frozen=True, slots=True)
class Context:
    sizes: Sizes
    workdir: Path  # stores and worker logs


Samples = dict[str, float]
Measure = Callable[[Target, Context], Samples]


def measure_delay(target: Target, ctx: Context) -> Samples:
    """Single enqueues in a loop, one thread: jobs per second."""
    if not target.measures_enqueue:
        return {}
    n = ctx.sizes.delay_jobs
    target.fresh(ctx.workdir)
    try:
        start = time.perf_counter()
        for _ in range(n):
            target.enqueue_one()
        elapsed = time.perf_counter() - start
    finally:
        target.close()
    return {"delay_per_s": n / elapsed}


def measure_enqueue_many(target: Target, ctx: Context) -> Samples:
    """The bulk call, ``bulk_batch`` jobs per call: jobs per second."""
    if not target.measures_enqueue:
        return {}
    n = ctx.sizes.bulk_jobs
    target.fresh(ctx.workdir)
    try:
        start = time.perf_counter()
        try:
            target.enqueue_bulk(n, ctx.sizes.bulk_batch)
        except Unsupported:
            return {}
        elapsed = time.perf_counter() - start
    finally:
        target.close()
    return {"enqueue_many_per_s": n / elapsed}


def _throughput(target: Target, ctx: Context, processes: int, concurrency: int) -> Samples:
    """Pre-enqueue N no-op jobs, release the prepared workers, time from the first job taken
    until none is pending (a peer's start-up after ``go`` is not job time; it is reported
    apart as ``startup``)."""
    n = min(ctx.sizes.throughput_jobs, target.throughput_jobs or ctx.sizes.throughput_jobs)
    target.fresh(ctx.workdir)
    try:
        try:
            target.enqueue_bulk(n, ctx.sizes.bulk_batch)
        except Unsupported:
            for _ in range(n):
                target.enqueue_one()
        spec = target.worker_spec()
        with Workers(
            target.system,
            spec,
            processes=processes,
            concurrency=concurrency,
            logdir=ctx.workdir,
        ) as workers:
            go = time.perf_counter()
            workers.go()
            start = _wait(target, workers, go, lambda left: left < n, FIRST_POLL_SECONDS)
            _wait(target, workers, go, lambda left: left == 0, POLL_SECONDS)
            elapsed = time.perf_counter() - start
            rss = [proc.rss_mb() for proc in workers.procs]
        target.check_done(n)
    finally:
        target.close()
    key = f"{processes}p_c{concurrency}"
    return {
        f"e2e_{key}_per_s": n / elapsed,
        f"rss_{key}_mb": max(rss),
        f"startup_{key}_s": start - go,
    }


def _wait(
    target: Target, workers: Workers, go: float, done: Callable[[int], bool], poll: float
) -> float:
    """Poll ``target.pending()`` until ``done(pending)``; the time it was seen so."""
    while True:
        seen = time.perf_counter()
        if done(target.pending()):
            return seen
        if seen - go > RUN_TIMEOUT_SECONDS:
            raise RuntimeError(f"{target.name}: jobs not done in time")
        workers.check_alive()
        time.sleep(poll)


def measure_throughput(target: Target, ctx: Context) -> Samples:
    return _throughput_for(target, ctx, ctx.sizes.processes)


def measure_rss(target: Target, ctx: Context) -> Samples:
    return _throughput_for(target, ctx, (1,))


def _throughput_for(target: Target, ctx: Context, processes: tuple[int, ...]) -> Samples:
    out: Samples = {}
    if not target.runs_jobs:
        return out
    for procs in processes:
        for concurrency in ctx.sizes.concurrencies or target.concurrencies:
            out.update(_throughput(target, ctx, procs, concurrency))
    return out


def _latencies(target: Target, ctx: Context) -> list[float]:
    """Stamp jobs spaced apart; each latency is its start time minus when delay() returned."""
    returned: list[float] = []
    handles: list[object] = []
    time.sleep(ctx.sizes.idle_seconds)
    for _ in range(ctx.sizes.pickup_jobs):
        handles.append(target.enqueue_stamp())
        returned.append(time.time())
        time.sleep(ctx.sizes.pickup_spacing_seconds)
    started = target.stamp_results(handles, timeout=60.0)
    return [(s - r) * 1000 for s, r in zip(started, returned, strict=True)]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def _pickup_samples(prefix: str, latencies: list[float]) -> Samples:
    return {
        f"{prefix}_p50_ms": percentile(latencies, 50),
        f"{prefix}_p99_ms": percentile(latencies, 99),
    }


def measure_pickup(target: Target, ctx: Context) -> Samples:
    """An idle worker in another process."""
    if not target.runs_jobs:
        return {}
    target.fresh(ctx.workdir)
    try:
        with Workers(
            target.system,
            target.worker_spec(),
            processes=1,
            concurrency=target.pickup_concurrency,
            logdir=ctx.workdir,
        ) as workers:
            workers.go()
            latencies = _latencies(target, ctx)
    finally:
        target.close()
    return _pickup_samples("pickup", latencies)


def measure_embedded(target: Target, ctx: Context) -> Samples:
    """An idle worker in threads of the enqueuing process."""
    if not target.runs_jobs:
        return {}
    target.fresh(ctx.workdir)
    try:
        worker = target.embedded_worker(target.pickup_concurrency)
        if worker is None:
            return {}
        with worker:
            latencies = _latencies(target, ctx)
    finally:
        target.close()
    return _pickup_samples("embedded", latencies)


def measure_yardstick(target: Target, ctx: Context) -> Samples:
    """The physical limits a yardstick target measures beyond the common measurements."""
    return target.yardstick(ctx.workdir, ctx.sizes.yardstick_scale)


#: name for --only -> measurement, in the order a full run takes them
MEASURES: dict[str, Measure] = {
    "delay": measure_delay,
    "enqueue_many": measure_enqueue_many,
    "throughput": measure_throughput,
    "rss": measure_rss,
    "pickup": measure_pickup,
    "embedded": measure_embedded,
    "yardstick": measure_yardstick,
}
#: a full run skips these: another measurement covers them
COVERED = {"rss": "throughput"}
