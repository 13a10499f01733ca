"""The JSON API: small endpoints that parse, call one method of the app and shape JSON.

Endpoints that only call the app are plain functions: Starlette runs them in its thread pool,
so a slow store never blocks the event loop."""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Mapping
from typing import Any, Literal

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conveyor import wire
from conveyor.errors import InvalidArgument
from conveyor.inspection import Page
from conveyor.job import Job, JobInfo, State
from conveyor.task import CallOptions
from conveyor.web import shapes
from conveyor.web.errors import HTTPError, bad_request, conflict, not_found
from conveyor.web.protocol import WebApp
from conveyor.web.shapes import JSONResponse, ParamError


def the_app(request: Request) -> WebApp:
    app: WebApp = request.app.state.conveyor
    return app


def known_params(request: Request, *allowed: str) -> None:
    """A query parameter the route does not take is a mistake worth saying (a typo of
    ``state`` would otherwise list every job)."""
    unknown = sorted(set(request.query_params) - set(allowed))
    if unknown:
        takes = ", ".join(allowed) if allowed else "none"
        raise bad_request(f"unknown query parameter(s) {unknown}; this route takes: {takes}")
    params = request.query_params
    repeated = sorted({k for k in params if len(params.getlist(k)) > 1})
    if repeated:
        raise bad_request(f"give each query parameter once: {repeated} came more than once")


def list_page(app: WebApp, params: Mapping[str, str]) -> Page:
    """One page of jobs for the query parameters ``state``, ``task``, ``queue``, ``limit``
    and ``cursor`` (the API's and the dashboard's); a bad one is a 400."""
    try:
        state = shapes.parse_state(params.get("state"))
        limit = shapes.parse_limit(params.get("limit"))
        task = shapes.parse_text(params.get("task"), "task")
        queue = shapes.parse_text(params.get("queue"), "queue")
        cursor = shapes.parse_text(params.get("cursor"), "cursor")
        return app.jobs(state=state, task=task, queue=queue, limit=limit, cursor=cursor)
    except (ParamError, InvalidArgument) as exc:  # ours, or the app's (of the cursor)
        raise bad_request(str(exc)) from None


def job_or_404(app: WebApp, job_id: str) -> JobInfo:
    try:
        return app.job(job_id).info()
    except LookupError:
        raise not_found(f"no job {job_id!r} (it never existed, or it was purged)") from None


def list_jobs(request: Request) -> Response:
    known_params(request, "state", "task", "queue", "limit", "cursor")
    page = list_page(the_app(request), request.query_params)
    items = [wire.job_json(info) for info in page.items]
    return JSONResponse({"items": items, "next_cursor": page.next_cursor})


def get_job(request: Request) -> Response:
    known_params(request)
    info = job_or_404(the_app(request), request.path_params["id"])
    return JSONResponse(wire.job_json(info))


_REFUSED = {
    "cancel": "only a waiting or running job can be cancelled",
    "retry": "only a failed, cancelled or expired job can be retried (or another active job "
    "holds its unique key)",
}


def change_job(app: WebApp, job_id: str, action: Literal["cancel", "retry"]) -> JobInfo:
    """Cancel or retry a job; 404 if unknown, 409 if its state does not allow it. Returns the
    job as it is afterwards."""
    before = job_or_404(app, job_id)
    handle = app.job(job_id)
    if not (handle.cancel() if action == "cancel" else handle.retry()):
        raise conflict(f"job {job_id} is {before.state.value}: {_REFUSED[action]}")
    return job_or_404(app, job_id)


def cancel_job(request: Request) -> Response:
    known_params(request)
    info = change_job(the_app(request), request.path_params["id"], "cancel")
    return JSONResponse(wire.job_json(info))


def retry_job(request: Request) -> Response:
    known_params(request)
    info = change_job(the_app(request), request.path_params["id"], "retry")
    return JSONResponse(wire.job_json(info))


def retry_failed(app: WebApp) -> int:
    """Send every failed job back to the queue; returns how many went."""
    retried = 0
    cursor: str | None = None
    while True:
        page = app.jobs(state=State.FAILED, limit=shapes.MAX_LIMIT, cursor=cursor)
        for info in page.items:
            retried += app.job(info.id).retry()
        if page.next_cursor is None or not page.items:
            return retried
        cursor = page.next_cursor


def retry_all_failed(request: Request) -> Response:
    known_params(request)
    return JSONResponse({"retried": retry_failed(the_app(request))})


_ENQUEUE_FIELDS = {"task", "args", "kwargs", "queue", "priority", "countdown", "key"}


def _optional(body: dict[str, Any], name: str, kinds: Any, what: str) -> Any:
    value = body.get(name)
    if value is not None and (not isinstance(value, kinds) or isinstance(value, bool)):
        raise bad_request(f"{name} must be {what}")
    return value


