"""The JSON Schemas of what the API sends and takes, for ``/openapi.json``: a job, a page,
an error, an event's progress, a queue, a worker, a schedule, a workflow."""

from __future__ import annotations

from typing import Any

from conveyor.job import State


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


_TIME = _nullable({"type": "string", "format": "date-time"})
STATES = [s.value for s in State]

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            }
        },
    },
    "Progress": {
        "type": "object",
        "required": ["percent", "message", "data"],
        "properties": {
            "percent": {"type": "number"},
            "message": {"type": ["string", "null"]},
            "data": {"type": "object"},
        },
    },
    "JobError": {
        "type": "object",
        "required": ["type", "message", "traceback"],
        "properties": {
            "type": {"type": "string"},
            "message": {"type": "string"},
            "traceback": {"type": ["string", "null"]},
        },
    },
    "Job": {
        "type": "object",
        "required": [
            "id",
            "task",
            "args",
            "kwargs",
            "queue",
            "priority",
            "state",
            "attempts",
            "progress",
            "result",
            "error",
            "created_at",
            "eta",
            "started_at",
            "finished_at",
            "worker",
            "key",
            "workflow",
        ],
        "properties": {
            "id": {"type": "string"},
            "task": {"type": "string"},
            "args": {"type": "array"},
            "kwargs": {"type": "object"},
            "queue": {"type": "string"},
            "priority": {"type": "integer"},
            "state": {"type": "string", "enum": STATES},
            "attempts": {"type": "integer", "minimum": 0},
            "progress": _nullable(ref("Progress")),
            "result": {},
            "error": _nullable(ref("JobError")),
            "created_at": {"type": "string", "format": "date-time"},
            "eta": _TIME,
            "started_at": _TIME,
            "finished_at": _TIME,
            "worker": {"type": ["string", "null"]},
            "key": {"type": ["string", "null"]},
            "workflow": {"type": ["string", "null"]},
        },
    },
    "JobPage": {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": ref("Job")},
            "next_cursor": {"type": ["string", "null"]},
        },
    },
    "Enqueue": {
        "type": "object",
        "required": ["task"],
        "additionalProperties": False,
        "properties": {
            "task": {"type": "string", "minLength": 1, "pattern": r"\S"},
            "args": {"type": "array"},
            "kwargs": {"type": "object"},
            "queue": {"type": "string", "minLength": 1},
            "priority": {"type": "integer", "minimum": 0, "maximum": 100},
            "countdown": {"type": "number", "minimum": 0, "maximum": 315360000},
            "key": {"type": "string", "minLength": 1},
        },
    },
    "Workflow": {
        "type": "object",
        "required": ["id", "state", "jobs"],
        "properties": {
            "id": {"type": "string"},
            "state": {"type": "string", "enum": STATES},
            "jobs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "task", "state"],
                    "properties": {
                        "id": {"type": "string"},
                        "task": {"type": "string"},
                        "state": {"anyOf": [{"type": "string", "enum": STATES}, {"type": "null"}]},
                    },
                },
            },
        },
    },
    "Queue": {
        "type": "object",
        "required": ["name", "depth", "states"],
        "properties": {
            "name": {"type": "string"},
            "depth": {"type": "integer"},
            "states": {
                "type": "object",
                "properties": {s: {"type": "integer"} for s in STATES},
            },
        },
    },
    "Worker": {
        "type": "object",
        "required": [
            "id",
            "host",
            "pid",
            "queues",
            "concurrency",
            "pool",
            "running",
            "started_at",
            "last_seen",
            "alive",
            "processed",
            "failed",
        ],
        "properties": {
            "id": {"type": "string"},
            "host": {"type": "string"},
            "pid": {"type": "integer"},
            "queues": {"type": "array", "items": {"type": "string"}},
            "concurrency": {"type": "integer"},
            "pool": {"type": "string"},
            "running": {"type": "array", "items": {"type": "string"}},
            "started_at": _TIME,
            "last_seen": _TIME,
            "alive": {"type": "boolean"},
            "processed": {"type": "integer"},
            "failed": {"type": "integer"},
        },
    },
    "Schedule": {
        "type": "object",
        "required": ["task", "cron", "every", "next_run", "last_run", "last_job_id"],
        "properties": {
            "task": {"type": "string"},
            "cron": {"type": ["string", "null"]},
            "every": {"type": ["number", "null"]},
            "next_run": _TIME,
            "last_run": _TIME,
            "last_job_id": {"type": ["string", "null"]},
        },
    },
    "Limit": {
        "type": "object",
        "required": ["name", "rate", "concurrency", "running", "started", "keys"],
        "properties": {
            "name": {"type": "string"},
            "rate": {"type": ["string", "null"]},
            "concurrency": {"type": ["integer", "null"]},
            "running": {"type": "integer"},
            "started": {"type": "integer"},
            "keys": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["key", "running", "started"],
                    "properties": {
                        "key": {"type": "string"},
                        "running": {"type": "integer"},
                        "started": {"type": "integer"},
                    },
                },
            },
        },
    },
}
