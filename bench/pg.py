"""``python -m bench.pg [--quick] [--concurrency N] [--system NAME] [--step STEP] [--reps N]``:
conveyor, Procrastinate and pgqueuer side by side on one throwaway PostgreSQL server
(``bench/postgres_server.py``), in one run, at equal concurrency, with the same task bodies as
the Redis rows (a no-op, and one that notes when it started). With ``--reps N`` the systems
take turns step by step, N times, and the table shows the medians. Run it in the bench's
environment, where the peers come from PyPI: ``bench/.env/bin/python -m bench.pg``.

Every measurement starts on a fresh database of the same server:

- enqueue single: jobs/s of one-at-a-time enqueues (``delay()``, ``defer()``, ``enqueue()``);
- enqueue bulk: jobs/s of the system's batch call, 1,000 at a time;
- end to end, 1 and 2 worker processes: jobs/s from the moment the prepared workers are told
  to start until every job of a backlog enqueued beforehand is done;
- pickup: an idle worker, a job enqueued every 20 ms that notes the time it started
  (``time.time()``, the clock PostgreSQL's ``clock_timestamp()`` reads: one machine); p50 and
  p99 of start minus the time the enqueue was called, and the p50s from the enqueue's commit
  and from its return. The commit's time is the server's, stamped by a trigger on the
  system's job table, the same for all three: deferred to the commit, it fires inside
  COMMIT just before the commit itself (nothing of the enqueue's follows it but writing
  the commit record and queuing the notifications), so the pickup from it is an upper
  bound, microseconds above the truth.

Configuration: conveyor's thread pool; Procrastinate's worker (async tasks, LISTEN/NOTIFY,
finished jobs kept as it does by default); pgqueuer's QueueManager (async entrypoints, the
asyncpg driver when installed, else psycopg's (``PgQueuer.driver``), ``max_concurrent_tasks``
= the concurrency and ``batch_size`` half of it, the most it accepts). Each at its defaults
otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import psycopg

from bench import bodies
from bench.postgres_server import PostgresServer
from bench.procs import TICK, process_tree, stat_fields

BATCH = 1000
STAMPS = (
    "CREATE TABLE IF NOT EXISTS bench_pickup "
    "(enqueued_at double precision NOT NULL, started_at double precision NOT NULL)"
)


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


def note_commits(url: str, table: str) -> None:
    """Stamp each commit that inserts into ``table`` (see the module's docstring)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE bench_commits (n bigserial PRIMARY KEY, at double precision NOT NULL)"
        )
        conn.execute(
            "CREATE FUNCTION bench_note_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "INSERT INTO bench_commits (at) VALUES (extract(epoch FROM clock_timestamp())); "
            "RETURN NULL; END $$"
        )
        conn.execute(
            f"CREATE CONSTRAINT TRIGGER bench_note_commit AFTER INSERT ON {table} "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bench_note_commit()"
        )


_stamp_conn: psycopg.Connection[Any] | None = None


def note_pickup(url: str, enqueued_at: float) -> None:
    """The body of every system's stamp task: how long the job waited to start."""
    started_at = time.time()
    global _stamp_conn
    if _stamp_conn is None:
        _stamp_conn = psycopg.connect(url, autocommit=True)
    _stamp_conn.execute("INSERT INTO bench_pickup VALUES (%s, %s)", [enqueued_at, started_at])


def cpu_seconds(pid: int) -> float:
    """User and system CPU of a process (its threads included), from /proc."""
    fields = stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / TICK


def server_cpu_seconds(postmaster: int) -> float:
    """CPU of a PostgreSQL server: the postmaster, with the children it has reaped, and its
    live descendants (backends, autovacuum, the WAL writer...)."""
    fields = stat_fields(postmaster)
    total = sum(int(fields[i]) for i in (11, 12, 13, 14)) / TICK
    for pid in process_tree(postmaster)[1:]:
        with contextlib.suppress(OSError):  # gone meanwhile: reaped into the postmaster's
            total += cpu_seconds(pid)
    return total


def scalar(url: str, query: str) -> Any:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query).fetchone()
    return None if row is None else row[0]


# -- the systems -------------------------------------------------------------------------------


