"""``python -m bench.like``: every system at the same concurrency and pool kind, the same task
body, and the yardstick of that body with no queue at all.

Each system runs one worker process with 8 threads (RQ, which has no threads, runs its one
job at a time; Celery's prefork pool runs 8 processes; both are marked so). Procrastinate and
pgqueuer, asyncio workers, run 8 tasks at once and the body on 8 threads (bench/systems/
postgres.py says how). Two bodies (bench/bodies.py): a no-op, and one pipelined round trip to a
Redis server of its own, as real tasks do I/O. The **yardstick** runs each body on a bare
``ThreadPoolExecutor(8)`` (and a bare loop) in one process: no queue. For each system: its
throughput, its share of the yardstick, and its **overhead per job**
``1/throughput − 1/yardstick`` in microseconds: what the queue adds on top of the work.

A second table, not like for like, runs each system at its own best setting on this machine:
two worker processes at the concurrency per process the main bench's sweep found best.
The PostgreSQL rows run on one throwaway server (bench/postgres_server.py), started only
when one of them is selected.

``--instructions`` instead counts CPU instructions per job under ``valgrind
--tool=callgrind``: the worker's, and for a Redis target its queue's redis-server's (a server
of its own, also under callgrind), which shares the cores with the worker. Instrumentation is
switched on at "go" and off once the last job is done; the count is the difference of a run
of n jobs and one of n/5, so start-up is not counted: a figure that machine noise cannot move.
``--keep DIR`` keeps callgrind's files, for where the instructions go.

Repetitions are interleaved; medians with min–max. Each system's run is **paired** with a
yardstick run just before it: its share and overhead are the medians over the repetitions of
each run against its own yardstick, since this machine's speed can change by half within a
minute (an idle core wakes slowly), and a yardstick taken minutes apart would pass that on to
the ratios. The section it writes into bench/RESULTS.md is replaced on each run; the rest of
the file is left as it is.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import bodies, callgrind
from bench.core import Target, Unsupported
from bench.postgres_server import PostgresServer
from bench.procs import Body, Workers
from bench.redis_server import RedisServer
from bench.systems import load

HERE = Path(__file__).resolve().parent
THREADS = 8
LIKE, BEST = "like", "best"
THREADED = f"1 process, {THREADS} threads"
ASYNC = f"1 process, {THREADS} tasks at once (asyncio), the body on {THREADS} threads"


@dataclass(frozen=True)
class Row:
    """A target (from the ``bench.systems`` module ``module``) run as ``processes`` worker
    processes of ``concurrency`` each, in the table ``table``, on at most ``jobs`` jobs (else
    the target's ``throughput_jobs``; a few seconds a run keeps ``make bench-like`` short);
    ``compared``: whether it counts in the lines under the table."""

    module: str
    target: str
    setting: str
    processes: int = 1
    concurrency: int = THREADS
    table: str = LIKE
    jobs: int | None = None
    compared: bool = True

    @property
    def key(self) -> str:
        return self.target if self.table == LIKE else f"{self.target} ({BEST})"


def like(module: str, target: str, setting: str = THREADED, **kw: Any) -> Row:
    return Row(module, target, setting, **kw)


def best(module: str, target: str, concurrency: int, unit: str = "threads", **kw: Any) -> Row:
    setting = f"2 processes × {concurrency} {unit}"
    return Row(module, target, setting, 2, concurrency, BEST, **kw)


ROWS = (
    like("conveyor", "conveyor/redis"),
    like("conveyor", "conveyor/sqlite-normal"),
    like("conveyor", "conveyor/sqlite-full"),
    like("postgres", "conveyor/postgres", jobs=10_000),
    like("celery", "celery/redis-threads", jobs=4000),
    like("celery", "celery/redis-prefork",
         f"† 1 worker, {THREADS} prefork processes (pool kind differs)", jobs=4000,
         compared=False),
    like("dramatiq", "dramatiq/redis", jobs=8000),
    like("huey", "huey/redis", jobs=8000),
    like("huey", "huey/sqlite"),
    like("postgres", "procrastinate/postgres", ASYNC, jobs=1000),
    like("postgres", "pgqueuer/postgres", ASYNC + " (`batch_size=4`)"),
    like("rq", "rq/redis", "† 1 job at a time (RQ has no threads)", concurrency=1, jobs=1500,
         compared=False),
    # each at its own best: bench/RESULTS.md's "end to end, 2 worker processes" row (the
    # concurrency its sweep chose), bench/PG_RESULTS.md for PostgreSQL (16 a process)
    best("conveyor", "conveyor/redis", 32),
    best("conveyor", "conveyor/sqlite-normal", 32),
    best("postgres", "conveyor/postgres", 16, jobs=10_000),
    best("celery", "celery/redis-prefork", 2, "prefork processes (Celery's default pool)"),
    best("dramatiq", "dramatiq/redis", 32),
    best("huey", "huey/redis", 32, jobs=10_000),
    best("huey", "huey/sqlite", 8),
    best("postgres", "procrastinate/postgres-async", 16, "tasks, `async def`", jobs=1000),
    best("postgres", "pgqueuer/postgres-async", 16, "tasks, `async def`"),
    best("rq", "rq/redis", 1, "job"),
)  # fmt: skip
INSTRUCTION_TARGETS = ("conveyor/redis", "conveyor/sqlite-normal", "dramatiq/redis", "huey/redis")
#: how often a counted run asks whether the jobs are done (its own server work, not a job's)
INSTRUCTIONS_POLL = 0.25
YARDSTICK = "ThreadPoolExecutor(8)"
LOOP = "bare loop"
TITLES = {
    "like-for-like": "Like for like: the same concurrency, the same task body",
    "instructions": "Instructions per job: a count that noise cannot move",
}


class Targets:
    """The targets of the rows asked for, loaded once each; a system whose package is
    missing is skipped with a note."""

    def __init__(self, rows: list[Row]) -> None:
        self.by_name: dict[str, Target] = {}
        for module, name in dict.fromkeys((row.module, row.target) for row in rows):
            try:
                found = [t for t in load(module).targets() if t.name == name]
            except ImportError as exc:
                print(f"skipping {name}: {exc}", file=sys.stderr)
                continue
            self.by_name.update((t.name, t) for t in found)
        self.rows = [row for row in rows if row.target in self.by_name]

    def serve(self, redis_url: str, postgres_url: str) -> None:
        for target in self.by_name.values():
            target.redis_url, target.postgres_url = redis_url, postgres_url

    @property
    def need_postgres(self) -> bool:
        return any(t.needs_postgres for t in self.by_name.values())

    def versions(self) -> dict[str, str]:
        return {t.system: t.version for t in self.by_name.values()}


def chosen(wanted: list[str] | None, tables: list[str] | None) -> list[Row]:
    return [
        row
        for row in ROWS
        if (not wanted or any(w in row.target for w in wanted))
        and (not tables or row.table in tables)
    ]


def fill(target: Target, n: int) -> None:
    try:
        target.enqueue_bulk(n, 1000)
    except Unsupported:
        for _ in range(n):
            target.enqueue_one()


def wait_until(target: Target, workers: Workers, done: Callable[[], bool], poll: float) -> float:
    deadline = time.monotonic() + 600
    while True:
        seen = time.perf_counter()
        if done():
            return seen
        if time.monotonic() > deadline:
            raise RuntimeError(f"{target.name}: jobs not done in time")
        workers.check_alive()
        time.sleep(poll)


def throughput(
    target: Target,
    n: int,
    body: Body,
    workdir: Path,
    *,
    processes: int = 1,
    concurrency: int = THREADS,
    prefix: tuple[str, ...] = (),
    on_go: Callable[[Workers], None] | None = None,
    on_done: Callable[[Workers], None] | None = None,
    polls: tuple[float, float] = (0.001, 0.02),
) -> float:
    """N jobs of the body, pre-enqueued; the worker processes; jobs per second from the first
    job taken until none is pending (``polls``: how often to look, for each)."""
    target.fresh(workdir)
    try:
        fill(target, n)
        with Workers(
            target.system,
            target.worker_spec(),
            processes=processes,
            concurrency=concurrency,
            logdir=workdir,
            body=body,
            prefix=prefix,
            ready_timeout=300.0,
        ) as workers:
            if on_go is not None:
                on_go(workers)
            workers.go()
            start = wait_until(target, workers, lambda: target.taken(n), polls[0])
            end = wait_until(target, workers, target.finished, polls[1])
            if on_done is not None:
                on_done(workers)
        target.check_done(n)
    finally:
        target.close()
    return n / (end - start)


def yardstick(n: int, body: Body, *, loop: bool = True) -> dict[str, float]:
    """The body alone: on a bare ThreadPoolExecutor(8), and (``loop``) in a bare loop."""
    bodies.configure(*body)
    try:
        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(lambda _: bodies.work(), range(200)))  # warm the connections
            start = time.perf_counter()
            for future in [pool.submit(bodies.work) for _ in range(n)]:
                future.result()
            pooled = n / (time.perf_counter() - start)
        if not loop:
            return {YARDSTICK: pooled}
        start = time.perf_counter()
        for _ in range(n):
            bodies.work()
        looped = n / (time.perf_counter() - start)
    finally:
        bodies.configure(None, None)
    return {YARDSTICK: pooled, LOOP: looped}


def paired(key: str) -> str:
    """The label under which a row's own yardstick runs are kept."""
    return f"{key} [yardstick]"


# -- the like-for-like run ------------------------------------------------------------------


def run_like(
    args: argparse.Namespace, targets: Targets, body_url: str, workdir: Path
) -> dict[str, dict[str, list[float]]]:
    raw: dict[str, dict[str, list[float]]] = {b: {} for b in bodies.BODIES}
    for rep in range(1, args.reps + 1):
        for name in bodies.BODIES:
            body = (name, body_url)
            for label, value in yardstick(args.jobs, body).items():
                raw[name].setdefault(label, []).append(value)
            for row in targets.rows:
                target = targets.by_name[row.target]
                n = min(args.jobs, row.jobs or target.throughput_jobs or args.jobs)
                yard = yardstick(args.jobs, body, loop=False)[YARDSTICK]
                rate = throughput(
                    target, n, body, workdir, processes=row.processes, concurrency=row.concurrency
                )
                raw[name].setdefault(row.key, []).append(rate)
                raw[name].setdefault(paired(row.key), []).append(yard)
                print(
                    f"rep {rep} {name:9} {row.key:36} {rate:10,.0f} jobs/s "
                    f"(yardstick just before: {yard:,.0f})",
                    flush=True,
                )
    return raw


def overhead_us(rate: float, yard: float) -> float:
    return (1 / rate - 1 / yard) * 1e6


def share_and_overhead(rows: dict[str, list[float]], key: str, yard: float) -> tuple[float, float]:
    """A row's share of the yardstick and its overhead per job (µs): the medians over the
    repetitions of each run against the yardstick run just before it, when there are such
    (else the row's median against the yardstick's ``yard``)."""
    rates, yards = rows[key], rows.get(paired(key))
    if not yards or len(yards) != len(rates):
        med = statistics.median(rates)
        return med / yard, overhead_us(med, yard)
    shares = [r / y for r, y in zip(rates, yards, strict=True)]
    overheads = [overhead_us(r, y) for r, y in zip(rates, yards, strict=True)]
    return statistics.median(shares), statistics.median(overheads)


TABLE_HEAD = [
    "| system | setting | jobs/s (median, min–max) | share of yardstick | overhead per job, µs |",
    "|---|---|---|---|---|",
]
INTRO = f"""\
Every row but the yardstick's runs one worker process on its store; the yardstick runs the
body on a bare `{YARDSTICK}` in one process, no queue. Overhead per job = 1/throughput −
1/yardstick. Each row's run is paired with a yardstick run just before it: its share and
overhead are the medians over the repetitions of each run against its own yardstick (the
yardstick rows show all of them), as this machine's speed can change within a minute.
† marks a row whose pool differs (Celery's prefork: {THREADS} processes; RQ: no threads); it
is left out of the comparison lines.
"""
POSTGRES_INTRO = f"""\
The PostgreSQL rows ({{postgres}}; fsync off, a fresh database per run,
bench/postgres_server.py): Procrastinate and pgqueuer are asyncio workers. Like for like,
they run {THREADS} tasks at once (Procrastinate `concurrency={THREADS}`; pgqueuer
`max_concurrent_tasks={THREADS}` with `batch_size={THREADS // 2}`, the most it accepts) and
run the body, synchronous code as in every other row, on {THREADS} threads, the way each has
its users run such code: Procrastinate as a plain `def` task (it runs those on the loop's
executor), pgqueuer as `await asyncio.to_thread(...)` in an async entrypoint (1.x refuses
synchronous entrypoints and says to do that), through the {{driver}} driver (bench/pg.py's
`PgQueuer.driver` says why not psycopg's). The loop's executor is given {THREADS} threads (by
default it has min(32, CPUs + 4)). The round trip called inline in an `async def` task would
block the loop, one job at a time; an asyncio Redis client would be another body than the
yardstick's: neither is like for like. Their `async def` shape (the no-op inline, no
thread) is in the own-best table.
"""
BEST_INTRO = """\
**Not like for like.** Each system at the setting it does best on this machine (2 CPUs): two
worker processes at the concurrency per process that the main bench's sweep chose for it
(bench/RESULTS.md, "end to end, 2 worker processes"; PostgreSQL: 16, as in
bench/PG_RESULTS.md); Celery with its default pool, prefork (2 × 2 there did 1,871 jobs/s,
2 × 8 threads 2,001: the same within the noise); Procrastinate and pgqueuer with `async def`
tasks (the no-op inline, the round trip on a thread). The yardstick is still one process of
8 threads; a row can pass it."""


def rows_markdown(
    rows: dict[str, list[float]], yard: float, table: list[Row], versions: dict[str, str]
) -> list[str]:
    lines = []
    for row in table:
        if row.key not in rows:
            continue
        values = rows[row.key]
        med = statistics.median(values)
        cell = f"{med:,.0f} ({min(values):,.0f}–{max(values):,.0f})"
        version = versions.get(row.target.split("/", 1)[0], "")
        share, overhead = share_and_overhead(rows, row.key, yard)
        lines.append(
            f"| {row.target} {version} | {row.setting} | {cell} | {share:.0%} | {overhead:,.0f} |"
        )
    return lines


def against_best_peer(rows: dict[str, list[float]], yard: float, table: list[Row]) -> list[str]:
    """For each store, each conveyor row's overhead against the best peer's on that store."""
    us = {
        row.target: share_and_overhead(rows, row.key, yard)[1]
        for row in table
        if row.compared and row.key in rows
    }
    lines = []
    for store in ("redis", "sqlite", "postgres"):
        mine = [(k, v) for k, v in us.items() if k.startswith("conveyor/") and store in k]
        theirs = {k: v for k, v in us.items() if not k.startswith("conveyor/") and store in k}
        if mine and theirs:
            peer = min(theirs, key=lambda k: theirs[k])
            for label, value in mine:
                if value > 0 and theirs[peer] > 0:
                    lines.append(
                        f"- {label}: overhead {value:,.0f} µs per job against {peer}'s "
                        f"{theirs[peer]:,.0f} µs: {value / theirs[peer]:.2f} of the best peer's."
                    )
                else:  # a row past the yardstick (more processes than it has): no ratio
                    lines.append(
                        f"- {label}: overhead {value:,.0f} µs per job against {peer}'s "
                        f"{theirs[peer]:,.0f} µs: at or past the yardstick, no ratio."
                    )
    return lines


def like_markdown(
    raw: dict[str, dict[str, list[float]]],
    versions: dict[str, str],
    postgres: str = "",
    driver: str = "asyncpg",
) -> str:
    lines = [INTRO]
    if postgres:
        lines.append(POSTGRES_INTRO.format(postgres=f"PostgreSQL {postgres}", driver=driver))
    for table in (LIKE, BEST):
        part = [row for row in ROWS if row.table == table]
        if table == BEST and any(row.key in r for row in part for r in raw.values()):
            lines += ["### Not like for like: each at its own best setting", "", BEST_INTRO, ""]
        for name in bodies.BODIES:
            rows = raw[name]
            if YARDSTICK not in rows or not any(row.key in rows for row in part):
                continue
            yard = statistics.median(rows[YARDSTICK])
            title = {"noop": "no-op body", "roundtrip": "one pipelined Redis round trip"}[name]
            lines += [f"### Body: {title}" + (", own best settings" if table == BEST else "")]
            lines += ["", *TABLE_HEAD]
            for label in (YARDSTICK, LOOP):
                values = list(rows[label])
                if label == YARDSTICK:  # with every row's own
                    values += [v for row in part for v in rows.get(paired(row.key), [])]
                cell = f"{statistics.median(values):,.0f} ({min(values):,.0f}–{max(values):,.0f})"
                threads = THREADS if label == YARDSTICK else 1
                lines.append(f"| **{label}** (no queue) | {threads} thread(s) | {cell} | — | — |")
            lines += rows_markdown(rows, yard, part, versions)
            lines += ["", *against_best_peer(rows, yard, part), ""]
    return "\n".join(lines)


# -- instructions per job -------------------------------------------------------------------


def counted(
    target: Target, n: int, body_url: str, workdir: Path, *, keep: Path | None = None
) -> tuple[int, int]:
    """Instructions from "go" to the last of ``n`` no-op jobs done: the worker's, and (for a
    target on Redis) its queue's redis-server's, a server of its own under callgrind."""
    tag = f"{target.name.replace('/', '-')}-{n}-{os.urandom(3).hex()}"
    where = keep or workdir
    worker_out, server_out = where / f"worker-{tag}.out", where / f"server-{tag}.out"
    queue_url = target.redis_url
    with ExitStack() as stack:
        pids: list[int] = []
        if target.needs_redis:
            server = stack.enter_context(RedisServer(prefix=callgrind.prefix(server_out)))
            target.redis_url = server.url
            pids.append(server.pid)
        try:
            throughput(
                target,
                n,
                ("noop", body_url),
                workdir,
                prefix=callgrind.prefix(worker_out),
                on_go=lambda w: callgrind.toggle("on", [*pids, *(p.pid for p in w.procs)]),
                on_done=lambda w: callgrind.toggle("off", [*pids, *(p.pid for p in w.procs)]),
                # seldom: the bench's own polls are server work that no job does
                polls=(INSTRUCTIONS_POLL, INSTRUCTIONS_POLL),
            )
        finally:
            target.redis_url = queue_url
    return callgrind.totals(worker_out), callgrind.totals(server_out)


def instruction_rows(wanted: list[str] | None) -> list[Row]:
    return [row for row in chosen(wanted, [LIKE]) if row.target in INSTRUCTION_TARGETS]


def run_instructions(
    args: argparse.Namespace, targets: Targets, body_url: str, workdir: Path
) -> dict[str, tuple[float, float | None]]:
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("valgrind (with callgrind_control) is not installed")
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    out: dict[str, tuple[float, float | None]] = {}
    for row in targets.rows:
        target = targets.by_name[row.target]
        n = args.instruction_jobs
        # two runs, n and a fifth of n: their difference is what the jobs cost, without the
        # worker's start-up and shutdown, which the window of one run also holds
        small = max(1, n // 5)
        whole = counted(target, n, body_url, workdir, keep=args.keep)
        part = counted(target, small, body_url, workdir, keep=args.keep)
        worker = (whole[0] - part[0]) / (n - small)
        server = (whole[1] - part[1]) / (n - small) if target.needs_redis else None
        out[target.name] = (worker, server)
        row = "".join(f"{c:>12}" for c in cells(worker, server))
        print(f"{target.name:24} {row}  instructions per job: worker, server, sum", flush=True)
    return out


def cells(worker: float, server: float | None) -> list[str]:
    """worker, server, their sum; — for a store with no server."""
    if server is None:
        return [f"{worker:,.0f}", "—", f"{worker:,.0f}"]
    return [f"{v:,.0f}" for v in (worker, server, worker + server)]


def instructions_markdown(counts: dict[str, tuple[float, float | None]], n: int) -> str:
    lines = [
        f"### CPU instructions per job (callgrind, {n:,} no-op jobs, 1 worker process, "
        f"{THREADS} threads)",
        "",
        f"Each count is the difference of two runs, {n:,} jobs and {max(1, n // 5):,}, divided by "
        "the difference in jobs: what the jobs cost, without start-up and shutdown. *worker*: "
        "the worker process; *server*: the queue's redis-server (a Redis target, a server of its "
        "own), which shares the machine's cores with the worker; *sum*: the two.",
        "",
        "| system | worker | server | sum |",
        "|---|---|---|---|",
    ]
    lines += [f"| {name} | {' | '.join(cells(*value))} |" for name, value in counts.items()]
    return "\n".join(lines) + "\n"


# -- RESULTS.md ------------------------------------------------------------------------------


def write_section(
    kind: str, text: str, command: str, *, title: str | None = None, make: str = "bench-like"
) -> None:
    """Replaces the section ``kind`` of bench/RESULTS.md (or adds it); nothing else changes."""
    begin, end = f"<!-- {kind}: begin -->", f"<!-- {kind}: end -->"
    path = HERE / "RESULTS.md"
    current = path.read_text() if path.exists() else "# Benchmark results\n"
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()[0]
    section = (
        f"{begin}\n## {title or TITLES[kind]}\n\n"
        f"Command: `{command}` (in the bench's environment, `make {make}`)  \n"
        f"Run: {when}; load average at the end {load:.1f}.\n\n{text}\n{end}"
    )
    if begin in current:
        head, _, rest = current.partition(begin)
        _, _, tail = rest.partition(end)
        current = head + section + tail
    else:
        current = current.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(current)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.like", description=__doc__)
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per run (peers: fewer)")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions")
    parser.add_argument("--target", action="append", help="only targets whose name has this")
    parser.add_argument(
        "--table", action="append", choices=(LIKE, BEST), help="only this table (default both)"
    )
    parser.add_argument("--instructions", action="store_true", help="count instructions")
    parser.add_argument("--instruction-jobs", type=int, default=2000)
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="keep callgrind's files here, to read with callgrind_annotate --inclusive=yes",
    )
    parser.add_argument("--no-results", action="store_true", help="do not write RESULTS.md")
    args = parser.parse_args(argv)
    command = shlex.join(["python", "-m", "bench.like", *argv])
    rows = instruction_rows(args.target) if args.instructions else chosen(args.target, args.table)
    targets = Targets(rows)
    with ExitStack() as stack:
        queue_server = stack.enter_context(RedisServer())
        body_server = stack.enter_context(RedisServer())
        postgres, driver = "", ""
        if targets.need_postgres:  # only then: it takes a few seconds and a few MB
            from bench.pg import PgQueuer

            postgres_server = stack.enter_context(PostgresServer())
            postgres, driver = postgres_server.version, PgQueuer.driver()
        targets.serve(queue_server.url, postgres_server.url if postgres else "")
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="conveyor-like-")))
        if args.instructions:
            counts = run_instructions(args, targets, body_server.url, workdir)
            text = instructions_markdown(counts, args.instruction_jobs)
        else:
            raw = run_like(args, targets, body_server.url, workdir)
            text = like_markdown(raw, targets.versions(), postgres, driver)
    print(text)
    if not args.no_results:
        write_section("instructions" if args.instructions else "like-for-like", text, command)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
