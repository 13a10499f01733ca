"""The executor's ``prepare``, which builds a run and its context field by field."""

from __future__ import annotations

import dataclasses
import threading

import conveyor
from conveyor.context import JobContext
from conveyor.job import Claim, JobRecord
from conveyor.worker.execute import JobExecutor, JobRun


def test_a_prepared_run_and_its_context_hold_every_field_as_their_constructors_set_them() -> None:
    app = conveyor.App("memory://")

    @app.task(name="tasks.add")
    def add(x: int, y: int = 0) -> int:
        return x + y

    registry = app.registry
    executor = JobExecutor(registry, app.serializer, lambda *a: None)
    record = JobRecord("j1", "tasks.add", b'[[1],{"y":2}]', queue="q", attempts=3, meta={"m": 1})
    claim = Claim(record, 9)

    run = executor.prepare(claim, 12.5)

    expected_ctx = JobContext("j1", "tasks.add", 3, "q", {"m": 1}, 9, executor._progress)
    assert vars(run.ctx) == vars(expected_ctx)
    assert run.ctx is not None and run.ctx.meta is not record.meta  # a copy the task may change
    expected = JobRun(claim, registry.find("tasks.add"), (1,), {"y": 2}, run.ctx, 12.5)
    for f in dataclasses.fields(JobRun):  # a field left unset would raise here
        if f.name != "lock":
            assert getattr(run, f.name) == getattr(expected, f.name), f.name
    assert isinstance(run.lock, type(threading.Lock())) and run.lock is not expected.lock
    assert run.key == ("j1", 9) and run.early is None and not run.started
    app.close()
