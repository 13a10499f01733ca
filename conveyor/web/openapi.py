"""``/openapi.json``: the API's OpenAPI 3.1 document, written out by hand so that it says
exactly what the endpoints accept and return (the suite checks it with schemathesis)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conveyor.web.schemas import SCHEMAS, STATES, ref
from conveyor.web.shapes import MAX_LIMIT, JSONResponse


def _list_of(name: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": ref(name)},
            "next_cursor": {"type": "null"},
        },
    }


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    meaning = {
        400: "malformed request",
        401: "a token is needed",
        403: "read-only server, missing CSRF token or cross-site request",
        404: "unknown job",
        409: "the job is not in a state that allows this",
        413: "request body over 16 MiB",
        503: "the job store does not answer",
    }
    return {str(s): _json(ref("Error"), meaning[s]) for s in sorted({*statuses, 400, 401, 503})}


_JOB_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_SSE = {
    "description": "text/event-stream of `event: job` frames with `id:` lines",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}
_LAST_EVENT_ID = {
    "name": "Last-Event-ID",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"},
}
#: a task or queue name as a filter: anything but NUL, up to 1000 characters
_NAME = {"type": "string", "minLength": 1, "maxLength": 1000, "pattern": "^[^\\x00]+$"}


def _op(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "responses": responses, **extra}


def document() -> dict[str, Any]:
    filters = [
        {"name": "state", "in": "query", "schema": {"type": "string", "enum": STATES}},
        {"name": "task", "in": "query", "schema": _NAME},
        {"name": "queue", "in": "query", "schema": _NAME},
        {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 50},
        },
        {
            "name": "cursor",
            "in": "query",
            "schema": {"type": "string", "pattern": "^[0-9A-Za-z_.:-]{1,128}$"},
        },
    ]
    job = _json(ref("Job"), "the job")
    changed = {"200": job, **_errors(403, 404, 409)}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "conveyor",
            "version": "1",
            "description": "Jobs, queues, workers and schedules of a conveyor app.",
        },
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {
            "/api/jobs": {
                "get": _op(
                    "List jobs, newest first, paged by cursor",
                    {"200": _json(ref("JobPage"), "a page of jobs"), **_errors(400)},
                    parameters=filters,
                ),
                "post": _op(
                    "Enqueue a job",
                    {"202": _json(ref("Job"), "the enqueued job"), **_errors(400, 403, 413)},
                    requestBody={
                        "required": True,
                        "content": {"application/json": {"schema": ref("Enqueue")}},
                    },
                ),
            },
            "/api/jobs/retry-failed": {
                "post": _op(
                    "Retry every failed job",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["retried"],
                                "properties": {"retried": {"type": "integer"}},
                            },
                            "how many were retried",
                        ),
                        **_errors(403),
                    },
                )
            },
            "/api/jobs/{id}": {
                "get": _op("One job", {"200": job, **_errors(404)}, parameters=[_JOB_ID]),
                "delete": _op("Cancel a job", changed, parameters=[_JOB_ID]),
            },
            "/api/jobs/{id}/cancel": {"post": _op("Cancel a job", changed, parameters=[_JOB_ID])},
            "/api/jobs/{id}/retry": {
                "post": _op(
                    "Retry a failed, cancelled or expired job", changed, parameters=[_JOB_ID]
                )
            },
            "/api/jobs/{id}/events": {
                "get": _op(
                    "The job's changes until it is final (server-sent events)",
                    {"200": _SSE, **_errors(400, 404)},
                    parameters=[_JOB_ID, _LAST_EVENT_ID],
                )
            },
            "/api/events": {
                "get": _op(
                    "Every job's changes (server-sent events)",
                    {"200": _SSE, **_errors(400)},
                    parameters=[_LAST_EVENT_ID],
                )
            },
            "/api/queues": {
                "get": _op(
                    "Queues with their jobs by state",
                    {"200": _json(_list_of("Queue"), "the queues"), **_errors()},
                )
            },
            "/api/queues/{name}/purge": {
                "post": _op(
                    "Delete the waiting jobs of a queue",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["queue", "purged"],
                                "properties": {
                                    "queue": {"type": "string"},
                                    "purged": {"type": "integer"},
                                },
                            },
                            "how many were removed",
                        ),
                        **_errors(403),
                    },
                    parameters=[
                        {
                            "name": "name",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                )
            },
            "/api/workflows/{id}": {
                "get": _op(
                    "One workflow: its state and its jobs in the order given",
                    {"200": _json(ref("Workflow"), "the workflow"), **_errors(404)},
                    parameters=[_JOB_ID],
                )
            },
            "/api/workers": {
                "get": _op(
                    "Workers and what each runs now",
                    {"200": _json(_list_of("Worker"), "the workers"), **_errors()},
                )
            },
            "/api/schedules": {
                "get": _op(
                    "Periodic tasks with their next and last run",
                    {"200": _json(_list_of("Schedule"), "the schedules"), **_errors()},
                )
            },
            "/api/limits": {
                "get": _op(
                    "Cluster-wide rate and concurrency limits with their use now",
                    {"200": _json(_list_of("Limit"), "the limits"), **_errors()},
                )
            },
            "/metrics": {
                "get": _op(
                    "Prometheus metrics",
                    {
                        "200": {
                            "description": "text format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        **_errors(),
                    },
                )
            },
            "/healthz": {
                "get": _op(
                    "Whether the job store answers",
                    {
                        "200": _json({"type": "object"}, "ok"),
                        "503": _json(ref("Error"), "the store does not answer"),
                    },
                    security=[],
                )
            },
        },
        "security": [{"bearer": []}],
    }


async def openapi(request: Request) -> Response:
    return JSONResponse(request.app.state.openapi)


routes = [Route("/openapi.json", openapi, methods=["GET"], include_in_schema=False)]
