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
from dataclasses import dataclass
from types import FrameType
from typing import Any

from conveyor.backends.base import Backend, WorkerInfo
from conveyor.errors import ConfigurationError
from conveyor.job import JobRecord, Outcome
from conveyor.registry import Registry
from conveyor.schedule import PeriodicSpec
from conveyor.serialization import Serializer
from conveyor.worker.execute import JobExecutor, JobRun
from conveyor.worker.leases import LeaseKeeper
from conveyor.worker.pools.base import Pool

log = logging.getLogger("conveyor.worker")

POOLS = ("thread", "process", "async")
#: claim ahead of free slots only while runs take less than this on average
PREFETCH_BELOW_SECONDS = 0.005
#: jobs claimed ahead go back to the queue when every slot has been busy this long
STUCK_SECONDS = 0.1


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    queues: tuple[str, ...] | None = None
    concurrency: int = 8
    pool: str = "thread"
    max_tasks_per_child: int | None = None
    max_memory_per_child: float | None = None
    lease_seconds: float = 30.0
    shutdown_timeout: float = 30.0
    schedule: bool = True
    max_crashes: int = 3

    def __post_init__(self) -> None:
        if self.pool not in POOLS:
            raise ConfigurationError(
                f"pool {self.pool!r} is unknown; use one of {', '.join(POOLS)}"
            )
        if self.concurrency < 1:
            raise ConfigurationError(f"concurrency must be at least 1, not {self.concurrency}")
        if self.lease_seconds < 0.5:
            raise ConfigurationError(
                f"lease_seconds must be at least 0.5, not {self.lease_seconds}"
            )
        if self.shutdown_timeout < 0:
            raise ConfigurationError("shutdown_timeout must be 0 or more seconds")
        if self.queues is not None and not self.queues:
            raise ConfigurationError("queues must name at least one queue (or be None for all)")


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
        # Claimed and not yet finished (the leases to renew), and of those, the ones a pool
        # slot is busy with. A slot frees when its run ends, before the outcome is written,
        # so the next claim overlaps the finisher's write instead of waiting for it.
        self._active: dict[str, JobRun] = {}
        self._in_pool: set[str] = set()
        # How long a task runs (a moving average), which decides
        # whether claiming ahead pays; it starts high, so nothing is claimed ahead blindly.
        self._run_seconds = 1.0
        self._active_lock = threading.Condition()
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
            on_lost=lambda job_id: self._interrupt(job_id, "lease"),
            on_cancel=lambda job_id: self._interrupt(job_id, "cancel"),
            clock=clock,
        )

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Worker:
        """Start in background threads of this process."""
        if self._started:
            return self
        self._started = True
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
        now = self._clock()
        for run in self.pool.unstarted():
            self.backend.release(run.id, run.token, started=False, now=now)
            self._forget(run)
        if not self._wait_idle(budget):
            with self._active_lock:
                running = list(self._active.values())
            for run in running:
                log.warning("job %s did not finish before shutdown: handing it back", run.id)
                self.pool.interrupt(run, "shutdown")
            self._wait_idle(5.0, hurry=False)
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

    def _wait_idle(self, timeout: float, *, hurry: bool = True) -> bool:
        deadline = time.monotonic() + timeout
        with self._active_lock:
            while self._active:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (hurry and self._hurry.is_set()):
                    return False
                self._active_lock.wait(min(remaining, 0.1))
        return True

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
        backoff = 0.0
        while not self._stopping.is_set():
            with self._active_lock:
                concurrency = self.settings.concurrency
                capacity = concurrency + self._prefetch()
                free = min(capacity - len(self._in_pool), 2 * capacity - len(self._active))
                waiting = len(self._in_pool) > concurrency
                if free <= 0:
                    self._active_lock.wait(STUCK_SECONDS if waiting else 0.5)
            if free <= 0:
                if waiting:
                    self._return_stuck_prefetch()
                continue
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
                backoff = min(max(backoff * 2, 0.1), 5.0)
                log.warning("claiming failed (%s); again in %.1f s", exc, backoff)
                self._stopping.wait(backoff)
                continue
            for claim in claims:
                run = self.executor.prepare(claim)
                with self._active_lock:
                    self._active[run.id] = run
                if run.early is not None:
                    self._complete(run, run.early)
                else:
                    with self._active_lock:
                        self._in_pool.add(run.id)
                    self.pool.submit(run)
            if len(claims) < free and not self._stopping.is_set():
                self.backend.wait_for_jobs(self.queues, 0.25)

    # -- finishing -------------------------------------------------------------------------

    def _complete(self, run: JobRun, outcome: object | None) -> None:
        """Called by the pool when a run is over."""
        if run.began_at:
            took = time.monotonic() - run.began_at
            self._run_seconds += (took - self._run_seconds) * 0.05
        with self._active_lock:
            self._in_pool.discard(run.id)
            self._active_lock.notify_all()
        if isinstance(outcome, Outcome):
            self._finished.put((run, outcome))
            return
        if run.interrupted == "shutdown":
            self.backend.release(run.id, run.token, started=True, now=self._clock())
        self._forget(run)

    def _forget(self, run: JobRun) -> None:
        with self._active_lock:
            self._active.pop(run.id, None)
            self._in_pool.discard(run.id)
            self._active_lock.notify_all()

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
        items = [(run.id, run.token, outcome) for run, outcome in batch]
        delay = 0.05
        for _ in range(8):
            try:
                accepted = self.backend.finish_many(items, now=self._clock())
                break
            except Exception as exc:
                log.warning("finishing %d job(s) failed (%s); retrying", len(items), exc)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        else:
            log.error("could not finish %d job(s); their leases will run out", len(items))
            accepted = [False] * len(items)
        for (run, outcome), ok in zip(batch, accepted, strict=True):
            if not ok:
                log.warning("job %s: outcome refused (lease lost to another worker)", run.id)
            elif outcome.state.value == "failed":
                self.failed += 1
            self.processed += 1
            self._forget(run)

    # -- heartbeat hooks -------------------------------------------------------------------

    def _prefetch(self) -> int:
        """How many jobs to claim beyond the free slots: as many as there are slots while
        jobs are short, none otherwise.

        Claiming ahead halves the claims per job when jobs take microseconds, and a claimed
        job then waits only as long as a short job runs. With long jobs it would sit
        reserved behind them while other workers idle (Celery's prefetch problem), so the
        worker stops claiming ahead as soon as the jobs it runs get slow.
        """
        if self._run_seconds < PREFETCH_BELOW_SECONDS:
            return self.settings.concurrency
        return 0

    def _return_stuck_prefetch(self) -> None:
        """Hand back jobs claimed ahead once every slot is taken by a run that turned out
        slow: other workers can run them meanwhile."""
        now = time.monotonic()
        with self._active_lock:
            running = [
                run for run in self._active.values() if run.id in self._in_pool and run.began_at
            ]
            if len(running) < self.settings.concurrency:
                return
            if any(now - run.began_at < STUCK_SECONDS for run in running):
                return
        taken = self.pool.unstarted()
        for run in taken:
            self.backend.release(run.id, run.token, started=False, now=self._clock())
            self._forget(run)
        if taken:
            log.debug("handed back %d job(s) claimed ahead of slow runs", len(taken))
        self._run_seconds = max(self._run_seconds, PREFETCH_BELOW_SECONDS)

    def _lease_list(self) -> list[tuple[str, int]]:
        with self._active_lock:
            return [(run.id, run.token) for run in self._active.values()]

    def _worker_info(self) -> WorkerInfo:
        info = self._info
        with self._active_lock:
            info.running = list(self._active)
        info.processed, info.failed = self.processed, self.failed
        info.last_seen = self._clock()
        return info

    def _interrupt(self, job_id: str, reason: str) -> None:
        with self._active_lock:
            run = self._active.get(job_id) if job_id in self._in_pool else None
        if run is None:
            return  # ended meanwhile (a heartbeat races with finishes): nothing to stop
        if reason == "lease":
            log.warning("job %s: lease lost; stopping it", job_id)
        self.pool.interrupt(run, reason)


def default_pool(settings: WorkerSettings, executor: JobExecutor, complete: Any) -> Pool:
    if settings.pool == "async":
        from conveyor.worker.pools.aio import AsyncPool

        return AsyncPool(settings.concurrency, executor, complete)
    if settings.pool == "process":
        from conveyor.worker.pools.process import ProcessPool, find_app_ref

        return ProcessPool(
            settings.concurrency,
            executor,
            complete,
            app_ref=find_app_ref(executor.registry),
            max_tasks_per_child=settings.max_tasks_per_child,
            max_memory_per_child=settings.max_memory_per_child,
        )
    from conveyor.worker.pools.threads import ThreadPool

    return ThreadPool(settings.concurrency, executor, complete)
