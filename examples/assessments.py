"""An assessment service on FastAPI: starting an assessment answers at once with a job id;
the work (several steps of calls to AI models) runs on conveyor workers, with progress,
retries, time limits and cancellation the API shows.

    python -m examples.assessments      # the API on 127.0.0.1:8000 ($PORT) and a worker

or as a deployment runs it (the worker on as many machines as the load needs):

    uvicorn examples.assessments:api --port 8000
    conveyor -A examples.assessments:app worker -Q assessments,reports,default \\
        --pool process -c 4 --max-tasks-per-child 200

Routes: POST /assessments/{id}/start, GET /tasks/{id}, POST /tasks/{id}/cancel,
GET /tasks/{id}/result, GET /tasks (active ones), GET /workers, and conveyor's dashboard at
/jobs/. The store is CONVEYOR_URL, else ./assessments.db.

- priority queues: assessments (90) run before reports (50) before default (0) on a worker
  serving all three;
- retries: a flaky model call (ConnectionError, TimeoutError) is retried 3 times with
  exponential backoff and full jitter;
- limits: soft_timeout lets a step give up cleanly, timeout stops the attempt;
- recycling: the process pool replaces a child after --max-tasks-per-child jobs;
- results are kept a day (task_defaults' result_ttl); a periodic clean-up removes stale
  scratch files.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException

import conveyor

app = conveyor.App(
    os.environ.get("CONVEYOR_URL") or "sqlite:///assessments.db",
    task_defaults={"result_ttl": 86400, "timeout": 600},  # results kept a day; no endless run
)
SCRATCH = Path(os.environ.get("ASSESSMENTS_SCRATCH") or tempfile.gettempdir()) / "assessments"
STEPS = ("Loading answers", "Scoring with the rubric", "Executing agents", "Writing feedback")


@app.task(
    name="assessments.run",
    queue="assessments",
    priority=90,
    retries=3,
    retry_on=(ConnectionError, TimeoutError),
    retry_delay=0.5,
    retry_backoff=2.0,
    retry_jitter=True,
    soft_timeout=50,
    timeout=60,
)
def run_assessment(assessment_id: int, step_seconds: float = 0.2) -> dict[str, Any]:
    job = conveyor.current_job()
    SCRATCH.mkdir(parents=True, exist_ok=True)
    (SCRATCH / f"{assessment_id}.tmp").write_text("working")
    for number, step in enumerate(STEPS, 1):
        conveyor.progress(100 * (number - 1) / len(STEPS), step, step=number)
        if job is not None and job.cancelled:
            break  # cancelled: the worker stops the run; a long C call can check this flag
        time.sleep(step_seconds)
        if number == 3 and assessment_id % 7 == 0 and job is not None and job.attempt == 1:
            raise ConnectionError("the model endpoint dropped the connection")  # retried
    conveyor.progress(100, "Done", step=len(STEPS))
    build_report.delay(assessment_id)
    return {"assessment": assessment_id, "score": assessment_id % 100, "steps": len(STEPS)}


@app.task(name="assessments.report", queue="reports", priority=50)
def build_report(assessment_id: int) -> str:
    return f"reports/{assessment_id}.pdf"


@app.periodic(every=600, args=(3600,), name="assessments.cleanup")
def cleanup(max_age_seconds: float) -> int:
    """Remove scratch files older than an hour."""
    removed = 0
    for path in SCRATCH.glob("*.tmp"):
        if time.time() - path.stat().st_mtime > max_age_seconds:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


api = FastAPI(title="assessments")
api.mount("/jobs", app.asgi())  # conveyor's dashboard and JSON API, beside the service's own


def _job(task_id: str) -> conveyor.JobInfo:
    try:
        return app.job(task_id).info()
    except conveyor.JobNotFound:
        raise HTTPException(404, f"no task {task_id}") from None


def _shape(info: conveyor.JobInfo) -> dict[str, Any]:
    return {
        "task_id": info.id,
        "task": info.task,
        "state": str(info.state),
        "percent": info.progress.percent if info.progress else 0.0,
        "step": info.progress.message if info.progress else None,
        "attempts": info.attempts,
        "error": info.error.message if info.error else None,
    }


@api.post("/assessments/{assessment_id}/start", status_code=202)
async def start(assessment_id: int, step_seconds: float = 0.2) -> dict[str, str]:
    job = await run_assessment.adelay(assessment_id, step_seconds)  # off the event loop
    return {"task_id": job.id, "status_url": f"/tasks/{job.id}"}


@api.get("/tasks/{task_id}")
def status(task_id: str) -> dict[str, Any]:
    return _shape(_job(task_id))


@api.post("/tasks/{task_id}/cancel")
def cancel(task_id: str) -> dict[str, bool]:
    _job(task_id)
    return {"cancelled": app.job(task_id).cancel()}


@api.get("/tasks/{task_id}/result")
def result(task_id: str) -> Any:
    info = _job(task_id)
    if info.state is conveyor.State.SUCCEEDED:
        return {"task_id": task_id, "result": info.result}
    if info.state.is_final:
        raise HTTPException(409, f"task {task_id} is {info.state}: {_shape(info)['error']}")
    raise HTTPException(425, f"task {task_id} is {info.state}; try again later")


@api.get("/tasks")
def active() -> dict[str, list[dict[str, Any]]]:
    states = (conveyor.State.RUNNING, conveyor.State.QUEUED, conveyor.State.SCHEDULED)
    return {"items": [_shape(info) for state in states for info in app.jobs(state=state).items]}


@api.get("/workers")
def workers() -> dict[str, list[dict[str, Any]]]:
    now = time.time()
    return {
        "items": [
            {
                "id": w.id,
                "queues": w.queues,
                "pool": w.pool,
                "concurrency": w.concurrency,
                "running": w.running,
                "processed": w.processed,
                "failed": w.failed,
                "alive": now - w.last_seen < 60,
            }
            for w in app.workers()
        ]
    }


#: the worker the one-command run starts beside the API
WORKER = ["-A", "examples.assessments:app", "worker", "-Q", "assessments,reports,default"]
WORKER += ["--pool", "process", "-c", "2", "--max-tasks-per-child", "200"]


def main() -> int:
    from examples.serving import serve_with_worker

    return serve_with_worker(api, WORKER)


if __name__ == "__main__":
    sys.exit(main())
