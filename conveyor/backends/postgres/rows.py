"""Rows to records and back: the jobs table's columns are JobRecord's fields, in order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from psycopg.types.json import Jsonb

from conveyor.backends.base import ScheduleState, WorkerInfo
from conveyor.job import ErrorInfo, JobRecord, Progress, State

FIELDS = tuple(f.name for f in fields(JobRecord))  # the table has one more: parked
#: the jobs table's columns, quoted ("key" is an SQL keyword), and their placeholders
COLUMNS = ", ".join(f'"{name}"' for name in FIELDS)
J_COLUMNS = ", ".join(f'j."{name}"' for name in FIELDS)
PLACEHOLDERS = ", ".join(f"%({name})b" for name in FIELDS)  # binary: no quoting to scan for
#: as many nulls as there are columns, for a row of a UNION whose other rows are jobs
NULL_COLUMNS = ", ".join("NULL" for _ in FIELDS)


def error_json(error: ErrorInfo | None) -> Jsonb | None:
    return None if error is None else Jsonb(error.to_json())


def progress_json(progress: Progress | None) -> Jsonb | None:
    return None if progress is None else Jsonb(progress.to_json())


def to_params(r: JobRecord) -> dict[str, Any]:
    """The record as the named parameters of ``insert``."""
    return {
        "id": r.id,
        "task": r.task,
        "payload": r.payload,
        "queue": r.queue,
        "priority": r.priority,
        "state": r.state.value,
        "key": r.key,
        "unique_key": r.unique_key,
        "attempts": r.attempts,
        "failures": r.failures,
        "crashes": r.crashes,
        "created_at": r.created_at,
        "ready_at": r.ready_at,
        "expires_at": r.expires_at,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "purge_at": r.purge_at,
        "result_ttl": r.result_ttl,
        "result": r.result,
        "error": error_json(r.error),
        "progress": progress_json(r.progress),
        "worker": r.worker,
        "token": r.token,
        "lease_expires_at": r.lease_expires_at,
        "cancel_requested": r.cancel_requested,
        "meta": Jsonb(r.meta),
    }


def to_columns(records: Sequence[JobRecord]) -> dict[str, list[Any]]:
    """The records as the named parameters of ``insert_many``: one list per column."""
    rows = [to_params(r) for r in records]
    return {name: [row[name] for row in rows] for name in FIELDS}


def from_row(row: tuple[Any, ...]) -> JobRecord:
    """A row of ``{columns}``: jsonb arrives as dicts, bytea as bytes."""
    values = list(row)
    values[5] = State(values[5])
    error, progress = values[19], values[20]
    values[19] = None if error is None else ErrorInfo.from_json(error)
    values[20] = None if progress is None else Progress.from_json(progress)
    for i in (2, 18):  # bytea may come back as memoryview from some adapters
        if values[i] is not None and not isinstance(values[i], bytes):
            values[i] = bytes(values[i])
    return JobRecord(*values)


def worker_params(w: WorkerInfo) -> dict[str, Any]:
    return {
        "id": w.id,
        "host": w.host,
        "pid": w.pid,
        "queues": Jsonb(w.queues),
        "concurrency": w.concurrency,
        "pool": w.pool,
        "started_at": w.started_at,
        "last_seen": w.last_seen,
        "running": Jsonb(w.running),
        "processed": w.processed,
        "failed": w.failed,
    }


def worker_from_row(row: tuple[Any, ...]) -> WorkerInfo:
    return WorkerInfo(*row)


def schedule_from_row(row: tuple[Any, ...]) -> ScheduleState:
    return ScheduleState(*row)
