"""What the web face needs from the app it is handed, as Protocols: ``conveyor.web`` never
imports ``conveyor.app`` (it sits above this layer), it is given an object that has these
calls, the same inspection calls the command line uses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any, Protocol

from conveyor.backends.base import WorkerInfo
from conveyor.job import Job, JobInfo, Progress, State
from conveyor.registry import Registry
from conveyor.task import CallOptions


class Page(Protocol):
    @property
    def items(self) -> Sequence[JobInfo]: ...

    @property
    def next_cursor(self) -> str | None: ...


class Event(Protocol):
    """One change of one job; ``id`` orders events and lets a stream resume after it."""

    @property
    def id(self) -> str: ...

    @property
    def job_id(self) -> str: ...

    @property
    def task(self) -> str: ...

    @property
    def state(self) -> State: ...

    @property
    def progress(self) -> Progress | None: ...

    @property
    def at(self) -> datetime: ...


class ScheduleInfo(Protocol):
    @property
    def task(self) -> str: ...

    @property
    def cron(self) -> str | None: ...

    @property
    def every(self) -> float | None: ...

    @property
    def next_run(self) -> datetime | None: ...

    @property
    def last_run(self) -> datetime | None: ...


class WebApp(Protocol):
    """The app as the HTTP API, the dashboard and /metrics see it."""

    registry: Registry

    def jobs(
        self,
        *,
        state: State | None = None,
        task: str | None = None,
        queue: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page: ...

    def job(self, job_id: str) -> Job: ...

    def queues(self) -> dict[str, dict[State, int]]: ...

    def workers(self) -> Sequence[WorkerInfo]: ...

    def schedules(self) -> Sequence[ScheduleInfo]: ...

    def purge(self, queue: str) -> int: ...

    def submit(
        self, task: str, args: tuple[Any, ...], kwargs: dict[str, Any], options: CallOptions
    ) -> Job: ...

    def aevents(
        self, job_id: str | None = None, *, after: str | None = None
    ) -> AsyncIterator[Event]: ...

    def stats(self) -> Any: ...

    def ping(self) -> bool: ...
