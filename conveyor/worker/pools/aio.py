"""The asyncio pool: one event loop in a thread of its own runs every job as an asyncio task.

``async def`` tasks run on the loop; plain functions go to the loop's thread executor so they
never block it. Cancelling, time limits and lost leases cancel the asyncio task (or raise in
the plain function's thread). A run that has not stopped ``grace`` seconds later (it caught
the cancellation and kept going, or its thread is stuck in C) is abandoned: the job is
finished without it and its late result discarded.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from conveyor.errors import SoftTimeLimitExceeded
from conveyor.worker.execute import JobExecutor, JobRun
from conveyor.worker.pools.threads import ABANDON_REASONS, INTERRUPTS, raise_in_thread

log = logging.getLogger("conveyor.worker")


class AsyncPool:
    name = "async"

    def __init__(
        self,
        size: int,
        executor: JobExecutor,
        complete: Callable[[JobRun, object | None], None],
        *,
        grace: float = 5.0,
    ) -> None:
        self.size = size
        self._executor = executor
        self._complete = complete
        self._grace = grace
        self._abandoned: set[JobRun] = set()  # guarded by each run's lock
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="conveyor-asyncio", daemon=True)
        self._pending: set[JobRun] = set()
        self._lock = threading.Lock()
        # The worker submits the jobs it claims ahead with the others: they wait here, so at
        # most ``size`` run at once.
        self._room = asyncio.Semaphore(size)

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.run_until_complete(self._loop.shutdown_default_executor())
        self._loop.close()

    def submit(self, run: JobRun) -> None:
        with self._lock:
            self._pending.add(run)
        self._loop.call_soon_threadsafe(self._begin, run)

    def _begin(self, run: JobRun) -> None:
        with self._lock:
            self._pending.discard(run)
        with run.lock:
            if run.done:
                return
            run.started = True
        run.aio_task = self._loop.create_task(self._run(run))

    async def _run(self, run: JobRun) -> None:
        assert run.task is not None
        options = run.task.options
        handles = []
        outcome: object | None = None
        try:
            async with self._room:  # a run's time limits start once it has a slot
                if options.soft_timeout is not None:
                    soft = self._loop.call_later(options.soft_timeout, self._fire, run, "soft")
                    handles.append(soft)
                if options.timeout is not None:
                    hard = self._loop.call_later(options.timeout, self._fire, run, "timeout")
                    handles.append(hard)
                if run.interrupted is not None:
                    outcome = self._executor.interrupted(run)
                else:
                    outcome = await self._executor.call_async(run)
        except asyncio.CancelledError:  # a plain function's future, cancelled before it ran
            if run.interrupted is not None:
                outcome = self._executor.interrupted(run)
            elif run.soft_fired:
                limit = options.soft_timeout
                outcome = self._executor.raised(run, SoftTimeLimitExceeded(f"soft limit {limit} s"))
        except BaseException as exc:  # never let a job take the loop down
            log.exception("job %s: unexpected error in the asyncio pool", run.id)
            outcome = self._executor.raised(run, exc) if isinstance(exc, Exception) else None
        finally:
            for h in handles:
                h.cancel()
            with run.lock:
                abandoned = run in self._abandoned
                self._abandoned.discard(run)
                run.done = True
        if abandoned:
            log.warning("job %s: its abandoned run ended; the result is discarded", run.id)
            return
        try:
            self._complete(run, outcome)
        except Exception:
            log.exception("completing job %s failed", run.id)

    def _fire(self, run: JobRun, reason: str) -> None:
        if reason == "timeout":
            log.warning("job %s ran past its timeout: cancelled", run.id)
        self.interrupt(run, reason)

    def interrupt(self, run: JobRun, reason: str) -> bool:
        with run.lock:
            if run.done:
                return False
            if reason == "soft":
                run.soft_fired = True
            elif run.interrupted is None:
                run.interrupted = reason
            if run.ctx is not None and reason == "cancel":
                run.ctx.mark_cancelled()
            task, thread_id = run.aio_task, run.thread_id
            if thread_id is not None:  # a plain function running in the executor's thread
                raise_in_thread(thread_id, INTERRUPTS[reason])
        if task is not None and thread_id is None:
            self._loop.call_soon_threadsafe(task.cancel, f"conveyor: {reason}")
        if reason in ABANDON_REASONS:
            self._loop.call_soon_threadsafe(self._loop.call_later, self._grace, self._abandon, run)
        return True

    def _abandon(self, run: JobRun) -> None:
        with run.lock:
            if run.done:
                return
            run.done = True
            self._abandoned.add(run)
            task = run.aio_task
        if task is not None:
            task.cancel("conveyor: abandoned")  # stop awaiting a plain function's thread
        log.error(
            "job %s did not stop within %.0f s of being interrupted (%s): abandoned; a late "
            "result will be discarded",
            run.id,
            self._grace,
            run.interrupted,
        )
        try:
            self._complete(run, self._executor.interrupted(run))
        except Exception:
            log.exception("completing job %s failed", run.id)

    def unstarted(self) -> list[JobRun]:
        with self._lock:
            taken = list(self._pending)
            self._pending.clear()
        out = []
        for run in taken:
            with run.lock:
                if run.started:
                    continue
                run.done = True
            out.append(run)
        return out

    def stop(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
