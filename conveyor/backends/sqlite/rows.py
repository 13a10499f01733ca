"""Rows to records and back: the jobs table's columns are JobRecord's fields, in order."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import fields
from json.encoder import encode_basestring_ascii
from typing import Any

from conveyor.backends.base import ScheduleState, WorkerInfo
from conveyor.job import ErrorInfo, JobRecord, Progress, State

#: the jobs table's columns, quoted ("key" is an SQL keyword)
COLUMNS = ", ".join(f'"{f.name}"' for f in fields(JobRecord))
PLACEHOLDERS = ", ".join("?" for _ in fields(JobRecord))
#: the columns a claim returns: all but the four it sets to values known here (from_claimed)
CLAIMED = ", ".join(
    f'"{f.name}"'
    for f in fields(JobRecord)
    if f.name not in ("state", "worker", "started_at", "lease_expires_at")
)

_EMPTY_META = "{}"
#: State(value) goes through Enum's metaclass call: a dict lookup is several times cheaper
_STATES = {state.value: state for state in State}


#: json.dumps(value, separators=...) builds an encoder per call: this one is built once
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode


def dumps(value: Any) -> str:
    return _ENCODE(value)


def json_strings(items: Iterable[str]) -> str:
    """A JSON list of strings, as ``dumps`` writes it: each string by the encoder's own C
    function, with none of the encoder object that ``dumps`` sets up per call."""
    return "[" + ",".join(map(encode_basestring_ascii, items)) + "]"


def json_changes(changes: Iterable[tuple[str, str, str]]) -> str:
    """A JSON list of (id, task, state) lists, as ``dumps`` writes it (see json_strings)."""
    e = encode_basestring_ascii
    return "[" + ",".join([f"[{e(a)},{e(b)},{e(c)}]" for a, b, c in changes]) + "]"


def error_json(error: ErrorInfo | None) -> str | None:
    return None if error is None else dumps(error.to_json())


def progress_json(progress: Progress | None) -> str | None:
    return None if progress is None else dumps(progress.to_json())


def to_row(r: JobRecord) -> tuple[Any, ...]:
    return (
        r.id,
        r.task,
        r.payload,
        r.queue,
        r.priority,
        r.state.value,
        r.key,
        r.unique_key,
        r.attempts,
        r.failures,
        r.crashes,
        r.created_at,
        r.ready_at,
        r.expires_at,
        r.started_at,
        r.finished_at,
        r.purge_at,
        r.result_ttl,
        r.result,
        error_json(r.error),
        progress_json(r.progress),
        r.worker,
        r.token,
        r.lease_expires_at,
        int(r.cancel_requested),
        dumps(r.meta) if r.meta else _EMPTY_META,
    )


def from_row(row: tuple[Any, ...]) -> JobRecord:
    """The record of a row of all the columns (COLUMNS)."""
    # state (5), started_at (14), worker (21) and lease_expires_at (23) are the columns
    # that CLAIMED leaves out
    claimed = row[:5] + row[6:14] + row[15:21] + row[22:23] + row[24:]
    record = from_claimed(claimed, row[21], row[14], row[23])
    record.state = _STATES[row[5]]
    return record


def from_claimed(
    row: tuple[Any, ...],
    worker: str | None,
    started_at: float | None,
    lease_expires_at: float | None,
) -> JobRecord:
    """The record of a job just claimed from its CLAIMED columns: every column a claim
    returns costs a conversion (and a release of the GIL) per job claimed."""
    (
        job_id,
        task,
        payload,
        queue,
        priority,
        key,
        unique_key,
        attempts,
        failures,
        crashes,
        created_at,
        ready_at,
        expires_at,
        finished_at,
        purge_at,
        result_ttl,
        result,
        error,
        progress,
        token,
        cancel_requested,
        meta,
    ) = row
    return JobRecord(
        job_id,
        task,
        payload,
        queue,
        priority,
        State.RUNNING,
        key,
        unique_key,
        attempts,
        failures,
        crashes,
        created_at,
        ready_at,
        expires_at,
        started_at,
        finished_at,
        purge_at,
        result_ttl,
        result,
        None if error is None else ErrorInfo.from_json(json.loads(error)),
        None if progress is None else Progress.from_json(json.loads(progress)),
        worker,
        token,
        lease_expires_at,
        bool(cancel_requested),
        {} if meta == _EMPTY_META else json.loads(meta),
    )


def worker_row(w: WorkerInfo) -> tuple[Any, ...]:
    return (
        w.id,
        w.host,
        w.pid,
        dumps(w.queues),
        w.concurrency,
        w.pool,
        w.started_at,
        w.last_seen,
        dumps(w.running),
        w.processed,
        w.failed,
    )


def worker_from_row(row: tuple[Any, ...]) -> WorkerInfo:
    wid, host, pid, queues, concurrency, pool, started, seen, running, processed, failed = row
    return WorkerInfo(
        wid,
        host,
        pid,
        json.loads(queues),
        concurrency,
        pool,
        started,
        seen,
        json.loads(running),
        processed,
        failed,
    )


def schedule_from_row(row: tuple[Any, ...]) -> ScheduleState:
    name, last_due, last_job_id, last_enqueued_at = row
    return ScheduleState(name, last_due, last_job_id, last_enqueued_at)
