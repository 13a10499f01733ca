"""The workflow graph's one rule, for the backends that decide it in Python (memory, SQLite).

``advance`` runs inside the operation that made a workflow job final (finish, cancel,
release, recover, sweep), under the same lock or transaction, so a successor is decided
exactly once: the input that fills a step's last slot queues it, and a failure stops what
depends on it. ``redis/workflow.lua`` is the same rule in Lua; keep the two in step.

The graph is data in each job's ``meta`` (``canvas.flow_meta``): ``flow.next`` lists the
successors ``[job id, slot, enters]``; ``flow.in`` describes a held step's inputs
(``n`` slots, ``depth`` of the group it gathers, 0 for a chain link; ``af``:
allow_failures). A failure travels as a ``Stop``: the job it started at, its error, and
``level``, the outermost group that a chain link carried it into. A gathering step whose
group is at that level or deeper is part of the stopped chain and is cancelled; one above it
sees a member that failed: a ``Failure`` in its slot with ``allow_failures``, else it fails
naming the member.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from conveyor.canvas import HOLD, failure_bytes, pack_inputs
from conveyor.job import ErrorInfo, State


@dataclass(frozen=True, slots=True)
class Stop:
    origin: str
    error_type: str
    message: str
    level: int = 0


class FlowStore(Protocol):
    """The storage steps ``advance`` needs, inside the caller's lock or transaction."""

    def flow_of(self, job_id: str) -> tuple[State, float, dict[str, Any]] | None:
        """The job's state, ready_at and ``meta["flow"]`` (empty when none); None if gone."""

    def put_input(self, job_id: str, slot: int, value: bytes) -> bool:
        """Store an input slot of a held step once (a second write of the same slot, or a
        write to a step no longer held, changes nothing); True when it filled the last
        slot."""

    def promote(self, job_id: str, slots: list[bytes], *, now: float) -> None:
        """Queue a held step with its inputs packed around its payload (``pack_inputs``),
        ``ready_at = now``, and drop its stored inputs."""

    def end(self, job_id: str, state: State, error: ErrorInfo, *, now: float) -> None:
        """Make a held step final (cancelled or failed) as ``finish`` would, and drop its
        stored inputs."""

    def take_inputs(self, job_id: str) -> list[bytes]:
        """The stored slots of a step, in slot order."""


def is_held(state: State, ready_at: float) -> bool:
    return state is State.SCHEDULED and ready_at >= HOLD


def stop_of(job_id: str, state: State, error: ErrorInfo | None) -> Stop:
    if error is not None:
        return Stop(job_id, error.type, error.message)
    kind = {State.CANCELLED: "JobCancelled", State.EXPIRED: "JobExpired"}.get(state, "JobFailed")
    return Stop(job_id, kind, f"the job was {state}")


def advance(
    store: FlowStore,
    job_id: str,
    state: State,
    result: bytes | None,
    error: ErrorInfo | None,
    *,
    now: float,
    flow: dict[str, Any] | None = None,
    stop: Stop | None = None,
) -> None:
    """Decide the successors of a workflow job that just became final."""
    if flow is None:
        found = store.flow_of(job_id)
        flow = {} if found is None else found[2]
    links = flow.get("next")
    if not links:
        return
    if state is State.SUCCEEDED:
        for successor, slot, _ in links:
            _fill(store, successor, slot, b"r" + (result or b""), now=now)
        return
    stop = stop or stop_of(job_id, state, error)
    for successor, slot, enters in links:
        found = store.flow_of(successor)
        if found is None or not is_held(found[0], found[1]):
            continue  # already decided: stopped by another member, or cancelled
        inputs = found[2].get("in", {})
        level = min(stop.level, enters) if stop.level and enters else stop.level or enters
        depth = inputs.get("depth", 0)
        if depth and not (level and depth >= level):
            if inputs.get("af"):
                value = b"f" + failure_bytes(stop.error_type, stop.message, stop.origin)
                _fill(store, successor, slot, value, now=now)
                continue
            message = f"chord member {stop.origin} failed: {stop.error_type}: {stop.message}"
            store.end(successor, State.FAILED, ErrorInfo(stop.error_type, message), now=now)
            then = Stop(successor, stop.error_type, message)
            advance(store, successor, State.FAILED, None, None, now=now, flow=found[2], stop=then)
        else:
            message = f"{stop.origin} did not succeed ({stop.error_type}: {stop.message})"
            store.end(successor, State.CANCELLED, ErrorInfo("WorkflowStopped", message), now=now)
            then = Stop(stop.origin, stop.error_type, stop.message, level)
            advance(
                store, successor, State.CANCELLED, None, None, now=now, flow=found[2], stop=then
            )


def _fill(store: FlowStore, job_id: str, slot: int, value: bytes, *, now: float) -> None:
    if store.put_input(job_id, slot, value):
        store.promote(job_id, store.take_inputs(job_id), now=now)


def in_workflow(meta: dict[str, Any]) -> bool:
    return "flow" in meta


__all__ = ["FlowStore", "Stop", "advance", "in_workflow", "is_held", "pack_inputs"]
