"""The app that the fault tests' worker processes run: ``python -m tests.worker.fault_app
[concurrency] [lease_seconds] [shutdown_timeout] [queue]``, with CONVEYOR_URL naming the
store."""

from __future__ import annotations

import json
import logging
import os
import sys
import time

import conveyor

# FAULT_MAX_CRASHES: a soak that kills and freezes workers many times over sets it higher
app = conveyor.App(max_crashes=int(os.environ.get("FAULT_MAX_CRASHES", "3")))


@app.task(name="fault.mark")
def mark(path: str, seconds: float) -> int:
    """Write 'start N' and, after ``seconds``, 'end N' (N = attempt) to ``path``."""
    ctx = conveyor.current_job()
    assert ctx is not None
    with open(path, "a") as f:
        f.write(f"start {ctx.attempt} {os.getpid()}\n")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)
    with open(path, "a") as f:
        f.write(f"end {ctx.attempt} {os.getpid()}\n")
    return ctx.attempt


@app.task(name="fault.record")
def record(path: str, n: int) -> int:
    """Append one line per run: many processes append to one file safely (O_APPEND)."""
    ctx = conveyor.current_job()
    assert ctx is not None
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{n} {ctx.id} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
    return n


@app.task(name="fault.span")
def span(path: str, seconds: float) -> int:
    """Log ``start``, then ``end`` after ``seconds`` of work, or ``stop`` when interrupted, as
    ``<event> <job id> <token> <time.time()> <pid>`` lines (see tests/worker/spans.py)."""
    ctx = conveyor.current_job()
    assert ctx is not None

    def log(event: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, f"{event} {ctx.id} {ctx.token} {time.time():.6f} {os.getpid()}\n".encode())
        finally:
            os.close(fd)

    # Every line is written inside the try: an interrupt that lands while one is written
    # (right as the run ends, say) still leaves a closing line.
    try:
        log("start")
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(min(0.01, seconds))
        log("end")
    except BaseException:
        log("stop")
        raise
    return ctx.token


@app.task(name="fault.echo")
def echo(value: object) -> object:
    return value


@app.task(name="fault.at")
def at(when: float, value: object) -> object:
    """Return ``value`` at the wall-clock time ``when``: members on several processes finish
    at the same moment."""
    while time.time() < when:
        time.sleep(0.001)
    return value


@app.task(name="fault.gather")
def gather(values: list[object], path: str) -> list[object]:
    """A chord callback that appends one line per run: its job id and what it got."""
    ctx = conveyor.current_job()
    assert ctx is not None
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, (json.dumps([ctx.id, values]) + "\n").encode())
    finally:
        os.close(fd)
    return values


if __name__ == "__main__":
    logging.basicConfig(format="%(created).3f %(threadName)s %(name)s: %(message)s")
    concurrency = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    lease = float(sys.argv[2]) if len(sys.argv) > 2 else 30.0
    shutdown = float(sys.argv[3]) if len(sys.argv) > 3 else 30.0
    queues = (sys.argv[4],) if len(sys.argv) > 4 else None
    app.worker(
        queues=queues,
        concurrency=concurrency,
        lease_seconds=lease,
        shutdown_timeout=shutdown,
        schedule=False,
    ).run()
