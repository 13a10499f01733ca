"""``python -m bench.pg [--quick] [--concurrency N] [--system NAME]``: conveyor, Procrastinate
and pgqueuer side by side on one throwaway PostgreSQL server (``bench/postgres_server.py``),
in one run, at equal concurrency, with the same task bodies as the Redis rows (a no-op, and
one that notes when it started). Run it in the bench's environment, where the peers come from
PyPI: ``bench/.env/bin/python -m bench.pg``.

Every measurement starts on a fresh database of the same server:

- enqueue single: jobs/s of one-at-a-time enqueues (``delay()``, ``defer()``, ``enqueue()``);
- enqueue bulk: jobs/s of the system's batch call, 1,000 at a time;
- end to end, 1 and 2 worker processes: jobs/s from the moment the prepared workers are told
  to start until every job of a backlog enqueued beforehand is done;
- pickup: an idle worker, a job enqueued every 20 ms that notes the time it started; p50 and
  p99 of start minus enqueue time (one machine, one clock).

Configuration: conveyor's thread pool; Procrastinate's worker (async tasks, LISTEN/NOTIFY,
finished jobs kept as it does by default); pgqueuer's QueueManager (async entrypoints, psycopg
driver, ``max_concurrent_tasks`` = the concurrency and ``batch_size`` half of it, the most it
accepts). Each at its defaults otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import psycopg

from bench.postgres_server import PostgresServer

BATCH = 1000
STAMPS = "CREATE TABLE IF NOT EXISTS bench_pickup (latency double precision NOT NULL)"


def database_url(url: str, name: str) -> str:
    return urlsplit(url)._replace(path=f"/{name}").geturl()


def fresh_database(admin_url: str, name: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    url = database_url(admin_url, name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(STAMPS)
    return url


_stamp_conn: psycopg.Connection[Any] | None = None


def note_pickup(url: str, enqueued_at: float) -> None:
    """The body of every system's stamp task: how long the job waited to start."""
    latency = time.time() - enqueued_at
    global _stamp_conn
    if _stamp_conn is None:
        _stamp_conn = psycopg.connect(url, autocommit=True)
    _stamp_conn.execute("INSERT INTO bench_pickup VALUES (%s)", [latency])


def scalar(url: str, query: str) -> Any:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query).fetchone()
    return None if row is None else row[0]


# -- the systems -------------------------------------------------------------------------------


class System:
    name = ""
    pending_sql = ""

    def __init__(self, url: str) -> None:
        self.url = url

    def version(self) -> str:
        raise NotImplementedError

    def open(self) -> None:
        """Create the schema and open the enqueuing side."""

    def close(self) -> None: ...

    def enqueue_one(self) -> None:
        raise NotImplementedError

    def enqueue_bulk(self, n: int) -> None:
        raise NotImplementedError

    def enqueue_stamp(self) -> None:
        raise NotImplementedError

    def pending(self) -> int:
        return int(scalar(self.url, self.pending_sql))

    def worker(self, concurrency: int) -> Callable[[], None]:
        """In the worker process: prepare, and return the function that runs until SIGTERM."""
        raise NotImplementedError


class Conveyor(System):
    name = "conveyor"

    def version(self) -> str:
        import conveyor

        return conveyor.__version__

    def _app(self) -> Any:
        import conveyor

        app = conveyor.App(self.url, namespace="bench")
        url = self.url

        @app.task(name="bench.noop")
        def noop() -> None:
            return None

        @app.task(name="bench.stamp")
        def stamp(enqueued_at: float) -> None:
            note_pickup(url, enqueued_at)

        return app

    def open(self) -> None:
        self.app = self._app()
        self.noop = self.app.registry.get("bench.noop")
        self.stamp = self.app.registry.get("bench.stamp")
        self.pending_sql = "SELECT count(*) FROM bench_jobs WHERE state <> 'succeeded'"

    def close(self) -> None:
        self.app.close()

    def enqueue_one(self) -> None:
        self.noop.delay()

    def enqueue_bulk(self, n: int) -> None:
        self.app.enqueue_many((self.noop.s() for _ in range(n)), batch_size=BATCH)

    def enqueue_stamp(self) -> None:
        self.stamp.delay(time.time())

    def worker(self, concurrency: int) -> Callable[[], None]:
        app = self._app()
        app.backend  # noqa: B018 - connect now, not on the clock
        worker = app.worker(concurrency=concurrency, schedule=False)
        return worker.run


