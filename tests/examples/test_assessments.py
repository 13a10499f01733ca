"""examples/assessments.py as its README runs it (the API and a process-pool worker, real
processes): start answers with a job id; progress, retries, cancel, result, the active list
and the workers through the API."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.examples.procs import Process, http
from tests.servers import free_port
from tests.worker.procs import wait_for

pytestmark = pytest.mark.slow


def state(base: str, task_id: str) -> str:
    return str((http("GET", f"{base}/tasks/{task_id}")[1] or {}).get("state"))


@pytest.mark.timeout(180)
def test_the_assessment_service(tmp_path: Path) -> None:
    port = free_port()
    env = {
        "CONVEYOR_URL": f"sqlite:///{tmp_path}/a.db",
        "PORT": str(port),
        "ASSESSMENTS_SCRATCH": str(tmp_path),
    }
    base = f"http://127.0.0.1:{port}"
    with Process("-m", "examples.assessments", env=env):
        wait_for(lambda: http("GET", f"{base}/workers")[0] == 200, timeout=60, what="the API")
        status, started = http("POST", f"{base}/assessments/12/start?step_seconds=0.1")
        assert status == 202 and started["status_url"] == f"/tasks/{started['task_id']}"
        flaky = http("POST", f"{base}/assessments/14/start?step_seconds=0.1")[1]["task_id"]
        slow = http("POST", f"{base}/assessments/3/start?step_seconds=5")[1]["task_id"]

        done = started["task_id"]
        wait_for(lambda: state(base, done) == "succeeded", timeout=90, what="the assessment")
        shown = http("GET", f"{base}/tasks/{done}")[1]
        assert (shown["percent"], shown["step"], shown["attempts"]) == (100.0, "Done", 1)
        assert http("GET", f"{base}/tasks/{done}/result")[1]["result"]["score"] == 12

        wait_for(lambda: state(base, flaky) == "succeeded", timeout=90, what="the retry")
        assert http("GET", f"{base}/tasks/{flaky}")[1]["attempts"] == 2

        wait_for(lambda: state(base, slow) == "running", timeout=60, what="the slow one")
        active = http("GET", f"{base}/tasks")[1]["items"]
        assert slow in [item["task_id"] for item in active]
        assert http("GET", f"{base}/tasks/{slow}/result")[0] == 425
        assert http("POST", f"{base}/tasks/{slow}/cancel")[1] == {"cancelled": True}
        wait_for(lambda: state(base, slow) == "cancelled", timeout=60, what="the cancel")
        assert http("GET", f"{base}/tasks/{slow}/result")[0] == 409

        workers = http("GET", f"{base}/workers")[1]["items"]
        assert [w["pool"] for w in workers] == ["process"]
        assert set(workers[0]["queues"]) == {"assessments", "reports", "default"}
        assert http("GET", f"{base}/tasks/unknown")[0] == 404
        listed = http("GET", f"{base}/jobs/api/jobs?queue=assessments")[1]["items"]
        assert {done, flaky, slow} <= {item["id"] for item in listed}  # the mounted API
