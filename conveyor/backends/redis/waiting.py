"""How a Redis backend waits: idle workers block on a wake list of their own, ``job.result()``
waits on pub/sub. A mixin of ``RedisBackend``."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from conveyor.backends.redis.connection import RETRYABLE, Connection
from conveyor.backends.redis.listener import Listener
from conveyor.job import JobRecord

MAX_BLOCK_SECONDS = 1.0  # one BLPOP, well within the socket timeout; then look again


class Waiting:
    _prefix: str
    _connection: Connection
    _listener: Listener
    _local: threading.local
    _run: Callable[..., Any]

    def get(self, job_id: str) -> JobRecord | None:
        raise NotImplementedError

    def wait_for_jobs(self, queues: Sequence[str], timeout: float) -> None:
        # One script looks and registers this thread as a waiter; a job enqueued after the
        # look pushes onto its wake list, where the thread blocks: the server wakes it
        # directly, one hop, with no subscriber thread in between.
        queues = list(dict.fromkeys(queues))
        deadline = time.monotonic() + timeout
        if not queues:
            time.sleep(timeout)
            return
        waiter = self._waiter()
        wake = f"{self._prefix}wake:{waiter}"
        while True:
            first = self._run("probe", waiter, *queues)
            if first == b"ready":
                return
            remaining = deadline - time.monotonic()
            if first:
                remaining = min(remaining, float(first) - time.time())
            if remaining < 0.001:  # BLPOP would read less as 0: block for ever
                return
            # well within the socket timeout, which a worker with a short lease lowers
            block = min(remaining, MAX_BLOCK_SECONDS, self._connection.socket_timeout / 2)
            try:
                # the probe chose the client; the held connection skips the pool's checks
                if self._connection.execute("BLPOP", wake, block) is not None:
                    return
            except RETRYABLE:
                return  # the caller looks again; a restarted server lost the registration
            if block == remaining:
                return

    def _waiter(self) -> str:
        """This thread's waiter id: each waiting thread has a wake list of its own."""
        waiter: str | None = getattr(self._local, "waiter", None)
        if waiter is None:
            waiter = self._local.waiter = uuid.uuid4().hex[:16]
        return waiter

    def wait_for_change(self, job_id: str, timeout: float) -> None:
        self._listener.ensure_started()
        with self._listener.watch(job_id) as signal:
            signal.wait(timeout)

    def wait_final(self, job_id: str, timeout: float | None) -> JobRecord | None:
        self._listener.ensure_started()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._listener.watch(job_id) as signal:
            while True:
                since = signal.generation
                record = self.get(job_id)
                if record is None or record.state.is_final:
                    return record
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return record
                signal.wait(5.0 if remaining is None else min(remaining, 5.0), since)
