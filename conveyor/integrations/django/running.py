"""The worker side: a Django task found by its import path runs as a conveyor task, with
Django's ``task_started`` and ``task_finished`` signals, its ``TaskContext`` when it takes
one, and Django's database connections tidied around each job (as around a request).

``worker_app()`` is what ``conveyor worker --django`` and ``manage.py conveyor_worker`` run.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

from django.utils.module_loading import import_string

from conveyor.app import App
from conveyor.context import JobContext, current_job
from conveyor.integrations.django import compat
from conveyor.task import Task, TaskOptions


def install(app: App) -> None:
    """Teach ``app`` to find Django's tasks by import path and to tidy connections."""
    if getattr(app, "_django_installed", False):
        return
    app._django_installed = True  # type: ignore[attr-defined]

    def resolve(name: str) -> Task[Any, Any] | None:
        try:
            found = import_string(name)
        except ImportError:
            return None
        if not isinstance(found, compat.Task):
            return None  # only Django tasks: a name from the store never picks other code
        runner = _async_runner(found) if _is_async(found.func) else _sync_runner(found)
        return Task(runner, TaskOptions(name, queue=found.queue_name), app)

    app.registry.resolver = resolve
    app.around_job(_connections)


@contextlib.contextmanager
def _connections(ctx: JobContext) -> Iterator[None]:
    from django.db import close_old_connections

    close_old_connections()
    try:
        yield
    finally:
        close_old_connections()


def _is_async(func: Callable[..., Any]) -> bool:
    import inspect

    return inspect.iscoroutinefunction(func)


def _started(django_task: Any) -> tuple[Any, Any]:
    """The backend and the TaskResult of the running job, after ``task_started``."""
    ctx = current_job()
    assert ctx is not None
    backend = compat.task_backends[django_task.backend]
    result = backend.get_result(ctx.id)
    compat.signals.task_started.send(type(backend), task_result=result)
    return backend, result


def _arguments(django_task: Any, result: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return (compat.TaskContext(task_result=result), *args) if django_task.takes_context else args


def _failed(backend: Any, result: Any, exc: BaseException) -> None:
    """Mark the result failed, send ``task_finished`` (inside the except, as Django does, so
    receivers see the exception), and carry the exception's import path to the job."""
    import traceback

    from django.utils import timezone

    path = f"{type(exc).__module__}.{type(exc).__qualname__}"
    result.errors.append(
        compat.TaskError(
            exception_class_path=path, traceback="".join(traceback.format_exception(exc))
        )
    )
    object.__setattr__(result, "status", compat.TaskResultStatus.FAILED)
    object.__setattr__(result, "finished_at", timezone.now())
    compat.signals.task_finished.send(type(backend), task_result=result)
    with contextlib.suppress(Exception):
        exc.conveyor_result = {"exception_class_path": path}  # type: ignore[attr-defined]


def _succeeded(backend: Any, result: Any, value: Any) -> Any:
    from django.utils import timezone

    value = compat.normalize_json(value)
    object.__setattr__(result, "status", compat.TaskResultStatus.SUCCESSFUL)
    object.__setattr__(result, "finished_at", timezone.now())
    object.__setattr__(result, "_return_value", value)
    compat.signals.task_finished.send(type(backend), task_result=result)
    return value


def _sync_runner(django_task: Any) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        backend, result = _started(django_task)
        try:
            value = django_task.func(*_arguments(django_task, result, args), **kwargs)
        except BaseException as exc:
            _failed(backend, result, exc)
            raise
        return _succeeded(backend, result, value)

    return run


def _async_runner(django_task: Any) -> Callable[..., Any]:
    import asyncio

    async def run(*args: Any, **kwargs: Any) -> Any:
        backend, result = await asyncio.to_thread(_started, django_task)
        try:
            value = await django_task.func(*_arguments(django_task, result, args), **kwargs)
        except BaseException as exc:
            _failed(backend, result, exc)
            raise
        return _succeeded(backend, result, value)

    return run


def worker_app(alias: str | None = None) -> tuple[App, list[str]]:
    """Set Django up (``DJANGO_SETTINGS_MODULE``) and return the app of the ConveyorBackend
    named ``alias`` (default: the first one in ``TASKS``) with its queues."""
    import django
    from django.conf import settings

    if not os.environ.get("DJANGO_SETTINGS_MODULE") and not settings.configured:
        raise RuntimeError("DJANGO_SETTINGS_MODULE is not set: name your project's settings")
    django.setup()
    from conveyor.integrations.django.backend import ConveyorBackend

    tasks: dict[str, Any] = getattr(settings, "TASKS", {})
    aliases = [alias] if alias else list(tasks)
    for name in aliases:
        backend = compat.task_backends[name]
        if isinstance(backend, ConveyorBackend):
            return backend.app, sorted(backend.queues)
    raise RuntimeError(
        f"no TASKS backend {'named ' + repr(alias) if alias else ''} uses "
        "conveyor.integrations.django.ConveyorBackend"
    )