class Procrastinate(System):
    name = "procrastinate"
    pending_sql = "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"

    def version(self) -> str:
        from importlib.metadata import version

        return version("procrastinate")

    def _app(self, *, sync: bool) -> Any:
        import procrastinate

        connector = (
            procrastinate.SyncPsycopgConnector(conninfo=self.url)
            if sync
            else procrastinate.PsycopgConnector(conninfo=self.url)
        )
        app = procrastinate.App(connector=connector)
        url = self.url

        @app.task(name="bench.noop")
        async def noop() -> None:
            return None

        @app.task(name="bench.stamp")
        async def stamp(enqueued_at: float) -> None:
            note_pickup(url, enqueued_at)

        return app

    def open(self) -> None:
        self.app = self._app(sync=True)
        self.app.open()
        self.app.schema_manager.apply_schema()
        self.noop = self.app.tasks["bench.noop"]
        self.stamp = self.app.tasks["bench.stamp"]

    def close(self) -> None:
        self.app.close()

    def enqueue_one(self) -> None:
        self.noop.defer()

    def enqueue_bulk(self, n: int) -> None:
        for start in range(0, n, BATCH):
            self.noop.batch_defer(*({} for _ in range(min(BATCH, n - start))))

    def enqueue_stamp(self) -> None:
        self.stamp.defer(enqueued_at=time.time())

    def worker(self, concurrency: int) -> Callable[[], None]:
        app = self._app(sync=False)

        def run() -> None:
            async def main() -> None:
                async with app.open_async():
                    await app.run_worker_async(concurrency=concurrency, wait=True)

            asyncio.run(main())

        return run


class PgQueuer(System):
    name = "pgqueuer"
    pending_sql = "SELECT count(*) FROM pgqueuer"

    def version(self) -> str:
        from importlib.metadata import version

        return version("pgqueuer")

    def open(self) -> None:
        from pgqueuer import PsycopgDriver, Queries
        from pgqueuer.adapters.drivers.psycopg import SyncPsycopgDriver
        from pgqueuer.queries import SyncQueries

        async def install() -> None:
            conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
            await Queries(PsycopgDriver(conn)).install()
            await conn.close()

        asyncio.run(install())
        self.conn = psycopg.connect(self.url, autocommit=True)
        self.queries = SyncQueries(SyncPsycopgDriver(self.conn))

    def close(self) -> None:
        self.conn.close()

    def enqueue_one(self) -> None:
        self.queries.enqueue("bench.noop", None, 0)

    def enqueue_bulk(self, n: int) -> None:
        for start in range(0, n, BATCH):
            k = min(BATCH, n - start)
            self.queries.enqueue(["bench.noop"] * k, [None] * k, [0] * k)

    def enqueue_stamp(self) -> None:
        self.queries.enqueue("bench.stamp", json.dumps(time.time()).encode(), 0)

    def worker(self, concurrency: int) -> Callable[[], None]:
        from pgqueuer import PsycopgDriver, Queries, QueueManager

        url = self.url

        def run() -> None:
            async def main() -> None:
                conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
                manager = QueueManager(Queries(PsycopgDriver(conn)))

                @manager.entrypoint("bench.noop")
                async def noop(job: Any) -> None:
                    return None

                @manager.entrypoint("bench.stamp")
                async def stamp(job: Any) -> None:
                    note_pickup(url, float(json.loads(job.payload)))

                loop = asyncio.get_running_loop()
                loop.add_signal_handler(signal.SIGTERM, manager.shutdown.set)
                # pgqueuer asks for at least twice the batch in flight
                await manager.run(
                    batch_size=max(1, concurrency // 2), max_concurrent_tasks=concurrency
                )
                await conn.close()

            asyncio.run(main())

        return run


SYSTEMS: dict[str, type[System]] = {
    "conveyor": Conveyor,
    "procrastinate": Procrastinate,
    "pgqueuer": PgQueuer,
}


# -- worker processes --------------------------------------------------------------------------


def worker_main(system: str, url: str, concurrency: int) -> int:
    run = SYSTEMS[system](url).worker(concurrency)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    run()
    return 0


class Workers:
    """Worker processes, prepared before the clock starts, stopped by PID."""

    def __init__(self, system: str, url: str, concurrency: int, n: int) -> None:
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", "bench.pg", "--worker", system, url, str(concurrency)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(n)
        ]
        for proc in self.procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                self.stop()
                raise RuntimeError(f"a {system} worker did not start")

    def go(self) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


# -- measurements ------------------------------------------------------------------------------


def measure_enqueue(system: System, n_single: int, n_bulk: int) -> dict[str, float]:
    started = time.perf_counter()
    for _ in range(n_single):
        system.enqueue_one()
    single = n_single / (time.perf_counter() - started)
    started = time.perf_counter()
    system.enqueue_bulk(n_bulk)
    bulk = n_bulk / (time.perf_counter() - started)
    return {"enqueue single, jobs/s": single, "enqueue bulk, jobs/s": bulk}


