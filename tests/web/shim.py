"""TEMPORARY: the inspection calls the web face needs, over the backend, until the inspect
branch lands app.jobs() & co. Deleted after the merge."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from conveyor.job import Progress, State


@dataclass
class _Page:
    items: list[Any]
    next_cursor: str | None


@dataclass
class _Event:
    id: str
    job_id: str
    task: str
    state: State
    progress: Progress | None
    at: datetime


class Shim:
    def __init__(self, app: Any) -> None:
        self._app = app
        self.registry = app.registry
        self._seq = itertools.count(1)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._app, name)

    def jobs(self, *, state=None, task=None, queue=None, limit=50, cursor=None):
        if cursor is not None and not cursor.isalnum():
            raise ValueError("not a cursor")
        records = self._app.backend.list_jobs(
            state=state, task=task, queue=queue, limit=limit + 1, cursor=cursor
        )
        more = len(records) > limit
        records = records[:limit]
        return _Page(
            [self._app.job_info(r) for r in records], records[-1].id if more else None
        )

    def queues(self):
        return self._app.backend.queue_counts()

    def workers(self):
        return self._app.backend.list_workers()

    def schedules(self):
        return []

    def purge(self, queue):
        return self._app.backend.purge_queue(queue)

    def ping(self):
        return self._app.backend.ping()

    def stats(self):
        return {}

    async def aevents(self, job_id=None, *, after=None):
        seen: dict[str, tuple[Any, Any]] = {}
        while True:
            if job_id is not None:
                records = [r for r in [self._app.backend.get(job_id)] if r]
            else:
                records = self._app.backend.list_jobs(limit=50)
            for r in records:
                key = (r.state, r.progress)
                if seen.get(r.id) != key:
                    seen[r.id] = key
                    yield _Event(
                        str(next(self._seq)), r.id, r.task, r.state, r.progress,
                        datetime.fromtimestamp(time.time(), UTC),
                    )
            await asyncio.sleep(0.05)
