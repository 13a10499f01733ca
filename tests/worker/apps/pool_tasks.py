"""Tasks for the pool tests (process pool, time limits, cancellation).

The process pool's children import this module and take ``app`` from it; a test swaps in an
app of its own built by ``make_app`` (same tasks, its own database), which the worker finds
by its registry. The children never open the app's backend, so theirs can stay in memory.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import subprocess
import time
from pathlib import Path

import conveyor

#: memory a child keeps after ``allocate``, so its RSS stays high until it is recycled
_hoard: list[bytes] = []


def make_app(url: str = "memory://", namespace: str | None = None) -> conveyor.App:
    app = conveyor.App(url, namespace=namespace)

    @app.task(name="pid")
    def pid() -> int:
        return os.getpid()

    @app.task(name="report")
    def report() -> dict[str, object]:
        conveyor.progress(50, "half way", step=1)
        job = conveyor.current_job()
        assert job is not None
        return {"pid": os.getpid(), "id": job.id, "task": job.task, "attempt": job.attempt}

    @app.task(name="hang", timeout=1)
    def hang() -> None:
        time.sleep(3600)

    @app.task(name="spin", timeout=1)
    def spin() -> None:
        while True:
            pass

    @app.task(name="async_hang", timeout=1)
    async def async_hang() -> None:
        await asyncio.sleep(3600)

    @app.task(name="soft", soft_timeout=0.5, timeout=60)
    def soft(marker: str) -> str:
        try:
            for _ in range(1200):
                time.sleep(0.05)
        except conveyor.SoftTimeLimitExceeded:
            Path(marker).write_text("cleaned up")
            return "cleaned up"
        return "never interrupted"

    @app.task(name="async_soft", soft_timeout=0.5, timeout=60)
    async def async_soft(marker: str) -> str:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            Path(marker).write_text("cleaned up")
            return "cleaned up"
        return "never interrupted"

    @app.task(name="segfault", retries=1, retry_delay=0)
    def segfault() -> None:
        ctypes.string_at(0)

    @app.task(name="exit3")
    def exit3() -> None:
        os._exit(3)

    @app.task(name="allocate")
    def allocate(megabytes: int) -> int:
        _hoard.append(b"x" * (megabytes * 2**20))  # written, so resident
        return os.getpid()

    @app.task(name="long")
    def long(directory: str, seconds: float) -> None:
        """Writes ``started`` (its pid) at once, counts in ``ticks`` while it runs, and writes
        ``finished`` only if it runs to its end."""
        Path(directory, "started").write_text(str(os.getpid()))
        deadline = time.monotonic() + seconds
        ticks = 0
        while time.monotonic() < deadline:
            ticks += 1
            Path(directory, "ticks").write_text(str(ticks))
            time.sleep(0.02)
        Path(directory, "finished").write_text("reached the end")

    @app.task(name="async_long")
    async def async_long(directory: str, seconds: float) -> None:
        Path(directory, "started").write_text(str(os.getpid()))
        await asyncio.sleep(seconds)
        Path(directory, "finished").write_text("reached the end")

    @app.task(name="tool")
    def tool(directory: str) -> None:
        """Starts a tool (a real ``sleep``), writes its pid to ``tool``, and waits for it."""
        proc = subprocess.Popen(["sleep", "120"])
        Path(directory, "tool").write_text(str(proc.pid))
        proc.wait()

    @app.task(name="tool_timeout", timeout=1)
    def tool_timeout(directory: str) -> None:
        tool(directory)

    return app


app = make_app()
