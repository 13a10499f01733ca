"""Cancelling a running job stops it in every pool (the process pool terminates its child) and
the job ends ``cancelled``, also when asked from another process; a worker that cannot renew
its lease stops the job before another worker could take it over."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import conveyor
from tests.servers import RedisServer
from tests.worker.apps import pool_tasks
from tests.worker.apps.helpers import BACKENDS, pool_app, process_exists, wait_until

pytestmark = pytest.mark.slow

#: how long the ``long`` task runs when nothing stops it
RUN_SECONDS = 3.0


@pytest.fixture(params=BACKENDS)
def app(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[conveyor.App]:
    with pool_app(request.param, request, tmp_path, monkeypatch) as app:
        yield app


def task(app: conveyor.App, name: str) -> conveyor.Task[..., Any]:
    return app.registry.get(name)


def worker(app: conveyor.App, pool: str, **options: Any) -> conveyor.Worker:
    settings = {"concurrency": 1, "schedule": False, "shutdown_timeout": 5.0, **options}
    return app.worker(pool=pool, **settings)


def assert_never_finishes(directory: Path) -> None:
    time.sleep(RUN_SECONDS + 1.0)  # past the moment the task would have reached its end
    assert not (directory / "finished").exists()


LONG_IN_EACH_POOL = [("process", "long"), ("thread", "long"), ("async", "async_long"),
                     ("async", "long")]  # fmt: skip


@pytest.mark.parametrize(("pool", "name"), LONG_IN_EACH_POOL)
def test_cancelling_a_running_job_stops_it_and_it_ends_cancelled(
    app: conveyor.App, pool: str, name: str, tmp_path: Path
) -> None:
    with worker(app, pool):
        job = task(app, name).delay(str(tmp_path), RUN_SECONDS)
        wait_until((tmp_path / "started").exists)
        assert job.cancel() is True
        with pytest.raises(conveyor.JobCancelled):
            job.result(timeout=30)
        assert job.state is conveyor.State.CANCELLED
        assert_never_finishes(tmp_path)
        assert isinstance(task(app, "pid").delay().result(timeout=60), int)


def test_cancelling_in_the_process_pool_terminates_the_child(
    app: conveyor.App, tmp_path: Path
) -> None:
    with worker(app, "process"):
        job = task(app, "long").delay(str(tmp_path), 60.0)
        wait_until((tmp_path / "started").exists)
        child = int((tmp_path / "started").read_text())
        job.cancel()
        wait_until(lambda: not process_exists(child))
        with pytest.raises(conveyor.JobCancelled):
            job.result(timeout=30)


CANCEL = "import conveyor, sys; conveyor.App(sys.argv[1], namespace=sys.argv[2]).job(sys.argv[3]).cancel()"  # noqa: E501


@pytest.mark.parametrize("pool", ["process", "thread"])
def test_a_cancel_requested_from_another_process_stops_the_running_job(
    app: conveyor.App, pool: str, tmp_path: Path
) -> None:
    with worker(app, pool):
        job = task(app, "long").delay(str(tmp_path), RUN_SECONDS)
        wait_until((tmp_path / "started").exists)
        url, namespace = app.settings.url, app.settings.namespace
        subprocess.run([sys.executable, "-c", CANCEL, url, namespace, job.id], check=True)
        with pytest.raises(conveyor.JobCancelled):
            job.result(timeout=30)
        assert_never_finishes(tmp_path)


@pytest.fixture
def redis_app(
    fresh_redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[conveyor.App]:
    app = pool_tasks.make_app(fresh_redis_server.url, namespace="lease")
    monkeypatch.setattr(pool_tasks, "app", app)
    yield app
    app.close()


def has_stopped(directory: Path) -> bool:
    """True once ``ticks`` has not moved for a second."""
    before = (directory / "ticks").read_text()
    time.sleep(1.0)
    return (directory / "ticks").read_text() == before


@pytest.mark.parametrize("pool", ["process", "thread"])
def test_a_worker_that_loses_its_backend_stops_the_running_job(
    redis_app: conveyor.App, fresh_redis_server: RedisServer, pool: str, tmp_path: Path
) -> None:
    options = {"lease_seconds": 2.0, "concurrency": 2, "shutdown_timeout": 0.5}
    with worker(redis_app, pool, **options):
        task(redis_app, "long").delay(str(tmp_path), 60.0)
        wait_until((tmp_path / "ticks").exists)
        child = int((tmp_path / "started").read_text())
        fresh_redis_server.stop()
        wait_until(lambda: has_stopped(tmp_path), timeout=60)
        assert pool != "process" or not process_exists(child)
        fresh_redis_server.start()
        # the job went back to the queue and may run again; the worker still serves
        assert isinstance(task(redis_app, "pid").delay().result(timeout=60), int)


@pytest.mark.parametrize("pool", ["process", "thread"])
def test_a_worker_whose_sqlite_file_stays_locked_stops_the_job_before_its_lease_runs_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pool: str
) -> None:
    import sqlite3

    db = tmp_path / "jobs.db"
    app = pool_tasks.make_app(f"sqlite:///{db}", namespace="lease")
    monkeypatch.setattr(pool_tasks, "app", app)
    try:
        options = {"lease_seconds": 2.0, "concurrency": 2, "shutdown_timeout": 0.5}
        with worker(app, pool, **options):
            job = task(app, "long").delay(str(tmp_path), 60.0)
            wait_until((tmp_path / "ticks").exists)
            blocker = sqlite3.connect(db, isolation_level=None)
            blocker.execute("BEGIN EXCLUSIVE")  # no heartbeat can be written now
            try:
                locked_at = time.monotonic()
                wait_until(lambda: has_stopped(tmp_path), timeout=30)
                # stopped at the local deadline (75% of the lease), not after the busy timeout
                assert time.monotonic() - locked_at < 10
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
            # the lease runs out, the job is recovered and runs again; the worker still serves
            assert isinstance(task(app, "pid").delay().result(timeout=60), int)
            assert job.info().attempts >= 1
    finally:
        app.close()
