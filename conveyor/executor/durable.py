"""``DurableExecutor``: the ``concurrent.futures`` face of the app.

``submit`` pickles the callable and its arguments (whatever the app's serializer, as
``ProcessPoolExecutor`` does) and enqueues one job of the internal task on the executor's
queue; it returns a plain ``concurrent.futures.Future`` with ``future.job``. One thread per
executor, the collector, watches the pending jobs in the backend and settles their futures:
running, result, exception (the pickled original), cancelled.

With ``run_here=True`` an embedded worker of this process runs the queue (started on the first
submit, after the initializer); any ``conveyor worker`` serving the queue runs the jobs too, so
work survives this process.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import logging
import os
import pickle
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any, Protocol

from conveyor.backends.base import Backend
from conveyor.errors import JobNotFound
from conveyor.executor.calls import (
    EXECUTOR_QUEUE,
    EXECUTOR_TASK,
    RemoteTraceback,
    call_chunk,
    dumps,
)
from conveyor.job import Job, JobRecord, State, raise_for_outcome
from conveyor.task import CallOptions, Signature

#: how long the collector sleeps between looks when no change wakes it
POLL_SECONDS = 0.1
#: a pass stops reading after this many jobs in a row that still wait (see ``_collect``)
WAITING_RUN = 32
#: and reads every pending job at least this often (less often when that is slow)
FULL_PASS_SECONDS = 1.0
#: a pause before each pass, so a burst of finished jobs is read in one
COALESCE_SECONDS = 0.01

# The standard library's own loggers and messages, so code written for it reads the same.
_log = logging.getLogger("concurrent.futures")
_SHUTDOWN = "cannot schedule new futures after shutdown"
_EXIT = "cannot schedule new futures after interpreter shutdown"


class BrokenConveyorExecutor(concurrent.futures.BrokenExecutor):
    """The initializer raised: the executor takes no more work."""


class ExecutorApp(Protocol):
    """What the executor needs from its app."""

    @property
    def backend(self) -> Backend: ...

    def submit(
        self, task: str, args: tuple[Any, ...], kwargs: dict[str, Any], options: CallOptions
    ) -> Job: ...

    def enqueue_many(
        self, signatures: Iterable[Signature], *, batch_size: int = 1000
    ) -> list[Job]: ...

    def decode_result(self, record: JobRecord) -> Any: ...

    def cancel_job(self, job_id: str) -> bool: ...

    def job(self, job_id: str) -> Job: ...


class EmbeddedWorker(Protocol):
    def start(self) -> Any: ...

    def stop(self, timeout: float | None = None) -> None: ...


def default_max_workers() -> int:
    """As ``ThreadPoolExecutor``: ``min(32, cpus + 4)``."""
    return min(32, (os.cpu_count() or 1) + 4)


class DurableExecutor(concurrent.futures.Executor):
    """``app.executor()``: a ``concurrent.futures.Executor`` whose submissions are jobs."""

    def __init__(
        self,
        app: ExecutorApp,
        *,
        max_workers: int | None = None,
        run_here: bool = True,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        queue: str = EXECUTOR_QUEUE,
        make_worker: Callable[[int], EmbeddedWorker] | None = None,
    ) -> None:
        if max_workers is None:
            max_workers = default_max_workers()
        if max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        self._app = app
        self._max_workers = max_workers
        self._queue = queue
        self._options = CallOptions(queue=queue)
        self._run_here = run_here
        self._initializer = initializer
        self._initargs = initargs
        self._make_worker = make_worker
        self._worker: EmbeddedWorker | None = None
        self._starter: threading.Thread | None = None
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: dict[str, Future[Any]] = {}
        self._collector: threading.Thread | None = None
        self._shutdown = False
        self._broken: str | bool = False
        _live.add(self)

    def __repr__(self) -> str:
        return f"<conveyor executor queue={self._queue} max_workers={self._max_workers}>"

    # -- submitting ------------------------------------------------------------------------

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return self._submit_many([(fn, args, kwargs)])[0]

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[Any]:
        """As ``ProcessPoolExecutor.map``: every call is enqueued at once (one round trip
        per thousand), ``chunksize`` calls to a job."""
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        end_time = None if timeout is None else timeout + time.monotonic()
        calls = list(zip(*iterables, strict=False))
        if chunksize == 1:
            fs = self._submit_many([(fn, args, {}) for args in calls])
            return _results(fs, end_time, chain=False)
        chunks = [calls[i : i + chunksize] for i in range(0, len(calls), chunksize)]
        fs = self._submit_many([(call_chunk, (fn, chunk), {}) for chunk in chunks])
        return _results(fs, end_time, chain=True)

    def attach(self, job_id: str) -> Future[Any]:
        """A Future for a job submitted earlier, maybe by a process that is gone (its id kept
        in your database, say); it settles like the futures ``submit`` returns. Raises
        JobNotFound for an unknown or purged id."""
        record = self._app.backend.get(job_id)
        if record is None:
            raise JobNotFound(job_id)
        future: Future[Any] = Future()
        future.job = self._app.job(job_id)  # type: ignore[attr-defined]
        with self._lock:
            if self._shutdown:
                raise RuntimeError(_SHUTDOWN)
            if job_id in self._pending:
                return self._pending[job_id]
            self._pending[job_id] = future
            self._start_threads()
            self._wake.notify_all()
        return future

    def _submit_many(
        self, calls: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]]
    ) -> list[Future[Any]]:
        with self._lock:
            if self._broken:
                raise BrokenConveyorExecutor(self._broken)
            if _exiting.is_set():
                raise RuntimeError(_EXIT)
            if self._shutdown:
                raise RuntimeError(_SHUTDOWN)
        blobs = [dumps(call) for call in calls]
        if len(blobs) == 1:
            jobs = [self._app.submit(EXECUTOR_TASK, (blobs[0],), {}, self._options)]
        else:
            jobs = self._app.enqueue_many(
                Signature(EXECUTOR_TASK, (blob,), {}, self._options) for blob in blobs
            )
        futures: list[Future[Any]] = []
        with self._lock:
            for job in jobs:
                future: Future[Any] = Future()
                future.job = job  # type: ignore[attr-defined]
                self._pending[job.id] = future
                futures.append(future)
            self._start_threads()
            self._wake.notify_all()
        return futures

    def _start_threads(self) -> None:
        """Under the lock: the collector, and the embedded worker (after the initializer)."""
        if self._collector is None:
            self._collector = threading.Thread(
                target=self._collect, name="conveyor-executor-collector", daemon=True
            )
            self._collector.start()
        if self._run_here and self._make_worker is not None and self._starter is None:
            self._starter = threading.Thread(
                target=self._start_worker, name="conveyor-executor-start", daemon=True
            )
            self._starter.start()

    def _start_worker(self) -> None:
        if self._initializer is not None:
            try:
                self._initializer(*self._initargs)
            except BaseException:
                _log.critical("Exception in initializer:", exc_info=True)
                self._break("A conveyor executor's initializer failed; it takes no more work")
                return
        assert self._make_worker is not None
        worker = self._make_worker(self._max_workers)
        with self._lock:
            if self._broken:
                return
            self._worker = worker
        worker.start()

    def _break(self, reason: str) -> None:
        """The executor is broken: every pending future fails, and its job is cancelled (it
        would otherwise still run somewhere, behind a future that said it failed)."""
        with self._lock:
            self._broken = reason
            pending, self._pending = self._pending, {}
            self._wake.notify_all()
        for job_id, future in pending.items():
            self._cancel_job(job_id)
            if future.set_running_or_notify_cancel():
                future.set_exception(BrokenConveyorExecutor(reason))

    # -- settling futures ------------------------------------------------------------------

    def _collect(self) -> None:
        """Read the pending jobs, settle their futures; sleep until something changes.

        The executor's jobs share one queue and priority, so workers take them in the order
        they were submitted: a pass reads in that order and stops reading after a run of
        ``WAITING_RUN`` jobs still waiting (the later ones wait too), which keeps a pass
        short however many calls are pending. Every ``FULL_PASS_SECONDS`` a pass reads them
        all, for what runs out of order (a job handed back, another process's worker)."""
        backend = self._app.backend
        next_full = 0.0
        while True:
            with self._lock:
                while not self._pending and not self._shutdown:
                    self._wake.wait()
                if not self._pending:
                    return
                ids = list(self._pending)
            started = time.monotonic()
            full = started >= next_full
            waiting = 0
            for job_id in ids:
                if not full and waiting >= WAITING_RUN:
                    break
                state = self._settle(backend, job_id)
                waiting = waiting + 1 if state in (State.QUEUED, State.SCHEDULED) else 0
            if full:  # a full pass costs at most a tenth of the collector's time
                next_full = time.monotonic() + max(
                    FULL_PASS_SECONDS, 10 * (time.monotonic() - started)
                )
            with self._lock:
                first = next(iter(self._pending), None)
            if first is not None:
                time.sleep(COALESCE_SECONDS)  # let a burst of finishes land before the next pass
                backend.wait_for_change(first, POLL_SECONDS)

    def _settle(self, backend: Backend, job_id: str) -> State | None:
        """Bring one future up to date with its job; returns the job's state as read. A
        future changes state only under the lock while it is pending; whoever takes it out
        of ``_pending`` settles it alone."""
        # A function of its own, so no local outlives the call and keeps a result alive.
        try:
            record = backend.get(job_id)
        except Exception as exc:
            _log.warning("conveyor executor: cannot read job %s (%s)", job_id, exc)
            return None
        with self._lock:
            future = self._pending.get(job_id)
            if future is None:
                return None
            final = record is None or record.state.is_final
            if future.cancelled() or (
                record is not None and record.state is State.CANCELLED and not future.running()
            ):
                future.cancel()
                del self._pending[job_id]
                self._wake.notify_all()
                future.set_running_or_notify_cancel()
                cancel = True
            elif final or (record is not None and record.state is State.RUNNING):
                if not self._mark_running(future):  # the user cancelled it just now
                    del self._pending[job_id]
                    self._wake.notify_all()
                    cancel, final = True, False
                else:
                    cancel = False
                    if final:
                        del self._pending[job_id]
                        self._wake.notify_all()
            else:
                return record.state if record is not None else None
        if cancel:
            if record is not None and not record.state.is_final:
                self._cancel_job(job_id)
            return None
        if not final:
            return State.RUNNING
        try:
            if record is None:
                raise JobNotFound(job_id)
            future.set_result(self._outcome(record))
        except BaseException as exc:
            future.set_exception(exc)
        return None

    def _outcome(self, record: JobRecord) -> Any:
        """The call's value, or raise its exception (the original, unpickled, with the
        worker's traceback as its cause) or the job's JobError."""
        if record.state is State.SUCCEEDED:
            return pickle.loads(self._app.decode_result(record))
        carried = None
        if record.state is State.FAILED and record.result is not None:
            try:
                carried = pickle.loads(self._app.decode_result(record))
            except Exception:
                carried = None
        if isinstance(carried, BaseException):
            if record.error is not None and record.error.traceback:
                carried.__cause__ = RemoteTraceback(record.error.traceback)
            raise carried
        raise_for_outcome(record)
        raise RuntimeError(f"job {record.id} ended {record.state}")  # pragma: no cover

    @staticmethod
    def _mark_running(future: Future[Any]) -> bool:
        """Move a pending future to running; False if it was cancelled meanwhile."""
        if future.running():
            return True
        return future.set_running_or_notify_cancel()

    def _cancel_job(self, job_id: str) -> None:
        try:
            self._app.cancel_job(job_id)
        except Exception as exc:
            _log.warning("conveyor executor: cannot cancel job %s (%s)", job_id, exc)

    # -- shutting down ---------------------------------------------------------------------

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """As the standard library's: no new submissions; ``cancel_futures`` cancels what has
        not started (futures and jobs); ``wait`` waits for the rest, then stops the embedded
        worker. Without ``wait`` the collector and worker stop by themselves once done."""
        with self._lock:
            self._shutdown = True
            pending = dict(self._pending) if cancel_futures else {}
            self._wake.notify_all()
        backend = self._app.backend
        records = {job_id: backend.get(job_id) for job_id in pending}
        to_cancel = []
        with self._lock:
            for job_id, record in records.items():
                future = self._pending.get(job_id)
                if future is None:
                    continue
                if record is not None and record.state is State.RUNNING:
                    self._mark_running(future)
                elif future.cancel():
                    del self._pending[job_id]
                    future.set_running_or_notify_cancel()
                    to_cancel.append(job_id)
            self._wake.notify_all()
        for job_id in to_cancel:
            self._cancel_job(job_id)
        if wait:
            self._finish()
        else:
            threading.Thread(
                target=self._finish, name="conveyor-executor-stop", daemon=True
            ).start()

    def _finish(self) -> None:
        if self._collector is not None:
            self._collector.join()
        if self._starter is not None:
            self._starter.join()
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop()
        _live.discard(self)

    def _exit(self) -> None:
        """At interpreter exit, like the standard library's executors: work this process runs
        is finished first; with ``run_here=False`` the jobs stay for the other workers."""
        if self._run_here:
            self.shutdown(wait=True)
        else:
            with self._lock:
                self._shutdown = True
                self._pending.clear()
                self._wake.notify_all()


def _results(fs: list[Future[Any]], end_time: float | None, *, chain: bool) -> Iterator[Any]:
    """``map``'s iterator: results in order; on an error or timeout the rest are cancelled.
    It pops each future before yielding, so no result is kept alive by it."""
    fs.reverse()
    try:
        while fs:
            remaining = None if end_time is None else end_time - time.monotonic()
            # Yielded without a name: a local would keep the last result alive.
            if chain:
                yield from _result_or_cancel(fs.pop(), remaining)
            else:
                yield _result_or_cancel(fs.pop(), remaining)
    finally:
        for future in fs:
            future.cancel()


def _result_or_cancel(future: Future[Any], timeout: float | None) -> Any:
    try:
        try:
            return future.result(timeout)
        finally:
            future.cancel()
    finally:
        del future


# Executors still open at interpreter exit are shut down there, as the standard library's
# are; this process-wide set exists only for that hook.
_live: weakref.WeakSet[DurableExecutor] = weakref.WeakSet()
_exiting = threading.Event()


def _at_exit() -> None:
    _exiting.set()
    for executor in list(_live):
        executor._exit()


# Where the standard library's executors hook in: before atexit's own callbacks, so a user's
# atexit callback that submits sees the executor already shut down, as with theirs.
getattr(threading, "_register_atexit", atexit.register)(_at_exit)
