"""The backend contract: where jobs live, and every operation the rest of conveyor needs.

Each operation is atomic on its own in the store (one SQL transaction, one Lua script, one
lock); callers never read-modify-write across calls. Times are POSIX seconds.

Two clocks, kept apart:

- The caller's ``now`` (an argument): when jobs become ready or expire, and the times written
  about outcomes (``finished_at``, ``purge_at``, a retry's ``ready_at``, ``last_seen``).
- The store's clock (``store time`` below), read by the store itself *when the write commits*:
  every lease. ``claim`` stamps ``started_at`` and ``lease_expires_at``, ``heartbeat`` the
  renewed ``lease_expires_at`` and the store-wide heartbeat record, and ``recover`` compares
  leases with it. Redis reads ``TIME`` inside the script, PostgreSQL ``now()`` in the
  transaction, SQLite ``time.time()`` once the write lock is held (after ``BEGIN IMMEDIATE``),
  memory ``time.time()`` under its lock: never a time computed by the caller before the call,
  so a call that waited for the store (a lock, a stall, a retry) hands out a lease that starts
  when it was granted. A retried call reads the clock again. A backend built with
  ``clock=`` reads that callable instead (at the same moment, for every stamp of one call): the
  conformance suite moves time this way.

A worker counts its own deadline from the moment it *sent* a claim or a renewal, so its view of
a lease always ends before the store's (see docs/workers.md).

The fencing ``token`` handed out by ``claim`` guards every later write about a running job:
``heartbeat``, ``set_progress``, ``finish`` and ``release`` do nothing for a token that is no
longer current, so a worker that lost its lease can never overwrite the outcome chosen by the
worker that took the job over.

Every backend passes the one conformance suite in ``tests/backends/``.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence
from typing import Any

from conveyor.backends.bookkeeping import (
    Signal,
    apply_outcome,
    in_stall,
    note_heartbeat,
    worker_lost_error,
)
from conveyor.backends.results import (
    DueResult,
    HeartbeatResult,
    RecoveredJob,
    ScheduleState,
    SweepResult,
)
from conveyor.errors import ConfigurationError
from conveyor.inspection import Event, StoreStats, WorkerInfo
from conveyor.job import Claim, JobRecord, Outcome, Progress, State
from conveyor.limits import LimitInfo, LimitSpec

__all__ = [
    "Backend",
    "DueResult",
    "HeartbeatResult",
    "RecoveredJob",
    "ScheduleState",
    "Signal",
    "SweepResult",
    "WorkerInfo",
    "apply_outcome",
    "in_stall",
    "note_heartbeat",
    "worker_lost_error",
]


class Backend(ABC):
    """The contract. One subclass per store; ``memory/`` is the reference implementation."""

    #: the scheme(s) this backend serves, for messages
    scheme: str = ""

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "conveyor",
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.url = url
        self.namespace = namespace
        #: the store's clock for lease stamps when given (tests); None: the store's own
        self.clock = clock

    @classmethod
    def migrate_store(cls, url: str, *, namespace: str = "conveyor") -> tuple[int, int] | None:
        """Bring the store at ``url`` to the layout this conveyor writes, running every step,
        also those a process opening the store does not run by itself (``conveyor migrate``).
        Returns the layout versions (before, after); None for a store whose layout has no
        versions yet."""
        return None

    # -- enqueue ---------------------------------------------------------------------------

    @abstractmethod
    def enqueue(self, records: Sequence[JobRecord]) -> list[JobRecord]:
        """Store new jobs, all in one atomic operation, and wake idle workers.

        A record whose ``key`` is held by a stored job (any state, until it is purged), or
        whose ``unique_key`` is held by a job that is scheduled, queued or running, is not
        stored: the stored job's record takes its place in the returned list. Records within
        one batch are deduplicated the same way (the first wins). Returns one record per input,
        in order; the caller must not mutate them (a backend may return the inputs).
        """

    def enqueue_with(self, connection: Any, records: Sequence[JobRecord]) -> list[JobRecord]:
        """``enqueue`` inside the caller's own open transaction on ``connection`` (the
        driver's connection to the same store): the jobs are stored when the caller commits,
        not at all when it rolls back, and idle workers wake on the commit. Stores without
        transactions that can hold the caller's rows raise ConfigurationError."""
        raise ConfigurationError(
            f"connection= needs the PostgreSQL or SQLite backend: {self.scheme}:// cannot "
            "write a job in your database transaction"
        )

    @abstractmethod
    def enqueue_workflow(
        self, workflow_id: str, records: Sequence[JobRecord], outputs: Collection[str]
    ) -> None:
        """Store every job of a workflow and the workflow itself, in one atomic operation,
        and wake idle workers. ``get_workflow`` then lists the jobs in the order of
        ``records``, marking those in ``outputs`` (what the workflow's handle stands for).

        The graph is in each record's ``meta["flow"]`` (``canvas.flow_meta``); a step with
        inputs arrives ``scheduled`` at ``canvas.HOLD``, and no claim or sweep takes it.
        Whenever a job with ``meta["flow"]`` becomes final (finish, cancel, release, recover,
        sweep), the same atomic operation decides its successors as ``backends/flow.py``
        ``advance`` does: an input fills the successor's slot, the last one queues it with
        its inputs in its payload (``canvas.pack_inputs``), a failure fails or cancels what
        depends on it. The workflow is forgotten once every job of it is purged. Workflow
        records carry no key or unique key.
        """

    @abstractmethod
    def get_workflow(self, workflow_id: str) -> list[tuple[str, str, bool, State | None]] | None:
        """The jobs of a workflow in order: id, task, whether it is an output, and its state
        (None once purged); None for an unknown or forgotten workflow."""

    # -- the worker's side -----------------------------------------------------------------

    @abstractmethod
    def claim(
        self,
        worker_id: str,
        queues: Sequence[str],
        limit: int,
        *,
        lease_seconds: float,
        now: float,
    ) -> list[Claim]:
        """Move up to ``limit`` ready jobs of ``queues`` to running, atomically.

        Ready: state queued or scheduled, with ``ready_at <= now`` (a backend may treat a
        queued job as ready regardless, to ride out clock skew between hosts); and
        ``expires_at`` is None or not before ``now`` (``sweep`` expires the rest). Order:
        priority descending, then ``ready_at``, then id. Each claimed job gets
        ``attempts += 1``, a new ``token`` that no earlier claim of it had, ``worker``, and,
        from the store time ``t`` read when the claim commits (not ``now``),
        ``started_at = t`` and ``lease_expires_at = t + lease_seconds``; the returned records
        carry those stamps. Concurrent claims, from any process or host, never return the same
        job.

        Limits (conveyor/limits.py): a job whose ``meta["limits"]`` names refs
        ``[limit, key]`` is claimed only if, for each ref whose limit is stored
        (``set_limit``), fewer than ``concurrency`` jobs of that ref run under a live lease
        (``lease_expires_at >= t``) and fewer than ``rate.count`` of its jobs were claimed
        within ``(t - rate.per_seconds, t]``, by the same store time ``t``; the check and
        the claim are one atomic step. A job held back stays queued, unchanged (no attempt,
        no token); the claim passes it by and takes the jobs behind it, and must not walk a
        backlog of held jobs again on every call (a backend parks them until their limit
        frees). A claim that ends (finish, release, recover, or its lease running out) frees
        its slots.
        """

    @abstractmethod
    def heartbeat(
        self,
        worker: WorkerInfo,
        leases: Sequence[tuple[str, int]],
        *,
        lease_seconds: float,
        now: float,
    ) -> HeartbeatResult:
        """One round trip for the whole worker: extend each lease ``(job_id, token)`` that is
        still current to ``t + lease_seconds`` (``t``: the store time when it commits),
        record the worker's ``last_seen`` (``now``) and status, and report the leases that
        are gone (token changed, or job no longer running) and the current ones whose job's
        cancellation was requested, each as the ``(job_id, token)`` given. Sets
        ``worker.last_seen`` to ``now``.

        It also keeps the store-wide heartbeat record that tells a stall from a lost worker:
        a heartbeat that comes more than ``lease_seconds / 2`` (store time) after the latest
        one from any worker ends a *stall* (the store, or the network to it, stopped for
        everyone), and opens a grace window of ``2 * lease_seconds`` in which ``recover``
        counts no crashes (see ``recover``)."""

    @abstractmethod
    def set_progress(self, job_id: str, token: int, progress: Progress) -> bool:
        """Record progress if ``token`` is current; publishes a progress event."""

    @abstractmethod
    def finish(self, job_id: str, token: int, outcome: Outcome, *, now: float) -> bool:
        """End an attempt, only if the job is running under ``token``; False when fenced.

        Final outcomes (succeeded, failed, cancelled) set state, result or error,
        ``finished_at = now`` and ``purge_at = now + result_ttl``, and clear the lease.
        A retry (outcome state scheduled or queued) sets ``ready_at`` from the outcome,
        keeps the error as the last error, adds one to ``failures`` when
        ``outcome.counts_failure``, and clears the lease. Wakes those waiting on the job.
        """

    def finish_many(self, items: Sequence[tuple[str, int, Outcome]], *, now: float) -> list[bool]:
        """``finish`` for several jobs; backends override it to use one round trip."""
        return [self.finish(job_id, token, outcome, now=now) for job_id, token, outcome in items]

    def finish_and_claim(
        self,
        items: Sequence[tuple[str, int, Outcome]],
        worker_id: str,
        queues: Sequence[str],
        limit: int,
        *,
        lease_seconds: float,
        now: float,
    ) -> tuple[list[bool], list[Claim]]:
        """``finish_many`` then ``claim``: a busy worker writes a batch of outcomes and takes
        its next jobs at once. Each part keeps its own semantics (the claim's lease is stamped
        by the store time when it commits); backends override this to do both in one round
        trip (one transaction, one script)."""
        done = self.finish_many(items, now=now) if items else []
        claims = (
            self.claim(worker_id, queues, limit, lease_seconds=lease_seconds, now=now)
            if limit > 0
            else []
        )
        return done, claims

    @abstractmethod
    def release(self, job_id: str, token: int, *, started: bool, now: float) -> bool:
        """Hand a claimed job back, only if ``token`` is current: a worker shutting down, or
        one that stopped the job itself because it could not renew the lease in time.

        The job returns to queued (cancelled if its cancellation was requested), its lease is
        cleared and its token changes; when it had not ``started``, the claim's attempt is
        taken back.
        """

    @abstractmethod
    def recover(self, *, now: float, max_crashes: int) -> list[RecoveredJob]:
        """Return running jobs whose lease ran out (``lease_expires_at < t``, ``t`` the store
        time read when it commits, not ``now``) to the queue.

        Each adds one to ``crashes`` (not to ``failures``: a lost worker does not use up a
        retry). A job whose cancellation was requested becomes cancelled; one that reached
        ``max_crashes`` becomes failed with error type ``WorkerLost``; any other returns to
        queued with ``ready_at = now``. Its token changes, so the lost worker is fenced out.

        During a stall (no heartbeat from any worker for more than ``lease_seconds / 2`` of
        the latest heartbeat's, or within the grace window after one, see ``heartbeat``) the
        leases ran out because nobody could renew them, not because a worker vanished: such
        jobs return to queued (or become cancelled) without counting a crash, and never fail
        as poison.
        """

    @abstractmethod
    def sweep(self, *, now: float) -> SweepResult:
        """Housekeeping: delete final jobs past ``purge_at`` (their keys become free again),
        then mark unstarted jobs past ``expires_at`` expired (final, with ``purge_at``) and
        promote scheduled jobs whose ``ready_at`` passed to queued."""

    # -- the user's side -------------------------------------------------------------------

    @abstractmethod
    def get(self, job_id: str) -> JobRecord | None:
        """The stored record, or None if unknown or purged."""

    @abstractmethod
    def list_jobs(
        self,
        *,
        state: State | None = None,
        task: str | None = None,
        queue: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> list[JobRecord]:
        """Jobs newest first (id descending) that match every filter given, at most ``limit``;
        ``cursor`` is the last id of the previous page: only ids below it are listed, so jobs
        enqueued meanwhile never shift a page. The suite checks order, each filter alone and
        combined, paging to the end, and that new jobs do not shift the next page."""

    @abstractmethod
    def queue_counts(self) -> dict[str, dict[State, int]]:
        """For each queue that holds jobs, the number of jobs in each state present."""

    @abstractmethod
    def cancel(self, job_id: str, *, now: float) -> bool:
        """Cancel: a scheduled or queued job becomes cancelled at once (final); a running job
        gets ``cancel_requested`` and its worker stops it. False if final or unknown."""

    @abstractmethod
    def retry(self, job_id: str, *, now: float) -> bool:
        """A failed, cancelled or expired job goes back to queued (``ready_at = now``) with
        ``failures = crashes = 0``, no result, error, finish, purge or expiry time, and no
        pending cancellation; ``attempts`` keeps counting. False for any other state, an
        unknown id, when another active job holds the same ``unique_key``, or for a workflow
        step that ended while held (``ready_at`` still ``canvas.HOLD``: it has no inputs to
        run with)."""

    @abstractmethod
    def purge_queue(self, queue: str) -> int:
        """Delete the scheduled and queued jobs of ``queue``; returns how many."""

    # -- cluster-wide limits ----------------------------------------------------------------

    @abstractmethod
    def set_limit(self, spec: LimitSpec, *, now: float) -> None:
        """Store a limit, replacing the stored one of the same name, atomically: every claim
        after it, from any process, enforces the new numbers, and jobs held back under the
        old ones are looked at again by the next claim."""

    @abstractmethod
    def limits(self, *, now: float) -> list[LimitInfo]:
        """Every stored limit, by name, with its use at ``now`` per key (``limit_info``):
        jobs running under a live lease, and claims within the rate's window."""

    # -- workers ---------------------------------------------------------------------------

    @abstractmethod
    def register_worker(self, worker: WorkerInfo) -> None:
        """Add or replace the worker in the registry."""

    @abstractmethod
    def unregister_worker(self, worker_id: str) -> None:
        """Remove the worker from the registry."""

    @abstractmethod
    def list_workers(self) -> list[WorkerInfo]:
        """Registered workers; the caller judges liveness from ``last_seen``. Workers not seen
        for a long time (an hour) are dropped by ``sweep``."""

    # -- periodic jobs ---------------------------------------------------------------------

    @abstractmethod
    def record_due(
        self, name: str, due: float, record: JobRecord, *, skip_if_active: bool, now: float
    ) -> DueResult:
        """Atomically claim one due time of the periodic task ``name`` and enqueue its job.

        DUPLICATE when ``due`` is not later than the last recorded due time (someone else, in
        any process, got there first). Otherwise the due time is recorded; when
        ``skip_if_active`` and the previous job of this schedule is still scheduled, queued or
        running, the result is SKIPPED, else ``record`` is enqueued and the result ENQUEUED.
        """

    @abstractmethod
    def schedules(self) -> list[ScheduleState]:
        """What is recorded of every periodic task."""

    # -- events and counters (the dashboard, SSE, /metrics) ---------------------------------

    def read_events(self, after: int, *, limit: int = 1000, timeout: float = 0.0) -> list[Event]:
        """Up to ``limit`` events with ``id > after``, oldest first; when there are none, block
        up to ``timeout`` seconds for one (woken by a notification; may return early, empty).

        Every change of a job writes an event atomically with the change: enqueued (state
        scheduled or queued), claimed (running), progress (same state, ``progress`` set),
        finished, retried, cancelled, expired, recovered, released. Ids increase strictly in
        commit order across every process. Events are kept for a bounded window (at least the
        last 10 000, pruned by ``sweep``); a reader further behind misses the oldest. The suite
        checks each kind of change, the order, resuming after an id, and that a blocked read
        wakes for an event written by another thread."""
        raise NotImplementedError(f"{type(self).__name__} keeps no event feed")

    def last_event_id(self) -> int:
        """The id of the newest event (0 when there is none): where "from now on" starts."""
        raise NotImplementedError(f"{type(self).__name__} keeps no event feed")

    def job_stats(self, *, now: float) -> StoreStats:
        """The counters ``finish`` keeps per task (run-time histogram over
        ``inspection.RUNTIME_BUCKETS`` of succeeded and failed attempts, measured from
        ``started_at`` to the finish; successes; final failures by error type; retries), and
        the ``ready_at`` of the oldest queued job per queue. Counters are updated in the same
        atomic step as the finish (one update per distinct key per batch, ideally) and survive
        the purge of the jobs. The suite checks each counter after real finishes."""
        raise NotImplementedError(f"{type(self).__name__} keeps no job counters")

    # -- waiting ---------------------------------------------------------------------------

    @abstractmethod
    def wait_for_jobs(self, queues: Sequence[str], timeout: float) -> None:
        """Block up to ``timeout`` seconds until jobs may have become ready in ``queues``.

        Woken by a notification, not a busy poll; spurious wake-ups are allowed."""

    def wait_final(self, job_id: str, timeout: float | None) -> JobRecord | None:
        """Block until the job is final, or ``timeout`` passes; return its latest record
        (None if unknown). The default waits on ``wait_for_change``; backends may do
        better."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            record = self.get(job_id)
            if record is None or record.state.is_final:
                return record
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return record
            self.wait_for_change(job_id, 1.0 if remaining is None else min(remaining, 1.0))

    @abstractmethod
    def wait_for_change(self, job_id: str, timeout: float) -> None:
        """Block up to ``timeout`` until the job may have changed (spurious wakes allowed)."""

    def check_persistence(self) -> bool:
        """Log one warning when the store would lose acknowledged jobs on a restart; True when
        it persists them. Workers call it once at start."""
        return True

    def set_call_timeout(self, seconds: float) -> None:
        """From now on give up any one call to the store (its retries included) within about
        ``seconds``, raising BackendUnavailable: a worker passes a share of its lease, so
        that no call hangs past it when the network to the store is cut. Backends whose
        calls cannot hang on a network ignore it."""
        return None

    def ping(self) -> bool:
        """True when the store answers."""
        try:
            self.queue_counts()
        except Exception:
            return False
        return True

    def close(self) -> None:
        """Release connections and threads. The backend is not used afterwards."""
        return None
