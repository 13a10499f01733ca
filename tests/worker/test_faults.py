"""Worker faults with real processes: killed mid-task, SIGTERM while working, several workers on
one store, bad jobs. Run on every durable backend."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import pytest

import conveyor
from conveyor.job import State
from tests.worker.procs import WorkerProcess, wait_for

pytestmark = pytest.mark.slow


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_killed_worker_job_runs_again_after_its_lease_and_succeeds(
    client: conveyor.App, durable: tuple[str, str], tmp_path: Path
) -> None:
    url, ns = durable
    marks = tmp_path / "marks.txt"
    first = WorkerProcess(url, "2", "2", namespace=ns)
    try:
        job = client.submit("fault.mark", (str(marks), 1.0), {}, _call())
        wait_for(lambda: any(x.startswith("start 1") for x in lines(marks)), what="first start")
        first.signal(signal.SIGKILL)
        first.wait()
        second = WorkerProcess(url, "2", "2", namespace=ns)
        try:
            assert job.result(timeout=60) == 2
            info = job.info()
            assert info.state is State.SUCCEEDED
            assert info.attempts == 2
            assert [x.split()[:2] for x in lines(marks)] == [
                ["start", "1"],
                ["start", "2"],
                ["end", "2"],
            ]
        finally:
            second.stop()
    finally:
        first.stop()


def test_sigterm_lets_the_running_job_finish_and_leaves_the_rest_queued(
    client: conveyor.App, durable: tuple[str, str], tmp_path: Path
) -> None:
    url, ns = durable
    marks = tmp_path / "marks.txt"
    worker = WorkerProcess(url, "1", "30", "30", namespace=ns)
    try:
        running = client.submit("fault.mark", (str(marks), 1.5), {}, _call())
        wait_for(lambda: bool(lines(marks)), what="the first job to start")
        rest = [client.submit("fault.mark", (str(marks), 0.1), {}, _call()) for _ in range(5)]
        worker.signal(signal.SIGTERM)
        assert worker.wait(60) == 0
    finally:
        worker.stop()
    assert running.state is State.SUCCEEDED
    assert running.info().attempts == 1
    assert [job.state for job in rest] == [State.QUEUED] * 5
    assert all(job.info().attempts == 0 for job in rest)
    assert len(lines(marks)) == 2  # start and end of the one running job


def test_three_workers_run_hundreds_of_jobs_each_exactly_once(
    client: conveyor.App, durable: tuple[str, str], tmp_path: Path
) -> None:
    url, ns = durable
    out = tmp_path / "runs.txt"
    workers = [WorkerProcess(url, "4", namespace=ns) for _ in range(3)]
    try:
        # all three serve before the jobs arrive: a fast worker started first could otherwise
        # run the 600 before the others are up, and the sharing below would not be seen
        wait_for(lambda: len(client.workers()) >= 3, timeout=60, what="3 live workers")
        jobs = client.enqueue_many(
            conveyor.Signature("fault.record", (str(out), i)) for i in range(600)
        )
        wait_for(
            lambda: len(lines(out)) >= 600 and all(j.state.is_final for j in jobs[-5:]),
            timeout=120,
            what="600 jobs",
        )
        time.sleep(0.5)  # let any duplicate show itself
    finally:
        for w in workers:
            w.stop()
    runs = Counter(int(line.split()[0]) for line in lines(out))
    assert sorted(runs) == list(range(600))
    assert set(runs.values()) == {1}
    pids = {line.split()[2] for line in lines(out)}
    assert len(pids) >= 2  # the work was shared
    assert all(j.state is State.SUCCEEDED for j in jobs)


def test_unknown_task_and_corrupt_payload_fail_while_the_worker_keeps_serving(
    client: conveyor.App, durable: tuple[str, str]
) -> None:
    url, ns = durable
    unknown = client.submit("no.such.task", (1,), {}, _call())
    corrupt = client.make_record("fault.echo", ("x",), {}, _call())
    corrupt.payload = b"\xff\x00 not json"
    (stored,) = client.backend.enqueue([corrupt])
    worker = WorkerProcess(url, "2", namespace=ns)
    try:
        with pytest.raises(conveyor.JobFailed) as failed:
            unknown.result(timeout=60)
        assert failed.value.error_type == "TaskNotFound"
        assert "no.such.task" in failed.value.message
        with pytest.raises(conveyor.JobFailed) as bad:
            client.job(stored.id).result(timeout=60)
        assert bad.value.error_type == "SerializationError"
        ok = client.submit("fault.echo", ("still serving",), {}, _call())
        assert ok.result(timeout=60) == "still serving"
    finally:
        worker.stop()


def _call() -> conveyor.task.CallOptions:
    return conveyor.task.CallOptions()


def test_a_second_signal_hands_the_running_job_back_at_once(
    client: conveyor.App, durable: tuple[str, str], tmp_path: Path
) -> None:
    url, ns = durable
    marks = tmp_path / "marks.txt"
    worker = WorkerProcess(url, "1", "30", "60", namespace=ns)
    try:
        job = client.submit("fault.mark", (str(marks), 60.0), {}, _call())
        wait_for(lambda: bool(lines(marks)), what="the job to start")
        worker.signal(signal.SIGTERM)
        time.sleep(0.5)
        worker.signal(signal.SIGTERM)
        assert worker.wait(30) == 0  # well before the 60 s job or shutdown_timeout
    finally:
        worker.stop()
    info = job.info()
    assert info.state is State.QUEUED
    assert info.attempts == 1
    assert info.worker is None
    assert not any(x.startswith("end") for x in lines(marks))
