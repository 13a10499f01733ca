"""The Django app that brings ``manage.py conveyor_worker``; its label is ``conveyor``."""

from __future__ import annotations

from django.apps import AppConfig


class ConveyorConfig(AppConfig):  # type: ignore[misc]
    name = "conveyor.integrations.django"
    label = "conveyor"
    verbose_name = "conveyor"
