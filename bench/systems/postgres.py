"""conveyor, Procrastinate and pgqueuer on the bench's own PostgreSQL, for ``bench.like``.

The enqueuing side, the watch and the peers' workers are bench/pg.py's, one source for both
benches; conveyor's worker is the one of its other rows (bench/systems/conveyor.py): the same
app on another URL. Every run takes a fresh database of the one server (``postgres_url``).

Procrastinate and pgqueuer are asyncio workers. ``threaded`` (the like-for-like rows): they
run the task's body, synchronous code, on a thread of the loop's executor, given as many
threads as tasks run at once: Procrastinate as a plain ``def`` task (it runs those on the
executor), pgqueuer with ``asyncio.to_thread`` in an async entrypoint (1.x refuses synchronous
entrypoints and tells its users to do that). Not threaded (``*/postgres-async``): ``async def``
tasks, the no-op inline, the round trip still on a thread (``bodies.awork``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import pg
from bench.core import Target, Unsupported

NAMESPACE = "bench"  # bench/pg.py's conveyor app, whose tables are bench_*


class PostgresTarget(Target):
    needs_postgres = True

    def __init__(self, system: str, *, threaded: bool = True) -> None:
        self.system = system
        self.threaded = threaded
        self.store = "postgres" if threaded else "postgres-async"
        # about 450 (Procrastinate) and 500 to 1,000 (pgqueuer) jobs/s at 8: seconds a run
        self.throughput_jobs = {"procrastinate": 1500, "pgqueuer": 3000}.get(system)
        self._kind = pg.SYSTEMS[system]
        self._url = ""
        self._open: pg.System | None = None

    def fresh(self, workdir: Path) -> None:
        """A new database of the server, the system's schema in it (``workdir``: unused)."""
        self.close()
        self._url = pg.fresh_database(self.postgres_url, f"like_{self.system}")
        self._open = self._kind(self._url)
        self._open.open()

    @property
    def version(self) -> str:
        return self._kind("").version()

    @property
    def opened(self) -> pg.System:
        assert self._open is not None, "fresh() opens the system"
        return self._open

    def close(self) -> None:
        if self._open is not None:
            self._open.close_watch()
            self._open.close()
            self._open = None

    def enqueue_one(self) -> None:
        self.opened.enqueue_one()

    def enqueue_bulk(self, n: int, batch: int) -> None:
        self.opened.enqueue_bulk(n)  # bench/pg.py's batches, 1,000 as bench.like's

    def pending(self) -> int:
        """1 while a job is left, else 0: the watch asks no count (see ``taken``)."""
        return int(self.opened.pending())

    def taken(self, n: int) -> bool:
        return self.opened.taken(n)

    def finished(self) -> bool:
        return not self.opened.pending()

    def check_done(self, n: int) -> None:
        succeeded = self.opened.succeeded()  # None: pgqueuer deletes finished jobs
        if succeeded is not None and succeeded != n:
            raise RuntimeError(f"{self.name}: {succeeded} of {n} jobs succeeded")

    def enqueue_stamp(self) -> object:
        raise Unsupported("bench.pg measures pickup on PostgreSQL")

    def stamp_results(self, handles: list[object], timeout: float) -> list[float]:
        raise Unsupported("bench.pg measures pickup on PostgreSQL")

    def worker_spec(self) -> dict[str, Any]:
        if self.system == "conveyor":
            return {"url": self._url, "pool": "thread", "namespace": NAMESPACE}
        return {"system": self.system, "url": self._url, "threaded": self.threaded}


def targets() -> list[Target]:
    return [
        PostgresTarget("conveyor"),
        PostgresTarget("procrastinate"),
        PostgresTarget("pgqueuer"),
        PostgresTarget("procrastinate", threaded=False),
        PostgresTarget("pgqueuer", threaded=False),
    ]


def prepare_worker(spec: dict[str, Any], concurrency: int) -> Callable[[], None]:
    """Procrastinate's and pgqueuer's (``conveyor/postgres`` names the system ``conveyor``,
    whose module prepares its worker)."""
    return pg.SYSTEMS[spec["system"]](spec["url"]).worker(concurrency, threaded=spec["threaded"])
