"""``python -m bench.like``: every system at the same concurrency and pool kind, the same task
body, and the yardstick of that body with no queue at all.

Each system runs one worker process with 8 threads (RQ, which has no threads, runs its one
job at a time and is marked so). Two bodies (bench/bodies.py): a no-op, and one pipelined
round trip to a Redis server of its own, as real tasks do I/O. The **yardstick** runs each
body on a bare ``ThreadPoolExecutor(8)`` (and a bare loop) in one process: no queue. For each
system: its throughput, its share of the yardstick, and its **overhead per job**
``1/throughput − 1/yardstick`` in microseconds: what the queue adds on top of the work.

``--instructions`` instead counts CPU instructions per job under ``valgrind
--tool=callgrind``: the worker's, and for a Redis target its queue's redis-server's (a server
of its own, also under callgrind), which shares the cores with the worker. Instrumentation is
switched on at "go" and off once the last job is done; the count is the difference of a run
of n jobs and one of n/5, so start-up is not counted: a figure that machine noise cannot move.
``--keep DIR`` keeps callgrind's files, for where the instructions go.

Repetitions are interleaved; medians with min–max. The section it writes into
bench/RESULTS.md is replaced on each run; the rest of the file is left as it is.
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
from pathlib import Path

from bench import bodies, callgrind
from bench.core import Target, Unsupported
from bench.procs import Body, Workers
from bench.redis_server import RedisServer
from bench.systems import load

HERE = Path(__file__).resolve().parent
THREADS = 8
#: (system, target name) measured like for like; RQ runs one job at a time (its only kind)
TARGETS = (
    ("conveyor", "conveyor/redis"),
    ("conveyor", "conveyor/sqlite-normal"),
    ("conveyor", "conveyor/sqlite-full"),
    ("celery", "celery/redis-threads"),
    ("dramatiq", "dramatiq/redis"),
    ("huey", "huey/redis"),
    ("huey", "huey/sqlite"),
    ("rq", "rq/redis"),
)
INSTRUCTION_TARGETS = ("conveyor/redis", "conveyor/sqlite-normal", "dramatiq/redis", "huey/redis")
#: how often a counted run asks whether the jobs are done (its own server work, not a job's)
INSTRUCTIONS_POLL = 0.25
YARDSTICK = "ThreadPoolExecutor(8)"
LOOP = "bare loop"
TITLES = {
    "like-for-like": "Like for like: the same concurrency, the same task body",
    "instructions": "Instructions per job: a count that noise cannot move",
}


def targets(wanted: list[str] | None, redis_url: str) -> list[Target]:
    out: list[Target] = []
    for system, name in TARGETS:
        if wanted and not any(w in name for w in wanted):
            continue
        try:
            module = load(system)
        except ImportError as exc:
            print(f"skipping {system}: {exc}", file=sys.stderr)
            continue
        out += [t for t in module.targets() if t.name == name]
    for target in out:
        target.redis_url = redis_url
    return out


def concurrency_of(target: Target) -> int:
    return 1 if target.system == "rq" else THREADS


def fill(target: Target, n: int) -> None:
    try:
        target.enqueue_bulk(n, 1000)
    except Unsupported:
        for _ in range(n):
            target.enqueue_one()


def wait_until(target: Target, workers: Workers, done: Callable[[int], bool], poll: float) -> float:
    deadline = time.monotonic() + 600
    while True:
        seen = time.perf_counter()
        if done(target.pending()):
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
    prefix: tuple[str, ...] = (),
    on_go: Callable[[Workers], None] | None = None,
    on_done: Callable[[Workers], None] | None = None,
    polls: tuple[float, float] = (0.001, 0.02),
) -> float:
    """N jobs of the body, pre-enqueued; one worker process; jobs per second from the first
    job taken until none is pending (``polls``: how often to look, for each)."""
    target.fresh(workdir)
    try:
        fill(target, n)
        with Workers(
            target.system,
            target.worker_spec(),
            processes=1,
            concurrency=concurrency_of(target),
            logdir=workdir,
            body=body,
            prefix=prefix,
            ready_timeout=300.0,
        ) as workers:
            if on_go is not None:
                on_go(workers)
            workers.go()
            start = wait_until(target, workers, lambda left: left < n, polls[0])
            end = wait_until(target, workers, lambda left: left == 0, polls[1])
            if on_done is not None:
                on_done(workers)
        target.check_done(n)
    finally:
        target.close()
    return n / (end - start)


def yardstick(n: int, body: Body) -> dict[str, float]:
    """The body alone: on a bare ThreadPoolExecutor(8), and in a bare loop."""
    bodies.configure(*body)
    try:
        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(lambda _: bodies.work(), range(200)))  # warm the connections
            start = time.perf_counter()
            for future in [pool.submit(bodies.work) for _ in range(n)]:
                future.result()
            pooled = n / (time.perf_counter() - start)
        start = time.perf_counter()
        for _ in range(n):
            bodies.work()
        looped = n / (time.perf_counter() - start)
    finally:
        bodies.configure(None, None)
    return {YARDSTICK: pooled, LOOP: looped}


def jobs_for(target: Target, n: int) -> int:
    return min(n, target.throughput_jobs or n)


# -- the like-for-like run ------------------------------------------------------------------


def run_like(
    args: argparse.Namespace, urls: tuple[str, str], workdir: Path
) -> dict[str, dict[str, list[float]]]:
    queue_url, body_url = urls
    chosen = targets(args.target, queue_url)
    raw: dict[str, dict[str, list[float]]] = {b: {} for b in bodies.BODIES}
    for rep in range(1, args.reps + 1):
        for name in bodies.BODIES:
            body = (name, body_url)
            for label, value in yardstick(args.jobs, body).items():
                raw[name].setdefault(label, []).append(value)
            for target in chosen:
                n = jobs_for(target, args.jobs)
                rate = throughput(target, n, body, workdir)
                raw[name].setdefault(target.name, []).append(rate)
                print(f"rep {rep} {name:9} {target.name:24} {rate:10,.0f} jobs/s", flush=True)
    return raw


def overhead_us(rate: float, yard: float) -> float:
    return (1 / rate - 1 / yard) * 1e6


def like_markdown(raw: dict[str, dict[str, list[float]]], versions: dict[str, str]) -> str:
    lines = []
    for name in bodies.BODIES:
        rows = raw[name]
        if YARDSTICK not in rows:
            continue
        yard = statistics.median(rows[YARDSTICK])
        title = {"noop": "no-op body", "roundtrip": "one pipelined Redis round trip"}[name]
        lines += [
            f"### Body: {title}",
            "",
            "| system | setting | jobs/s (median, min–max) | share of yardstick "
            "| overhead per job, µs |",
            "|---|---|---|---|---|",
        ]
        for label, values in rows.items():
            med = statistics.median(values)
            cell = f"{med:,.0f} ({min(values):,.0f}–{max(values):,.0f})"
            if label in (YARDSTICK, LOOP):
                threads = THREADS if label == YARDSTICK else 1
                lines.append(f"| **{label}** (no queue) | {threads} thread(s) | {cell} | — | — |")
                continue
            system = label.split("/", 1)[0]
            setting = (
                "1 job at a time (RQ has no threads)"
                if system == "rq"
                else f"1 process, {THREADS} threads"
            )
            version = versions.get(system, "")
            lines.append(
                f"| {label} {version} | {setting} | {cell} | {med / yard:.0%} "
                f"| {overhead_us(med, yard):,.0f} |"
            )
        peers = {
            label: overhead_us(statistics.median(v), yard)
            for label, v in rows.items()
            if label not in (YARDSTICK, LOOP)
            and not label.startswith("conveyor/")
            and not label.startswith("rq/")
        }
        lines.append("")
        for store in ("redis", "sqlite"):
            mine = [
                (label, overhead_us(statistics.median(v), yard))
                for label, v in rows.items()
                if label.startswith("conveyor/") and store in label
            ]
            theirs = {k: v for k, v in peers.items() if store in k}
            if mine and theirs:
                best_peer = min(theirs, key=lambda k: theirs[k])
                for label, us in mine:
                    lines.append(
                        f"- {label}: overhead {us:,.0f} µs per job against {best_peer}'s "
                        f"{theirs[best_peer]:,.0f} µs: {us / theirs[best_peer]:.2f} of the best "
                        "peer's."
                    )
        lines.append("")
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


def run_instructions(
    args: argparse.Namespace, urls: tuple[str, str], workdir: Path
) -> dict[str, tuple[float, float | None]]:
    queue_url, body_url = urls
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("valgrind (with callgrind_control) is not installed")
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    out: dict[str, tuple[float, float | None]] = {}
    wanted = [t for t in INSTRUCTION_TARGETS if not args.target or any(w in t for w in args.target)]
    for target in targets(wanted, queue_url):
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


def versions() -> dict[str, str]:
    out = {}
    for system, _ in TARGETS:
        try:
            module = load(system)
        except ImportError:
            continue
        for target in module.targets():
            out[system] = target.version
            break
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.like", description=__doc__)
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per run (peers: fewer)")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions")
    parser.add_argument("--target", action="append", help="only targets whose name has this")
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
    with ExitStack() as stack:
        queue_server = stack.enter_context(RedisServer())
        body_server = stack.enter_context(RedisServer())
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="conveyor-like-")))
        urls = (queue_server.url, body_server.url)
        if args.instructions:
            counts = run_instructions(args, urls, workdir)
            text = instructions_markdown(counts, args.instruction_jobs)
        else:
            raw = run_like(args, urls, workdir)
            text = like_markdown(raw, versions())
    print(text)
    if not args.no_results:
        write_section("instructions" if args.instructions else "like-for-like", text, command)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
