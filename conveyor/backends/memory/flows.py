"""The workflow graph's storage steps for the memory backend: what ``flow.advance`` reads and
writes, on the backend's dicts, so the one rule in ``backends/flow.py`` decides successors."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from conveyor.backends.base import apply_outcome
from conveyor.backends.flow import is_held, pack_inputs
from conveyor.job import ErrorInfo, JobRecord, Outcome, State

if TYPE_CHECKING:
    from conveyor.backends.memory.backend import MemoryBackend


class Flows:
    """The workflow graph's storage steps (``flow.FlowStore``) on the backend's dicts; the
    backend's lock is held by every caller."""

    def __init__(self, backend: MemoryBackend) -> None:
        self._jobs = backend._jobs
        self._emit = backend._emit
        self.workflows: dict[str, list[tuple[str, str, bool]]] = {}
        self._live: dict[str, int] = {}
        self._inputs: dict[str, dict[int, bytes]] = {}

    def add(self, workflow_id: str, records: Sequence[JobRecord], outputs: Collection[str]) -> None:
        self.workflows[workflow_id] = [(r.id, r.task, r.id in outputs) for r in records]
        self._live[workflow_id] = len(records)

    def forget(self, record: JobRecord) -> None:
        """A workflow job was purged: the workflow goes with its last job."""
        self._inputs.pop(record.id, None)
        workflow_id = record.meta.get("workflow")
        if workflow_id in self._live:
            self._live[workflow_id] -= 1
            if self._live[workflow_id] <= 0:
                del self._live[workflow_id], self.workflows[workflow_id]

    def flow_of(self, job_id: str) -> tuple[State, float, dict[str, Any]] | None:
        record = self._jobs.get(job_id)
        if record is None:
            return None
        return record.state, record.ready_at, record.meta.get("flow", {})

    def put_input(self, job_id: str, slot: int, value: bytes) -> bool:
        record = self._jobs.get(job_id)
        if record is None or not is_held(record.state, record.ready_at):
            return False
        slots = self._inputs.setdefault(job_id, {})
        if slot in slots:
            return False
        slots[slot] = value
        return len(slots) == int(record.meta["flow"]["in"]["n"])

    def take_inputs(self, job_id: str) -> list[bytes]:
        slots = self._inputs.pop(job_id, {})
        return [slots[i] for i in sorted(slots)]

    def promote(self, job_id: str, slots: list[bytes], *, now: float) -> None:
        record = self._jobs[job_id]
        record.payload = pack_inputs(record.payload, slots)
        record.state = State.QUEUED
        record.ready_at = now
        self._emit(record)

    def end(self, job_id: str, state: State, error: ErrorInfo, *, now: float) -> None:
        self._inputs.pop(job_id, None)
        record = self._jobs[job_id]
        apply_outcome(record, Outcome(state, error=error), now=now)
        self._emit(record)
