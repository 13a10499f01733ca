"""The composition root: settings, a backend chosen by URL, the task registry; it builds
workers and job handles. Nothing here is global: two apps live side by side in one process."""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from conveyor.backends import Backend, migrate_store, open_backend
from conveyor.backends.memory import MemoryBackend
from conveyor.canvas import HOLD, GroupJob, Node, Tree, Workflow, chain, compile_workflow, flow_meta
from conveyor.config import Settings
from conveyor.errors import ConfigurationError, JobNotFound, SerializationError
from conveyor.executor import EXECUTOR_QUEUE, EXECUTOR_TASK, DurableExecutor, run_pickled
from conveyor.feed import EventFeed
from conveyor.inspection import (
    Event,
    Page,
    ScheduleInfo,
    Stats,
    WorkerInfo,
    build_stats,
    check_page,
    schedule_infos,
)
from conveyor.job import Claim, IdGenerator, Job, JobInfo, JobRecord, Outcome, State, to_datetime
from conveyor.limits import (
    META_FIELD,
    LimitInfo,
    LimitSpec,
    Rate,
    job_refs,
    limit_key_of,
    shared_limit,
    task_limit,
)
from conveyor.registry import AroundJob, Registry
from conveyor.schedule import PeriodicSpec, check_periodic_call, make_schedule
from conveyor.serialization import decode_call, encode_call, get_serializer
from conveyor.task import (
    CallOptions,
    Signature,
    Task,
    TaskOptions,
    check_task_defaults,
    task_options,
)
from conveyor.worker.worker import Worker, WorkerSettings

if TYPE_CHECKING:
    from starlette.applications import Starlette

P = ParamSpec("P")
R = TypeVar("R")

#: a context-manager function entered around every write of new jobs (``app.around_enqueue``)
AroundEnqueue = Callable[[Sequence[JobRecord]], AbstractContextManager[Any]]

log = logging.getLogger("conveyor.app")

#: a worker not seen for longer than this no longer counts as serving its queues
LIVE_WORKER_SECONDS = 60.0


