"""The live event feed: ``app.events()`` / ``app.aevents()`` and the reads SSE is built on.

A blocking reader (``read``) asks the backend itself: it waits in its own thread. Async readers
(``aread``: every SSE connection of a web app) share one background thread per app that
follows the backend's feed into a ring of recent events and wakes their futures, so a
thousand open streams cost one reader of the store, not a thousand threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator

from conveyor.backends.base import Backend
from conveyor.inspection import Event, check_event_id

log = logging.getLogger("conveyor.feed")

#: events the shared reader keeps in memory for async readers to catch up from
RING = 10_000
#: the shared reader stops after this long without an async reader
IDLE_SECONDS = 30.0
#: how long one wait of the shared reader on the store lasts
POLL_SECONDS = 1.0


def _mine(events: list[Event], job_id: str | None) -> list[Event]:
    return events if job_id is None else [e for e in events if e.job_id == job_id]


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class EventFeed:
    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._lock = threading.Lock()
        self._ring: deque[Event] = deque(maxlen=RING)
        self._last = 0  # the ring holds every event after its first one, up to this id
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._thread: threading.Thread | None = None
        self._used = time.monotonic()
        self._closed = threading.Event()

    # -- blocking ----------------------------------------------------------------------------

    def read(
        self,
        after: int | str | None = None,
        *,
        job_id: str | None = None,
        limit: int = 1000,
        timeout: float = 0.0,
    ) -> tuple[list[Event], int]:
        """Events after ``after`` (None: from now on), waiting up to ``timeout`` for one;
        returns them and the id to read after next time."""
        start = check_event_id(after)
        position = self._backend.last_event_id() if start is None else start
        deadline = time.monotonic() + timeout
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            events = self._backend.read_events(position, limit=limit, timeout=remaining)
            if events:
                position = events[-1].id
                mine = _mine(events, job_id)
                if mine:
                    return mine, position
            if deadline <= time.monotonic():
                return [], position

    def events(
        self, job_id: str | None = None, *, after: int | str | None = None
    ) -> Iterator[Event]:
        """Every event from now on (or after ``after``); for one job, until it is final."""
        position: int | None = check_event_id(after)
        if position is None:
            position = self._backend.last_event_id()
        if job_id is not None and self._is_final(job_id):
            return
        while not self._closed.is_set():
            batch, position = self.read(position, job_id=job_id, timeout=POLL_SECONDS)
            for event in batch:
                yield event
                if job_id is not None and event.state.is_final:
                    return

    def _is_final(self, job_id: str) -> bool:
        record = self._backend.get(job_id)
        return record is None or record.state.is_final

    # -- async -------------------------------------------------------------------------------

    async def aread(
        self,
        after: int | str | None = None,
        *,
        job_id: str | None = None,
        limit: int = 1000,
        timeout: float = 0.0,
    ) -> tuple[list[Event], int]:
        """``read`` for async code: served from the shared reader, never blocking the loop."""
        start = check_event_id(after)
        if self._thread is None:
            await asyncio.to_thread(self._start)
        loop = asyncio.get_running_loop()
        if start is None:
            start = await asyncio.to_thread(self._backend.last_event_id)
        position = start
        deadline = loop.time() + timeout
        while True:
            future: asyncio.Future[None] | None = None
            with self._lock:
                self._used = time.monotonic()
                first = self._ring[0].id if self._ring else self._last + 1
                covered = position >= first - 1
                if covered:
                    events = [e for e in self._ring if e.id > position]
                    if not events:
                        future = loop.create_future()
                        self._waiters.append((loop, future))
            if not covered:  # further back than the ring: catch up from the store itself
                events = await asyncio.to_thread(self._backend.read_events, position, limit=limit)
            if events:
                events = events[:limit]
                position = events[-1].id
                mine = _mine(events, job_id)
                if mine:
                    return mine, position
                continue
            remaining = deadline - loop.time()
            if future is None or remaining <= 0:
                return [], position
            await asyncio.wait({future}, timeout=remaining)
            if not future.done():
                future.cancel()
                return [], position

    async def aevents(
        self, job_id: str | None = None, *, after: int | str | None = None
    ) -> AsyncIterator[Event]:
        position: int | None = check_event_id(after)
        if position is None:
            position = await asyncio.to_thread(self._backend.last_event_id)
        if job_id is not None and await asyncio.to_thread(self._is_final, job_id):
            return
        while not self._closed.is_set():
            batch, position = await self.aread(position, job_id=job_id, timeout=POLL_SECONDS)
            for event in batch:
                yield event
                if job_id is not None and event.state.is_final:
                    return

    # -- the shared reader -------------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None or self._closed.is_set():
                return
            self._thread = threading.Thread(
                target=self._follow, name="conveyor-events", daemon=True
            )
            self._ring.clear()
            self._last = self._backend.last_event_id()
            self._thread.start()

    def _follow(self) -> None:
        while not self._closed.is_set():
            with self._lock:
                if not self._waiters and time.monotonic() - self._used > IDLE_SECONDS:
                    self._thread = None
                    return
                last = self._last
            try:
                events = self._backend.read_events(last, limit=1000, timeout=POLL_SECONDS)
            except Exception:
                if self._closed.is_set():
                    return
                log.exception("reading the event feed failed; trying again in a second")
                time.sleep(1.0)
                continue
            if not events:
                continue
            with self._lock:
                self._ring.extend(events)
                self._last = events[-1].id
                waiters, self._waiters = self._waiters, []
            for loop, future in waiters:
                with contextlib.suppress(RuntimeError):  # that loop has closed
                    loop.call_soon_threadsafe(_wake, future)

    def close(self) -> None:
        self._closed.set()
        thread = self._thread
        if thread is not None:
            thread.join(POLL_SECONDS + 1.0)
