"""Workflows with real worker processes: chord members finishing at the same moment on
three processes, and a worker killed with SIGKILL in the middle of a chord. Each callback
must run exactly once, with every member's result in order. Run on every durable backend."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import conveyor
from conveyor.task import Signature
from tests.worker.procs import WorkerProcess, wait_for

pytestmark = pytest.mark.slow


def sig(app: conveyor.App, task: str, *args: object) -> Signature:
    return Signature(task, args, dispatcher=app)


@contextmanager
def workers(durable: tuple[str, str], n: int, *args: str) -> Iterator[list[WorkerProcess]]:
    """``n`` worker processes of fault_app on the store, stopped by PID afterwards."""
    url, ns = durable
    started = [WorkerProcess(url, *args, namespace=ns) for _ in range(n)]
    try:
        yield started
    finally:
        for w in started:
            w.stop()


def runs(path: Path) -> list[tuple[str, list[object]]]:
    if not path.exists():
        return []
    return [tuple(json.loads(line)) for line in path.read_text().splitlines()]  # type: ignore[misc]


def test_members_finishing_at_once_on_three_processes_run_the_callback_once(
    client: conveyor.App, durable: tuple[str, str], tmp_path: Path
) -> None:
    log = tmp_path / "callbacks.txt"
    with workers(durable, 3, "1"):
        wait_for(lambda: len(client.backend.list_workers()) == 3, 60, "three workers")
        rounds = 8
        callbacks = []
        for r in range(rounds):
            when = time.time() + 0.6  # all three members return at this instant
            members = [sig(client, "fault.at", when, [r, i]) for i in range(3)]
            job = conveyor.chord(members, sig(client, "fault.gather", str(log))).delay()
            assert job.result(timeout=60) == [[r, 0], [r, 1], [r, 2]]
            callbacks.append(job.id)
        seen = Counter(job_id for job_id, _ in runs(log))
        assert seen == Counter(callbacks)  # each exactly once
        assert sorted(json.dumps(v) for _, v in runs(log)) == sorted(
            json.dumps([[r, 0], [r, 1], [r, 2]]) for r in range(rounds)
        )


def test_many_chords_at_once_each_run_their_callback_once(
    client: conveyor.App, durable: tuple[str, str], tmp_path: Path
) -> None:
    log = tmp_path / "callbacks.txt"
    with workers(durable, 3, "4"):
        jobs = [
            conveyor.chord(
                [sig(client, "fault.echo", [c, i]) for i in range(5)],
                sig(client, "fault.gather", str(log)),
            ).delay()
            for c in range(30)
        ]
        for c, job in enumerate(jobs):
            assert job.result(timeout=60) == [[c, i] for i in range(5)]
        assert Counter(job_id for job_id, _ in runs(log)) == Counter(j.id for j in jobs)


def test_a_worker_killed_mid_chord_loses_and_doubles_nothing(
    client: conveyor.App, durable: tuple[str, str], tmp_path: Path
) -> None:
    url, ns = durable
    log = tmp_path / "callbacks.txt"
    marks = tmp_path / "marks.txt"
    victim = WorkerProcess(url, "4", "2", namespace=ns)  # lease 2 s
    survivor = None
    try:
        members = [sig(client, "fault.mark", str(marks), 1.0) for _ in range(4)]
        job = conveyor.chord(members, sig(client, "fault.gather", str(log))).delay()
        wait_for(
            lambda: marks.exists() and marks.read_text().count("start 1") == 4,
            60,
            "four members started",
        )
        victim.signal(signal.SIGKILL)
        victim.wait()
        survivor = WorkerProcess(url, "4", "2", namespace=ns)
        assert job.result(timeout=90) == [2, 2, 2, 2]  # each member ran again, once
        [(callback_id, values)] = runs(log)
        assert callback_id == job.id and values == [2, 2, 2, 2]
        workflow = job.workflow
        assert workflow is not None and workflow.state is conveyor.State.SUCCEEDED
    finally:
        victim.stop()
        if survivor is not None:
            survivor.stop()
