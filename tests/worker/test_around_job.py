"""@app.around_job: the worker enters the hook before the task and exits it after, in the
thread, async and process pools, in eager mode too; an exception out of the hook is the
task's."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import conveyor
from tests.worker.apps import around_tasks


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "around.log"
    monkeypatch.setenv("AROUND_LOG", str(path))
    return path


@pytest.mark.parametrize(
    "pool", ["thread", "async", pytest.param("process", marks=pytest.mark.slow)]
)
def test_the_hook_wraps_every_run_in_every_pool(pool: str, log: Path) -> None:
    app = around_tasks.app
    with app.worker(concurrency=2, pool=pool, schedule=False, shutdown_timeout=5):
        jobs = [app.registry.get(name).delay() for name in ("seen", "aseen", "boom")]
        seen, aseen = (job.result(timeout=60) for job in jobs[:2])
        with pytest.raises(conveyor.JobFailed, match="boom"):
            jobs[2].result(timeout=60)
    assert (seen, aseen) == (jobs[0].id, jobs[1].id)  # the task ran inside the hook
    lines = log.read_text().splitlines()
    for job in jobs:
        enter = next(i for i, line in enumerate(lines) if line.startswith(f"enter {job.task} "))
        leave = next(i for i, line in enumerate(lines) if line.startswith(f"exit {job.task} "))
        assert enter < leave
        assert lines[enter].split()[2] == job.id
    pids = {int(line.split()[3]) for line in lines}
    assert (os.getpid() not in pids) == (pool == "process")


def test_hooks_nest_in_order_and_a_failing_hook_fails_the_job() -> None:
    app = conveyor.App("memory://", eager=True)
    calls: list[str] = []

    @app.around_job
    @contextmanager
    def outer(ctx: conveyor.JobContext) -> Iterator[None]:
        calls.append("outer in")
        yield
        calls.append("outer out")

    @app.around_job
    @contextmanager
    def inner(ctx: conveyor.JobContext) -> Iterator[None]:
        if ctx.task.endswith("refused"):
            raise PermissionError("no context for you")
        calls.append(f"inner in {ctx.task}")
        yield
        calls.append("inner out")

    @app.task(name="work")
    def work() -> str:
        calls.append("task")
        return "done"

    @app.task(name="refused")
    def refused() -> None:
        calls.append("never")

    assert work.delay().result() == "done"
    assert calls == ["outer in", "inner in work", "task", "inner out", "outer out"]
    calls.clear()
    with pytest.raises(conveyor.JobFailed) as failed:
        refused.delay().result()
    assert failed.value.error_type == "PermissionError"
    assert calls == ["outer in", "outer out"]
