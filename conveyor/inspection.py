"""Looking around: the shapes ``app.jobs()``, ``app.workers()``, ``app.schedules()``,
``app.events()`` and ``app.stats()`` return, the checks on their arguments, and the Protocol
through which the web layer sees the app (it must not import ``app.py``).

Pure, no I/O: a layer of its own right above the model (it reads schedules and jobs), below
the backends, which fill these shapes; the app assembles them.
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from conveyor.errors import InvalidArgument
from conveyor.job import Job, JobInfo, Progress, State, to_datetime
from conveyor.schedule import Cron, Every

if TYPE_CHECKING:
    from conveyor.schedule import PeriodicSpec

#: the largest page ``app.jobs()`` hands out
MAX_PAGE = 1000
#: a cursor is a job id: letters, digits and a few separators, not too long
_CURSOR = re.compile(r"[0-9A-Za-z_.:-]{1,128}")

#: upper bounds (seconds) of the run-time histogram's buckets; every backend counts into these
RUNTIME_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    math.inf,
)


def bucket_label(upper: float) -> str:
    """How a bucket's bound is written in a store: ``"0.005"`` … ``"+Inf"``."""
    return "+Inf" if math.isinf(upper) else repr(upper)


def bucket_of(seconds: float) -> str:
    """The label of the bucket a run of ``seconds`` falls in."""
    for upper in RUNTIME_BUCKETS:
        if seconds <= upper:
            return bucket_label(upper)
    return "+Inf"


@dataclass(slots=True)
class WorkerInfo:
    """A worker as the registry shows it (``conveyor workers``, ``GET /api/workers``).

    Times are POSIX seconds; ``running`` the ids of the jobs it runs now."""

    id: str
    host: str
    pid: int
    queues: list[str]
    concurrency: int
    pool: str
    started_at: float
    last_seen: float
    running: list[str] = field(default_factory=list)
    processed: int = 0
    failed: int = 0


@dataclass(frozen=True, slots=True)
class Page:
    """One page of ``app.jobs()``: newest first; ``next_cursor`` fetches the next (None: last
    page). A cursor is a position (the id it stops at), so jobs added meanwhile never shift a
    page."""

    items: list[JobInfo]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """A periodic task: its schedule (``cron`` or ``every`` seconds), when it is due next (None
    when this app does not declare it) and when it was last enqueued."""

    task: str
    cron: str | None
    every: float | None
    next_run: datetime | None
    last_run: datetime | None
    last_job_id: str | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """A change of one job: enqueued (state scheduled or queued), claimed (running), progress,
    finished, retried, cancelled, recovered. ``id`` increases with every event of the store,
    so a reader resumes after the last id it saw (SSE ``Last-Event-ID``). ``progress`` is set
    on progress events (a backend may set it on others too); ``at`` is the store's time."""

    id: int
    job_id: str
    task: str
    state: State
    progress: Progress | None
    at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "task": self.task,
            "state": self.state.value,
            "progress": None if self.progress is None else self.progress.to_json(),
            "at": self.at.isoformat(),
        }


def make_event(
    event_id: int, job_id: str, task: str, state: str, progress: Progress | None, at: float
) -> Event:
    """An Event from what a store keeps (times as POSIX seconds)."""
    when = to_datetime(at)
    assert when is not None
    return Event(event_id, job_id, task, State(state), progress, when)


@dataclass(slots=True)
class TaskStats:
    """What the store counted for one task since it started counting (monotonic counters).

    ``runtime`` maps a bucket's upper bound (``RUNTIME_BUCKETS``) to the number of finished
    attempts (succeeded or failed) whose run time fell in it and in no lower bucket: per bucket,
    not cumulative. ``failures`` counts final failures by error type; ``retries`` the attempts
    that ended in a retry."""

    task: str
    runtime: dict[float, int] = field(default_factory=dict)
    runtime_sum: float = 0.0
    succeeded: int = 0
    failed: int = 0
    retries: int = 0
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def runtime_count(self) -> int:
        return sum(self.runtime.values())


def task_stats_from_counters(rows: Iterable[Sequence[Any]]) -> dict[str, TaskStats]:
    """The task counters from a SQL store's counter rows ``(task, kind, label, n, total)``:
    kind ``succeeded``/``failed`` with the run-time bucket's upper bound as label and the run
    time summed in ``total``, ``error`` with the error type, ``retries``. Rows of one key may
    repeat (they add up) except ``error`` and ``retries``, which a store keeps one row of."""
    tasks: dict[str, TaskStats] = {}
    for task, kind, label, n, total in rows:
        stats = tasks.setdefault(task, TaskStats(task))
        if kind in ("succeeded", "failed"):
            upper = float(label)
            stats.runtime[upper] = stats.runtime.get(upper, 0) + int(n)
            stats.runtime_sum += float(total)
            setattr(stats, kind, getattr(stats, kind) + int(n))
        elif kind == "error":
            stats.failures[label] = int(n)
        elif kind == "retries":
            stats.retries = int(n)
    return tasks


@dataclass(frozen=True, slots=True)
class StoreStats:
    """What ``Backend.job_stats`` reads: the task counters, and the ready time of the oldest
    queued job of each queue that has one."""

    tasks: dict[str, TaskStats]
    oldest_ready_at: dict[str, float]


