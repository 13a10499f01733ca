"""Builders for the workflow conformance tests: a workflow stored as an app would store it,
and the arguments a claimed step would run with."""

from __future__ import annotations

import json
from typing import Any

from conveyor.backends.base import Backend
from conveyor.canvas import HOLD, Node, compile_workflow, flow_meta, input_value, open_inputs
from conveyor.job import Claim, JobRecord, Outcome, State
from conveyor.task import Signature
from tests.backends.helpers import NOW, make_record, new_id


def s(task: str, *args: Any) -> Signature:
    return Signature(task, args)


def store_workflow(
    backend: Backend, node: Node, *, now: float = NOW, expires: dict[str, float] | None = None
) -> list[JobRecord]:
    """Store a workflow; returns its records in the order given. ``expires``: expiry times
    by task name."""
    plan = compile_workflow(node)
    ids = [new_id() for _ in plan.steps]
    records = []
    for step, job_id in zip(plan.steps, ids, strict=True):
        payload = json.dumps([list(step.signature.args), {}]).encode()
        record = make_record(
            id=job_id,
            task=step.signature.task,
            payload=payload,
            at=now,
            meta=flow_meta(step, ids, ids[0]),
            expires_at=(expires or {}).get(step.signature.task),
        )
        if step.held:
            record.state, record.ready_at = State.SCHEDULED, HOLD
        records.append(record)
    output = plan.output
    outputs = {ids[output]} if isinstance(output, int) else set()
    backend.enqueue_workflow(ids[0], records, outputs)
    return records


def arguments(record: JobRecord) -> list[Any]:
    """The positional arguments the worker would call the step with."""
    opened = open_inputs(record.payload)
    if opened is None:
        return list(json.loads(record.payload)[0])
    first = input_value(record.meta["flow"]["in"], opened[1], json.loads)
    return [first, *json.loads(opened[0])[0]]


def claim_all(backend: Backend, *, now: float = NOW) -> dict[str, Claim]:
    """Every ready job, by task name (tasks are named uniquely in these tests)."""
    claims = backend.claim("w1", ["default"], 100, lease_seconds=30.0, now=now)
    return {c.record.task: c for c in claims}


def succeed(backend: Backend, claim: Claim, value: Any, *, now: float = NOW) -> None:
    outcome = Outcome.succeeded(json.dumps(value).encode())
    assert backend.finish(claim.record.id, claim.token, outcome, now=now)


def states(backend: Backend, records: list[JobRecord]) -> dict[str, State]:
    out = {}
    for r in records:
        got = backend.get(r.id)
        assert got is not None
        out[r.task] = got.state
    return out
