"""Periodic schedules: when a periodic task is due, and what one scheduler tick should do.

Pure: no I/O, the clock is passed in. Times are POSIX seconds (float, UTC). Cron expressions
are parsed and iterated by croniter, time zones come from zoneinfo; this module only asks
them questions, so daylight-saving changes behave exactly as those two define them.

Exactly-once enqueue across a cluster rests on two things: every scheduler computes the same
due times from the same schedule (``latest_due`` is a function of the clock and nothing
local), and the backend records each due time atomically (``Backend.record_due``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from conveyor.errors import ConfigurationError

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from croniter import croniter

#: how many due times ``Cron`` looks at to find its nominal period
_PERIOD_SAMPLE = 64
#: the least grace a due time gets whatever ``misfire_grace`` says: the scheduler's own
#: latency (it wakes at least once a second, then makes a backend round trip) is not a misfire
MIN_GRACE_SECONDS = 2.0
#: a fixed starting point for that sample, so every process finds the same period
_PERIOD_REFERENCE = datetime(2024, 1, 1, tzinfo=UTC).timestamp()


def _croniter() -> tuple[Any, type[Exception]]:
    """croniter and its error, imported on first use: an app without cron schedules (and
    every worker of one) need not load croniter and dateutil."""
    from croniter import CroniterError, croniter

    return croniter, CroniterError


class Schedule(Protocol):
    """When a periodic task is due."""

    @property
    def period_seconds(self) -> float:
        """The nominal period; the default ``misfire_grace``."""
        ...

    def next_due(self, after: float) -> float:
        """The first due time strictly after ``after``."""
        ...

    def latest_due(self, at: float) -> float | None:
        """The last due time at or before ``at`` (None if there is none)."""
        ...

    def describe(self) -> str:
        """For people: ``"cron */5 * * * * (Europe/Berlin)"``, ``"every 1h"``."""
        ...


class Cron:
    """A cron expression (anything croniter accepts, ``@hourly`` included) in a time zone."""

    __slots__ = ("_period", "expr", "tz", "zone")

    def __init__(self, expr: str, tz: str = "UTC") -> None:
        self.expr = expr.strip()
        self.tz = tz
        self.zone = _zone(tz)
        try:
            _croniter()[0](self.expr, datetime.fromtimestamp(_PERIOD_REFERENCE, self.zone))
        except (_croniter()[1], ValueError, TypeError, KeyError) as exc:
            raise ConfigurationError(f"bad cron expression {expr!r}: {exc}") from exc
        self._period = self._nominal_period()

    def __repr__(self) -> str:
        return f"Cron({self.expr!r}, tz={self.tz!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cron) and (other.expr, other.tz) == (self.expr, self.tz)

    def __hash__(self) -> int:
        return hash((Cron, self.expr, self.tz))

    @property
    def period_seconds(self) -> float:
        return self._period

    def _iter(self, start: float) -> croniter[float]:
        # A fresh iterator per question: croniter objects are stateful, schedules are shared.
        it: croniter[float] = _croniter()[0](self.expr, datetime.fromtimestamp(start, self.zone))
        return it

    def next_due(self, after: float) -> float:
        # Cron due times fall on whole seconds, so starting from the whole second at or
        # before ``after`` and asking for the next one gives the first strictly after it.
        try:
            return float(self._iter(math.floor(after)).get_next(float))
        except _croniter()[1]:  # no later due time (a year field in the past)
            return math.inf

    def latest_due(self, at: float) -> float | None:
        # croniter's get_prev is strictly before its start; start one whole second past the
        # last whole second <= at, so a due time equal to ``at`` counts.
        try:
            return float(self._iter(math.floor(at) + 1).get_prev(float))
        except _croniter()[1]:  # no earlier due time (croniter's lower date bound)
            return None

    def _nominal_period(self) -> float:
        """The longest gap between consecutive due times in a fixed sample.

        The longest, so that the default grace of a weekday schedule covers a weekend and a
        monthly one covers a 31-day month."""
        times = [_PERIOD_REFERENCE]
        for _ in range(_PERIOD_SAMPLE):
            times.append(self.next_due(times[-1]))
            if math.isinf(times[-1]):
                break
        gaps = [b - a for a, b in itertools.pairwise(times[1:]) if not math.isinf(b)]
        return max(gaps, default=86400.0)

    def describe(self) -> str:
        return f"cron {self.expr} ({self.tz})"


class Every:
    """A fixed period of at least one second.

    Due times are the multiples of the period since the POSIX epoch, not "period after start":
    every scheduler in the cluster then computes the same due times whenever it started, which
    is what lets the backend record each one exactly once.
    """

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        if not math.isfinite(seconds) or seconds < 1:
            raise ConfigurationError(f"every={seconds!r}: the period must be at least 1 second")
        self.seconds = float(seconds)

    def __repr__(self) -> str:
        return f"Every({self.seconds:g})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Every) and other.seconds == self.seconds

    def __hash__(self) -> int:
        return hash((Every, self.seconds))

    @property
    def period_seconds(self) -> float:
        return self.seconds

    def latest_due(self, at: float) -> float | None:
        due = math.floor(at / self.seconds) * self.seconds
        # Division may round across a boundary; the corrections keep the contract exact.
        if due > at:
            due -= self.seconds
        elif due + self.seconds <= at:
            due += self.seconds
        return due

    def next_due(self, after: float) -> float:
        due = self.latest_due(after)
        assert due is not None
        return due + self.seconds

    def describe(self) -> str:
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if self.seconds % size == 0:
                return f"every {self.seconds / size:g}{unit}"
        return f"every {self.seconds:g}s"


def _zone(tz: str) -> ZoneInfo:
    # zoneinfo (and the sysconfig it loads) only for an app with a periodic task: ~0.4 MB
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ConfigurationError(
            f"unknown time zone {tz!r}: use an IANA name such as 'UTC' or 'Europe/Berlin'"
        ) from exc


def make_schedule(
    *, cron: str | None, every: float | timedelta | None, tz: str = "UTC"
) -> Schedule:
    """The schedule for ``@app.periodic(cron=..., tz=...)`` or ``@app.periodic(every=...)``."""
    if (cron is None) == (every is None):
        raise ConfigurationError(
            "periodic tasks need exactly one of cron='*/5 * * * *' or every=<seconds|timedelta>"
        )
    if cron is not None:
        if not isinstance(cron, str):
            raise ConfigurationError(f"cron must be a string, not {type(cron).__name__}")
        return Cron(cron, tz)
    if isinstance(every, timedelta):
        return Every(every.total_seconds())
    if isinstance(every, bool) or not isinstance(every, int | float):
        raise ConfigurationError(f"every must be seconds or a timedelta, not {every!r}")
    if tz != "UTC":
        _zone(tz)  # still reject a misspelt zone; an every= schedule does not depend on it
    return Every(every)


@dataclass(frozen=True, slots=True)
class PeriodicSpec:
    """A periodic task: its task name (the schedule's name in the backend) and its rules."""

    task_name: str
    schedule: Schedule
    misfire_grace: float | None = None  # seconds; None means one period
    overlap: bool = True
    args: tuple[Any, ...] = ()  # JSON arguments of every job it enqueues
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.misfire_grace is not None and not self.misfire_grace >= 0:
            raise ConfigurationError(
                f"misfire_grace={self.misfire_grace!r} for {self.task_name}: "
                "use seconds >= 0, or None for one period"
            )

    @property
    def grace_seconds(self) -> float:
        """How late a due time may still run."""
        if self.misfire_grace is None:
            return max(self.schedule.period_seconds, MIN_GRACE_SECONDS)
        return max(self.misfire_grace, MIN_GRACE_SECONDS)


@dataclass(frozen=True, slots=True)
class Decision:
    """What one tick does for one periodic task.

    ``due``: the due time to record and enqueue now, if any. ``skipped_first`` and
    ``skipped_last``: the range of due times given up as misfired (None when none were).
    ``next_check``: when this task is next due.
    """

    due: float | None
    next_check: float
    skip_if_active: bool
    skipped_first: float | None = None
    skipped_last: float | None = None

    @property
    def skipped(self) -> bool:
        return self.skipped_first is not None


def due_now(spec: PeriodicSpec, last_due: float | None, now: float) -> Decision:
    """Decide one tick for ``spec``.

    ``last_due`` is the last due time already handled (recorded in the backend, or given up
    as misfired); for a task never recorded, the scheduler passes the time it first saw the
    task, and ``None`` means the same as ``now``. Due times before that are not back-filled:
    a new periodic task first runs at its first due time after it appears.

    Only the latest due time at or before ``now`` can run, never a burst of missed ones: it
    runs when it is at most ``grace_seconds`` late, else it is skipped too. Earlier due times
    after ``last_due`` are skipped. With the default grace (one period) the latest due time is
    never too late, so a cluster that was down runs the task once on start.
    """
    skip_if_active = not spec.overlap
    schedule = spec.schedule
    handled = now if last_due is None else last_due
    next_check = schedule.next_due(max(now, handled))
    latest = schedule.latest_due(now)
    if latest is None or latest <= handled:
        return Decision(None, next_check, skip_if_active)

    first_missed = schedule.next_due(handled)
    if now - latest <= spec.grace_seconds:
        if first_missed >= latest:
            return Decision(latest, next_check, skip_if_active)
        # Due times fall at least one second apart, so half a second before ``latest`` lies
        # between it and the due time before it.
        before = schedule.latest_due(latest - 0.5)
        return Decision(latest, next_check, skip_if_active, first_missed, before)
    return Decision(None, next_check, skip_if_active, first_missed, latest)


def check_periodic_call(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], *, owner: str
) -> None:
    """A periodic task's ``args``/``kwargs``, fixed at declaration: they must fit the
    function and be plain JSON, so a schedule never enqueues a job that cannot run."""
    import inspect
    import json

    try:
        inspect.signature(fn).bind(*args, **kwargs)
    except TypeError as exc:
        raise ConfigurationError(f"{owner}: args/kwargs do not fit the function: {exc}") from None
    except ValueError:  # no signature to check (a builtin)
        pass
    try:
        json.dumps([list(args), kwargs])
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{owner}: args/kwargs must be JSON: {exc}") from None