def parse_enqueue(body: Any) -> tuple[str, tuple[Any, ...], dict[str, Any], CallOptions]:
    if not isinstance(body, dict):
        raise bad_request('the body must be a JSON object: {"task": "name", "args": [...]}')
    unknown = sorted(set(body) - _ENQUEUE_FIELDS)
    if unknown:
        raise bad_request(f"unknown fields {unknown}; known: {sorted(_ENQUEUE_FIELDS)}")
    task = body.get("task")
    if not isinstance(task, str) or not task.strip():
        raise bad_request("task must be the registered name of a task")
    args = body.get("args", [])
    kwargs = body.get("kwargs", {})
    if not isinstance(args, list):
        raise bad_request("args must be a JSON array")
    if not isinstance(kwargs, dict):
        raise bad_request("kwargs must be a JSON object")
    queue = _optional(body, "queue", str, "a queue name")
    priority = body.get("priority")
    if isinstance(priority, float) and priority.is_integer():
        priority = int(priority)  # JSON Schema's "integer" takes 5.0 as well
    priority = _optional({"priority": priority}, "priority", int, "a whole number from 0 to 100")
    countdown = _optional(body, "countdown", int | float, "a number of seconds")
    key = _optional(body, "key", str, "a string")
    if queue is not None and not queue:
        raise bad_request("queue must be a non-empty name")
    if countdown is not None and not 0 <= countdown <= 10 * 365 * 86400:
        raise bad_request("countdown must be between 0 and ten years in seconds")
    # CallOptions checks the rest (priority range, empty key) with messages that say why
    options = CallOptions(countdown=countdown, queue=queue, priority=priority, key=key)
    return task, tuple(args), kwargs, options


def submit(
    app: WebApp, task: str, args: tuple[Any, ...], kwargs: dict[str, Any], options: CallOptions
) -> Job:
    """Enqueue; when the app knows the task, its arguments must fit the task's signature
    (a worker would only fail the job later)."""
    found = app.registry.find(task)
    if found is not None:
        try:
            inspect.signature(found.fn).bind(*args, **kwargs)
        except TypeError as exc:
            raise bad_request(f"{task}: {exc}") from None
    return app.submit(task, args, kwargs, options)


async def enqueue(request: Request) -> Response:
    known_params(request)
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"the body is not JSON: {exc}") from None
    task, args, kwargs, options = parse_enqueue(body)
    app = the_app(request)

    def enqueue_now() -> dict[str, Any]:
        job = submit(app, task, args, kwargs, options)
        return wire.job_json(job.info())

    return JSONResponse(await run_in_threadpool(enqueue_now), status_code=202)


def list_queues(request: Request) -> Response:
    known_params(request)
    return JSONResponse(
        {"items": shapes.queues_json(the_app(request).queues()), "next_cursor": None}
    )


def purge_queue(request: Request) -> Response:
    known_params(request)
    name = request.path_params["name"]
    return JSONResponse({"queue": name, "purged": the_app(request).purge(name)})


def list_workers(request: Request) -> Response:
    known_params(request)
    now = time.time()
    items = [shapes.worker_json(w, now) for w in the_app(request).workers()]
    return JSONResponse({"items": items, "next_cursor": None})


def list_schedules(request: Request) -> Response:
    known_params(request)
    items = [shapes.schedule_json(s) for s in the_app(request).schedules()]
    return JSONResponse({"items": items, "next_cursor": None})


def list_limits(request: Request) -> Response:
    known_params(request)
    items = [shapes.limit_json(info) for info in the_app(request).limits()]
    return JSONResponse({"items": items, "next_cursor": None})


def get_workflow(request: Request) -> Response:
    known_params(request)
    app, workflow_id = the_app(request), request.path_params["id"]
    try:
        state = app.workflow(workflow_id).state
    except LookupError:
        raise not_found(
            f"no workflow {workflow_id!r} (it never existed, or it was purged)"
        ) from None
    jobs = [
        {"id": job_id, "task": task, "state": None if s is None else s.value}
        for job_id, task, _, s in app.workflow_jobs(workflow_id) or []
    ]
    return JSONResponse({"id": workflow_id, "state": state.value, "jobs": jobs})


def healthz(request: Request) -> Response:
    known_params(request)
    if the_app(request).ping():
        return JSONResponse({"status": "ok"})
    raise HTTPError(503, "unavailable", "the job store does not answer")


routes = [
    Route("/api/jobs", list_jobs, methods=["GET"]),
    Route("/api/jobs", enqueue, methods=["POST"]),
    Route("/api/jobs/retry-failed", retry_all_failed, methods=["POST"]),
    Route("/api/jobs/{id}", get_job, methods=["GET"]),
    Route("/api/jobs/{id}", cancel_job, methods=["DELETE"]),
    Route("/api/jobs/{id}/cancel", cancel_job, methods=["POST"]),
    Route("/api/jobs/{id}/retry", retry_job, methods=["POST"]),
    Route("/api/queues", list_queues, methods=["GET"]),
    Route("/api/queues/{name}/purge", purge_queue, methods=["POST"]),
    Route("/api/workers", list_workers, methods=["GET"]),
    Route("/api/schedules", list_schedules, methods=["GET"]),
    Route("/api/limits", list_limits, methods=["GET"]),
    Route("/api/workflows/{id}", get_workflow, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
]
