"""How things look on the wire: jobs, events, workers, schedules and queues as JSON, and the
parsing of the query parameters every list shares. The API and the dashboard both use it."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from starlette import responses
from starlette.types import Scope

from conveyor.inspection import Event, ScheduleInfo, WorkerInfo
from conveyor.job import JobInfo, State, to_datetime
from conveyor.limits import LimitInfo
from conveyor.wire import iso, progress_json

#: headers of every HTML page: scripts only from this site (so even a markup mistake cannot
#: run a job's text as code), no framing by other sites, no sniffing, no referrer elsewhere
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
        "form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
#: a worker not seen for this long is shown as gone (it renews its lease far more often)
WORKER_STALE_SECONDS = 60.0


def route_path(scope: Scope) -> str:
    """The request's path inside this app, without the prefix it is mounted under."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


class JSONResponse(responses.JSONResponse):
    """Starlette's JSONResponse, for values that ``plain`` has made JSON-ready."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()


def event_json(event: Event) -> dict[str, Any]:
    return {
        "job_id": event.job_id,
        "task": event.task,
        "state": event.state.value,
        "progress": progress_json(event.progress),
        "at": iso(event.at),
    }


def snapshot_json(info: JobInfo) -> dict[str, Any]:
    """The event a job's stream opens with: where the job is now."""
    now = to_datetime(time.time())
    assert now is not None
    return event_json(Event(0, info.id, info.task, info.state, info.progress, now))


def worker_alive(worker: WorkerInfo, now: float) -> bool:
    return now - worker.last_seen < WORKER_STALE_SECONDS


def worker_json(worker: WorkerInfo, now: float) -> dict[str, Any]:
    return {
        "id": worker.id,
        "host": worker.host,
        "pid": worker.pid,
        "queues": list(worker.queues),
        "concurrency": worker.concurrency,
        "pool": worker.pool,
        "running": list(worker.running),
        "started_at": iso(to_datetime(worker.started_at)),
        "last_seen": iso(to_datetime(worker.last_seen)),
        "alive": worker_alive(worker, now),
        "processed": worker.processed,
        "failed": worker.failed,
    }


def schedule_json(schedule: ScheduleInfo) -> dict[str, Any]:
    return {
        "task": schedule.task,
        "cron": schedule.cron,
        "every": schedule.every,
        "next_run": iso(schedule.next_run),
        "last_run": iso(schedule.last_run),
        "last_job_id": schedule.last_job_id,
    }


def limit_json(info: LimitInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "rate": info.rate,
        "concurrency": info.concurrency,
        "running": info.running,
        "started": info.started,
        "keys": [{"key": u.key, "running": u.running, "started": u.started} for u in info.keys],
    }


def queues_json(counts: Mapping[str, Mapping[State, int]]) -> list[dict[str, Any]]:
    items = []
    for name in sorted(counts):
        by_state = {s.value: int(counts[name].get(s, 0)) for s in State}
        items.append({"name": name, "depth": by_state["queued"], "states": by_state})
    return items


# -- query parameters ----------------------------------------------------------------------


class ParamError(ValueError):
    """A query parameter that cannot be used; the API turns it into a 400."""


def parse_state(raw: str | None) -> State | None:
    if raw is None:
        return None
    try:
        return State(raw)
    except ValueError:
        names = ", ".join(s.value for s in State)
        raise ParamError(f"state must be one of {names}, not {raw!r}") from None


def parse_limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise ParamError(f"limit must be a whole number, not {raw!r}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ParamError(f"limit must be between 1 and {MAX_LIMIT}, not {limit}")
    return limit


def parse_text(raw: str | None, name: str) -> str | None:
    if raw is None:
        return None
    if not raw:
        raise ParamError(f"{name} is empty: leave it out to filter nothing")
    if len(raw) > 1000 or "\x00" in raw:
        raise ParamError(f"{name} is not a name conveyor could have stored")
    return raw
