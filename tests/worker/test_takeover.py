"""Leases and fencing with real processes: a frozen worker's job is taken over and its late
outcome refused; workers ride out a Redis or PostgreSQL restart without losing an
acknowledged job."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest

import conveyor
from conveyor.task import CallOptions
from tests.worker.procs import WorkerProcess, client_for, wait_for

pytestmark = pytest.mark.slow


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_frozen_workers_job_is_taken_over_and_its_late_outcome_refused(
    durable: tuple[str, str], tmp_path: Path
) -> None:
    url, ns = durable
    app = client_for(url, ns)
    marks = tmp_path / "marks.txt"
    frozen = WorkerProcess(url, "1", "2", namespace=ns)
    takeover: WorkerProcess | None = None
    try:
        job = app.submit("fault.mark", (str(marks), 3.0), {}, CallOptions())
        wait_for(lambda: any(x.startswith("start 1") for x in lines(marks)), what="attempt 1")
        frozen.freeze()
        takeover = WorkerProcess(url, "1", "2", namespace=ns)
        wait_for(
            lambda: any(x.startswith("start 2") for x in lines(marks)), timeout=60, what="takeover"
        )
        frozen.signal(signal.SIGCONT)  # it wakes up believing it still runs attempt 1
        assert job.result(timeout=60) == 2
        # Give the thawed worker every chance to write its stale outcome, then look again.
        time.sleep(4)
        info = job.info()
        assert info.state is conveyor.State.SUCCEEDED
        assert app.decode_result(app.backend.get(job.id)) == 2  # type: ignore[arg-type]
        assert info.attempts == 2
        takeover_pid = str(takeover.pid)
        assert f"end 2 {takeover_pid}" in lines(marks)
        frozen.stop()
        # The thawed worker stopped its run (its own deadline passed, or it learnt the lease
        # was lost), or had its late outcome refused.
        assert any(
            sign in frozen.stderr
            for sign in ("lease not renewed in time", "lease lost", "outcome refused")
        )
    finally:
        frozen.signal(signal.SIGCONT)
        frozen.stop()
        if takeover is not None:
            takeover.stop()
        app.close()


@pytest.fixture(params=["redis", "postgres"])
def restartable(request: pytest.FixtureRequest) -> object:
    """A server of the test's own, killed and started again by the test."""
    return request.getfixturevalue(f"fresh_{request.param}_server")


def test_workers_ride_out_a_server_restart_and_every_acknowledged_job_completes(
    restartable: object, tmp_path: Path, namespace: str
) -> None:
    server = restartable
    url = str(server.url)  # type: ignore[attr-defined]
    app = client_for(url, namespace)
    out = tmp_path / "runs.txt"
    workers = [WorkerProcess(url, "4", "5", namespace=namespace) for _ in range(2)]
    acknowledged: list[conveyor.Job] = []
    refused = 0
    stop = threading.Event()

    def producer() -> None:
        nonlocal refused
        n = 0
        while not stop.is_set():
            try:
                job = app.submit("fault.record", (str(out), n), {}, CallOptions())
                acknowledged.append(job)
            except conveyor.BackendUnavailable:
                refused += 1
            n += 1
            time.sleep(0.005)

    thread = threading.Thread(target=producer)
    try:
        thread.start()
        wait_for(lambda: len(acknowledged) > 100, what="jobs before the restart")
        server.kill()  # type: ignore[attr-defined]
        time.sleep(1.0)
        server.start()  # type: ignore[attr-defined]
        wait_for(lambda: len(acknowledged) > 400, timeout=60, what="jobs after the restart")
        stop.set()
        thread.join(30)
        wait_for(
            lambda: all(j.state is conveyor.State.SUCCEEDED for j in acknowledged[-20:]),
            timeout=90,
            what="the last jobs",
        )
        for job in acknowledged:
            assert job.result(timeout=60) is not None
    finally:
        stop.set()
        thread.join(30)
        for w in workers:
            w.stop()
        app.close()
    ran = {int(line.split()[0]) for line in lines(out)}
    expected = {job.info().args[1] for job in acknowledged}
    assert expected <= ran
