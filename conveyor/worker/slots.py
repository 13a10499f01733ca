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
#: while runs are short, jobs claimed ahead per slot: enough that a slot finds its next job
#: waiting rather than sleeping for one, and that a claim brings several jobs a call (like
#: for like, `python -m bench.like --target conveyor/redis`: 2 a slot did 81-82 % of the
#: yardstick, 3 a slot 83-85 %)
AHEAD_PER_SLOT = 3
#: jobs claimed ahead go back to the queue when every slot has been busy this long
STUCK_SECONDS = 0.1


class Slots:
    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        # Held directly (a C-level ``with``), and by ``cond`` for waiting on it.
        self._lock = threading.RLock()
        self.cond = threading.Condition(self._lock)
        # Claimed and not yet finished (the leases to renew), and of those, the ones handed to
        # the pool and not yet ended. A slot frees when its run ends, before the outcome is
        # written, so the next claim overlaps the write instead of waiting for it.
        self.active: dict[Key, JobRun] = {}
        self.in_pool: set[Key] = set()
        self._latest: dict[str, JobRun] = {}  # job id -> its newest claim held
        self._reserved = 0
        # Threads waiting on ``cond``: a change wakes them only when there are some (the
        # counter, like every notify, is under the lock), not once per job for nobody.
        self._waiting = 0
        # How long a task runs (a moving average); it starts high, so nothing is claimed
        # ahead before the worker has seen its jobs are short.
        self.run_seconds = 1.0

    # -- room for claims -------------------------------------------------------------------

    def prefetch(self) -> int:
        """How many jobs to claim beyond the free slots: ``AHEAD_PER_SLOT`` times as many as
        there are slots while jobs are short, none otherwise (with 3, Celery's default
        prefetch: four jobs a slot in all).

        Claiming ahead cuts the claims per job when jobs take microseconds, a slot then finds
        its next job already waiting (a thread asleep on an empty queue costs a wake-up a
        job), and a claimed job waits only a few short runs. With long jobs it would sit
        reserved behind them while other workers idle (Celery's prefetch problem), so the
        worker stops claiming ahead as soon as its jobs get slow, and hands back what it
        claimed ahead when every slot is stuck (see ``stuck``).
        """
        short = self.run_seconds < PREFETCH_BELOW_SECONDS
        return AHEAD_PER_SLOT * self.concurrency if short else 0

    def reserve(self) -> int:
        """Reserve room for a claim; returns how many jobs it may take (maybe 0): the pool's
        slots and the jobs claimed ahead of them, and at most twice the slots more awaiting
        the write of their outcome."""
        with self._lock:
            capacity = self.concurrency
            if self.run_seconds < PREFETCH_BELOW_SECONDS:  # self.prefetch(), inlined
                capacity += AHEAD_PER_SLOT * capacity
            free = min(
                capacity - len(self.in_pool) - self._reserved,
                capacity + 2 * self.concurrency - len(self.active) - self._reserved,
            )
            if free <= 0:
                return 0
            self._reserved += free
            return free

    def unreserve(self, n: int) -> None:
        with self._lock:
            self._reserved -= n
            self._notify_if_starved()

    def _notify(self) -> None:
        """Wake the waiters, if any (the caller holds the lock)."""
        if self._waiting:
            self.cond.notify_all()

    def _notify_if_starved(self) -> None:
        """Wake the waiters when the pool may run out of jobs (fewer held for it than it has
        slots, and no claim under way to bring more) or nothing is held (the caller holds
        the lock). Room that frees while the pool still has jobs is left to the finisher,
        which claims for it in its next write: the fetcher, woken for it after every write,
        would claim a job or two a call, and the pool's threads would run out of jobs
        between the two claimers' calls."""
        if not self.active or len(self.in_pool) + self._reserved < self.concurrency:
            self._notify()

    def _wait(self, timeout: float) -> None:
        """Wait on the condition (the caller holds the lock)."""
        self._waiting += 1
        try:
            self.cond.wait(timeout)
        finally:
            self._waiting -= 1

    def admit(self, runs: list[JobRun]) -> list[tuple[JobRun, JobRun]]:
        """Hold new claims (those without an early outcome go to the pool); returns each
        older claim of the same job still held, which is lost for sure (the store gave the
        job a new token), with the new run, for the caller to stop."""
        lost = []
        with self._lock:
            active, in_pool, latest = self.active, self.in_pool, self._latest
            for run in runs:
                key = run.key
                active[key] = run
                if run.early is None:
                    in_pool.add(key)
                older = latest.get(key[0])
                latest[key[0]] = run
                if older is not None and older.key in active:
                    lost.append((run, older))
        return lost

    def wait_for_room(self) -> bool:
        """Wait a little for a slot to free; True when jobs claimed ahead are waiting (the
        caller then checks whether they are stuck behind slow runs)."""
        with self._lock:
            waiting = len(self.in_pool) > self.concurrency
            self._wait(STUCK_SECONDS if waiting else 0.5)
            return waiting

    # -- runs ending -----------------------------------------------------------------------

    def ended(self, run: JobRun, *, wake: bool = True) -> None:
        """A pool is done with the run (its outcome may still have to be written). ``wake``
        False: no need to wake the fetcher for the freed slot (the finisher claims for it
        in the call that writes the outcome)."""
        if run.began_at:
            took = time.monotonic() - run.began_at
            self.run_seconds += (took - self.run_seconds) * 0.05
        if not wake:
            # No lock: one set.discard is atomic under the GIL, nothing iterates ``in_pool``,
            # and a reader under the lock (``reserve``) sees the slot either busy or free,
            # both true at some instant. The lock is for waking waiters, not needed here.
            self.in_pool.discard(run.key)
            return
        with self._lock:
            self.in_pool.discard(run.key)
            self._notify()

    def forget(self, *runs: JobRun) -> None:
        """The runs are over for this worker: finished, handed back or lost."""
        with self._lock:
            active, in_pool, latest = self.active, self.in_pool, self._latest
            for run in runs:
                key = run.key
                active.pop(key, None)
                in_pool.discard(key)
                if latest.get(key[0]) is run:
                    del latest[key[0]]
            self._notify_if_starved()

    def stuck(self) -> bool:
        """Every slot is busy with a run older than STUCK_SECONDS: jobs claimed ahead should
        go back to the queue (and claiming ahead stops for now)."""
        now = time.monotonic()
        with self._lock:
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
        with self._lock:
            return [(run.id, run.token, run.sent_at) for run in self.active.values()]

    def ids(self) -> list[str]:
        with self._lock:
            return list(dict.fromkeys(job_id for job_id, _ in self.active))

    def running(self, key: Key) -> JobRun | None:
        """The run of this claim if a pool slot is busy with it (not if it only awaits its
        write)."""
        with self._lock:
            return self.active.get(key) if key in self.in_pool else None

    def snapshot(self) -> list[JobRun]:
        with self._lock:
            return list(self.active.values())

    def wait_idle(self, timeout: float, hurry: threading.Event | None = None) -> bool:
        """Wait until nothing is held; False on timeout or when ``hurry`` is set."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self.active:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (hurry is not None and hurry.is_set()):
                    return False
                self._wait(min(remaining, 0.1))
        return True
