"""SQLite files made before limits existed: opening one adds what limits need."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from conveyor.backends import open_backend
from conveyor.job import Outcome, State
from conveyor.limits import make_limit
from tests.backends.helpers import LEASE, NOW, make_record, stored


def test_a_file_from_before_limits_gets_the_held_column_and_keeps_its_jobs(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    backend = open_backend(url, namespace="conveyor")
    [job] = backend.enqueue([make_record()])
    backend.close()
    # back to the old layout: no held column, the old ready index
    conn = sqlite3.connect(tmp_path / "old.db")
    conn.executescript(
        "DROP INDEX conveyor_jobs_to_claim; DROP INDEX conveyor_jobs_parked;"
        "ALTER TABLE conveyor_jobs DROP COLUMN held;"
        "CREATE INDEX conveyor_jobs_queued ON conveyor_jobs (queue, priority DESC, ready_at, id)"
        " WHERE state = 'queued';"
    )
    conn.close()
    again = open_backend(url, namespace="conveyor")
    try:
        claims = again.claim("w1", ["default"], 5, lease_seconds=LEASE, now=NOW)
        assert [c.record.id for c in claims] == [job.id]
    finally:
        again.close()
    conn = sqlite3.connect(tmp_path / "old.db")
    indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    conn.close()
    assert "conveyor_jobs_to_claim" in indexes and "conveyor_jobs_queued" not in indexes
    assert "conveyor_jobs_ready" not in indexes


def _indexes(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    finally:
        conn.close()


def _held(path: Path, job_id: str) -> str | None:
    conn = sqlite3.connect(path)
    try:
        held: str | None = conn.execute(
            "SELECT held FROM conveyor_jobs WHERE id = ?", (job_id,)
        ).fetchone()[0]
        return held
    finally:
        conn.close()


def test_a_file_with_the_old_index_of_parked_jobs_gets_the_new_one_and_its_parked_jobs_run(
    tmp_path: Path,
) -> None:
    url, path = f"sqlite:///{tmp_path}/old.db", tmp_path / "old.db"
    backend = open_backend(url, namespace="conveyor")
    backend.set_limit(make_limit("api", concurrency=1), now=NOW)
    limited = [make_record(meta={"limits": [["api", ""]]}) for _ in range(2)]
    first, second = backend.enqueue(limited)
    [claim] = backend.claim("w1", ["default"], 5, lease_seconds=LEASE, now=NOW)
    assert claim.record.id == first.id and _held(path, second.id) is not None  # parked
    backend.close()
    # back to the index of parked jobs that files made before had
    conn = sqlite3.connect(path)
    conn.executescript(
        "DROP INDEX conveyor_jobs_parked;"
        "CREATE INDEX conveyor_jobs_held ON conveyor_jobs (held, priority DESC, ready_at, id)"
        " WHERE state = 'queued' AND held IS NOT NULL;"
    )
    conn.close()
    again = open_backend(url, namespace="conveyor")
    try:
        assert "conveyor_jobs_parked" in _indexes(path)
        assert "conveyor_jobs_held" not in _indexes(path)
        assert again.finish(first.id, claim.token, Outcome.succeeded(b"1"), now=NOW)
        claims = again.claim("w1", ["default"], 5, lease_seconds=LEASE, now=NOW + 1)
        assert [c.record.id for c in claims] == [second.id]
    finally:
        again.close()


def test_a_parked_job_that_is_cancelled_or_expires_is_no_longer_held(tmp_path: Path) -> None:
    # the index of parked jobs names held only: held is set only while the job is queued
    url, path = f"sqlite:///{tmp_path}/jobs.db", tmp_path / "jobs.db"
    backend = open_backend(url, namespace="conveyor")
    try:
        backend.set_limit(make_limit("api", concurrency=1), now=NOW)
        meta = {"limits": [["api", ""]]}
        first, cancelled, expiring = backend.enqueue(
            [
                make_record(meta=meta),
                make_record(meta=meta),
                make_record(meta=meta, expires_at=NOW + 10),
            ]
        )
        claims = backend.claim("w1", ["default"], 5, lease_seconds=LEASE, now=NOW)
        assert [c.record.id for c in claims] == [first.id]
        assert _held(path, cancelled.id) is not None and _held(path, expiring.id) is not None
        assert backend.cancel(cancelled.id, now=NOW)
        backend.sweep(now=NOW + 20)
        assert stored(backend, expiring.id).state is State.EXPIRED
        assert _held(path, cancelled.id) is None and _held(path, expiring.id) is None
    finally:
        backend.close()
