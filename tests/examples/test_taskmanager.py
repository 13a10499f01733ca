"""examples/taskmanager.py as its README runs it: the Flask web process is killed with -9
while a task runs; a conveyor worker finishes the task, and the restarted web process
answers its status and result. Nothing is lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.examples.procs import Process, http
from tests.servers import free_port
from tests.worker.procs import wait_for

pytestmark = pytest.mark.slow


def test_a_restart_of_the_web_process_loses_nothing(tmp_path: Path) -> None:
    port = free_port()
    env = {"CONVEYOR_URL": f"sqlite:///{tmp_path}/tasks.db", "PORT": str(port)}
    base = f"http://127.0.0.1:{port}"

    web = Process("-m", "examples.taskmanager", env=env)
    try:
        wait_for(lambda: http("GET", f"{base}/tasks/none")[0] == 404, what="the web app")
        status, body = http("POST", f"{base}/tasks", {"n": 20, "seconds": 0.1})
        assert status == 202
        task_id = body["task_id"]
        assert http("POST", f"{base}/tasks", {"n": "many"})[0] == 400
        wait_for(
            lambda: http("GET", f"{base}/tasks/{task_id}")[1]["status"] == "running",
            what="the task running in the web process",
        )
    finally:
        web.kill()

    with Process("-m", "conveyor", "-A", "examples.taskmanager:app", "worker", env=env):
        web = Process("-m", "examples.taskmanager", env=env)
        try:
            wait_for(
                lambda: (
                    (http("GET", f"{base}/tasks/{task_id}")[1] or {}).get("status") == "completed"
                ),
                timeout=90,
                what="the task completed by the worker",
            )
            answer = http("GET", f"{base}/tasks/{task_id}")[1]
            assert http("GET", f"{base}/jobs/api/jobs/{task_id}")[1]["state"] == "succeeded"
            assert answer["result"] == {"n": 20, "sum_of_squares": sum(i * i for i in range(21))}
            assert answer["progress"] == 100.0
            status, body = http("POST", f"{base}/tasks", {"n": 3, "seconds": 0.01})
            wait_for(
                lambda: http("GET", f"{base}/tasks/{body['task_id']}")[1]["status"] == "completed",
                what="a task of the restarted web process",
            )
        finally:
            web.stop()
