"""``ConveyorBackend``: Django's task backend API over a conveyor app.

Enqueueing writes a conveyor job named by the Django task's import path, on the Django queue
of the same name; Django's priority (−100…100) becomes conveyor's (0…100) by
``(p + 100) // 2``, which keeps the order (two neighbours share a level and run FIFO), and the
exact value travels in the job's ``meta`` and comes back in ``TaskResult``. Workers find the
task by that import path (``running.py``).

Statuses: scheduled and queued → READY, running → RUNNING, succeeded → SUCCESSFUL, failed,
cancelled and expired → FAILED.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone
from django.utils.module_loading import import_string

from conveyor.app import App
from conveyor.errors import SerializationError
from conveyor.integrations.django import compat
from conveyor.integrations.django.running import install
from conveyor.job import JobRecord, State
from conveyor.task import CallOptions

#: the key of a job's ``meta`` that holds what Django gave and conveyor has no field for
META_KEY = "django"

_STATUS = {
    State.SCHEDULED: "READY",
    State.QUEUED: "READY",
    State.RUNNING: "RUNNING",
    State.SUCCEEDED: "SUCCESSFUL",
}

# Django makes a backend per thread and per async context, so the apps (one per store, each
# with its connections and worker hooks) are shared here, process-wide.
_apps: dict[tuple[str, str | None, str | None], App] = {}
_apps_lock = threading.Lock()


def conveyor_priority(priority: int) -> int:
    """Django's −100…100 onto conveyor's 0…100, order kept."""
    return (int(priority) + 100) // 2


def _app_for(options: dict[str, Any]) -> App:
    key = (str(options.get("app") or ""), options.get("url"), options.get("namespace"))
    with _apps_lock:
        app = _apps.get(key)
        if app is None:
            if options.get("app"):
                module, _, attribute = str(options["app"]).partition(":")
                app = import_string(f"{module}.{attribute or 'app'}")
                if not isinstance(app, App):
                    raise TypeError(f"OPTIONS['app'] {options['app']!r} is not a conveyor.App")
            else:
                app = App(options.get("url"), namespace=options.get("namespace"))
            install(app)
            _apps[key] = app
        return app


class ConveyorBackend(compat.BaseTaskBackend):  # type: ignore[misc]
    """``TASKS = {"default": {"BACKEND": "conveyor.integrations.django.ConveyorBackend",
    "QUEUES": [...], "OPTIONS": {"url": ..., "namespace": ...}}}``; or ``"app":
    "module:attribute"`` to use an app of your own (its tasks, hooks and settings)."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.app = _app_for(self.options)

    # -- enqueueing --------------------------------------------------------------------------

    def _call(
        self, task: Any, args: Any, kwargs: Any
    ) -> tuple[tuple[Any, ...], dict[str, Any], CallOptions, dict[str, Any]]:
        self.validate_task(task)
        run_after = task.run_after
        if run_after is not None and timezone.is_naive(run_after):
            run_after = timezone.make_aware(run_after)
        options = CallOptions(
            eta=run_after, queue=task.queue_name, priority=conveyor_priority(task.priority)
        )
        meta = {
            META_KEY: {
                "priority": task.priority,
                "backend": self.alias,
                "run_after": None if run_after is None else run_after.timestamp(),
            }
        }
        return tuple(args), dict(kwargs), options, meta

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        args, kwargs, options, meta = self._call(task, args, kwargs)
        try:
            job = self.app.submit(task.module_path, args, kwargs, options, meta=meta)
        except SerializationError as exc:
            raise TypeError(f"task {task.module_path}: {exc}") from exc
        return self._enqueued(job.id)

    async def aenqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        args, kwargs, options, meta = self._call(task, args, kwargs)
        try:
            job = await self.app.asubmit(task.module_path, args, kwargs, options, meta=meta)
        except SerializationError as exc:
            raise TypeError(f"task {task.module_path}: {exc}") from exc
        import asyncio

        return await asyncio.to_thread(self._enqueued, job.id)  # a read: off the event loop

    def _enqueued(self, job_id: str) -> Any:
        result = self.get_result(job_id)
        compat.signals.task_enqueued.send(type(self), task_result=result)
        return result

    # -- results ---------------------------------------------------------------------------

    def get_result(self, result_id: str) -> Any:
        record = self.app.get_record(result_id)
        task = None if record is None else self._task_of(record)
        if record is None or task is None:
            raise compat.TaskResultDoesNotExist(result_id)
        return self.result_of(record, task)

    async def aget_result(self, result_id: str) -> Any:
        import asyncio

        return await asyncio.to_thread(self.get_result, result_id)

    def _task_of(self, record: JobRecord) -> Any:
        """The Django task the job runs, with the options it was enqueued with."""
        try:
            task = import_string(record.task)
        except ImportError:
            return None
        if not isinstance(task, compat.Task):
            return None
        given = record.meta.get(META_KEY) or {}
        run_after = given.get("run_after")
        return task.using(
            priority=given.get("priority", task.priority),
            queue_name=record.queue,
            run_after=None if run_after is None else _aware(run_after),
            backend=given.get("backend", self.alias),
        )

    def result_of(self, record: JobRecord, task: Any) -> Any:
        status = compat.TaskResultStatus[_STATUS.get(record.state, "FAILED")]
        info = self.app.job_info(record)
        errors = []
        if record.error is not None and record.state is not State.SUCCEEDED:
            path = record.error.type
            if record.state is State.FAILED and isinstance(info.result, dict):
                path = info.result.get("exception_class_path", path)
            errors.append(
                compat.TaskError(exception_class_path=path, traceback=record.error.traceback or "")
            )
        result = compat.TaskResult(
            task=task,
            id=record.id,
            status=status,
            enqueued_at=_aware(record.created_at),
            started_at=None if record.started_at is None else _aware(record.started_at),
            finished_at=None if record.finished_at is None else _aware(record.finished_at),
            last_attempted_at=None if record.started_at is None else _aware(record.started_at),
            args=list(info.args),
            kwargs=dict(info.kwargs),
            backend=self.alias,
            errors=errors,
            worker_ids=[record.worker or "conveyor"] * record.attempts,
        )
        if record.state is State.SUCCEEDED:
            object.__setattr__(result, "_return_value", info.result)
        return result

    def check(self, **kwargs: Any) -> list[Any]:
        return []


def _aware(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)
