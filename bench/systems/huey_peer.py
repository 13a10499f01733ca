"""Huey: ``RedisHuey`` on the bench's redis-server (blocking dequeue, BRPOP) and ``SqliteHuey``
(WAL; ``fsync=None``, its default, leaves SQLite's ``synchronous=FULL``; ``fsync=False`` sets
``synchronous=OFF``, less durable than conveyor's NORMAL). One consumer per process with N
worker threads and periodic tasks off (``-n``); the polling delays are Huey's defaults
(0.1 s initial, backoff 1.15, 10 s max). Pickup uses Huey's own result store."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import huey
from huey import RedisHuey, SqliteHuey
from huey.api import Huey, Result

from bench import bodies
from bench.core import Target, Unsupported
from bench.redis_server import flush


def make_huey(spec: dict[str, Any]) -> tuple[Huey, Any, Any]:
    if spec["store"] == "redis":
        app: Huey = RedisHuey("bench", url=spec["url"])
    else:
        app = SqliteHuey("bench", filename=spec["path"], fsync=spec["fsync"])

    @app.task(name="bench.noop")
    def noop() -> None:
        return bodies.work()

    @app.task(name="bench.stamp")
    def stamp() -> float:
        import time

        return time.time()

    return app, noop, stamp


class HueyTarget(Target):
    system = "huey"
    concurrencies = (8, 32)

    def __init__(self, store: str, fsync: bool | None = None) -> None:
        self.store = store
        self.fsync = fsync
        self.needs_redis = store == "redis"
        if store == "redis":
            self.config = "`RedisHuey` (blocking BRPOP), thread workers, `-n`"
        else:
            sync = {None: "FULL (default)", False: "OFF (`fsync=False`)"}[fsync]
            self.config = f"`SqliteHuey` WAL, synchronous {sync}, thread workers, `-n`"
        if store != "redis":
            self.throughput_jobs = 6000  # about 2,000 jobs/s
        self._spec: dict[str, Any] = {}
        self._huey: Huey | None = None
        self._tasks: tuple[Any, Any] | None = None

    @property
    def version(self) -> str:
        return str(huey.__version__)

    def fresh(self, workdir: Path) -> None:
        self.close()
        if self.store == "redis":
            flush(self.redis_url)
            self._spec = {"store": "redis", "url": self.redis_url}
        else:
            path = workdir / f"huey-{self.store}-{os.urandom(4).hex()}.db"
            self._spec = {"store": self.store, "path": str(path), "fsync": self.fsync}
        self._huey, noop, stamp = make_huey(self._spec)
        self._tasks = (noop, stamp)
        self._huey.pending_count()  # connect (and create the tables) outside any timing

    def close(self) -> None:
        if self._huey is not None:
            storage = self._huey.storage
            conn = getattr(storage, "conn", None)  # SqliteStorage: this thread's connection
            if self.store != "redis" and conn is not None:
                storage.close()
            self._huey = None

    @property
    def tasks(self) -> tuple[Any, Any]:
        if self._tasks is None:
            raise RuntimeError("call fresh() first")
        return self._tasks

    def enqueue_one(self) -> None:
        self.tasks[0]()

    def enqueue_bulk(self, n: int, batch: int) -> None:
        raise Unsupported("Huey has no bulk enqueue (Task.map enqueues one by one)")

    def pending(self) -> int:
        """Queued jobs (a job a consumer thread took is no longer counted: no-ops are short)."""
        assert self._huey is not None
        return int(self._huey.pending_count())

    def enqueue_stamp(self) -> object:
        return self.tasks[1]()

    def stamp_results(self, handles: list[object], timeout: float) -> list[float]:
        out = []
        for handle in handles:
            assert isinstance(handle, Result)
            out.append(float(handle.get(blocking=True, timeout=timeout)))
        return out

    def worker_spec(self) -> dict[str, Any]:
        return self._spec


def targets() -> list[Target]:
    return [HueyTarget("redis"), HueyTarget("sqlite"), HueyTarget("sqlite-nofsync", False)]


def prepare_worker(spec: dict[str, Any], concurrency: int) -> Callable[[], None]:
    app, _, _ = make_huey(spec)
    app.pending_count()
    consumer = app.create_consumer(workers=concurrency, worker_type="thread", periodic=False)
    return consumer.run
