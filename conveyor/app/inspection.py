"""The inspection calls: the CLI, the HTTP API and the dashboard all read the store through
these, never around them, so they are kept together as one surface."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator

from conveyor.app.handles import Handles
from conveyor.feed import EventFeed
from conveyor.inspection import (
    Event,
    Page,
    ScheduleInfo,
    Stats,
    WorkerInfo,
    build_stats,
    check_page,
    schedule_infos,
)
from conveyor.job import State
from conveyor.registry import Registry


class Inspection(Handles):
    registry: Registry
    _feed: EventFeed | None
    _backend_lock: threading.Lock

    def jobs(
        self,
        state: State | str | None = None,
        task: str | None = None,
        queue: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """A page of jobs, newest first; ``next_cursor`` fetches the next one. A bad state,
        limit (1 to 1000) or cursor raises InvalidArgument."""
        state, limit, cursor = check_page(state, limit, cursor)
        records = self.backend.list_jobs(
            state=state, task=task, queue=queue, limit=limit + 1, cursor=cursor
        )
        more = len(records) > limit
        del records[limit:]
        return Page([self.job_info(r) for r in records], records[-1].id if more else None)

    def queues(self) -> dict[str, dict[State, int]]:
        """For each queue that holds jobs, how many are in each state."""
        return self.backend.queue_counts()

    def workers(self) -> list[WorkerInfo]:
        """The registered workers; ``last_seen`` tells which still live."""
        return self.backend.list_workers()

    def schedules(self) -> list[ScheduleInfo]:
        """The periodic tasks this app declares and those the store recorded."""
        return schedule_infos(self.registry.periodic, self.backend.schedules(), time.time())

    def purge(self, queue: str) -> int:
        """Delete the scheduled and queued jobs of ``queue``; returns how many."""
        return self.backend.purge_queue(queue)

    def stats(self) -> Stats:
        """The numbers /metrics reports, read from the store."""
        now = time.time()
        backend = self.backend
        return build_stats(
            backend.queue_counts(), backend.job_stats(now=now), backend.list_workers(), now
        )

    def ping(self) -> bool:
        """True when the store answers."""
        return self.backend.ping()

    @property
    def feed(self) -> EventFeed:
        if self._feed is None:
            backend = self.backend  # opened first: it takes the same lock
            with self._backend_lock:
                if self._feed is None:
                    self._feed = EventFeed(backend)
        return self._feed

    def events(
        self, job_id: str | None = None, *, after: int | str | None = None
    ) -> Iterator[Event]:
        """Every job change from now on (or after event id ``after``), blocking; with
        ``job_id``, that job's changes until it is final."""
        return self.feed.events(job_id, after=after)

    def aevents(
        self, job_id: str | None = None, *, after: int | str | None = None
    ) -> AsyncIterator[Event]:
        """``events`` for async code."""
        return self.feed.aevents(job_id, after=after)

    def read_events(
        self,
        after: int | str | None = None,
        *,
        job_id: str | None = None,
        limit: int = 1000,
        timeout: float = 0.0,
    ) -> tuple[list[Event], int]:
        """Events after event id ``after`` (None: from now), waiting up to ``timeout`` for
        one; returns them with the id to pass next time (SSE: Last-Event-ID)."""
        return self.feed.read(after, job_id=job_id, limit=limit, timeout=timeout)

    async def aread_events(
        self,
        after: int | str | None = None,
        *,
        job_id: str | None = None,
        limit: int = 1000,
        timeout: float = 0.0,
    ) -> tuple[list[Event], int]:
        """``read_events`` for async code: one shared reader serves every caller."""
        return await self.feed.aread(after, job_id=job_id, limit=limit, timeout=timeout)