class App:
    """``App(url)``: the embedded default is ``CONVEYOR_URL``, else ``sqlite:///conveyor.db``."""

    def __init__(
        self,
        url: str | None = None,
        *,
        namespace: str | None = None,
        eager: bool = False,
        serializer: str | None = None,
        token: str | None = None,
        max_crashes: int | None = None,
        task_defaults: dict[str, Any] | None = None,
    ) -> None:
        self.settings = Settings.load(
            url=url,
            namespace=namespace,
            eager=eager,
            serializer=serializer,
            token=token,
            max_crashes=max_crashes,
        )
        self.registry = Registry()
        self.serializer = get_serializer(self.settings.serializer)
        self._ids = IdGenerator()
        self._backend: Backend | None = None
        self._backend_lock = threading.Lock()
        self._feed: EventFeed | None = None
        self._queues_checked: set[str] = set()  # queues asked about once: see _check_served
        self.task_defaults = check_task_defaults(task_defaults)
        rate, concurrency = (self.task_defaults.get(k) for k in ("rate_limit", "concurrency"))
        try:
            task_limit("task_defaults", rate, concurrency)
        except ConfigurationError as exc:
            message = str(exc).replace("task 'task_defaults'", "task_defaults")
            raise ConfigurationError(message) from None
        # Limits declared in this process (app.limit, tasks' own), by name. They reach the
        # store when the backend opens, or at once when it is open already.
        self._limits: dict[str, LimitSpec] = {}
        # Every app's workers can run app.executor()'s jobs, so a `conveyor worker` finishes
        # what a dead submitter left (docs/executor.md: what this means for trust). Never
        # retried: a call that raised has its exception as its result, as in the stdlib.
        self.task(name=EXECUTOR_TASK, queue=EXECUTOR_QUEUE, retries=0)(run_pickled)
        self._enqueue_hooks: list[AroundEnqueue] = []

    def __repr__(self) -> str:
        return f"<conveyor.App {self.settings.url} namespace={self.settings.namespace}>"

    @property
    def backend(self) -> Backend:
        """The backend, opened on first use (eager apps keep their jobs in memory)."""
        if self._backend is None:
            with self._backend_lock:
                if self._backend is None:
                    if self.settings.eager:
                        self._backend = MemoryBackend(namespace=self.settings.namespace)
                    else:
                        backend = open_backend(self.settings.url, namespace=self.settings.namespace)
                        now = time.time()
                        for spec in self._limits.values():
                            backend.set_limit(spec, now=now)
                        self._backend = backend
        return self._backend

    def migrate(self) -> tuple[int, int] | None:
        """Bring the store to this conveyor's layout (``conveyor migrate``): the layout
        versions (before, after), or None for a store without versions."""
        return migrate_store(self.settings.url, namespace=self.settings.namespace)

    def close(self) -> None:
        if self._feed is not None:
            self._feed.close()
            self._feed = None
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    # -- declaring tasks -------------------------------------------------------------------

    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(self, /, **options: Any) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(self, fn: Callable[P, R] | None = None, /, **options: Any) -> Any:
        """Register a function (sync or ``async def``) as a task; see API.md for options."""

        def register(f: Callable[P, R]) -> Task[P, R]:
            name = options.get("name") or f"{f.__module__}.{f.__qualname__}"
            if not options.get("name") and f.__module__ == "__main__":
                _warn_main_module(f, name)
            raw = {**self.task_defaults, **{k: v for k, v in options.items() if k != "name"}}
            opts = task_options(name, raw)
            t: Task[P, R] = Task(f, opts, self)
            self.registry.add(t)
            own = task_limit(name, opts.rate_limit, opts.concurrency)
            if own is not None:
                self._declare(own)
            return t

        return register if fn is None else register(fn)

    @overload
    def periodic(
        self,
        fn: Callable[P, R],
        /,
        *,
        cron: str | None = None,
        every: float | timedelta | None = None,
        tz: str = "UTC",
        misfire_grace: float | None = None,
        overlap: bool = True,
        **options: Any,
    ) -> Task[P, R]: ...

    @overload
    def periodic(
        self,
        fn: None = None,
        /,
        *,
        cron: str | None = None,
        every: float | timedelta | None = None,
        tz: str = "UTC",
        misfire_grace: float | None = None,
        overlap: bool = True,
        **options: Any,
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def periodic(
        self,
        fn: Callable[P, R] | None = None,
        /,
        *,
        cron: str | None = None,
        every: float | timedelta | None = None,
        tz: str = "UTC",
        misfire_grace: float | None = None,
        overlap: bool = True,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        """Register a task that is enqueued on a schedule, once per due time cluster-wide,
        with the JSON arguments ``args`` and ``kwargs``."""
        schedule = make_schedule(cron=cron, every=every, tz=tz)

        def register(f: Callable[P, R]) -> Task[P, R]:
            t: Task[P, R] = self.task(**options)(f)
            spec = PeriodicSpec(
                t.name, schedule, misfire_grace, overlap, tuple(args), dict(kwargs or {})
            )
            check_periodic_call(f, spec.args, spec.kwargs, owner=f"periodic task {t.name!r}")
            self.registry.add_periodic(spec)
            return t

        return register if fn is None else register(fn)

    def around_job(self, hook: AroundJob) -> AroundJob:
        """Register ``hook(ctx) -> ContextManager``: every worker of this app enters it
        before a task runs and exits it after, in every pool (a database session per job, an
        app context, a tracing span). Hooks nest in registration order."""
        self.registry.add_around_job(hook)
        return hook

    def around_enqueue(self, hook: AroundEnqueue) -> AroundEnqueue:
        """Register ``hook(records) -> ContextManager``, entered around every write of new
        jobs from this process, with the records before they are written (it may add to
        their ``meta``, as tracing adds the trace context)."""
        self._enqueue_hooks.append(hook)
        return hook

    def _around_enqueue(self, records: Sequence[JobRecord]) -> ExitStack:
        """The ``around_enqueue`` hooks entered for one write (none: an empty stack)."""
        stack = ExitStack()
        with stack:
            for hook in self._enqueue_hooks:
                stack.enter_context(hook(records))
            return stack.pop_all()

    # -- enqueueing (the Dispatcher the tasks call) ----------------------------------------

    def _options(self, task: str) -> TaskOptions:
        found = self.registry.find(task)
        return found.options if found is not None else TaskOptions(task)

    def make_record(
        self,
        task: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        call: CallOptions,
        *,
        now: float | None = None,
        meta: dict[str, Any] | None = None,
    ) -> JobRecord:
        """A new job's record; unserialisable arguments raise SerializationError here."""
        opts = self._options(task)
        now = time.time() if now is None else now
        payload = encode_call(self.serializer, args, kwargs)
        if call.countdown is not None:
            ready_at = now + call.countdown
        elif isinstance(call.eta, datetime):
            ready_at = call.eta.timestamp()
        elif call.eta is not None:
            ready_at = float(call.eta)
        else:
            ready_at = now
        expires = call.expires if call.expires is not None else opts.expires
        if opts.rate_limit is not None or opts.concurrency is not None or opts.limits:
            meta = {**(meta or {}), META_FIELD: self._refs(opts, args, kwargs)}
        unique_key = None
        if opts.unique:
            import hashlib  # here: OpenSSL costs a worker that has no unique tasks ~4 MB

            unique_key = f"{task}:{hashlib.sha256(payload).hexdigest()}"
        return JobRecord(
            id=self._ids(),
            task=task,
            payload=payload,
            queue=call.queue or opts.queue,
            priority=opts.priority if call.priority is None else call.priority,
            state=State.SCHEDULED if ready_at > now else State.QUEUED,
            key=call.key,
            unique_key=unique_key,
            created_at=now,
            ready_at=ready_at,
            expires_at=None if expires is None else now + expires,
            result_ttl=opts.result_ttl,
            meta=meta or {},
        )

    def submit(
        self,
        task: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: CallOptions,
        *,
        connection: Any = None,
        meta: dict[str, Any] | None = None,
    ) -> Job:
        record = self.make_record(task, args, kwargs, options, meta=meta)
        if self.settings.eager:
            return self._run_eagerly(record)
        [stored] = self._enqueue([record], connection)
        if record.queue not in self._queues_checked:
            self._check_served(record.queue)
        return Job(self, stored.id, stored.task)

    def _enqueue(self, records: list[JobRecord], connection: Any = None) -> list[JobRecord]:
        """Into the store, or into the caller's transaction on ``connection``; inside the
        ``around_enqueue`` hooks, if any."""
        if not self._enqueue_hooks:
            return self._write(records, connection)
        with self._around_enqueue(records):
            return self._write(records, connection)

    def _write(self, records: list[JobRecord], connection: Any) -> list[JobRecord]:
        if connection is None:
            return self.backend.enqueue(records)
        return self.backend.enqueue_with(connection, records)

    async def asubmit(
        self,
        task: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: CallOptions,
        *,
        meta: dict[str, Any] | None = None,
    ) -> Job:
        record = self.make_record(task, args, kwargs, options, meta=meta)  # errors here
        if self.settings.eager:
            return self._run_eagerly(record)
        import asyncio  # here, not at the top: a worker without async code never loads it

        stored = (await asyncio.to_thread(self._enqueue, [record]))[0]
        if record.queue not in self._queues_checked:
            await asyncio.to_thread(self._check_served, record.queue)
        return Job(self, stored.id, stored.task)

    def enqueue_many(
        self, signatures: Iterable[Signature], *, batch_size: int = 1000, connection: Any = None
    ) -> list[Job]:
        """Enqueue many signatures, one backend round trip per batch of ``batch_size``;
        with ``connection``, inside the caller's transaction (see ``Task.apply_async``)."""
        jobs: list[Job] = []
        batch: list[JobRecord] = []
        now = time.time()

        def flush() -> None:
            if self.settings.eager:
                jobs.extend(self._run_eagerly(r) for r in batch)
            else:
                jobs.extend(Job(self, r.id, r.task) for r in self._enqueue(batch, connection))
            batch.clear()

        for sig in signatures:
            batch.append(self.make_record(sig.task, sig.args, sig.kwargs, sig.options, now=now))
            if len(batch) >= batch_size:
                flush()
        if batch:
            flush()
        return jobs

    def unserved_queues(self, queues: Iterable[str], *, now: float | None = None) -> list[str]:
        """Those of ``queues`` that no live worker (seen within LIVE_WORKER_SECONDS) serves:
        their jobs wait until one does."""
        since = (time.time() if now is None else now) - LIVE_WORKER_SECONDS
        served = {q for w in self.backend.list_workers() if w.last_seen >= since for q in w.queues}
        return [q for q in queues if q not in served]

    def _check_served(self, queue: str) -> None:
        """Warn, once per queue and app, when a job goes to a queue no live worker serves (a
        typo such as 'reprots' otherwise costs hours). Asked once, so delay() stays fast."""
        self._queues_checked.add(queue)
        try:
            unserved = self.unserved_queues([queue])
        except Exception:  # a store that cannot list workers must not fail an enqueue
            return
        if unserved:
            log.warning(
                "no live worker serves queue %r: its jobs wait until one does (check the "
                "name, or start one: conveyor -A module:app worker -Q %s)",
                queue,
                queue,
            )

    # -- workflows (the canvas calls back here) --------------------------------------------

    def pipe(self, first: Signature, then: Node) -> Node:
        """``first | then``: a chain."""
        return chain(first, then)

    def submit_workflow(self, node: Node) -> Job | GroupJob:
        """Store every job of a workflow in one atomic operation; the handle of its output."""
        if self.settings.eager:
            raise ConfigurationError(
                "workflows need a store and workers; an eager app has neither (use memory:// "
                "and a worker in tests)"
            )
        plan = compile_workflow(node)
        now = time.time()
        ids = [self._ids() for _ in plan.steps]
        workflow_id = ids[0]
        records = []
        for step, job_id in zip(plan.steps, ids, strict=True):
            sig = step.signature
            if sig.options.key is not None:
                raise ConfigurationError(
                    f"workflow step {sig.task!r}: an idempotency key is not available on a "
                    "workflow step"
                )
            record = self.make_record(
                sig.task,
                sig.args,
                sig.kwargs,
                sig.options,
                now=now,
                meta=flow_meta(step, ids, workflow_id),
            )
            record.id, record.unique_key = job_id, None
            if step.held:
                record.state, record.ready_at, record.expires_at = State.SCHEDULED, HOLD, None
            records.append(record)

        def leaves(tree: Tree) -> list[int]:
            return [tree] if isinstance(tree, int) else [i for t in tree for i in leaves(t)]

        outputs = {ids[i] for i in leaves(plan.output)}
        with self._around_enqueue(records):
            self.backend.enqueue_workflow(workflow_id, records, outputs)

        def handle(tree: Tree) -> Job | GroupJob:
            if isinstance(tree, int):
                return Job(self, ids[tree], records[tree].task)
            return GroupJob([handle(t) for t in tree])

        return handle(plan.output)

    def workflow(self, workflow_id: str) -> Workflow:
        """A workflow by id; raises LookupError when it is unknown or purged."""
        if self.backend.get_workflow(workflow_id) is None:
            raise LookupError(f"no workflow {workflow_id!r} (never existed, or purged)")
        return Workflow(self, workflow_id)

    def workflow_jobs(self, workflow_id: str) -> list[tuple[str, str, bool, State | None]] | None:
        return self.backend.get_workflow(workflow_id)

    def workflow_of(self, record: JobRecord) -> Workflow | None:
        workflow_id = record.meta.get("workflow")
        return None if workflow_id is None else Workflow(self, workflow_id)

    def periodic_record(self, spec: PeriodicSpec, due: float) -> JobRecord:
        """The job a periodic task's due time enqueues."""
        return self.make_record(
            spec.task_name,
            spec.args,
            spec.kwargs,
            CallOptions(),
            meta={"periodic": spec.task_name, "due": due},
        )

    # -- cluster-wide limits ---------------------------------------------------------------

    def limit(
        self, name: str, *, rate: str | Rate | None = None, concurrency: int | None = None
    ) -> LimitSpec:
        """Declare (or change) a limit shared by the tasks that name it in ``limits=[...]``:
        at most ``rate`` starts ("N/s", "N/m", "N/h") and ``concurrency`` running at once,
        across the cluster. Called again with other numbers, it changes the limit in the
        store, for every worker at once."""
        spec = shared_limit(name, rate=rate, concurrency=concurrency)
        self._declare(spec)
        return spec

    def limits(self) -> list[LimitInfo]:
        """Every limit the store knows, with its current use per key."""
        if self.settings.eager:
            return []
        return self.backend.limits(now=time.time())

    def _declare(self, spec: LimitSpec) -> None:
        self._limits[spec.name] = spec
        if self._backend is not None and not self.settings.eager:
            self._backend.set_limit(spec, now=time.time())

    def _refs(
        self, opts: TaskOptions, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> list[list[str]]:
        """The limits a new job of the task counts against (``meta["limits"]``)."""
        for name in opts.limits:
            if name not in self._limits:
                raise ConfigurationError(
                    f"task {opts.name!r} counts against limit {name!r}, which this app never "
                    f"declared; call app.limit({name!r}, rate=..., concurrency=...) first"
                )
        key = (
            "" if opts.limit_key is None else limit_key_of(opts.name, opts.limit_key, args, kwargs)
        )
        own = task_limit(opts.name, opts.rate_limit, opts.concurrency)
        return job_refs(own, opts.limits, key)

    def _run_eagerly(self, record: JobRecord) -> Job:
        """``eager=True``: run the job here and now, retries included (without waiting)."""
        from conveyor.worker.execute import JobExecutor

        executor = JobExecutor(self.registry, self.serializer, lambda *a: None)
        record.state, record.attempts = State.RUNNING, 0
        while True:
            record.attempts += 1
            run = executor.prepare(Claim(record, record.attempts))
            outcome = run.early or executor.call_sync(run) or Outcome.cancelled()
            if outcome.state.is_final:
                break
            record.failures += 1
            record.error = outcome.error
        now = time.time()
        record.state, record.result, record.error = outcome.state, outcome.result, outcome.error
        record.started_at, record.finished_at = record.created_at, now
        record.purge_at = now + record.result_ttl
        stored = self.backend.enqueue([record])[0]
        return Job(self, stored.id, stored.task)

    # -- job handles (the JobClient the handles call) --------------------------------------

    def job(self, job_id: str) -> Job:
        """A handle by id; ``.info()`` raises JobNotFound if the id is unknown."""
        record = self.backend.get(job_id)
        return Job(self, job_id, record.task if record else "")

    def get_record(self, job_id: str) -> JobRecord | None:
        return self.backend.get(job_id)

    def wait_final(self, job_id: str, timeout: float | None) -> JobRecord | None:
        return self.backend.wait_final(job_id, timeout)

    async def await_final(self, job_id: str, timeout: float | None) -> JobRecord | None:
        import asyncio

        return await asyncio.to_thread(self.backend.wait_final, job_id, timeout)

    def cancel_job(self, job_id: str) -> bool:
        if self.backend.get(job_id) is None:
            raise JobNotFound(job_id)
        return self.backend.cancel(job_id, now=time.time())

    def retry_job(self, job_id: str) -> bool:
        if self.backend.get(job_id) is None:
            raise JobNotFound(job_id)
        return self.backend.retry(job_id, now=time.time())

    def decode_result(self, record: JobRecord) -> Any:
        return None if record.result is None else self.serializer.loads(record.result)

    def job_info(self, record: JobRecord) -> JobInfo:
        try:
            args, kwargs = decode_call(self.serializer, record.payload)
        except SerializationError:
            args, kwargs = (), {}
        try:
            result = self.decode_result(record)
        except SerializationError:
            result = None
        return JobInfo(
            id=record.id,
            task=record.task,
            args=tuple(args),
            kwargs=dict(kwargs),
            queue=record.queue,
            priority=record.priority,
            state=record.state,
            attempts=record.attempts,
            progress=record.progress,
            result=result,
            error=record.error,
            created_at=to_datetime(record.created_at) or to_datetime(0.0),  # type: ignore[arg-type]
            eta=(
                to_datetime(record.ready_at) if record.created_at < record.ready_at < HOLD else None
            ),
            started_at=to_datetime(record.started_at),
            finished_at=to_datetime(record.finished_at),
            worker=record.worker,
            key=record.key,
            meta=dict(record.meta),
        )

    # -- looking around (the CLI, the HTTP API and the dashboard call these) ---------------

    def jobs(
        self,
        state: State | str | None = None,
        task: str | None = None,
        queue: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """A page of jobs, newest first; ``next_cursor`` fetches the next one. A bad state,
        limit (1 to 1000) or cursor raises InvalidArgument."""
        state, limit, cursor = check_page(state, limit, cursor)
        records = self.backend.list_jobs(
            state=state, task=task, queue=queue, limit=limit + 1, cursor=cursor
        )
        more = len(records) > limit
        del records[limit:]
        return Page([self.job_info(r) for r in records], records[-1].id if more else None)

    def queues(self) -> dict[str, dict[State, int]]:
        """For each queue that holds jobs, how many are in each state."""
        return self.backend.queue_counts()

    def workers(self) -> list[WorkerInfo]:
        """The registered workers; ``last_seen`` tells which still live."""
        return self.backend.list_workers()

    def schedules(self) -> list[ScheduleInfo]:
        """The periodic tasks this app declares and those the store recorded."""
        return schedule_infos(self.registry.periodic, self.backend.schedules(), time.time())

    def purge(self, queue: str) -> int:
        """Delete the scheduled and queued jobs of ``queue``; returns how many."""
        return self.backend.purge_queue(queue)

    def stats(self) -> Stats:
        """The numbers /metrics reports, read from the store."""
        now = time.time()
        backend = self.backend
        return build_stats(
            backend.queue_counts(), backend.job_stats(now=now), backend.list_workers(), now
        )

    def ping(self) -> bool:
        """True when the store answers."""
        return self.backend.ping()

    @property
    def feed(self) -> EventFeed:
        if self._feed is None:
            backend = self.backend  # opened first: it takes the same lock
            with self._backend_lock:
                if self._feed is None:
                    self._feed = EventFeed(backend)
        return self._feed

    def events(
        self, job_id: str | None = None, *, after: int | str | None = None
    ) -> Iterator[Event]:
        """Every job change from now on (or after event id ``after``), blocking; with
        ``job_id``, that job's changes until it is final."""
        return self.feed.events(job_id, after=after)

    def aevents(
        self, job_id: str | None = None, *, after: int | str | None = None
    ) -> AsyncIterator[Event]:
        """``events`` for async code."""
        return self.feed.aevents(job_id, after=after)

    def read_events(
        self,
        after: int | str | None = None,
        *,
        job_id: str | None = None,
        limit: int = 1000,
        timeout: float = 0.0,
    ) -> tuple[list[Event], int]:
        """Events after event id ``after`` (None: from now), waiting up to ``timeout`` for
        one; returns them with the id to pass next time (SSE: Last-Event-ID)."""
        return self.feed.read(after, job_id=job_id, limit=limit, timeout=timeout)

    async def aread_events(
        self,
        after: int | str | None = None,
        *,
        job_id: str | None = None,
        limit: int = 1000,
        timeout: float = 0.0,
    ) -> tuple[list[Event], int]:
        """``read_events`` for async code: one shared reader serves every caller."""
        return await self.feed.aread(after, job_id=job_id, limit=limit, timeout=timeout)

    # -- the executor ----------------------------------------------------------------------

    def executor(
        self,
        max_workers: int | None = None,
        *,
        run_here: bool = True,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        queue: str = EXECUTOR_QUEUE,
        lease_seconds: float = 30.0,
    ) -> DurableExecutor:
        """A ``concurrent.futures.Executor`` whose submissions are durable jobs on ``queue``;
        with ``run_here`` an embedded worker of ``max_workers`` threads runs them here too."""

        def make_worker(concurrency: int) -> Worker:
            return self.worker(
                queues=[queue], concurrency=concurrency, lease_seconds=lease_seconds, schedule=False
            )

        if run_here:
            self._queues_checked.add(queue)  # its embedded worker serves it, from the first submit
        return DurableExecutor(
            self,
            max_workers=max_workers,
            run_here=run_here,
            initializer=initializer,
            initargs=initargs,
            queue=queue,
            make_worker=None if self.settings.eager else make_worker,
        )

    # -- workers ---------------------------------------------------------------------------

    def worker(
        self,
        queues: Iterable[str] | str | None = None,
        concurrency: int = 8,
        pool: str = "thread",
        *,
        max_tasks_per_child: int | None = None,
        max_memory_per_child: float | None = None,
        lease_seconds: float = 30.0,
        shutdown_timeout: float = 30.0,
        schedule: bool = True,
    ) -> Worker:
        """A worker for this app: ``run()`` in the foreground, ``start()``/``stop()`` in
        background threads, or ``with app.worker(): ...``."""
        if self.settings.eager:
            raise ConfigurationError("an eager app runs jobs inline; it has no workers")
        if isinstance(queues, str):
            queues = [q for q in queues.split(",") if q]
        settings = WorkerSettings(
            queues=None if queues is None else tuple(queues),
            concurrency=concurrency,
            pool=pool,
            max_tasks_per_child=max_tasks_per_child,
            max_memory_per_child=max_memory_per_child,
            lease_seconds=lease_seconds,
            shutdown_timeout=shutdown_timeout,
            schedule=schedule,
            max_crashes=self.settings.max_crashes,
        )
        return Worker(
            self.backend,
            self.registry,
            self.serializer,
            settings,
            make_periodic_record=self.periodic_record,
        )

    # -- the web face ----------------------------------------------------------------------

    def asgi(self, token: str | None = None, *, read_only: bool = False) -> Starlette:
        """The HTTP API, live events, /metrics and the dashboard, as an ASGI app to serve or
        mount. ``token`` (else ``CONVEYOR_TOKEN``) guards every route but /healthz;
        ``read_only`` refuses changes with 403. Building it does no I/O, so mounting it at
        import time is safe. Needs ``pip install 'conveyor[web]'``."""
        try:
            from conveyor.web.asgi import build
        except ImportError as exc:
            raise ConfigurationError(
                f"app.asgi() needs the web extra: pip install 'conveyor[web]' ({exc})"
            ) from None
        return build(self, token=token or self.settings.token, read_only=read_only)


def _warn_main_module(fn: Callable[..., Any], name: str) -> None:
    """A task defined in a script run as ``python app.py`` is named ``__main__.…``, a name a
    worker that imports the module (``-A app:app``) never registers: say so, at the def."""
    code = getattr(fn, "__code__", None)
    filename = code.co_filename if code else "__main__"
    module = os.path.splitext(os.path.basename(filename))[0] if code else "yourmodule"
    warnings.warn_explicit(
        f"task {name!r} is registered from __main__ (a script run as 'python "
        f"{module}.py'): a worker importing your module will never know that name. Give it "
        f"one, @app.task(name={fn.__name__!r}), or run the program as a module "
        f"(python -m {module})",
        RuntimeWarning,
        filename=filename,
        lineno=code.co_firstlineno if code else 0,
        module="__main__",
    )
