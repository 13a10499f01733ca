"""Time limits in every pool: a hard ``timeout`` stops the attempt (the child is killed, the
coroutine cancelled, the thread interrupted or else abandoned) and fails it with
TimeLimitExceeded, and the worker goes on with the next job; a ``soft_timeout`` is raised
inside the task, which can clean up and return."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import conveyor
from tests.worker.apps.helpers import BACKENDS, pool_app

pytestmark = pytest.mark.slow


@pytest.fixture(params=BACKENDS)
def app(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[conveyor.App]:
    with pool_app(request.param, request, tmp_path, monkeypatch) as app:
        yield app


def task(app: conveyor.App, name: str) -> conveyor.Task[..., Any]:
    return app.registry.get(name)


def worker(app: conveyor.App, pool: str) -> conveyor.Worker:
    return app.worker(concurrency=1, pool=pool, schedule=False, shutdown_timeout=5.0)


def assert_timed_out(job: conveyor.Job) -> None:
    with pytest.raises(conveyor.JobFailed) as failed:
        job.result(timeout=60)
    assert failed.value.error_type == "TimeLimitExceeded"
    assert "timeout of 1" in failed.value.message


HANG_IN_EACH_POOL = [("process", "hang"), ("thread", "spin"), ("async", "async_hang")]


@pytest.mark.parametrize(("pool", "name"), HANG_IN_EACH_POOL)
def test_a_task_past_its_timeout_fails_and_the_worker_runs_the_next_job(
    app: conveyor.App, pool: str, name: str
) -> None:
    with worker(app, pool):
        hung = task(app, name).delay()
        after = task(app, "pid").delay()
        assert_timed_out(hung)
        assert isinstance(after.result(timeout=60), int)


def test_a_thread_that_ignores_its_timeout_is_abandoned_and_its_slot_reused(
    app: conveyor.App,
) -> None:
    # time.sleep(3600) never returns to Python, where the thread would see the interrupt
    with worker(app, "thread"):
        hung = task(app, "hang").delay()
        after = task(app, "pid").delay()
        assert_timed_out(hung)
        assert isinstance(after.result(timeout=60), int)


SOFT_IN_EACH_POOL = [("process", "soft"), ("thread", "soft"), ("async", "async_soft"),
                     ("process", "async_soft")]  # fmt: skip


@pytest.mark.parametrize(("pool", "name"), SOFT_IN_EACH_POOL)
def test_a_soft_timeout_lets_the_task_clean_up_and_return(
    app: conveyor.App, pool: str, name: str, tmp_path: Path
) -> None:
    marker = tmp_path / "cleaned"
    with worker(app, pool):
        result = task(app, name).delay(str(marker)).result(timeout=60)
    assert result == "cleaned up"
    assert marker.read_text() == "cleaned up"