def measure_throughput(
    system: System, name: str, concurrency: int, processes: int, jobs: int
) -> float:
    system.enqueue_bulk(jobs)
    workers = Workers(name, system.url, concurrency, processes)
    try:
        started = time.perf_counter()
        workers.go()
        deadline = time.monotonic() + 600
        while system.pending() > 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: jobs left after 600 s")
            time.sleep(0.02)
        return jobs / (time.perf_counter() - started)
    finally:
        workers.stop()


def measure_pickup(system: System, name: str, concurrency: int, samples: int) -> list[float]:
    workers = Workers(name, system.url, concurrency, 1)
    try:
        workers.go()
        time.sleep(2.0)  # the worker is idle, listening
        for _ in range(samples):
            system.enqueue_stamp()
            time.sleep(0.02)
        deadline = time.monotonic() + 60
        while scalar(system.url, "SELECT count(*) FROM bench_pickup") < samples:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: stamps missing after 60 s")
            time.sleep(0.05)
    finally:
        workers.stop()
    with psycopg.connect(system.url) as conn:
        return sorted(r[0] * 1000 for r in conn.execute("SELECT latency FROM bench_pickup"))


def run_system(
    name: str, admin_url: str, args: argparse.Namespace, out: Callable[[str], None]
) -> dict[str, float]:
    found: dict[str, float] = {}

    def on_fresh(step: str) -> System:
        system = SYSTEMS[name](fresh_database(admin_url, f"bench_{name}_{step}"))
        system.open()
        return system

    steps: list[tuple[str, Callable[[System], dict[str, float]]]] = [
        ("enqueue", lambda s: measure_enqueue(s, args.single, args.bulk)),
        (
            "e2e1",
            lambda s: {
                "end to end, 1 process, jobs/s": measure_throughput(
                    s, name, args.concurrency, 1, args.jobs
                )
            },
        ),
        (
            "e2e2",
            lambda s: {
                "end to end, 2 processes, jobs/s": measure_throughput(
                    s, name, args.concurrency, 2, args.jobs
                )
            },
        ),
        ("pickup", lambda s: percentiles(measure_pickup(s, name, args.concurrency, args.samples))),
    ]
    for step, measure in steps:
        system = on_fresh(step)
        try:
            numbers = measure(system)
        except Exception as exc:  # a peer that cannot do a step: say so, go on
            out(f"  {name} {step}: {type(exc).__name__}: {exc}")
            numbers = {}
        finally:
            system.close()
        found.update(numbers)
        for key, value in numbers.items():
            out(f"  {name:<14} {key:<34} {value:>10,.2f}")
    return found


def percentiles(ms: list[float]) -> dict[str, float]:
    return {
        "pickup p50, ms": statistics.median(ms),
        "pickup p99, ms": ms[min(len(ms) - 1, int(len(ms) * 0.99))],
    }


def table(results: dict[str, dict[str, float]], versions: dict[str, str]) -> str:
    names = list(results)
    measures = list(dict.fromkeys(k for r in results.values() for k in r))
    lines = [
        "| measure | " + " | ".join(f"{n} {versions[n]}" for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for measure in measures:
        cells = [f"{results[n][measure]:,.2f}" if measure in results[n] else "—" for n in names]
        lines.append(f"| {measure} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--worker"]:
        return worker_main(argv[1], argv[2], int(argv[3]))
    parser = argparse.ArgumentParser(prog="python -m bench.pg", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small numbers, a smoke run")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--system", action="append", choices=sorted(SYSTEMS))
    args = parser.parse_args(argv)
    args.single, args.bulk, args.jobs, args.samples = (
        (200, 2000, 2000, 30) if args.quick else (2000, 50_000, 20_000, 200)
    )
    names = args.system or list(SYSTEMS)
    lock = threading.Lock()

    def out(line: str) -> None:
        with lock:
            print(line, flush=True)

    with PostgresServer() as server:
        out(f"PostgreSQL {server.version} on {server.url} (fsync off), "
            f"concurrency {args.concurrency}")  # fmt: skip
        versions: dict[str, str] = {}
        results: dict[str, dict[str, float]] = {}
        for name in names:
            try:
                versions[name] = SYSTEMS[name]("").version()
            except ImportError as exc:
                out(f"skipping {name}: {exc}")
                continue
            results[name] = run_system(name, server.url, args, out)
    print()
    print(table(results, versions))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
