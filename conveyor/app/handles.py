"""What the handles call back into: ``Job`` and ``Workflow`` take the app as their
``JobClient`` and ``WorkflowClient``. A mixin of its own because every other part of the
app hands out handles and so builds on it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from conveyor.backends import Backend
from conveyor.canvas import HOLD, Workflow
from conveyor.errors import JobNotFound, SerializationError
from conveyor.job import Job, JobInfo, JobRecord, State, to_datetime
from conveyor.serialization import Serializer, decode_call


class Handles:
    serializer: Serializer

    if TYPE_CHECKING:  # App's own property, which opens the store on first use

        @property
        def backend(self) -> Backend: ...

    def job(self, job_id: str) -> Job:
        """A handle by id; ``.info()`` raises JobNotFound if the id is unknown."""
        record = self.backend.get(job_id)
        return Job(self, job_id, record.task if record else "")

    def get_record(self, job_id: str) -> JobRecord | None:
        return self.backend.get(job_id)

    def wait_final(self, job_id: str, timeout: float | None) -> JobRecord | None:
        return self.backend.wait_final(job_id, timeout)

    async def await_final(self, job_id: str, timeout: float | None) -> JobRecord | None:
        import asyncio

        return await asyncio.to_thread(self.backend.wait_final, job_id, timeout)

    def cancel_job(self, job_id: str) -> bool:
        if self.backend.get(job_id) is None:
            raise JobNotFound(job_id)
        return self.backend.cancel(job_id, now=time.time())

    def retry_job(self, job_id: str) -> bool:
        if self.backend.get(job_id) is None:
            raise JobNotFound(job_id)
        return self.backend.retry(job_id, now=time.time())

    def decode_result(self, record: JobRecord) -> Any:
        return None if record.result is None else self.serializer.loads(record.result)

    def job_info(self, record: JobRecord) -> JobInfo:
        try:
            args, kwargs = decode_call(self.serializer, record.payload)
        except SerializationError:
            args, kwargs = (), {}
        try:
            result = self.decode_result(record)
        except SerializationError:
            result = None
        return JobInfo(
            id=record.id,
            task=record.task,
            args=tuple(args),
            kwargs=dict(kwargs),
            queue=record.queue,
            priority=record.priority,
            state=record.state,
            attempts=record.attempts,
            progress=record.progress,
            result=result,
            error=record.error,
            created_at=to_datetime(record.created_at) or to_datetime(0.0),  # type: ignore[arg-type]
            eta=(
                to_datetime(record.ready_at) if record.created_at < record.ready_at < HOLD else None
            ),
            started_at=to_datetime(record.started_at),
            finished_at=to_datetime(record.finished_at),
            worker=record.worker,
            key=record.key,
            meta=dict(record.meta),
        )

    def workflow_jobs(self, workflow_id: str) -> list[tuple[str, str, bool, State | None]] | None:
        return self.backend.get_workflow(workflow_id)

    def workflow_of(self, record: JobRecord) -> Workflow | None:
        workflow_id = record.meta.get("workflow")
        return None if workflow_id is None else Workflow(self, workflow_id)
