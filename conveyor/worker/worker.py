"""The worker: claims jobs in batches under a lease, runs them in a pool, finishes them with
their fencing token, and hands back what it cannot finish when told to stop.

Threads: the fetcher (claims while slots are free, sleeps on the backend's notification when
there is nothing to do), the finisher (writes outcomes in batches), the heartbeat (leases and
housekeeping), the scheduler (periodic jobs) and the pool's own.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from conveyor.backends.base import Backend, WorkerInfo
from conveyor.job import Claim, JobRecord, Outcome, State
from conveyor.registry import Registry
from conveyor.schedule import PeriodicSpec
from conveyor.serialization import Serializer
from conveyor.worker import joblog
from conveyor.worker.execute import JobExecutor, JobRun
from conveyor.worker.leases import LeaseKeeper
from conveyor.worker.pools.base import Pool
from conveyor.worker.settings import WorkerSettings, default_pool
from conveyor.worker.slots import Slots

__all__ = ["Worker", "WorkerSettings", "default_pool"]

log = logging.getLogger("conveyor.worker")

#: State.FAILED, read once: on CPython 3.11 an enum member looked up on its class goes
#: through the metaclass's ``__getattr__`` hook (about 1,000 instructions a job)
FAILED = State.FAILED
#: how long stop() waits past shutdown_timeout for a store that does not answer
STOP_GRACE_SECONDS = 0.5


class Worker:
    def __init__(
        self,
        backend: Backend,
        registry: Registry,
        serializer: Serializer,
        settings: WorkerSettings,
        *,
        make_periodic_record: Callable[[PeriodicSpec, float], JobRecord] | None = None,
        pool_factory: Callable[[WorkerSettings, JobExecutor, Any], Pool] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = backend
        self.registry = registry
        self.settings = settings
        self.queues = list(settings.queues or registry.queues())
        self.id = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"
        self._clock = clock
        self._make_periodic_record = make_periodic_record
        self.executor = JobExecutor(registry, serializer, backend.set_progress, clock=clock)
        factory = pool_factory or default_pool
        self.pool = factory(settings, self.executor, self._complete)
        self._slots = Slots(settings.concurrency)
        self._finished: queue.SimpleQueue[tuple[JobRun, Outcome] | None] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._hurry = threading.Event()
        self._stop_requested = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = False
        self._stopped = False
        self.processed = 0
        self.failed = 0
        self._info = WorkerInfo(
            id=self.id,
            host=socket.gethostname(),
            pid=os.getpid(),
            queues=self.queues,
            concurrency=settings.concurrency,
            pool=settings.pool,
            started_at=clock(),
            last_seen=clock(),
        )
        self._leases = LeaseKeeper(
            backend,
            self._worker_info,
            self._lease_list,
            lease_seconds=settings.lease_seconds,
            max_crashes=settings.max_crashes,
            on_lost=lambda key: self._interrupt(key, "lease"),
            on_cancel=lambda key: self._interrupt(key, "cancel"),
            on_expired=self._expired,
            clock=clock,
        )

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Worker:
        """Start in background threads of this process."""
        if self._started:
            return self
        self._started = True
        # No call to the store may hang past a lease when the network to it is cut.
        self.backend.set_call_timeout(self.settings.lease_seconds / 3)
        self.backend.check_persistence()
        self.backend.register_worker(self._worker_info())
        self.pool.start()
        self._leases.start()
        self._spawn(self._fetch_loop, "conveyor-fetcher")
        self._spawn(self._finish_loop, "conveyor-finisher")
        specs = self.registry.periodic
        if self.settings.schedule and specs and self._make_periodic_record is not None:
            from conveyor.worker.scheduler import Scheduler

            scheduler = Scheduler(
                self.backend, specs, self._make_periodic_record, clock=self._clock
            )
            self._spawn(lambda: scheduler.run(self._stopping), "conveyor-scheduler")
        log.info(
            "worker %s started: queues %s, %s pool of %d",
            self.id,
            ",".join(self.queues),
            self.settings.pool,
            self.settings.concurrency,
        )
        return self

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self, timeout: float | None = None) -> None:
        """Stop claiming, let running jobs finish for up to ``timeout`` seconds (default:
        shutdown_timeout), then hand back what is left. Idempotent."""
        if not self._started or self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        budget = self.settings.shutdown_timeout if timeout is None else timeout
        # The steps below talk to the store, which may not answer (each call retries for
        # seconds): they run on a thread of their own, and stopping waits for them at most
        # STOP_GRACE_SECONDS past the budget (the process's own exit takes part of the
        # second a user is promised). What they leave undone, leases undo.
        steps = threading.Thread(
            target=self._wind_down, args=(budget,), name="conveyor-stop", daemon=True
        )
        steps.start()
        steps.join(budget + STOP_GRACE_SECONDS)
        if steps.is_alive():
            log.warning(
                "worker %s stopped without finishing its bookkeeping (the store does not "
                "answer?); its unfinished jobs return to the queue when their leases end",
                self.id,
            )

    def _wind_down(self, budget: float) -> None:
        now = self._clock()
        for run in self.pool.unstarted():
            self.backend.release(run.id, run.token, started=False, now=now)
            self._slots.forget(run)
        if not self._slots.wait_idle(budget, self._hurry):
            for run in self._slots.snapshot():
                log.warning("job %s did not finish before shutdown: handing it back", run.id)
                self.pool.interrupt(run, "shutdown")
            self._slots.wait_idle(5.0)
        self._finished.put(None)
        for t in self._threads:
            t.join(10)
        self._leases.stop()
        self.pool.stop(5.0)
        try:
            self.backend.unregister_worker(self.id)
        except Exception as exc:
            log.warning("could not unregister the worker: %s", exc)
        log.info("worker %s stopped", self.id)

    def run(self) -> None:
        """Run in the foreground until SIGTERM or SIGINT; a second signal hands back at once."""
        in_main = threading.current_thread() is threading.main_thread()
        previous: dict[signal.Signals, Any] = {}
        if in_main:
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, self._on_signal)
        try:
            self.start()
            while not self._stop_requested.wait(0.5):
                pass
            self.stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._stop_requested.is_set():
            log.warning("second signal: handing running jobs back now")
            self._hurry.set()
        else:
            log.info("signal %d: finishing running jobs, then stopping", signum)
            self._stop_requested.set()

    def request_stop(self) -> None:
        """Ask a worker in ``run()`` to stop, as SIGTERM would."""
        self._stop_requested.set()

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- claiming --------------------------------------------------------------------------

    def _fetch_loop(self) -> None:
        """Claims when there is room and the finisher is not claiming for us: at start, after
        a lull, and whenever the queues ran dry (then it sleeps on the backend's wake-up)."""
        backoff = 0.0
        while not self._stopping.is_set():
            free = self._slots.reserve()
            if free <= 0:
                if self._slots.wait_for_room() and self._slots.stuck():
                    self._return_claimed_ahead()
                continue
            sent = time.monotonic()  # the worker's view of these leases starts here
            try:
                claims = self.backend.claim(
                    self.id,
                    self.queues,
                    free,
                    lease_seconds=self.settings.lease_seconds,
                    now=self._clock(),
                )
                backoff = 0.0
            except Exception as exc:
                self._slots.unreserve(free)
                backoff = min(max(backoff * 2, 0.1), 5.0)
                log.warning("claiming failed (%s); again in %.1f s", exc, backoff)
                self._stopping.wait(backoff)
                continue
            self._dispatch(claims, free, sent)
            if len(claims) < free and not self._stopping.is_set():
                self.backend.wait_for_jobs(self.queues, 0.25)
                # With room left to claim ahead, the fetcher does not wait for room: it looks
                # here whether the jobs it claimed ahead are stuck behind slow runs.
                if self._slots.stuck():
                    self._return_claimed_ahead()

    def _dispatch(self, claims: list[Claim], reserved: int, sent: float) -> None:
        """Hand claimed jobs to the pool (or finish at once those that cannot run)."""
        if claims and time.monotonic() - sent > self._leases.local_deadline:
            # The claim took so long (a stalled store) that this worker cannot vouch for the
            # leases any more: their jobs go back unstarted rather than start and be stopped.
            log.warning("a claim took longer than the lease allows: handing its jobs back")
            for claim in claims:
                self._leases.hand_back((claim.record.id, claim.token), started=False)
            self._slots.unreserve(reserved)
            return
        prepare = self.executor.prepare
        runs = [prepare(claim, sent) for claim in claims]
        for run, older in self._slots.admit(runs):
            # This worker claimed the job again (it was frozen past its lease): the old
            # claim is lost for sure; its run stops before the new one starts.
            log.warning("job %s: claimed again; stopping the run of its lost claim", run.id)
            self.pool.interrupt(older, "lease")
        submit = self.pool.submit
        for run in runs:
            if run.early is not None:
                self._complete(run, run.early)
            else:
                submit(run)
        self._slots.unreserve(reserved)

    def _return_claimed_ahead(self) -> None:
        """Every slot is busy with a slow run: the jobs claimed ahead go back to the queue,
        where other workers can take them."""
        taken = self.pool.unstarted()
        for run in taken:
            self.backend.release(run.id, run.token, started=False, now=self._clock())
            self._slots.forget(run)
        if taken:
            log.debug("handed back %d job(s) claimed ahead of slow runs", len(taken))

    # -- finishing -------------------------------------------------------------------------

    def _complete(self, run: JobRun, outcome: object | None) -> None:
        """Called by the pool when a run is over."""
        if isinstance(outcome, Outcome):
            # The finisher claims for the freed slot when it writes the outcome: the fetcher
            # sleeps on (once per job it would wake only to claim a job or two).
            self._slots.ended(run, wake=False)
            self._finished.put((run, outcome))
            return
        self._slots.ended(run)
        if run.interrupted == "shutdown":
            self.backend.release(run.id, run.token, started=True, now=self._clock())
        elif run.hand_back:
            self._leases.hand_back(run.key, started=run.started)
        self._slots.forget(run)

    def _finish_loop(self) -> None:
        while True:
            first = self._finished.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < 256:
                try:
                    item = self._finished.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._finished.put(None)
                    break
                batch.append(item)
            self._write(batch)

    def _write(self, batch: list[tuple[JobRun, Outcome]]) -> None:
        """Write a batch of outcomes, and in the same backend call claim the next jobs while
        the worker is busy (not once it is stopping)."""
        items = [(run.id, run.token, outcome) for run, outcome in batch]
        delay = 0.05
        for _ in range(8):
            free = 0 if self._stopping.is_set() else self._slots.reserve()
            sent = time.monotonic()
            try:
                accepted, claims = self.backend.finish_and_claim(
                    items,
                    self.id,
                    self.queues,
                    free,
                    lease_seconds=self.settings.lease_seconds,
                    now=self._clock(),
                )
                break
            except Exception as exc:
                self._slots.unreserve(free)
                log.warning("finishing %d job(s) failed (%s); retrying", len(items), exc)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        else:
            log.error("could not finish %d job(s); their leases will run out", len(items))
            accepted, claims, free, sent = [False] * len(items), [], 0, 0.0
        logged = joblog.log.isEnabledFor(logging.INFO)
        failed = 0
        for (run, outcome), ok in zip(batch, accepted, strict=True):
            if logged:
                joblog.attempt_ended(run, outcome, ok)
            if not ok:
                log.warning("job %s: outcome refused (lease lost to another worker)", run.id)
            elif outcome.state is FAILED:
                failed += 1
        self.failed += failed
        self.processed += len(batch)
        self._slots.forget(*[run for run, _ in batch])
        self._dispatch(claims, free, sent)

    # -- heartbeat hooks -------------------------------------------------------------------

    def _lease_list(self) -> list[tuple[str, int, float]]:
        return self._slots.leases()

    def _worker_info(self) -> WorkerInfo:
        info = self._info
        info.running = self._slots.ids()
        info.processed, info.failed = self.processed, self.failed
        info.last_seen = self._clock()
        return info

    def _interrupt(self, key: tuple[str, int], reason: str) -> None:
        run = self._slots.running(key)
        if run is None:
            return  # ended meanwhile (a heartbeat races with finishes): nothing to stop
        if reason == "lease":
            log.warning("job %s: lease lost; stopping it", run.id)
        self.pool.interrupt(run, reason)

    def _expired(self, key: tuple[str, int]) -> None:
        """This worker could not renew the claim in time (the store or the network stalled):
        stop the run, and hand the job back once the store answers, so no crash counts."""
        run = self._slots.running(key)
        if run is None:
            return
        run.hand_back = True
        self.pool.interrupt(run, "lease")
