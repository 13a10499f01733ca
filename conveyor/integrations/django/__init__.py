"""Django Tasks on conveyor: Django 6's ``django.tasks`` and the ``django-tasks`` backport.

    TASKS = {"default": {"BACKEND": "conveyor.integrations.django.ConveyorBackend",
                         "OPTIONS": {"url": "sqlite:///jobs.db"}}}

Workers: ``python manage.py conveyor_worker`` (with ``"conveyor.integrations.django"`` in
``INSTALLED_APPS``) or ``conveyor worker --django``. Importing this package imports nothing
of Django's until ``ConveyorBackend`` is asked for (Django loads it by that path).
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "ConveyorBackend":
        from conveyor.integrations.django.backend import ConveyorBackend

        return ConveyorBackend
    raise AttributeError(name)


__all__ = ["ConveyorBackend"]
