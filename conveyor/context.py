"""What a running task can see of its job: ``current_job()`` and ``progress()``.

A context variable holds the ``JobContext``, so it follows the task into threads started with
``contextvars.copy_context`` and into asyncio tasks; outside a job both are harmless.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

#: where progress goes: (job id, fencing token, percent, message, data). It takes the id and
#: token rather than closing over them, so one sink serves every job (no closure per job).
ProgressSink = Callable[[str, int, float, "str | None", "dict[str, Any]"], None]


def _ignore(
    job_id: str, token: int, percent: float, message: str | None, data: dict[str, Any]
) -> None:
    return None


@dataclass(eq=False)
class JobContext:
    """The job a task is running for. ``cancelled`` turns true once cancellation is
    requested, so long C calls or loops can check it and stop early."""

    id: str
    task: str
    attempt: int
    queue: str
    meta: dict[str, Any] = field(default_factory=dict)
    #: the fencing token of the claim this run holds: tells two runs of one job apart in logs
    token: int = 0
    _sink: ProgressSink = field(default=_ignore, repr=False)
    # A plain flag (one store, atomic under the GIL), not an Event: a job needs no waiting
    # on it, and an Event per job is measurable on the hot path.
    _cancelled: bool = field(default=False, repr=False)

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    @property
    def due(self) -> datetime | None:
        """For a periodic job, the due time it runs for (aware, UTC); None for other jobs."""
        due = self.meta.get("due")
        return None if due is None else datetime.fromtimestamp(float(due), UTC)

    def mark_cancelled(self) -> None:
        self._cancelled = True


_current: contextvars.ContextVar[JobContext | None] = contextvars.ContextVar(
    "conveyor_current_job", default=None
)


def current_job() -> JobContext | None:
    """The running job's context, or None outside a job."""
    return _current.get()


def progress(percent: float, message: str | None = None, **data: Any) -> None:
    """Report progress of the running job (percent 0–100, a message, any JSON data).

    Outside a job it does nothing."""
    ctx = _current.get()
    if ctx is not None:
        ctx._sink(ctx.id, ctx.token, float(percent), message, data)


#: make a context current (returns the token to ``leave`` with), and restore the previous one:
#: the context variable's own methods, as the worker calls them for every job
enter = _current.set
leave = _current.reset
