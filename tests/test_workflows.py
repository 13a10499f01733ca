"""Workflows through the public API (API.md "Workflows"), on every backend, with an
in-process worker. The store-level rules are in tests/backends/test_workflows.py; races
with real processes in tests/worker/test_workflow_processes.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import conveyor
from conveyor import Failure, GroupJob, JobCancelled, JobFailed, State, Workflow


@pytest.fixture
def app(backend_url: str, namespace: str) -> Iterator[conveyor.App]:
    a = conveyor.App(backend_url, namespace=namespace)
    yield a
    a.close()


class Tasks:
    def __init__(self, app: conveyor.App) -> None:
        self.started = threading.Event()

        @app.task(name="wf.add")
        def add(x: int, y: int) -> int:
            return x + y

        @app.task(name="wf.mul")
        def mul(x: int, y: int) -> int:
            return x * y

        @app.task(name="wf.tsum")
        def tsum(values: list[int]) -> int:
            return sum(values)

        @app.task(name="wf.collect")
        def collect(values: list[Any]) -> list[Any]:
            return [
                {"failed": v.error_type, "job": v.job_id} if isinstance(v, Failure) else v
                for v in values
            ]

        @app.task(name="wf.boom", retries=1, retry_delay=0.0, retry_jitter=False)
        def boom(x: int) -> int:
            raise ValueError(f"boom {x}")

        @app.task(name="wf.slow")
        def slow(x: int) -> int:
            self.started.set()
            ctx = conveyor.current_job()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not (ctx and ctx.cancelled):
                time.sleep(0.01)
            return x

        self.add, self.mul, self.tsum, self.collect = add, mul, tsum, collect
        self.boom, self.slow = boom, slow


@pytest.fixture
def t(app: conveyor.App) -> Iterator[Tasks]:
    tasks = Tasks(app)
    with app.worker(concurrency=4, schedule=False):
        yield tasks


def test_chain_passes_each_result_as_the_first_argument(t: Tasks) -> None:
    job = conveyor.chain(t.add.s(1, 2), t.add.s(10), t.mul.s(3)).delay()
    assert job.result(timeout=30) == 39
    assert job.task == "wf.mul"


def test_pipe_is_chain(t: Tasks) -> None:
    assert (t.add.s(1, 2) | t.add.s(10) | t.mul.s(3)).delay().result(timeout=30) == 39


def test_adelay_enqueues_from_async_code(t: Tasks) -> None:
    import asyncio

    job = asyncio.run(conveyor.chain(t.add.s(1, 2), t.add.s(3)).adelay())
    assert job.result(timeout=30) == 6


def test_group_results_in_order(t: Tasks) -> None:
    g = conveyor.group(t.add.s(1, 2), t.add.s(3, 4), t.mul.s(5, 6)).delay()
    assert isinstance(g, GroupJob)
    assert len(g.jobs) == 3
    assert g.results(timeout=30) == [3, 7, 30]


def test_group_results_raise_the_first_failure(t: Tasks) -> None:
    g = conveyor.group([t.add.s(1, 2), t.boom.s(1), t.boom.s(2)]).delay()
    with pytest.raises(JobFailed) as info:
        g.results(timeout=30)
    assert info.value.error_type == "ValueError" and "boom 1" in info.value.message


def test_chord_callback_gets_the_results_in_member_order(t: Tasks) -> None:
    job = conveyor.chord([t.add.s(i, i) for i in range(10)], t.tsum.s()).delay()
    assert job.result(timeout=30) == 90


def test_a_failed_member_fails_the_callback_naming_it(t: Tasks) -> None:
    job = conveyor.chord([t.add.s(1, 1), t.boom.s(7)], t.tsum.s()).delay()
    with pytest.raises(JobFailed) as info:
        job.result(timeout=30)
    member = job.workflow.jobs[1] if job.workflow else None
    assert member is not None and member.state is State.FAILED
    assert member.info().attempts == 2  # its retry ran first
    assert member.id in info.value.message and info.value.error_type == "ValueError"


def test_allow_failures_gives_the_callback_a_failure_in_the_slot(t: Tasks) -> None:
    job = conveyor.chord(
        [t.add.s(1, 1), t.boom.s(7), t.add.s(2, 2)], t.collect.s(), allow_failures=True
    ).delay()
    result = job.result(timeout=30)
    assert result[0] == 2 and result[2] == 4
    assert result[1]["failed"] == "ValueError"
    assert job.workflow is not None and result[1]["job"] == job.workflow.jobs[1].id


def test_a_failed_step_stops_the_chain(t: Tasks) -> None:
    job = conveyor.chain(t.add.s(1, 1), t.boom.s(), t.add.s(1), t.add.s(2)).delay()
    with pytest.raises(JobCancelled):
        job.result(timeout=30)
    workflow = job.workflow
    assert workflow is not None
    assert [j.state for j in workflow.jobs] == [
        State.SUCCEEDED,
        State.FAILED,
        State.CANCELLED,
        State.CANCELLED,
    ]
    assert workflow.state is State.FAILED


def test_workflows_nest(t: Tasks) -> None:
    job = conveyor.chain(
        t.add.s(1, 1),
        conveyor.group(t.add.s(1), conveyor.chain(t.mul.s(10), t.add.s(1))),
        t.tsum.s(),
    ).delay()
    assert job.result(timeout=30) == 3 + 21
    inner = conveyor.chord(
        [conveyor.chain(t.add.s(1, 1), t.mul.s(5)), conveyor.chord([t.add.s(2, 2)], t.tsum.s())],
        t.collect.s(),
    ).delay()
    assert inner.result(timeout=30) == [10, 4]


def test_every_job_knows_its_workflow(app: conveyor.App, t: Tasks) -> None:
    job = conveyor.chord([t.add.s(1, 1), t.add.s(2, 2)], t.tsum.s()).delay()
    assert job.result(timeout=30) == 6
    workflow = job.workflow
    assert isinstance(workflow, Workflow)
    assert [j.task for j in workflow.jobs] == ["wf.add", "wf.add", "wf.tsum"]
    assert all(j.workflow == workflow for j in workflow.jobs)
    assert app.workflow(workflow.id).state is State.SUCCEEDED
    assert t.add.delay(1, 1).workflow is None
    with pytest.raises(LookupError):
        app.workflow("no-such-workflow")


def test_workflow_is_running_until_every_job_is_final(app: conveyor.App, t: Tasks) -> None:
    job = conveyor.chain(t.slow.s(1), t.add.s(1)).delay()
    assert t.started.wait(30)
    assert job.workflow is not None and job.workflow.state is State.RUNNING
    assert job.workflow.cancel() == 2
    with pytest.raises(JobCancelled):
        job.result(timeout=30)
    first = job.workflow.jobs[0]
    deadline = time.monotonic() + 30
    while first.state is not State.CANCELLED and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.state is State.CANCELLED  # the running step was stopped by its worker
    assert job.workflow.state is State.CANCELLED


def test_cancel_stops_a_running_chord(app: conveyor.App, t: Tasks) -> None:
    job = conveyor.chord([t.slow.s(1), t.slow.s(2)], t.tsum.s()).delay()
    assert t.started.wait(30)
    assert job.workflow is not None
    job.workflow.cancel()
    deadline = time.monotonic() + 30
    while job.workflow.state is State.RUNNING and time.monotonic() < deadline:
        time.sleep(0.05)
    assert {j.state for j in job.workflow.jobs} <= {State.CANCELLED, State.FAILED}
    assert job.state in (State.CANCELLED, State.FAILED)


def test_signatures_keep_their_options_in_a_workflow(app: conveyor.App, t: Tasks) -> None:
    job = conveyor.chain(t.add.s(1, 1), t.add.s(1).set(queue="other", priority=9)).delay()
    info = job.info()
    assert (info.queue, info.priority, info.state) == ("other", 9, State.SCHEDULED)
    assert info.eta is None  # held for its input, not for a time
    with app.worker(queues=["other"], concurrency=1, schedule=False):
        assert job.result(timeout=30) == 3


def test_an_unbound_signature_cannot_start_a_workflow() -> None:
    from conveyor.task import Signature

    with pytest.raises(conveyor.ConfigurationError, match="not bound"):
        _ = Signature("x") | Signature("y")
    with pytest.raises(conveyor.ConfigurationError, match="not bound"):
        conveyor.chain(Signature("x"), Signature("y")).delay()


def test_empty_workflows_are_refused() -> None:
    with pytest.raises(conveyor.ConfigurationError, match="at least one"):
        conveyor.group()
    with pytest.raises(conveyor.ConfigurationError, match="signatures"):
        conveyor.chain(1, 2)  # type: ignore[arg-type]
