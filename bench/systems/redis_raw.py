"""The Redis yardstick: redis-py (hiredis) and one list, no task queue. ``delay()`` is one
RPUSH (one round trip), ``enqueue_many`` RPUSHes pipelined ``batch`` at a time; its worker
process pops with one BLPOP per item (the floor under a worker that takes one job per round
trip), and pickup is push → BLPOP across two processes. ``yardstick`` adds pipelined push and
pop rates in one process."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from bench.core import Target
from bench.redis_server import flush
from bench.systems import stamps

QUEUE = "bench:raw"
PAYLOAD = b'{"task":"bench.noop","args":[],"kwargs":{}}'
PIPELINE = 1000


class RawRedis(Target):
    system = "redis-py"
    store = "raw"
    needs_redis = True
    concurrencies = (1,)
    pickup_concurrency = 1
    config = "redis-py with hiredis, RPUSH / BLPOP on one list; pipelines of 1,000"

    def __init__(self) -> None:
        self._client: redis.Redis | None = None
        self._stamps: stamps.Stamps | None = None

    @property
    def version(self) -> str:
        return str(redis.__version__)

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            raise RuntimeError("call fresh() first")
        return self._client

    def fresh(self, workdir: Path) -> None:
        self.close()
        flush(self.redis_url)
        self._client = redis.Redis.from_url(self.redis_url)
        self._stamps = stamps.Stamps(self.redis_url)
        self._client.ping()

    def close(self) -> None:
        for client in (self._client, self._stamps):
            if client is not None:
                client.close()
        self._client = self._stamps = None

    def enqueue_one(self) -> None:
        self.client.rpush(QUEUE, PAYLOAD)

    def enqueue_bulk(self, n: int, batch: int) -> None:
        for start in range(0, n, batch):
            pipe = self.client.pipeline(transaction=False)
            for _ in range(min(batch, n - start)):
                pipe.rpush(QUEUE, PAYLOAD)
            pipe.execute()

    def pending(self) -> int:
        return int(self.client.llen(QUEUE))

    def enqueue_stamp(self) -> object:
        token = stamps.token()
        self.client.rpush(QUEUE, b"stamp:" + token.encode())
        return token

    def stamp_results(self, handles: list[object], timeout: float) -> list[float]:
        assert self._stamps is not None
        return self._stamps.collect([str(h) for h in handles], timeout)

    def worker_spec(self) -> dict[str, Any]:
        return {"url": self.redis_url}

    def yardstick(self, workdir: Path, scale: float) -> dict[str, float]:
        n = max(PIPELINE, int(200_000 * scale))
        self.fresh(workdir)
        try:
            start = time.perf_counter()
            self.enqueue_bulk(n, PIPELINE)
            pushed = time.perf_counter()
            for _ in range(0, n, PIPELINE):
                pipe = self.client.pipeline(transaction=False)
                for _ in range(PIPELINE):
                    pipe.lpop(QUEUE)
                pipe.execute()
            popped = time.perf_counter()
        finally:
            self.close()
        return {"raw_push_per_s": n / (pushed - start), "raw_pop_per_s": n / (popped - pushed)}


def targets() -> list[Target]:
    return [RawRedis()]


def prepare_worker(spec: dict[str, Any], concurrency: int) -> Callable[[], None]:
    client = redis.Redis.from_url(spec["url"])
    stamps.open_worker(spec["url"])
    client.ping()
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    def run() -> None:
        signal.signal(signal.SIGTERM, stop)
        while not stopping:
            item = client.blpop([QUEUE], timeout=0.2)
            if item is not None and item[1].startswith(b"stamp:"):
                stamps.stamp(item[1][6:].decode())

    return run
