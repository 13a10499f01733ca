"""The worker's bookkeeping of claimed jobs: which it holds (their leases), which a pool slot
is busy with, how many claims are under way, and whether claiming ahead pays.

The fetcher and the finisher both claim (the finisher in the same backend call that writes a
batch of outcomes), so the room for new jobs is *reserved* under the lock before a claim and
given back after it: two claims never take the same room.

Runs are kept by their claim (job id and token, ``JobRun.key``): a worker that was frozen
past its lease may claim the same job again while its old run still winds down, and the two
must never be confused.
"""

from __future__ import annotations

import threading
import time

from conveyor.worker.execute import JobRun

Key = tuple[str, int]

#: claim ahead of free slots only while runs take less than this on average
PREFETCH_BELOW_SECONDS = 0.005
#: jobs claimed ahead go back to the queue when every slot has been busy this long
STUCK_SECONDS = 0.1


class Slots:
    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self.cond = threading.Condition()
        # Claimed and not yet finished (the leases to renew), and of those, the ones handed to
        # the pool and not yet ended. A slot frees when its run ends, before the outcome is
        # written, so the next claim overlaps the write instead of waiting for it.
        self.active: dict[Key, JobRun] = {}
        self.in_pool: set[Key] = set()
        self._latest: dict[str, JobRun] = {}  # job id -> its newest claim held
        self._reserved = 0
        # How long a task runs (a moving average); it starts high, so nothing is claimed
        # ahead before the worker has seen its jobs are short.
        self.run_seconds = 1.0

    # -- room for claims -------------------------------------------------------------------

    def prefetch(self) -> int:
        """How many jobs to claim beyond the free slots: as many as there are slots while
        jobs are short, none otherwise.

        Claiming ahead halves the claims per job when jobs take microseconds, and a claimed
        job then waits only as long as a short job runs. With long jobs it would sit
        reserved behind them while other workers idle (Celery's prefetch problem), so the
        worker stops claiming ahead as soon as its jobs get slow, and hands back what it
        claimed ahead when every slot is stuck (see ``stuck``).
        """
        return self.concurrency if self.run_seconds < PREFETCH_BELOW_SECONDS else 0

    def reserve(self) -> int:
        """Reserve room for a claim; returns how many jobs it may take (maybe 0)."""
        with self.cond:
            capacity = self.concurrency + self.prefetch()
            free = min(
                capacity - len(self.in_pool) - self._reserved,
                2 * capacity - len(self.active) - self._reserved,
            )
            if free <= 0:
                return 0
            self._reserved += free
            return free

    def unreserve(self, n: int) -> None:
        with self.cond:
            self._reserved -= n
            self.cond.notify_all()

    def admit(self, run: JobRun, *, to_pool: bool) -> JobRun | None:
        """Hold a new claim; returns an older claim of the same job still held, which is lost
        for sure (the store gave the job a new token), for the caller to stop."""
        with self.cond:
            key = run.key
            self.active[key] = run
            if to_pool:
                self.in_pool.add(key)
            older = self._latest.get(run.id)
            self._latest[run.id] = run
        return older if older is not None and older.key in self.active else None

    def wait_for_room(self) -> bool:
        """Wait a little for a slot to free; True when jobs claimed ahead are waiting (the
        caller then checks whether they are stuck behind slow runs)."""
        with self.cond:
            waiting = len(self.in_pool) > self.concurrency
            self.cond.wait(STUCK_SECONDS if waiting else 0.5)
            return waiting

    # -- runs ending -----------------------------------------------------------------------

    def ended(self, run: JobRun) -> None:
        """A pool is done with the run (its outcome may still have to be written)."""
        if run.began_at:
            took = time.monotonic() - run.began_at
            self.run_seconds += (took - self.run_seconds) * 0.05
        with self.cond:
            self.in_pool.discard(run.key)
            self.cond.notify_all()

    def forget(self, run: JobRun) -> None:
        """The run is over for this worker: finished, handed back or lost."""
        key = run.key
        with self.cond:
            self.active.pop(key, None)
            self.in_pool.discard(key)
            if self._latest.get(run.id) is run:
                del self._latest[run.id]
            self.cond.notify_all()

    def stuck(self) -> bool:
        """Every slot is busy with a run older than STUCK_SECONDS: jobs claimed ahead should
        go back to the queue (and claiming ahead stops for now)."""
        now = time.monotonic()
        with self.cond:
            running = [r for r in self.active.values() if r.key in self.in_pool and r.began_at]
            if len(running) < self.concurrency:
                return False
            if any(now - r.began_at < STUCK_SECONDS for r in running):
                return False
        self.run_seconds = max(self.run_seconds, PREFETCH_BELOW_SECONDS)
        return True

    # -- views -----------------------------------------------------------------------------

    def leases(self) -> list[tuple[str, int, float]]:
        """Each claim held, with when it was sent (for the local deadline)."""
        with self.cond:
            return [(run.id, run.token, run.sent_at) for run in self.active.values()]

    def ids(self) -> list[str]:
        with self.cond:
            return list(dict.fromkeys(job_id for job_id, _ in self.active))

    def running(self, key: Key) -> JobRun | None:
        """The run of this claim if a pool slot is busy with it (not if it only awaits its
        write)."""
        with self.cond:
            return self.active.get(key) if key in self.in_pool else None

    def snapshot(self) -> list[JobRun]:
        with self.cond:
            return list(self.active.values())

    def wait_idle(self, timeout: float, hurry: threading.Event | None = None) -> bool:
        """Wait until nothing is held; False on timeout or when ``hurry`` is set."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.active:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (hurry is not None and hurry.is_set()):
                    return False
                self.cond.wait(min(remaining, 0.1))
        return True
