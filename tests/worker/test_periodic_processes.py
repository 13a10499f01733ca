"""Exactly-once periodic jobs across real worker processes on one store: three workers
each run the scheduler, one is killed with SIGKILL half-way, and still every due time of an
every=1 task is enqueued once."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import conveyor
from conveyor.backends import open_backend

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(conveyor, "App"), reason="needs conveyor.App and the worker"),
]

RUN_SECONDS = 10.0
TASK = "periodic_app.tick"

APP_MODULE = """\
import json
import os

import conveyor

app = conveyor.App({url!r}, namespace={namespace!r})


@app.periodic(every=1)
def tick():
    job = conveyor.current_job()
    with open({log!r}, "a") as f:
        f.write(json.dumps({{"id": job.id, "pid": os.getpid()}}) + "\\n")
"""


def start_worker(tmp_path: Path, n: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    env.pop("CONVEYOR_URL", None)
    command = [sys.executable, "-m", "conveyor", "-A", "periodic_app:app", "worker", "-c", "2"]
    with (tmp_path / f"worker{n}.log").open("wb") as out:
        return subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT
        )


def stop(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    if process.poll() is None:
        os.kill(process.pid, sig)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path, namespace: str) -> tuple[str, str]:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/jobs.db", "conveyor"
    return str(request.getfixturevalue("redis_server").url), namespace


def test_three_worker_processes_enqueue_each_due_time_once_while_one_is_killed(
    tmp_path: Path, store: tuple[str, str]
) -> None:
    url, namespace = store
    ran = tmp_path / "ran.jsonl"
    source = APP_MODULE.format(url=url, namespace=namespace, log=str(ran))
    (tmp_path / "periodic_app.py").write_text(source)

    workers = [start_worker(tmp_path, n) for n in range(3)]
    try:
        time.sleep(RUN_SECONDS / 2)
        stop(workers[0], signal.SIGKILL)
        killed_at = time.time()
        time.sleep(RUN_SECONDS / 2)
    finally:
        for worker in workers:
            stop(worker, signal.SIGTERM)
    logs = "".join((tmp_path / f"worker{n}.log").read_text() for n in range(3))
    assert [w.returncode for w in workers[1:]] == [0, 0], logs

    backend = open_backend(url, namespace=namespace)
    try:
        jobs = backend.list_jobs(task=TASK, limit=10_000)
    finally:
        backend.close()
    dues = [job.meta["due"] for job in jobs]
    assert len(dues) == len(set(dues)), "a due time was enqueued more than once"
    assert all(due == int(due) for due in dues), "every=1 due times are whole seconds"
    assert len(dues) >= RUN_SECONDS / 2, logs
    assert max(dues) > killed_at, "the surviving workers kept scheduling"
    ordered = sorted(dues)
    gaps = [b - a for a, b in itertools.pairwise(ordered)]
    # One run per second; a tick delayed past the next due time by a loaded machine may
    # merge two seconds into one run, never more.
    assert max(gaps) <= 2.0, gaps

    runs = [json.loads(line)["id"] for line in ran.read_text().splitlines()]
    assert runs, logs
    assert set(runs) <= {job.id for job in jobs}
