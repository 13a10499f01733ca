"""The SQLite change feed's rows: a batch per statement (ids row * 1024 + index), resuming
inside a row, and files made when the feed had a trigger per changed job."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from conveyor.backends import open_backend
from conveyor.backends.sqlite import SQLiteBackend
from conveyor.backends.sqlite.feed import ROW_SPAN
from conveyor.backends.sqlite.rows import dumps, json_changes, json_strings
from conveyor.job import ErrorInfo, Outcome
from tests.backends.helpers import LEASE, NOW, make_record


@pytest.fixture
def backend(tmp_path: Path) -> SQLiteBackend:
    store = SQLiteBackend(f"sqlite:///{tmp_path}/feed.db")
    yield store  # type: ignore[misc]
    store.close()


def test_a_claim_is_one_row_whose_events_resume_one_by_one(backend: SQLiteBackend) -> None:
    ids = [r.id for r in backend.enqueue([make_record() for _ in range(5)])]
    start = backend.last_event_id()
    claims = backend.claim("w1", ["default"], 5, lease_seconds=LEASE, now=NOW)
    events = backend.read_events(start)
    assert sorted(e.job_id for e in events) == sorted(ids)
    assert {e.state.value for e in events} == {"running"}
    assert len({e.id // ROW_SPAN for e in events}) == 1  # one row
    assert [e.id for e in events] == list(range(events[0].id, events[0].id + 5))
    assert backend.last_event_id() == events[-1].id
    for i, event in enumerate(events):
        assert backend.read_events(event.id) == events[i + 1 :]
        assert backend.read_events(event.id, limit=1) == events[i + 1 : i + 2]
    items = [(c.record.id, c.token, Outcome.succeeded(b"1")) for c in claims]
    backend.finish_many(items, now=NOW + 1)
    finished = backend.read_events(events[2].id, limit=4)
    assert [e.state.value for e in finished] == ["running", "running", "succeeded", "succeeded"]
    assert finished[2].id // ROW_SPAN == events[0].id // ROW_SPAN + 1


def test_a_batch_above_a_rows_span_takes_several_rows(backend: SQLiteBackend) -> None:
    n = ROW_SPAN + 10
    backend.enqueue([make_record() for _ in range(n)])
    start = backend.last_event_id()
    assert len(backend.claim("w1", ["default"], n, lease_seconds=LEASE, now=NOW)) == n
    events = backend.read_events(start, limit=2 * n)
    ids = [e.id for e in events]
    assert len(events) == n and ids == sorted(set(ids))
    assert backend.last_event_id() == ids[-1]


def test_a_file_from_the_trigger_feed_gets_batch_rows_and_keeps_its_events(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    first = open_backend(url, namespace="conveyor")
    [job] = first.enqueue([make_record(unique_key="u")])
    first.close()
    # back to the old layout: no batch column, a trigger per changed job
    conn = sqlite3.connect(tmp_path / "old.db")
    conn.executescript(
        f"""
        DROP TRIGGER conveyor_jobs_progress;
        DROP TRIGGER conveyor_jobs_event_insert;
        DROP TABLE conveyor_events;
        CREATE TABLE conveyor_events (
            id INTEGER PRIMARY KEY, job_id TEXT NOT NULL, task TEXT NOT NULL,
            state TEXT NOT NULL, progress TEXT, at REAL NOT NULL
        );
        INSERT INTO conveyor_events VALUES (1, '{job.id}', 'tests.add', 'queued', NULL, 0);
        CREATE TRIGGER conveyor_jobs_event_insert AFTER INSERT ON conveyor_jobs
        BEGIN
            INSERT INTO conveyor_events (job_id, task, state, progress, at)
            VALUES (new.id, new.task, new.state, NULL, 0);
        END;
        CREATE TRIGGER conveyor_jobs_changed AFTER UPDATE OF state, progress ON conveyor_jobs
        WHEN old.state IS NOT new.state OR old.progress IS NOT new.progress
        BEGIN
            INSERT INTO conveyor_events (job_id, task, state, progress, at)
            VALUES (new.id, new.task, new.state, NULL, 0);
        END;
        """
    )
    conn.close()
    again = open_backend(url, namespace="conveyor")
    try:
        [old] = again.read_events(0)
        assert (old.job_id, old.state.value) == (job.id, "queued")
        assert len(again.claim("w1", ["default"], 5, lease_seconds=LEASE, now=NOW)) == 1
        events = again.read_events(old.id)
        assert [(e.job_id, e.state.value) for e in events] == [(job.id, "running")]
        assert events[0].id > old.id
    finally:
        again.close()
    conn = sqlite3.connect(tmp_path / "old.db")
    schema = dict(conn.execute("SELECT name, coalesce(sql, '') FROM sqlite_master").fetchall())
    conn.close()
    assert "conveyor_jobs_changed" not in schema and "conveyor_jobs_progress" in schema


def test_a_finish_of_a_claim_made_elsewhere_reads_task_and_start_from_the_store(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/two.db"
    claimer, finisher = SQLiteBackend(url), SQLiteBackend(url)
    try:
        claimer.enqueue([make_record(task="t.a"), make_record(task="t.b")])
        a, b = claimer.claim("w1", ["default"], 2, lease_seconds=LEASE, now=NOW)
        start = finisher.last_event_id()
        items = [
            (a.record.id, a.token, Outcome.succeeded(b"1")),
            (b.record.id, b.token, Outcome.retry(NOW + 5, ErrorInfo("E", "e"), now=NOW)),
        ]
        assert finisher.finish_many(items, now=NOW + 1) == [True, True]
        events = finisher.read_events(start)
        kinds = {(e.job_id, e.task, e.state.value) for e in events}
        assert kinds == {(a.record.id, "t.a", "succeeded"), (b.record.id, "t.b", "scheduled")}
        stats = finisher.job_stats(now=NOW + 2).tasks
        assert stats["t.a"].succeeded == 1 and stats["t.b"].retries == 1
        assert a.record.started_at is not None
        assert stats["t.a"].runtime_sum == pytest.approx(NOW + 1 - a.record.started_at)
    finally:
        claimer.close()
        finisher.close()


def test_the_ledger_says_when_a_finish_needs_no_workflow_step_and_frees_no_slot(
    backend: SQLiteBackend, tmp_path: Path
) -> None:
    backend.enqueue([make_record() for _ in range(2)])
    claims = backend.claim("w1", ["default"], 2, lease_seconds=LEASE, now=NOW)
    backend.finish_many([(c.record.id, c.token, Outcome.succeeded(b"1")) for c in claims], now=NOW)
    assert backend._ledger.plain  # claimed here, no "flow" and no "limits" in their meta

    other = SQLiteBackend(f"sqlite:///{tmp_path}/feed.db")
    try:
        backend.enqueue([make_record()])
        (claim,) = other.claim("w2", ["default"], 1, lease_seconds=LEASE, now=NOW)
        backend.finish_many([(claim.record.id, claim.token, Outcome.succeeded(b"1"))], now=NOW)
        assert not backend._ledger.plain  # claimed elsewhere: the store must be asked
    finally:
        other.close()


@pytest.mark.parametrize("text", ["plain", 'a "quoted" \\ back', "é ü 中", "\u2028\n\t\x00", ""])
def test_the_feeds_json_is_what_json_dumps_writes(text: str) -> None:
    changes = [(text, "tests.add", "succeeded"), ("id2", text, "running")]
    assert json_changes(changes) == dumps(changes)
    assert json_strings([text, "id2"]) == dumps([text, "id2"])
    assert json_changes([]) == dumps([]) and json_strings([]) == dumps([])
