"""The process pool: ``size`` child processes, each running one job at a time.

Children are started with multiprocessing's *spawn* method (a fresh interpreter, never a
fork of a process that has threads), import the app by its ``module:attribute`` reference
and run jobs with the same ``JobExecutor`` as the other pools (see ``child.py``).

One parent thread per child (a *slot*) hands it a job, relays its progress to the backend
and watches its time limits. Whatever a task does to its process (segfault, ``os._exit``,
out-of-memory kill) only ends that attempt, with ``WorkerCrashed`` naming the signal or the
exit status; the slot starts a new child and keeps serving. A hard time limit, a
cancellation or a lost lease terminates the child (SIGTERM, then SIGKILL after a grace).

Each child leads a session (and process group) of its own, and those signals go to the whole
group: a tool the task started (``subprocess.Popen``) stops with it instead of living on as an
orphan. When a child has died, whatever is left in its group is killed.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from conveyor import context
from conveyor.errors import ConfigurationError, WorkerCrashed
from conveyor.job import Outcome, Progress
from conveyor.worker.execute import JobExecutor, JobRun
from conveyor.worker.pools import child as child_side
from conveyor.worker.pools.appref import find_app_ref
from conveyor.worker.pools.base import take_unstarted
from conveyor.worker.pools.children import Child, describe_exit, signal_group

__all__ = ["ProcessPool", "WorkerCrashed", "describe_exit", "find_app_ref"]

log = logging.getLogger("conveyor.worker")

#: the longest a slot waits without looking at its deadlines (kills asked by other threads)
TICK_SECONDS = 0.25


class _Slot:
    def __init__(self, index: int) -> None:
        self.index = index
        self.child: Child | None = None
        self.thread: threading.Thread | None = None


class ProcessPool:
    name = "process"

    def __init__(
        self,
        size: int,
        executor: JobExecutor,
        complete: Callable[[JobRun, object | None], None],
        *,
        app_ref: str,
        max_tasks_per_child: int | None = None,
        max_memory_per_child: float | None = None,
        kill_grace: float = 2.0,
        start_timeout: float = 60.0,
    ) -> None:
        if max_tasks_per_child is not None and max_tasks_per_child < 1:
            raise ConfigurationError("max_tasks_per_child must be at least 1 (or None)")
        if max_memory_per_child is not None and max_memory_per_child <= 0:
            raise ConfigurationError("max_memory_per_child must be a positive number of MB")
        self.size = size
        self.app_ref = app_ref
        self._executor = executor
        self._complete = complete
        self._max_tasks = max_tasks_per_child
        self._max_rss = None if max_memory_per_child is None else max_memory_per_child * 2**20
        self._kill_grace = kill_grace
        self._start_timeout = start_timeout
        self._mp = multiprocessing.get_context("spawn")
        self._queue: queue.SimpleQueue[JobRun | None] = queue.SimpleQueue()
        self._slots = [_Slot(i) for i in range(size)]
        self._slot_of: dict[JobRun, _Slot] = {}  # guarded by each run's lock
        self._stopping = threading.Event()

    # -- the Pool protocol -----------------------------------------------------------------

    def start(self) -> None:
        """Start every child and wait until each has imported the app: a broken app fails
        here, with the child's reason, rather than job by job."""
        pending = [self._spawn() for _ in self._slots]
        try:
            for slot, child in zip(self._slots, pending, strict=True):
                slot.child = self._await_ready(child)
        except BaseException:
            for child in pending:
                self._retire(child, timeout=1.0)
            raise
        for slot in self._slots:
            slot.thread = threading.Thread(
                target=self._serve, args=(slot,), name=f"conveyor-slot-{slot.index}", daemon=True
            )
            slot.thread.start()

    def submit(self, run: JobRun) -> None:
        self._queue.put(run)

    def interrupt(self, run: JobRun, reason: str) -> bool:
        with run.lock:
            if run.done:
                return False
            slot = self._slot_of.get(run)
            # ``done`` is set before a child is reaped: under the run's lock its pid is valid.
            child = slot.child if slot is not None else None
            if reason == "soft":
                if child is None or run.soft_fired:
                    return False
                run.soft_fired = True
                os.kill(child.pid, child_side.SOFT_SIGNAL)
                return True
            if run.interrupted is not None:
                return True  # already on its way out
            run.interrupted = reason
            if run.ctx is not None and reason == "cancel":
                run.ctx.mark_cancelled()
            if child is not None and child.kill_at is None:
                signal_group(child, signal.SIGTERM)
                child.kill_at = time.monotonic() + self._kill_grace
            return True

    def unstarted(self) -> list[JobRun]:
        return take_unstarted(self._queue)

    def stop(self, timeout: float) -> None:
        self._stopping.set()
        for _ in self._slots:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for slot in self._slots:
            if slot.thread is not None:
                slot.thread.join(max(0.0, deadline - time.monotonic()))
            child = slot.child
            if child is None:
                continue
            if slot.thread is None:
                self._retire(child, timeout=1.0)
            elif slot.thread.is_alive():
                # still inside a job: kill the child, or multiprocessing would wait for it when
                # the interpreter exits
                log.warning("child %d still runs a job at shutdown: killing it", child.pid)
                signal_group(child, signal.SIGKILL)

    def children(self) -> list[tuple[int, int]]:
        """(pid, RSS in bytes) of each live child."""
        return [(s.child.pid, s.child.current_rss()) for s in self._slots if s.child is not None]

    # -- children --------------------------------------------------------------------------

    def _spawn(self) -> Child:
        parent_end, child_end = self._mp.Pipe()
        process = self._mp.Process(
            target=child_side.main,
            args=(child_end, self.app_ref, os.getpid(), self._max_rss is not None),
            name="conveyor-child",
        )
        process.start()
        child_end.close()
        return Child(process, parent_end)

    def _await_ready(self, child: Child) -> Child:
        message: Any = None
        try:
            if child.conn.poll(self._start_timeout):
                message = child.conn.recv()
        except (EOFError, OSError):
            child.process.join(5)
            raise ConfigurationError(
                f"a child process died while loading the app {self.app_ref!r} "
                f"({describe_exit(child.process.exitcode)}); a script that starts a worker "
                'must do it under if __name__ == "__main__":'
            ) from None
        if message is None:
            raise ConfigurationError(
                f"a child process did not load the app {self.app_ref!r} within "
                f"{self._start_timeout} s"
            )
        if message[0] == "failed":
            raise ConfigurationError(
                f"a child process could not load the app {self.app_ref!r}: {message[1]}"
            )
        child.pid = int(message[1])
        return child

    def _replace(self, slot: _Slot) -> Child | None:
        """The slot's child, started anew if there is none or it died; retries a failing
        start with backoff (jobs wait in the queue meanwhile); None once stopping."""
        child = slot.child
        if child is not None and child.process.is_alive():
            return child
        if child is not None:
            log.warning("child %d of the process pool died (%s): replacing it", child.pid,
                        describe_exit(child.process.exitcode))  # fmt: skip
            self._retire(child, timeout=0)
            slot.child = None
        backoff = 0.5
        while True:
            try:
                slot.child = self._await_ready(self._spawn())
                return slot.child
            except Exception as exc:
                log.error("could not start a child process (%s); again in %.1f s", exc, backoff)
                if self._stopping.wait(backoff):
                    return None
                backoff = min(backoff * 2, 30.0)

    def _retire(self, child: Child, *, timeout: float) -> None:
        """Ask a child to exit, then make sure it has, and reap it."""
        with contextlib.suppress(OSError):
            child.conn.send(None)
        child.process.join(timeout)
        if child.process.is_alive():
            child.process.terminate()
            child.process.join(self._kill_grace)
        if child.process.is_alive():
            child.process.kill()
            child.process.join()
        child.conn.close()
        child.process.close()

    # -- the slots -------------------------------------------------------------------------

    def _serve(self, slot: _Slot) -> None:
        while True:
            try:
                run = self._queue.get(timeout=1.0)
            except queue.Empty:
                if not self._stopping.is_set():
                    self._replace(slot)  # a child that died while idle is replaced now
                continue
            if run is None:
                break
            try:
                self._execute(slot, run)
            except Exception:  # never lose a slot
                log.exception("job %s: unexpected error in the process pool", run.id)
        if slot.child is not None:
            self._retire(slot.child, timeout=5.0)
            slot.child = None

    def _execute(self, slot: _Slot, run: JobRun) -> None:
        with run.lock:
            if run.done:
                return
        child = None if run.interrupted is not None else self._replace(slot)
        with run.lock:
            if run.done:
                return
            if child is None and run.interrupted is None:
                run.interrupted = "shutdown"  # no child could be started: hand it back
            if run.interrupted is not None or child is None:
                run.done = True
                self._finish(run, self._executor.interrupted(run))
                return
            run.started = True
            run.began_at = time.monotonic()  # the child's clock is not ours to read
            self._slot_of[run] = slot
        outcome = self._watch(child, run)
        with run.lock:
            run.done = True
            self._slot_of.pop(run, None)
        if child.kill_at is not None or not child.process.is_alive():
            # terminated or dead: it ended this run; a replacement starts before the next one
            self._retire(child, timeout=0)
            slot.child = None
        elif self._worn_out(child):
            self._retire(child, timeout=5.0)
            slot.child = None
        if run.interrupted == "lease":
            outcome = None  # someone else may own the job now: write nothing about it
        self._finish(run, outcome)
        if slot.child is None and not self._stopping.is_set():
            self._replace(slot)

    def _worn_out(self, child: Child) -> bool:
        if self._max_tasks is not None and child.jobs >= self._max_tasks:
            log.info("child %d ran %d jobs: recycling it", child.pid, child.jobs)
            return True
        if self._max_rss is not None and child.rss > self._max_rss:
            log.info("child %d uses %.0f MB: recycling it", child.pid, child.rss / 2**20)
            return True
        return False

    def _watch(self, child: Child, run: JobRun) -> Outcome | None:
        """Send the run to the child and follow it to its end."""
        assert run.task is not None
        options = run.task.options
        started = time.monotonic()
        soft_at = None if options.soft_timeout is None else started + options.soft_timeout
        hard_at = None if options.timeout is None else started + options.timeout
        try:
            child.conn.send(child_side.job_message(run.claim))
        except OSError:
            return self._died(child, run)
        while True:
            now = time.monotonic()
            deadlines = [t for t in (soft_at, hard_at, child.kill_at) if t is not None]
            wait = min([TICK_SECONDS, *(t - now for t in deadlines)])
            try:
                message = child.conn.recv() if child.readable(wait) else None
            except (EOFError, OSError):
                return self._died(child, run)
            if message is not None:
                if message[0] == "done":
                    child.jobs += 1
                    child.rss = int(message[2])
                    return child_side.outcome_from(message[1])
                if message[0] == "progress":
                    self._progress(run, Progress(*message[1:]))
                continue
            now = time.monotonic()
            if soft_at is not None and now >= soft_at:
                soft_at = None
                self.interrupt(run, "soft")
            if hard_at is not None and now >= hard_at:
                hard_at = None
                if self.interrupt(run, "timeout"):
                    log.warning("job %s ran past its timeout: child %d terminated", run.id,
                                child.pid)  # fmt: skip
            if child.kill_at is not None and now >= child.kill_at:
                log.warning("child %d did not exit on SIGTERM: killing it", child.pid)
                signal_group(child, signal.SIGKILL)
                child.kill_at = now + 3600.0  # once; reaped when the pipe closes

    def _died(self, child: Child, run: JobRun) -> Outcome | None:
        with run.lock:
            run.done = True  # from here on nothing signals this child: it may be reaped
        child.process.join(self._kill_grace)
        if child.process.is_alive():
            child.process.kill()
            child.process.join()
        signal_group(child, signal.SIGKILL)  # what its task started dies with the attempt
        if run.interrupted is not None:
            return self._executor.interrupted(run)
        reason = describe_exit(child.process.exitcode)
        log.warning("job %s: %s", run.id, reason)
        return self._executor.raised(run, WorkerCrashed(reason))

    def _progress(self, run: JobRun, progress: Progress) -> None:
        if run.ctx is None:
            return
        token = context.enter(run.ctx)  # the parent's context writes with the job's token
        try:
            context.progress(progress.percent, progress.message, **progress.data)
        except Exception as exc:
            log.warning("job %s: progress not recorded (%s)", run.id, exc)
        finally:
            context.leave(token)

    def _finish(self, run: JobRun, outcome: object | None) -> None:
        try:
            self._complete(run, outcome)
        except Exception:
            log.exception("completing job %s failed", run.id)
