"""The thread pool: ``size`` threads; a job is interrupted by an asynchronous exception
raised in its thread at its next bytecode (``PyThreadState_SetAsyncExc``).

A thread stuck in a long C call sees the exception only when it returns to Python; such
tasks can poll ``current_job().cancelled``. A thread told to stop (timeout, cancel, lost
lease) that is still running after ``grace`` seconds is abandoned: the job is finished
without it, a new thread takes its slot, and whatever it returns later is discarded.
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import queue
import threading
from collections.abc import Callable

from conveyor.errors import SoftTimeLimitExceeded
from conveyor.worker.execute import (
    CancelInterrupt,
    Interrupt,
    JobExecutor,
    JobRun,
    LeaseLostInterrupt,
    ShutdownInterrupt,
    TimeLimitInterrupt,
)
from conveyor.worker.pools.base import Watchdog, take_unstarted

log = logging.getLogger("conveyor.worker")

INTERRUPTS: dict[str, type[BaseException]] = {
    "cancel": CancelInterrupt,
    "timeout": TimeLimitInterrupt,
    "lease": LeaseLostInterrupt,
    "shutdown": ShutdownInterrupt,
    "soft": SoftTimeLimitExceeded,
}
#: reasons that stop a run for good: past the grace, its thread is abandoned
ABANDON_REASONS = frozenset({"timeout", "cancel", "lease"})


def raise_in_thread(thread_id: int, exc_type: type[BaseException] | None) -> None:
    """Schedule ``exc_type`` in the thread (None clears a pending one)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc_type) if exc_type else None
    )


class ThreadPool:
    name = "thread"

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
        self._queue: queue.SimpleQueue[JobRun | None] = queue.SimpleQueue()
        # The queue's own put, not a method that calls it: one Python call less per job.
        self.submit: Callable[[JobRun], None] = self._queue.put
        self._threads: list[threading.Thread] = []
        self._threads_lock = threading.Lock()
        self._abandoned: set[JobRun] = set()  # guarded by each run's lock
        self._names = itertools.count()
        self._watchdog: Watchdog | None = None

    def start(self) -> None:
        self._watchdog = Watchdog()
        for _ in range(self.size):
            self._add_thread()

    def _add_thread(self) -> None:
        name = f"conveyor-thread-{next(self._names)}"
        t = threading.Thread(target=self._loop, name=name, daemon=True)
        with self._threads_lock:
            self._threads.append(t)
        t.start()

    def unstarted(self) -> list[JobRun]:
        return take_unstarted(self._queue)

    def interrupt(self, run: JobRun, reason: str) -> bool:
        with run.lock:
            if run.done:
                return False
            if reason == "soft":
                run.soft_fired = True
            elif run.interrupted is not None:
                return True  # already on its way out
            else:
                run.interrupted = reason
            if run.ctx is not None and reason == "cancel":
                run.ctx.mark_cancelled()
            if not run.started or run.thread_id is None:
                return reason != "soft"  # _run sees ``interrupted`` before it starts
            run.raised = True
            raise_in_thread(run.thread_id, INTERRUPTS[reason])
        if reason in ABANDON_REASONS and self._watchdog is not None:
            self._watchdog.at(self._grace, lambda: self._abandon(run))
        return True

    def _abandon(self, run: JobRun) -> None:
        """The run's thread ignored its interrupt for ``grace`` seconds: finish the job
        without it and give its slot to a new thread."""
        with run.lock:
            if run.done:
                return
            run.done = True
            self._abandoned.add(run)
        with self._threads_lock:
            self._threads = [t for t in self._threads if t.ident != run.thread_id]
        log.error(
            "job %s did not stop within %.0f s of being interrupted (%s): its thread is "
            "abandoned; a late result will be discarded",
            run.id,
            self._grace,
            run.interrupted,
        )
        self._add_thread()
        self._finish(run, self._executor.interrupted(run))

    def stop(self, timeout: float) -> None:
        with self._threads_lock:
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
        for t in threads:
            t.join(timeout)
        if self._watchdog is not None:
            self._watchdog.stop()

    # -- the threads -----------------------------------------------------------------------

    def _loop(self) -> None:
        get, ident = self._queue.get, threading.get_ident()
        while True:
            run = get()
            if run is None:
                return
            if not self._run(run, ident):
                return  # abandoned: a new thread serves in its place

    def _run(self, run: JobRun, ident: int) -> bool:
        """Run one job in this thread (``ident``); False when the thread was abandoned
        meanwhile."""
        with run.lock:
            if run.done:
                return True
            if run.interrupted is not None:  # cancelled or told to stop before it started
                run.done = True
                self._finish(run, self._executor.interrupted(run))
                return True
            run.started = True
            run.thread_id = ident
        assert run.task is not None  # a run in a pool has its task
        options = run.task.options
        if options.soft_timeout is not None or options.timeout is not None:
            self._arm_limits(run)
        outcome: object | None
        try:
            outcome = self._executor.call_sync(run)
        except Interrupt as exc:  # delivered between the task's end and here
            outcome = self._executor.interrupted(run, exc)
        except SoftTimeLimitExceeded as exc:  # delivered after the task had returned
            outcome = self._executor.raised(run, exc)
        # Close the window in which an interrupt can still be raised into this thread: the
        # interrupter only raises while ``done`` is false, under the same lock, and marks the
        # run ``raised`` first; one still pending is cleared (most runs had none).
        while True:
            try:
                with run.lock:
                    abandoned = bool(self._abandoned) and run in self._abandoned
                    if abandoned:
                        self._abandoned.discard(run)
                    run.done = True
                    if run.raised:
                        raise_in_thread(ident, None)
                break
            except Interrupt as exc:
                outcome = self._executor.interrupted(run, exc)
            except SoftTimeLimitExceeded:
                pass
        if abandoned:
            log.warning("job %s: its abandoned thread ended; the result is discarded", run.id)
            return False
        try:  # self._finish(run, outcome), inlined on the hot path
            self._complete(run, outcome)
        except Exception:
            log.exception("completing job %s failed", run.id)
        return True

    def _finish(self, run: JobRun, outcome: object | None) -> None:
        try:
            self._complete(run, outcome)
        except Exception:  # the worker logs its own errors; never kill a pool thread
            log.exception("completing job %s failed", run.id)

    def _arm_limits(self, run: JobRun) -> None:
        assert run.task is not None and self._watchdog is not None
        options = run.task.options
        if options.soft_timeout is not None:
            self._watchdog.at(options.soft_timeout, lambda: self._soft_limit(run))
        if options.timeout is not None:
            self._watchdog.at(options.timeout, lambda: self._hard_limit(run))

    def _soft_limit(self, run: JobRun) -> None:
        self.interrupt(run, "soft")

    def _hard_limit(self, run: JobRun) -> None:
        if self.interrupt(run, "timeout"):
            log.warning("job %s ran past its timeout: interrupted", run.id)
