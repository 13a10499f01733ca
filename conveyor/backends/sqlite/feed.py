"""The change feed on SQLite (schema.sql ``{ns}_events``): writing a statement's changes as one
row, and reading rows back as events.

A row holds one event (written by the enqueue and progress triggers) or a batch: what one
statement did to several jobs (a claim, a finish, a sweep...), written by the backend inside the
same transaction. An event's id is ``row id * ROW_SPAN + its index in the row``: ids increase in
commit order, and a reader that saw id ``n`` resumes inside row ``n // ROW_SPAN`` exactly.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from conveyor.backends.sqlite.rows import json_changes, json_strings
from conveyor.inspection import Event, make_event
from conveyor.job import Progress

#: event ids per row: a batch row holds at most this many changes
ROW_SPAN = 1024


def put(
    conn: sqlite3.Connection, sql: Mapping[str, str], changes: Sequence[tuple[str, str, str]]
) -> None:
    """Changes known here, (job id, task, state) each, as one row per ROW_SPAN."""
    for start in range(0, len(changes), ROW_SPAN):
        conn.execute(sql["feed_put"], {"batch": json_changes(changes[start : start + ROW_SPAN])})


def write(conn: sqlite3.Connection, sql: Mapping[str, str], ids: Sequence[str]) -> None:
    """The changes just made to the jobs ``ids``, read from them (their states now), one row
    per ROW_SPAN."""
    for start in range(0, len(ids), ROW_SPAN):
        conn.execute(sql["feed_write"], {"ids": json_strings(ids[start : start + ROW_SPAN])})


def position(after: int) -> dict[str, int]:
    """The parameters of ``events_after`` for the events after id ``after``."""
    return {"row": max(after, 0) // ROW_SPAN}


def expand(rows: Iterable[Sequence[Any]], after: int, limit: int) -> list[Event]:
    """The events of ``rows`` (``events_after``) with ids above ``after``, at most ``limit``."""
    out: list[Event] = []
    for row_id, job_id, task, state, progress, at, batch in rows:
        base = row_id * ROW_SPAN
        if batch is None:
            if base > after:
                p = None if progress is None else Progress.from_json(json.loads(progress))
                out.append(make_event(base, job_id, task, state, p, at))
        else:
            for index, (job, job_task, job_state) in enumerate(json.loads(batch)):
                if base + index > after:
                    out.append(make_event(base + index, job, job_task, job_state, None, at))
        if len(out) >= limit:
            return out[:limit]
    return out
