from __future__ import annotations

import os

from django.apps import AppConfig


class TasksAppConfig(AppConfig):
    name = "tests.integrations.djangoproject.tasksapp"
    label = "tasksapp"

    def ready(self) -> None:
        from conveyor.integrations.django.compat import signals

        def record(signal_name: str):  # type: ignore[no-untyped-def]
            def receiver(sender, task_result, **kwargs):  # type: ignore[no-untyped-def]
                log(f"{signal_name} {task_result.id} {task_result.status}")

            return receiver

        for name in ("task_enqueued", "task_started", "task_finished"):
            getattr(signals, name).connect(record(name), weak=False)


def log(line: str) -> None:
    path = os.environ.get("CONVEYOR_TEST_LOG")
    if path:
        with open(path, "a") as f:
            f.write(f"{os.getpid()} {line}\n")
