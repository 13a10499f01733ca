"""ConveyorBackend on Django 6's django.tasks (Python 3.13, .venv313) and on the django-tasks
backport (this Python, 3.11): the checks in djangoproject/django_checks.py, each run in a
process of its own, since Django is set up once per process."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from tests.py313 import ROOT, interpreter_env, python313

CHECKS = "tests.integrations.djangoproject.django_checks"


def run_checks(python: Path | str) -> None:
    done = subprocess.run(
        [str(python), "-m", "unittest", "-v", CHECKS],
        cwd=ROOT,
        env=interpreter_env(),
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stderr[-6000:]
    assert done.stderr.rstrip().endswith("OK")


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_the_backend_on_the_django_tasks_backport() -> None:
    if importlib.util.find_spec("django_tasks") is None:  # not imported: Django stays out
        pytest.skip("the django-tasks backport is not installed")
    run_checks(sys.executable)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_backend_on_django_6() -> None:
    run_checks(python313())


def test_worker_django_without_settings_is_one_line_and_exit_2() -> None:
    env = {k: v for k, v in interpreter_env().items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(
        [sys.executable, "-m", "conveyor", "worker", "--django"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: --django: DJANGO_SETTINGS_MODULE is not set: name your project's settings"
    ]
