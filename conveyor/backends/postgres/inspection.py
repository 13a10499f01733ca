"""The PostgreSQL backend's change feed and counters (layout_2.sql): reading events in commit
order, waiting for new ones on the LISTEN connection, the counters /metrics reads, and their
upkeep in sweep. A mixin of ``PostgresBackend``.

Why reading is careful: event ids come from a sequence when the row is written, and
transactions commit in their own order, so a reader may see event ``n + 1`` committed while
``n`` is still in flight (or rolled back: then ``n`` never comes). Returning ``n + 1`` and
resuming after it would lose ``n``. So an event after a gap in the ids is returned only once
the gap is *settled*: no transaction that could still fill it is in progress. The writer of
a missing id wrote its job row first (an event is written by a trigger on it), so it was in
progress at the snapshot of the read that saw the gap; when none of the transactions in
progress then is in progress any more, the next read sees the gap filled or never will.
Events are only delayed by this, for as long as the transactions around them run, and at
most ``GAP_SECONDS``: a gap older than that (a user's transaction that holds an enqueue open
that long) is passed over.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import psycopg

from conveyor.backends.postgres.listener import Listener
from conveyor.backends.postgres.store import Database
from conveyor.inspection import Event, StoreStats, make_event, task_stats_from_counters
from conveyor.job import Progress

#: how many events sweep keeps
EVENTS_KEPT = 100_000
#: claims send no notification: a waiting reader looks again this often
POLL_SECONDS = 0.5
#: a gap in the event ids older than this (by the server's clock) is passed over
GAP_SECONDS = 10.0
#: how long a reader waits before it looks again whether a gap settled
GAP_WAIT_SECONDS = 0.005


class Inspection:
    _db: Database
    _sql: Mapping[str, str]
    _listener: Listener

    def read_events(self, after: int, *, limit: int = 1000, timeout: float = 0.0) -> list[Event]:
        deadline = time.monotonic() + timeout
        settled = after  # every gap in the ids up to here is settled
        watch: tuple[list[str], int] | None = None  # in progress at the last read; its top id
        board = self._listener.anything
        params = {"after": after, "limit": limit}
        while True:
            if watch is not None and not self._busy(watch[0]):
                settled = max(settled, watch[1])
            self._listener.ensure()
            since = board.snapshot([])  # before the read: a commit in between still wakes
            rows = self._db.run(self._read_after(params))
            busy, now = rows[0][6], rows[0][7]
            found = [row[:6] for row in rows if row[0] is not None]
            events = _settled(found, after, settled, quiet=not busy, now=now)
            if events:
                return events
            remaining = deadline - time.monotonic()
            if found:  # held back by a gap: look again soon whether it settled
                if watch is not None and remaining <= 0:
                    return []
                watch = (busy, found[-1][0])
                board.wait([], since, min(max(remaining, 0.0), GAP_WAIT_SECONDS))
                continue
            watch = None
            if remaining <= 0:
                return []
            board.wait([], since, min(remaining, POLL_SECONDS))

    def _read_after(
        self, params: dict[str, Any]
    ) -> Callable[[psycopg.Connection[Any]], list[tuple[Any, ...]]]:
        return lambda c: c.execute(self._sql["events_after"], params).fetchall()

    def _busy(self, xids: list[str]) -> bool:
        row = self._db.run(lambda c: c.execute(self._sql["xacts_busy"], {"xids": xids}).fetchone())
        return bool(row and row[0])

    def last_event_id(self) -> int:
        row = self._db.run(lambda c: c.execute(self._sql["last_event_id"]).fetchone())
        return int(row[0]) if row else 0

    def job_stats(self, *, now: float) -> StoreStats:
        def read(conn: psycopg.Connection[Any]) -> tuple[list[Any], list[Any]]:
            with conn.pipeline():
                counters = conn.execute(self._sql["counters"])
                oldest = conn.execute(self._sql["oldest_queued"])
            return counters.fetchall(), oldest.fetchall()

        counters, oldest = self._db.run(read)
        tasks = task_stats_from_counters(counters)
        ready: dict[str, float] = {}
        for queue, ready_at in oldest:
            if ready_at is not None:
                ready[queue] = min(float(ready_at), ready.get(queue, float("inf")))
        return StoreStats(tasks, ready)

    def _sweep_feed(self, conn: psycopg.Connection[Any]) -> None:
        """Keep the newest events; fold the counters into one row per key. In sweep's
        transaction."""
        conn.execute(self._sql["sweep_events"], {"keep": EVENTS_KEPT})
        conn.execute(self._sql["sweep_counters"])


def _settled(
    rows: list[tuple[Any, ...]], after: int, settled: int, *, quiet: bool, now: float
) -> list[Event]:
    """The events of ``rows`` (id order) up to the first gap that is not settled: every gap
    below ``settled`` is, every gap when no transaction was in progress (``quiet``), and a
    gap older than GAP_SECONDS is passed over."""
    out: list[Event] = []
    previous = after
    for event_id, job_id, task, state, progress, at in rows:
        gap = event_id != previous + 1
        if gap and event_id - 1 > settled and not quiet and now - at <= GAP_SECONDS:
            break
        out.append(
            make_event(
                event_id,
                job_id,
                task,
                state,
                None if progress is None else Progress.from_json(progress),
                at,
            )
        )
        previous = event_id
    return out
