"""Dramatiq on the bench's redis-server: ``RedisBroker`` with its default middleware, one
``dramatiq.Worker`` per process with N worker threads (what the ``dramatiq`` command runs in
each of its processes); the consumer prefetches twice the threads (its default). Actors do
not retry (a no-op does not fail). Pickup uses the stamps side channel."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

from bench import bodies
from bench.core import Target
from bench.redis_server import flush
from bench.systems import stamps

QUEUE = "default"


def make_broker(url: str) -> tuple[RedisBroker, Any, Any]:
    broker = RedisBroker(url=url)

    def noop() -> None:
        return bodies.work()

    def stamp(token: str) -> None:
        stamps.stamp(token)

    actor_noop = dramatiq.actor(noop, broker=broker, actor_name="bench_noop", max_retries=0)
    actor_stamp = dramatiq.actor(stamp, broker=broker, actor_name="bench_stamp", max_retries=0)
    return broker, actor_noop, actor_stamp


class DramatiqTarget(Target):
    system = "dramatiq"
    store = "redis"
    needs_redis = True
    concurrencies = (8, 32)
    config = "`RedisBroker`, default middleware, `dramatiq.Worker(broker, worker_threads=C)`"

    def __init__(self) -> None:
        self._broker: RedisBroker | None = None
        self._actors: tuple[Any, Any] | None = None
        self._client: redis.Redis | None = None
        self._stamps: stamps.Stamps | None = None

    @property
    def version(self) -> str:
        return str(dramatiq.__version__)

    def fresh(self, workdir: Path) -> None:
        self.close()
        flush(self.redis_url)
        broker, noop, stamp = make_broker(self.redis_url)
        self._broker, self._actors = broker, (noop, stamp)
        self._client = redis.Redis.from_url(self.redis_url)
        self._stamps = stamps.Stamps(self.redis_url)

    def close(self) -> None:
        if self._broker is not None:
            self._broker.close()
            self._broker = None
        for client in (self._client, self._stamps):
            if client is not None:
                client.close()
        self._client = self._stamps = None

    @property
    def actors(self) -> tuple[Any, Any]:
        if self._actors is None:
            raise RuntimeError("call fresh() first")
        return self._actors

    def enqueue_one(self) -> None:
        self.actors[0].send()

    def enqueue_bulk(self, n: int, batch: int) -> None:
        noop, broker = self.actors[0], self._broker
        for start in range(0, n, batch):
            messages = (noop.message() for _ in range(min(batch, n - start)))
            dramatiq.group(messages, broker=broker).run()

    def pending(self) -> int:
        """Messages stay in the queue's ``.msgs`` hash until acknowledged after they ran."""
        assert self._client is not None
        return int(self._client.hlen(f"dramatiq:{QUEUE}.msgs"))

    def check_done(self, n: int) -> None:
        assert self._client is not None
        dead = int(self._client.hlen(f"dramatiq:{QUEUE}.XQ.msgs"))
        if dead:
            raise RuntimeError(f"{self.name}: {dead} of {n} messages dead-lettered")

    def enqueue_stamp(self) -> object:
        token = stamps.token()
        self.actors[1].send(token)
        return token

    def stamp_results(self, handles: list[object], timeout: float) -> list[float]:
        assert self._stamps is not None
        return self._stamps.collect([str(h) for h in handles], timeout)

    def worker_spec(self) -> dict[str, Any]:
        return {"url": self.redis_url}


def targets() -> list[Target]:
    return [DramatiqTarget()]


def prepare_worker(spec: dict[str, Any], concurrency: int) -> Callable[[], None]:
    broker, _, _ = make_broker(spec["url"])
    stamps.open_worker(spec["url"])
    stop = threading.Event()

    def run() -> None:
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        worker = dramatiq.Worker(broker, worker_threads=concurrency)
        worker.start()
        stop.wait()
        worker.stop()

    return run
