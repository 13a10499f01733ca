"""What a job is: its states, the record a backend stores, and the handle users hold.

The model does no I/O of its own. ``Job`` talks to its backend only through the ``JobClient``
it is given (the app implements it), so this module imports no backend.
"""

from __future__ import annotations

import enum
import os
import random
import threading
import time
import weakref
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from conveyor.errors import JobCancelled, JobExpired, JobFailed, JobNotFound

if TYPE_CHECKING:
    from collections.abc import Mapping

    from conveyor.canvas import Workflow


class State(enum.StrEnum):
    """Where a job is in its life. Final states never change again, except by ``retry()``."""

    SCHEDULED = "scheduled"  # waiting for its time: countdown, eta or a retry's delay
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    def __str__(self) -> str:
        return self.value

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({State.SUCCEEDED, State.FAILED, State.CANCELLED, State.EXPIRED})
WAITING_STATES = frozenset({State.SCHEDULED, State.QUEUED})
ACTIVE_STATES = frozenset({State.SCHEDULED, State.QUEUED, State.RUNNING})


@dataclass(frozen=True, slots=True)
class Progress:
    percent: float
    message: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"percent": self.percent, "message": self.message, "data": self.data}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Progress:
        return cls(float(raw["percent"]), raw.get("message"), dict(raw.get("data") or {}))


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """The error of one attempt, as stored: plain strings, so any process can read it."""

    type: str
    message: str
    traceback: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, "traceback": self.traceback}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ErrorInfo:
        return cls(str(raw["type"]), str(raw["message"]), raw.get("traceback"))


@dataclass(slots=True)
class JobRecord:
    """A job as a backend stores it. Times are POSIX seconds (float, UTC).

    ``token`` is the fencing token of the current lease: it changes on every claim, and only
    the holder of the current token may renew, report progress for, or finish the job.
    """

    id: str
    task: str
    payload: bytes
    queue: str = "default"
    priority: int = 0
    state: State = State.QUEUED
    key: str | None = None
    unique_key: str | None = None
    attempts: int = 0
    failures: int = 0
    crashes: int = 0
    created_at: float = 0.0
    ready_at: float = 0.0
    expires_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    purge_at: float | None = None
    result_ttl: float = 86400.0
    result: bytes | None = None
    error: ErrorInfo | None = None
    progress: Progress | None = None
    worker: str | None = None
    token: int = 0
    lease_expires_at: float | None = None
    cancel_requested: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    def copy(self) -> JobRecord:
        return replace(self, meta=dict(self.meta))


