"""The composition root: settings, a backend chosen by URL, the task registry; it builds
workers and job handles. Nothing here is global: two apps live side by side in one process."""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from conveyor.app.enqueue import AroundEnqueue, Enqueueing
from conveyor.app.handles import Handles
from conveyor.app.inspection import Inspection
from conveyor.app.limits import Limits
from conveyor.app.workflows import Workflows
from conveyor.backends import Backend, migrate_store, open_backend
from conveyor.config import Settings
from conveyor.errors import ConfigurationError
from conveyor.executor import EXECUTOR_QUEUE, EXECUTOR_TASK, run_pickled
from conveyor.feed import EventFeed
from conveyor.job import IdGenerator
from conveyor.limits import LimitSpec, task_limit
from conveyor.registry import AroundJob, Registry
from conveyor.schedule import PeriodicSpec, check_periodic_call, make_schedule
from conveyor.serialization import get_serializer
from conveyor.task import Task, check_task_defaults, task_options
from conveyor.worker.worker import Worker, WorkerSettings

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from conveyor.executor.durable import DurableExecutor

P = ParamSpec("P")
R = TypeVar("R")


class App(Workflows, Enqueueing, Limits, Inspection, Handles):
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
                        # here: a worker, never eager, loads no memory backend (issue 15)
                        from conveyor.backends.memory import MemoryBackend

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

        from conveyor.executor.durable import DurableExecutor

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
