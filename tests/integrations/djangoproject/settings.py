"""A small Django project for the ConveyorBackend checks: Django 6's django.tasks under
Python 3.13, or the django-tasks backport under 3.11. The store comes from CONVEYOR_TEST_URL;
signals and runs are written to CONVEYOR_TEST_LOG."""

from __future__ import annotations

import importlib.util
import os

SECRET_KEY = "only-for-tests"
USE_TZ = True
DEBUG = False
DATABASES: dict[str, dict[str, str]] = {}
INSTALLED_APPS = [
    "conveyor.integrations.django",
    "tests.integrations.djangoproject.tasksapp",
]
if importlib.util.find_spec("django.tasks") is None:  # the backport
    INSTALLED_APPS.insert(0, "django_tasks")

TASKS = {
    "default": {
        "BACKEND": "conveyor.integrations.django.ConveyorBackend",
        "QUEUES": ["default", "reports"],
        "OPTIONS": {"url": os.environ.get("CONVEYOR_TEST_URL", "memory://")},
    }
}
