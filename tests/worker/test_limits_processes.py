"""Cluster-wide limits with real worker processes: three workers on one store, each task
writing its own start and end; a worker killed while it holds a concurrency slot."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import conveyor
from conveyor.job import State
from tests.worker.procs import WorkerProcess, wait_for

pytestmark = pytest.mark.slow

APP = "tests.worker.limits_app"


@pytest.fixture
def client(durable: tuple[str, str]) -> Iterator[conveyor.App]:
    from tests.worker import limits_app

    url, ns = durable
    app = conveyor.App(url, namespace=ns)
    app.registry = limits_app.app.registry  # the same task names the workers know
    app.limit("shared.api", concurrency=2)
    yield app
    app.close()


@pytest.fixture
def workers(durable: tuple[str, str]) -> Iterator[list[WorkerProcess]]:
    url, ns = durable
    procs = [WorkerProcess(url, "4", namespace=ns, module=APP) for _ in range(3)]
    yield procs
    for proc in procs:
        proc.stop()


def events(path: Path) -> list[tuple[float, str, str]]:
    """(time, start|end, job id) from a tasks' log."""
    out = []
    for line in path.read_text().splitlines():
        what, at, job_id, _pid = line.split()
        out.append((float(at), what, job_id))
    return out


def most_at_once(log: list[tuple[float, str, str]], ids: set[str] | None = None) -> int:
    """The most jobs between their own start and end at any moment (ends first on ties)."""
    running = peak = 0
    for _at, what, job_id in sorted(log, key=lambda e: (e[0], e[1] == "start")):
        if ids is not None and job_id not in ids:
            continue
        running += 1 if what == "start" else -1
        peak = max(peak, running)
    return peak


def wait_all(jobs: list[conveyor.Job], timeout: float = 90) -> None:
    for job in jobs:
        job.result(timeout=timeout)


def test_concurrency_two_holds_across_three_worker_processes(
    client: conveyor.App, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    log = tmp_path / "log.txt"
    jobs = [client.submit("limits.pair", (str(log), 0.15), {}, _call()) for _ in range(12)]
    free = [client.submit("limits.free", (str(tmp_path / "free.txt"),), {}, _call())]
    wait_all(jobs + free)
    assert most_at_once(events(log)) <= 2
    assert all(job.info().attempts == 1 for job in jobs)  # held back: no attempt used


def test_a_shared_limit_with_a_key_holds_per_key_across_processes(
    client: conveyor.App, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    log = tmp_path / "log.txt"
    by_user: dict[str, set[str]] = {"a": set(), "b": set()}
    jobs = []
    for i in range(16):
        user = "ab"[i % 2]
        job = client.submit("limits.shared", (user, str(log), 0.15), {}, _call())
        by_user[user].add(job.id)
        jobs.append(job)
    wait_all(jobs)
    seen = events(log)
    assert most_at_once(seen, by_user["a"]) <= 2
    assert most_at_once(seen, by_user["b"]) <= 2


def test_a_rate_holds_over_every_window_across_processes(
    client: conveyor.App, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    log = tmp_path / "log.txt"
    jobs = [client.submit("limits.paced", (str(log),), {}, _call()) for _ in range(13)]
    wait_all(jobs)
    # claims, stamped by the store's clock: no five of them within one second
    started = sorted(job.info().started_at.timestamp() for job in jobs)  # type: ignore[union-attr]
    gaps = [later - first for first, later in zip(started, started[4:], strict=False)]
    assert min(gaps) >= 1.0 - 1e-6, gaps
    assert all(job.info().attempts == 1 for job in jobs)


def test_a_killed_slot_holder_frees_its_slot_when_its_lease_runs_out(
    client: conveyor.App, durable: tuple[str, str], tmp_path: Path
) -> None:
    url, ns = durable
    log = tmp_path / "log.txt"
    holder = WorkerProcess(url, "1", "2", namespace=ns, module=APP)
    try:
        hog = client.submit("limits.solo", (str(log), 120.0), {}, _call())
        wait_for(lambda: log.exists() and "start" in log.read_text(), what="the hog's start")
        waiting = client.submit("limits.solo", (str(log), 0.05), {}, _call())
        time.sleep(0.5)
        assert waiting.state is State.QUEUED  # the slot is taken
        holder.signal(signal.SIGKILL)
        holder.wait()
    finally:
        holder.stop()
    killed_at = time.time()
    other = WorkerProcess(url, "2", "2", namespace=ns, module=APP)
    try:
        # the 2 s lease runs out; the slot goes with it, not after the hog's 120 s
        waiting.result(timeout=60)
        hog.result(timeout=60)
        assert hog.info().attempts == 2
        started = waiting.info().started_at
        assert started is not None and started.timestamp() > killed_at
    finally:
        other.stop()


def _call() -> conveyor.task.CallOptions:
    from conveyor.task import CallOptions

    return CallOptions()
