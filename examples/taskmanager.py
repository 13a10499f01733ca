"""The TaskManager many teams wrote around a ``ThreadPoolExecutor`` (a dict of futures,
``submit_task``, ``get_task_status``, a clean-up, ``shutdown``), in a Flask app, on
``app.executor()`` instead: the same few lines, and a restart of the web process loses
nothing: the work is in the store, any worker finishes it, and a status is read from there.

    python -m examples.taskmanager                  # Flask on :5000 ($PORT), runs tasks too
    conveyor -A examples.taskmanager:app worker     # optional: more workers, here or elsewhere
    curl -X POST localhost:5000/tasks -H 'content-type: application/json' -d '{"n": 30}'
    curl localhost:5000/tasks/<task_id>

The store is CONVEYOR_URL, else ./taskmanager.db.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future
from typing import Any

from flask import Flask, abort, jsonify, request

import conveyor
from conveyor.integrations.flask import init_app

app = conveyor.App(os.environ.get("CONVEYOR_URL") or "sqlite:///taskmanager.db")

STATUS = {
    conveyor.State.SCHEDULED: "pending",
    conveyor.State.QUEUED: "pending",
    conveyor.State.RUNNING: "running",
    conveyor.State.SUCCEEDED: "completed",
}


class TaskManager:
    """Was: ``ThreadPoolExecutor(max_workers)``, ``self.tasks = {}`` and a clean-up thread."""

    def __init__(self, app: conveyor.App, max_workers: int = 4) -> None:
        self.app = app
        # lease_seconds: a killed web process's running tasks return to the queue after 10 s
        self.executor = app.executor(max_workers=max_workers, lease_seconds=10)
        self._futures: dict[str, Future[Any]] = {}
        self._lock = threading.Lock()

    def submit_task(self, fn: Any, *args: Any, **kwargs: Any) -> str:
        future = self.executor.submit(fn, *args, **kwargs)
        with self._lock:
            self._futures[future.job.id] = future  # type: ignore[attr-defined]
        self.cleanup()
        return str(future.job.id)  # type: ignore[attr-defined]

    def get_task_status(self, task_id: str) -> dict[str, Any] | None:
        """From the store, so it answers for tasks of an earlier process too."""
        try:
            info = self.app.job(task_id).info()
        except conveyor.JobNotFound:
            return None
        status = STATUS.get(info.state, "failed")
        answer: dict[str, Any] = {"task_id": task_id, "status": status}
        if info.progress is not None:
            answer["progress"] = info.progress.percent
            answer["step"] = info.progress.message
        if status in ("completed", "failed"):
            with self._lock:
                future = self._futures.get(task_id)
            future = future or self.executor.attach(task_id)
            try:
                answer["result"] = future.result(timeout=10)
            except Exception as exc:
                answer["status"], answer["error"] = "failed", f"{type(exc).__name__}: {exc}"
        return answer

    def cleanup(self) -> None:
        """Forget finished futures here; the store purges old results itself (result_ttl)."""
        with self._lock:
            for task_id in [t for t, f in self._futures.items() if f.done()]:
                del self._futures[task_id]

    def shutdown(self, wait: bool = True) -> None:
        self.executor.shutdown(wait=wait)


def analyse(n: int, seconds: float = 0.05) -> dict[str, int]:
    """The slow work: any importable function, as with ProcessPoolExecutor."""
    total = 0
    for i in range(1, n + 1):
        time.sleep(seconds)
        total += i * i
        conveyor.progress(100 * i / n, f"item {i} of {n}")
    return {"n": n, "sum_of_squares": total}


web = Flask(__name__)
init_app(web, app, url_prefix="/jobs")  # jobs run in web's app context; the dashboard at /jobs/
manager = TaskManager(app)


@web.post("/tasks")
def start_task() -> Any:
    body = request.get_json(silent=True) or {}
    n, seconds = body.get("n"), body.get("seconds", 0.05)
    if not isinstance(n, int) or not 0 < n <= 10_000 or not isinstance(seconds, int | float):
        return jsonify(error="give n, a whole number from 1 to 10000"), 400
    return jsonify(task_id=manager.submit_task(analyse, n, seconds)), 202


@web.get("/tasks/<task_id>")
def task_status(task_id: str) -> Any:
    status = manager.get_task_status(task_id)
    if status is None:
        abort(404)
    return jsonify(status)


if __name__ == "__main__":
    web.run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")), threaded=True)