@dataclass(slots=True)
class Claim:
    """A job claimed under a lease; ``token`` fences every later write about it.

    Not frozen: one is made per claimed job, and a frozen dataclass sets each field through
    ``object.__setattr__`` (about 4,000 instructions a job); nothing changes one once made.
    """

    record: JobRecord
    token: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an attempt ended, as handed to ``Backend.finish``.

    ``state`` is succeeded, failed or cancelled; or scheduled/queued for a retry, in which
    case ``ready_at`` says when, and ``counts_failure`` whether it uses up one of ``retries``.
    """

    state: State
    result: bytes | None = None
    error: ErrorInfo | None = None
    ready_at: float | None = None
    counts_failure: bool = True

    @classmethod
    def succeeded(cls, result: bytes) -> Outcome:
        return cls(State.SUCCEEDED, result=result)

    @classmethod
    def failed(cls, error: ErrorInfo) -> Outcome:
        return cls(State.FAILED, error=error)

    @classmethod
    def cancelled(cls, error: ErrorInfo | None = None) -> Outcome:
        return cls(State.CANCELLED, error=error)

    @classmethod
    def retry(cls, ready_at: float, error: ErrorInfo, *, now: float) -> Outcome:
        state = State.SCHEDULED if ready_at > now else State.QUEUED
        return cls(state, error=error, ready_at=ready_at)


_SIXTEEN_DIGITS = 16**15


class IdGenerator:
    """Job ids: 26 lowercase hex-ish characters that sort by creation time.

    Sixteen hex digits of nanoseconds since the epoch, kept strictly increasing within the
    generator, then ten random hex digits so that processes never collide.
    """

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()
        # Seeded from the OS once (a syscall per id costs more than the rest of the id), and
        # again in a forked child, so parent and child never draw the same bits.
        self._random = random.Random(os.urandom(16))
        ref = weakref.ref(self)

        def reseed_in_child() -> None:
            generator = ref()
            if generator is not None:
                generator.reseed()

        os.register_at_fork(after_in_child=reseed_in_child)

    def __call__(self) -> str:
        with self._lock:
            now = max(time.time_ns(), self._last + 1)
            self._last = now
            bits = self._random.getrandbits(40)
        # hex() of both at once costs a third of formatting each; 16 digits since 2006
        if now >= _SIXTEEN_DIGITS:
            return hex(now << 40 | bits)[2:]
        return f"{now:016x}{bits:010x}"

    def reseed(self) -> None:
        self._random = random.Random(os.urandom(16))


def to_datetime(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


@dataclass(frozen=True, slots=True)
class JobInfo:
    """A snapshot of a job, decoded for people and programs."""

    id: str
    task: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    queue: str
    priority: int
    state: State
    attempts: int
    progress: Progress | None
    result: Any
    error: ErrorInfo | None
    created_at: datetime
    eta: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    worker: str | None
    key: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class JobClient(Protocol):
    """What a ``Job`` handle needs from its app."""

    def get_record(self, job_id: str) -> JobRecord | None: ...

    def wait_final(self, job_id: str, timeout: float | None) -> JobRecord | None: ...

    async def await_final(self, job_id: str, timeout: float | None) -> JobRecord | None: ...

    def cancel_job(self, job_id: str) -> bool: ...

    def retry_job(self, job_id: str) -> bool: ...

    def job_info(self, record: JobRecord) -> JobInfo: ...

    def decode_result(self, record: JobRecord) -> Any: ...

    def workflow_of(self, record: JobRecord) -> Workflow | None: ...


def raise_for_outcome(record: JobRecord) -> None:
    """Raise the JobError that a final, unsuccessful record stands for."""
    if record.state is State.FAILED:
        err = record.error or ErrorInfo("JobFailed", "the job failed")
        raise JobFailed(record.id, err.type, err.message, err.traceback)
    if record.state is State.CANCELLED:
        raise JobCancelled(record.id)
    if record.state is State.EXPIRED:
        raise JobExpired(record.id)


class Job:
    """A handle on one job. Every property reads fresh from the backend."""

    __slots__ = ("_client", "id", "task")

    def __init__(self, client: JobClient, job_id: str, task: str | None = None) -> None:
        self._client = client
        self.id = job_id
        self.task = task if task is not None else self._record().task

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.task}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Job) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def _record(self) -> JobRecord:
        record = self._client.get_record(self.id)
        if record is None:
            raise JobNotFound(self.id)
        return record

    @property
    def state(self) -> State:
        return self._record().state

    @property
    def progress(self) -> Progress | None:
        return self._record().progress

    def info(self) -> JobInfo:
        return self._client.job_info(self._record())

    @property
    def workflow(self) -> Workflow | None:
        """The workflow this job is a step of, or None."""
        return self._client.workflow_of(self._record())

    def result(self, timeout: float | None = None) -> Any:
        """Block until the job is final; return its result or raise its JobError.

        Raises ``TimeoutError`` when the job is not final within ``timeout`` seconds.
        """
        record = self._client.wait_final(self.id, timeout)
        return self._outcome(record, timeout)

    async def aresult(self, timeout: float | None = None) -> Any:
        record = await self._client.await_final(self.id, timeout)
        return self._outcome(record, timeout)

    def _outcome(self, record: JobRecord | None, timeout: float | None) -> Any:
        if record is None:
            record = self._record()
        if not record.state.is_final:
            raise TimeoutError(f"job {self.id} is still {record.state} after {timeout} s")
        raise_for_outcome(record)
        return self._client.decode_result(record)

    def cancel(self) -> bool:
        """Cancel a scheduled, queued or running job; False if it was already final."""
        return self._client.cancel_job(self.id)

    def retry(self) -> bool:
        """Send a failed, cancelled or expired job back to queued with a fresh retry budget."""
        return self._client.retry_job(self.id)
