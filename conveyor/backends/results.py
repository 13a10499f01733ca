"""What the backend contract's operations hand back: small values every backend builds the
same way, kept apart from ``base.py`` so the contract there reads as its operations alone.
``base.py`` re-exports them; import them from either."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from conveyor.job import State


@dataclass(frozen=True, slots=True)
class HeartbeatResult:
    """What a heartbeat learned, per claim ``(job_id, token)`` it was given: the leases that
    are gone, and the current claims of jobs someone asked to cancel. Claims, not job ids: a
    worker may hold an old, lost claim and a new one of the same job at once."""

    lost: frozenset[tuple[str, int]] = frozenset()
    cancel_requested: frozenset[tuple[str, int]] = frozenset()


@dataclass(frozen=True, slots=True)
class SweepResult:
    promoted: int = 0  # scheduled jobs whose time came, now queued
    expired: int = 0  # unstarted jobs past their expires_at, now expired
    purged: int = 0  # final jobs past their purge_at, deleted


class DueResult(enum.StrEnum):
    ENQUEUED = "enqueued"  # this caller recorded the due time and enqueued its job
    DUPLICATE = "duplicate"  # the due time (or a later one) was recorded already
    SKIPPED = "skipped"  # recorded, but not enqueued: the previous run is still active


@dataclass(slots=True)
class ScheduleState:
    """What the backend remembers of a periodic task."""

    name: str
    last_due: float | None = None
    last_job_id: str | None = None
    last_enqueued_at: float | None = None


@dataclass(frozen=True, slots=True)
class RecoveredJob:
    """A running job whose lease ran out, and where ``recover`` sent it."""

    id: str
    state: State
