"""``conveyor worker`` and ``conveyor scheduler`` as real processes: they serve the app named
by -A, and stop gracefully with exit status 0 on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conveyor.app import App
from conveyor.job import State
from conveyor.task import CallOptions
from tests.cli.conftest import AppModule
from tests.servers import RedisServer

pytestmark = pytest.mark.slow


def start(module: AppModule, *args: str) -> subprocess.Popen[str]:
    """``python -m conveyor -A module:app ARGS`` in the module's directory."""
    env = dict(os.environ, PYTHONPATH=str(module.path), CONVEYOR_URL=module.url)
    env.pop("CONVEYOR_APP", None)
    return subprocess.Popen(
        [sys.executable, "-m", "conveyor", "-A", module.spec, *args],
        cwd=module.path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:  # stop what a failed test left running, by PID
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_worker_runs_enqueued_jobs_and_exits_0_on_sigterm(
    app_module: AppModule, inspector: App, processes: list[subprocess.Popen[str]]
) -> None:
    worker = start(app_module, "worker", "-c", "2", "--no-schedule", "--lease-seconds", "5")
    processes.append(worker)
    job = inspector.submit(app_module.task("add"), (20, 22), {}, CallOptions())
    assert job.result(timeout=60) == 42
    wait_for(lambda: bool(inspector.backend.list_workers()), "the worker to register")
    code, err = stop(worker)
    assert code == 0, err
    assert "Traceback" not in err
    assert inspector.backend.list_workers() == []  # it unregistered on the way out


def test_worker_serves_only_the_queues_it_is_given(
    app_module: AppModule, inspector: App, processes: list[subprocess.Popen[str]]
) -> None:
    worker = start(app_module, "worker", "-Q", "reports", "--no-schedule")
    processes.append(worker)
    app = app_module.app  # the task's own options send report to the reports queue
    report = app.submit(app_module.task("report"), (2,), {}, CallOptions())
    other = app.submit(app_module.task("add"), (1, 1), {}, CallOptions())
    assert report.result(timeout=60) == {"steps": 2}
    assert other.state is State.QUEUED
    code, err = stop(worker)
    assert code == 0, err


def test_scheduler_enqueues_due_periodic_jobs_and_exits_0_on_sigterm(
    app_module: AppModule, inspector: App, processes: list[subprocess.Popen[str]]
) -> None:
    scheduler = start(app_module, "scheduler")
    processes.append(scheduler)
    wait_for(
        lambda: bool(inspector.backend.list_jobs(task="every_second")),
        "the scheduler to enqueue every_second",
    )
    code, err = stop(scheduler)
    assert code == 0, err
    assert "Traceback" not in err


def test_python_dash_m_conveyor_is_the_command(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "conveyor", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and "conveyor" in done.stdout


def test_a_worker_whose_redis_went_away_stops_soon_after_sigterm(
    tmp_path: Path, fresh_redis_server: RedisServer, processes: list[subprocess.Popen[str]]
) -> None:
    """Every store call retries for seconds when Redis is gone; stopping still takes no more
    than shutdown_timeout and a little (the assertion's bound is generous: a behaviour
    check, not a timing)."""
    (tmp_path / "redistasks.py").write_text(
        f"import conveyor\n\napp = conveyor.App({fresh_redis_server.url!r})\n\n\n"
        "@app.task\ndef add(x, y):\n    return x + y\n"
    )
    module = AppModule("redistasks", tmp_path, fresh_redis_server.url)
    worker = start(module, "worker", "--no-schedule", "--shutdown-timeout", "2")
    processes.append(worker)
    client = App(fresh_redis_server.url)
    try:
        wait_for(lambda: bool(client.backend.list_workers()), "the worker to register")
    finally:
        client.close()
    fresh_redis_server.kill()
    time.sleep(1.0)  # the worker is now retrying its claims and heartbeats
    began = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    worker.communicate(timeout=60)
    took = time.monotonic() - began
    assert worker.returncode == 0
    assert took < 2 + 3, f"stopping took {took:.1f} s with shutdown_timeout=2"
