"""What claims and finishes write beside the jobs, inside their transaction: the change feed's
row (feed.py) and the counters (schema.sql ``{ns}_counters``), one row and one upsert per
distinct counter for a whole batch.

A claim remembers, per job it hands out, the task, token and start time, so the finish that
follows in this process needs nothing read back from the jobs table: its feed row and its
counters are plain inserts built here. A finish of a job that this object did not claim
(another process, or a claim forgotten) reads them from the jobs table instead (feed_write,
count_ended, count_errors, count_retries).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence

from conveyor.backends.sqlite import feed
from conveyor.backends.sqlite.rows import dumps
from conveyor.inspection import RUNTIME_BUCKETS, bucket_label
from conveyor.job import JobRecord, Outcome, State

#: claims remembered at most: those never finished here (a lease that ran out, a job
#: finished by another process) are forgotten all at once when this many pile up
REMEMBERED = 100_000

#: a change for the feed: job id, task, state
Change = tuple[str, str, str]
#: (task, kind, label) of a counter
_Key = tuple[str, str, str]
#: the run-time buckets' bounds and labels (inspection.bucket_of, without a repr per finish)
_BUCKETS = tuple((upper, bucket_label(upper)) for upper in RUNTIME_BUCKETS)
_RUNNING = State.RUNNING.value


class Ledger:
    def __init__(self, sql: Mapping[str, str]) -> None:
        self._sql = sql
        # job id -> (task, token, started_at, plain) of the claims this object made; plain:
        # its meta names no workflow and no limits (it holds no limit slot, has no successor)
        self._claims: dict[str, tuple[str, int, float, bool]] = {}
        #: after ``finished``: every attempt it wrote was a plain claim made here, so the
        #: finish needs no workflow step and frees no limit slot (the caller may skip both)
        self.plain = False

    def claimed(
        self,
        conn: sqlite3.Connection,
        records: Sequence[JobRecord],
        before: Sequence[Change] = (),
    ) -> None:
        """The feed row of a claim (the records as the claim left them), after the changes
        ``before`` it in the same transaction (a finish's): one row for both."""
        if len(self._claims) > REMEMBERED:
            self._claims.clear()
        changes = list(before)
        for r in records:
            meta = r.meta
            plain = not meta or ("flow" not in meta and "limits" not in meta)
            self._claims[r.id] = (r.task, r.token, r.started_at or 0.0, plain)
            changes.append((r.id, r.task, _RUNNING))
        feed.put(conn, self._sql, changes)

    def finished(
        self, conn: sqlite3.Connection, finished: Sequence[tuple[str, int, Outcome]], *, now: float
    ) -> list[Change]:
        """The counters of the attempts this transaction just finished (``now`` is their
        finished_at), and their feed changes, which the caller writes (feed.put), alone or
        with a claim's (``claimed``). Attempts this object did not claim get their feed row
        here, read from the jobs table."""
        changes: list[Change] = []
        counts: dict[_Key, list[float]] = {}  # key -> [n, total run time]
        others: list[tuple[str, int, Outcome]] = []
        plain = True
        for job_id, token, outcome in finished:
            claim = self._claims.pop(job_id, None)
            if claim is None or claim[1] != token:
                others.append((job_id, token, outcome))
                continue
            task, _, started_at, plain_claim = claim
            plain = plain and plain_claim
            state = outcome.state
            # its value, a plain str: SQLite would adapt the StrEnum through a failed
            # look-up of __conform__, and hashing it in a key runs Enum.__hash__ in Python
            value: str = state._value_
            changes.append((job_id, task, value))
            if state is State.SUCCEEDED or state is State.FAILED:
                runtime = now - started_at  # as count_ended: finished_at - started_at
                _add(counts, (task, value, _bucket(runtime)), runtime)
                if state is State.FAILED:
                    error = "Error" if outcome.error is None else outcome.error.type
                    _add(counts, (task, "error", error), 0.0)
            elif not state.is_final:
                _add(counts, (task, "retries", ""), 0.0)
        self.plain = plain and not others
        if counts:
            rows = [(*key, int(n), total) for key, (n, total) in counts.items()]
            conn.executemany(self._sql["count_add"], rows)
        if others:
            feed.write(conn, self._sql, [job_id for job_id, _, _ in others])
            retried = [job_id for job_id, _, o in others if not o.state.is_final]
            if retried:
                conn.execute(self._sql["count_retries"], {"ids": dumps(retried)})
            self.count_ended(conn, others)
        return changes

    def count_ended(
        self, conn: sqlite3.Connection, finished: Sequence[tuple[str, int, Outcome]]
    ) -> None:
        """The counters of attempts that ended (succeeded or failed) in this transaction, read
        from the jobs table: one upsert per distinct task, outcome and bucket."""
        ended = [i for i, _, o in finished if o.state in (State.SUCCEEDED, State.FAILED)]
        if ended:
            conn.execute(self._sql["count_ended"], {"ids": dumps(ended)})
            failed = [i for i, _, o in finished if o.state is State.FAILED]
            if failed:
                conn.execute(self._sql["count_errors"], {"ids": dumps(failed)})


def _bucket(runtime: float) -> str:
    for upper, label in _BUCKETS:
        if runtime <= upper:
            return label
    return "+Inf"


def _add(counts: dict[_Key, list[float]], key: _Key, runtime: float) -> None:
    entry = counts.get(key)
    if entry is None:
        counts[key] = [1, runtime]
    else:
        entry[0] += 1
        entry[1] += runtime
