"""The scheduler loop: turns periodic schedules into jobs, each due time exactly once.

It runs in every worker (and alone as ``conveyor scheduler``). Any number may run against one
backend: they all compute the same due times (``conveyor.schedule``), and
``Backend.record_due`` records each due time atomically, so exactly one of them enqueues it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from conveyor.backends.base import Backend, DueResult
from conveyor.errors import ConfigurationError
from conveyor.job import JobRecord, to_datetime
from conveyor.schedule import Decision, PeriodicSpec, due_now

#: the longest the loop sleeps, so that a jump of the clock or a new record is noticed soon
MAX_WAIT_SECONDS = 1.0
#: how long the loop backs off after the backend failed
ERROR_BACKOFF_SECONDS = 1.0

log = logging.getLogger("conveyor.scheduler")


def _when(ts: float | None) -> str:
    dt = to_datetime(ts)
    return "-" if dt is None else dt.isoformat(timespec="seconds")


class Scheduler:
    """Enqueues the jobs of periodic tasks when they are due.

    ``make_record(spec, due)`` builds the job for one due time (the app gives it the task's
    options); the clock is injected so tests move time without sleeping.
    """

    def __init__(
        self,
        backend: Backend,
        specs: Sequence[PeriodicSpec],
        make_record: Callable[[PeriodicSpec, float], JobRecord],
        *,
        clock: Callable[[], float] = time.time,
        logger: logging.Logger | None = None,
    ) -> None:
        names = [spec.task_name for spec in specs]
        doubles = sorted({name for name in names if names.count(name) > 1})
        if doubles:
            raise ConfigurationError(f"more than one periodic schedule for {', '.join(doubles)}")
        self._backend = backend
        self._specs = tuple(specs)
        self._make_record = make_record
        self._clock = clock
        self._log = logger or log
        # What this scheduler already handled, per task: the time it first saw a task that
        # was never recorded (no back-fill before it), and due times it gave up as misfired
        # (so that it logs each once). The backend's record takes over once it is later.
        self._handled: dict[str, float] = {}

    @property
    def specs(self) -> tuple[PeriodicSpec, ...]:
        return self._specs

    def tick(self) -> float:
        """One pass over every periodic task; returns the next due time across them."""
        now = self._clock()
        if not self._specs:
            return now + MAX_WAIT_SECONDS
        recorded = {state.name: state.last_due for state in self._backend.schedules()}
        next_check = float("inf")
        for spec in self._specs:
            decision = due_now(spec, self._last_handled(spec.task_name, recorded, now), now)
            self._apply(spec, decision, now)
            next_check = min(next_check, decision.next_check)
        return next_check

    def _last_handled(self, name: str, recorded: dict[str, float | None], now: float) -> float:
        known = [t for t in (recorded.get(name), self._handled.get(name)) if t is not None]
        if not known:
            self._handled[name] = now
            return now
        return max(known)

    def _apply(self, spec: PeriodicSpec, decision: Decision, now: float) -> None:
        name = spec.task_name
        if decision.skipped:
            self._log_misfire(spec, decision)
            assert decision.skipped_last is not None
            self._mark(name, decision.skipped_last)
        if decision.due is None:
            return
        result = self._backend.record_due(
            name,
            decision.due,
            self._make_record(spec, decision.due),
            skip_if_active=decision.skip_if_active,
            now=now,
        )
        self._mark(name, decision.due)
        if result is DueResult.SKIPPED:
            self._log.info(
                "periodic %s: skipped due time %s, its previous run is still queued or "
                "running (overlap=False)",
                name,
                _when(decision.due),
            )
        elif result is DueResult.ENQUEUED:
            self._log.debug("periodic %s: enqueued due time %s", name, _when(decision.due))

    def _mark(self, name: str, due: float) -> None:
        self._handled[name] = max(self._handled.get(name, due), due)

    def _log_misfire(self, spec: PeriodicSpec, decision: Decision) -> None:
        missed = f"{_when(decision.skipped_first)} to {_when(decision.skipped_last)}"
        if decision.due is not None:
            self._log.info(
                "periodic %s (%s): skipped due times %s, missed while nothing ran; "
                "running the latest, %s, once",
                spec.task_name,
                spec.schedule.describe(),
                missed,
                _when(decision.due),
            )
        else:
            self._log.info(
                "periodic %s (%s): skipped due times %s, the latest is more than %gs late "
                "(misfire_grace)",
                spec.task_name,
                spec.schedule.describe(),
                missed,
                spec.grace_seconds,
            )

    def run(self, stop: threading.Event) -> None:
        """Tick until ``stop`` is set, sleeping until the next due time in between."""
        while not stop.is_set():
            try:
                next_check = self.tick()
            except Exception:
                self._log.exception(
                    "scheduler tick failed; trying again in %gs",
                    ERROR_BACKOFF_SECONDS,
                )
                stop.wait(ERROR_BACKOFF_SECONDS)
                continue
            stop.wait(min(max(next_check - self._clock(), 0.0), MAX_WAIT_SECONDS))