class System:
    name = ""
    pending_sql = ""
    #: whether fewer than %(n)s jobs wait to be taken: each system's claim index counts them
    taken_sql = ""
    #: how many jobs succeeded, where the system keeps finished jobs ("" if it does not)
    succeeded_sql = ""
    jobs_table = ""  # where an enqueue inserts its job

    def __init__(self, url: str) -> None:
        self.url = url
        self._watch: psycopg.Connection[Any] | None = None

    def version(self) -> str:
        raise NotImplementedError

    def open(self) -> None:
        """Create the schema and open the enqueuing side."""

    def close(self) -> None: ...

    def enqueue_one(self) -> None:
        raise NotImplementedError

    def enqueue_bulk(self, n: int) -> None:
        raise NotImplementedError

    def enqueue_stamp(self, at: float) -> None:
        raise NotImplementedError

    def pending(self) -> bool:
        """Whether jobs are left: asked every 20 ms while the workers run, on one connection,
        through the system's own indexes, so that watching costs the server little (a
        connection per look, or a count over the table, took more of its time than a
        worker did)."""
        return bool(self._look(self.pending_sql))

    def taken(self, n: int) -> bool:
        """Whether a worker has taken one of the ``n`` jobs enqueued (asked every millisecond
        until it has, through the claim's index)."""
        return bool(self._look(self.taken_sql, {"n": n}))

    def succeeded(self) -> int | None:
        return int(self._look(self.succeeded_sql)) if self.succeeded_sql else None

    def _look(self, query: str, params: dict[str, Any] | None = None) -> Any:
        if self._watch is None:
            self._watch = psycopg.connect(self.url, autocommit=True)
        row = self._watch.execute(query, params).fetchone()
        return None if row is None else row[0]

    def close_watch(self) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None

    def worker(self, concurrency: int, *, threaded: bool = False) -> Callable[[], None]:
        """In the worker process: prepare, and return the function that runs until SIGTERM.
        ``threaded``: the async peers run the no-op task as synchronous code on a thread, as
        a user's synchronous task runs (bench/like.py); else as an ``async def`` task."""
        raise NotImplementedError


class Conveyor(System):
    name = "conveyor"
    jobs_table = "bench_jobs"
    taken_sql = "SELECT count(*) < %(n)s FROM bench_jobs WHERE state = 'queued' AND parked IS NULL"
    succeeded_sql = "SELECT count(*) FROM bench_jobs WHERE state = 'succeeded'"

    def version(self) -> str:
        import conveyor

        return conveyor.__version__

    def _app(self) -> Any:
        import conveyor

        app = conveyor.App(self.url, namespace="bench")
        url = self.url

        @app.task(name="bench.noop")
        def noop() -> None:
            return bodies.work()

        @app.task(name="bench.stamp")
        def stamp(enqueued_at: float) -> None:
            note_pickup(url, enqueued_at)

        return app

    def open(self) -> None:
        self.app = self._app()
        self.app.backend  # noqa: B018 - create the schema now
        self.noop = self.app.registry.get("bench.noop")
        self.stamp = self.app.registry.get("bench.stamp")
        # the claim's and the lease recovery's partial indexes (a bench job never waits
        # for a time or a limit)
        self.pending_sql = (
            "SELECT EXISTS (SELECT FROM bench_jobs WHERE state = 'queued' AND parked IS NULL)"
            " OR EXISTS (SELECT FROM bench_jobs WHERE state = 'running')"
        )

    def close(self) -> None:
        self.app.close()

    def enqueue_one(self) -> None:
        self.noop.delay()

    def enqueue_bulk(self, n: int) -> None:
        self.app.enqueue_many((self.noop.s() for _ in range(n)), batch_size=BATCH)

    def enqueue_stamp(self, at: float) -> None:
        self.stamp.delay(at)

    def worker(self, concurrency: int, *, threaded: bool = False) -> Callable[[], None]:
        app = self._app()
        app.backend  # noqa: B018 - connect now, not on the clock
        worker = app.worker(concurrency=concurrency, schedule=False)
        return worker.run


class Procrastinate(System):
    name = "procrastinate"
    jobs_table = "procrastinate_jobs"
    pending_sql = "SELECT EXISTS (SELECT FROM procrastinate_jobs WHERE status IN ('todo', 'doing'))"
    taken_sql = "SELECT count(*) < %(n)s FROM procrastinate_jobs WHERE status = 'todo'"
    succeeded_sql = "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"

    def version(self) -> str:
        from importlib.metadata import version

        return version("procrastinate")

    def _app(self, *, sync: bool, threaded: bool = False) -> Any:
        import procrastinate

        connector = (
            procrastinate.SyncPsycopgConnector(conninfo=self.url)
            if sync
            else procrastinate.PsycopgConnector(conninfo=self.url)
        )
        app = procrastinate.App(connector=connector)
        url = self.url

        if threaded:  # a synchronous task: Procrastinate runs it on the loop's executor

            @app.task(name="bench.noop")
            def noop() -> None:
                bodies.work()

        else:

            @app.task(name="bench.noop")
            async def noop_async() -> None:
                await bodies.awork()

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

    def enqueue_stamp(self, at: float) -> None:
        self.stamp.defer(enqueued_at=at)

    def worker(self, concurrency: int, *, threaded: bool = False) -> Callable[[], None]:
        app = self._app(sync=False, threaded=threaded)

        def run() -> None:
            async def main() -> None:
                threads_for_bodies(concurrency)
                async with app.open_async():
                    await app.run_worker_async(concurrency=concurrency, wait=True)

            asyncio.run(main())

        return run


