"""What a task is: a function, its options, and the ways to call it.

A ``Task`` enqueues through the ``Dispatcher`` it is given (the app), so this module does no
I/O of its own.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeVar

from conveyor.errors import ConfigurationError

if TYPE_CHECKING:
    from conveyor.job import Job

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """A task's options (API.md's table), validated at declaration time."""

    name: str
    queue: str = "default"
    priority: int = 0
    retries: int = 0
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    retry_delay: float = 1.0
    retry_backoff: float = 2.0
    retry_max_delay: float = 600.0
    retry_jitter: bool = True
    timeout: float | None = None
    soft_timeout: float | None = None
    expires: float | None = None
    result_ttl: float = 86400.0
    rate_limit: str | None = None
    concurrency: int | None = None
    limits: tuple[str, ...] = ()
    limit_key: Callable[..., str] | None = None
    unique: bool = False

    def __post_init__(self) -> None:
        def bad(option: str, why: str) -> ConfigurationError:
            return ConfigurationError(f"task {self.name!r}: {option} {why}")

        if not self.name:
            raise ConfigurationError("a task needs a non-empty name")
        if not self.queue:
            raise bad("queue", "must be a non-empty string")
        if not 0 <= self.priority <= 100:
            raise bad("priority", f"must be between 0 and 100, not {self.priority}")
        if self.retries < 0:
            raise bad("retries", f"must be 0 or more, not {self.retries}")
        if not all(isinstance(t, type) and issubclass(t, BaseException) for t in self.retry_on):
            raise bad("retry_on", "must be a tuple of exception types")
        for option in ("retry_delay", "retry_max_delay"):
            if getattr(self, option) < 0:
                raise bad(option, "must be 0 or more seconds")
        if self.retry_backoff < 1:
            raise bad("retry_backoff", f"must be 1 or more, not {self.retry_backoff}")
        for option in ("timeout", "soft_timeout", "expires"):
            value = getattr(self, option)
            if value is not None and value <= 0:
                raise bad(option, f"must be a positive number of seconds, not {value}")
        if (
            self.timeout is not None
            and self.soft_timeout is not None
            and self.soft_timeout >= self.timeout
        ):
            raise bad("soft_timeout", "must be shorter than timeout, so the task can clean up")
        if self.result_ttl < 0:
            raise bad("result_ttl", "must be 0 or more seconds")
        # rate_limit and concurrency are read by conveyor.limits.task_limit (the app calls it)
        object.__setattr__(self, "limits", _limit_names(self.name, self.limits))
        if self.limit_key is not None and not callable(self.limit_key):
            raise bad("limit_key", "must be a function of the task's arguments returning a str")
        limited = self.rate_limit is not None or self.concurrency is not None or self.limits
        if self.limit_key is not None and not limited:
            raise bad("limit_key", "needs rate_limit, concurrency or limits to apply to")


OPTION_NAMES = frozenset(f.name for f in fields(TaskOptions))


def _limit_names(task: str, names: object) -> tuple[str, ...]:
    """``limits=[...]``: names of shared limits (``app.limit``)."""
    if isinstance(names, str) or not isinstance(names, list | tuple | set | frozenset):
        raise ConfigurationError(
            f"task {task!r}: limits must be a list of limit names (app.limit), not {names!r}"
        )
    for name in names:
        if not isinstance(name, str) or not name or name.startswith("task:"):
            raise ConfigurationError(
                f"task {task!r}: {name!r} in limits is not the name of an app.limit(...)"
            )
    return tuple(names)


def task_options(name: str, raw: Mapping[str, Any]) -> TaskOptions:
    """Build TaskOptions from decorator keywords, with a clear error for unknown ones."""
    values = dict(raw)
    unknown = set(values) - OPTION_NAMES
    if unknown:
        raise ConfigurationError(
            f"task {name!r}: unknown option(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(OPTION_NAMES))}"
        )
    if "retry_on" in values and isinstance(values["retry_on"], type):
        values["retry_on"] = (values["retry_on"],)
    elif "retry_on" in values:
        values["retry_on"] = tuple(values["retry_on"])
    values["name"] = name
    return TaskOptions(**values)


def check_task_defaults(defaults: Mapping[str, Any] | None) -> dict[str, Any]:
    """``App(task_defaults=...)``: any task option but ``name``, checked once, when the app
    is made (the app checks the rate itself: conveyor.limits)."""
    out = dict(defaults or {})
    if "name" in out:
        raise ConfigurationError("task_defaults cannot set name: each task has its own")
    try:
        task_options("task_defaults", out)
    except ConfigurationError as exc:
        raise ConfigurationError(
            str(exc).replace("task 'task_defaults'", "task_defaults")
        ) from None
    return out


@dataclass(frozen=True, slots=True)
class CallOptions:
    """Per-call overrides of ``apply_async``."""

    countdown: float | None = None
    eta: datetime | float | None = None
    queue: str | None = None
    priority: int | None = None
    key: str | None = None
    expires: float | None = None

    def __post_init__(self) -> None:
        if self.countdown is not None and self.eta is not None:
            raise ConfigurationError("give countdown or eta, not both")
        if self.countdown is not None and self.countdown < 0:
            raise ConfigurationError(f"countdown must be 0 or more seconds, not {self.countdown}")
        if self.priority is not None and not 0 <= self.priority <= 100:
            raise ConfigurationError(f"priority must be between 0 and 100, not {self.priority}")
        if isinstance(self.eta, datetime) and self.eta.tzinfo is None:
            raise ConfigurationError(
                "eta must be a timezone-aware datetime (naive times are ambiguous)"
            )
        if self.key is not None and not self.key:
            raise ConfigurationError("key must be a non-empty string")
        if self.expires is not None and self.expires <= 0:
            raise ConfigurationError(
                f"expires must be a positive number of seconds, not {self.expires}"
            )


#: the options of a plain ``delay()``: frozen, so one instance serves every call
DEFAULT_CALL = CallOptions()


class Dispatcher(Protocol):
    """What a task needs from its app to enqueue."""

    def submit(
        self,
        task: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: CallOptions,
        *,
        connection: Any = None,
    ) -> Job: ...

    async def asubmit(
        self, task: str, args: tuple[Any, ...], kwargs: dict[str, Any], options: CallOptions
    ) -> Job: ...

    def pipe(self, first: Signature, then: Any) -> Any: ...


@dataclass(frozen=True, slots=True)
class Signature:
    """A task with its arguments and call options, to enqueue now or later."""

    task: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: CallOptions = field(default_factory=lambda: DEFAULT_CALL)
    dispatcher: Dispatcher | None = field(default=None, compare=False, repr=False)

    def set(self, **options: Any) -> Signature:
        """A copy with these call options (queue, priority, countdown, eta, key, expires)."""
        try:
            return replace(self, options=replace(self.options, **options))
        except TypeError:
            known = ", ".join(f.name for f in fields(CallOptions))
            raise ConfigurationError(
                f"unknown call option among {sorted(options)}; known: {known}"
            ) from None

    def delay(self) -> Job:
        if self.dispatcher is None:
            raise ConfigurationError(f"signature of {self.task!r} is not bound to an app")
        return self.dispatcher.submit(self.task, self.args, self.kwargs, self.options)

    def __or__(self, other: Any) -> Any:
        """``a.s() | b.s()`` is ``conveyor.chain(a.s(), b.s())``. The app builds it (this
        module may not import the canvas beside it), so the signature must be bound."""
        if self.dispatcher is None:
            raise ConfigurationError(f"signature of {self.task!r} is not bound to an app")
        return self.dispatcher.pipe(self, other)


class ArgumentCheck:
    """Checks a call's arguments against a function's signature, as calling it would.

    Worked out once, at registration: the common call (positional arguments only, as many as
    the function takes) costs two comparisons; anything else is bound against the signature.
    """

    __slots__ = ("fewest", "most", "signature")

    def __init__(self, fn: Callable[..., Any]) -> None:
        try:
            self.signature: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):  # a builtin or C function: nothing to check against
            self.signature = None
            self.fewest, self.most = 0, -1
            return
        params = list(self.signature.parameters.values())
        positional = [p for p in params if p.kind in _POSITIONAL]
        required = [p for p in positional if p.default is p.empty]
        keyword_only_required = any(
            p.kind is p.KEYWORD_ONLY and p.default is p.empty for p in params
        )
        # The fast path holds only when positional arguments alone can make a valid call.
        self.fewest = -1 if keyword_only_required else len(required)
        var_positional = any(p.kind is p.VAR_POSITIONAL for p in params)
        self.most = sys.maxsize if var_positional else len(positional)

    def __call__(self, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
        """Raise TypeError, naming the task and its signature, if the call does not fit."""
        if not kwargs and 0 <= self.fewest <= len(args) <= self.most:
            return
        if self.signature is None:
            return
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{name}{self.describe()}: {exc}") from None

    def describe(self) -> str:
        """The signature without annotations: ``(x, y=1)``."""
        if self.signature is None:
            return "(...)"
        params = [p.replace(annotation=p.empty) for p in self.signature.parameters.values()]
        return str(
            self.signature.replace(parameters=params, return_annotation=inspect.Signature.empty)
        )


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


class Task(Generic[P, R]):
    """A function registered with an app. Call it to run it here; ``delay`` to enqueue."""

    def __init__(self, fn: Callable[P, R], options: TaskOptions, dispatcher: Dispatcher) -> None:
        self.fn = fn
        self.options = options
        self._dispatcher = dispatcher
        self.is_async = inspect.iscoroutinefunction(fn)
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", options.name)
        self.__qualname__ = getattr(fn, "__qualname__", options.name)
        self.__module__ = getattr(fn, "__module__", __name__)
        self.__wrapped__ = fn
        self.check_args = ArgumentCheck(fn)
        # delay()'s fast path, inlined: positional arguments alone, as many as fit
        self._fewest, self._most = self.check_args.fewest, self.check_args.most

    @property
    def name(self) -> str:
        return self.options.name

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Enqueue with the task's default options; returns the Job at once. Arguments that
        do not fit the function's signature raise TypeError here, not later in a worker."""
        if kwargs or not 0 <= self._fewest <= len(args) <= self._most:
            self.check_args(self.name, args, kwargs)
        return self._dispatcher.submit(self.name, args, kwargs, DEFAULT_CALL)

    async def adelay(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """``delay`` for async code: the enqueue runs off the event loop."""
        self.check_args(self.name, args, kwargs)
        return await self._dispatcher.asubmit(self.name, args, kwargs, DEFAULT_CALL)

    def apply_async(
        self,
        args: tuple[Any, ...] | list[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        countdown: float | None = None,
        eta: datetime | float | None = None,
        queue: str | None = None,
        priority: int | None = None,
        key: str | None = None,
        expires: float | None = None,
        connection: Any = None,
    ) -> Job:
        """Enqueue with per-call options: a delay (countdown seconds or an aware eta), another
        queue or priority, an idempotency key, or an expiry. ``connection``: your open
        psycopg (or sqlite3) connection to the app's database; the job is written in your
        transaction and exists only once you commit."""
        args, kwargs = tuple(args), dict(kwargs or {})
        self.check_args(self.name, args, kwargs)
        options = CallOptions(countdown, eta, queue, priority, key, expires)
        return self._dispatcher.submit(self.name, args, kwargs, options, connection=connection)

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """A signature: this task with these arguments, for ``set``, ``enqueue_many`` or
        workflows."""
        return Signature(self.name, args, kwargs, DEFAULT_CALL, self._dispatcher)
