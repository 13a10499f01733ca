"""The process pool: jobs run in child processes that import the app, report progress and
see their job; children are recycled by task count and memory; a task that kills its process
fails only its attempt, and the worker keeps serving."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import conveyor
from conveyor.errors import ConfigurationError
from tests.worker.apps import pool_tasks
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


def worker(app: conveyor.App, **options: Any) -> conveyor.Worker:
    settings = {"concurrency": 1, "pool": "process", "schedule": False, "shutdown_timeout": 5.0}
    return app.worker(**{**settings, **options})


def test_jobs_run_in_child_processes_with_progress_and_their_context(app: conveyor.App) -> None:
    with worker(app, concurrency=2):
        job = task(app, "report").delay()
        result = job.result(timeout=60)
    assert result["pid"] != os.getpid()
    assert result["id"] == job.id
    assert result["task"] == "report"
    assert result["attempt"] == 1
    assert job.progress == conveyor.Progress(50.0, "half way", {"step": 1})


def test_max_tasks_per_child_gives_new_child_processes(app: conveyor.App) -> None:
    with worker(app, max_tasks_per_child=2):
        jobs = [task(app, "pid").delay() for _ in range(4)]
        pids = [job.result(timeout=60) for job in jobs]
    assert pids[0] == pids[1] != pids[2] == pids[3]


def test_a_child_over_max_memory_per_child_is_recycled(app: conveyor.App) -> None:
    with worker(app, max_memory_per_child=80):
        small = task(app, "allocate").delay(1).result(timeout=60)
        grown = task(app, "allocate").delay(1).result(timeout=60)
        big = task(app, "allocate").delay(200).result(timeout=60)
        after = task(app, "pid").delay().result(timeout=60)
    assert small == grown == big  # under the limit the child stays
    assert after != big


def test_a_segfault_fails_each_attempt_and_the_worker_keeps_serving(app: conveyor.App) -> None:
    with worker(app):
        crashing = task(app, "segfault").delay()
        with pytest.raises(conveyor.JobFailed) as failed:
            crashing.result(timeout=60)
        after = task(app, "pid").delay().result(timeout=60)
    assert failed.value.error_type == "WorkerCrashed"
    assert "killed by SIGSEGV" in failed.value.message
    assert crashing.info().attempts == 2  # retries=1 applied to the crash
    assert after != os.getpid()


def test_os_exit_fails_the_attempt_naming_the_exit_status(app: conveyor.App) -> None:
    with worker(app):
        with pytest.raises(conveyor.JobFailed) as failed:
            task(app, "exit3").delay().result(timeout=60)
        assert task(app, "pid").delay().result(timeout=60) != os.getpid()
    assert failed.value.error_type == "WorkerCrashed"
    assert "exited with status 3" in failed.value.message


def test_an_app_no_module_holds_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    orphan = conveyor.App(f"sqlite:///{tmp_path}/jobs.db")
    with pytest.raises(ConfigurationError, match="importable"):
        orphan.worker(pool="process")
    orphan.close()


SCRIPT = """\
import os
import sys

import conveyor

app = conveyor.App(sys.argv[1])


@app.task
def where():
    return os.getpid()


if __name__ == "__main__":
    with app.worker(concurrency=1, pool="process", schedule=False):
        print(where.delay().result(timeout=60), os.getpid())
"""


def test_a_script_that_defines_its_app_in_main_runs_a_process_pool(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), f"sqlite:///{tmp_path}/jobs.db"],
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    )
    child, parent = done.stdout.split()
    assert child != parent


def test_children_import_an_app_with_the_tests_tasks() -> None:
    assert pool_tasks.make_app().registry.names() == pool_tasks.app.registry.names()


@pytest.mark.parametrize("how", ["cancel", "timeout"])
def test_a_stopped_job_takes_the_tools_it_started_with_it(
    app: conveyor.App, tmp_path: Path, how: str
) -> None:
    from tests.worker.apps.helpers import process_exists, wait_until

    tool_pid = tmp_path / "tool"
    with worker(app):
        job = task(app, "tool" if how == "cancel" else "tool_timeout").delay(str(tmp_path))
        wait_until(tool_pid.exists, timeout=60)
        pid = int(tool_pid.read_text())
        assert process_exists(pid)
        if how == "cancel":
            job.cancel()
        wait_until(lambda: job.state.is_final, timeout=30)
        wait_until(lambda: not process_exists(pid), timeout=10)
    expected = conveyor.State.CANCELLED if how == "cancel" else conveyor.State.FAILED
    assert job.state is expected
