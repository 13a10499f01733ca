"""The collector: one thread per executor that watches the jobs behind its pending futures
in the backend and settles each future (running, result, the original exception, cancelled)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future
from typing import Any, Protocol

from conveyor.backends.base import Backend
from conveyor.errors import JobNotFound
from conveyor.executor.calls import RemoteTraceback, loads
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

_log = logging.getLogger("concurrent.futures")


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


class Collector:
    """The futures of pending jobs, by job id, and the thread that settles them. A future
    changes state only under the lock while it is pending; whoever takes it out of
    ``_pending`` settles it alone."""

    def __init__(self, app: ExecutorApp) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: dict[str, Future[Any]] = {}
        self._thread: threading.Thread | None = None
        self._closing = False

    def track(self, jobs: Iterable[Job]) -> list[Future[Any]]:
        """A future per job (the one already tracked for a job id, if any)."""
        futures: list[Future[Any]] = []
        with self._lock:
            for job in jobs:
                future = self._pending.get(job.id)
                if future is None:
                    future = Future()
                    future.job = job  # type: ignore[attr-defined]
                    self._pending[job.id] = future
                futures.append(future)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="conveyor-executor-collector", daemon=True
                )
                self._thread.start()
            self._wake.notify_all()
        return futures

    def close(self) -> None:
        """Track no more; the thread ends once every tracked future is settled."""
        with self._lock:
            self._closing = True
            self._wake.notify_all()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def cancel_waiting(self) -> None:
        """``shutdown(cancel_futures=True)``: cancel the futures, and their jobs, that have
        not started; the running ones are marked so."""
        with self._lock:
            ids = list(self._pending)
        backend = self._app.backend
        records = {job_id: backend.get(job_id) for job_id in ids}
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

    def fail_all(self, error: BaseException) -> None:
        """Every pending future fails with ``error``, and its job is cancelled (it would
        otherwise still run somewhere, behind a future that said it failed)."""
        with self._lock:
            pending, self._pending = self._pending, {}
            self._wake.notify_all()
        for job_id, future in pending.items():
            self._cancel_job(job_id)
            if future.set_running_or_notify_cancel():
                future.set_exception(error)

    def drop_all(self) -> None:
        """Stop watching (at exit, when other workers run the jobs)."""
        with self._lock:
            self._closing = True
            self._pending.clear()
            self._wake.notify_all()

    def _run(self) -> None:
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
                while not self._pending and not self._closing:
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
            return loads(self._app.decode_result(record))
        carried = None
        if record.state is State.FAILED and record.result is not None:
            try:
                carried = loads(self._app.decode_result(record))
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
