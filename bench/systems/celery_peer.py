"""Celery on the bench's redis-server: the Redis broker, no result backend (``task_ignore_
result``; pickup uses the stamps side channel), early acks (the default), a prefetch
multiplier raised for short tasks, and the worker without gossip, mingle and heartbeat, as
Celery's optimizing guide advises. The pool (``threads`` or ``prefork``) is part of the
target's name."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import celery
import redis
from celery import Celery, group

from bench import bodies
from bench.core import Target
from bench.redis_server import flush
from bench.systems import stamps

QUEUE = "celery"
#: Celery's guide: "if you have many tasks with a short duration ... set the multiplier high"
PREFETCH_MULTIPLIER = 64


def make_app(url: str) -> tuple[Celery, Any, Any]:
    app = Celery("bench", broker=url, set_as_current=False)
    app.conf.update(
        task_ignore_result=True,
        task_acks_late=False,
        worker_prefetch_multiplier=PREFETCH_MULTIPLIER,
        worker_send_task_events=False,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
    )

    @app.task(name="bench.noop")
    def noop() -> None:
        return bodies.work()

    @app.task(name="bench.stamp")
    def stamp(token: str) -> None:
        stamps.stamp(token)

    return app, noop, stamp


class CeleryTarget(Target):
    system = "celery"
    needs_redis = True

    def __init__(self, pool: str, concurrencies: tuple[int, ...]) -> None:
        self.pool = pool
        self.store = f"redis-{pool}"
        self.concurrencies = concurrencies
        self.pickup_concurrency = concurrencies[0]
        self.throughput_jobs = 6000  # about 1,000 jobs/s: six seconds a run
        self.measures_enqueue = pool == "threads"  # the enqueuing code is the same for both
        self.config = (
            f"Redis broker, `--pool {pool}`, `worker_prefetch_multiplier={PREFETCH_MULTIPLIER}`,"
            " early acks (default), `task_ignore_result=True` (no result backend), "
            "`--without-gossip --without-mingle --without-heartbeat`"
        )
        self._app: Celery | None = None
        self._tasks: tuple[Any, Any] | None = None
        self._client: redis.Redis | None = None
        self._stamps: stamps.Stamps | None = None

    @property
    def version(self) -> str:
        return str(celery.__version__)

    def fresh(self, workdir: Path) -> None:
        self.close()
        flush(self.redis_url)
        app, noop, stamp = make_app(self.redis_url)
        self._app, self._tasks = app, (noop, stamp)
        self._client = redis.Redis.from_url(self.redis_url)
        self._stamps = stamps.Stamps(self.redis_url)
        with app.connection_for_write() as conn:
            conn.ensure_connection()

    def close(self) -> None:
        if self._app is not None:
            self._app.close()
            self._app = None
        for client in (self._client, self._stamps):
            if client is not None:
                client.close()
        self._client = self._stamps = None

    @property
    def tasks(self) -> tuple[Any, Any]:
        if self._tasks is None:
            raise RuntimeError("call fresh() first")
        return self._tasks

    def enqueue_one(self) -> None:
        self.tasks[0].delay()

    def enqueue_bulk(self, n: int, batch: int) -> None:
        noop = self.tasks[0]
        for start in range(0, n, batch):
            group(noop.s() for _ in range(min(batch, n - start))).apply_async()

    def pending(self) -> int:
        """Waiting in the list, or taken and not yet acknowledged (early acks: acknowledged
        as the task starts, so a no-op's own run is the error)."""
        assert self._client is not None
        pipe = self._client.pipeline(transaction=False)
        pipe.llen(QUEUE)
        pipe.hlen("unacked")
        waiting, unacked = pipe.execute()
        return int(waiting) + int(unacked)

    def enqueue_stamp(self) -> object:
        token = stamps.token()
        self.tasks[1].delay(token)
        return token

    def stamp_results(self, handles: list[object], timeout: float) -> list[float]:
        assert self._stamps is not None
        return self._stamps.collect([str(h) for h in handles], timeout)

    def worker_spec(self) -> dict[str, Any]:
        return {"url": self.redis_url, "pool": self.pool}


def targets() -> list[Target]:
    # Tried before the full run (10,000 jobs): threads 8 ≈ 32; prefork 2 ≥ 4 on two cores.
    return [CeleryTarget("threads", (8,)), CeleryTarget("prefork", (2,))]


def prepare_worker(spec: dict[str, Any], concurrency: int) -> Callable[[], None]:
    app, _, _ = make_app(spec["url"])
    stamps.open_worker(spec["url"])
    with app.connection_for_write() as conn:
        conn.ensure_connection()
    logging.getLogger("celery").setLevel(logging.WARNING)
    argv = ["worker", f"--pool={spec['pool']}", f"--concurrency={concurrency}",
            "--loglevel=WARNING", "--without-gossip", "--without-mingle",
            "--without-heartbeat", f"--queues={QUEUE}"]  # fmt: skip
    return lambda: app.worker_main(argv)
