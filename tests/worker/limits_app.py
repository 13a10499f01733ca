"""The app that the limits tests' worker processes run: ``python -m tests.worker.limits_app
[concurrency] [lease_seconds]``, with CONVEYOR_URL (and CONVEYOR_NAMESPACE) naming the store.
Each task appends its own start and end to a log, which the tests read."""

from __future__ import annotations

import os
import sys
import time

import conveyor

app = conveyor.App()
app.limit("shared.api", concurrency=2)


def log(path: str, what: str) -> None:
    ctx = conveyor.current_job()
    assert ctx is not None
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{what} {time.time():.6f} {ctx.id} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def hold(path: str, seconds: float) -> None:
    log(path, "start")
    time.sleep(seconds)
    log(path, "end")


@app.task(name="limits.pair", concurrency=2)
def pair(path: str, seconds: float) -> None:
    hold(path, seconds)


@app.task(name="limits.shared", limits=["shared.api"], limit_key=lambda user, *a: user)
def shared(user: str, path: str, seconds: float) -> None:
    hold(path, seconds)


@app.task(name="limits.paced", rate_limit="4/s")
def paced(path: str) -> None:
    log(path, "start")


@app.task(name="limits.solo", concurrency=1)
def solo(path: str, seconds: float) -> None:
    """Holds its one slot for ``seconds`` on the first attempt, briefly after that."""
    ctx = conveyor.current_job()
    assert ctx is not None
    hold(path, seconds if ctx.attempt == 1 else 0.05)


@app.task(name="limits.free")
def free(path: str) -> None:
    log(path, "start")


if __name__ == "__main__":
    concurrency = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    lease = float(sys.argv[2]) if len(sys.argv) > 2 else 30.0
    app.worker(concurrency=concurrency, lease_seconds=lease, schedule=False).run()
