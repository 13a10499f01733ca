"""Ending claims (finish, finish_many, release): the batch of fenced updates and what a finish
sets off (workflow steps, limit slots, wake-ups). A mixin of ``SQLiteBackend``, shared with
its ``finish_and_claim``."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any, cast

from conveyor.backends.sqlite import feed
from conveyor.backends.sqlite import limits as limits_sql
from conveyor.backends.sqlite.connections import Connections
from conveyor.backends.sqlite.flows import Flows
from conveyor.backends.sqlite.ledger import Ledger
from conveyor.backends.sqlite.rows import dumps, error_json
from conveyor.backends.sqlite.store import numbered
from conveyor.job import FINAL_STATES, Outcome

#: the final states' values: State.is_final hashes the member by Enum.__hash__, in Python
_FINAL = frozenset(state.value for state in FINAL_STATES)
#: results up to this size are bound as a bytearray (see _bindable)
_COPIED_BELOW = 1 << 16
#: final outcomes written by one finish_finals from this many on (fewer: one statement
#: each), and at most so many per statement (five placeholders a job)
FINALS_AT_ONCE = 10
FINALS_CHUNK = 500


class Finishing:
    _db: Connections
    _sql: Mapping[str, str]
    _flows: Flows
    _ledger: Ledger

    def _notify(self, *, ready: bool) -> None:
        raise NotImplementedError

    def _flows_after(
        self,
        conn: sqlite3.Connection,
        items: Sequence[tuple[str, int, Outcome]],
        done: Sequence[bool],
        *,
        now: float,
    ) -> bool:
        """Decide the successors of the workflow jobs that this batch made final."""
        ended = [
            job_id
            for ok, (job_id, _, outcome) in zip(done, items, strict=True)
            if ok and outcome.state.is_final
        ]
        return bool(ended) and self._flows.finished(conn, ended, now=now)

    def finish(self, job_id: str, token: int, outcome: Outcome, *, now: float) -> bool:
        return self.finish_many([(job_id, token, outcome)], now=now)[0]

    def finish_many(self, items: Sequence[tuple[str, int, Outcome]], *, now: float) -> list[bool]:
        with self._db.write() as conn:
            done = self._finish_batch(conn, items, now=now)
            feed.put(conn, self._sql, self._ledger.finished(conn, done_items(items, done), now=now))
            plain = self._ledger.plain  # no workflow step, no limit slot in this batch
            flowed = not plain and self._flows_after(conn, items, done, now=now)
            woken = not plain and self._release_slots(conn, items, done)
        if any(done):
            self._notify_finished(items, done, flowed=flowed or woken)
        return done

    def _notify_finished(
        self, items: Sequence[tuple[str, int, Outcome]], done: Sequence[bool], *, flowed: bool
    ) -> None:
        """Wake those waiting on jobs; wake idle workers too when a retry made a job ready,
        a workflow step may have been queued, or a finish freed a limit that held jobs back
        (``flowed``)."""
        retried = any(
            ok and o.state._value_ not in _FINAL for ok, (_, _, o) in zip(done, items, strict=True)
        )
        self._notify(ready=retried or flowed)

    def _release_slots(
        self,
        conn: sqlite3.Connection,
        items: Sequence[tuple[str, int, Outcome]],
        done: Sequence[bool],
    ) -> bool:
        """The limit slots of the claims that just ended free at once."""
        ended = [job_id for ok, (job_id, _, _) in zip(done, items, strict=True) if ok]
        return bool(ended) and limits_sql.release(conn, self._sql, ended)

    def _finish_batch(
        self, conn: sqlite3.Connection, items: Sequence[tuple[str, int, Outcome]], *, now: float
    ) -> list[bool]:
        """The batch's fenced UPDATEs, run first in their write transaction (the caller's).

        A batch of final outcomes, the common one, is one executemany (one finish_finals
        from FINALS_AT_ONCE on): its rowcount is the sum, and each job's row changes once at
        most, so it tells that every fence let its finish through, as it almost always does.
        When one did not, the transaction, which holds nothing else yet, begins again and
        the batch runs one UPDATE at a time, each telling by its own rowcount (as a batch
        with a retry in it always does). Not a savepoint around the batch: it costs every
        batch more than it saves."""
        final = self._sql["finish_final"]
        rows: list[tuple[Any, ...] | None] = []  # finish_final's parameters, None: a retry
        for job_id, token, outcome in items:
            # _value_: the plain str, without Enum's value property (a call in Python)
            value: str = outcome.state._value_
            if value in _FINAL:
                result, error = outcome.result, outcome.error
                rows.append(
                    (
                        job_id,
                        token,
                        value,
                        0 if result is None else _bindable(result),
                        0 if error is None else dumps(error.to_json()),
                        now,
                    )
                )
            else:
                rows.append(None)
        if None not in rows:
            if self._finish_finals(conn, cast("list[tuple[Any, ...]]", rows), now) == len(rows):
                return [True] * len(rows)
            # the writers' gate stays held: no other conveyor writer comes in between
            conn.execute("ROLLBACK")
            conn.execute("BEGIN IMMEDIATE")
        cursor = conn.cursor()  # one for the batch: conn.execute makes one per statement
        return [
            cursor.execute(final, row).rowcount == 1
            if row is not None
            else self._retry(conn, job_id, token, outcome, now=now)
            for row, (job_id, token, outcome) in zip(rows, items, strict=True)
        ]

    def _finish_finals(
        self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]], now: float
    ) -> int:
        """finish_final for every row (its parameters), and how many rows it changed: one
        executemany for a few, else a finish_finals per FINALS_CHUNK."""
        if len(rows) < FINALS_AT_ONCE:
            return conn.executemany(self._sql["finish_final"], rows).rowcount
        done = 0
        for start in range(0, len(rows), FINALS_CHUNK):
            chunk = rows[start : start + FINALS_CHUNK]
            params: list[Any] = [now]
            for row in chunk:
                params += row[:5]
            sql = numbered(self._sql["finish_finals"], "{rows}", len(chunk), 5, 2)
            done += conn.execute(sql, params).rowcount
        return done

    def _retry(
        self, conn: sqlite3.Connection, job_id: str, token: int, outcome: Outcome, *, now: float
    ) -> bool:
        params: dict[str, Any] = {
            "id": job_id,
            "token": token,
            "state": outcome.state.value,
            "error": error_json(outcome.error),
            "ready_at": now if outcome.ready_at is None else outcome.ready_at,
            "failure": int(outcome.counts_failure),
        }
        return conn.execute(self._sql["finish_retry"], params).rowcount == 1

    def release(self, job_id: str, token: int, *, started: bool, now: float) -> bool:
        params = {"id": job_id, "token": token, "now": now, "take_back": int(not started)}
        with self._db.write() as conn:
            done = conn.execute(self._sql["release"], params).rowcount == 1
            if done:
                feed.write(conn, self._sql, [job_id])
                self._flows.finished(conn, [job_id], now=now)
                limits_sql.release(conn, self._sql, [job_id])
        if done:
            self._notify(ready=True)
        return done


def _bindable(result: bytes) -> bytes | bytearray:
    """The result as finish_final binds it: Python's sqlite3 looks for an adapter for bytes
    (and fails, in a few thousand instructions) but binds a bytearray at once, the same blob;
    copying a small result costs less than the search."""
    return bytearray(result) if len(result) < _COPIED_BELOW else result


def done_items(
    items: Sequence[tuple[str, int, Outcome]], done: Sequence[bool]
) -> list[tuple[str, int, Outcome]]:
    """The items that were done."""
    return [item for item, ok in zip(items, done, strict=True) if ok]
