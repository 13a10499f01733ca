"""Django tasks, declared with Django's own decorator (django.tasks or the backport)."""

from __future__ import annotations

from typing import Any

from conveyor.integrations.django.compat import base
from tests.integrations.djangoproject.tasksapp.apps import log

task = base.task


@task
def add(x: int, y: int) -> int:
    log(f"run add {x} {y}")
    return x + y


@task(queue_name="reports")
def report(name: str) -> dict[str, Any]:
    log(f"run report {name}")
    return {"name": name, "rows": [1, 2]}


@task(priority=0)
def ordered(n: int) -> int:
    log(f"run ordered {n}")
    return n


@task
def explode() -> None:
    raise ValueError("it exploded")


@task(takes_context=True)
def with_context(context: Any, x: int) -> dict[str, Any]:
    return {"attempt": context.attempt, "id": context.task_result.id, "x": x}


@task
async def asleep(x: int) -> int:
    import asyncio

    await asyncio.sleep(0.01)
    return x * 10
