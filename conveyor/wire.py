"""How a job looks as JSON: one shape for the HTTP API, the dashboard and the CLI's
``--json``. Pure, no I/O: results and arguments may hold dates, bytes, decimals and the like,
which ``plain`` turns into what JSON can carry.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

from conveyor.job import JobInfo, Progress


def plain(value: Any) -> Any:
    """A JSON-ready copy of what a job carries (results may hold dates, bytes, decimals...)."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Enum):
        return plain(value.value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, UUID | Decimal):
        return str(value)
    if is_dataclass(value) and not isinstance(value, type):
        return plain(asdict(value))
    return repr(value)


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def progress_json(progress: Progress | None) -> dict[str, Any] | None:
    return None if progress is None else plain(progress.to_json())


def job_json(info: JobInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "task": info.task,
        "args": plain(list(info.args)),
        "kwargs": plain(info.kwargs),
        "queue": info.queue,
        "priority": info.priority,
        "state": info.state.value,
        "attempts": info.attempts,
        "progress": progress_json(info.progress),
        "result": plain(info.result),
        "error": None if info.error is None else plain(info.error.to_json()),
        "created_at": iso(info.created_at),
        "eta": iso(info.eta),
        "started_at": iso(info.started_at),
        "finished_at": iso(info.finished_at),
        "worker": info.worker,
        "key": info.key,
        "workflow": workflow_id(info),
    }


def workflow_id(info: JobInfo) -> str | None:
    found = info.meta.get("workflow")
    return found if isinstance(found, str) else None
