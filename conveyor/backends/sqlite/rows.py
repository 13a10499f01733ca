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
#: A ready row (limits.sql ready_*), a job a claim may take: first what admission looks at
#: (id, priority, ready_at, meta: limits.admit), then flags, then READY, the columns every job
#: sets (from_ready). Every column read costs a conversion and a release of the GIL per job
#: claimed, and most jobs have none of the columns that RARE looks at.
READY = "task, payload, queue, attempts, token, created_at, result_ttl"
#: The flag of a job that has any of the columns set that most jobs leave unset (1, or 0): its
#: claim reads its record back (from_row). The other flags are ready_first's.
RARE = (
    '("key" IS NOT NULL OR unique_key IS NOT NULL OR failures != 0 OR crashes != 0'
    " OR expires_at IS NOT NULL OR finished_at IS NOT NULL OR purge_at IS NOT NULL"
    " OR result IS NOT NULL OR error IS NOT NULL OR progress IS NOT NULL"
    " OR cancel_requested != 0)"
)
RARE_FLAG = 1

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
    """The record of a row of all the columns (COLUMNS): JobRecord's fields in order, five
    of them stored in another form (the state's value, JSON text, an integer)."""
    record = JobRecord(*row)
    record.state = _STATES[row[5]]
    record.error = None if row[19] is None else ErrorInfo.from_json(json.loads(row[19]))
    record.progress = None if row[20] is None else Progress.from_json(json.loads(row[20]))
    record.cancel_requested = bool(row[24])
    record.meta = {} if row[25] == _EMPTY_META else json.loads(row[25])
    return record


def from_ready(
    row: tuple[Any, ...], worker: str, started_at: float, lease_expires_at: float
) -> JobRecord:
    """The record of a job as its claim (queries.sql claim) leaves it, from its ready row,
    when its flags say it has none of the rare columns set (RARE): the claim runs in the
    transaction that read the row, so the row and what the claim sets make the record."""
    (
        job_id,
        priority,
        ready_at,
        meta,
        _flags,
        task,
        payload,
        queue,
        attempts,
        token,
        created_at,
        result_ttl,
    ) = row
    # by position: keyword arguments cost the dataclass's __init__ half as much again
    return JobRecord(
        job_id,
        task,
        payload,
        queue,
        priority,
        State.RUNNING,
        None,
        None,
        attempts + 1,
        0,
        0,
        created_at,
        ready_at,
        None,
        started_at,
        None,
        None,
        result_ttl,
        None,
        None,
        None,
        worker,
        token + 1,
        lease_expires_at,
        False,
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
