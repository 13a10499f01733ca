"""The child side of the process pool: import the app, then run the jobs the parent sends,
one at a time, with the same ``JobExecutor`` as every other pool.

The pipe carries small pickled tuples (plain values pickle several times faster than the
dataclasses they stand for, and a no-op job is mostly this traffic). Parent to child: a job
to run (``job_message``), or None to exit. Child to parent: ``("ready", pid)`` or
``("failed", reason)`` once at start, then per job any number of ``("progress", percent,
message, data)`` and one ``("done", outcome_message(...), rss_bytes or 0)``.

Hard limits, cancellation and lost leases are the parent's business: it terminates the
child. The soft limit arrives as SIGUSR1 and becomes ``SoftTimeLimitExceeded`` inside the
task (a cancellation for ``async def`` tasks), so the task can clean up and return.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from dataclasses import replace
from multiprocessing.connection import Connection
from types import FrameType
from typing import Any

from conveyor.errors import SoftTimeLimitExceeded
from conveyor.job import Claim, ErrorInfo, JobRecord, Outcome, Progress, State
from conveyor.registry import Registry
from conveyor.serialization import Serializer
from conveyor.worker.execute import JobExecutor, JobRun
from conveyor.worker.pools.appref import load_app

SOFT_SIGNAL = signal.SIGUSR1
#: how often a child checks that the worker that started it is still alive
ORPHAN_CHECK_SECONDS = 1.0
_MAIN_PREFIX = "__main__."
#: a script's module when multiprocessing's spawn re-imports it in the child
_SPAWNED_MAIN_PREFIX = "__mp_main__."


def job_message(claim: Claim) -> tuple[Any, ...]:
    r = claim.record
    return (r.id, r.task, r.payload, r.queue, r.attempts, r.failures, r.meta, claim.token)


def claim_from(message: tuple[Any, ...]) -> Claim:
    job_id, task, payload, queue, attempts, failures, meta, token = message
    record = JobRecord(
        job_id, task, payload, queue=queue, attempts=attempts, failures=failures, meta=meta
    )
    return Claim(record, token)


def outcome_message(o: Outcome) -> tuple[Any, ...]:
    error = None if o.error is None else (o.error.type, o.error.message, o.error.traceback)
    return (o.state.value, o.result, error, o.ready_at, o.counts_failure)


def outcome_from(message: tuple[Any, ...]) -> Outcome:
    state, result, error, ready_at, counts_failure = message
    info = None if error is None else ErrorInfo(*error)
    return Outcome(State(state), result, info, ready_at, counts_failure)


def rss_bytes() -> int:
    """This process's resident set size now (Linux), else its peak."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main(conn: Connection, app_ref: str, parent_pid: int, measure_rss: bool) -> None:
    """The child process's entry point."""
    # A session (and process group) of its own, which the parent signals as a whole, so what
    # a task starts goes with its child. Ctrl-C at a terminal then reaches the worker alone,
    # which decides what it means for a job; SIGINT is ignored anyway, should one come.
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        app = load_app(app_ref)
        child = Child(conn, app.registry, app.serializer, measure_rss=measure_rss)
    except BaseException as exc:
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        conn.close()
        return
    signal.signal(SOFT_SIGNAL, child.on_soft_limit)
    threading.Thread(
        target=_exit_when_orphaned, args=(parent_pid,), name="conveyor-orphan", daemon=True
    ).start()
    conn.send(("ready", os.getpid()))
    child.serve()


def _exit_when_orphaned(parent_pid: int) -> None:
    # A worker killed with SIGKILL cannot stop its children; without this one would keep
    # running its job after the lease ran out and another worker took the job over.
    while True:
        time.sleep(ORPHAN_CHECK_SECONDS)
        if os.getppid() != parent_pid:
            os.killpg(0, signal.SIGKILL)  # this child's group: itself and what its task started


class Child:
    def __init__(
        self, conn: Connection, registry: Registry, serializer: Serializer, *, measure_rss: bool
    ) -> None:
        self._conn = conn
        self._measure_rss = measure_rss
        self._send_lock = threading.Lock()  # a task may report progress from its own threads
        self._registry = registry
        self._executor = JobExecutor(registry, serializer, self._progress)
        self._active: JobRun | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def serve(self) -> None:
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                return
            if message is None:
                return
            outcome = outcome_message(self.run(claim_from(message)))
            rss = rss_bytes() if self._measure_rss else 0
            with self._send_lock:
                self._conn.send(("done", outcome, rss))

    def _progress(self, job_id: str, token: int, progress: Progress) -> None:
        with self._send_lock:
            self._conn.send(("progress", progress.percent, progress.message, progress.data))

    def run(self, claim: Claim) -> Outcome:
        name = claim.record.task
        claim = self._resolve_main(claim)
        run = self._executor.prepare(claim)
        if run.early is not None:
            return run.early
        assert run.task is not None and run.ctx is not None
        run.ctx.task = name
        outcome: Outcome | None
        try:
            self._active = run
            try:
                if run.task.is_async:
                    outcome = asyncio.run(self._run_async(run))
                else:
                    outcome = self._executor.call_sync(run)
            finally:
                self._active = None
        except SoftTimeLimitExceeded as exc:  # it fired after the task had returned
            outcome = self._executor.raised(run, exc)
        if outcome is None:  # pragma: no cover - nothing interrupts a run inside the child
            return Outcome.failed(ErrorInfo("WorkerCrashed", "the run ended without an outcome"))
        return outcome

    def _resolve_main(self, claim: Claim) -> Claim:
        """Tasks defined in a script are named ``__main__.f`` by the worker; the spawned
        child imported that script as ``__mp_main__``."""
        name = claim.record.task
        if name in self._registry or not name.startswith(_MAIN_PREFIX):
            return claim
        alias = _SPAWNED_MAIN_PREFIX + name.removeprefix(_MAIN_PREFIX)
        if alias not in self._registry:
            return claim
        return Claim(replace(claim.record, task=alias), claim.token)

    async def _run_async(self, run: JobRun) -> Outcome | None:
        self._loop = asyncio.get_running_loop()
        run.aio_task = asyncio.current_task()
        try:
            if run.soft_fired and run.aio_task is not None:
                run.aio_task.cancel("conveyor: soft")
            return await self._executor.call_async(run)
        finally:
            run.aio_task, self._loop = None, None

    def on_soft_limit(self, signum: int, frame: FrameType | None) -> None:
        run = self._active
        if run is None or run.soft_fired or run.task is None:
            return  # between jobs, or already told: a late signal means nothing
        run.soft_fired = True
        if run.task.is_async:
            task, loop = run.aio_task, self._loop
            if task is not None and loop is not None:
                loop.call_soon_threadsafe(task.cancel, "conveyor: soft")
            return
        limit = run.task.options.soft_timeout
        raise SoftTimeLimitExceeded(f"the attempt ran past its soft timeout of {limit} s")
