"""conveyor on SQLite (``synchronous=full``, the default, and ``synchronous=normal``) and on
Redis (the bench's own server, namespace ``bench``), thread pool, default settings."""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, cast

import conveyor
from bench.apps import NOOP, STAMP, make_app
from bench.core import Target
from bench.redis_server import flush
from conveyor.worker.allocator import cap_malloc_arenas, trim_malloc

NAMESPACE = "bench"


class ConveyorTarget(Target):
    system = "conveyor"
    pool = "thread"
    _app: conveyor.App | None = None
    _url = ""

    @property
    def version(self) -> str:
        return conveyor.__version__

    @property
    def app(self) -> conveyor.App:
        if self._app is None:
            raise RuntimeError("call fresh() first")
        return self._app

    def fresh(self, workdir: Path) -> None:
        self.close()
        self._url = self.url(workdir)
        self._app = make_app(self._url, NAMESPACE)
        self._app.backend  # noqa: B018 -- open (and create) the store now, outside any timing

    def url(self, workdir: Path) -> str:
        """A new, empty store."""
        raise NotImplementedError

    def close(self) -> None:
        if self._app is not None:
            self._app.close()
            self._app = None

    def _task(self, name: str) -> conveyor.Task[[], Any]:
        return cast("conveyor.Task[[], Any]", self.app.registry.get(name))

    def enqueue_one(self) -> None:
        self._task(NOOP).delay()

    def enqueue_bulk(self, n: int, batch: int) -> None:
        noop = self._task(NOOP)
        self.app.enqueue_many((noop.s() for _ in range(n)), batch_size=batch)

    def pending(self) -> int:
        counts = self.app.backend.queue_counts()
        return sum(n for states in counts.values() for s, n in states.items() if not s.is_final)

    def check_done(self, n: int) -> None:
        counts = self.app.backend.queue_counts()
        succeeded = sum(states.get(conveyor.State.SUCCEEDED, 0) for states in counts.values())
        if succeeded != n:
            raise RuntimeError(f"{self.name}: {succeeded} of {n} jobs succeeded: {counts}")

    def enqueue_stamp(self) -> object:
        return self._task(STAMP).delay()

    def stamp_results(self, handles: list[object], timeout: float) -> list[float]:
        return [float(cast(conveyor.Job, h).result(timeout=timeout)) for h in handles]

    def worker_spec(self) -> dict[str, Any]:
        return {"url": self._url, "pool": self.pool, "namespace": NAMESPACE}

    def embedded_worker(self, concurrency: int) -> AbstractContextManager[object]:
        return self.app.worker(concurrency=concurrency, pool=self.pool, schedule=False)


class ConveyorSQLite(ConveyorTarget):
    def __init__(self, synchronous: str, pool: str = "thread") -> None:
        self.synchronous = synchronous
        self.pool = pool
        self.store = f"sqlite-{synchronous}" + ("" if pool == "thread" else f"-{pool}")
        self.config = f"`sqlite:///FILE?synchronous={synchronous}` (WAL), {pool} pool"

    def url(self, workdir: Path) -> str:
        path = workdir / f"{self.store}-{os.urandom(4).hex()}.db"
        query = "" if self.synchronous == "full" else f"?synchronous={self.synchronous}"
        return f"sqlite:///{path}{query}"


class ConveyorRedis(ConveyorTarget):
    store = "redis"
    needs_redis = True
    config = f"`redis://127.0.0.1:PORT/0`, namespace `{NAMESPACE}`, thread pool"

    def url(self, workdir: Path) -> str:
        flush(self.redis_url)
        return self.redis_url


def targets() -> list[Target]:
    return [ConveyorRedis(), ConveyorSQLite("full"), ConveyorSQLite("normal")]


def prepare_worker(spec: dict[str, Any], concurrency: int) -> Callable[[], None]:
    # the process is a worker as `conveyor worker` starts it: malloc arenas capped before the
    # app loads, and what start-up freed handed back before the threads run
    cap_malloc_arenas()
    app = make_app(spec["url"], spec.get("namespace"))
    app.backend  # noqa: B018 -- connect before "ready"
    worker = app.worker(concurrency=concurrency, pool=spec["pool"], schedule=False)
    trim_malloc()
    return worker.run
