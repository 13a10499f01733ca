"""The pickup side channel for the Redis peers that need no result backend otherwise
(Celery, Dramatiq, RQ): the stamp job takes ``time.time()`` first thing, then writes it into
one hash on the bench's redis-server under a token the enqueuing side chose. The write comes
after the stamp, so it is not part of the latency; no result backend is configured for the
throughput runs."""

from __future__ import annotations

import time
import uuid

import redis

KEY = "bench:stamps"


class Stamps:
    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)

    def record(self, token: str, started: float) -> None:
        self.client.hset(KEY, token, repr(started))

    def collect(self, tokens: list[str], timeout: float) -> list[float]:
        deadline = time.monotonic() + timeout
        while True:
            values = self.client.hmget(KEY, tokens)
            if all(v is not None for v in values):
                return [float(v) for v in values]
            if time.monotonic() > deadline:
                missing = sum(v is None for v in values)
                raise RuntimeError(f"{missing} of {len(tokens)} stamp jobs did not run")
            time.sleep(0.01)

    def close(self) -> None:
        self.client.close()


def token() -> str:
    return uuid.uuid4().hex


#: the worker process's channel, opened by ``prepare_worker`` before "ready"
WORKER: Stamps | None = None


def stamp(token: str) -> None:
    """The body of every peer's stamp task."""
    started = time.time()
    if WORKER is None:
        raise RuntimeError("stamps.WORKER is not open in this worker process")
    WORKER.record(token, started)


def open_worker(url: str) -> None:
    global WORKER
    WORKER = Stamps(url)