class PgQueuer(System):
    name = "pgqueuer"
    jobs_table = "pgqueuer"
    pending_sql = "SELECT EXISTS (SELECT FROM pgqueuer)"
    taken_sql = "SELECT count(*) < %(n)s FROM pgqueuer WHERE status = 'queued'"

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

    def enqueue_stamp(self, at: float) -> None:
        self.queries.enqueue("bench.stamp", json.dumps(at).encode(), 0)

    @staticmethod
    def driver() -> str:
        """asyncpg, the driver of pgqueuer's README, when installed (``pgqueuer[asyncpg]``):
        through psycopg's, whose one connection waits up to 1 s for a notification before a
        query can run, a worker stalls a second whenever its jobs do not finish at once (an
        ``await`` of any I/O; 11 jobs/s where asyncpg does 1,100, pgqueuer 1.6.0)."""
        try:
            import asyncpg  # noqa: F401
        except ImportError:
            return "psycopg"
        return "asyncpg"

    def worker(self, concurrency: int, *, threaded: bool = False) -> Callable[[], None]:
        from pgqueuer import Queries, QueueManager

        url = self.url

        def run() -> None:
            async def main() -> None:
                threads_for_bodies(concurrency)
                if self.driver() == "asyncpg":
                    import asyncpg
                    from pgqueuer import AsyncpgDriver

                    conn: Any = await asyncpg.connect(url)
                    manager = QueueManager(Queries(AsyncpgDriver(conn)))
                else:
                    from pgqueuer import PsycopgDriver

                    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
                    manager = QueueManager(Queries(PsycopgDriver(conn)))

                @manager.entrypoint("bench.noop")
                async def noop(job: Any) -> None:
                    # pgqueuer 1.x refuses synchronous entrypoints and tells its users to
                    # wrap blocking code in asyncio.to_thread(): that is the threaded shape
                    await (asyncio.to_thread(bodies.work) if threaded else bodies.awork())

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


def threads_for_bodies(concurrency: int) -> None:
    """The running loop's default executor, where the async peers run synchronous code
    (``asyncio.to_thread``, Procrastinate's synchronous tasks): as many threads as jobs run at
    once, as conveyor's pool has (the default executor has min(32, CPUs + 4))."""
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(concurrency))


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
    system: System, name: str, concurrency: int, processes: int, jobs: int, server: int | None
) -> float:
    """Jobs/s; with ``server`` (the postmaster's PID) it also prints the CPU per job of the
    server's processes and of the workers over the run (not in the table)."""
    system.enqueue_bulk(jobs)
    workers = Workers(name, system.url, concurrency, processes)
    try:
        server_cpu = server_cpu_seconds(server) if server else 0.0
        worker_cpu = sum(cpu_seconds(p.pid) for p in workers.procs)
        started = time.perf_counter()
        workers.go()
        deadline = time.monotonic() + 600
        while system.pending():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: jobs left after 600 s")
            time.sleep(0.02)
        rate = jobs / (time.perf_counter() - started)
        if server:
            server_cpu = server_cpu_seconds(server) - server_cpu
            worker_cpu = sum(cpu_seconds(p.pid) for p in workers.procs) - worker_cpu
            print(
                f"  {name} {processes} process(es): CPU per job: server "
                f"{server_cpu / jobs * 1e6:.1f} us, workers {worker_cpu / jobs * 1e6:.1f} us",
                flush=True,
            )
        return rate
    finally:
        workers.stop()


