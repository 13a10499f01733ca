"""RQ on the bench's redis-server: ``SimpleWorker`` (runs jobs in the worker process; RQ's
default ``Worker`` forks a child per job, measured as ``rq/redis-fork`` on fewer jobs), one
job at a time per process, ``result_ttl=0`` (RQ's documented way not to keep results).
Pickup uses the stamps side channel."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
import rq
from rq import Queue, SimpleWorker, Worker
from rq.registry import FailedJobRegistry, StartedJobRegistry

from bench import bodies
from bench.core import Target
from bench.redis_server import flush
from bench.systems import stamps

QUEUE = "default"


def noop() -> None:
    return bodies.work()


def stamp(token: str) -> None:
    stamps.stamp(token)


class RQTarget(Target):
    system = "rq"
    needs_redis = True
    concurrencies = (1,)
    pickup_concurrency = 1

    def __init__(self, worker: str) -> None:
        self.worker = worker
        self.store = "redis" if worker == "simple" else "redis-fork"
        if worker == "fork":
            self.measures_enqueue = False  # the same enqueuing code as rq/redis
            self.throughput_jobs = 600  # about 70 jobs/s
        else:
            self.throughput_jobs = 2000  # about 250 jobs/s
        kind = "`SimpleWorker`" if worker == "simple" else "`Worker` (fork per job)"
        self.config = f"{kind}, one job at a time per process, `result_ttl=0`"
        self._client: redis.Redis | None = None
        self._queue: Queue | None = None
        self._stamps: stamps.Stamps | None = None

    @property
    def version(self) -> str:
        return str(rq.__version__)

    def fresh(self, workdir: Path) -> None:
        self.close()
        flush(self.redis_url)
        self._client = redis.Redis.from_url(self.redis_url)
        self._queue = Queue(QUEUE, connection=self._client)
        self._stamps = stamps.Stamps(self.redis_url)

    def close(self) -> None:
        for client in (self._client, self._stamps):
            if client is not None:
                client.close()
        self._client = self._stamps = None
        self._queue = None

    @property
    def queue(self) -> Queue:
        if self._queue is None:
            raise RuntimeError("call fresh() first")
        return self._queue

    def enqueue_one(self) -> None:
        self.queue.enqueue(noop, result_ttl=0)

    def enqueue_bulk(self, n: int, batch: int) -> None:
        for start in range(0, n, batch):
            jobs = [Queue.prepare_data(noop, result_ttl=0) for _ in range(min(batch, n - start))]
            self.queue.enqueue_many(jobs)

    def pending(self) -> int:
        queue = self.queue
        return int(queue.count) + int(StartedJobRegistry(queue=queue).count)

    def check_done(self, n: int) -> None:
        failed = FailedJobRegistry(queue=self.queue).count
        if failed:
            raise RuntimeError(f"{self.name}: {failed} of {n} jobs failed")

    def enqueue_stamp(self) -> object:
        token = stamps.token()
        self.queue.enqueue(stamp, token, result_ttl=0)
        return token

    def stamp_results(self, handles: list[object], timeout: float) -> list[float]:
        assert self._stamps is not None
        return self._stamps.collect([str(h) for h in handles], timeout)

    def worker_spec(self) -> dict[str, Any]:
        return {"url": self.redis_url, "worker": self.worker}


def targets() -> list[Target]:
    return [RQTarget("simple"), RQTarget("fork")]


def prepare_worker(spec: dict[str, Any], concurrency: int) -> Callable[[], None]:
    client = redis.Redis.from_url(spec["url"])
    stamps.open_worker(spec["url"])
    kind = SimpleWorker if spec["worker"] == "simple" else Worker
    worker = kind([Queue(QUEUE, connection=client)], connection=client)

    def run() -> None:
        worker.work(logging_level="WARNING")

    return run
