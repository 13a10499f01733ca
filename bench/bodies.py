"""What the benchmark's work task does, the same in every system: nothing (``noop``), or one
pipelined round trip to a Redis server (``roundtrip``), as a real task does some I/O.

Each system's no-op task calls ``work()``; a worker process is told which body to run before
it prepares (``configure``), so every system runs exactly the same body. The round trip goes
to a Redis server of its own (not the queue's store), an INCR and a GET in one pipeline.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

BODIES = ("noop", "roundtrip")

_client: Any = None
_local = threading.local()


def configure(body: str | None, url: str | None) -> None:
    """Set this process's body: ``noop`` (or None) does nothing, ``roundtrip`` talks to
    ``url``."""
    global _client
    if body in (None, "noop"):
        _client = None
        return
    if body != "roundtrip" or not url:
        raise ValueError(f"unknown body {body!r} (or no Redis URL for it)")
    import redis

    _client = redis.Redis.from_url(url)
    _client.ping()


def work() -> None:
    """The task body: one pipelined round trip when configured, else nothing."""
    client = _client
    if client is None:
        return
    pipe = getattr(_local, "pipe", None)
    if pipe is None:
        pipe = _local.pipe = client.pipeline(transaction=False)
    pipe.incr("bench:body")
    pipe.get("bench:body")
    pipe.execute()


async def awork() -> None:
    """The body in an ``async def`` task: the no-op inline (nothing blocks), the round trip on
    a thread of the loop's executor (``asyncio.to_thread``), as an async task runs blocking
    code (bench/pg.py's async tasks)."""
    if _client is not None:
        await asyncio.to_thread(work)
