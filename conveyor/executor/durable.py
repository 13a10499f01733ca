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
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any, Protocol

from conveyor.errors import JobNotFound
from conveyor.executor.calls import (
    EXECUTOR_QUEUE,
    EXECUTOR_TASK,
    call_chunk,
    dumps,
)
from conveyor.executor.collector import Collector, ExecutorApp
from conveyor.task import CallOptions, Signature

# The standard library's own loggers and messages, so code written for it reads the same.
_log = logging.getLogger("concurrent.futures")
_SHUTDOWN = "cannot schedule new futures after shutdown"
_EXIT = "cannot schedule new futures after interpreter shutdown"


class BrokenConveyorExecutor(concurrent.futures.BrokenExecutor):
    """The initializer raised: the executor takes no more work."""


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
        self._futures = Collector(app)
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
        with self._lock:
            if self._shutdown:
                raise RuntimeError(_SHUTDOWN)
            self._start_worker_thread()
        return self._futures.track([self._app.job(job_id)])[0]

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
        with self._lock:
            self._start_worker_thread()
        return self._futures.track(jobs)

    def _start_worker_thread(self) -> None:
        """Under the lock: the embedded worker, started after the initializer."""
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
        """The executor is broken: every pending future fails, and its job is cancelled."""
        with self._lock:
            self._broken = reason
        self._futures.fail_all(BrokenConveyorExecutor(reason))

    # -- shutting down ---------------------------------------------------------------------

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """As the standard library's: no new submissions; ``cancel_futures`` cancels what has
        not started (futures and jobs); ``wait`` waits for the rest, then stops the embedded
        worker. Without ``wait`` the collector and worker stop by themselves once done."""
        with self._lock:
            self._shutdown = True
        if cancel_futures:
            self._futures.cancel_waiting()
        self._futures.close()
        if wait:
            self._finish()
        else:
            threading.Thread(
                target=self._finish, name="conveyor-executor-stop", daemon=True
            ).start()

    def _finish(self) -> None:
        self._futures.join()
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
            self._futures.drop_all()


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