@dataclass(frozen=True, slots=True)
class QueueStats:
    queue: str
    counts: dict[State, int]  # jobs in each state present
    depth: int  # queued jobs (ready to run)
    oldest_waiting_seconds: float | None  # now − ready time of the oldest queued job


@dataclass(frozen=True, slots=True)
class Stats:
    """``app.stats()``: everything ``/metrics`` reports, read from the store, so every web
    replica reports the same numbers."""

    at: datetime
    queues: dict[str, QueueStats]
    tasks: dict[str, TaskStats]
    workers: int  # registered workers seen within the last minute
    slots: int  # their concurrency, summed
    busy_slots: int  # the jobs they run now


#: a worker not seen for this long counts as gone in ``Stats.workers``
LIVE_WORKER_SECONDS = 60.0


def build_stats(
    counts: Mapping[str, Mapping[State, int]],
    store: StoreStats,
    workers: Sequence[WorkerInfo],
    now: float,
) -> Stats:
    queues = {}
    for queue in sorted(set(counts) | set(store.oldest_ready_at)):
        by_state = dict(counts.get(queue, {}))
        oldest = store.oldest_ready_at.get(queue)
        queues[queue] = QueueStats(
            queue,
            by_state,
            by_state.get(State.QUEUED, 0),
            None if oldest is None else max(0.0, now - oldest),
        )
    live = [w for w in workers if w.last_seen >= now - LIVE_WORKER_SECONDS]
    at = to_datetime(now)
    assert at is not None
    return Stats(
        at,
        queues,
        dict(sorted(store.tasks.items())),
        len(live),
        sum(w.concurrency for w in live),
        sum(len(w.running) for w in live),
    )


def schedule_infos(
    specs: Sequence[PeriodicSpec], recorded: Sequence[Any], now: float
) -> list[ScheduleInfo]:
    """One ScheduleInfo per periodic task the app declares or the store recorded (by name).

    ``recorded`` holds the backend's ``ScheduleState``s (name, last_due, last_job_id,
    last_enqueued_at)."""
    by_spec = {spec.task_name: spec for spec in specs}
    by_state = {state.name: state for state in recorded}
    out = []
    for name in sorted(set(by_spec) | set(by_state)):
        spec, state = by_spec.get(name), by_state.get(name)
        schedule = None if spec is None else spec.schedule
        last = None
        if state is not None:
            last = state.last_enqueued_at if state.last_enqueued_at else state.last_due
        out.append(
            ScheduleInfo(
                task=name,
                cron=schedule.expr if isinstance(schedule, Cron) else None,
                every=schedule.seconds if isinstance(schedule, Every) else None,
                next_run=None if schedule is None else to_datetime(schedule.next_due(now)),
                last_run=to_datetime(last),
                last_job_id=None if state is None else state.last_job_id,
            )
        )
    return out


def check_page(
    state: State | str | None, limit: int, cursor: str | None
) -> tuple[State | None, int, str | None]:
    """The arguments of ``app.jobs()``, checked: InvalidArgument names the wrong one."""
    if state is not None and not isinstance(state, State):
        try:
            state = State(state)
        except ValueError:
            names = ", ".join(s.value for s in State)
            raise InvalidArgument(f"state {state!r} is not one of: {names}") from None
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidArgument(f"limit {limit!r} must be an integer from 1 to {MAX_PAGE}")
    if cursor is not None and (not isinstance(cursor, str) or not _CURSOR.fullmatch(cursor)):
        raise InvalidArgument(f"cursor {cursor!r} is not one this API handed out")
    return state, limit, cursor or None


def check_event_id(after: int | str | None) -> int | None:
    """An event id to resume after (SSE ``Last-Event-ID``): a non-negative integer."""
    if after is None or (isinstance(after, int) and not isinstance(after, bool) and after >= 0):
        return after
    if isinstance(after, str) and after.isdigit() and len(after) < 20:
        return int(after)
    raise InvalidArgument(f"event id {after!r} is not one this API handed out")


class InspectionApp(Protocol):
    """What the web layer (and any other face) needs from the app: ``conveyor.App`` is one.

    Every call reads the store, so any number of replicas show the same thing."""

    def jobs(
        self,
        state: State | str | None = None,
        task: str | None = None,
        queue: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page: ...

    def job(self, job_id: str) -> Job: ...

    def queues(self) -> dict[str, dict[State, int]]: ...

    def workers(self) -> list[WorkerInfo]: ...

    def schedules(self) -> list[ScheduleInfo]: ...

    def purge(self, queue: str) -> int: ...

    def stats(self) -> Stats: ...

    def ping(self) -> bool: ...

    def cancel_job(self, job_id: str) -> bool: ...

    def retry_job(self, job_id: str) -> bool: ...

    def events(
        self, job_id: str | None = None, *, after: int | str | None = None
    ) -> Iterator[Event]: ...

    def aevents(
        self, job_id: str | None = None, *, after: int | str | None = None
    ) -> AsyncIterator[Event]: ...

    def read_events(
        self,
        after: int | str | None = None,
        *,
        job_id: str | None = None,
        limit: int = 1000,
        timeout: float = 0.0,
    ) -> tuple[list[Event], int]: ...

    async def aread_events(
        self,
        after: int | str | None = None,
        *,
        job_id: str | None = None,
        limit: int = 1000,
        timeout: float = 0.0,
    ) -> tuple[list[Event], int]: ...
