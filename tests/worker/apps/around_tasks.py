"""An app with an ``around_job`` hook, for the pools test: the process pool's children import
it by reference, hooks included. The hook writes what it saw to the file the job names."""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator
from pathlib import Path

import conveyor

app = conveyor.App("memory://")

#: set by the hook, read by the task: the hook wraps the call in the same context
inside: contextvars.ContextVar[str | None] = contextvars.ContextVar("inside", default=None)


@app.around_job
@contextlib.contextmanager
def record_around(ctx: conveyor.JobContext) -> Iterator[None]:
    log = Path(os.environ["AROUND_LOG"])
    with log.open("a") as f:
        f.write(f"enter {ctx.task} {ctx.id} {os.getpid()}\n")
    token = inside.set(ctx.id)
    try:
        yield
    finally:
        inside.reset(token)
        with log.open("a") as f:
            f.write(f"exit {ctx.task} {ctx.id} {os.getpid()}\n")


@app.task(name="seen")
def seen() -> str | None:
    return inside.get()


@app.task(name="aseen")
async def aseen() -> str | None:
    return inside.get()


@app.task(name="boom")
def boom() -> None:
    raise ValueError("boom")
