"""The ConveyorBackend checked the way django-tasks checks its backends (our own tests):
run with ``python -m unittest tests.integrations.djangoproject.django_checks`` under Django 6
(Python 3.13) or the backport (3.11), by ``tests/integrations/test_django.py``.

Each class gets a fresh SQLite store; workers are real processes (``manage.py
conveyor_worker`` and ``conveyor worker --django``), stopped by PID."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
_store = tempfile.mkdtemp(prefix="conveyor-django-")
os.environ["CONVEYOR_TEST_URL"] = f"sqlite:///{_store}/jobs.db"
os.environ["CONVEYOR_TEST_LOG"] = f"{_store}/log.txt"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.integrations.djangoproject.settings")

import django  # noqa: E402

django.setup()

from django.utils import timezone  # noqa: E402

from conveyor.integrations.django import compat  # noqa: E402
from conveyor.integrations.django.backend import ConveyorBackend  # noqa: E402
from tests.integrations.djangoproject.tasksapp import tasks  # noqa: E402

Status = compat.TaskResultStatus


def log_lines() -> list[str]:
    path = Path(os.environ["CONVEYOR_TEST_LOG"])
    return path.read_text().splitlines() if path.exists() else []


def wait_finished(result: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not result.is_finished:
        if time.monotonic() > deadline:
            raise AssertionError(f"{result.id} still {result.status} after {timeout} s")
        time.sleep(0.05)
        result.refresh()


class Worker:
    """A worker process: ``manage.py conveyor_worker`` or ``conveyor worker --django``."""

    def __init__(self, *command: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            [sys.executable, *command], cwd=ROOT, env=env, stderr=subprocess.DEVNULL
        )

    @classmethod
    def manage(cls, *args: str) -> Worker:
        return cls("tests/integrations/djangoproject/manage.py", "conveyor_worker", *args)

    @classmethod
    def cli(cls, *args: str) -> Worker:
        return cls("-m", "conveyor", "worker", "--django", *args)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


class BackendTests(unittest.TestCase):
    """What holds without a worker: flags, enqueue, results, validation."""

    def setUp(self) -> None:
        self.backend = compat.task_backends["default"]

    def test_the_backend_is_conveyor_with_every_feature(self) -> None:
        self.assertIsInstance(self.backend, ConveyorBackend)
        for flag in ("defer", "async_task", "get_result", "priority"):
            self.assertTrue(getattr(self.backend, f"supports_{flag}"), flag)

    def test_enqueue_returns_a_ready_result_that_get_result_finds_again(self) -> None:
        result = tasks.add.enqueue(1, y=2)
        self.assertEqual(result.status, Status.READY)
        self.assertEqual((result.args, result.kwargs), ([1], {"y": 2}))
        self.assertIsNotNone(result.enqueued_at)
        self.assertIsNone(result.started_at)
        again = tasks.add.get_result(result.id)
        self.assertEqual(again.id, result.id)
        self.assertEqual(again.task.func, tasks.add.func)
        self.assertEqual(again.status, Status.READY)
        self.assertEqual(self.backend.app.job(result.id).info().queue, "default")
        self.assertIn(f"task_enqueued {result.id} READY", " ".join(log_lines()))

    def test_async_enqueue_and_get_result(self) -> None:
        async def go() -> tuple[Any, Any]:
            result = await tasks.add.aenqueue(2, 3)
            return result, await tasks.add.aget_result(result.id)

        result, again = asyncio.run(go())
        self.assertEqual(again.id, result.id)
        self.assertEqual(again.status, Status.READY)

    def test_queue_names_are_conveyor_queues_and_unknown_ones_are_refused(self) -> None:
        result = tasks.report.enqueue("q")
        self.assertEqual(result.task.queue_name, "reports")
        self.assertEqual(self.backend.app.job(result.id).info().queue, "reports")
        with self.assertRaises(compat.InvalidTask):
            tasks.add.using(queue_name="nowhere")

    def test_every_django_priority_comes_back_exactly(self) -> None:
        for priority in (-100, -99, -1, 0, 1, 57, 99, 100):
            result = tasks.add.using(priority=priority).enqueue(1, 1)
            self.assertEqual(tasks.add.get_result(result.id).task.priority, priority)
        with self.assertRaises(compat.InvalidTask):
            tasks.add.using(priority=101)

    def test_run_after_comes_back_and_the_job_waits_for_it(self) -> None:
        when = timezone.now() + timedelta(hours=1)
        result = tasks.add.using(run_after=when).enqueue(1, 1)
        again = tasks.add.get_result(result.id)
        self.assertEqual(again.status, Status.READY)
        self.assertLess(abs((again.task.run_after - when).total_seconds()), 0.01)
        self.assertEqual(self.backend.app.job(result.id).state.value, "scheduled")

    def test_an_unknown_id_does_not_exist(self) -> None:
        with self.assertRaises(compat.TaskResultDoesNotExist):
            self.backend.get_result("nope")

    def test_unserialisable_arguments_fail_at_the_call_site(self) -> None:
        with self.assertRaises(TypeError):
            tasks.add.enqueue(object(), 1)


class WorkerTests(unittest.TestCase):
    """Jobs run on real worker processes, with Django's signals and statuses."""

    def test_manage_py_worker_runs_every_kind_of_task(self) -> None:
        results = {
            "add": tasks.add.enqueue(2, 3),
            "report": tasks.report.enqueue("weekly"),
            "explode": tasks.explode.enqueue(),
            "context": tasks.with_context.enqueue(x=7),
            "async": tasks.asleep.enqueue(4),
        }
        worker = Worker.manage("-c", "2")
        try:
            for result in results.values():
                wait_finished(result)
        finally:
            self.assertEqual(worker.stop(), 0)
        self.assertEqual(results["add"].status, Status.SUCCESSFUL)
        self.assertEqual(results["add"].return_value, 5)
        self.assertEqual(results["report"].return_value, {"name": "weekly", "rows": [1, 2]})
        self.assertEqual(results["async"].return_value, 40)
        context = results["context"]
        self.assertEqual(context.return_value, {"attempt": 1, "id": context.id, "x": 7})
        failed = results["explode"]
        self.assertEqual(failed.status, Status.FAILED)
        self.assertEqual(failed.errors[0].exception_class_path, "builtins.ValueError")
        self.assertIs(failed.errors[0].exception_class, ValueError)
        self.assertIn("it exploded", failed.errors[0].traceback)
        with self.assertRaises(ValueError):
            failed.return_value  # noqa: B018
        for result in results.values():
            self.assertIsNotNone(result.started_at)
            self.assertIsNotNone(result.finished_at)
            self.assertEqual(result.attempts, 1)
        lines = " ".join(log_lines())
        self.assertIn(f"task_started {failed.id} RUNNING", lines)
        self.assertIn(f"task_finished {failed.id} FAILED", lines)
        self.assertIn(f"task_finished {results['add'].id} SUCCESSFUL", lines)

    def test_priorities_keep_their_order_across_the_range(self) -> None:
        order = [-100, 100, 0, -40, 60, 20]
        results = [tasks.ordered.using(priority=p).enqueue(p) for p in order]
        worker = Worker.manage("-c", "1")
        try:
            for result in results:
                wait_finished(result)
        finally:
            worker.stop()
        ran = [int(line.split()[-1]) for line in log_lines() if " run ordered " in line]
        self.assertEqual(ran, sorted(order, reverse=True))

    def test_conveyor_worker_django_serves_the_project(self) -> None:
        result = tasks.report.enqueue("from the cli")
        worker = Worker.cli("-c", "1")
        try:
            wait_finished(result)
        finally:
            self.assertEqual(worker.stop(), 0)
        self.assertEqual(result.return_value["name"], "from the cli")


if __name__ == "__main__":
    unittest.main()
