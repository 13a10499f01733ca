"""Django 6's ``django.tasks``, or else the ``django-tasks`` backport (``django_tasks``): the
same API under two names. Everything Django-side is typed ``Any`` here (Django ships no types)."""

from __future__ import annotations

import importlib
from typing import Any


def _first(*names: str) -> Any:
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError(
        "conveyor's Django backend needs Django 6 (django.tasks) or the django-tasks backport: "
        "pip install django-tasks"
    )


_package = _first("django.tasks", "django_tasks")
_root = _package.__name__
base: Any = importlib.import_module(f"{_root}.base")
backends_base: Any = importlib.import_module(f"{_root}.backends.base")
signals: Any = importlib.import_module(f"{_root}.signals")
exceptions: Any = importlib.import_module(f"{_root}.exceptions")
task_backends: Any = _package.task_backends

try:
    from django.utils.json import normalize_json as _normalize  # Django 6
except ImportError:
    _normalize = importlib.import_module("django_tasks.utils").normalize_json

normalize_json: Any = _normalize

BaseTaskBackend: Any = backends_base.BaseTaskBackend
Task: Any = base.Task
TaskContext: Any = base.TaskContext
TaskError: Any = base.TaskError
TaskResult: Any = base.TaskResult
TaskResultStatus: Any = base.TaskResultStatus
TaskResultDoesNotExist: Any = exceptions.TaskResultDoesNotExist
#: named InvalidTaskError in the backport
InvalidTask: Any = getattr(exceptions, "InvalidTask", None) or exceptions.InvalidTaskError