def measure_pickup(system: System, name: str, concurrency: int, samples: int) -> dict[str, float]:
    """From the enqueue call, from its commit (the server's stamp) and from its return."""
    note_commits(system.url, system.jobs_table)
    workers = Workers(name, system.url, concurrency, 1)
    returned: dict[float, float] = {}
    try:
        workers.go()
        time.sleep(2.0)  # the worker is idle, listening
        for _ in range(samples):
            at = time.time()
            system.enqueue_stamp(at)
            returned[at] = time.time()
            time.sleep(0.02)
        deadline = time.monotonic() + 60
        while scalar(system.url, "SELECT count(*) FROM bench_pickup") < samples:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: stamps missing after 60 s")
            time.sleep(0.05)
    finally:
        workers.stop()
    with psycopg.connect(system.url) as conn:
        rows = conn.execute(
            "SELECT enqueued_at, started_at FROM bench_pickup ORDER BY enqueued_at"
        ).fetchall()
        commits = [at for (at,) in conn.execute("SELECT at FROM bench_commits ORDER BY n")]
    if len(commits) != len(rows):  # one enqueue at a time, one job each: the k-th commit
        raise RuntimeError(f"{name}: {len(commits)} commits stamped for {len(rows)} jobs")
    if any(not at <= c <= returned[at] for (at, _), c in zip(rows, commits, strict=True)):
        raise RuntimeError(f"{name}: a commit stamped outside its enqueue call")
    called = sorted((started - at) * 1000 for at, started in rows)
    committed = sorted((row[1] - at) * 1000 for row, at in zip(rows, commits, strict=True))
    after = sorted((started - returned[at]) * 1000 for at, started in rows)
    return {
        "pickup p50, ms": statistics.median(called),
        "pickup p99, ms": called[min(len(called) - 1, int(len(called) * 0.99))],
        "pickup p50 from the commit, ms": statistics.median(committed),
        "pickup p50 after the enqueue returned, ms": statistics.median(after),
    }


STEPS = ("enqueue", "e2e1", "e2e2", "pickup")


def measure_step(
    name: str, step: str, admin_url: str, args: argparse.Namespace
) -> dict[str, float]:
    """One step of one system, on a fresh database."""
    system = SYSTEMS[name](fresh_database(admin_url, f"bench_{name}_{step}"))
    system.open()
    try:
        if step == "enqueue":
            return measure_enqueue(system, args.single, args.bulk)
        if step == "pickup":
            return measure_pickup(system, name, args.concurrency, args.samples)
        processes = 1 if step == "e2e1" else 2
        key = f"end to end, {processes} process{'es' if processes > 1 else ''}, jobs/s"
        return {
            key: measure_throughput(
                system, name, args.concurrency, processes, args.jobs, args.server_pid
            )
        }
    finally:
        system.close_watch()
        system.close()


def run_all(
    names: list[str], admin_url: str, args: argparse.Namespace, out: Callable[[str], None]
) -> dict[str, dict[str, float]]:
    """Every step of every system, ``--reps`` times, the systems interleaved step by step
    (so that each comparison is made under the same load); the median of the reps."""
    found: dict[str, dict[str, list[float]]] = {name: {} for name in names}
    for rep in range(args.reps):
        for step in args.step or STEPS:
            for name in names:
                try:
                    numbers = measure_step(name, step, admin_url, args)
                except Exception as exc:  # a peer that cannot do a step: say so, go on
                    out(f"  {name} {step}: {type(exc).__name__}: {exc}")
                    continue
                for key, value in numbers.items():
                    found[name].setdefault(key, []).append(value)
                    out(f"  rep {rep + 1} {name:<14} {key:<34} {value:>10,.2f}")
    return {
        name: {key: statistics.median(values) for key, values in by_key.items()}
        for name, by_key in found.items()
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
    parser.add_argument("--step", action="append", choices=STEPS, help="default: all")
    parser.add_argument("--reps", type=int, default=1, help="the median of this many runs")
    parser.add_argument("--jobs", type=int, help="the end-to-end backlog")
    parser.add_argument("--samples", type=int, help="the pickups measured")
    args = parser.parse_args(argv)
    args.single, args.bulk, jobs, samples = (
        (200, 2000, 2000, 30) if args.quick else (2000, 50_000, 20_000, 200)
    )
    args.jobs = args.jobs or jobs
    args.samples = args.samples or samples
    lock = threading.Lock()

    def out(line: str) -> None:
        with lock:
            print(line, flush=True)

    versions: dict[str, str] = {}
    for name in args.system or list(SYSTEMS):
        try:
            versions[name] = SYSTEMS[name]("").version()
        except ImportError as exc:
            out(f"skipping {name}: {exc}")
    with PostgresServer() as server:
        out(f"PostgreSQL {server.version} on {server.url} (fsync off), "
            f"concurrency {args.concurrency}")  # fmt: skip
        args.server_pid = server.pid
        results = run_all(list(versions), server.url, args, out)
    print()
    print(table(results, versions))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
