"""The tasks an app knows, by name, and its periodic schedules."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from conveyor.errors import ConfigurationError, TaskNotFound

if TYPE_CHECKING:
    from conveyor.context import JobContext
    from conveyor.schedule import PeriodicSpec
    from conveyor.task import Task


#: a context-manager function the worker enters before a task runs and exits after
AroundJob = Callable[["JobContext"], AbstractContextManager[Any]]


class Registry:
    def __init__(self) -> None:
        self._tasks: dict[str, Task[Any, Any]] = {}
        #: the task of this name that the registry holds, or None (no resolver): the dict's
        #: own ``get``, for the worker, which looks up every job's task (``find`` is a
        #: Python call more)
        self.held: Callable[[str], Task[Any, Any] | None] = self._tasks.get
        self._periodic: dict[str, PeriodicSpec] = {}
        #: ``@app.around_job`` hooks, entered in this order around every run
        self.around_job: list[AroundJob] = []
        #: finds a task this registry does not hold yet, by name (the Django integration
        #: resolves Django's tasks by import path); what it returns is added
        self.resolver: Callable[[str], Task[Any, Any] | None] | None = None

    def add(self, task: Task[Any, Any]) -> None:
        existing = self._tasks.get(task.name)
        if existing is not None and existing.fn is not task.fn:
            raise ConfigurationError(
                f"two tasks are named {task.name!r}; give one of them name=..."
            )
        self._tasks[task.name] = task

    def add_around_job(self, hook: AroundJob) -> None:
        self.around_job.append(hook)

    def add_periodic(self, spec: PeriodicSpec) -> None:
        self._periodic[spec.task_name] = spec

    def get(self, name: str) -> Task[Any, Any]:
        found = self.find(name)
        if found is None:
            raise TaskNotFound(name)
        return found

    def find(self, name: str) -> Task[Any, Any] | None:
        found = self._tasks.get(name)
        if found is None and self.resolver is not None:
            found = self.resolver(name)
            if found is not None:
                self.add(found)
        return found

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def names(self) -> list[str]:
        return sorted(self._tasks)

    def queues(self) -> list[str]:
        """Every queue a registered task sends to, ``default`` always among them."""
        return sorted({"default", *(t.options.queue for t in self._tasks.values())})

    @property
    def periodic(self) -> list[PeriodicSpec]:
        return list(self._periodic.values())
