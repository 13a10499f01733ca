"""Running one job: decode it, call the task with its context, and turn what happened into
an ``Outcome`` (success, retry per the task's policy, failure, cancellation).

The pools decide *where* a job runs (a thread, the event loop, a child process); this module
decides *what* running it means, once for all of them.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conveyor import context
from conveyor.canvas import input_value, open_inputs
from conveyor.errors import (
    Retry,
    SerializationError,
    SoftTimeLimitExceeded,
    TaskNotFound,
    TimeLimitExceeded,
)
from conveyor.job import Claim, ErrorInfo, Outcome, Progress, State
from conveyor.registry import Registry
from conveyor.retry import retry_delay
from conveyor.serialization import Serializer, decode_call
from conveyor.task import Task

if TYPE_CHECKING:
    import asyncio


class Interrupt(BaseException):
    """Raised into a running task from outside. A BaseException, so a task's
    ``except Exception`` does not swallow it."""

    reason = "interrupted"


class CancelInterrupt(Interrupt):
    reason = "cancel"


class TimeLimitInterrupt(Interrupt):
    reason = "timeout"


class LeaseLostInterrupt(Interrupt):
    reason = "lease"


class ShutdownInterrupt(Interrupt):
    reason = "shutdown"


@dataclass(eq=False, slots=True, init=False)
class JobRun:
    """One claimed job on its way through a pool.

    One is made per claimed job, so ``__init__`` is written out: it sets each field once
    (a generated one takes every field as an argument with its default, and needs a
    ``__post_init__`` for the key), and ``id`` and ``token``, read several times a job, are
    fields rather than properties.
    """

    claim: Claim
    #: the claim: job id and fencing token. Everything the worker keeps about a run is keyed
    #: by it, never by the job id alone.
    key: tuple[str, int]
    id: str
    token: int
    task: Task[Any, Any] | None
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    ctx: context.JobContext | None
    #: set when decoding failed or the task is unknown: finish with it, run nothing
    early: Outcome | None
    started: bool
    done: bool
    #: when the task began to run (time.monotonic); 0 until then
    began_at: float
    #: the first reason it was interrupted for ("cancel", "timeout", "lease", "shutdown")
    interrupted: str | None
    #: when the claim was sent (time.monotonic): the worker's view of the lease starts here
    sent_at: float
    #: stopped by this worker at its local deadline: handed back once the store answers
    hand_back: bool
    #: the soft time limit fired (it asks the task to clean up; it does not stop the run)
    soft_fired: bool
    lock: threading.Lock = field(repr=False)
    #: an interrupt was raised into the run's thread: it may still be pending when the
    #: task ends, and must be cleared before the thread takes its next job
    raised: bool
    thread_id: int | None
    aio_task: asyncio.Task[Any] | None

    def __init__(
        self,
        claim: Claim,
        task: Task[Any, Any] | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        ctx: context.JobContext | None = None,
        sent_at: float = 0.0,
    ) -> None:
        self.claim = claim
        self.id = job_id = claim.record.id
        self.token = token = claim.token
        self.key = (job_id, token)
        self.task = task
        self.args = args
        self.kwargs = {} if kwargs is None else kwargs
        self.ctx = ctx
        self.early = self.interrupted = self.thread_id = self.aio_task = None
        self.started = self.done = self.hand_back = self.soft_fired = self.raised = False
        self.began_at = 0.0
        self.sent_at = sent_at
        self.lock = threading.Lock()


def error_info(exc: BaseException, *, with_traceback: bool = True) -> ErrorInfo:
    tb = "".join(traceback.format_exception(exc)) if with_traceback else None
    return ErrorInfo(type(exc).__name__, str(exc) or type(exc).__name__, tb)


class JobExecutor:
    """Turns claims into runs and what the task did into outcomes."""

    def __init__(
        self,
        registry: Registry,
        serializer: Serializer,
        set_progress: Callable[[str, int, Progress], Any],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.serializer = serializer
        self._set_progress = set_progress
        self._clock = clock
        # Most tasks return None: its outcome is made once (an Outcome is immutable).
        self._none = Outcome.succeeded(serializer.dumps(None))
        self._sink = self._progress  # one bound method for every job's context
        self._held = registry.held

    def prepare(self, claim: Claim, sent_at: float = 0.0) -> JobRun:
        """The run of a claim (``sent_at``: when the claim was sent, time.monotonic); one
        that cannot run carries its outcome in ``early``."""
        record = claim.record
        task = self._held(record.task)
        if task is None:
            task = self.registry.find(record.task)  # maybe by the registry's resolver
        if task is None:
            exc = TaskNotFound(record.task)
            return self._early(claim, Outcome.failed(error_info(exc, with_traceback=False)))
        meta = record.meta
        try:
            if "flow" in meta:
                args, kwargs = self._decode_step(record.payload, meta)
            else:
                args, kwargs = decode_call(self.serializer, record.payload)
        except SerializationError as exc:
            message = f"the job's arguments cannot be decoded: {exc}"
            early = Outcome.failed(ErrorInfo("SerializationError", message))
            return self._early(claim, early, task)
        # The context and the run are made without their __init__, each field set here once:
        # a class's Python __init__, called through the type, costs about 2,000 instructions
        # of call overhead, and these are two objects a job (tests/worker/test_execute.py
        # checks that every field is set).
        job_id, token = record.id, claim.token
        ctx = _new(JobContext)
        ctx.id = job_id
        ctx.task = record.task
        ctx.attempt = record.attempts
        ctx.queue = record.queue
        ctx.meta = dict(meta) if meta else {}
        ctx.token = token
        ctx._sink = self._sink
        ctx._cancelled = False
        run = _new(JobRun)
        run.claim = claim
        run.id = job_id
        run.token = token
        run.key = (job_id, token)
        run.task = task
        run.args = args
        run.kwargs = kwargs
        run.ctx = ctx
        run.early = run.interrupted = run.thread_id = run.aio_task = None
        run.started = run.done = run.hand_back = run.soft_fired = run.raised = False
        run.began_at = 0.0
        run.sent_at = sent_at
        run.lock = _Lock()
        return run

    @staticmethod
    def _early(claim: Claim, outcome: Outcome, task: Task[Any, Any] | None = None) -> JobRun:
        run = JobRun(claim, task)
        run.early = outcome
        return run

    def _progress(
        self, job_id: str, token: int, percent: float, message: str | None, data: dict[str, Any]
    ) -> None:
        self._set_progress(job_id, token, Progress(percent, message, data))

    def _decode_step(
        self, payload: bytes, meta: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """A workflow step's arguments: its inputs come first (``canvas``)."""
        spec = meta.get("flow", {}).get("in")
        opened = open_inputs(payload) if spec is not None else None
        if spec is None or opened is None:
            return decode_call(self.serializer, payload)
        args, kwargs = decode_call(self.serializer, opened[0])
        return (input_value(spec, opened[1], self.serializer.loads), *args), kwargs

    # -- outcomes --------------------------------------------------------------------------

    def succeeded(self, run: JobRun, value: Any) -> Outcome:
        if value is None:
            return self._none
        try:
            return Outcome.succeeded(self.serializer.dumps(value))
        except SerializationError as exc:
            message = f"the task's return value cannot be serialised: {exc}"
            return Outcome.failed(ErrorInfo("SerializationError", message))

    def raised(self, run: JobRun, exc: BaseException) -> Outcome:
        """The outcome for an exception out of the task, by its retry policy."""
        assert run.task is not None
        options = run.task.options
        record = run.claim.record
        retryable = isinstance(exc, (Retry, *options.retry_on))
        error = error_info(exc)
        if retryable and record.failures < options.retries:
            explicit = exc.delay if isinstance(exc, Retry) else None
            delay = (
                explicit
                if explicit is not None
                else retry_delay(
                    record.failures + 1,
                    delay=options.retry_delay,
                    backoff=options.retry_backoff,
                    max_delay=options.retry_max_delay,
                    jitter=options.retry_jitter,
                )
            )
            now = self._clock()
            return Outcome.retry(now + delay, error, now=now)
        if isinstance(exc, Retry):
            error = ErrorInfo(
                "Retry", f"retry requested but no retries left ({options.retries})", error.traceback
            )
        return self._failed(error, exc)

    def _failed(self, error: ErrorInfo, exc: BaseException) -> Outcome:
        """A failure; an exception that carries a ``conveyor_result`` keeps it as the failed
        job's result (the executor's task carries the pickled exception this way)."""
        carried = getattr(exc, "conveyor_result", None)
        if carried is not None:
            try:
                return Outcome(State.FAILED, result=self.serializer.dumps(carried), error=error)
            except SerializationError:
                pass
        return Outcome.failed(error)

    def interrupted(self, run: JobRun, exc: BaseException | None = None) -> Outcome | None:
        """The outcome for an interrupted run; None when the worker must not finish it
        (lease lost: someone else owns the job now; shutdown: it is handed back)."""
        reason = run.interrupted or (exc.reason if isinstance(exc, Interrupt) else "cancel")
        if reason == "cancel":
            return Outcome.cancelled(ErrorInfo("JobCancelled", "cancelled while running"))
        if reason == "timeout":
            assert run.task is not None
            limit = run.task.options.timeout
            return self.raised(
                run, TimeLimitExceeded(f"the attempt ran past its timeout of {limit} s")
            )
        return None

    # -- running ---------------------------------------------------------------------------

    def around(self, ctx: context.JobContext) -> AbstractContextManager[Any]:
        """The ``@app.around_job`` hooks entered in order for one run (exited in reverse);
        an exception out of one counts as the task's. Without hooks, a shared no-op."""
        hooks = self.registry.around_job
        if not hooks:
            return _NOTHING
        stack = ExitStack()
        try:
            for hook in hooks:
                stack.enter_context(hook(ctx))
        except BaseException:
            stack.close()
            raise
        return stack

    def call_sync(self, run: JobRun) -> Outcome | None:
        """Run a prepared job in this thread (async tasks get an event loop of their own)."""
        assert run.task is not None and run.ctx is not None
        task = run.task
        run.began_at = _monotonic()
        token = _enter(run.ctx)
        try:
            try:
                if task.is_async or self.registry.around_job:
                    with self.around(run.ctx):
                        value = self._call(task, run)
                else:  # the common case, without entering a context manager per job
                    value = task.fn(*run.args, **run.kwargs)
            except Interrupt as exc:
                return self.interrupted(run, exc)
            except BaseException as exc:
                if run.interrupted is not None:  # the task swallowed our interrupt's effect
                    return self.interrupted(run)
                return self.raised(run, exc)
            if run.interrupted is not None and run.interrupted in ("lease", "shutdown"):
                return None
            return self._none if value is None else self.succeeded(run, value)
        except Interrupt as exc:  # arrived while we were computing the outcome
            return self.interrupted(run, exc)
        finally:
            _leave(token)

    @staticmethod
    def _call(task: Task[Any, Any], run: JobRun) -> Any:
        if task.is_async:
            import asyncio  # only for async tasks: the thread pool need not load it

            return asyncio.run(task.fn(*run.args, **run.kwargs))
        return task.fn(*run.args, **run.kwargs)

    async def call_async(self, run: JobRun) -> Outcome | None:
        """Run a prepared async job on the running loop; sync tasks go to a thread."""
        import asyncio

        assert run.task is not None and run.ctx is not None
        if not run.task.is_async:
            return await asyncio.get_running_loop().run_in_executor(
                None, _in_context_thread, self, run
            )
        run.began_at = time.monotonic()
        token = context.enter(run.ctx)
        try:
            with self.around(run.ctx):
                value = await run.task.fn(*run.args, **run.kwargs)
        except asyncio.CancelledError:
            if run.interrupted is None and run.soft_fired:
                limit = run.task.options.soft_timeout
                return self.raised(run, SoftTimeLimitExceeded(f"soft time limit of {limit} s"))
            return self.interrupted(run)
        except BaseException as exc:
            if run.interrupted is not None:
                return self.interrupted(run)
            return self.raised(run, exc)
        finally:
            context.leave(token)
        if run.interrupted is not None:
            return self.interrupted(run)
        return self.succeeded(run, value)


_NOTHING: AbstractContextManager[Any] = nullcontext()
_new, _Lock, JobContext = object.__new__, threading.Lock, context.JobContext
# Read once per job each: module globals, not an attribute of a module global.
_monotonic, _enter, _leave = time.monotonic, context.enter, context.leave


def _in_context_thread(executor: JobExecutor, run: JobRun) -> Outcome | None:
    run.thread_id = threading.get_ident()
    return executor.call_sync(run)
